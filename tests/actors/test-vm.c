/* SPDX-License-Identifier: MIT */
/*
 * VM lifecycle against real QEMU (-machine none): start, suspend, resume,
 * QMP passthrough, reset, destroy, exit causes, and hang isolation with one
 * QEMU SIGSTOPped.  The QMP simulator is used only for attach to a monitor
 * that never answers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "actors/vm.h"
#include "common/futex.h"
#include "common/rcu.h"
#include "common/util.h"

static struct rt *rt;
static struct ioloop *io;
static struct registry *reg;
static struct evbus *bus;
static struct vm_env *env;
static char dir[64];

static void setup(void)
{
	struct vm_env_opts o = { 0 };
	char run[300], state[300];

	urcu_memb_register_thread();
	snprintf(dir, sizeof(dir), "/tmp/corral-test-vm-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	mkdir(run, 0700);
	mkdir(state, 0700);
	cr_assert_eq(rt_new(2, &rt), 0);
	cr_assert_eq(ioloop_new(1, &io), 0);
	cr_assert_eq(reg_new(&reg), 0);
	cr_assert_eq(evbus_new(&bus), 0);
	o.rt = rt;
	o.io = io;
	o.reg = reg;
	o.bus = bus;
	o.runtime_dir = run;
	o.state_dir = state;
	cr_assert_eq(vm_env_new(&o, &env), 0);
}

struct waiter {
	struct completion done;
	struct dom_job *job;
};

static void on_done(struct dom_job *job, void *arg)
{
	struct waiter *w = arg;

	w->job = job;
	completion_signal(&w->done);
}

static struct dom_job *submit(struct domain *d, enum vm_op op, json_t *args, uint64_t ms,
			      struct waiter *w)
{
	struct dom_job *job;
	char err[256];

	completion_init(&w->done);
	cr_assert_eq(vm_job_new(op, args, ms * NSEC_PER_MSEC, on_done, w, &job, err,
				sizeof(err)), 0, "%s", err);
	cr_assert_eq(vm_submit(d, job), 0);
	return job;
}

static struct dom_job *wait_job(struct waiter *w)
{
	cr_assert_eq(completion_wait(&w->done, 60 * NSEC_PER_SEC), 0, "job never ended");
	return w->job;
}

/* Run a job to its end; assert success unless want_code says otherwise. */
static void run_ok(struct domain *d, enum vm_op op, json_t *args, uint64_t ms)
{
	struct waiter w;
	struct dom_job *job = wait_job((submit(d, op, args, ms, &w), &w));

	cr_assert_eq(job->err, 0, "%s on %s failed: %s", vm_op_name(op), dom_name(d),
		     job->errmsg);
	dom_job_free(job);
}

static struct domain *define(const char *name)
{
	json_t *cfg = json_pack("{s:s, s:s, s:s, s:i}", "name", name, "machine", "none",
				"accel", "tcg", "memory", 32);
	struct domain *d;
	char err[256];

	cr_assert_eq(vm_define(env, cfg, &d, err, sizeof(err)), 0, "%s", err);
	json_decref(cfg);
	return d;
}

struct snapview {
	enum dom_state state;
	const char *reason;
	int pid;
	enum dom_mon_state mon;
	uint64_t job;
	char job_name[32];
};

static struct snapview snap(struct domain *d)
{
	struct snapview v = { 0 };
	const struct dom_snapshot *s;

	crcu_read_lock();
	s = dom_snap_rcu(d);
	v.state = s->state;
	v.reason = s->reason;
	v.pid = s->pid;
	v.mon = s->mon;
	v.job = s->job.id;
	if (s->job.id)
		snprintf(v.job_name, sizeof(v.job_name), "%s", s->job.name);
	crcu_read_unlock();
	return v;
}

/* Snapshots follow jobs' done callbacks: wait (bounded) for one to show up. */
static void wait_state(struct domain *d, enum dom_state st)
{
	for (int i = 0; i < 30000 && snap(d).state != st; i++)
		usleep(1000);
	cr_assert_eq(snap(d).state, st, "%s: state %s, expected %s", dom_name(d),
		     dom_state_name(snap(d).state), dom_state_name(st));
}

static void wait_mon(struct domain *d, enum dom_mon_state ms)
{
	for (int i = 0; i < 30000 && snap(d).mon != ms; i++)
		usleep(1000);
	cr_assert_eq(snap(d).mon, ms, "%s: monitor %s, expected %s", dom_name(d),
		     dom_mon_state_name(snap(d).mon), dom_mon_state_name(ms));
}

static void undefine(struct domain *d)
{
	char err[256];

	cr_assert_eq(vm_undefine(env, d, err, sizeof(err)), 0, "%s", err);
}

static int kill_all(struct domain *d, void *arg)
{
	struct snapview v = snap(d);

	if (v.pid > 0) {
		kill(v.pid, SIGCONT);
		kill(v.pid, SIGKILL);
	}
	return 0;
}

static struct domain *all[64];
static int nall;

static int collect(struct domain *d, void *arg)
{
	if (nall < 64)
		all[nall++] = d;
	return 0;
}

static void teardown(void)
{
	char cmd[400];

	/* Never leave a QEMU behind, whatever failed. */
	crcu_read_lock();
	reg_for_each_rcu(reg, kill_all, NULL);
	nall = 0;
	reg_for_each_rcu(reg, collect, NULL);
	crcu_read_unlock();
	for (int i = 0; i < nall; i++) {
		reg_del(reg, all[i]);
		actor_stop(dom_actor(all[i]));
	}
	rt_quiesce(rt, 10 * NSEC_PER_SEC);
	urcu_memb_barrier();
	rt_free(rt);
	ioloop_free(io);
	urcu_memb_barrier();
	vm_env_free(env);
	evbus_free(bus);
	reg_free(reg);
	urcu_memb_unregister_thread();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

Test(vm, lifecycle_on_real_qemu, .init = setup, .fini = teardown, .timeout = 120)
{
	struct domain *d = define("life1");
	struct waiter w;
	struct dom_job *job;
	int pid;

	run_ok(d, VM_OP_START, NULL, 30000);
	wait_state(d, DOM_RUNNING);
	pid = snap(d).pid;
	cr_assert_gt(pid, 0);
	cr_assert_eq(kill(pid, 0), 0, "QEMU is not running");
	wait_mon(d, DOM_MON_OK);

	/* start on a running domain is refused with a clear message */
	job = wait_job((submit(d, VM_OP_START, NULL, 5000, &w), &w));
	cr_assert_eq(job->code, DOM_ERR_STATE);
	cr_assert(strstr(job->errmsg, "already running"), "%s", job->errmsg);
	dom_job_free(job);

	run_ok(d, VM_OP_SUSPEND, NULL, 10000);
	wait_state(d, DOM_PAUSED);
	run_ok(d, VM_OP_RESUME, NULL, 10000);
	wait_state(d, DOM_RUNNING);
	run_ok(d, VM_OP_RESET, NULL, 10000);

	/* QMP passthrough returns QEMU's own answer */
	{
		json_t *args = json_pack("{s:s}", "command", "{\"execute\":\"query-status\"}");

		job = wait_job((submit(d, VM_OP_QMP, args, 10000, &w), &w));
		json_decref(args);
		cr_assert_eq(job->err, 0, "%s", job->errmsg);
		cr_assert_str_eq(json_string_value(json_object_get(job->result, "status")),
				 "running");
		dom_job_free(job);

		args = json_pack("{s:s}", "command", "{\"execute\":\"no-such-command\"}");
		job = wait_job((submit(d, VM_OP_QMP, args, 10000, &w), &w));
		json_decref(args);
		cr_assert_eq(job->code, DOM_ERR_QEMU);
		cr_assert(strstr(job->errmsg, "CommandNotFound"), "%s", job->errmsg);
		dom_job_free(job);

		args = json_pack("{s:s}", "command", "{\"execute\": 42}");
		job = wait_job((submit(d, VM_OP_QMP, args, 10000, &w), &w));
		json_decref(args);
		cr_assert_eq(job->code, DOM_ERR_INVALID, "%s", job->errmsg);
		dom_job_free(job);
	}

	run_ok(d, VM_OP_DESTROY, NULL, 10000);
	wait_state(d, DOM_SHUTOFF);
	cr_assert_str_eq(snap(d).reason, "destroyed");
	cr_assert_eq(snap(d).pid, 0);
	cr_assert_eq(kill(pid, 0), -1, "QEMU still exists after destroy");
	undefine(d);
}

Test(vm, exit_causes_are_reported, .init = setup, .fini = teardown, .timeout = 120)
{
	struct domain *d = define("crashy");
	json_t *quit = json_pack("{s:s}", "command", "{\"execute\":\"quit\"}");
	struct waiter w;

	/* A crash: QEMU killed by SIGSEGV. */
	run_ok(d, VM_OP_START, NULL, 30000);
	kill(snap(d).pid, SIGSEGV);
	wait_state(d, DOM_CRASHED);
	cr_assert_str_eq(snap(d).reason, "crashed");

	/* Shut down by host: QMP quit, QEMU exits 0. */
	run_ok(d, VM_OP_START, NULL, 30000);
	wait_job((submit(d, VM_OP_QMP, quit, 10000, &w), &w));
	dom_job_free(w.job);
	wait_state(d, DOM_SHUTOFF);
	cr_assert_str_eq(snap(d).reason, "shutdown");
	json_decref(quit);
	undefine(d);
}

/*
 * One QEMU SIGSTOPped: (a) its job fails at its deadline, (b) the job
 * queued behind fails at its own deadline naming the holder, (c) snapshot
 * queries answer at once everywhere, (d) other VMs' jobs complete, (e)
 * destroy works at once, (f) after SIGCONT the monitor recovers.
 */
Test(vm, hung_qemu_costs_only_its_own_jobs, .init = setup, .fini = teardown, .timeout = 180)
{
	struct domain *a = define("hung"), *b = define("fine"), *c = define("thaw");
	struct waiter w1, w2, w3;
	struct dom_job *j1, *j2, *j;
	uint64_t t0, t;
	int pid_a;

	run_ok(a, VM_OP_START, NULL, 30000);
	run_ok(b, VM_OP_START, NULL, 30000);
	run_ok(c, VM_OP_START, NULL, 30000);
	pid_a = snap(a).pid;
	cr_assert_eq(kill(pid_a, SIGSTOP), 0);

	t0 = now_ns();
	submit(a, VM_OP_SUSPEND, NULL, 3000, &w1);      /* holds, never answered */
	submit(a, VM_OP_RESET, NULL, 1000, &w2);        /* waits behind it */

	/* (c) while a is held: queries answer, and show the holder */
	for (int i = 0; i < 30000 && snap(a).job == 0; i++)
		usleep(1000);
	cr_assert_str_eq(snap(a).job_name, "suspend");
	for (int i = 0; i < 100000; i++) {
		cr_assert_eq(snap(b).state, DOM_RUNNING);
		(void)snap(a);
	}

	/* (d) other VMs' jobs complete while a hangs */
	run_ok(b, VM_OP_SUSPEND, NULL, 10000);
	run_ok(b, VM_OP_RESUME, NULL, 10000);

	/* (b) the queued job fails at its deadline, naming the holder */
	j2 = wait_job(&w2);
	t = now_ns() - t0;
	cr_assert_eq(j2->code, DOM_ERR_BUSY, "%s", j2->errmsg);
	cr_assert(strstr(j2->errmsg, "domain 'hung' is busy: job 'suspend' (id "), "%s",
		  j2->errmsg);
	cr_assert(strstr(j2->errmsg, "'reset' gave up after"), "%s", j2->errmsg);
	cr_assert_geq(t, 1000 * NSEC_PER_MSEC);

	/* (a) the holder fails at its deadline with a timeout */
	j1 = wait_job(&w1);
	cr_assert_eq(j1->code, DOM_ERR_TIMEOUT, "%s", j1->errmsg);
	cr_assert_geq(now_ns() - t0, 3000 * NSEC_PER_MSEC);
	wait_mon(a, DOM_MON_UNRESPONSIVE);
	dom_job_free(j1);
	dom_job_free(j2);

	/* (e) destroy works on the stopped QEMU, promptly */
	t0 = now_ns();
	run_ok(a, VM_OP_DESTROY, NULL, 10000);
	cr_assert_lt(now_ns() - t0, 5 * NSEC_PER_SEC, "destroy took %.1f s",
		     (double)(now_ns() - t0) / 1e9);
	wait_state(a, DOM_SHUTOFF);
	cr_assert_eq(kill(pid_a, 0), -1);

	/* (f) c: stop, a job times out, continue, the monitor recovers */
	cr_assert_eq(kill(snap(c).pid, SIGSTOP), 0);
	j = wait_job((submit(c, VM_OP_SUSPEND, NULL, 1000, &w3), &w3));
	cr_assert_eq(j->code, DOM_ERR_TIMEOUT, "%s", j->errmsg);
	dom_job_free(j);
	wait_mon(c, DOM_MON_UNRESPONSIVE);
	cr_assert_eq(kill(snap(c).pid, SIGCONT), 0);
	/* The late reply to 'stop' arrives and is discarded; QEMU did pause. */
	wait_mon(c, DOM_MON_OK);
	run_ok(c, VM_OP_RESUME, NULL, 10000);
	wait_state(c, DOM_RUNNING);
	run_ok(c, VM_OP_SUSPEND, NULL, 10000);
	wait_state(c, DOM_PAUSED);

	run_ok(b, VM_OP_DESTROY, NULL, 10000);
	run_ok(c, VM_OP_DESTROY, NULL, 10000);
}

Test(vm, hostile_config_refused, .init = setup, .fini = teardown)
{
	const char *bad[] = {
		"{\"name\": \"../x\"}",
		"{\"name\": \"a,b\"}",
		"{\"name\": \"ok\", \"memory\": true}",
		"{\"name\": \"ok\", \"disks\": [\"/tmp/a,if=none\"], \"bogus\": 1}",
		"{\"name\": \"ok\", \"no_such_field\": 1}",
		NULL,
	};
	char err[256];

	for (int i = 0; bad[i]; i++) {
		json_t *cfg = json_loads(bad[i], 0, NULL);
		struct domain *d;

		cr_assert_not_null(cfg);
		cr_assert_eq(vm_define(env, cfg, &d, err, sizeof(err)), -EINVAL, "accepted %s",
			     bad[i]);
		cr_assert_gt(strlen(err), 0);
		json_decref(cfg);
	}
	{
		struct domain *d = define("dup");
		json_t *cfg = json_pack("{s:s}", "name", "dup");

		cr_assert_eq(vm_define(env, cfg, &d, err, sizeof(err)), -EEXIST);
		json_decref(cfg);
	}
}

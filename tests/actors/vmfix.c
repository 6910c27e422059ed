/* SPDX-License-Identifier: MIT */
#include "vmfix.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "common/futex.h"
#include "common/rcu.h"
#include "common/util.h"

struct vmfix fx;

void vmfix_setup(void)
{
	struct vm_env_opts o = { 0 };
	char run[300], state[300];

	urcu_memb_register_thread();
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/corral-test-XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	snprintf(run, sizeof(run), "%s/run", fx.dir);
	snprintf(state, sizeof(state), "%s/state", fx.dir);
	cr_assert_eq(mkdir(run, 0700), 0);
	cr_assert_eq(mkdir(state, 0700), 0);
	cr_assert_eq(rt_new(2, &fx.rt), 0);
	cr_assert_eq(ioloop_new(2, &fx.io), 0);     /* two loops: they race under TSan */
	cr_assert_eq(reg_new(&fx.reg), 0);
	cr_assert_eq(evbus_new(0, &fx.bus), 0);
	cr_assert_eq(offload_new(2, &fx.off), 0);
	o.rt = fx.rt;
	o.off = fx.off;
	o.io = fx.io;
	o.reg = fx.reg;
	o.bus = fx.bus;
	o.runtime_dir = run;
	o.state_dir = state;
	{
		char err[512];

		cr_assert_eq(vm_env_new(&o, &fx.env, err, sizeof(err)), 0, "%s", err);
	}
}

static struct domain *all[256];
static int nall;

static int collect(struct domain *d, void *arg)
{
	int pid = dom_snap_rcu(d)->pid;

	/* Never leave a QEMU behind, whatever failed. */
	if (pid > 0) {
		kill(pid, SIGCONT);
		kill(pid, SIGKILL);
	}
	if (nall < 256)
		all[nall++] = d;
	return 0;
}

void vmfix_teardown(void)
{
	char cmd[300];

	nall = 0;
	crcu_read_lock();
	reg_for_each_rcu(fx.reg, collect, NULL);
	crcu_read_unlock();
	for (int i = 0; i < nall; i++) {
		reg_del(fx.reg, all[i]);
		actor_stop(dom_actor(all[i]));
	}
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);
	offload_free(fx.off);
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);
	urcu_memb_barrier();
	rt_free(fx.rt);
	ioloop_free(fx.io);
	urcu_memb_barrier();
	vm_env_free(fx.env);
	evbus_free(fx.bus);
	reg_free(fx.reg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", fx.dir);
	urcu_memb_unregister_thread();
}

static void on_done(struct dom_job *job, void *arg)
{
	struct vmfix_waiter *w = arg;

	w->job = job;
	completion_signal(&w->done);
}

struct dom_job *vmfix_submit(struct domain *d, enum vm_op op, json_t *args, uint64_t ms,
			     struct vmfix_waiter *w)
{
	struct dom_job *job;
	char err[256];

	completion_init(&w->done);
	cr_assert_eq(vm_job_new(op, args, ms * NSEC_PER_MSEC, on_done, w, &job, err,
				sizeof(err)), 0, "%s", err);
	cr_assert_eq(vm_submit(d, job), 0);
	return job;
}

struct dom_job *vmfix_wait(struct vmfix_waiter *w)
{
	cr_assert_eq(completion_wait(&w->done, 60 * NSEC_PER_SEC), 0, "job never ended");
	return w->job;
}

struct dom_job *vmfix_run(struct domain *d, enum vm_op op, json_t *args, uint64_t ms)
{
	struct vmfix_waiter w;

	vmfix_submit(d, op, args, ms, &w);
	return vmfix_wait(&w);
}

void vmfix_run_ok(struct domain *d, enum vm_op op, json_t *args, uint64_t ms)
{
	struct dom_job *job = vmfix_run(d, op, args, ms);

	cr_assert_eq(job->err, 0, "%s on %s failed: %s", vm_op_name(op), dom_name(d),
		     job->errmsg);
	dom_job_free(job);
}

struct snapview vmfix_snap(struct domain *d)
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
	v.events = s->counters.events;
	if (s->job.id)
		snprintf(v.job_name, sizeof(v.job_name), "%s", s->job.name);
	crcu_read_unlock();
	return v;
}

void vmfix_wait_state(struct domain *d, enum dom_state st)
{
	for (int i = 0; i < 30000 && vmfix_snap(d).state != st; i++)
		usleep(1000);
	cr_assert_eq(vmfix_snap(d).state, st, "%s: state %s, expected %s", dom_name(d),
		     dom_state_name(vmfix_snap(d).state), dom_state_name(st));
}

void vmfix_wait_mon(struct domain *d, enum dom_mon_state ms)
{
	for (int i = 0; i < 30000 && vmfix_snap(d).mon != ms; i++)
		usleep(1000);
	cr_assert_eq(vmfix_snap(d).mon, ms, "%s: monitor %s, expected %s", dom_name(d),
		     dom_mon_state_name(vmfix_snap(d).mon), dom_mon_state_name(ms));
}

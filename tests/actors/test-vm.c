/* SPDX-License-Identifier: MIT */
/*
 * VM lifecycle against real QEMU (-machine none): start, suspend, resume,
 * QMP passthrough, reset, destroy, exit causes, and hang isolation with one
 * QEMU SIGSTOPped.  The QMP simulator is used only for attach to a monitor
 * that never answers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "actors/vm.h"
#include "common/rcu.h"
#include "common/util.h"
#include "vmfix.h"

static struct domain *define(const char *name)
{
	json_t *cfg = json_pack("{s:s, s:s, s:s, s:i}", "name", name, "machine", "none",
				"accel", "tcg", "memory", 32);
	struct domain *d;
	char err[256];

	cr_assert_eq(vm_define_wait(fx.env, cfg, &d, err, sizeof(err)), 0, "%s", err);
	json_decref(cfg);
	return d;
}

static void undefine(struct domain *d)
{
	char err[256];

	cr_assert_eq(vm_undefine_wait(fx.env, d, err, sizeof(err)), 0, "%s", err);
}

Test(vm, lifecycle_on_real_qemu, .init = vmfix_setup, .fini = vmfix_teardown, .timeout = 120)
{
	struct domain *d = define("life1");
	struct dom_job *job;
	int pid;

	vmfix_run_ok(d, VM_OP_START, NULL, 30000);
	vmfix_wait_state(d, DOM_RUNNING);
	pid = vmfix_snap(d).pid;
	cr_assert_gt(pid, 0);
	cr_assert_eq(kill(pid, 0), 0, "QEMU is not running");
	vmfix_wait_mon(d, DOM_MON_OK);

	/* start on a running domain is refused with a clear message */
	job = vmfix_run(d, VM_OP_START, NULL, 5000);
	cr_assert_eq(job->code, DOM_ERR_STATE);
	cr_assert(strstr(job->errmsg, "already running"), "%s", job->errmsg);
	dom_job_free(job);

	vmfix_run_ok(d, VM_OP_SUSPEND, NULL, 10000);
	vmfix_wait_state(d, DOM_PAUSED);
	vmfix_run_ok(d, VM_OP_RESUME, NULL, 10000);
	vmfix_wait_state(d, DOM_RUNNING);
	vmfix_run_ok(d, VM_OP_RESET, NULL, 10000);

	/* QMP passthrough returns QEMU's own answer */
	{
		json_t *args = json_pack("{s:s}", "command", "{\"execute\":\"query-status\"}");

		job = vmfix_run(d, VM_OP_QMP, args, 10000);
		json_decref(args);
		cr_assert_eq(job->err, 0, "%s", job->errmsg);
		cr_assert_str_eq(json_string_value(json_object_get(job->result, "status")),
				 "running");
		dom_job_free(job);

		args = json_pack("{s:s}", "command", "{\"execute\":\"no-such-command\"}");
		job = vmfix_run(d, VM_OP_QMP, args, 10000);
		json_decref(args);
		cr_assert_eq(job->code, DOM_ERR_QEMU);
		cr_assert(strstr(job->errmsg, "CommandNotFound"), "%s", job->errmsg);
		dom_job_free(job);

		args = json_pack("{s:s}", "command", "{\"execute\": 42}");
		job = vmfix_run(d, VM_OP_QMP, args, 10000);
		json_decref(args);
		cr_assert_eq(job->code, DOM_ERR_INVALID, "%s", job->errmsg);
		dom_job_free(job);
	}

	vmfix_run_ok(d, VM_OP_DESTROY, NULL, 10000);
	vmfix_wait_state(d, DOM_SHUTOFF);
	cr_assert_str_eq(vmfix_snap(d).reason, "destroyed");
	cr_assert_eq(vmfix_snap(d).pid, 0);
	cr_assert_eq(kill(pid, 0), -1, "QEMU still exists after destroy");
	undefine(d);
}

/*
 * A job's QMP command needs a deadline, but not a timer of its own: the
 * monitor's timer stays armed across commands, so many jobs in a row add
 * no timers to the runtime's heap (each used to leave one there until its
 * job's deadline, cancelled or not).
 */
Test(vm, commands_in_a_row_add_no_timers, .init = vmfix_setup, .fini = vmfix_teardown,
     .timeout = 120)
{
	struct domain *d = define("timers1");
	struct rt_stats before, after;

	vmfix_run_ok(d, VM_OP_START, NULL, 30000);
	vmfix_wait_state(d, DOM_RUNNING);
	vmfix_wait_mon(d, DOM_MON_OK);
	vmfix_run_ok(d, VM_OP_SUSPEND, NULL, 60000);
	vmfix_run_ok(d, VM_OP_RESUME, NULL, 60000);
	rt_get_stats(fx.rt, &before);
	for (int i = 0; i < 100; i++) {
		vmfix_run_ok(d, VM_OP_SUSPEND, NULL, 60000);
		vmfix_run_ok(d, VM_OP_RESUME, NULL, 60000);
	}
	rt_get_stats(fx.rt, &after);
	cr_assert_leq(after.timers_pending, before.timers_pending + 2,
		      "200 jobs left %" PRIu64 " timers behind",
		      after.timers_pending - before.timers_pending);
	vmfix_run_ok(d, VM_OP_DESTROY, NULL, 10000);
	vmfix_wait_state(d, DOM_SHUTOFF);
	undefine(d);
}

Test(vm, exit_causes_are_reported, .init = vmfix_setup, .fini = vmfix_teardown, .timeout = 120)
{
	struct domain *d = define("crashy");
	json_t *quit = json_pack("{s:s}", "command", "{\"execute\":\"quit\"}");

	/* A crash: QEMU killed by SIGSEGV. */
	vmfix_run_ok(d, VM_OP_START, NULL, 30000);
	kill(vmfix_snap(d).pid, SIGSEGV);
	vmfix_wait_state(d, DOM_CRASHED);
	cr_assert_str_eq(vmfix_snap(d).reason, "crashed");

	/* Told to quit (not by a corral job): QMP quit, QEMU exits 0. */
	vmfix_run_ok(d, VM_OP_START, NULL, 30000);
	dom_job_free(vmfix_run(d, VM_OP_QMP, quit, 10000));
	vmfix_wait_state(d, DOM_SHUTOFF);
	cr_assert_str_eq(vmfix_snap(d).reason, "quit");
	json_decref(quit);
	undefine(d);
}

/*
 * One QEMU SIGSTOPped: (a) its job fails at its deadline, (b) the job
 * queued behind fails at its own deadline naming the holder, (c) snapshot
 * queries answer at once everywhere, (d) other VMs' jobs complete, (e)
 * destroy works at once, (f) after SIGCONT the monitor recovers.
 */
Test(vm, hung_qemu_costs_only_its_own_jobs, .init = vmfix_setup, .fini = vmfix_teardown, .timeout = 180)
{
	struct domain *a = define("hung"), *b = define("fine"), *c = define("thaw");
	struct vmfix_waiter w1, w2;
	struct dom_job *j1, *j2, *j;
	uint64_t t0, t;
	int pid_a;

	vmfix_run_ok(a, VM_OP_START, NULL, 30000);
	vmfix_run_ok(b, VM_OP_START, NULL, 30000);
	vmfix_run_ok(c, VM_OP_START, NULL, 30000);
	pid_a = vmfix_snap(a).pid;
	cr_assert_eq(kill(pid_a, SIGSTOP), 0);

	t0 = now_ns();
	vmfix_submit(a, VM_OP_SUSPEND, NULL, 3000, &w1);      /* holds, never answered */
	vmfix_submit(a, VM_OP_RESET, NULL, 1000, &w2);        /* waits behind it */

	/* (c) while a is held: queries answer, and show the holder */
	for (int i = 0; i < 30000 && vmfix_snap(a).job == 0; i++)
		usleep(1000);
	cr_assert_str_eq(vmfix_snap(a).job_name, "suspend");
	for (int i = 0; i < 100000; i++) {
		cr_assert_eq(vmfix_snap(b).state, DOM_RUNNING);
		(void)vmfix_snap(a);
	}

	/* (d) other VMs' jobs complete while a hangs */
	vmfix_run_ok(b, VM_OP_SUSPEND, NULL, 10000);
	vmfix_run_ok(b, VM_OP_RESUME, NULL, 10000);

	/* (b) the queued job fails at its deadline, naming the holder */
	j2 = vmfix_wait(&w2);
	t = now_ns() - t0;
	cr_assert_eq(j2->code, DOM_ERR_BUSY, "%s", j2->errmsg);
	cr_assert(strstr(j2->errmsg, "domain 'hung' is busy: job 'suspend' (id "), "%s",
		  j2->errmsg);
	cr_assert(strstr(j2->errmsg, "'reset' gave up after"), "%s", j2->errmsg);
	cr_assert_geq(t, 1000 * NSEC_PER_MSEC);

	/* (a) the holder fails at its deadline with a timeout */
	j1 = vmfix_wait(&w1);
	cr_assert_eq(j1->code, DOM_ERR_TIMEOUT, "%s", j1->errmsg);
	cr_assert_geq(now_ns() - t0, 3000 * NSEC_PER_MSEC);
	vmfix_wait_mon(a, DOM_MON_UNRESPONSIVE);
	dom_job_free(j1);
	dom_job_free(j2);

	/* (e) destroy works on the stopped QEMU, promptly */
	t0 = now_ns();
	vmfix_run_ok(a, VM_OP_DESTROY, NULL, 10000);
	cr_assert_lt(now_ns() - t0, 5 * NSEC_PER_SEC, "destroy took %.1f s",
		     (double)(now_ns() - t0) / 1e9);
	vmfix_wait_state(a, DOM_SHUTOFF);
	cr_assert_eq(kill(pid_a, 0), -1);

	/* (f) c: stop, a job times out, continue, the monitor recovers */
	cr_assert_eq(kill(vmfix_snap(c).pid, SIGSTOP), 0);
	j = vmfix_run(c, VM_OP_SUSPEND, NULL, 1000);
	cr_assert_eq(j->code, DOM_ERR_TIMEOUT, "%s", j->errmsg);
	dom_job_free(j);
	vmfix_wait_mon(c, DOM_MON_UNRESPONSIVE);
	cr_assert_eq(kill(vmfix_snap(c).pid, SIGCONT), 0);
	/* The late reply to 'stop' arrives and is discarded; QEMU did pause. */
	vmfix_wait_mon(c, DOM_MON_OK);
	vmfix_run_ok(c, VM_OP_RESUME, NULL, 10000);
	vmfix_wait_state(c, DOM_RUNNING);
	vmfix_run_ok(c, VM_OP_SUSPEND, NULL, 10000);
	vmfix_wait_state(c, DOM_PAUSED);

	vmfix_run_ok(b, VM_OP_DESTROY, NULL, 10000);
	vmfix_run_ok(c, VM_OP_DESTROY, NULL, 10000);
}

Test(vm, hostile_config_refused, .init = vmfix_setup, .fini = vmfix_teardown)
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
		cr_assert_eq(vm_define_wait(fx.env, cfg, &d, err, sizeof(err)), -EINVAL, "accepted %s",
			     bad[i]);
		cr_assert_gt(strlen(err), 0);
		json_decref(cfg);
	}
	{
		struct domain *d = define("dup"), *d2;
		char uuid[37];
		json_t *cfg;

		/* Another name with its UUID: taken. */
		uuid_format(dom_uuid(d), uuid);
		cfg = json_pack("{s:s, s:s}", "name", "dup2", "uuid", uuid);
		cr_assert_eq(vm_define_wait(fx.env, cfg, &d2, err, sizeof(err)), -EEXIST, "%s", err);
		json_decref(cfg);
		/* Its name with another UUID: a definition may not change it. */
		cfg = json_pack("{s:s, s:s}", "name", "dup", "uuid",
				"00000000-0000-4000-8000-000000000001");
		cr_assert_eq(vm_define_wait(fx.env, cfg, &d2, err, sizeof(err)), -EINVAL, "%s", err);
		cr_assert(strstr(err, "may not change"), "%s", err);
		json_decref(cfg);
		/* Its name again: the definition is replaced, the domain the same. */
		cfg = json_pack("{s:s, s:s, s:i}", "name", "dup", "machine", "none", "memory", 48);
		cr_assert_eq(vm_define_wait(fx.env, cfg, &d2, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(d2, d);
		json_decref(cfg);
	}
}

/* Definitions outlive the daemon: saved at define, loaded at start-up. */
Test(vm, definitions_are_saved_and_loaded, .init = vmfix_setup, .fini = vmfix_teardown)
{
	struct domain *d = define("keep1");
	uint8_t uuid[16];
	char path[512];
	struct stat st;
	json_t *saved;

	memcpy(uuid, dom_uuid(d), 16);
	snprintf(path, sizeof(path), "%s/state/domains/keep1.json", fx.dir);
	cr_assert_eq(stat(path, &st), 0, "%s was not written", path);
	cr_assert_eq(st.st_mode & 0077, 0, "definitions must not be readable by others");
	saved = json_load_file(path, 0, NULL);
	cr_assert_not_null(saved);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(saved, "config"),
							   "machine")), "none");
	json_decref(saved);

	/* As if the daemon went away: the domain leaves memory, the file stays. */
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	cr_assert_eq(vm_env_load(fx.env, NULL, NULL, NULL), 1);
	crcu_read_lock();
	d = reg_lookup_name_rcu(fx.reg, "keep1");
	cr_assert_not_null(d, "keep1 was not loaded back");
	cr_assert_eq(memcmp(dom_uuid(d), uuid, 16), 0, "the UUID changed across a restart");
	crcu_read_unlock();

	/* A damaged file is reported, not fatal. */
	snprintf(path, sizeof(path), "%s/state/domains/bad.json", fx.dir);
	{
		FILE *f = fopen(path, "w");

		cr_assert_not_null(f);
		fputs("{\"name\": \"bad\", \"memory\": ", f);
		fclose(f);
	}
	undefine(d);
	snprintf(path, sizeof(path), "%s/state/domains/keep1.json", fx.dir);
	cr_assert_eq(stat(path, &st), -1, "undefine left %s behind", path);
	cr_assert_eq(vm_env_load(fx.env, NULL, NULL, NULL), 0);
}

/* A running VM survives the daemon: the next one re-attaches to its QEMU. */
Test(vm, running_vm_is_reattached_after_restart, .init = vmfix_setup, .fini = vmfix_teardown,
     .timeout = 120)
{
	struct domain *d = define("survivor");
	char path[512];
	struct stat st;
	int pid;

	vmfix_run_ok(d, VM_OP_START, NULL, 30000);
	pid = vmfix_snap(d).pid;
	snprintf(path, sizeof(path), "%s/run/vms/survivor.json", fx.dir);
	cr_assert_eq(stat(path, &st), 0, "no runtime record for a running VM");

	/* The daemon goes away: the domain leaves memory; QEMU is left alone. */
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);
	cr_assert_eq(kill(pid, 0), 0, "stopping the domain touched QEMU");

	/* The next daemon loads the definition and re-attaches. */
	cr_assert_eq(vm_env_load(fx.env, NULL, NULL, NULL), 1);
	crcu_read_lock();
	d = reg_lookup_name_rcu(fx.reg, "survivor");
	crcu_read_unlock();
	cr_assert_not_null(d);
	vmfix_wait_state(d, DOM_RUNNING);
	vmfix_wait_mon(d, DOM_MON_OK);
	cr_assert_eq(vmfix_snap(d).pid, pid, "re-attached to another process");
	vmfix_run_ok(d, VM_OP_SUSPEND, NULL, 10000);
	vmfix_wait_state(d, DOM_PAUSED);
	vmfix_run_ok(d, VM_OP_DESTROY, NULL, 10000);
	vmfix_wait_state(d, DOM_SHUTOFF);
	cr_assert_eq(stat(path, &st), -1, "the runtime record outlived its QEMU");
}

/* ---- the autostart flag and the order of definition writes ---- */

/* Holds one offload thread until opened: a disk that does not answer. */
struct gate {
	struct offload_task task;
	struct completion *open;
};

static void gate_work(struct offload_task *t)
{
	struct gate *g = container_of(t, struct gate, task);

	cr_assert_eq(completion_wait(g->open, 60 * NSEC_PER_SEC), 0);
}

static void gate_done(struct offload_task *t)
{
}

/* Both offload threads (vmfix has two) wait on open: later tasks queue behind. */
static void block_disk(struct gate g[2], struct completion *open)
{
	completion_init(open);
	for (int i = 0; i < 2; i++) {
		g[i].task.work = gate_work;
		g[i].task.done = gate_done;
		g[i].open = open;
		offload_submit(fx.off, &g[i].task);
	}
}

static void set_autostart(struct domain *d, bool on, uint64_t ms, struct vmfix_waiter *w)
{
	json_t *args = json_pack("{s:b}", "enable", on);

	vmfix_submit(d, VM_OP_AUTOSTART, args, ms, w);
	json_decref(args);
}

static bool snap_autostart(struct domain *d)
{
	bool on;

	crcu_read_lock();
	on = dom_snap_rcu(d)->autostart;
	crcu_read_unlock();
	return on;
}

static json_t *saved_definition(const char *name)
{
	char path[512];
	json_t *doc;

	snprintf(path, sizeof(path), "%s/state/domains/%s.json", fx.dir, name);
	doc = json_load_file(path, 0, NULL);
	cr_assert_not_null(doc, "cannot read %s", path);
	return doc;
}

static json_int_t saved_memory(json_t *doc)
{
	return json_integer_value(json_object_get(json_object_get(doc, "config"), "memory"));
}

static void on_define_done(struct dom_job *job, void *arg)
{
	struct vmfix_waiter *w = arg;

	w->job = job;
	completion_signal(&w->done);
}

static void redefine(int memory, uint64_t ms, struct vmfix_waiter *w)
{
	json_t *cfg = json_pack("{s:s, s:s, s:s, s:i}", "name", "order1", "machine", "none",
				"accel", "tcg", "memory", memory);
	struct creds self;
	char err[256];

	creds_self(&self);
	completion_init(&w->done);
	cr_assert_eq(vm_define_submit(fx.env, cfg, &self, ms * NSEC_PER_MSEC, on_define_done, w,
				      err, sizeof(err)), 0, "%s", err);
	json_decref(cfg);
}

/*
 * A define whose job ends at its deadline while its write still waits for
 * the disk, then an autostart: the autostart must not write the old config
 * back over the new one (nor a define the old flag over a new flag).  Disk
 * and memory agree at the end, and each holds both changes.
 */
Test(vm, definition_writes_keep_their_order, .init = vmfix_setup, .fini = vmfix_teardown,
     .timeout = 120)
{
	struct domain *d = define("order1");
	struct vmfix_waiter wd, wa;
	struct completion open;
	struct gate g[2];
	struct dom_job *job;
	json_t *doc;

	cr_assert_not(snap_autostart(d));

	/* 1. redefine (times out, write pending), then mark. */
	block_disk(g, &open);
	redefine(64, 300, &wd);
	job = vmfix_wait(&wd);
	cr_assert_eq(job->code, DOM_ERR_TIMEOUT, "the redefine ended %d: %s", job->code,
		     job->errmsg);
	dom_job_free(job);
	set_autostart(d, true, 20000, &wa);
	usleep(200 * 1000);
	cr_assert_str_eq(vmfix_snap(d).job_name, "autostart");
	completion_signal(&open);
	job = vmfix_wait(&wa);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	cr_assert(json_is_true(json_object_get(job->result, "autostart")));
	dom_job_free(job);
	doc = saved_definition("order1");
	cr_assert_eq(saved_memory(doc), 64, "the mark wrote the old config back");
	cr_assert(json_is_true(json_object_get(doc, "autostart")));
	json_decref(doc);
	cr_assert(snap_autostart(d));
	crcu_read_lock();
	cr_assert_eq(json_integer_value(json_object_get(vm_config_rcu(d), "memory")), 64);
	crcu_read_unlock();

	/* 2. unmark (times out, write pending), then redefine: the flag stays off. */
	block_disk(g, &open);
	set_autostart(d, false, 300, &wa);
	job = vmfix_wait(&wa);
	cr_assert_eq(job->code, DOM_ERR_TIMEOUT, "the unmark ended %d: %s", job->code,
		     job->errmsg);
	dom_job_free(job);
	redefine(96, 20000, &wd);
	usleep(200 * 1000);
	completion_signal(&open);
	job = vmfix_wait(&wd);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	doc = saved_definition("order1");
	cr_assert_eq(saved_memory(doc), 96);
	cr_assert(json_is_false(json_object_get(doc, "autostart")),
		  "the redefine wrote the old flag back");
	json_decref(doc);
	cr_assert_not(snap_autostart(d));

	/* 3. A loaded definition keeps the flag; one without it is unmarked. */
	set_autostart(d, true, 20000, &wa);
	job = vmfix_wait(&wa);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	cr_assert_eq(vm_env_load(fx.env, NULL, NULL, NULL), 1);
	crcu_read_lock();
	d = reg_lookup_name_rcu(fx.reg, "order1");
	cr_assert_not_null(d);
	cr_assert(dom_snap_rcu(d)->autostart, "the flag was lost across a load");
	crcu_read_unlock();
	undefine(d);
}

/* SPDX-License-Identifier: MIT */
/*
 * attach, against the QMP simulator: what real QEMU cannot be made to do
 * (never answer the handshake, greet with garbage, send events before the
 * greeting), plus ACPI-style shutdown ending on the SHUTDOWN event, and
 * events reaching an event-bus subscriber.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "../qmp/helpers.h"
#include "actors/vm.h"
#include "common/futex.h"
#include "common/rcu.h"
#include "common/util.h"

static struct rt *rt;
static struct ioloop *io;
static struct registry *reg;
static struct evbus *bus;
static struct vm_env *env;
static char dir[256];
static pid_t sim = -1;

static void setup(void)
{
	struct vm_env_opts o = { 0 };
	const char *simexe = getenv("CORRAL_QMP_SIM");
	char *argv[16];
	int out, i = 0;

	cr_assert_not_null(simexe, "CORRAL_QMP_SIM is not set");
	urcu_memb_register_thread();
	th_mkdtemp(dir, sizeof(dir));
	argv[i++] = (char *)simexe;
	argv[i++] = "--dir";
	argv[i++] = dir;
	argv[i++] = "--count";
	argv[i++] = "4";
	argv[i++] = "--fault";
	argv[i++] = "1:hang=always";
	argv[i++] = "--fault";
	argv[i++] = "2:garbage=greeting";
	argv[i++] = "--fault";
	argv[i++] = "3:events-before-greeting=5";
	argv[i] = NULL;
	sim = th_spawn(argv, &out);
	th_wait_line(out, "ready 4\n");
	close(out);

	cr_assert_eq(rt_new(2, &rt), 0);
	cr_assert_eq(ioloop_new(1, &io), 0);
	cr_assert_eq(reg_new(&reg), 0);
	cr_assert_eq(evbus_new(&bus), 0);
	o.rt = rt;
	o.io = io;
	o.reg = reg;
	o.bus = bus;
	o.runtime_dir = dir;
	o.state_dir = dir;
	cr_assert_eq(vm_env_new(&o, &env), 0);
}

static struct domain *all[16];
static int nall;

static int collect(struct domain *d, void *arg)
{
	if (nall < 16)
		all[nall++] = d;
	return 0;
}

static void teardown(void)
{
	crcu_read_lock();
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
	if (sim > 0)
		th_kill_wait(sim, SIGTERM);
	th_rmdir(dir);
	urcu_memb_unregister_thread();
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

static struct dom_job *run(struct domain *d, enum vm_op op, json_t *args, uint64_t ms)
{
	struct waiter w;
	struct dom_job *job;
	char err[256];

	completion_init(&w.done);
	cr_assert_eq(vm_job_new(op, args, ms * NSEC_PER_MSEC, on_done, &w, &job, err,
				sizeof(err)), 0, "%s", err);
	json_decref(args);
	cr_assert_eq(vm_submit(d, job), 0);
	cr_assert_eq(completion_wait(&w.done, 60 * NSEC_PER_SEC), 0, "job never ended");
	return w.job;
}

static struct domain *attach(const char *name, int idx, uint64_t ms, int want_code)
{
	json_t *cfg = json_pack("{s:s}", "name", name);
	char path[512], err[256];
	struct domain *d;
	struct dom_job *job;

	cr_assert_eq(vm_define(env, cfg, &d, err, sizeof(err)), 0, "%s", err);
	json_decref(cfg);
	snprintf(path, sizeof(path), "%s/vm%d.qmp", dir, idx);
	job = run(d, VM_OP_ATTACH, json_pack("{s:s}", "qmp_socket", path), ms);
	cr_assert_eq(job->code, want_code, "attach %s: %s", name, job->errmsg);
	dom_job_free(job);
	return d;
}

static enum dom_state state(struct domain *d)
{
	enum dom_state st;

	crcu_read_lock();
	st = dom_snap_rcu(d)->state;
	crcu_read_unlock();
	return st;
}

static void wait_state(struct domain *d, enum dom_state st)
{
	for (int i = 0; i < 30000 && state(d) != st; i++)
		usleep(1000);
	cr_assert_eq(state(d), st, "%s is %s", dom_name(d), dom_state_name(state(d)));
}

static struct completion got_event;

static void on_event(struct evbus_sub *sub, void *arg)
{
	completion_signal(&got_event);
}

static bool find_event(struct evbus_sub *sub, const char *name, uint64_t ms)
{
	uint64_t deadline = now_ns() + ms * NSEC_PER_MSEC;

	while (now_ns() < deadline) {
		json_t *ev;

		while ((ev = evbus_sub_next(sub))) {
			bool hit = !strcmp(json_string_value(json_object_get(ev, "event")), name);

			json_decref(ev);
			if (hit)
				return true;
		}
		completion_wait(&got_event, 100 * NSEC_PER_MSEC);
		completion_init(&got_event);
	}
	return false;
}

Test(attach, drives_simulated_vm_and_forwards_events, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct evbus_sub *sub;
	struct domain *d;
	struct dom_job *job;

	completion_init(&got_event);
	cr_assert_eq(evbus_subscribe(bus, "sim0", 0, on_event, NULL, &sub), 0);
	d = attach("sim0", 0, 10000, 0);
	wait_state(d, DOM_RUNNING);

	dom_job_free(run(d, VM_OP_SUSPEND, NULL, 10000));
	wait_state(d, DOM_PAUSED);
	cr_assert(find_event(sub, "STOP", 10000), "STOP event not forwarded");
	dom_job_free(run(d, VM_OP_RESUME, NULL, 10000));
	cr_assert(find_event(sub, "RESUME", 10000), "RESUME event not forwarded");

	/* ACPI shutdown: the job ends on the guest's SHUTDOWN event. */
	job = run(d, VM_OP_SHUTDOWN, NULL, 10000);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	cr_assert(find_event(sub, "SHUTDOWN", 10000));
	/* The simulator then hangs up: with no pid, that ends the domain. */
	wait_state(d, DOM_SHUTOFF);
	evbus_unsubscribe(bus, sub);
}

Test(attach, monitor_that_never_answers_fails_at_deadline, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *ok = attach("fine", 0, 10000, 0);
	uint64_t t0 = now_ns();
	struct domain *d = attach("mute", 1, 1000, DOM_ERR_TIMEOUT);

	cr_assert_geq(now_ns() - t0, 1000 * NSEC_PER_MSEC);
	cr_assert_eq(state(d), DOM_SHUTOFF);
	/* The other VM is unaffected. */
	dom_job_free(run(ok, VM_OP_SUSPEND, NULL, 10000));
	wait_state(ok, DOM_PAUSED);
}

Test(attach, garbage_greeting_breaks_only_that_monitor, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = attach("junk", 2, 10000, DOM_ERR_MONITOR);
	struct domain *e = attach("early", 3, 10000, 0);
	uint64_t events;

	cr_assert_eq(state(d), DOM_SHUTOFF);
	wait_state(e, DOM_RUNNING);
	/* Events before the greeting were parsed and counted, not fatal. */
	for (int i = 0; i < 30000; i++) {
		crcu_read_lock();
		events = dom_snap_rcu(e)->counters.events;
		crcu_read_unlock();
		if (events >= 5)
			break;
		usleep(1000);
	}
	cr_assert_geq(events, 5);
}

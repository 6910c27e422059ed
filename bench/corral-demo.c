/* SPDX-License-Identifier: MIT */
/*
 * corral-demo: the runtime at work without QEMU.  Defines a few domains,
 * holds one of them in a job that never ends, queues a job behind it that
 * gives up at its deadline naming the holder, and reads snapshots of every
 * domain meanwhile: queries never wait.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "actors/domain.h"
#include "common/futex.h"
#include "common/rcu.h"
#include "common/util.h"

static void hold_start(struct domain *d, struct dom_job *job)
{
	/* Holds the domain until the domain stops. */
}

static const struct dom_job_ops hold_ops = { .name = "shutdown", .start = hold_start };

static void quick_start(struct domain *d, struct dom_job *job)
{
	dom_set_state(d, DOM_RUNNING, "booted");
	dom_job_finish(d, job, 0, 0, NULL, NULL);
}

static const struct dom_job_ops quick_ops = { .name = "start", .start = quick_start };
static const struct dom_job_ops suspend_ops = { .name = "suspend", .start = quick_start };

static void on_done(struct dom_job *job, void *arg)
{
	completion_signal(arg);
}

static int show(struct domain *d, void *arg)
{
	const struct dom_snapshot *s = dom_snap_rcu(d);
	char uuid[37];

	uuid_format(s->uuid, uuid);
	printf("  %-8s %s  %-9s job=%s\n", s->name, uuid, dom_state_name(s->state),
	       s->job.id ? s->job.name : "-");
	return 0;
}

int main(void)
{
	const char *names[] = { "web1", "web2", "db1" };
	struct domain *doms[3];
	struct registry *reg;
	struct completion c1, c2, c3;
	struct dom_job *j1, *j2, *j3;
	char err[256];
	struct rt *rt;
	uint64_t t0;

	urcu_memb_register_thread();
	if (rt_new(0, &rt) < 0 || reg_new(&reg) < 0)
		return 1;
	printf("runtime: %u workers\n", rt_nworkers(rt));
	for (int i = 0; i < 3; i++) {
		if (dom_new(rt, names[i], NULL, &doms[i], err, sizeof(err)) < 0 ||
		    reg_add(reg, doms[i]) < 0)
			return 1;
	}
	if (dom_new(rt, "../etc/passwd", NULL, &doms[0], err, sizeof(err)) < 0)
		printf("define '../etc/passwd': %s\n", err);

	completion_init(&c1);
	completion_init(&c2);
	completion_init(&c3);
	dom_job_new(&quick_ops, NULL, 5 * NSEC_PER_SEC, on_done, &c3, &j3);
	dom_submit(doms[1], j3);
	dom_job_new(&hold_ops, NULL, 3600 * NSEC_PER_SEC, on_done, &c1, &j1);
	dom_submit(doms[0], j1);
	dom_job_new(&suspend_ops, NULL, 1 * NSEC_PER_SEC, on_done, &c2, &j2);
	dom_submit(doms[0], j2);
	completion_wait(&c3, 5 * NSEC_PER_SEC);

	printf("while web1 is held by a job that never ends:\n");
	t0 = now_ns();
	crcu_read_lock();
	reg_for_each_rcu(reg, show, NULL);
	crcu_read_unlock();
	printf("  (listing took %.1f us)\n", (double)(now_ns() - t0) / 1e3);

	completion_wait(&c2, 10 * NSEC_PER_SEC);
	printf("suspend web1: %s\n", j2->errmsg);

	for (int i = 0; i < 3; i++) {
		reg_del(reg, doms[i]);
		actor_stop(dom_actor(doms[i]));
	}
	completion_wait(&c1, 10 * NSEC_PER_SEC);
	printf("held job after undefine: %s\n", j1->errmsg);
	dom_job_free(j1);
	dom_job_free(j2);
	dom_job_free(j3);
	urcu_memb_barrier();
	reg_free(reg);
	rt_free(rt);
	urcu_memb_unregister_thread();
	return 0;
}

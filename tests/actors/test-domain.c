/* SPDX-License-Identifier: MIT */
/*
 * Domain actor: jobs serialize, a waiting job fails at its deadline naming
 * the holder, a holder past its deadline times out, snapshot readers never
 * wait on a held domain, names are validated, stopping ends every job.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "common/rcu.h"

#include "actors/domain.h"
#include "common/futex.h"
#include "common/util.h"

static struct rt *rt;

static void setup(void)
{
	urcu_memb_register_thread();
	cr_assert_eq(rt_new(2, &rt), 0);
}

static void teardown(void)
{
	rt_free(rt);
	urcu_memb_unregister_thread();
}

/* A job the test drives: it holds the domain until a step arrives. */
static uint32_t holders_now;            /* atomic: jobs holding any domain */
static uint32_t max_holders;

static void hold_start(struct domain *d, struct dom_job *job)
{
	uint32_t n = __atomic_add_fetch(&holders_now, 1, __ATOMIC_ACQ_REL);

	if (n > max_holders)
		max_holders = n;
	/* priv != NULL: finish by itself after that many microseconds */
	if (job->priv)
		dom_job_step_at(d, job->id, 0, NULL,
				now_ns() + (uintptr_t)job->priv * NSEC_PER_USEC);
}

static void hold_step(struct domain *d, struct dom_job *job, int err, json_t *data)
{
	__atomic_sub_fetch(&holders_now, 1, __ATOMIC_ACQ_REL);
	dom_job_finish(d, job, err, 0, data, NULL);
}

static void hold_abort(struct domain *d, struct dom_job *job, int err)
{
	__atomic_sub_fetch(&holders_now, 1, __ATOMIC_ACQ_REL);
}

static const struct dom_job_ops hold_ops = {
	.name = "hold", .start = hold_start, .step = hold_step, .abort = hold_abort,
};

static void suspend_start(struct domain *d, struct dom_job *job)
{
	dom_job_finish(d, job, 0, 0, NULL, NULL);
}

static const struct dom_job_ops suspend_ops = { .name = "suspend", .start = suspend_start };

struct waiter {
	struct completion done;
	struct dom_job *job;
	uint64_t order;
};

static uint64_t finish_order;

static void on_done(struct dom_job *job, void *arg)
{
	struct waiter *w = arg;

	w->job = job;
	w->order = __atomic_fetch_add(&finish_order, 1, __ATOMIC_RELAXED);
	completion_signal(&w->done);
}

static struct dom_job *submit(struct domain *d, const struct dom_job_ops *ops, void *priv,
			      uint64_t timeout_ms, struct waiter *w)
{
	struct dom_job *job;

	completion_init(&w->done);
	cr_assert_eq(dom_job_new(ops, priv, timeout_ms * NSEC_PER_MSEC, on_done, w, &job), 0);
	cr_assert_eq(dom_submit(d, job), 0);
	return job;
}

static void wait_done(struct waiter *w)
{
	cr_assert_eq(completion_wait(&w->done, 60 * NSEC_PER_SEC), 0, "job never ended");
}

static struct domain *new_dom(const char *name)
{
	struct domain *d;
	char err[256];

	cr_assert_eq(dom_new(rt, name, NULL, &d, err, sizeof(err)), 0, "%s", err);
	return d;
}

/* Snapshots follow the done callback: wait (bounded) for the publication. */
#define WAIT_SNAP(d, field, want)                                               \
	do {                                                                    \
		uint64_t _v = 0;                                                \
		for (int _i = 0; _i < 30000; _i++) {                            \
			crcu_read_lock();                                  \
			_v = dom_snap_rcu(d)->field;                            \
			crcu_read_unlock();                                \
			if (_v == (want))                                       \
				break;                                          \
			usleep(1000);                                           \
		}                                                               \
		cr_assert_eq(_v, (want), #field " is %lu", (unsigned long)_v);  \
	} while (0)

static void stop_dom(struct domain *d)
{
	cr_assert_eq(actor_stop(dom_actor(d)), 0);
}

Test(domain, hostile_names_refused, .init = setup, .fini = teardown)
{
	const char *bad[] = { "", "-x", ".x", "_x", "a b", "a/b", "../etc", "a;rm", "a,b",
			      "a\nb", "é", "x" "1234567890123456789012345678901234567890"
			      "123456789012345678901234", NULL };
	const char *good[] = { "a", "web1", "A.b-c_d", "0", "x" "123456789012345678901234567"
			       "89012345678901234567890123456789012", NULL };
	char err[256];
	struct domain *d;

	for (int i = 0; bad[i]; i++) {
		cr_assert_not(dom_name_valid(bad[i]), "accepted '%s'", bad[i]);
		cr_assert_eq(dom_new(rt, bad[i], NULL, &d, err, sizeof(err)), -EINVAL);
		cr_assert(strstr(err, "invalid domain name"), "%s", err);
	}
	for (int i = 0; good[i]; i++) {
		cr_assert(dom_name_valid(good[i]), "refused '%s'", good[i]);
		cr_assert_eq(strlen(good[i]) <= 64, true);
	}
}

Test(domain, first_snapshot_is_published, .init = setup, .fini = teardown)
{
	struct domain *d = new_dom("web1");
	const struct dom_snapshot *s;

	crcu_read_lock();
	s = dom_snap_rcu(d);
	cr_assert_str_eq(s->name, "web1");
	cr_assert_eq(s->state, DOM_SHUTOFF);
	cr_assert_eq(s->job.id, 0);
	cr_assert_eq(s->uuid[6] >> 4, 4, "random UUIDs are version 4");
	crcu_read_unlock();
	stop_dom(d);
}

#define NJOBS 200

Test(domain, jobs_serialize_in_submission_order, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = new_dom("serial");
	static struct waiter w[NJOBS];

	max_holders = 0;
	for (int i = 0; i < NJOBS; i++)
		submit(d, &hold_ops, (void *)(uintptr_t)200, 60000, &w[i]);
	for (int i = 0; i < NJOBS; i++) {
		wait_done(&w[i]);
		cr_assert_eq(w[i].job->err, 0, "%s", w[i].job->errmsg);
		if (i)
			cr_assert_gt(w[i].order, w[i - 1].order, "jobs ended out of order");
	}
	cr_assert_eq(max_holders, 1, "two jobs held domains at once");
	WAIT_SNAP(d, counters.jobs_done, NJOBS);
	for (int i = 0; i < NJOBS; i++)
		dom_job_free(w[i].job);
	stop_dom(d);
}

Test(domain, waiting_job_fails_at_deadline_naming_holder, .init = setup, .fini = teardown)
{
	struct domain *d = new_dom("web1");
	struct waiter wh, ws;
	struct dom_job *holder, *susp;
	regex_t re;
	uint64_t t0 = now_ns(), waited;

	holder = submit(d, &hold_ops, NULL, 600000, &wh);
	susp = submit(d, &suspend_ops, NULL, 300, &ws);
	wait_done(&ws);
	waited = now_ns() - t0;
	cr_assert_eq(susp->code, DOM_ERR_BUSY);
	cr_assert_eq(susp->err, -EBUSY);
	cr_assert_geq(waited, 300 * NSEC_PER_MSEC, "gave up before its deadline");
	cr_assert_eq(regcomp(&re,
			     "^domain 'web1' is busy: job 'hold' \\(id [0-9]+\\) has held it for "
			     "[0-9]+\\.[0-9] s; 'suspend' gave up after [0-9]+\\.[0-9] s$",
			     REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, susp->errmsg, 0, NULL, 0), 0, "message: %s", susp->errmsg);
	regfree(&re);
	{
		char idtxt[64];

		snprintf(idtxt, sizeof(idtxt), "(id %lu)", (unsigned long)holder->id);
		cr_assert(strstr(susp->errmsg, idtxt), "holder id missing: %s", susp->errmsg);
	}
	/* The holder is unaffected and ends when told. */
	dom_job_step(d, holder->id, 0, NULL);
	wait_done(&wh);
	cr_assert_eq(holder->err, 0);
	WAIT_SNAP(d, counters.jobs_busy, 1);
	dom_job_free(susp);
	dom_job_free(holder);
	stop_dom(d);
}

Test(domain, holder_past_deadline_times_out, .init = setup, .fini = teardown)
{
	struct domain *d = new_dom("slow");
	struct waiter wh, wn;
	struct dom_job *holder, *next;

	holder = submit(d, &hold_ops, NULL, 200, &wh);
	next = submit(d, &suspend_ops, NULL, 30000, &wn);
	wait_done(&wh);
	cr_assert_eq(holder->code, DOM_ERR_TIMEOUT);
	cr_assert(strstr(holder->errmsg, "domain 'slow': job 'hold'"), "%s", holder->errmsg);
	cr_assert(strstr(holder->errmsg, "timed out after"), "%s", holder->errmsg);
	/* The domain passes to the next job. */
	wait_done(&wn);
	cr_assert_eq(next->err, 0, "%s", next->errmsg);
	/* A late step for the dead job is discarded, not misapplied. */
	dom_job_step(d, holder->id, 0, NULL);
	dom_job_free(holder);
	dom_job_free(next);
	stop_dom(d);
}

/* Readers are never held up by a domain stuck in a job. */
static struct domain *stuck;
static uint64_t stuck_job_id;

static void *reader(void *arg)
{
	uint64_t seen = 0;

	urcu_memb_register_thread();
	for (int i = 0; i < 200000; i++) {
		const struct dom_snapshot *s;

		crcu_read_lock();
		s = dom_snap_rcu(stuck);
		if (s->job.id == stuck_job_id && strcmp(s->job.name, "hold") == 0)
			seen++;
		crcu_read_unlock();
	}
	urcu_memb_unregister_thread();
	return (void *)(uintptr_t)seen;
}

Test(domain, snapshot_readers_complete_while_job_holds_forever, .init = setup,
     .fini = teardown, .timeout = 120)
{
	struct waiter wh, ww[3];
	struct dom_job *holder;
	pthread_t th[4];

	stuck = new_dom("stuck");
	/* A job that never ends by itself, and jobs queued behind it. */
	holder = submit(stuck, &hold_ops, NULL, 3600 * 1000, &wh);
	stuck_job_id = holder->id;
	for (int i = 0; i < 3; i++)
		submit(stuck, &suspend_ops, NULL, 3600 * 1000, &ww[i]);
	/* Wait until the snapshot shows the holder and the queue. */
	WAIT_SNAP(stuck, jobs_waiting, 3);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, reader, NULL);
	for (int i = 0; i < 4; i++) {
		void *seen;

		pthread_join(th[i], &seen);
		cr_assert_eq((uintptr_t)seen, 200000, "snapshot did not show the holder");
	}
	WAIT_SNAP(stuck, jobs_waiting, 3);
	/* Stopping the domain ends the holder and every waiter with "gone". */
	stop_dom(stuck);
	wait_done(&wh);
	cr_assert_eq(holder->code, DOM_ERR_GONE);
	for (int i = 0; i < 3; i++) {
		wait_done(&ww[i]);
		cr_assert_eq(ww[i].job->code, DOM_ERR_GONE);
		cr_assert(strstr(ww[i].job->errmsg, "was removed"), "%s", ww[i].job->errmsg);
		dom_job_free(ww[i].job);
	}
	dom_job_free(holder);
}

Test(domain, submit_to_stopped_domain_fails, .init = setup, .fini = teardown)
{
	struct domain *d = new_dom("gone");
	struct dom_job *job;
	struct waiter w;

	dom_ref(d);
	stop_dom(d);
	for (int i = 0; i < 30000 && !mbx_closed(&dom_actor(d)->mbx); i++)
		usleep(1000);
	completion_init(&w.done);
	cr_assert_eq(dom_job_new(&suspend_ops, NULL, NSEC_PER_SEC, on_done, &w, &job), 0);
	cr_assert_eq(dom_submit(d, job), -ESHUTDOWN);
	dom_job_free(job);
	dom_unref(d);
}

/* SPDX-License-Identifier: MIT */
/*
 * Actor runtime: exclusivity (never two workers on one actor), delivery
 * under many producers, stop and reclamation, delayed sends, message
 * deadlines, and an idle runtime that uses no CPU.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "common/rcu.h"

#include "actors/actor.h"
#include "common/futex.h"
#include "common/util.h"

struct counter_actor {
	struct actor actor;
	uint32_t inside;                /* atomic: workers inside handle() now */
	uint64_t handled;               /* actor only */
	uint64_t next[16];              /* actor only: expected seq per producer */
	uint64_t expect;                /* signal done after this many */
	struct completion all_done;
	struct completion freed;
	uint64_t expired;
	uint64_t last_timer_seq;
	bool timer_order_ok;
};

struct tmsg {
	struct mbx_msg msg;
	unsigned producer;
	uint64_t seq;
};

static uint32_t drops;

static void tmsg_drop(struct mbx_msg *m, int err)
{
	__atomic_fetch_add(&drops, 1, __ATOMIC_RELAXED);
	free(container_of(m, struct tmsg, msg));
}

static struct tmsg *tmsg_new(unsigned p, uint64_t seq)
{
	struct tmsg *t = malloc(sizeof(*t));

	cr_assert(t);
	mbx_msg_init(&t->msg, 1, tmsg_drop);
	t->producer = p;
	t->seq = seq;
	return t;
}

static void counter_handle(struct actor *a, struct mbx_msg *m)
{
	struct counter_actor *c = container_of(a, struct counter_actor, actor);
	struct tmsg *t = container_of(m, struct tmsg, msg);
	uint32_t was = __atomic_fetch_add(&c->inside, 1, __ATOMIC_ACQ_REL);

	cr_assert_eq(was, 0, "two workers ran one actor at once");
	cr_assert(actor_is_current(a));
	if (m->type == 1) {
		cr_assert_eq(t->seq, c->next[t->producer], "out of order for producer %u",
			     t->producer);
		c->next[t->producer]++;
	} else if (m->type == 2) {
		/* timer: seq carries the deadline order */
		if (t->seq < c->last_timer_seq)
			c->timer_order_ok = false;
		c->last_timer_seq = t->seq;
	}
	/* A little work, so turns overlap with sends. */
	for (volatile int i = 0; i < 50; i++)
		;
	__atomic_fetch_sub(&c->inside, 1, __ATOMIC_ACQ_REL);
	free(t);
	if (++c->handled == c->expect)
		completion_signal(&c->all_done);
}

static void counter_expire(struct actor *a, struct mbx_msg *m)
{
	struct counter_actor *c = container_of(a, struct counter_actor, actor);

	c->expired++;
	free(container_of(m, struct tmsg, msg));
	if (++c->handled == c->expect)
		completion_signal(&c->all_done);
}

static void counter_free(struct actor *a)
{
	struct counter_actor *c = container_of(a, struct counter_actor, actor);

	/* The test owns the memory; it waits for this signal. */
	completion_signal(&c->freed);
}

static const struct actor_ops counter_ops = {
	.kind = "counter",
	.handle = counter_handle,
	.expire = counter_expire,
	.free = counter_free,
};

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

static void counter_init(struct counter_actor *c, uint64_t expect)
{
	memset(c, 0, sizeof(*c));
	actor_init(&c->actor, rt, &counter_ops);
	c->expect = expect;
	c->timer_order_ok = true;
	completion_init(&c->all_done);
	completion_init(&c->freed);
}

static void counter_stop_and_wait(struct counter_actor *c)
{
	cr_assert_eq(actor_stop(&c->actor), 0);
	cr_assert_eq(completion_wait(&c->freed, 30 * NSEC_PER_SEC), 0,
		     "actor not reclaimed after stop");
}

#define NPROD 6
#define PER_PROD 100000

struct prod_arg {
	struct actor *a;
	unsigned p;
};

static void *producer(void *arg)
{
	struct prod_arg *pa = arg;

	urcu_memb_register_thread();
	for (uint64_t i = 0; i < PER_PROD; i++)
		cr_assert_eq(actor_send(pa->a, &tmsg_new(pa->p, i)->msg), 0);
	urcu_memb_unregister_thread();
	return NULL;
}

Test(runtime, many_producers_one_actor_in_order_exclusive, .init = setup, .fini = teardown,
     .timeout = 240)
{
	static struct counter_actor c;
	pthread_t th[NPROD];
	struct prod_arg args[NPROD];

	counter_init(&c, (uint64_t)NPROD * PER_PROD);
	for (unsigned p = 0; p < NPROD; p++) {
		args[p] = (struct prod_arg){ .a = &c.actor, .p = p };
		pthread_create(&th[p], NULL, producer, &args[p]);
	}
	for (unsigned p = 0; p < NPROD; p++)
		pthread_join(th[p], NULL);
	cr_assert_eq(completion_wait(&c.all_done, 120 * NSEC_PER_SEC), 0,
		     "only %lu of %lu messages handled", (unsigned long)c.handled,
		     (unsigned long)c.expect);
	for (unsigned p = 0; p < NPROD; p++)
		cr_assert_eq(c.next[p], PER_PROD);
	counter_stop_and_wait(&c);
}

/* Many actors, each fed by several producers: workers never share one. */
#define NACT 16

static struct counter_actor many[NACT];

static void *spray(void *arg)
{
	unsigned p = (unsigned)(uintptr_t)arg;

	urcu_memb_register_thread();
	for (uint64_t i = 0; i < 20000; i++)
		for (unsigned k = 0; k < NACT; k++)
			cr_assert_eq(actor_send(&many[k].actor, &tmsg_new(p, i)->msg), 0);
	urcu_memb_unregister_thread();
	return NULL;
}

Test(runtime, many_actors_never_on_two_workers, .init = setup, .fini = teardown,
     .timeout = 240)
{
	pthread_t th[4];

	for (unsigned k = 0; k < NACT; k++)
		counter_init(&many[k], 4 * 20000);
	for (unsigned p = 0; p < 4; p++)
		pthread_create(&th[p], NULL, spray, (void *)(uintptr_t)p);
	for (unsigned p = 0; p < 4; p++)
		pthread_join(th[p], NULL);
	for (unsigned k = 0; k < NACT; k++)
		cr_assert_eq(completion_wait(&many[k].all_done, 120 * NSEC_PER_SEC), 0);
	for (unsigned k = 0; k < NACT; k++)
		counter_stop_and_wait(&many[k]);
}

Test(runtime, send_to_stopped_actor_fails, .init = setup, .fini = teardown)
{
	static struct counter_actor c;
	struct tmsg *t;

	counter_init(&c, 1);
	actor_ref(&c.actor);            /* keep it while we poke at it */
	cr_assert_eq(actor_stop(&c.actor), 0);
	/* The stop is handled asynchronously; wait until the mailbox closes. */
	for (int i = 0; i < 30000 && !mbx_closed(&c.actor.mbx); i++)
		usleep(1000);
	cr_assert(mbx_closed(&c.actor.mbx));
	t = tmsg_new(0, 0);
	cr_assert_eq(actor_send(&c.actor, &t->msg), -ESHUTDOWN);
	free(t);
	cr_assert_eq(actor_stop(&c.actor), -ESHUTDOWN);
	actor_unref(&c.actor);
	cr_assert_eq(completion_wait(&c.freed, 30 * NSEC_PER_SEC), 0);
}

/* Messages racing with a stop are handled or dropped: none is lost. */
static struct counter_actor racer;

static void *race_sender(void *arg)
{
	uint64_t accepted = 0;

	urcu_memb_register_thread();
	for (uint64_t i = 0; i < 50000; i++) {
		struct tmsg *t = tmsg_new((unsigned)(uintptr_t)arg, i);

		if (actor_send(&racer.actor, &t->msg) == 0)
			accepted++;
		else
			free(t);
	}
	urcu_memb_unregister_thread();
	return (void *)(uintptr_t)accepted;
}

static void racer_handle(struct actor *a, struct mbx_msg *m)
{
	struct counter_actor *c = container_of(a, struct counter_actor, actor);

	c->handled++;
	free(container_of(m, struct tmsg, msg));
}

static const struct actor_ops racer_ops = {
	.kind = "racer",
	.handle = racer_handle,
	.free = counter_free,
};

Test(runtime, stop_races_with_senders_nothing_lost, .init = setup, .fini = teardown,
     .timeout = 120)
{
	pthread_t th[3];
	uint64_t accepted = 0;

	memset(&racer, 0, sizeof(racer));
	actor_init(&racer.actor, rt, &racer_ops);
	completion_init(&racer.freed);
	drops = 0;
	actor_ref(&racer.actor);        /* senders may run after the stop */
	for (unsigned p = 0; p < 3; p++)
		pthread_create(&th[p], NULL, race_sender, (void *)(uintptr_t)p);
	usleep(2000);
	cr_assert_eq(actor_stop(&racer.actor), 0);
	for (unsigned p = 0; p < 3; p++) {
		void *r;

		pthread_join(th[p], &r);
		accepted += (uintptr_t)r;
	}
	actor_unref(&racer.actor);
	cr_assert_eq(completion_wait(&racer.freed, 30 * NSEC_PER_SEC), 0);
	/* Freed: every accepted message was handled once or dropped once. */
	cr_assert_eq(racer.handled + drops, accepted, "handled %lu + dropped %u != accepted %lu",
		     (unsigned long)racer.handled, drops, (unsigned long)accepted);
}

/* Wait (30 s at most) until no timer is pending: counted just after it is sent. */
static void timers_settle(struct rt_stats *st)
{
	for (int i = 0; i < 30000; i++) {
		rt_get_stats(rt, st);
		if (st->timers_pending == 0)
			break;
		usleep(1000);
	}
	cr_assert_eq(st->timers_pending, 0);
}

/*
 * The timer thread must fire in deadline order, whatever the order of
 * submission.  That can only be judged if every message was submitted
 * before the first deadline: on a loaded machine submitting 20,000 may take
 * longer than any fixed margin, so a try whose submission overran its first
 * deadline is not judged, and the next one allows ten times more.
 */
Test(runtime, delayed_sends_fire_in_deadline_order, .init = setup, .fini = teardown,
     .timeout = 300)
{
	static struct counter_actor c;
	const unsigned n = 20000;
	uint64_t margin = 50 * NSEC_PER_MSEC;
	struct rt_stats st;
	bool judged = false;

	for (int attempt = 0; attempt < 4 && !judged; attempt++, margin *= 10) {
		uint64_t base = now_ns() + margin;

		counter_init(&c, n);
		/* Submit in a scrambled order; seq = position in deadline order. */
		for (unsigned i = 0; i < n; i++) {
			unsigned k = (i * 7919u) % n;
			struct tmsg *t = tmsg_new(0, k);

			t->msg.type = 2;
			cr_assert_eq(rt_send_at(&c.actor, &t->msg, base + (uint64_t)k * 10000), 0);
		}
		judged = now_ns() < base;
		cr_assert_eq(completion_wait(&c.all_done, 120 * NSEC_PER_SEC), 0);
		if (judged)
			cr_assert(c.timer_order_ok, "a later deadline fired before an earlier one");
		timers_settle(&st);
		counter_stop_and_wait(&c);
	}
	cr_assert(judged, "submitting 20,000 timers took longer than 50 s");
	cr_assert_geq(st.timers_fired, n);
}

Test(runtime, message_past_deadline_goes_to_expire, .init = setup, .fini = teardown)
{
	static struct counter_actor c;
	struct tmsg *live = tmsg_new(0, 0), *late = tmsg_new(1, 0);

	counter_init(&c, 2);
	late->msg.deadline_ns = now_ns() - 1;   /* already past */
	live->msg.deadline_ns = now_ns() + 60 * NSEC_PER_SEC;
	cr_assert_eq(actor_send(&c.actor, &late->msg), 0);
	cr_assert_eq(actor_send(&c.actor, &live->msg), 0);
	cr_assert_eq(completion_wait(&c.all_done, 30 * NSEC_PER_SEC), 0);
	cr_assert_eq(c.expired, 1);
	cr_assert_eq(c.next[0], 1, "the live message was handled");
	counter_stop_and_wait(&c);
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

Test(runtime, idle_runtime_uses_no_cpu, .init = setup, .fini = teardown)
{
	static struct counter_actor c;
	uint64_t before, used;

	/* A pending far-away timer must not make the timer thread poll either. */
	counter_init(&c, 1);
	struct tmsg *t = tmsg_new(0, 0);

	t->msg.type = 2;
	rt_send_at(&c.actor, &t->msg, now_ns() + 3600 * NSEC_PER_SEC);
	usleep(100 * 1000);             /* let the threads settle */
	before = cpu_ns();
	sleep(1);
	used = cpu_ns() - before;
	/* A polling loop would burn most of a second; idle sleeps burn ~0. */
	cr_assert_lt(used, 20 * NSEC_PER_MSEC, "idle runtime used %.1f ms of CPU in 1 s",
		     (double)used / 1e6);
	/* The pending timer holds a reference; rt_free drops it at teardown. */
	cr_assert_eq(actor_stop(&c.actor), 0);
}

/*
 * The timer thread sleeps until its earliest deadline, and only a request
 * due before that wakes it.  So: one timer an hour away, then many rounds
 * in which several threads, released at once, each send a timer due now.
 * One sender's request wakes the thread; the others race with it as it
 * takes the queue and goes back to sleep.  A request whose wake-up was
 * lost (a sender that saw a stale deadline, or one that came while the
 * thread was awake and was not looked for before it slept) would wait
 * for the hour, and its round would never complete.
 */
#define NEAR_THREADS 4
#define NEAR_ROUNDS 3000

struct near_arg {
	struct counter_actor *c;
	pthread_barrier_t *go, *sent;
};

static void *near_sender(void *arg)
{
	struct near_arg *na = arg;

	urcu_memb_register_thread();
	for (unsigned r = 0; r < NEAR_ROUNDS; r++) {
		struct tmsg *t = tmsg_new(0, r);

		t->msg.type = 3;
		pthread_barrier_wait(na->go);
		cr_assert_eq(rt_send_at(&na->c->actor, &t->msg, now_ns()), 0);
		pthread_barrier_wait(na->sent);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

Test(runtime, earlier_deadline_wakes_a_sleeping_timer_thread, .init = setup, .fini = teardown,
     .timeout = 300)
{
	static struct counter_actor c;
	struct tmsg *far = tmsg_new(0, 0);
	pthread_barrier_t go, sent;
	pthread_t th[NEAR_THREADS];
	struct near_arg na = { .c = &c, .go = &go, .sent = &sent };

	counter_init(&c, 0);
	far->msg.type = 3;
	cr_assert_eq(rt_send_at(&c.actor, &far->msg, now_ns() + 3600 * NSEC_PER_SEC), 0);
	pthread_barrier_init(&go, NULL, NEAR_THREADS + 1);
	pthread_barrier_init(&sent, NULL, NEAR_THREADS + 1);
	for (unsigned i = 0; i < NEAR_THREADS; i++)
		pthread_create(&th[i], NULL, near_sender, &na);
	for (unsigned r = 0; r < NEAR_ROUNDS; r++) {
		/* The actor is idle: the last round's signal was its last act. */
		c.expect = (uint64_t)(r + 1) * NEAR_THREADS;
		completion_init(&c.all_done);
		pthread_barrier_wait(&go);
		pthread_barrier_wait(&sent);
		/* Generous: every timer of the round is already due. */
		cr_assert_eq(completion_wait(&c.all_done, 60 * NSEC_PER_SEC), 0,
			     "round %u: timers due now still unfired after 60 s", r);
	}
	for (unsigned i = 0; i < NEAR_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&sent);
	/* The far timer holds a reference; rt_free drops it at teardown. */
	cr_assert_eq(actor_stop(&c.actor), 0);
}

/*
 * A cancelled delayed send is dropped at its deadline (-ECANCELED), never
 * handled, and counted; the one sent after it, uncancelled, still fires.
 */
Test(runtime, cancelled_delayed_send_is_dropped_not_handled, .init = setup, .fini = teardown)
{
	static struct counter_actor c;
	struct tmsg *gone = tmsg_new(0, 0), *kept = tmsg_new(0, 1);
	uint32_t drops_before = __atomic_load_n(&drops, __ATOMIC_RELAXED);
	uint64_t now = now_ns();
	struct rt_stats st;

	counter_init(&c, 1);
	gone->msg.type = 3;
	kept->msg.type = 3;
	cr_assert_eq(rt_send_at(&c.actor, &gone->msg, now + 20 * NSEC_PER_MSEC), 0);
	rt_cancel_at(&gone->msg);
	cr_assert_eq(rt_send_at(&c.actor, &kept->msg, now + 40 * NSEC_PER_MSEC), 0);
	cr_assert_eq(completion_wait(&c.all_done, 30 * NSEC_PER_SEC), 0);
	timers_settle(&st);
	cr_assert_eq(st.timers_cancelled, 1);
	cr_assert_eq(st.timers_fired, 1);
	cr_assert_eq(c.handled, 1, "the cancelled message was handled");
	cr_assert_eq(__atomic_load_n(&drops, __ATOMIC_RELAXED), drops_before + 1);
	counter_stop_and_wait(&c);
}

/*
 * A turn run on a thread of the caller's (actor_send_run, as the ioloop
 * does) that leaves the runtime idle must not touch it afterwards: a
 * quiesce that sees it idle may free it at once.  ThreadSanitizer reports
 * any read of rt after that turn's last decrement as a race with free().
 */
struct run_here {
	struct counter_actor *c;
	struct tmsg *t;
};

static void *run_here_thread(void *arg)
{
	struct run_here *h = arg;

	urcu_memb_register_thread();
	/* Inside a read section that outlasts the turn, as a loop callback is. */
	urcu_memb_read_lock();
	cr_assert_eq(actor_send_run(&h->c->actor, &h->t->msg), 0);
	usleep(20000);
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
	return NULL;
}

Test(runtime, free_after_quiesce_races_no_turn_run_elsewhere, .timeout = 120)
{
	static struct counter_actor c;

	urcu_memb_register_thread();
	for (int i = 0; i < 50; i++) {
		struct run_here h = { &c, tmsg_new(0, 0) };
		pthread_t th;

		cr_assert_eq(rt_new(1, &rt), 0);
		counter_init(&c, 1);
		cr_assert_eq(pthread_create(&th, NULL, run_here_thread, &h), 0);
		cr_assert_eq(completion_wait(&c.all_done, 30 * NSEC_PER_SEC), 0);
		cr_assert_eq(rt_quiesce(rt, 30 * NSEC_PER_SEC), 0);
		rt_free(rt);
		pthread_join(th, NULL);
	}
	rt = NULL;
	urcu_memb_unregister_thread();
}

/* SPDX-License-Identifier: MIT */
/*
 * Mailbox: the scheduling contract (schedule exactly on 0 -> 1), ordering
 * per producer and no lost message under many producers, close semantics.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <urcu/urcu-memb.h>

#include "common/util.h"
#include "mailbox/mbx.h"

struct tmsg {
	struct mbx_msg msg;
	unsigned producer;
	uint64_t seq;
};

static unsigned dropped;

static void tmsg_drop(struct mbx_msg *m, int err)
{
	cr_assert_eq(err, -ESHUTDOWN);
	__atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
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

Test(mbx, schedule_only_on_empty_to_nonempty)
{
	struct mbx m;
	struct mbx_msg *got;

	mbx_init(&m);
	cr_assert_eq(mbx_send(&m, &tmsg_new(0, 0)->msg), MBX_SCHEDULE);
	cr_assert_eq(mbx_send(&m, &tmsg_new(0, 1)->msg), MBX_DELIVERED);
	cr_assert_eq(mbx_pending(&m), 2);

	/* The consumer takes one message but is still "running" it. */
	got = mbx_recv(&m);
	cr_assert_eq(container_of(got, struct tmsg, msg)->seq, 0);
	free(container_of(got, struct tmsg, msg));
	got = mbx_recv(&m);
	free(container_of(got, struct tmsg, msg));
	/* The queue is now empty, yet the consumer has not released: no schedule. */
	cr_assert_eq(mbx_send(&m, &tmsg_new(0, 2)->msg), MBX_DELIVERED,
		     "a send while the consumer still runs must not schedule it again");
	cr_assert_eq(mbx_release(&m, 2), 1, "one message left: consumer keeps ownership");
	got = mbx_recv(&m);
	free(container_of(got, struct tmsg, msg));
	cr_assert_eq(mbx_release(&m, 1), 0);
	cr_assert_eq(mbx_send(&m, &tmsg_new(0, 3)->msg), MBX_SCHEDULE);
	cr_assert_eq(mbx_drain(&m, -ESHUTDOWN), 1);
}

Test(mbx, send_to_closed_fails_and_keeps_message)
{
	struct mbx m;
	struct tmsg *t = tmsg_new(0, 0);

	mbx_init(&m);
	mbx_close(&m);
	cr_assert(mbx_closed(&m));
	cr_assert_eq(mbx_send(&m, &t->msg), -ESHUTDOWN);
	/* Still ours: free it ourselves. */
	free(t);
}

Test(mbx, deadline_field_travels)
{
	struct mbx m;
	struct tmsg *t = tmsg_new(0, 0);
	struct mbx_msg *got;

	mbx_init(&m);
	t->msg.deadline_ns = 12345;
	mbx_send(&m, &t->msg);
	got = mbx_recv(&m);
	cr_assert_eq(got->deadline_ns, 12345);
	mbx_release(&m, 1);
	free(t);
}

/*
 * Many producers, one consumer driven only by MBX_SCHEDULE tokens: every
 * message arrives, in order per producer, and the consumer never finds a
 * counted message missing (mbx_recv would return NULL).
 */
#define NPROD 8
#define PER_PROD 200000

static struct mbx big;
static sem_t tokens;
static unsigned schedules;

static void *producer(void *arg)
{
	unsigned p = (unsigned)(uintptr_t)arg;

	for (uint64_t i = 0; i < PER_PROD; i++) {
		int r = mbx_send(&big, &tmsg_new(p, i)->msg);

		cr_assert(r >= 0);
		if (r == MBX_SCHEDULE) {
			__atomic_fetch_add(&schedules, 1, __ATOMIC_RELAXED);
			sem_post(&tokens);
		}
	}
	return NULL;
}

Test(mbx, many_producers_no_loss_fifo_per_producer, .timeout = 240)
{
	pthread_t th[NPROD];
	uint64_t next[NPROD] = { 0 };
	uint64_t total = 0, turns = 0;

	mbx_init(&big);
	sem_init(&tokens, 0, 0);
	for (unsigned p = 0; p < NPROD; p++)
		pthread_create(&th[p], NULL, producer, (void *)(uintptr_t)p);

	while (total < (uint64_t)NPROD * PER_PROD) {
		uint64_t left;

		sem_wait(&tokens);
		turns++;
		/* We own the mailbox until release reports zero. */
		do {
			uint64_t n = mbx_pending(&big);

			cr_assert_gt(n, 0, "scheduled with nothing counted");
			if (n > 64)
				n = 64;
			for (uint64_t i = 0; i < n; i++) {
				struct mbx_msg *m = mbx_recv(&big);
				struct tmsg *t;

				cr_assert_not_null(m, "a counted message was not linked");
				t = container_of(m, struct tmsg, msg);
				cr_assert_eq(t->seq, next[t->producer],
					     "producer %u: got %lu, expected %lu", t->producer,
					     (unsigned long)t->seq, (unsigned long)next[t->producer]);
				next[t->producer]++;
				free(t);
			}
			total += n;
			left = mbx_release(&big, n);
		} while (left);
		/* No second token may be pending for an ownership we just ended... */
	}
	for (unsigned p = 0; p < NPROD; p++) {
		pthread_join(th[p], NULL);
		cr_assert_eq(next[p], PER_PROD);
	}
	/* ...and every schedule was one ownership: no double schedule. */
	cr_assert_eq(turns, __atomic_load_n(&schedules, __ATOMIC_RELAXED));
	cr_assert_eq(sem_trywait(&tokens), -1, "a schedule token was left over");
	cr_assert_eq(mbx_pending(&big), 0);
}

/* Close racing with producers: every message is handled or dropped, once. */
static void *closing_producer(void *arg)
{
	unsigned accepted = 0;

	for (uint64_t i = 0; i < 100000; i++) {
		struct tmsg *t = tmsg_new(0, i);

		if (mbx_send(&big, &t->msg) < 0)
			free(t);
		else
			accepted++;
	}
	return (void *)(uintptr_t)accepted;
}

Test(mbx, close_races_with_senders_nothing_lost, .timeout = 120)
{
	pthread_t th[4];
	uint64_t accepted = 0, handled = 0;

	mbx_init(&big);
	dropped = 0;
	for (unsigned p = 0; p < 4; p++)
		pthread_create(&th[p], NULL, closing_producer, NULL);
	/* Consume a little, then close mid-stream. */
	while (handled < 1000) {
		struct mbx_msg *m;

		if (mbx_pending(&big) == 0)
			continue;
		m = mbx_recv(&big);
		free(container_of(m, struct tmsg, msg));
		mbx_release(&big, 1);
		handled++;
	}
	mbx_close(&big);
	for (unsigned p = 0; p < 4; p++) {
		void *r;

		pthread_join(th[p], &r);
		accepted += (uintptr_t)r;
	}
	/* All producers are gone: what is left is dropped, once each. */
	mbx_drain(&big, -ESHUTDOWN);
	cr_assert_eq(handled + dropped, accepted);
}

/* A message handled and sent again (an embedded I/O message) stays linked right. */
Test(mbx, resend_of_a_received_message_is_clean, .timeout = 30)
{
	struct mbx m;
	struct tmsg *a = tmsg_new(0, 0), *b = tmsg_new(0, 1);
	struct mbx_msg *got;

	mbx_init(&m);
	mbx_send(&m, &a->msg);
	mbx_send(&m, &b->msg);
	got = mbx_recv(&m);             /* a, whose link still points at b */
	cr_assert_eq(got, &a->msg);
	mbx_release(&m, 1);
	got = mbx_recv(&m);             /* b */
	cr_assert_eq(got, &b->msg);
	mbx_release(&m, 1);
	/* Send a again: it must be the only message, with no stale successor. */
	mbx_send(&m, &a->msg);
	cr_assert_eq(mbx_pending(&m), 1);
	cr_assert_eq(mbx_recv(&m), &a->msg);
	mbx_release(&m, 1);
	cr_assert_null(mbx_recv(&m), "a stale link resurrected a received message");
	free(a);
	free(b);
}

/* SPDX-License-Identifier: MIT */
/*
 * The offload pool.  See offload.h.
 *
 * One wfcqueue of tasks; the semaphore holds one token per queued task, so
 * a thread that takes a token always finds a task.  Consumers serialise on
 * a mutex for the dequeue itself (a few instructions, never a wait: a
 * producer caught between its two stores makes the dequeue yield and retry
 * without the lock); the work runs outside it.
 */
#include "common/offload.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <urcu/urcu-memb.h>

#include "common/tsan.h"
#include "common/util.h"

struct offload {
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	pthread_mutex_t lock;           /* consumers only; held for one dequeue */
	sem_t ready;
	bool stopping;                  /* atomic */
	uint64_t pending;               /* atomic: submitted, not yet done */
	unsigned n;
	pthread_t *threads;
};

static __thread int tls_is_offload;

int offload_is_current(void)
{
	return tls_is_offload;
}

/* The head, or NULL; never waits under the lock (see actors/runtime.c, runq_take). */
static struct cds_wfcq_node *take(struct offload *o)
{
	for (;;) {
		struct cds_wfcq_node *node;

		pthread_mutex_lock(&o->lock);
		node = __cds_wfcq_dequeue_nonblocking(&o->head, &o->tail);
		pthread_mutex_unlock(&o->lock);
		if (node != CDS_WFCQ_WOULDBLOCK)
			return node;
		sched_yield();
	}
}

/* Run one queued task; false if the queue was empty. */
static bool run_one(struct offload *o)
{
	struct cds_wfcq_node *node = take(o);
	struct offload_task *t;

	if (!node)
		return false;
	tsan_handoff_acquire(node);
	t = container_of(node, struct offload_task, node);
	t->work(t);
	t->done(t);             /* may free t */
	__atomic_fetch_sub(&o->pending, 1, __ATOMIC_RELEASE);
	return true;
}

static void *offload_main(void *arg)
{
	struct offload *o = arg;

	urcu_memb_register_thread();
	tls_is_offload = 1;
	for (;;) {
		if (sem_wait(&o->ready) < 0)
			continue;       /* EINTR */
		/*
		 * Outside a stop, a token always has its task.  During one the
		 * extra tokens may find the queue emptied by another thread:
		 * then this thread is done.
		 */
		if (!run_one(o) && __atomic_load_n(&o->stopping, __ATOMIC_ACQUIRE))
			break;
	}
	urcu_memb_unregister_thread();
	return NULL;
}

int offload_new(unsigned nthreads, struct offload **ret)
{
	struct offload *o = calloc(1, sizeof(*o));
	int r;

	if (!o)
		return -ENOMEM;
	if (nthreads == 0)
		nthreads = 2;
	__cds_wfcq_init(&o->head, &o->tail);
	pthread_mutex_init(&o->lock, NULL);
	if (sem_init(&o->ready, 0, 0) < 0) {
		free(o);
		return -errno;
	}
	o->threads = calloc(nthreads, sizeof(*o->threads));
	if (!o->threads) {
		sem_destroy(&o->ready);
		free(o);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		r = -pthread_create(&o->threads[i], NULL, offload_main, o);
		if (r < 0) {
			o->n = i;
			offload_free(o);
			return r;
		}
	}
	o->n = nthreads;
	*ret = o;
	return 0;
}

void offload_free(struct offload *o)
{
	if (!o)
		return;
	__atomic_store_n(&o->stopping, true, __ATOMIC_RELEASE);
	/* One extra token per thread: each wakes, drains what is left, and stops. */
	for (unsigned i = 0; i < o->n; i++)
		sem_post(&o->ready);
	for (unsigned i = 0; i < o->n; i++)
		pthread_join(o->threads[i], NULL);
	/* Threads that could not be created: run what is queued here. */
	while (!cds_wfcq_empty(&o->head, &o->tail))
		run_one(o);
	pthread_mutex_destroy(&o->lock);
	sem_destroy(&o->ready);
	free(o->threads);
	free(o);
}

void offload_submit(struct offload *o, struct offload_task *t)
{
	__atomic_fetch_add(&o->pending, 1, __ATOMIC_RELAXED);
	cds_wfcq_node_init(&t->node);
	tsan_handoff_release(&t->node);
	cds_wfcq_enqueue(&o->head, &o->tail, &t->node);
	sem_post(&o->ready);
}

uint64_t offload_pending(struct offload *o)
{
	return __atomic_load_n(&o->pending, __ATOMIC_ACQUIRE);
}

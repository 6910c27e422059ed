/* SPDX-License-Identifier: MIT */
/*
 * Taking from a liburcu wfcqueue without ever sleeping.
 *
 * An enqueue is two stores: the tail is exchanged, then the previous node's
 * next pointer is written.  A producer preempted between the two leaves a
 * node that a dequeue cannot reach yet; liburcu's blocking dequeue then
 * spins and, after a few tries, sleeps in poll() for 10 ms.  Nothing on an
 * I/O loop, in an actor's turn or under a mutex may sleep, so every dequeue
 * in corral goes through wfcq_take(): the nonblocking dequeue, and when it
 * reports that it would wait, sched_yield() so the producer can finish, and
 * again.  The wait is bounded by the producer's next time slice; no lock is
 * held during it.
 *
 * The caller provides the mutual exclusion among dequeuers the "__" API
 * asks for (one consumer, or its own lock around each call).
 */
#ifndef CORRAL_COMMON_WFCQ_H
#define CORRAL_COMMON_WFCQ_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <sched.h>
#include <urcu/wfcqueue.h>

static inline struct cds_wfcq_node *wfcq_take(struct __cds_wfcq_head *head,
					      struct cds_wfcq_tail *tail)
{
	for (;;) {
		struct cds_wfcq_node *node = __cds_wfcq_dequeue_nonblocking(head, tail);

		if (node != CDS_WFCQ_WOULDBLOCK)
			return node;
		sched_yield();
	}
}

#endif /* CORRAL_COMMON_WFCQ_H */

/* SPDX-License-Identifier: MIT */
#include "mailbox/mbx.h"

#include <errno.h>

#include "common/tsan.h"
#include "common/wfcq.h"
#include "common/util.h"

void mbx_init(struct mbx *m)
{
	__cds_wfcq_init(&m->head, &m->tail);
	__atomic_store_n(&m->count, 0, __ATOMIC_RELAXED);
}

int mbx_send(struct mbx *m, struct mbx_msg *msg)
{
	uint64_t old;

	BUG_ON(!msg->drop);
	/*
	 * Early refusal: the common case for a stopped actor.  A close that
	 * lands after this load is caught by the CLOSED bit in the value the
	 * add below returns.
	 */
	if (__atomic_load_n(&m->count, __ATOMIC_ACQUIRE) & MBX_CLOSED)
		return -ESHUTDOWN;

	/*
	 * A message may be sent again after it was received (an actor's
	 * embedded I/O message): its link must not point at a stale successor.
	 */
	cds_wfcq_node_init(&msg->node);
	tsan_handoff_release(&msg->node);
	cds_wfcq_enqueue(&m->head, &m->tail, &msg->node);
	/*
	 * Count after linking: the consumer never waits for a counted message.
	 * The add is a full barrier (seq_cst RMW), so the message body and the
	 * link are visible to the consumer that acquires this count.
	 */
	old = __atomic_fetch_add(&m->count, 1, __ATOMIC_SEQ_CST);
	if (old & MBX_CLOSED)
		return MBX_DELIVERED;   /* raced with close: dropped at drain */
	return old == 0 ? MBX_SCHEDULE : MBX_DELIVERED;
}

uint64_t mbx_pending(struct mbx *m)
{
	return __atomic_load_n(&m->count, __ATOMIC_ACQUIRE) & MBX_COUNT_MASK;
}

struct mbx_msg *mbx_recv(struct mbx *m)
{
	struct cds_wfcq_node *node;

	/*
	 * Single consumer, so the lock-free head needs no mutex.  "Blocking"
	 * here only covers the two-instruction window inside a concurrent
	 * append to the same tail (see THREADS.md).
	 */
	node = wfcq_take(&m->head, &m->tail);
	if (!node)
		return NULL;
	tsan_handoff_acquire(node);
	return container_of(node, struct mbx_msg, node);
}

uint64_t mbx_release(struct mbx *m, uint64_t n)
{
	return __atomic_sub_fetch(&m->count, n, __ATOMIC_SEQ_CST);
}

void mbx_close(struct mbx *m)
{
	__atomic_fetch_or(&m->count, MBX_CLOSED, __ATOMIC_SEQ_CST);
}

bool mbx_closed(struct mbx *m)
{
	return __atomic_load_n(&m->count, __ATOMIC_ACQUIRE) & MBX_CLOSED;
}

unsigned mbx_drain(struct mbx *m, int err)
{
	struct mbx_msg *msg;
	unsigned n = 0;

	while ((msg = mbx_recv(m)) != NULL) {
		msg->drop(msg, err);
		n++;
	}
	return n;
}

/* SPDX-License-Identifier: MIT */
/*
 * mbx: a multi-producer, single-consumer mailbox.
 *
 * Producers (any thread) call mbx_send(); it never blocks and takes no lock:
 * one wait-free append on liburcu's wfcqueue, then one atomic add on the
 * mailbox's message count.  The count, not the queue, decides scheduling:
 *
 *   - mbx_send() returns MBX_SCHEDULE exactly when it moved the count from
 *     0 to 1.  Its caller must then hand the consumer to a worker.
 *   - the consumer, in its turn, receives at most mbx_pending() messages and
 *     then calls mbx_release(n).  The count only drops after the messages
 *     were handled, so while the consumer is still running its last message
 *     the count is >= 1 and no sender can schedule it a second time.
 *   - if mbx_release() leaves the count above zero the consumer still owns
 *     the mailbox and must run again; otherwise the next sender schedules.
 *
 * Because a message is appended before it is counted, every counted message
 * is fully linked when the consumer looks for it.
 *
 * Closing: the consumer sets the CLOSED bit.  A send that sees the bit before
 * appending fails with -ESHUTDOWN and the caller keeps its message.  A send
 * that raced with the close has appended already: it returns 0 and its
 * message is later passed to its drop() callback with -ESHUTDOWN, never lost
 * and never handled.
 *
 * This header knows nothing of actors or threads; actors/ builds on it.
 */
#ifndef CORRAL_MAILBOX_MBX_H
#define CORRAL_MAILBOX_MBX_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

struct mbx_msg;

/*
 * Called when a message will never be handled (closed mailbox, passed
 * deadline with no expiry handler).  Must release the message.  Any thread.
 */
typedef void (*mbx_drop_fn)(struct mbx_msg *msg, int err);

struct mbx_msg {
	struct cds_wfcq_node node;
	uint32_t type;          /* owner-defined; values >= 0xff00 are the runtime's */
	uint32_t rt_cancel;     /* atomic: rt_cancel_at() asked to drop it unsent */
	uint64_t deadline_ns;   /* CLOCK_MONOTONIC; 0: none */
	mbx_drop_fn drop;       /* required */
	void *rt_priv;          /* the runtime's, while a delayed send is pending */
};

#define MBX_CLOSED     (1ULL << 63)
#define MBX_COUNT_MASK (MBX_CLOSED - 1)

struct mbx {
	/* Consumer side first: only the consumer touches head. */
	struct __cds_wfcq_head head;
	/*
	 * Producers: tail and count.  Not padded onto a cache line of their
	 * own: with one mailbox per VM, 10^6 idle actors matter more than
	 * false sharing on a hot one, and a 64-byte-aligned member would
	 * demand aligned allocation of every struct that embeds a mailbox.
	 */
	struct cds_wfcq_tail tail;
	uint64_t count;         /* messages appended and not yet released | MBX_CLOSED */
};

enum {
	MBX_DELIVERED = 0,      /* queued; the consumer is already scheduled */
	MBX_SCHEDULE = 1,       /* queued; this send made it runnable: schedule it */
};

/* Before any send.  Owner only. */
void mbx_init(struct mbx *m);

/* Prepare a message: type, no deadline.  Any thread. */
static inline void mbx_msg_init(struct mbx_msg *msg, uint32_t type, mbx_drop_fn drop)
{
	cds_wfcq_node_init(&msg->node);
	msg->type = type;
	msg->deadline_ns = 0;
	msg->drop = drop;
}

/*
 * Append msg.  Returns MBX_SCHEDULE, MBX_DELIVERED, or -ESHUTDOWN when the
 * mailbox was already closed (msg untouched, still the caller's).  Any
 * thread; lock-free (wait-free append plus one atomic add).
 */
int mbx_send(struct mbx *m, struct mbx_msg *msg);

/* Messages counted and not yet released (without the CLOSED bit).  Consumer. */
uint64_t mbx_pending(struct mbx *m);

/*
 * Take the next message.  Only call it at most mbx_pending() times per turn:
 * those messages are guaranteed linked.  Consumer only.
 */
struct mbx_msg *mbx_recv(struct mbx *m);

/*
 * The consumer has finished n messages.  Returns the mailbox word after the
 * release: the count left (& MBX_COUNT_MASK) and MBX_CLOSED.  A non-zero
 * count means the consumer still owns the mailbox and must run again; a
 * zero count means it no longer owns it, and must not touch the mailbox
 * again (another thread may free it): everything it needs is in the value
 * returned.  Consumer.
 */
uint64_t mbx_release(struct mbx *m, uint64_t n);

/* Refuse further sends.  Consumer only (within its turn). */
void mbx_close(struct mbx *m);

/* Closed?  Any thread. */
bool mbx_closed(struct mbx *m);

/*
 * Drop every message still linked, after the last producer is gone (e.g.
 * after an RCU grace period).  Returns how many were dropped.
 */
unsigned mbx_drain(struct mbx *m, int err);

#endif /* CORRAL_MAILBOX_MBX_H */

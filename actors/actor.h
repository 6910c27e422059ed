/* SPDX-License-Identifier: MIT */
/*
 * actor: the runtime that runs actors on a fixed pool of worker threads.
 *
 * An actor is a struct embedding `struct actor` plus a mailbox.  Sending to
 * it is lock-free (mailbox/mbx.h); the send that makes the mailbox non-empty
 * pushes the actor onto the runtime's run queue exactly once.  A worker runs
 * at most ACTOR_BATCH messages per turn, then yields the actor (re-queueing
 * it at the back if mail is left).  Idle workers sleep on a semaphore whose
 * tokens are the run-queue entries: no polling.
 *
 * Deadlines: rt_send_at() hands a message to the runtime's timer thread,
 * which sends it at its deadline (one binary heap for all actors; no timerfd
 * per actor).  A timer is just a delayed message: the receiver recognises
 * and ignores a stale one, and may spare itself the turn (rt_cancel_at).
 *
 * Lifetime: an actor starts with one reference, its "alive" reference,
 * released by the runtime after the actor closed its mailbox and every
 * counted message was handled or dropped.  Holders that keep a pointer
 * beyond an RCU read section take their own reference.  The last unref
 * frees the actor after an RCU grace period, so a sender that found the
 * actor inside a read section (a registry lookup) may still send to it:
 * the send fails with -ESHUTDOWN or its message is dropped, never lost.
 *
 * Every thread that sends must be registered with liburcu (rt threads are;
 * others call rcu_register_thread()).
 */
#ifndef CORRAL_ACTORS_ACTOR_H
#define CORRAL_ACTORS_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/rcu.h"

#include "mailbox/mbx.h"

#define ACTOR_BATCH 64

struct rt;
struct actor;

/* Message types reserved by the runtime. */
enum {
	ACTOR_MSG_STOP = 0xff00,        /* actor_stop(): runs ops->stopping, closes */
};

struct actor_ops {
	const char *kind;               /* for diagnostics: "domain", "monitor" */
	/* Handle one message; the handler owns msg afterwards.  Actor only. */
	void (*handle)(struct actor *a, struct mbx_msg *msg);
	/*
	 * Optional: msg reached its deadline before it was handled.  The
	 * handler owns msg.  Without it the runtime drops it with -ETIMEDOUT.
	 */
	void (*expire)(struct actor *a, struct mbx_msg *msg);
	/* Optional: the actor is about to close its mailbox.  Actor only. */
	void (*stopping)(struct actor *a);
	/*
	 * Optional: the turn's messages are handled (one or up to
	 * ACTOR_BATCH); still the actor's turn.  What a turn changed is
	 * published here once, however many messages it took.  Actor only.
	 */
	void (*turn_end)(struct actor *a);
	/* Free the container.  Last reference gone, after a grace period. */
	void (*free)(struct actor *a);
};

struct actor {
	struct mbx mbx;
	const struct actor_ops *ops;
	struct rt *rt;
	struct cds_wfcq_node runq_node;  /* in the run queue at most once */
	uint32_t refcount;               /* atomic */
	uint32_t on_worker;              /* atomic; 1 while a worker runs it */
	uint64_t turns;                  /* written by the running worker only */
	struct rcu_head rcu;
};

struct rt_stats {
	uint64_t turns;
	uint64_t messages;
	uint64_t expired;
	uint64_t timers_pending;
	uint64_t timers_fired;
	uint64_t timers_cancelled;      /* dropped at their deadline: rt_cancel_at */
};

/*
 * Create the runtime with nworkers worker threads (0: online CPUs) and one
 * timer thread.  The calling thread must be registered with liburcu if it
 * sends.  Any thread.
 */
int rt_new(unsigned nworkers, struct rt **ret);

/*
 * Stop the workers and the timer thread and free the runtime.  Actors still
 * alive are not run again; messages still queued are dropped with
 * -ESHUTDOWN.  Pending timers are dropped with -ECANCELED.  Not from a
 * runtime thread.
 */
void rt_free(struct rt *rt);

/*
 * Wait (bounded by timeout_ns) until no actor is runnable or running, e.g.
 * after stopping every actor at shutdown.  0 or -ETIMEDOUT.  Not from a
 * runtime thread.
 */
int rt_quiesce(struct rt *rt, uint64_t timeout_ns);

unsigned rt_nworkers(const struct rt *rt);
void rt_get_stats(struct rt *rt, struct rt_stats *ret);

/* Initialise an embedded actor (refcount 1: the alive reference). */
void actor_init(struct actor *a, struct rt *rt, const struct actor_ops *ops);

void actor_ref(struct actor *a);
void actor_unref(struct actor *a);

/*
 * Send msg to a.  0 on success (msg now belongs to the actor: it will be
 * handled, or dropped through msg->drop), -ESHUTDOWN when a has stopped
 * (msg is still the caller's).  Lock-free; any registered thread holding a
 * reference on a or inside the RCU read section that found it.
 */
int actor_send(struct actor *a, struct mbx_msg *msg);

/*
 * Like actor_send, for an ioloop thread handing readiness to the actor that
 * owns the socket: if this send makes a runnable, the calling thread runs
 * its turn (and what that turn hands off, bounded) right away instead of
 * waking a worker.  Turns never block, so the loop is delayed by a turn at
 * most.  Not from inside an actor's turn.
 */
int actor_send_run(struct actor *a, struct mbx_msg *msg);

/*
 * Send msg to a at deadline_ns (CLOCK_MONOTONIC) via the timer thread, at
 * most about a millisecond later (the thread's timer slack, which lets near
 * deadlines share a wake-up).  The runtime holds a reference on a until
 * then.  0, or -ENOMEM (msg still the caller's).  Any registered thread.
 */
int rt_send_at(struct actor *a, struct mbx_msg *msg, uint64_t deadline_ns);

/*
 * Ask the timer thread to drop msg (drop(msg, -ECANCELED)) at its deadline
 * instead of sending it: it then costs the receiver no turn.  The caller
 * must know that msg has not reached its actor yet (the receiver, in its
 * own turn, for a timer it armed and has not handled), and forgets it
 * here: msg may be freed at any moment after.  A timer the thread already
 * sent still arrives, so the receiver must still recognise a stale one.
 */
void rt_cancel_at(struct mbx_msg *msg);

/*
 * Ask a to stop: ops->stopping runs on the actor, then its mailbox closes;
 * messages queued behind the stop are dropped with -ESHUTDOWN.  Returns
 * -ESHUTDOWN if already stopped, -ENOMEM.  Any thread.
 */
int actor_stop(struct actor *a);

/* Close the mailbox now, from within the actor's own turn.  Actor only. */
void actor_stop_self(struct actor *a);

/* True while the caller is the worker running a (debug checks).  Any. */
bool actor_is_current(const struct actor *a);

#define ASSERT_ON_ACTOR(a) BUG_ON(!actor_is_current(a))

#endif /* CORRAL_ACTORS_ACTOR_H */

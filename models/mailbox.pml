/*
 * mailbox.pml: the mailbox and its scheduling by count
 * (mailbox/mbx.c, actors/runtime.c; THREADS.md "Scheduling").
 *
 * One actor.  NSEND sender threads send MPS messages each; one more thread
 * may send the actor its stop message (actor_stop); NWORK workers take the
 * actor off the run queue and run turns of at most BATCH messages.  With
 * IOLOOP, sender 0 is an ioloop thread (actor_send_run): when its send makes
 * the actor runnable it runs the turn itself.  After the actor closed its
 * mailbox and released its alive reference, a reclaim process waits for
 * the grace period (every sender out of its read section) and drains what
 * is left (actor_reclaim_rcu_cb -> mbx_drain).
 *
 * Steps are modelled in the code's order, each one atomic step of the C
 * code (a load, a store, an xchg, a fetch_add), on a sequentially
 * consistent memory:
 *
 *   send:    load count (early CLOSED check)
 *            xchg the queue tail          (cds_wfcq_enqueue, first half)
 *            link prev->next              (cds_wfcq_enqueue, second half)
 *            fetch_add count              (old == 0: schedule)
 *            put the actor on the run queue (rt_schedule)
 *   turn:    load count (n = min(count, BATCH)) + xchg on_worker
 *            n times: wait for the link, dequeue + dispatch
 *            clear on_worker + sub_fetch count
 *            re-queue if mail is left, or drop the alive reference
 *
 * A "+" joins two steps of the worker into one where the first touches
 * only the worker's own state or a predicate that stays true once true, so
 * that no other thread can tell the difference; it keeps the state space
 * small.  A worker takes the actor off the run queue in one step
 * (sem_wait + dequeue).
 *
 * Properties (assertions are checked in every run; the ltl formulas one at
 * a time with pan -a -N name):
 *   (a) no lost wake-up: ltl no_lost_wakeup, and at the end (Checker) every
 *       message sent ahead of the stop message was handled;
 *   (b) one worker at a time: assert in actor_run, ltl one_worker;
 *   (c) nothing lost at close: every message ends exactly once as handled,
 *       dropped (only messages queued behind the stop) or refused at send
 *       (setfate, Checker);
 *   (d) scheduled at most once: assert at every run-queue put, ltl
 *       sched_once (at most one scheduling right, never two run-queue
 *       entries);
 *   and: a counted message is always in the queue when the worker looks
 *   for it; the actor is reclaimed exactly once, after the grace period,
 *   and nobody touches the mailbox afterwards.
 *
 * Deliberate bugs, each of which must make the check fail (run.sh):
 *   -DBUG_COUNT_FIRST   count before appending
 *   -DBUG_EMPTY_FLAG    schedule on the queue's "was empty" flag
 *   -DBUG_NO_REQUEUE    do not re-queue when the release leaves mail
 *   -DBUG_EARLY_RELEASE release the count before the last message is done
 *
 * -DREACH=n turns witness n into a failing assertion: run.sh checks that
 * each interesting situation is reachable (nothing passes vacuously).
 */

#ifndef NSEND
#define NSEND 3         /* sender threads */
#endif
#ifndef MPS
#define MPS 1           /* messages per sender */
#endif
#ifndef NWORK
#define NWORK 2         /* worker threads */
#endif
#ifndef BATCH
#define BATCH 2         /* ACTOR_BATCH */
#endif
#ifndef IOLOOP
#define IOLOOP 1        /* sender 0 runs the turn itself (actor_send_run) */
#endif

#ifndef REACH
#define REACH 0
#endif
#define WITNESS(n) assert(REACH != n)

#define NMSG  (NSEND * MPS + 1)
#define STOPM (NSEND * MPS)     /* id of the stop message */
#define NOPOS 255

/* what became of a message */
#define F_NONE    0
#define F_HANDLED 1
#define F_DROPPED 2     /* through its drop callback */
#define F_REFUSED 3     /* -ESHUTDOWN at send: still the caller's */
#define F_UNSENT  4     /* the stop message, when nobody stops the actor */

/* mbx_send's answer */
#define R_REFUSED   0
#define R_DELIVERED 1
#define R_SCHEDULE  2

/* The mailbox word: count | CLOSED (one 64-bit word in C). */
byte count = 0;
bit closed = 0;

/* The wfcqueue: position p holds slot[p]; linked[p] once its predecessor's
 * next pointer points at it (the consumer can reach it). */
byte slot[NMSG];
bit linked[NMSG];
byte qtail = 0;         /* positions handed out by the tail xchg */
byte qhead = 0;         /* positions consumed */

/* The runtime's run queue (one actor: at most one entry, else a bug). */
chan runq = [2] of { bit };

bit on_worker = 0;      /* struct actor's on_worker */
bit alive = 1;          /* the runtime's alive reference */
bit freed = 0;          /* reclaimed: nobody may touch the mailbox any more */
byte in_rs = 0;         /* threads inside the read section that found the actor */

/* Ghosts. */
byte fate[NMSG];
byte nfated = 0;
byte pos_of[NMSG];
byte stoppos = NOPOS;   /* queue position of the stop message */
byte running = 0;       /* threads inside a turn */
byte sched = 0;         /* scheduling rights held (count 0->1 until release to 0) */

ltl no_lost_wakeup { <> (nfated == NMSG) }
ltl one_worker { [] (running <= 1) }
ltl sched_once { [] (sched <= 1 && len(runq) <= 1) }

inline setfate(m, f)
{
	atomic {
		assert(fate[m] == F_NONE);      /* exactly once */
		if
		:: f == F_REFUSED -> WITNESS(3)
		:: else
		fi;
		fate[m] = f;
		nfated++
	}
}

/* rt_schedule: the caller holds the right to schedule the actor. */
inline schedule()
{
	atomic {
		assert(!freed);
		assert(len(runq) == 0);         /* (d) never twice on the run queue */
		assert(on_worker == 0);         /* ... nor while a worker runs it */
		runq!1
	}
}

/* mbx_send; res := R_REFUSED, R_DELIVERED or R_SCHEDULE.  Locals pos, old, oc. */
inline mbx_send(id, res)
{
	assert(!freed);
	if
	:: closed -> res = R_REFUSED            /* early refusal */
	:: else ->
#ifdef BUG_COUNT_FIRST
		atomic {
			old = count; oc = closed; count++;
			if
			:: !oc && old == 0 -> sched++; assert(sched <= 1); res = R_SCHEDULE
			:: else -> res = R_DELIVERED
			fi
		}
#endif
		atomic {                        /* xchg(&tail, node) */
			pos = qtail;
			qtail++;
			slot[pos] = id;
			pos_of[id] = pos;
			if
			:: id == STOPM -> stoppos = pos
			:: else
			fi;
#ifdef BUG_EMPTY_FLAG
			if
			:: pos == qhead -> sched++; res = R_SCHEDULE
			:: else -> res = R_DELIVERED
			fi
#endif
		}
		linked[pos] = 1;                /* old_tail->next = node */
#if !defined(BUG_COUNT_FIRST)
		atomic {                        /* fetch_add(&count, 1) */
			old = count; oc = closed; count++;
#ifndef BUG_EMPTY_FLAG
			if
			:: !oc && old == 0 -> sched++; assert(sched <= 1); res = R_SCHEDULE
			:: else -> res = R_DELIVERED
			fi
#endif
		}
#endif
	fi
}

/* actor_dispatch */
inline dispatch(m)
{
	if
	:: m == STOPM ->                        /* actor_stop_self */
		closed = 1;                     /* mbx_close: fetch_or CLOSED */
		setfate(m, F_HANDLED)
	:: else ->
		if
		:: closed ->
			/* only what was queued behind the stop is dropped */
			assert(stoppos != NOPOS && pos_of[m] > stoppos);
			WITNESS(1);
			setfate(m, F_DROPPED)
		:: else ->
			setfate(m, F_HANDLED)
		fi
	fi
}

/*
 * actor_run: one turn.  Locals n, i, m, left, lc.
 *
 * Steps that only touch the consumer's own state or a stable predicate are
 * merged with their neighbour (it changes no outcome, and keeps the state
 * space small): the load of the count with the on_worker exchange, the
 * dequeue with the dispatch, clearing on_worker with the release.
 */
inline actor_run()
{
	atomic {
		assert(!freed);
		n = count;                      /* mbx_pending */
		assert(n > 0);
		assert(on_worker == 0);         /* (b) BUG_ON(xchg(on_worker, 1)) */
		on_worker = 1;
		running++;
		assert(running == 1);           /* (b) */
		if
		:: n > BATCH -> WITNESS(7); n = BATCH
		:: else
		fi;
		i = 0
	};
	do
	:: i < n ->
#ifdef BUG_EARLY_RELEASE
		if
		:: i == n - 1 ->                /* release before the last message */
			atomic {
				running--; on_worker = 0;
				count = count - n; left = count; lc = closed;
				if
				:: left == 0 -> sched--
				:: else
				fi
			}
		:: else
		fi;
#endif
#if REACH == 5
		assert(qhead >= qtail || linked[qhead]);        /* witness 5 */
#endif
		atomic {
			assert(qhead < qtail);  /* BUG_ON(!msg): counted => queued */
			linked[qhead] == 1;     /* wfcq_take waits for the link */
			m = slot[qhead];
			qhead++;
			dispatch(m);
			m = 0;
			i++
		}
	:: else -> break
	od;
	atomic {
#ifndef BUG_EARLY_RELEASE
		running--;
		on_worker = 0;                  /* clear before releasing */
		count = count - n;              /* mbx_release: sub_fetch */
		left = count;
		lc = closed;
		if
		:: left == 0 -> sched--
		:: else -> WITNESS(4)
		fi;
#endif
		n = 0;
		i = 0
	};
	if
	:: left > 0 ->
#ifndef BUG_NO_REQUEUE
		schedule()                      /* still ours: back of the queue */
#else
		skip
#endif
	:: else ->
		if
		:: lc -> atomic { assert(alive); alive = 0 }    /* actor_unref */
		:: else
		fi
	fi;
	left = 0;
	lc = 0
}

proctype Sender(byte s)
{
	byte k, id, res, pos, old;
	bit oc;
	byte n, i, m, left;
	bit lc;

	/*
	 * Started inside the read section (or holding the reference) that
	 * found the actor; it ends after the last send.
	 */
	for (k : 0 .. MPS - 1) {
		id = s * MPS + k;
		mbx_send(id, res);
		if
		:: res == R_REFUSED -> setfate(id, F_REFUSED)
		:: res == R_SCHEDULE && s == 0 && IOLOOP ->
#if REACH == 6
			assert(0);      /* witness 6 */
#endif
			actor_run()     /* actor_send_run: this thread runs the turn */
		:: res == R_SCHEDULE -> schedule()
		:: else
		fi;
		d_step { res = 0; pos = 0; old = 0; oc = 0 }
	};
	in_rs--
}

proctype Stopper()
{
	byte res, pos, old;
	bit oc;

	if
	:: mbx_send(STOPM, res);        /* actor_stop */
		if
		:: res == R_REFUSED -> setfate(STOPM, F_REFUSED)
		:: res == R_SCHEDULE -> schedule()
		:: else
		fi
	:: setfate(STOPM, F_UNSENT)     /* nobody stops it */
	fi;
	in_rs--
}

active [NWORK] proctype Worker()
{
	byte n, i, m, left;
	bit lc;
end:
	do
	:: runq?_ -> actor_run()
	od
}

/* actor_unref -> call_rcu -> actor_reclaim_rcu_cb -> mbx_drain */
active proctype Reclaim()
{
	byte m;
end:
	atomic {
		!alive && in_rs == 0;     /* the grace period */
		assert(!freed && running == 0 && len(runq) == 0)
	};
	do
	:: qhead < qtail ->
		linked[qhead] == 1;
		atomic { m = slot[qhead]; qhead++ };
		assert(closed && pos_of[m] > stoppos);
		WITNESS(2);
		setfate(m, F_DROPPED)
	:: else -> break
	od;
	freed = 1
}

/* When nothing can move any more: every message accounted for. */
active proctype Checker()
{
	byte m;

	timeout ->
	atomic {
		assert(running == 0 && len(runq) == 0);
		assert(closed || count == 0);           /* open: no mail left behind */
		assert(!closed || freed);               /* closed: reclaimed */
		for (m : 0 .. NMSG - 1) {
			assert(fate[m] != F_NONE);      /* (a), (c) */
			if
			:: m != STOPM && fate[m] != F_REFUSED &&
			   (stoppos == NOPOS || pos_of[m] < stoppos) ->
				assert(fate[m] == F_HANDLED)    /* (a) */
			:: else
			fi
		}
	}
}

init
{
	byte s;

	atomic {
		in_rs = NSEND + 1;
		for (s : 0 .. NSEND - 1) {
			run Sender(s)
		};
		run Stopper()
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * offload: a few threads where blocking is allowed, for the work that must
 * not run in an actor's turn or on an ioloop thread: durable file writes
 * (fsync), opening a caller's files with the caller's credentials,
 * posix_spawn, waiting for a child that was just killed.
 *
 * A task is submitted from any thread (lock-free: one wait-free append and
 * a semaphore post), runs its work() on one of the pool's threads, then its
 * done() on the same thread: done() hands the outcome back, typically as a
 * message to the actor that asked (dom_call).  Nothing orders two tasks:
 * callers that need an order (one domain's files) submit the next task from
 * the previous one's completion.
 *
 * Every task's work is bounded by what it does (a local syscall, a disk
 * flush); nothing here waits for a client or for QEMU.  The pool's threads
 * are registered with liburcu, so done() may send to actors.
 */
#ifndef CORRAL_COMMON_OFFLOAD_H
#define CORRAL_COMMON_OFFLOAD_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <stdint.h>
#include <urcu/wfcqueue.h>

struct offload;

struct offload_task {
	struct cds_wfcq_node node;
	/* Runs on a pool thread; may block (bounded). */
	void (*work)(struct offload_task *t);
	/* Runs right after work, on the same thread; may free t. */
	void (*done)(struct offload_task *t);
};

/* nthreads 0: two.  Any thread. */
int offload_new(unsigned nthreads, struct offload **ret);
/*
 * Run what is queued, stop and join the threads, free the pool.  Not from a
 * pool thread.  Accepts NULL.
 */
void offload_free(struct offload *o);

/* Queue t.  Any registered thread; lock-free. */
void offload_submit(struct offload *o, struct offload_task *t);

/* Tasks submitted and not yet done.  Any thread. */
uint64_t offload_pending(struct offload *o);

/* Is the caller one of the pool's threads?  For assertions. */
int offload_is_current(void);

#endif /* CORRAL_COMMON_OFFLOAD_H */

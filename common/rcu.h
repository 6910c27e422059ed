/* SPDX-License-Identifier: MIT */
/*
 * corral's one RCU flavor (liburcu "memb": read sections cost two compiler
 * barriers; grace periods use membarrier(2)), wrapped so ThreadSanitizer can
 * follow it.
 *
 * liburcu 0.13 orders its read sections and grace periods with inline
 * assembly and a system call, which TSan cannot see.  In a TSan build the
 * wrappers below describe the same ordering with TSan's annotations:
 *   - each read-side unlock releases a global sync object, and every RCU
 *     callback acquires it before it frees anything: the grace period
 *     guarantees every reader that could see the object has unlocked, so
 *     the acquire orders all their accesses before the free;
 *   - publication and dereference are release/acquire atomics (the same
 *     instructions as rcu_assign_pointer/rcu_dereference on x86).
 * In every other build they are exactly liburcu's calls.
 */
#ifndef CORRAL_COMMON_RCU_H
#define CORRAL_COMMON_RCU_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>

#include "common/tsan.h"

#ifdef CORRAL_TSAN
extern char crcu_tsan_sync;

static inline void crcu_read_lock(void)
{
	urcu_memb_read_lock();
}

static inline void crcu_read_unlock(void)
{
	__tsan_release(&crcu_tsan_sync);
	urcu_memb_read_unlock();
}

/* First thing in every call_rcu callback. */
static inline void crcu_reclaim_begin(struct rcu_head *head)
{
	__tsan_acquire(head);
	__tsan_acquire(&crcu_tsan_sync);
}

#define crcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define crcu_dereference(p)       __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#else
static inline void crcu_read_lock(void)
{
	urcu_memb_read_lock();
}

static inline void crcu_read_unlock(void)
{
	urcu_memb_read_unlock();
}

static inline void crcu_reclaim_begin(struct rcu_head *head)
{
}

#define crcu_assign_pointer(p, v) rcu_assign_pointer(p, v)
#define crcu_dereference(p)       rcu_dereference(p)
#endif

/* synchronize_rcu(): what readers did before it happens before what follows. */
static inline void crcu_synchronize(void)
{
	urcu_memb_synchronize_rcu();
#ifdef CORRAL_TSAN
	__tsan_acquire(&crcu_tsan_sync);
#endif
}

/* call_rcu(), with the caller's history handed to the callback. */
static inline void crcu_call(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	tsan_handoff_release(head);
	urcu_memb_call_rcu(head, fn);
}

#endif /* CORRAL_COMMON_RCU_H */

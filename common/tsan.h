/* SPDX-License-Identifier: MIT */
/*
 * ThreadSanitizer annotations for hand-offs TSan cannot see.
 *
 * liburcu 0.13 builds its queues and grace periods from inline assembly and
 * membarrier(2); TSan sees none of that ordering.  Where one of those
 * primitives hands an object from one thread to another, the sender calls
 * tsan_handoff_release(obj) before and the receiver tsan_handoff_acquire(obj)
 * after, which tells TSan exactly the order the primitive guarantees.  In
 * every other build these compile to nothing.
 */
#ifndef CORRAL_COMMON_TSAN_H
#define CORRAL_COMMON_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define CORRAL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORRAL_TSAN 1
#endif
#endif

#ifdef CORRAL_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_handoff_release(p) __tsan_release((void *)(p))
#define tsan_handoff_acquire(p) __tsan_acquire((void *)(p))
#else
#define tsan_handoff_release(p) ((void)(p))
#define tsan_handoff_acquire(p) ((void)(p))
#endif

#endif /* CORRAL_COMMON_TSAN_H */

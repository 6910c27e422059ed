/* SPDX-License-Identifier: MIT */
/*
 * corral: small helpers shared by every folder.  Nothing here knows about
 * actors, sockets or QEMU.
 */
#ifndef CORRAL_COMMON_UTIL_H
#define CORRAL_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef container_of
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A broken invariant: say where and stop; a daemon must not limp on. */
#define BUG_ON(cond)                                                        \
	do {                                                                \
		if (unlikely(cond)) {                                       \
			fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__,     \
				__LINE__, #cond);                           \
			abort();                                            \
		}                                                           \
	} while (0)

#define NSEC_PER_SEC  1000000000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_USEC 1000ULL

/* Monotonic time in nanoseconds.  Any thread. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Wall-clock time in nanoseconds since the epoch.  Any thread. */
static inline uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* free() through a cleanup attribute: `_cleanup_free_ char *s = ...;` */
static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

/* Hand ownership out of a cleanup-managed local. */
#define TAKE_PTR(p)                        \
	({                                 \
		__typeof__(p) _tp_ = (p);  \
		(p) = NULL;                \
		_tp_;                      \
	})

#endif /* CORRAL_COMMON_UTIL_H */

/* SPDX-License-Identifier: MIT */
/*
 * A one-word event: waiters sleep in the kernel (futex), wakers never take a
 * lock.  Used for the runtime's idle workers and the timer thread, and by
 * tests that wait for a reply.  Any thread.
 */
#ifndef CORRAL_COMMON_FUTEX_H
#define CORRAL_COMMON_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline int futex_wait(uint32_t *addr, uint32_t expected,
			     const struct timespec *rel_timeout)
{
	long r = syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected,
			 rel_timeout, NULL, 0);

	return r < 0 ? -errno : 0;
}

static inline void futex_wake(uint32_t *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline struct timespec ns_to_timespec(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / 1000000000ULL),
		.tv_nsec = (long)(ns % 1000000000ULL),
	};
	return ts;
}

/*
 * A completion: one side sets it once, any number wait.  Tests and
 * synchronous callers (the CLI-less demo) use it to wait for an actor's
 * reply; actors never wait on it.
 */
struct completion {
	uint32_t done;
};

static inline void completion_init(struct completion *c)
{
	__atomic_store_n(&c->done, 0, __ATOMIC_RELAXED);
}

static inline void completion_signal(struct completion *c)
{
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	futex_wake(&c->done, INT_MAX);
}

/* Returns 0 when signalled, -ETIMEDOUT when timeout_ns passed first. */
int completion_wait(struct completion *c, uint64_t timeout_ns);

#endif /* CORRAL_COMMON_FUTEX_H */

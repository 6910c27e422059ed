/* SPDX-License-Identifier: MIT */
/*
 * pfor: run fn(ctx, i) for every i in [0, n) on the calling thread and a
 * few short-lived helpers, then join them.  For the start-up's pure work
 * (reading and parsing the files of a state or runtime directory) while
 * nothing else runs: each index is taken once, by whichever thread gets to
 * it first, so fn must touch nothing shared but its own slot.
 *
 * Usage: p = { .fn, .ctx, .n }; pfor_start(&p, pfor_threads() - 1); do
 * something else on this thread; pfor_finish(&p) (which helps, then waits).
 */
#ifndef CORRAL_COMMON_PFOR_H
#define CORRAL_COMMON_PFOR_H

#include <pthread.h>
#include <stddef.h>

#define PFOR_THREADS_MAX 4

struct pfor {
	void (*fn)(void *ctx, size_t i);
	void *ctx;
	size_t n;
	size_t next;                    /* atomic: the next index to take */
	pthread_t th[PFOR_THREADS_MAX];
	unsigned started;               /* helpers running */
};

/* Threads worth using here: the CPUs online, 1 to PFOR_THREADS_MAX. */
unsigned pfor_threads(void);
/* Up to nthreads helpers (none for a small n: a thread costs more than 16 items). */
void pfor_start(struct pfor *p, unsigned nthreads);
/* Take what the helpers have not taken yet on this thread; then join them. */
void pfor_finish(struct pfor *p);

#endif

/* SPDX-License-Identifier: MIT */
#include "common/pfor.h"

#include <unistd.h>

#include "common/util.h"

unsigned pfor_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus < 1 ? 1 : cpus > PFOR_THREADS_MAX ? PFOR_THREADS_MAX : (unsigned)cpus;
}

static void *pfor_main(void *arg)
{
	struct pfor *p = arg;
	size_t i;

	while ((i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->n)
		p->fn(p->ctx, i);
	return NULL;
}

void pfor_start(struct pfor *p, unsigned nthreads)
{
	p->next = 0;
	p->started = 0;
	if (nthreads > PFOR_THREADS_MAX)
		nthreads = PFOR_THREADS_MAX;
	while (p->started < nthreads && (size_t)(p->started + 1) * 16 < p->n &&
	       pthread_create(&p->th[p->started], NULL, pfor_main, p) == 0)
		p->started++;
}

void pfor_finish(struct pfor *p)
{
	pfor_main(p);
	for (unsigned t = 0; t < p->started; t++)
		BUG_ON(pthread_join(p->th[t], NULL) != 0);
	p->started = 0;
}

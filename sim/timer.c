/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "sim/sim.h"

static void swap(struct sim_timer *a, struct sim_timer *b)
{
	struct sim_timer t = *a;

	*a = *b;
	*b = t;
}

int sim_timers_add(struct sim_timers *t, const struct sim_timer *e)
{
	size_t i;

	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		struct sim_timer *nv = realloc(t->v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		t->v = nv;
		t->cap = ncap;
	}
	i = t->n++;
	t->v[i] = *e;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (t->v[parent].when_ns <= t->v[i].when_ns)
			break;
		swap(&t->v[parent], &t->v[i]);
		i = parent;
	}
	return 0;
}

const struct sim_timer *sim_timers_peek(const struct sim_timers *t)
{
	return t->n ? &t->v[0] : NULL;
}

void sim_timers_pop(struct sim_timers *t)
{
	size_t i = 0;

	if (!t->n)
		return;
	t->v[0] = t->v[--t->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;

		if (l < t->n && t->v[l].when_ns < t->v[min].when_ns)
			min = l;
		if (r < t->n && t->v[r].when_ns < t->v[min].when_ns)
			min = r;
		if (min == i)
			break;
		swap(&t->v[i], &t->v[min]);
		i = min;
	}
}

void sim_timers_fini(struct sim_timers *t)
{
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Registry: add/remove/lookup/list under concurrency, name and UUID
 * clashes, UUID text round trip.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <urcu/urcu-memb.h>

#include "common/rcu.h"

#include "actors/domain.h"
#include "common/util.h"

static struct rt *rt;
static struct registry *reg;

static void setup(void)
{
	urcu_memb_register_thread();
	cr_assert_eq(rt_new(2, &rt), 0);
	cr_assert_eq(reg_new(&reg), 0);
}

static void teardown(void)
{
	reg_free(reg);
	rt_free(rt);
	urcu_memb_unregister_thread();
}

static struct domain *mk(const char *name, const uint8_t *uuid)
{
	struct domain *d;
	char err[128];

	cr_assert_eq(dom_new(rt, name, uuid, &d, err, sizeof(err)), 0, "%s", err);
	return d;
}

/* Remove from the registry and stop: the registry's and the alive refs go. */
static void retire(struct domain *d)
{
	cr_assert_eq(reg_del(reg, d), 0);
	actor_stop(dom_actor(d));
}

Test(registry, clash_on_name_or_uuid, .init = setup, .fini = teardown)
{
	struct domain *a = mk("a", NULL), *b = mk("a", NULL), *c;
	char txt[37];
	uint8_t back[16];

	cr_assert_eq(reg_add(reg, a), 0);
	cr_assert_eq(reg_add(reg, b), -EEXIST);
	c = mk("c", dom_uuid(a));
	cr_assert_eq(reg_add(reg, c), -EEXIST, "same UUID under another name");
	cr_assert_eq(reg_count(reg), 1);

	uuid_format(dom_uuid(a), txt);
	cr_assert_eq(uuid_parse(txt, back), 0);
	cr_assert_eq(memcmp(back, dom_uuid(a), 16), 0);
	cr_assert_eq(uuid_parse("not-a-uuid", back), -EINVAL);

	crcu_read_lock();
	cr_assert_eq(reg_lookup_name_rcu(reg, "a"), a);
	cr_assert_eq(reg_lookup_uuid_rcu(reg, dom_uuid(a)), a);
	cr_assert_null(reg_lookup_name_rcu(reg, "c"));
	crcu_read_unlock();

	retire(a);
	cr_assert_eq(reg_del(reg, a), -ENOENT);
	actor_stop(dom_actor(b));
	actor_stop(dom_actor(c));
}

#define NW 2
#define PER 3000

static bool stop_readers;

static void *writer(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	char name[64];

	urcu_memb_register_thread();
	for (int round = 0; round < 3; round++) {
		static __thread struct domain *mine[PER];

		for (int i = 0; i < PER; i++) {
			snprintf(name, sizeof(name), "w%u-d%d", w, i);
			mine[i] = mk(name, NULL);
			cr_assert_eq(reg_add(reg, mine[i]), 0);
		}
		for (int i = 0; i < PER; i++)
			retire(mine[i]);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

#define NSTABLE 16

/*
 * Domains never removed ("fixed", "stable-K") must be found and listed
 * exactly once every time, while the writers' adds and removes grow and
 * squeeze the registry's directory under the walk.
 */
static int count_cb(struct domain *d, void *arg)
{
	uint64_t *n = arg;
	unsigned k;

	(*n)++;
	if (strcmp(dom_name(d), "fixed") == 0)
		n[1]++;
	else if (sscanf(dom_name(d), "stable-%u", &k) == 1 && k < NSTABLE)
		n[2 + k]++;
	return 0;
}

static void *reader(void *arg)
{
	uint64_t lookups = 0;

	urcu_memb_register_thread();
	while (!__atomic_load_n(&stop_readers, __ATOMIC_ACQUIRE)) {
		uint64_t n[2 + NSTABLE] = { 0 };
		struct domain *d;

		crcu_read_lock();
		d = reg_lookup_name_rcu(reg, "fixed");
		cr_assert_not_null(d);
		cr_assert_str_eq(dom_snap_rcu(d)->name, "fixed");
		d = reg_lookup_name_rcu(reg, "w0-d7");
		if (d)  /* may come and go; when found it is intact */
			cr_assert_str_eq(dom_name(d), "w0-d7");
		if ((lookups & 255) == 0) {
			reg_for_each_rcu(reg, count_cb, n);
			cr_assert_eq(n[1], 1, "the stable domain missing from a listing");
			for (int k = 0; k < NSTABLE; k++)
				cr_assert_eq(n[2 + k], 1, "stable-%d listed %lu times", k,
					     (unsigned long)n[2 + k]);
			cr_assert_leq(n[0], 1 + NSTABLE + NW * PER);
		}
		crcu_read_unlock();
		lookups++;
	}
	urcu_memb_unregister_thread();
	return NULL;
}

Test(registry, concurrent_add_remove_lookup_list, .init = setup, .fini = teardown,
     .timeout = 240)
{
	pthread_t w[NW], r[2];
	struct domain *fixed = mk("fixed", NULL), *stable[NSTABLE];
	char name[32];

	cr_assert_eq(reg_add(reg, fixed), 0);
	for (int k = 0; k < NSTABLE; k++) {
		snprintf(name, sizeof(name), "stable-%d", k);
		stable[k] = mk(name, NULL);
		cr_assert_eq(reg_add(reg, stable[k]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, reader, NULL);
	for (unsigned i = 0; i < NW; i++)
		pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i);
	for (int i = 0; i < NW; i++)
		pthread_join(w[i], NULL);
	__atomic_store_n(&stop_readers, true, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	cr_assert_eq(reg_count(reg), 1 + NSTABLE);
	retire(fixed);
	for (int k = 0; k < NSTABLE; k++)
		retire(stable[k]);
	cr_assert_eq(reg_count(reg), 0);
}

/* Count each of v[0..n) a walk meets; anything else fails the test. */
struct seen {
	struct domain **v;
	unsigned n;
	unsigned *count;
	unsigned other;
};

static int seen_cb(struct domain *d, void *arg)
{
	struct seen *s = arg;

	for (unsigned i = 0; i < s->n; i++) {
		if (s->v[i] == d) {
			s->count[i]++;
			return 0;
		}
	}
	s->other++;
	return 0;
}

/*
 * Adds and removes that fill the directory, leave holes in it and make it
 * grow and squeeze: a walk after each step meets every registered domain
 * exactly once and nothing else.
 */
Test(registry, walk_meets_each_domain_once_through_growth_and_holes, .init = setup,
     .fini = teardown)
{
	enum { N = 2600 };
	struct domain **v = calloc(N, sizeof(*v));
	unsigned *count = calloc(N, sizeof(*count));
	bool *in = calloc(N, sizeof(*in));
	char name[32];

	cr_assert(v && count && in);
	for (int step = 0; step < 4; step++) {
		struct seen s = { .v = v, .n = N, .count = count };

		for (int i = 0; i < N; i++) {
			/* step 0: all in; 1: every third out; 2: back in; 3: most out */
			bool want = step == 1 ? i % 3 != 0 : step == 3 ? i % 7 == 0 : true;

			if (want && !in[i]) {
				snprintf(name, sizeof(name), "g%d-%d", step, i);
				v[i] = mk(name, NULL);
				cr_assert_eq(reg_add(reg, v[i]), 0);
				in[i] = true;
			} else if (!want && in[i]) {
				retire(v[i]);
				v[i] = NULL;    /* its memory may come back as another's */
				in[i] = false;
			}
		}
		memset(count, 0, N * sizeof(*count));
		crcu_read_lock();
		reg_for_each_rcu(reg, seen_cb, &s);
		crcu_read_unlock();
		cr_assert_eq(s.other, 0);
		for (int i = 0; i < N; i++)
			cr_assert_eq(count[i], in[i] ? 1u : 0u, "step %d, domain %d met %u times",
				     step, i, count[i]);
	}
	for (int i = 0; i < N; i++)
		if (in[i])
			retire(v[i]);
	cr_assert_eq(reg_count(reg), 0);
	free(v);
	free(count);
	free(in);
}

static int collect_cb(struct domain *d, void *arg)
{
	struct seen *s = arg;

	s->v[s->n++] = d;
	return 0;
}

/*
 * A lookup given the domain found before (the walk's order) finds the
 * domain of that name, whatever prev is: its neighbour, a stranger, or a
 * domain removed since; in a directory with holes, and again once it has
 * grown and been squeezed (slots moved).  A name not registered, or
 * removed, is not found.
 */
Test(registry, lookup_after_a_neighbour_finds_that_name_only, .init = setup, .fini = teardown)
{
	enum { N = 1500 };
	struct domain **v = calloc(2 * N, sizeof(*v)), **walk = calloc(2 * N, sizeof(*walk));
	char name[32];
	int added = 0;

	cr_assert(v && walk);
	for (int round = 0; round < 2; round++) {
		struct seen s = { .v = walk };
		struct domain *prev = NULL, *gone;

		/* Round 0: a directory with holes; round 1: grown and squeezed. */
		for (int i = 0; i < N; i++, added++) {
			snprintf(name, sizeof(name), "n%d", added);
			v[added] = mk(name, NULL);
			cr_assert_eq(reg_add(reg, v[added]), 0);
		}
		gone = v[added - N + 5];
		dom_ref(gone);          /* removed below, its memory kept for prev */
		for (int i = added - N; i < added; i += 5)
			retire(v[i]);
		crcu_read_lock();
		reg_for_each_rcu(reg, collect_cb, &s);
		cr_assert_eq(s.n, reg_count(reg));
		for (unsigned i = 0; i < s.n; i++) {
			const char *nm = dom_name(walk[i]);

			cr_assert_eq(reg_lookup_name_after_rcu(reg, nm, prev), walk[i]);
			cr_assert_eq(reg_lookup_name_after_rcu(reg, nm, walk[(i * 7 + 3) % s.n]),
				     walk[i]);
			cr_assert_eq(reg_lookup_name_after_rcu(reg, nm, gone), walk[i]);
			cr_assert_eq(reg_lookup_name_after_rcu(reg, nm, NULL), walk[i]);
			prev = walk[i];
		}
		/* The removed names, asked for in order after their neighbours. */
		for (unsigned i = 0; i + 1 < s.n; i++) {
			char missing[40];

			snprintf(missing, sizeof(missing), "%s-not", dom_name(walk[i + 1]));
			cr_assert_null(reg_lookup_name_after_rcu(reg, missing, walk[i]));
		}
		snprintf(name, sizeof(name), "n%d", added - N + 5);
		cr_assert_null(reg_lookup_name_after_rcu(reg, name, walk[0]));
		crcu_read_unlock();
		dom_unref(gone);
	}
	crcu_read_lock();
	{
		struct seen s = { .v = walk };

		reg_for_each_rcu(reg, collect_cb, &s);
		crcu_read_unlock();
		for (unsigned i = 0; i < s.n; i++)
			retire(walk[i]);
	}
	cr_assert_eq(reg_count(reg), 0);
	free(v);
	free(walk);
}

/*
 * A remove that finds a domain by name while its add is still under way
 * (a define and an undefine of one name from two clients): the remove must
 * see the add whole or not at all, never the name in the table without its
 * UUID, its directory slot or the registry's reference.
 */
static unsigned race_removed;
static bool race_stop;

static void *race_remover(void *arg)
{
	(void)arg;
	urcu_memb_register_thread();
	while (!__atomic_load_n(&race_stop, __ATOMIC_ACQUIRE)) {
		struct domain *d;

		crcu_read_lock();
		d = reg_lookup_name_rcu(reg, "race");
		crcu_read_unlock();
		/* d stays allocated: the adder holds it until it sees the remove. */
		if (d && reg_del(reg, d) == 0)
			__atomic_fetch_add(&race_removed, 1, __ATOMIC_RELEASE);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

Test(registry, a_remove_racing_the_add_of_the_same_domain, .init = setup, .fini = teardown,
     .timeout = 240)
{
	enum { N = 20000 };
	pthread_t th;

	pthread_create(&th, NULL, race_remover, NULL);
	for (unsigned i = 0; i < N; i++) {
		struct domain *d = mk("race", NULL);

		cr_assert_eq(reg_add(reg, d), 0, "add %u", i);
		while (__atomic_load_n(&race_removed, __ATOMIC_ACQUIRE) == i)
			sched_yield();
		cr_assert_eq(reg_count(reg), 0);
		actor_stop(dom_actor(d));
	}
	__atomic_store_n(&race_stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	cr_assert_eq(race_removed, N);
	crcu_read_lock();
	cr_assert_null(reg_lookup_name_rcu(reg, "race"));
	crcu_read_unlock();
}

/* SPDX-License-Identifier: MIT */
/*
 * vm-stats: the latest statistics of each domain's QEMU, as the monitor
 * actor's rounds deliver them (mon_set_poll()), published through RCU so
 * that a query reads them without waiting for anything.
 */
#include <stdlib.h>

#include "actors/vm-internal.h"
#include "common/rcu.h"
#include "common/util.h"

static void pubstats_free_rcu(struct rcu_head *head)
{
	struct vm_pubstats *p = container_of(head, struct vm_pubstats, rcu);

	crcu_reclaim_begin(head);
	json_decref(p->data);
	free(p);
}

static void replace(struct vm *vm, struct vm_pubstats *p)
{
	struct vm_pubstats *old = vm->stats;

	crcu_assign_pointer(vm->stats, p);
	if (old)
		crcu_call(&old->rcu, pubstats_free_rcu);
}

void vm_stats_publish(struct domain *d, json_t *data)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p = calloc(1, sizeof(*p));
	json_int_t at = json_integer_value(json_object_get(data, "collected_ns"));

	if (!p || !vm || at <= 0) {
		/* Not published: the previous figures stay, and age. */
		free(p);
		json_decref(data);
		return;
	}
	json_object_del(data, "collected_ns");
	p->data = data;
	p->collected_ns = (uint64_t)at;
	p->interval_ns = vm->poll_ns;
	replace(vm, p);
}

void vm_stats_clear(struct domain *d)
{
	struct vm *vm = vm_of(d);

	if (vm && vm->stats)
		replace(vm, NULL);
}

void vm_stats_free(struct vm *vm)
{
	/* The domain is freed after a grace period: nobody reads vm->stats. */
	if (vm->stats) {
		json_decref(vm->stats->data);
		free(vm->stats);
		vm->stats = NULL;
	}
}

const json_t *vm_stats_rcu(struct domain *d, uint64_t now, uint64_t *age_ns, bool *stale)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p;

	*age_ns = 0;
	*stale = false;
	if (!vm)
		return NULL;
	p = crcu_dereference(vm->stats);
	if (!p)
		return NULL;
	*age_ns = now > p->collected_ns ? now - p->collected_ns : 0;
	*stale = dom_snap_rcu(d)->mon != DOM_MON_OK ||
		 *age_ns > 2 * p->interval_ns + NSEC_PER_SEC;
	return p->data;
}

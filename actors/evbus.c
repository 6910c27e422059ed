/* SPDX-License-Identifier: MIT */
#include "actors/evbus.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/rculist.h>

#include "common/rcu.h"
#include "common/util.h"
#include "mailbox/mbx.h"

struct evbus {
	struct cds_list_head subs;      /* RCU list; writers hold lock */
	pthread_mutex_t lock;           /* subscribe/unsubscribe only, no I/O */
	uint64_t published;             /* atomic */
};

struct evbus_sub {
	struct cds_list_head link;
	struct rcu_head rcu;
	struct mbx q;                   /* publishers -> owner */
	unsigned cap;
	char *name;                     /* filter; NULL: all */
	evbus_notify_fn notify;
	void *arg;
	uint64_t dropped;               /* atomic */
	uint64_t taken;                 /* owner: received, not yet released */
	bool dead;                      /* atomic: unsubscribed */
};

struct evbus_msg {
	struct mbx_msg msg;
	json_t *ev;
};

static void evmsg_drop(struct mbx_msg *m, int err)
{
	struct evbus_msg *em = container_of(m, struct evbus_msg, msg);

	json_decref(em->ev);
	free(em);
}

int evbus_new(struct evbus **ret)
{
	struct evbus *bus = calloc(1, sizeof(*bus));

	if (!bus)
		return -ENOMEM;
	CDS_INIT_LIST_HEAD(&bus->subs);
	pthread_mutex_init(&bus->lock, NULL);
	*ret = bus;
	return 0;
}

void evbus_free(struct evbus *bus)
{
	if (!bus)
		return;
	BUG_ON(!cds_list_empty(&bus->subs));
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

int evbus_subscribe(struct evbus *bus, const char *name, unsigned cap, evbus_notify_fn notify,
		    void *arg, struct evbus_sub **ret)
{
	struct evbus_sub *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return -ENOMEM;
	if (name && !(sub->name = strdup(name))) {
		free(sub);
		return -ENOMEM;
	}
	mbx_init(&sub->q);
	sub->cap = cap ? cap : EVBUS_DEFAULT_CAP;
	sub->notify = notify;
	sub->arg = arg;
	pthread_mutex_lock(&bus->lock);
	cds_list_add_tail_rcu(&sub->link, &bus->subs);
	pthread_mutex_unlock(&bus->lock);
	*ret = sub;
	return 0;
}

static void sub_free_rcu_cb(struct rcu_head *head)
{
	struct evbus_sub *sub = container_of(head, struct evbus_sub, rcu);

	crcu_reclaim_begin(head);
	/* No publisher can reach it any more: drop what is left. */
	mbx_drain(&sub->q, -ESHUTDOWN);
	free(sub->name);
	free(sub);
}

void evbus_unsubscribe(struct evbus *bus, struct evbus_sub *sub)
{
	if (!sub)
		return;
	__atomic_store_n(&sub->dead, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&bus->lock);
	cds_list_del_rcu(&sub->link);
	pthread_mutex_unlock(&bus->lock);
	crcu_call(&sub->rcu, sub_free_rcu_cb);
}

void evbus_publish(struct evbus *bus, const char *domain, const char *event, json_t *data)
{
	struct evbus_sub *sub;
	json_t *ev;

	ev = json_pack("{s:s, s:s, s:f, s:o}", "domain", domain, "event", event, "timestamp",
		       (double)wall_ns() / 1e9, "data", data ? data : json_object());
	if (!ev)
		return;
	__atomic_fetch_add(&bus->published, 1, __ATOMIC_RELAXED);
	crcu_read_lock();
	cds_list_for_each_entry_rcu(sub, &bus->subs, link) {
		struct evbus_msg *em;

		if (__atomic_load_n(&sub->dead, __ATOMIC_ACQUIRE))
			continue;
		if (sub->name && strcmp(sub->name, domain) != 0)
			continue;
		if (mbx_pending(&sub->q) >= sub->cap || !(em = malloc(sizeof(*em)))) {
			__atomic_fetch_add(&sub->dropped, 1, __ATOMIC_RELAXED);
			continue;
		}
		mbx_msg_init(&em->msg, 1, evmsg_drop);
		/*
		 * Each subscriber gets its own copy: a json_t shared by two
		 * threads is freed by whichever lets go last (THREADS.md).
		 */
		em->ev = json_deep_copy(ev);
		if (!em->ev) {
			free(em);
			__atomic_fetch_add(&sub->dropped, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (mbx_send(&sub->q, &em->msg) == MBX_SCHEDULE && sub->notify)
			sub->notify(sub, sub->arg);
	}
	crcu_read_unlock();
	json_decref(ev);
}

json_t *evbus_sub_next(struct evbus_sub *sub)
{
	struct evbus_msg *em;
	json_t *ev;

	if (sub->taken == mbx_pending(&sub->q)) {
		/* Everything counted is taken: release, and stop if truly empty. */
		if (sub->taken && (mbx_release(&sub->q, sub->taken) & MBX_COUNT_MASK)) {
			sub->taken = 0;
			return evbus_sub_next(sub);
		}
		sub->taken = 0;
		return NULL;
	}
	em = container_of(mbx_recv(&sub->q), struct evbus_msg, msg);
	sub->taken++;
	ev = em->ev;
	free(em);
	return ev;
}

uint64_t evbus_sub_take_dropped(struct evbus_sub *sub)
{
	return __atomic_exchange_n(&sub->dropped, 0, __ATOMIC_RELAXED);
}

uint64_t evbus_published(struct evbus *bus)
{
	return __atomic_load_n(&bus->published, __ATOMIC_RELAXED);
}

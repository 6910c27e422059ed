/* SPDX-License-Identifier: MIT */
#include "actors/evbus.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/rculist.h>

#include "common/rcu.h"
#include "common/tsan.h"
#include "common/util.h"
#include "rpc/json-conv.h"

/* One published event, immutable once in the ring; its names follow it. */
struct evbus_ev {
	uint64_t seq;
	struct evbus_event pub;
	struct rcu_head rcu;
	char names[];                   /* pub.domain, pub.event, then pub.data */
};

struct evbus_listener {
	struct cds_list_head link;
	struct rcu_head rcu;
	evbus_notify_fn fn;
	void *arg;
};

struct evbus {
	unsigned cap;
	struct evbus_ev **ring;         /* slot seq % cap; atomic pointers */
	uint64_t head;                  /* atomic: the next sequence number */
	uint64_t published;             /* atomic */
	struct cds_list_head listeners; /* RCU list; writers hold lock */
	pthread_mutex_t lock;           /* listen/unlisten only, no I/O */
};

struct evbus_sub {
	char *name;                     /* filter; NULL: all */
	uint64_t next;                  /* owner: the next sequence number to read */
	uint64_t dropped;               /* owner */
};

static void ev_free(struct evbus_ev *e)
{
	free(e);
}

static void ev_free_rcu(struct rcu_head *head)
{
	struct evbus_ev *e = container_of(head, struct evbus_ev, rcu);

	crcu_reclaim_begin(head);
	ev_free(e);
}

int evbus_new(unsigned cap, struct evbus **ret)
{
	struct evbus *bus;

	if (cap == 0)
		cap = EVBUS_DEFAULT_CAP;
	if (cap > EVBUS_MAX_CAP)
		return -EINVAL;
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->ring = calloc(cap, sizeof(*bus->ring));
	if (!bus->ring) {
		free(bus);
		return -ENOMEM;
	}
	bus->cap = cap;
	CDS_INIT_LIST_HEAD(&bus->listeners);
	pthread_mutex_init(&bus->lock, NULL);
	*ret = bus;
	return 0;
}

void evbus_free(struct evbus *bus)
{
	if (!bus)
		return;
	BUG_ON(!cds_list_empty(&bus->listeners));
	/* Nobody publishes or reads any more. */
	for (unsigned i = 0; i < bus->cap; i++)
		if (bus->ring[i])
			ev_free(bus->ring[i]);
	free(bus->ring);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

unsigned evbus_cap(const struct evbus *bus)
{
	return bus->cap;
}

int evbus_listen(struct evbus *bus, evbus_notify_fn fn, void *arg, struct evbus_listener **ret)
{
	struct evbus_listener *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->fn = fn;
	l->arg = arg;
	/*
	 * cds_list_add_tail_rcu, spelled with crcu_assign_pointer so that
	 * ThreadSanitizer sees the publication: publishers may run already
	 * (domains re-attaching while the server starts).  Readers follow
	 * ->next only; ->prev is the writers', under the lock.
	 */
	pthread_mutex_lock(&bus->lock);
	l->link.next = &bus->listeners;
	l->link.prev = bus->listeners.prev;
	crcu_assign_pointer(bus->listeners.prev->next, &l->link);
	bus->listeners.prev = &l->link;
	pthread_mutex_unlock(&bus->lock);
	*ret = l;
	return 0;
}

static void listener_free_rcu(struct rcu_head *head)
{
	crcu_reclaim_begin(head);
	free(container_of(head, struct evbus_listener, rcu));
}

void evbus_unlisten(struct evbus *bus, struct evbus_listener *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&bus->lock);
	/* cds_list_del_rcu, as evbus_listen spells the add. */
	crcu_assign_pointer(l->link.prev->next, l->link.next);
	l->link.next->prev = l->link.prev;
	pthread_mutex_unlock(&bus->lock);
	crcu_call(&l->rcu, listener_free_rcu);
}

int evbus_subscribe(struct evbus *bus, const char *name, struct evbus_sub **ret)
{
	struct evbus_sub *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return -ENOMEM;
	if (name && !(sub->name = strdup(name))) {
		free(sub);
		return -ENOMEM;
	}
	sub->next = __atomic_load_n(&bus->head, __ATOMIC_ACQUIRE);
	*ret = sub;
	return 0;
}

void evbus_unsubscribe(struct evbus *bus, struct evbus_sub *sub)
{
	if (!sub)
		return;
	free(sub->name);
	free(sub);
}

static int data_write(void *arg, const char *buf, size_t len)
{
	struct evbus_data *d = arg;

	if (d->err)
		return -1;
	if (len > d->cap - d->len) {
		size_t cap = d->cap * 2 > d->len + len ? d->cap * 2 : d->len + len;
		char *nb = d->buf == d->small ? malloc(cap) : realloc(d->buf, cap);

		if (!nb) {
			d->err = -ENOMEM;
			return -1;
		}
		if (d->buf == d->small)
			memcpy(nb, d->small, d->len);
		d->buf = nb;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, buf, len);
	d->len += len;
	return 0;
}

void evbus_data_init(struct evbus_data *d)
{
	d->buf = d->small;
	d->cap = sizeof(d->small);
	d->len = 0;
	d->err = 0;
	msgpack_packer_init(&d->pk, d, data_write);
}

void evbus_data_reset(struct evbus_data *d)
{
	if (d->buf != d->small)
		free(d->buf);
	evbus_data_init(d);
}

void evbus_publish_data(struct evbus *bus, const char *domain, const char *event,
			struct evbus_data *data)
{
	static const char empty_map[1] = { '\x80' };     /* msgpack's fixmap of 0 */
	size_t dlen = strlen(domain) + 1, elen = strlen(event) + 1;
	const char *bytes = empty_map;
	size_t len = 1;
	struct evbus_listener *l;
	struct evbus_ev *e, *old, **slot;
	char *names;

	if (!data->err && data->len) {
		bytes = data->buf;
		len = data->len;
	}
	/* Names and data in one allocation: a publish is one malloc, a reclaim one free. */
	e = malloc(sizeof(*e) + dlen + elen + len);
	if (!e) {
		evbus_data_reset(data);
		return;
	}
	names = e->names;
	memcpy(names, domain, dlen);
	memcpy(names + dlen, event, elen);
	memcpy(names + dlen + elen, bytes, len);
	evbus_data_reset(data);
	e->pub.domain = names;
	e->pub.event = names + dlen;
	e->pub.data = names + dlen + elen;
	e->pub.data_len = len;
	e->pub.timestamp = (double)wall_ns() / 1e9;
	__atomic_fetch_add(&bus->published, 1, __ATOMIC_RELAXED);
	crcu_read_lock();
	e->seq = __atomic_fetch_add(&bus->head, 1, __ATOMIC_ACQ_REL);
	slot = &bus->ring[e->seq % bus->cap];
	/* Pairs with the acquire in evbus_sub_next(): e is complete. */
	tsan_handoff_release(e);
	old = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	for (;;) {
		if (old && old->seq > e->seq) {
			/*
			 * A publisher cap events later got here first: ours is
			 * already too old to be kept.  Nobody saw it.
			 */
			ev_free(e);
			e = NULL;
			break;
		}
		if (__atomic_compare_exchange_n(slot, &old, e, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
	}
	if (e && old)
		crcu_call(&old->rcu, ev_free_rcu);      /* readers may be looking at it */
	for (struct cds_list_head *p = crcu_dereference(bus->listeners.next);
	     p != &bus->listeners; p = crcu_dereference(p->next)) {
		l = cds_list_entry(p, struct evbus_listener, link);
		l->fn(l->arg);
	}
	crcu_read_unlock();
}

void evbus_publish(struct evbus *bus, const char *domain, const char *event, json_t *data)
{
	struct evbus_data d;

	evbus_data_init(&d);
	if (data && rpc_pack_json(&d.pk, data) < 0)
		evbus_data_reset(&d);   /* too deep, or no memory: an empty map */
	json_decref(data);
	evbus_publish_data(bus, domain, event, &d);
}

const struct evbus_event *evbus_sub_next(struct evbus *bus, struct evbus_sub *sub)
{
	for (;;) {
		uint64_t head = __atomic_load_n(&bus->head, __ATOMIC_ACQUIRE);
		struct evbus_ev *e;

		if (sub->next >= head)
			return NULL;
		if (head - sub->next > bus->cap) {
			/* Fallen behind by more than the ring holds: the oldest are gone. */
			sub->dropped += head - bus->cap - sub->next;
			sub->next = head - bus->cap;
		}
		e = __atomic_load_n(&bus->ring[sub->next % bus->cap], __ATOMIC_ACQUIRE);
		if (!e || e->seq < sub->next)
			return NULL;    /* numbered, not stored yet: its publisher tells us */
		tsan_handoff_acquire(e);
		if (e->seq > sub->next) {
			/* Reused since we read head: gone. */
			sub->dropped++;
			sub->next++;
			continue;
		}
		sub->next++;
		if (sub->name && strcmp(sub->name, e->pub.domain) != 0)
			continue;
		return &e->pub;
	}
}

int evbus_sub_pending(struct evbus *bus, const struct evbus_sub *sub)
{
	return sub->next < __atomic_load_n(&bus->head, __ATOMIC_ACQUIRE) || sub->dropped;
}

uint64_t evbus_sub_take_dropped(struct evbus_sub *sub)
{
	uint64_t n = sub->dropped;

	sub->dropped = 0;
	return n;
}

uint64_t evbus_published(struct evbus *bus)
{
	return __atomic_load_n(&bus->published, __ATOMIC_RELAXED);
}

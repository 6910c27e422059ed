/* SPDX-License-Identifier: MIT */
/*
 * evbus: domain events (lifecycle changes and forwarded QMP events) fanned
 * out to subscribers, e.g. RPC connections that called events.subscribe.
 *
 * One ring of the last `cap` events, shared by every subscriber: a publish
 * costs the same however many subscribe (one allocation, one slot, one call
 * per listener), and a subscriber is only a cursor into the ring, read on
 * its owner's thread.  A subscriber that falls more than `cap` events
 * behind loses the oldest ones (their slots are reused) and learns how many
 * (evbus_sub_take_dropped), so it can send an explicit "events dropped"
 * marker.  Nothing a subscriber does (or fails to do) costs a publisher or
 * another subscriber anything.
 *
 * Events in the ring are immutable struct evbus_event values owned by the
 * ring, one allocation each: the names and the data, which is packed once
 * as msgpack at publish (what the RPC server writes to every subscriber as
 * it is).  Readers look at them inside an RCU read section; a replaced
 * event is one free() after a grace period.
 *
 * Listeners (a few: the RPC server has one) are told after each publish;
 * they are an RCU list, changed under a short mutex (no I/O under it).
 */
#ifndef CORRAL_ACTORS_EVBUS_H
#define CORRAL_ACTORS_EVBUS_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define EVBUS_DEFAULT_CAP 4096
#define EVBUS_MAX_CAP (1u << 20)

struct evbus;
struct evbus_sub;
struct evbus_listener;

/* One published event, as subscribers read it. */
struct evbus_event {
	const char *domain;
	const char *event;
	double timestamp;               /* seconds since the epoch, at publish */
	const void *data;               /* one msgpack value (an empty map when none) */
	size_t data_len;
};

/*
 * An event's data being packed: init, pack one value with .pk (a map, as
 * clients expect), then evbus_publish_data.  A stack buffer that moves to
 * the heap when the value outgrows it.  Not to be copied once initialized.
 */
struct evbus_data {
	msgpack_packer pk;
	char *buf;
	size_t len, cap;
	int err;                        /* -ENOMEM once a write failed */
	char small[240];
};

void evbus_data_init(struct evbus_data *d);
/* Forget what was packed (after a failed pack: start again). */
void evbus_data_reset(struct evbus_data *d);

/*
 * Called after each publish, on the publisher's thread, inside its read
 * section: must not block (post a task to the owner's thread).
 */
typedef void (*evbus_notify_fn)(void *arg);

/* A bus keeping the last cap events (0: EVBUS_DEFAULT_CAP; at most EVBUS_MAX_CAP). */
int evbus_new(unsigned cap, struct evbus **ret);
/* All listeners must be gone.  Not inside a read section. */
void evbus_free(struct evbus *bus);
unsigned evbus_cap(const struct evbus *bus);

/* Call fn(arg) after every publish.  Any thread. */
int evbus_listen(struct evbus *bus, evbus_notify_fn fn, void *arg,
		 struct evbus_listener **ret);
/* fn is not called again once the next grace period ends. */
void evbus_unlisten(struct evbus *bus, struct evbus_listener *l);

/*
 * Subscribe to events of domain `name` (NULL: all domains), from the next
 * one published.  Any thread; the subscriber is then its owner's alone.
 */
int evbus_subscribe(struct evbus *bus, const char *name, struct evbus_sub **ret);
void evbus_unsubscribe(struct evbus *bus, struct evbus_sub *sub);

/*
 * Publish an event of domain with the value packed in data, and release
 * data's buffer.  Nothing packed, or a failed pack: an empty map.  Any
 * registered thread; lock-free; never blocks; O(1) in the number of
 * subscribers.
 */
void evbus_publish_data(struct evbus *bus, const char *domain, const char *event,
			struct evbus_data *data);
/*
 * The same with data as JSON, stolen (may be NULL: an empty map), packed
 * and released here.  Nested deeper than RPC_JSON_MAX_DEPTH: an empty map.
 */
void evbus_publish(struct evbus *bus, const char *domain, const char *event, json_t *data);

/*
 * Owner side, inside a read section.  The next event for sub, borrowed (it
 * stays valid until the read section ends; do not change it or its
 * reference count), or NULL when sub has seen everything published so far.
 */
const struct evbus_event *evbus_sub_next(struct evbus *bus, struct evbus_sub *sub);
/* Whether sub has events waiting (cheap; owner). */
int evbus_sub_pending(struct evbus *bus, const struct evbus_sub *sub);
/*
 * Events sub lost (its slots were reused before it read them) since the
 * last call.  With a domain filter this counts every event it lost, of any
 * domain: an upper bound of its own.  Owner.
 */
uint64_t evbus_sub_take_dropped(struct evbus_sub *sub);

uint64_t evbus_published(struct evbus *bus);

#endif /* CORRAL_ACTORS_EVBUS_H */

/* SPDX-License-Identifier: MIT */
/*
 * evbus: domain events (lifecycle changes and forwarded QMP events) fanned
 * out to subscribers, e.g. RPC connections that called events.subscribe.
 *
 * Publishing never blocks: each subscriber has a bounded queue (an mbx); a
 * publish to a full queue is counted as dropped instead, and the subscriber
 * learns how many it missed (evbus_sub_take_dropped) so it can send an
 * explicit "events dropped" marker.  A slow subscriber never stalls a
 * monitor or a domain actor.
 *
 * The subscriber list is an RCU list: publishers walk it with no lock;
 * subscribe/unsubscribe take a short mutex among themselves (no I/O under
 * it) and free after a grace period.
 */
#ifndef CORRAL_ACTORS_EVBUS_H
#define CORRAL_ACTORS_EVBUS_H

#include <jansson.h>
#include <stdint.h>

#define EVBUS_DEFAULT_CAP 1024

struct evbus;
struct evbus_sub;

/*
 * Called when the subscriber's queue goes from empty to non-empty, on the
 * publisher's thread: must not block (post a task to the owner's thread).
 */
typedef void (*evbus_notify_fn)(struct evbus_sub *sub, void *arg);

int evbus_new(struct evbus **ret);
/* All subscribers must be gone.  Not inside a read section. */
void evbus_free(struct evbus *bus);

/*
 * Subscribe to events of domain `name` (NULL: all domains), at most cap
 * queued (0: EVBUS_DEFAULT_CAP).  Any thread.
 */
int evbus_subscribe(struct evbus *bus, const char *name, unsigned cap, evbus_notify_fn notify,
		    void *arg, struct evbus_sub **ret);
/* Stop delivery; queued events are freed after a grace period.  Owner. */
void evbus_unsubscribe(struct evbus *bus, struct evbus_sub *sub);

/*
 * Publish {"domain", "event", "timestamp", "data"}: data is stolen (may be
 * NULL).  Any registered thread; lock-free; never blocks.
 */
void evbus_publish(struct evbus *bus, const char *domain, const char *event, json_t *data);

/*
 * Owner side.  Take the next event (caller owns the reference) or NULL when
 * the queue is empty.  When it returns NULL the subscriber is idle and the
 * next publish notifies again.  One owner thread at a time.
 */
json_t *evbus_sub_next(struct evbus_sub *sub);
/* Events dropped since the last call (queue was full).  Owner. */
uint64_t evbus_sub_take_dropped(struct evbus_sub *sub);

uint64_t evbus_published(struct evbus *bus);

#endif /* CORRAL_ACTORS_EVBUS_H */

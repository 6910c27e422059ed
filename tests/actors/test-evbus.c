/* SPDX-License-Identifier: MIT */
/*
 * Event bus: one shared ring, per-domain filters, a publish that costs the
 * same for any number of subscribers, the oldest dropped (and counted) for
 * a subscriber that falls behind.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <urcu/urcu-memb.h>

#include "actors/evbus.h"
#include "common/rcu.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

static struct evbus *bus;
static unsigned notified;
static struct evbus_listener *listener;

static void on_notify(void *arg)
{
	__atomic_fetch_add(&notified, 1, __ATOMIC_RELAXED);
}

static void setup_cap(unsigned cap)
{
	urcu_memb_register_thread();
	cr_assert_eq(evbus_new(cap, &bus), 0);
	cr_assert_eq(evbus_listen(bus, on_notify, NULL, &listener), 0);
}

static void setup(void)
{
	setup_cap(0);
}

static void setup_small(void)
{
	setup_cap(10);
}

static void teardown(void)
{
	evbus_unlisten(bus, listener);
	urcu_memb_barrier();
	evbus_free(bus);
	urcu_memb_unregister_thread();
}

/* An event's data, unpacked: exactly one msgpack value, as JSON. */
static json_t *data_json(const struct evbus_event *ev)
{
	msgpack_unpacked u;
	size_t off = 0;
	char err[128];
	json_t *j = NULL;

	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, ev->data, ev->data_len, &off), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(off, ev->data_len, "one value, nothing after it");
	cr_assert_eq(rpc_obj_to_json(&u.data, "data", &j, err, sizeof(err)), 0, "%s", err);
	msgpack_unpacked_destroy(&u);
	return j;
}

/* Events taken; checks each one's domain and that "seq" data, if any, rises. */
static unsigned drain(struct evbus_sub *sub, const char *want_domain)
{
	unsigned n = 0;
	const struct evbus_event *ev;

	crcu_read_lock();
	while ((ev = evbus_sub_next(bus, sub))) {
		if (want_domain)
			cr_assert_str_eq(ev->domain, want_domain);
		cr_assert_gt(ev->timestamp, 0.0);
		n++;
	}
	crcu_read_unlock();
	return n;
}

Test(evbus, filter_and_fanout, .init = setup, .fini = teardown)
{
	struct evbus_sub *all, *web;

	cr_assert_eq(evbus_subscribe(bus, NULL, &all), 0);
	cr_assert_eq(evbus_subscribe(bus, "web1", &web), 0);
	notified = 0;
	evbus_publish(bus, "web1", "STOP", NULL);
	evbus_publish(bus, "db1", "RESUME", json_pack("{s:i}", "x", 1));
	evbus_publish(bus, "web1", "RESUME", NULL);
	cr_assert_eq(notified, 3, "the listener hears of every publish");
	cr_assert(evbus_sub_pending(bus, all));
	cr_assert_eq(drain(all, NULL), 3);
	cr_assert_eq(drain(web, "web1"), 2);
	cr_assert_not(evbus_sub_pending(bus, all));
	evbus_publish(bus, "web1", "STOP", NULL);
	cr_assert_eq(drain(web, "web1"), 1);
	cr_assert_eq(drain(all, NULL), 1);
	cr_assert_eq(evbus_sub_take_dropped(all), 0);
	evbus_unsubscribe(bus, all);
	evbus_unsubscribe(bus, web);
}

Test(evbus, subscriber_sees_only_what_follows, .init = setup, .fini = teardown)
{
	struct evbus_sub *late;

	evbus_publish(bus, "web1", "STOP", NULL);
	cr_assert_eq(evbus_subscribe(bus, NULL, &late), 0);
	cr_assert_eq(drain(late, NULL), 0);
	evbus_publish(bus, "web1", "RESUME", NULL);
	cr_assert_eq(drain(late, NULL), 1);
	evbus_unsubscribe(bus, late);
}

/* The oldest go: a subscriber 25 behind a ring of 10 gets the last 10. */
Test(evbus, slow_subscriber_loses_the_oldest_and_counts, .init = setup_small, .fini = teardown)
{
	struct evbus_sub *slow, *fast;
	const struct evbus_event *ev;

	cr_assert_eq(evbus_subscribe(bus, NULL, &slow), 0);
	cr_assert_eq(evbus_subscribe(bus, NULL, &fast), 0);
	for (int i = 0; i < 25; i++) {
		evbus_publish(bus, "web1", "STOP", json_pack("{s:i}", "n", i));
		cr_assert_eq(drain(fast, NULL), 1);
	}
	crcu_read_lock();
	ev = evbus_sub_next(bus, slow);
	cr_assert_not_null(ev);
	json_t *data = data_json(ev);

	cr_assert_eq(json_integer_value(json_object_get(data, "n")), 15,
		     "the oldest kept is the 16th");
	json_decref(data);
	crcu_read_unlock();
	cr_assert_eq(evbus_sub_take_dropped(slow), 15);
	cr_assert_eq(evbus_sub_take_dropped(slow), 0);
	cr_assert_eq(drain(slow, NULL), 9);
	cr_assert_eq(evbus_sub_take_dropped(fast), 0, "a subscriber that keeps up loses nothing");
	evbus_unsubscribe(bus, slow);
	evbus_unsubscribe(bus, fast);
}

static struct evbus_sub *shared;

static void *publisher(void *arg)
{
	urcu_memb_register_thread();
	for (int i = 0; i < 20000; i++)
		evbus_publish(bus, "d", "E", NULL);
	urcu_memb_unregister_thread();
	return NULL;
}

static void setup_1000(void)
{
	setup_cap(1000);
}

Test(evbus, concurrent_publishers_nothing_lost_or_counted, .init = setup_1000, .fini = teardown,
     .timeout = 120)
{
	pthread_t th[3];
	uint64_t got = 0;

	cr_assert_eq(evbus_subscribe(bus, NULL, &shared), 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, publisher, NULL);
	for (int k = 0; k < 2000; k++)
		got += drain(shared, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	got += drain(shared, NULL);
	/* Every event was delivered or counted as dropped, exactly once. */
	cr_assert_eq(got + evbus_sub_take_dropped(shared), 60000);
	cr_assert_eq(evbus_published(bus), 60000);
	evbus_unsubscribe(bus, shared);
}

/*
 * A publish does no work per subscriber: nothing is copied or queued for
 * each.  Shown without timing: every one of 10,000 subscribers reads the
 * very same event object from the ring.
 */
Test(evbus, publish_is_shared_not_copied, .init = setup, .fini = teardown)
{
	struct evbus_sub *subs[10000];
	const struct evbus_event *first = NULL;

	for (int i = 0; i < 10000; i++)
		cr_assert_eq(evbus_subscribe(bus, NULL, &subs[i]), 0);
	evbus_publish(bus, "web1", "STOP", NULL);
	crcu_read_lock();
	for (int i = 0; i < 10000; i++) {
		const struct evbus_event *ev = evbus_sub_next(bus, subs[i]);

		cr_assert_not_null(ev);
		if (!first)
			first = ev;
		cr_assert_eq(ev, first, "subscriber %d got a copy of its own", i);
	}
	crcu_read_unlock();
	for (int i = 0; i < 10000; i++)
		evbus_unsubscribe(bus, subs[i]);
}

/* Data is packed once at publish: what a subscriber unpacks is what was published. */
Test(evbus, data_is_packed_at_publish, .init = setup, .fini = teardown)
{
	struct evbus_sub *sub;
	json_t *big = json_pack("{s:s, s:[i, f, b, n], s:{s:s}}", "text", "", "list", -7, 2.5, 1,
				"nested", "k", "v");
	json_t *want, *got, *deep = json_object(), *at = deep;
	struct evbus_data ed;
	const struct evbus_event *ev;
	char text[1000];

	/* Beyond the stack buffer: the packed value moves to the heap whole. */
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	json_object_set_new(big, "text", json_string(text));
	want = json_deep_copy(big);
	for (int i = 0; i < RPC_JSON_MAX_DEPTH + 4; i++) {
		json_t *next = json_object();

		json_object_set_new(at, "d", next);
		at = next;
	}
	cr_assert_eq(evbus_subscribe(bus, NULL, &sub), 0);
	evbus_publish(bus, "web1", "big", big);
	evbus_publish(bus, "web1", "none", NULL);
	evbus_publish(bus, "web1", "deep", deep);
	evbus_data_init(&ed);
	cr_assert_eq(msgpack_pack_map(&ed.pk, 1), 0);
	cr_assert_eq(rpc_pack_cstr(&ed.pk, "state"), 0);
	cr_assert_eq(rpc_pack_cstr(&ed.pk, "running"), 0);
	evbus_publish_data(bus, "web1", "packed", &ed);
	evbus_data_init(&ed);
	evbus_publish_data(bus, "web1", "empty", &ed);

	crcu_read_lock();
	ev = evbus_sub_next(bus, sub);
	cr_assert_str_eq(ev->event, "big");
	got = data_json(ev);
	cr_assert(json_equal(got, want), "the value comes back as it went");
	json_decref(got);
	json_decref(want);
	for (int i = 0; i < 2; i++) {
		ev = evbus_sub_next(bus, sub);
		cr_assert_str_eq(ev->event, i ? "deep" : "none");
		cr_assert_eq(ev->data_len, 1, "%s: an empty map", ev->event);
		cr_assert_eq((unsigned char)*(const char *)ev->data, 0x80);
	}
	ev = evbus_sub_next(bus, sub);
	cr_assert_str_eq(ev->event, "packed");
	got = data_json(ev);
	cr_assert_str_eq(json_string_value(json_object_get(got, "state")), "running");
	json_decref(got);
	ev = evbus_sub_next(bus, sub);
	cr_assert_str_eq(ev->event, "empty");
	cr_assert_eq(ev->data_len, 1);
	cr_assert_null(evbus_sub_next(bus, sub));
	crcu_read_unlock();
	evbus_unsubscribe(bus, sub);
}

/* SPDX-License-Identifier: MIT */
/* Event bus: fan-out, per-domain filter, bounded queues with a drop count. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <urcu/urcu-memb.h>

#include "actors/evbus.h"
#include "common/rcu.h"

static struct evbus *bus;
static unsigned notified;

static void setup(void)
{
	urcu_memb_register_thread();
	cr_assert_eq(evbus_new(&bus), 0);
}

static void teardown(void)
{
	urcu_memb_barrier();
	evbus_free(bus);
	urcu_memb_unregister_thread();
}

static void on_notify(struct evbus_sub *sub, void *arg)
{
	__atomic_fetch_add(&notified, 1, __ATOMIC_RELAXED);
}

static unsigned drain(struct evbus_sub *sub, const char *want_domain)
{
	unsigned n = 0;
	json_t *ev;

	while ((ev = evbus_sub_next(sub))) {
		if (want_domain)
			cr_assert_str_eq(json_string_value(json_object_get(ev, "domain")),
					 want_domain);
		cr_assert_not_null(json_object_get(ev, "timestamp"));
		json_decref(ev);
		n++;
	}
	return n;
}

Test(evbus, filter_and_fanout, .init = setup, .fini = teardown)
{
	struct evbus_sub *all, *web;

	cr_assert_eq(evbus_subscribe(bus, NULL, 0, on_notify, NULL, &all), 0);
	cr_assert_eq(evbus_subscribe(bus, "web1", 0, on_notify, NULL, &web), 0);
	notified = 0;
	evbus_publish(bus, "web1", "STOP", NULL);
	evbus_publish(bus, "db1", "RESUME", json_pack("{s:i}", "x", 1));
	evbus_publish(bus, "web1", "RESUME", NULL);
	cr_assert_eq(notified, 2, "one notification per idle subscriber");
	cr_assert_eq(drain(all, NULL), 3);
	cr_assert_eq(drain(web, "web1"), 2);
	/* Idle again: the next publish notifies again. */
	evbus_publish(bus, "web1", "STOP", NULL);
	cr_assert_eq(notified, 4);
	cr_assert_eq(drain(web, "web1"), 1);
	cr_assert_eq(drain(all, NULL), 1);
	evbus_unsubscribe(bus, all);
	evbus_unsubscribe(bus, web);
}

Test(evbus, slow_subscriber_drops_and_counts, .init = setup, .fini = teardown)
{
	struct evbus_sub *slow;

	cr_assert_eq(evbus_subscribe(bus, NULL, 10, NULL, NULL, &slow), 0);
	for (int i = 0; i < 25; i++)
		evbus_publish(bus, "web1", "STOP", NULL);
	cr_assert_eq(evbus_sub_take_dropped(slow), 15);
	cr_assert_eq(evbus_sub_take_dropped(slow), 0);
	cr_assert_eq(drain(slow, NULL), 10);
	/* Unsubscribing with events queued frees them (checked by ASan). */
	evbus_publish(bus, "web1", "STOP", NULL);
	evbus_unsubscribe(bus, slow);
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

Test(evbus, concurrent_publishers_nothing_lost_or_counted, .init = setup, .fini = teardown,
     .timeout = 120)
{
	pthread_t th[3];
	uint64_t got = 0;

	cr_assert_eq(evbus_subscribe(bus, NULL, 1000, NULL, NULL, &shared), 0);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, publisher, NULL);
	for (int k = 0; k < 2000; k++)
		got += drain(shared, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	got += drain(shared, NULL);
	/* Every event was delivered or counted as dropped, exactly once. */
	cr_assert_eq(got + evbus_sub_take_dropped(shared), 60000);
	evbus_unsubscribe(bus, shared);
}

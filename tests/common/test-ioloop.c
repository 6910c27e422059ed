/* SPDX-License-Identifier: MIT */
/* ioloop: readiness callbacks on the loop thread, posts from many threads. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "common/futex.h"
#include "common/ioloop.h"
#include "common/rcu.h"
#include "common/util.h"

static struct ioloop *l;

static void setup(void)
{
	urcu_memb_register_thread();
	cr_assert_eq(ioloop_new(2, &l), 0);
}

static void teardown(void)
{
	ioloop_free(l);
	urcu_memb_unregister_thread();
}

struct reader {
	struct io_watch w;
	struct completion done;
	size_t got;
	size_t want;
	int on_loop;
};

static void read_cb(struct io_watch *w, uint32_t events)
{
	struct reader *r = container_of(w, struct reader, w);
	char buf[4096];
	ssize_t n;

	r->on_loop = ioloop_thr_is_current(w->thr);
	while ((n = read(w->fd, buf, sizeof(buf))) > 0)
		r->got += (size_t)n;
	if (r->got >= r->want)
		completion_signal(&r->done);
	else
		io_watch_mod(w, EPOLLIN | EPOLLONESHOT);
}

Test(ioloop, readiness_runs_callback_on_loop_thread, .init = setup, .fini = teardown)
{
	struct reader r = { .want = 100000 };
	int sv[2];
	char chunk[1000] = { 0 };

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	completion_init(&r.done);
	cr_assert_eq(io_watch_add(l, &r.w, sv[0], EPOLLIN | EPOLLONESHOT, read_cb), 0);
	for (int i = 0; i < 100; i++) {
		while (write(sv[1], chunk, sizeof(chunk)) < 0)
			usleep(100);
	}
	cr_assert_eq(completion_wait(&r.done, 30 * NSEC_PER_SEC), 0, "got %zu", r.got);
	cr_assert(r.on_loop);
	io_watch_del(&r.w);
	urcu_memb_barrier();
	close(sv[0]);
	close(sv[1]);
}

#define NPOST 4
#define PER 20000

struct counted {
	struct io_task t;
};

static uint64_t ran;
static struct completion all_ran;
static struct io_watch anchor;

static void task_fn(struct io_task *t)
{
	free(container_of(t, struct counted, t));
	if (++ran == (uint64_t)NPOST * PER)     /* loop thread only: no atomics */
		completion_signal(&all_ran);
}

static void *poster(void *arg)
{
	for (int i = 0; i < PER; i++) {
		struct counted *c = malloc(sizeof(*c));

		c->t.fn = task_fn;
		io_post(anchor.thr, &c->t);
	}
	return NULL;
}

Test(ioloop, posts_from_many_threads_all_run_once, .init = setup, .fini = teardown,
     .timeout = 120)
{
	pthread_t th[NPOST];
	int sv[2];

	/* Any watch gives us a loop thread to post to. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(io_watch_add(l, &anchor, sv[0], 0, NULL), 0);
	completion_init(&all_ran);
	for (int i = 0; i < NPOST; i++)
		pthread_create(&th[i], NULL, poster, NULL);
	for (int i = 0; i < NPOST; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(completion_wait(&all_ran, 60 * NSEC_PER_SEC), 0, "ran %lu",
		     (unsigned long)ran);
	io_watch_del(&anchor);
	close(sv[0]);
	close(sv[1]);
}

/*
 * The window between epoll_wait() returning an event and the loop looking
 * its watch up: a watch deleted and freed (after a grace period, as the
 * contract says) inside that window must not be used.  The test hook holds
 * the loop thread in the window while this thread deletes and frees.
 */
static struct completion in_window, freed;
static uint32_t hook_armed;

static void window_hook(void)
{
	if (!__atomic_exchange_n(&hook_armed, 0, __ATOMIC_ACQ_REL))
		return;
	completion_signal(&in_window);
	completion_wait(&freed, 10 * NSEC_PER_SEC);
}

struct victim {
	struct io_watch w;
	uint32_t *calls;
};

static void victim_cb(struct io_watch *w, uint32_t events)
{
	struct victim *v = container_of(w, struct victim, w);

	__atomic_fetch_add(v->calls, 1, __ATOMIC_RELAXED);
}

/*
 * A victim watching fd, and the loop thread held in the window with the
 * event for it (a byte written to peer), outside any read section.
 */
static struct victim *hold_event_for(int fd, int peer, uint32_t *calls)
{
	struct victim *v = calloc(1, sizeof(*v));

	cr_assert_not_null(v);
	v->calls = calls;
	completion_init(&in_window);
	completion_init(&freed);
	__atomic_store_n(&ioloop__after_wait_hook, window_hook, __ATOMIC_RELEASE);
	__atomic_store_n(&hook_armed, 1, __ATOMIC_RELEASE);
	cr_assert_eq(io_watch_add(l, &v->w, fd, EPOLLIN, victim_cb), 0);
	cr_assert_eq(write(peer, "x", 1), 1);
	cr_assert_eq(completion_wait(&in_window, 10 * NSEC_PER_SEC), 0,
		     "the loop never took the event");
	return v;
}

/* After its delete: free v as the contract allows, and let the loop go on. */
static void free_and_release(struct victim *v)
{
	crcu_synchronize();
	memset(v, 0x5a, sizeof(*v));    /* what a reuse would leave */
	free(v);
	completion_signal(&freed);
	/* Let the loop finish its batch. */
	usleep(100 * 1000);
	__atomic_store_n(&ioloop__after_wait_hook, NULL, __ATOMIC_RELEASE);
}

Test(ioloop, deleted_watch_is_not_used_after_epoll_wait, .init = setup, .fini = teardown)
{
	uint32_t calls = 0;
	struct victim *v;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	v = hold_event_for(sv[0], sv[1], &calls);
	io_watch_del(&v->w);
	free_and_release(v);
	cr_assert_eq(__atomic_load_n(&calls, __ATOMIC_RELAXED), 0,
		     "the deleted watch's callback ran");
	close(sv[0]);
	close(sv[1]);
}

/*
 * The same window, and the deleted watch's fd reused at once by a new watch
 * (same descriptor number, a socket with nothing to read): the event taken
 * for the old watch must reach neither the old callback nor the new one.
 */
Test(ioloop, stale_event_is_not_given_to_a_new_watch_on_the_same_fd, .init = setup,
     .fini = teardown)
{
	struct victim *v, fresh = { 0 };
	uint32_t calls = 0, fresh_calls = 0;
	int sv[2], sv2[2], fd;

	fresh.calls = &fresh_calls;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2), 0);
	fd = sv[0];
	v = hold_event_for(fd, sv[1], &calls);
	io_watch_del(&v->w);
	/* The descriptor number now names a quiet socket, watched anew. */
	cr_assert_eq(dup2(sv2[0], fd), fd);
	cr_assert_eq(io_watch_add(l, &fresh.w, fd, EPOLLIN, victim_cb), 0);
	free_and_release(v);
	cr_assert_eq(__atomic_load_n(&calls, __ATOMIC_RELAXED), 0,
		     "the deleted watch's callback ran");
	cr_assert_eq(__atomic_load_n(&fresh_calls, __ATOMIC_RELAXED), 0,
		     "the new watch was called for the old one's event");
	/* The new watch works: data on its socket reaches it. */
	cr_assert_eq(write(sv2[1], "y", 1), 1);
	for (int i = 0; i < 10000 && !__atomic_load_n(&fresh_calls, __ATOMIC_RELAXED); i++)
		usleep(1000);
	cr_assert_gt(__atomic_load_n(&fresh_calls, __ATOMIC_RELAXED), 0);
	io_watch_del(&fresh.w);
	crcu_synchronize();
	close(fd);
	close(sv[1]);
	close(sv2[0]);
	close(sv2[1]);
}

Test(ioloop, an_fd_past_the_table_is_refused, .init = setup, .fini = teardown)
{
	struct io_watch w;

	cr_assert_eq(io_watch_add(l, &w, -1, EPOLLIN, NULL), -EBADF);
	cr_assert_eq(io_watch_add(l, &w, INT32_MAX, EPOLLIN, NULL), -EMFILE);
}

/* SPDX-License-Identifier: MIT */
/* ioloop: readiness callbacks on the loop thread, posts from many threads. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "common/futex.h"
#include "common/ioloop.h"
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

/* SPDX-License-Identifier: MIT */
#include "common/ioloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/rcu.h"
#include "common/tsan.h"
#include "common/util.h"

struct ioloop_thr {
	pthread_t thread;
	int epfd;
	int evfd;                       /* wakes the loop for posts and stop */
	struct io_watch wake;
	struct __cds_wfcq_head tasks_head;
	struct cds_wfcq_tail tasks_tail;
	bool stopping;                  /* atomic */
};

struct ioloop {
	unsigned n;
	unsigned next;                  /* atomic round-robin cursor */
	struct ioloop_thr *thr;
};

static __thread const struct ioloop_thr *tls_thr;

static void run_tasks(struct ioloop_thr *t)
{
	struct cds_wfcq_node *node;

	while ((node = __cds_wfcq_dequeue_blocking(&t->tasks_head, &t->tasks_tail))) {
		struct io_task *task = container_of(node, struct io_task, node);

		tsan_handoff_acquire(node);
		task->fn(task);
	}
}

static void wake_cb(struct io_watch *w, uint32_t events)
{
	struct ioloop_thr *t = container_of(w, struct ioloop_thr, wake);
	uint64_t v;

	/* Drain the counter first: a post after this read writes again. */
	while (read(t->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	run_tasks(t);
}

static void *loop_main(void *arg)
{
	struct ioloop_thr *t = arg;
	struct epoll_event evs[64];

	urcu_memb_register_thread();
	tls_thr = t;
	while (!__atomic_load_n(&t->stopping, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(t->epfd, evs, ARRAY_SIZE(evs), -1);

		if (n < 0) {
			BUG_ON(errno != EINTR);
			continue;
		}
		/*
		 * One read section per batch: watches deleted meanwhile stay
		 * valid until we are done with them (see io_watch_del).
		 */
		crcu_read_lock();
		for (int i = 0; i < n; i++) {
			struct io_watch *w = evs[i].data.ptr;

			w->cb(w, evs[i].events);
		}
		crcu_read_unlock();
	}
	run_tasks(t);
	urcu_memb_unregister_thread();
	return NULL;
}

static int thr_init(struct ioloop_thr *t)
{
	struct epoll_event ev = { .events = EPOLLIN };

	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (t->epfd < 0)
		return -errno;
	t->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->evfd < 0)
		return -errno;
	__cds_wfcq_init(&t->tasks_head, &t->tasks_tail);
	t->wake.fd = t->evfd;
	t->wake.cb = wake_cb;
	t->wake.thr = t;
	ev.data.ptr = &t->wake;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) < 0)
		return -errno;
	return -pthread_create(&t->thread, NULL, loop_main, t);
}

int ioloop_new(unsigned nthreads, struct ioloop **ret)
{
	struct ioloop *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	if (nthreads == 0)
		nthreads = 1;
	l->thr = calloc(nthreads, sizeof(*l->thr));
	if (!l->thr) {
		free(l);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		l->thr[i].epfd = l->thr[i].evfd = -1;
		r = thr_init(&l->thr[i]);
		if (r < 0) {
			l->n = i;
			ioloop_free(l);
			return r;
		}
	}
	l->n = nthreads;
	*ret = l;
	return 0;
}

static void kick(struct ioloop_thr *t)
{
	uint64_t one = 1;

	while (write(t->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void ioloop_free(struct ioloop *l)
{
	if (!l)
		return;
	for (unsigned i = 0; i < l->n; i++) {
		__atomic_store_n(&l->thr[i].stopping, true, __ATOMIC_RELEASE);
		kick(&l->thr[i]);
	}
	for (unsigned i = 0; i < l->n; i++) {
		pthread_join(l->thr[i].thread, NULL);
		close(l->thr[i].epfd);
		close(l->thr[i].evfd);
	}
	free(l->thr);
	free(l);
}

int io_watch_add_on(struct ioloop_thr *thr, struct io_watch *w, int fd, uint32_t events,
		    io_cb cb)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	w->fd = fd;
	w->cb = cb;
	w->thr = thr;
	/* epoll_ctl orders our writes to *w before the loop thread's event. */
	tsan_handoff_release(w);
	if (epoll_ctl(thr->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int io_watch_add(struct ioloop *l, struct io_watch *w, int fd, uint32_t events, io_cb cb)
{
	unsigned i = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED) % l->n;

	return io_watch_add_on(&l->thr[i], w, fd, events, cb);
}

int io_watch_mod(struct io_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	tsan_handoff_release(w);
	if (epoll_ctl(w->thr->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

int io_watch_del(struct io_watch *w)
{
	if (epoll_ctl(w->thr->epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0)
		return -errno;
	return 0;
}

void io_post(struct ioloop_thr *thr, struct io_task *t)
{
	cds_wfcq_node_init(&t->node);
	tsan_handoff_release(&t->node);
	/* Only the post that finds the queue empty needs to wake the loop. */
	if (!cds_wfcq_enqueue(&thr->tasks_head, &thr->tasks_tail, &t->node))
		kick(thr);
}

int ioloop_thr_is_current(const struct ioloop_thr *thr)
{
	return tls_thr == thr;
}

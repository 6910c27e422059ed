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
#include "common/wfcq.h"
#include "common/util.h"

struct ioloop_thr {
	pthread_t thread;
	int epfd;
	int evfd;                       /* wakes the loop for posts and stop */
	struct io_watch wake;
	/* The watches on this thread, by id: looked up under RCU per event. */
	struct cds_lfht *watches;
	struct __cds_wfcq_head tasks_head;
	struct cds_wfcq_tail tasks_tail;
	struct cds_wfcq_node marker;    /* ends a turn's batch; loop thread only */
	bool marker_queued;             /* loop thread only */
	bool stopping;                  /* atomic */
};

struct ioloop {
	unsigned n;
	unsigned next;                  /* atomic round-robin cursor */
	struct ioloop_thr *thr;
};

static __thread const struct ioloop_thr *tls_thr;
static uint64_t next_watch_id = 1;      /* atomic; 0 is the wake watch */

void (*ioloop__after_wait_hook)(void);

static uint64_t id_hash(uint64_t id)
{
	id ^= id >> 33;
	id *= 0xff51afd7ed558ccdULL;
	return id ^ (id >> 33);
}

static int match_id(struct cds_lfht_node *node, const void *key)
{
	return container_of(node, struct io_watch, node)->id == *(const uint64_t *)key;
}

/* The watch with this id, if still watched.  RCU reader. */
static struct io_watch *watch_lookup_rcu(struct ioloop_thr *t, uint64_t id)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	if (id == 0)
		return &t->wake;
	cds_lfht_lookup(t->watches, id_hash(id), match_id, &id, &iter);
	node = cds_lfht_iter_get_node(&iter);
	if (!node)
		return NULL;
	/* Pairs with the release in io_watch_add_on: the watch's fields are set. */
	tsan_handoff_acquire(container_of(node, struct io_watch, node));
	return container_of(node, struct io_watch, node);
}

static void kick(struct ioloop_thr *t);

/*
 * Run the tasks posted before this turn, at most max of them (0: every task,
 * at the end).  Returns whether some are left.  A marker node queued behind
 * them ends the batch: a task posted while the batch runs (a pump that
 * re-posts itself, say) waits for the next turn, after the sockets.
 */
static bool run_tasks(struct ioloop_thr *t, unsigned max)
{
	struct cds_wfcq_node *node;
	unsigned n = 0;

	if (max && !t->marker_queued) {
		cds_wfcq_node_init(&t->marker);
		cds_wfcq_enqueue(&t->tasks_head, &t->tasks_tail, &t->marker);
		t->marker_queued = true;
	}
	while ((!max || n < max) && (node = wfcq_take(&t->tasks_head, &t->tasks_tail))) {
		struct io_task *task;

		if (node == &t->marker) {
			t->marker_queued = false;
			if (max)
				break;
			continue;
		}
		task = container_of(node, struct io_task, node);
		tsan_handoff_acquire(node);
		task->fn(task);
		n++;
	}
	return max && !cds_wfcq_empty(&t->tasks_head, &t->tasks_tail);
}

static void wake_cb(struct io_watch *w, uint32_t events)
{
	struct ioloop_thr *t = container_of(w, struct ioloop_thr, wake);
	uint64_t v;

	/* Drain the counter first: a post after this read writes again. */
	while (read(t->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	/*
	 * A bounded batch, then back to epoll_wait(): tasks left over make the
	 * eventfd readable again, so they run on the next turn, after the
	 * sockets that became ready meanwhile (a query is never starved by
	 * tasks that keep being posted).
	 */
	if (run_tasks(t, IO_TASK_BATCH))
		kick(t);
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
		if (n > 0) {
			void (*hook)(void) = __atomic_load_n(&ioloop__after_wait_hook,
							    __ATOMIC_ACQUIRE);

			if (hook)
				hook();
		}
		/*
		 * The events name watches by id, not by pointer: a watch deleted
		 * (and freed after a grace period) between epoll_wait() and here
		 * is simply not found.  One read section per batch keeps the ones
		 * found valid until their callbacks return.
		 */
		crcu_read_lock();
		for (int i = 0; i < n; i++) {
			struct io_watch *w = watch_lookup_rcu(t, evs[i].data.u64);

			if (w)
				w->cb(w, evs[i].events);
		}
		crcu_read_unlock();
	}
	run_tasks(t, 0);
	urcu_memb_unregister_thread();
	return NULL;
}

static int thr_init(struct ioloop_thr *t)
{
	struct epoll_event ev = { .events = EPOLLIN };

	t->watches = cds_lfht_new_flavor(64, 64, 0, CDS_LFHT_AUTO_RESIZE, &urcu_memb_flavor, NULL);
	if (!t->watches)
		return -ENOMEM;
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
	t->wake.id = 0;
	ev.data.u64 = 0;
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

unsigned ioloop_thr_index(const struct ioloop *l, const struct ioloop_thr *thr)
{
	return (unsigned)(thr - l->thr);
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
		/* Watches still in the table are their owners' (not freed here). */
		if (l->thr[i].watches) {
			struct cds_lfht_iter iter;
			struct cds_lfht_node *node;

			crcu_read_lock();
			for (cds_lfht_first(l->thr[i].watches, &iter);
			     (node = cds_lfht_iter_get_node(&iter));
			     cds_lfht_next(l->thr[i].watches, &iter))
				cds_lfht_del(l->thr[i].watches, node);
			crcu_read_unlock();
			cds_lfht_destroy(l->thr[i].watches, NULL);
		}
	}
	free(l->thr);
	free(l);
}

int io_watch_add_on(struct ioloop_thr *thr, struct io_watch *w, int fd, uint32_t events,
		    io_cb cb)
{
	struct epoll_event ev = { .events = events };
	int r = 0;

	w->fd = fd;
	w->cb = cb;
	w->thr = thr;
	w->id = __atomic_fetch_add(&next_watch_id, 1, __ATOMIC_RELAXED);
	ev.data.u64 = w->id;
	cds_lfht_node_init(&w->node);
	/* rculfhash publishes the node with a release; the lookup acquires. */
	tsan_handoff_release(w);
	crcu_read_lock();
	cds_lfht_add(thr->watches, id_hash(w->id), &w->node);
	crcu_read_unlock();
	if (epoll_ctl(thr->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		crcu_read_lock();
		cds_lfht_del(thr->watches, &w->node);
		crcu_read_unlock();
	}
	return r;
}

int io_watch_add(struct ioloop *l, struct io_watch *w, int fd, uint32_t events, io_cb cb)
{
	unsigned i = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED) % l->n;

	return io_watch_add_on(&l->thr[i], w, fd, events, cb);
}

int io_watch_mod(struct io_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = w->id };

	tsan_handoff_release(w);
	if (epoll_ctl(w->thr->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

int io_watch_del(struct io_watch *w)
{
	int r = 0;

	/* Out of the table first: an event already taken now finds nothing. */
	crcu_read_lock();
	cds_lfht_del(w->thr->watches, &w->node);
	crcu_read_unlock();
	if (epoll_ctl(w->thr->epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0)
		r = -errno;
	return r;
}

void io_post(struct ioloop_thr *thr, struct io_task *t)
{
	cds_wfcq_node_init(&t->node);
	tsan_handoff_release(&t->node);
	/* Only the post that finds the queue empty needs to wake the loop. */
	if (!cds_wfcq_enqueue(&thr->tasks_head, &thr->tasks_tail, &t->node))
		kick(thr);
}

unsigned ioloop_nthreads(const struct ioloop *l)
{
	return l->n;
}

struct ioloop_thr *ioloop_thr_at(struct ioloop *l, unsigned i)
{
	BUG_ON(i >= l->n);
	return &l->thr[i];
}

int ioloop_thr_is_current(const struct ioloop_thr *thr)
{
	return tls_thr == thr;
}

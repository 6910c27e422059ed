/* SPDX-License-Identifier: MIT */
#include "common/ioloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
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
	struct ioloop *loop;
	struct __cds_wfcq_head tasks_head;
	struct cds_wfcq_tail tasks_tail;
	struct cds_wfcq_node marker;    /* ends a turn's batch; loop thread only */
	bool marker_queued;             /* loop thread only */
	bool stopping;                  /* atomic */
};

/*
 * The watches, one slot per descriptor number (an fd is in one thread's
 * epoll at a time): an event's lookup is one load, where a hash table cost
 * a bucket and a chain walk, each a cache miss with 10,000 sockets.  Sized
 * once for the largest descriptor the process may open (its hard
 * RLIMIT_NOFILE, at most SLOTS_MAX); only the pages of descriptors in use
 * are ever touched.
 */
#define SLOTS_MAX (1u << 22)
#define WAKE_KEY UINT64_MAX             /* the eventfd's: no slot */

struct ioloop {
	unsigned n;
	unsigned next;                  /* atomic round-robin cursor */
	struct ioloop_thr *thr;
	struct io_watch **slots;        /* by fd; RCU-published */
	uint32_t nslots;
};

static __thread const struct ioloop_thr *tls_thr;
static uint64_t next_watch_id = 1;      /* atomic */

void (*ioloop__after_wait_hook)(void);

static inline uint32_t key_fd(uint64_t key)
{
	return (uint32_t)key;
}

/* The watch an event names, if it is still watched.  RCU reader. */
static struct io_watch *watch_lookup_rcu(struct ioloop_thr *t, uint64_t key)
{
	struct io_watch *w;

	if (key == WAKE_KEY)
		return &t->wake;
	if (key_fd(key) >= t->loop->nslots)
		return NULL;
	w = crcu_dereference(t->loop->slots[key_fd(key)]);
	/* Deleted, or its fd reused by a newer watch: not the one the event was for. */
	if (!w || w->key != key)
		return NULL;
	/* Pairs with the release in io_watch_add_on: the watch's fields are set. */
	tsan_handoff_acquire(w);
	return w;
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
		 * The events name watches by key (fd and serial number), not
		 * by pointer: a watch deleted (and freed after a grace period)
		 * between epoll_wait() and here is simply not found, nor taken
		 * for a newer watch on the same fd.  One read section per batch
		 * keeps the ones found valid until their callbacks return.
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
	t->wake.key = WAKE_KEY;
	ev.data.u64 = WAKE_KEY;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) < 0)
		return -errno;
	return -pthread_create(&t->thread, NULL, loop_main, t);
}

/* How many descriptor numbers this process can ever hold. */
static uint32_t fd_ceiling(void)
{
	struct rlimit rl;
	unsigned long nr_open = SLOTS_MAX;
	FILE *f;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return SLOTS_MAX;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < SLOTS_MAX)
		return rl.rlim_max > 64 ? (uint32_t)rl.rlim_max : 64;
	/* No process gets more than fs.nr_open, whatever its limit says. */
	f = fopen("/proc/sys/fs/nr_open", "re");
	if (f) {
		if (fscanf(f, "%lu", &nr_open) != 1 || nr_open > SLOTS_MAX)
			nr_open = SLOTS_MAX;
		fclose(f);
	}
	return (uint32_t)nr_open;
}

int ioloop_new(unsigned nthreads, struct ioloop **ret)
{
	struct ioloop *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	if (nthreads == 0)
		nthreads = 1;
	l->nslots = fd_ceiling();
	l->slots = calloc(l->nslots, sizeof(*l->slots));
	l->thr = calloc(nthreads, sizeof(*l->thr));
	if (!l->thr || !l->slots) {
		free(l->slots);
		free(l->thr);
		free(l);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		l->thr[i].loop = l;
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
	}
	/* Watches still in their slots are their owners' (not freed here). */
	free(l->slots);
	free(l->thr);
	free(l);
}

int io_watch_add_on(struct ioloop_thr *thr, struct io_watch *w, int fd, uint32_t events,
		    io_cb cb)
{
	struct epoll_event ev = { .events = events };
	struct io_watch **slot;
	uint64_t id;

	if (fd < 0)
		return -EBADF;
	if ((uint32_t)fd >= thr->loop->nslots)
		return -EMFILE;
	slot = &thr->loop->slots[fd];
	id = __atomic_fetch_add(&next_watch_id, 1, __ATOMIC_RELAXED);
	w->fd = fd;
	w->cb = cb;
	w->thr = thr;
	w->key = id << 32 | (uint32_t)fd;
	ev.data.u64 = w->key;
	/*
	 * Published with a release; the lookup acquires.  A watch still in the
	 * slot was left there by an owner that closed its fd without deleting
	 * it (epoll forgot it with the close): the new one takes its place.
	 */
	tsan_handoff_release(w);
	crcu_assign_pointer(*slot, w);
	if (epoll_ctl(thr->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		struct io_watch *expect = w;

		__atomic_compare_exchange_n(slot, &expect, NULL, false, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED);
		return r;
	}
	return 0;
}

int io_watch_add(struct ioloop *l, struct io_watch *w, int fd, uint32_t events, io_cb cb)
{
	unsigned i = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED) % l->n;

	return io_watch_add_on(&l->thr[i], w, fd, events, cb);
}

int io_watch_mod(struct io_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = w->key };

	tsan_handoff_release(w);
	if (epoll_ctl(w->thr->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
		return -errno;
	return 0;
}

int io_watch_del(struct io_watch *w)
{
	struct io_watch *expect = w;
	int r = 0;

	/*
	 * Out of its slot first: an event already taken now finds nothing.  A
	 * newer watch in the slot (this one's fd closed and reused before this
	 * delete) stays.
	 */
	__atomic_compare_exchange_n(&w->thr->loop->slots[w->fd], &expect, NULL, false,
				    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
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

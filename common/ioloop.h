/* SPDX-License-Identifier: MIT */
/*
 * ioloop: a small fixed set of epoll threads for every socket in the daemon
 * (QMP monitors, RPC clients, the listeners, the child reaper).  Never a
 * thread per VM or per client.
 *
 * A watch is an fd plus a callback that runs on the watch's loop thread,
 * inside an RCU read section.  Callbacks must not block: they read or write
 * non-blocking fds, parse, answer from RCU snapshots, or send a message to
 * an actor.  epoll_ctl() is thread-safe, so io_watch_mod/del may be called
 * from any thread (an actor re-arming its EPOLLONESHOT watch, say).
 *
 * Lifetime: after io_watch_del() the callback may still be running, but it
 * never starts again: the loop hands out events by watch key (the fd and a
 * serial number that repeats only after 2^32 watches) and looks each up in
 * the loop's table of watches by fd inside its read section, so an event
 * taken from epoll_wait() before the delete finds nothing, even when the fd
 * has a new watch by then.  Free the watch (and what its callback touches)
 * only after an RCU grace period (call_rcu): a callback already running
 * finishes first.
 *
 * io_post() runs a task on a loop thread: the way other threads hand work to
 * a connection owned by that thread (a finished job's reply).  Lock-free:
 * one wait-free append and, when the queue was empty, one eventfd write.
 */
#ifndef CORRAL_COMMON_IOLOOP_H
#define CORRAL_COMMON_IOLOOP_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <stdint.h>
#include <sys/epoll.h>
#include <urcu/wfcqueue.h>

struct ioloop;
struct ioloop_thr;
struct io_watch;

typedef void (*io_cb)(struct io_watch *w, uint32_t events);

struct io_watch {
	int fd;
	io_cb cb;
	struct ioloop_thr *thr;         /* set by io_watch_add; immutable after */
	uint64_t key;                   /* what epoll hands back: the watch's
					 * serial number (high 32 bits), the fd */
};

struct io_task {
	struct cds_wfcq_node node;
	void (*fn)(struct io_task *t);  /* runs on the loop thread */
};

/* nthreads 0: one.  Threads register with liburcu.  Any thread. */
int ioloop_new(unsigned nthreads, struct ioloop **ret);
/* Stop and join the threads; posted tasks not yet run are run first.  Not
 * from a loop thread. */
void ioloop_free(struct ioloop *l);

/*
 * Watch fd for events (EPOLLIN, EPOLLOUT, EPOLLONESHOT, ...) on the next
 * thread round-robin.  0 or -errno (-EMFILE: an fd above the process's
 * hard RLIMIT_NOFILE when the loop was made).  Any thread.  Delete the
 * watch before closing its fd.
 */
int io_watch_add(struct ioloop *l, struct io_watch *w, int fd, uint32_t events, io_cb cb);
/* Same, on the thread that already runs `like` (keeps related fds on one thread). */
int io_watch_add_on(struct ioloop_thr *thr, struct io_watch *w, int fd, uint32_t events,
		    io_cb cb);
int io_watch_mod(struct io_watch *w, uint32_t events);
int io_watch_del(struct io_watch *w);

/*
 * Run t->fn on thread thr soon.  Any thread; lock-free.  A loop runs at most
 * IO_TASK_BATCH tasks between two epoll_wait()s, in the order posted.
 */
#define IO_TASK_BATCH 64

void io_post(struct ioloop_thr *thr, struct io_task *t);

/* How many loop threads l has, and the i-th (i < that): to post to each. */
unsigned ioloop_nthreads(const struct ioloop *l);
struct ioloop_thr *ioloop_thr_at(struct ioloop *l, unsigned i);
/* The index of thr among l's threads. */
unsigned ioloop_thr_index(const struct ioloop *l, const struct ioloop_thr *thr);

/* Is the caller thr's loop thread?  For assertions. */
int ioloop_thr_is_current(const struct ioloop_thr *thr);

/*
 * Tests only: called on a loop thread after epoll_wait() returned events and
 * before they are looked up, to widen that window on purpose.  NULL (never
 * set outside tests) costs a load and a branch.
 */
extern void (*ioloop__after_wait_hook)(void);

#endif /* CORRAL_COMMON_IOLOOP_H */

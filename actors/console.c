/* SPDX-License-Identifier: MIT */
/* console: a guest's serial console for many viewers and a log (see console.h). */
#include "actors/console.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <urcu/list.h>

#include "common/ioloop.h"
#include "common/offload.h"
#include "common/rcu.h"
#include "common/util.h"

#define READ_CHUNK   (16u * 1024)
#define READ_BUDGET  (256u * 1024)      /* per callback, for the loop's other fds */
#define NAME_MAX_LEN 128

struct console_viewer {
	struct cds_list_head link;      /* con->viewers; under con->lock */
	struct console *con;            /* reference */
	console_notify_fn notify;
	void *arg;
	/* Under con->lock: a ring of the newest output not yet taken. */
	char *buf;
	size_t cap, start, len;
	uint64_t dropped;               /* older output lost since the last take */
	bool ended;
	bool notified;                  /* told, not yet taken */
};

struct console {
	struct io_watch w;
	struct io_task flush_task;      /* input queued: write it */
	struct io_task close_task;      /* the owner closed: drop the socket */
	struct offload_task log_task;
	struct rcu_head rcu;
	struct ioloop *io;
	struct offload *off;
	uint32_t refs;                  /* atomic */
	char name[NAME_MAX_LEN];

	/* The loop thread's. */
	int fd;
	bool fd_closed;
	uint32_t events;

	/* The log task's (one at a time). */
	int log_fd;
	uint64_t log_size, log_max;
	bool log_stopped;               /* full, or a write failed */

	pthread_mutex_t lock;           /* below; held for memcpy, never for I/O */
	char *ring;                     /* CONSOLE_HISTORY bytes */
	uint64_t total;                 /* bytes ever put in the ring */
	struct cds_list_head viewers;
	unsigned nviewers;
	bool closed;
	char reason[CONSOLE_REASON_MAX];
	char *in;                       /* input not yet written, CONSOLE_INPUT_MAX */
	size_t in_len;
	bool flush_posted;
	char *logq;                     /* output not yet logged */
	size_t logq_len, logq_cap;
	uint64_t logq_dropped;          /* missed since the last take; then all is */
	bool log_busy;                  /* the log task is queued or running */
	uint64_t bytes_out, bytes_in, log_bytes, log_dropped;
};

static void console_ref(struct console *con)
{
	__atomic_fetch_add(&con->refs, 1, __ATOMIC_RELAXED);
}

static void free_rcu_cb(struct rcu_head *head)
{
	struct console *con = container_of(head, struct console, rcu);

	crcu_reclaim_begin(head);
	BUG_ON(!cds_list_empty(&con->viewers));
	if (!con->fd_closed && con->fd >= 0)
		close(con->fd);
	if (con->log_fd >= 0)
		close(con->log_fd);
	pthread_mutex_destroy(&con->lock);
	free(con->ring);
	free(con->in);
	free(con->logq);
	free(con);
}

void console_put(struct console *con)
{
	if (con && __atomic_sub_fetch(&con->refs, 1, __ATOMIC_ACQ_REL) == 0)
		crcu_call(&con->rcu, free_rcu_cb);
}

bool console_tryget(struct console *con)
{
	uint32_t n = __atomic_load_n(&con->refs, __ATOMIC_RELAXED);

	do {
		if (n == 0)
			return false;
	} while (!__atomic_compare_exchange_n(&con->refs, &n, n + 1, true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return true;
}

/* Append to a growing buffer capped at max; false (nothing appended) if it does not fit. */
static bool buf_append(char **buf, size_t *len, size_t *cap, size_t max, const char *p, size_t n)
{
	if (n > max - *len)
		return false;
	if (*cap - *len < n) {
		size_t c = *cap ? *cap : 4096;
		char *nb;

		while (c - *len < n)
			c *= 2;
		if (c > max)
			c = max;
		nb = realloc(*buf, c);
		if (!nb)
			return false;
		*buf = nb;
		*cap = c;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	return true;
}

static void ring_put(struct console *con, const char *p, size_t n)
{
	if (n > CONSOLE_HISTORY) {
		con->total += n - CONSOLE_HISTORY;
		p += n - CONSOLE_HISTORY;
		n = CONSOLE_HISTORY;
	}
	while (n) {
		size_t at = con->total % CONSOLE_HISTORY;
		size_t k = CONSOLE_HISTORY - at < n ? CONSOLE_HISTORY - at : n;

		memcpy(con->ring + at, p, k);
		con->total += k;
		p += k;
		n -= k;
	}
}

/*
 * Queue n bytes for v, keeping the newest CONSOLE_VIEWER_MAX: a viewer that
 * falls behind loses its oldest output (counted) and so catches up with the
 * present.  The ring grows as needed.  Under con->lock.
 */
static void viewer_put(struct console_viewer *v, const char *p, size_t n)
{
	if (n >= CONSOLE_VIEWER_MAX) {
		v->dropped += v->len + (n - CONSOLE_VIEWER_MAX);
		v->start = v->len = 0;
		p += n - CONSOLE_VIEWER_MAX;
		n = CONSOLE_VIEWER_MAX;
	}
	if (v->len + n > v->cap && v->cap < CONSOLE_VIEWER_MAX) {
		size_t cap = v->cap ? v->cap : 4096, first;
		char *nb;

		while (cap < v->len + n && cap < CONSOLE_VIEWER_MAX)
			cap *= 2;
		if (cap > CONSOLE_VIEWER_MAX)
			cap = CONSOLE_VIEWER_MAX;
		nb = malloc(cap);
		if (nb) {
			/* Straightened out while moving: the ring starts at 0 again. */
			first = v->cap - v->start < v->len ? v->cap - v->start : v->len;
			if (v->len) {
				memcpy(nb, v->buf + v->start, first);
				memcpy(nb + first, v->buf, v->len - first);
			}
			free(v->buf);
			v->buf = nb;
			v->cap = cap;
			v->start = 0;
		}
	}
	if (!v->cap) {
		v->dropped += n;
		return;
	}
	if (n > v->cap) {               /* no memory to grow: keep what fits */
		v->dropped += v->len + n - v->cap;
		v->start = v->len = 0;
		p += n - v->cap;
		n = v->cap;
	}
	if (v->len + n > v->cap) {
		size_t over = v->len + n - v->cap;

		v->start = (v->start + over) % v->cap;
		v->len -= over;
		v->dropped += over;
	}
	while (n) {
		size_t at = (v->start + v->len) % v->cap;
		size_t k = v->cap - at < n ? v->cap - at : n;

		memcpy(v->buf + at, p, k);
		v->len += k;
		p += k;
		n -= k;
	}
}

static void viewer_tell(struct console_viewer *v)
{
	if (!v->notified) {
		v->notified = true;
		v->notify(v, v->arg);
	}
}

/* ---- the log (offload thread) ------------------------------------------------ */

static void log_put(struct console *con, const char *p, size_t n)
{
	while (n && !con->log_stopped) {
		ssize_t w = write(con->log_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			con->log_stopped = true;        /* full disk, I/O error: stop trying */
			break;
		}
		p += w;
		n -= (size_t)w;
		con->log_size += (uint64_t)w;
		__atomic_fetch_add(&con->log_bytes, (uint64_t)w, __ATOMIC_RELAXED);
	}
}

/* data within the cap; past it one line says so, and nothing more is written. */
static void log_data(struct console *con, const char *p, size_t n)
{
	char note[160];
	uint64_t room;

	if (con->log_stopped)
		return;
	room = con->log_size < con->log_max ? con->log_max - con->log_size : 0;
	log_put(con, p, n < room ? n : room);
	if (n > room) {
		snprintf(note, sizeof(note), "\n[corral: the console log reached its limit of %llu "
			 "bytes; later output is not logged]\n", (unsigned long long)con->log_max);
		log_put(con, note, strlen(note));
		con->log_stopped = true;
	}
}

static void log_work(struct offload_task *t)
{
	struct console *con = container_of(t, struct console, log_task);

	for (;;) {
		char *data, note[128];
		size_t len;
		uint64_t dropped;

		pthread_mutex_lock(&con->lock);
		data = con->logq;
		len = con->logq_len;
		dropped = con->logq_dropped;
		con->logq = NULL;
		con->logq_len = con->logq_cap = 0;
		con->logq_dropped = 0;
		if (!len && !dropped) {
			con->log_busy = false;
			pthread_mutex_unlock(&con->lock);
			free(data);
			return;
		}
		pthread_mutex_unlock(&con->lock);
		log_data(con, data, len);
		free(data);
		if (dropped) {
			__atomic_fetch_add(&con->log_dropped, dropped, __ATOMIC_RELAXED);
			snprintf(note, sizeof(note), "\n[corral: %llu bytes of output not logged: "
				 "the disk was too slow]\n", (unsigned long long)dropped);
			log_data(con, note, strlen(note));
		}
	}
}

static void log_done(struct offload_task *t)
{
	console_put(container_of(t, struct console, log_task));
}

/* ---- output: QEMU -> ring, viewers, log (loop thread) -------------------------- */

static void publish(struct console *con, const char *p, size_t n)
{
	struct console_viewer *v;
	bool submit = false;

	pthread_mutex_lock(&con->lock);
	con->bytes_out += n;
	ring_put(con, p, n);
	cds_list_for_each_entry(v, &con->viewers, link) {
		if (v->ended)
			continue;
		viewer_put(v, p, n);
		viewer_tell(v);
	}
	if (con->log_fd >= 0) {
		if (con->logq_dropped || !buf_append(&con->logq, &con->logq_len, &con->logq_cap,
						     CONSOLE_LOG_BACKLOG, p, n))
			con->logq_dropped += n;
		if (!con->log_busy) {
			con->log_busy = true;
			submit = true;
		}
	}
	pthread_mutex_unlock(&con->lock);
	if (submit) {
		console_ref(con);
		offload_submit(con->off, &con->log_task);
	}
}

/* The console ends for everyone: viewers learn why after what they have queued. */
static void mark_closed(struct console *con, const char *reason)
{
	struct console_viewer *v;

	pthread_mutex_lock(&con->lock);
	if (!con->closed) {
		con->closed = true;
		snprintf(con->reason, sizeof(con->reason), "%s", reason);
		con->in_len = 0;
		cds_list_for_each_entry(v, &con->viewers, link) {
			v->ended = true;
			viewer_tell(v);
		}
	}
	pthread_mutex_unlock(&con->lock);
}

/* Loop thread. */
static void drop_socket(struct console *con)
{
	if (con->fd_closed)
		return;
	io_watch_del(&con->w);
	close(con->fd);
	con->fd = -1;
	con->fd_closed = true;
}

static void set_events(struct console *con, uint32_t events)
{
	if (!con->fd_closed && events != con->events && io_watch_mod(&con->w, events) == 0)
		con->events = events;
}

/* Write queued input until done or the socket is full.  Loop thread. */
static void flush_input(struct console *con)
{
	bool want_out = false;

	while (!con->fd_closed) {
		char chunk[READ_CHUNK];
		size_t n;
		ssize_t w;

		pthread_mutex_lock(&con->lock);
		n = con->in_len < sizeof(chunk) ? con->in_len : sizeof(chunk);
		memcpy(chunk, con->in, n);
		pthread_mutex_unlock(&con->lock);
		if (!n)
			break;
		w = send(con->fd, chunk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			want_out = true;
			break;
		}
		pthread_mutex_lock(&con->lock);
		if (w < 0) {
			con->in_len = 0;        /* QEMU is going: the read side sees the end */
		} else {
			/* Only this thread removes input, so the first w bytes are still ours. */
			memmove(con->in, con->in + w, con->in_len - (size_t)w);
			con->in_len -= (size_t)w;
			con->bytes_in += (uint64_t)w;
		}
		pthread_mutex_unlock(&con->lock);
		if (w < 0)
			break;
	}
	set_events(con, EPOLLIN | (want_out ? EPOLLOUT : 0));
}

static void on_io(struct io_watch *w, uint32_t events)
{
	struct console *con = container_of(w, struct console, w);
	size_t budget = READ_BUDGET;

	if (con->fd_closed)
		return;
	if (events & EPOLLOUT)
		flush_input(con);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	while (budget && !con->fd_closed) {
		char buf[READ_CHUNK];
		ssize_t n = recv(con->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0) {
			publish(con, buf, (size_t)n);
			budget -= (size_t)n < budget ? (size_t)n : budget;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		/* QEMU closed it (it exited) or the socket broke. */
		drop_socket(con);
		mark_closed(con, n == 0 ? "QEMU closed the console" : "the console's socket failed");
	}
}

static void flush_task_fn(struct io_task *t)
{
	struct console *con = container_of(t, struct console, flush_task);

	crcu_read_lock();
	pthread_mutex_lock(&con->lock);
	con->flush_posted = false;
	pthread_mutex_unlock(&con->lock);
	flush_input(con);
	crcu_read_unlock();
	console_put(con);
}

static void close_task_fn(struct io_task *t)
{
	struct console *con = container_of(t, struct console, close_task);

	crcu_read_lock();
	drop_socket(con);
	crcu_read_unlock();
	console_put(con);
}

/* ---- owner --------------------------------------------------------------------- */

int console_new(struct ioloop *io, struct offload *off, const char *name, int fd, int log_fd,
		uint64_t log_size, uint64_t log_max, const void *seed, size_t seed_len,
		struct console **ret)
{
	struct console *con = calloc(1, sizeof(*con));
	int r;

	if (con) {
		con->ring = malloc(CONSOLE_HISTORY);
		con->in = malloc(CONSOLE_INPUT_MAX);
	}
	if (!con || !con->ring || !con->in) {
		if (con) {
			free(con->ring);
			free(con->in);
		}
		free(con);
		close(fd);
		if (log_fd >= 0)
			close(log_fd);
		return -ENOMEM;
	}
	con->io = io;
	con->off = off;
	con->refs = 1;
	snprintf(con->name, sizeof(con->name), "%s", name);
	con->fd = fd;
	con->log_fd = log_fd;
	con->log_size = log_size;
	con->log_max = log_max ? log_max : CONSOLE_LOG_MAX;
	con->log_stopped = log_size >= con->log_max;
	pthread_mutex_init(&con->lock, NULL);
	CDS_INIT_LIST_HEAD(&con->viewers);
	con->log_task.work = log_work;
	con->log_task.done = log_done;
	con->flush_task.fn = flush_task_fn;
	con->close_task.fn = close_task_fn;
	if (seed_len)
		ring_put(con, seed, seed_len);
	con->events = EPOLLIN;
	r = io_watch_add(io, &con->w, fd, EPOLLIN, on_io);
	if (r < 0) {
		con->fd_closed = true;
		close(fd);
		con->fd = -1;
		console_put(con);
		return r;
	}
	*ret = con;
	return 0;
}

void console_close(struct console *con, const char *reason)
{
	if (!con)
		return;
	mark_closed(con, reason);
	console_ref(con);
	io_post(con->w.thr, &con->close_task);
	console_put(con);
}

int console_write(struct console *con, const void *data, size_t len)
{
	bool post = false;
	int r = 0;

	pthread_mutex_lock(&con->lock);
	if (con->closed) {
		r = -EPIPE;
	} else if (len > CONSOLE_INPUT_MAX - con->in_len) {
		r = -EAGAIN;
	} else {
		memcpy(con->in + con->in_len, data, len);
		con->in_len += len;
		post = !con->flush_posted && len;
		if (post)
			con->flush_posted = true;
	}
	pthread_mutex_unlock(&con->lock);
	if (post) {
		console_ref(con);
		io_post(con->w.thr, &con->flush_task);
	}
	return r;
}

/* ---- viewers ------------------------------------------------------------------- */

int console_attach(struct console *con, bool history, console_notify_fn notify, void *arg,
		   struct console_viewer **ret)
{
	struct console_viewer *v = calloc(1, sizeof(*v));
	int r = 0;

	if (!v)
		return -ENOMEM;
	v->con = con;
	v->notify = notify;
	v->arg = arg;
	pthread_mutex_lock(&con->lock);
	if (con->closed) {
		r = -EPIPE;
	} else if (history && con->total) {
		size_t n = con->total < CONSOLE_HISTORY ? (size_t)con->total : CONSOLE_HISTORY;
		size_t start = (size_t)((con->total - n) % CONSOLE_HISTORY);
		size_t first = CONSOLE_HISTORY - start < n ? CONSOLE_HISTORY - start : n;

		viewer_put(v, con->ring + start, first);
		viewer_put(v, con->ring, n - first);
		if (v->len != n)
			r = -ENOMEM;
	}
	if (r == 0) {
		console_ref(con);
		cds_list_add_tail(&v->link, &con->viewers);
		con->nviewers++;
		if (v->len)
			viewer_tell(v);
	}
	pthread_mutex_unlock(&con->lock);
	if (r < 0) {
		free(v->buf);
		free(v);
		return r;
	}
	*ret = v;
	return 0;
}

bool console_viewer_take(struct console_viewer *v, char **data, size_t *len,
			 uint64_t *dropped, char reason[CONSOLE_REASON_MAX])
{
	struct console *con = v->con;
	bool ended;

	char *out = NULL;

	pthread_mutex_lock(&con->lock);
	if (v->len) {
		size_t first = v->cap - v->start < v->len ? v->cap - v->start : v->len;

		/* Copied out under the lock (at most CONSOLE_VIEWER_MAX bytes). */
		out = malloc(v->len);
		if (out) {
			memcpy(out, v->buf + v->start, first);
			memcpy(out + first, v->buf, v->len - first);
		} else {
			v->dropped += v->len;
		}
	}
	*data = out;
	*len = out ? v->len : 0;
	*dropped = v->dropped;
	v->start = v->len = 0;
	v->dropped = 0;
	v->notified = false;
	ended = v->ended;
	if (ended)
		snprintf(reason, CONSOLE_REASON_MAX, "%s", con->reason);
	pthread_mutex_unlock(&con->lock);
	return ended;
}

void console_detach(struct console_viewer *v)
{
	struct console *con;

	if (!v)
		return;
	con = v->con;
	pthread_mutex_lock(&con->lock);
	cds_list_del(&v->link);
	con->nviewers--;
	pthread_mutex_unlock(&con->lock);
	free(v->buf);
	free(v);
	console_put(con);
}

int console_history(struct console *con, char **data, size_t *len)
{
	int r = 0;

	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&con->lock);
	if (con->total) {
		size_t n = con->total < CONSOLE_HISTORY ? (size_t)con->total : CONSOLE_HISTORY;
		size_t start = (size_t)((con->total - n) % CONSOLE_HISTORY);
		size_t first = CONSOLE_HISTORY - start < n ? CONSOLE_HISTORY - start : n;

		*data = malloc(n);
		if (*data) {
			memcpy(*data, con->ring + start, first);
			memcpy(*data + first, con->ring, n - first);
			*len = n;
		} else {
			r = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&con->lock);
	return r;
}

void console_stats(struct console *con, struct console_stats *st)
{
	pthread_mutex_lock(&con->lock);
	st->bytes_out = con->bytes_out;
	st->bytes_in = con->bytes_in;
	st->viewers = con->nviewers;
	st->closed = con->closed;
	pthread_mutex_unlock(&con->lock);
	st->log_bytes = __atomic_load_n(&con->log_bytes, __ATOMIC_RELAXED);
	st->log_dropped = __atomic_load_n(&con->log_dropped, __ATOMIC_RELAXED);
}

/* SPDX-License-Identifier: MIT */
/*
 * The log.  A caller formats its line (CPU only) and queues it; one log
 * thread writes the lines to stderr in order.  No I/O loop, actor or worker
 * ever waits for stderr (a pipe to a slow reader, a full disk under a
 * redirected file).  The queue is bounded: past LOG_QUEUE_MAX lines, new
 * ones are counted and dropped, and the thread says how many when it
 * catches up.  Before log_start() and after log_stop() lines are written
 * directly (the main thread alone runs then).
 */
#include "daemon/log.h"

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu/wfcqueue.h>

#include "common/futex.h"
#include "common/wfcq.h"
#include "common/tsan.h"
#include "common/util.h"

#define LOG_LINE_MAX  2048
#define LOG_QUEUE_MAX 8192

static enum log_level max_level = LOG_INFO;

static const char *const level_names[] = {
	[LOG_ERR] = "error",
	[LOG_WARN] = "warning",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

struct log_line {
	struct cds_wfcq_node node;
	size_t len;
	char text[];
};

static struct {
	struct __cds_wfcq_head head;
	struct cds_wfcq_tail tail;
	uint32_t queued;                /* atomic: lines in the queue */
	uint64_t dropped;               /* atomic: lines the bound refused */
	uint32_t seq;                   /* futex word: bumped to wake the thread */
	bool running;                   /* atomic: the thread takes lines */
	bool stopping;                  /* atomic */
	pthread_t thread;
} lq;

void log_set_level(enum log_level level)
{
	max_level = level;
}

static void write_all(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;         /* nowhere to say it */
		p += w;
		n -= (size_t)w;
	}
}

/* "2026-11-26T02:21:03.123Z corrald[4242] LEVEL: " into line; its length. */
static size_t prefix(char *line, size_t size, enum log_level level)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, size - n, ".%03ldZ corrald[%d] %s: ", ts.tv_nsec / 1000000,
		     (int)getpid(), level_names[level]);
	return k < 0 ? n : n + (size_t)k;
}

static void say_dropped(void)
{
	uint64_t d = __atomic_exchange_n(&lq.dropped, 0, __ATOMIC_RELAXED);
	char line[256];
	size_t n;

	if (!d)
		return;
	n = prefix(line, sizeof(line), LOG_WARN);
	n += (size_t)snprintf(line + n, sizeof(line) - n, "%llu log lines dropped: stderr "
			      "was not taking them fast enough\n", (unsigned long long)d);
	write_all(line, n);
}

static void *log_main(void *arg)
{
	for (;;) {
		uint32_t seq = __atomic_load_n(&lq.seq, __ATOMIC_ACQUIRE);
		struct cds_wfcq_node *node;
		bool any = false;

		while ((node = wfcq_take(&lq.head, &lq.tail))) {
			struct log_line *l = container_of(node, struct log_line, node);

			tsan_handoff_acquire(node);
			__atomic_fetch_sub(&lq.queued, 1, __ATOMIC_RELAXED);
			write_all(l->text, l->len);
			free(l);
			any = true;
		}
		if (any)
			say_dropped();
		if (__atomic_load_n(&lq.stopping, __ATOMIC_ACQUIRE) &&
		    cds_wfcq_empty(&lq.head, &lq.tail))
			break;
		/* A line queued after the drain bumped seq: no sleep then. */
		futex_wait(&lq.seq, seq, NULL);
	}
	say_dropped();
	return NULL;
}

int log_start(void)
{
	__cds_wfcq_init(&lq.head, &lq.tail);
	if (pthread_create(&lq.thread, NULL, log_main, NULL) != 0)
		return -EAGAIN;
	__atomic_store_n(&lq.running, true, __ATOMIC_RELEASE);
	return 0;
}

void log_stop(void)
{
	if (!__atomic_load_n(&lq.running, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&lq.stopping, true, __ATOMIC_RELEASE);
	__atomic_fetch_add(&lq.seq, 1, __ATOMIC_RELEASE);
	futex_wake(&lq.seq, 1);
	pthread_join(lq.thread, NULL);
	__atomic_store_n(&lq.running, false, __ATOMIC_RELEASE);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct log_line *l;
	size_t n, body;
	va_list ap;
	int k;

	if (level > max_level)
		return;
	n = body = prefix(line, sizeof(line), level);
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k : sizeof(line) - n - 2;
	for (size_t i = body; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[n++] = '\n';
	if (!__atomic_load_n(&lq.running, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&lq.stopping, __ATOMIC_ACQUIRE)) {
		write_all(line, n);     /* the main thread alone: before or after */
		return;
	}
	if (__atomic_add_fetch(&lq.queued, 1, __ATOMIC_RELAXED) > LOG_QUEUE_MAX ||
	    !(l = malloc(sizeof(*l) + n))) {
		__atomic_fetch_sub(&lq.queued, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&lq.dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	l->len = n;
	memcpy(l->text, line, n);
	cds_wfcq_node_init(&l->node);
	tsan_handoff_release(&l->node);
	/* Only the line that finds the queue empty needs to wake the thread. */
	if (!cds_wfcq_enqueue(&lq.head, &lq.tail, &l->node)) {
		__atomic_fetch_add(&lq.seq, 1, __ATOMIC_RELEASE);
		futex_wake(&lq.seq, 1);
	}
}

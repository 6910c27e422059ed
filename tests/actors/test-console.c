/* SPDX-License-Identifier: MIT */
/*
 * console: history then live output, a viewer that falls behind keeps the
 * newest output and is told what it lost, bounded input, the log's limit,
 * the end of a console, and viewers, writers and the guest racing (run
 * under ThreadSanitizer too).
 *
 * "QEMU" is the other end of a socket pair.  Waits poll a condition with a
 * generous bound; none depends on timing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "actors/console.h"
#include "common/ioloop.h"
#include "common/offload.h"

#define WAIT_MS 20000

static struct ioloop *io;
static struct offload *off;
static int qemu_fd;             /* the guest's side */
static struct console *con;
static char logpath[64];
static uint32_t notes;

static void on_note(struct console_viewer *v, void *arg)
{
	__atomic_fetch_add(&notes, 1, __ATOMIC_RELAXED);
}

static void make(uint64_t log_max, int sndbuf)
{
	int sv[2], logfd;

	urcu_memb_register_thread();
	cr_assert_eq(ioloop_new(1, &io), 0);
	cr_assert_eq(offload_new(1, &off), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if (sndbuf)
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	qemu_fd = sv[0];
	snprintf(logpath, sizeof(logpath), "/tmp/test-console-%d.log", (int)getpid());
	logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	cr_assert_geq(logfd, 0);
	cr_assert_eq(console_new(io, off, "vm1", sv[1], logfd, 0, log_max, NULL, 0, &con), 0);
}

static void setup(void)
{
	make(0, 0);
}

static void teardown(void)
{
	if (con)
		console_close(con, "test over");
	con = NULL;
	close(qemu_fd);
	urcu_memb_barrier();
	ioloop_free(io);
	offload_free(off);
	urcu_memb_barrier();
	unlink(logpath);
	urcu_memb_unregister_thread();
}

static uint64_t out_bytes(void)
{
	struct console_stats st;

	console_stats(con, &st);
	return st.bytes_out;
}

/* Poll cond until it holds, at most WAIT_MS. */
#define WAIT_FOR(cond, what)                                                    \
	do {                                                                    \
		int waited_ = 0;                                                \
		while (!(cond) && waited_ < WAIT_MS) {                          \
			usleep(1000);                                           \
			waited_++;                                              \
		}                                                               \
		cr_assert(cond, "timed out waiting for %s", what);              \
	} while (0)

static void guest_writes(const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(qemu_fd, c, n);

		cr_assert_gt(w, 0);
		c += w;
		n -= (size_t)w;
	}
}

/* Take everything new; the data appended to *acc (grown), lengths added. */
static bool take(struct console_viewer *v, char **acc, size_t *acc_len, uint64_t *dropped,
		 char *reason)
{
	char *data;
	size_t len;
	uint64_t d;
	bool ended = console_viewer_take(v, &data, &len, &d, reason);

	*dropped += d;
	if (len) {
		*acc = realloc(*acc, *acc_len + len + 1);
		memcpy(*acc + *acc_len, data, len);
		*acc_len += len;
		(*acc)[*acc_len] = '\0';
	}
	free(data);
	return ended;
}

Test(console, history_then_live, .init = setup, .fini = teardown)
{
	struct console_viewer *v, *nohist;
	char *acc = NULL, reason[CONSOLE_REASON_MAX];
	size_t len = 0;
	uint64_t dropped = 0;

	guest_writes("boot: ok\n", 9);
	WAIT_FOR(out_bytes() == 9, "the boot line");
	cr_assert_eq(console_attach(con, true, on_note, NULL, &v), 0);
	cr_assert_eq(console_attach(con, false, on_note, NULL, &nohist), 0);
	cr_assert_not(take(v, &acc, &len, &dropped, reason));
	cr_assert_str_eq(acc, "boot: ok\n");
	guest_writes("login: ", 7);
	WAIT_FOR(out_bytes() == 16, "the prompt");
	take(v, &acc, &len, &dropped, reason);
	cr_assert_str_eq(acc, "boot: ok\nlogin: ");
	free(acc);
	acc = NULL;
	len = 0;
	take(nohist, &acc, &len, &dropped, reason);
	cr_assert_str_eq(acc, "login: ", "a viewer without history sees live output only");
	cr_assert_eq(dropped, 0);
	free(acc);
	console_detach(v);
	console_detach(nohist);
}

Test(console, history_is_the_last_64k, .init = setup, .fini = teardown)
{
	size_t n = CONSOLE_HISTORY + 1000;
	char *big = malloc(n), *acc = NULL, reason[CONSOLE_REASON_MAX];
	struct console_viewer *v;
	uint64_t dropped = 0;
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	guest_writes(big, n);
	WAIT_FOR(out_bytes() == n, "all of it");
	cr_assert_eq(console_attach(con, true, on_note, NULL, &v), 0);
	take(v, &acc, &len, &dropped, reason);
	cr_assert_eq(len, CONSOLE_HISTORY);
	cr_assert(memcmp(acc, big + 1000, CONSOLE_HISTORY) == 0);
	free(acc);
	free(big);
	console_detach(v);
}

/* A viewer that never takes keeps the newest CONSOLE_VIEWER_MAX bytes. */
Test(console, lagging_viewer_keeps_newest, .init = setup, .fini = teardown)
{
	size_t n = 3 * CONSOLE_VIEWER_MAX + 123;
	char *big = malloc(n), *acc = NULL, reason[CONSOLE_REASON_MAX];
	struct console_viewer *slow, *fast;
	uint64_t dropped = 0, fdropped = 0;
	size_t len = 0, flen = 0;
	char *facc = NULL;

	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7 + i / 251);
	cr_assert_eq(console_attach(con, false, on_note, NULL, &slow), 0);
	cr_assert_eq(console_attach(con, false, on_note, NULL, &fast), 0);
	for (size_t off_ = 0; off_ < n; off_ += 4096) {
		size_t k = n - off_ < 4096 ? n - off_ : 4096;

		guest_writes(big + off_, k);
		/* The fast one keeps up; the slow one never looks. */
		take(fast, &facc, &flen, &fdropped, reason);
	}
	WAIT_FOR(out_bytes() == n, "the flood");
	take(fast, &facc, &flen, &fdropped, reason);
	cr_assert_eq(fdropped, 0);
	cr_assert_eq(flen, n);
	cr_assert(memcmp(facc, big, n) == 0, "the fast viewer got every byte in order");
	take(slow, &acc, &len, &dropped, reason);
	cr_assert_eq(len, CONSOLE_VIEWER_MAX);
	cr_assert_eq(dropped, n - CONSOLE_VIEWER_MAX);
	cr_assert(memcmp(acc, big + dropped, len) == 0, "the newest bytes, in order");
	free(acc);
	free(facc);
	free(big);
	console_detach(slow);
	console_detach(fast);
}

Test(console, input_reaches_qemu_and_is_bounded)
{
	char buf[65536];
	size_t accepted = 0, got = 0;
	int r = 0;

	make(0, 4096);          /* a small socket buffer: the queue fills */
	cr_assert_eq(console_write(con, "ls\r", 3), 0);
	while (got < 3) {
		ssize_t n = read(qemu_fd, buf + got, sizeof(buf) - got);

		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	cr_assert(memcmp(buf, "ls\r", 3) == 0);
	/* QEMU stops reading: input queues up to its bound, then -EAGAIN. */
	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < 10000 && r == 0; i++) {
		r = console_write(con, buf, 4096);
		if (r == 0)
			accepted += 4096;
	}
	cr_assert_eq(r, -EAGAIN);
	cr_assert_geq(accepted, CONSOLE_INPUT_MAX - 4096);
	/* Every accepted byte arrives once QEMU reads again. */
	got = 0;
	fcntl(qemu_fd, F_SETFL, O_NONBLOCK);
	for (int spins = 0; got < accepted && spins < WAIT_MS; ) {
		ssize_t n = read(qemu_fd, buf, sizeof(buf));

		if (n > 0) {
			got += (size_t)n;
		} else {
			usleep(1000);
			spins++;
		}
	}
	cr_assert_eq(got, accepted);
	teardown();
}

Test(console, log_is_capped_with_a_note)
{
	char big[10000];
	struct stat st;
	FILE *f;
	char *text;
	size_t n;

	make(4096, 0);
	memset(big, 'z', sizeof(big));
	guest_writes(big, sizeof(big));
	WAIT_FOR(out_bytes() == sizeof(big), "the output");
	WAIT_FOR(stat(logpath, &st) == 0 && st.st_size > 4096, "the note at the limit");
	f = fopen(logpath, "r");
	text = calloc(1, 8192);
	n = fread(text, 1, 8191, f);
	fclose(f);
	cr_assert_lt(n, 4096 + 200, "the log stopped at its limit (%zu bytes)", n);
	cr_assert_not_null(strstr(text + 4096, "reached its limit of 4096 bytes"));
	for (int i = 0; i < 4096; i++)
		cr_assert_eq(text[i], 'z');
	free(text);
	teardown();
}

Test(console, end_reaches_viewers_after_their_output, .init = setup, .fini = teardown)
{
	struct console_viewer *v;
	char *acc = NULL, reason[CONSOLE_REASON_MAX] = "";
	size_t len = 0;
	uint64_t dropped = 0;
	bool ended = false;
	struct console_viewer *late;

	cr_assert_eq(console_attach(con, true, on_note, NULL, &v), 0);
	guest_writes("bye\n", 4);
	close(qemu_fd);         /* QEMU exits */
	qemu_fd = -1;
	for (int i = 0; i < WAIT_MS && !ended; i++) {
		ended = take(v, &acc, &len, &dropped, reason);
		if (!ended)
			usleep(1000);
	}
	cr_assert(ended);
	cr_assert_str_eq(acc, "bye\n");
	cr_assert_str_eq(reason, "QEMU closed the console");
	cr_assert_eq(console_write(con, "x", 1), -EPIPE);
	cr_assert_eq(console_attach(con, true, on_note, NULL, &late), -EPIPE);
	free(acc);
	console_detach(v);
}

/* ---- racing ---------------------------------------------------------------------- */

#define RACE_BYTES (4u << 20)

static uint32_t race_stop;

/* Output cycles through 251 byte values: in any run without a gap, each byte follows the last. */
static void *guest_thread(void *arg)
{
	unsigned char buf[4096];
	size_t pos = 0;

	while (pos < RACE_BYTES) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (unsigned char)((pos + i) % 251);
		guest_writes(buf, sizeof(buf));
		pos += sizeof(buf);
	}
	return NULL;
}

static void *drain_thread(void *arg)
{
	char buf[65536];

	/* QEMU reading its input. */
	while (!__atomic_load_n(&race_stop, __ATOMIC_RELAXED))
		if (read(qemu_fd, buf, sizeof(buf)) <= 0)
			usleep(100);
	return NULL;
}

static void *viewer_thread(void *arg)
{
	long id = (long)arg;

	urcu_memb_register_thread();
	for (int round = 0; !__atomic_load_n(&race_stop, __ATOMIC_RELAXED); round++) {
		struct console_viewer *v;
		char reason[CONSOLE_REASON_MAX];
		int prev = -1;

		if (console_attach(con, round % 2, on_note, NULL, &v) < 0)
			break;
		for (int t = 0; t < 200; t++) {
			char *data;
			size_t len;
			uint64_t dropped;

			console_viewer_take(v, &data, &len, &dropped, reason);
			if (dropped)
				prev = -1;      /* a gap: the next byte starts a new run */
			for (size_t i = 0; i < len; i++) {
				int b = (unsigned char)data[i];

				if (prev >= 0)
					cr_assert_eq(b, (prev + 1) % 251, "viewer %ld: %d after %d",
						     id, b, prev);
				prev = b;
			}
			free(data);
			if (id == 0)
				console_write(con, "k", 1);
			if (t % 16 == 0)
				usleep(100);    /* now and then too slow: gaps happen */
		}
		console_detach(v);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

Test(console, viewers_writers_and_guest_race, .init = setup, .fini = teardown)
{
	pthread_t g, d, vs[3];

	race_stop = 0;
	pthread_create(&d, NULL, drain_thread, NULL);
	for (long i = 0; i < 3; i++)
		pthread_create(&vs[i], NULL, viewer_thread, (void *)i);
	pthread_create(&g, NULL, guest_thread, NULL);
	pthread_join(g, NULL);
	WAIT_FOR(out_bytes() == RACE_BYTES, "the guest's output");
	__atomic_store_n(&race_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 3; i++)
		pthread_join(vs[i], NULL);
	pthread_join(d, NULL);
}

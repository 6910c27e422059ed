/* SPDX-License-Identifier: MIT */
/*
 * corral console NAME: the serial console through corrald's socket.
 *
 * The terminal goes raw (when stdin is one), so that every key reaches the
 * guest as typed; Ctrl-] detaches and restores it.  Output is written to
 * stdout as the guest wrote it.  Input goes out as console.write calls
 * that are not waited for (their answers arrive with the output; an error
 * is reported on stderr, and a full input queue is tried again).
 *
 * One thread, one poll: the connection, stdin and a signalfd (SIGINT,
 * SIGTERM, SIGHUP end the session) behind an epoll fd that the client's
 * wait watches as its extra fd.
 */
#include <errno.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/names.h"
#include "common/util.h"
#include "rpc/rpc.h"

#define ESCAPE_KEY 0x1d         /* Ctrl-] */
#define INPUT_CHUNK 4096
#define RESEND_MAX 64           /* a full input queue: try a chunk this often */

struct session {
	struct cli *c;
	const char *name;
	bool ended;                     /* console.closed, or detached */
	char reason[256];
	bool out_broken;
	bool failed;                    /* a console.write failed for good */
	char fail_msg[512];
	/* The one write in flight (kept to send again on "busy"). */
	uint32_t write_id;
	bool write_pending;
	char pending[INPUT_CHUNK];
	size_t pending_len;
	unsigned resends;
};

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
		    !memcmp(k->via.str.ptr, key, k->via.str.size))
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

static void write_all(struct session *s, int fd, const char *p, size_t n)
{
	while (n && !s->out_broken) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->out_broken = true;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void on_note(const char *method, const msgpack_object *params, void *arg)
{
	struct session *s = arg;
	const msgpack_object *p = params && params->type == MSGPACK_OBJECT_ARRAY &&
				  params->via.array.size ? &params->via.array.ptr[0] : NULL;
	const msgpack_object *v;
	char line[128];

	if (!strcmp(method, "console") && (v = map_get(p, "data"))) {
		if (v->type == MSGPACK_OBJECT_BIN)
			write_all(s, STDOUT_FILENO, v->via.bin.ptr, v->via.bin.size);
		else if (v->type == MSGPACK_OBJECT_STR)
			write_all(s, STDOUT_FILENO, v->via.str.ptr, v->via.str.size);
	} else if (!strcmp(method, "console.dropped") && (v = map_get(p, "bytes")) &&
		   v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		snprintf(line, sizeof(line), "\r\n[corral: %llu bytes of output were dropped: this "
			 "viewer fell behind]\r\n", (unsigned long long)v->via.u64);
		write_all(s, STDERR_FILENO, line, strlen(line));
	} else if (!strcmp(method, "console.closed")) {
		v = map_get(p, "reason");
		s->ended = true;
		snprintf(s->reason, sizeof(s->reason), "%.*s",
			 v && v->type == MSGPACK_OBJECT_STR ? (int)v->via.str.size : 0,
			 v && v->type == MSGPACK_OBJECT_STR ? v->via.str.ptr : "");
	}
}

static int send_pending(struct session *s)
{
	struct cli_call_err err;
	json_t *params = json_pack("{s:s}", "name", s->name);
	int r;

	if (!params)
		return cli_fail(s->c, CLI_EXIT_ERROR, "error", "out of memory");
	r = cli_client_post(s->c->client, "console.write", params, "data", s->pending,
			    s->pending_len, now_ns() + s->c->timeout_ms * NSEC_PER_MSEC,
			    &s->write_id, &err);
	json_decref(params);
	if (r)
		return cli_call_failed(s->c, r, &err);
	s->write_pending = true;
	return 0;
}

static void on_response(uint32_t id, const struct cli_call_err *error, void *arg)
{
	struct session *s = arg;

	if (!s->write_pending || id != s->write_id)
		return;
	s->write_pending = false;
	if (!error) {
		s->pending_len = 0;
		s->resends = 0;
		return;
	}
	if (error->code == RPC_ERR_BUSY && ++s->resends < RESEND_MAX) {
		/* The guest reads slowly: the same bytes again after a moment. */
		usleep(50000);
		send_pending(s);
		return;
	}
	s->failed = true;
	snprintf(s->fail_msg, sizeof(s->fail_msg), "%s", error->message);
}

/* The terminal as it was, restored on every way out. */
static struct termios saved_tio;
static bool tio_saved;

static void tty_restore(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
	tio_saved = false;
}

static void tty_raw(void)
{
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	t = saved_tio;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) {
		tio_saved = true;
		atexit(tty_restore);
	}
}

/* Read stdin into the pending chunk: INPUT_MORE, or the escape key, or its end. */
enum { INPUT_MORE, INPUT_ESCAPE, INPUT_END };

static int read_input(struct session *s, bool tty)
{
	char buf[INPUT_CHUNK];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf) - s->pending_len);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? INPUT_MORE : INPUT_END;
	if (n == 0)
		return INPUT_END;
	for (ssize_t i = 0; i < n; i++) {
		if (tty && buf[i] == ESCAPE_KEY) {
			memcpy(s->pending + s->pending_len, buf, (size_t)i);
			s->pending_len += (size_t)i;
			return INPUT_ESCAPE;
		}
	}
	memcpy(s->pending + s->pending_len, buf, (size_t)n);
	s->pending_len += (size_t)n;
	return INPUT_MORE;
}

struct history {
	bool ok;
	bool broken;
};

static void on_history(const msgpack_object *result, void *arg)
{
	struct history *h = arg;
	const msgpack_object *v = map_get(result, "data");
	struct session s = { 0 };

	if (!v || v->type != MSGPACK_OBJECT_BIN)
		return;
	h->ok = true;
	write_all(&s, STDOUT_FILENO, v->via.bin.ptr, v->via.bin.size);
	h->broken = s.out_broken;
}

/* --history: the last 64 KiB, at once, and done. */
static int print_history(struct cli *c, const char *name)
{
	struct history h = { 0 };
	struct cli_call_err err;
	json_t *params;
	int r = cli_connect(c);

	if (r)
		return r;
	params = json_pack("{s:s, s:I}", "name", name, "timeout_ms", (json_int_t)c->timeout_ms);
	r = cli_client_call_raw(c->client, "console.history", params,
				now_ns() + (c->timeout_ms + CLI_TIMEOUT_MARGIN_MS) * NSEC_PER_MSEC,
				on_history, &h, &err);
	json_decref(params);
	if (r)
		return cli_call_failed(c, r, &err);
	if (!h.ok)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald sent no console data");
	if (h.broken)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "cannot write the output");
	return 0;
}

int cmd_console(struct cli *c, const struct cli_args *a)
{
	struct session s = { .c = c, .name = a->pos[0] };
	bool ro = cli_opt_has(a, "read-only"), tty = isatty(STDIN_FILENO);
	bool in_open = !ro, detach = false;
	struct cli_call_err err;
	struct epoll_event ev;
	json_t *params, *res = NULL, *sub = NULL;
	sigset_t sigs;
	int sfd = -1, ep = -1, r;

	if (!corral_name_valid(s.name))
		return cli_usage(c, "'%s' is not a domain name", s.name);
	if (cli_opt_has(a, "history"))
		return print_history(c, s.name);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || ep < 0) {
		r = cli_fail(c, CLI_EXIT_ERROR, "error", "signalfd/epoll: %s", strerror(errno));
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = sfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.fd = STDIN_FILENO;
	if (in_open && epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
		in_open = false;        /* /dev/null, a regular file: no input to wait for */

	r = cli_connect(c);
	if (r)
		goto out;
	cli_client_set_raw(c->client, on_note, on_response, &s);
	params = json_pack("{s:s, s:b}", "name", s.name, "history",
			   !cli_opt_has(a, "no-history"));
	r = cli_call(c, "console.attach", params, &res);
	if (r)
		goto out;
	sub = json_incref(json_object_get(res, "subscription"));
	if (tty && in_open) {
		fprintf(stderr, "Connected to the console of %s (detach: Ctrl-])\r\n", s.name);
		tty_raw();
	} else if (tty) {
		fprintf(stderr, "Viewing the console of %s, read-only (Ctrl-C ends)\n", s.name);
	}

	while (!s.ended && !detach && !s.out_broken && !s.failed) {
		struct epoll_event evs[2];
		int n;

		r = cli_client_wait(c->client, UINT64_MAX, ep, &err);
		if (r < 0) {
			tty_restore();
			r = cli_call_failed(c, r, &err);
			goto out;
		}
		if (r > 0)
			continue;
		n = epoll_wait(ep, evs, 2, 0);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == sfd) {
				detach = true;
			} else if (in_open && !s.write_pending && s.pending_len < INPUT_CHUNK) {
				int k = read_input(&s, tty);

				/*
				 * The end of piped input ends the input, not the
				 * view: `echo poweroff | corral console g` shows the
				 * guest going down.
				 */
				if (k != INPUT_MORE) {
					in_open = false;
					epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
				}
				detach |= k == INPUT_ESCAPE;
			}
		}
		/* Input waits while a write is in flight: keys stay in order. */
		if (in_open && s.write_pending)
			epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
		if (s.pending_len && !s.write_pending) {
			r = send_pending(&s);
			if (r)
				goto out;
		}
		if (in_open && !s.write_pending) {
			ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = STDIN_FILENO };
			epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
		}
	}
	/* What was typed before the detach still goes out. */
	while (s.write_pending && !s.failed && !s.ended) {
		r = cli_client_wait(c->client, now_ns() + c->timeout_ms * NSEC_PER_MSEC, -1, &err);
		if (r < 0)
			break;
	}
	tty_restore();
	r = 0;
	if (s.ended) {
		fprintf(stderr, "%sThe console of %s closed: %s\n", tty ? "\n" : "", s.name,
			s.reason[0] ? s.reason : "no reason given");
	} else if (s.failed) {
		r = cli_fail(c, CLI_EXIT_ERROR, "error", "%s", s.fail_msg);
	} else if (sub) {
		cli_client_set_raw(c->client, NULL, NULL, NULL);
		cli_call_until(c, "console.detach", json_pack("{s:O}", "subscription", sub),
			       now_ns() + CLI_TIMEOUT_MARGIN_MS * NSEC_PER_MSEC, NULL);
		if (tty)
			fprintf(stderr, "\r\nDetached from the console of %s\n", s.name);
	}
out:
	tty_restore();
	json_decref(sub);
	json_decref(res);
	if (sfd >= 0)
		close(sfd);
	if (ep >= 0)
		close(ep);
	return r;
}

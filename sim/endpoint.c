/* SPDX-License-Identifier: MIT */
/*
 * One simulated QMP endpoint: a small imitation of what QEMU 7.2 says on
 * its QMP socket, with knobs to misbehave in ways QEMU cannot be made to.
 *
 * What it copies from QEMU, checked against qemu-system-x86_64 7.2:
 *   - a greeting on connect, then capabilities negotiation: any command
 *     but qmp_capabilities gets CommandNotFound until it succeeded, and
 *     qmp_capabilities afterwards gets CommandNotFound too;
 *   - the error texts for malformed input and for unknown commands and
 *     arguments, and the reply "id" echoed whatever its JSON type;
 *   - the order of output: STOP, RESUME, RESET and POWERDOWN come before
 *     the command's return, SHUTDOWN after it;
 *   - one client at a time: like QEMU's socket chardev, the endpoint stops
 *     accepting while a client is connected, so a second client waits in
 *     the listen backlog until the first one leaves.
 * Where it differs: input is read one command per line (QEMU parses a JSON
 * stream; corral's encoder always ends a command with a newline), and a
 * powerdown closes the connection and leaves a fresh running guest behind,
 * as if the VM had been restarted, instead of ending the process.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "sim/sim.h"

/* A client line longer than this is not a command we could answer. */
#define SIM_MAX_IN (1024u * 1024)
/* Storm events are dropped while this much output waits for the client. */
#define SIM_STORM_BACKLOG (4u * 1024 * 1024)

#define SIM_GARBAGE_LINE "{\"return\": {,]} this is not JSON\r\n"

struct sim_reply {
	struct sim_reply *next;
	uint64_t due_ns;
	bool close_after;       /* close the connection once this is sent */
	size_t len;
	char line[];
};

/* ---- output ------------------------------------------------------------ */

static void ep_arm_out(struct sim *s, struct sim_ep *e, bool on)
{
	struct epoll_event ev = {
		.events = EPOLLIN | (on ? EPOLLOUT : 0),
		.data.u64 = sim_tag(e->idx, SIM_TAG_CONN),
	};

	if (e->want_out == on)
		return;
	BUG_ON(epoll_ctl(s->epfd, EPOLL_CTL_MOD, e->cfd, &ev) < 0);
	e->want_out = on;
}

/*
 * Send what is buffered.  Returns 0, or -1 when the client is gone (the
 * endpoint is listening again and its per-client state freed).
 */
static int ep_flush(struct sim *s, struct sim_ep *e)
{
	struct sim_buf *b = &e->out;

	while (b->off < b->len) {
		ssize_t n = send(e->cfd, b->p + b->off, b->len - b->off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ep_arm_out(s, e, true);
			return 0;
		}
		if (n < 0) {
			sim_ep_disconnect(s, e);
			return -1;
		}
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	ep_arm_out(s, e, false);
	if (e->closing) {
		sim_ep_disconnect(s, e);
		return -1;
	}
	return 0;
}

static int buf_append(struct sim_buf *b, const char *p, size_t n)
{
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->cap - b->len < n) {
		size_t ncap = b->cap ? b->cap : 4096;
		char *np;

		while (ncap - b->len < n)
			ncap *= 2;
		np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/*
 * One line of output, built in place: on the stack while it fits, which
 * every answer and event of the common commands does, on the heap after.
 * Messages are printed as QEMU prints them: ", " and ": " separators,
 * members in the order made, CRLF.
 */
struct sim_line {
	char *p;
	size_t len, cap;
	char stack[1024];
};

static void line_init(struct sim_line *l)
{
	l->p = l->stack;
	l->len = 0;
	l->cap = sizeof(l->stack);
}

static char *line_room(struct sim_line *l, size_t n)
{
	if (l->cap - l->len < n) {
		size_t ncap = l->cap * 2;
		char *np;

		while (ncap - l->len < n)
			ncap *= 2;
		np = l->p == l->stack ? malloc(ncap) : realloc(l->p, ncap);
		BUG_ON(!np);
		if (l->p == l->stack)
			memcpy(np, l->stack, l->len);
		l->p = np;
		l->cap = ncap;
	}
	return l->p + l->len;
}

static void line_str(struct sim_line *l, const char *str)
{
	size_t n = strlen(str);

	memcpy(line_room(l, n), str, n);
	l->len += n;
}

static void line_fmt(struct sim_line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void line_fmt(struct sim_line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
	va_end(ap);
	BUG_ON(n < 0);
	if ((size_t)n >= l->cap - l->len) {
		line_room(l, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
		va_end(ap);
	}
	l->len += (size_t)n;
}

static void line_json(struct sim_line *l, const json_t *j)
{
	const size_t flags = JSON_PRESERVE_ORDER | JSON_ENCODE_ANY;
	size_t n = json_dumpb(j, l->p + l->len, l->cap - l->len, flags);

	BUG_ON(!n);
	if (n > l->cap - l->len)
		BUG_ON(json_dumpb(j, line_room(l, n), n, flags) != n);
	l->len += n;
}

static void line_free(struct sim_line *l)
{
	if (l->p != l->stack)
		free(l->p);
}

/* Queue line for now + delay; the loop's timer moves it to out. */
static void ep_queue(struct sim *s, struct sim_ep *e, const char *line, size_t n,
		     bool close_after)
{
	struct sim_reply *r = malloc(sizeof(*r) + n);
	struct sim_timer t;

	BUG_ON(!r);
	r->next = NULL;
	r->due_ns = now_ns() + (uint64_t)e->k.delay_ms * NSEC_PER_MSEC;
	r->close_after = close_after;
	r->len = n;
	memcpy(r->line, line, n);
	if (e->rq_tail)
		e->rq_tail->next = r;
	else
		e->rq_head = r;
	e->rq_tail = r;

	t = (struct sim_timer){ .when_ns = r->due_ns, .ep = e->idx, .gen = e->gen,
				.what = SIM_TIMER_REPLY };
	BUG_ON(sim_timers_add(&s->timers, &t) < 0);
}

/*
 * Output that answers a command: now, or after the delay knob.  A hung
 * endpoint says nothing.
 */
static void ep_answer_line(struct sim *s, struct sim_ep *e, const char *line, size_t n)
{
	if (e->hung)
		return;
	if (e->k.delay_ms)
		ep_queue(s, e, line, n, false);
	else
		BUG_ON(buf_append(&e->out, line, n) < 0);
}

/* The line, ended, as an answer; freed. */
static void ep_answer_built(struct sim *s, struct sim_ep *e, struct sim_line *l)
{
	line_str(l, "\r\n");
	ep_answer_line(s, e, l->p, l->len);
	line_free(l);
}

static void ep_answer(struct sim *s, struct sim_ep *e, json_t *msg)
{
	struct sim_line l;

	line_init(&l);
	line_json(&l, msg);
	ep_answer_built(s, e, &l);
	json_decref(msg);
}

/* Close once everything answered so far has gone out. */
static void ep_close_after_answers(struct sim *s, struct sim_ep *e)
{
	if (e->k.delay_ms && !e->hung)
		ep_queue(s, e, "", 0, true);
	else
		e->closing = true;
}

/* ---- messages ---------------------------------------------------------- */

/* An event as QEMU prints it; data (if any) is consumed. */
static void event_line(struct sim_line *l, const char *name, json_t *data)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	line_fmt(l, "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}, "
		 "\"event\": \"%s\"", (long long)ts.tv_sec, ts.tv_nsec / 1000, name);
	if (data) {
		line_str(l, ", \"data\": ");
		line_json(l, data);
		json_decref(data);
	}
	line_str(l, "}");
}

/* The storm's event, numbered, onto out (the storm and before the greeting). */
static void rtc_change(struct sim_ep *e)
{
	struct sim_line l;

	line_init(&l);
	event_line(&l, "RTC_CHANGE", NULL);
	l.len--;        /* its data in place of the closing brace */
	line_fmt(&l, ", \"data\": {\"offset\": %" PRIu64 "}}\r\n", e->event_seq++);
	BUG_ON(buf_append(&e->out, l.p, l.len) < 0);
	line_free(&l);
}

static void ep_reply(struct sim *s, struct sim_ep *e, json_t *id, json_t *ret)
{
	struct sim_line l;

	if (e->k.garbage == SIM_GARBAGE_REPLY) {
		json_decref(ret);
		ep_answer_line(s, e, SIM_GARBAGE_LINE, strlen(SIM_GARBAGE_LINE));
		return;
	}
	line_init(&l);
	line_str(&l, "{\"return\": ");
	line_json(&l, ret);
	json_decref(ret);
	if (id) {
		line_str(&l, ", \"id\": ");
		line_json(&l, id);
	}
	line_str(&l, "}");
	ep_answer_built(s, e, &l);
}

static void ep_error(struct sim *s, struct sim_ep *e, json_t *id, const char *cls,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void ep_error(struct sim *s, struct sim_ep *e, json_t *id, const char *cls,
		     const char *fmt, ...)
{
	char desc[512];
	json_t *msg;
	va_list ap;

	if (e->k.garbage == SIM_GARBAGE_REPLY) {
		ep_answer_line(s, e, SIM_GARBAGE_LINE, strlen(SIM_GARBAGE_LINE));
		return;
	}
	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	msg = json_object();
	BUG_ON(!msg);
	if (id)
		BUG_ON(json_object_set(msg, "id", id) < 0);
	BUG_ON(json_object_set_new(msg, "error",
				   json_pack("{s:s,s:s}", "class", cls, "desc", desc)) < 0);
	ep_answer(s, e, msg);
}

static void ep_event(struct sim *s, struct sim_ep *e, const char *name, json_t *data)
{
	struct sim_line l;

	line_init(&l);
	event_line(&l, name, data);
	ep_answer_built(s, e, &l);
}

/* ---- commands ---------------------------------------------------------- */

static void ep_storm_start(struct sim *s, struct sim_ep *e)
{
	struct sim_timer t;

	if (!e->k.event_storm || e->hung)
		return;
	e->storm_next_ns = now_ns() + NSEC_PER_SEC / e->k.event_storm;
	t = (struct sim_timer){ .when_ns = e->storm_next_ns, .ep = e->idx, .gen = e->gen,
				.what = SIM_TIMER_STORM };
	BUG_ON(sim_timers_add(&s->timers, &t) < 0);
}

/* The commands that take no arguments refuse any, as QEMU does. */
static bool ep_no_args(struct sim *s, struct sim_ep *e, json_t *id, json_t *args)
{
	const char *key;
	json_t *v;

	json_object_foreach(args, key, v) {
		ep_error(s, e, id, "GenericError", "Parameter '%s' is unexpected", key);
		return false;
	}
	return true;
}

static void ep_execute(struct sim *s, struct sim_ep *e, const char *cmd, json_t *args,
		       json_t *id)
{
	if (!e->negotiated) {
		if (strcmp(cmd, "qmp_capabilities")) {
			ep_error(s, e, id, "CommandNotFound",
				 "Expecting capabilities negotiation with 'qmp_capabilities'");
			return;
		}
		e->negotiated = true;
		ep_reply(s, e, id, json_object());
		if (e->k.hang == SIM_HANG_AFTER_CAPS)
			e->hung = true;
		ep_storm_start(s, e);
		return;
	}
	if (!strcmp(cmd, "qmp_capabilities")) {
		ep_error(s, e, id, "CommandNotFound",
			 "Capabilities negotiation is already complete, command ignored");
		return;
	}

	if (!strcmp(cmd, "query-status")) {
		if (ep_no_args(s, e, id, args))
			ep_reply(s, e, id, json_pack("{s:s,s:b}", "status",
						     e->shut_down ? "shutdown" :
						     e->paused ? "paused" : "running",
						     "running", !e->paused));
	} else if (!strcmp(cmd, "query-name")) {
		if (ep_no_args(s, e, id, args))
			ep_reply(s, e, id, json_pack("{s:s}", "name", e->name));
	} else if (!strcmp(cmd, "query-version")) {
		if (ep_no_args(s, e, id, args))
			ep_reply(s, e, id, json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu",
						     "major", 7, "minor", 2, "micro", 0,
						     "package", "corral-qmp-sim"));
	} else if (!strcmp(cmd, "stop")) {
		if (!ep_no_args(s, e, id, args))
			return;
		if (!e->paused) {
			e->paused = true;
			ep_event(s, e, "STOP", NULL);
		}
		ep_reply(s, e, id, json_object());
	} else if (!strcmp(cmd, "cont")) {
		if (!ep_no_args(s, e, id, args))
			return;
		if (e->shut_down) {
			ep_error(s, e, id, "GenericError",
				 "Resetting the Virtual Machine is required");
			return;
		}
		if (e->paused) {
			e->paused = false;
			ep_event(s, e, "RESUME", NULL);
		}
		ep_reply(s, e, id, json_object());
	} else if (!strcmp(cmd, "system_reset")) {
		if (!ep_no_args(s, e, id, args))
			return;
		ep_event(s, e, "RESET", json_pack("{s:b,s:s}", "guest", 0,
						  "reason", "host-qmp-system-reset"));
		e->shut_down = false;   /* a powered-off guest can be reset and run */
		ep_reply(s, e, id, json_object());
	} else if (!strcmp(cmd, "system_powerdown")) {
		if (!ep_no_args(s, e, id, args))
			return;
		/* The guest obliges at once; "QEMU" then exits, or with
		 * no-shutdown stops and waits. */
		ep_event(s, e, "POWERDOWN", NULL);
		ep_reply(s, e, id, json_object());
		ep_event(s, e, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 1,
						     "reason", "guest-shutdown"));
		if (e->k.no_shutdown) {
			e->shut_down = true;
			if (!e->paused) {
				e->paused = true;
				ep_event(s, e, "STOP", NULL);
			}
		} else {
			e->paused = false;
			ep_close_after_answers(s, e);
		}
	} else if (!strcmp(cmd, "query-blockstats")) {
		/* One virtio disk whose counters grow with every query. */
		if (!ep_no_args(s, e, id, args))
			return;
		e->queries++;
		ep_reply(s, e, id, json_pack(
			"[{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I}}]", "device", "",
			"node-name", "disk0", "qdev", "/machine/peripheral/vd0/virtio-backend",
			"stats", "rd_bytes", (json_int_t)e->queries * 4096, "wr_bytes",
			(json_int_t)e->queries * 512, "rd_operations", (json_int_t)e->queries,
			"wr_operations", (json_int_t)e->queries, "flush_operations",
			(json_int_t)0));
	} else if (!strcmp(cmd, "query-cpus-fast")) {
		/* One vCPU, whose thread is the simulator's own. */
		if (!ep_no_args(s, e, id, args))
			return;
		ep_reply(s, e, id, json_pack("[{s:i, s:i, s:s}]", "cpu-index", 0, "thread-id",
					     (int)gettid(), "target", "x86_64"));
	} else if (!strcmp(cmd, "quit")) {
		if (!ep_no_args(s, e, id, args))
			return;
		/* "QEMU" exits: the next client finds a fresh running guest. */
		ep_reply(s, e, id, json_object());
		e->paused = false;
		e->shut_down = false;
		ep_close_after_answers(s, e);
	} else {
		ep_error(s, e, id, "CommandNotFound", "The command %s has not been found", cmd);
	}
}

/* One line of client input.  Validation and texts as in QEMU's dispatcher. */
static void ep_command(struct sim *s, struct sim_ep *e, const char *line, size_t n)
{
	json_t *in, *id, *exec, *args, *v;
	json_error_t err;
	const char *key;

	e->ncmds++;
	in = json_loadb(line, n, JSON_DECODE_ANY, &err);
	if (!in) {
		ep_error(s, e, NULL, "GenericError", "JSON parse error, %s", err.text);
		goto out;
	}
	if (!json_is_object(in)) {
		ep_error(s, e, NULL, "GenericError", "QMP input must be a JSON object");
		goto out;
	}
	id = json_object_get(in, "id");
	json_object_foreach(in, key, v) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			ep_error(s, e, id, "GenericError", "QMP input member '%s' is unexpected",
				 key);
			goto out;
		}
	}
	exec = json_object_get(in, "execute");
	args = json_object_get(in, "arguments");
	if (!exec) {
		ep_error(s, e, id, "GenericError", "QMP input lacks member 'execute'");
	} else if (!json_is_string(exec)) {
		ep_error(s, e, id, "GenericError", "QMP input member 'execute' must be a string");
	} else if (args && !json_is_object(args)) {
		ep_error(s, e, id, "GenericError",
			 "QMP input member 'arguments' must be an object");
	} else {
		ep_execute(s, e, json_string_value(exec), args, id);
	}
out:
	json_decref(in);
	if (e->k.disconnect_after && e->ncmds >= e->k.disconnect_after && !e->closing)
		ep_close_after_answers(s, e);
}

/* ---- connection life --------------------------------------------------- */

static void ep_reset_client(struct sim_ep *e)
{
	struct sim_reply *r = e->rq_head;

	while (r) {
		struct sim_reply *next = r->next;

		free(r);
		r = next;
	}
	e->rq_head = e->rq_tail = NULL;
	/*
	 * Buffers of a usual size stay for the next client: thousands of
	 * clients coming back at once (a daemon's restart) then cost no
	 * allocation and no page faults.
	 */
	if (e->in_cap > SIM_KEEP_BUF) {
		free(e->in);
		e->in = NULL;
		e->in_cap = 0;
	}
	e->in_len = 0;
	if (e->out.cap > SIM_KEEP_BUF) {
		free(e->out.p);
		e->out = (struct sim_buf){ 0 };
	}
	e->out.len = e->out.off = 0;
	e->negotiated = e->hung = e->closing = e->want_out = false;
	e->ncmds = 0;
	e->event_seq = 0;
}

void sim_ep_disconnect(struct sim *s, struct sim_ep *e)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLONESHOT,
		.data.u64 = sim_tag(e->idx, SIM_TAG_LISTEN),
	};

	if (e->cfd < 0)
		return;
	if (s->verbose)
		fprintf(stderr, "corral-qmp-sim: %s: client left after %u commands\n", e->name,
			e->ncmds);
	close(e->cfd);          /* also leaves the epoll set */
	e->cfd = -1;
	e->gen++;               /* its pending timers are stale now */
	ep_reset_client(e);
	BUG_ON(epoll_ctl(s->epfd, EPOLL_CTL_MOD, e->lfd, &ev) < 0);
	e->listening = true;
}

void sim_ep_on_listen(struct sim *s, struct sim_ep *e)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int fd;

	fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		struct epoll_event again = {
			.events = EPOLLIN | EPOLLONESHOT,
			.data.u64 = sim_tag(e->idx, SIM_TAG_LISTEN),
		};

		/* EAGAIN: someone gave up in the backlog; EMFILE: see --help. */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			fprintf(stderr, "corral-qmp-sim: %s: accept: %s\n", e->name,
				strerror(errno));
		/* Still listening: the one-shot watch is armed again. */
		BUG_ON(epoll_ctl(s->epfd, EPOLL_CTL_MOD, e->lfd, &again) < 0);
		return;
	}
	/*
	 * One client at a time, like QEMU: the next one waits in the backlog.
	 * The listening watch is one-shot: it stays quiet until the client
	 * leaves (sim_ep_disconnect arms it again).
	 */
	e->listening = false;

	e->cfd = fd;
	e->gen++;
	ev.data.u64 = sim_tag(e->idx, SIM_TAG_CONN);
	BUG_ON(epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0);
	if (s->verbose)
		fprintf(stderr, "corral-qmp-sim: %s: client connected\n", e->name);

	for (unsigned i = 0; i < e->k.events_before_greeting; i++)
		rtc_change(e);
	if (e->k.garbage == SIM_GARBAGE_GREETING) {
		BUG_ON(buf_append(&e->out, SIM_GARBAGE_LINE, strlen(SIM_GARBAGE_LINE)) < 0);
	} else {
		/* The same for every client: made once. */
		static char *greeting;
		static size_t greeting_len;

		if (!greeting) {
			json_t *g = json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[s]}}", "QMP",
					      "version", "qemu", "micro", 0, "minor", 2, "major", 7,
					      "package", "corral-qmp-sim", "capabilities", "oob");

			struct sim_line l;

			BUG_ON(!g);
			line_init(&l);
			line_json(&l, g);
			line_str(&l, "\r\n");
			greeting = malloc(l.len);
			BUG_ON(!greeting);
			memcpy(greeting, l.p, l.len);
			greeting_len = l.len;
			line_free(&l);
			json_decref(g);
		}
		BUG_ON(buf_append(&e->out, greeting, greeting_len) < 0);
	}
	if (e->k.hang == SIM_HANG_ALWAYS)
		e->hung = true;
	ep_flush(s, e);
}

/* Read what the client sent and answer each complete line. */
static void ep_read(struct sim *s, struct sim_ep *e)
{
	size_t start = 0;
	ssize_t n;

	if (e->in_cap - e->in_len < 4096) {
		size_t ncap = e->in_cap ? e->in_cap * 2 : 8192;
		char *np = realloc(e->in, ncap);

		BUG_ON(!np);
		e->in = np;
		e->in_cap = ncap;
	}
	n = recv(e->cfd, e->in + e->in_len, e->in_cap - e->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		sim_ep_disconnect(s, e);
		return;
	}
	e->in_len += (size_t)n;

	while (!e->closing) {
		char *nl = memchr(e->in + start, '\n', e->in_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (e->in + start));
		if (len && e->in[start + len - 1] == '\r')
			len--;
		if (len)
			ep_command(s, e, e->in + start, len);
		start = (size_t)(nl - e->in) + 1;
	}
	if (e->closing) {
		/* Whatever else the client sent will never be read. */
		e->in_len = 0;
	} else {
		memmove(e->in, e->in + start, e->in_len - start);
		e->in_len -= start;
		if (e->in_len >= SIM_MAX_IN) {
			fprintf(stderr, "corral-qmp-sim: %s: client line over %u bytes, closing\n",
				e->name, SIM_MAX_IN);
			sim_ep_disconnect(s, e);
			return;
		}
	}
	ep_flush(s, e);
}

void sim_ep_on_conn(struct sim *s, struct sim_ep *e, uint32_t events)
{
	if (events & EPOLLOUT) {
		if (ep_flush(s, e) < 0)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		ep_read(s, e);
}

static void ep_storm(struct sim *s, struct sim_ep *e)
{
	uint64_t period = NSEC_PER_SEC / e->k.event_storm, now = now_ns();
	struct sim_timer t;
	unsigned sent = 0;

	if (e->hung || e->closing)
		return;
	/* Catch up on what a slow loop missed, but at most a second's worth. */
	while (e->storm_next_ns <= now && sent < e->k.event_storm) {
		if (e->out.len - e->out.off < SIM_STORM_BACKLOG)
			rtc_change(e);
		e->storm_next_ns += period;
		sent++;
	}
	if (e->storm_next_ns <= now)
		e->storm_next_ns = now + period;
	t = (struct sim_timer){ .when_ns = e->storm_next_ns, .ep = e->idx, .gen = e->gen,
				.what = SIM_TIMER_STORM };
	BUG_ON(sim_timers_add(&s->timers, &t) < 0);
	ep_flush(s, e);
}

static void ep_release_replies(struct sim *s, struct sim_ep *e)
{
	uint64_t now = now_ns();

	while (e->rq_head && e->rq_head->due_ns <= now) {
		struct sim_reply *r = e->rq_head;

		e->rq_head = r->next;
		if (!e->rq_head)
			e->rq_tail = NULL;
		BUG_ON(buf_append(&e->out, r->line, r->len) < 0);
		if (r->close_after)
			e->closing = true;
		free(r);
	}
	ep_flush(s, e);
}

void sim_ep_on_timer(struct sim *s, struct sim_ep *e, const struct sim_timer *t)
{
	if (e->cfd < 0 || t->gen != e->gen)
		return;         /* stale: that client is gone */
	switch (t->what) {
	case SIM_TIMER_REPLY:
		ep_release_replies(s, e);
		break;
	case SIM_TIMER_STORM:
		ep_storm(s, e);
		break;
	}
}

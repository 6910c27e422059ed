/* SPDX-License-Identifier: MIT */
/*
 * qmp: framing, parsing and command encoding.  See qmp.h for the contract.
 *
 * Framing.  The QMP specification (docs/interop/qmp-spec.rst, "General
 * Definitions") says that everything the server sends is a JSON object
 * terminated by CRLF, and that the server's output is plain ASCII.  JSON
 * itself forbids raw control characters inside strings, so a newline byte
 * can only sit between tokens, and QEMU's compact output puts none there.
 * Hence one line is one message, and the parser can find message
 * boundaries with memchr() instead of running a streaming JSON lexer.  (The
 * one way to break this is QEMU's "pretty=on" monitor option, which spreads
 * a message over many lines; corral never sets it, and if someone does,
 * the first line fails as invalid JSON with a clear reason rather than
 * being misread.)
 *
 * Cost.  Every byte fed is examined a bounded number of times: once by the
 * memrchr() in qmp_conn_feed() that keeps the length of the unterminated
 * tail (for the size cap), once by the memchr() in qmp_conn_next() that
 * resumes where the previous call stopped (c->scan), and once by jansson
 * when its line is complete.  Consumed bytes are dropped by moving the rest
 * to the front only when the consumed part is at least as large as what
 * remains, so the moves are amortised O(1) per byte as well.  A 1 MiB reply
 * arriving in 4 KiB reads therefore costs O(1 MiB), not O(256 MiB).
 */
#include "qmp/qmp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "qmp/qmp-internal.h"

/*
 * Smallest buffer allocated, and the most an idle conn keeps.  corrald
 * keeps one conn per running QEMU, and most of QMP's messages (replies,
 * events) are under 512 bytes: a bigger buffer kept per domain would be
 * most of a domain's memory.
 */
#define QMP_BUF_MIN  512u
#define QMP_BUF_KEEP 512u

#define QMP_ERR_LEN 320

struct qmp_conn {
	/*
	 * buf[0, start) is consumed, buf[start, len) waits to be parsed,
	 * buf[start, scan) is known to hold no newline.
	 */
	char *buf;
	size_t len, cap, start, scan;
	size_t tail;            /* bytes fed since the last newline fed */
	uint64_t consumed;      /* stream offset of buf[0] */
	uint64_t lines;         /* complete lines taken so far, empty ones too */
	uint64_t next_id;       /* the id the next encoded command gets */
	int broken;             /* 0, or the negative errno that broke the stream */
	bool enc_failed;
	char err[QMP_ERR_LEN];
	char enc_err[QMP_ERR_LEN];
	struct qmp_conn_counters counters;
};

struct qmp_msg {
	enum qmp_msg_kind kind;
	json_t *root;           /* owned; every other pointer borrows from it */
	bool has_id;
	uint64_t id;
	json_t *ret;
	const char *err_class, *err_desc;
	const char *event;
	json_t *data;
	int64_t ts_sec, ts_usec;
	int major, minor, micro;
	const char *package;
	json_t *caps;           /* owned reference: may be an array made here */
};

/* ---- errors ------------------------------------------------------------ */

static int conn_break(struct qmp_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int conn_break(struct qmp_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	BUG_ON(err >= 0);
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	c->broken = err;
	/* The buffered bytes will never be parsed now: give them back. */
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = c->start = c->scan = 0;
	return err;
}

static int enc_fail(struct qmp_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int enc_fail(struct qmp_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->enc_err, sizeof(c->enc_err), fmt, ap);
	va_end(ap);
	c->enc_failed = true;
	return err;
}

/* ---- connection -------------------------------------------------------- */

int qmp_conn_new(struct qmp_conn **ret)
{
	struct qmp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->next_id = 1;
	*ret = c;
	return 0;
}

void qmp_conn_free(struct qmp_conn *c)
{
	if (!c)
		return;
	free(c->buf);
	free(c);
}

const char *qmp_conn_error(const struct qmp_conn *c)
{
	return c->broken ? c->err : NULL;
}

const char *qmp_conn_encode_error(const struct qmp_conn *c)
{
	return c->enc_failed ? c->enc_err : NULL;
}

void qmp_conn_get_counters(const struct qmp_conn *c, struct qmp_conn_counters *ret)
{
	*ret = c->counters;
}

/* off: stream offset where the overlong line starts. */
static int conn_break_oversize(struct qmp_conn *c, uint64_t off)
{
	return conn_break(c, -EMSGSIZE,
			  "message exceeds %u MiB cap: no newline within %u bytes of the "
			  "line starting at stream offset %" PRIu64,
			  QMP_MAX_MSG / (1024 * 1024), QMP_MAX_MSG, off);
}

/* Drop consumed bytes by moving the unparsed ones to the front. */
static void conn_compact(struct qmp_conn *c)
{
	size_t rest = c->len - c->start;

	if (c->start == 0)
		return;
	memmove(c->buf, c->buf + c->start, rest);
	c->counters.moved += rest;
	c->consumed += c->start;
	c->scan -= c->start;
	c->len = rest;
	c->start = 0;
}

int qmp_conn_feed(struct qmp_conn *c, const char *buf, size_t len)
{
	const char *nl;
	size_t tail;

	if (c->broken)
		return c->broken;
	if (len == 0)
		return 0;

	/*
	 * Only the new bytes are searched, from their end: the tail after
	 * their last newline, or the old tail plus all of them.
	 */
	nl = memrchr(buf, '\n', len);
	if (nl) {
		tail = len - (size_t)(nl - buf) - 1;
		c->counters.scanned += (size_t)(buf + len - nl);
	} else {
		tail = c->tail + len;
		c->counters.scanned += len;
	}
	if (tail >= QMP_MAX_MSG) {
		uint64_t off = c->consumed + c->len;

		if (nl)
			off += (uint64_t)(nl - buf) + 1;
		else
			off -= c->tail;
		return conn_break_oversize(c, off);
	}

	/*
	 * Move only once the consumed part is at least as big as the rest, so
	 * each byte moves O(1) times however the reads are cut.
	 */
	if (c->start > 0 && (c->start >= c->len - c->start || c->cap - c->len < len))
		conn_compact(c);

	if (c->cap - c->len < len) {
		size_t need = c->len + len;
		size_t ncap = c->cap ? c->cap : QMP_BUF_MIN;
		char *nbuf;

		while (ncap < need)
			ncap *= 2;
		nbuf = realloc(c->buf, ncap);
		if (!nbuf)
			return -ENOMEM;
		c->counters.copied += c->len;
		c->buf = nbuf;
		c->cap = ncap;
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	c->tail = tail;
	c->counters.fed += len;
	return 0;
}

static bool line_is_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	}
	return true;
}

static const char *json_kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown value";
}

/* A JSON number as int64; reals count when they hold an integer. */
static bool json_get_int64(const json_t *v, int64_t *ret)
{
	if (json_is_integer(v)) {
		*ret = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		/* 2^63 itself is not representable as int64 */
		if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
		    d == (double)(int64_t)d) {
			*ret = (int64_t)d;
			return true;
		}
	}
	return false;
}

/*
 * Only a JSON integer is one of our ids, except in a message read with
 * ints_as_reals, where every integer became a double.
 */
static void msg_parse_id(struct qmp_msg *m, bool ints_as_reals)
{
	json_t *v = json_object_get(m->root, "id");
	int64_t id;

	if (!json_is_integer(v) && !(ints_as_reals && json_is_real(v)))
		return;
	if (json_get_int64(v, &id) && id >= 0) {
		m->has_id = true;
		m->id = (uint64_t)id;
	}
}

static int msg_parse_greeting(struct qmp_conn *c, struct qmp_msg *m, json_t *qmp)
{
	json_t *version, *qemu, *caps, *pkg;
	int64_t v;

	if (!json_is_object(qmp))
		return conn_break(c, -EPROTO,
				  "unexpected message shape on line %" PRIu64
				  ": \"QMP\" is %s, not an object",
				  c->lines, json_kind_name(qmp));
	m->kind = QMP_MSG_GREETING;

	/* Liberal: a greeting missing version numbers still greets. */
	version = json_object_get(qmp, "version");
	qemu = json_object_get(version, "qemu");
	if (json_get_int64(json_object_get(qemu, "major"), &v))
		m->major = (int)v;
	if (json_get_int64(json_object_get(qemu, "minor"), &v))
		m->minor = (int)v;
	if (json_get_int64(json_object_get(qemu, "micro"), &v))
		m->micro = (int)v;
	pkg = json_object_get(version, "package");
	m->package = json_is_string(pkg) ? json_string_value(pkg) : "";

	caps = json_object_get(qmp, "capabilities");
	if (caps && !json_is_array(caps))
		return conn_break(c, -EPROTO,
				  "unexpected message shape on line %" PRIu64
				  ": greeting capabilities is %s, not an array",
				  c->lines, json_kind_name(caps));
	m->caps = caps ? json_incref(caps) : json_array();
	if (!m->caps)
		return -ENOMEM;
	return 0;
}

static int msg_parse_error(struct qmp_conn *c, struct qmp_msg *m, json_t *err,
			   bool ints_as_reals)
{
	json_t *cls = json_object_get(err, "class");
	json_t *desc = json_object_get(err, "desc");

	if (!json_is_string(cls) || !json_is_string(desc))
		return conn_break(c, -EPROTO,
				  "unexpected message shape on line %" PRIu64
				  ": \"error\" is not an object with string \"class\" and \"desc\"",
				  c->lines);
	m->kind = QMP_MSG_ERROR;
	m->err_class = json_string_value(cls);
	m->err_desc = json_string_value(desc);
	msg_parse_id(m, ints_as_reals);
	return 0;
}

static int msg_parse_event(struct qmp_conn *c, struct qmp_msg *m, json_t *name)
{
	json_t *data = json_object_get(m->root, "data");
	json_t *ts = json_object_get(m->root, "timestamp");

	if (!json_is_string(name))
		return conn_break(c, -EPROTO,
				  "unexpected message shape on line %" PRIu64
				  ": \"event\" is %s, not a string",
				  c->lines, json_kind_name(name));
	if (data && !json_is_object(data) && !json_is_null(data))
		return conn_break(c, -EPROTO,
				  "unexpected message shape on line %" PRIu64
				  ": data of event %.64s is %s, not an object",
				  c->lines, json_string_value(name), json_kind_name(data));
	m->kind = QMP_MSG_EVENT;
	m->event = json_string_value(name);
	m->data = json_is_object(data) ? data : NULL;
	/* A missing or odd timestamp reads like QEMU's own "no clock": -1. */
	if (!json_get_int64(json_object_get(ts, "seconds"), &m->ts_sec) ||
	    !json_get_int64(json_object_get(ts, "microseconds"), &m->ts_usec))
		m->ts_sec = m->ts_usec = -1;
	return 0;
}

/*
 * Classify root (ownership passes to the message).  Returns 0, -ENOMEM,
 * or the error that broke the conn.
 */
static int msg_build(struct qmp_conn *c, json_t *root, bool ints_as_reals, struct qmp_msg **ret)
{
	static const char *const keys[] = { "QMP", "return", "error", "event" };
	const char *found = NULL;
	json_t *val = NULL;
	struct qmp_msg *m;
	int r;

	if (!json_is_object(root)) {
		r = conn_break(c, -EPROTO,
			       "unexpected message shape on line %" PRIu64
			       ": top-level value is %s, not an object",
			       c->lines, json_kind_name(root));
		json_decref(root);
		return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(root, keys[i]);

		if (!v)
			continue;
		if (found) {
			r = conn_break(c, -EPROTO,
				       "unexpected message shape on line %" PRIu64
				       ": object has both \"%s\" and \"%s\"",
				       c->lines, found, keys[i]);
			json_decref(root);
			return r;
		}
		found = keys[i];
		val = v;
	}
	if (!found) {
		r = conn_break(c, -EPROTO,
			       "unexpected message shape on line %" PRIu64
			       ": object has neither return, error, event nor QMP",
			       c->lines);
		json_decref(root);
		return r;
	}

	m = calloc(1, sizeof(*m));
	if (!m) {
		json_decref(root);
		return -ENOMEM;
	}
	m->root = root;
	m->ts_sec = m->ts_usec = -1;

	if (!strcmp(found, "QMP")) {
		r = msg_parse_greeting(c, m, val);
	} else if (!strcmp(found, "return")) {
		m->kind = QMP_MSG_RETURN;
		m->ret = val;
		msg_parse_id(m, ints_as_reals);
		r = 0;
	} else if (!strcmp(found, "error")) {
		r = msg_parse_error(c, m, val, ints_as_reals);
	} else {
		r = msg_parse_event(c, m, val);
	}
	if (r < 0) {
		qmp_msg_free(m);
		return r;
	}
	*ret = m;
	return 0;
}

/*
 * Parse one complete line.  Returns 0 with *ret set, -ENOMEM, or the error
 * that broke the conn.
 */
static int conn_parse_line(struct qmp_conn *c, const char *line, size_t n, struct qmp_msg **ret)
{
	bool ints_as_reals = false;
	json_error_t e;
	json_t *root;

	root = json_loadb(line, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!root && json_error_code(&e) == json_error_numeric_overflow) {
		ints_as_reals = true;
		/*
		 * QEMU prints uint64 values unsigned; jansson's integers are
		 * int64.  Rather than break the stream over one large counter,
		 * read such a message with every number as a double (ids stay
		 * exact below 2^53, which corral never reaches).
		 */
		root = json_loadb(line, n, JSON_DECODE_ANY | JSON_ALLOW_NUL |
				  JSON_DECODE_INT_AS_REAL, &e);
	}
	if (!root) {
		if (json_error_code(&e) == json_error_out_of_memory)
			return -ENOMEM;
		return conn_break(c, -EBADMSG,
				  "invalid JSON at byte %d of line %" PRIu64
				  " (stream offset %" PRIu64 "): %s",
				  e.position, c->lines,
				  c->consumed + (uint64_t)(line - c->buf) + (uint64_t)e.position,
				  e.text);
	}
	return msg_build(c, root, ints_as_reals, ret);
}

int qmp_conn_next(struct qmp_conn *c, struct qmp_msg **ret)
{
	if (c->broken)
		return c->broken;

	for (;;) {
		char *line, *nl;
		size_t n;
		int r;

		if (c->start == c->len) {
			/* Drained: start over, and let a huge reply's buffer go. */
			c->consumed += c->len;
			c->start = c->len = c->scan = 0;
			if (c->cap > QMP_BUF_KEEP) {
				free(c->buf);
				c->buf = NULL;
				c->cap = 0;
			}
			return 0;
		}

		nl = memchr(c->buf + c->scan, '\n', c->len - c->scan);
		if (!nl) {
			c->counters.scanned += c->len - c->scan;
			c->scan = c->len;
			/* qmp_conn_feed() enforces this already; stay safe. */
			if (c->len - c->start >= QMP_MAX_MSG)
				return conn_break_oversize(c, c->consumed + c->start);
			return 0;
		}
		c->counters.scanned += (size_t)(nl - (c->buf + c->scan)) + 1;

		line = c->buf + c->start;
		n = (size_t)(nl - line);
		c->lines++;
		if (n + 1 > QMP_MAX_MSG)
			return conn_break_oversize(c, c->consumed + c->start);

		if (line_is_blank(line, n)) {
			c->start = c->scan = (size_t)(nl - c->buf) + 1;
			continue;
		}
		if (line[n - 1] == '\r')
			n--;

		r = conn_parse_line(c, line, n, ret);
		if (r == -ENOMEM) {
			/* Keep the line; the next call finds its newline at once. */
			c->lines--;
			c->scan = (size_t)(nl - c->buf);
			return r;
		}
		if (r < 0)
			return r;
		c->start = c->scan = (size_t)(nl - c->buf) + 1;
		return 1;
	}
}

/* ---- encoding ---------------------------------------------------------- */

/* Give cmd (owned) this conn's next id and print it as one line. */
static int conn_encode(struct qmp_conn *c, json_t *cmd, uint64_t *ret_id, char **ret_buf,
		       size_t *ret_len)
{
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	char small[256];
	json_t *id;
	size_t n;
	char *out;

	BUG_ON(c->next_id > (uint64_t)INT64_MAX);
	id = json_integer((json_int_t)c->next_id);
	if (!id || json_object_set_new(cmd, "id", id) < 0)
		goto oom;
	/* Most commands fit the stack buffer: printed once, not measured first. */
	n = json_dumpb(cmd, small, sizeof(small), flags);
	if (n == 0)
		goto oom;
	out = malloc(n + 2);
	if (!out)
		goto oom;
	if (n <= sizeof(small)) {
		memcpy(out, small, n);
	} else if (json_dumpb(cmd, out, n, flags) != n) {
		free(out);
		goto oom;
	}
	json_decref(cmd);
	/* Compact output has no newline of its own, so this ends the line. */
	out[n] = '\n';
	out[n + 1] = '\0';

	*ret_id = c->next_id++;
	*ret_buf = out;
	*ret_len = n + 1;
	c->enc_failed = false;
	return 0;
oom:
	json_decref(cmd);
	return enc_fail(c, -ENOMEM, "out of memory");
}

static json_t *cmd_new(const char *execute, json_t *args)
{
	json_t *cmd = json_object();

	if (!cmd)
		return NULL;
	if (json_object_set_new(cmd, "execute", json_string(execute)) < 0 ||
	    (args && json_object_set(cmd, "arguments", args) < 0)) {
		json_decref(cmd);
		return NULL;
	}
	return cmd;
}

/* A QAPI name ([A-Za-z0-9_-], as every command QEMU knows): nothing to escape. */
static bool plain_name(const char *s, size_t *ret_len)
{
	const char *p;

	for (p = s; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	}
	*ret_len = (size_t)(p - s);
	return p - s <= 128;
}

/*
 * The line conn_encode prints, without building it as a tree first: the
 * envelope {"execute":NAME[,"arguments":ARGS],"id":N} around jansson's
 * compact print of the arguments.  Only for a plain name (no escaping).
 */
static int encode_plain(struct qmp_conn *c, const char *execute, size_t elen, json_t *args,
			uint64_t *ret_id, char **ret_buf, size_t *ret_len)
{
	static const char head[] = "{\"execute\":\"", mid[] = "\",\"arguments\":",
			  id_after_args[] = ",\"id\":", id_after_name[] = "\",\"id\":";
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	char small[256], digits[24], *out, *p;
	size_t alen = 0, dlen = 0, n;
	uint64_t id = c->next_id;

	BUG_ON(id > (uint64_t)INT64_MAX);
	do {
		digits[sizeof(digits) - 1 - dlen++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	if (args) {
		alen = json_dumpb(args, small, sizeof(small), flags);
		if (alen == 0)
			return enc_fail(c, -ENOMEM, "out of memory");
	}
	/* The line and its newline: n bytes, and a NUL. */
	n = sizeof(head) - 1 + elen +
	    (args ? sizeof(mid) - 1 + alen + sizeof(id_after_args) - 1 :
		    sizeof(id_after_name) - 1) + dlen + 2;
	out = malloc(n + 1);
	if (!out)
		return enc_fail(c, -ENOMEM, "out of memory");
	p = mempcpy(out, head, sizeof(head) - 1);
	p = mempcpy(p, execute, elen);
	if (args) {
		p = mempcpy(p, mid, sizeof(mid) - 1);
		if (alen <= sizeof(small)) {
			p = mempcpy(p, small, alen);
		} else if (json_dumpb(args, p, alen, flags) == alen) {
			p += alen;
		} else {
			free(out);
			return enc_fail(c, -ENOMEM, "out of memory");
		}
		p = mempcpy(p, id_after_args, sizeof(id_after_args) - 1);
	} else {
		p = mempcpy(p, id_after_name, sizeof(id_after_name) - 1);
	}
	p = mempcpy(p, digits + sizeof(digits) - dlen, dlen);
	*p++ = '}';
	*p++ = '\n';
	*p = '\0';
	BUG_ON((size_t)(p - out) != n);
	*ret_id = c->next_id++;
	*ret_buf = out;
	*ret_len = n;
	c->enc_failed = false;
	return 0;
}

int qmp_conn_encode_cmd(struct qmp_conn *c, const char *execute, json_t *args,
			uint64_t *ret_id, char **ret_buf, size_t *ret_len)
{
	json_t *cmd;
	size_t elen;

	if (!execute || !*execute)
		return enc_fail(c, -EINVAL, "command name must not be empty");
	if (args && !json_is_object(args))
		return enc_fail(c, -EINVAL, "arguments of %.64s must be an object, not %s",
				execute, json_kind_name(args));
	if (plain_name(execute, &elen))
		return encode_plain(c, execute, elen, args, ret_id, ret_buf, ret_len);
	cmd = cmd_new(execute, args);
	if (!cmd) {
		/* json_string() also fails on invalid UTF-8. */
		return enc_fail(c, -EINVAL, "cannot encode command %.64s (invalid UTF-8?)",
				execute);
	}
	return conn_encode(c, cmd, ret_id, ret_buf, ret_len);
}

int qmp_conn_encode_capabilities(struct qmp_conn *c, uint64_t *ret_id, char **ret_buf,
				 size_t *ret_len)
{
	return qmp_conn_encode_cmd(c, "qmp_capabilities", NULL, ret_id, ret_buf, ret_len);
}

int qmp_conn_encode_raw(struct qmp_conn *c, const char *json_text, uint64_t *ret_id,
			char **ret_buf, size_t *ret_len)
{
	json_t *in, *execute, *args, *cmd, *v;
	json_error_t e;
	const char *key;

	in = json_loads(json_text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
	if (!in) {
		if (json_error_code(&e) == json_error_out_of_memory)
			return enc_fail(c, -ENOMEM, "out of memory");
		return enc_fail(c, -EINVAL, "invalid JSON at byte %d: %s", e.position, e.text);
	}
	if (!json_is_object(in)) {
		enc_fail(c, -EINVAL, "a command must be a JSON object, not %s",
			 json_kind_name(in));
		goto invalid;
	}
	json_object_foreach(in, key, v) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			enc_fail(c, -EINVAL,
				 "unexpected member \"%.64s\": a command may only have "
				 "execute, arguments and id", key);
			goto invalid;
		}
	}
	execute = json_object_get(in, "execute");
	if (!execute) {
		enc_fail(c, -EINVAL, "missing member \"execute\"");
		goto invalid;
	}
	if (!json_is_string(execute) || !*json_string_value(execute)) {
		enc_fail(c, -EINVAL, "\"execute\" must be a non-empty string, not %s",
			 json_is_string(execute) ? "an empty one" : json_kind_name(execute));
		goto invalid;
	}
	args = json_object_get(in, "arguments");
	if (args && !json_is_object(args)) {
		enc_fail(c, -EINVAL, "\"arguments\" must be an object, not %s",
			 json_kind_name(args));
		goto invalid;
	}

	/* Rebuild rather than edit, so the line reads execute, arguments, id. */
	cmd = cmd_new(json_string_value(execute), args);
	json_decref(in);
	if (!cmd)
		return enc_fail(c, -ENOMEM, "out of memory");
	return conn_encode(c, cmd, ret_id, ret_buf, ret_len);

invalid:
	json_decref(in);
	return -EINVAL;
}

/* ---- messages ---------------------------------------------------------- */

void qmp_msg_free(struct qmp_msg *m)
{
	if (!m)
		return;
	json_decref(m->caps);
	json_decref(m->root);
	free(m);
}

enum qmp_msg_kind qmp_msg_kind(const struct qmp_msg *m)
{
	return m->kind;
}

json_t *qmp_msg_json(const struct qmp_msg *m)
{
	return m->root;
}

bool qmp_msg_id(const struct qmp_msg *m, uint64_t *ret_id)
{
	if (!m->has_id)
		return false;
	*ret_id = m->id;
	return true;
}

json_t *qmp_msg_return(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_RETURN ? m->ret : NULL;
}

/* Detach the member key of m's root (v): the caller's reference is then the only one. */
static json_t *take_member(struct qmp_msg *m, const char *key, json_t *v)
{
	if (!v)
		return NULL;
	json_incref(v);
	json_object_del(m->root, key);
	return v;
}

json_t *qmp_msg_take_return(struct qmp_msg *m)
{
	json_t *v = qmp_msg_return(m);

	m->ret = NULL;
	return take_member(m, "return", v);
}

const char *qmp_msg_error_class(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_ERROR ? m->err_class : NULL;
}

const char *qmp_msg_error_desc(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_ERROR ? m->err_desc : NULL;
}

const char *qmp_msg_event_name(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_EVENT ? m->event : NULL;
}

json_t *qmp_msg_event_data(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_EVENT ? m->data : NULL;
}

json_t *qmp_msg_take_event_data(struct qmp_msg *m)
{
	json_t *v = qmp_msg_event_data(m);

	m->data = NULL;
	return take_member(m, "data", v);
}

int64_t qmp_msg_event_seconds(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_EVENT ? m->ts_sec : -1;
}

int64_t qmp_msg_event_microseconds(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_EVENT ? m->ts_usec : -1;
}

const char *qmp_msg_greeting_version(const struct qmp_msg *m, int *ret_major, int *ret_minor,
				     int *ret_micro)
{
	if (m->kind != QMP_MSG_GREETING)
		return NULL;
	if (ret_major)
		*ret_major = m->major;
	if (ret_minor)
		*ret_minor = m->minor;
	if (ret_micro)
		*ret_micro = m->micro;
	return m->package;
}

json_t *qmp_msg_greeting_capabilities(const struct qmp_msg *m)
{
	return m->kind == QMP_MSG_GREETING ? m->caps : NULL;
}

bool qmp_msg_greeting_has_capability(const struct qmp_msg *m, const char *name)
{
	size_t i;
	json_t *v;

	if (m->kind != QMP_MSG_GREETING)
		return false;
	json_array_foreach(m->caps, i, v) {
		if (json_is_string(v) && !strcmp(json_string_value(v), name))
			return true;
	}
	return false;
}

/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the QMP client (qmp/qmp.h): arbitrary bytes as what
 * a QEMU sends, and the same bytes as a command a user types.  Beyond "no
 * crash, no leak, no sanitizer report" it checks:
 *
 *   - framing does not depend on how reads are cut: the input fed in one
 *     piece and fed in pieces (sizes from a generator seeded with a hash of
 *     the input, so a run is deterministic) gives the same messages, in the
 *     same order, and ends in the same state with the same error text; for
 *     one input in 16, the same again with the input repeated to 72 KiB, so
 *     that the buffer grows and is let go as it does for a large reply;
 *   - every accessor answers every message, and the answers agree with the
 *     message's JSON and its kind (another kind's accessor gives NULL, false
 *     or -1);
 *   - once broken, a conn keeps returning the same error from
 *     qmp_conn_next() and qmp_conn_feed(), and qmp_conn_error() keeps its
 *     text; while healthy, qmp_conn_error() is NULL;
 *   - qmp_conn_encode_raw() accepts the input (up to its first NUL) exactly
 *     when it is an object with a non-empty string "execute", an optional
 *     object "arguments", an optional "id" and nothing else; what it
 *     encodes is one line, parses back as JSON to the same execute and
 *     arguments, and carries the conn's next id;
 *   - ids start at 1 and grow by one per successful encode, on a fresh conn
 *     and on a broken one alike; a failed encode uses none and leaves a
 *     reason in qmp_conn_encode_error();
 *   - an encoded command, wrapped as {"return": CMD}, reads back through a
 *     conn as a return whose value equals the command.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "qmp/qmp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- helpers ------------------------------------------------------------ */

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* The messages one pass drained, and how it ended. */
struct pass {
	struct qmp_msg **msgs;
	size_t n, cap;
	int end;                /* 0 (healthy), or the error that broke the conn */
	char *err;              /* qmp_conn_error() at the end, copied */
	bool oom;               /* malloc failed somewhere: compare nothing */
};

static void pass_push(struct pass *p, struct qmp_msg *m)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct qmp_msg **v = realloc(p->msgs, cap * sizeof(*v));

		if (!v) {
			qmp_msg_free(m);
			p->oom = true;
			return;
		}
		p->msgs = v;
		p->cap = cap;
	}
	p->msgs[p->n++] = m;
}

static void pass_free(struct pass *p)
{
	for (size_t i = 0; i < p->n; i++)
		qmp_msg_free(p->msgs[i]);
	free(p->msgs);
	free(p->err);
}

/* ---- messages ----------------------------------------------------------- */

/* A JSON number that holds a non-negative integer, as an id may be. */
static bool json_id_value(const json_t *v, uint64_t *ret)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*ret = (uint64_t)json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (d >= 0 && d < 9223372036854775808.0 && d == (double)(int64_t)d) {
			*ret = (uint64_t)(int64_t)d;
			return true;
		}
	}
	return false;
}

/* Call every accessor; each must agree with the JSON and with the kind. */
static void check_msg(const struct qmp_msg *m)
{
	static const char *const keys[] = { "QMP", "return", "error", "event" };
	enum qmp_msg_kind kind = qmp_msg_kind(m);
	json_t *root = qmp_msg_json(m), *v, *caps;
	const char *pkg, *cls, *desc, *name;
	int major = -7, minor = -7, micro = -7;
	size_t present = 0, i;
	uint64_t id = 0, want;
	bool has_id;

	BUG_ON(!json_is_object(root));
	for (i = 0; i < ARRAY_SIZE(keys); i++)
		present += json_object_get(root, keys[i]) != NULL;
	BUG_ON(present != 1);
	BUG_ON(!json_object_get(root, keys[kind]));

	has_id = qmp_msg_id(m, &id);
	BUG_ON(has_id && kind != QMP_MSG_RETURN && kind != QMP_MSG_ERROR);
	BUG_ON(has_id && (!json_id_value(json_object_get(root, "id"), &want) || want != id));
	/* An integer id that fits is always read. */
	v = json_object_get(root, "id");
	BUG_ON((kind == QMP_MSG_RETURN || kind == QMP_MSG_ERROR) && json_is_integer(v) &&
	       json_integer_value(v) >= 0 && !has_id);

	/* Return. */
	v = qmp_msg_return(m);
	BUG_ON((kind == QMP_MSG_RETURN) != (v != NULL));
	BUG_ON(v && v != json_object_get(root, "return"));

	/* Error. */
	cls = qmp_msg_error_class(m);
	desc = qmp_msg_error_desc(m);
	BUG_ON((kind == QMP_MSG_ERROR) != (cls != NULL));
	BUG_ON((kind == QMP_MSG_ERROR) != (desc != NULL));
	if (cls) {
		json_t *e = json_object_get(root, "error");

		BUG_ON(!str_eq(cls, json_string_value(json_object_get(e, "class"))));
		BUG_ON(!str_eq(desc, json_string_value(json_object_get(e, "desc"))));
	}

	/* Event. */
	name = qmp_msg_event_name(m);
	v = qmp_msg_event_data(m);
	BUG_ON((kind == QMP_MSG_EVENT) != (name != NULL));
	BUG_ON(kind != QMP_MSG_EVENT && v);
	if (name) {
		json_t *data = json_object_get(root, "data");

		BUG_ON(!str_eq(name, json_string_value(json_object_get(root, "event"))));
		BUG_ON(v != (json_is_object(data) ? data : NULL));
		BUG_ON(data && !json_is_object(data) && !json_is_null(data));
	}
	if (kind != QMP_MSG_EVENT) {
		BUG_ON(qmp_msg_event_seconds(m) != -1);
		BUG_ON(qmp_msg_event_microseconds(m) != -1);
	} else {
		/* Either both are read or neither is. */
		int64_t s = qmp_msg_event_seconds(m), us = qmp_msg_event_microseconds(m);
		json_t *ts = json_object_get(root, "timestamp");

		if (!json_object_get(ts, "seconds") || !json_object_get(ts, "microseconds"))
			BUG_ON(s != -1 || us != -1);
	}

	/* Greeting. */
	pkg = qmp_msg_greeting_version(m, &major, &minor, &micro);
	caps = qmp_msg_greeting_capabilities(m);
	BUG_ON((kind == QMP_MSG_GREETING) != (pkg != NULL));
	BUG_ON((kind == QMP_MSG_GREETING) != (caps != NULL));
	BUG_ON(!pkg && (major != -7 || minor != -7 || micro != -7));
	BUG_ON(qmp_msg_greeting_version(m, NULL, NULL, NULL) != pkg);
	if (caps) {
		json_t *c;

		BUG_ON(!json_is_array(caps));
		json_array_foreach(caps, i, c) {
			if (json_is_string(c) && strlen(json_string_value(c)) ==
						     json_string_length(c))
				BUG_ON(!qmp_msg_greeting_has_capability(m, json_string_value(c)));
		}
	}
	/* "oob" is what corral would look for. */
	if (!caps)
		BUG_ON(qmp_msg_greeting_has_capability(m, "oob"));
}

static void check_broken(struct qmp_conn *c, int err, const char *text)
{
	struct qmp_msg *m = NULL;

	BUG_ON(err != -EBADMSG && err != -EPROTO && err != -EMSGSIZE);
	BUG_ON(!text || !*text);
	BUG_ON(qmp_conn_next(c, &m) != err);
	BUG_ON(m);
	BUG_ON(qmp_conn_feed(c, "{}\n", 3) != err);
	BUG_ON(qmp_conn_feed(c, "", 0) != err);
	BUG_ON(qmp_conn_next(c, &m) != err);
	BUG_ON(!str_eq(qmp_conn_error(c), text));
}

/*
 * Drain c after a feed.  Returns false once the conn is broken (or a
 * transient -ENOMEM, recorded as oom).
 */
static bool drain(struct qmp_conn *c, struct pass *p)
{
	struct qmp_msg *m;
	int r;

	for (;;) {
		m = NULL;
		r = qmp_conn_next(c, &m);
		if (r == 1) {
			BUG_ON(!m);
			BUG_ON(qmp_conn_error(c));
			check_msg(m);
			pass_push(p, m);
			continue;
		}
		BUG_ON(m);
		if (r == 0) {
			BUG_ON(qmp_conn_error(c));
			/* Asking again changes nothing. */
			BUG_ON(qmp_conn_next(c, &m) != 0);
			return true;
		}
		if (r == -ENOMEM) {
			p->oom = true;
			return false;
		}
		p->end = r;
		p->err = strdup(qmp_conn_error(c) ? qmp_conn_error(c) : "");
		if (!p->err)
			p->oom = true;
		else
			check_broken(c, r, p->err);
		return false;
	}
}

/* Feed buf into c in pieces: whole when rng is NULL. */
static void run_pass(struct qmp_conn *c, const char *buf, size_t size, uint64_t *rng,
		     struct pass *p)
{
	size_t off = 0, max = 0;
	int r;

	if (rng) {
		static const size_t maxes[] = { 1, 2, 7, 64, 512 };
		static const size_t big_maxes[] = { 512, 4096, 65536 };

		if (size <= 8192)
			max = maxes[xorshift(rng) % ARRAY_SIZE(maxes)];
		else
			max = big_maxes[xorshift(rng) % ARRAY_SIZE(big_maxes)];
	}
	while (off < size) {
		size_t n = rng ? xorshift(rng) % (max + 1) : size;

		if (n > size - off)
			n = size - off;
		r = qmp_conn_feed(c, buf + off, n);
		if (r == -ENOMEM) {
			p->oom = true;
			return;
		}
		BUG_ON(r != 0);
		off += n;
		if (!drain(c, p))
			return;
	}
	/* Nothing fed at all (empty input): still drain once. */
	if (size == 0)
		(void)drain(c, p);
}

static void compare_passes(const struct pass *a, const struct pass *b)
{
	if (a->oom || b->oom)
		return;
	BUG_ON(a->n != b->n);
	for (size_t i = 0; i < a->n; i++) {
		BUG_ON(qmp_msg_kind(a->msgs[i]) != qmp_msg_kind(b->msgs[i]));
		BUG_ON(!json_equal(qmp_msg_json(a->msgs[i]), qmp_msg_json(b->msgs[i])));
	}
	BUG_ON(a->end != b->end);
	BUG_ON(!str_eq(a->err, b->err));
}

/*
 * The stream, whole and in pieces, as above.  Returns the conn fed in
 * pieces (the caller frees it), or NULL when out of memory.
 */
static struct qmp_conn *check_stream(const char *buf, size_t size, uint64_t *rng,
				     struct pass *a, struct pass *b)
{
	struct qmp_conn *whole = NULL, *cut = NULL;

	if (qmp_conn_new(&whole) < 0 || qmp_conn_new(&cut) < 0) {
		qmp_conn_free(whole);
		qmp_conn_free(cut);
		return NULL;
	}
	BUG_ON(qmp_conn_error(whole) || qmp_conn_encode_error(whole));
	run_pass(whole, buf, size, NULL, a);
	run_pass(cut, buf, size, rng, b);
	compare_passes(a, b);
	if (a->end && !a->oom)
		check_broken(whole, a->end, a->err);
	qmp_conn_free(whole);
	return cut;
}

/*
 * Now and then, the input repeated to some 72 KiB: the buffer then grows
 * past its first 4 KiB (libFuzzer's inputs stay below that), and past what
 * an idle conn keeps (64 KiB), which is let go once drained.
 */
#define BIG_STREAM (72u * 1024)

static void check_big_stream(const char *buf, size_t size, uint64_t *rng)
{
	struct pass a = { 0 }, b = { 0 };
	size_t reps, i;
	char *big;

	if (size == 0 || xorshift(rng) % 16 != 0)
		return;
	reps = BIG_STREAM / size + 1;
	big = malloc(reps * size);
	if (!big)
		return;
	for (i = 0; i < reps; i++)
		memcpy(big + i * size, buf, size);
	qmp_conn_free(check_stream(big, reps * size, rng, &a, &b));
	pass_free(&a);
	pass_free(&b);
	free(big);
}

/* ---- encoding ----------------------------------------------------------- */

/* Would qmp_conn_encode_raw() accept this parsed text? */
static bool raw_acceptable(const json_t *in)
{
	const char *key;
	json_t *v, *ex, *args;

	if (!json_is_object(in))
		return false;
	json_object_foreach((json_t *)in, key, v) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id"))
			return false;
	}
	ex = json_object_get(in, "execute");
	args = json_object_get(in, "arguments");
	return json_is_string(ex) && json_string_length(ex) > 0 && (!args || json_is_object(args));
}

/*
 * An encoded line: one line, ending in the only newline, NUL-terminated;
 * parses back to {"execute": execute, ["arguments": args,] "id": id}.
 */
static void check_encoded(const char *buf, size_t len, uint64_t id, const char *execute,
			  const json_t *args)
{
	char tail[48];
	json_error_t e;
	json_t *out;
	size_t n;

	BUG_ON(len < 2 || buf[len - 1] != '\n');
	BUG_ON(memchr(buf, '\0', len) || memchr(buf, '\n', len - 1) || memchr(buf, '\r', len));
	BUG_ON(strncmp(buf, "{\"execute\":", 11) != 0);
	n = (size_t)snprintf(tail, sizeof(tail), ",\"id\":%" PRIu64 "}\n", id);
	BUG_ON(len < n || memcmp(buf + len - n, tail, n) != 0);

	out = json_loadb(buf, len - 1, JSON_REJECT_DUPLICATES, &e);
	if (!out) {
		BUG_ON(json_error_code(&e) != json_error_out_of_memory);
		return;
	}
	BUG_ON(!json_is_object(out));
	BUG_ON(json_object_size(out) != (args ? 3u : 2u));
	BUG_ON(!str_eq(json_string_value(json_object_get(out, "execute")), execute));
	BUG_ON(args && !json_equal(json_object_get(out, "arguments"), (json_t *)args));
	BUG_ON(!json_is_integer(json_object_get(out, "id")));
	BUG_ON((uint64_t)json_integer_value(json_object_get(out, "id")) != id);
	json_decref(out);
}

/* Wrapped as a return, an encoded command reads back through a conn. */
static void check_reads_back(const char *buf, size_t len)
{
	static const char head[] = "{\"return\":";
	struct qmp_conn *c = NULL;
	struct qmp_msg *m = NULL;
	json_t *want;
	char *line;
	int r;

	want = json_loadb(buf, len - 1, 0, NULL);
	line = malloc(sizeof(head) - 1 + len + 2);
	if (!want || !line || qmp_conn_new(&c) < 0)
		goto out;
	memcpy(line, head, sizeof(head) - 1);
	memcpy(line + sizeof(head) - 1, buf, len - 1);
	memcpy(line + sizeof(head) - 1 + len - 1, "}\r\n", 3);
	if (qmp_conn_feed(c, line, sizeof(head) - 1 + len + 2) < 0)
		goto out;
	r = qmp_conn_next(c, &m);
	if (r == -ENOMEM)
		goto out;
	BUG_ON(r != 1);
	BUG_ON(qmp_msg_kind(m) != QMP_MSG_RETURN);
	BUG_ON(!json_equal(qmp_msg_return(m), want));
	BUG_ON(qmp_msg_id(m, &(uint64_t){ 0 }));
	BUG_ON(qmp_conn_next(c, &(struct qmp_msg *){ NULL }) != 0);
out:
	qmp_msg_free(m);
	qmp_conn_free(c);
	json_decref(want);
	free(line);
}

/* After an encode call: the id counter and the error text agree with r. */
static void after_encode(struct qmp_conn *c, int r, uint64_t *next_id, uint64_t id)
{
	if (r == 0) {
		BUG_ON(id != *next_id);
		BUG_ON(qmp_conn_encode_error(c));
		(*next_id)++;
	} else {
		BUG_ON(r != -EINVAL && r != -ENOMEM);
		BUG_ON(!qmp_conn_encode_error(c) || !*qmp_conn_encode_error(c));
	}
}

static void check_encoders(struct qmp_conn *c, uint64_t *next_id, const char *text)
{
	json_t *in = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	char *buf = NULL, execute[129];
	uint64_t id = 0;
	size_t len = 0;
	json_t *args;
	int r;

	/* The text as a user's raw command. */
	r = qmp_conn_encode_raw(c, text, &id, &buf, &len);
	after_encode(c, r, next_id, id);
	if (r != -ENOMEM)
		BUG_ON((r == 0) != raw_acceptable(in));
	if (r == 0) {
		check_encoded(buf, len, id, json_string_value(json_object_get(in, "execute")),
			      json_object_get(in, "arguments"));
		check_reads_back(buf, len);
		free(buf);
	}

	/* qmp_capabilities: always the same line but for the id. */
	r = qmp_conn_encode_capabilities(c, &id, &buf, &len);
	after_encode(c, r, next_id, id);
	if (r == 0) {
		char want[64];

		snprintf(want, sizeof(want), "{\"execute\":\"qmp_capabilities\",\"id\":%" PRIu64 "}\n",
			 id);
		BUG_ON(len != strlen(want) || memcmp(buf, want, len) != 0);
		free(buf);
	}

	/*
	 * The text's first line (up to 128 bytes) as a command name, and the
	 * parsed text, whatever it is, as arguments.
	 */
	snprintf(execute, sizeof(execute), "%.*s", (int)strcspn(text, "\n"), text);
	args = in;
	r = qmp_conn_encode_cmd(c, execute, args, &id, &buf, &len);
	after_encode(c, r, next_id, id);
	if (!*execute || (args && !json_is_object(args))) {
		BUG_ON(r != -EINVAL);
	} else if (r == -EINVAL) {
		/* The one other refusal: a name that is not UTF-8. */
		json_t *s = json_string(execute);

		BUG_ON(s);
	}
	if (r == 0) {
		check_encoded(buf, len, id, execute, args);
		free(buf);
	}
	/* args is borrowed: a reference kept or dropped shows as a leak or a UAF. */
	json_decref(in);
}

/* ---- entry points --------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* jansson seeds its hash from /dev/urandom: fix it, runs must repeat. */
	json_object_seed(0x636f7272616cu);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct qmp_conn *whole = NULL, *cut;
	struct pass a = { 0 }, b = { 0 };
	uint64_t rng = fnv1a(data, size) | 1, next_whole = 1, next_cut = 1;
	char *text;

	/* The input as a server's stream, whole and in pieces. */
	cut = check_stream(buf, size, &rng, &a, &b);
	pass_free(&a);
	pass_free(&b);
	if (!cut)
		return 0;
	check_big_stream(buf, size, &rng);

	/* The input, up to its first NUL, as a user's command. */
	text = strndup(buf, size);
	if (text && qmp_conn_new(&whole) == 0) {
		check_encoders(whole, &next_whole, text);
		/* The same on the conn fed in pieces, maybe broken: encoding works there too. */
		check_encoders(cut, &next_cut, text);
		check_encoders(cut, &next_cut, text);
	}
	free(text);
	qmp_conn_free(whole);
	qmp_conn_free(cut);
	return 0;
}

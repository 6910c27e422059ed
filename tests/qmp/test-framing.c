/* SPDX-License-Identifier: MIT */
/*
 * qmp_conn as a parser: framing, message shapes, broken streams.  No
 * socket: bytes are fed by hand, cut every way a read() could cut them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qmp-internal.h"
#include "qmp/qmp.h"

#define GREETING                                                                  \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, " \
	"\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}\r\n"

static struct qmp_conn *conn_new(void)
{
	struct qmp_conn *c = NULL;

	cr_assert_eq(qmp_conn_new(&c), 0);
	cr_assert_not_null(c);
	cr_assert_null(qmp_conn_error(c));
	return c;
}

static void feed(struct qmp_conn *c, const char *s, size_t n)
{
	cr_assert_eq(qmp_conn_feed(c, s, n), 0, "feed: %s", qmp_conn_error(c));
}

static void feed_str(struct qmp_conn *c, const char *s)
{
	feed(c, s, strlen(s));
}

/* The next message, which must be complete already. */
static struct qmp_msg *next(struct qmp_conn *c)
{
	struct qmp_msg *m = NULL;
	int r = qmp_conn_next(c, &m);

	cr_assert_eq(r, 1, "qmp_conn_next: %d (%s)", r, qmp_conn_error(c));
	return m;
}

static void no_next(struct qmp_conn *c)
{
	struct qmp_msg *m = NULL;

	cr_assert_eq(qmp_conn_next(c, &m), 0);
	cr_assert_null(m);
}

static void expect_return_id(struct qmp_msg *m, uint64_t want)
{
	uint64_t id = 0;

	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	cr_assert(qmp_msg_id(m, &id));
	cr_assert_eq(id, want);
}

/* Drain c: the error it broke with, after checking the reason. */
static int expect_broken(struct qmp_conn *c, const char *reason_part)
{
	struct qmp_msg *m = NULL;
	int r = qmp_conn_next(c, &m);

	cr_assert_lt(r, 0);
	cr_assert_null(m);
	cr_assert_not_null(qmp_conn_error(c));
	cr_assert(strstr(qmp_conn_error(c), reason_part), "reason \"%s\" lacks \"%s\"",
		  qmp_conn_error(c), reason_part);
	/* Broken for good: next and feed keep failing the same way. */
	cr_assert_eq(qmp_conn_next(c, &m), r);
	cr_assert_eq(qmp_conn_feed(c, "{\"return\": {}}\n", 15), r);
	cr_assert_eq(qmp_conn_next(c, &m), r);
	return r;
}

static const char three[] =
	GREETING
	"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 1}\r\n"
	"{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, "
	"\"event\": \"STOP\"}\r\n";

static void check_three(struct qmp_msg *m[3])
{
	cr_assert_eq(qmp_msg_kind(m[0]), QMP_MSG_GREETING);
	expect_return_id(m[1], 1);
	cr_assert(json_is_true(json_object_get(qmp_msg_return(m[1]), "running")));
	cr_assert_eq(qmp_msg_kind(m[2]), QMP_MSG_EVENT);
	cr_assert_str_eq(qmp_msg_event_name(m[2]), "STOP");
	for (int i = 0; i < 3; i++)
		qmp_msg_free(m[i]);
}

Test(framing, message_split_at_every_byte_boundary)
{
	size_t len = strlen(three);

	for (size_t cut = 0; cut <= len; cut++) {
		struct qmp_conn *c = conn_new();
		struct qmp_msg *m[3];
		struct qmp_msg *x;
		int n = 0, r;

		feed(c, three, cut);
		while ((r = qmp_conn_next(c, &x)) == 1)
			m[n++] = x;
		cr_assert_eq(r, 0);
		feed(c, three + cut, len - cut);
		while ((r = qmp_conn_next(c, &x)) == 1)
			m[n++] = x;
		cr_assert_eq(r, 0);
		cr_assert_eq(n, 3, "cut at %zu: %d messages", cut, n);
		check_three(m);
		qmp_conn_free(c);
	}
}

Test(framing, one_byte_at_a_time)
{
	struct qmp_conn *c = conn_new();
	size_t len = strlen(three);
	struct qmp_msg *m[3], *x;
	int n = 0;

	for (size_t i = 0; i < len; i++) {
		int before = n;

		feed(c, three + i, 1);
		while (qmp_conn_next(c, &x) == 1)
			m[n++] = x;
		/* A message appears exactly when its newline does. */
		cr_assert_eq(n - before, three[i] == '\n' ? 1 : 0, "byte %zu", i);
	}
	cr_assert_eq(n, 3);
	check_three(m);
	qmp_conn_free(c);
}

Test(framing, many_messages_in_one_feed)
{
	struct qmp_conn *c = conn_new();
	const int count = 5000;
	size_t cap = (size_t)count * 64, len = 0;
	char *buf = malloc(cap);

	cr_assert_not_null(buf);
	for (int i = 1; i <= count; i++)
		len += (size_t)snprintf(buf + len, cap - len, "{\"return\": {}, \"id\": %d}\r\n",
					i);
	feed(c, buf, len);
	for (int i = 1; i <= count; i++) {
		struct qmp_msg *m = next(c);

		expect_return_id(m, (uint64_t)i);
		qmp_msg_free(m);
	}
	no_next(c);
	free(buf);
	qmp_conn_free(c);
}

Test(framing, empty_lines_and_bare_newlines_are_skipped)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;

	feed_str(c, "\r\n\n   \r\n\t\n{\"return\": 5, \"id\": 9}\n\r\n"
		    "{\"return\": [], \"id\": 10}\r\n");
	m = next(c);
	expect_return_id(m, 9);
	cr_assert_eq(json_integer_value(qmp_msg_return(m)), 5);
	qmp_msg_free(m);
	m = next(c);
	expect_return_id(m, 10);
	qmp_msg_free(m);
	no_next(c);
	qmp_conn_free(c);
}

/* {"return": ["xxxx...", ...], "id": 7} of about 1 MiB, newline-terminated */
static char *big_reply(size_t *ret_len, size_t *ret_items)
{
	size_t cap = 1100 * 1024, len = 0, items = 0;
	char *buf = malloc(cap);

	cr_assert_not_null(buf);
	len += (size_t)sprintf(buf, "{\"return\": [");
	while (len < 1024 * 1024) {
		len += (size_t)sprintf(buf + len, "%s\"item-%06zu-%0100d\"", items ? ", " : "",
				       items, 0);
		items++;
	}
	len += (size_t)sprintf(buf + len, "], \"id\": 7}\r\n");
	cr_assert_lt(len, cap);
	*ret_len = len;
	*ret_items = items;
	return buf;
}

Test(framing, large_reply_in_4k_reads_is_linear)
{
	struct qmp_conn *c = conn_new();
	struct qmp_conn_counters k;
	size_t len, items, fed = 0;
	char *buf = big_reply(&len, &items);
	struct qmp_msg *m = NULL;

	/* A small message first, so the big one does not start at byte 0. */
	feed_str(c, "{\"return\": {}, \"id\": 6}\r\n");
	m = next(c);
	qmp_msg_free(m);

	while (fed < len) {
		size_t n = len - fed < 4096 ? len - fed : 4096;

		feed(c, buf + fed, n);
		fed += n;
		if (fed < len)
			no_next(c);
	}
	m = next(c);
	expect_return_id(m, 7);
	cr_assert(json_is_array(qmp_msg_return(m)));
	cr_assert_eq(json_array_size(qmp_msg_return(m)), items);
	qmp_msg_free(m);
	no_next(c);

	/*
	 * No timing: count the work.  A quadratic framer (rescanning or
	 * shifting the whole buffer per read) would touch ~128 GiB here.
	 */
	qmp_conn_get_counters(c, &k);
	cr_assert_eq(k.fed, len + 25);
	cr_assert_leq(k.scanned, 2 * k.fed, "scanned %llu for %llu fed",
		      (unsigned long long)k.scanned, (unsigned long long)k.fed);
	cr_assert_leq(k.moved, k.fed, "moved %llu", (unsigned long long)k.moved);
	cr_assert_leq(k.copied, 2 * k.fed, "copied %llu", (unsigned long long)k.copied);
	free(buf);
	qmp_conn_free(c);
}

Test(framing, line_over_cap_breaks_as_soon_as_it_passes_the_cap)
{
	struct qmp_conn *c = conn_new();
	static char chunk[65536];
	size_t fed = 0;
	int r = 0;

	memset(chunk, 'x', sizeof(chunk));
	/* The first line is 25 bytes and stays buffered: nobody drains. */
	feed_str(c, "{\"return\": {}, \"id\": 1}\r\n{\"return\": \"");
	fed = strlen("{\"return\": \"");
	while (fed < 2u * QMP_MAX_MSG) {
		r = qmp_conn_feed(c, chunk, sizeof(chunk));
		if (r < 0)
			break;
		fed += sizeof(chunk);
	}
	cr_assert_eq(r, -EMSGSIZE);
	/* Refused with the chunk that crossed the cap, not later. */
	cr_assert_lt(fed, QMP_MAX_MSG);
	cr_assert_geq(fed + sizeof(chunk), QMP_MAX_MSG);
	cr_assert(strstr(qmp_conn_error(c), "exceeds 16 MiB cap"), "%s", qmp_conn_error(c));
	cr_assert(strstr(qmp_conn_error(c), "stream offset 25"), "%s", qmp_conn_error(c));
	expect_broken(c, "16 MiB");
	qmp_conn_free(c);
}

Test(framing, complete_line_over_cap_in_one_feed_breaks)
{
	struct qmp_conn *c = conn_new();
	size_t len = QMP_MAX_MSG + 16;
	char *buf = malloc(len);

	cr_assert_not_null(buf);
	memset(buf, ' ', len);
	memcpy(buf, "{\"return\": 1}", 13);
	buf[len - 1] = '\n';
	/* The whole line arrived at once, so only the parser can see its size. */
	cr_assert_eq(qmp_conn_feed(c, buf, len), 0);
	cr_assert_eq(expect_broken(c, "exceeds 16 MiB cap"), -EMSGSIZE);
	free(buf);
	qmp_conn_free(c);
}

Test(framing, line_just_under_cap_is_accepted)
{
	struct qmp_conn *c = conn_new();
	size_t len = QMP_MAX_MSG;
	char *buf = malloc(len);
	struct qmp_msg *m;

	cr_assert_not_null(buf);
	memset(buf, ' ', len);
	memcpy(buf, "{\"return\": 1, \"id\": 3}", 22);
	buf[len - 2] = '\r';
	buf[len - 1] = '\n';
	feed(c, buf, len);
	m = next(c);
	expect_return_id(m, 3);
	qmp_msg_free(m);
	free(buf);
	qmp_conn_free(c);
}

Test(framing, invalid_json_breaks_with_position)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;

	feed_str(c, GREETING "{\"return\": {,}, \"id\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n");
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	cr_assert_eq(expect_broken(c, "invalid JSON at byte"), -EBADMSG);
	cr_assert(strstr(qmp_conn_error(c), "of line 2"), "%s", qmp_conn_error(c));
	qmp_conn_free(c);
}

Test(framing, pretty_printed_output_is_refused_not_misread)
{
	struct qmp_conn *c = conn_new();

	feed_str(c, "{\n    \"return\": {\n    }\n}\n");
	cr_assert_eq(expect_broken(c, "invalid JSON"), -EBADMSG);
	qmp_conn_free(c);
}

Test(framing, unexpected_shapes_break_with_reason)
{
	static const struct {
		const char *line;
		const char *reason;
	} cases[] = {
		{ "{\"foo\": 1}\n", "object has neither return, error, event nor QMP" },
		{ "{}\n", "neither return, error, event nor QMP" },
		{ "[1, 2]\n", "top-level value is an array, not an object" },
		{ "42\n", "top-level value is a number" },
		{ "{\"return\": 1, \"error\": {\"class\": \"a\", \"desc\": \"b\"}}\n",
		  "both \"return\" and \"error\"" },
		{ "{\"error\": \"oops\"}\n", "\"error\" is not an object" },
		{ "{\"error\": {\"class\": \"GenericError\"}}\n", "string \"class\" and \"desc\"" },
		{ "{\"event\": 7}\n", "\"event\" is a number" },
		{ "{\"event\": \"X\", \"data\": [1]}\n", "data of event X is an array" },
		{ "{\"QMP\": 1}\n", "\"QMP\" is a number" },
		{ "{\"QMP\": {\"capabilities\": {}}}\n", "capabilities is an object" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct qmp_conn *c = conn_new();

		feed_str(c, cases[i].line);
		cr_assert_eq(expect_broken(c, cases[i].reason), -EPROTO, "%s", cases[i].line);
		cr_assert(strstr(qmp_conn_error(c), "unexpected message shape"));
		qmp_conn_free(c);
	}
}

Test(framing, events_before_greeting_are_events)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;

	feed_str(c, "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 0}, "
		    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n"
		    "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 1}, "
		    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\r\n" GREETING);
	for (int i = 0; i < 2; i++) {
		m = next(c);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_EVENT);
		cr_assert_str_eq(qmp_msg_event_name(m), "RTC_CHANGE");
		cr_assert_eq(json_integer_value(json_object_get(qmp_msg_event_data(m), "offset")),
			     i);
		qmp_msg_free(m);
	}
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	qmp_conn_free(c);
}

Test(framing, greeting_version_and_capabilities)
{
	struct qmp_conn *c = conn_new();
	int major = -1, minor = -1, micro = -1;
	struct qmp_msg *m;
	uint64_t id;

	feed_str(c, GREETING "{\"QMP\": {}}\n");
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	cr_assert_str_eq(qmp_msg_greeting_version(m, &major, &minor, &micro),
			 "Debian 1:7.2+dfsg-7");
	cr_assert_eq(major, 7);
	cr_assert_eq(minor, 2);
	cr_assert_eq(micro, 22);
	cr_assert(qmp_msg_greeting_has_capability(m, "oob"));
	cr_assert_not(qmp_msg_greeting_has_capability(m, "nope"));
	cr_assert_eq(json_array_size(qmp_msg_greeting_capabilities(m)), 1);
	cr_assert_not(qmp_msg_id(m, &id));
	cr_assert_null(qmp_msg_return(m));
	cr_assert_null(qmp_msg_event_name(m));
	qmp_msg_free(m);

	/* Liberal: a bare greeting still greets, with zeros and no caps. */
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	cr_assert_str_eq(qmp_msg_greeting_version(m, &major, NULL, NULL), "");
	cr_assert_eq(major, 0);
	cr_assert_eq(json_array_size(qmp_msg_greeting_capabilities(m)), 0);
	qmp_msg_free(m);
	qmp_conn_free(c);
}

Test(framing, replies_without_our_kind_of_id_have_no_id)
{
	static const char *const lines[] = {
		"{\"return\": {}}\n",
		"{\"return\": {}, \"id\": \"abc\"}\n",
		"{\"return\": {}, \"id\": -3}\n",
		"{\"return\": {}, \"id\": 1.5}\n",
		"{\"return\": {}, \"id\": 2.0}\n",
		"{\"return\": {}, \"id\": null}\n",
		"{\"return\": {}, \"id\": [1]}\n",
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n",
	};
	struct qmp_conn *c = conn_new();
	uint64_t id = 12345;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		feed_str(c, lines[i]);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct qmp_msg *m = next(c);

		cr_assert_not(qmp_msg_id(m, &id), "%s", lines[i]);
		cr_assert_eq(id, 12345, "ret_id written on failure");
		qmp_msg_free(m);
	}
	feed_str(c, "{\"id\": 0, \"return\": {}}\n");
	{
		struct qmp_msg *m = next(c);

		cr_assert(qmp_msg_id(m, &id));
		cr_assert_eq(id, 0);
		qmp_msg_free(m);
	}
	qmp_conn_free(c);
}

Test(framing, error_reply_has_class_desc_and_id)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;
	uint64_t id = 0;

	feed_str(c, "{\"id\": 42, \"error\": {\"class\": \"CommandNotFound\", "
		    "\"desc\": \"The command nope has not been found\"}}\r\n");
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert(qmp_msg_id(m, &id));
	cr_assert_eq(id, 42);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	cr_assert_str_eq(qmp_msg_error_desc(m), "The command nope has not been found");
	cr_assert_null(qmp_msg_return(m));
	cr_assert_not_null(json_object_get(qmp_msg_json(m), "error"));
	qmp_msg_free(m);
	qmp_conn_free(c);
}

Test(framing, event_timestamps_and_data)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;

	feed_str(c,
		 "{\"timestamp\": {\"seconds\": 1795658678, \"microseconds\": 404664}, "
		 "\"event\": \"SHUTDOWN\", "
		 "\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"
		 "{\"timestamp\": {\"seconds\": -1, \"microseconds\": -1}, \"event\": \"STOP\"}\r\n"
		 "{\"event\": \"RESUME\", \"data\": null}\r\n");
	m = next(c);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_EVENT);
	cr_assert_str_eq(qmp_msg_event_name(m), "SHUTDOWN");
	cr_assert_eq(qmp_msg_event_seconds(m), 1795658678);
	cr_assert_eq(qmp_msg_event_microseconds(m), 404664);
	cr_assert(json_is_true(json_object_get(qmp_msg_event_data(m), "guest")));
	qmp_msg_free(m);

	m = next(c);
	cr_assert_str_eq(qmp_msg_event_name(m), "STOP");
	cr_assert_eq(qmp_msg_event_seconds(m), -1);
	cr_assert_eq(qmp_msg_event_microseconds(m), -1);
	cr_assert_null(qmp_msg_event_data(m));
	qmp_msg_free(m);

	m = next(c);
	cr_assert_str_eq(qmp_msg_event_name(m), "RESUME");
	cr_assert_eq(qmp_msg_event_seconds(m), -1);
	cr_assert_null(qmp_msg_event_data(m));
	qmp_msg_free(m);
	qmp_conn_free(c);
}

Test(framing, integers_beyond_int64_do_not_break_the_stream)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;
	uint64_t id = 0;
	json_t *v;

	feed_str(c, "{\"return\": {\"bytes\": 18446744073709551615}, \"id\": 77}\r\n");
	m = next(c);
	cr_assert(qmp_msg_id(m, &id));
	cr_assert_eq(id, 77);
	v = json_object_get(qmp_msg_return(m), "bytes");
	cr_assert(json_is_real(v));
	cr_assert_gt(json_real_value(v), 1.8e19);
	qmp_msg_free(m);
	qmp_conn_free(c);
}

Test(framing, messages_outlive_their_conn)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;

	feed_str(c, "{\"return\": {\"a\": \"b\"}, \"id\": 1}\n");
	m = next(c);
	qmp_conn_free(c);
	cr_assert_str_eq(json_string_value(json_object_get(qmp_msg_return(m), "a")), "b");
	qmp_msg_free(m);
	qmp_msg_free(NULL);
	qmp_conn_free(NULL);
}

/* A taken return or event data is the caller's alone: it outlives the message. */
Test(framing, taken_values_are_detached_from_the_message)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;
	json_t *ret, *data;

	feed_str(c, "{\"return\": {\"running\": true, \"list\": [1, 2]}, \"id\": 1}\n"
		    "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 7}, "
		    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n");
	m = next(c);
	ret = qmp_msg_take_return(m);
	cr_assert_not_null(ret);
	cr_assert_eq(ret->refcount, 1, "nothing else holds it");
	cr_assert_null(qmp_msg_return(m));
	cr_assert_null(qmp_msg_take_return(m), "taken once");
	cr_assert_null(qmp_msg_take_event_data(m), "not an event");
	qmp_msg_free(m);
	cr_assert(json_is_true(json_object_get(ret, "running")));
	cr_assert_eq(json_array_size(json_object_get(ret, "list")), 2);
	json_decref(ret);

	m = next(c);
	cr_assert_null(qmp_msg_take_return(m), "not a return");
	data = qmp_msg_take_event_data(m);
	cr_assert_eq(data->refcount, 1);
	cr_assert_null(qmp_msg_event_data(m));
	cr_assert_str_eq(qmp_msg_event_name(m), "RTC_CHANGE");
	cr_assert_eq(qmp_msg_event_seconds(m), 1);
	qmp_msg_free(m);
	cr_assert_eq(json_integer_value(json_object_get(data, "offset")), 7);
	json_decref(data);
	qmp_conn_free(c);
}

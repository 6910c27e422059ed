/* SPDX-License-Identifier: MIT */
/* qmp_conn as an encoder: ids, line format, raw passthrough validation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qmp/qmp.h"

static struct qmp_conn *conn_new(void)
{
	struct qmp_conn *c = NULL;

	cr_assert_eq(qmp_conn_new(&c), 0);
	return c;
}

/* One compact line ending in "\n", parsed back. */
static json_t *check_line(const char *buf, size_t len)
{
	json_error_t e;
	json_t *v;

	cr_assert_gt(len, 1);
	cr_assert_eq(strlen(buf), len);
	cr_assert_eq(buf[len - 1], '\n');
	cr_assert_null(memchr(buf, '\n', len - 1), "newline inside \"%s\"", buf);
	cr_assert_null(memchr(buf, '\r', len), "CR in \"%s\"", buf);
	v = json_loadb(buf, len, 0, &e);
	cr_assert_not_null(v, "encoded \"%s\" is not JSON: %s", buf, e.text);
	cr_assert(json_is_object(v));
	return v;
}

Test(encoding, ids_are_unique_and_increasing_across_all_encoders)
{
	struct qmp_conn *c = conn_new();
	uint64_t id, last = 0;
	char *buf;
	size_t len;

	for (int i = 0; i < 300; i++) {
		json_t *v;

		switch (i % 3) {
		case 0:
			cr_assert_eq(qmp_conn_encode_cmd(c, "query-status", NULL, &id, &buf, &len),
				     0);
			break;
		case 1:
			cr_assert_eq(qmp_conn_encode_capabilities(c, &id, &buf, &len), 0);
			break;
		default:
			cr_assert_eq(qmp_conn_encode_raw(c, "{\"execute\": \"stop\"}", &id, &buf,
							 &len), 0);
			break;
		}
		cr_assert_gt(id, last);
		cr_assert_eq(id, last + 1, "ids are consecutive per conn");
		last = id;
		v = check_line(buf, len);
		cr_assert_eq((uint64_t)json_integer_value(json_object_get(v, "id")), id);
		json_decref(v);
		free(buf);
		cr_assert_null(qmp_conn_encode_error(c));
	}
	qmp_conn_free(c);
}

Test(encoding, each_conn_counts_its_own_ids_from_one)
{
	struct qmp_conn *a = conn_new(), *b = conn_new();
	uint64_t id;
	char *buf;
	size_t len;

	cr_assert_eq(qmp_conn_encode_capabilities(a, &id, &buf, &len), 0);
	cr_assert_eq(id, 1);
	free(buf);
	cr_assert_eq(qmp_conn_encode_capabilities(a, &id, &buf, &len), 0);
	cr_assert_eq(id, 2);
	free(buf);
	cr_assert_eq(qmp_conn_encode_capabilities(b, &id, &buf, &len), 0);
	cr_assert_eq(id, 1);
	free(buf);
	qmp_conn_free(a);
	qmp_conn_free(b);
}

Test(encoding, command_line_has_execute_arguments_and_id)
{
	struct qmp_conn *c = conn_new();
	json_t *args = json_pack("{s:s,s:b,s:s}", "device", "disk0", "force", 1, "nl", "a\nb");
	json_t *v;
	uint64_t id;
	char *buf;
	size_t len;

	cr_assert_eq(qmp_conn_encode_cmd(c, "eject", args, &id, &buf, &len), 0);
	/* Borrowed: the caller's reference is untouched. */
	cr_assert_eq(args->refcount, 1);
	v = check_line(buf, len);
	cr_assert_str_eq(json_string_value(json_object_get(v, "execute")), "eject");
	cr_assert(json_equal(json_object_get(v, "arguments"), args));
	cr_assert_eq(json_object_size(v), 3);
	/* Compact, execute first: what a human reading a trace expects. */
	cr_assert_eq(strncmp(buf, "{\"execute\":\"eject\",\"arguments\":{", 32), 0, "%s", buf);
	json_decref(v);
	free(buf);

	cr_assert_eq(qmp_conn_encode_capabilities(c, &id, &buf, &len), 0);
	cr_assert_str_eq(buf, "{\"execute\":\"qmp_capabilities\",\"id\":2}\n");
	free(buf);
	json_decref(args);
	qmp_conn_free(c);
}

/* Lines of every length around the encoder's stack buffer come out whole. */
Test(encoding, long_and_short_lines_are_whole)
{
	struct qmp_conn *c = conn_new();
	char val[1200];

	for (size_t n = 0; n < sizeof(val) - 1; n += 7) {
		json_t *args, *v;
		uint64_t id;
		char *buf;
		size_t len;

		memset(val, 'x', n);
		val[n] = '\0';
		args = json_pack("{s:s}", "v", val);
		cr_assert_eq(qmp_conn_encode_cmd(c, "echo", args, &id, &buf, &len), 0);
		cr_assert_eq(strlen(buf), len);
		v = check_line(buf, len);
		cr_assert(json_equal(json_object_get(v, "arguments"), args), "length %zu", n);
		cr_assert_eq(json_integer_value(json_object_get(v, "id")), (json_int_t)id);
		json_decref(v);
		json_decref(args);
		free(buf);
	}
	qmp_conn_free(c);
}

/*
 * A plain command name is printed around jansson's print of the arguments:
 * the line must be the one jansson prints for the whole command; a name
 * that needs escaping goes through jansson whole.
 */
Test(encoding, printed_line_is_jansson_s_for_the_whole_command)
{
	struct qmp_conn *c = conn_new();
	json_t *args = json_pack("{s:s, s:{s:[i, f, n]}, s:s}", "device", "disk0", "opts", "l",
				 -1, 0.5, "q", "\"quoted\"\t\u00e9");

	for (int i = 1; i <= 120; i++) {
		const char *name = i % 3 == 0 ? "we\"ird name" : "block_set-io";
		json_t *a = i % 2 ? args : NULL, *want;
		uint64_t id;
		char *buf, *exp;
		size_t len;

		cr_assert_eq(qmp_conn_encode_cmd(c, name, a, &id, &buf, &len), 0);
		cr_assert_eq(id, (uint64_t)i);
		want = a ? json_pack("{s:s, s:O, s:I}", "execute", name, "arguments", a, "id",
				     (json_int_t)id) :
			   json_pack("{s:s, s:I}", "execute", name, "id", (json_int_t)id);
		exp = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
		cr_assert_eq(len, strlen(exp) + 1);
		cr_assert_eq(memcmp(buf, exp, len - 1), 0, "got %s want %s", buf, exp);
		cr_assert_eq(buf[len - 1], '\n');
		cr_assert_eq(buf[len], '\0');
		free(exp);
		json_decref(want);
		free(buf);
	}
	json_decref(args);
	qmp_conn_free(c);
}

Test(encoding, bad_cmd_is_refused_without_using_an_id)
{
	struct qmp_conn *c = conn_new();
	json_t *arr = json_array();
	uint64_t id = 99;
	char *buf = NULL;
	size_t len = 0;

	cr_assert_eq(qmp_conn_encode_cmd(c, "stop", arr, &id, &buf, &len), -EINVAL);
	cr_assert(strstr(qmp_conn_encode_error(c), "must be an object"));
	cr_assert_eq(qmp_conn_encode_cmd(c, "", NULL, &id, &buf, &len), -EINVAL);
	cr_assert(strstr(qmp_conn_encode_error(c), "empty"));
	cr_assert_eq(qmp_conn_encode_cmd(c, "bad\xff", NULL, &id, &buf, &len), -EINVAL);
	cr_assert_eq(id, 99);
	cr_assert_null(buf);
	cr_assert_eq(len, 0);

	cr_assert_eq(qmp_conn_encode_cmd(c, "stop", NULL, &id, &buf, &len), 0);
	cr_assert_eq(id, 1);
	cr_assert_null(qmp_conn_encode_error(c));
	free(buf);
	json_decref(arr);
	qmp_conn_free(c);
}

Test(encoding, raw_passthrough_replaces_the_users_id)
{
	struct qmp_conn *c = conn_new();
	json_t *v;
	uint64_t id;
	char *buf;
	size_t len;

	cr_assert_eq(qmp_conn_encode_raw(c,
					 "  {\"id\": \"mine\", \"arguments\": {\"value\": 1024},\n"
					 "   \"execute\": \"balloon\"}  ",
					 &id, &buf, &len), 0);
	cr_assert_eq(id, 1);
	v = check_line(buf, len);
	cr_assert_str_eq(json_string_value(json_object_get(v, "execute")), "balloon");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(v, "arguments"),
							"value")), 1024);
	cr_assert_eq(json_integer_value(json_object_get(v, "id")), 1);
	cr_assert_str_eq(buf,
			 "{\"execute\":\"balloon\",\"arguments\":{\"value\":1024},\"id\":1}\n");
	json_decref(v);
	free(buf);
	qmp_conn_free(c);
}

Test(encoding, raw_passthrough_validation)
{
	static const struct {
		const char *text;
		const char *reason;
	} cases[] = {
		{ "", "invalid JSON" },
		{ "{\"execute\": ", "invalid JSON at byte" },
		{ "{\"execute\": \"stop\"} {}", "invalid JSON" },
		{ "[\"stop\"]", "must be a JSON object, not an array" },
		{ "\"stop\"", "must be a JSON object, not a string" },
		{ "{}", "missing member \"execute\"" },
		{ "{\"arguments\": {}}", "missing member \"execute\"" },
		{ "{\"execute\": 3}", "\"execute\" must be a non-empty string, not a number" },
		{ "{\"execute\": \"\"}", "non-empty string" },
		{ "{\"execute\": \"stop\", \"arguments\": []}", "\"arguments\" must be an object" },
		{ "{\"execute\": \"stop\", \"arguments\": null}",
		  "\"arguments\" must be an object" },
		{ "{\"execute\": \"stop\", \"control\": {}}", "unexpected member \"control\"" },
		{ "{\"exec-oob\": \"migrate-pause\"}", "unexpected member \"exec-oob\"" },
		{ "{\"execute\": \"stop\", \"execute\": \"cont\"}", "duplicate" },
	};
	struct qmp_conn *c = conn_new();
	uint64_t id = 7;
	char *buf = NULL;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(qmp_conn_encode_raw(c, cases[i].text, &id, &buf, &len), -EINVAL,
			     "accepted %s", cases[i].text);
		cr_assert_not_null(qmp_conn_encode_error(c));
		cr_assert(strstr(qmp_conn_encode_error(c), cases[i].reason),
			  "for %s: reason \"%s\" lacks \"%s\"", cases[i].text,
			  qmp_conn_encode_error(c), cases[i].reason);
	}
	cr_assert_eq(id, 7);
	cr_assert_null(buf);
	cr_assert_eq(len, 0);
	/* Refusals use no id and do not hurt the stream. */
	cr_assert_null(qmp_conn_error(c));
	cr_assert_eq(qmp_conn_encode_raw(c, "{\"execute\":\"cont\"}", &id, &buf, &len), 0);
	cr_assert_eq(id, 1);
	free(buf);
	qmp_conn_free(c);
}

Test(encoding, encoding_works_on_a_broken_stream)
{
	struct qmp_conn *c = conn_new();
	struct qmp_msg *m;
	uint64_t id;
	char *buf;
	size_t len;

	cr_assert_eq(qmp_conn_feed(c, "nope\n", 5), 0);
	cr_assert_eq(qmp_conn_next(c, &m), -EBADMSG);
	cr_assert_eq(qmp_conn_encode_cmd(c, "quit", NULL, &id, &buf, &len), 0);
	free(buf);
	qmp_conn_free(c);
}

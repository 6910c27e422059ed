/* SPDX-License-Identifier: MIT */
/*
 * corrald end to end through its sockets: the API table, define / list /
 * info / undefine, the read-only socket, events, and hostile clients
 * (truncated, garbage, oversize and deep frames, wrong types, a client that
 * never reads, one that leaves with requests in flight, a thousand at once).
 * Each test starts its own daemon.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "rpc/json-conv.h"

static struct dt_daemon dd;

static void start(void)
{
	dt_start(&dd, NULL);
}

/*
 * Each test also stops its daemon as its last step: an assertion in a fini
 * is printed but does not fail the test, and corrald must exit 0.  This
 * one cleans up after a test that failed before.
 */
static void stop(void)
{
	dt_stop(&dd);
}

TestSuite(e2e, .init = start, .fini = stop, .timeout = 120);
/* Tests that start the daemon themselves, with their own flags. */
TestSuite(e2e_own, .fini = stop, .timeout = 120);

/* The daemon still answers a fresh client. */
static void assert_serving(void)
{
	struct dt_client c;
	json_t *r;

	dt_connect(&c, dd.rw);
	r = dt_call_ok(&c, "daemon.info", NULL);
	cr_assert(json_is_integer(json_object_get(r, "pid")));
	json_decref(r);
	dt_close(&c);
}

static uint64_t connections(void)
{
	struct dt_client c;
	json_t *r;
	uint64_t n;

	dt_connect(&c, dd.rw);
	r = dt_call_ok(&c, "daemon.info", NULL);
	n = (uint64_t)json_integer_value(json_object_get(r, "connections"));
	json_decref(r);
	dt_close(&c);
	return n;       /* this client included */
}

Test(e2e, api_info_lists_every_method)
{
	static const char *const expect[] = {
		"api.info", "daemon.info", "list", "stats", "info", "define", "undefine", "autostart",
		"start", "shutdown", "destroy", "suspend", "resume", "reset", "reboot", "qmp",
		"attach", "attach-disk", "detach-disk", "attach-nic", "detach-nic", "save", "restore",
		"events.subscribe", "console.attach", "console.write", "console.history",
		"console.detach",
		"events.unsubscribe",
	};
	struct dt_client c;
	json_t *r, *methods, *m;
	size_t i;

	dt_connect(&c, dd.rw);
	r = dt_call_ok(&c, "api.info", NULL);
	methods = json_object_get(r, "methods");
	cr_assert_eq(json_array_size(methods), sizeof(expect) / sizeof(expect[0]));
	for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++) {
		bool found = false;

		json_array_foreach(methods, i, m)
			if (!strcmp(json_string_value(json_object_get(m, "name")), expect[k]))
				found = true;
		cr_assert(found, "api.info does not list %s", expect[k]);
	}
	cr_assert_eq(json_array_size(json_object_get(r, "errors")), RPC_ERR_MAX);
	json_decref(r);
	dt_close(&c);
	dt_stop(&dd);
}

Test(e2e, define_list_info_undefine)
{
	struct dt_client c;
	json_t *r, *e;
	const char *uuid;

	dt_connect(&c, dd.rw);
	r = dt_call_ok(&c, "define", "{\"config\": {\"name\": \"web1\", \"machine\": \"none\"}}");
	cr_assert_str_eq(json_string_value(json_object_get(r, "name")), "web1");
	uuid = json_string_value(json_object_get(r, "uuid"));
	cr_assert_eq(strlen(uuid), 36);
	e = json_incref(json_object_get(r, "uuid"));
	json_decref(r);
	/* Again: the definition is replaced (for the next start), the UUID kept. */
	r = dt_call_ok(&c, "define", "{\"config\": {\"name\": \"web1\", \"machine\": \"none\"}}");
	cr_assert(json_equal(json_object_get(r, "uuid"), e));
	json_decref(r);
	/* Another name with web1's UUID: taken. */
	{
		char params[200];

		snprintf(params, sizeof(params), "{\"config\": {\"name\": \"web2\", \"uuid\": "
			 "\"%s\"}}", json_string_value(e));
		dt_call_err(&c, "define", params, RPC_ERR_EXISTS, "UUID");
	}

	r = dt_call_ok(&c, "list", NULL);
	cr_assert_eq(json_array_size(r), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "name")), "web1");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "state")),
			 "shutoff");
	cr_assert(json_is_null(json_object_get(json_array_get(r, 0), "job")));
	json_decref(r);
	r = dt_call_ok(&c, "list", "{\"state\": \"running\"}");
	cr_assert_eq(json_array_size(r), 0);
	json_decref(r);
	dt_call_err(&c, "list", "{\"state\": \"sleepy\"}", RPC_ERR_INVALID_ARGUMENT, "sleepy");

	r = dt_call_ok(&c, "info", "{\"name\": \"web1\"}");
	cr_assert(json_equal(json_object_get(r, "uuid"), e));
	cr_assert_str_eq(json_string_value(json_object_get(r, "state")), "shutoff");
	cr_assert_eq(json_integer_value(json_object_get(r, "pid")), 0);
	cr_assert(json_is_null(json_object_get(r, "job")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "config"),
							   "machine")), "none");
	cr_assert(json_is_object(json_object_get(r, "counters")));
	cr_assert(json_is_real(json_object_get(r, "updated")));
	json_decref(r);
	json_decref(e);

	r = dt_call_ok(&c, "undefine", "{\"name\": \"web1\"}");
	json_decref(r);
	dt_call_err(&c, "info", "{\"name\": \"web1\"}", RPC_ERR_NO_SUCH_DOMAIN,
		    "no such domain 'web1'");
	dt_call_err(&c, "undefine", "{\"name\": \"web1\"}", RPC_ERR_NO_SUCH_DOMAIN, NULL);
	r = dt_call_ok(&c, "list", NULL);
	cr_assert_eq(json_array_size(r), 0);
	json_decref(r);
	dt_close(&c);
	dt_stop(&dd);
}

Test(e2e, bad_config_says_which_field)
{
	struct dt_client c;

	dt_connect(&c, dd.rw);
	dt_call_err(&c, "define", "{\"config\": {\"name\": \"a\", \"memory\": true}}",
		    RPC_ERR_INVALID_ARGUMENT, "memory");
	dt_call_err(&c, "define", "{\"config\": {\"name\": \"a\", \"bogus\": 1}}",
		    RPC_ERR_INVALID_ARGUMENT, "bogus");
	dt_call_err(&c, "define", "{\"config\": 5}", RPC_ERR_INVALID_ARGUMENT,
		    "param 'config' must be a map, got int");
	dt_call_err(&c, "define", "{}", RPC_ERR_INVALID_ARGUMENT, "missing param 'config'");
	dt_close(&c);
	dt_stop(&dd);
}

Test(e2e, hostile_domain_names_refused)
{
	static const char *const bad[] = {
		"\"../etc\"", "\"a/b\"", "\"\"", "\"-x\"", "\".hidden\"", "\"a b\"",
		"\"x\\ny\"", "\"caf\\u00e9\"", "\"a;rm -rf /\"", "\"$(reboot)\"",
		"\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
	};
	struct dt_client c;
	char params[256];
	json_t *r;

	dt_connect(&c, dd.rw);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(params, sizeof(params), "{\"config\": {\"name\": %s}}", bad[i]);
		dt_call_err(&c, "define", params, RPC_ERR_INVALID_ARGUMENT, "name");
		snprintf(params, sizeof(params), "{\"name\": %s}", bad[i]);
		dt_call_err(&c, "info", params, RPC_ERR_INVALID_ARGUMENT, "invalid domain name");
	}
	r = dt_call_ok(&c, "list", NULL);
	cr_assert_eq(json_array_size(r), 0);
	json_decref(r);
	dt_close(&c);
	dt_stop(&dd);
}

Test(e2e, wrong_types_and_unknown_methods)
{
	/* [0, 5, "list", "x"]: params not an array */
	static const unsigned char params_str[] = { 0x94, 0x00, 0x05, 0xa4, 'l', 'i', 's', 't',
						    0xa1, 'x' };
	/* [0, 6, "info", [5]]: params[0] not a map */
	static const unsigned char params_int[] = { 0x94, 0x00, 0x06, 0xa4, 'i', 'n', 'f', 'o',
						    0x91, 0x05 };
	/* [0, 7, 42, []]: method not a str */
	static const unsigned char method_int[] = { 0x94, 0x00, 0x07, 0x2a, 0x90 };
	/* [2, "whatever", []] and [1, 3, nil, nil]: ignored */
	static const unsigned char notif[] = { 0x93, 0x02, 0xa8, 'w', 'h', 'a', 't', 'e', 'v',
					       'e', 'r', 0x90, 0x94, 0x01, 0x03, 0xc0, 0xc0 };
	struct dt_client c;
	struct rpc_msg *m;
	int64_t code;
	const char *text;
	size_t len;

	dt_connect(&c, dd.rw);
	dt_call_err(&c, "info", "{\"name\": 5}", RPC_ERR_INVALID_ARGUMENT,
		    "param 'name' must be a string, got int");
	dt_call_err(&c, "info", "{}", RPC_ERR_INVALID_ARGUMENT, "missing param 'name'");
	dt_call_err(&c, "info", "{\"name\": \"a\", \"nmae\": \"b\"}", RPC_ERR_INVALID_ARGUMENT,
		    "unknown param 'nmae'");
	dt_call_err(&c, "info", "{\"name\": \"a\", \"timeout_ms\": -1}", RPC_ERR_INVALID_ARGUMENT,
		    "timeout_ms");
	dt_call_err(&c, "start", "{\"name\": \"a\", \"timeout_ms\": 0}", RPC_ERR_INVALID_ARGUMENT,
		    "timeout_ms");
	dt_call_err(&c, "events.unsubscribe", "{\"subscription\": \"one\"}",
		    RPC_ERR_INVALID_ARGUMENT, "must be an unsigned integer, got str");
	dt_call_err(&c, "frobnicate", NULL, RPC_ERR_METHOD_NOT_FOUND, "no method 'frobnicate'");

	dt_send_raw(&c, notif, sizeof(notif));
	dt_send_raw(&c, params_str, sizeof(params_str));
	dt_send_raw(&c, params_int, sizeof(params_int));
	dt_send_raw(&c, method_int, sizeof(method_int));
	for (uint32_t id = 5; id <= 7; id++) {
		m = dt_expect_response(&c);
		cr_assert_eq(rpc_msg_id(m), id);
		cr_assert_eq(rpc_error_parse(rpc_msg_error(m), &code, &text, &len), 0);
		cr_assert_eq(code, id == 6 ? RPC_ERR_INVALID_ARGUMENT : RPC_ERR_INVALID_REQUEST,
			     "msgid %u: code %d: %.*s", id, (int)code, (int)len, text);
		rpc_msg_free(m);
	}
	/* Still in sync. */
	json_decref(dt_call_ok(&c, "list", NULL));
	dt_close(&c);
	dt_stop(&dd);
}

Test(e2e, truncated_message_then_close)
{
	struct dt_client c;
	/* [0, 1, "list", [ ... and no more */
	static const unsigned char part[] = { 0x94, 0x00, 0x01, 0xa4, 'l', 'i', 's', 't', 0x91 };

	dt_connect(&c, dd.rw);
	dt_send_raw(&c, part, sizeof(part));
	cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS), "the daemon kept a half-closed client");
	dt_close(&c);
	assert_serving();
	dt_stop(&dd);
}

Test(e2e, garbage_closes_only_that_connection)
{
	static const unsigned char garbage[] = { 0xc1, 0xde, 0xad, 0xbe, 0xef };
	static const unsigned char scalar[] = { 0x05 };         /* valid msgpack, not a message */
	struct dt_client c, other;

	dt_connect(&other, dd.rw);
	dt_connect(&c, dd.rw);
	dt_send_raw(&c, garbage, sizeof(garbage));
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS));
	dt_close(&c);
	dt_connect(&c, dd.rw);
	dt_send_raw(&c, scalar, sizeof(scalar));
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS));
	dt_close(&c);
	json_decref(dt_call_ok(&other, "list", NULL));
	dt_close(&other);
	dt_stop(&dd);
}

Test(e2e, oversize_claims_refused)
{
	/* An array claiming 2^31 elements: refused at once, no msgid to answer. */
	static const unsigned char huge_array[] = { 0xdd, 0x80, 0x00, 0x00, 0x00, 0x00 };
	/* [0, 7, "define", [{"config": <str32 claiming 100 MiB>... */
	static const unsigned char huge_str[] = {
		0x94, 0x00, 0x07, 0xa6, 'd', 'e', 'f', 'i', 'n', 'e', 0x91, 0x81,
		0xa6, 'c', 'o', 'n', 'f', 'i', 'g', 0xdb, 0x06, 0x40, 0x00, 0x00, 'x', 'x',
	};
	struct dt_client c, other;
	struct rpc_msg *m;
	int64_t code;
	const char *text;
	size_t len;

	dt_connect(&other, dd.rw);
	dt_connect(&c, dd.rw);
	dt_send_raw(&c, huge_array, sizeof(huge_array));
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS));
	dt_close(&c);

	dt_connect(&c, dd.rw);
	dt_send_raw(&c, huge_str, sizeof(huge_str));
	cr_assert_eq(dt_recv(&c, &m, DT_WAIT_MS), 1);
	cr_assert_eq(rpc_msg_id(m), 7);
	cr_assert_eq(rpc_error_parse(rpc_msg_error(m), &code, &text, &len), 0);
	cr_assert_eq(code, RPC_ERR_INVALID_REQUEST);
	rpc_msg_free(m);
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS));
	dt_close(&c);

	json_decref(dt_call_ok(&other, "daemon.info", NULL));
	dt_close(&other);
	dt_stop(&dd);
}

Test(e2e, deep_nesting_refused)
{
	/* [0, 9, "define", [{"config": [[[[... 100 deep */
	unsigned char buf[256];
	size_t n = 0;
	struct dt_client c, other;
	struct rpc_msg *m;
	int64_t code;
	const char *text;
	size_t len;
	static const unsigned char head[] = { 0x94, 0x00, 0x09, 0xa6, 'd', 'e', 'f', 'i', 'n',
					      'e', 0x91, 0x81, 0xa6, 'c', 'o', 'n', 'f', 'i',
					      'g' };

	memcpy(buf, head, sizeof(head));
	n = sizeof(head);
	for (int i = 0; i < 100; i++)
		buf[n++] = 0x91;
	buf[n++] = 0xc0;
	dt_connect(&other, dd.rw);
	dt_connect(&c, dd.rw);
	dt_send_raw(&c, buf, n);
	cr_assert_eq(dt_recv(&c, &m, DT_WAIT_MS), 1);
	cr_assert_eq(rpc_msg_id(m), 9);
	cr_assert_eq(rpc_error_parse(rpc_msg_error(m), &code, &text, &len), 0);
	cr_assert_eq(code, RPC_ERR_INVALID_REQUEST);
	cr_assert(memmem(text, len, "deep", 4), "%.*s", (int)len, text);
	rpc_msg_free(m);
	cr_assert(dt_wait_closed(&c, DT_WAIT_MS));
	dt_close(&c);
	json_decref(dt_call_ok(&other, "list", NULL));
	dt_close(&other);
	dt_stop(&dd);
}

Test(e2e, read_only_socket)
{
	struct dt_client ro, rw;
	json_t *r;

	dt_connect(&rw, dd.rw);
	json_decref(dt_call_ok(&rw, "define", "{\"config\": {\"name\": \"vm1\"}}"));
	dt_connect(&ro, dd.ro);
	dt_call_err(&ro, "define", "{\"config\": {\"name\": \"vm2\"}}", RPC_ERR_PERMISSION,
		    "method 'define' is not allowed on the read-only socket");
	dt_call_err(&ro, "start", "{\"name\": \"vm1\"}", RPC_ERR_PERMISSION,
		    "method 'start' is not allowed on the read-only socket");
	dt_call_err(&ro, "undefine", "{\"name\": \"vm1\"}", RPC_ERR_PERMISSION, NULL);
	dt_call_err(&ro, "qmp", "{\"name\": \"vm1\", \"command\": \"{}\"}", RPC_ERR_PERMISSION,
		    NULL);
	r = dt_call_ok(&ro, "list", NULL);
	cr_assert_eq(json_array_size(r), 1);
	json_decref(r);
	json_decref(dt_call_ok(&ro, "info", "{\"name\": \"vm1\"}"));
	json_decref(dt_call_ok(&ro, "api.info", NULL));
	json_decref(dt_call_ok(&ro, "daemon.info", NULL));
	json_decref(dt_call_ok(&ro, "events.subscribe", NULL));
	dt_close(&ro);
	dt_close(&rw);
	dt_stop(&dd);
}

Test(e2e, events_reach_subscribers)
{
	struct dt_client sub, rw;
	struct rpc_msg *m;
	json_t *r, *ev;
	char err[256];
	int got = 0;

	dt_connect(&sub, dd.ro);
	r = dt_call_ok(&sub, "events.subscribe", "{\"name\": \"evt1\"}");
	cr_assert(json_integer_value(json_object_get(r, "subscription")) > 0);
	json_decref(r);
	dt_connect(&rw, dd.rw);
	json_decref(dt_call_ok(&rw, "define", "{\"config\": {\"name\": \"other\"}}"));
	json_decref(dt_call_ok(&rw, "define", "{\"config\": {\"name\": \"evt1\"}}"));
	json_decref(dt_call_ok(&rw, "undefine", "{\"name\": \"evt1\"}"));
	while (got < 2) {
		const msgpack_object *p;

		cr_assert_eq(dt_recv(&sub, &m, DT_WAIT_MS), 1, "events did not arrive");
		cr_assert_eq(rpc_msg_type(m), RPC_NOTIFICATION);
		cr_assert_str_eq(rpc_msg_method(m), "event");
		p = rpc_msg_params(m);
		cr_assert_eq(p->via.array.size, 1);
		cr_assert_eq(rpc_obj_to_json(&p->via.array.ptr[0], "event", &ev, err, sizeof(err)),
			     0, "%s", err);
		cr_assert_str_eq(json_string_value(json_object_get(ev, "domain")), "evt1");
		cr_assert_str_eq(json_string_value(json_object_get(ev, "event")),
				 got == 0 ? "defined" : "undefined");
		cr_assert(json_is_real(json_object_get(ev, "timestamp")));
		json_decref(ev);
		rpc_msg_free(m);
		got++;
	}
	r = dt_call_ok(&sub, "events.unsubscribe", "{\"subscription\": 1}");
	json_decref(r);
	dt_call_err(&sub, "events.unsubscribe", "{\"subscription\": 1}",
		    RPC_ERR_INVALID_ARGUMENT, "no subscription 1");
	dt_close(&rw);
	dt_close(&sub);
	dt_stop(&dd);
}

Test(e2e, pipelined_requests_all_answered)
{
	struct dt_client c;
	struct rpc_msg *m;
	bool seen[201] = { false };

	dt_connect(&c, dd.rw);
	for (int i = 0; i < 100; i++) {
		dt_send(&c, "daemon.info", NULL);
		dt_send(&c, "info", "{\"name\": \"nope\"}");
	}
	for (int i = 0; i < 200; i++) {
		m = dt_expect_response(&c);
		cr_assert(rpc_msg_id(m) >= 1 && rpc_msg_id(m) <= 200);
		cr_assert(!seen[rpc_msg_id(m)]);
		seen[rpc_msg_id(m)] = true;
		cr_assert_eq(rpc_msg_error(m) != NULL, rpc_msg_id(m) % 2 == 0);
		rpc_msg_free(m);
	}
	dt_close(&c);
	dt_stop(&dd);
}

/*
 * A client that writes 10,000 requests with big answers and never reads:
 * the daemon stops reading from it past its output cap, stays responsive
 * to others, and closes it once it stays over the cap (1 s here).
 */
Test(e2e_own, client_that_never_reads)
{
	static const char *const extra[] = { "--client-stall-timeout-ms", "1000", NULL };
	struct dt_client hog, other;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t off = 0;
	int sent = 0;
	uint64_t n = 0;

	dt_start(&dd, extra);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (uint32_t i = 0; i < 10000; i++) {
		rpc_pack_request_begin(&pk, i, "api.info");
		msgpack_pack_array(&pk, 0);
	}
	dt_connect(&hog, dd.rw);
	fcntl(hog.fd, F_SETFL, O_NONBLOCK);
	/* Write until done or the daemon stops reading (no progress for 2 s). */
	while (off < sb.size) {
		struct pollfd pfd = { .fd = hog.fd, .events = POLLOUT };
		ssize_t w;

		if (poll(&pfd, 1, 2000) <= 0)
			break;
		w = send(hog.fd, sb.data + off, sb.size - off, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	sent = (int)(off / (sb.size / 10000));
	msgpack_sbuffer_destroy(&sb);
	cr_log_info("the hog wrote about %d requests before the daemon stopped reading", sent);

	dt_connect(&other, dd.rw);
	for (int i = 0; i < 20; i++)
		json_decref(dt_call_ok(&other, "list", NULL));
	/* The hog is closed once it stayed over the cap for a second. */
	for (int i = 0; i < 3000; i++) {
		json_t *r = dt_call_ok(&other, "daemon.info", NULL);

		n = (uint64_t)json_integer_value(json_object_get(r, "connections"));
		json_decref(r);
		if (n == 1)
			break;
		usleep(10000);
	}
	cr_assert_eq(n, 1, "the client that never reads was not closed");
	dt_close(&hog);
	dt_close(&other);
	dt_stop(&dd);
}

Test(e2e, a_thousand_clients_at_once)
{
	enum { N = 1000 };
	static struct dt_client c[N];
	struct rpc_msg *m;

	dt_raise_nofile(N + 64);
	for (int i = 0; i < N; i++)
		dt_connect(&c[i], i % 2 ? dd.ro : dd.rw);
	for (int i = 0; i < N; i++)
		dt_send(&c[i], "daemon.info", NULL);
	for (int i = 0; i < N; i++) {
		m = dt_expect_response(&c[i]);
		cr_assert_null(rpc_msg_error(m));
		rpc_msg_free(m);
	}
	cr_assert_eq(connections(), N + 1);
	for (int i = 0; i < N; i++)
		dt_close(&c[i]);
	assert_serving();
	dt_stop(&dd);
}

Test(e2e, disconnect_with_requests_in_flight)
{
	struct dt_client c;
	char params[64];

	dt_connect(&c, dd.rw);
	for (int i = 0; i < 20; i++) {
		snprintf(params, sizeof(params), "{\"config\": {\"name\": \"d%d\"}}", i);
		json_decref(dt_call_ok(&c, "define", params));
	}
	/* Jobs (these fail fast: the domains are shut off) and queries, unread. */
	for (int i = 0; i < 2000; i++) {
		snprintf(params, sizeof(params), "{\"name\": \"d%d\"}", i % 20);
		dt_send(&c, i % 3 ? "suspend" : "info", params);
	}
	dt_close(&c);
	for (int i = 0; i < 3000 && connections() != 1; i++)
		usleep(10000);
	cr_assert_eq(connections(), 1);
	assert_serving();
	dt_stop(&dd);
}

Test(e2e_own, second_daemon_refused_and_stale_socket_removed)
{
	char cmd[1024];
	int status;

	dt_start(&dd, NULL);
	/* A second daemon on the same socket must refuse to start... */
	snprintf(cmd, sizeof(cmd), "%s --socket %s --ro-socket %s/ro2.sock --state-dir %s/s2 "
		 "--runtime-dir %s/r2 2>/dev/null", getenv("CORRALD"), dd.rw, dd.dir, dd.dir,
		 dd.dir);
	cr_assert_neq(system(cmd), 0, "a second daemon started on a busy socket");
	/* ... and so must one on the same runtime directory (pid file lock). */
	snprintf(cmd, sizeof(cmd), "%s --socket %s/rw3.sock --ro-socket %s/ro3.sock "
		 "--state-dir %s/s3 --runtime-dir %s/run 2>/dev/null", getenv("CORRALD"),
		 dd.dir, dd.dir, dd.dir, dd.dir);
	cr_assert_neq(system(cmd), 0, "a second daemon started on a busy runtime dir");
	assert_serving();

	/* Killed hard, it leaves stale sockets behind: the next start removes them. */
	kill(dd.pid, SIGKILL);
	waitpid(dd.pid, &status, 0);
	cr_assert_eq(access(dd.rw, F_OK), 0, "no stale socket to test with");
	dt_start(&dd, NULL);    /* same directory */
	assert_serving();
	dt_stop(&dd);
}

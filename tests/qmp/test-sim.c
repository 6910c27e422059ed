/* SPDX-License-Identifier: MIT */
/*
 * qmp_conn against corral-qmp-sim, and the simulator's knobs.
 *
 * Meson passes the simulator's path in $CORRAL_QMP_SIM.  Each test starts
 * its own simulator in a temp dir (the fini stops it) and waits for its
 * "ready N" line, so no test depends on how fast it starts.  Waits are
 * bounded by TH_WAIT_MS; the only short waits assert that something does
 * NOT arrive, which no scheduling delay can make fail.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "qmp/qmp.h"
#include "tests/qmp/helpers.h"

/* Long enough that a reply, if one were coming, would be here. */
#define ABSENCE_MS 300

static char dir[256];
static pid_t sim = -1;
static int sim_out = -1;

/* Start the simulator with count endpoints and extra args (NULL-ended). */
static void sim_start(unsigned count, ...)
{
	const char *bin = getenv("CORRAL_QMP_SIM");
	char count_arg[16], ready[32];
	char *argv[32];
	int argc = 0;
	va_list ap;

	cr_assert(bin && *bin, "CORRAL_QMP_SIM is not set (run through meson test)");
	th_mkdtemp(dir, sizeof(dir));
	snprintf(count_arg, sizeof(count_arg), "%u", count);
	argv[argc++] = (char *)bin;
	argv[argc++] = "--dir";
	argv[argc++] = dir;
	argv[argc++] = "--count";
	argv[argc++] = count_arg;
	va_start(ap, count);
	for (char *a; (a = va_arg(ap, char *));) {
		cr_assert_lt(argc, 31);
		argv[argc++] = a;
	}
	va_end(ap);
	argv[argc] = NULL;
	sim = th_spawn(argv, &sim_out);
	snprintf(ready, sizeof(ready), "ready %u\n", count);
	th_wait_line(sim_out, ready);
}

static void sim_path(char *buf, size_t len, const char *prefix, unsigned i)
{
	snprintf(buf, len, "%s/%s%u.qmp", dir, prefix, i);
}

static void open_ep(struct th_peer *p, unsigned i)
{
	char path[512];

	sim_path(path, sizeof(path), "vm", i);
	th_peer_open(p, path, TH_WAIT_MS);
}

static void sim_fini(void)
{
	if (sim > 0)
		th_kill_wait(sim, SIGKILL);
	sim = -1;
	if (sim_out >= 0)
		close(sim_out);
	sim_out = -1;
	th_rmdir(dir);
}

TestSuite(sim, .fini = sim_fini, .timeout = 120);

static void expect_nothing(struct th_peer *p)
{
	struct qmp_msg *m = NULL;
	int r = th_next(p, &m, ABSENCE_MS);

	cr_assert_eq(r, 0, "expected silence, got %d (%s)", r,
		     m ? json_dumps(qmp_msg_json(m), 0) : "no message");
}

static void expect_event(struct th_peer *p, const char *name)
{
	struct qmp_msg *m = th_expect(p);

	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_EVENT, "expected event %s", name);
	cr_assert_str_eq(qmp_msg_event_name(m), name);
	cr_assert_gt(qmp_msg_event_seconds(m), 0);
	qmp_msg_free(m);
}

static void expect_return(struct th_peer *p, uint64_t id)
{
	struct qmp_msg *m = th_expect(p);
	uint64_t got;

	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	cr_assert(qmp_msg_id(m, &got));
	cr_assert_eq(got, id);
	qmp_msg_free(m);
}

static const char *status_of(struct th_peer *p)
{
	static char status[32];
	struct qmp_msg *m = th_call(p, "query-status", NULL);
	json_t *ret = qmp_msg_return(m);

	cr_assert_not_null(ret);
	snprintf(status, sizeof(status), "%s", json_string_value(json_object_get(ret, "status")));
	cr_assert_eq(json_is_true(json_object_get(ret, "running")), !strcmp(status, "running"));
	qmp_msg_free(m);
	return status;
}

Test(sim, three_endpoints_greet_negotiate_and_answer)
{
	struct th_peer p[3];
	struct stat st;
	char path[512];

	sim_start(3, NULL);
	for (unsigned i = 0; i < 3; i++) {
		struct qmp_msg *m;
		int major = 0, minor = 0;
		char name[16];

		sim_path(path, sizeof(path), "vm", i);
		cr_assert_eq(stat(path, &st), 0);
		cr_assert(S_ISSOCK(st.st_mode));
		cr_assert_eq(st.st_mode & 0777, 0600);

		open_ep(&p[i], i);
		m = th_expect(&p[i]);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
		cr_assert_str_eq(qmp_msg_greeting_version(m, &major, &minor, NULL),
				 "corral-qmp-sim");
		cr_assert_eq(major, 7);
		cr_assert(qmp_msg_greeting_has_capability(m, "oob"));
		qmp_msg_free(m);

		m = th_call(&p[i], "qmp_capabilities", NULL);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
		qmp_msg_free(m);
		cr_assert_str_eq(status_of(&p[i]), "running");

		m = th_call(&p[i], "query-name", NULL);
		snprintf(name, sizeof(name), "vm%u", i);
		cr_assert_str_eq(json_string_value(json_object_get(qmp_msg_return(m), "name")),
				 name);
		qmp_msg_free(m);
	}
	for (unsigned i = 0; i < 3; i++)
		th_peer_close(&p[i]);
}

Test(sim, like_qemu_before_and_after_negotiation)
{
	struct th_peer p;
	struct qmp_msg *m;

	sim_start(1, NULL);
	open_ep(&p, 0);
	qmp_msg_free(th_expect(&p));

	m = th_call(&p, "query-status", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	cr_assert_str_eq(qmp_msg_error_desc(m),
			 "Expecting capabilities negotiation with 'qmp_capabilities'");
	qmp_msg_free(m);

	m = th_call(&p, "qmp_capabilities", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	qmp_msg_free(m);
	m = th_call(&p, "qmp_capabilities", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	qmp_msg_free(m);

	m = th_call(&p, "frobnicate", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	cr_assert_str_eq(qmp_msg_error_desc(m), "The command frobnicate has not been found");
	qmp_msg_free(m);

	{
		json_t *args = json_pack("{s:i}", "x", 1);

		m = th_call(&p, "stop", args);
		json_decref(args);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
		cr_assert_str_eq(qmp_msg_error_desc(m), "Parameter 'x' is unexpected");
		qmp_msg_free(m);
	}

	/* Malformed input gets QEMU's GenericError, without an id. */
	th_send_raw(&p, "[1]\n");
	m = th_expect(&p);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_desc(m), "QMP input must be a JSON object");
	cr_assert_not(qmp_msg_id(m, &(uint64_t){ 0 }));
	qmp_msg_free(m);
	th_peer_close(&p);
}

Test(sim, stop_cont_reset_emit_events_before_the_return)
{
	struct th_peer p;
	uint64_t id;

	sim_start(1, NULL);
	open_ep(&p, 0);
	th_handshake(&p);

	id = th_send_cmd(&p, "stop", NULL);
	expect_event(&p, "STOP");
	expect_return(&p, id);
	cr_assert_str_eq(status_of(&p), "paused");

	/* Already paused: no second STOP, as in QEMU. */
	id = th_send_cmd(&p, "stop", NULL);
	expect_return(&p, id);

	id = th_send_cmd(&p, "cont", NULL);
	expect_event(&p, "RESUME");
	expect_return(&p, id);
	cr_assert_str_eq(status_of(&p), "running");

	id = th_send_cmd(&p, "system_reset", NULL);
	expect_event(&p, "RESET");
	expect_return(&p, id);
	th_peer_close(&p);
}

Test(sim, powerdown_shuts_down_and_closes)
{
	struct th_peer p;
	struct qmp_msg *m;
	uint64_t id;

	sim_start(1, NULL);
	open_ep(&p, 0);
	th_handshake(&p);
	id = th_send_cmd(&p, "system_powerdown", NULL);
	expect_event(&p, "POWERDOWN");
	expect_return(&p, id);
	m = th_expect(&p);
	cr_assert_str_eq(qmp_msg_event_name(m), "SHUTDOWN");
	cr_assert(json_is_true(json_object_get(qmp_msg_event_data(m), "guest")));
	cr_assert_str_eq(json_string_value(json_object_get(qmp_msg_event_data(m), "reason")),
			 "guest-shutdown");
	qmp_msg_free(m);
	cr_assert_eq(th_next(&p, &m, TH_WAIT_MS), -EPIPE);
	th_peer_close(&p);

	/* The endpoint comes back as a fresh VM. */
	open_ep(&p, 0);
	th_handshake(&p);
	cr_assert_str_eq(status_of(&p), "running");
	th_peer_close(&p);
}

Test(sim, garbage_breaks_the_parser_with_a_reason)
{
	struct th_peer p;
	struct qmp_msg *m = NULL;

	sim_start(1, "--garbage", NULL);
	open_ep(&p, 0);
	m = th_expect(&p);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	th_send_cmd(&p, "qmp_capabilities", NULL);
	cr_assert_eq(th_next(&p, &m, TH_WAIT_MS), -EBADMSG);
	cr_assert(strstr(qmp_conn_error(p.c), "invalid JSON at byte"), "%s",
		  qmp_conn_error(p.c));
	th_peer_close(&p);
}

Test(sim, per_endpoint_faults)
{
	struct th_peer p;
	struct qmp_msg *m = NULL;

	/* vm1: garbage greeting; vm2 and vm4 (%2 from 2 on): hang; others fine. */
	sim_start(5, "--fault", "1:garbage=greeting", "--fault", "%2:hang",
		  "--fault", "0:hang=none", NULL);

	open_ep(&p, 0);
	th_handshake(&p);
	cr_assert_str_eq(status_of(&p), "running");
	th_peer_close(&p);

	open_ep(&p, 1);
	cr_assert_eq(th_next(&p, &m, TH_WAIT_MS), -EBADMSG);
	th_peer_close(&p);

	open_ep(&p, 2);
	qmp_msg_free(th_expect(&p));
	th_send_cmd(&p, "qmp_capabilities", NULL);
	expect_nothing(&p);
	th_peer_close(&p);

	open_ep(&p, 3);
	th_handshake(&p);
	th_peer_close(&p);
}

Test(sim, bad_options_are_refused)
{
	const char *bin = getenv("CORRAL_QMP_SIM");
	char *const bad[][6] = {
		{ (char *)bin, "--count", "1", NULL },
		{ (char *)bin, "--dir", "/tmp", "--count", "0", NULL },
		{ (char *)bin, "--dir", "/tmp", "--hang", "sometimes", NULL },
		{ (char *)bin, "--dir", "/tmp", "--fault", "x:hang", NULL },
		{ (char *)bin, "--dir", "/tmp", "--fault", "1:nope=3", NULL },
	};

	cr_assert(bin && *bin);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pid_t pid = th_spawn(bad[i], NULL);
		int status = th_kill_wait(pid, 0);

		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "case %zu: status %#x",
			  i, status);
	}
}

Test(sim, hang_always_answers_nothing)
{
	struct th_peer p;
	struct qmp_msg *m;

	sim_start(1, "--hang", "always", NULL);
	open_ep(&p, 0);
	m = th_expect(&p);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	th_send_cmd(&p, "qmp_capabilities", NULL);
	expect_nothing(&p);
	th_peer_close(&p);
}

Test(sim, hang_after_caps_answers_only_negotiation)
{
	struct th_peer p;

	sim_start(1, "--hang", "after-caps", NULL);
	open_ep(&p, 0);
	th_handshake(&p);
	th_send_cmd(&p, "query-status", NULL);
	expect_nothing(&p);
	th_peer_close(&p);
}

Test(sim, events_before_greeting_parse_as_events)
{
	struct th_peer p;
	struct qmp_msg *m;

	sim_start(1, "--events-before-greeting", "3", NULL);
	open_ep(&p, 0);
	for (int i = 0; i < 3; i++) {
		m = th_expect(&p);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_EVENT);
		cr_assert_str_eq(qmp_msg_event_name(m), "RTC_CHANGE");
		cr_assert_eq(json_integer_value(json_object_get(qmp_msg_event_data(m), "offset")),
			     i);
		qmp_msg_free(m);
	}
	m = th_expect(&p);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	th_peer_close(&p);
}

Test(sim, disconnect_after_k_commands)
{
	struct th_peer p;
	struct qmp_msg *m;

	sim_start(1, "--disconnect-after", "2", NULL);
	open_ep(&p, 0);
	th_handshake(&p);
	cr_assert_str_eq(status_of(&p), "running");
	cr_assert_eq(th_next(&p, &m, TH_WAIT_MS), -EPIPE);
	th_peer_close(&p);
}

Test(sim, delayed_replies_are_not_early_and_stay_in_order)
{
	struct th_peer p;
	uint64_t t0, ids[3];

	sim_start(1, "--delay-ms", "200", NULL);
	open_ep(&p, 0);
	qmp_msg_free(th_expect(&p));
	t0 = now_ns();
	ids[0] = th_send_cmd(&p, "qmp_capabilities", NULL);
	ids[1] = th_send_cmd(&p, "query-name", NULL);
	ids[2] = th_send_cmd(&p, "query-version", NULL);
	for (int i = 0; i < 3; i++)
		expect_return(&p, ids[i]);
	/* A lower bound only: timers never fire early, however loaded the box. */
	cr_assert_geq(now_ns() - t0, 200 * NSEC_PER_MSEC);
	th_peer_close(&p);
}

Test(sim, event_storm_after_negotiation)
{
	struct th_peer p;

	sim_start(1, "--event-storm", "200", NULL);
	open_ep(&p, 0);
	th_handshake(&p);
	for (int i = 0; i < 20; i++) {
		struct qmp_msg *m = th_expect(&p);

		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_EVENT);
		cr_assert_str_eq(qmp_msg_event_name(m), "RTC_CHANGE");
		cr_assert_eq(json_integer_value(json_object_get(qmp_msg_event_data(m), "offset")),
			     i);
		qmp_msg_free(m);
	}
	th_peer_close(&p);
}

Test(sim, one_client_at_a_time_like_qemu)
{
	struct th_peer a, b;
	struct qmp_msg *m;

	sim_start(1, NULL);
	open_ep(&a, 0);
	qmp_msg_free(th_expect(&a));
	/* The second connect lands in the backlog: no greeting yet. */
	open_ep(&b, 0);
	expect_nothing(&b);
	th_peer_close(&a);
	m = th_expect(&b);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	qmp_msg_free(m);
	th_peer_close(&b);
}

Test(sim, thousands_of_endpoints_in_one_process)
{
	const unsigned n = 1500;
	struct th_peer *p = calloc(n, sizeof(*p));

	cr_assert_not_null(p);
	/* The simulator inherits our limit and needs 2n, we need n. */
	if (th_raise_nofile() < 2 * n + 64)
		cr_skip_test("RLIMIT_NOFILE hard limit below %u", 2 * n + 64);
	sim_start(n, NULL);
	/* All connected at once: the simulator holds 2n descriptors. */
	for (unsigned i = 0; i < n; i++)
		open_ep(&p[i], i);
	for (unsigned i = 0; i < n; i++) {
		struct qmp_msg *m = NULL;

		cr_assert_eq(th_next(&p[i], &m, TH_WAIT_MS), 1, "no greeting from vm%u", i);
		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
		qmp_msg_free(m);
	}
	{
		struct qmp_msg *m = th_call(&p[n - 1], "qmp_capabilities", NULL);

		cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
		qmp_msg_free(m);
	}
	for (unsigned i = 0; i < n; i++)
		th_peer_close(&p[i]);
	free(p);
}

Test(sim, sigterm_removes_the_sockets)
{
	char path[512];
	struct stat st;
	int status;

	sim_start(2, "--prefix", "guest", NULL);
	sim_path(path, sizeof(path), "guest", 1);
	cr_assert_eq(stat(path, &st), 0);
	status = th_kill_wait(sim, SIGTERM);
	sim = -1;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	cr_assert_neq(stat(path, &st), 0);
	sim_path(path, sizeof(path), "guest", 0);
	cr_assert_neq(stat(path, &st), 0);
}

/* --fault-on-usr1: nothing changes until SIGUSR1, then the live connections too. */
Test(sim, faults_on_usr1_strike_live_connections)
{
	struct th_peer a, b, c;
	struct qmp_msg *m;

	sim_start(3, "--fault-on-usr1", "0:hang=after-caps", "--fault-on-usr1",
		  "1:disconnect-after=1", NULL);
	open_ep(&a, 0);
	open_ep(&b, 1);
	open_ep(&c, 2);
	th_handshake(&a);
	th_handshake(&b);
	th_handshake(&c);
	cr_assert_str_eq(status_of(&a), "running");
	cr_assert_str_eq(status_of(&b), "running");
	kill(sim, SIGUSR1);
	th_wait_line(sim_out, "faulted 2\n");
	/* 0 hangs at once, 1 has answered more than one command: closed. */
	th_send_cmd(&a, "query-status", NULL);
	expect_nothing(&a);
	cr_assert_eq(th_next(&b, &m, TH_WAIT_MS), -EPIPE);
	/* 2 was not selected. */
	cr_assert_str_eq(status_of(&c), "running");
	th_peer_close(&a);
	th_peer_close(&b);
	th_peer_close(&c);
}

Test(sim, fault_on_usr1_is_checked_at_start)
{
	{
		const char *bin = getenv("CORRAL_QMP_SIM");
		char *argv[] = { (char *)bin, "--dir", "/tmp/x-never", "--count", "1",
				 "--fault-on-usr1", "0:hang=sometimes", NULL };
		int out;
		pid_t p = th_spawn(argv, &out);
		int status;

		waitpid(p, &status, 0);
		close(out);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2);
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * qmp_conn against a real QEMU: the reference the simulator imitates.
 *
 * Each test starts its own qemu-system-x86_64 with "-machine none" (no
 * guest, no KVM needed), paused (-S: no RESUME of its own start-up races
 * the test's first commands) and its monitor on a socketpair, and kills it
 * in the fini; the child also has PR_SET_PDEATHSIG, so no QEMU outlives a
 * crashed test.  $CORRAL_QEMU names the binary (meson passes the one it
 * found); without one the tests are skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp/qmp.h"
#include "tests/qmp/helpers.h"

static pid_t qemu = -1;
static struct th_peer peer = { .fd = -1 };

/*
 * QEMU gets its monitor as one end of a connected socketpair
 * (-chardev socket,fd=N), as corrald hands it: the connection exists
 * before the monitor does, so QEMU greets exactly once.  A client that
 * connects to a listening QMP socket while QEMU is still starting may
 * instead be greeted twice (once more when the monitor moves to its own
 * thread) or see an event first; that is not how corrald talks
 * to QEMU, so these tests do not depend on it.
 */
static void qemu_start(void)
{
	const char *bin = getenv("CORRAL_QEMU");
	char chardev[64];
	int sv[2];

	if (!bin || !*bin)
		bin = "qemu-system-x86_64";
	/* QEMU's end is inherited (no CLOEXEC); the test's end is not. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0, "socketpair: %s",
		     strerror(errno));
	cr_assert_eq(fcntl(sv[0], F_SETFD, FD_CLOEXEC), 0);
	snprintf(chardev, sizeof(chardev), "socket,id=qmp0,fd=%d", sv[1]);
	{
		char *const argv[] = {
			(char *)bin, "-machine", "none", "-nodefaults", "-display", "none",
			"-chardev", chardev, "-mon", "chardev=qmp0,mode=control", "-S", NULL,
		};

		qemu = th_spawn(argv, NULL);
	}
	close(sv[1]);
	th_peer_adopt(&peer, sv[0]);
}

static void qemu_stop(void)
{
	th_peer_close(&peer);
	if (qemu > 0)
		th_kill_wait(qemu, SIGKILL);
	qemu = -1;
}

static void skip_without_qemu(void)
{
	const char *bin = getenv("CORRAL_QEMU");

	if (bin && *bin && access(bin, X_OK) != 0)
		cr_skip_test("CORRAL_QEMU=%s is not executable", bin);
	if ((!bin || !*bin) && system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0)
		cr_skip_test("qemu-system-x86_64 not found");
}

static void setup(void)
{
	skip_without_qemu();
	qemu_start();
}

TestSuite(qemu, .init = setup, .fini = qemu_stop, .timeout = 120);

Test(qemu, greeting_then_capabilities_then_query_status)
{
	struct qmp_msg *m = th_expect_greeting(&peer);
	int major = 0, minor = 0;
	json_t *ret;

	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_GREETING);
	cr_assert_not_null(qmp_msg_greeting_version(m, &major, &minor, NULL));
	cr_assert_geq(major, 2);
	cr_assert(qmp_msg_greeting_has_capability(m, "oob"));
	qmp_msg_free(m);

	m = th_call(&peer, "qmp_capabilities", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	cr_assert(json_is_object(qmp_msg_return(m)));
	qmp_msg_free(m);

	m = th_call(&peer, "query-status", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	ret = qmp_msg_return(m);
	cr_assert(json_is_string(json_object_get(ret, "status")));
	cr_assert(json_is_boolean(json_object_get(ret, "running")));
	qmp_msg_free(m);
}

Test(qemu, command_before_capabilities_is_command_not_found)
{
	struct qmp_msg *m = th_expect_greeting(&peer);

	qmp_msg_free(m);
	m = th_call(&peer, "query-status", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	qmp_msg_free(m);
}

Test(qemu, query_qmp_schema_is_large_and_parses)
{
	struct qmp_msg *m;
	char *text;
	size_t len;

	th_handshake(&peer);
	m = th_call(&peer, "query-qmp-schema", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	cr_assert(json_is_array(qmp_msg_return(m)));
	cr_assert_gt(json_array_size(qmp_msg_return(m)), 100);
	text = json_dumps(qmp_msg_json(m), JSON_COMPACT);
	cr_assert_not_null(text);
	len = strlen(text);
	cr_assert_gt(len, 100 * 1024, "schema only %zu bytes", len);
	free(text);
	qmp_msg_free(m);

	/* The stream is still in step after the big reply. */
	m = th_call(&peer, "query-version", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	qmp_msg_free(m);
}

Test(qemu, unknown_command_is_command_not_found)
{
	struct qmp_msg *m;

	th_handshake(&peer);
	m = th_call(&peer, "corral-no-such-command", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_ERROR);
	cr_assert_str_eq(qmp_msg_error_class(m), "CommandNotFound");
	cr_assert(strstr(qmp_msg_error_desc(m), "corral-no-such-command"));
	qmp_msg_free(m);
}

Test(qemu, raw_passthrough_round_trip)
{
	struct qmp_msg *m;
	uint64_t id, got;
	char *buf;
	size_t len;

	th_handshake(&peer);
	cr_assert_eq(qmp_conn_encode_raw(peer.c, "{\"execute\": \"query-name\", \"id\": \"x\"}",
					 &id, &buf, &len), 0);
	th_send_raw(&peer, buf);
	free(buf);
	m = th_expect(&peer);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN);
	cr_assert(qmp_msg_id(m, &got));
	cr_assert_eq(got, id);
	qmp_msg_free(m);
}

/* Send execute; wait for both its reply and the event it must emit. */
static void call_expect_event(const char *execute, const char *event)
{
	bool saw_event = false, saw_reply = false;
	uint64_t id = th_send_cmd(&peer, execute, NULL), got;

	while (!saw_event || !saw_reply) {
		struct qmp_msg *m = th_expect(&peer);

		if (qmp_msg_kind(m) == QMP_MSG_EVENT && !strcmp(qmp_msg_event_name(m), event)) {
			saw_event = true;
			cr_assert_gt(qmp_msg_event_seconds(m), 0);
			cr_assert_geq(qmp_msg_event_microseconds(m), 0);
			cr_assert_lt(qmp_msg_event_microseconds(m), 1000000);
		} else if (qmp_msg_kind(m) == QMP_MSG_RETURN || qmp_msg_kind(m) == QMP_MSG_ERROR) {
			cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN, "%s: %s", execute,
				     qmp_msg_error_desc(m));
			cr_assert(qmp_msg_id(m, &got));
			cr_assert_eq(got, id);
			saw_reply = true;
		}
		qmp_msg_free(m);
	}
}

Test(qemu, stop_emits_stop_event)
{
	th_handshake(&peer);
	call_expect_event("cont", "RESUME");
	call_expect_event("stop", "STOP");

	{
		struct qmp_msg *m = th_call(&peer, "query-status", NULL);

		cr_assert_str_eq(json_string_value(json_object_get(qmp_msg_return(m), "status")),
				 "paused");
		cr_assert(json_is_false(json_object_get(qmp_msg_return(m), "running")));
		qmp_msg_free(m);
	}
}

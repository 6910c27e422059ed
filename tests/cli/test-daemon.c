/* SPDX-License-Identifier: MIT */
/*
 * corral against the real corrald: each test starts its own daemon on a
 * private socket and state directory, and drives it only through the CLI.
 *
 * These tests need daemon/corrald in the build: without it they fail and
 * say so, rather than pass without having run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static char *dir, *sock, *sock_env;
static const char *env[2];
static pid_t daemon_pid;

/* Can we connect to sock yet? */
static bool listening(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	cr_assert(fd >= 0);
	strcpy(sa.sun_path, sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void setup(void)
{
	const char *corrald = getenv("CORRAL_DAEMON_EXE");
	char *state, *run, *log;
	struct timespec tick = { 0, 10 * 1000000 };
	int i, status;

	cr_assert(corrald && *corrald,
		  "corrald is not in this build: tests/cli needs daemon/meson.build to define "
		  "corrald_exe (these tests fail rather than skip without it)");
	dir = make_tmpdir();
	sock = path_in(dir, "corral.sock");
	state = path_in(dir, "state");
	run = path_in(dir, "run");
	log = path_in(dir, "corrald.log");
	cr_assert(asprintf(&sock_env, "CORRAL_SOCKET=%s", sock) > 0);
	env[0] = sock_env;

	daemon_pid = fork();
	cr_assert(daemon_pid >= 0);
	if (daemon_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execl(corrald, corrald, "--socket", sock, "--state-dir", state, "--runtime-dir",
		      run, (char *)NULL);
		_exit(127);
	}
	/* Up to 10 s for it to listen; it usually takes milliseconds. */
	for (i = 0; i < 1000 && !listening(); i++) {
		cr_assert_eq(waitpid(daemon_pid, &status, WNOHANG), 0,
			     "corrald exited at start; its log: %s", slurp(log));
		nanosleep(&tick, NULL);
	}
	cr_assert(listening(), "corrald did not listen within 10 s; its log: %s", slurp(log));
	free(state);
	free(run);
	free(log);
}

static void teardown(void)
{
	int i, status = 0;
	struct timespec tick = { 0, 10 * 1000000 };

	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		for (i = 0; i < 1000 && waitpid(daemon_pid, &status, WNOHANG) == 0; i++)
			nanosleep(&tick, NULL);
		if (i == 1000) {
			kill(daemon_pid, SIGKILL);
			waitpid(daemon_pid, &status, 0);
		}
	}
	remove_tree(dir);
	free(sock_env);
	free(sock);
	free(dir);
}

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 120);

#define CALL(r, ...) RUN_ENV((r), env, __VA_ARGS__)

/* `corral --format json info NAME`, parsed. */
static json_t *info(const char *name)
{
	struct run r;
	json_t *j;

	CALL(&r, "--format", "json", "info", name);
	cr_assert_eq(r.status, 0, "info %s: exit %d: %s", name, r.status, r.err);
	j = parse_json(r.out);
	run_free(&r);
	return j;
}

Test(daemon, define_list_info_undefine)
{
	static const char *const keys[] = { "name", "uuid", "state", "reason", "pid", "job",
					    "monitor", "autostart" };
	struct run r;
	json_t *j;
	size_t i;

	CALL(&r, "define", "cli-t1", "--machine", "none", "--accel", "tcg", "--memory", "64M");
	cr_assert_eq(r.status, 0, "define: exit %d: %s", r.status, r.err);
	cr_expect(!strncmp(r.out, "Domain cli-t1 defined (uuid ", 28), "%s", r.out);
	run_free(&r);

	CALL(&r, "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(!strncmp(r.out, "NAME", 4), "%s", r.out);
	cr_expect(strstr(r.out, "\ncli-t1 "), "list lacks cli-t1: %s", r.out);
	cr_expect(strstr(r.out, " none "), "list shows no monitor state: %s", r.out);
	run_free(&r);

	/* list's monitor has info's shape: {state, since_s}. */
	CALL(&r, "--format", "json", "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	for (i = 0; i < json_array_size(j); i++) {
		json_t *mon = json_object_get(json_array_get(j, i), "monitor");

		cr_expect(json_is_string(json_object_get(mon, "state")) &&
			  json_is_number(json_object_get(mon, "since_s")), "list's monitor: %s",
			  r.out);
	}
	json_decref(j);
	run_free(&r);

	j = info("cli-t1");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_expect(json_object_get(j, keys[i]), "info lacks '%s'", keys[i]);
	cr_expect_str_eq(json_string_value(json_object_get(j, "name")), "cli-t1");
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "shutoff");
	cr_expect(json_is_null(json_object_get(j, "job")));
	cr_expect(json_is_object(json_object_get(j, "monitor")));
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "config"), "memory")),
		     64);
	cr_expect(json_is_false(json_object_get(j, "autostart")));
	json_decref(j);

	CALL(&r, "autostart", "cli-t1");
	cr_expect_eq(r.status, 0, "autostart: exit %d: %s", r.status, r.err);
	cr_expect_str_eq(r.out, "Domain cli-t1: autostart enabled.\n");
	run_free(&r);
	CALL(&r, "info", "cli-t1");
	cr_expect(strstr(r.out, "\nautostart:") && strstr(strstr(r.out, "\nautostart:"), "true"),
		  "%s", r.out);
	run_free(&r);

	/* The same name again replaces the definition for the next start, mark kept. */
	CALL(&r, "define", "cli-t1", "--machine", "none", "--memory", "96M");
	cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	run_free(&r);
	j = info("cli-t1");
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "config"), "memory")),
		     96);
	cr_expect(json_is_true(json_object_get(j, "autostart")));
	json_decref(j);

	CALL(&r, "autostart", "cli-t1", "--disable");
	cr_expect_eq(r.status, 0, "autostart --disable: exit %d: %s", r.status, r.err);
	cr_expect_str_eq(r.out, "Domain cli-t1: autostart disabled.\n");
	run_free(&r);

	CALL(&r, "undefine", "cli-t1");
	cr_expect_eq(r.status, 0, "undefine: exit %d: %s", r.status, r.err);
	run_free(&r);

	CALL(&r, "info", "cli-t1");
	cr_expect_eq(r.status, 3, "info after undefine: exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "no-such-domain"), "%s", r.err);
	run_free(&r);

	CALL(&r, "--format", "json", "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect(json_is_array(j) && json_array_size(j) == 0, "%s", r.out);
	json_decref(j);
	run_free(&r);
}

Test(daemon, errors_from_the_daemon)
{
	json_t *j, *e;
	struct run r;

	CALL(&r, "start", "nosuch");
	cr_expect_eq(r.status, 3, "exit %d: %s", r.status, r.err);
	run_free(&r);

	CALL(&r, "--format", "json", "destroy", "nosuch");
	cr_expect_eq(r.status, 3, "exit %d: %s", r.status, r.err);
	j = parse_json(r.err);
	e = json_object_get(j, "error");
	cr_expect_eq(json_integer_value(json_object_get(e, "code")), 4);
	cr_expect_str_eq(json_string_value(json_object_get(e, "name")), "no-such-domain");
	json_decref(j);
	run_free(&r);

	/* corrald checks the config too: none has no room for a kernel. */
	CALL(&r, "define", "cli-t2", "--machine", "none", "--kernel", "/boot/vmlinuz");
	cr_expect_eq(r.status, 1, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "invalid-argument"), "%s", r.err);
	run_free(&r);
}

Test(daemon, daemon_info)
{
	struct run r;
	json_t *j;

	CALL(&r, "--format", "json", "daemon-info");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect_eq(json_integer_value(json_object_get(j, "pid")), daemon_pid);
	cr_expect(json_is_string(json_object_get(j, "version")));
	json_decref(j);
	run_free(&r);
}

Test(daemon, events_stream_until_sigint)
{
	char *out = path_in(dir, "out"), *text, name[32];
	struct run r;
	pid_t pid;
	int i;

	pid = spawn_cli(dir, env, (const char *const[]){ "events", NULL }, -1);
	/*
	 * The subscription is made at some point after the start: define and
	 * undefine domains until one of them is seen (each makes events).
	 */
	for (i = 0; i < 200 && !wait_contains(out, " defined ", 1, 50); i++) {
		snprintf(name, sizeof(name), "cli-ev%d", i);
		CALL(&r, "define", name, "--machine", "none");
		cr_assert_eq(r.status, 0, "%s", r.err);
		run_free(&r);
		CALL(&r, "undefine", name);
		cr_assert_eq(r.status, 0, "%s", r.err);
		run_free(&r);
	}
	cr_assert(wait_contains(out, " defined ", 1, 10000), "no event came: %s", slurp(out));
	kill(pid, SIGINT);
	cr_expect_eq(wait_cli(pid), 0);
	text = slurp(out);
	cr_expect(strstr(text, "  cli-ev"), "%s", text);
	free(text);
	free(out);
}

Test(daemon, start_and_destroy_a_vm)
{
	const char *qemu = getenv("CORRAL_QEMU");
	struct run r;
	json_t *j;

	if (!qemu || !*qemu)
		cr_skip_test("no qemu-system-x86_64 in this build's PATH");
	CALL(&r, "define", "cli-vm", "--machine", "none", "--accel", "tcg", "--emulator", qemu);
	cr_assert_eq(r.status, 0, "%s", r.err);
	run_free(&r);

	CALL(&r, "start", "cli-vm", "--wait", "--timeout", "30");
	cr_assert_eq(r.status, 0, "start --wait: exit %d: %s", r.status, r.err);
	cr_expect_str_eq(r.out, "Domain cli-vm started (running).\n");
	run_free(&r);

	j = info("cli-vm");
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "running");
	cr_expect_gt(json_integer_value(json_object_get(j, "pid")), 0);
	json_decref(j);

	CALL(&r, "qmp", "cli-vm", "{\"execute\": \"query-status\"}");
	cr_expect_eq(r.status, 0, "qmp: exit %d: %s", r.status, r.err);
	j = parse_json(r.out);
	cr_expect_str_eq(json_string_value(json_object_get(j, "status")), "running", "%s", r.out);
	json_decref(j);
	run_free(&r);

	/* A running domain cannot go. */
	CALL(&r, "undefine", "cli-vm");
	cr_expect_neq(r.status, 0);
	run_free(&r);

	CALL(&r, "destroy", "cli-vm", "--timeout", "30");
	cr_assert_eq(r.status, 0, "destroy: exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.out, "Domain cli-vm destroyed"), "%s", r.out);
	run_free(&r);

	j = info("cli-vm");
	cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "shutoff");
	cr_expect_eq(json_integer_value(json_object_get(j, "pid")), 0);
	json_decref(j);

	CALL(&r, "undefine", "cli-vm");
	cr_expect_eq(r.status, 0, "%s", r.err);
	run_free(&r);
}

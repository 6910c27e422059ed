/* SPDX-License-Identifier: MIT */
/*
 * corral without a daemon: usage errors, help, version, and an unreachable
 * socket.  A usage error must come before any connection, so every case
 * here points corral at a socket where nobody listens: exit code 2 proves
 * nothing was sent, 6 would mean it tried.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

static const char *const nowhere[] = { "CORRAL_SOCKET=/nonexistent/corral.sock", NULL };

/* Every command `corral --help` lists, and the one it hides. */
static const char *const commands[] = {
	"list", "info", "define", "undefine", "start", "autostart", "shutdown", "destroy",
	"suspend", "resume", "reset", "reboot", "events", "qmp", "attach", "attach-disk",
	"detach-disk", "attach-nic", "detach-nic", "save", "restore", "daemon-info", "help",
};

static void expect_usage(const char *const *args)
{
	char line[512] = "";
	struct run r;
	size_t i;

	for (i = 0; args[i]; i++) {
		strncat(line, " ", sizeof(line) - strlen(line) - 1);
		strncat(line, args[i], sizeof(line) - strlen(line) - 1);
	}
	run_cli(&r, nowhere, args);
	cr_expect_eq(r.status, 2, "corral%s: exit %d, want 2; stderr: %s", line, r.status, r.err);
	cr_expect_eq(count_lines(r.err), 1, "corral%s: want one line, got: %s", line, r.err);
	cr_expect(strstr(r.err, "--help"), "corral%s: no hint to --help in: %s", line, r.err);
	cr_expect_str_empty(r.out, "corral%s: printed on stdout: %s", line, r.out);
	run_free(&r);
}

#define USAGE(...) expect_usage((const char *const[]){ __VA_ARGS__, NULL })

Test(usage, no_command)
{
	struct run r;

	run_cli(&r, nowhere, (const char *const[]){ NULL });
	cr_expect_eq(r.status, 2);
	cr_expect(strstr(r.err, "no command"), "%s", r.err);
	run_free(&r);
	USAGE("--format", "json");
}

Test(usage, unknown_command_and_options)
{
	USAGE("frobnicate");
	USAGE("list", "--bogus");
	USAGE("list", "-x");
	USAGE("list", "extra");
	USAGE("--memory", "256M", "define", "vm");      /* a command's option before it */
	USAGE("start", "vm", "--wait=yes");             /* a flag with a value */
	USAGE("list", "--socket");                      /* a value missing */
	USAGE("start", "vm", "--wait", "--wait");       /* given twice */
}

Test(usage, global_options)
{
	USAGE("--format", "xml", "list");
	USAGE("--format=yaml", "list");
	USAGE("--timeout", "0", "list");
	USAGE("--timeout", "-1", "list");
	USAGE("--timeout", "soon", "list");
	USAGE("--timeout", "5h", "list");
	USAGE("--socket", "", "list");
}

Test(usage, domain_names)
{
	USAGE("start");
	USAGE("start", "a", "b");
	USAGE("start", "bad name");
	USAGE("info", "-leading-dash-is-an-option");
	USAGE("info", "--", "-leading-dash");
	USAGE("destroy", "a/b");
	USAGE("undefine", "x123456789012345678901234567890123456789012345678901234567890123456");
	USAGE("events", "no way");
	USAGE("list", "--state", "sleeping");
	USAGE("autostart");
	USAGE("autostart", "bad name");
	USAGE("autostart", "vm", "--disable=yes");
	USAGE("autostart", "vm", "--enable");
	USAGE("attach-disk", "vm");
	USAGE("attach-disk", "vm", "x.img", "--format", "vmdk");
	USAGE("attach-disk", "vm", "x.img", "--mac", "52:54:00:00:00:01");
	USAGE("detach-disk", "vm");
	USAGE("attach-nic", "vm", "user", "extra");
	USAGE("detach-nic", "vm");
	USAGE("save", "vm");
	USAGE("restore", "vm", "a", "b");
}

Test(usage, define)
{
	char *dir = make_tmpdir(), *bad = path_in(dir, "bad.json"), *arr = path_in(dir, "arr.json");
	FILE *f;

	f = fopen(bad, "w");
	fputs("{\"name\": \"vm\",", f);
	fclose(f);
	f = fopen(arr, "w");
	fputs("[1, 2]", f);
	fclose(f);

	USAGE("define");
	USAGE("define", "vm", "extra");
	USAGE("define", "vm", "--memory", "12Q");
	USAGE("define", "vm", "--memory", "0");
	USAGE("define", "vm", "--memory", "8");         /* under 16 MiB */
	USAGE("define", "vm", "--memory", "2T");        /* over 1 TiB */
	USAGE("define", "vm", "--memory", "-5M");
	USAGE("define", "vm", "--vcpus", "0");
	USAGE("define", "vm", "--vcpus", "257");
	USAGE("define", "vm", "--vcpus", "two");
	USAGE("define", "vm", "--accel", "xen");
	USAGE("define", "vm", "--machine", "");
	USAGE("define", "vm", "--initrd", "/boot/initrd");
	USAGE("define", "vm", "--cmdline", "console=ttyS0");
	USAGE("define", "vm", "--disk", ",ro");
	USAGE("define", "vm", "--disk", "");
	USAGE("define", "-f", "/nonexistent/vm.json");
	USAGE("define", "-f", bad);
	USAGE("define", "-f", arr);
	USAGE("define", "-f", "-");                     /* stdin is /dev/null: no JSON */

	unlink(bad);
	unlink(arr);
	rmdir(dir);
	free(bad);
	free(arr);
	free(dir);
}

Test(usage, other_commands)
{
	USAGE("qmp", "vm");
	USAGE("qmp", "vm", "query-status");
	USAGE("qmp", "vm", "{\"arguments\": {}}");
	USAGE("qmp", "vm", "{\"execute\": 1}");
	USAGE("attach", "vm");
	USAGE("attach", "vm", "--qmp-socket", "/run/q.sock", "--pid", "abc");
	USAGE("attach", "vm", "--qmp-socket", "/run/q.sock", "--pid", "0");
	USAGE("daemon-info", "extra");
	USAGE("help", "frobnicate");
}

Test(usage, json_errors_are_json)
{
	json_t *j;
	struct run r;

	RUN_ENV(&r, nowhere, "--format", "json", "start", "bad name");
	cr_assert_eq(r.status, 2);
	j = parse_json(r.err);
	cr_expect(json_is_null(json_object_get(json_object_get(j, "error"), "code")));
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "name")),
			 "usage");
	cr_expect(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
			 "bad name"));
	json_decref(j);
	run_free(&r);
}

Test(help, every_command)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		char want[64];
		struct run r;

		snprintf(want, sizeof(want), "corral %s", commands[i]);
		RUN_ENV(&r, nowhere, commands[i], "--help");
		cr_expect_eq(r.status, 0, "%s --help: exit %d: %s", commands[i], r.status, r.err);
		cr_expect(strstr(r.out, want), "%s --help does not say '%s': %s", commands[i], want,
			  r.out);
		cr_expect(strstr(r.out, "--format"), "%s --help lacks the global options",
			  commands[i]);
		run_free(&r);

		RUN_ENV(&r, nowhere, "help", commands[i]);
		cr_expect_eq(r.status, 0);
		cr_expect(strstr(r.out, want), "help %s: %s", commands[i], r.out);
		run_free(&r);

		/* Help wins over what is wrong with the rest of the line. */
		RUN_ENV(&r, nowhere, commands[i], "--bogus", "-h");
		cr_expect_eq(r.status, 0, "%s --bogus -h: exit %d", commands[i], r.status);
		cr_expect(strstr(r.out, want));
		run_free(&r);
	}
}

Test(help, top_level_lists_commands_and_exit_codes)
{
	static const char *const codes[] = {
		"0  success", "1  other error", "2  usage error", "3  not found", "4  busy",
		"5  timeout", "6  corrald unreachable", "7  permission denied",
	};
	const char *const *argvs[] = {
		(const char *const[]){ "--help", NULL },
		(const char *const[]){ "help", NULL },
		(const char *const[]){ "-h", NULL },
	};
	size_t i, k;

	for (k = 0; k < 3; k++) {
		struct run r;

		run_cli(&r, nowhere, argvs[k]);
		cr_expect_eq(r.status, 0);
		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			cr_expect(strstr(r.out, commands[i]), "help lacks %s", commands[i]);
		for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			cr_expect(strstr(r.out, codes[i]), "help lacks exit code '%s'", codes[i]);
		cr_expect(!strstr(r.out, "__complete"), "help shows the hidden command");
		run_free(&r);
	}
}

Test(help, version)
{
	struct run r;

	RUN_ENV(&r, nowhere, "--version");
	cr_expect_eq(r.status, 0);
	cr_expect(!strncmp(r.out, "corral ", 7), "%s", r.out);
	run_free(&r);
}

Test(unreachable, no_socket_file)
{
	struct run r;

	RUN(&r, "--socket", "/nonexistent/corral.sock", "list");
	cr_expect_eq(r.status, 6, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "cannot reach corrald at /nonexistent/corral.sock: "), "%s",
		  r.err);
	run_free(&r);

	/* CORRAL_SOCKET is used as given, and never autostarts a daemon. */
	RUN_ENV(&r, nowhere, "info", "vm");
	cr_expect_eq(r.status, 6, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "cannot reach corrald at /nonexistent/corral.sock"), "%s",
		  r.err);
	run_free(&r);
}

Test(unreachable, nobody_listening)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *dir = make_tmpdir(), *path = path_in(dir, "corral.sock");
	json_t *j;
	struct run r;
	int fd;

	/* Bound but not listening: connect() is refused. */
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

	RUN(&r, "list", "--socket", path);
	cr_expect_eq(r.status, 6, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "cannot reach corrald at"), "%s", r.err);
	run_free(&r);

	RUN(&r, "--format", "json", "daemon-info", "--socket", path);
	cr_expect_eq(r.status, 6);
	j = parse_json(r.err);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "name")),
			 "unreachable");
	json_decref(j);
	run_free(&r);

	close(fd);
	unlink(path);
	rmdir(dir);
	free(path);
	free(dir);
}

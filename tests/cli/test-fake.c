/* SPDX-License-Identifier: MIT */
/*
 * corral against a stand-in corrald (fake.h) that logs each request and
 * answers as each test says: what goes on the wire, how results print, how
 * errors map to exit codes, events, `start --wait`, and the session daemon.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake.h"
#include "helpers.h"
#include "rpc/rpc.h"

static char *dir, *sock, *sock_env;
static const char *env[2];
static struct fake *fake;

/* What the handlers answer; each test sets what it needs. */
static struct {
	int error_code;                 /* every call fails with it, if set */
	enum fake_action action;        /* for every call but events.* */
	unsigned info_calls;
	const char *info_states[8];     /* info's state on the n-th call (the last repeats) */
} script;

static json_t *domain(const char *name, const char *state, const char *job)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:{s:s, s:f}}", "name", name, "uuid",
			 "6b2e6c4c-3f0a-4c1e-9d55-0e3a1f1e0a01", "state", state, "reason",
			 "booted", "job", job, "monitor", "state", "ok", "since_s", 3.0);
}

static void handle(const char *method, json_t *params, struct fake_reply *reply, void *arg)
{
	const char *name = json_string_value(json_object_get(params, "name"));

	if (script.error_code) {
		reply->action = FAKE_ERROR;
		reply->code = script.error_code;
		reply->message = "the fake says no";
		return;
	}
	if (strncmp(method, "events.", 7))
		reply->action = script.action;
	if (!strcmp(method, "list")) {
		reply->result = json_pack("{s:[o, o], s:[], s:[]}", "domains",
					  domain("web", "running", "start"),
					  domain("database-primary", "shutoff", NULL), "missing", "more");
	} else if (!strcmp(method, "info")) {
		unsigned n = script.info_calls++;
		const char *state = "running";

		while (n > 0 && !script.info_states[n])
			n--;
		if (script.info_states[n])
			state = script.info_states[n];
		reply->result = json_pack(
			"{s:s, s:s, s:s, s:s, s:i, s:{s:i, s:s, s:f}, s:i, s:{s:s, s:f}, "
			"s:{s:i, s:i}, s:{s:s, s:i, s:[s, s]}, s:i}",
			"name", name, "uuid", "6b2e6c4c-3f0a-4c1e-9d55-0e3a1f1e0a01", "state", state,
			"reason", "booted", "pid", 4242, "job", "id", 7, "name", "start", "held_s", 1.5,
			"jobs_waiting", 0, "monitor", "state", "ok", "since_s", 12.0, "counters",
			"jobs_done", 3, "jobs_failed", 0, "config", "machine", "pc", "memory", 256,
			"tags", "a", "b", "updated", 99);
	} else if (!strcmp(method, "define")) {
		reply->result = json_pack("{s:O, s:s}", "name",
					  json_object_get(json_object_get(params, "config"), "name"),
					  "uuid", "6b2e6c4c-3f0a-4c1e-9d55-0e3a1f1e0a01");
	} else if (!strcmp(method, "start")) {
		reply->result = json_pack("{s:s}", "state",
					  script.info_states[0] ? "starting" : "running");
	} else if (!strcmp(method, "destroy") || !strcmp(method, "shutdown")) {
		reply->result = json_pack("{s:s}", "state", "shutoff");
	} else if (!strcmp(method, "qmp")) {
		reply->result = json_pack("{s:s, s:b}", "status", "running", "running", 1);
	} else if (!strcmp(method, "daemon.info")) {
		reply->result = json_pack("{s:s, s:i, s:f, s:i}", "version", "0.1.0", "pid", 1,
					  "uptime_s", 3.5, "domains", 2);
	} else if (!strcmp(method, "events.subscribe")) {
		reply->result = json_pack("{s:i}", "subscription", 17);
	} else if (!strcmp(method, "attach-disk") || !strcmp(method, "detach-disk")) {
		reply->result = json_pack("{s:s, s:b, s:b}", "target",
					  json_string_value(json_object_get(params, "target")) ?
					  json_string_value(json_object_get(params, "target")) : "vda",
					  "live", 1, "persistent",
					  json_is_true(json_object_get(params, "persistent")));
	} else if (!strcmp(method, "attach-nic") || !strcmp(method, "detach-nic")) {
		reply->result = json_pack("{s:s, s:b, s:b}", "mac", "52:54:00:aa:bb:cc", "live", 0,
					  "persistent", 1);
	} else if (!strcmp(method, "save")) {
		reply->result = json_pack("{s:s, s:s}", "state", "shutoff", "reason", "saved");
	} else if (!strcmp(method, "restore")) {
		reply->result = json_pack("{s:s, s:i}", "state", "running", "pid", 4243);
	} else if (!strcmp(method, "autostart")) {
		reply->result = json_pack("{s:s, s:O}", "name", name, "autostart",
					  json_object_get(params, "enable"));
	}
}

static void setup(void)
{
	dir = make_tmpdir();
	sock = path_in(dir, "corral.sock");
	cr_assert(asprintf(&sock_env, "CORRAL_SOCKET=%s", sock) > 0);
	env[0] = sock_env;
	fake = fake_start(sock, handle, NULL, false);
	cr_assert(fake, "cannot start the fake corrald");
}

static void teardown(void)
{
	fake_stop(fake);
	/* Tests leave corral's out and err files here. */
	remove_tree(dir);
	free(sock_env);
	free(sock);
	free(dir);
}

TestSuite(fake, .init = setup, .fini = teardown);

#define CALL(r, ...) RUN_ENV((r), env, __VA_ARGS__)

/* params of the i-th call of method, as a new reference. */
static json_t *sent(const char *method, unsigned i)
{
	json_t *p = fake_params(fake, method, i);

	cr_assert(p, "no %s call #%u reached the daemon", method, i);
	return p;
}

Test(fake, error_codes_map_to_exit_codes)
{
	/* docs: 3 not found, 4 busy, 5 timeout, 6 unreachable, 7 permission, else 1. */
	static const int want[RPC_ERR_MAX + 1] = {
		[RPC_ERR_INVALID_REQUEST] = 1, [RPC_ERR_METHOD_NOT_FOUND] = 1,
		[RPC_ERR_INVALID_ARGUMENT] = 1, [RPC_ERR_NO_SUCH_DOMAIN] = 3,
		[RPC_ERR_EXISTS] = 1,           [RPC_ERR_BUSY] = 4,
		[RPC_ERR_TIMEOUT] = 5,          [RPC_ERR_BAD_STATE] = 1,
		[RPC_ERR_PERMISSION] = 7,       [RPC_ERR_QEMU] = 1,
		[RPC_ERR_MONITOR_BROKEN] = 1,   [RPC_ERR_INTERNAL] = 1,
		[RPC_ERR_UNAVAILABLE] = 6,      [RPC_ERR_CANCELLED] = 1,
		[RPC_ERR_STORAGE] = 1,
	};
	int code;

	for (code = RPC_ERR_MIN; code <= RPC_ERR_MAX; code++) {
		struct run r;

		script.error_code = code;
		CALL(&r, "info", "vm");
		cr_expect_eq(r.status, want[code], "error %d (%s): exit %d, want %d", code,
			     rpc_err_name(code), r.status, want[code]);
		cr_expect(strstr(r.err, rpc_err_name(code)) && strstr(r.err, "the fake says no"),
			  "error %d: %s", code, r.err);
		cr_expect_eq(count_lines(r.err), 1);
		run_free(&r);
	}
}

Test(fake, json_errors_carry_code_name_and_message)
{
	json_t *j, *e;
	struct run r;

	script.error_code = RPC_ERR_NO_SUCH_DOMAIN;
	CALL(&r, "--format", "json", "info", "vm");
	cr_expect_eq(r.status, 3);
	cr_expect_str_empty(r.out);
	j = parse_json(r.err);
	e = json_object_get(j, "error");
	cr_expect_eq(json_integer_value(json_object_get(e, "code")), RPC_ERR_NO_SUCH_DOMAIN);
	cr_expect_str_eq(json_string_value(json_object_get(e, "name")), "no-such-domain");
	cr_expect_str_eq(json_string_value(json_object_get(e, "message")), "the fake says no");
	json_decref(j);
	run_free(&r);
}

Test(fake, timeout_is_sent_in_ms)
{
	static const struct {
		const char *arg;
		json_int_t ms;
	} cases[] = {
		{ NULL, 30000 }, { "1.5", 1500 }, { "500ms", 500 }, { "2m", 120000 }, { "7s", 7000 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;
		json_t *p;

		if (cases[i].arg)
			CALL(&r, "shutdown", "vm", "--timeout", cases[i].arg);
		else
			CALL(&r, "shutdown", "vm");
		cr_expect_eq(r.status, 0, "%s", r.err);
		p = sent("shutdown", (unsigned)i);
		cr_expect_eq(json_integer_value(json_object_get(p, "timeout_ms")), cases[i].ms,
			     "--timeout %s", cases[i].arg ? cases[i].arg : "(default)");
		cr_expect_str_eq(json_string_value(json_object_get(p, "name")), "vm");
		json_decref(p);
		run_free(&r);
	}
}

Test(fake, silent_daemon_times_out)
{
	struct run r;

	/* corral waits for the 100 ms plus its margin, then gives up. */
	script.action = FAKE_SILENT;
	CALL(&r, "--timeout", "100ms", "start", "vm");
	cr_expect_eq(r.status, 5, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "no answer from corrald"), "%s", r.err);
	run_free(&r);
}

Test(fake, hangup_is_unreachable)
{
	struct run r;

	script.action = FAKE_HANGUP;
	CALL(&r, "destroy", "vm");
	cr_expect_eq(r.status, 6, "exit %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "lost the connection to corrald"), "%s", r.err);
	run_free(&r);
}

Test(fake, list_table_is_aligned)
{
	static const char *const headers[] = { "NAME", "STATE", "REASON", "JOB", "MONITOR", "UUID" };
	char *line, *save = NULL;
	size_t col[6], i;
	struct run r;
	unsigned n = 0;

	CALL(&r, "list");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_eq(count_lines(r.out), 3, "%s", r.out);
	for (i = 0; i < 6; i++) {
		char *h = strstr(r.out, headers[i]);

		cr_assert(h, "no %s column: %s", headers[i], r.out);
		col[i] = (size_t)(h - r.out);
	}
	/* No job is "-". */
	cr_expect(strstr(r.out, "database-primary  shutoff  booted  -      ok "), "%s", r.out);
	/* Every cell starts under its header; no line ends in a blank. */
	for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		for (i = 1; i < 6; i++)
			cr_expect(line[col[i] - 1] == ' ' && line[col[i]] != ' ',
				  "line %u, column %s misaligned: '%s'", n, headers[i], line);
		cr_expect(line[strlen(line) - 1] != ' ', "trailing blank: '%s'", line);
	}
	run_free(&r);
}

Test(fake, list_json_and_state_filter)
{
	struct run r;
	json_t *j, *p;

	CALL(&r, "list", "--format", "json", "--state", "running");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect_eq(json_array_size(j), 2);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(j, 1), "name")),
			 "database-primary");
	cr_expect(json_is_null(json_object_get(json_array_get(j, 1), "job")));
	/* The monitor as corrald sends it, the same shape as info's. */
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(j, 1),
									   "monitor"), "state")),
			 "ok");
	p = sent("list", 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "state")), "running");
	/* Pages: an array would fail past what one message holds. */
	cr_expect(json_is_true(json_object_get(p, "paged")));
	json_decref(p);
	json_decref(j);
	run_free(&r);
}

Test(fake, info_table_and_json)
{
	struct run r;
	json_t *j;

	CALL(&r, "info", "web");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "name:         web\n"), "%s", r.out);
	cr_expect(strstr(r.out, "job:          start (id 7, held 1.5 s)\n"), "%s", r.out);
	cr_expect(strstr(r.out, "monitor:      ok (for 12.0 s)\n"), "%s", r.out);
	cr_expect(strstr(r.out, "counters:\n  jobs_done:   3\n  jobs_failed: 0\n"), "%s", r.out);
	cr_expect(strstr(r.out, "  tags:    a, b\n"), "%s", r.out);
	run_free(&r);

	CALL(&r, "info", "web", "--format", "json");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "job"), "id")), 7);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "monitor"), "state")),
			 "ok");
	json_decref(j);
	run_free(&r);
}

Test(fake, define_from_options)
{
	char cwd[4096], want[4200];
	json_t *p, *cfg, *disks;
	struct run r;

	cr_assert(getcwd(cwd, sizeof(cwd)));
	CALL(&r, "define", "vm1", "--memory", "1G", "--vcpus", "2", "--machine", "q35", "--accel",
	     "tcg", "--kernel", "boot/vmlinuz", "--initrd", "/boot/initrd", "--cmdline",
	     "console=ttyS0", "--disk", "/img/a.img,ro", "--disk", "b.img", "--emulator",
	     "qemu-system-x86_64");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm1 defined (uuid 6b2e6c4c-3f0a-4c1e-9d55-0e3a1f1e0a01).\n");
	p = sent("define", 0);
	cfg = json_object_get(p, "config");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "name")), "vm1");
	cr_expect_eq(json_integer_value(json_object_get(cfg, "memory")), 1024);
	cr_expect_eq(json_integer_value(json_object_get(cfg, "vcpus")), 2);
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "machine")), "q35");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "accel")), "tcg");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "emulator")), "qemu-system-x86_64");
	snprintf(want, sizeof(want), "%s/boot/vmlinuz", cwd);
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "kernel")), want);
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "cmdline")), "console=ttyS0");
	disks = json_object_get(cfg, "disks");
	cr_assert_eq(json_array_size(disks), 2);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(disks, 0), "path")),
			 "/img/a.img");
	cr_expect(json_is_true(json_object_get(json_array_get(disks, 0), "readonly")));
	snprintf(want, sizeof(want), "%s/b.img", cwd);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(disks, 1), "path")), want);
	cr_expect(json_is_false(json_object_get(json_array_get(disks, 1), "readonly")));
	json_decref(p);
	run_free(&r);
}

Test(fake, define_from_file_with_overrides)
{
	char *file = path_in(dir, "vm.json");
	json_t *p, *cfg;
	struct run r;
	FILE *f;

	f = fopen(file, "w");
	fputs("{\"name\": \"base\", \"memory\": \"512M\", \"vcpus\": 4, \"reboot\": \"acpi\","
	      " \"disks\": [\"/img/a.img,ro\"]}", f);
	fclose(f);

	CALL(&r, "define", "-f", file, "--format", "json");
	cr_assert_eq(r.status, 0, "%s", r.err);
	p = sent("define", 0);
	cfg = json_object_get(p, "config");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "name")), "base");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "memory")), "512M");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "reboot")), "acpi");
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(cfg, "disks"), 0)),
			 "/img/a.img,ro");
	json_decref(p);
	cr_expect(strstr(r.out, "\"name\": \"base\""), "%s", r.out);
	run_free(&r);

	/* NAME and options replace the file's fields. */
	CALL(&r, "define", "copy", "-f", file, "--vcpus", "2", "--disk", "/img/c.img");
	cr_assert_eq(r.status, 0, "%s", r.err);
	p = sent("define", 1);
	cfg = json_object_get(p, "config");
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "name")), "copy");
	cr_expect_eq(json_integer_value(json_object_get(cfg, "vcpus")), 2);
	cr_expect_str_eq(json_string_value(json_object_get(cfg, "memory")), "512M");
	cr_expect_eq(json_array_size(json_object_get(cfg, "disks")), 1);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(
				 json_object_get(cfg, "disks"), 0), "path")), "/img/c.img");
	json_decref(p);
	run_free(&r);

	unlink(file);
	free(file);
}

Test(fake, state_changes_say_what_happened)
{
	static const char *const cmds[] = {
		"undefine", "shutdown", "destroy", "suspend", "resume", "reset", "reboot",
	};
	size_t i;

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		struct run r;
		json_t *p;

		CALL(&r, cmds[i], "vm2");
		cr_expect_eq(r.status, 0, "%s: %s", cmds[i], r.err);
		cr_expect(!strncmp(r.out, "Domain vm2 ", 11), "%s: %s", cmds[i], r.out);
		p = sent(cmds[i], 0);
		cr_expect_str_eq(json_string_value(json_object_get(p, "name")), "vm2");
		json_decref(p);
		run_free(&r);
	}
}

Test(fake, autostart_marks_and_unmarks)
{
	struct run r;
	json_t *p, *j;

	CALL(&r, "autostart", "vm2");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm2: autostart enabled.\n");
	p = sent("autostart", 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "name")), "vm2");
	cr_expect(json_is_true(json_object_get(p, "enable")));
	json_decref(p);
	run_free(&r);

	CALL(&r, "autostart", "vm2", "--disable", "--format", "json");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect(json_is_false(json_object_get(j, "autostart")), "%s", r.out);
	json_decref(j);
	p = sent("autostart", 1);
	cr_expect(json_is_false(json_object_get(p, "enable")));
	json_decref(p);
	run_free(&r);
}

Test(fake, hotplug_save_restore_send_what_was_asked)
{
	char cwd[4096], *want;
	struct run r;
	json_t *p, *j;

	cr_assert(getcwd(cwd, sizeof(cwd)));
	CALL(&r, "attach-disk", "vm2", "d.img", "--target", "vdc", "--ro", "--format", "qcow2",
	     "--persistent");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm2: vdc attached (live) and in the definition.\n");
	p = sent("attach-disk", 0);
	cr_assert(asprintf(&want, "%s/d.img", cwd) > 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "path")), want);
	free(want);
	cr_expect_str_eq(json_string_value(json_object_get(p, "target")), "vdc");
	cr_expect_str_eq(json_string_value(json_object_get(p, "format")), "qcow2");
	cr_expect(json_is_true(json_object_get(p, "readonly")));
	cr_expect(json_is_true(json_object_get(p, "persistent")));
	json_decref(p);
	run_free(&r);

	/* Before the command, --format is the output's. */
	CALL(&r, "--format", "json", "detach-disk", "vm2", "vdc");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect_str_eq(json_string_value(json_object_get(j, "target")), "vdc");
	json_decref(j);
	p = sent("detach-disk", 0);
	cr_expect(!json_object_get(p, "persistent"));
	json_decref(p);
	run_free(&r);

	CALL(&r, "attach-nic", "vm2", "--persistent");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm2: 52:54:00:aa:bb:cc attached in the definition.\n");
	p = sent("attach-nic", 0);
	cr_expect(!json_object_get(p, "spec") && !json_object_get(p, "mac"));
	json_decref(p);
	run_free(&r);
	CALL(&r, "attach-nic", "vm2", "bridge=br0", "--mac", "52:54:00:aa:bb:cc");
	p = sent("attach-nic", 1);
	cr_expect_str_eq(json_string_value(json_object_get(p, "spec")), "bridge=br0");
	cr_expect_str_eq(json_string_value(json_object_get(p, "mac")), "52:54:00:aa:bb:cc");
	json_decref(p);
	run_free(&r);

	CALL(&r, "save", "vm2", "vm2.state");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm2 saved to vm2.state: shutoff (saved).\n");
	p = sent("save", 0);
	cr_assert(asprintf(&want, "%s/vm2.state", cwd) > 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "path")), want);
	json_decref(p);
	run_free(&r);
	CALL(&r, "restore", "vm2", want);
	free(want);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "restored from") && strstr(r.out, "pid 4243"), "%s", r.out);
	run_free(&r);
}

Test(fake, qmp_attach_daemon_info)
{
	struct run r;
	json_t *p, *j;

	CALL(&r, "qmp", "vm", "{\"execute\": \"query-status\"}");
	cr_assert_eq(r.status, 0, "%s", r.err);
	j = parse_json(r.out);
	cr_expect_str_eq(json_string_value(json_object_get(j, "status")), "running");
	json_decref(j);
	p = sent("qmp", 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "command")),
			 "{\"execute\": \"query-status\"}");
	json_decref(p);
	run_free(&r);

	CALL(&r, "attach", "vm", "--qmp-socket", "/run/q.sock", "--pid", "4242");
	cr_assert_eq(r.status, 0, "%s", r.err);
	p = sent("attach", 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "qmp_socket")), "/run/q.sock");
	cr_expect_eq(json_integer_value(json_object_get(p, "pid")), 4242);
	json_decref(p);
	run_free(&r);

	CALL(&r, "daemon-info");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "version:  0.1.0\n"), "%s", r.out);
	cr_expect(strstr(r.out, "uptime_s: 3.5\n"), "%s", r.out);
	run_free(&r);

	CALL(&r, "__complete-domains");
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "web\ndatabase-primary\n");
	run_free(&r);
}

/* Start `corral ARGS` in the background; out and err land in dir. */
static pid_t spawn(const char *const *args)
{
	return spawn_cli(dir, env, args, -1);
}

Test(fake, events_stream_until_sigint)
{
	char *out = path_in(dir, "out");
	const char *sub_params;
	json_t *p;
	pid_t pid;
	char *text;

	pid = spawn((const char *const[]){ "events", "vm", NULL });
	cr_assert(fake_wait(fake, "events.subscribe", 1, 10000), "no events.subscribe");
	p = sent("events.subscribe", 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "name")), "vm");
	json_decref(p);

	cr_assert_eq(fake_notify(fake, "event", json_pack("{s:s, s:s, s:f, s:{s:s}}", "domain",
							  "vm", "event", "STOP", "timestamp",
							  1764123663.5, "data", "why", "test")), 0);
	cr_assert_eq(fake_notify(fake, "events.dropped", json_pack("{s:i}", "count", 12)), 0);
	cr_assert_eq(fake_notify(fake, "event", json_pack("{s:s, s:s, s:f, s:{}}", "domain", "vm",
							  "event", "RESUME", "timestamp",
							  1764123664.25, "data")), 0);
	/* A condition, not a delay: the three lines are out before the signal. */
	cr_assert(wait_contains(out, "\n", 3, 10000), "events were not printed");
	kill(pid, SIGINT);
	cr_expect_eq(wait_cli(pid), 0);

	text = slurp(out);
	cr_expect_eq(count_lines(text), 3, "%s", text);
	cr_expect(strstr(text, "  vm  ") && strstr(text, "STOP") &&
		  strstr(text, "{\"why\":\"test\"}"), "%s", text);
	cr_expect(strstr(text, "events.dropped") && strstr(text, "\"count\":12"), "%s", text);
	cr_expect(strstr(text, ":04.250"), "no milliseconds: %s", text);
	free(text);

	/* It said goodbye to its own subscription. */
	cr_expect(fake_wait(fake, "events.unsubscribe", 1, 10000));
	p = sent("events.unsubscribe", 0);
	sub_params = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
	cr_expect(strstr(sub_params, "\"subscription\":17"), "%s", sub_params);
	free((char *)sub_params);
	json_decref(p);
	free(out);
}

Test(fake, events_json_lines)
{
	char *out = path_in(dir, "out"), *text, *line, *save = NULL;
	pid_t pid;
	json_t *j;
	int n = 0;

	pid = spawn((const char *const[]){ "--format", "json", "events", NULL });
	cr_assert(fake_wait(fake, "events.subscribe", 1, 10000));
	fake_notify(fake, "event", json_pack("{s:s, s:s, s:f, s:{}}", "domain", "a", "event",
					     "started", "timestamp", 1.0, "data"));
	fake_notify(fake, "events.dropped", json_pack("{s:i}", "count", 3));
	cr_assert(wait_contains(out, "\n", 2, 10000));
	kill(pid, SIGTERM);
	cr_expect_eq(wait_cli(pid), 0);

	text = slurp(out);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		j = parse_json(line);
		if (n == 0)
			cr_expect_str_eq(json_string_value(json_object_get(j, "event")), "started");
		else
			cr_expect_eq(json_integer_value(json_object_get(j, "count")), 3);
		json_decref(j);
	}
	cr_expect_eq(n, 2);
	free(text);
	free(out);
}

Test(fake, start_wait_until_running)
{
	struct run r;

	script.info_states[0] = "starting";
	script.info_states[1] = "starting";
	script.info_states[2] = "running";
	CALL(&r, "start", "vm", "--wait");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect_str_eq(r.out, "Domain vm started (running).\n");
	cr_expect_eq(fake_count(fake, "info"), 3);
	cr_expect_eq(fake_count(fake, "events.subscribe"), 1);
	run_free(&r);
}

Test(fake, start_wait_sees_a_crash)
{
	struct run r;

	script.info_states[0] = "starting";
	script.info_states[1] = "crashed";
	CALL(&r, "start", "vm", "--wait");
	cr_expect_eq(r.status, 1, "%s", r.err);
	cr_expect(strstr(r.err, "stopped before it ran: crashed"), "%s", r.err);
	run_free(&r);
}

Test(fake, start_wait_is_bounded)
{
	struct run r;

	script.info_states[0] = "starting";
	CALL(&r, "start", "vm", "--wait", "--timeout", "1");
	cr_expect_eq(r.status, 5, "%s", r.err);
	cr_expect(strstr(r.err, "still starting"), "%s", r.err);
	run_free(&r);
}

Test(fake, without_a_socket_starts_a_session_daemon)
{
	const char *daemon = getenv("CORRAL_FAKE_DAEMON");
	char *rt = make_tmpdir(), *xdg, *dmn, *text, want[256];
	char *out = path_in(dir, "out"), *err = path_in(dir, "err");
	char *log = path_in(rt, "corral/corrald.log");
	int uid = getuid() == 0 ? 65534 : -1;   /* root's socket is /run/corral's */
	int status;

	cr_assert(daemon && *daemon, "CORRAL_FAKE_DAEMON is not set");
	cr_assert(asprintf(&xdg, "XDG_RUNTIME_DIR=%s", rt) > 0);
	cr_assert(asprintf(&dmn, "CORRAL_DAEMON=%s", daemon) > 0);
	if (uid >= 0)
		cr_assert_eq(chown(rt, (uid_t)uid, (gid_t)uid), 0);

	status = wait_cli(spawn_cli(dir, (const char *const[]){ xdg, dmn, NULL },
				    (const char *const[]){ "list", NULL }, uid));
	if (status == SPAWN_EACCES)
		cr_skip_test("as root this test runs corral as nobody, who may not execute it "
			     "in this build tree");
	text = slurp(out);
	cr_expect_eq(status, 0, "exit %d", status);
	cr_expect(strstr(text, "auto"), "%s", text);
	free(text);
	/* It ran our daemon, on the per-user socket, with output to the log. */
	text = slurp(log);
	snprintf(want, sizeof(want), "fake corrald on %s/corral/corral.sock", rt);
	cr_expect(strstr(text, want), "log: %s", text);
	free(text);
	/* It goes when corral hangs up; its socket file goes first. */
	cr_assert(wait_gone(want + strlen("fake corrald on "), 10000));

	/* A daemon that forks into the background is waited for all the same. */
	status = wait_cli(spawn_cli(dir, (const char *const[]){ xdg, dmn, "FAKE_CORRALD_FORK=1",
								NULL },
				    (const char *const[]){ "list", NULL }, uid));
	text = slurp(out);
	cr_expect_eq(status, 0, "exit %d", status);
	cr_expect(strstr(text, "auto"), "%s", text);
	free(text);
	cr_assert(wait_gone(want + strlen("fake corrald on "), 10000));

	/* A daemon that will not start: exit 6, and say why. */
	free(dmn);
	cr_assert(asprintf(&dmn, "CORRAL_DAEMON=%s", "/bin/false") > 0);
	status = wait_cli(spawn_cli(dir, (const char *const[]){ xdg, dmn, NULL },
				    (const char *const[]){ "list", NULL }, uid));
	text = slurp(err);
	cr_expect_eq(status, 6, "exit %d: %s", status, text);
	cr_expect(strstr(text, "corrald exited with status 1"), "%s", text);
	free(text);

	remove_tree(rt);
	free(log);
	free(out);
	free(err);
	free(xdg);
	free(dmn);
	free(rt);
}

/* What bash completion offers for the words (the last is being typed). */
static char *complete(const char *words)
{
	const char *file = getenv("CORRAL_COMPLETION"), *cli = getenv("CORRAL_CLI");
	char *cmd, *out = path_in(dir, "completion"), *text;

	cr_assert(file && cli, "CORRAL_COMPLETION or CORRAL_CLI is not set");
	cr_assert(asprintf(&cmd,
			   "bash -c 'source \"%s\"; COMP_WORDS=(\"%s\" --socket \"%s\" %s); "
			   "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _corral; "
			   "echo \"${COMPREPLY[*]}\"' </dev/null >%s 2>&1",
			   file, cli, sock, words, out) > 0);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	text = slurp(out);
	unlink(out);
	free(out);
	free(cmd);
	return text;
}

Test(fake, bash_completion)
{
	static const struct {
		const char *words, *want;
	} cases[] = {
		{ "st", "stats start\n" },
		{ "stats w", "web\n" },
		{ "start d", "database-primary\n" },
		{ "info \"\"", "web database-primary\n" },
		{ "start web --w", "--wait\n" },
		{ "define vm --accel t", "tcg\n" },
		{ "--format j", "json\n" },
		{ "qmp web \"\"", "\n" },        /* the QMP text is not a domain */
		/* Commands and options come from corral's own tables. */
		{ "con", "console\n" },
		{ "console web --hi", "--history\n" },
		{ "du", "dumpconfig\n" },
		{ "help ed", "edit\n" },
		{ "define vm --firmware u", "uefi\n" },
		{ "define vm --nic x --cpu-w", "--cpu-weight\n" },
		{ "shutdown web --f", "--force --format\n" },
		{ "attach-d", "attach-disk\n" },
		{ "attach-disk w", "web\n" },
		{ "attach-disk web x.img --format q", "qcow2\n" },
		{ "attach-disk web x.img --p", "--persistent\n" },
		{ "detach-nic web --p", "--persistent\n" },
		{ "res", "resume reset restore\n" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = complete(cases[i].words);

		cr_expect_str_eq(got, cases[i].want, "corral --socket S %s<TAB>", cases[i].words);
		free(got);
	}
}

/* SPDX-License-Identifier: MIT */
/*
 * corrald with real VMs: a QEMU (machine "none", TCG) started, paused,
 * resumed, asked over QMP and destroyed through the API, left running when
 * the daemon exits; and monitors attached from the QMP simulator, one of
 * them hung, to show answers coming out of order and a client leaving
 * while its job is in flight.  Skipped without QEMU / the simulator.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static struct dt_daemon dd;
static pid_t sim_pid;
static char sim_dir[128];

static void stop(void)
{
	if (sim_pid > 0) {
		kill(sim_pid, SIGTERM);
		waitpid(sim_pid, NULL, 0);
	}
	dt_stop(&dd);
	if (sim_dir[0]) {
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sim_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", sim_dir);
	}
}

TestSuite(lifecycle, .fini = stop, .timeout = 240);

static const char *state_of(json_t *r)
{
	return json_string_value(json_object_get(r, "state"));
}

static bool have_qemu(void)
{
	const char *q = getenv("CORRAL_QEMU");

	return q && *q && access(q, X_OK) == 0;
}

/* Define a machine-none VM on the real QEMU and start it; returns start's result. */
static json_t *define_and_start(struct dt_client *c, const char *name)
{
	char def[512], start[128];

	snprintf(def, sizeof(def), "{\"config\": {\"name\": \"%s\", \"machine\": \"none\", "
		 "\"accel\": \"tcg\", \"emulator\": \"%s\"}}", name, getenv("CORRAL_QEMU"));
	json_decref(dt_call_ok(c, "define", def));
	snprintf(start, sizeof(start), "{\"name\": \"%s\", \"timeout_ms\": 60000}", name);
	return dt_call_ok(c, "start", start);
}

Test(lifecycle, start_suspend_resume_destroy_with_qemu)
{
	struct dt_client c;
	json_t *r;
	pid_t pid;

	if (!have_qemu())
		cr_skip_test("no qemu-system-x86_64");
	dt_start(&dd, NULL);
	dt_connect(&c, dd.rw);
	r = define_and_start(&c, "life1");
	cr_assert_str_eq(state_of(r), "running");
	json_decref(r);
	r = dt_call_ok(&c, "info", "{\"name\": \"life1\"}");
	cr_assert_str_eq(state_of(r), "running");
	pid = (pid_t)json_integer_value(json_object_get(r, "pid"));
	cr_assert_gt(pid, 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "monitor"),
							   "state")), "ok");
	json_decref(r);
	dt_call_err(&c, "start", "{\"name\": \"life1\"}", RPC_ERR_BAD_STATE, NULL);
	dt_call_err(&c, "undefine", "{\"name\": \"life1\"}", RPC_ERR_BAD_STATE, "running");

	r = dt_call_ok(&c, "suspend", "{\"name\": \"life1\"}");
	cr_assert_str_eq(state_of(r), "paused");
	json_decref(r);
	r = dt_call_ok(&c, "list", "{\"state\": \"paused\"}");
	cr_assert_eq(json_array_size(r), 1);
	json_decref(r);
	r = dt_call_ok(&c, "qmp", "{\"name\": \"life1\", \"command\": "
			"\"{\\\"execute\\\": \\\"query-status\\\"}\"}");
	cr_assert_str_eq(json_string_value(json_object_get(r, "status")), "paused");
	json_decref(r);
	dt_call_err(&c, "qmp", "{\"name\": \"life1\", \"command\": "
		    "\"{\\\"execute\\\": \\\"no-such-command\\\"}\"}", RPC_ERR_QEMU,
		    "no-such-command");
	r = dt_call_ok(&c, "resume", "{\"name\": \"life1\"}");
	cr_assert_str_eq(state_of(r), "running");
	json_decref(r);

	r = dt_call_ok(&c, "destroy", "{\"name\": \"life1\"}");
	cr_assert_str_eq(state_of(r), "shutoff");
	json_decref(r);
	for (int i = 0; i < 1000 && kill(pid, 0) == 0; i++)
		usleep(10000);
	cr_assert_neq(kill(pid, 0), 0, "QEMU still runs after destroy");
	json_decref(dt_call_ok(&c, "undefine", "{\"name\": \"life1\"}"));
	dt_close(&c);
	dt_stop(&dd);
}

/*
 * The one entry of list, and of stats, for domain name; checked against
 * info's fields each time.  list and stats render each snapshot once and
 * copy it on later calls: they must still follow every change.
 */
static void expect_entries(struct dt_client *c, const char *name, const char *state,
			   bool autostart, double *since)
{
	json_t *info, *e, *r;
	char params[128];

	snprintf(params, sizeof(params), "{\"name\": \"%s\"}", name);
	info = dt_call_ok(c, "info", params);
	cr_assert_str_eq(state_of(info), state);
	for (int twice = 0; twice < 2; twice++) {
		double s;

		r = dt_call_ok(c, "list", NULL);
		cr_assert_eq(json_array_size(r), 1);
		e = json_array_get(r, 0);
		cr_assert_eq(json_object_size(e), 7);
		for (const char *const *k = (const char *const[]){ "name", "uuid", "state",
								    "reason", "job", NULL };
		     *k; k++)
			cr_assert(json_equal(json_object_get(e, *k), json_object_get(info, *k)),
				  "list's %s differs from info's", *k);
		cr_assert_eq(json_is_true(json_object_get(e, "autostart")), autostart);
		cr_assert(json_equal(json_object_get(json_object_get(e, "monitor"), "state"),
				     json_object_get(json_object_get(info, "monitor"), "state")));
		/* since_s comes from the clock on every call. */
		s = json_real_value(json_object_get(json_object_get(e, "monitor"), "since_s"));
		cr_assert_geq(s, *since);
		*since = s;
		json_decref(r);

		r = dt_call_ok(c, "stats", NULL);
		e = json_array_get(json_object_get(r, "domains"), 0);
		cr_assert_str_eq(json_string_value(json_object_get(e, "name")), name);
		cr_assert_str_eq(state_of(e), state);
		cr_assert(json_equal(json_object_get(json_object_get(e, "monitor"), "state"),
				     json_object_get(json_object_get(info, "monitor"), "state")));
		json_decref(r);
	}
	json_decref(info);
}

Test(lifecycle, list_and_stats_follow_each_change)
{
	struct dt_client c;
	double since = 0;

	if (!have_qemu())
		cr_skip_test("no qemu-system-x86_64");
	dt_start(&dd, NULL);
	dt_connect(&c, dd.rw);
	json_decref(dt_call_ok(&c, "define", "{\"config\": {\"name\": \"seen1\", "
			       "\"machine\": \"none\"}}"));
	expect_entries(&c, "seen1", "shutoff", false, &since);
	json_decref(dt_call_ok(&c, "autostart", "{\"name\": \"seen1\", \"enable\": true}"));
	expect_entries(&c, "seen1", "shutoff", true, &since);
	json_decref(dt_call_ok(&c, "undefine", "{\"name\": \"seen1\"}"));

	json_decref(define_and_start(&c, "seen1"));
	since = 0;
	expect_entries(&c, "seen1", "running", false, &since);
	json_decref(dt_call_ok(&c, "suspend", "{\"name\": \"seen1\"}"));
	expect_entries(&c, "seen1", "paused", false, &since);
	json_decref(dt_call_ok(&c, "resume", "{\"name\": \"seen1\"}"));
	expect_entries(&c, "seen1", "running", false, &since);
	json_decref(dt_call_ok(&c, "destroy", "{\"name\": \"seen1\"}"));
	since = 0;
	expect_entries(&c, "seen1", "shutoff", false, &since);
	json_decref(dt_call_ok(&c, "undefine", "{\"name\": \"seen1\"}"));
	dt_close(&c);
	dt_stop(&dd);
}

Test(lifecycle, daemon_exit_leaves_the_vm_running)
{
	struct dt_client c;
	json_t *r;
	pid_t pid;

	if (!have_qemu())
		cr_skip_test("no qemu-system-x86_64");
	dt_start(&dd, NULL);
	dt_connect(&c, dd.rw);
	r = define_and_start(&c, "stay");
	pid = (pid_t)json_integer_value(json_object_get(r, "pid"));
	json_decref(r);
	if (pid <= 0) {
		r = dt_call_ok(&c, "info", "{\"name\": \"stay\"}");
		pid = (pid_t)json_integer_value(json_object_get(r, "pid"));
		json_decref(r);
	}
	cr_assert_gt(pid, 0);
	dt_close(&c);
	dt_stop(&dd);           /* SIGTERM: must exit 0 */
	usleep(200000);
	cr_assert_eq(kill(pid, 0), 0, "QEMU died with the daemon");
	kill(pid, SIGKILL);
	dt_stop(&dd);
}

/* corral-qmp-sim with n endpoints and extra flags; waits for "ready n". */
static void sim_start(int n, const char *const *faults)
{
	const char *bin = getenv("CORRAL_QMP_SIM");
	char count[16], ready[32];
	char *argv[32];
	int k = 0, out;

	cr_assert(bin && *bin, "CORRAL_QMP_SIM is not set");
	snprintf(sim_dir, sizeof(sim_dir), "/tmp/corrald-sim-XXXXXX");
	cr_assert_not_null(mkdtemp(sim_dir));
	snprintf(count, sizeof(count), "%d", n);
	argv[k++] = (char *)bin;
	argv[k++] = "--dir";
	argv[k++] = sim_dir;
	argv[k++] = "--count";
	argv[k++] = count;
	for (int i = 0; faults && faults[i]; i++)
		argv[k++] = (char *)faults[i];
	argv[k] = NULL;
	sim_pid = dt_spawn(argv, &out);
	snprintf(ready, sizeof(ready), "ready %d", n);
	dt_wait_line(out, ready);
	close(out);
}

/*
 * vm0 answers, vm1 and vm2 hang.  A query sent after a job on a hung
 * monitor is answered first; the job fails at its deadline; a client that
 * leaves with such a job in flight costs nothing.
 */
Test(lifecycle, attach_out_of_order_and_hung_monitor)
{
	static const char *const faults[] = { "--fault", "1-2:hang=always", NULL };
	struct dt_client c, leaver;
	struct rpc_msg *m;
	char params[512];
	uint32_t slow, fast;
	int64_t code;
	const char *text;
	size_t len;
	json_t *r;

	sim_start(3, faults);
	dt_start(&dd, NULL);
	dt_connect(&c, dd.rw);
	snprintf(params, sizeof(params), "{\"name\": \"vm0\", \"qmp_socket\": \"%s/vm0.qmp\"}",
		 sim_dir);
	r = dt_call_ok(&c, "attach", params);
	json_decref(r);
	r = dt_call_ok(&c, "info", "{\"name\": \"vm0\"}");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "monitor"),
							   "state")), "ok");
	json_decref(r);
	/* daemon.info counts the monitors by state: vm0's is the only one. */
	r = dt_call_ok(&c, "daemon.info", NULL);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "monitors"), "ok")), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "monitors"),
							"connecting")), 0);
	json_decref(r);

	snprintf(params, sizeof(params), "{\"name\": \"vm1\", \"qmp_socket\": \"%s/vm1.qmp\", "
		 "\"timeout_ms\": 2000}", sim_dir);
	slow = dt_send(&c, "attach", params);
	fast = dt_send(&c, "daemon.info", NULL);
	m = dt_expect_response(&c);
	cr_assert_eq(rpc_msg_id(m), fast, "the query waited behind the hung job");
	rpc_msg_free(m);
	m = dt_expect_response(&c);
	cr_assert_eq(rpc_msg_id(m), slow);
	cr_assert_eq(rpc_error_parse(rpc_msg_error(m), &code, &text, &len), 0);
	cr_assert(code == RPC_ERR_TIMEOUT || code == RPC_ERR_MONITOR_BROKEN,
		  "attach to a hung monitor: %d %.*s", (int)code, (int)len, text);
	rpc_msg_free(m);

	/* A client leaves while its job is in flight; the reply is dropped. */
	dt_connect(&leaver, dd.rw);
	snprintf(params, sizeof(params), "{\"name\": \"vm2\", \"qmp_socket\": \"%s/vm2.qmp\", "
		 "\"timeout_ms\": 1000}", sim_dir);
	dt_send(&leaver, "attach", params);
	usleep(100000);
	dt_close(&leaver);
	usleep(1500000);        /* past the job's deadline */
	r = dt_call_ok(&c, "info", "{\"name\": \"vm2\"}");
	cr_assert_geq(json_integer_value(json_object_get(json_object_get(r, "counters"),
							 "jobs_timeout")) +
		      json_integer_value(json_object_get(json_object_get(r, "counters"),
							 "jobs_failed")), 1);
	json_decref(r);
	r = dt_call_ok(&c, "daemon.info", NULL);
	cr_assert_eq(json_integer_value(json_object_get(r, "connections")), 1);
	json_decref(r);
	dt_close(&c);
	dt_stop(&dd);
}

/*
 * Hotplug and save/restore on a machine-none QEMU (no PCI bus, no guest):
 * a device_add that QEMU refuses leaves nothing behind (no block node, no
 * fd set), bad input is refused with what was wrong, and a save and a
 * restore go through fds.  The real guest's checks: tests/daemon/hotplug.py.
 */
Test(lifecycle, hotplug_refusals_and_save_restore_with_qemu)
{
	char dir[] = "/tmp/corral-hp-XXXXXX", img[160], state[160], p[512];
	struct dt_client c;
	json_t *r, *live;
	FILE *f;

	if (!have_qemu())
		cr_skip_test("no qemu-system-x86_64");
	cr_assert(mkdtemp(dir));
	snprintf(img, sizeof(img), "%s/a.img", dir);
	snprintf(state, sizeof(state), "%s/n1.state", dir);
	f = fopen(img, "w");
	cr_assert(f && ftruncate(fileno(f), 1 << 20) == 0);
	fclose(f);
	dt_start(&dd, NULL);
	dt_connect(&c, dd.rw);
	json_decref(dt_call_ok(&c, "define", "{\"config\": {\"name\": \"n0\", \"machine\": "
			       "\"none\"}}"));
	dt_call_err(&c, "attach-disk", "{\"name\": \"n0\", \"path\": \"/x.img\"}",
		    RPC_ERR_BAD_STATE, "persistent");
	dt_call_err(&c, "save", "{\"name\": \"n0\", \"path\": \"/tmp/x\"}", RPC_ERR_BAD_STATE,
		    "only a running or paused domain");
	json_decref(define_and_start(&c, "n1"));
	r = dt_call_ok(&c, "info", "{\"name\": \"n1\"}");
	live = json_object_get(r, "live");
	cr_assert(json_is_array(json_object_get(live, "disks")));
	cr_assert_eq(json_array_size(json_object_get(live, "disks")), 0);
	json_decref(r);
	dt_call_err(&c, "attach-disk", "{\"name\": \"n1\", \"path\": \"rel.img\"}",
		    RPC_ERR_INVALID_ARGUMENT, "absolute");
	dt_call_err(&c, "attach-disk", "{\"name\": \"n1\", \"path\": \"/nonexistent/x.img\"}",
		    RPC_ERR_INVALID_ARGUMENT, "No such file");
	dt_call_err(&c, "attach-disk", "{\"name\": \"n1\", \"path\": \"/x.img\", \"format\": "
		    "\"vmdk\"}", RPC_ERR_INVALID_ARGUMENT, "format");
	dt_call_err(&c, "detach-disk", "{\"name\": \"n1\", \"target\": \"vdq\"}",
		    RPC_ERR_INVALID_ARGUMENT, "no disk vdq");
	dt_call_err(&c, "detach-nic", "{\"name\": \"n1\", \"mac\": \"52:54:00:00:00:01\"}",
		    RPC_ERR_INVALID_ARGUMENT, "no NIC");
	dt_call_err(&c, "attach-nic", "{\"name\": \"n1\", \"mac\": \"ff:ff:ff:ff:ff:ff\"}",
		    RPC_ERR_INVALID_ARGUMENT, "MAC");
	/* No PCI bus: QEMU refuses the device, and what was made for it is undone. */
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "{\"name\": \"n1\", \"path\": \"%s\"}", img);
		dt_call_err(&c, "attach-disk", p, RPC_ERR_QEMU, "No 'PCI' bus");
	}
	r = dt_call_ok(&c, "qmp", "{\"name\": \"n1\", \"command\": "
		       "\"{\\\"execute\\\": \\\"query-named-block-nodes\\\"}\"}");
	cr_assert_eq(json_array_size(r), 0, "block nodes left behind");
	json_decref(r);
	r = dt_call_ok(&c, "qmp", "{\"name\": \"n1\", \"command\": "
		       "\"{\\\"execute\\\": \\\"query-fdsets\\\"}\"}");
	cr_assert_eq(json_array_size(r), 0, "fd sets left behind");
	json_decref(r);
	/* Save: shut off, reason saved; restore: running, reason restored. */
	snprintf(p, sizeof(p), "{\"name\": \"n1\", \"path\": \"%s\", \"timeout_ms\": 60000}",
		 state);
	r = dt_call_ok(&c, "save", p);
	cr_assert_str_eq(state_of(r), "shutoff");
	cr_assert_str_eq(json_string_value(json_object_get(r, "reason")), "saved");
	json_decref(r);
	r = dt_call_ok(&c, "info", "{\"name\": \"n1\"}");
	cr_assert(json_is_null(json_object_get(r, "live")));
	json_decref(r);
	r = dt_call_ok(&c, "restore", p);
	cr_assert_str_eq(state_of(r), "running");
	json_decref(r);
	r = dt_call_ok(&c, "info", "{\"name\": \"n1\"}");
	cr_assert_str_eq(json_string_value(json_object_get(r, "reason")), "restored");
	json_decref(r);
	/* A state file of n1 is not n0's. */
	snprintf(p, sizeof(p), "{\"name\": \"n0\", \"path\": \"%s\"}", state);
	dt_call_err(&c, "restore", p, RPC_ERR_INVALID_ARGUMENT, "not of 'n0'");
	json_decref(dt_call_ok(&c, "destroy", "{\"name\": \"n1\"}"));
	dt_close(&c);
	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	cr_assert_eq(system(p), 0);
}

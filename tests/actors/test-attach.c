/* SPDX-License-Identifier: MIT */
/*
 * attach, against the QMP simulator: what real QEMU cannot be made to do
 * (never answer the handshake, greet with garbage, send events before the
 * greeting), plus ACPI-style shutdown ending on the SHUTDOWN event, and
 * events reaching an event-bus subscriber.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "../qmp/helpers.h"
#include "actors/vm.h"
#include "vmfix.h"
#include "common/rcu.h"
#include "common/util.h"

static pid_t sim = -1;

static void setup(void)
{
	const char *simexe = getenv("CORRAL_QMP_SIM");
	char *argv[16];
	int out, i = 0;

	cr_assert_not_null(simexe, "CORRAL_QMP_SIM is not set");
	vmfix_setup();
	argv[i++] = (char *)simexe;
	argv[i++] = "--dir";
	argv[i++] = fx.dir;
	argv[i++] = "--count";
	argv[i++] = "5";
	argv[i++] = "--fault";
	argv[i++] = "1:hang=always";
	argv[i++] = "--fault";
	argv[i++] = "2:garbage=greeting";
	argv[i++] = "--fault";
	argv[i++] = "3:events-before-greeting=5";
	argv[i++] = "--fault";
	argv[i++] = "4:no-shutdown";
	argv[i] = NULL;
	sim = th_spawn(argv, &out);
	th_wait_line(out, "ready 5\n");
	close(out);
}

static void teardown(void)
{
	if (sim > 0)
		th_kill_wait(sim, SIGTERM);
	vmfix_teardown();
}

static struct domain *attach_cfg(json_t *cfg, int idx, uint64_t ms, int want_code)
{
	const char *name = json_string_value(json_object_get(cfg, "name"));
	json_t *args;
	char path[512], err[256];
	struct domain *d;
	struct dom_job *job;

	cr_assert_eq(vm_define_wait(fx.env, cfg, &d, err, sizeof(err)), 0, "%s", err);
	snprintf(path, sizeof(path), "%s/vm%d.qmp", fx.dir, idx);
	args = json_pack("{s:s}", "qmp_socket", path);
	job = vmfix_run(d, VM_OP_ATTACH, args, ms);
	json_decref(args);
	cr_assert_eq(job->code, want_code, "attach %s: %s", name, job->errmsg);
	dom_job_free(job);
	return d;
}

static struct domain *attach(const char *name, int idx, uint64_t ms, int want_code)
{
	json_t *cfg = json_pack("{s:s}", "name", name);
	struct domain *d = attach_cfg(cfg, idx, ms, want_code);

	json_decref(cfg);
	return d;
}

static struct completion got_event;

static void on_event(void *arg)
{
	completion_signal(&got_event);
}

static bool find_event(struct evbus_sub *sub, const char *name, uint64_t ms)
{
	uint64_t deadline = now_ns() + ms * NSEC_PER_MSEC;

	while (now_ns() < deadline) {
		const struct evbus_event *ev;

		crcu_read_lock();
		while ((ev = evbus_sub_next(fx.bus, sub))) {
			if (!strcmp(ev->event, name)) {
				crcu_read_unlock();
				return true;
			}
		}
		crcu_read_unlock();
		completion_wait(&got_event, 100 * NSEC_PER_MSEC);
		completion_init(&got_event);
	}
	return false;
}

Test(attach, drives_simulated_vm_and_forwards_events, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct evbus_sub *sub;
	struct domain *d;
	struct dom_job *job;

	completion_init(&got_event);
	struct evbus_listener *l;

	cr_assert_eq(evbus_listen(fx.bus, on_event, NULL, &l), 0);
	cr_assert_eq(evbus_subscribe(fx.bus, "sim0", &sub), 0);
	d = attach("sim0", 0, 10000, 0);
	vmfix_wait_state(d, DOM_RUNNING);

	dom_job_free(vmfix_run(d, VM_OP_SUSPEND, NULL, 10000));
	vmfix_wait_state(d, DOM_PAUSED);
	cr_assert(find_event(sub, "qemu.STOP", 10000), "STOP event not forwarded");
	dom_job_free(vmfix_run(d, VM_OP_RESUME, NULL, 10000));
	cr_assert(find_event(sub, "qemu.RESUME", 10000), "RESUME event not forwarded");

	/* ACPI shutdown: the job ends on the guest's SHUTDOWN event. */
	job = vmfix_run(d, VM_OP_SHUTDOWN, NULL, 10000);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	cr_assert(find_event(sub, "qemu.SHUTDOWN", 10000));
	/*
	 * The simulator then hangs up: it is not an emulator corral may kill,
	 * so its monitor is all corral follows, and that ends the domain.
	 */
	vmfix_wait_state(d, DOM_SHUTOFF);
	evbus_unsubscribe(fx.bus, sub);
	evbus_unlisten(fx.bus, l);
}

Test(attach, monitor_that_never_answers_fails_at_deadline, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *ok = attach("fine", 0, 10000, 0);
	uint64_t t0 = now_ns();
	struct domain *d = attach("mute", 1, 1000, DOM_ERR_TIMEOUT);

	cr_assert_geq(now_ns() - t0, 1000 * NSEC_PER_MSEC);
	cr_assert_eq(vmfix_snap(d).state, DOM_SHUTOFF);
	/* The other VM is unaffected. */
	dom_job_free(vmfix_run(ok, VM_OP_SUSPEND, NULL, 10000));
	vmfix_wait_state(ok, DOM_PAUSED);
}

Test(attach, garbage_greeting_breaks_only_that_monitor, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = attach("junk", 2, 10000, DOM_ERR_MONITOR);
	struct domain *e = attach("early", 3, 10000, 0);
	uint64_t events;

	cr_assert_eq(vmfix_snap(d).state, DOM_SHUTOFF);
	vmfix_wait_state(e, DOM_RUNNING);
	/* Events before the greeting were parsed and counted, not fatal. */
	for (int i = 0; i < 30000; i++) {
		events = vmfix_snap(e).events;
		if (events >= 5)
			break;
		usleep(1000);
	}
	cr_assert_geq(events, 5);
}

/*
 * reboot "acpi": a guest reboot is the guest's own power-off, which QEMU
 * (-no-shutdown, played by the simulator) holds instead of exiting; the
 * daemon resets and resumes it.  A shutdown then is meant: the daemon quits.
 */
Test(attach, guest_reboot_turns_power_off_into_reset, .init = setup, .fini = teardown,
     .timeout = 120)
{
	json_t *cfg = json_pack("{s:s, s:s}", "name", "acpi", "reboot", "acpi");
	struct evbus_sub *sub;
	struct domain *d;
	struct dom_job *job;

	completion_init(&got_event);
	struct evbus_listener *l;

	cr_assert_eq(evbus_listen(fx.bus, on_event, NULL, &l), 0);
	cr_assert_eq(evbus_subscribe(fx.bus, "acpi", &sub), 0);
	d = attach_cfg(cfg, 4, 10000, 0);
	json_decref(cfg);
	vmfix_wait_state(d, DOM_RUNNING);

	job = vmfix_run(d, VM_OP_REBOOT, NULL, 10000);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	cr_assert(find_event(sub, "qemu.SHUTDOWN", 10000), "no guest power-off");
	cr_assert(find_event(sub, "qemu.RESET", 10000), "no reset after the power-off");
	vmfix_wait_state(d, DOM_RUNNING);
	cr_assert_str_eq(vmfix_snap(d).reason, "rebooted");

	/* Now a real shutdown: QEMU would wait forever, so corral quits it. */
	job = vmfix_run(d, VM_OP_SHUTDOWN, NULL, 10000);
	cr_assert_eq(job->err, 0, "%s", job->errmsg);
	dom_job_free(job);
	vmfix_wait_state(d, DOM_SHUTOFF);
	cr_assert_str_eq(vmfix_snap(d).reason, "shutdown");
	evbus_unsubscribe(fx.bus, sub);
	evbus_unlisten(fx.bus, l);
}

/* The domain of that name, loaded again, runs with its monitor up, re-attached. */
static void assert_reattached(const char *name)
{
	struct domain *d;

	crcu_read_lock();
	d = reg_lookup_name_rcu(fx.reg, name);
	crcu_read_unlock();
	cr_assert_not_null(d, "%s was not loaded again", name);
	vmfix_wait_state(d, DOM_RUNNING);
	vmfix_wait_mon(d, DOM_MON_OK);
	cr_assert_str_eq(vmfix_snap(d).reason, "reattached");
}

/* An attached VM is found again by the next daemon too. */
Test(attach, attached_vm_is_reattached_after_restart, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = attach("adopted", 0, 10000, 0);
	char path[512];
	struct stat st;

	vmfix_wait_state(d, DOM_RUNNING);
	snprintf(path, sizeof(path), "%s/run/vms/adopted.json", fx.dir);
	cr_assert_eq(stat(path, &st), 0, "no runtime record for an attached VM");

	/* The daemon goes away; the simulated QEMU stays. */
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);

	cr_assert_eq(vm_env_load(fx.env, NULL, NULL, NULL), 1);
	assert_reattached("adopted");
}

struct reports {
	int not_record, other;
};

static void count_report(const char *path, const char *why, void *arg)
{
	struct reports *r = arg;

	if (strstr(why, "not a run record"))
		r->not_record++;
	else if (strstr(path, "/run/vms/"))
		r->other++;
}

/*
 * Run records are read on several threads, a batch at a time: among 40
 * broken ones (more than one thread's share) the good one is still
 * re-attached, each broken one is reported and removed, and one that
 * cannot be read (a directory) is reported and left alone.
 */
Test(attach, broken_run_records_among_many_are_removed, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = attach("amid", 0, 10000, 0);
	struct reports rep = { 0 };
	char path[512];
	struct stat st;

	vmfix_wait_state(d, DOM_RUNNING);
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);
	for (int i = 0; i < 40; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/run/vms/junk%02d.json", fx.dir, i);
		f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs(i % 2 ? "{\"version\": 1, \"name\": 7}" : "not json at all", f);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/run/vms/adir.json", fx.dir);
	cr_assert_eq(mkdir(path, 0700), 0);

	cr_assert_eq(vm_env_load(fx.env, count_report, &rep, NULL), 1);
	cr_assert_eq(rep.not_record, 40, "%d broken records reported", rep.not_record);
	cr_assert_eq(rep.other, 1, "the directory reported %d times", rep.other);
	cr_assert_eq(stat(path, &st), 0, "the unreadable one was removed");
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "%s/run/vms/junk%02d.json", fx.dir, i);
		cr_assert_eq(stat(path, &st), -1, "%s is still there", path);
	}
	assert_reattached("amid");
}

/* A QEMU that greets only once a command has come, or after 20 s of silence. */
struct quiet_qemu {
	int lfd;
	char first[160];        /* the line that came before the greeting ("": none) */
	pthread_t th;
};

static bool write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n <= 0)
			return false;
		s += n;
		len -= (size_t)n;
	}
	return true;
}

/* Each complete line in buf[0..*len) answered ({} but for query-status); the rest kept. */
static bool answer_lines(int fd, char *buf, size_t *len)
{
	char *nl;

	while ((nl = memchr(buf, '\n', *len))) {
		json_t *cmd = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
		const char *ex = json_string_value(json_object_get(cmd, "execute"));
		json_t *ret = ex && !strcmp(ex, "query-status") ?
			      json_pack("{s:s, s:b}", "status", "running", "running", 1) :
			      json_object();
		json_t *reply = json_pack("{s:o, s:O}", "return", ret, "id",
					  json_object_get(cmd, "id"));
		char *text = json_dumps(reply, JSON_COMPACT);
		bool ok = text && write_all(fd, text, strlen(text)) && write_all(fd, "\r\n", 2);

		free(text);
		json_decref(reply);
		json_decref(cmd);
		if (!ok)
			return false;
		*len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *len);
	}
	return true;
}

static void *quiet_qemu_main(void *arg)
{
	static const char greeting[] = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
		"\"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";
	struct quiet_qemu *q = arg;
	char buf[8192];
	size_t len = 0;
	int fd = accept(q->lfd, NULL, NULL);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (fd < 0)
		return NULL;
	while (!memchr(buf, '\n', len) && len < sizeof(buf) && poll(&p, 1, 20000) == 1) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n <= 0)
			break;
		len += (size_t)n;
	}
	snprintf(q->first, sizeof(q->first), "%.*s", (int)strcspn(buf, "\r\n"),
		 len ? buf : "");
	if (len && !memchr(buf, '\n', len))
		len = 0;
	if (write_all(fd, greeting, sizeof(greeting) - 1)) {
		for (;;) {
			ssize_t n;

			if (!answer_lines(fd, buf, &len) || len == sizeof(buf))
				break;
			n = read(fd, buf + len, sizeof(buf) - len);
			if (n <= 0)
				break;
			len += (size_t)n;
		}
	}
	close(fd);
	return NULL;
}

/*
 * The handshake does not wait for the greeting: qmp_capabilities is on
 * its way as soon as the monitor connects (QMP reads it once it has
 * greeted), and the monitor comes up all the same.
 */
Test(attach, capabilities_go_out_before_the_greeting, .init = setup, .fini = teardown,
     .timeout = 120)
{
	static struct quiet_qemu q;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	json_t *cfg = json_pack("{s:s}", "name", "quiet"), *args;
	struct dom_job *job;
	struct domain *d;
	char err[256];

	cr_assert_lt((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%.*s/quiet.qmp",
				      (int)(sizeof(a.sun_path) - 11), fx.dir), sizeof(a.sun_path));
	q.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(q.lfd, 0);
	cr_assert_eq(bind(q.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(q.lfd, 1), 0);
	cr_assert_eq(pthread_create(&q.th, NULL, quiet_qemu_main, &q), 0);

	cr_assert_eq(vm_define_wait(fx.env, cfg, &d, err, sizeof(err)), 0, "%s", err);
	json_decref(cfg);
	args = json_pack("{s:s}", "qmp_socket", a.sun_path);
	job = vmfix_run(d, VM_OP_ATTACH, args, 30000);
	json_decref(args);
	cr_assert_eq(job->err, 0, "attach: %s", job->errmsg);
	dom_job_free(job);
	vmfix_wait_mon(d, DOM_MON_OK);
	cr_assert(strstr(q.first, "\"qmp_capabilities\""),
		  "before the greeting QEMU got '%s', not qmp_capabilities", q.first);

	/* The monitor closes with its domain; the fake then sees EOF. */
	cr_assert_eq(reg_del(fx.reg, d), 0);
	actor_stop(dom_actor(d));
	rt_quiesce(fx.rt, 10 * NSEC_PER_SEC);
	cr_assert_eq(pthread_join(q.th, NULL), 0);
	close(q.lfd);
}

static uint64_t snap_seq(struct domain *d)
{
	uint64_t seq;

	crcu_read_lock();
	seq = dom_snap_rcu(d)->seq;
	crcu_read_unlock();
	return seq;
}

/*
 * The simulator writes a stop's STOP event and its reply together; the
 * domain handles both in one turn and publishes one snapshot for them: a
 * suspend or resume costs two (the job taking the domain, then its end),
 * where each message used to publish its own (three).
 */
Test(attach, an_event_and_its_reply_publish_one_snapshot, .init = setup, .fini = teardown,
     .timeout = 120)
{
	struct domain *d = attach("sim0", 0, 10000, 0);
	uint64_t before, after;
	const int jobs = 200;

	vmfix_wait_state(d, DOM_RUNNING);
	vmfix_wait_mon(d, DOM_MON_OK);
	before = snap_seq(d);
	for (int i = 0; i < jobs / 2; i++) {
		vmfix_run_ok(d, VM_OP_SUSPEND, NULL, 10000);
		vmfix_run_ok(d, VM_OP_RESUME, NULL, 10000);
	}
	after = snap_seq(d);
	cr_assert_leq(after - before, jobs * 5 / 2, "%d jobs published %" PRIu64 " snapshots",
		      jobs, after - before);
	cr_assert_geq(after - before, jobs * 2, "each job is seen taking the domain and ending");
	cr_assert_eq(vmfix_snap(d).state, DOM_RUNNING);
}

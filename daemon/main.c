/* SPDX-License-Identifier: MIT */
/*
 * corrald: the corral daemon.  Sets up the runtime, the ioloop, the registry,
 * the event bus, the VM layer and the RPC server, then waits for SIGTERM or
 * SIGINT on a signalfd and takes it all down again.  Running VMs are left alone: QEMU runs in its own session and
 * outlives the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/actor.h"
#include "actors/domain.h"
#include "actors/evbus.h"
#include "actors/vm.h"
#include "common/cgroup.h"
#include "common/crash.h"
#include "common/creds.h"
#include "common/durable.h"
#include "common/ioloop.h"
#include "common/offload.h"
#include "common/rcu.h"
#include "common/util.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/server.h"
#include "daemon/service.h"

#ifndef CORRAL_VERSION
#define CORRAL_VERSION "unknown"
#endif

#define QUIESCE_NS (5 * NSEC_PER_SEC)

static int sig_fd = -1;

static void on_sigpipe(int sig)
{
	/*
	 * A handler rather than SIG_IGN: ignored dispositions survive exec and
	 * QEMU would inherit them; handled ones are reset.  Writes to a closed
	 * socket then fail with EPIPE, which every writer handles.
	 */
}

/*
 * SIGTERM, SIGINT and SIGHUP are blocked in every thread (set before any
 * thread starts; threads inherit the mask) and read from a signalfd by the
 * main thread, so no code runs in a signal handler and no other thread is
 * ever interrupted.  QEMU is spawned with an empty mask and default
 * dispositions (qemu/process.c), so it does not inherit the block.
 */
static int setup_signals(void)
{
	struct sigaction sa = { 0 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -EINVAL;
	sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_sigpipe;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -errno;
	return 0;
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dir(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	struct stat st;

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, 0700) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (!c)
				break;
		}
	}
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/*
 * The pid file, locked for the daemon's life: a second daemon on the same
 * runtime directory finds the lock taken.  Opened in the (checked)
 * runtime directory without following a link: a link planted there must
 * not make a root daemon overwrite another file.  Returns the fd or -errno.
 */
static int pidfile_open(int dirfd, const char *path)
{
	char buf[32];
	int fd = openat(dirfd, "corrald.pid", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;

		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (err == -EADDRINUSE)
			log_err("another corrald (pid %s) holds %s", buf[0] ? buf : "?", path);
		close(fd);
		return err;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

struct dom_list {
	struct domain **v;
	size_t n, cap;
};

static void report_bad_definition(const char *path, const char *why, void *arg)
{
	log_warn("skipping %s: %s", path, why);
}

static int collect_dom(struct domain *d, void *arg)
{
	struct dom_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct domain **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	dom_ref(d);
	l->v[l->n++] = d;
	return 0;
}

/*
 * Take every domain out of the registry and stop its actor: its jobs end
 * ("gone"), the VM layer lets go of the monitor and the pid watch, and QEMU
 * keeps running.  Main thread, at shutdown.
 */
static void stop_domains(struct registry *reg)
{
	struct dom_list l = { 0 };
	int r;

	do {
		l.n = 0;
		crcu_read_lock();
		r = reg_for_each_rcu(reg, collect_dom, &l);
		crcu_read_unlock();
		for (size_t i = 0; i < l.n; i++) {
			reg_del(reg, l.v[i]);
			/* Its jobs answer "unavailable": the daemon is going, not the domain. */
			dom_stop_for_shutdown(l.v[i]);
			dom_unref(l.v[i]);
		}
	} while (r < 0 && l.n);         /* out of memory: go again with what is left */
	free(l.v);
}

/*
 * Who QEMU runs as: 1 and *ret for another user (root daemon), 0 for the
 * daemon's own user, -1 with the reason when the configured user cannot be
 * used (starts then fail saying so; the daemon still serves).
 */
static int qemu_identity(const struct dconf *conf, struct creds *ret, char *why, size_t len)
{
	struct passwd *pw;
	gid_t groups[CREDS_GROUPS_MAX];
	int n = CREDS_GROUPS_MAX;

	if (!conf->qemu_user || (getuid() == 0 && !strcmp(conf->qemu_user, "root")))
		return 0;
	pw = getpwnam(conf->qemu_user);
	if (!pw) {
		snprintf(why, len, "qemu_user '%s' does not exist: create it (useradd --system "
			 "--no-create-home --shell /usr/sbin/nologin %s) or set qemu_user; "
			 "no VM can start until then", conf->qemu_user, conf->qemu_user);
		return -1;
	}
	if (geteuid() != 0) {
		if (pw->pw_uid == geteuid())
			return 0;
		snprintf(why, len, "qemu_user '%s': only a daemon running as root can run QEMU "
			 "as another user", conf->qemu_user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(why, len, "qemu_user '%s' is root: say 'root' to mean it",
			 conf->qemu_user);
		return -1;
	}
	if (access("/usr/bin/setpriv", X_OK) < 0) {
		snprintf(why, len, "/usr/bin/setpriv (util-linux) is missing: QEMU cannot be "
			 "started as '%s'", conf->qemu_user);
		return -1;
	}
	memset(ret, 0, sizeof(*ret));
	ret->uid = pw->pw_uid;
	ret->gid = pw->pw_gid;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0 && n > 0) {
		memcpy(ret->groups, groups, (size_t)n * sizeof(gid_t));
		ret->ngroups = (uint32_t)n;
	}
	return 1;
}

/*
 * An autostart's start ended (a runtime worker, on the domain's actor, or
 * the thread that dropped it): say how in the log.  Must not block: the
 * log thread writes the line.
 */
static void autostart_done(struct dom_job *job, void *arg)
{
	const char *name = job->dom ? dom_name(job->dom) : "?";
	const char *skipped = json_string_value(json_object_get(job->result, "skipped"));

	if (job->err)
		log_warn("autostart: domain '%s' did not start: %s", name,
			 job->errmsg[0] ? job->errmsg : strerror(-job->err));
	else if (skipped)
		log_info("autostart: domain '%s' left as it is: %s", name, skipped);
	else
		log_info("autostart: domain '%s' started (pid %" JSON_INTEGER_FORMAT ")", name,
			 json_integer_value(json_object_get(job->result, "pid")));
	dom_job_free(job);
}

/*
 * Start the domains marked autostart, now that every QEMU still running is
 * back in its domain: all submitted at once, none awaited, so they start in
 * parallel while the server answers.  Main thread, serving.
 */
static void autostart(struct vm_env *env, const struct dconf *conf)
{
	int n;

	if (conf->no_autostart) {
		log_info("autostart: skipped (--no-autostart)");
		return;
	}
	n = vm_autostart_submit_all(env, conf->default_timeout_ms * NSEC_PER_MSEC,
				    autostart_done, NULL);
	if (n < 0)
		log_err("autostart: out of memory: some marked domains were not started");
	else if (n > 0)
		log_info("autostart: starting %d domain%s", n, n == 1 ? "" : "s");
}

/* One fd per client and one or two per VM: take what the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open files limit: %s", strerror(errno));
	}
}

static int stop_signal;          /* main thread: SIGTERM/SIGINT seen while starting */

/*
 * Read what the signalfd holds, without waiting: SIGTERM or SIGINT (the
 * number), 0 when none, -1 when the signalfd broke.  SIGHUP is logged and
 * ignored.
 */
static int poll_signal(void)
{
	struct signalfd_siginfo si;

	for (;;) {
		ssize_t n = read(sig_fd, &si, sizeof(si));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n != sizeof(si))
			return -1;
		if (si.ssi_signo == SIGHUP) {
			log_info("SIGHUP ignored (no configuration reload)");
			continue;
		}
		return (int)si.ssi_signo;
	}
}

/* Asked between definitions at start-up: SIGTERM is honoured at any time. */
static bool stop_requested(void *arg)
{
	if (!stop_signal)
		stop_signal = poll_signal();
	return stop_signal != 0;
}

/*
 * Block until SIGTERM or SIGINT; SIGHUP is logged and ignored.  Meanwhile
 * tick the watchdog (if any) every period, however many signals arrive.
 */
static int wait_for_signal(struct svc_watchdog *wd)
{
	struct pollfd pfd = { .fd = sig_fd, .events = POLLIN };
	uint64_t next = wd ? now_ns() : 0;
	int sig;

	if (stop_signal)
		return stop_signal;
	for (;;) {
		int timeout = -1;

		sig = poll_signal();
		if (sig)
			return sig;
		if (wd) {
			uint64_t now = now_ns();

			if (now >= next) {
				svc_watchdog_tick(wd);
				next = now + svc_watchdog_period_ns(wd);
			}
			timeout = (int)((next - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC);
		}
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
			return -1;
	}
}

int main(int argc, char **argv)
{
	struct dconf conf;
	char err[1024], *pidpath = NULL;
	struct rt *rt = NULL;
	struct ioloop *io = NULL;
	struct registry *reg = NULL;
	struct evbus *bus = NULL;
	struct offload *off = NULL;
	struct cg *cg = NULL;
	char qemu_problem[256] = "";
	struct vm_env *env = NULL;
	struct server *srv = NULL;
	struct metrics *metrics = NULL;
	struct server_opts so = { 0 };
	struct svc_watchdog *wd = NULL;
	int passed_rw = -1, passed_ro = -1;
	int pidfd = -1, run_lock_fd = -1, state_lock_fd = -1, r, sig, status = 1;

	err[0] = '\0';
	if (dconf_load(&conf, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "corrald: %s\n(see corrald --help)\n", err);
		dconf_fini(&conf);
		return 2;
	}
	if (conf.help) {
		dconf_usage(stdout);
		dconf_fini(&conf);
		return 0;
	}
	if (conf.version) {
		printf("corrald %s\n", CORRAL_VERSION);
		dconf_fini(&conf);
		return 0;
	}
	if (conf.dump_man) {
		if (dconf_man(stdout, conf.dump_man, CORRAL_VERSION, server_dump_api_man) < 0) {
			fprintf(stderr, "corrald: no man page '%s' (corrald.8, corral.conf.5)\n",
				conf.dump_man);
			dconf_fini(&conf);
			return 2;
		}
		dconf_fini(&conf);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (conf.dump_api_md) {
		server_dump_api_md(stdout);
		dconf_fini(&conf);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	log_set_level((enum log_level)conf.log_level);
	crash_init();
	/* Before any thread: it edits the environment. */
	if (svc_take_sockets(&passed_rw, &passed_ro, err, sizeof(err)) < 0) {
		log_err("%s", err);
		dconf_fini(&conf);
		return 1;
	}
	if (svc_notify_expected() && !svc_notify_supported())
		log_warn("the service manager waits for a readiness notification (NOTIFY_SOCKET), "
			 "but this corrald was built without libsystemd: use Type=exec, or "
			 "rebuild with libsystemd-dev installed (meson -Dsystemd=enabled)");
	urcu_memb_register_thread();
	raise_nofile();

	if ((r = make_dir(conf.runtime_dir)) < 0 || (r = make_dir(conf.state_dir)) < 0) {
		log_err("cannot create %s or %s: %s", conf.runtime_dir, conf.state_dir,
			strerror(-r));
		goto out;
	}
	/*
	 * Ours alone, or nothing: a directory another user made first (under
	 * /tmp, say), or one others may write, could be swapped under us.
	 * Both are locked, so that two daemons never share either.
	 */
	for (int i = 0; i < 2; i++) {
		const char *what = i ? "state dir" : "runtime dir";
		const char *path = i ? conf.state_dir : conf.runtime_dir;
		int *fd = i ? &state_lock_fd : &run_lock_fd;

		*fd = durable_open_dir(path, what, 1, err, sizeof(err));
		if (*fd < 0) {
			log_err("%s", err);
			goto out;
		}
		if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
			log_err("%s %s is in use by another corrald", what, path);
			goto out;
		}
	}
	if (asprintf(&pidpath, "%s/corrald.pid", conf.runtime_dir) < 0) {
		pidpath = NULL;
		log_err("out of memory");
		goto out;
	}
	pidfd = pidfile_open(run_lock_fd, pidpath);
	if (pidfd < 0) {
		if (pidfd != -EADDRINUSE)
			log_err("pid file %s: %s", pidpath, strerror(-pidfd));
		free(pidpath);
		pidpath = NULL;         /* not ours: leave it */
		goto out;
	}
	if (conf.socket_group) {
		struct group *g = getgrnam(conf.socket_group);

		if (!g) {
			log_err("socket_group '%s': no such group", conf.socket_group);
			goto out;
		}
		so.group_set = true;
		so.group = g->gr_gid;
	}
	if ((r = setup_signals()) < 0) {
		log_err("signals: %s", strerror(-r));
		goto out;
	}

	/* Lines from every thread go through the log thread from here on. */
	if (log_start() < 0)
		log_warn("no log thread: writing log lines directly");
	r = cg_open(conf.cgroup_parent, &cg, err, sizeof(err));
	if (r < 0) {
		log_err("out of memory");
		goto out;
	}
	if (cg_mode(cg) == CG_NONE)
		log_warn("no control groups for QEMU: %s", err);
	else
		log_info("QEMUs in control groups under %s (cgroup %s)", conf.cgroup_parent,
			 cg_mode_name(cg));

	dom_set_waiting_max((uint32_t)conf.lim[LIM_WAITING_JOBS_MAX]);
	/* Threads from here on: they inherit the blocked signals. */
	if ((r = rt_new(conf.workers, &rt)) < 0 || (r = ioloop_new(conf.io_threads, &io)) < 0 ||
	    (r = reg_new(&reg)) < 0 ||
	    (r = evbus_new((unsigned)conf.lim[LIM_EVENT_QUEUE], &bus)) < 0 ||
	    (r = offload_new(0, &off)) < 0) {
		log_err("cannot start: %s", strerror(-r));
		goto out;
	}
	{
		struct vm_env_opts vo = {
			.rt = rt, .io = io, .reg = reg, .bus = bus, .off = off,
			.runtime_dir = conf.runtime_dir, .state_dir = conf.state_dir,
			.default_emulator = conf.emulator,
			.emulators = (const char *const *)conf.emulators,
			.bridges = (const char *const *)conf.bridges,
			.ovmf_code = conf.ovmf_code,
			.ovmf_vars = conf.ovmf_vars,
			.console_log_max = conf.console_log_max,
			.stats_interval_ns = conf.stats_interval_ms * NSEC_PER_MSEC,
			.mon_late_ns = conf.mon_threshold_ms * NSEC_PER_MSEC,
			.cg = cg,
		};

		r = qemu_identity(&conf, &vo.qemu_creds, qemu_problem, sizeof(qemu_problem));
		vo.qemu_run_as = r > 0;
		vo.qemu_user_problem = r < 0 ? qemu_problem : NULL;
		if (r < 0)
			log_err("%s", qemu_problem);
		else if (r > 0)
			log_info("QEMU runs as %s (uid %u, gid %u)", conf.qemu_user,
				 (unsigned)vo.qemu_creds.uid, (unsigned)vo.qemu_creds.gid);
		err[0] = '\0';
		r = vm_env_new(&vo, &env, err, sizeof(err));
		if (r < 0) {
			log_err("cannot start the VM layer: %s", err[0] ? err : strerror(-r));
			goto out;
		}
		/* The definitions saved by earlier runs, and every QEMU still running. */
		uint64_t t0 = now_ns();

		r = vm_env_load(env, report_bad_definition, NULL, stop_requested);
		if (r < 0)
			log_warn("cannot read %s/domains: %s", conf.state_dir, strerror(-r));
		else if (r > 0 && stop_signal)
			log_info("loaded %d domain definitions from %s/domains in %.3f s, then "
				 "stopped by a signal before looking for their QEMUs", r,
				 conf.state_dir, (double)(now_ns() - t0) / 1e9);
		else if (r > 0)
			log_info("loaded %d domain definitions from %s/domains and found their "
				 "QEMUs in %.3f s", r, conf.state_dir,
				 (double)(now_ns() - t0) / 1e9);
	}
	so.io = io;
	so.rt = rt;
	so.reg = reg;
	so.bus = bus;
	so.env = env;
	so.rw_path = conf.socket;
	so.ro_path = conf.ro_socket;
	so.rw_fd = passed_rw;
	so.ro_fd = passed_ro;
	passed_rw = passed_ro = -1;     /* the server's now, whatever happens */
	so.default_timeout_ms = conf.default_timeout_ms;
	so.client_stall_ms = conf.client_stall_ms;
	so.frame_max = conf.lim[LIM_FRAME_MAX];
	so.frame_timeout_ms = conf.lim[LIM_FRAME_TIMEOUT_MS];
	so.input_total = conf.lim[LIM_INPUT_TOTAL];
	so.output_max = conf.lim[LIM_OUTPUT_MAX];
	so.output_total = conf.lim[LIM_OUTPUT_TOTAL];
	so.inflight_max = (unsigned)conf.lim[LIM_INFLIGHT_MAX];
	so.subs_max = (unsigned)conf.lim[LIM_SUBS_MAX];
	so.stats_interval_ms = conf.stats_interval_ms;
	so.workers = rt_nworkers(rt);
	so.io_threads = conf.io_threads;
	r = server_new(&so, &srv, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		goto out;
	}
	if (conf.metrics_listen) {
		r = metrics_start(conf.metrics_listen, reg, &metrics, err, sizeof(err));
		if (r < 0) {
			log_err("%s", err);
			goto out;
		}
		log_info("serving metrics at http://%s/metrics", conf.metrics_listen);
	}
	log_info("corrald %s ready: pid %d, %u workers, %u I/O threads, %" PRIu64
		 " domains, state in %s", CORRAL_VERSION, (int)getpid(), so.workers,
		 conf.io_threads, reg_count(reg), conf.state_dir);
	/* The listeners are on the loop: every query is answered from here on. */
	{
		char line[128];

		snprintf(line, sizeof(line), "serving %" PRIu64 " domains", reg_count(reg));
		svc_notify_ready(line);
	}
	if (svc_watchdog_new(io, rt, &wd) < 0)
		log_err("watchdog: out of memory: no keep-alives will be sent");
	/* Serving already: queries answer while the marked domains start. */
	if (!stop_requested(NULL))
		autostart(env, &conf);

	sig = wait_for_signal(wd);
	log_info("%s: shutting down (running VMs are left running)",
		 sig > 0 ? strsignal(sig) : "signalfd broken");
	status = 0;

out:
	/*
	 * Order: no new clients and no new requests; then the domains (their
	 * jobs end "unavailable", and those answers reach the clients); the
	 * clients close once answered (bounded wait); then the runtime and the
	 * loops; then what they referred to.
	 */
	if (srv || wd)
		svc_notify_stopping();
	if (passed_rw >= 0)
		close(passed_rw);
	if (passed_ro >= 0)
		close(passed_ro);
	if (srv)
		server_stop_accepting(srv);
	metrics_stop(metrics);
	svc_watchdog_stop(wd);
	if (reg)
		stop_domains(reg);
	if (rt && rt_quiesce(rt, QUIESCE_NS) < 0)
		log_warn("actors still busy after %llu s; stopping anyway",
			 QUIESCE_NS / NSEC_PER_SEC);
	if (srv) {
		server_drain(srv);
		server_stop(srv);
	}
	/* File operations in flight finish (a spawn's record is on disk first). */
	offload_free(off);
	if (rt)
		rt_quiesce(rt, QUIESCE_NS);
	urcu_memb_barrier();
	rt_free(rt);
	ioloop_free(io);
	svc_watchdog_free(wd);
	urcu_memb_barrier();
	server_free(srv);
	urcu_memb_barrier();
	vm_env_free(env);
	cg_close(cg);
	evbus_free(bus);
	if (reg) {
		if (reg_count(reg))
			log_warn("%" PRIu64 " domains still registered at exit", reg_count(reg));
		else
			reg_free(reg);
	}
	if (pidfd >= 0) {
		unlinkat(run_lock_fd, "corrald.pid", 0);
		close(pidfd);
	}
	if (run_lock_fd >= 0)
		close(run_lock_fd);
	if (state_lock_fd >= 0)
		close(state_lock_fd);
	free(pidpath);
	if (sig_fd >= 0)
		close(sig_fd);
	dconf_fini(&conf);
	urcu_memb_unregister_thread();
	if (status == 0)
		log_info("bye");
	log_stop();
	return status;
}

/* SPDX-License-Identifier: MIT */
/*
 * QEMU-backed domains: define/undefine, lifecycle jobs, the process watch
 * (pidfd), and the vm layer's half of the monitor (events, readiness).
 *
 * Everything in struct vm belongs to the domain actor, except config_pub,
 * which readers load under RCU.
 */
#include "actors/vm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/monitor.h"
#include "common/rcu.h"
#include "common/util.h"
#include "qemu/config.h"
#include "qemu/qemu.h"

struct vm_env {
	struct rt *rt;
	struct ioloop *io;
	struct registry *reg;
	struct evbus *bus;
	char *runtime_dir;
	char *state_dir;
	char *default_emulator;
	/*
	 * "auto" resolved once (atomic pointer to a static string): probing
	 * KVM creates a VM, too slow to repeat inside every start's turn.
	 */
	const char *accel_auto;
};

/* Watches one QEMU process through a pidfd on the ioloop. */
struct pidwatch {
	struct io_watch watch;
	struct rcu_head rcu;
	struct domain *dom;             /* reference */
	int pidfd;
	pid_t pid;
	bool child;                     /* ours to reap */
	uint32_t fired;                 /* atomic */
};

struct vm {
	struct vm_env *env;
	/* RCU-published; replaced only by define (never while shared, today). */
	json_t *config_pub;
	/* Domain actor only. */
	struct qemu_config *cfg;
	struct monitor *mon;
	struct pidwatch *pw;
	pid_t pid;
	bool guest_shutdown;            /* SHUTDOWN event with guest=true seen */
	bool undefining;                /* atomic: set by vm_undefine before the stop */
	bool killing;                   /* we sent SIGKILL */
	char qmp_path[256];
};

enum vm_phase {
	VP_INIT = 0,
	VP_WAIT_MON,            /* the monitor's handshake */
	VP_WAIT_CMD,            /* a QMP command's reply */
	VP_WAIT_EXIT,           /* QEMU's exit (destroy) or the guest's SHUTDOWN */
	VP_WAIT_STATUS,         /* attach: query-status */
	VP_WAIT_GUEST,          /* guest reboot: the guest's power-off */
	VP_RESET,               /* guest reboot: system_reset sent */
	VP_CONT,                /* guest reboot: cont sent */
};

struct vm_job {
	enum vm_op op;
	json_t *args;
	enum vm_phase phase;
};

static const char *const op_names[VM_OP_COUNT] = {
	[VM_OP_START] = "start",     [VM_OP_SHUTDOWN] = "shutdown", [VM_OP_DESTROY] = "destroy",
	[VM_OP_SUSPEND] = "suspend", [VM_OP_RESUME] = "resume",     [VM_OP_RESET] = "reset",
	[VM_OP_REBOOT] = "reboot",   [VM_OP_QMP] = "qmp",           [VM_OP_ATTACH] = "attach",
};

const char *vm_op_name(enum vm_op op)
{
	return (unsigned)op < VM_OP_COUNT ? op_names[op] : "?";
}

int vm_op_from_name(const char *name)
{
	for (int i = 0; i < VM_OP_COUNT; i++)
		if (strcmp(op_names[i], name) == 0)
			return i;
	return -1;
}

static struct vm *to_vm(struct domain *d)
{
	return dom_ext(d);
}

static const struct dom_job_ops vm_ops[VM_OP_COUNT];

/* The vm_job of the job holding d, or NULL (no job, or not one of ours). */
static struct vm_job *held_vm_job(struct domain *d, struct dom_job **ret_job)
{
	struct dom_job *job = dom_holder(d);

	*ret_job = job;
	if (!job || job->ops < vm_ops || job->ops >= vm_ops + VM_OP_COUNT)
		return NULL;
	return job->priv;
}

/* ---- env ------------------------------------------------------------------ */

int vm_env_new(const struct vm_env_opts *o, struct vm_env **ret)
{
	struct vm_env *env = calloc(1, sizeof(*env));

	if (!env)
		return -ENOMEM;
	env->rt = o->rt;
	env->io = o->io;
	env->reg = o->reg;
	env->bus = o->bus;
	env->runtime_dir = strdup(o->runtime_dir);
	env->state_dir = strdup(o->state_dir);
	env->default_emulator = o->default_emulator ? strdup(o->default_emulator) : NULL;
	if (!env->runtime_dir || !env->state_dir) {
		vm_env_free(env);
		return -ENOMEM;
	}
	*ret = env;
	return 0;
}

void vm_env_free(struct vm_env *env)
{
	if (!env)
		return;
	free(env->runtime_dir);
	free(env->state_dir);
	free(env->default_emulator);
	free(env);
}

/* ---- define / undefine ------------------------------------------------------ */

static void vm_free_ext(void *p)
{
	struct vm *vm = p;

	/* The domain is being freed after a grace period: nobody reads config_pub. */
	json_decref(vm->config_pub);
	qemu_config_free(vm->cfg);
	free(vm);
}

static void drop_monitor(struct vm *vm);
static void pidwatch_release(struct pidwatch *pw);

/*
 * The domain actor stops (undefine, daemon shutdown): let go of what refers
 * back to it.  QEMU itself is left alone: stopping corral never touches a
 * running VM.
 */
static void vm_on_stop(struct domain *d)
{
	struct vm *vm = to_vm(d);

	/*
	 * undefine checked the state from a snapshot; a start queued just
	 * before may have launched QEMU since.  Destroy it rather than leave an
	 * orphan nobody manages.  (A daemon shutdown leaves VMs running.)
	 */
	if (__atomic_load_n(&vm->undefining, __ATOMIC_ACQUIRE) && vm->pid > 0)
		kill(vm->pid, SIGKILL);
	drop_monitor(vm);
	pidwatch_release(vm->pw);
	vm->pw = NULL;
}

const json_t *vm_config_rcu(struct domain *d)
{
	struct vm *vm = to_vm(d);

	return vm ? crcu_dereference(vm->config_pub) : NULL;
}

static void config_path(struct vm_env *env, const char *name, const char *suffix, char *buf,
			size_t len)
{
	snprintf(buf, len, "%s/domains/%s.json%s", env->state_dir, name, suffix);
}

/*
 * Write the definition: a temporary file renamed over the old one, so a
 * crash leaves one whole file.  One small write on the calling thread (no
 * fsync: a definition lost to a power cut is not worth a disk flush on
 * every define); the name rule keeps the path inside the directory.
 */
static int config_save(struct vm_env *env, const char *name, const json_t *cfg)
{
	char dir[512], tmp[600], path[600];
	int fd, r;

	snprintf(dir, sizeof(dir), "%s/domains", env->state_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	config_path(env, name, ".tmp", tmp, sizeof(tmp));
	config_path(env, name, "", path, sizeof(path));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = json_dumpfd(cfg, fd, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (close(fd) < 0 || r < 0) {
		unlink(tmp);
		return -EIO;
	}
	if (rename(tmp, path) < 0) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

/*
 * The runtime record RUNTIME_DIR/NAME.run.json: which QEMU runs the domain
 * ({"pid", "qmp_socket", "starttime"}), so that the next daemon can
 * re-attach to it instead of losing it.  Written when QEMU starts or is
 * attached (pid 0 when the attach named none), removed when it ends.
 */
static void run_path(struct vm_env *env, const char *name, const char *suffix, char *buf,
		     size_t len)
{
	snprintf(buf, len, "%s/%s.run.json%s", env->runtime_dir, name, suffix);
}

static unsigned long long proc_starttime(pid_t pid);

static void run_record_save(struct vm_env *env, struct domain *d, pid_t pid, const char *qmp)
{
	char tmp[600], path[600];
	json_t *rec;
	int fd, r;

	rec = json_pack("{s:I, s:s, s:I}", "pid", (json_int_t)pid, "qmp_socket", qmp,
			"starttime", (json_int_t)(pid ? proc_starttime(pid) : 0));
	run_path(env, dom_name(d), ".tmp", tmp, sizeof(tmp));
	run_path(env, dom_name(d), "", path, sizeof(path));
	fd = rec ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	if (fd >= 0) {
		r = json_dumpfd(rec, fd, JSON_COMPACT);
		if (close(fd) < 0 || r < 0 || rename(tmp, path) < 0)
			unlink(tmp);
	}
	json_decref(rec);
}

static void run_record_drop(struct vm_env *env, const char *name)
{
	char path[600];

	run_path(env, name, "", path, sizeof(path));
	unlink(path);
}

/*
 * The start time of pid in clock ticks since boot (/proc/PID/stat, field
 * 22), or 0.  A pid can be reused; a pid and its start time together name
 * one process.
 */
static unsigned long long proc_starttime(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long t = 0;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* After "pid (comm) ": the comm may hold spaces, so skip to its last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* Fields 3..21 follow; the start time is the 20th after ")". */
	for (int field = 0; field < 20 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		t = strtoull(p + 1, NULL, 10);
	return t;
}

static void reattach_done(struct dom_job *job, void *arg)
{
	struct vm *vm = to_vm(job->dom);

	/* Nothing answered at the recorded socket: the VM is gone. */
	if (job->err)
		run_record_drop(vm->env, dom_name(job->dom));
	dom_job_free(job);
}

/* A domain loaded at start-up whose QEMU may still run: attach to it. */
static void reattach(struct vm_env *env, struct domain *d,
		     void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	char path[600], err[256];
	const char *qmp;
	struct dom_job *job;
	json_t *rec, *args;
	json_int_t pid, started;

	run_path(env, dom_name(d), "", path, sizeof(path));
	rec = json_load_file(path, 0, NULL);
	if (!rec)
		return;                 /* it was not running */
	pid = json_integer_value(json_object_get(rec, "pid"));
	qmp = json_string_value(json_object_get(rec, "qmp_socket"));
	started = json_integer_value(json_object_get(rec, "starttime"));
	/*
	 * With a pid, it must still name the same process; without one (an
	 * attach that gave none), the socket answering is the only proof.
	 */
	if (pid < 0 || pid > INT32_MAX || !qmp ||
	    (pid && (!started || proc_starttime((pid_t)pid) != (unsigned long long)started))) {
		/* Its QEMU ended while no daemon watched. */
		unlink(path);
		json_decref(rec);
		return;
	}
	args = pid ? json_pack("{s:s, s:I}", "qmp_socket", qmp, "pid", pid) :
		     json_pack("{s:s}", "qmp_socket", qmp);
	if (!args || vm_job_new(VM_OP_ATTACH, args, 30 * NSEC_PER_SEC, reattach_done, NULL, &job,
				err, sizeof(err)) < 0) {
		if (report)
			report(path, "cannot re-attach: out of memory", arg);
	} else if (vm_submit(d, job) < 0) {
		dom_job_free(job);
	}
	json_decref(args);
	json_decref(rec);
}

static int vm_define_one(struct vm_env *env, json_t *config, bool persist, struct domain **ret,
			 char *errbuf, size_t errlen);

int vm_define(struct vm_env *env, json_t *config, struct domain **ret, char *errbuf,
	      size_t errlen)
{
	return vm_define_one(env, config, true, ret, errbuf, errlen);
}

int vm_env_load(struct vm_env *env,
		void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	char dir[512], path[1024], err[512];
	struct domain *d;
	struct dirent *de;
	int n = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/domains", env->state_dir);
	dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dp))) {
		size_t len = strlen(de->d_name);
		json_error_t jerr;
		json_t *cfg;

		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;       /* ., .., leftover .json.tmp files */
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (!cfg) {
			if (report)
				report(path, jerr.text, arg);
			continue;
		}
		if (vm_define_one(env, cfg, false, &d, err, sizeof(err)) < 0) {
			if (report)
				report(path, err, arg);
		} else {
			reattach(env, d, report, arg);
			n++;
		}
		json_decref(cfg);
	}
	closedir(dp);
	return n;
}

static int vm_define_one(struct vm_env *env, json_t *config, bool persist, struct domain **ret,
			 char *errbuf, size_t errlen)
{
	struct qemu_config *cfg = NULL;
	struct domain *d;
	uint8_t uuid[16];
	const char *uuid_txt;
	struct vm *vm;
	char txt[37];
	int r;

	if (env->default_emulator && json_is_object(config) &&
	    !json_object_get(config, "emulator")) {
		/* The daemon's configured emulator, for configs that name none. */
		json_t *copy = json_copy(config);

		if (!copy || json_object_set_new(copy, "emulator",
						 json_string(env->default_emulator)) < 0) {
			json_decref(copy);
			snprintf(errbuf, errlen, "out of memory");
			return -ENOMEM;
		}
		r = qemu_config_from_json(copy, &cfg, errbuf, errlen);
		json_decref(copy);
	} else {
		r = qemu_config_from_json(config, &cfg, errbuf, errlen);
	}
	if (r < 0)
		return r;
	uuid_txt = qemu_config_uuid(cfg);
	if (uuid_txt && uuid_parse(uuid_txt, uuid) < 0) {
		snprintf(errbuf, errlen, "field 'uuid': not a UUID");
		qemu_config_free(cfg);
		return -EINVAL;
	}
	r = dom_new(env->rt, qemu_config_name(cfg), uuid_txt ? uuid : NULL, &d, errbuf, errlen);
	if (r < 0) {
		qemu_config_free(cfg);
		return r;
	}
	uuid_format(dom_uuid(d), txt);
	qemu_config_set_uuid(cfg, txt);
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		qemu_config_free(cfg);
		actor_stop(dom_actor(d));
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	vm->env = env;
	vm->cfg = cfg;
	vm->config_pub = qemu_config_to_json(cfg);
	/* Not yet shared: plain stores, published by reg_add's ordering. */
	dom_set_ext(d, vm, vm_on_stop, vm_free_ext);
	r = reg_add(env->reg, d);
	if (r < 0) {
		snprintf(errbuf, errlen, "domain '%s' already exists (name or UUID taken)",
			 qemu_config_name(cfg));
		actor_stop(dom_actor(d));
		return r;
	}
	if (persist) {
		r = config_save(env, dom_name(d), vm->config_pub);
		if (r < 0) {
			snprintf(errbuf, errlen, "cannot save domain '%s' under %s/domains: %s",
				 dom_name(d), env->state_dir, strerror(-r));
			reg_del(env->reg, d);
			actor_stop(dom_actor(d));
			return r;
		}
	}
	evbus_publish(env->bus, dom_name(d), "defined", NULL);
	if (ret)
		*ret = d;
	return 0;
}

int vm_undefine(struct vm_env *env, struct domain *d, char *errbuf, size_t errlen)
{
	const struct dom_snapshot *s;
	enum dom_state st;
	uint64_t job;
	int r;

	crcu_read_lock();
	s = dom_snap_rcu(d);
	st = s->state;
	job = s->job.id;
	crcu_read_unlock();
	if ((st != DOM_SHUTOFF && st != DOM_CRASHED) || job) {
		snprintf(errbuf, errlen, "domain '%s' is %s%s: destroy it first", dom_name(d),
			 dom_state_name(st), job ? " with a job running" : "");
		return -EBUSY;
	}
	r = reg_del(env->reg, d);
	if (r < 0) {
		snprintf(errbuf, errlen, "no such domain '%s'", dom_name(d));
		return r;
	}
	{
		char path[600];

		config_path(env, dom_name(d), "", path, sizeof(path));
		unlink(path);   /* ENOENT: never saved (a test env); nothing to undo */
	}
	evbus_publish(env->bus, dom_name(d), "undefined", NULL);
	__atomic_store_n(&to_vm(d)->undefining, true, __ATOMIC_RELEASE);
	actor_stop(dom_actor(d));
	return 0;
}

/* ---- helpers on the domain actor -------------------------------------------- */

static void lifecycle(struct domain *d, enum dom_state st, const char *reason)
{
	struct vm *vm = to_vm(d);

	dom_set_state(d, st, reason);
	evbus_publish(vm->env->bus, dom_name(d), "lifecycle",
		      json_pack("{s:s, s:s}", "state", dom_state_name(st), "reason", reason));
}

static void drop_monitor(struct vm *vm)
{
	if (vm->mon) {
		mon_close(vm->mon);
		vm->mon = NULL;
	}
}

static void pidwatch_free_rcu_cb(struct rcu_head *head)
{
	struct pidwatch *pw = container_of(head, struct pidwatch, rcu);

	crcu_reclaim_begin(head);
	dom_unref(pw->dom);
	free(pw);
}

static void pidwatch_release(struct pidwatch *pw)
{
	if (!pw)
		return;
	io_watch_del(&pw->watch);
	close(pw->pidfd);
	/* The loop thread may still be inside our callback: free after a grace period. */
	crcu_call(&pw->rcu, pidwatch_free_rcu_cb);
}

/* How did it end?  Sets the state and returns a description. */
static void process_gone(struct domain *d, int wstatus, bool have_status)
{
	struct vm *vm = to_vm(d);
	struct dom_job *job;
	struct vm_job *vj = held_vm_job(d, &job);
	char why[128];
	enum dom_state st = DOM_SHUTOFF;
	const char *reason;

	if (vm->killing) {
		reason = "destroyed";
		snprintf(why, sizeof(why), "destroyed (killed by corral)");
	} else if (vm->guest_shutdown) {
		reason = "shutdown";
		snprintf(why, sizeof(why), "shut down by guest");
	} else if (!have_status) {
		reason = "exited";
		snprintf(why, sizeof(why), "exited (not our child: status unknown)");
	} else if (WIFSIGNALED(wstatus)) {
		st = DOM_CRASHED;
		reason = WTERMSIG(wstatus) == SIGKILL ? "killed" : "crashed";
		snprintf(why, sizeof(why), "%s by signal %d (%s)",
			 WTERMSIG(wstatus) == SIGKILL ? "killed" : "crashed", WTERMSIG(wstatus),
			 strsignal(WTERMSIG(wstatus)));
	} else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
		reason = "shutdown";
		snprintf(why, sizeof(why), "shut down by host");
	} else {
		st = DOM_CRASHED;
		reason = "crashed";
		snprintf(why, sizeof(why), "crashed: exit status %d",
			 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
	}
	drop_monitor(vm);
	pidwatch_release(vm->pw);
	vm->pw = NULL;
	vm->pid = 0;
	vm->killing = false;
	vm->guest_shutdown = false;
	if (vm->qmp_path[0])
		unlink(vm->qmp_path);
	run_record_drop(vm->env, dom_name(d));
	dom_set_pid(d, 0);
	dom_set_monitor(d, DOM_MON_NONE);
	lifecycle(d, st, reason);

	if (vj) {
		if (vj->op == VM_OP_DESTROY || vj->op == VM_OP_SHUTDOWN)
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state",
				       dom_state_name(st), "reason", reason), NULL);
		else
			dom_job_finish(d, job, -ECHILD, DOM_ERR_QEMU, NULL,
				       "domain '%s': QEMU %s during '%s'", dom_name(d), why,
				       job->ops->name);
	}
}

static void on_exit_call(struct domain *d, void *arg)
{
	struct pidwatch *pw = arg;
	struct vm *vm = to_vm(d);
	siginfo_t si = { 0 };
	int wstatus = 0;
	bool have = false;

	/* Only the current watch, and only once it has fired, can be news. */
	if (vm->pw != pw || !__atomic_load_n(&pw->fired, __ATOMIC_ACQUIRE))
		return;
	if (pw->child) {
		if (syscall(SYS_waitid, P_PIDFD, pw->pidfd, &si, WEXITED | WNOHANG, NULL) < 0 ||
		    si.si_pid != pw->pid)
			return;         /* not exited after all */
		have = true;
		if (si.si_code == CLD_EXITED)
			wstatus = (si.si_status & 0xff) << 8;
		else
			wstatus = si.si_status & 0x7f;
	}
	process_gone(d, wstatus, have);
}

/* Loop thread: the process exited (pidfd readable). */
static void pidwatch_cb(struct io_watch *w, uint32_t events)
{
	struct pidwatch *pw = container_of(w, struct pidwatch, watch);

	if (__atomic_exchange_n(&pw->fired, 1, __ATOMIC_ACQ_REL))
		return;
	dom_call(pw->dom, on_exit_call, pw, NULL);
}

static int watch_pid(struct domain *d, pid_t pid, bool child)
{
	struct vm *vm = to_vm(d);
	struct pidwatch *pw = calloc(1, sizeof(*pw));
	int fd, r;

	if (!pw)
		return -ENOMEM;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		r = -errno;
		free(pw);
		return r;
	}
	pw->pidfd = fd;
	pw->pid = pid;
	pw->child = child;
	pw->dom = d;
	dom_ref(d);
	vm->pw = pw;
	r = io_watch_add(vm->env->io, &pw->watch, fd, EPOLLIN | EPOLLONESHOT, pidwatch_cb);
	if (r < 0) {
		close(fd);
		dom_unref(d);
		free(pw);
		vm->pw = NULL;
	}
	return r;
}

/* ---- monitor notes ------------------------------------------------------------ */

static void job_monitor_ready(struct domain *d, struct dom_job *job);
static void job_cmd(struct domain *d, struct dom_job *job, const char *execute, json_t *args,
		    const char *raw);
static bool guest_reboot(struct vm *vm);

static void event_to_state(struct domain *d, const char *ev, json_t *data)
{
	struct vm *vm = to_vm(d);
	enum dom_state st = dom_state_actor(d);

	if (!strcmp(ev, "STOP")) {
		if (st == DOM_RUNNING)
			lifecycle(d, DOM_PAUSED, "paused");
	} else if (!strcmp(ev, "RESUME")) {
		if (st == DOM_PAUSED || st == DOM_PMSUSPENDED || st == DOM_STARTING)
			lifecycle(d, DOM_RUNNING, "unpaused");
	} else if (!strcmp(ev, "SHUTDOWN")) {
		json_t *g = json_object_get(data, "guest");

		vm->guest_shutdown = json_is_true(g);
		lifecycle(d, DOM_SHUTTING_DOWN, vm->guest_shutdown ? "guest" : "host");
	} else if (!strcmp(ev, "SUSPEND")) {
		lifecycle(d, DOM_PMSUSPENDED, "suspended by guest");
	} else if (!strcmp(ev, "WAKEUP")) {
		if (st == DOM_PMSUSPENDED)
			lifecycle(d, DOM_RUNNING, "woken up");
	} else if (!strcmp(ev, "GUEST_PANICKED")) {
		lifecycle(d, DOM_CRASHED, "panicked");
	}
}

static void on_note(struct domain *d, struct mon_note *n)
{
	struct vm *vm = to_vm(d);
	struct dom_job *job;
	struct vm_job *vj = held_vm_job(d, &job);

	if (n->mon != vm->mon)
		return;         /* from a monitor we already dropped */
	switch (n->kind) {
	case MON_NOTE_READY:
		dom_set_monitor(d, DOM_MON_OK);
		if (vj)
			job_monitor_ready(d, job);
		break;
	case MON_NOTE_STATE:
		dom_set_monitor(d, n->st);
		evbus_publish(vm->env->bus, dom_name(d), "monitor",
			      json_pack("{s:s}", "state", dom_mon_state_name(n->st)));
		break;
	case MON_NOTE_EVENT: {
		json_t *data = n->data ? json_deep_copy(n->data) : json_object();

		dom_count_event(d);
		event_to_state(d, n->event, n->data);
		json_object_set_new(data, "qemu_timestamp",
				    json_real((double)n->seconds + (double)n->micros / 1e6));
		evbus_publish(vm->env->bus, dom_name(d), n->event, data);
		if (strcmp(n->event, "SHUTDOWN") != 0)
			break;
		if (vj && vj->op == VM_OP_REBOOT && vj->phase == VP_WAIT_GUEST) {
			/* The guest powered off for our reboot: reset it and run it. */
			job_cmd(d, job, "system_reset", NULL, NULL);
			vj->phase = VP_RESET;
			break;
		}
		if (vm->mon && guest_reboot(vm))
			/* -no-shutdown keeps QEMU waiting: this power-off was meant. */
			mon_cmd(vm->mon, 0, "quit", NULL, NULL, now_ns() + 10 * NSEC_PER_SEC);
		if (vj && vj->op == VM_OP_SHUTDOWN)
			dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", "shutting-down"),
				       NULL);
		break;
	}
	case MON_NOTE_CLOSED:
		dom_set_monitor(d, DOM_MON_BROKEN);
		evbus_publish(vm->env->bus, dom_name(d), "monitor",
			      json_pack("{s:s, s:s}", "state", "broken", "reason", n->reason));
		drop_monitor(vm);
		if (vj && vj->phase == VP_WAIT_MON) {
			/* The handshake failed: the job waiting for it fails now. */
			if (vj->op == VM_OP_START && vm->pid) {
				vm->killing = true;
				kill(vm->pid, SIGKILL);
			}
			dom_job_finish(d, job, -EPIPE, DOM_ERR_MONITOR, NULL,
				       "domain '%s': QEMU's monitor failed: %s", dom_name(d),
				       n->reason);
		}
		/* Attached without a pid: the closed socket is all we will learn. */
		if (vm->pid == 0 && dom_state_actor(d) != DOM_SHUTOFF)
			process_gone(d, 0, false);
		break;
	}
}

/* ---- jobs ---------------------------------------------------------------------- */

static void vm_job_free_priv(void *p)
{
	struct vm_job *vj = p;

	if (!vj)
		return;
	json_decref(vj->args);
	free(vj);
}

static void fail(struct domain *d, struct dom_job *job, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct domain *d, struct dom_job *job, int code, const char *fmt, ...)
{
	char msg[DOM_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dom_job_finish(d, job, -EINVAL, code, NULL, "%s", msg);
}

/* reboot "acpi": QEMU runs with -no-shutdown and a reboot is a power-off + reset. */
static bool guest_reboot(struct vm *vm)
{
	return !strcmp(qemu_config_reboot(vm->cfg), "acpi");
}

static bool is_active(enum dom_state st)
{
	return st == DOM_RUNNING || st == DOM_PAUSED || st == DOM_STARTING ||
	       st == DOM_SHUTTING_DOWN || st == DOM_PMSUSPENDED;
}

/* Send a QMP command for job; the reply comes back as a step. */
static void job_cmd(struct domain *d, struct dom_job *job, const char *execute, json_t *args,
		    const char *raw)
{
	struct vm *vm = to_vm(d);
	struct vm_job *vj = job->priv;

	if (!vm->mon) {
		json_decref(args);
		fail(d, job, DOM_ERR_MONITOR, "domain '%s': no monitor connection to QEMU",
		     dom_name(d));
		return;
	}
	vj->phase = VP_WAIT_CMD;
	if (mon_cmd(vm->mon, job->id, execute, args, raw, job->deadline_ns) < 0)
		fail(d, job, DOM_ERR_MONITOR, "domain '%s': monitor is closed", dom_name(d));
}

static void start_qemu(struct domain *d, struct dom_job *job)
{
	struct vm *vm = to_vm(d);
	struct vm_env *env = vm->env;
	struct qemu_launch l = { 0 };
	struct qemu_spawn_io io = { 0 };
	char log_path[512], serial_path[512], uuid[37], err[512];
	const char *accel;
	char **argv = NULL;
	int lfd = -1, mfd = -1, r;
	pid_t pid;

	if (!strcmp(qemu_config_accel(vm->cfg), "auto") &&
	    (accel = __atomic_load_n(&env->accel_auto, __ATOMIC_ACQUIRE))) {
		r = 0;
	} else {
		r = qemu_accel_resolve(qemu_config_accel(vm->cfg), &accel, err, sizeof(err));
		if (r == 0 && !strcmp(qemu_config_accel(vm->cfg), "auto"))
			__atomic_store_n(&env->accel_auto, accel, __ATOMIC_RELEASE);
	}
	if (r < 0) {
		fail(d, job, DOM_ERR_INVALID, "domain '%s': %s", dom_name(d), err);
		return;
	}
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s/%s.qmp", env->runtime_dir, dom_name(d));
	snprintf(log_path, sizeof(log_path), "%s/%s.log", env->state_dir, dom_name(d));
	snprintf(serial_path, sizeof(serial_path), "%s/%s.console.log", env->state_dir,
		 dom_name(d));
	uuid_format(dom_uuid(d), uuid);

	r = qemu_qmp_listen(vm->qmp_path, &lfd);
	if (r < 0) {
		fail(d, job, DOM_ERR_FAILED, "domain '%s': cannot create QMP socket %s: %s",
		     dom_name(d), vm->qmp_path, strerror(-r));
		return;
	}
	l.accel = accel;
	l.qmp_fd = QEMU_CHILD_QMP_FD;
	l.serial_log = serial_path;
	l.uuid_str = uuid;
	if (qemu_argv_build(vm->cfg, &l, &argv, err, sizeof(err)) < 0) {
		close(lfd);
		fail(d, job, DOM_ERR_INVALID, "domain '%s': %s", dom_name(d), err);
		return;
	}
	io.name = dom_name(d);
	io.log_path = log_path;
	io.qmp_listen_fd = lfd;
	r = qemu_spawn(argv, &io, &pid, err, sizeof(err));
	qemu_argv_free(argv);
	if (r < 0) {
		close(lfd);
		fail(d, job, DOM_ERR_QEMU, "domain '%s': %s", dom_name(d), err);
		return;
	}
	/* QEMU holds the listening socket now; ours can go. */
	r = mon_connect_unix(vm->qmp_path, &mfd);
	close(lfd);
	vm->pid = pid;
	dom_set_pid(d, pid);
	run_record_save(env, d, pid, vm->qmp_path);
	lifecycle(d, DOM_STARTING, "starting");
	if (watch_pid(d, pid, true) < 0) {
		/* Without a watch we could never notice its exit: do not run it. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		vm->pid = 0;
		dom_set_pid(d, 0);
		if (mfd >= 0)
			close(mfd);
		lifecycle(d, DOM_SHUTOFF, "failed");
		fail(d, job, DOM_ERR_FAILED, "domain '%s': cannot watch the QEMU process",
		     dom_name(d));
		return;
	}
	if (r < 0 || mon_new(env->rt, env->io, d, mfd, on_note, job->deadline_ns, &vm->mon) < 0) {
		vm->killing = true;
		kill(pid, SIGKILL);
		fail(d, job, DOM_ERR_MONITOR, "domain '%s': cannot connect to QEMU's monitor: %s",
		     dom_name(d), strerror(r < 0 ? -r : ENOMEM));
		return;
	}
	dom_set_monitor(d, DOM_MON_CONNECTING);
	((struct vm_job *)job->priv)->phase = VP_WAIT_MON;
}

static void attach_qemu(struct domain *d, struct dom_job *job)
{
	struct vm *vm = to_vm(d);
	struct vm_job *vj = job->priv;
	const char *path = json_string_value(json_object_get(vj->args, "qmp_socket"));
	json_int_t pid = json_integer_value(json_object_get(vj->args, "pid"));
	int fd, r;

	if (!path || path[0] != '/') {
		fail(d, job, DOM_ERR_INVALID, "attach: 'qmp_socket' must be an absolute path");
		return;
	}
	if (pid < 0 || pid > INT32_MAX) {
		fail(d, job, DOM_ERR_INVALID, "attach: 'pid' out of range");
		return;
	}
	r = mon_connect_unix(path, &fd);
	if (r < 0) {
		fail(d, job, DOM_ERR_MONITOR, "domain '%s': cannot connect to %s: %s", dom_name(d),
		     path, strerror(-r));
		return;
	}
	{
		char own[sizeof(vm->qmp_path)];

		/* Re-attaching to a QEMU corral started: its socket is still ours. */
		snprintf(own, sizeof(own), "%s/%s.qmp", vm->env->runtime_dir, dom_name(d));
		if (strcmp(path, own) == 0)
			snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s", own);
		else
			vm->qmp_path[0] = '\0';        /* not ours to remove */
	}
	if (pid) {
		vm->pid = (pid_t)pid;
		dom_set_pid(d, vm->pid);
		if (watch_pid(d, vm->pid, false) < 0) {
			close(fd);
			vm->pid = 0;
			dom_set_pid(d, 0);
			fail(d, job, DOM_ERR_INVALID, "domain '%s': no process %" PRId64,
			     dom_name(d), (int64_t)pid);
			return;
		}
	}
	if (mon_new(vm->env->rt, vm->env->io, d, fd, on_note, job->deadline_ns, &vm->mon) < 0) {
		fail(d, job, DOM_ERR_MONITOR, "domain '%s': cannot watch the monitor", dom_name(d));
		return;
	}
	dom_set_monitor(d, DOM_MON_CONNECTING);
	vj->phase = VP_WAIT_MON;
}

static void vmj_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = to_vm(d);
	struct vm_job *vj = job->priv;
	enum dom_state st = dom_state_actor(d);
	const char *name = dom_name(d);

	switch (vj->op) {
	case VM_OP_START:
		if (is_active(st) || vm->pid) {
			fail(d, job, DOM_ERR_STATE, "domain '%s' is already %s", name,
			     dom_state_name(st));
			return;
		}
		start_qemu(d, job);
		return;
	case VM_OP_ATTACH:
		if (is_active(st) || vm->pid || vm->mon) {
			fail(d, job, DOM_ERR_STATE, "domain '%s' is already %s", name,
			     dom_state_name(st));
			return;
		}
		attach_qemu(d, job);
		return;
	case VM_OP_DESTROY:
		if (!vm->pid && !vm->mon) {
			fail(d, job, DOM_ERR_STATE, "domain '%s' is not running", name);
			return;
		}
		drop_monitor(vm);
		if (!vm->pid) {
			/* Attached without a pid: nothing to kill; forget it. */
			vm->killing = true;
			process_gone(d, 0, false);
			return;
		}
		vm->killing = true;
		/* SIGKILL works on a stopped process too: no cooperation needed. */
		kill(vm->pid, SIGKILL);
		vj->phase = VP_WAIT_EXIT;
		return;
	default:
		break;
	}

	if (!is_active(st)) {
		fail(d, job, DOM_ERR_STATE, "domain '%s' is not running (%s)", name,
		     dom_state_name(st));
		return;
	}
	switch (vj->op) {
	case VM_OP_SHUTDOWN:
		job_cmd(d, job, "system_powerdown", NULL, NULL);
		break;
	case VM_OP_SUSPEND:
		if (st == DOM_PAUSED) {
			fail(d, job, DOM_ERR_STATE, "domain '%s' is already paused", name);
			return;
		}
		job_cmd(d, job, "stop", NULL, NULL);
		break;
	case VM_OP_RESUME:
		if (st != DOM_PAUSED) {
			fail(d, job, DOM_ERR_STATE, "domain '%s' is not paused (%s)", name,
			     dom_state_name(st));
			return;
		}
		job_cmd(d, job, "cont", NULL, NULL);
		break;
	case VM_OP_REBOOT:
		if (guest_reboot(vm)) {
			if (st != DOM_RUNNING) {
				fail(d, job, DOM_ERR_STATE, "domain '%s' is %s: a guest reboot needs "
				     "a running guest", name, dom_state_name(st));
				return;
			}
			/* Ask the guest to power off; its SHUTDOWN turns into a reset. */
			job_cmd(d, job, "system_powerdown", NULL, NULL);
			break;
		}
		/* reboot "reset" is a hardware reset */
		__attribute__((fallthrough));
	case VM_OP_RESET:
		job_cmd(d, job, "system_reset", NULL, NULL);
		break;
	case VM_OP_QMP: {
		const char *cmd = json_string_value(json_object_get(vj->args, "command"));

		if (!cmd) {
			fail(d, job, DOM_ERR_INVALID, "qmp: 'command' must be a JSON string");
			return;
		}
		job_cmd(d, job, NULL, NULL, cmd);
		break;
	}
	default:
		BUG_ON(true);
	}
}

/* The monitor finished its handshake while job holds the domain. */
static void job_monitor_ready(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;

	if (!vj || vj->phase != VP_WAIT_MON)
		return;
	if (vj->op == VM_OP_START)
		job_cmd(d, job, "cont", NULL, NULL);
	else if (vj->op == VM_OP_ATTACH) {
		job_cmd(d, job, "query-status", NULL, NULL);
		vj->phase = VP_WAIT_STATUS;
	}
}

static const char *state_of_status(const char *status, enum dom_state *st)
{
	if (!status)
		return NULL;
	if (!strcmp(status, "running")) {
		*st = DOM_RUNNING;
		return "attached";
	}
	if (!strcmp(status, "suspended")) {
		*st = DOM_PMSUSPENDED;
		return "attached";
	}
	if (!strcmp(status, "guest-panicked")) {
		*st = DOM_CRASHED;
		return "panicked";
	}
	if (!strcmp(status, "shutdown")) {
		*st = DOM_SHUTTING_DOWN;
		return "attached";
	}
	*st = DOM_PAUSED;       /* paused, prelaunch, inmigrate, debug, ... */
	return "attached";
}

static void vmj_step(struct domain *d, struct dom_job *job, int err, json_t *data)
{
	struct vm *vm = to_vm(d);
	struct vm_job *vj = job->priv;
	const char *name = dom_name(d);
	enum vm_op op = vj->op;         /* job and vj are gone once finished */

	if (err) {
		const char *desc = json_string_value(json_object_get(data, "desc"));
		const char *reason = json_string_value(json_object_get(data, "reason"));

		if (err == -ETIMEDOUT)
			dom_job_finish(d, job, err, DOM_ERR_TIMEOUT, NULL,
				       "domain '%s': QMP command '%s' got no reply within %.1f s; "
				       "the monitor is unresponsive", name,
				       json_string_value(json_object_get(data, "execute")),
				       json_real_value(json_object_get(data, "waited_s")));
		else if (err == -EIO)
			dom_job_finish(d, job, err, DOM_ERR_QEMU, NULL,
				       "domain '%s': QEMU refused '%s': %s (%s)", name,
				       job->ops->name, desc ? desc : "?",
				       json_string_value(json_object_get(data, "class")));
		else if (err == -EINVAL)
			dom_job_finish(d, job, err, DOM_ERR_INVALID, NULL, "qmp: %s",
				       reason ? reason : "invalid command");
		else
			dom_job_finish(d, job, err, DOM_ERR_MONITOR, NULL, "domain '%s': %s", name,
				       reason ? reason : "monitor failed");
		json_decref(data);
		if (op == VM_OP_START && is_active(dom_state_actor(d)) && vm->pid) {
			/* A half-started VM is no use to anyone. */
			vm->killing = true;
			kill(vm->pid, SIGKILL);
		}
		return;
	}

	switch (op) {
	case VM_OP_START:
		lifecycle(d, DOM_RUNNING, "booted");
		dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:i}", "state", "running", "pid",
						       vm->pid), NULL);
		break;
	case VM_OP_ATTACH: {
		enum dom_state st = DOM_RUNNING;
		json_t *ret = json_object_get(data, "return");
		const char *reason = state_of_status(
			json_string_value(json_object_get(ret, "status")), &st);

		lifecycle(d, st, reason ? reason : "attached");
		/* Attached for good: the next daemon re-attaches (pid 0: none known). */
		run_record_save(vm->env, d, vm->pid,
				json_string_value(json_object_get(vj->args, "qmp_socket")));
		dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", dom_state_name(st)),
			       NULL);
		break;
	}
	case VM_OP_SHUTDOWN:
		/* Accepted: now wait for SHUTDOWN or the exit (or the deadline). */
		vj->phase = VP_WAIT_EXIT;
		break;
	case VM_OP_SUSPEND:
		lifecycle(d, DOM_PAUSED, "user");
		dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", "paused"), NULL);
		break;
	case VM_OP_RESUME:
		lifecycle(d, DOM_RUNNING, "unpaused");
		dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", "running"), NULL);
		break;
	case VM_OP_REBOOT:
		if (guest_reboot(vm)) {
			if (vj->phase == VP_RESET) {
				job_cmd(d, job, "cont", NULL, NULL);
				vj->phase = VP_CONT;
			} else if (vj->phase == VP_CONT) {
				lifecycle(d, DOM_RUNNING, "rebooted");
				dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", "running"),
					       NULL);
			} else {
				/* powerdown accepted: now the guest must power off */
				vj->phase = VP_WAIT_GUEST;
			}
			break;
		}
		__attribute__((fallthrough));
	case VM_OP_RESET:
		dom_job_finish(d, job, 0, 0,
			       json_pack("{s:s}", "state", dom_state_name(dom_state_actor(d))),
			       NULL);
		break;
	case VM_OP_QMP:
		/* The result leaves this thread: give it its own copy. */
		dom_job_finish(d, job, 0, 0, json_deep_copy(json_object_get(data, "return")),
			       NULL);
		break;
	default:
		break;
	}
	json_decref(data);
}

/* Deadline passed, or the domain is going away, or destroy preempts us. */
static void vmj_abort(struct domain *d, struct dom_job *job, int err)
{
	struct vm *vm = to_vm(d);
	struct vm_job *vj = job->priv;

	if (vj->op == VM_OP_START && vm->pid && dom_state_actor(d) == DOM_STARTING) {
		/* Never leave a half-started QEMU behind. */
		vm->killing = true;
		kill(vm->pid, SIGKILL);
	}
	if (vj->op == VM_OP_ATTACH && dom_state_actor(d) == DOM_SHUTOFF)
		drop_monitor(vm);
}

static const struct dom_job_ops vm_ops[VM_OP_COUNT] = {
#define VMOP(op, nm) [op] = { .name = nm, .start = vmj_start, .step = vmj_step, \
			       .abort = vmj_abort, .free_priv = vm_job_free_priv }
	VMOP(VM_OP_START, "start"),     VMOP(VM_OP_SHUTDOWN, "shutdown"),
	VMOP(VM_OP_DESTROY, "destroy"), VMOP(VM_OP_SUSPEND, "suspend"),
	VMOP(VM_OP_RESUME, "resume"),   VMOP(VM_OP_RESET, "reset"),
	VMOP(VM_OP_REBOOT, "reboot"),   VMOP(VM_OP_QMP, "qmp"),
	VMOP(VM_OP_ATTACH, "attach"),
#undef VMOP
};

int vm_job_new(enum vm_op op, json_t *args, uint64_t timeout_ns, dom_job_done_fn done,
	       void *done_arg, struct dom_job **ret, char *errbuf, size_t errlen)
{
	struct vm_job *vj;
	int r;

	if ((unsigned)op >= VM_OP_COUNT) {
		snprintf(errbuf, errlen, "unknown operation");
		return -EINVAL;
	}
	vj = calloc(1, sizeof(*vj));
	if (!vj) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	vj->op = op;
	vj->args = args ? json_incref(args) : NULL;
	r = dom_job_new(&vm_ops[op], vj, timeout_ns, done, done_arg, ret);
	if (r < 0) {
		vm_job_free_priv(vj);
		snprintf(errbuf, errlen, "out of memory");
		return r;
	}
	(*ret)->preempt = op == VM_OP_DESTROY;
	return 0;
}

int vm_submit(struct domain *d, struct dom_job *job)
{
	return dom_submit(d, job);
}

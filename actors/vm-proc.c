/* SPDX-License-Identifier: MIT */
/*
 * QEMU's process: spawning it (on an offload thread, after its run record
 * is on disk), attaching to one, watching it (pidfd), killing it, noticing
 * its end, reconnecting a lost monitor, and at start-up finding every QEMU
 * of this runtime directory again.
 *
 * The run record, RUNTIME_DIR/vms/NAME.json:
 *
 *   {"version": 1, "name", "uuid", "kind": "spawned" | "attached",
 *    "run_id", "pid", "starttime", "qmp_socket", "started"}
 *
 * A spawned QEMU's record is written (durably) before posix_spawn with pid
 * 0, then again with the pid and its start time.  The run id is random per
 * start and is in QEMU's environment (CORRAL_RUN_ID, with
 * CORRAL_RUNTIME_DIR and CORRAL_DOMAIN), so a QEMU is recognised even when
 * the daemon died between the spawn and the second write.  The record is
 * removed only after the process is gone.
 */
#include "actors/vm-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crash.h"
#include "common/durable.h"
#include "common/futex.h"
#include "common/pfor.h"
#include "common/rcu.h"
#include "common/util.h"
#include "qemu/image.h"
#include "qemu/qemu.h"

#define ENVIRON_MAX     (256u << 10)
#define MON_RETRY_MAX_S 30
#define STOP_WAIT_MS    5000

/* ---- small helpers ---------------------------------------------------------- */

static int pidfd_open(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

static int pidfd_kill(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/*
 * The start time of pid in clock ticks since boot (/proc/PID/stat, field
 * 22) to *ret: 0, -ESRCH when there is no such process, or another -errno
 * when it cannot be told (out of descriptors, say).  A pid can be reused;
 * a pid and its start time together name one process.
 */
static int proc_starttime_r(pid_t pid, unsigned long long *ret)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		int e = errno;

		close(fd);
		return e == ESRCH ? -ESRCH : -e;
	}
	close(fd);
	if (n == 0)
		return -ESRCH;
	buf[n] = '\0';
	/* After "pid (comm) ": the comm may hold spaces, so skip to its last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* Fields 3..21 follow; the start time is the 20th after ")". */
	for (int field = 0; field < 20 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -EIO;
	*ret = strtoull(p + 1, NULL, 10);
	return 0;
}

/* The start time of pid, or 0 when it cannot be read. */
static unsigned long long proc_starttime(pid_t pid)
{
	unsigned long long t = 0;

	return proc_starttime_r(pid, &t) < 0 ? 0 : t;
}

/*
 * A pidfd for the process pid and starttime name, to *ret: 0; -ESRCH when
 * that process is gone (no such pid, or the pid is another process's now);
 * another -errno when it cannot be told.  Opened first, then checked: the
 * pidfd names the process that had pid when it was opened, and the check
 * that follows proves it was ours, so a signal through it can never reach
 * a process that reused the pid.
 */
static int pidfd_open_checked(pid_t pid, unsigned long long starttime, int *ret)
{
	unsigned long long now = 0;
	int fd, r;

	if (pid <= 0 || !starttime)
		return -ESRCH;
	fd = pidfd_open(pid);
	if (fd < 0)
		return fd;
	r = proc_starttime_r(pid, &now);
	if (r == 0 && now != starttime)
		r = -ESRCH;
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret = fd;
	return 0;
}

/* The value of key in /proc/PID/environ, copied to out; false if absent/unreadable. */
static bool proc_environ_get(pid_t pid, const char *key, char *out, size_t outlen)
{
	char path[64], *buf;
	size_t klen = strlen(key), off = 0;
	ssize_t n;
	bool found = false;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	buf = malloc(ENVIRON_MAX + 1);
	if (!buf) {
		close(fd);
		return false;
	}
	while (off < ENVIRON_MAX && (n = read(fd, buf + off, ENVIRON_MAX - off)) > 0)
		off += (size_t)n;
	close(fd);
	buf[off] = '\0';
	for (size_t i = 0; i < off && !found;) {
		const char *e = buf + i;
		size_t len = strnlen(e, off - i);

		if (len > klen && !memcmp(e, key, klen) && e[klen] == '=') {
			snprintf(out, outlen, "%s", e + klen + 1);
			found = true;
		}
		i += len + 1;
	}
	free(buf);
	return found;
}

static void run_id_new(char out[VM_RUN_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[VM_RUN_ID_LEN / 2];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* No entropy at all: time and pid still tell runs apart. */
		uint64_t t = now_ns() ^ ((uint64_t)getpid() << 40);

		memcpy(r, &t, sizeof(t));
		memcpy(r + 8, &t, sizeof(t));
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[VM_RUN_ID_LEN] = '\0';
}

static void qmp_sock_path(struct vm_env *env, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/qmp/%s.sock", env->runtime_dir, name);
}

static void record_file(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s.json", name);
}

/* ---- run records ---------------------------------------------------------------- */

struct rec {
	char name[DOM_NAME_MAX + 1];
	char uuid[37];
	bool attached;
	char run_id[VM_RUN_ID_LEN + 1];
	pid_t pid;
	unsigned long long starttime;
	char qmp_socket[VM_SOCK_PATH_MAX];
};

static char *rec_text(const struct rec *r)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I}", "version", 1,
			      "name", r->name, "uuid", r->uuid, "kind",
			      r->attached ? "attached" : "spawned", "run_id", r->run_id, "pid",
			      (json_int_t)r->pid, "starttime", (json_int_t)r->starttime,
			      "qmp_socket", r->qmp_socket, "started",
			      (json_int_t)(wall_ns() / NSEC_PER_SEC));
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(j);
	return text;
}

/* Offload thread (or main thread at start-up). */
static int rec_write(struct vm_env *env, const struct rec *r, const char *tag, char *err,
		     size_t errlen)
{
	char file[DOM_NAME_MAX + 8], *text = rec_text(r);
	int ret;

	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	record_file(r->name, file, sizeof(file));
	ret = durable_write(env->vms_fd, "runtime dir", file, text, strlen(text), 0600, tag, err,
			    errlen);
	free(text);
	return ret;
}

static int rec_parse(const char *text, size_t len, struct rec *r)
{
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	const char *s;
	json_int_t pid, st;
	int ret = -EINVAL;

	memset(r, 0, sizeof(*r));
	if (!j)
		return -EINVAL;
	pid = json_integer_value(json_object_get(j, "pid"));
	st = json_integer_value(json_object_get(j, "starttime"));
	if (pid < 0 || pid > INT32_MAX || st < 0)
		goto out;
	r->pid = (pid_t)pid;
	r->starttime = (unsigned long long)st;
	s = json_string_value(json_object_get(j, "qmp_socket"));
	if (!s || s[0] != '/' || strlen(s) >= sizeof(r->qmp_socket))
		goto out;
	strcpy(r->qmp_socket, s);
	if (json_object_get(j, "version")) {
		s = json_string_value(json_object_get(j, "name"));
		if (!s || !dom_name_valid(s))
			goto out;
		strcpy(r->name, s);
		s = json_string_value(json_object_get(j, "uuid"));
		if (s && strlen(s) == 36)
			strcpy(r->uuid, s);
		s = json_string_value(json_object_get(j, "kind"));
		r->attached = s && !strcmp(s, "attached");
		s = json_string_value(json_object_get(j, "run_id"));
		if (s && strlen(s) == VM_RUN_ID_LEN)
			strcpy(r->run_id, s);
		if (!r->attached && !r->run_id[0])
			goto out;
	} else {
		/* A record of an earlier corral: {pid, qmp_socket, starttime} only. */
		r->attached = true;
	}
	ret = 0;
out:
	json_decref(j);
	return ret;
}

/* This domain's record, from what the vm knows.  Domain actor only. */
static void rec_from_vm(struct domain *d, struct rec *r)
{
	struct vm *vm = vm_of(d);

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", dom_name(d));
	uuid_format(dom_uuid(d), r->uuid);
	r->attached = vm->attached;
	memcpy(r->run_id, vm->run_id, sizeof(r->run_id));
	r->pid = vm->pid;
	r->starttime = vm->starttime;
	snprintf(r->qmp_socket, sizeof(r->qmp_socket), "%s", vm->qmp_path);
}

struct rec_io {
	struct vm_io io;
	struct rec rec;
	void (*then)(struct domain *d, struct vm_io *io);
};

static void rec_io_free(struct vm_io *io)
{
	free(container_of(io, struct rec_io, io));
}

static void rec_io_work(struct vm_io *io)
{
	struct rec_io *ri = container_of(io, struct rec_io, io);

	io->err = rec_write(io->env, &ri->rec, "record", io->errmsg, sizeof(io->errmsg));
	io->code = DOM_ERR_STORAGE;
}

static void rec_io_complete(struct domain *d, struct vm_io *io)
{
	struct rec_io *ri = container_of(io, struct rec_io, io);

	if (ri->then)
		ri->then(d, io);
}

void vm_proc_record(struct domain *d, uint64_t job_id,
		    void (*then)(struct domain *d, struct vm_io *io))
{
	struct rec_io *ri = calloc(1, sizeof(*ri));

	if (!ri)
		return;
	vm_io_init(&ri->io, job_id, rec_io_work, rec_io_complete, NULL, rec_io_free);
	rec_from_vm(d, &ri->rec);
	ri->then = then;
	vm_io_submit(d, &ri->io);
}

/* ---- the process watch ------------------------------------------------------------ */

/*
 * A QEMU costs one descriptor while all is well: its monitor's socket,
 * whose end (EOF) is how its exit is normally seen, since the kernel
 * closes QEMU's end when it exits.  A pidfd is opened only when that
 * cannot tell: while a start or an attach waits for the monitor, when the
 * monitor closed or could not be reached (QEMU may be exiting, or may live
 * on without it), and to kill.  Then the pidfd's readiness says the
 * process is gone, and a child is reaped (waitid) before its end is
 * reported.  The watch goes again once a monitor is up.
 */

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

static void on_exit_call(struct domain *d, void *arg)
{
	struct pidwatch *pw = arg;
	struct vm *vm = vm_of(d);
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
	vm_proc_gone(d, wstatus, have);
}

/* Loop thread: the process exited (pidfd readable). */
static void pidwatch_cb(struct io_watch *w, uint32_t events)
{
	struct pidwatch *pw = container_of(w, struct pidwatch, watch);

	if (__atomic_exchange_n(&pw->fired, 1, __ATOMIC_ACQ_REL))
		return;
	dom_call(pw->dom, on_exit_call, pw, NULL);
}

/* Watch pid through pidfd (taken: closed on failure too).  Domain actor only. */
static int watch_pid(struct domain *d, pid_t pid, int pidfd, bool child)
{
	struct vm *vm = vm_of(d);
	struct pidwatch *pw = calloc(1, sizeof(*pw));
	int r;

	if (!pw) {
		close(pidfd);
		return -ENOMEM;
	}
	pw->pidfd = pidfd;
	pw->pid = pid;
	pw->child = child;
	pw->dom = d;
	dom_ref(d);
	vm->pw = pw;
	r = io_watch_add(vm->env->io, &pw->watch, pidfd, EPOLLIN | EPOLLONESHOT, pidwatch_cb);
	if (r < 0) {
		close(pidfd);
		dom_unref(d);
		free(pw);
		vm->pw = NULL;
	}
	return r;
}

/* The process was found gone when a watch was to be opened: its end, in a turn of its own. */
static void gone_call(struct domain *d, void *arg)
{
	struct vm *vm = vm_of(d);

	if (vm->proc_gen != (uint32_t)(uintptr_t)arg || vm->proc != VPROC_RUNNING || vm->pw)
		return;
	vm_proc_gone(d, 0, false);
}

/* A watch that could not be opened (out of descriptors): try again, kill again. */
static void watch_retry_call(struct domain *d, void *arg)
{
	struct vm *vm = vm_of(d);

	if (vm->proc_gen != (uint32_t)(uintptr_t)arg || vm->proc != VPROC_RUNNING)
		return;
	vm->watch_retry = false;
	vm_proc_watch(d);
	if (vm->pw && vm->killing)
		pidfd_kill(vm->pw->pidfd, SIGKILL);
}

static void proc_watch_retry(struct domain *d)
{
	struct vm *vm = vm_of(d);

	if (vm->watch_retry)
		return;
	vm->watch_retry = true;
	dom_call_at(d, watch_retry_call, (void *)(uintptr_t)vm->proc_gen, NULL,
		    now_ns() + 200 * NSEC_PER_MSEC);
}

void vm_proc_watch(struct domain *d)
{
	struct vm *vm = vm_of(d);
	int fd = -1, r;

	if (vm->pw || vm->proc != VPROC_RUNNING)
		return;
	if (vm->child) {
		/* Not reaped yet, so the pid is still its own, a zombie's at worst. */
		fd = pidfd_open(vm->pid);
		r = fd < 0 ? fd : 0;
	} else {
		r = pidfd_open_checked(vm->pid, vm->starttime, &fd);
	}
	if (r == -ESRCH) {
		/*
		 * Gone already (a zombie child still has its pid, so this is
		 * not a child of ours: nothing to reap).  Said in a turn of its
		 * own, so that the caller finishes what it does first.
		 */
		dom_call(d, gone_call, (void *)(uintptr_t)vm->proc_gen, NULL);
		return;
	}
	if (r == 0)
		r = watch_pid(d, vm->pid, fd, vm->child);
	if (r < 0)
		/* Cannot tell now (EMFILE, ENOMEM): the process is not forgotten; again soon. */
		proc_watch_retry(d);
}

/* The monitor is up: its end says when QEMU ends, so the pidfd goes (one descriptor). */
static void proc_unwatch(struct vm *vm)
{
	pidwatch_release(vm->pw);
	vm->pw = NULL;
}

int vm_proc_kill(struct domain *d)
{
	struct vm *vm = vm_of(d);

	vm_proc_watch(d);
	if (!vm->pw)
		return -ESRCH;  /* gone, or again in a moment (watch_retry_call) */
	/* Through the checked pidfd: never a process that reused the pid. */
	return pidfd_kill(vm->pw->pidfd, SIGKILL);
}

void vm_proc_monitor_up(struct domain *d)
{
	struct vm *vm = vm_of(d);

	if (vm->pw && vm->proc == VPROC_RUNNING && !vm->killing &&
	    vm->quitting == VR_COUNT && !__atomic_load_n(&vm->pw->fired, __ATOMIC_ACQUIRE))
		proc_unwatch(vm);
}

static void drop_monitor(struct vm *vm)
{
	if (vm->mon) {
		mon_close(vm->mon);
		vm->mon = NULL;
	}
	vm->mon_ready = false;
}

void vm_proc_release(struct vm *vm)
{
	vm_console_drop(vm, "corrald let go of the domain (it is stopping)");
	vm->con_gen++;
	drop_monitor(vm);
	proc_unwatch(vm);
	vm->proc = VPROC_NONE;
	vm->pid = 0;
	vm->starttime = 0;
	vm->proc_gen++;         /* cancels a pending gone_call or watch retry */
	vm->watch_retry = false;
	vm->mon_gen++;          /* cancels a pending monitor retry */
}

/* ---- the end of a QEMU ------------------------------------------------------------- */

struct gone_io {
	struct vm_io io;
	char name[DOM_NAME_MAX + 1];
	char qmp_path[VM_SOCK_PATH_MAX]; /* ours to remove, or empty */
	char console_path[VM_SOCK_PATH_MAX]; /* the same */
	bool want_log;                  /* a start failed: what did QEMU say? */
	bool forced;
	char log[400];
};

/*
 * What QEMU wrote to its log since its last start (the lines after the
 * newest "corral: starting" header), at most the last 4 KiB, one line
 * joined to the next with " | ".  Offload thread.
 */
static void log_tail(int logs_fd, const char *name, char *out, size_t len)
{
	char file[DOM_NAME_MAX + 16], buf[4097], *p, *start;
	struct stat st;
	ssize_t n;
	size_t o = 0;
	int fd;

	out[0] = '\0';
	snprintf(file, sizeof(file), "%s.qemu.log", name);
	fd = openat(logs_fd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return;
	}
	n = pread(fd, buf, sizeof(buf) - 1, st.st_size > 4096 ? st.st_size - 4096 : 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	start = buf;
	for (p = buf; (p = strstr(p, "corral: starting ")); p++)
		start = p;
	if (start != buf || !strncmp(buf, "corral: starting ", 17)) {
		start = strchr(start, '\n');
		start = start ? start + 1 : buf + n;
	}
	for (p = start; *p && o + 4 < len; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '\n') {
			if (p[1] && o)
				o += (size_t)snprintf(out + o, len - o, " | ");
		} else if (ch >= 0x20 && ch != 0x7f) {
			out[o++] = (char)ch;
		}
	}
	if (o >= len)
		o = len - 1;
	out[o] = '\0';
}

static void gone_io_free(struct vm_io *io)
{
	free(container_of(io, struct gone_io, io));
}

/* Offload thread: the process is gone, so its record and socket may go. */
static void gone_io_work(struct vm_io *io)
{
	struct gone_io *gi = container_of(io, struct gone_io, io);
	char file[DOM_NAME_MAX + 8];

	crash_point("exit.before-cleanup");
	if (gi->want_log)
		log_tail(io->env->logs_fd, gi->name, gi->log, sizeof(gi->log));
	if (gi->qmp_path[0])
		unlink(gi->qmp_path);
	if (gi->console_path[0])
		unlink(gi->console_path);
	cg_vm_remove(io->env->cg, gi->name);
	record_file(gi->name, file, sizeof(file));
	io->err = durable_unlink(io->env->vms_fd, "runtime dir", file, "exit", io->errmsg,
				 sizeof(io->errmsg));
}

/*
 * The files are gone too: a destroy or shutdown that waited for the end
 * answers now, so that whoever hears of it finds no stale file.  A record
 * that could not be removed names a dead pid: the next start-up drops it.
 */
static void gone_io_complete(struct domain *d, struct vm_io *io)
{
	struct gone_io *gi = container_of(io, struct gone_io, io);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	enum dom_state st = dom_state_actor(d);

	if (!vj || job->id != io->job_id)
		return;
	crash_point("exit.after-cleanup");
	if (vj->op == VM_OP_START) {
		/* QEMU's own words say what was wrong (a bad option, a file it refused). */
		dom_job_finish(d, job, -ECHILD, DOM_ERR_QEMU, NULL,
			       "domain '%s': QEMU exited while starting%s%s", dom_name(d),
			       gi->log[0] ? ": " : " (its log says nothing)", gi->log);
		return;
	}
	if (gi->forced)
		dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s, s:b}", "state",
						       dom_state_name(st), "reason",
						       dom_reason_actor(d), "forced", 1), NULL);
	else
		dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state", dom_state_name(st),
						       "reason", dom_reason_actor(d)), NULL);
}

struct force_arg {
	uint64_t job_id;
	uint32_t gen;
};

static void force_call(struct domain *d, void *arg)
{
	struct force_arg *fa = arg;
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (vj && job->id == fa->job_id && vj->op == VM_OP_SHUTDOWN &&
	    vm->proc == VPROC_RUNNING && !vm->killing) {
		/* The guest did not power off in time: shutdown --force destroys it. */
		vm->forced = true;
		vm->killing = true;
		vm_proc_kill(d);
		vj->phase = VP_WAIT_EXIT;
	}
	free(fa);
}

void vm_proc_arm_force(struct domain *d, struct dom_job *job)
{
	struct force_arg *fa = calloc(1, sizeof(*fa));
	uint64_t now = now_ns(), margin;

	if (!fa)
		return;
	fa->job_id = job->id;
	/* Early enough for the kill and the exit to land before the deadline. */
	margin = job->deadline_ns > now ? (job->deadline_ns - now) / 10 : 0;
	if (margin > 2 * NSEC_PER_SEC)
		margin = 2 * NSEC_PER_SEC;
	if (margin < 100 * NSEC_PER_MSEC)
		margin = 100 * NSEC_PER_MSEC;
	dom_call_at(d, force_call, fa, free, job->deadline_ns > margin ?
		    job->deadline_ns - margin : now);
}

void vm_proc_gone(struct domain *d, int wstatus, bool have_status)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	struct gone_io *gi;
	char why[128];
	enum dom_state st = DOM_SHUTOFF;
	enum vm_reason reason;
	bool clean = !have_status || (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);

	if (vm->saved) {
		reason = VR_SAVED;
		snprintf(why, sizeof(why), "ended after its state was saved");
	} else if (vm->start_failed || (vj && vj->op == VM_OP_START && !vm->killing &&
				 dom_state_actor(d) == DOM_STARTING)) {
		reason = VR_FAILED;
		snprintf(why, sizeof(why), "exited while starting");
	} else if (vm->killing) {
		reason = VR_DESTROYED;
		snprintf(why, sizeof(why), "destroyed (killed by corral)");
	} else if (!vm->signalable && vm->proc == VPROC_RUNNING && vj &&
		   vj->op == VM_OP_DESTROY) {
		reason = VR_DETACHED;
		snprintf(why, sizeof(why), "detached (not a QEMU corral may kill)");
	} else if (vm->quitting != VR_COUNT && clean) {
		/* QEMU said why it went (SHUTDOWN), and went cleanly. */
		reason = vm->quitting;
		snprintf(why, sizeof(why), "%s", reason == VR_SHUTDOWN ? "shut down" :
			 reason == VR_GUEST_SHUTDOWN ? "shut down by guest" : "quit");
	} else if (!have_status) {
		reason = VR_EXITED;
		snprintf(why, sizeof(why), "exited (not corral's child: status unknown)");
	} else if (WIFSIGNALED(wstatus)) {
		st = DOM_CRASHED;
		reason = WTERMSIG(wstatus) == SIGKILL ? VR_KILLED : VR_CRASHED;
		snprintf(why, sizeof(why), "%s by signal %d (%s)",
			 WTERMSIG(wstatus) == SIGKILL ? "killed" : "crashed", WTERMSIG(wstatus),
			 strsignal(WTERMSIG(wstatus)));
	} else if (clean) {
		reason = VR_EXITED;
		snprintf(why, sizeof(why), "exited (status 0)");
	} else {
		st = DOM_CRASHED;
		reason = VR_CRASHED;
		snprintf(why, sizeof(why), "crashed: exit status %d",
			 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
	}
	gi = calloc(1, sizeof(*gi));
	if (gi) {
		bool failed_start = vj && vj->op == VM_OP_START && reason == VR_FAILED;
		bool waits = vj && (vj->op == VM_OP_DESTROY || vj->op == VM_OP_SHUTDOWN ||
				    failed_start || (vj->op == VM_OP_SAVE && vm->saved));

		vm_io_init(&gi->io, waits ? job->id : 0, gone_io_work, gone_io_complete, NULL,
			   gone_io_free);
		snprintf(gi->name, sizeof(gi->name), "%s", dom_name(d));
		if (vm->qmp_path_ours) {
			snprintf(gi->qmp_path, sizeof(gi->qmp_path), "%s", vm->qmp_path);
			vm_console_sock_path(vm->env, dom_name(d), gi->console_path,
					     sizeof(gi->console_path));
		}
		gi->want_log = failed_start;
		gi->forced = vm->forced;
	}
	{
		char bye[160];

		snprintf(bye, sizeof(bye), "the guest stopped: QEMU %s", why);
		vm_console_drop(vm, bye);
	}
	vm_proc_release(vm);
	vm_live_clear(vm);
	vm->saved = false;
	vm->killing = false;
	vm->forced = false;
	vm->start_failed = false;
	vm->quitting = VR_COUNT;
	vm->powerdown_asked = false;
	vm->mon_lost[0] = '\0';
	vm->mon_said_broken = false;
	vm->attached = false;
	vm->signalable = false;
	vm->qmp_path[0] = '\0';
	vm->qmp_path_ours = false;
	if (gi)
		vm_io_submit(d, &gi->io);
	dom_set_pid(d, 0);
	dom_set_monitor(d, DOM_MON_NONE);
	vm_stats_clear(d);
	vm_lifecycle(d, st, reason);

	if (vj) {
		if (gi && gi->io.job_id)
			vj->phase = VP_IO;      /* answered once the files are gone */
		else if (vj->op == VM_OP_DESTROY || vj->op == VM_OP_SHUTDOWN)
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state",
				       dom_state_name(st), "reason", vm_reason_name(reason)),
				       NULL);
		else
			dom_job_finish(d, job, -ECHILD, DOM_ERR_QEMU, NULL,
				       "domain '%s': QEMU %s during '%s'", dom_name(d), why,
				       job->ops->name);
	}
}

/* ---- reconnecting a monitor ----------------------------------------------------------- */

struct conn_io {
	struct vm_io io;
	char path[VM_SOCK_PATH_MAX];
	uint32_t gen;
	int fd;
};

static void conn_io_free(struct vm_io *io)
{
	struct conn_io *ci = container_of(io, struct conn_io, io);

	if (ci->fd >= 0)
		close(ci->fd);
	free(ci);
}

static void conn_io_work(struct vm_io *io)
{
	struct conn_io *ci = container_of(io, struct conn_io, io);
	int r = mon_connect_unix(ci->path, &ci->fd);

	if (r < 0) {
		ci->fd = -1;
		io->err = r;
		snprintf(io->errmsg, sizeof(io->errmsg), "cannot connect to QEMU's monitor %s: %s",
			 ci->path, r == -ENOENT ? "the socket is gone" : strerror(-r));
	}
}

static void schedule_retry(struct domain *d);

/*
 * Start the monitor on fd (taken).  spread: its first statistics round
 * comes at a point of the interval fixed by the domain's UUID, not at once:
 * for the monitors that come up together (a restart's re-attaches,
 * background reconnects), whose rounds would otherwise all fall at the same
 * instant of every interval.  A start or attach asked for by a client polls
 * at once: its figures are there when the client looks.  Domain actor only.
 */
static int monitor_on(struct domain *d, int fd, uint64_t ready_deadline, bool spread)
{
	struct vm *vm = vm_of(d);
	int r = mon_new(vm->env->rt, vm->env->io, d, fd, vm_on_note, ready_deadline, &vm->mon);
	uint64_t first = 0;

	if (r < 0)
		return r;
	vm->mon_ready = false;
	dom_set_monitor(d, DOM_MON_CONNECTING);
	/* Figures of an earlier QEMU or monitor are not this one's. */
	vm_stats_clear(d);
	vm->poll_ns = qemu_config_stats_interval_ms(vm->cfg, vm->env->stats_interval_ns /
						    NSEC_PER_MSEC) * NSEC_PER_MSEC;
	if (spread && vm->poll_ns) {
		const uint8_t *u = dom_uuid(d);
		uint64_t h = 0;

		for (int i = 0; i < 8; i++)
			h = h << 8 | u[i];
		first = h % vm->poll_ns;
	}
	mon_set_poll(vm->mon, vm->poll_ns, first, vm->env->mon_late_ns, vm->pid);
	return 0;
}

static void monitor_failed(struct domain *d, const char *why)
{
	struct vm *vm = vm_of(d);

	dom_set_monitor(d, DOM_MON_BROKEN);
	vm->mon_lost[0] = '\0';
	/* No monitor to tell QEMU's end: its pidfd does, until one is up. */
	vm_proc_watch(d);
	/* Once per failure: each retry that fails again changes nothing. */
	if (!vm->mon_said_broken)
		vm_publish(d, VE_MONITOR, json_pack("{s:s, s:s}", "state", "broken", "reason",
						    why));
	vm->mon_said_broken = true;
	schedule_retry(d);
}

static void retry_conn_complete(struct domain *d, struct vm_io *io)
{
	struct conn_io *ci = container_of(io, struct conn_io, io);
	struct vm *vm = vm_of(d);

	if (vm->mon_gen != ci->gen || vm->proc != VPROC_RUNNING || vm->mon)
		return;         /* the QEMU ended, or a monitor came another way */
	if (io->err) {
		monitor_failed(d, io->errmsg);
		return;
	}
	if (monitor_on(d, ci->fd, now_ns() + 30 * NSEC_PER_SEC, true) == 0)
		ci->fd = -1;
	else
		monitor_failed(d, "cannot watch the monitor socket");
}

static struct conn_io *conn_io_new(struct domain *d, uint64_t job_id,
				   void (*complete)(struct domain *, struct vm_io *))
{
	struct vm *vm = vm_of(d);
	struct conn_io *ci = calloc(1, sizeof(*ci));

	if (!ci)
		return NULL;
	vm_io_init(&ci->io, job_id, conn_io_work, complete, NULL, conn_io_free);
	snprintf(ci->path, sizeof(ci->path), "%s", vm->qmp_path);
	ci->gen = vm->mon_gen;
	ci->fd = -1;
	return ci;
}

static void retry_call(struct domain *d, void *arg)
{
	struct vm *vm = vm_of(d);
	uint32_t gen = (uint32_t)(uintptr_t)arg;
	struct conn_io *ci;

	if (vm->mon_gen != gen || vm->proc != VPROC_RUNNING || vm->mon || !vm->qmp_path[0])
		return;
	if (vm->mon_lost[0]) {
		/* QEMU outlived its monitor: a failure after all. */
		vm_publish(d, VE_MONITOR, json_pack("{s:s, s:s}", "state", "broken", "reason",
						    vm->mon_lost));
		vm->mon_lost[0] = '\0';
		vm->mon_said_broken = true;
	}
	ci = conn_io_new(d, 0, retry_conn_complete);
	if (ci)
		vm_io_submit(d, &ci->io);
}

/* Try the monitor again later: 1 s, 2 s, 4 s ... at most 30 s apart. */
static void schedule_retry(struct domain *d)
{
	struct vm *vm = vm_of(d);
	unsigned shift = vm->mon_retries < 5 ? vm->mon_retries : 5;
	uint64_t delay = (uint64_t)(1u << shift) * NSEC_PER_SEC;

	if (vm->proc != VPROC_RUNNING || vm->killing || !vm->qmp_path[0])
		return;
	if (delay > MON_RETRY_MAX_S * NSEC_PER_SEC)
		delay = MON_RETRY_MAX_S * NSEC_PER_SEC;
	vm->mon_retries++;
	vm->mon_gen++;
	dom_call_at(d, retry_call, (void *)(uintptr_t)vm->mon_gen, NULL, now_ns() + delay);
}

void vm_proc_monitor_lost(struct domain *d)
{
	struct vm *vm = vm_of(d);

	/*
	 * A process corral may not kill (not an allowed emulator: a QMP
	 * simulator, say) is followed through its monitor alone: when that
	 * closes, the attachment ends.
	 */
	if (vm->proc == VPROC_RUNNING && vm->attached && !vm->signalable) {
		vm_proc_gone(d, 0, false);
		return;
	}
	/*
	 * The monitor's end is not QEMU's: it may be exiting, or live on
	 * without it.  Its pidfd tells which (and reaps a child).
	 */
	vm_proc_watch(d);
	schedule_retry(d);
}

/* ---- start: the spawn ------------------------------------------------------------------ */

struct spawn_io {
	struct vm_io io;
	/* In: copies, so that nothing the actor changes meanwhile is shared. */
	struct qemu_config *cfg;
	struct creds owner;
	struct rec rec;
	/* Out. */
	pid_t pid;
	int pidfd;
	int mon_fd;
	char qmp_path[VM_SOCK_PATH_MAX];
	struct vm_console_files cf;     /* conn_fd and log_fd: for the console */
	bool incoming;                  /* restore: -incoming defer */
	int disk_fdsets[QEMU_DISKS_MAX]; /* out: each disk's fd set in QEMU */
};

static void spawn_io_free(struct vm_io *io)
{
	struct spawn_io *si = container_of(io, struct spawn_io, io);

	vm_console_files_close(&si->cf, false);

	if (si->pidfd >= 0)
		close(si->pidfd);
	if (si->mon_fd >= 0)
		close(si->mon_fd);
	qemu_config_free(si->cfg);
	free(si);
}

static void set_err(struct vm_io *io, int err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set_err(struct vm_io *io, int err, int code, const char *fmt, ...)
{
	va_list ap;

	io->err = err;
	io->code = code;
	va_start(ap, fmt);
	vsnprintf(io->errmsg, sizeof(io->errmsg), fmt, ap);
	va_end(ap);
}

#define IMAGE_COPY_MAX (1ull << 30)      /* a kernel or initrd copied for QEMU */

/*
 * A sealed in-memory copy of the open file src, for a QEMU that runs as
 * another user: QEMU reads the kernel and initrd through /proc/self/fd/N,
 * which opens the file again with QEMU's own rights.  The copy is readable
 * by whoever holds it and can no longer change.  Returns the fd or -errno.
 */
static int memfd_copy(int src, const char *what, struct vm_io *io)
{
	struct stat st;
	off_t off = 0;
	int m;

	if (fstat(src, &st) < 0 || (uint64_t)st.st_size > IMAGE_COPY_MAX) {
		set_err(io, -EFBIG, DOM_ERR_INVALID, "the %s is larger than 1 GiB", what);
		return -EFBIG;
	}
	m = memfd_create(what, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m < 0) {
		set_err(io, -errno, DOM_ERR_FAILED, "cannot copy the %s: %s", what,
			strerror(errno));
		return -errno;
	}
	while (off < st.st_size) {
		ssize_t n = sendfile(m, src, &off, (size_t)(st.st_size - off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(m);
			set_err(io, -e, e == ENOMEM ? DOM_ERR_FAILED : DOM_ERR_INVALID,
				"cannot copy the %s: %s", what, strerror(e));
			return -e;
		}
	}
	fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	return m;
}

#define SETPRIV "/usr/bin/setpriv"

/* A formatted copy, or NULL when out of memory. */
static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dupf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
}

/*
 * argv run as the QEMU user: setpriv sets uid, gid and groups, drops every
 * capability and sets no_new_privs, then execs QEMU (same pid).  A new
 * argv (free with qemu_argv_free), or NULL.
 */
static char **as_qemu_user(struct vm_env *env, char **argv)
{
	const struct creds *c = &env->qemu_creds;
	char groups[CREDS_GROUPS_MAX * 12 + 16] = "", **out;
	size_t n = 0, i, o = 0;

	while (argv[n])
		n++;
	out = calloc(n + 12, sizeof(*out));
	if (!out)
		return NULL;
	for (i = 0; i < c->ngroups && o < sizeof(groups) - 12; i++)
		o += (size_t)snprintf(groups + o, sizeof(groups) - o, "%s%u", i ? "," : "",
				      (unsigned)c->groups[i]);
	i = 0;
	if (!(out[i++] = strdup(SETPRIV)) ||
	    !(out[i++] = dupf("--reuid=%u", (unsigned)c->uid)) ||
	    !(out[i++] = dupf("--regid=%u", (unsigned)c->gid)) ||
	    !(out[i++] = c->ngroups ? dupf("--groups=%s", groups) : strdup("--clear-groups")) ||
	    !(out[i++] = strdup("--no-new-privs")) ||
	    !(out[i++] = strdup("--inh-caps=-all")) ||
	    !(out[i++] = strdup("--bounding-set=-all")) ||
	    !(out[i++] = strdup("--"))) {
		qemu_argv_free(out);
		return NULL;
	}
	for (size_t j = 0; j < n; j++) {
		if (!(out[i++] = strdup(argv[j]))) {
			qemu_argv_free(out);
			return NULL;
		}
	}
	out[i] = NULL;
	return out;
}

/* The limits of QEMU's control group, from the config. */
static void cg_limits_of(const struct qemu_config *c, struct cg_limits *l)
{
	l->memory_bytes = qemu_config_limit_memory_mib(c) << 20;
	l->cpu_weight = qemu_config_limit_cpu_weight(c);
	l->cpu_max_pct = qemu_config_limit_cpu_pct(c);
}

/* Everything QEMU will be handed, opened with the owner's rights. */
struct spawn_files {
	int disk[QEMU_DISKS_MAX];
	int kernel, initrd, cdrom;
	int fw_code, fw_vars;           /* the daemon's own files, opened as the daemon */
	int tap[QEMU_NICS_MAX];
};

static void files_close(struct spawn_files *f, size_t ndisks)
{
	for (size_t i = 0; i < ndisks; i++)
		if (f->disk[i] >= 0)
			close(f->disk[i]);
	for (size_t i = 0; i < QEMU_NICS_MAX; i++)
		if (f->tap[i] >= 0)
			close(f->tap[i]);
	if (f->cdrom >= 0)
		close(f->cdrom);
	if (f->fw_code >= 0)
		close(f->fw_code);
	if (f->fw_vars >= 0)
		close(f->fw_vars);
	if (f->kernel >= 0)
		close(f->kernel);
	if (f->initrd >= 0)
		close(f->initrd);
}

static int open_plain(const char *what, const char *path, struct vm_io *io)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;

		set_err(io, -e, e == EACCES || e == EPERM ? DOM_ERR_PERMISSION : DOM_ERR_INVALID,
			"%s %s: cannot open it: %s", what, path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		set_err(io, -EINVAL, DOM_ERR_INVALID, "%s %s: not a regular file", what, path);
		return -EINVAL;
	}
	return fd;
}

static bool bridge_allowed(struct vm_env *env, const char *bridge)
{
	for (char **b = env->bridges; b && *b; b++)
		if (!strcmp(*b, bridge))
			return true;
	return false;
}

/*
 * What the daemon opens with its own rights: the UEFI firmware and the
 * domain's variable store (made from the template if it went missing),
 * and a tap device on each bridged NIC's bridge, if the daemon allows
 * that bridge.  0 or -errno with io's error set.
 */
static int host_files_open(struct spawn_io *si, struct spawn_files *f)
{
	struct vm_io *io = &si->io;
	char err[256];
	int r;

	if (!strcmp(qemu_config_firmware(si->cfg), "uefi")) {
		r = f->fw_code = open_plain("UEFI firmware", io->env->ovmf_code, io);
		if (r < 0)
			return r;
		r = vm_nvram_ensure(io->env, si->rec.name, err, sizeof(err));
		if (r < 0) {
			set_err(io, r, DOM_ERR_STORAGE, "%s", err);
			return r;
		}
		r = f->fw_vars = vm_nvram_open(io->env, si->rec.name, err, sizeof(err));
		if (r < 0) {
			set_err(io, r, DOM_ERR_STORAGE, "%s", err);
			return r;
		}
	}
	for (size_t i = 0; i < qemu_config_nic_count(si->cfg); i++) {
		const char *br = qemu_config_nic_bridge(si->cfg, i);
		char ifname[QEMU_IFNAME_MAX];

		if (!br)
			continue;
		if (!bridge_allowed(io->env, br)) {
			set_err(io, -EPERM, DOM_ERR_PERMISSION, "nics[%zu]: bridge '%s' is not one "
				"corrald lets guests join (see corrald --allow-bridge)", i, br);
			return -EPERM;
		}
		r = f->tap[i] = qemu_tap_open(br, qemu_config_nic_mac(si->cfg, i), ifname, err,
					      sizeof(err));
		if (r < 0) {
			set_err(io, r, r == -EPERM ? DOM_ERR_PERMISSION : DOM_ERR_FAILED,
				"nics[%zu]: %s", i, err);
			return r;
		}
	}
	return 0;
}

static int files_open(struct spawn_io *si, struct spawn_files *f)
{
	struct vm_io *io = &si->io;
	size_t n = qemu_config_disk_count(si->cfg);
	int r;

	f->kernel = f->initrd = f->cdrom = f->fw_code = f->fw_vars = -1;
	for (size_t i = 0; i < n; i++)
		f->disk[i] = -1;
	for (size_t i = 0; i < QEMU_NICS_MAX; i++)
		f->tap[i] = -1;
	r = creds_enter(&si->owner);
	if (r < 0) {
		set_err(io, r, DOM_ERR_PERMISSION, "cannot take on the owner's identity: %s",
			strerror(-r));
		return r;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		const char *path = qemu_config_disk_path(si->cfg, i);
		struct stat st;
		const char *found;
		int fd = open(path, (qemu_config_disk_readonly(si->cfg, i) ? O_RDONLY : O_RDWR) |
			      O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

		if (fd < 0) {
			r = -errno;
			set_err(io, r, r == -EACCES || r == -EPERM ? DOM_ERR_PERMISSION :
				DOM_ERR_INVALID, "disk %s: cannot open it%s: %s", path,
				qemu_config_disk_readonly(si->cfg, i) ? "" : " for writing",
				strerror(-r));
			break;
		}
		f->disk[i] = fd;
		if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
			r = -EINVAL;
			set_err(io, r, DOM_ERR_INVALID, "disk %s: not a regular file or a block "
				"device", path);
			break;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		/* Never guessed: what the definition says must be what the image is. */
		r = qemu_image_probe(fd, path, qemu_config_disk_format(si->cfg, i), &found,
				     io->errmsg, sizeof(io->errmsg));
		if (r < 0) {
			io->err = r;
			io->code = DOM_ERR_INVALID;
			break;
		}
		if (!qemu_config_disk_format(si->cfg, i))
			qemu_config_set_disk_format(si->cfg, i, found);
	}
	if (r == 0 && qemu_config_kernel(si->cfg)) {
		r = f->kernel = open_plain("kernel", qemu_config_kernel(si->cfg), io);
		if (r >= 0)
			r = 0;
	}
	if (r == 0 && qemu_config_initrd(si->cfg)) {
		r = f->initrd = open_plain("initrd", qemu_config_initrd(si->cfg), io);
		if (r >= 0)
			r = 0;
	}
	if (r == 0 && qemu_config_cdrom(si->cfg)) {
		r = f->cdrom = open_plain("cdrom", qemu_config_cdrom(si->cfg), io);
		if (r >= 0)
			r = 0;
	}
	creds_leave();
	if (r == 0)
		r = host_files_open(si, f);
	/* QEMU as another user could not open them again by /proc/self/fd: copies. */
	if (r == 0 && io->env->qemu_run_as) {
		for (int k = 0; k < 2 && r == 0; k++) {
			int *fd = k ? &f->initrd : &f->kernel;
			int m;

			if (*fd < 0)
				continue;
			m = memfd_copy(*fd, k ? "initrd" : "kernel", io);
			if (m < 0) {
				r = m;
				break;
			}
			close(*fd);
			*fd = m;
		}
	}
	if (r < 0)
		files_close(f, n);
	return r;
}

/* Undo a spawn that cannot be owned: kill it, reap it (blocking is fine here). */
static void spawn_undo(struct vm_env *env, pid_t pid, int pidfd, const struct rec *rec)
{
	char file[DOM_NAME_MAX + 8];

	if (pidfd >= 0)
		pidfd_kill(pidfd, SIGKILL);
	else if (pid > 0)
		kill(pid, SIGKILL);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	record_file(rec->name, file, sizeof(file));
	unlinkat(env->vms_fd, file, 0);
}

#define QEMU_LOG_ROTATE (1u << 20)

/* QEMU's log past 1 MiB becomes NAME.qemu.log.1 (replacing the older one). */
static void qemu_log_rotate(struct vm_env *env, const char *file)
{
	char old[DOM_NAME_MAX + 32];
	struct stat st;

	if (fstatat(env->logs_fd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (uint64_t)st.st_size < QEMU_LOG_ROTATE)
		return;
	snprintf(old, sizeof(old), "%s.1", file);
	renameat(env->logs_fd, file, env->logs_fd, old);
}

/*
 * Resolve accel as QEMU will find it: /dev/kvm opened with the identity
 * QEMU runs as, not the daemon's (root opens a /dev/kvm of mode 0600 that
 * the QEMU user cannot: "auto" must then be TCG, and "kvm" a clear error).
 * Offload thread.
 */
static int accel_resolve(struct vm_env *env, const char *want, const char **accel, char *err,
			 size_t errlen)
{
	int r;

	if (!env->qemu_run_as || !strcmp(want, "tcg"))
		return qemu_accel_resolve(want, accel, err, errlen);
	r = creds_enter(&env->qemu_creds);
	if (r < 0) {
		snprintf(err, errlen,
			 "cannot take on the QEMU user's identity to probe /dev/kvm: %s",
			 strerror(-r));
		return r;
	}
	r = qemu_accel_resolve(want, accel, err, errlen);
	creds_leave();
	if (r < 0 && r != -EINVAL) {
		size_t n = strlen(err);

		snprintf(err + n, errlen - n, " (as QEMU's user, uid %u)",
			 (unsigned)env->qemu_creds.uid);
	}
	return r;
}

static void spawn_io_work(struct vm_io *io)
{
	struct spawn_io *si = container_of(io, struct spawn_io, io);
	struct vm_env *env = io->env;
	struct spawn_files files;
	struct qemu_launch l = { 0 };
	char emu[PATH_MAX], log_name[DOM_NAME_MAX + 16], err[512];
	char env_rt[PATH_MAX + 32], env_dom[96], env_uuid[64], env_run[64];
	char *envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			 env_rt, env_dom, env_uuid, env_run, NULL };
	int fds[QEMU_SPAWN_FDS_MAX], child_disk[QEMU_DISKS_MAX], child_tap[QEMU_NICS_MAX];
	int pair[2] = { -1, -1 }, lfd = -1, logfd = -1, r;
	struct cg_limits lim;
	bool cg_made = false;
	size_t nfds = 0, ndisks = qemu_config_disk_count(si->cfg);
	const char *accel = NULL, *cached;
	char **argv = NULL;
	bool recorded = false;
	pid_t pid = -1;

	if (env->qemu_user_problem) {
		set_err(io, -EPERM, DOM_ERR_FAILED, "%s", env->qemu_user_problem);
		return;
	}
	/* The accelerator: "auto" is probed once per daemon. */
	cached = __atomic_load_n(&env->accel_auto, __ATOMIC_ACQUIRE);
	if (!strcmp(qemu_config_accel(si->cfg), "auto") && cached) {
		accel = cached;
	} else if (accel_resolve(env, qemu_config_accel(si->cfg), &accel, err, sizeof(err)) < 0) {
		set_err(io, -EINVAL, DOM_ERR_INVALID, "%s", err);
		return;
	} else if (!strcmp(qemu_config_accel(si->cfg), "auto")) {
		__atomic_store_n(&env->accel_auto, accel, __ATOMIC_RELEASE);
	}
	r = vm_emulator_resolve(env, qemu_config_emulator(si->cfg), emu, sizeof(emu), err,
				sizeof(err));
	if (r < 0) {
		set_err(io, r, DOM_ERR_PERMISSION, "%s", err);
		return;
	}
	qemu_config_set_emulator(si->cfg, emu);
	if (files_open(si, &files) < 0)
		return;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		set_err(io, -errno, DOM_ERR_FAILED, "cannot make the monitor's socket pair: %s",
			strerror(errno));
		goto fail;
	}
	qmp_sock_path(env, si->rec.name, si->qmp_path, sizeof(si->qmp_path));
	r = qemu_qmp_listen(si->qmp_path, &lfd);
	if (r < 0) {
		set_err(io, r, r == -EADDRINUSE ? DOM_ERR_STATE : DOM_ERR_FAILED,
			"cannot create the QMP socket %s: %s", si->qmp_path,
			r == -EADDRINUSE ? "a QEMU still listens on it" : strerror(-r));
		goto fail;
	}
	/* Non-blocking: QEMU's accept() on it must never sit waiting. */
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	snprintf(log_name, sizeof(log_name), "%s.qemu.log", si->rec.name);
	qemu_log_rotate(env, log_name);
	logfd = openat(env->logs_fd, log_name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
		       O_CLOEXEC | O_NOCTTY, 0600);
	if (logfd < 0) {
		set_err(io, -errno, DOM_ERR_STORAGE, "%scannot open the QEMU log %s/logs/%s: %s",
			errno == ENOSPC || errno == EDQUOT ? "state dir full: " : "",
			env->state_dir, log_name, strerror(errno));
		goto fail;
	}
	/*
	 * A line of our own first: a full state dir is found here and said so,
	 * rather than by QEMU failing to write its log ("cannot write to log").
	 */
	{
		char line[96];
		time_t t = time(NULL);
		struct tm tm;
		int n;

		gmtime_r(&t, &tm);
		n = (int)strftime(line, sizeof(line), "corral: starting QEMU at %Y-%m-%dT%H:%M:%SZ\n",
				  &tm);
		errno = 0;
		if (write(logfd, line, (size_t)n) != n) {
			int e = errno ? errno : ENOSPC;

			set_err(io, -e, DOM_ERR_STORAGE, "%scannot write the QEMU log %s/logs/%s: %s",
				e == ENOSPC || e == EDQUOT ? "state dir full: " : "",
				env->state_dir, log_name, strerror(e));
			goto fail;
		}
	}
	r = vm_console_prepare(env, si->rec.name, &si->cf, err, sizeof(err));
	if (r < 0) {
		set_err(io, r, r == -EADDRINUSE ? DOM_ERR_STATE : DOM_ERR_FAILED, "%s", err);
		goto fail;
	}
	/* Its control group, before there is anything to put in it. */
	cg_limits_of(si->cfg, &lim);
	if (cg_vm_create(env->cg, si->rec.name, &lim, err, sizeof(err)) < 0) {
		set_err(io, -EIO, DOM_ERR_FAILED, "%s", err);
		goto fail;
	}
	cg_made = true;

	/* Ownership first: the record names this run before the process exists. */
	snprintf(si->rec.qmp_socket, sizeof(si->rec.qmp_socket), "%s", si->qmp_path);
	r = rec_write(env, &si->rec, "start.record", io->errmsg, sizeof(io->errmsg));
	if (r < 0) {
		io->err = r;
		io->code = DOM_ERR_STORAGE;
		goto fail;
	}
	recorded = true;
	crash_point("start.before-spawn");

	fds[nfds++] = pair[1];                  /* 3: the daemon's monitor */
	fds[nfds++] = lfd;                      /* 4: the re-attach listener */
	l.accel = accel;
	l.qmp_fd = QEMU_CHILD_FD_BASE;
	l.qmp_listen_fd = QEMU_CHILD_FD_BASE + 1;
	l.serial_listen_fd = QEMU_CHILD_FD_BASE + (int)nfds;
	fds[nfds++] = si->cf.listen_fd;
	l.uuid_str = si->rec.uuid;
	for (size_t i = 0; i < qemu_config_nic_count(si->cfg); i++) {
		child_tap[i] = -1;
		if (files.tap[i] >= 0) {
			child_tap[i] = QEMU_CHILD_FD_BASE + (int)nfds;
			fds[nfds++] = files.tap[i];
		}
	}
	l.tap_fds = child_tap;
	if (files.cdrom >= 0) {
		l.cdrom_fd = QEMU_CHILD_FD_BASE + (int)nfds;
		fds[nfds++] = files.cdrom;
	}
	if (files.fw_code >= 0) {
		l.fw_code_fd = QEMU_CHILD_FD_BASE + (int)nfds;
		fds[nfds++] = files.fw_code;
		l.fw_vars_fd = QEMU_CHILD_FD_BASE + (int)nfds;
		fds[nfds++] = files.fw_vars;
	}
	for (size_t i = 0; i < ndisks; i++) {
		child_disk[i] = QEMU_CHILD_FD_BASE + (int)nfds;
		/* Its fd set is numbered after it (qemu/command.c): a detach frees it. */
		si->disk_fdsets[i] = child_disk[i];
		fds[nfds++] = files.disk[i];
	}
	l.disk_fds = child_disk;
	l.incoming_defer = si->incoming;
	if (files.kernel >= 0) {
		l.kernel_fd = QEMU_CHILD_FD_BASE + (int)nfds;
		fds[nfds++] = files.kernel;
	}
	if (files.initrd >= 0) {
		l.initrd_fd = QEMU_CHILD_FD_BASE + (int)nfds;
		fds[nfds++] = files.initrd;
	}
	if (qemu_argv_build(si->cfg, &l, &argv, err, sizeof(err)) < 0) {
		set_err(io, -EINVAL, DOM_ERR_INVALID, "%s", err);
		goto fail;
	}
	snprintf(env_rt, sizeof(env_rt), "CORRAL_RUNTIME_DIR=%s", env->runtime_dir);
	snprintf(env_dom, sizeof(env_dom), "CORRAL_DOMAIN=%s", si->rec.name);
	snprintf(env_uuid, sizeof(env_uuid), "CORRAL_UUID=%s", si->rec.uuid);
	snprintf(env_run, sizeof(env_run), "CORRAL_RUN_ID=%s", si->rec.run_id);
	if (env->qemu_run_as) {
		char **wrapped = as_qemu_user(env, argv);

		qemu_argv_free(argv);
		argv = wrapped;
		if (!argv) {
			set_err(io, -ENOMEM, DOM_ERR_FAILED, "out of memory");
			goto fail;
		}
	}
	r = qemu_spawn(argv, &(struct qemu_spawn_io){ .name = si->rec.name, .log_fd = logfd,
						      .fds = fds, .nfds = nfds, .envp = envp },
		       &pid, err, sizeof(err));
	qemu_argv_free(argv);
	if (r < 0) {
		pid = -1;
		set_err(io, r, DOM_ERR_QEMU, "%s", err);
		goto fail;
	}
	crash_point("start.after-spawn");
	/* Into its group before its guest runs a single instruction (it waits on -S). */
	if (cg_vm_attach(env->cg, si->rec.name, pid, err, sizeof(err)) < 0) {
		set_err(io, -EIO, DOM_ERR_FAILED, "%s", err);
		goto fail;
	}
	si->pidfd = pidfd_open(pid);
	si->rec.starttime = proc_starttime(pid);
	if (si->pidfd < 0) {
		set_err(io, si->pidfd, DOM_ERR_FAILED, "cannot watch the QEMU process: %s",
			strerror(-si->pidfd));
		si->pidfd = -1;
		goto fail;
	}
	si->rec.pid = pid;
	r = rec_write(env, &si->rec, "start.pid-record", io->errmsg, sizeof(io->errmsg));
	if (r < 0) {
		io->err = r;
		io->code = DOM_ERR_STORAGE;
		goto fail;
	}
	crash_point("start.after-pid-record");
	si->pid = pid;
	si->mon_fd = pair[0];
	pair[0] = -1;
	fcntl(si->mon_fd, F_SETFL, fcntl(si->mon_fd, F_GETFL) | O_NONBLOCK);
	close(pair[1]);
	close(lfd);
	close(logfd);
	/* QEMU holds the listening socket now; the connected end and the log are the console's. */
	close(si->cf.listen_fd);
	si->cf.listen_fd = -1;
	files_close(&files, ndisks);
	return;

fail:
	if (recorded || pid > 0)
		spawn_undo(env, pid, si->pidfd, &si->rec);
	if (si->pidfd >= 0)
		close(si->pidfd);
	si->pidfd = -1;
	if (lfd >= 0) {
		close(lfd);
		unlink(si->qmp_path);
	}
	for (int i = 0; i < 2; i++)
		if (pair[i] >= 0)
			close(pair[i]);
	if (logfd >= 0)
		close(logfd);
	vm_console_files_close(&si->cf, true);
	if (cg_made)
		cg_vm_remove(env->cg, si->rec.name);
	files_close(&files, ndisks);
}

static void spawn_io_complete(struct domain *d, struct vm_io *io)
{
	struct spawn_io *si = container_of(io, struct spawn_io, io);
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && job->id == io->job_id && vj->op == VM_OP_START;

	vm->proc = VPROC_NONE;
	if (io->err) {
		vm_lifecycle(d, DOM_SHUTOFF, VR_FAILED);
		if (mine)
			dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s",
				       dom_name(d), io->errmsg);
		else if (vj && vj->op == VM_OP_DESTROY)
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state", "shutoff",
							       "reason", "failed"), NULL);
		vm->kill_on_spawn = false;
		return;
	}
	/* A process exists: it is ours now, whatever became of the job. */
	vm->pid = si->pid;
	vm->starttime = si->rec.starttime;
	memcpy(vm->run_id, si->rec.run_id, sizeof(vm->run_id));
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s", si->qmp_path);
	vm->qmp_path_ours = true;
	vm->child = true;
	vm->signalable = true;
	vm->attached = false;
	vm->proc = VPROC_RUNNING;
	dom_set_pid(d, vm->pid);
	vm_live_init(vm, si->cfg, si->disk_fdsets);
	vm_console_install(d, si->cf.conn_fd, si->cf.log_fd, 0, NULL, 0);
	si->cf.conn_fd = si->cf.log_fd = -1;
	if (watch_pid(d, si->pid, si->pidfd, true) < 0) {
		/* Without a watch we could never notice its exit: do not run it. */
		si->pidfd = -1;
		kill(si->pid, SIGKILL);
		vm->killing = true;
		vm->proc = VPROC_NONE;
		vm->pid = 0;
		dom_set_pid(d, 0);
		vm_lifecycle(d, DOM_SHUTOFF, VR_FAILED);
		if (mine)
			vm_fail(d, job, DOM_ERR_FAILED, "domain '%s': cannot watch the QEMU process",
				dom_name(d));
		/* The record names a process that dies now: the next start-up drops it. */
		return;
	}
	si->pidfd = -1;
	if (vm->kill_on_spawn || !mine) {
		/* destroy (or the start's deadline) came first: it ends now. */
		vm->kill_on_spawn = false;
		vm->killing = true;
		vm_proc_kill(d);
		return;
	}
	if (monitor_on(d, si->mon_fd, job->deadline_ns, false) < 0) {
		vm->killing = true;
		vm_proc_kill(d);
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': cannot watch QEMU's monitor",
			dom_name(d));
		return;
	}
	si->mon_fd = -1;
	vj->phase = VP_WAIT_MON;
}

void vm_proc_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct spawn_io *si = calloc(1, sizeof(*si));
	char err[256];

	if (!si) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	vm_io_init(&si->io, job->id, spawn_io_work, spawn_io_complete, NULL, spawn_io_free);
	si->pidfd = si->mon_fd = -1;
	si->cf.listen_fd = si->cf.conn_fd = si->cf.log_fd = -1;
	/* The spawn works on its own copy: a redefine may replace vm->cfg meanwhile. */
	if (qemu_config_from_json(vm_config_rcu(d), &si->cfg, err, sizeof(err)) < 0) {
		free(si);
		vm_fail(d, job, DOM_ERR_INVALID, "%s", err);
		return;
	}
	si->owner = vm->owner;
	si->incoming = vj->restore;
	json_decref(vm->run_config);
	vm->run_config = json_deep_copy(vm_config_rcu(d));
	snprintf(si->rec.name, sizeof(si->rec.name), "%s", dom_name(d));
	uuid_format(dom_uuid(d), si->rec.uuid);
	run_id_new(si->rec.run_id);
	vm->proc = VPROC_SPAWNING;
	vm->kill_on_spawn = false;
	vm->killing = false;
	vm->start_failed = false;
	vm->quitting = VR_COUNT;
	vm->powerdown_asked = false;
	vm->mon_lost[0] = '\0';
	vm_lifecycle(d, DOM_STARTING, vj->boot ? VR_AUTOSTART : VR_USER);
	vj->phase = VP_SPAWN;
	vm_io_submit(d, &si->io);
}

/* ---- start: the vCPUs' control group ------------------------------------------------------- */

struct split_io {
	struct vm_io io;
	char name[DOM_NAME_MAX + 1];
	pid_t pid;
};

static void split_io_free(struct vm_io *io)
{
	free(container_of(io, struct split_io, io));
}

static void split_io_work(struct vm_io *io)
{
	struct split_io *si = container_of(io, struct split_io, io);

	io->err = cg_vm_split_vcpus(io->env->cg, si->name, si->pid, io->errmsg,
				    sizeof(io->errmsg));
	io->code = DOM_ERR_FAILED;
}

static void split_io_complete(struct domain *d, struct vm_io *io)
{
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	struct vm *vm = vm_of(d);

	if (!vj || job->id != io->job_id)
		return;
	if (io->err) {
		vm->killing = true;
		vm_proc_kill(d);
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	vm_job_cmd(d, job, "cont", NULL, NULL);
}

void vm_proc_ready_to_run(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct split_io *si;

	if (cg_mode(vm->env->cg) != CG_V1) {
		vm_job_cmd(d, job, "cont", NULL, NULL);
		return;
	}
	si = calloc(1, sizeof(*si));
	if (!si) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	vm_io_init(&si->io, job->id, split_io_work, split_io_complete, NULL, split_io_free);
	snprintf(si->name, sizeof(si->name), "%s", dom_name(d));
	si->pid = vm->pid;
	vj->phase = VP_IO;
	vm_io_submit(d, &si->io);
}

/* ---- attach ------------------------------------------------------------------------------ */

struct attach_io {
	struct vm_io io;
	struct creds caller;
	char path[VM_SOCK_PATH_MAX];
	pid_t want_pid;                 /* 0: any */
	/* Out. */
	pid_t pid;
	int pidfd;
	int fd;
	unsigned long long starttime;
	bool signalable;
};

static void attach_io_free(struct vm_io *io)
{
	struct attach_io *ai = container_of(io, struct attach_io, io);

	if (ai->fd >= 0)
		close(ai->fd);
	if (ai->pidfd >= 0)
		close(ai->pidfd);
	free(ai);
}

/* Is pid running one of the allowed emulators?  Then destroy may kill it. */
static bool is_allowed_emulator(struct vm_env *env, pid_t pid)
{
	char link[64], exe[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	n = readlink(link, exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	for (char **e = env->emulators; *e; e++)
		if (!strcmp(*e, exe))
			return true;
	return false;
}

/*
 * Offload thread: connect as the caller; the pid is the socket's peer
 * (SO_PEERCRED: the process that listens), and the caller must own it.
 */
static void attach_io_work(struct vm_io *io)
{
	struct attach_io *ai = container_of(io, struct attach_io, io);
	struct creds peer;
	pid_t pid = 0;
	int r;

	r = creds_enter(&ai->caller);
	if (r < 0) {
		set_err(io, r, DOM_ERR_PERMISSION, "cannot take on the caller's identity: %s",
			strerror(-r));
		return;
	}
	r = mon_connect_unix(ai->path, &ai->fd);
	creds_leave();
	if (r < 0) {
		ai->fd = -1;
		set_err(io, r, r == -EACCES || r == -EPERM ? DOM_ERR_PERMISSION : DOM_ERR_MONITOR,
			"cannot connect to %s: %s", ai->path, strerror(-r));
		return;
	}
	r = creds_from_socket(ai->fd, &peer, &pid);
	if (r < 0 || pid <= 0) {
		set_err(io, r < 0 ? r : -ESRCH, DOM_ERR_MONITOR, "%s: cannot tell which process "
			"listens on it", ai->path);
		return;
	}
	if (!creds_is_root(&ai->caller) && peer.uid != ai->caller.uid) {
		set_err(io, -EPERM, DOM_ERR_PERMISSION, "%s is served by pid %d of uid %u, not "
			"by a process of yours (uid %u)", ai->path, (int)pid, (unsigned)peer.uid,
			(unsigned)ai->caller.uid);
		return;
	}
	if (ai->want_pid && ai->want_pid != pid) {
		set_err(io, -EINVAL, DOM_ERR_INVALID, "%s is served by pid %d, not %d", ai->path,
			(int)pid, (int)ai->want_pid);
		return;
	}
	ai->pidfd = pidfd_open(pid);
	if (ai->pidfd < 0) {
		set_err(io, ai->pidfd, DOM_ERR_INVALID, "process %d: %s", (int)pid,
			strerror(-ai->pidfd));
		ai->pidfd = -1;
		return;
	}
	/* Checked after the pidfd is open: the pid cannot be reused under us now. */
	ai->starttime = proc_starttime(pid);
	ai->signalable = is_allowed_emulator(io->env, pid);
	ai->pid = pid;
}

static void attach_io_complete(struct domain *d, struct vm_io *io)
{
	struct attach_io *ai = container_of(io, struct attach_io, io);
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (!vj || job->id != io->job_id)
		return;         /* timed out meanwhile: the fds close with ai */
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	vm->pid = ai->pid;
	vm->starttime = ai->starttime;
	vm->child = false;
	vm->signalable = ai->signalable;
	vm->attached = true;
	vm->run_id[0] = '\0';
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s", ai->path);
	vm->qmp_path_ours = false;
	vm->proc = VPROC_RUNNING;
	dom_set_pid(d, vm->pid);
	if (watch_pid(d, ai->pid, ai->pidfd, false) < 0) {
		ai->pidfd = -1;
		vm->proc = VPROC_NONE;
		vm->pid = 0;
		dom_set_pid(d, 0);
		vm_fail(d, job, DOM_ERR_FAILED, "domain '%s': cannot watch process %d", dom_name(d),
			(int)ai->pid);
		return;
	}
	ai->pidfd = -1;
	if (monitor_on(d, ai->fd, job->deadline_ns, false) < 0) {
		vm_proc_release(vm);
		dom_set_pid(d, 0);
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': cannot watch the monitor",
			dom_name(d));
		return;
	}
	ai->fd = -1;
	vj->phase = VP_WAIT_MON;
}

void vm_proc_attach(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;
	const char *path = json_string_value(json_object_get(vj->args, "qmp_socket"));
	json_int_t pid = json_integer_value(json_object_get(vj->args, "pid"));
	struct attach_io *ai;

	if (!path || path[0] != '/' || strlen(path) >= sizeof(ai->path)) {
		vm_fail(d, job, DOM_ERR_INVALID, "attach: 'qmp_socket' must be an absolute path");
		return;
	}
	if (pid < 0 || pid > INT32_MAX) {
		vm_fail(d, job, DOM_ERR_INVALID, "attach: 'pid' out of range");
		return;
	}
	ai = calloc(1, sizeof(*ai));
	if (!ai) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	vm_io_init(&ai->io, job->id, attach_io_work, attach_io_complete, NULL, attach_io_free);
	ai->caller = vj->creds;
	strcpy(ai->path, path);
	ai->want_pid = (pid_t)pid;
	ai->fd = ai->pidfd = -1;
	vj->phase = VP_IO;
	vm_io_submit(d, &ai->io);
}

/* ---- state from query-status -------------------------------------------------------------- */

/* The domain's state for QEMU's run state; NULL status: running. */
static enum dom_state state_of_status(const char *status)
{
	if (!status || !strcmp(status, "running"))
		return DOM_RUNNING;
	if (!strcmp(status, "suspended"))
		return DOM_PMSUSPENDED;
	if (!strcmp(status, "guest-panicked"))
		return DOM_CRASHED;
	if (!strcmp(status, "shutdown"))
		return DOM_SHUTTING_DOWN;
	return DOM_PAUSED;      /* paused, prelaunch, inmigrate, debug, io-error, ... */
}

static void attach_recorded(struct domain *d, struct vm_io *io)
{
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (!vj || job->id != io->job_id)
		return;
	if (io->err) {
		/* Not owned durably: let go of it again, as if never attached. */
		vm_proc_release(vm_of(d));
		dom_set_pid(d, 0);
		dom_set_monitor(d, DOM_MON_NONE);
		vm_lifecycle(d, DOM_SHUTOFF, VR_FAILED);
		dom_job_finish(d, job, io->err, DOM_ERR_STORAGE, NULL, "domain '%s': %s",
			       dom_name(d), io->errmsg);
		return;
	}
	crash_point("attach.after-record");
	dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:i}", "state",
					       dom_state_name(dom_state_actor(d)), "pid",
					       vm_of(d)->pid), NULL);
}

void vm_proc_attach_record(struct domain *d, struct dom_job *job)
{
	/* Owned for good once the record is on disk. */
	((struct vm_job *)job->priv)->phase = VP_IO;
	vm_proc_record(d, job->id, attach_recorded);
}

void vm_proc_status(struct domain *d, struct dom_job *job, json_t *ret)
{
	struct vm_job *vj = job->priv;
	const char *status = json_string_value(json_object_get(ret, "status"));
	enum dom_state st = state_of_status(status);

	if (status && !strcmp(status, "prelaunch") && vj->op != VM_OP_ATTACH) {
		/*
		 * A QEMU of ours that never ran its guest: the start was cut
		 * short by a crash of the daemon.  Finish it.
		 */
		vm_job_cmd(d, job, "cont", NULL, NULL);
		vj->phase = VP_WAIT_CONT;
		return;
	}
	if (vj->op == VM_OP_SETTLE) {
		if (dom_state_actor(d) != st)
			vm_lifecycle(d, st, st == DOM_CRASHED ? VR_PANICKED : VR_SYNCED);
		dom_job_finish(d, job, 0, 0, NULL, NULL);
		return;
	}
	if (vj->op != VM_OP_REATTACH || dom_state_actor(d) != st)
		vm_lifecycle(d, st, st == DOM_CRASHED ? VR_PANICKED :
			     vj->op == VM_OP_REATTACH ? VR_REATTACHED : VR_ATTACHED);
	if (vj->op == VM_OP_ATTACH) {
		if (vm_config_unknown(vm_of(d)))
			vm_discover_start(d, job);      /* then vm_proc_attach_record() */
		else
			vm_proc_attach_record(d, job);
		return;
	}
	dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "state", dom_state_name(st)), NULL);
}

/* ---- re-attach at start-up ------------------------------------------------------------------ */

/*
 * The re-attach owns the process once it is watched: the job ends here,
 * whatever the monitor does, so that a hung QEMU holds its domain no
 * longer than this.  A monitor that completes its handshake later is asked
 * for QEMU's state by a settle job (vm.c), which also finishes a start cut
 * short by a crash.
 */
static void reattach_conn_complete(struct domain *d, struct vm_io *io)
{
	struct conn_io *ci = container_of(io, struct conn_io, io);
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && job->id == io->job_id;

	if (vm->proc == VPROC_RUNNING && !vm->mon) {
		if (!io->err && monitor_on(d, ci->fd, now_ns() + 30 * NSEC_PER_SEC, true) == 0)
			ci->fd = -1;
		else
			/*
			 * No monitor (the socket is gone, or QEMU does not
			 * accept): the QEMU runs all the same.  It stays
			 * ours, destroy still kills it, and the monitor is
			 * tried again in the background.
			 */
			monitor_failed(d, io->err ? io->errmsg : "cannot watch the monitor socket");
	}
	if (mine)
		dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state",
						       dom_state_name(dom_state_actor(d)),
						       "monitor", vm->mon ? "connecting" : "broken"),
			       NULL);
}

void vm_proc_reattach(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_found *f = &vj->found;

	if (vm->proc != VPROC_NONE) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' already has a QEMU", dom_name(d));
		return;
	}
	vm->pid = f->pid;
	vm->starttime = f->starttime;
	vm->child = false;
	vm->signalable = f->signalable;
	vm->attached = f->attached;
	memcpy(vm->run_id, f->run_id, sizeof(vm->run_id));
	snprintf(vm->qmp_path, sizeof(vm->qmp_path), "%s", f->qmp_path);
	vm->qmp_path_ours = f->qmp_path_ours;
	vm->proc = VPROC_RUNNING;
	dom_set_pid(d, vm->pid);
	/* Its end is seen through the monitor, once connected (or a pidfd if it cannot be). */
	vm_lifecycle(d, DOM_RUNNING, VR_REATTACHED);
	dom_set_monitor(d, DOM_MON_CONNECTING);
	/* The record again if it missed the pid (a crash right after the spawn). */
	if (f->rewrite)
		vm_proc_record(d, 0, NULL);
	/*
	 * The monitor is connected when vm_proc_reattach_connect() says so:
	 * the start-up first lets every domain show its QEMU, then the
	 * connects and handshakes run while the daemon serves.  Jobs sent
	 * meanwhile wait behind this one.
	 */
	vj->phase = VP_IO;
}

/* The re-attach's second step: connect the monitor (and the console).  Domain actor. */
static void reattach_connect_call(struct domain *d, void *arg)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && vj->op == VM_OP_REATTACH && vj->phase == VP_IO;
	struct conn_io *ci;

	if (vm->proc != VPROC_RUNNING || vm->mon || !vm->qmp_path[0]) {
		if (mine)
			dom_job_finish(d, job, 0, 0, NULL, NULL);
		return;
	}
	ci = conn_io_new(d, mine ? job->id : 0, reattach_conn_complete);
	if (!ci) {
		monitor_failed(d, "out of memory");
		if (mine)
			dom_job_finish(d, job, 0, 0, NULL, NULL);
		return;
	}
	vm_io_submit(d, &ci->io);
	if (!vm->attached)
		vm_console_reconnect(d);
}

/* ---- recovery at start-up ---------------------------------------------------------------------- */

/*
 * Main thread, before serving.  Every step is linear in the records and
 * processes: each /proc file is read once (a simulator serving thousands
 * of monitors is one process), names and run ids are looked up in hash
 * tables, and nothing is flushed per record (the removals of records that
 * name dead processes share one flush of the directory).
 */

/* A small open-addressing map from strings (not copied) to indexes. */
struct strmap {
	const char **key;
	size_t *val;
	size_t cap, n;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static bool strmap_get(const struct strmap *m, const char *key, size_t *val)
{
	if (!m->cap)
		return false;
	for (size_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->key[i])
			return false;
		if (!strcmp(m->key[i], key)) {
			if (val)
				*val = m->val[i];
			return true;
		}
	}
}

static int strmap_put(struct strmap *m, const char *key, size_t val)
{
	size_t i;

	if (2 * (m->n + 1) > m->cap) {
		struct strmap g = { .cap = m->cap ? 2 * m->cap : 64 };

		g.key = calloc(g.cap, sizeof(*g.key));
		g.val = calloc(g.cap, sizeof(*g.val));
		if (!g.key || !g.val) {
			free(g.key);
			free(g.val);
			return -ENOMEM;
		}
		for (size_t j = 0; j < m->cap; j++)
			if (m->key[j])
				strmap_put(&g, m->key[j], m->val[j]);
		free(m->key);
		free(m->val);
		*m = g;
	}
	for (i = str_hash(key) & (m->cap - 1); m->key[i]; i = (i + 1) & (m->cap - 1))
		if (!strcmp(m->key[i], key)) {
			m->val[i] = val;
			return 0;
		}
	m->key[i] = key;
	m->val[i] = val;
	m->n++;
	return 0;
}

static void strmap_free(struct strmap *m)
{
	free(m->key);
	free(m->val);
	memset(m, 0, sizeof(*m));
}

/* What /proc says of one pid, read once however many records name it. */
struct pidinfo {
	pid_t pid;                      /* 0: a free slot */
	int err;                        /* of the start time: 0, -ESRCH gone, ... */
	unsigned long long starttime;
	int allowed;                    /* an allowed emulator: -1 not asked yet, 0, 1 */
	size_t seen;                    /* 1 + its index in the /proc scan's list, or 0 */
};

struct pidmap {
	struct pidinfo *v;
	size_t cap, n;
};

static struct pidinfo *pidmap_get(struct pidmap *m, pid_t pid)
{
	size_t i;

	if (2 * (m->n + 1) > m->cap) {
		struct pidmap g = { .cap = m->cap ? 2 * m->cap : 64 };

		g.v = calloc(g.cap, sizeof(*g.v));
		if (!g.v)
			return NULL;
		for (size_t j = 0; j < m->cap; j++) {
			if (!m->v[j].pid)
				continue;
			for (i = ((uint32_t)m->v[j].pid * 2654435761u) & (g.cap - 1); g.v[i].pid;
			     i = (i + 1) & (g.cap - 1))
				;
			g.v[i] = m->v[j];
		}
		g.n = m->n;
		free(m->v);
		*m = g;
	}
	for (i = ((uint32_t)pid * 2654435761u) & (m->cap - 1); m->v[i].pid; i = (i + 1) & (m->cap - 1))
		if (m->v[i].pid == pid)
			return &m->v[i];
	m->v[i].pid = pid;
	m->v[i].err = proc_starttime_r(pid, &m->v[i].starttime);
	m->v[i].allowed = -1;
	m->n++;
	return &m->v[i];
}

/* A QEMU of this runtime directory seen in /proc. */
struct seen {
	pid_t pid;
	unsigned long long starttime;
	char run_id[VM_RUN_ID_LEN + 1];
	char domain[DOM_NAME_MAX + 1];
	bool claimed;
};

struct seen_list {
	struct seen *v;
	size_t n, cap;
};

/* The value of key in an environment block of len bytes, copied to out. */
static bool environ_find(const char *buf, size_t len, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < len;) {
		const char *e = buf + i;
		size_t n = strnlen(e, len - i);

		if (n > klen && !memcmp(e, key, klen) && e[klen] == '=') {
			snprintf(out, outlen, "%.*s", (int)(n - klen - 1), e + klen + 1);
			return true;
		}
		i += n + 1;
	}
	return false;
}

/* Every process whose environment says it is a QEMU of this runtime directory. */
static void scan_proc(struct vm_env *env, struct seen_list *out)
{
	struct dirent *de;
	DIR *dp = opendir("/proc");
	char val[PATH_MAX], path[64];
	char *buf = malloc(ENVIRON_MAX + 1);

	if (!dp || !buf) {
		if (dp)
			closedir(dp);
		free(buf);
		return;
	}
	while ((de = readdir(dp))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		struct seen s = { 0 };
		size_t off = 0;
		ssize_t n;
		int fd;

		if (*end || pid <= 0 || pid == getpid())
			continue;
		/* One read of the environment for all three keys. */
		snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		while (off < ENVIRON_MAX && (n = read(fd, buf + off, ENVIRON_MAX - off)) > 0)
			off += (size_t)n;
		close(fd);
		buf[off] = '\0';
		if (!environ_find(buf, off, "CORRAL_RUNTIME_DIR", val, sizeof(val)) ||
		    strcmp(val, env->runtime_dir) != 0)
			continue;
		s.pid = (pid_t)pid;
		s.starttime = proc_starttime(s.pid);
		environ_find(buf, off, "CORRAL_RUN_ID", s.run_id, sizeof(s.run_id));
		environ_find(buf, off, "CORRAL_DOMAIN", s.domain, sizeof(s.domain));
		if (!s.starttime)
			continue;       /* gone meanwhile */
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 64;
			struct seen *v = realloc(out->v, cap * sizeof(*v));

			if (!v)
				break;
			out->v = v;
			out->cap = cap;
		}
		out->v[out->n++] = s;
	}
	closedir(dp);
	free(buf);
}

/* Stop a QEMU nobody may keep, and wait (bounded) for it to be gone. */
static void stop_stray(pid_t pid, unsigned long long starttime)
{
	struct pollfd pfd = { .fd = -1, .events = POLLIN };

	if (pidfd_open_checked(pid, starttime, &pfd.fd) < 0)
		return;
	pidfd_kill(pfd.fd, SIGKILL);
	poll(&pfd, 1, STOP_WAIT_MS);
	close(pfd.fd);
}

struct recover {
	struct vm_env *env;
	struct seen_list seen;
	struct strmap seen_pid_run;     /* run id -> index in seen */
	struct pidmap pids;
	void (*report)(const char *path, const char *why, void *arg);
	void *arg;
	struct strmap adopted;          /* domain names already given a QEMU (keys owned) */
	struct found_dom {
		struct domain *d;       /* referenced */
		struct vm_found f;
	} *found;                       /* handed over once every record is read */
	size_t nfound, capfound;
	bool vms_dirty, runtime_dirty;  /* records removed: flush the directory once */
};

static void say(struct recover *rc, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(struct recover *rc, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!rc->report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rc->report(path, msg, rc->arg);
}

static bool adopted(struct recover *rc, const char *name)
{
	return strmap_get(&rc->adopted, name, NULL);
}

static void mark_adopted(struct recover *rc, const char *name)
{
	char *k = strdup(name);

	if (k && strmap_put(&rc->adopted, k, 0) < 0)
		free(k);
}

/*
 * The start-up waits until every domain it handed a QEMU (or news of one)
 * has published it: env->recovering counts those not yet done.
 */
static void recovered(struct vm_env *env)
{
	if (__atomic_sub_fetch(&env->recovering, 1, __ATOMIC_RELEASE) == 0)
		futex_wake(&env->recovering, INT_MAX);
}

static void reattach_done(struct dom_job *job, void *arg)
{
	dom_job_free(job);
}

/*
 * Sent right behind the re-attach job: it runs after the job's first turn,
 * whose snapshot (running, the pid, the monitor connecting) is published
 * by then.
 */
static void published_call(struct domain *d, void *arg)
{
	recovered(arg);
}

static void published_drop(void *arg)
{
	recovered(arg);
}

/*
 * Note a found QEMU for its domain (handed over by submit_adopted(), once
 * every record is read: the reads do not compete with the domains' turns).
 */
static int adopt(struct recover *rc, struct domain *d, const struct vm_found *f)
{
	if (rc->nfound == rc->capfound) {
		size_t cap = rc->capfound ? 2 * rc->capfound : 256;
		struct found_dom *v = realloc(rc->found, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		rc->found = v;
		rc->capfound = cap;
	}
	dom_ref(d);
	rc->found[rc->nfound].d = d;
	rc->found[rc->nfound].f = *f;
	rc->nfound++;
	mark_adopted(rc, dom_name(d));
	return 0;
}

/* Hand each found QEMU to its domain's actor: a reattach job, then a call behind it. */
static void submit_adopted(struct recover *rc)
{
	for (size_t i = 0; i < rc->nfound; i++) {
		struct found_dom *fd = &rc->found[i];
		struct dom_job *job;
		char err[128];

		if (vm_job_new(VM_OP_REATTACH, NULL, 30 * NSEC_PER_SEC, reattach_done, NULL,
			       &job, err, sizeof(err)) < 0) {
			say(rc, rc->env->runtime_dir, "cannot re-attach domain '%s' to pid %d: out of "
			    "memory", dom_name(fd->d), (int)fd->f.pid);
			continue;
		}
		((struct vm_job *)job->priv)->found = fd->f;
		if (vm_submit(fd->d, job) < 0) {
			dom_job_free(job);
			continue;
		}
		__atomic_fetch_add(&rc->env->recovering, 1, __ATOMIC_RELAXED);
		if (dom_call(fd->d, published_call, rc->env, published_drop) < 0)
			recovered(rc->env);
	}
}

/* Every domain shows its QEMU: now connect the monitors, while serving. */
static void connect_adopted(struct recover *rc)
{
	for (size_t i = 0; i < rc->nfound; i++) {
		dom_call(rc->found[i].d, reattach_connect_call, NULL, NULL);
		dom_unref(rc->found[i].d);
	}
	free(rc->found);
}

/* The domain of that name, referenced, or NULL. */
static struct domain *find_domain(struct vm_env *env, const char *name)
{
	struct domain *d;

	crcu_read_lock();
	d = reg_lookup_name_rcu(env->reg, name);
	if (d)
		dom_ref(d);
	crcu_read_unlock();
	return d;
}

static void set_reason_call(struct domain *d, void *arg)
{
	struct vm *vm = vm_of(d);

	if (vm->proc == VPROC_NONE && dom_state_actor(d) == DOM_SHUTOFF)
		vm_lifecycle(d, DOM_SHUTOFF, VR_ENDED_WHILE_AWAY);
	recovered(vm->env);
}

static void set_reason_drop(void *arg)
{
	recovered(arg);
}

/* Is the process pid the one the record names (its start time, its run id)? */
static bool rec_matches(struct recover *rc, const struct rec *r, pid_t pid,
			unsigned long long starttime)
{
	struct pidinfo *pi;
	char run_id[VM_RUN_ID_LEN + 1];
	size_t i;

	if (pid <= 0 || !starttime)
		return false;
	pi = pidmap_get(&rc->pids, pid);
	if (!pi || pi->err || pi->starttime != starttime)
		return false;
	if (r->attached)
		return true;
	/* A QEMU of this runtime directory was seen in /proc with its run id. */
	if (strmap_get(&rc->seen_pid_run, r->run_id, &i))
		return rc->seen.v[i].pid == pid;
	return proc_environ_get(pid, "CORRAL_RUN_ID", run_id, sizeof(run_id)) &&
	       !strcmp(run_id, r->run_id);
}

/* A record that names no live process goes; the directory is flushed once, at the end. */
static void rec_drop(struct recover *rc, int dirfd, const char *file)
{
	if (unlinkat(dirfd, file, 0) == 0) {
		if (dirfd == rc->env->vms_fd)
			rc->vms_dirty = true;
		else
			rc->runtime_dirty = true;
	}
}

/*
 * Run records are read and parsed on several threads, a batch at a time
 * (pfor: the files' reads and jansson's parse are most of the cost, and
 * touch nothing shared); what each says is then acted on here, on the main
 * thread, in directory order.
 */
#define REC_BATCH 1024

struct rec_slot {
	char file[NAME_MAX + 1];        /* no allocation per record: none can fail */
	int r;                  /* 0: rec is filled; -EIO: unreadable (err); -EINVAL: not a record */
	char *err;
	struct rec rec;
};

struct rec_batch {
	int dirfd;
	struct rec_slot *v;
	size_t n;
};

/* Any thread. */
static void rec_read_one(void *ctx, size_t i)
{
	struct rec_batch *b = ctx;
	struct rec_slot *sl = &b->v[i];
	char err[256], *text = NULL;
	size_t len;

	if (durable_read(b->dirfd, "runtime dir", sl->file, VM_REC_MAX, &text, &len, err,
			 sizeof(err)) < 0) {
		sl->r = -EIO;
		sl->err = strdup(err);
		return;
	}
	sl->r = rec_parse(text, len, &sl->rec) < 0 ? -EINVAL : 0;
	free(text);
}

static void recover_record(struct recover *rc, int dirfd, struct rec_slot *sl, bool legacy)
{
	struct vm_env *env = rc->env;
	const char *file = sl->file;
	char path[PATH_MAX];
	struct vm_found f = { 0 };
	struct domain *d;
	struct rec r;
	size_t i;
	pid_t pid = 0;
	unsigned long long starttime = 0;
	char uuid[37];

	snprintf(path, sizeof(path), "%s/%s%s", env->runtime_dir, legacy ? "" : "vms/", file);
	if (sl->r == -EIO) {
		say(rc, path, "%s", sl->err ? sl->err : "cannot read it");
		return;
	}
	if (sl->r < 0) {
		say(rc, path, "not a run record: removed");
		unlinkat(dirfd, file, 0);
		return;
	}
	r = sl->rec;
	if (legacy) {
		/* RUNTIME_DIR/NAME.run.json */
		size_t n = strlen(file) - strlen(".run.json");

		snprintf(r.name, sizeof(r.name), "%.*s", (int)n, file);
	}
	/* Which process: the recorded one, or the one carrying the record's run id. */
	if (rec_matches(rc, &r, r.pid, r.starttime)) {
		pid = r.pid;
		starttime = r.starttime;
	} else if (!r.attached && r.run_id[0] && strmap_get(&rc->seen_pid_run, r.run_id, &i) &&
		   !rc->seen.v[i].claimed) {
		pid = rc->seen.v[i].pid;
		starttime = rc->seen.v[i].starttime;
	}
	if (pid) {
		struct pidinfo *pi = pidmap_get(&rc->pids, pid);

		if (pi && pi->seen)
			rc->seen.v[pi->seen - 1].claimed = true;
	}
	d = dom_name_valid(r.name) ? find_domain(env, r.name) : NULL;
	if (d && r.uuid[0]) {
		uuid_format(dom_uuid(d), uuid);
		if (strcasecmp(uuid, r.uuid) != 0) {
			dom_unref(d);
			d = NULL;       /* the same name, another domain */
		}
	}
	if (!pid) {
		/* Ended while no daemon watched: say so, and forget the record. */
		if (!r.attached && r.qmp_socket[0])
			unlink(r.qmp_socket);
		rec_drop(rc, dirfd, file);
		if (d) {
			say(rc, path, "the QEMU of domain '%s' (pid %d) ended while corrald was not "
			    "running", r.name, (int)r.pid);
			__atomic_fetch_add(&env->recovering, 1, __ATOMIC_RELAXED);
			if (dom_call(d, set_reason_call, env, set_reason_drop) < 0)
				recovered(env);
			dom_unref(d);
		}
		return;
	}
	if (!d || adopted(rc, r.name)) {
		say(rc, path, "QEMU pid %d belongs to %s: stopped", (int)pid,
		    d ? "a domain that already has one" : "no defined domain");
		stop_stray(pid, starttime);
		if (!r.attached && r.qmp_socket[0] && !d)
			unlink(r.qmp_socket);
		if (!d)
			durable_unlink(dirfd, "runtime dir", file, NULL, NULL, 0);
		if (d)
			dom_unref(d);
		return;
	}
	f.pid = pid;
	f.starttime = starttime;
	f.attached = r.attached;
	if (r.attached) {
		struct pidinfo *pi = pidmap_get(&rc->pids, pid);

		if (pi && pi->allowed < 0)
			pi->allowed = is_allowed_emulator(env, pid);
		f.signalable = pi && pi->allowed > 0;
	} else {
		f.signalable = true;
	}
	memcpy(f.run_id, r.run_id, sizeof(f.run_id));
	snprintf(f.qmp_path, sizeof(f.qmp_path), "%s", r.qmp_socket);
	f.qmp_path_ours = !r.attached;
	/* Written again only when it does not name this process (or is of the old layout). */
	f.rewrite = legacy || r.pid != pid || r.starttime != starttime;
	if (legacy) {
		/* Written anew under vms/ by the re-attach; this one goes. */
		unlinkat(dirfd, file, 0);
	}
	if (adopt(rc, d, &f) < 0)
		say(rc, path, "cannot re-attach domain '%s' to pid %d", r.name, (int)pid);
	dom_unref(d);
}

static void recover_dir(struct recover *rc, int dirfd, bool legacy)
{
	struct rec_batch b = { 0 };
	struct pfor par = { 0 };
	struct rec_slot one;
	struct dirent *de;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	size_t cap = REC_BATCH;
	DIR *dp;

	if (fd < 0)
		return;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return;
	}
	/*
	 * Short of memory, one record at a time on this thread: a record left
	 * unread would get its QEMU stopped as one without a record.
	 */
	b.v = calloc(cap, sizeof(*b.v));
	if (!b.v) {
		memset(&one, 0, sizeof(one));
		b.v = &one;
		cap = 1;
	}
	b.dirfd = dirfd;
	rewinddir(dp);
	for (;;) {
		const char *suffix = legacy ? ".run.json" : ".json";
		size_t len, sl = strlen(suffix);

		de = readdir(dp);
		if (de) {
			len = strlen(de->d_name);
			if (!legacy && len > 4 && !strcmp(de->d_name + len - 4, ".tmp")) {
				unlinkat(dirfd, de->d_name, 0);         /* a write cut short */
				continue;
			}
			if (len <= sl || strcmp(de->d_name + len - sl, suffix) != 0)
				continue;
			memcpy(b.v[b.n].file, de->d_name, len + 1);
			if (++b.n < cap)
				continue;
		}
		/* A full batch, or the last: read on every thread, then acted on in order. */
		par.fn = rec_read_one;
		par.ctx = &b;
		par.n = b.n;
		pfor_start(&par, pfor_threads() - 1);
		pfor_finish(&par);
		for (size_t i = 0; i < b.n; i++) {
			recover_record(rc, dirfd, &b.v[i], legacy);
			free(b.v[i].err);
		}
		memset(b.v, 0, b.n * sizeof(*b.v));
		b.n = 0;
		if (!de)
			break;
	}
	if (b.v != &one)
		free(b.v);
	closedir(dp);
}

static void remove_stale_cgroup(const char *name, void *arg)
{
	struct recover *rc = arg;

	if (!adopted(rc, name))
		cg_vm_remove(rc->env->cg, name);
}

/* Sockets of QEMUs that are gone (a start cut short before its record). */
static void remove_stale_sockets(struct recover *rc, int dirfd)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	struct dirent *de;
	DIR *dp;

	if (fd < 0)
		return;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return;
	}
	rewinddir(dp);
	while ((de = readdir(dp))) {
		char name[DOM_NAME_MAX + 1];
		size_t len = strlen(de->d_name);

		if (len <= 5 || len - 5 > DOM_NAME_MAX || strcmp(de->d_name + len - 5, ".sock"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), de->d_name);
		if (!adopted(rc, name))
			unlinkat(dirfd, de->d_name, 0);
	}
	closedir(dp);
}

int vm_proc_recover(struct vm_env *env,
		    void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	struct recover rc = { .env = env, .report = report, .arg = arg };
	char path[PATH_MAX];

	scan_proc(env, &rc.seen);
	for (size_t i = 0; i < rc.seen.n; i++) {
		struct pidinfo *pi = pidmap_get(&rc.pids, rc.seen.v[i].pid);

		if (pi)
			pi->seen = i + 1;
		if (rc.seen.v[i].run_id[0])
			strmap_put(&rc.seen_pid_run, rc.seen.v[i].run_id, i);
	}
	recover_dir(&rc, env->vms_fd, false);
	recover_dir(&rc, env->runtime_fd, true);
	/* QEMUs of ours without a record (lost, or never written): adopt or stop. */
	for (size_t i = 0; i < rc.seen.n; i++) {
		struct seen *s = &rc.seen.v[i];
		struct vm_found f = { 0 };
		struct domain *d;
		unsigned long long now = 0;

		if (s->claimed)
			continue;
		if (proc_starttime_r(s->pid, &now) < 0 || now != s->starttime)
			continue;       /* gone meanwhile */
		snprintf(path, sizeof(path), "/proc/%d", (int)s->pid);
		d = dom_name_valid(s->domain) ? find_domain(env, s->domain) : NULL;
		if (!d || adopted(&rc, s->domain) || !s->run_id[0]) {
			say(&rc, path, "QEMU of %s '%s' with no run record: stopped",
			    d ? "domain" : "undefined domain", s->domain);
			stop_stray(s->pid, s->starttime);
			if (d)
				dom_unref(d);
			continue;
		}
		f.pid = s->pid;
		f.starttime = s->starttime;
		f.signalable = true;
		f.rewrite = true;
		memcpy(f.run_id, s->run_id, sizeof(f.run_id));
		qmp_sock_path(env, s->domain, f.qmp_path, sizeof(f.qmp_path));
		f.qmp_path_ours = true;
		say(&rc, path, "QEMU of domain '%s' had no run record: re-attaching", s->domain);
		adopt(&rc, d, &f);
		dom_unref(d);
	}
	submit_adopted(&rc);
	/* The removals of records naming dead processes, flushed once per directory. */
	if (rc.vms_dirty)
		fsync(env->vms_fd);
	if (rc.runtime_dirty)
		fsync(env->runtime_fd);
	remove_stale_sockets(&rc, env->qmp_fd);
	remove_stale_sockets(&rc, env->console_fd);
	/*
	 * Serve only once every adopted QEMU is on record in its domain's
	 * snapshot: the first list a client sees shows them running.  That is
	 * one turn of each such domain (the re-attach's first), not its
	 * monitor: connecting and the QMP handshake go on while serving, and
	 * jobs sent meanwhile wait behind the re-attach.  Bounded all the same.
	 */
	{
		uint64_t deadline = now_ns() + 10 * NSEC_PER_SEC;
		uint32_t n;

		while ((n = __atomic_load_n(&env->recovering, __ATOMIC_ACQUIRE)) != 0) {
			uint64_t now = now_ns();
			struct timespec ts;

			if (now >= deadline) {
				say(&rc, env->runtime_dir, "%u domains have not taken their QEMU after "
				    "10 s: serving anyway", n);
				break;
			}
			ts = ns_to_timespec(deadline - now);
			futex_wait(&env->recovering, n, &ts);
		}
	}
	connect_adopted(&rc);
	/* Control groups of QEMUs that are gone. */
	cg_for_each(env->cg, remove_stale_cgroup, &rc);
	for (size_t i = 0; i < rc.adopted.cap; i++)
		free((char *)rc.adopted.key[i]);
	strmap_free(&rc.adopted);
	strmap_free(&rc.seen_pid_run);
	free(rc.pids.v);
	free(rc.seen.v);
	return 0;
}

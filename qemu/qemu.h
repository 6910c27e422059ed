/* SPDX-License-Identifier: MIT */
/*
 * qemu: from a checked domain config (qemu/config.h) to a running QEMU.
 *
 * Start a domain in five calls, all from the thread that starts it:
 *
 *     qemu_accel_resolve(qemu_config_accel(c), &accel, ...)   "auto" -> kvm | tcg
 *     qemu_qmp_listen(RUNDIR "/qmp.sock", &lfd)                the monitor socket
 *     qemu_argv_build(c, &(struct qemu_launch){ accel, QEMU_CHILD_QMP_FD, ... }, &argv, ...)
 *     qemu_spawn(argv, &(struct qemu_spawn_io){ name, log, lfd }, &pid, ...)
 *     connect() to RUNDIR "/qmp.sock", then close(lfd)
 *
 * The listening socket is made here, not by QEMU: QEMU inherits it as fd 3
 * and accepts on it (-chardev socket,fd=3,server=on).  Because the socket
 * is listening before QEMU even runs, the daemon's connect() succeeds at
 * once (the kernel queues the connection until QEMU accepts), so nothing
 * polls for a socket file to appear.  Connect before closing the daemon's
 * copy of the listening fd: while the daemon holds it, connect() cannot
 * race an early QEMU exit, and a QEMU that dies before accepting shows up
 * as EOF (or ECONNRESET) on the connected socket once the last listener is
 * gone, instead of as a connect timeout.  Closing the copy matters as
 * well: kept open, it would let a dead QEMU's socket go on queueing
 * connections that nobody will ever accept.
 *
 * QEMU starts paused (-S) with only the QMP monitor: the daemon sends
 * qmp_capabilities, sets what it needs, then "cont".
 *
 * No shell is involved anywhere: argv goes to posix_spawnp() as is.
 *
 * Threading: no function here keeps state between calls or takes a lock;
 * all may run on any thread.  The module never prints.
 */
#ifndef CORRAL_QEMU_QEMU_H
#define CORRAL_QEMU_QEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "qemu/config.h"

/* The fd number under which QEMU finds the QMP listening socket. */
#define QEMU_CHILD_QMP_FD 3

/* ---- accelerator ---------------------------------------------------------- */

/*
 * Turn the config's accel ("auto", "kvm" or "tcg") into what QEMU gets:
 * "kvm" or "tcg" (static strings), to *ret.  Any thread.
 *
 * KVM counts as usable when /dev/kvm opens read-write, reports API version
 * 12, and KVM_CREATE_VM succeeds (the VM is closed again at once): an
 * openable /dev/kvm on a host with virtualisation disabled, or held by
 * another hypervisor, fails only at that last step.  Not cached, since
 * permissions and modules change while the daemon runs.
 *
 * "auto" gives kvm when usable, else tcg, and never fails.  "kvm" when
 * unusable gives -ENODEV and the reason in err ("cannot open /dev/kvm:
 * Permission denied").  Anything else is -EINVAL.
 */
int qemu_accel_resolve(const char *accel, const char **ret, char *err, size_t errlen);

/* ---- command line --------------------------------------------------------- */

/* What the command line needs besides the config.  Borrowed by the call. */
struct qemu_launch {
	const char *accel;      /* resolved: "kvm" or "tcg" */
	int qmp_fd;             /* the QMP listening fd's number in the child */
	const char *serial_log; /* absolute path for the serial console; NULL: none */
	const char *uuid_str;   /* the domain's UUID; NULL: the config's, if set */
};

/*
 * Build QEMU's argv (NULL-terminated, free with qemu_argv_free) to
 * *ret_argv.  Any thread.  For name "vm1", 512 MiB, 2 vCPUs, machine pc,
 * kvm, serial log and one read-only raw disk:
 *
 *   qemu-system-x86_64 -name guest=vm1,debug-threads=on -uuid UUID
 *     -machine pc,accel=kvm -m 512M -smp 2
 *     -nodefaults -no-user-config -display none -S
 *     -chardev socket,id=qmp0,fd=3,server=on,wait=off -mon chardev=qmp0,mode=control
 *     -chardev file,id=serial0,path=LOG,append=on -serial chardev:serial0
 *     [-kernel K [-initrd I] [-append CMDLINE]]
 *     -blockdev driver=file,filename=PATH,node-name=file0,read-only=on
 *     -blockdev driver=raw,file=file0,node-name=disk0,read-only=on
 *     -device virtio-blk-pci,drive=disk0,id=vd0
 *
 * Machine "none" gets "-machine none -accel ACCEL" and no -smp: it has no
 * CPU at all, and QEMU refuses -smp above 1 with it.
 *
 * Commas: QEMU splits an option value like "file,id=serial0,path=LOG" at
 * ',' and reads ",," as one literal comma.  Paths placed inside such a
 * value (the serial log, disk images) have each ',' doubled, so
 * "/img/x,if=none" stays one path and cannot add a key; a path with a
 * comma is legal on Linux and is kept working rather than refused.
 * -kernel, -initrd and -append take their argument whole (QEMU stores it
 * as a plain string), so those are passed unchanged.  Every other value
 * (name, machine, uuid, numbers) comes from a charset without ','.
 *
 * Returns 0, -EINVAL with a reason in err (accel not resolved, a bad
 * serial log path or UUID, a control character in any element), or
 * -ENOMEM.
 */
int qemu_argv_build(const struct qemu_config *c, const struct qemu_launch *l, char ***ret_argv,
		    char *err, size_t errlen);

/* Frees an argv from qemu_argv_build().  Accepts NULL.  Any thread. */
void qemu_argv_free(char **argv);

/* ---- runtime files -------------------------------------------------------- */

/*
 * A UNIX stream socket listening at path, mode 0600, close-on-exec, to
 * *ret_fd, for QEMU's QMP monitor (see the top of this file).  Any thread.
 *
 * A socket file already at path is removed if stale (nobody listens); one
 * that still accepts connections is left alone (-EADDRINUSE: a QEMU may
 * still own it), and a path that is not a socket is never removed
 * (-EEXIST).  -ENAMETOOLONG when path does not fit in sun_path, -EINVAL
 * when empty, else the -errno of the failed call.
 */
int qemu_qmp_listen(const char *path, int *ret_fd);

/* ---- process -------------------------------------------------------------- */

struct qemu_spawn_io {
	const char *name;       /* for the log's header line; may be NULL */
	const char *log_path;   /* QEMU's stdout and stderr, appended; 0600 if new */
	int qmp_listen_fd;      /* becomes QEMU_CHILD_QMP_FD in the child; -1: none */
};

/*
 * Start argv[0] (an absolute path, or a name looked up in PATH) with argv,
 * and its pid to *ret_pid.  The caller reaps it with waitpid().  Any
 * thread.
 *
 * posix_spawn() is used rather than fork(): glibc implements it with
 * clone(CLONE_VM|CLONE_VFORK), so nothing of a large multi-threaded
 * daemon's memory is copied or write-protected, and no code runs in the
 * child between fork and exec that could trip on a lock another thread
 * held.  The child gets:
 *   fd 0     /dev/null
 *   fd 1, 2  log_path, appended, after the header line
 *            "corral: starting NAME: ARGV..." that the parent writes first
 *   fd 3     qmp_listen_fd
 *   no other fd (closed in the child where glibc offers closefrom)
 *   a new session (setsid): no controlling terminal, outside the daemon's
 *            process group, so a ^C or SIGHUP aimed at the daemon, or the
 *            daemon's restart, does not reach the VM
 *   an empty signal mask, and every signal at its default disposition:
 *            the daemon's own blocked or ignored signals (SIGPIPE, say)
 *            must not leak into QEMU
 *   the daemon's environment and working directory.
 *
 * Returns 0; -EINVAL (empty argv, no log path); the -errno of opening or
 * writing the log ("cannot open log '/x': Permission denied"); or, when
 * the program cannot be run, the exec's -errno with "cannot run emulator
 * '/x/y': No such file or directory" in err (also appended to the log).
 */
int qemu_spawn(char *const argv[], const struct qemu_spawn_io *io, pid_t *ret_pid, char *err,
	       size_t errlen);

/* ---- exit ----------------------------------------------------------------- */

/*
 * Why QEMU ended, from its waitpid() status, whether the guest's own
 * SHUTDOWN event (guest: true) was seen, and whether the daemon sent it a
 * signal or "quit".  Writes a sentence to buf and returns buf; writes a
 * stable token for the domain's state reason to *ret_reason (may be NULL):
 *
 *   exit 0, guest shut down               "shut down by guest"        shutdown
 *   exit 0, otherwise (quit, SIGTERM)     "shut down by host"         destroyed
 *   killed by a signal we sent            "killed"                    killed
 *   exit != 0 after we sent a signal      "killed"                    killed
 *   killed by a signal we did not send    "crashed: signal 11 (Segmentation fault)"  crashed
 *   exit != 0                             "crashed: exit status 1"    crashed
 *
 * Any thread.  len must be at least 1; 64 holds every sentence.
 */
const char *qemu_exit_cause(int wait_status, bool guest_shutdown_seen, bool killed_by_us,
			    const char **ret_reason, char *buf, size_t len);

#endif /* CORRAL_QEMU_QEMU_H */

/* SPDX-License-Identifier: MIT */
/*
 * qemu: from a checked domain config (qemu/config.h) to a running QEMU.
 *
 * Start a domain in a few calls, all from a thread that may block:
 *
 *     qemu_accel_resolve(qemu_config_accel(c), &accel, ...)   "auto" -> kvm | tcg
 *     socketpair(AF_UNIX, SOCK_STREAM, ...)                   the daemon's monitor
 *     qemu_qmp_listen(RUNDIR "/qmp/NAME.sock", &lfd)          a later monitor
 *     qemu_argv_build(c, &(struct qemu_launch){ accel, .qmp_fd = 3,
 *                     .qmp_listen_fd = 4, ... }, &argv, ...)
 *     qemu_spawn(argv, &(struct qemu_spawn_io){ name, log, {pair[1], lfd} }, &pid, ...)
 *
 * The daemon's own monitor connection is one end of a socket pair: QEMU
 * gets the other end as fd 3 (-chardev socket,fd=3), already connected, so
 * there is no accept() whose timing could race anything (QEMU 7.2's main
 * thread can sit in a blocking accept() on a listening fd while the
 * connection it waits for was taken elsewhere).  A second monitor listens
 * on a socket in the runtime directory (made here, non-blocking, passed as
 * fd 4), for a restarted daemon to connect to: QEMU serves one client on
 * it at a time and goes back to listening when that client leaves.
 *
 * QEMU starts paused (-S) with only the QMP monitors: the daemon sends
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

/* The child's fds passed by qemu_spawn() start here (3, 4, ...). */
#define QEMU_CHILD_FD_BASE 3
/* The daemon's monitor connection, by convention the first passed fd. */
#define QEMU_CHILD_QMP_FD QEMU_CHILD_FD_BASE
/* At most this many fds passed to QEMU (monitors, disks, kernel, ...). */
#define QEMU_SPAWN_FDS_MAX 64

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

/*
 * What the command line needs besides the config.  Borrowed by the call.
 * The *_fd fields are fd numbers in the child; those that may be absent
 * count 0 (or any number below 3) as "none", so a zeroed struct asks for
 * nothing extra.
 */
struct qemu_launch {
	const char *accel;      /* resolved: "kvm" or "tcg" */
	int qmp_fd;             /* a connected socket: the daemon's monitor */
	int qmp_listen_fd;      /* a listening socket for a later monitor; <3: none */
	const char *serial_log; /* absolute path for the serial console; NULL: none */
	int serial_fd;          /* the same, open (append): through an fd set; <3: by path */
	const char *uuid_str;   /* the domain's UUID; NULL: the config's, if set */
	/*
	 * Images as open fds (opened by the daemon with the caller's rights):
	 * disk i is read through an fd set holding disk_fds[i]; the kernel and
	 * initrd through /proc/self/fd/N.  NULL / <3: QEMU opens the path.
	 */
	const int *disk_fds;
	int kernel_fd, initrd_fd;
	/*
	 * The serial console on a listening socket QEMU serves (the daemon
	 * connects to it); <3: serial_log above, or none.
	 */
	int serial_listen_fd;
	/* Per NIC (config order): a bridge NIC's open tap device.  Required for those. */
	const int *tap_fds;
	/* firmware "uefi": the firmware (read-only) and the domain's variable store. */
	int fw_code_fd, fw_vars_fd;     /* <3: by path */
	const char *fw_code, *fw_vars;  /* paths, when no fds */
	int cdrom_fd;                   /* the cdrom image; <3: by path */
	/* restore: "-incoming defer", the saved state to come by migrate-incoming */
	bool incoming_defer;
};

/*
 * Build QEMU's argv (NULL-terminated, free with qemu_argv_free) to
 * *ret_argv.  Any thread.  For name "vm1", 512 MiB, 2 vCPUs, machine pc,
 * kvm, serial log and one read-only raw disk:
 *
 *   qemu-system-x86_64 -name guest=vm1,debug-threads=on -uuid UUID
 *     -machine pc,accel=kvm -m 512M -smp 2
 *     -nodefaults -no-user-config
 *     -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
 *     -display none -S [-incoming defer]
 *     -chardev socket,id=qmp0,fd=3 -mon chardev=qmp0,mode=control
 *     [-chardev socket,id=qmp1,fd=4,server=on,wait=off -mon chardev=qmp1,mode=control]
 *     -chardev socket,id=serial0,fd=N,server=on,wait=off -serial chardev:serial0
 *       (or, with serial_log: -chardev file,id=serial0,path=LOG,append=on)
 *     [-kernel K [-initrd I] [-append CMDLINE]]
 *     [-add-fd fd=N,set=N]
 *     -blockdev driver=file,filename=PATH|/dev/fdset/N,node-name=file0,read-only=on
 *     -blockdev driver=raw,file=file0,node-name=disk0,read-only=on
 *     -device virtio-blk-pci,drive=disk0,id=vd0[,bootindex=N]
 *     [-blockdev ...,node-name=cdrom0 -device ide-cd,drive=cdrom0,id=cd0[,bootindex=N]]
 *     [-netdev user,id=net0[,hostfwd=RULE]... | -netdev tap,id=net0,fd=N
 *      -device virtio-net-pci,netdev=net0,id=nic0,mac=MAC,romfile=[,bootindex=N]]
 *
 * firmware "uefi" adds two pflash block nodes (fw-code read-only, fw-vars
 * writable) and "pflash0=fw-code,pflash1=fw-vars" to -machine.  A NIC
 * gets no option ROM (romfile=) unless the boot order names "network":
 * nothing to load, nothing to fail on a host without ipxe.  The boot
 * order becomes bootindex properties; with none given, disks come first,
 * then the cdrom.
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

/* ---- network ---------------------------------------------------------------- */

#define QEMU_IFNAME_MAX 16              /* IFNAMSIZ */

/*
 * A new tap device ("crlN", its name to ifname) on the host bridge named
 * bridge, up, with the bridge's MTU and a host-side MAC derived from the
 * guest's (first octet 0xfe, so it never becomes the bridge's address).
 * Returns its fd (close-on-exec, IFF_VNET_HDR) for QEMU's -netdev tap,fd=N;
 * the device disappears when the last copy of the fd closes.  Needs
 * CAP_NET_ADMIN.  -ENODEV when bridge is not a bridge here, else -errno;
 * the reason in err.  Any thread (blocking: a few ioctls).
 */
int qemu_tap_open(const char *bridge, const char *guest_mac, char ifname[QEMU_IFNAME_MAX],
		  char *err, size_t errlen);

/* ---- process -------------------------------------------------------------- */

struct qemu_spawn_io {
	const char *name;       /* for the log's header line; may be NULL */
	const char *log_path;   /* QEMU's stdout and stderr, appended; 0600 if new */
	int log_fd;             /* used instead when log_path is NULL (must be > 2) */
	const int *fds;         /* fds[i] becomes QEMU_CHILD_FD_BASE + i in the child */
	size_t nfds;            /* at most QEMU_SPAWN_FDS_MAX */
	char *const *envp;      /* the child's environment; NULL: the daemon's */
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
 *   fd 1, 2  the log, appended, after the header line
 *            "corral: starting NAME: ARGV..." that the parent writes first
 *   fd 3...  fds[0...]
 *   no other fd (closed in the child where glibc offers closefrom)
 *   a new session (setsid): no controlling terminal, outside the daemon's
 *            process group, so a ^C or SIGHUP aimed at the daemon, or the
 *            daemon's restart, does not reach the VM
 *   an empty signal mask, and every signal at its default disposition:
 *            the daemon's own blocked or ignored signals (SIGPIPE, say)
 *            must not leak into QEMU
 *   envp (or the daemon's environment), and the daemon's working directory.
 *
 * Returns 0; -EINVAL (empty argv, no log); the -errno of opening or
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

/* SPDX-License-Identifier: MIT */
/*
 * qemu: the QEMU command line for a domain.  See qemu.h for its shape and
 * for why commas are doubled in some values and not in others.
 *
 * The config was checked when it was parsed; what comes from struct
 * qemu_launch is checked here.  As a last fence, every element is scanned
 * for control characters before the argv is handed out.
 */
#include "qemu/qemu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/qemu-internal.h"

/* A growing NULL-terminated argv whose first allocation failure sticks. */
struct argv_buf {
	char **v;
	size_t n, cap;
	bool oom;
};

/* Append s, which the buffer now owns; NULL means its allocation failed. */
static void push_owned(struct argv_buf *a, char *s)
{
	if (!s || a->oom) {
		free(s);
		a->oom = true;
		return;
	}
	if (a->n + 1 >= a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 32;
		char **v = realloc(a->v, cap * sizeof(*v));

		if (!v) {
			free(s);
			a->oom = true;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void push(struct argv_buf *a, const char *s)
{
	push_owned(a, a->oom ? NULL : strdup(s));
}

__attribute__((format(printf, 2, 3))) static void pushf(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int r;

	if (a->oom)
		return;
	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	push_owned(a, r < 0 ? NULL : s);
}

/*
 * s with every ',' doubled, for use inside a QEMU "key=value,..." option
 * (QemuOpts and keyval both read ",," as a literal comma).  NULL when out
 * of memory.
 */
static char *opt_escape(const char *s)
{
	size_t n = strlen(s), commas = 0, i, o = 0;
	char *out;

	for (i = 0; i < n; i++)
		commas += s[i] == ',';
	out = malloc(n + commas + 1);
	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		out[o++] = s[i];
		if (s[i] == ',')
			out[o++] = ',';
	}
	out[o] = '\0';
	return out;
}

static void push_serial(struct argv_buf *a, const char *log, int fd)
{
	_cleanup_free_ char *path = NULL;

	/* A log the daemon opened: QEMU writes it through an fd set. */
	if (fd > STDERR_FILENO) {
		push(a, "-add-fd");
		pushf(a, "fd=%d,set=%d,opaque=serial0", fd, fd);
		if (!a->oom && asprintf(&path, "/dev/fdset/%d", fd) < 0)
			path = NULL;
	} else if (!a->oom) {
		path = opt_escape(log);
	}
	if (!path) {
		a->oom = true;
		return;
	}
	push(a, "-chardev");
	/* append=on: a restart must not wipe the console of the run before. */
	pushf(a, "file,id=serial0,path=%s,append=on", path);
	push(a, "-serial");
	push(a, "chardev:serial0");
}

/*
 * One virtio disk as two block nodes and a device: the protocol node
 * "fileN" opens the image, the format node "diskN" reads it as raw or
 * qcow2, and the device shows "diskN" to the guest.  The format is always
 * given: letting QEMU probe it would let a guest that writes a qcow2
 * header into its raw disk make QEMU open a host file named in it on the
 * next boot.
 */
static void push_disk(struct argv_buf *a, size_t i, const char *image, const char *format,
		      bool readonly, int fd)
{
	_cleanup_free_ char *path = NULL;
	const char *ro = readonly ? ",read-only=on" : "";

	/*
	 * An image the daemon opened: QEMU takes it from an fd set and never
	 * opens the path itself (with its own rights, or a file swapped in
	 * since the check).
	 */
	if (fd > STDERR_FILENO) {
		push(a, "-add-fd");
		pushf(a, "fd=%d,set=%d,opaque=disk%zu", fd, fd, i);
		if (!a->oom && asprintf(&path, "/dev/fdset/%d", fd) < 0)
			path = NULL;
	} else if (!a->oom) {
		path = opt_escape(image);
	}
	if (!path) {
		a->oom = true;
		return;
	}
	push(a, "-blockdev");
	pushf(a, "driver=file,filename=%s,node-name=file%zu%s", path, i, ro);
	push(a, "-blockdev");
	pushf(a, "driver=%s,file=file%zu,node-name=disk%zu%s", format, i, i, ro);
	push(a, "-device");
	pushf(a, "virtio-blk-pci,drive=disk%zu,id=vd%zu", i, i);
}

static int check_launch(const struct qemu_config *c, const struct qemu_launch *l,
			const char **ret_uuid, char *err, size_t errlen)
{
	const char *uuid = l->uuid_str ? l->uuid_str : qemu_config_uuid(c);
	const char *problem;
	char q[QEMU__QUOTE_MAX + 16];

	if (!l->accel || (strcmp(l->accel, "kvm") != 0 && strcmp(l->accel, "tcg") != 0)) {
		qemu__quote(l->accel ? l->accel : "", l->accel ? strlen(l->accel) : 0, q,
			    sizeof(q));
		qemu__seterr(err, errlen, "accel must be resolved to \"kvm\" or \"tcg\", got %s",
			     l->accel ? q : "none");
		return -EINVAL;
	}
	if (l->qmp_fd <= STDERR_FILENO) {
		qemu__seterr(err, errlen, "no QMP fd for the child");
		return -EINVAL;
	}
	if (l->serial_log) {
		problem = qemu__path_problem(l->serial_log);
		if (problem) {
			qemu__quote(l->serial_log, strlen(l->serial_log), q, sizeof(q));
			qemu__seterr(err, errlen, "serial log path %s, got %s", problem, q);
			return -EINVAL;
		}
	}
	if (uuid && !qemu__uuid_valid(uuid)) {
		qemu__quote(uuid, strlen(uuid), q, sizeof(q));
		qemu__seterr(err, errlen, "uuid must be 8-4-4-4-12 hex digits, got %s", q);
		return -EINVAL;
	}
	*ret_uuid = uuid;
	return 0;
}

int qemu_argv_build(const struct qemu_config *c, const struct qemu_launch *l, char ***ret_argv,
		    char *err, size_t errlen)
{
	struct argv_buf a = { 0 };
	const char *machine = qemu_config_machine(c);
	bool none = strcmp(machine, "none") == 0;
	const char *uuid = NULL;
	size_t i;
	int r;

	r = check_launch(c, l, &uuid, err, errlen);
	if (r < 0)
		return r;
	/* QEMU is never left to guess a format (see qemu/image.h). */
	for (i = 0; i < qemu_config_disk_count(c); i++) {
		if (!qemu_config_disk_format(c, i)) {
			qemu__seterr(err, errlen, "disks[%zu]: format not known (declare it, or let "
				     "the daemon read the image's header)", i);
			return -EINVAL;
		}
	}

	push(&a, qemu_config_emulator(c));
	/* debug-threads=on names QEMU's threads ("CPU 0/KVM"), for top -H and gdb. */
	push(&a, "-name");
	pushf(&a, "guest=%s,debug-threads=on", qemu_config_name(c));
	if (uuid) {
		push(&a, "-uuid");
		push(&a, uuid);
	}
	push(&a, "-machine");
	if (none) {
		push(&a, machine);
		push(&a, "-accel");
		push(&a, l->accel);
	} else {
		pushf(&a, "%s,accel=%s", machine, l->accel);
	}
	push(&a, "-m");
	pushf(&a, "%" PRIu64 "M", qemu_config_memory_mib(c));
	if (!none) {
		push(&a, "-smp");
		pushf(&a, "%u", qemu_config_vcpus(c));
	}
	/*
	 * No default devices (NIC, VGA, floppy, CD), no /etc/qemu config
	 * file, no window; start paused so that the daemon finishes its QMP
	 * setup before the guest runs its first instruction.
	 */
	push(&a, "-nodefaults");
	push(&a, "-no-user-config");
	/*
	 * seccomp: no obsolete system calls, no setuid and friends, no
	 * fork/exec, no scheduler or resource changes.  A guest that escapes
	 * into QEMU cannot start a program or regain privileges.
	 */
	push(&a, "-sandbox");
	push(&a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	push(&a, "-display");
	push(&a, "none");
	push(&a, "-S");
	/*
	 * A guest reboot (reboot "acpi") is a powerdown the daemon turns into
	 * a reset: QEMU must stop at the guest's power-off instead of exiting,
	 * and the daemon quits it when the power-off was meant.
	 */
	if (!strcmp(qemu_config_reboot(c), "acpi"))
		push(&a, "-no-shutdown");
	/* The daemon's monitor: already connected, nothing to accept. */
	push(&a, "-chardev");
	pushf(&a, "socket,id=qmp0,fd=%d", l->qmp_fd);
	push(&a, "-mon");
	push(&a, "chardev=qmp0,mode=control");
	if (l->qmp_listen_fd > STDERR_FILENO) {
		push(&a, "-chardev");
		pushf(&a, "socket,id=qmp1,fd=%d,server=on,wait=off", l->qmp_listen_fd);
		push(&a, "-mon");
		push(&a, "chardev=qmp1,mode=control");
	}
	if (l->serial_log)
		push_serial(&a, l->serial_log, l->serial_fd);
	if (qemu_config_kernel(c)) {
		push(&a, "-kernel");
		if (l->kernel_fd > STDERR_FILENO)
			pushf(&a, "/proc/self/fd/%d", l->kernel_fd);
		else
			push(&a, qemu_config_kernel(c));
	}
	if (qemu_config_initrd(c)) {
		push(&a, "-initrd");
		if (l->initrd_fd > STDERR_FILENO)
			pushf(&a, "/proc/self/fd/%d", l->initrd_fd);
		else
			push(&a, qemu_config_initrd(c));
	}
	if (qemu_config_cmdline(c)) {
		push(&a, "-append");
		push(&a, qemu_config_cmdline(c));
	}
	for (i = 0; i < qemu_config_disk_count(c); i++)
		push_disk(&a, i, qemu_config_disk_path(c, i), qemu_config_disk_format(c, i),
			  qemu_config_disk_readonly(c, i), l->disk_fds ? l->disk_fds[i] : -1);

	if (a.oom) {
		qemu_argv_free(a.v);
		qemu__seterr(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < a.n; i++) {
		if (qemu__has_ctl(a.v[i])) {
			qemu__seterr(err, errlen, "argument %zu holds a control character", i);
			qemu_argv_free(a.v);
			return -EINVAL;
		}
	}
	*ret_argv = a.v;
	return 0;
}

void qemu_argv_free(char **argv)
{
	size_t i;

	if (!argv)
		return;
	for (i = 0; argv[i]; i++)
		free(argv[i]);
	free(argv);
}

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

/* The serial console on a listening socket the daemon connects to. */
static void push_serial_socket(struct argv_buf *a, int fd)
{
	push(a, "-chardev");
	pushf(a, "socket,id=serial0,fd=%d,server=on,wait=off", fd);
	push(a, "-serial");
	push(a, "chardev:serial0");
}

/* An image path inside an option: through an fd set when the daemon opened it. */
static char *image_ref(struct argv_buf *a, const char *path, int fd, const char *opaque)
{
	char *ref = NULL;

	if (a->oom)
		return NULL;
	if (fd > STDERR_FILENO) {
		push(a, "-add-fd");
		pushf(a, "fd=%d,set=%d,opaque=%s", fd, fd, opaque);
		if (asprintf(&ref, "/dev/fdset/%d", fd) < 0)
			ref = NULL;
	} else {
		ref = opt_escape(path);
	}
	if (!ref)
		a->oom = true;
	return ref;
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
		      bool readonly, int fd, int bootindex)
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
	if (bootindex >= 0)
		pushf(a, "virtio-blk-pci,drive=disk%zu,id=vd%zu,bootindex=%d", i, i, bootindex);
	else
		pushf(a, "virtio-blk-pci,drive=disk%zu,id=vd%zu", i, i);
}

/* The install medium: a read-only raw image on an IDE CD drive. */
static void push_cdrom(struct argv_buf *a, const char *image, int fd, int bootindex)
{
	_cleanup_free_ char *path = image_ref(a, image, fd, "cdrom0");

	if (!path)
		return;
	push(a, "-blockdev");
	pushf(a, "driver=file,filename=%s,node-name=cdfile0,read-only=on", path);
	push(a, "-blockdev");
	push(a, "driver=raw,file=cdfile0,node-name=cdrom0,read-only=on");
	push(a, "-device");
	if (bootindex >= 0)
		pushf(a, "ide-cd,drive=cdrom0,id=cd0,bootindex=%d", bootindex);
	else
		push(a, "ide-cd,drive=cdrom0,id=cd0");
}

/* UEFI: the firmware and the domain's own variable store as pflash block nodes. */
static void push_firmware(struct argv_buf *a, const struct qemu_launch *l)
{
	_cleanup_free_ char *code = image_ref(a, l->fw_code, l->fw_code_fd, "fw-code");
	_cleanup_free_ char *vars = code ? image_ref(a, l->fw_vars, l->fw_vars_fd, "fw-vars") :
					   NULL;

	if (!vars)
		return;
	push(a, "-blockdev");
	pushf(a, "driver=file,filename=%s,node-name=fw-code-file,read-only=on", code);
	push(a, "-blockdev");
	push(a, "driver=raw,file=fw-code-file,node-name=fw-code,read-only=on");
	push(a, "-blockdev");
	pushf(a, "driver=file,filename=%s,node-name=fw-vars-file", vars);
	push(a, "-blockdev");
	push(a, "driver=raw,file=fw-vars-file,node-name=fw-vars");
}

static void push_nic(struct argv_buf *a, const struct qemu_config *c, size_t i, int tap_fd,
		     int bootindex)
{
	const char *mac = qemu_config_nic_mac(c, i);

	push(a, "-netdev");
	if (!strcmp(qemu_config_nic_type(c, i), "bridge")) {
		pushf(a, "tap,id=net%zu,fd=%d", i, tap_fd);
	} else {
		/* Each forward is checked to be "proto:addr:port-addr:port": no comma. */
		size_t n = qemu_config_nic_hostfwd_count(c, i), len = 32;
		char *opt, *p;

		for (size_t j = 0; j < n; j++)
			len += strlen(qemu_config_nic_hostfwd(c, i, j)) + 9;
		opt = a->oom ? NULL : malloc(len);
		if (opt) {
			p = opt + sprintf(opt, "user,id=net%zu", i);
			for (size_t j = 0; j < n; j++)
				p += sprintf(p, ",hostfwd=%s", qemu_config_nic_hostfwd(c, i, j));
		}
		push_owned(a, opt);
	}
	push(a, "-device");
	if (bootindex >= 0)
		pushf(a, "virtio-net-pci,netdev=net%zu,id=nic%zu,mac=%s,bootindex=%d", i, i, mac,
		      bootindex);
	else
		pushf(a, "virtio-net-pci,netdev=net%zu,id=nic%zu,mac=%s,romfile=", i, i, mac);
}

/*
 * Boot indexes from the boot order: each named kind in turn (all disks in
 * their order, the cdrom, the first NIC); -1 for devices not named.  With
 * no order given: disks, then the cdrom (and no bootindex at all without
 * a cdrom).
 */
struct boot_plan {
	int disk0, cdrom, net0;
};

static struct boot_plan boot_plan_of(const struct qemu_config *c)
{
	static const char *const dflt[] = { "disk", "cdrom" };
	struct boot_plan b = { -1, -1, -1 };
	size_t n = qemu_config_boot_count(c);
	int next = 1;

	/* Nothing to order: the firmware's own default, and a shorter command line. */
	if (!n && !qemu_config_cdrom(c))
		return b;

	for (size_t i = 0; i < (n ? n : ARRAY_SIZE(dflt)); i++) {
		const char *kind = n ? qemu_config_boot(c, i) : dflt[i];

		if (!strcmp(kind, "disk") && qemu_config_disk_count(c)) {
			b.disk0 = next;
			next += (int)qemu_config_disk_count(c);
		} else if (!strcmp(kind, "cdrom") && qemu_config_cdrom(c)) {
			b.cdrom = next++;
		} else if (!strcmp(kind, "network") && qemu_config_nic_count(c)) {
			b.net0 = next++;
		}
	}
	return b;
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
	for (size_t i = 0; i < qemu_config_nic_count(c); i++) {
		if (!qemu_config_nic_mac(c, i)) {
			qemu__seterr(err, errlen, "nics[%zu]: no MAC address (the daemon gives "
				     "one at define)", i);
			return -EINVAL;
		}
		if (!strcmp(qemu_config_nic_type(c, i), "bridge") &&
		    (!l->tap_fds || l->tap_fds[i] <= STDERR_FILENO)) {
			qemu__seterr(err, errlen, "nics[%zu]: no tap device for bridge '%s'", i,
				     qemu_config_nic_bridge(c, i));
			return -EINVAL;
		}
	}
	if (!strcmp(qemu_config_firmware(c), "uefi")) {
		if ((l->fw_code_fd <= STDERR_FILENO && !l->fw_code) ||
		    (l->fw_vars_fd <= STDERR_FILENO && !l->fw_vars)) {
			qemu__seterr(err, errlen, "firmware uefi: no firmware or variable store");
			return -EINVAL;
		}
		for (int k = 0; k < 2; k++) {
			const char *p = k ? l->fw_vars : l->fw_code;

			if ((k ? l->fw_vars_fd : l->fw_code_fd) <= STDERR_FILENO &&
			    qemu__path_problem(p)) {
				qemu__seterr(err, errlen, "firmware uefi: the %s path %s",
					     k ? "variable store" : "firmware", qemu__path_problem(p));
				return -EINVAL;
			}
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
	bool uefi = strcmp(qemu_config_firmware(c), "uefi") == 0;
	struct boot_plan boot = boot_plan_of(c);
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
	} else if (uefi) {
		pushf(&a, "%s,accel=%s,pflash0=fw-code,pflash1=fw-vars", machine, l->accel);
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
	/* restore: the state comes later, through migrate-incoming on an fd. */
	if (l->incoming_defer) {
		push(&a, "-incoming");
		push(&a, "defer");
	}
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
	if (l->serial_listen_fd > STDERR_FILENO)
		push_serial_socket(&a, l->serial_listen_fd);
	else if (l->serial_log)
		push_serial(&a, l->serial_log, l->serial_fd);
	if (uefi)
		push_firmware(&a, l);
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
			  qemu_config_disk_readonly(c, i), l->disk_fds ? l->disk_fds[i] : -1,
			  boot.disk0 >= 0 ? boot.disk0 + (int)i : -1);
	if (qemu_config_cdrom(c))
		push_cdrom(&a, qemu_config_cdrom(c), l->cdrom_fd, boot.cdrom);
	for (i = 0; i < qemu_config_nic_count(c); i++)
		push_nic(&a, c, i, l->tap_fds ? l->tap_fds[i] : -1, i == 0 ? boot.net0 : -1);

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

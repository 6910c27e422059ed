/* SPDX-License-Identifier: MIT */
/*
 * qemu_argv_build(): the exact command line for given configs, and that
 * no value can add an option or a key: each hostile value must land in
 * exactly one argv element, with its commas doubled where QEMU splits.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "qemu/qemu.h"

#define UUID "0f2e6c1a-9b3d-4e5f-8a7b-1c2d3e4f5a6b"

static struct qemu_config *cfg(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	struct qemu_config *c = NULL;
	char err[256] = "";

	cr_assert(j, "%s: %s", text, jerr.text);
	cr_assert_eq(qemu_config_from_json(j, &c, err, sizeof(err)), 0, "%s: %s", text, err);
	json_decref(j);
	/* What the daemon does before it builds a command line: no format is guessed. */
	for (size_t i = 0; i < qemu_config_disk_count(c); i++)
		if (!qemu_config_disk_format(c, i))
			qemu_config_set_disk_format(c, i, "raw");
	return c;
}

static char **build(const char *text, const struct qemu_launch *l)
{
	struct qemu_config *c = cfg(text);
	char **argv = NULL;
	char err[256] = "";

	cr_assert_eq(qemu_argv_build(c, l, &argv, err, sizeof(err)), 0, "%s: %s", text, err);
	qemu_config_free(c);
	return argv;
}

/* Compare element by element, so that a failure names the first difference. */
static void assert_argv(char **got, const char *const want[])
{
	size_t i;

	for (i = 0; want[i] && got[i]; i++)
		cr_assert_str_eq(got[i], want[i], "argv[%zu]", i);
	cr_assert_null(want[i], "argv ends early at [%zu], want \"%s\"", i, want[i]);
	cr_assert_null(got[i], "argv has extra [%zu] \"%s\"", i, got[i]);
}

/* The element after the first occurrence of opt at or after from. */
static const char *arg_after(char **argv, const char *opt, size_t from)
{
	size_t i;

	for (i = from; argv[i]; i++)
		if (strcmp(argv[i], opt) == 0)
			return argv[i + 1];
	return NULL;
}

static size_t argc_of(char **argv)
{
	size_t n = 0;

	while (argv[n])
		n++;
	return n;
}

static const struct qemu_launch kvm_launch = {
	.accel = "kvm",
	.qmp_fd = QEMU_CHILD_QMP_FD,
	.serial_log = "/run/corral/vm1/serial.log",
};

Test(argv, golden_full)
{
	char **argv = build(
		"{\"name\": \"vm1\", \"uuid\": \"" UUID "\", \"memory\": \"1G\", \"vcpus\": 2, "
		"\"kernel\": \"/boot/vmlinuz\", \"initrd\": \"/boot/initrd.img\", "
		"\"cmdline\": \"console=ttyS0,115200 root=/dev/vda\", "
		"\"disks\": [\"/img/root.img,ro\", {\"path\": \"/img/data.qcow2\", "
		"\"format\": \"qcow2\"}]}",
		&kvm_launch);
	static const char *const want[] = {
		"qemu-system-x86_64",
		"-name", "guest=vm1,debug-threads=on",
		"-uuid", UUID,
		"-machine", "pc,accel=kvm",
		"-m", "1024M",
		"-smp", "2",
		"-nodefaults",
		"-no-user-config",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-display", "none",
		"-S",
		"-chardev", "socket,id=qmp0,fd=3",
		"-mon", "chardev=qmp0,mode=control",
		"-chardev", "file,id=serial0,path=/run/corral/vm1/serial.log,append=on",
		"-serial", "chardev:serial0",
		"-kernel", "/boot/vmlinuz",
		"-initrd", "/boot/initrd.img",
		"-append", "console=ttyS0,115200 root=/dev/vda",
		"-blockdev", "driver=file,filename=/img/root.img,node-name=file0,read-only=on",
		"-blockdev", "driver=raw,file=file0,node-name=disk0,read-only=on",
		"-device", "virtio-blk-pci,drive=disk0,id=vd0",
		"-blockdev", "driver=file,filename=/img/data.qcow2,node-name=file1",
		"-blockdev", "driver=qcow2,file=file1,node-name=disk1",
		"-device", "virtio-blk-pci,drive=disk1,id=vd1",
		NULL,
	};

	assert_argv(argv, want);
	qemu_argv_free(argv);
}

Test(argv, golden_machine_none)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3 };
	char **argv = build("{\"name\": \"probe\", \"machine\": \"none\", \"memory\": 16, "
			    "\"emulator\": \"/usr/bin/qemu-system-x86_64\"}",
			    &l);
	/* No -uuid (none set), no -smp (no CPU to count), no serial (no log). */
	static const char *const want[] = {
		"/usr/bin/qemu-system-x86_64",
		"-name", "guest=probe,debug-threads=on",
		"-machine", "none",
		"-accel", "tcg",
		"-m", "16M",
		"-nodefaults",
		"-no-user-config",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-display", "none",
		"-S",
		"-chardev", "socket,id=qmp0,fd=3",
		"-mon", "chardev=qmp0,mode=control",
		NULL,
	};

	assert_argv(argv, want);
	qemu_argv_free(argv);
}

Test(argv, machine_none_keeps_serial)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3, .serial_log = "/tmp/s.log" };
	char **argv = build("{\"name\": \"probe\", \"machine\": \"none\"}", &l);

	cr_assert_str_eq(arg_after(argv, "-serial", 0), "chardev:serial0");
	qemu_argv_free(argv);
}

Test(argv, uuid_from_launch_wins)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3,
				 .uuid_str = "11111111-2222-3333-4444-555555555555" };
	char **argv = build("{\"name\": \"vm1\", \"uuid\": \"" UUID "\"}", &l);

	cr_assert_str_eq(arg_after(argv, "-uuid", 0), "11111111-2222-3333-4444-555555555555");
	qemu_argv_free(argv);
	l.uuid_str = NULL;
	argv = build("{\"name\": \"vm1\", \"uuid\": \"" UUID "\"}", &l);
	cr_assert_str_eq(arg_after(argv, "-uuid", 0), UUID);
	qemu_argv_free(argv);
	argv = build("{\"name\": \"vm1\"}", &l);
	cr_assert_null(arg_after(argv, "-uuid", 0));
	qemu_argv_free(argv);
}

Test(argv, fd_number_is_the_childs)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 7 };
	char **argv = build("{\"name\": \"vm1\"}", &l);

	cr_assert_str_eq(arg_after(argv, "-chardev", 0), "socket,id=qmp0,fd=7");
	qemu_argv_free(argv);
}

/* The element after the n-th (from 0) occurrence of opt. */
static const char *nth_after(char **argv, const char *opt, int n)
{
	for (size_t i = 0; argv[i]; i++)
		if (!strcmp(argv[i], opt) && n-- == 0)
			return argv[i + 1];
	return NULL;
}

/* The re-attach monitor listens; images the daemon opened come as fds. */
Test(argv, listener_and_image_fds)
{
	static const int disk_fds[] = { 9, 10 };
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3, .qmp_listen_fd = 4,
				 .disk_fds = disk_fds, .kernel_fd = 11, .initrd_fd = 12 };
	char **argv = build("{\"name\": \"vm1\", \"kernel\": \"/boot/k\", \"initrd\": "
			    "\"/boot/i\", \"disks\": [\"/img/a.img,ro\", {\"path\": "
			    "\"/img/b.qcow2\", \"format\": \"qcow2\"}]}", &l);

	cr_assert_str_eq(nth_after(argv, "-chardev", 0), "socket,id=qmp0,fd=3");
	cr_assert_str_eq(nth_after(argv, "-chardev", 1), "socket,id=qmp1,fd=4,server=on,wait=off");
	cr_assert_str_eq(nth_after(argv, "-mon", 1), "chardev=qmp1,mode=control");
	cr_assert_str_eq(nth_after(argv, "-kernel", 0), "/proc/self/fd/11");
	cr_assert_str_eq(nth_after(argv, "-initrd", 0), "/proc/self/fd/12");
	cr_assert_str_eq(nth_after(argv, "-add-fd", 0), "fd=9,set=9,opaque=disk0");
	cr_assert_str_eq(nth_after(argv, "-blockdev", 0),
			 "driver=file,filename=/dev/fdset/9,node-name=file0,read-only=on");
	cr_assert_str_eq(nth_after(argv, "-add-fd", 1), "fd=10,set=10,opaque=disk1");
	cr_assert_str_eq(nth_after(argv, "-blockdev", 2),
			 "driver=file,filename=/dev/fdset/10,node-name=file1");
	cr_assert_str_eq(nth_after(argv, "-blockdev", 3), "driver=qcow2,file=file1,node-name=disk1");
	qemu_argv_free(argv);
}

/* A disk whose format is neither declared nor probed is refused, never guessed. */
Test(argv, unknown_format_refused)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3 };
	json_t *j = json_loads("{\"name\": \"vm1\", \"disks\": [\"/img/a.img\"]}", 0, NULL);
	struct qemu_config *c = NULL;
	char err[256] = "", **argv = NULL;

	cr_assert_eq(qemu_config_from_json(j, &c, err, sizeof(err)), 0);
	json_decref(j);
	cr_assert_eq(qemu_argv_build(c, &l, &argv, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "format not known"), "%s", err);
	qemu_config_free(c);
}

/* ---- injection ------------------------------------------------------------ */

Test(argv, disk_path_cannot_add_keys)
{
	char **plain = build("{\"name\": \"vm1\", \"disks\": [\"/img/a.img\"]}", &kvm_launch);
	char **argv = build("{\"name\": \"vm1\", \"disks\": [\"/x,if=none,file=/etc/shadow\"]}",
			    &kvm_launch);
	const char *blockdev = arg_after(argv, "-blockdev", 0);

	/* The same number of elements as a harmless disk: nothing was added. */
	cr_assert_eq(argc_of(argv), argc_of(plain));
	cr_assert_str_eq(blockdev,
			 "driver=file,filename=/x,,if=none,,file=/etc/shadow,node-name=file0");
	cr_assert_null(strstr(argv[argc_of(argv) - 1], "shadow"));
	qemu_argv_free(plain);
	qemu_argv_free(argv);
}

Test(argv, disk_path_with_equals_and_readonly_suffix)
{
	char **argv = build("{\"name\": \"vm1\", \"disks\": [\"/img/a=b,read-only=off,ro\", "
			    "{\"path\": \"/img/,,x,\"}]}",
			    &kvm_launch);
	size_t i;

	for (i = 0; argv[i] && strcmp(argv[i], "-blockdev") != 0; i++)
		;
	cr_assert_str_eq(argv[i + 1],
			 "driver=file,filename=/img/a=b,,read-only=off,node-name=file0,read-only=on");
	cr_assert_str_eq(argv[i + 3], "driver=raw,file=file0,node-name=disk0,read-only=on");
	cr_assert_str_eq(argv[i + 7], "driver=file,filename=/img/,,,,x,,,node-name=file1");
	qemu_argv_free(argv);
}

Test(argv, serial_log_cannot_add_keys)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3,
				 .serial_log = "/run/a,mux=on,logfile=/etc/passwd" };
	char **argv = build("{\"name\": \"vm1\"}", &l);
	size_t i;

	for (i = 0; argv[i] && strcmp(argv[i], "-serial") != 0; i++)
		;
	cr_assert_str_eq(argv[i - 1],
			 "file,id=serial0,path=/run/a,,mux=on,,logfile=/etc/passwd,append=on");
	qemu_argv_free(argv);
}

Test(argv, kernel_initrd_cmdline_pass_whole)
{
	/*
	 * QEMU stores these as plain strings: doubling a comma here would
	 * change the file QEMU opens.
	 */
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3 };
	char **argv = build("{\"name\": \"vm1\", \"kernel\": \"/boot/k,initrd=/etc/shadow\", "
			    "\"initrd\": \"/boot/i -append x\", "
			    "\"cmdline\": \"a,b -drive file=/etc/shadow\"}",
			    &l);

	cr_assert_str_eq(arg_after(argv, "-kernel", 0), "/boot/k,initrd=/etc/shadow");
	cr_assert_str_eq(arg_after(argv, "-initrd", 0), "/boot/i -append x");
	cr_assert_str_eq(arg_after(argv, "-append", 0), "a,b -drive file=/etc/shadow");
	cr_assert_null(arg_after(argv, "-drive", 0));
	qemu_argv_free(argv);
}

/* ---- launch checks -------------------------------------------------------- */

static void build_fails(const struct qemu_launch *l, const char *want)
{
	struct qemu_config *c = cfg("{\"name\": \"vm1\"}");
	char **argv = (char **)&c;
	char err[256] = "";

	cr_assert_eq(qemu_argv_build(c, l, &argv, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, want);
	cr_assert_eq(argv, (char **)&c, "ret written on failure");
	qemu_config_free(c);
}

static void build_fails_cfg(const char *text, const struct qemu_launch *l, const char *want)
{
	struct qemu_config *c = cfg(text);
	char **argv = NULL;
	char err[256] = "";

	cr_assert_eq(qemu_argv_build(c, l, &argv, err, sizeof(err)), -EINVAL, "%s", text);
	cr_assert_str_eq(err, want);
	qemu_config_free(c);
}

Test(argv, launch_checks)
{
	build_fails(&(struct qemu_launch){ .accel = "auto", .qmp_fd = 3 },
		    "accel must be resolved to \"kvm\" or \"tcg\", got \"auto\"");
	build_fails(&(struct qemu_launch){ .accel = NULL, .qmp_fd = 3 },
		    "accel must be resolved to \"kvm\" or \"tcg\", got none");
	build_fails(&(struct qemu_launch){ .accel = "tcg,thread=multi", .qmp_fd = 3 },
		    "accel must be resolved to \"kvm\" or \"tcg\", got \"tcg,thread=multi\"");
	build_fails(&(struct qemu_launch){ .accel = "tcg", .qmp_fd = -1 },
		    "no QMP fd for the child");
	build_fails(&(struct qemu_launch){ .accel = "tcg", .qmp_fd = 3, .serial_log = "s.log" },
		    "serial log path must be an absolute path, got \"s.log\"");
	build_fails(&(struct qemu_launch){ .accel = "tcg", .qmp_fd = 3,
					   .serial_log = "/s\n-serial stdio" },
		    "serial log path must not contain control characters, got "
		    "\"/s\\n-serial stdio\"");
	build_fails(&(struct qemu_launch){ .accel = "tcg", .qmp_fd = 3,
					   .uuid_str = "x,uuid=1" },
		    "uuid must be 8-4-4-4-12 hex digits, got \"x,uuid=1\"");
}

Test(argv, free_accepts_null)
{
	qemu_argv_free(NULL);
}

static bool has_arg(char **argv, const char *opt)
{
	for (size_t i = 0; argv[i]; i++)
		if (strcmp(argv[i], opt) == 0)
			return true;
	return false;
}

/* A guest reboot needs QEMU to stop at the guest's power-off, not exit. */
Test(argv, guest_reboot_adds_no_shutdown)
{
	char **argv = build("{\"name\": \"a\", \"reboot\": \"acpi\"}", &kvm_launch);

	cr_assert(has_arg(argv, "-no-shutdown"));
	qemu_argv_free(argv);
	argv = build("{\"name\": \"a\"}", &kvm_launch);
	cr_assert_not(has_arg(argv, "-no-shutdown"), "reboot \"reset\" must let QEMU exit");
	qemu_argv_free(argv);
}

Test(argv, golden_network_firmware_media)
{
	static const int taps[] = { -1, 9 };
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3, .serial_listen_fd = 5,
				 .tap_fds = taps, .fw_code_fd = 6, .fw_vars_fd = 7,
				 .cdrom_fd = 8 };
	char **argv = build(
		"{\"name\": \"inst\", \"machine\": \"q35\", \"firmware\": \"uefi\", "
		"\"cdrom\": \"/iso/d.iso\", \"boot\": \"cdrom,disk,network\", "
		"\"disks\": [{\"path\": \"/img/a.qcow2\", \"format\": \"qcow2\"}], "
		"\"nics\": [\"user,hostfwd=tcp:127.0.0.1:2222-:22,mac=52:54:00:00:00:01\", "
		"\"bridge=br0,mac=52:54:00:00:00:02\"]}", &l);
	static const char *const want[] = {
		"qemu-system-x86_64",
		"-name", "guest=inst,debug-threads=on",
		"-machine", "q35,accel=tcg,pflash0=fw-code,pflash1=fw-vars",
		"-m", "256M",
		"-smp", "1",
		"-nodefaults",
		"-no-user-config",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-display", "none",
		"-S",
		"-chardev", "socket,id=qmp0,fd=3",
		"-mon", "chardev=qmp0,mode=control",
		"-chardev", "socket,id=serial0,fd=5,server=on,wait=off",
		"-serial", "chardev:serial0",
		"-add-fd", "fd=6,set=6,opaque=fw-code",
		"-add-fd", "fd=7,set=7,opaque=fw-vars",
		"-blockdev", "driver=file,filename=/dev/fdset/6,node-name=fw-code-file,read-only=on",
		"-blockdev", "driver=raw,file=fw-code-file,node-name=fw-code,read-only=on",
		"-blockdev", "driver=file,filename=/dev/fdset/7,node-name=fw-vars-file",
		"-blockdev", "driver=raw,file=fw-vars-file,node-name=fw-vars",
		"-blockdev", "driver=file,filename=/img/a.qcow2,node-name=file0",
		"-blockdev", "driver=qcow2,file=file0,node-name=disk0",
		"-device", "virtio-blk-pci,drive=disk0,id=vd0,bootindex=2",
		"-add-fd", "fd=8,set=8,opaque=cdrom0",
		"-blockdev", "driver=file,filename=/dev/fdset/8,node-name=cdfile0,read-only=on",
		"-blockdev", "driver=raw,file=cdfile0,node-name=cdrom0,read-only=on",
		"-device", "ide-cd,drive=cdrom0,id=cd0,bootindex=1",
		"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22",
		"-device", "virtio-net-pci,netdev=net0,id=nic0,mac=52:54:00:00:00:01,bootindex=3",
		"-netdev", "tap,id=net1,fd=9",
		"-device", "virtio-net-pci,netdev=net1,id=nic1,mac=52:54:00:00:00:02,romfile=",
		NULL,
	};

	assert_argv(argv, want);
	qemu_argv_free(argv);
}

Test(argv, nic_needs_mac_and_tap)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = 3 };

	build_fails_cfg("{\"name\": \"n\", \"nics\": [\"user\"]}", &l,
			"nics[0]: no MAC address (the daemon gives one at define)");
	build_fails_cfg("{\"name\": \"n\", \"nics\": [\"bridge=br0,mac=52:54:00:00:00:01\"]}", &l,
			"nics[0]: no tap device for bridge 'br0'");
	build_fails_cfg("{\"name\": \"n\", \"firmware\": \"uefi\"}", &l,
			"firmware uefi: no firmware or variable store");
}

/* SPDX-License-Identifier: MIT */
/*
 * qemu: the host-facing helpers that need no QEMU: accelerator choice,
 * the QMP listening socket, and exit causes.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qemu/qemu.h"

/* ---- accel ---------------------------------------------------------------- */

Test(accel, auto_gives_kvm_or_tcg)
{
	const char *a = NULL;

	cr_assert_eq(qemu_accel_resolve("auto", &a, NULL, 0), 0);
	cr_assert(strcmp(a, "kvm") == 0 || strcmp(a, "tcg") == 0, "%s", a);
}

Test(accel, tcg_is_always_tcg)
{
	const char *a = NULL;

	cr_assert_eq(qemu_accel_resolve("tcg", &a, NULL, 0), 0);
	cr_assert_str_eq(a, "tcg");
}

/* kvm works exactly when auto picks it; when it does not, it says why. */
Test(accel, kvm_agrees_with_auto)
{
	const char *autoa = NULL, *a = "untouched";
	char err[256] = "";
	int r;

	cr_assert_eq(qemu_accel_resolve("auto", &autoa, NULL, 0), 0);
	r = qemu_accel_resolve("kvm", &a, err, sizeof(err));
	if (strcmp(autoa, "kvm") == 0) {
		cr_assert_eq(r, 0, "%s", err);
		cr_assert_str_eq(a, "kvm");
	} else {
		cr_assert_eq(r, -ENODEV);
		cr_assert_str_eq(a, "untouched");
		cr_assert_neq(err[0], '\0');
	}
}

Test(accel, unknown_is_einval)
{
	const char *a = NULL;
	char err[256] = "";

	cr_assert_eq(qemu_accel_resolve("xen", &a, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "accel must be \"auto\", \"kvm\" or \"tcg\"");
	cr_assert_eq(qemu_accel_resolve(NULL, &a, NULL, 0), -EINVAL);
}

/* ---- qmp_listen ----------------------------------------------------------- */

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/corral-qemu-test-XXXXXX");
	cr_assert(mkdtemp(dir));
}

/* The tests make plain files and sockets only, one level deep. */
static void rm_tmp(void)
{
	struct dirent *e;
	DIR *d = dir[0] ? opendir(dir) : NULL;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(dir);
}

TestSuite(listen, .init = mkdir_tmp, .fini = rm_tmp);

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

Test(listen, socket_is_private_cloexec_and_connectable_at_once)
{
	char path[128];
	struct stat st;
	int fd = -1, c;

	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	cr_assert_eq(qemu_qmp_listen(path, &fd), 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* Listening already: a connect succeeds before anyone accepts. */
	c = connect_to(path);
	cr_assert_geq(c, 0, "connect: %s", strerror(-c));
	close(c);
	close(fd);
}

Test(listen, stale_socket_is_replaced)
{
	char path[128];
	int fd = -1, old;

	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	cr_assert_eq(qemu_qmp_listen(path, &old), 0);
	close(old);     /* the file stays; nobody listens: stale */
	cr_assert_eq(access(path, F_OK), 0);
	cr_assert_eq(qemu_qmp_listen(path, &fd), 0);
	close(fd);
}

Test(listen, live_socket_is_left_alone)
{
	char path[128];
	int fd = -1, live;

	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	cr_assert_eq(qemu_qmp_listen(path, &live), 0);
	cr_assert_eq(qemu_qmp_listen(path, &fd), -EADDRINUSE);
	cr_assert_eq(fd, -1);
	close(live);
}

Test(listen, other_files_are_never_removed)
{
	char path[128];
	int fd = -1, f;

	snprintf(path, sizeof(path), "%s/precious", dir);
	f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(f, 0);
	close(f);
	cr_assert_eq(qemu_qmp_listen(path, &fd), -EEXIST);
	cr_assert_eq(access(path, F_OK), 0);
}

Test(listen, path_too_long)
{
	char path[200];
	int fd = -1;

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	cr_assert_eq(qemu_qmp_listen(path, &fd), -ENAMETOOLONG);
	/* sizeof(sun_path) - 1 characters is the longest that fits. */
	path[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
	cr_assert_eq(qemu_qmp_listen(path, &fd), -ENAMETOOLONG);
	cr_assert_eq(qemu_qmp_listen("", &fd), -EINVAL);
	cr_assert_eq(fd, -1);
}

Test(listen, missing_directory)
{
	char path[128];
	int fd = -1;

	snprintf(path, sizeof(path), "%s/no/such/dir/qmp.sock", dir);
	cr_assert_eq(qemu_qmp_listen(path, &fd), -ENOENT);
}

/* ---- exit cause ----------------------------------------------------------- */

static int exited(int code)
{
	return (code & 0xff) << 8;
}

static int signalled(int sig)
{
	return sig & 0x7f;
}

static void assert_cause(int st, bool guest, bool ours, const char *text, const char *reason)
{
	char buf[64];
	const char *r = NULL;

	cr_assert_eq(qemu_exit_cause(st, guest, ours, &r, buf, sizeof(buf)), buf);
	cr_assert_str_eq(buf, text);
	cr_assert_str_eq(r, reason);
}

Test(exit, causes)
{
	/* The encodings above are what waitpid() reports. */
	cr_assert(WIFEXITED(exited(1)) && WEXITSTATUS(exited(1)) == 1);
	cr_assert(WIFSIGNALED(signalled(SIGSEGV)) && WTERMSIG(signalled(SIGSEGV)) == SIGSEGV);

	assert_cause(exited(0), true, false, "shut down by guest", "shutdown");
	assert_cause(exited(0), false, false, "shut down by host", "destroyed");
	assert_cause(exited(0), false, true, "shut down by host", "destroyed");
	assert_cause(signalled(SIGKILL), false, true, "killed", "killed");
	assert_cause(signalled(SIGKILL), true, true, "killed", "killed");
	assert_cause(exited(1), false, true, "killed", "killed");
	assert_cause(signalled(SIGSEGV), false, false, "crashed: signal 11 (Segmentation fault)",
		     "crashed");
	assert_cause(signalled(SIGABRT), true, false, "crashed: signal 6 (Aborted)", "crashed");
	assert_cause(signalled(SIGKILL), false, false, "crashed: signal 9 (Killed)", "crashed");
	assert_cause(exited(1), false, false, "crashed: exit status 1", "crashed");
	assert_cause(exited(1), true, false, "crashed: exit status 1", "crashed");
	assert_cause(0x137f /* stopped by SIGSTOP */, false, false, "crashed: wait status 0x137f",
		     "crashed");
}

Test(exit, reason_optional_and_small_buffer)
{
	char buf[8];

	cr_assert_str_eq(qemu_exit_cause(exited(0), true, false, NULL, buf, sizeof(buf)),
			 "shut do");
}

/* SPDX-License-Identifier: MIT */
/*
 * qemu_spawn() against a real QEMU: the whole launch sequence of qemu.h
 * (socket pair, build, spawn), the QMP greeting, a clean quit,
 * the child's fds and session, disks and the serial console on machine
 * pc, and the failures a user meets: a missing emulator, a QEMU that
 * refuses its options.
 *
 * $CORRAL_QEMU names the binary (meson passes the one it found; empty:
 * none, and these tests skip).  Every QEMU runs with accel tcg, so KVM is
 * not needed.  The fini kills a QEMU a failed test left behind.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/qemu.h"

/* Generous: a loaded CI machine under ASan can be slow to start QEMU. */
#define TIMEOUT_MS 20000

static char dir[64];
static pid_t child = -1;

struct vm {
	pid_t pid;
	int fd;                 /* connected to QMP, or -1 */
	char log[128], serial[128];
	char buf[65536];
	size_t len;
};

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/corral-qemu-spawn-XXXXXX");
	cr_assert(mkdtemp(dir));
}

/* The tests make plain files and sockets only, one level deep. */
static void teardown(void)
{
	struct dirent *e;
	DIR *d;

	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = -1;
	}
	d = dir[0] ? opendir(dir) : NULL;
	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(dir);
}

TestSuite(spawn, .init = setup, .fini = teardown, .timeout = 120);

static const char *qemu_bin(void)
{
	const char *bin = getenv("CORRAL_QEMU");

	if (!bin)
		return "qemu-system-x86_64";    /* run by hand: PATH */
	if (!bin[0])
		cr_skip_test("qemu-system-x86_64 not found");
	return bin;
}

static int ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();

	return now >= deadline ? 0 : (int)((deadline - now) / NSEC_PER_MSEC) + 1;
}

/*
 * The next line from QMP without its CRLF (malloc'd), or NULL on EOF or
 * a reset connection.  Fails the test after TIMEOUT_MS.
 */
static char *read_line(struct vm *vm)
{
	uint64_t deadline = now_ns() + TIMEOUT_MS * NSEC_PER_MSEC;

	for (;;) {
		char *nl = memchr(vm->buf, '\n', vm->len);
		struct pollfd pfd = { .fd = vm->fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (nl) {
			size_t llen = (size_t)(nl - vm->buf);
			char *line = strndup(vm->buf, llen && nl[-1] == '\r' ? llen - 1 : llen);

			memmove(vm->buf, nl + 1, vm->len - llen - 1);
			vm->len -= llen + 1;
			return line;
		}
		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		cr_assert_gt(r, 0, "no line from QMP within %d ms", TIMEOUT_MS);
		cr_assert_lt(vm->len, sizeof(vm->buf) - 1, "line too long");
		n = read(vm->fd, vm->buf + vm->len, sizeof(vm->buf) - vm->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return NULL;
		cr_assert_gt(n, 0, "read: %s", strerror(errno));
		vm->len += (size_t)n;
	}
}

static void send_line(struct vm *vm, const char *line)
{
	size_t len = strlen(line);

	cr_assert_eq(write(vm->fd, line, len), (ssize_t)len);
}

/*
 * Read up to the reply of the command just sent, and say whether a
 * SHUTDOWN event on the way had guest: true.  Fails on an error reply.
 */
static json_t *expect_return(struct vm *vm, bool *guest_shutdown)
{
	for (;;) {
		char *line = read_line(vm);
		json_t *j, *ret;

		cr_assert(line, "QMP closed before the reply");
		j = json_loads(line, 0, NULL);
		cr_assert(j, "not JSON: %s", line);
		if (json_object_get(j, "event")) {
			if (guest_shutdown &&
			    strcmp(json_string_value(json_object_get(j, "event")), "SHUTDOWN") == 0)
				*guest_shutdown = json_is_true(
					json_object_get(json_object_get(j, "data"), "guest"));
			json_decref(j);
			free(line);
			continue;
		}
		ret = json_object_get(j, "return");
		cr_assert(ret, "not a return: %s", line);
		json_incref(ret);
		json_decref(j);
		free(line);
		return ret;
	}
}

static int wait_exit(pid_t pid)
{
	uint64_t deadline = now_ns() + TIMEOUT_MS * NSEC_PER_MSEC;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		cr_assert_geq(r, 0, "waitpid: %s", strerror(errno));
		if (r == pid) {
			child = -1;
			return st;
		}
		cr_assert_gt(ms_left(deadline), 0, "QEMU did not exit within %d ms", TIMEOUT_MS);
		usleep(10 * 1000);
	}
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *s = NULL;
	size_t n = 0;

	cr_assert(f, "%s: %s", path, strerror(errno));
	cr_assert_geq(getdelim(&s, &n, '\0', f), 0);
	fclose(f);
	return s;
}

/*
 * The launch sequence of qemu.h, for the config in text (the emulator is
 * filled in), with accel tcg and, if serial, a serial log.  QEMU gets one
 * end of a socket pair as fd 3, already connected: an early death shows up
 * as EOF on vm->fd, and there is no accept() to race.
 */
static void start(struct vm *vm, const char *text, bool serial)
{
	struct qemu_launch l = { .accel = "tcg", .qmp_fd = QEMU_CHILD_QMP_FD,
				 .uuid_str = "c0ffee00-0000-4000-8000-000000000001" };
	struct qemu_config *c = NULL;
	json_t *j = json_loads(text, 0, NULL);
	char err[256] = "", **argv = NULL;
	int pair[2];

	memset(vm, 0, sizeof(*vm));
	snprintf(vm->log, sizeof(vm->log), "%s/qemu.log", dir);
	snprintf(vm->serial, sizeof(vm->serial), "%s/serial.log", dir);
	if (serial)
		l.serial_log = vm->serial;

	cr_assert(j, "%s", text);
	cr_assert_eq(json_object_set_new(j, "emulator", json_string(qemu_bin())), 0);
	cr_assert_eq(qemu_config_from_json(j, &c, err, sizeof(err)), 0, "%s", err);
	json_decref(j);
	for (size_t i = 0; i < qemu_config_disk_count(c); i++)
		if (!qemu_config_disk_format(c, i))
			qemu_config_set_disk_format(c, i, "raw");
	cr_assert_eq(qemu_argv_build(c, &l, &argv, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = qemu_config_name(c),
							      .log_path = vm->log,
							      .fds = &pair[1], .nfds = 1 },
				&vm->pid, err, sizeof(err)),
		     0, "%s", err);
	child = vm->pid;
	close(pair[1]);
	vm->fd = pair[0];
	qemu_argv_free(argv);
	qemu_config_free(c);
}

static void expect_greeting(struct vm *vm)
{
	char *line = read_line(vm);

	cr_assert(line, "QMP closed before the greeting");
	cr_assert_eq(strncmp(line, "{\"QMP\":", 7), 0, "%s", line);
	free(line);
	send_line(vm, "{\"execute\":\"qmp_capabilities\"}\n");
	json_decref(expect_return(vm, NULL));
}

/* quit, then the exit status, and the cause as the daemon would see it. */
static void quit_and_check(struct vm *vm)
{
	bool guest = false;
	const char *reason = NULL;
	char cause[64];
	int st;

	send_line(vm, "{\"execute\":\"quit\"}\n");
	json_decref(expect_return(vm, &guest));
	st = wait_exit(vm->pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	cr_assert_str_eq(qemu_exit_cause(st, guest, false, &reason, cause, sizeof(cause)),
			 "shut down by host");
	cr_assert_str_eq(reason, "destroyed");
	close(vm->fd);
}

static void readlink_fd(pid_t pid, int fd, char *out, size_t len)
{
	char p[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(p, out, len - 1);
	cr_assert_geq(n, 0, "%s: %s", p, strerror(errno));
	out[n] = '\0';
}

Test(spawn, machine_none_greets_and_quits)
{
	struct vm vm;
	char *log, want[256];

	start(&vm, "{\"name\": \"t-none\", \"machine\": \"none\"}", false);
	expect_greeting(&vm);
	quit_and_check(&vm);

	log = slurp(vm.log);
	snprintf(want, sizeof(want), "corral: starting t-none: %s -name guest=t-none,debug-threads=on"
		 " -uuid c0ffee00-0000-4000-8000-000000000001 -machine none -accel tcg -m 256M ",
		 qemu_bin());
	cr_assert_eq(strncmp(log, want, strlen(want)), 0, "log starts: %.300s", log);
	free(log);
}

Test(spawn, child_fds_session_and_nothing_leaked)
{
	struct vm vm;
	char link[256], leaked[64];
	struct stat st;
	int pipefd[2];
	DIR *d;
	struct dirent *e;

	/* A pipe without O_CLOEXEC, as a careless library might leave. */
	cr_assert_eq(pipe(pipefd), 0);
	cr_assert_eq(fstat(pipefd[0], &st), 0);
	snprintf(leaked, sizeof(leaked), "pipe:[%lu]", (unsigned long)st.st_ino);

	start(&vm, "{\"name\": \"t-fds\", \"machine\": \"none\"}", false);
	expect_greeting(&vm);

	readlink_fd(vm.pid, 0, link, sizeof(link));
	cr_assert_str_eq(link, "/dev/null");
	readlink_fd(vm.pid, 1, link, sizeof(link));
	cr_assert_str_eq(link, vm.log);
	readlink_fd(vm.pid, 2, link, sizeof(link));
	cr_assert_str_eq(link, vm.log);
	readlink_fd(vm.pid, 3, link, sizeof(link));
	cr_assert_eq(strncmp(link, "socket:[", 8), 0, "%s", link);

	snprintf(link, sizeof(link), "/proc/%d/fd", (int)vm.pid);
	d = opendir(link);
	cr_assert(d);
	while ((e = readdir(d))) {
		char target[256];
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end || e->d_name[0] == '.')
			continue;
		readlink_fd(vm.pid, (int)fd, target, sizeof(target));
		cr_assert_str_neq(target, leaked, "fd %ld leaked into QEMU", fd);
	}
	closedir(d);

	/* A session of its own: the daemon's terminal and group cannot reach it. */
	cr_assert_eq(getsid(vm.pid), vm.pid);
	cr_assert_neq(getpgid(vm.pid), getpgid(0));

	quit_and_check(&vm);
	close(pipefd[0]);
	close(pipefd[1]);
}

Test(spawn, machine_pc_with_serial_and_disks)
{
	struct vm vm;
	char ro[128], rw[128], text[512];
	json_t *nodes;
	bool saw_ro = false, saw_rw = false;
	size_t i;
	int f;

	/* The comma in the name is the point: it must survive -blockdev. */
	snprintf(ro, sizeof(ro), "%s/ro,if=none.img", dir);
	snprintf(rw, sizeof(rw), "%s/rw.img", dir);
	f = open(ro, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert(f >= 0 && ftruncate(f, 1 << 20) == 0);
	close(f);
	f = open(rw, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert(f >= 0 && ftruncate(f, 1 << 20) == 0);
	close(f);

	snprintf(text, sizeof(text),
		 "{\"name\": \"t-pc\", \"machine\": \"pc\", \"memory\": 128, \"vcpus\": 2, "
		 "\"disks\": [\"%s,ro\", {\"path\": \"%s\"}]}",
		 ro, rw);
	start(&vm, text, true);
	expect_greeting(&vm);
	cr_assert_eq(access(vm.serial, F_OK), 0, "no serial log");

	send_line(&vm, "{\"execute\":\"query-named-block-nodes\"}\n");
	nodes = expect_return(&vm, NULL);
	for (i = 0; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		const char *file = json_string_value(json_object_get(n, "file"));
		bool is_ro = json_is_true(json_object_get(n, "ro"));

		if (file && strcmp(file, ro) == 0) {
			cr_assert(is_ro);
			saw_ro = true;
		}
		if (file && strcmp(file, rw) == 0) {
			cr_assert_not(is_ro);
			saw_rw = true;
		}
	}
	cr_assert(saw_ro && saw_rw, "block nodes: %s", json_dumps(nodes, JSON_COMPACT));
	json_decref(nodes);
	quit_and_check(&vm);
}

Test(spawn, missing_emulator_is_reported_clearly)
{
	char log[128], err[256] = "", *text;
	char *argv[] = { "/nonexistent/qemu-system-x86_64", "-machine", "none", NULL };
	char *bare[] = { "corral-no-such-emulator", NULL };
	pid_t pid = -2;

	snprintf(log, sizeof(log), "%s/qemu.log", dir);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = "t-missing",
							      .log_path = log },
				&pid, err, sizeof(err)),
		     -ENOENT);
	cr_assert_str_eq(err, "cannot run emulator '/nonexistent/qemu-system-x86_64': No such "
			      "file or directory");
	cr_assert_eq(pid, -2, "pid written on failure");

	text = slurp(log);
	cr_assert_str_eq(text, "corral: starting t-missing: /nonexistent/qemu-system-x86_64 "
			       "-machine none\n"
			       "corral: cannot run emulator '/nonexistent/qemu-system-x86_64': "
			       "No such file or directory\n");
	free(text);

	/* A bare name is looked up in PATH, and fails the same way. */
	cr_assert_eq(qemu_spawn(bare, &(struct qemu_spawn_io){ .log_path = log },
				&pid, err, sizeof(err)),
		     -ENOENT);
	cr_assert_str_eq(err, "cannot run emulator 'corral-no-such-emulator': No such file or "
			      "directory");
}

Test(spawn, qemu_errors_land_in_the_log)
{
	struct vm vm;
	const char *reason = NULL;
	char cause[64], *log, *line;
	int st;

	/* Valid for the config, unknown to QEMU: it prints why and exits 1. */
	start(&vm, "{\"name\": \"t-badmachine\", \"machine\": \"no-such-machine\"}", false);
	/* The early death is EOF on the connected socket, not a hang. */
	line = read_line(&vm);
	cr_assert_null(line, "%s", line);
	st = wait_exit(vm.pid);
	cr_assert_str_eq(qemu_exit_cause(st, false, false, &reason, cause, sizeof(cause)),
			 "crashed: exit status 1");
	cr_assert_str_eq(reason, "crashed");
	close(vm.fd);

	log = slurp(vm.log);
	cr_assert_eq(strncmp(log, "corral: starting t-badmachine: ", 31), 0, "%s", log);
	cr_assert(strstr(log, "unsupported machine type"), "%s", log);
	free(log);
}

Test(spawn, bogus_option_exits_1_with_its_message_logged)
{
	char log[128], err[256] = "", *text;
	char *argv[] = { (char *)qemu_bin(), "-machine", "none", "-bogus-option", NULL };
	const char *reason = NULL;
	char cause[64];
	pid_t pid;
	int st;

	snprintf(log, sizeof(log), "%s/qemu.log", dir);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = "t-bogus",
							      .log_path = log },
				&pid, err, sizeof(err)),
		     0, "%s", err);
	child = pid;
	st = wait_exit(pid);
	cr_assert_str_eq(qemu_exit_cause(st, false, false, &reason, cause, sizeof(cause)),
			 "crashed: exit status 1");
	text = slurp(log);
	cr_assert(strstr(text, "corral: starting t-bogus: "), "%s", text);
	cr_assert(strstr(text, "-bogus-option: invalid option"), "%s", text);
	free(text);
}

Test(spawn, log_is_appended_and_private)
{
	char log[128], err[256] = "", *text;
	char *argv[] = { "/nonexistent/q", NULL };
	struct stat st;
	pid_t pid;
	int f;

	snprintf(log, sizeof(log), "%s/qemu.log", dir);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = "a", .log_path = log },
				&pid, err, sizeof(err)),
		     -ENOENT);
	cr_assert_eq(stat(log, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = "b", .log_path = log },
				&pid, err, sizeof(err)),
		     -ENOENT);
	text = slurp(log);
	cr_assert_str_eq(text, "corral: starting a: /nonexistent/q\n"
			       "corral: cannot run emulator '/nonexistent/q': No such file or "
			       "directory\n"
			       "corral: starting b: /nonexistent/q\n"
			       "corral: cannot run emulator '/nonexistent/q': No such file or "
			       "directory\n");
	free(text);

	/* The header keeps odd arguments on one line, in shell quoting. */
	f = open(log, O_WRONLY | O_TRUNC | O_CLOEXEC);
	close(f);
	{
		char *odd[] = { "/nonexistent/q", "a b", "it's", "x\ny", "", NULL };

		cr_assert_eq(qemu_spawn(odd, &(struct qemu_spawn_io){ .name = "c",
								     .log_path = log },
					&pid, err, sizeof(err)),
			     -ENOENT);
	}
	text = slurp(log);
	cr_assert_eq(strncmp(text, "corral: starting c: /nonexistent/q 'a b' 'it'\\''s' "
				   "'x\\x0ay' ''\n",
			     strlen("corral: starting c: /nonexistent/q 'a b' 'it'\\''s' "
				    "'x\\x0ay' ''\n")),
		     0, "%s", text);
	free(text);
}

Test(spawn, bad_arguments)
{
	char err[256] = "";
	char *argv[] = { "/bin/true", NULL };
	char *empty[] = { NULL };
	pid_t pid;

	cr_assert_eq(qemu_spawn(empty, &(struct qemu_spawn_io){ .log_path = "/tmp/x" }, &pid, err,
				sizeof(err)),
		     -EINVAL);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .log_path = NULL }, &pid, err,
				sizeof(err)),
		     -EINVAL);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .log_path = "/nonexistent/dir/log" },
				&pid, err, sizeof(err)),
		     -ENOENT);
	cr_assert_str_eq(err, "cannot open log '/nonexistent/dir/log': No such file or directory");
}

/* A signal set from a /proc/PID/status line such as "SigIgn:\t000...". */
static unsigned long long status_mask(const char *status, const char *key)
{
	const char *p = strstr(status, key);

	cr_assert(p, "no %s in %s", key, status);
	return strtoull(p + strlen(key), NULL, 16);
}

/*
 * Every signal an application may use: all but glibc's reserved ones
 * between 32 and SIGRTMIN.  (glibc's posix_spawn leaves those two
 * ignored in the child; the exec'd glibc sets them up again as it needs.)
 */
static unsigned long long app_signals(void)
{
	unsigned long long m = 0;
	int sig;

	for (sig = 1; sig <= 64; sig++)
		if (sig < 32 || sig >= SIGRTMIN)
			m |= 1ull << (sig - 1);
	return m;
}

/*
 * The daemon's blocked and ignored signals must not reach the child: run
 * cat on its own /proc status through qemu_spawn() (any program will do)
 * from a process that blocks SIGTERM and ignores SIGPIPE and SIGUSR2.
 */
Test(spawn, child_gets_clean_signal_state)
{
	char log[128], err[256] = "", *text;
	char *argv[] = { "cat", "/proc/self/status", NULL };
	sigset_t block;
	pid_t pid;
	int st;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	cr_assert_eq(sigprocmask(SIG_BLOCK, &block, NULL), 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);

	snprintf(log, sizeof(log), "%s/cat.log", dir);
	cr_assert_eq(qemu_spawn(argv, &(struct qemu_spawn_io){ .name = "t-sig", .log_path = log },
				&pid, err, sizeof(err)),
		     0, "%s", err);
	child = pid;
	st = wait_exit(pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	text = slurp(log);
	cr_assert_eq(status_mask(text, "SigBlk:") & app_signals(), 0, "%s", text);
	cr_assert_eq(status_mask(text, "SigIgn:") & app_signals(), 0, "%s", text);
	free(text);
}

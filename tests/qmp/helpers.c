/* SPDX-License-Identifier: MIT */
#include "tests/qmp/helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"

static int ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();

	return now >= deadline ? 0 : (int)((deadline - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC);
}

void th_peer_open(struct th_peer *p, const char *path, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	cr_assert_eq(qmp_conn_new(&p->c), 0);
	for (;;) {
		p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(p->fd, 0);
		if (connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return;
		cr_assert(errno == ENOENT || errno == ECONNREFUSED || errno == EAGAIN,
			  "connect %s: %s", path, strerror(errno));
		close(p->fd);
		cr_assert_gt(ms_left(deadline), 0, "%s did not accept within %d ms", path,
			     timeout_ms);
		usleep(10 * 1000);
	}
}

void th_peer_adopt(struct th_peer *p, int fd)
{
	cr_assert_eq(qmp_conn_new(&p->c), 0);
	p->fd = fd;
}

void th_peer_close(struct th_peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	qmp_conn_free(p->c);
	p->c = NULL;
}

int th_next(struct th_peer *p, struct qmp_msg **ret, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char buf[65536];

	for (;;) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
		int r = qmp_conn_next(p->c, ret);
		ssize_t n;

		if (r != 0)
			return r;
		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		cr_assert_geq(r, 0);
		if (r == 0)
			return 0;
		n = read(p->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return -EPIPE;
		cr_assert_gt(n, 0, "read: %s", strerror(errno));
		cr_assert_eq(qmp_conn_feed(p->c, buf, (size_t)n), 0, "feed: %s",
			     qmp_conn_error(p->c) ? qmp_conn_error(p->c) : "");
	}
}

struct qmp_msg *th_expect(struct th_peer *p)
{
	struct qmp_msg *m = NULL;
	int r = th_next(p, &m, TH_WAIT_MS);

	cr_assert_eq(r, 1, "expected a message, got %d (%s)", r,
		     qmp_conn_error(p->c) ? qmp_conn_error(p->c) : "no stream error");
	return m;
}

/*
 * QEMU may write an event before its greeting: one emitted (RESUME at
 * start-up, say) after it accepted the connection but before it ran the
 * code that greets.  A client skips such events, as corrald's monitor does.
 */
struct qmp_msg *th_expect_greeting(struct th_peer *p)
{
	struct qmp_msg *m = th_expect(p);

	while (qmp_msg_kind(m) == QMP_MSG_EVENT) {
		qmp_msg_free(m);
		m = th_expect(p);
	}
	return m;
}

static void send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

uint64_t th_send_cmd(struct th_peer *p, const char *execute, json_t *args)
{
	uint64_t id;
	char *buf;
	size_t len;

	cr_assert_eq(qmp_conn_encode_cmd(p->c, execute, args, &id, &buf, &len), 0);
	send_all(p->fd, buf, len);
	free(buf);
	return id;
}

void th_send_raw(struct th_peer *p, const char *bytes)
{
	send_all(p->fd, bytes, strlen(bytes));
}

struct qmp_msg *th_call(struct th_peer *p, const char *execute, json_t *args)
{
	uint64_t id = th_send_cmd(p, execute, args), got;

	for (;;) {
		struct qmp_msg *m = th_expect(p);

		if (qmp_msg_kind(m) == QMP_MSG_EVENT) {
			qmp_msg_free(m);
			continue;
		}
		if (qmp_msg_kind(m) != QMP_MSG_RETURN && qmp_msg_kind(m) != QMP_MSG_ERROR) {
			char *text = json_dumps(qmp_msg_json(m), JSON_COMPACT);

			cr_assert_fail("expected the reply to %s, got %s", execute,
				       text ? text : "?");
		}
		if (!qmp_msg_id(m, &got)) {
			char *text = json_dumps(qmp_msg_json(m), JSON_COMPACT);

			cr_assert_fail("reply to %s without our id: %s", execute, text ? text : "?");
		}
		cr_assert_eq(got, id);
		return m;
	}
}

void th_handshake(struct th_peer *p)
{
	struct qmp_msg *m = th_expect_greeting(p);

	if (qmp_msg_kind(m) != QMP_MSG_GREETING) {
		char *text = json_dumps(qmp_msg_json(m), JSON_COMPACT);

		cr_assert_fail("expected the greeting, got %s", text ? text : "?");
	}
	qmp_msg_free(m);
	m = th_call(p, "qmp_capabilities", NULL);
	cr_assert_eq(qmp_msg_kind(m), QMP_MSG_RETURN, "qmp_capabilities failed: %s",
		     qmp_msg_error_desc(m));
	qmp_msg_free(m);
}

void th_mkdtemp(char *buf, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(buf, len, "%s/corral-qmp-XXXXXX", tmp && *tmp ? tmp : "/tmp");

	cr_assert(n > 0 && (size_t)n < len);
	cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

void th_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

pid_t th_spawn(char *const argv[], int *stdout_fd)
{
	pid_t parent = getpid(), pid;
	int pfd[2] = { -1, -1 };

	if (stdout_fd)
		cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Never outlive the test, whatever way it ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (stdout_fd)
			dup2(pfd[1], STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (stdout_fd) {
		close(pfd[1]);
		*stdout_fd = pfd[0];
	}
	return pid;
}

int th_kill_wait(pid_t pid, int sig)
{
	int status = 0;

	kill(pid, sig);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return status;
}

void th_wait_line(int fd, const char *line)
{
	uint64_t deadline = now_ns() + (uint64_t)TH_WAIT_MS * NSEC_PER_MSEC;
	char got[4096];
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		got[len] = '\0';
		if (strstr(got, line))
			return;
		cr_assert_gt(poll(&pfd, 1, ms_left(deadline)), 0, "no \"%s\" within %d ms",
			     line, TH_WAIT_MS);
		n = read(fd, got + len, sizeof(got) - 1 - len);
		cr_assert_gt(n, 0, "child closed stdout before \"%s\"", line);
		len += (size_t)n;
		cr_assert_lt(len, sizeof(got) - 1);
	}
}

unsigned long th_raise_nofile(void)
{
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	return (unsigned long)rl.rlim_cur;
}

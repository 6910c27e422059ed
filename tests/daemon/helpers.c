/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <criterion/criterion.h>
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
#include <time.h>
#include <unistd.h>

#include "rpc/json-conv.h"

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int try_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	close(fd);
	return -1;
}

pid_t dt_spawn(char *const argv[], int *out_fd)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	if (out_fd)
		cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (out_fd)
			dup2(p[1], STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

void dt_wait_line(int fd, const char *prefix)
{
	char buf[4096];
	size_t len = 0;
	uint64_t deadline = mono_ms() + DT_WAIT_MS;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = mono_ms();
		ssize_t n;
		char *nl;

		cr_assert_lt(now, deadline, "no line '%s' within %d ms", prefix, DT_WAIT_MS);
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		cr_assert_gt(n, 0, "stream ended before '%s'", prefix);
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			if (!strncmp(buf, prefix, strlen(prefix)))
				return;
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
		if (len == sizeof(buf) - 1)
			len = 0;
	}
}

void dt_start(struct dt_daemon *d, const char *const *extra)
{
	const char *bin = getenv("CORRALD");
	char state[200], run[200];
	char *argv[64];
	int n = 0, fd;
	uint64_t deadline;

	cr_assert(bin && *bin, "CORRALD is not set (run the tests through meson)");
	if (!d->dir[0]) {
		memset(d, 0, sizeof(*d));
		snprintf(d->dir, sizeof(d->dir), "/tmp/corrald-test-XXXXXX");
		cr_assert_not_null(mkdtemp(d->dir));
	}
	snprintf(d->rw, sizeof(d->rw), "%s/rw.sock", d->dir);
	snprintf(d->ro, sizeof(d->ro), "%s/ro.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/corrald.log", d->dir);
	snprintf(state, sizeof(state), "%s/state", d->dir);
	snprintf(run, sizeof(run), "%s/run", d->dir);
	argv[n++] = (char *)bin;
	argv[n++] = "--socket";
	argv[n++] = d->rw;
	argv[n++] = "--ro-socket";
	argv[n++] = d->ro;
	argv[n++] = "--state-dir";
	argv[n++] = state;
	argv[n++] = "--runtime-dir";
	argv[n++] = run;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;

	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		int lfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (lfd >= 0) {
			dup2(lfd, STDOUT_FILENO);
			dup2(lfd, STDERR_FILENO);
		}
		execv(bin, argv);
		_exit(127);
	}
	deadline = mono_ms() + DT_WAIT_MS;
	for (const char *path = d->rw;;) {
		int status;

		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			dt_dump_log(d);
			cr_assert_fail("corrald exited early (status %d)", status);
		}
		fd = try_connect(path);
		if (fd >= 0) {
			close(fd);
			if (path == d->ro)
				break;
			path = d->ro;
			continue;
		}
		cr_assert_lt(mono_ms(), deadline, "corrald did not listen within %d ms",
			     DT_WAIT_MS);
		usleep(10000);
	}
}

void dt_dump_log(const struct dt_daemon *d)
{
	char buf[4096];
	FILE *f = fopen(d->log, "r");

	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", d->log);
	while (fgets(buf, sizeof(buf), f))
		fputs(buf, stderr);
	fclose(f);
}

void dt_stop(struct dt_daemon *d)
{
	uint64_t deadline = mono_ms() + DT_WAIT_MS;
	char cmd[300];
	int status = 0;
	pid_t r;

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	while ((r = waitpid(d->pid, &status, WNOHANG)) == 0 && mono_ms() < deadline)
		usleep(10000);
	if (r == 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
		dt_dump_log(d);
		cr_assert_fail("corrald did not exit within %d ms of SIGTERM", DT_WAIT_MS);
	}
	d->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		dt_dump_log(d);
		cr_assert_fail("corrald exited with status 0x%x", status);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", d->dir);
	d->dir[0] = '\0';
}

void dt_connect(struct dt_client *c, const char *path)
{
	uint64_t deadline = mono_ms() + DT_WAIT_MS;

	memset(c, 0, sizeof(*c));
	while ((c->fd = try_connect(path)) < 0) {
		cr_assert_lt(mono_ms(), deadline, "cannot connect to %s: %s", path, strerror(errno));
		usleep(10000);
	}
	cr_assert_eq(rpc_scanner_new(&c->scan), 0);
	c->next_id = 1;
}

void dt_close(struct dt_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	rpc_scanner_free(c->scan);
	c->scan = NULL;
}

void dt_send_raw(struct dt_client *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

uint32_t dt_send(struct dt_client *c, const char *method, const char *params_json)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint32_t id = c->next_id++;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	cr_assert_eq(rpc_pack_request_begin(&pk, id, method), 0);
	if (params_json) {
		json_error_t jerr;
		json_t *p = json_loads(params_json, 0, &jerr);

		cr_assert_not_null(p, "bad test JSON %s: %s", params_json, jerr.text);
		msgpack_pack_array(&pk, 1);
		cr_assert_eq(rpc_pack_json(&pk, p), 0);
		json_decref(p);
	} else {
		msgpack_pack_array(&pk, 0);
	}
	dt_send_raw(c, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return id;
}

int dt_recv(struct dt_client *c, struct rpc_msg **ret, int timeout_ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	char err[256];

	for (;;) {
		size_t flen;
		int r = c->len ? rpc_scanner_scan(c->scan, c->buf, c->len, &flen) : 0;

		cr_assert_geq(r, 0, "the daemon sent a bad frame: %s", rpc_strerror_scan(r));
		if (r == 1) {
			cr_assert_eq(rpc_decode(c->buf, flen, ret, err, sizeof(err)), 0,
				     "the daemon sent a bad message: %s", err);
			memmove(c->buf, c->buf + flen, c->len - flen);
			c->len -= flen;
			return 1;
		}
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap);
			cr_assert_not_null(c->buf);
		}
		for (;;) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			uint64_t now = mono_ms();
			ssize_t n;

			if (now >= deadline)
				return 0;
			if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
				continue;
			n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				return -EPIPE;
			c->len += (size_t)n;
			break;
		}
	}
}

struct rpc_msg *dt_expect_response(struct dt_client *c)
{
	struct rpc_msg *m;

	for (;;) {
		int r = dt_recv(c, &m, DT_WAIT_MS);

		cr_assert_eq(r, 1, "no response within %d ms (%d)", DT_WAIT_MS, r);
		if (rpc_msg_type(m) == RPC_RESPONSE)
			return m;
		rpc_msg_free(m);
	}
}

json_t *dt_call(struct dt_client *c, const char *method, const char *params_json,
		int *ret_code)
{
	uint32_t id = dt_send(c, method, params_json);
	struct rpc_msg *m = dt_expect_response(c);
	const msgpack_object *e;
	json_t *out = NULL;
	char err[256];

	cr_assert_eq(rpc_msg_id(m), id, "%s: response to %u, expected %u", method,
		     rpc_msg_id(m), id);
	e = rpc_msg_error(m);
	if (e) {
		int64_t code;
		const char *text;
		size_t len;

		cr_assert_eq(rpc_error_parse(e, &code, &text, &len), 0);
		*ret_code = (int)code;
		out = json_stringn(text, len);
	} else {
		*ret_code = 0;
		cr_assert_eq(rpc_obj_to_json(rpc_msg_result(m), "result", &out, err, sizeof(err)),
			     0, "%s", err);
	}
	rpc_msg_free(m);
	return out;
}

json_t *dt_call_ok(struct dt_client *c, const char *method, const char *params_json)
{
	int code;
	json_t *r = dt_call(c, method, params_json, &code);

	cr_assert_eq(code, 0, "%s %s failed: [%d, %s]", method, params_json ? params_json : "",
		     code, json_string_value(r));
	return r;
}

void dt_call_err(struct dt_client *c, const char *method, const char *params_json, int code,
		 const char *text)
{
	int got;
	json_t *r = dt_call(c, method, params_json, &got);
	char *dump = got ? NULL : json_dumps(r, JSON_ENCODE_ANY);

	cr_assert_eq(got, code, "%s %s: expected error %d (%s), got %d: %s", method,
		     params_json ? params_json : "", code, rpc_err_name(code), got,
		     got ? json_string_value(r) : dump);
	if (text)
		cr_assert(strstr(json_string_value(r), text), "%s: '%s' does not say '%s'", method,
			  json_string_value(r), text);
	free(dump);
	json_decref(r);
}

bool dt_wait_closed(struct dt_client *c, int timeout_ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
	char buf[65536];

	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint64_t now = mono_ms();
		ssize_t n;

		if (now >= deadline)
			return false;
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
}

void dt_raise_nofile(unsigned long n)
{
	struct rlimit rl;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur >= n)
		return;
	rl.rlim_cur = n < rl.rlim_max ? n : rl.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_assert_geq(rl.rlim_cur, n, "the hard RLIMIT_NOFILE (%lu) is below %lu",
		      (unsigned long)rl.rlim_max, n);
}

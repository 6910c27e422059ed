/* SPDX-License-Identifier: MIT */
/* cli session: the default socket and the session daemon (see session.h). */
#include "cli/session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

extern char **environ;

/* The same rule as corrald's own default (docs/daemon.md). */
int cli_default_socket(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	uid_t uid = getuid();
	int n;

	if (uid == 0)
		n = snprintf(buf, len, "/run/corral/corral.sock");
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/corral/corral.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/corral-%u/corral.sock", (unsigned)uid);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * The socket's directory must be ours alone: under /tmp anybody could have
 * made it first and would then own our daemon's socket and log.
 */
static int private_dir(const char *dir, char *errbuf, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(errbuf, errlen, "cannot use %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022)) {
		snprintf(errbuf, errlen, "%s is not a directory that only you may write", dir);
		return -EPERM;
	}
	return 0;
}

/* The corrald to run; a name without '/' is looked up in PATH. */
static int find_daemon(char *buf, size_t len)
{
	static const char *const beside[] = { "corrald", "../daemon/corrald" };
	const char *env = getenv("CORRAL_DAEMON");
	char self[PATH_MAX];
	ssize_t n;
	size_t i;

	if (env && *env) {
		if (strlen(env) >= len)
			return -ENAMETOOLONG;
		strcpy(buf, env);
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		for (i = 0; i < ARRAY_SIZE(beside); i++) {
			int m = snprintf(buf, len, "%s/%s", self, beside[i]);

			if (m > 0 && (size_t)m < len && access(buf, X_OK) == 0)
				return 0;
		}
	}
	snprintf(buf, len, "corrald");
	return 0;
}

/* Run daemon detached: its own session, no terminal, output to log_fd. */
static int spawn_daemon(const char *daemon, const char *sock_path, int log_fd, pid_t *ret_pid,
			char *errbuf, size_t errlen)
{
	char *argv[] = { (char *)daemon, "--socket", (char *)sock_path, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int r;

	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);       /* the CLI ignores it; corrald decides for itself */
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (!r)
		r = posix_spawn_file_actions_adddup2(&fa, log_fd, STDOUT_FILENO);
	if (!r)
		r = posix_spawn_file_actions_adddup2(&fa, log_fd, STDERR_FILENO);
	if (!r)
		r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
						     POSIX_SPAWN_SETSIGDEF);
	if (!r)
		r = posix_spawnattr_setsigmask(&attr, &none);
	if (!r)
		r = posix_spawnattr_setsigdefault(&attr, &dfl);
	if (!r)
		r = posix_spawnp(ret_pid, daemon, &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		snprintf(errbuf, errlen, "cannot run %s: %s", daemon, strerror(r));
	return -r;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / NSEC_PER_SEC),
			       .tv_nsec = (long)(ns % NSEC_PER_SEC) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Connect as soon as the daemon listens.  The socket file appears at bind(),
 * before listen(), so there is nothing to wait on but the next try: back off
 * from 5 ms to 100 ms between tries.
 */
static int wait_listening(const char *sock_path, pid_t pid, const char *log_path,
			  uint64_t timeout_ns, struct cli_client **ret, char *errbuf,
			  size_t errlen)
{
	uint64_t deadline_ns = now_ns() + timeout_ns, delay = 5 * NSEC_PER_MSEC, now;
	int status, r;

	for (;;) {
		r = cli_client_connect(sock_path, ret, NULL);
		if (!r)
			return 0;
		if (r != -ENOENT && r != -ECONNREFUSED) {
			snprintf(errbuf, errlen, "%s", r == -EPERM ? "the socket is served by "
				 "another user" : strerror(-r));
			return r;
		}
		/* Exit status 0 is a daemon that forked into the background: wait on. */
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				pid = -1;
			} else {
				if (WIFEXITED(status))
					snprintf(errbuf, errlen,
						 "corrald exited with status %d (see %s)",
						 WEXITSTATUS(status), log_path);
				else
					snprintf(errbuf, errlen,
						 "corrald was killed by signal %d (see %s)",
						 WTERMSIG(status), log_path);
				return -ECHILD;
			}
		}
		now = now_ns();
		if (now >= deadline_ns) {
			snprintf(errbuf, errlen, "corrald did not listen within %.0f s (see %s)",
				 (double)timeout_ns / NSEC_PER_SEC, log_path);
			return -ETIMEDOUT;
		}
		sleep_ns(delay < deadline_ns - now ? delay : deadline_ns - now);
		if (delay < 100 * NSEC_PER_MSEC)
			delay *= 2;
	}
}

int cli_session_start(const char *sock_path, uint64_t timeout_ns, struct cli_client **ret,
		      char *errbuf, size_t errlen)
{
	/* dir is short: the socket path fitted a sockaddr_un. */
	char dir[PATH_MAX], path[PATH_MAX + 32], daemon[PATH_MAX], log_path[PATH_MAX + 32];
	int lock_fd = -1, log_fd = -1, r;
	pid_t pid;

	if (snprintf(dir, sizeof(dir), "%s", sock_path) >= (int)sizeof(dir) ||
	    !strchr(dir, '/')) {
		snprintf(errbuf, errlen, "bad socket path");
		return -EINVAL;
	}
	*strrchr(dir, '/') = '\0';
	r = private_dir(dir, errbuf, errlen);
	if (r)
		return r;

	snprintf(path, sizeof(path), "%s/autostart.lock", dir);
	lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock_fd < 0) {
		snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	/* Bounded: whoever holds it gives up by its own deadline. */
	while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
		;
	/* Another CLI may have started it while we waited for the lock. */
	r = cli_client_connect(sock_path, ret, NULL);
	if (!r || (r != -ENOENT && r != -ECONNREFUSED)) {
		if (r)
			snprintf(errbuf, errlen, "%s", strerror(-r));
		goto out;
	}

	snprintf(log_path, sizeof(log_path), "%s/corrald.log", dir);
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (log_fd < 0) {
		r = -errno;
		snprintf(errbuf, errlen, "cannot open %s: %s", log_path, strerror(errno));
		goto out;
	}
	r = find_daemon(daemon, sizeof(daemon));
	if (r) {
		snprintf(errbuf, errlen, "CORRAL_DAEMON is too long");
		goto out;
	}
	r = spawn_daemon(daemon, sock_path, log_fd, &pid, errbuf, errlen);
	if (!r)
		r = wait_listening(sock_path, pid, log_path, timeout_ns, ret, errbuf, errlen);
out:
	if (log_fd >= 0)
		close(log_fd);
	close(lock_fd);
	return r;
}

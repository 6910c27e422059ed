/* SPDX-License-Identifier: MIT */
/*
 * qemu: what touches the host: the KVM probe, the QMP socket, starting
 * QEMU, and reading why it ended.  See qemu.h for the contracts.
 */
#include "qemu/qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/qemu-internal.h"

#ifdef __GLIBC__
#define GLIBC_AT_LEAST(maj, min) \
	(__GLIBC__ > (maj) || (__GLIBC__ == (maj) && __GLIBC_MINOR__ >= (min)))
#else
#define GLIBC_AT_LEAST(maj, min) 0
#endif

/*
 * QEMU accepts one monitor client at a time and the daemon is that client;
 * a backlog of one is all the queue that is ever needed.
 */
#define QMP_BACKLOG 1

/* ---- accelerator ---------------------------------------------------------- */

static int kvm_probe(char *err, size_t errlen)
{
	int fd, vm, version, e;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		qemu__seterr(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
		return -ENODEV;
	}
	version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		e = errno;
		if (version < 0)
			qemu__seterr(err, errlen, "KVM_GET_API_VERSION on /dev/kvm: %s",
				     strerror(e));
		else
			qemu__seterr(err, errlen, "/dev/kvm has KVM API version %d, not %d",
				     version, KVM_API_VERSION);
		close(fd);
		return -ENODEV;
	}
	/*
	 * The step that fails where /dev/kvm exists but cannot be used: VT-x
	 * or AMD-V off in the firmware, another hypervisor holding it, no
	 * nested virtualisation.  The VM is empty and closed at once.
	 */
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		e = errno;
		qemu__seterr(err, errlen, "cannot create a KVM virtual machine: %s", strerror(e));
		close(fd);
		return -ENODEV;
	}
	close(vm);
	close(fd);
	return 0;
}

int qemu_accel_resolve(const char *accel, const char **ret, char *err, size_t errlen)
{
	int r;

	if (accel && strcmp(accel, "tcg") == 0) {
		*ret = "tcg";
		return 0;
	}
	if (accel && strcmp(accel, "kvm") == 0) {
		r = kvm_probe(err, errlen);
		if (r < 0)
			return r;
		*ret = "kvm";
		return 0;
	}
	if (accel && strcmp(accel, "auto") == 0) {
		/* The probe's reason is not an error here: tcg is the answer. */
		*ret = kvm_probe(NULL, 0) == 0 ? "kvm" : "tcg";
		return 0;
	}
	qemu__seterr(err, errlen, "accel must be \"auto\", \"kvm\" or \"tcg\"");
	return -EINVAL;
}

/* ---- runtime files -------------------------------------------------------- */

/*
 * 0 if the socket at sa is stale (nobody listens), -EADDRINUSE if someone
 * does, else -errno.  Non-blocking, so that a live listener with a full
 * backlog answers EAGAIN instead of making us wait.
 */
static int socket_stale(const struct sockaddr_un *sa)
{
	int fd, r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		r = -EADDRINUSE;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		r = 0;
	else
		r = -errno;
	close(fd);
	return r;
}

int qemu_qmp_listen(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	size_t n;
	int fd, r;

	if (!path || !path[0])
		return -EINVAL;
	n = strlen(path);
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		r = socket_stale(&sa);
		if (r < 0)
			return r;
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	} else if (errno != ENOENT) {
		return -errno;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	/*
	 * chmod before listen: until listen() every connect() is refused, so
	 * no client can get in while the file still has the umask's mode.
	 */
	if (chmod(path, 0600) < 0 || listen(fd, QMP_BACKLOG) < 0) {
		r = -errno;
		unlink(path);
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* ---- spawn ---------------------------------------------------------------- */

static bool plain_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("_./=,:+@%^-", ch));
}

/*
 * One argument for the log's header line, as a shell would need it (so a
 * human can paste the line), except that control characters become \xNN:
 * the header stays one line whatever the argv holds.
 */
static void put_arg(FILE *f, const char *s)
{
	const char *p;
	bool plain = *s != '\0';

	for (p = s; *p && plain; p++)
		plain = plain_char(*p);
	if (plain) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '\'')
			fputs("'\\''", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
	fputc('\'', f);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* "corral: starting NAME: ARGV...\n", in one write. */
static int write_header(int fd, const char *name, char *const argv[])
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f;
	int r;

	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fputs("corral: starting ", f);
	put_arg(f, name ? name : "?");
	fputs(":", f);
	for (i = 0; argv[i]; i++) {
		fputc(' ', f);
		put_arg(f, argv[i]);
	}
	fputc('\n', f);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	r = write_all(fd, buf, len);
	free(buf);
	return r;
}

/*
 * A close-on-exec copy of fd numbered `low` or above.  The child's dup2()
 * actions run in order onto 0..low-1; a source among those could be
 * overwritten before it is copied, and dup2(fd, fd) would keep
 * close-on-exec set.  Sources from `low` up rule out both.
 */
static int dup_high(int fd, int low)
{
	int nfd = fcntl(fd, F_DUPFD_CLOEXEC, low);

	return nfd < 0 ? -errno : nfd;
}

static int file_actions_setup(posix_spawn_file_actions_t *fa, int logfd, const int *fds,
			      size_t nfds)
{
	int r;

	r = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	if (!r)
		r = posix_spawn_file_actions_adddup2(fa, logfd, 1);
	if (!r)
		r = posix_spawn_file_actions_adddup2(fa, logfd, 2);
	for (size_t i = 0; !r && i < nfds; i++)
		r = posix_spawn_file_actions_adddup2(fa, fds[i], QEMU_CHILD_FD_BASE + (int)i);
#if GLIBC_AT_LEAST(2, 34)
	/*
	 * Whatever the daemon opened without O_CLOEXEC (a library's fd, say)
	 * must not live on in every VM.
	 */
	if (!r)
		r = posix_spawn_file_actions_addclosefrom_np(fa, QEMU_CHILD_FD_BASE + (int)nfds);
#endif
	return -r;
}

static int spawn_attr_setup(posix_spawnattr_t *attr)
{
	sigset_t none, all;
	int r;

	sigemptyset(&none);
	sigfillset(&all);
	r = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
						   POSIX_SPAWN_SETSIGDEF);
	if (!r)
		r = posix_spawnattr_setsigmask(attr, &none);
	if (!r)
		r = posix_spawnattr_setsigdefault(attr, &all);
	return -r;
}

int qemu_spawn(char *const argv[], const struct qemu_spawn_io *io, pid_t *ret_pid, char *err,
	       size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool have_fa = false, have_attr = false;
	int fds[QEMU_SPAWN_FDS_MAX];
	int fd, logfd = -1, low, r;
	size_t nfds = 0, i;
	pid_t pid;

	if (!argv || !argv[0] || !argv[0][0] || !io ||
	    (!(io->log_path && io->log_path[0]) && io->log_fd <= STDERR_FILENO)) {
		qemu__seterr(err, errlen, "nothing to run, or no log");
		return -EINVAL;
	}
	if (io->nfds > QEMU_SPAWN_FDS_MAX || (io->nfds && !io->fds)) {
		qemu__seterr(err, errlen, "too many fds for the child (%zu)", io->nfds);
		return -EINVAL;
	}
	low = QEMU_CHILD_FD_BASE + (int)io->nfds;

	if (io->log_path && io->log_path[0])
		fd = open(io->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY |
			  O_NOFOLLOW, 0600);
	else
		fd = fcntl(io->log_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		qemu__seterr(err, errlen, "cannot open log '%s': %s",
			     io->log_path ? io->log_path : "(fd)", strerror(-r));
		return r;
	}
	logfd = dup_high(fd, low);
	close(fd);
	if (logfd < 0) {
		r = logfd;
		qemu__seterr(err, errlen, "cannot duplicate the log fd: %s", strerror(-r));
		goto out;
	}
	for (i = 0; i < io->nfds; i++) {
		fds[i] = dup_high(io->fds[i], low);
		if (fds[i] < 0) {
			r = fds[i];
			qemu__seterr(err, errlen, "cannot duplicate fd %d for the child: %s",
				     io->fds[i], strerror(-r));
			goto out;
		}
		nfds++;
	}

	r = write_header(logfd, io->name, argv);
	if (r < 0) {
		qemu__seterr(err, errlen, "cannot write to log: %s", strerror(-r));
		goto out;
	}

	r = -posix_spawn_file_actions_init(&fa);
	have_fa = r == 0;
	if (!r)
		r = file_actions_setup(&fa, logfd, fds, nfds);
	if (!r)
		r = -posix_spawnattr_init(&attr);
	have_attr = have_fa && r == 0;
	if (!r)
		r = spawn_attr_setup(&attr);
	if (r < 0) {
		qemu__seterr(err, errlen, "cannot set up posix_spawn: %s", strerror(-r));
		goto out;
	}

	/*
	 * glibc reports a failed exec (ENOENT, EACCES, ENOEXEC) here, as the
	 * return value, not as a child that exits 127: the vfork'd child
	 * writes the errno into memory it shares with us before it exits.
	 */
	r = -posix_spawnp(&pid, argv[0], &fa, &attr, argv, io->envp ? io->envp : environ);
	if (r < 0) {
		char line[PATH_MAX + 128];

		qemu__seterr(err, errlen, "cannot run emulator '%s': %s", argv[0], strerror(-r));
		if (snprintf(line, sizeof(line), "corral: cannot run emulator '%s': %s\n",
			     argv[0], strerror(-r)) > 0)
			(void)write_all(logfd, line, strnlen(line, sizeof(line)));
		goto out;
	}
	*ret_pid = pid;

out:
	if (have_attr)
		posix_spawnattr_destroy(&attr);
	if (have_fa)
		posix_spawn_file_actions_destroy(&fa);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (logfd >= 0)
		close(logfd);
	return r;
}

/* ---- exit ----------------------------------------------------------------- */

static const char *signal_text(int sig)
{
#if GLIBC_AT_LEAST(2, 32)
	/* Unlike strsignal(), never writes to a shared buffer. */
	const char *d = sigdescr_np(sig);

	return d ? d : "unknown signal";
#else
	return strsignal(sig);
#endif
}

const char *qemu_exit_cause(int wait_status, bool guest_shutdown_seen, bool killed_by_us,
			    const char **ret_reason, char *buf, size_t len)
{
	const char *reason;

	BUG_ON(!buf || len == 0);
	if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
		/* QEMU exits 0 on the guest's poweroff, on "quit" and on SIGTERM. */
		reason = guest_shutdown_seen ? "shutdown" : "destroyed";
		snprintf(buf, len, "%s",
			 guest_shutdown_seen ? "shut down by guest" : "shut down by host");
	} else if (killed_by_us && (WIFSIGNALED(wait_status) || WIFEXITED(wait_status))) {
		reason = "killed";
		snprintf(buf, len, "killed");
	} else if (WIFSIGNALED(wait_status)) {
		reason = "crashed";
		snprintf(buf, len, "crashed: signal %d (%s)", WTERMSIG(wait_status),
			 signal_text(WTERMSIG(wait_status)));
	} else if (WIFEXITED(wait_status)) {
		reason = "crashed";
		snprintf(buf, len, "crashed: exit status %d", WEXITSTATUS(wait_status));
	} else {
		/* Stopped or continued: the caller asked waitpid() for more than exits. */
		reason = "crashed";
		snprintf(buf, len, "crashed: wait status 0x%x", (unsigned int)wait_status);
	}
	if (ret_reason)
		*ret_reason = reason;
	return buf;
}

/* SPDX-License-Identifier: MIT */
/*
 * Crash-safe files relative to a directory fd.  See durable.h.
 */
#include "common/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crash.h"

/*
 * "WHAT full: cannot VERB NAME: No space left on device", and the like:
 * the errors a caller can act on say what ran out first.
 */
static void seterr(char *err, size_t errlen, const char *what, const char *verb,
		   const char *name, int e)
{
	const char *msg = strerror(e);

	if (!err || !errlen)
		return;
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		snprintf(err, errlen, "%s full: cannot %s %s: %s", what, verb, name, msg);
		break;
	case EROFS:
		snprintf(err, errlen, "%s is read-only: cannot %s %s: %s", what, verb, name, msg);
		break;
	case EMFILE:
		snprintf(err, errlen, "corrald is out of file descriptors: cannot %s %s in the "
			 "%s: %s", verb, name, what, msg);
		break;
	case ENFILE:
		snprintf(err, errlen, "the system is out of file descriptors: cannot %s %s in "
			 "the %s: %s", verb, name, what, msg);
		break;
	case ENOMEM:
		snprintf(err, errlen, "corrald is out of memory: cannot %s %s in the %s", verb,
			 name, what);
		break;
	case EIO:
		snprintf(err, errlen, "I/O error in the %s: cannot %s %s: %s", what, verb, name,
			 msg);
		break;
	default:
		snprintf(err, errlen, "cannot %s %s in the %s: %s", verb, name, what, msg);
		break;
	}
}

const char *durable_errno_phrase(int e)
{
	switch (e) {
	case ENOSPC: case EDQUOT: return "full";
	case EROFS: return "read-only";
	case EMFILE: return "out of file descriptors";
	case ENFILE: return "out of file descriptors (the system's)";
	case ENOMEM: return "out of memory";
	case EIO: return "I/O error";
	}
	return NULL;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void crash_tagged(const char *tag, const char *suffix)
{
	char name[128];

	if (!tag || !crash_armed())
		return;
	snprintf(name, sizeof(name), "%s.%s", tag, suffix);
	crash_point(name);
}

int durable_write(int dirfd, const char *what, const char *name, const void *data, size_t len,
		  mode_t mode, const char *tag, char *err, size_t errlen)
{
	char tmp[512];
	int fd, r;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp)) {
		seterr(err, errlen, what, "write", name, ENAMETOOLONG);
		return -ENAMETOOLONG;
	}
	/* A leftover from a crash: ours to replace (O_EXCL below refuses links). */
	if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT) {
		r = -errno;
		seterr(err, errlen, what, "remove", tmp, -r);
		return r;
	}
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    mode ? mode : 0600);
	if (fd < 0) {
		r = -errno;
		seterr(err, errlen, what, "create", tmp, -r);
		return r;
	}
	r = write_all(fd, data, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0 && errno != EINTR)
		r = -errno;
	if (r < 0) {
		seterr(err, errlen, what, "write", name, -r);
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	crash_tagged(tag, "after-tmp");
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		r = -errno;
		seterr(err, errlen, what, "rename", tmp, -r);
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	crash_tagged(tag, "after-rename");
	if (fsync(dirfd) < 0) {
		/* The file is in place; whether the rename is on disk is not known. */
		r = -errno;
		seterr(err, errlen, what, "flush the directory of", name, -r);
		return r;
	}
	return 0;
}

int durable_unlink(int dirfd, const char *what, const char *name, const char *tag, char *err,
		   size_t errlen)
{
	int r;

	if (unlinkat(dirfd, name, 0) < 0) {
		if (errno == ENOENT)
			return 0;
		r = -errno;
		seterr(err, errlen, what, "remove", name, -r);
		return r;
	}
	crash_tagged(tag, "after-unlink");
	if (fsync(dirfd) < 0) {
		r = -errno;
		seterr(err, errlen, what, "flush the directory of", name, -r);
		return r;
	}
	return 0;
}

int durable_read(int dirfd, const char *what, const char *name, size_t max, char **ret,
		 size_t *ret_len, char *err, size_t errlen)
{
	struct stat st;
	size_t off = 0;
	char *buf;
	int fd, r;

	fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP && err)
			snprintf(err, errlen, "%s in the %s is a symbolic link: not followed", name,
				 what);
		else
			seterr(err, errlen, what, "open", name, -r);
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		seterr(err, errlen, what, "stat", name, -r);
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		if (err)
			snprintf(err, errlen, "%s in the %s is not a regular file", name, what);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		if (err)
			snprintf(err, errlen, "%s in the %s is %lld bytes, over the %zu allowed", name,
				 what, (long long)st.st_size, max);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		seterr(err, errlen, what, "read", name, ENOMEM);
		return -ENOMEM;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			free(buf);
			close(fd);
			seterr(err, errlen, what, "read", name, -r);
			return r;
		}
		if (n == 0)
			break;          /* shrank meanwhile: take what is there */
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	*ret = buf;
	*ret_len = off;
	return 0;
}

static int check_owner(int fd, const char *path, const char *what, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != geteuid()) {
		if (err)
			snprintf(err, errlen, "%s %s is owned by uid %u, not by this daemon's user "
				 "(uid %u): refusing to use it", what, path, (unsigned)st.st_uid,
				 (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		if (err)
			snprintf(err, errlen, "%s %s is writable by %s (mode %04o): refusing to use "
				 "it", what, path, st.st_mode & 002 ? "others" : "its group",
				 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

int durable_open_dir(const char *path, const char *what, int owner_check, char *err,
		     size_t errlen)
{
	int fd, r;

	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		if (err)
			snprintf(err, errlen, "cannot create the %s %s: %s", what, path,
				 strerror(-r));
		return r;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (err)
			snprintf(err, errlen, "cannot open the %s %s: %s", what, path,
				 r == -ENOTDIR ? "not a directory (or a symbolic link)" :
				 strerror(-r));
		return r;
	}
	if (owner_check) {
		r = check_owner(fd, path, what, err, errlen);
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
}

int durable_open_subdir(int dirfd, const char *name, const char *what, char *err, size_t errlen)
{
	int fd, r;

	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		seterr(err, errlen, what, "create", name, -r);
		return r;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		seterr(err, errlen, what, "open", name, -r);
		return r;
	}
	r = check_owner(fd, name, what, err, errlen);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

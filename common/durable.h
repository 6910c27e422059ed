/* SPDX-License-Identifier: MIT */
/*
 * durable: files that survive a crash or a power cut whole or not at all,
 * and the words for what went wrong.
 *
 * Every function works relative to a directory fd (opened once with
 * O_DIRECTORY | O_NOFOLLOW), never follows a symbolic link in the last
 * component, and blocks on the disk: call it where blocking is allowed
 * (an offload thread, or the main thread at start-up), never in an actor's
 * turn or on an ioloop thread.  No state, no lock: any such thread.
 *
 * Errors: a negative errno, and a sentence in err naming the file and
 * what ran out ("state dir full: cannot write domains/web1.json: No space
 * left on device").  err may be NULL.
 */
#ifndef CORRAL_COMMON_DURABLE_H
#define CORRAL_COMMON_DURABLE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Replace dirfd/name with data: write "name.tmp" (created 0600 or mode,
 * O_EXCL after removing a leftover), fsync it, rename it over name, fsync
 * the directory.  A crash at any point leaves the old file or the new one,
 * and at most a stray "name.tmp".  what names the directory in messages
 * ("state dir").  tag names the crash points (see common/crash.h):
 * "TAG.after-tmp" (written and flushed, not renamed) and "TAG.after-rename"
 * (renamed, directory not flushed).  tag may be NULL.
 */
int durable_write(int dirfd, const char *what, const char *name, const void *data, size_t len,
		  mode_t mode, const char *tag, char *err, size_t errlen);

/*
 * Remove dirfd/name and fsync the directory.  A missing file is success
 * (the work is already done).  Crash point "TAG.after-unlink".
 */
int durable_unlink(int dirfd, const char *what, const char *name, const char *tag, char *err,
		   size_t errlen);

/*
 * Read dirfd/name, a regular file of at most max bytes, without following
 * a link and without blocking on a FIFO or device: opened O_NONBLOCK |
 * O_NOFOLLOW and checked with fstat before any read.  *ret is
 * NUL-terminated (malloc'd), *ret_len its length.  -EFTYPE-like errors:
 * -ELOOP (a symbolic link), -EINVAL (not a regular file), -EFBIG (over
 * max).
 */
int durable_read(int dirfd, const char *what, const char *name, size_t max, char **ret,
		 size_t *ret_len, char *err, size_t errlen);

/*
 * Open (creating, mode 0700) the directory path and return its fd:
 * O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC.  With owner_check, refuse a
 * directory not owned by the calling user or writable by group or others
 * (-EPERM, and err says why): what a squatter could have made.
 */
int durable_open_dir(const char *path, const char *what, int owner_check, char *err,
		     size_t errlen);

/* The same for name inside dirfd (created 0700 if missing). */
int durable_open_subdir(int dirfd, const char *name, const char *what, char *err, size_t errlen);

/*
 * "state dir full", "state dir is read-only", "too many open files",
 * "out of memory", ... for an errno met while writing into what; NULL for
 * errors with no better word than strerror().
 */
const char *durable_errno_phrase(int err);

#endif /* CORRAL_COMMON_DURABLE_H */

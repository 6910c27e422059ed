/* SPDX-License-Identifier: MIT */
/*
 * qemu/: helpers shared by the files of this folder and nobody else.
 * Everything here is pure and safe from any thread.
 */
#ifndef CORRAL_QEMU_QEMU_INTERNAL_H
#define CORRAL_QEMU_QEMU_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* Longest value rendered in an error message before it is cut with "...". */
#define QEMU__QUOTE_MAX 64

/*
 * printf into err[errlen].  err may be NULL or errlen 0, for callers that
 * want the errno only.
 */
void qemu__seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Does s hold an ASCII control character (0x01-0x1f or 0x7f)? */
bool qemu__has_ctl(const char *s);

/* Is s a UUID in its canonical 8-4-4-4-12 hex form (either case)? */
bool qemu__uuid_valid(const char *s);

/*
 * Render the n bytes at s for an error message: in double quotes, with '"',
 * '\' and control characters (NUL included) escaped and anything past
 * QEMU__QUOTE_MAX bytes cut off with "...", so that a hostile value can
 * neither forge a second log line nor flood one.  Always NUL-terminates buf
 * (len > 0).
 */
void qemu__quote(const char *s, size_t n, char *buf, size_t len);

/*
 * Why s is not an acceptable absolute path for QEMU, or NULL if it is:
 * it must start with '/', hold no control character, and fit PATH_MAX.
 */
const char *qemu__path_problem(const char *s);

#endif /* CORRAL_QEMU_QEMU_INTERNAL_H */

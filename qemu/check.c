/* SPDX-License-Identifier: MIT */
/* qemu/: value checks and message helpers shared by config.c and launch.c. */
#include "qemu/qemu-internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void qemu__seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

bool qemu__has_ctl(const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch == 0x7f)
			return true;
	}
	return false;
}

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool qemu__uuid_valid(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
	}
	return s[36] == '\0';
}

void qemu__quote(const char *s, size_t n, char *buf, size_t len)
{
	size_t o = 0, i;

#define PUT(...) (o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__))
	if (len == 0)
		return;
	buf[0] = '\0';
	PUT("\"");
	for (i = 0; i < n && o < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		/* Room for the worst escape ("\xNN"), "...", the quote and the NUL. */
		if (i == QEMU__QUOTE_MAX || o + 4 + 3 + 1 + 1 >= len) {
			PUT("...");
			break;
		}
		if (ch == '"' || ch == '\\')
			PUT("\\%c", ch);
		else if (ch == '\n')
			PUT("\\n");
		else if (ch == '\t')
			PUT("\\t");
		else if (ch < 0x20 || ch == 0x7f)
			PUT("\\x%02x", ch);
		else
			PUT("%c", ch);
	}
	if (o < len)
		PUT("\"");
#undef PUT
}

const char *qemu__path_problem(const char *s)
{
	if (s[0] != '/')
		return "must be an absolute path";
	if (qemu__has_ctl(s))
		return "must not contain control characters";
	if (strlen(s) >= PATH_MAX)
		return "is longer than PATH_MAX";
	return NULL;
}

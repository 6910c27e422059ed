/* SPDX-License-Identifier: MIT */
#ifndef CORRAL_COMMON_NAMES_H
#define CORRAL_COMMON_NAMES_H

#include <stdbool.h>

#define CORRAL_NAME_MAX 64
#define CORRAL_NAME_RULE "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"

/*
 * Is name a safe domain name (CORRAL_NAME_RULE)?  Such a name is safe in a
 * file name, a QEMU option value and a log line.  Any thread.
 */
static inline bool corral_name_valid(const char *name)
{
	size_t i;

	if (!name)
		return false;
	for (i = 0; name[i]; i++) {
		char c = name[i];
		bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9');

		if (i >= CORRAL_NAME_MAX)
			return false;
		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return i > 0;
}

#endif /* CORRAL_COMMON_NAMES_H */

/* SPDX-License-Identifier: MIT */
#include "common/crash.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char armed[128];         /* written by crash_init only */
static unsigned long armed_at = 1;
static unsigned long hits;      /* atomic */

void crash_init(void)
{
	const char *v = getenv("CORRAL_CRASH_POINT");
	char *colon;

	if (!v || !*v || strlen(v) >= sizeof(armed))
		return;
	strcpy(armed, v);
	colon = strchr(armed, ':');
	if (colon) {
		*colon = '\0';
		armed_at = strtoul(colon + 1, NULL, 10);
		if (!armed_at)
			armed_at = 1;
	}
}

bool crash_armed(void)
{
	return armed[0] != '\0';
}

void crash_point(const char *name)
{
	char line[200];
	int n;

	if (!armed[0] || strcmp(name, armed) != 0)
		return;
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED) != armed_at)
		return;
	n = snprintf(line, sizeof(line), "corrald: crash point %s reached: SIGKILL\n", name);
	if (n > 0)
		(void)!write(STDERR_FILENO, line, (size_t)n);
	raise(SIGKILL);
	_exit(137);
}

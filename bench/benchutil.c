/* SPDX-License-Identifier: MIT */
#include "bench/benchutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

struct row {
	int sec;
	char text[512];
};

static struct row rows[256];
static unsigned nrows;

void row_add(int sec, const char *fmt, ...)
{
	va_list ap;

	BUG_ON(nrows == ARRAY_SIZE(rows));
	rows[nrows].sec = sec;
	va_start(ap, fmt);
	vsnprintf(rows[nrows].text, sizeof(rows[nrows].text), fmt, ap);
	va_end(ap);
	nrows++;
}

void rows_print(int sec)
{
	for (unsigned i = 0; i < nrows; i++)
		if (rows[i].sec == sec)
			printf("%s\n", rows[i].text);
}

void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && colon) {
			snprintf(buf, len, "%s", colon + 2);
			buf[strcspn(buf, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
}

double loadavg(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l = -1;

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

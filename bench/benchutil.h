/* SPDX-License-Identifier: MIT */
/*
 * What the benchmark programs share: a table of result rows grouped by
 * section, and facts about the machine a figure was measured on.
 */
#ifndef CORRAL_BENCH_BENCHUTIL_H
#define CORRAL_BENCH_BENCHUTIL_H

#include <stddef.h>

/* Add a markdown table row (printf-style) to section sec. */
void row_add(int sec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the rows of section sec, in the order they were added. */
void rows_print(int sec);

/* /proc/cpuinfo's first "model name", or "unknown". */
void cpu_model(char *buf, size_t len);
/* The 1-minute load average, or -1: other work on the machine skews every figure. */
double loadavg(void);

#endif

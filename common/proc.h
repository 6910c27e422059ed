/* SPDX-License-Identifier: MIT */
/* Facts about this process from /proc.  Any thread. */
#ifndef CORRAL_COMMON_PROC_H
#define CORRAL_COMMON_PROC_H

#include <stdint.h>

/* Resident set size in bytes (/proc/self/statm), or 0 if unknown. */
uint64_t proc_rss_bytes(void);

#endif /* CORRAL_COMMON_PROC_H */

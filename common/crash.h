/* SPDX-License-Identifier: MIT */
/*
 * crash points: named places between a request and its durable effect
 * where a test can make the daemon die as `kill -9` would, to check that a
 * restart finds every VM and every file in its old or its new state.
 *
 * Off unless the environment says otherwise: CORRAL_CRASH_POINT=NAME makes
 * the first arrival at crash_point(NAME) kill the process with SIGKILL;
 * NAME:N the N-th arrival.  The list of names is in DESIGN.md ("Crash
 * points").  Without the variable a crash point costs one load and a
 * branch.  Any thread.
 */
#ifndef CORRAL_COMMON_CRASH_H
#define CORRAL_COMMON_CRASH_H

#include <stdbool.h>

/* Read CORRAL_CRASH_POINT once, before any thread starts. */
void crash_init(void);

/* Is any crash point armed?  (To skip building a name.) */
bool crash_armed(void);

/* Die here if name is the armed point (and its count is reached). */
void crash_point(const char *name);

#endif /* CORRAL_COMMON_CRASH_H */

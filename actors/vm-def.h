/* SPDX-License-Identifier: MIT */
/*
 * vm-def: the definition file, STATE_DIR/domains/NAME.json, as text.
 *
 * Version 2 is {"version": 2, "config": {...}, "owner": {...}, "autostart":
 * bool, "unknown": [name, ...]}; "autostart" is absent in files written
 * before it existed (false), "unknown" (the config fields an attach without
 * a config could not learn) in all but those; files older still are the
 * config alone (no owner: the loader takes the daemon's own identity).  The config must be valid (qemu/config.h) and
 * must name the domain the file is named for.
 *
 * Pure functions: no I/O, no global state, any thread.  The loader at
 * start-up (vm_env_load in vm.c) reads each file and hands its text here;
 * define and autostart build what they write with vm_def_doc().  A fuzz
 * target (fuzz/fuzz-def.c) drives both.
 */
#ifndef CORRAL_ACTORS_VM_DEF_H
#define CORRAL_ACTORS_VM_DEF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/creds.h"
#include "qemu/config.h"

struct vm_def {
	struct qemu_config *cfg;        /* the caller's to free */
	struct creds owner;             /* valid when has_owner */
	bool has_owner;                 /* false: a config-alone file */
	bool autostart;
	json_t *unknown;                /* NULL or an array of strings; the caller's */
};

/*
 * Parse the text of the definition file FILE ("NAME.json"; LEN bytes, not
 * necessarily NUL-terminated).  0 with *ret filled; or a negative errno
 * (-EINVAL for anything wrong with the text, or what qemu_config_from_json
 * returns) with a reason in err and *ret untouched.
 */
int vm_def_parse(const char *file, const char *text, size_t len, struct vm_def *ret,
		 char *err, size_t errlen);

/*
 * The version 2 document for a config in canonical form (stolen: a new
 * reference, or NULL), its owner, the autostart flag and the unknown
 * fields (borrowed; NULL or empty: none written); NULL when out of memory.
 */
json_t *vm_def_doc(json_t *config, const struct creds *owner, bool autostart,
		   const json_t *unknown);

#endif /* CORRAL_ACTORS_VM_DEF_H */

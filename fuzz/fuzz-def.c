/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the definition loader (actors/vm-def.h): the text of
 * STATE_DIR/domains/NAME.json as corrald reads it at start-up.  The input is
 * the file's text; it is parsed as the file "fuzz.json".  Beyond "no crash,
 * no leak, no sanitizer report" it checks:
 *
 *   - the outcome is the one the file format (vm-def.h) gives, worked out
 *     here from the JSON independently: not JSON or duplicate keys, a bad
 *     "owner", "autostart" or "unknown" in a version 2 document, a refused
 *     config (the
 *     same reason qemu_config_from_json gives), a config naming another
 *     domain; each refusal is a negative errno with a reason that is not
 *     empty and fits the buffer, and leaves the result untouched;
 *   - a definition refused only for its name is accepted as NAME.json, and
 *     an accepted one gives the config qemu_config_from_json gives (equal
 *     canonical forms), the owner the document holds (none for a
 *     config-alone file), autostart exactly when it is true, and the
 *     document's "unknown" names;
 *   - what define writes for it (vm_def_doc, dumped as vm.c dumps it) loads
 *     back to the same config, owner, autostart and unknown names.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/vm-def.h"
#include "common/util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FILE_NAME "fuzz.json"

static bool creds_eq(const struct creds *a, const struct creds *b)
{
	if (a->uid != b->uid || a->gid != b->gid || a->ngroups != b->ngroups)
		return false;
	return memcmp(a->groups, b->groups, a->ngroups * sizeof(a->groups[0])) == 0;
}

/* The same unknown names: an empty list is as good as none. */
static bool unknown_eq(const json_t *a, const json_t *b)
{
	if (!json_array_size(a) || !json_array_size(b))
		return !json_array_size(a) && !json_array_size(b);
	return json_equal(a, b);
}

static void check_reason(int r, const char *err, size_t errlen)
{
	BUG_ON(r >= 0);
	BUG_ON(err[0] == '\0');
	BUG_ON(strnlen(err, errlen) >= errlen);
}

/* Equal canonical forms (NULL when out of memory: nothing to compare). */
static void check_same_config(const struct qemu_config *a, const struct qemu_config *b)
{
	json_t *ja = qemu_config_to_json(a), *jb = qemu_config_to_json(b);

	if (ja && jb)
		BUG_ON(!json_equal(ja, jb));
	json_decref(ja);
	json_decref(jb);
}

/* vm.c's write: the document, indented and sorted, loaded back. */
static void check_round_trip(const char *file, const struct vm_def *def)
{
	struct creds owner;
	struct vm_def back = { 0 };
	char err[512] = "";
	json_t *doc;
	char *text;
	int r;

	if (def->has_owner)
		owner = def->owner;
	else
		memset(&owner, 0, sizeof(owner));
	doc = vm_def_doc(qemu_config_to_json(def->cfg), &owner, def->autostart, def->unknown);
	if (!doc)
		return;
	text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(doc);
	if (!text)
		return;
	r = vm_def_parse(file, text, strlen(text), &back, err, sizeof(err));
	free(text);
	if (r == -ENOMEM)
		return;
	if (r < 0)
		fprintf(stderr, "round trip refused: %s\n", err);
	BUG_ON(r < 0);
	BUG_ON(!back.has_owner);
	BUG_ON(!creds_eq(&back.owner, &owner));
	BUG_ON(back.autostart != def->autostart);
	BUG_ON(!unknown_eq(back.unknown, def->unknown));
	check_same_config(def->cfg, back.cfg);
	qemu_config_free(back.cfg);
	json_decref(back.unknown);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* jansson seeds its hash from /dev/urandom: fix it, runs must repeat. */
	json_object_seed(0x636f7272616cu);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct vm_def def, untouched;
	struct qemu_config *want = NULL;
	struct creds want_owner = { 0 };
	const json_t *config, *autostart = NULL, *unknown = NULL;
	char err[512], want_err[512] = "", file[600];
	bool owner_ok = true, autostart_ok = true, unknown_ok = true, has_owner;
	json_error_t jerr;
	json_t *doc;
	int r, want_r;

	memset(&untouched, 0x5a, sizeof(untouched));
	memcpy(&def, &untouched, sizeof(def));
	err[0] = '\0';
	r = vm_def_parse(FILE_NAME, text, size, &def, err, sizeof(err));

	/* The expected outcome, from the JSON. */
	doc = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		if (r == -ENOMEM)
			return 0;
		check_reason(r, err, sizeof(err));
		BUG_ON(r != -EINVAL);
		BUG_ON(strncmp(err, "not valid JSON: ", 16) != 0);
		BUG_ON(memcmp(&def, &untouched, sizeof(def)) != 0);
		return 0;
	}
	config = json_object_get(doc, "config");
	has_owner = config != NULL;
	if (config) {
		owner_ok = creds_from_json(json_object_get(doc, "owner"), &want_owner) == 0;
		autostart = json_object_get(doc, "autostart");
		autostart_ok = !autostart || json_is_boolean(autostart);
		unknown = json_object_get(doc, "unknown");
		if (unknown) {
			size_t i;
			json_t *v;

			unknown_ok = json_is_array(unknown);
			json_array_foreach(unknown, i, v)
				unknown_ok = unknown_ok && json_is_string(v);
		}
	} else {
		config = doc;
	}
	want_r = -EINVAL;
	if (!owner_ok) {
		snprintf(want_err, sizeof(want_err), "bad 'owner'");
	} else if (!autostart_ok) {
		snprintf(want_err, sizeof(want_err), "bad 'autostart': not true or false");
	} else if (!unknown_ok) {
		snprintf(want_err, sizeof(want_err), "bad 'unknown': not an array of names");
	} else {
		want_r = qemu_config_from_json(config, &want, want_err, sizeof(want_err));
		if (want_r == -ENOMEM || r == -ENOMEM) {
			qemu_config_free(want);
			if (r == 0) {
				qemu_config_free(def.cfg);
				json_decref(def.unknown);
			}
			json_decref(doc);
			return 0;
		}
	}

	if (want_r < 0) {
		/* Refused for its text: the same refusal, whatever the file's name. */
		check_reason(r, err, sizeof(err));
		BUG_ON(r != want_r);
		BUG_ON(strcmp(err, want_err) != 0);
		BUG_ON(memcmp(&def, &untouched, sizeof(def)) != 0);
		json_decref(doc);
		return 0;
	}

	/* A valid definition: accepted exactly under its own name. */
	snprintf(file, sizeof(file), "%s.json", qemu_config_name(want));
	if (strcmp(file, FILE_NAME) != 0) {
		check_reason(r, err, sizeof(err));
		BUG_ON(r != -EINVAL);
		BUG_ON(!strstr(err, "not the file's name"));
		BUG_ON(memcmp(&def, &untouched, sizeof(def)) != 0);
		r = vm_def_parse(file, text, size, &def, err, sizeof(err));
		if (r == -ENOMEM)
			goto out;
	}
	if (r < 0)
		fprintf(stderr, "refused as %s: %s\n", file, err);
	BUG_ON(r != 0);
	BUG_ON(!def.cfg);
	BUG_ON(strcmp(qemu_config_name(def.cfg), qemu_config_name(want)) != 0);
	check_same_config(def.cfg, want);
	BUG_ON(def.has_owner != has_owner);
	BUG_ON(has_owner && !creds_eq(&def.owner, &want_owner));
	BUG_ON(def.autostart != json_is_true(autostart));
	BUG_ON(!has_owner && def.unknown);
	BUG_ON(has_owner && !unknown_eq(def.unknown, unknown));
	/* Any other name refuses it. */
	{
		struct vm_def other;
		char oerr[512] = "";
		int o;

		memcpy(&other, &untouched, sizeof(other));
		o = vm_def_parse("x-fuzz.json", text, size, &other, oerr, sizeof(oerr));

		if (strcmp(file, "x-fuzz.json") != 0 && o != -ENOMEM) {
			check_reason(o, oerr, sizeof(oerr));
			BUG_ON(o != -EINVAL);
			BUG_ON(memcmp(&other, &untouched, sizeof(other)) != 0);
		} else if (o == 0) {
			qemu_config_free(other.cfg);
			json_decref(other.unknown);
		}
	}
	check_round_trip(file, &def);
	qemu_config_free(def.cfg);
	json_decref(def.unknown);
out:
	qemu_config_free(want);
	json_decref(doc);
	return 0;
}

/* SPDX-License-Identifier: MIT */
#include "actors/vm-def.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

json_t *vm_def_doc(json_t *config, const struct creds *owner, bool autostart,
		   const json_t *unknown)
{
	json_t *o = creds_to_json(owner), *doc;

	if (!o) {
		json_decref(config);
		return NULL;
	}
	/* Steals config (a new reference, or NULL: then the pack fails). */
	doc = json_pack("{s:i, s:o, s:o, s:b}", "version", 2, "config", config, "owner", o,
			"autostart", autostart);
	if (doc && unknown && json_array_size(unknown) &&
	    json_object_set_new(doc, "unknown", json_deep_copy(unknown)) < 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

int vm_def_parse(const char *file, const char *text, size_t len, struct vm_def *ret,
		 char *err, size_t errlen)
{
	struct qemu_config *cfg = NULL;
	const json_t *config, *autostart = NULL, *unknown;
	struct vm_def def = { 0 };
	json_error_t jerr;
	json_t *doc;
	int r;

	doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(err, errlen, "not valid JSON: %s (line %d)", jerr.text, jerr.line);
		return -EINVAL;
	}
	config = json_object_get(doc, "config");
	if (config) {
		if (creds_from_json(json_object_get(doc, "owner"), &def.owner) < 0) {
			json_decref(doc);
			snprintf(err, errlen, "bad 'owner'");
			return -EINVAL;
		}
		def.has_owner = true;
		autostart = json_object_get(doc, "autostart");
		if (autostart && !json_is_boolean(autostart)) {
			json_decref(doc);
			snprintf(err, errlen, "bad 'autostart': not true or false");
			return -EINVAL;
		}
		/* The fields an attach without a config could not learn. */
		unknown = json_object_get(doc, "unknown");
		for (size_t i = 0; unknown && i < json_array_size(unknown); i++)
			if (!json_is_string(json_array_get(unknown, i)))
				unknown = json_null();
		if (unknown && !json_is_array(unknown)) {
			json_decref(doc);
			snprintf(err, errlen, "bad 'unknown': not an array of names");
			return -EINVAL;
		}
		def.unknown = json_deep_copy(unknown);   /* NULL stays NULL */
	} else {
		config = doc;
	}
	r = qemu_config_from_json(config, &cfg, err, errlen);
	if (r == 0) {
		const char *name = qemu_config_name(cfg);
		size_t n = strlen(name);

		if (strncmp(file, name, n) != 0 || strcmp(file + n, ".json") != 0) {
			snprintf(err, errlen, "names domain '%s', not the file's name", name);
			r = -EINVAL;
		}
	}
	def.autostart = json_is_true(autostart);
	json_decref(doc);
	if (r < 0) {
		json_decref(def.unknown);
		qemu_config_free(cfg);
		return r;
	}
	def.cfg = cfg;
	*ret = def;
	return 0;
}

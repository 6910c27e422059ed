/* SPDX-License-Identifier: MIT */
/*
 * vm-discover: what an attach without a config can learn from QEMU.
 *
 * A domain attached without a config must never be booted from guessed
 * values (a "machine: pc, memory: 256" that QEMU never had).  Its
 * definition lists every config field as unknown from the start; once the
 * attach's monitor answers, this asks QEMU, one query after the other on
 * the attach job:
 *
 *   machine   qom-get /machine type ("pc-i440fx-7.2-machine": QEMU 7.2's
 *             query-machines does not say which one is current)
 *   memory    query-memory-size-summary (base-memory)
 *   vcpus     query-cpus-fast (how many; none on machine "none")
 *   accel     query-kvm (enabled: kvm, else tcg)
 *
 * A query QEMU refuses, or an answer that does not pass the config's own
 * validator, leaves its field unknown.  The definition is then written
 * again (known fields, and the list of the rest), and the attach goes on
 * to its run record.  start and autostart refuse the domain while the list
 * is not empty; a define (or corral edit) gives it a whole config.
 */
#include <errno.h>
#include <string.h>

#include "actors/vm-internal.h"
#include "qemu/config.h"

static const struct {
	const char *field, *execute, *args;
} queries[] = {
	{ "machine", "qom-get", "{\"path\": \"/machine\", \"property\": \"type\"}" },
	{ "memory", "query-memory-size-summary", NULL },
	{ "vcpus", "query-cpus-fast", NULL },
	{ "accel", "query-kvm", NULL },
};

#define NQUERIES (sizeof(queries) / sizeof(queries[0]))

/* QEMU's answer to query i as the config field's value, or NULL. */
static json_t *value_of(size_t i, const json_t *ret)
{
	const char *s;
	size_t n;

	switch (i) {
	case 0:         /* "<machine>-machine" */
		s = json_string_value(ret);
		n = s ? strlen(s) : 0;
		if (n <= 8 || strcmp(s + n - 8, "-machine") != 0)
			return NULL;
		return json_stringn(s, n - 8);
	case 1: {
		json_int_t bytes = json_integer_value(json_object_get(ret, "base-memory"));

		return bytes > 0 && bytes % (1024 * 1024) == 0 ?
		       json_integer(bytes / (1024 * 1024)) : NULL;
	}
	case 2:
		return json_is_array(ret) && json_array_size(ret) ?
		       json_integer((json_int_t)json_array_size(ret)) : NULL;
	case 3:
		if (!json_is_boolean(json_object_get(ret, "enabled")))
			return NULL;
		return json_string(json_is_true(json_object_get(ret, "enabled")) ? "kvm" : "tcg");
	}
	return NULL;
}

static void ask(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;
	const char *a = queries[vj->discover_step].args;

	/* Its reply comes to vm_discover_step() (vmj_step routes it: discovering). */
	vm_job_cmd(d, job, queries[vj->discover_step].execute, a ? json_loads(a, 0, NULL) : NULL,
		   NULL);
}

static bool config_ok(const json_t *cfg)
{
	struct qemu_config *c = NULL;
	int r = qemu_config_from_json(cfg, &c, NULL, 0);

	qemu_config_free(c);
	return r == 0;
}

static void written(struct domain *d, struct vm_io *io)
{
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (!vj || job->id != io->job_id)
		return;
	if (io->err) {
		/* The attach stays, with what was on disk: still nothing to boot from. */
		dom_job_finish(d, job, io->err, DOM_ERR_STORAGE, NULL, "domain '%s': %s",
			       dom_name(d), io->errmsg);
		return;
	}
	vm_proc_attach_record(d, job);
}

/* Every query answered: the definition with what is known, then the record. */
static void finish(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;
	json_t *cfg = json_deep_copy(vj->found_cfg), *unknown = vm_all_fields_unknown();
	const char *key;
	json_t *v, *tmp;
	size_t i;

	vj->discovering = false;
	/* Each found value on its own must pass; then all of them together. */
	json_object_foreach_safe(vj->found_cfg, tmp, key, v) {
		json_t *one = json_pack("{s:s, s:O}", "name", dom_name(d), key, v);

		if (!one || !config_ok(one))
			json_object_del(cfg, key);
		json_decref(one);
	}
	json_object_set_new(cfg, "name", json_string(dom_name(d)));
	if (!config_ok(cfg)) {
		json_object_del(cfg, "vcpus");          /* machine "none" with vCPUs, say */
		if (!config_ok(cfg)) {
			json_object_clear(cfg);
			json_object_set_new(cfg, "name", json_string(dom_name(d)));
		}
	}
	json_object_set_new(cfg, "uuid", json_string(json_string_value(
		json_object_get(vm_config_rcu(d), "uuid"))));
	for (i = json_array_size(unknown); i-- > 0;)
		if (json_object_get(cfg, json_string_value(json_array_get(unknown, i))))
			json_array_remove(unknown, i);
	{
		/* Canonical form for the file; the unknown list says what it is worth. */
		struct qemu_config *c = NULL;

		if (qemu_config_from_json(cfg, &c, NULL, 0) == 0) {
			json_decref(cfg);
			cfg = qemu_config_to_json(c);
		}
		qemu_config_free(c);
	}
	vj->phase = VP_IO;
	if (!cfg || !unknown || vm_def_rewrite(d, job->id, cfg, unknown, written) < 0) {
		json_decref(unknown);
		vm_proc_attach_record(d, job);  /* the old list stays: all unknown */
		return;
	}
	json_decref(unknown);
}

void vm_discover_start(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;

	json_decref(vj->found_cfg);
	vj->found_cfg = json_object();
	vj->discover_step = 0;
	vj->discovering = true;
	if (!vj->found_cfg) {
		vj->discovering = false;
		vm_proc_attach_record(d, job);
		return;
	}
	ask(d, job);
}

void vm_discover_step(struct domain *d, struct dom_job *job, int err, json_t *data)
{
	struct vm_job *vj = job->priv;
	json_t *v = err ? NULL : value_of((size_t)vj->discover_step, json_object_get(data,
											"return"));

	json_decref(data);
	if (v)
		json_object_set_new(vj->found_cfg, queries[vj->discover_step].field, v);
	if (err && err != -EIO) {
		/* No answer (a timeout, the monitor gone): keep what is known. */
		finish(d, job);
		return;
	}
	if ((size_t)++vj->discover_step < NQUERIES) {
		ask(d, job);
		return;
	}
	finish(d, job);
}

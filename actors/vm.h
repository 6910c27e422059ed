/* SPDX-License-Identifier: MIT */
/*
 * vm: QEMU-backed domains.  Builds on the domain actor (domain.h): the
 * lifecycle jobs (start, shutdown, suspend, ...), the monitor actor that owns
 * each QMP connection, QEMU's process, and the event bus.
 *
 * The daemon's RPC layer calls only what is declared here and in domain.h.
 */
#ifndef CORRAL_ACTORS_VM_H
#define CORRAL_ACTORS_VM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "actors/domain.h"
#include "actors/evbus.h"
#include "common/ioloop.h"

struct vm_env;

struct vm_env_opts {
	struct rt *rt;
	struct ioloop *io;
	struct registry *reg;
	struct evbus *bus;
	const char *runtime_dir;        /* QMP sockets, pid files (mode 0700) */
	const char *state_dir;          /* configs, logs (mode 0700) */
	const char *default_emulator;   /* NULL: qemu-system-x86_64 from PATH */
};

/* Daemon-wide context.  Any thread. */
int vm_env_new(const struct vm_env_opts *opts, struct vm_env **ret);
void vm_env_free(struct vm_env *env);

/*
 * Definitions are kept on disk, one JSON file per domain in
 * STATE_DIR/domains/NAME.json, written by vm_define (to a temporary file,
 * then renamed: a crash leaves the old or the new file, never half of one)
 * and removed by vm_undefine.  vm_env_load defines every domain found
 * there, at start-up; report (may be NULL) hears of each file it could not
 * use.  Returns how many were defined.  Main thread, before serving.
 */
int vm_env_load(struct vm_env *env,
		void (*report)(const char *path, const char *why, void *arg), void *arg);

/*
 * Define a domain from a config object (see qemu/config.h for its fields),
 * validated field by field; add it to the registry.  -EINVAL (errbuf says
 * which field and why), -EEXIST (name or UUID taken).  Any thread.
 */
int vm_define(struct vm_env *env, json_t *config, struct domain **ret, char *errbuf,
	      size_t errlen);

/*
 * Remove a shut-off domain: -EBUSY unless shut off (errbuf says its state).
 * Any thread.
 */
int vm_undefine(struct vm_env *env, struct domain *d, char *errbuf, size_t errlen);

enum vm_op {
	VM_OP_START,
	VM_OP_SHUTDOWN,
	VM_OP_DESTROY,          /* never waits behind other jobs */
	VM_OP_SUSPEND,
	VM_OP_RESUME,
	VM_OP_RESET,
	VM_OP_REBOOT,
	VM_OP_QMP,              /* args: {"command": "<QMP JSON text>"} */
	VM_OP_ATTACH,           /* args: {"qmp_socket": path, "pid": n (optional)} */
	VM_OP_COUNT
};

const char *vm_op_name(enum vm_op op);
/* -1 if unknown. */
int vm_op_from_name(const char *name);

/*
 * A lifecycle job for dom_submit().  args may be NULL (borrowed).  The job's
 * result (job->result) is a JSON value or NULL.  Any thread.
 */
int vm_job_new(enum vm_op op, json_t *args, uint64_t timeout_ns, dom_job_done_fn done,
	       void *done_arg, struct dom_job **ret, char *errbuf, size_t errlen);

/*
 * Submit: like dom_submit(), except that destroy does not queue behind the
 * job that holds the domain.  Any thread.
 */
int vm_submit(struct domain *d, struct dom_job *job);

/*
 * The domain's config as JSON (immutable, published with the snapshot).
 * RCU reader: valid until rcu_read_unlock(); never modify it.
 */
const json_t *vm_config_rcu(struct domain *d);

#endif /* CORRAL_ACTORS_VM_H */

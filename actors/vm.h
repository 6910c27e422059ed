/* SPDX-License-Identifier: MIT */
/*
 * vm: QEMU-backed domains.  Builds on the domain actor (domain.h): the
 * lifecycle jobs (define, start, shutdown, suspend, ..., undefine), the
 * monitor actor that owns each QMP connection, QEMU's process, the files
 * that make all of it survive a crash, and the event bus.
 *
 * Every change to a domain is a job on its actor, its disk writes
 * included: define (of a new name or of an existing one), undefine,
 * attach, start.  A job that writes a file waits for an offload thread to
 * write it durably (fsync, rename, fsync of the directory) before it
 * reports success, and a failed write fails the job with the reason and
 * changes nothing.
 *
 * Ownership survives the daemon: before QEMU exists, its run record
 * (RUNTIME_DIR/vms/NAME.json) is on disk and names a random run id that
 * QEMU carries in its environment; at start-up vm_env_load() finds every
 * QEMU of this runtime directory, from the records and from /proc, and
 * adopts it or, when its domain is gone, stops it and says so.  A live QEMU
 * is never dropped: a record goes only when its process is gone.
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
#include "common/cgroup.h"
#include "common/creds.h"
#include "common/ioloop.h"
#include "common/offload.h"

struct vm_env;
struct console;

struct vm_env_opts {
	struct rt *rt;
	struct ioloop *io;
	struct registry *reg;
	struct evbus *bus;
	struct offload *off;            /* where blocking work runs */
	const char *runtime_dir;        /* records, QMP sockets (mode 0700, ours) */
	const char *state_dir;          /* definitions, logs (mode 0700, ours) */
	const char *default_emulator;   /* NULL: qemu-system-x86_64 */
	/*
	 * The emulators a definition may name (absolute paths), NULL-terminated;
	 * NULL: every /usr/bin/qemu-system-* present.  default_emulator is
	 * always allowed.
	 */
	const char *const *emulators;
	/*
	 * Who QEMU runs as.  qemu_run_as: as qemu_creds (uid, gid, groups),
	 * through setpriv(1), the daemon being root; otherwise as the daemon.
	 * qemu_user_problem non-NULL: the configured user is unusable, and every
	 * start fails with this reason.
	 */
	bool qemu_run_as;
	struct creds qemu_creds;
	const char *qemu_user_problem;
	struct cg *cg;                  /* QEMUs' control groups (may be in mode CG_NONE) */
	/* Bridges a bridged NIC may join (NULL-terminated; NULL: none). */
	const char *const *bridges;
	/* firmware "uefi": OVMF's code and variable-store template; NULL: Debian's ovmf. */
	const char *ovmf_code, *ovmf_vars;
	uint64_t console_log_max;       /* bytes of one console log; 0: the default (4 MiB) */
	/*
	 * Statistics rounds of every monitor (mon_set_poll): the interval (0:
	 * none) and the heartbeat's threshold (0: none).
	 */
	uint64_t stats_interval_ns;
	uint64_t mon_late_ns;
};

/*
 * Daemon-wide context: opens (and creates) the directories and refuses
 * ones not owned by this user or writable by others.  0, or -errno with
 * the reason in errbuf.  Main thread.
 */
int vm_env_new(const struct vm_env_opts *opts, struct vm_env **ret, char *errbuf,
	       size_t errlen);
void vm_env_free(struct vm_env *env);

/*
 * At start-up: define every domain in STATE_DIR/domains (a file that is
 * not a regular file is skipped; a corrupt one is moved aside to
 * NAME.json.corrupt and reported), then recover every QEMU of this runtime
 * directory (see above).  report (may be NULL) hears of each problem;
 * stop (may be NULL) is asked between files whether to give up (a SIGTERM
 * arrived).  Returns how many domains were defined.  Main thread, before
 * serving.
 */
int vm_env_load(struct vm_env *env,
		void (*report)(const char *path, const char *why, void *arg), void *arg,
		bool (*stop)(void *arg));

/*
 * Define a domain from a config object (see qemu/config.h for its fields),
 * as caller: a new name is reserved in the registry, then its definition
 * is written; an existing name gets its definition replaced for the next
 * start (a job queued behind the domain's other jobs).  Disks without a
 * declared format are probed, with the caller's rights.  done gets a job
 * whose result is {name, uuid} (or the error); free it with
 * dom_job_free().  0: done will be called; -EINVAL / -EPERM / -ENOMEM with
 * the reason in errbuf (done is not called).  Any thread.
 */
int vm_define_submit(struct vm_env *env, json_t *config, const struct creds *caller,
		     uint64_t timeout_ns, dom_job_done_fn done, void *done_arg, char *errbuf,
		     size_t errlen);

/*
 * Attach to a running QEMU's QMP socket (args: {"qmp_socket": path,
 * "pid": n (optional)}) as caller, defining the domain first if there is
 * none of that name (from config, or just the name).  The pid is the
 * socket's peer (SO_PEERCRED), checked against args' pid if given; the
 * caller must own it (or be root).  Same contract as vm_define_submit.
 */
int vm_attach_submit(struct vm_env *env, const char *name, json_t *config, json_t *args,
		     const struct creds *caller, uint64_t timeout_ns, dom_job_done_fn done,
		     void *done_arg, char *errbuf, size_t errlen);

/*
 * Blocking forms for tools and tests: submit as the daemon's own user and
 * wait (at most 300 s) for the job.  *ret is the domain (no reference: valid
 * while it is registered).  -EINVAL, -EEXIST, -EPERM, -EBUSY (not shut off)
 * or another -errno, with the reason in errbuf.  Never from an actor, an
 * ioloop or an offload thread: they block.
 */
int vm_define_wait(struct vm_env *env, json_t *config, struct domain **ret, char *errbuf,
		   size_t errlen);
int vm_undefine_wait(struct vm_env *env, struct domain *d, char *errbuf, size_t errlen);

enum vm_op {
	VM_OP_START,
	VM_OP_SHUTDOWN,
	VM_OP_DESTROY,          /* never waits behind other jobs */
	VM_OP_SUSPEND,
	VM_OP_RESUME,
	VM_OP_RESET,
	VM_OP_REBOOT,
	VM_OP_QMP,              /* args: {"command": "<QMP JSON text>"} */
	VM_OP_ATTACH,           /* through vm_attach_submit() */
	VM_OP_UNDEFINE,         /* a shut-off domain: its files go, then the domain */
	VM_OP_DEFINE,           /* through vm_define_submit() */
	VM_OP_AUTOSTART,        /* args: {"enable": bool}: the definition's flag, written durably */
	VM_OP_REATTACH,         /* internal: adopt a QEMU found at start-up */
	VM_OP_SETTLE,           /* internal: learn QEMU's state on a new monitor */
	/*
	 * Hotplug (vm-hotplug.c).  args: attach-disk {"path", "target"?,
	 * "readonly"?, "format"?, "persistent"?}; detach-disk {"target",
	 * "persistent"?}; attach-nic {"spec", "mac"?, "persistent"?};
	 * detach-nic {"mac", "persistent"?}.
	 */
	VM_OP_ATTACH_DISK,
	VM_OP_DETACH_DISK,
	VM_OP_ATTACH_NIC,
	VM_OP_DETACH_NIC,
	VM_OP_SAVE,             /* args: {"path"}: the guest's state to a file, then off */
	VM_OP_RESTORE,          /* args: {"path"}: a start from a saved state */
	VM_OP_COUNT
};

const char *vm_op_name(enum vm_op op);
/* -1 if unknown. */
int vm_op_from_name(const char *name);

/*
 * A lifecycle job for vm_submit() (start, shutdown, destroy, suspend,
 * resume, reset, reboot, qmp, undefine, autostart).  args may be NULL (borrowed).
 * The job's result (job->result) is a JSON value or NULL.  Any thread.
 */
int vm_job_new(enum vm_op op, json_t *args, uint64_t timeout_ns, dom_job_done_fn done,
	       void *done_arg, struct dom_job **ret, char *errbuf, size_t errlen);

/*
 * The job acts for caller (SO_PEERCRED): the files it opens (hotplug, save,
 * restore) are opened with the caller's rights.  Without it, the daemon's.
 * Before vm_submit().
 */
void vm_job_set_caller(struct dom_job *job, const struct creds *caller);

/*
 * Submit: like dom_submit(), except that destroy does not queue behind the
 * job that holds the domain.  Any thread.
 */
int vm_submit(struct domain *d, struct dom_job *job);

/*
 * At start-up, after vm_env_load(): submit a start to every domain marked
 * autostart that is shut off, all at once, and return how many (or
 * -ENOMEM).  Does not wait: the starts run on the domains' actors, in
 * parallel.  Each start decides in its domain's turn, behind the jobs
 * queued before it (a re-attach still running): a domain that has a QEMU by
 * then, or is no longer marked, is left alone and its job ends with the
 * result {"skipped": why}; otherwise the result is a start's ({state,
 * pid}) or its error, and a failed start shows in the domain's state and
 * reason as any start does.  done gets each job once (on the domain actor,
 * or on the runtime thread that drops it); free it with dom_job_free().
 * Any thread (RCU-registered), never an actor.
 */
int vm_autostart_submit_all(struct vm_env *env, uint64_t timeout_ns, dom_job_done_fn done,
			    void *done_arg);

/*
 * Why a domain is in its state: the snapshot's reason is the name of one
 * of these (vm_reason_name()), set with every lifecycle event.  The table
 * of names, the states each applies to and what each means is
 * vm_reason_doc(); docs/API.md and api.info are generated from it.
 */
enum vm_reason {
	VR_DEFINED = 0,         /* domain.c's first reason: "defined" */
	VR_USER,                /* a call asked for it (start, suspend, resume) */
	VR_AUTOSTART,           /* corrald started it at start-up */
	VR_BOOTED,
	VR_PAUSED,              /* paused by something other than a corral job */
	VR_UNPAUSED,            /* resumed by something other than a corral job */
	VR_RESET,
	VR_REBOOTED,
	VR_GUEST_RESET,
	VR_GUEST_SUSPEND,
	VR_WAKEUP,
	VR_SHUTDOWN,
	VR_GUEST_SHUTDOWN,
	VR_QUIT,
	VR_EXITED,
	VR_DESTROYED,
	VR_DETACHED,
	VR_FAILED,
	VR_ENDED_WHILE_AWAY,
	VR_CRASHED,
	VR_KILLED,
	VR_PANICKED,
	VR_ATTACHED,
	VR_REATTACHED,
	VR_SYNCED,
	VR_SAVING,              /* paused by a save writing the guest's state */
	VR_SAVED,
	VR_RESTORED,
	VR_COUNT
};

/* Documentation rows (static strings), for docs/API.md and api.info. */
struct vm_doc {
	const char *name;
	const char *applies;            /* reasons: the states; events: the payload */
	const char *doc;
};

const char *vm_reason_name(enum vm_reason r);
/* Row r < VR_COUNT of the reason table.  Any thread. */
const struct vm_doc *vm_reason_doc(enum vm_reason r);
/* Row s < DOM_STATE_COUNT: a state's name and meaning.  Any thread. */
const struct vm_doc *vm_state_doc(enum dom_state s);
/* The monitor states, in order (n rows).  Any thread. */
const struct vm_doc *vm_monitor_docs(size_t *n);

/*
 * Events, in two families: corral's own (lowercase names: lifecycle,
 * monitor, defined, ...), and QEMU's passed through as "qemu.NAME" (NAME
 * as QEMU spells it, its data plus qemu_timestamp).
 */
enum vm_event {
	VE_LIFECYCLE = 0,
	VE_MONITOR,
	VE_DEFINED,
	VE_UNDEFINED,
	VE_AUTOSTART,
	VE_DEVICE_ATTACHED,     /* hotplug (vm-hotplug.c) */
	VE_DEVICE_DETACHED,
	VE_PROGRESS,            /* a save or restore under way */
	VE_COUNT
};

#define VM_QEMU_EVENT_PREFIX "qemu."

const char *vm_event_name(enum vm_event e);
/* Row e < VE_COUNT: name, payload, meaning.  Any thread. */
const struct vm_doc *vm_event_doc(enum vm_event e);
/* The row documenting the passthrough family ("qemu.*").  Any thread. */
const struct vm_doc *vm_qemu_event_doc(void);

/*
 * The domain's config as JSON (immutable, published with the snapshot).
 * RCU reader: valid until rcu_read_unlock(); never modify it.
 */
const json_t *vm_config_rcu(struct domain *d);

/*
 * d's latest statistics (see mon_set_poll() for their shape), or NULL when
 * it has none (no QEMU, or no round completed yet).  *age_ns: how long ago
 * they were read, as of now (CLOCK_MONOTONIC); *stale: the monitor is not
 * ok, or they are older than two rounds and a second.  They stay as they
 * are while QEMU does not answer: their age shows it.  RCU reader: valid
 * until rcu_read_unlock(); never modify it.
 */
const json_t *vm_stats_rcu(struct domain *d, uint64_t now, uint64_t *age_ns, bool *stale);

/*
 * The same publication's memo slot: a reader may keep one malloc'd
 * rendering of these figures there (the RPC layer keeps them packed), set
 * with a compare-and-swap from NULL (acquire-release) and read with an
 * acquire load; it is freed with the publication.  NULL when there are no figures.  RCU reader.
 */
void **vm_stats_memo_rcu(struct domain *d, const json_t *figures);

/*
 * A hint for a walk over many domains' figures (stats): step 0 fetches the
 * line of d's publication pointer, step 1 the publication, step 2 its
 * memo; each a few domains after the one before.  RCU reader.
 */
void vm_stats_prefetch_rcu(struct domain *d, int step);

/*
 * The config's fields corral does not know, an array of names: [] unless
 * the domain was attached without a config (then `config` holds only what
 * QEMU told).  RCU reader, like vm_config_rcu().
 */
const json_t *vm_config_unknown_rcu(struct domain *d);

/*
 * What d's running QEMU has now: {"disks": [...], "nics": [...], "progress":
 * {...} | null} (hotplug changes it; progress: a save or restore under
 * way), or NULL when no QEMU runs.  RCU reader: valid until
 * rcu_read_unlock(); never modify it.
 */
const json_t *vm_live_rcu(struct domain *d);

/*
 * The serial console of d's running QEMU, referenced (console_put() when
 * done), or NULL when there is none (not running, attached, or not yet
 * connected).  Any registered thread; never waits.
 */
struct console *vm_console_get(struct domain *d);

#endif /* CORRAL_ACTORS_VM_H */

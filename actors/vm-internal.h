/* SPDX-License-Identifier: MIT */
/*
 * What the files of the VM layer share (vm.c: definitions and jobs;
 * vm-proc.c: QEMU's process, its files and records, recovery at start-up).
 * Nobody else includes this.
 *
 * On disk (see DESIGN.md, "What is on disk"):
 *
 *   STATE_DIR/domains/NAME.json    the definition: {version, config, owner, autostart}
 *   STATE_DIR/logs/NAME.qemu.log   QEMU's stdout and stderr
 *   STATE_DIR/logs/NAME.qemu.log.1 the same, before it passed 1 MiB
 *   STATE_DIR/logs/NAME.console.log  the serial console, this start
 *   STATE_DIR/logs/NAME.console.log.1  ... and the start before
 *   STATE_DIR/nvram/NAME.fd        firmware "uefi": the variable store
 *   RUNTIME_DIR/vms/NAME.json      the run record: which QEMU runs NAME
 *   RUNTIME_DIR/qmp/NAME.sock      QEMU's listening monitor, for re-attach
 *   RUNTIME_DIR/console/NAME.sock  QEMU's listening serial console
 *
 * One kind of file per directory, NAME plus a fixed suffix: no two domains
 * can ever share a file, and a temporary "X.tmp" never ends in ".json".
 */
#ifndef CORRAL_ACTORS_VM_INTERNAL_H
#define CORRAL_ACTORS_VM_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <urcu/list.h>

#include "actors/domain.h"
#include "actors/evbus.h"
#include "actors/monitor.h"
#include "actors/vm.h"
#include "common/creds.h"
#include "common/offload.h"
#include "qemu/config.h"

#define VM_DEF_MAX   (1u << 20)         /* bytes of one definition file */
#define VM_REC_MAX   (64u << 10)        /* bytes of one run record */
#define VM_RUN_ID_LEN 32                /* hex digits */
#define VM_SOCK_PATH_MAX 108            /* a UNIX socket path, with its NUL */
#define VM_OVMF_CODE "/usr/share/OVMF/OVMF_CODE_4M.fd"  /* Debian's ovmf */
#define VM_OVMF_VARS "/usr/share/OVMF/OVMF_VARS_4M.fd"

struct vm_env {
	struct rt *rt;
	struct ioloop *io;
	struct registry *reg;
	struct evbus *bus;
	struct offload *off;
	char *runtime_dir;
	char *state_dir;
	/* Opened once (O_DIRECTORY | O_NOFOLLOW); every file is reached through them. */
	int state_fd, domains_fd, logs_fd, nvram_fd, runtime_fd, vms_fd, qmp_fd, console_fd;
	char *default_emulator;
	char **emulators;               /* allowed: real paths, NULL-terminated */
	bool qemu_run_as;
	struct creds qemu_creds;
	char *qemu_user_problem;
	struct cg *cg;
	char **bridges;                 /* a bridge NIC may join these; NULL-terminated */
	char *ovmf_code, *ovmf_vars;    /* firmware "uefi": the firmware, the store's template */
	uint64_t console_log_max;       /* bytes of one console log; 0: CONSOLE_LOG_MAX */
	uint64_t stats_interval_ns, mon_late_ns;        /* mon_set_poll() of every monitor */
	/*
	 * "auto" resolved once (atomic pointer to a static string): probing
	 * KVM creates a VM, too slow to repeat for every start.
	 */
	const char *accel_auto;
	/* Start-up: domains handed a found QEMU that have not published it yet (futex). */
	uint32_t recovering;
};

enum vm_proc {
	VPROC_NONE = 0,         /* no QEMU */
	VPROC_SPAWNING,         /* an offload thread is writing the record and spawning */
	VPROC_RUNNING,          /* pid known; its end seen by the monitor or a pidfd */
};

/*
 * Watches one QEMU process through a pidfd on the ioloop: only while no
 * monitor is up to tell its end (see vm-proc.c, "the process watch").
 */
struct pidwatch {
	struct io_watch watch;
	struct rcu_head rcu;
	struct domain *dom;             /* reference */
	int pidfd;
	pid_t pid;
	bool child;                     /* ours to reap */
	uint32_t fired;                 /* atomic */
};

/* The RCU-published config, retired after a grace period when replaced. */
struct vm_pubcfg {
	struct rcu_head rcu;
	json_t *config;                 /* the known fields only (see unknown) */
	json_t *unknown;                /* array of field names, [] normally */
};

/* The latest statistics, immutable once published. */
struct vm_pubstats {
	struct rcu_head rcu;
	json_t *data;
	uint64_t collected_ns;
	uint64_t interval_ns;           /* the rounds' interval: older than two is stale */
	void *memo;                     /* a reader's rendering (vm_stats_memo_rcu), or NULL */
};

struct vm {
	struct vm_env *env;
	/* RCU-published by the domain actor; readers: vm_stats_rcu(). */
	struct vm_pubstats *stats;
	/* Domain actor: {mac: host tap device} of bridged NICs, found by address. */
	json_t *nic_ifnames;
	/* RCU-published by the domain actor; readers: vm_config_rcu(). */
	struct vm_pubcfg *pub;

	/* Everything below: domain actor only. */
	struct qemu_config *cfg;
	struct creds owner;             /* who defined it: files are opened as them */
	bool defined;                   /* its definition file is written */
	bool autostart;                 /* the definition's flag: started when corrald starts */
	/*
	 * The config's fields corral does not know (a domain attached without a
	 * config: only what QEMU told is known): an array of names, or NULL.  Such
	 * a domain is never booted from the defaults (start, autostart refuse).
	 */
	json_t *unknown;
	/*
	 * Definition writes (define, autostart, undefine's removal) on the
	 * strand and not yet complete.  A job that writes the definition waits
	 * for zero (VP_WAIT_DEF) before it builds its file from this struct, so
	 * that a write whose job ended early (its deadline) is never undone by
	 * the next one.
	 */
	unsigned def_writes;
	struct monitor *mon;
	bool mon_ready;                 /* its handshake is done */
	uint64_t poll_ns;               /* its statistics rounds' interval (mon_set_poll) */
	struct pidwatch *pw;            /* NULL while the monitor is up (vm_proc_watch()) */
	pid_t pid;
	unsigned long long starttime;   /* of pid, from /proc: pid + start time name one process */
	uint32_t proc_gen;              /* bumped when the process is let go: stale calls */
	bool watch_retry;               /* a watch could not be opened: tried again soon */
	enum vm_proc proc;
	bool child;                     /* corral's child: reaped, exit status known */
	bool signalable;                /* verified to be a QEMU: destroy may kill it */
	bool attached;                  /* a QEMU corral did not start */
	bool kill_on_spawn;             /* destroy came while spawning */
	bool killing;                   /* we sent SIGKILL */
	bool forced;                    /* ...because a shutdown --force ran out of time */
	bool start_failed;              /* QEMU died (or was killed) before its start ended */
	bool powerdown_asked;           /* a shutdown job pressed the power button */
	/* QEMU said SHUTDOWN: why it is going (VR_SHUTDOWN, ...); VR_COUNT: not seen. */
	enum vm_reason quitting;
	/* The monitor closed unexpectedly and its QEMU may be exiting: said later. */
	char mon_lost[256];
	bool mon_said_broken;           /* a monitor event said broken: say ok when it is back */
	char run_id[VM_RUN_ID_LEN + 1];
	char qmp_path[VM_SOCK_PATH_MAX]; /* where a new monitor connects */
	bool qmp_path_ours;             /* our listener: removed when QEMU ends */
	uint32_t mon_gen;               /* bumped to cancel pending monitor retries */
	unsigned mon_retries;
	/* The serial console while QEMU runs; con_pub is its RCU-published copy. */
	struct console *console;
	struct console *con_pub;
	uint32_t con_gen;               /* bumped when the QEMU goes: stale reconnects */
	/* This domain's file operations, one at a time, in order. */
	struct cds_list_head io_queue;
	bool io_busy;
	/*
	 * Hotplug, save and restore (vm-hotplug.c): what the running QEMU has
	 * ({"disks": [...], "nics": [...]}, NULL when none runs), whether
	 * that changed since it started, the config it started with (a save's
	 * header), a save or restore's progress, and their RCU-published copy
	 * (vm_live_rcu()).  saved: QEMU ends because its state is saved.
	 */
	json_t *live;
	bool live_changed;
	json_t *run_config;
	json_t *progress;
	struct vm_pubcfg *live_pub;
	bool saved;
};

/*
 * One file operation of a domain, run on an offload thread.  work() may
 * block; complete() runs on the domain actor afterwards; dropped() instead
 * when the domain is gone by then (release what work() made: fds, a pid is
 * never forgotten there because the run record already names it).
 */
struct vm_io {
	struct offload_task task;
	struct cds_list_head link;
	struct domain *dom;             /* reference */
	struct vm_env *env;
	uint64_t job_id;                /* the job that asked, or 0 */
	void (*work)(struct vm_io *io);
	void (*complete)(struct domain *d, struct vm_io *io);
	void (*dropped)(struct vm_io *io);
	void (*free)(struct vm_io *io); /* frees the container */
	int err;
	int code;                       /* DOM_ERR_* when err */
	char errmsg[DOM_ERRMSG_MAX];
};

enum vm_phase {
	VP_INIT = 0,
	VP_IO,                  /* a file operation (vm_io) */
	VP_WAIT_DEF,            /* an earlier definition write is still on the strand */
	VP_SPAWN,               /* the offload thread spawns QEMU */
	VP_WAIT_MON,            /* the monitor's handshake */
	VP_WAIT_CMD,            /* a QMP command's reply */
	VP_WAIT_EXIT,           /* QEMU's exit (destroy) or the guest's SHUTDOWN */
	VP_WAIT_STATUS,         /* attach, re-attach: query-status */
	VP_WAIT_CONT,           /* re-attach of a start cut short: cont */
	VP_WAIT_GUEST,          /* guest reboot: the guest's power-off */
	VP_RESET,               /* guest reboot: system_reset sent */
	VP_CONT,                /* guest reboot: cont sent */
	VP_WAIT_EVENT,          /* reset, reboot: replied, QEMU's RESET not seen yet */
};

/* What a re-attach at start-up found (vm-proc.c), for the reattach job. */
struct vm_found {
	pid_t pid;
	unsigned long long starttime;
	bool attached;
	bool signalable;
	bool rewrite;                   /* the record does not name this process: write it again */
	char run_id[VM_RUN_ID_LEN + 1];
	char qmp_path[VM_SOCK_PATH_MAX];
	bool qmp_path_ours;
};

struct vm_job {
	enum vm_op op;
	json_t *args;
	enum vm_phase phase;
	struct creds creds;             /* the caller's */
	bool redefine;                  /* VM_OP_DEFINE of a domain already defined */
	bool boot;                      /* VM_OP_START by vm_autostart_submit_all() */
	bool saw_event;                 /* reset, reboot: QEMU's RESET came (before the reply) */
	bool discover;                  /* VM_OP_DEFINE for an attach without a config */
	bool discovering;               /* VM_OP_ATTACH: its replies go to vm-discover.c */
	int discover_step;              /* ... for this query */
	json_t *found_cfg;              /* VM_OP_ATTACH: the config fields QEMU told */
	struct vm_found found;          /* VM_OP_REATTACH */
	bool restore;                   /* VM_OP_START from a saved state (VM_OP_RESTORE) */
	struct vm_xjob *x;              /* hotplug, save, restore: vm-hotplug.c */
};

static inline struct vm *vm_of(struct domain *d)
{
	return dom_ext(d);
}

/* ---- vm.c ---------------------------------------------------------------- */

/* Queue io on d's file strand.  Domain actor only. */
void vm_io_submit(struct domain *d, struct vm_io *io);
/* Common fields of a new vm_io (container allocated by the caller). */
void vm_io_init(struct vm_io *io, uint64_t job_id, void (*work)(struct vm_io *),
		void (*complete)(struct domain *, struct vm_io *), void (*dropped)(struct vm_io *),
		void (*free_fn)(struct vm_io *));

/* A state change and its one lifecycle event.  Domain actor only. */
void vm_lifecycle(struct domain *d, enum dom_state st, enum vm_reason reason);
/* Publish one of corral's own events about d (data stolen).  Any thread. */
void vm_publish(struct domain *d, enum vm_event ev, json_t *data);
void vm_fail(struct domain *d, struct dom_job *job, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The vm_job of the job holding d, or NULL.  Domain actor only. */
struct vm_job *vm_held_job(struct domain *d, struct dom_job **ret_job);
/* Send a QMP command for job; the reply comes back as a step. */
void vm_job_cmd(struct domain *d, struct dom_job *job, const char *execute, json_t *args,
		const char *raw);
void vm_on_note(struct domain *d, struct mon_note *n);
/* A domain for config (not yet registered). */
int vm_domain_new(struct vm_env *env, struct qemu_config *cfg, const struct creds *owner,
		  struct domain **ret, char *errbuf, size_t errlen);
/*
 * firmware "uefi": make the domain's variable store from the template if
 * it does not exist (durably), and open it read-write.  0 / an fd, or
 * -errno with err set.  Offload thread.
 */
int vm_nvram_ensure(struct vm_env *env, const char *name, char *err, size_t errlen);
int vm_nvram_open(struct vm_env *env, const char *name, char *err, size_t errlen);
/* Is the emulator allowed?  Its real path to out.  Any thread. */
int vm_emulator_resolve(struct vm_env *env, const char *emulator, char *out, size_t outlen,
			char *err, size_t errlen);

/* Does d lack a config it could boot from?  Domain actor only. */
bool vm_config_unknown(struct vm *vm);
/*
 * Write d's definition again with config (stolen) and unknown (borrowed,
 * may be NULL); then(d, io) runs after, on the actor.  Domain actor only.
 */
int vm_def_rewrite(struct domain *d, uint64_t job_id, json_t *config, json_t *unknown,
		   void (*then)(struct domain *d, struct vm_io *io));
/* The config's top-level fields but name and uuid, as a new array.  Any thread. */
json_t *vm_all_fields_unknown(void);

/* ---- vm-discover.c ---------------------------------------------------------- */

/*
 * attach of a domain without a config, after query-status: ask QEMU what
 * it can (machine, memory, vCPUs, accelerator), write the definition with
 * the rest unknown, then record the run (vm_proc_attach_record).  Domain
 * actor only.
 */
void vm_discover_start(struct domain *d, struct dom_job *job);
/* A reply (or error) to one of its queries.  data stolen.  Domain actor only. */
void vm_discover_step(struct domain *d, struct dom_job *job, int err, json_t *data);

/*
 * Open a disk image as whoever the thread acts for (creds_enter), not
 * blocking on a FIFO; a regular file or a block device.  fd or -errno with
 * err set.  Offload thread.
 */
int vm_open_image(const char *path, bool readonly, char *err, size_t errlen);
/*
 * Write d's definition with config (stolen; a checked canonical config of
 * d) as define does (durably, on the strand), recording owner as its
 * owner; then the domain takes it and then(d, io) runs (io->err set when
 * the write failed: nothing changed).  Domain actor only; the caller has
 * checked that no other definition write is under way (def_writes 0).
 * 0, or -ENOMEM (then is not called).
 */
int vm_def_replace(struct domain *d, uint64_t job_id, json_t *config, const struct creds *owner,
		   void (*then)(struct domain *d, struct vm_io *io));

/* ---- vm-hotplug.c ---------------------------------------------------------- */

/* A hotplug or save job holds the domain.  Domain actor only. */
void vm_x_start(struct domain *d, struct dom_job *job);
/* A step for a job with vj->x: true if taken (else the usual handling). */
bool vm_x_step(struct domain *d, struct dom_job *job, int err, json_t *data);
/* Its deadline, a destroy, the daemon stopping. */
void vm_x_abort(struct domain *d, struct dom_job *job, int err);
/* Every QEMU event (DEVICE_DELETED ends a detach). */
void vm_x_event(struct domain *d, const char *event, const json_t *data);
/* restore: read the file's header, then vm_proc_start(). */
void vm_x_restore_begin(struct domain *d, struct dom_job *job);
/* restore: the new QEMU's monitor is ready: feed it the state. */
void vm_x_restore_ready(struct domain *d, struct dom_job *job);
void vm_x_free(struct vm_xjob *x);
/*
 * The devices of a QEMU that starts now (from cfg; disk_fdsets: the fd
 * set of each disk, or NULL), and forgetting them when it is gone.
 */
void vm_live_init(struct vm *vm, const struct qemu_config *cfg, const int *disk_fdsets);
void vm_live_clear(struct vm *vm);
void vm_live_free(struct vm *vm);

/* ---- vm-proc.c ------------------------------------------------------------- */

/* attach: write the run record, then answer.  Domain actor only. */
void vm_proc_attach_record(struct domain *d, struct dom_job *job);

/* start: spawn QEMU on an offload thread.  Domain actor only. */
void vm_proc_start(struct domain *d, struct dom_job *job);
/*
 * start: QEMU's monitor answers and its guest has not run: put its vCPU
 * threads in their group, then cont.  Domain actor only.
 */
void vm_proc_ready_to_run(struct domain *d, struct dom_job *job);
/* attach: verify and connect on an offload thread.  Domain actor only. */
void vm_proc_attach(struct domain *d, struct dom_job *job);
/* re-attach at start-up: take over what vm_env_load found.  Domain actor only. */
void vm_proc_reattach(struct domain *d, struct dom_job *job);
/* The status query of attach / re-attach answered.  Domain actor only. */
void vm_proc_status(struct domain *d, struct dom_job *job, json_t *ret);
/*
 * SIGKILL through a pidfd opened (if none is open) and checked against
 * the pid's start time, so never to a process that reused the pid; the
 * pidfd then stays, watched, until the end is seen.  -ESRCH: gone already
 * (its end follows in a turn of its own).  Domain actor only.
 */
int vm_proc_kill(struct domain *d);
/*
 * Make sure the process's end will be seen without the monitor: open and
 * watch a checked pidfd if none is (the monitor closed, could not be
 * reached, a kill); a process found gone ends in a turn of its own.
 * Domain actor only.
 */
void vm_proc_watch(struct domain *d);
/* The monitor's handshake is done: its end will tell QEMU's, the pidfd goes.  Domain actor only. */
void vm_proc_monitor_up(struct domain *d);
/*
 * shutdown --force: shortly before job's deadline, destroy the guest if it
 * is still on; the shutdown then ends with forced: true.  Domain actor only.
 */
void vm_proc_arm_force(struct domain *d, struct dom_job *job);
/* QEMU is gone: state, job, files.  Domain actor only. */
void vm_proc_gone(struct domain *d, int wstatus, bool have_status);
/* Forget the process without touching it (daemon stopping).  Domain actor only. */
void vm_proc_release(struct vm *vm);
/* The monitor closed while QEMU runs: reconnect later.  Domain actor only. */
void vm_proc_monitor_lost(struct domain *d);
/* Write the run record again (e.g. after attach).  Domain actor only. */
void vm_proc_record(struct domain *d, uint64_t job_id,
		    void (*then)(struct domain *d, struct vm_io *io));

/* ---- vm-console.c ---------------------------------------------------------- */

/* What a start makes for the console (offload thread), until QEMU and the console own it. */
struct vm_console_files {
	int listen_fd;                  /* for QEMU */
	int conn_fd;                    /* the daemon's end, connected */
	int log_fd;                     /* this start's log; -1 if it could not be made */
	char path[VM_SOCK_PATH_MAX];
};

void vm_console_sock_path(struct vm_env *env, const char *name, char *out, size_t len);
/*
 * The console socket (listening, and connected to), and a fresh log with
 * the previous one kept as .1.  0 or -errno with err set.  Offload thread.
 */
int vm_console_prepare(struct vm_env *env, const char *name, struct vm_console_files *f,
		       char *err, size_t errlen);
void vm_console_files_close(struct vm_console_files *f, bool unlink_sock);
/* Domain actor: the console of the QEMU that runs now (fds taken). */
void vm_console_install(struct domain *d, int conn_fd, int log_fd, uint64_t log_size,
			const void *seed, size_t seed_len);
/* Domain actor: it ends; viewers hear reason. */
void vm_console_drop(struct vm *vm, const char *reason);
/* Domain actor: after a daemon restart, connect to the running QEMU's console again. */
void vm_console_reconnect(struct domain *d);

/* At start-up: records and processes.  Main thread. */
int vm_proc_recover(struct vm_env *env,
		    void (*report)(const char *path, const char *why, void *arg), void *arg);

/* Statistics (vm-stats.c).  Domain actor only, but vm_stats_free: the domain's free. */
void vm_stats_publish(struct domain *d, json_t *data);     /* steals data */
void vm_stats_clear(struct domain *d);
void vm_stats_free(struct vm *vm);
/* The running QEMU's NICs (vm-hotplug.c): the live list, or NULL. */
json_t *vm_live_nics(struct vm *vm);

#endif /* CORRAL_ACTORS_VM_INTERNAL_H */

/* SPDX-License-Identifier: MIT */
/*
 * domain: one actor per VM.
 *
 * State-changing requests are jobs.  The domain actor holds at most one job
 * at a time; the others wait, in order, in a queue the actor owns (the job
 * condition of older designs becomes queue ownership).  A job that is still
 * waiting at its deadline fails with an error naming the holder:
 *
 *   domain 'web1' is busy: job 'shutdown' (id 41) has held it for 12.3 s;
 *   'suspend' gave up after 5.0 s
 *
 * A job that holds the domain past its deadline fails with a timeout error.
 * A job never blocks the actor: it starts work (e.g. a QMP command through
 * the monitor actor) and returns; the answer comes back as a step message.
 *
 * Queries never enter the mailbox.  After every change the actor publishes
 * an immutable dom_snapshot with crcu_assign_pointer() and retires the old
 * one with call_rcu(); readers call dom_snap_rcu() inside rcu_read_lock().
 */
#ifndef CORRAL_ACTORS_DOMAIN_H
#define CORRAL_ACTORS_DOMAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <urcu/urcu-memb.h>
#include <urcu/list.h>
#include <urcu/rculfhash.h>

#include "actors/actor.h"

#define DOM_NAME_MAX 64
#define DOM_ERRMSG_MAX 512

enum dom_state {
	DOM_SHUTOFF = 0,
	DOM_STARTING,
	DOM_RUNNING,
	DOM_PAUSED,
	DOM_SHUTTING_DOWN,
	DOM_CRASHED,
	DOM_PMSUSPENDED,
	DOM_STATE_COUNT
};

enum dom_mon_state {
	DOM_MON_NONE = 0,       /* no monitor (shut off) */
	DOM_MON_CONNECTING,
	DOM_MON_OK,
	DOM_MON_UNRESPONSIVE,   /* a command passed its deadline; see since */
	DOM_MON_BROKEN,         /* protocol error or hang-up; see reason */
};

const char *dom_state_name(enum dom_state s);
const char *dom_mon_state_name(enum dom_mon_state s);

/*
 * Immutable after publication.  Readers: inside rcu_read_lock(), never keep
 * the pointer past rcu_read_unlock().  Strings point into the snapshot or to
 * static storage.
 */
struct dom_snapshot {
	struct rcu_head rcu;
	uint64_t seq;                   /* +1 per publication */
	char name[DOM_NAME_MAX + 1];
	uint8_t uuid[16];
	enum dom_state state;
	const char *reason;             /* static string: "booted", "destroyed", ... */
	int pid;                        /* QEMU's, 0 when none */
	struct {
		uint64_t id;            /* 0: no job holds the domain */
		const char *name;       /* static */
		uint64_t started_ns;    /* CLOCK_MONOTONIC */
	} job;
	uint32_t jobs_waiting;
	bool autostart;                 /* started when corrald starts (dom_set_autostart) */
	enum dom_mon_state mon;
	uint64_t mon_since_ns;          /* CLOCK_MONOTONIC, when mon last changed */
	struct {
		uint64_t jobs_done;
		uint64_t jobs_failed;
		uint64_t jobs_busy;     /* gave up waiting */
		uint64_t jobs_timeout;  /* passed their deadline while holding */
		uint64_t events;
	} counters;
	uint64_t updated_wall_ns;       /* CLOCK_REALTIME of publication */
	/*
	 * A reader's rendering of this snapshot (the daemon's packed list and
	 * stats entries), made by the first query that needs it and set once
	 * through dom_snap_memo_rcu(); freed with the snapshot by free().
	 */
	void *memo;
};

struct domain;
struct dom_job;

/*
 * Called once when a job ends: on the domain actor at the end of the turn,
 * after the snapshot showing the job's effect is published (a caller that
 * asks again sees it), or, if the domain is gone, on the runtime thread
 * that drops the job.  Must not block.
 */
typedef void (*dom_job_done_fn)(struct dom_job *job, void *arg);

struct dom_job_ops {
	const char *name;               /* static: "start", "shutdown", ... */
	/*
	 * The job now holds the domain.  Finish with dom_job_finish() now or
	 * later (from step).  Domain actor only.
	 */
	void (*start)(struct domain *d, struct dom_job *job);
	/* A step message for this job arrived (dom_job_step()). Optional. */
	void (*step)(struct domain *d, struct dom_job *job, int err, json_t *data);
	/*
	 * The job is ended from outside while it holds the domain: its
	 * deadline passed (err -ETIMEDOUT) or the domain is stopping
	 * (-ESHUTDOWN).  Optional: clean up what start began; the domain then
	 * fails the job itself.  Domain actor only.
	 */
	void (*abort)(struct domain *d, struct dom_job *job, int err);
	/* Free job->priv.  Optional. */
	void (*free_priv)(void *priv);
};

struct dom_job {
	struct mbx_msg msg;             /* the request, while in the mailbox */
	struct cds_list_head link;      /* in the waiting queue */
	uint32_t heap_idx;              /* in the domain's deadline heap, while waiting */
	const struct dom_job_ops *ops;
	struct domain *dom;             /* set by dom_submit(), no reference */
	uint64_t id;
	uint64_t submitted_ns, deadline_ns, started_ns;
	void *priv;                     /* job-specific arguments/state */
	bool preempt;                   /* takes the domain from its holder (destroy) */
	dom_job_done_fn done;
	void *done_arg;
	/* Result, set by dom_job_finish(). */
	int err;                        /* 0 or -errno */
	int code;                       /* DOM_ERR_*, 0 on success */
	char errmsg[DOM_ERRMSG_MAX];
	json_t *result;                 /* owned; may be NULL */
};

/* Error classes, stable: the RPC layer maps them onto its codes. */
enum {
	DOM_ERR_NONE = 0,
	DOM_ERR_BUSY,                   /* waited past the deadline behind a holder */
	DOM_ERR_TIMEOUT,                /* held the domain past the deadline */
	DOM_ERR_STATE,                  /* not valid in the current state */
	DOM_ERR_GONE,                   /* domain stopped/undefined */
	DOM_ERR_FAILED,                 /* the job's own failure */
	DOM_ERR_INVALID,                /* bad arguments */
	DOM_ERR_QEMU,                   /* QEMU answered with an error */
	DOM_ERR_MONITOR,                /* no usable monitor (broken, not connected) */
	DOM_ERR_CANCELLED,              /* preempted by destroy */
	DOM_ERR_STORAGE,                /* a file could not be written: nothing changed */
	DOM_ERR_PERMISSION,             /* the caller may not do this */
	DOM_ERR_UNAVAILABLE,            /* the daemon is shutting down */
};

/* Is name a safe domain name: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}?  Any thread. */
bool dom_name_valid(const char *name);

/*
 * Create a domain actor (not yet in any registry).  uuid may be NULL: a
 * random one is made.  -EINVAL with a message in errbuf for a bad name.
 * Any thread.
 */
int dom_new(struct rt *rt, const char *name, const uint8_t *uuid, struct domain **ret,
	    char *errbuf, size_t errlen);

struct actor *dom_actor(struct domain *d);
const char *dom_name(const struct domain *d);       /* immutable */
size_t dom_name_len(const struct domain *d);        /* strlen(dom_name(d)) */
const uint8_t *dom_uuid(const struct domain *d);    /* immutable */
void dom_ref(struct domain *d);
void dom_unref(struct domain *d);

/* The current snapshot.  RCU reader: call inside rcu_read_lock(). */
const struct dom_snapshot *dom_snap_rcu(struct domain *d);
/*
 * A hint for a reader about to walk many domains (list, stats): step 0
 * fetches the lines holding d's snapshot and extension pointers, step 1 (a
 * few domains later, once they are in) the snapshot itself, step 2 (later
 * still) its memo.  Inside rcu_read_lock(); never needed for correctness.
 */
void dom_prefetch_rcu(struct domain *d, int step);
/*
 * The slot of sn's memo (see struct dom_snapshot): NULL until a reader
 * sets it with a compare-and-swap from NULL, then fixed for the snapshot's
 * life.  A rendering of an immutable snapshot never goes stale; a new
 * publication starts with none.  Inside rcu_read_lock().
 */
void **dom_snap_memo_rcu(const struct dom_snapshot *sn);

/*
 * A new job.  timeout_ns bounds waiting plus holding.  done is called once
 * on the domain actor when it ends (success, failure, busy, timeout, gone).
 * The job is freed by dom_job_free(), usually by done's owner.  Any thread.
 */
int dom_job_new(const struct dom_job_ops *ops, void *priv, uint64_t timeout_ns,
		dom_job_done_fn done, void *done_arg, struct dom_job **ret);
void dom_job_free(struct dom_job *job);

/*
 * Submit job to d.  0: done will be called.  -ESHUTDOWN: the domain is
 * gone; the job is still the caller's (done not called).  Any thread.
 */
int dom_submit(struct domain *d, struct dom_job *job);

/*
 * At most max jobs wait behind a domain's holder (default
 * DOM_WAITING_MAX_DEFAULT); one more fails `busy` at once.  Set at start-up,
 * before any domain exists.
 */
#define DOM_WAITING_MAX_DEFAULT 4096
void dom_set_waiting_max(uint32_t max);

/*
 * Deliver a step to job id on d (e.g. a QMP reply).  A step for a job that
 * no longer holds the domain is discarded.  data is stolen.  Any thread.
 */
int dom_job_step(struct domain *d, uint64_t job_id, int err, json_t *data);

/* The same, delivered at at_ns (CLOCK_MONOTONIC) by the timer thread. */
int dom_job_step_at(struct domain *d, uint64_t job_id, int err, json_t *data, uint64_t at_ns);

/*
 * End the job that holds d.  err 0: success (result stolen, may be NULL);
 * otherwise code and a printf-style message.  Domain actor only.
 */
void dom_job_finish(struct domain *d, struct dom_job *job, int err, int code,
		    json_t *result, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/*
 * Run fn(d, arg) on the domain actor: how the monitor actor, the process
 * watcher and other layers hand state changes to the domain.  If the domain
 * is gone, drop(arg) runs instead (on whichever thread notices).  0 or
 * -ESHUTDOWN/-ENOMEM (then drop has already run).  Any thread.
 */
int dom_call(struct domain *d, void (*fn)(struct domain *d, void *arg), void *arg,
	     void (*drop)(void *arg));

/*
 * The same, at at_ns (CLOCK_MONOTONIC), through the runtime's timer thread:
 * for retries and other delayed work of the layers above.  Any thread.
 */
int dom_call_at(struct domain *d, void (*fn)(struct domain *d, void *arg), void *arg,
		void (*drop)(void *arg), uint64_t at_ns);

/*
 * Stop d because the daemon is shutting down: like actor_stop(), but the
 * jobs it holds or queues end with DOM_ERR_UNAVAILABLE ("corrald is shutting
 * down") instead of "gone".  Any thread.
 */
int dom_stop_for_shutdown(struct domain *d);

/* The job holding d, or NULL.  Domain actor only. */
struct dom_job *dom_holder(struct domain *d);

/* State changes and republication.  Domain actor only. */
void dom_set_state(struct domain *d, enum dom_state st, const char *reason);
void dom_set_pid(struct domain *d, int pid);
void dom_set_monitor(struct domain *d, enum dom_mon_state ms);
void dom_count_event(struct domain *d);
/*
 * Whether the daemon starts d when it starts: the VM layer's flag, shown in
 * the snapshot.  Domain actor only; or before d is shared (registered, sent
 * anything), as at start-up, where the snapshot is published at once.
 */
void dom_set_autostart(struct domain *d, bool on);
enum dom_state dom_state_actor(struct domain *d);   /* Domain actor only. */
const char *dom_reason_actor(struct domain *d);     /* Domain actor only. */

/* Private per-domain extension for layers above (monitor, launch).  Actor only. */
void *dom_ext(struct domain *d);
/*
 * Attach the extension before the domain is shared.  on_stop runs on the
 * actor when the domain stops (release monitors, watches: whatever refers
 * back to the domain); free_ext runs when the domain is freed.
 */
void dom_set_ext(struct domain *d, void *ext, void (*on_stop)(struct domain *d),
		 void (*free_ext)(void *));

/* ---- registry ----------------------------------------------------------- */

struct registry;

int reg_new(struct registry **ret);
/* Free the registry; it must be empty.  Not inside a read section. */
void reg_free(struct registry *reg);

/* Add d (the registry takes a reference).  -EEXIST on a name or UUID clash. */
int reg_add(struct registry *reg, struct domain *d);
/* Remove d and drop the registry's reference.  -ENOENT if not present. */
int reg_del(struct registry *reg, struct domain *d);

/* RCU reader: the result is valid until rcu_read_unlock(). */
struct domain *reg_lookup_name_rcu(struct registry *reg, const char *name);
struct domain *reg_lookup_uuid_rcu(struct registry *reg, const uint8_t uuid[16]);
/*
 * reg_lookup_name_rcu(), for names asked for in the order of a walk (the
 * `more` of a stats or list page): the domain after prev in the walk's
 * order is tried first, by its name, before the hash table.  prev: the
 * domain found for the name before, or NULL.  RCU reader.
 */
struct domain *reg_lookup_name_after_rcu(struct registry *reg, const char *name,
					 struct domain *prev);

/*
 * Call fn for every domain present for the whole walk (domains added or
 * removed meanwhile may or may not be seen).  Stops when fn returns
 * non-zero and returns that value.  RCU reader.
 */
int reg_for_each_rcu(struct registry *reg, int (*fn)(struct domain *d, void *arg), void *arg);

uint64_t reg_count(struct registry *reg);

/* uuid <-> text "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
void uuid_format(const uint8_t uuid[16], char out[37]);
int uuid_parse(const char *s, uint8_t uuid[16]);

#endif /* CORRAL_ACTORS_DOMAIN_H */

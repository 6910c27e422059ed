/* SPDX-License-Identifier: MIT */
/*
 * monitor: one actor per VM that owns its QMP connection.
 *
 * The socket is an edge-triggered ioloop watch: the loop thread only turns
 * readiness into one message to the monitor actor (at most one queued);
 * the actor reads, parses (qmp/) and writes in its own turn, with
 * non-blocking calls only, and asks for EPOLLOUT only while output waits.
 *
 * Every command carries a deadline.  The reply, the QMP error, the timeout
 * or the broken connection comes back to the job that asked for it as a
 * dom_job_step() on its domain:
 *     err 0            data {"return": value}
 *     err -EIO         data {"class": s, "desc": s}     QEMU said no
 *     err -ETIMEDOUT   data {"execute": s, "waited_s": f}
 *     err -EPIPE       data {"reason": s}               connection broken/closed
 *     err -EINVAL      data {"reason": s}               could not encode
 *     err -EAGAIN      data {"reason": s}               not negotiated yet
 * A reply that arrives after its deadline is discarded by id, and makes
 * the monitor responsive again.
 *
 * Everything else the monitor learns (negotiated, unresponsive since,
 * responsive again, events, closed) goes to the domain actor through
 * dom_call() as a struct mon_note for the vm layer's hook.
 */
#ifndef CORRAL_ACTORS_MONITOR_H
#define CORRAL_ACTORS_MONITOR_H

#include <jansson.h>
#include <stdint.h>

#include "actors/domain.h"
#include "common/ioloop.h"

struct monitor;

enum mon_note_kind {
	MON_NOTE_READY,         /* greeting seen, qmp_capabilities accepted */
	MON_NOTE_STATE,         /* st: DOM_MON_OK / DOM_MON_UNRESPONSIVE */
	MON_NOTE_EVENT,         /* event, data, seconds, micros */
	MON_NOTE_CLOSED,        /* reason: EOF, protocol error, ... */
	MON_NOTE_STATS,         /* data: a round of statistics (mon_set_poll) */
};

struct mon_note {
	enum mon_note_kind kind;
	struct monitor *mon;            /* which monitor (compare with the current one) */
	enum dom_mon_state st;
	char *event;
	json_t *data;
	int64_t seconds, micros;
	char reason[256];
};

typedef void (*mon_note_fn)(struct domain *d, struct mon_note *n);

void mon_note_free(struct mon_note *n);

/*
 * Create the monitor actor for connected, non-blocking fd (the monitor
 * owns it from now on).  The greeting and qmp_capabilities must complete
 * by ready_deadline_ns.  *ret holds a reference: release it with
 * mon_close().  Any thread.
 */
int mon_new(struct rt *rt, struct ioloop *io, struct domain *d, int fd, mon_note_fn note,
	    uint64_t ready_deadline_ns, struct monitor **ret);

/*
 * Run a QMP command for job job_id on the monitor's domain: execute with
 * args (stolen, may be NULL), or raw_json, a user's complete command text
 * (then execute is NULL).  The outcome arrives as a step (see above).
 * Any thread.
 */
int mon_cmd(struct monitor *m, uint64_t job_id, const char *execute, json_t *args,
	    const char *raw_json, uint64_t deadline_ns);

/*
 * The same, passing fd (owned by the monitor from this call on, closed
 * once sent or when the command fails) with the command's first byte as
 * SCM_RIGHTS, for QMP's getfd and add-fd.  fd -1: none.  One fd at a time
 * per monitor: a command with an fd while another is still unsent fails
 * (-EPIPE step).  Any thread.
 */
int mon_cmd_fd(struct monitor *m, uint64_t job_id, const char *execute, json_t *args, int fd,
	       uint64_t deadline_ns, const char *raw_json);

/*
 * Statistics and heartbeat.  first_ns after the handshake, then every
 * interval_ns, the monitor asks QEMU for its figures (query-blockstats;
 * query-cpus-fast for the vCPU threads, once; query-balloon while QEMU has
 * a balloon) and reads QEMU's CPU time and RSS, and each vCPU thread's CPU
 * time, from /proc/PID (pid 0: unknown, no /proc figures).  A complete
 * round goes to the domain as MON_NOTE_STATS, data:
 *   {"collected_ns": monotonic ns,
 *    "cpu": {"time_ns": n, "vcpus": [{"index": i, "thread": tid, "time_ns": n}]},
 *    "memory": {"rss_bytes": n, "balloon_bytes": n (only with a balloon)},
 *    "disks": [{"device": QEMU device id (vd0), "node": node name, "rd_bytes": n, "wr_bytes": n,
 *               "rd_ops": n, "wr_ops": n, "flush_ops": n}]}
 * A round is not begun while the previous one is unanswered, so a hung
 * QEMU costs one outstanding round, never a pile.  A first_ns spread over
 * the interval keeps monitors that came up together (a restart's
 * thousands) from polling together, then and at every later interval.
 *
 * The same queries are the heartbeat: any command (a job's or a round's)
 * unanswered for late_ns makes the monitor report DOM_MON_UNRESPONSIVE at
 * once (MON_NOTE_STATE), long before the command's own deadline; the next
 * reply makes it DOM_MON_OK again.  interval_ns 0: no rounds; late_ns 0:
 * only a passed deadline makes it unresponsive.  Any thread.
 */
int mon_set_poll(struct monitor *m, uint64_t interval_ns, uint64_t first_ns, uint64_t late_ns,
		 int pid);

/* Close the connection, fail pending commands (-EPIPE), drop the ref.  Any thread. */
void mon_close(struct monitor *m);

/* Connect a non-blocking UNIX stream socket to path.  0 and *ret_fd, or -errno. */
int mon_connect_unix(const char *path, int *ret_fd);

#endif /* CORRAL_ACTORS_MONITOR_H */

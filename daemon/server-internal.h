/* SPDX-License-Identifier: MIT */
/*
 * What server.c (sockets, connections, framing) and methods.c (the method
 * table and its handlers) share.  Nobody else includes this.
 */
#ifndef CORRAL_DAEMON_SERVER_INTERNAL_H
#define CORRAL_DAEMON_SERVER_INTERNAL_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <urcu/list.h>
#include <urcu/wfcqueue.h>

#include "actors/domain.h"
#include "common/creds.h"
#include "common/ioloop.h"
#include "common/offload.h"
#include "common/rcu.h"
#include "daemon/server.h"

/*
 * The bounds on what a client can make corrald hold (docs/daemon.md,
 * "Limits and clients that do not read") are in struct server_opts.  Events
 * are written to a connection while less than EV_OUT_MAX bytes of its
 * output wait, at most EV_TURN_MAX per connection per turn of its thread
 * (shared among its subscriptions, at least 2 each):
 * a subscriber that cannot keep up falls behind in the bus's ring (and
 * later gets events.dropped), never in corrald's memory.
 */
#define EV_OUT_MAX  (256u * 1024)
#define EV_TURN_MAX 512

struct obuf {
	char *data;
	size_t off;                     /* bytes already written */
	size_t len;                     /* bytes in data */
	size_t cap;
	uint64_t *total;                /* atomic: the server's output bytes, cap counted */
	bool walk;                      /* the walk thread's: no spares, no connection */
};

/*
 * Walks over many domains (list, stats) are answered
 * on the server's walk thread, not on the loop thread, so that a list of
 * 10,000 domains (milliseconds of packing) keeps no other request of any
 * client waiting behind it.  A request whose walk covers at most
 * WALK_INLINE_MAX domains (half a millisecond of packing or less) is
 * answered on the spot, as before: there the hand-off's copy and wake-ups,
 * and one more runnable thread on a small machine, would cost more than
 * the wait they spare.  A connection
 * with WALK_CONN_MAX walks in flight takes no more requests until one is
 * answered: what it can make corrald hold is WALK_CONN_MAX answers (each at
 * most RPC_MAX_FRAME, counted in the output total while packed) beyond its
 * output cap.  The requests waiting for the walk thread are copies (a
 * `names` list may be 4 MiB): past WALK_QUEUE_MAX bytes of them, a walk is
 * answered on the spot instead.
 */
#define WALK_INLINE_MAX 2048
#define WALK_CONN_MAX   2
#define WALK_QUEUE_MAX  (16u << 20)

/* The event pump of one loop thread: the connections on it that subscribe. */
struct evpump {
	struct io_task task;
	struct server *srv;
	struct ioloop_thr *thr;
	uint32_t posted;                /* atomic: task is queued */
	uint32_t nconns;                /* atomic: connections on the list */
	struct cds_list_head conns;     /* struct conn, by pump_link; thr only */
};

/*
 * Large output buffers one loop thread keeps for its connections' next
 * answers (obuf_release): a list or stats answer over 10,000 domains fills
 * megabytes, and such a buffer freed and allocated again came back as
 * fresh pages, faulted in one at a time (a sixth of corrald's time in
 * hung-10 at 10,000).  At most OBUF_SPARES of them, each at most
 * OBUF_SPARE_MAX bytes, held until the server is freed.
 */
#define OBUF_SPARES 2
struct obuf_spares {
	struct {
		char *data;
		size_t cap;
	} v[OBUF_SPARES];               /* the loop thread's only */
};

struct listener {
	struct io_watch w;
	struct server *srv;
	bool ro;
	bool closed;                    /* its loop thread only */
	bool passed;                    /* from the service manager: never unlinked */
	char *path;
};

struct server {
	struct server_opts o;           /* paths below are our copies */
	uid_t uid;                      /* the daemon's */
	uint64_t started_ns;
	struct listener rw, ro;         /* both on one loop thread */
	struct io_task stop_task;       /* closes the listeners on their thread */
	int reserve_fd;                 /* spare fd for EMFILE; listeners' thread */

	pthread_mutex_t lock;           /* conns, nopen; no I/O under it */
	pthread_cond_t cond;            /* nopen reached 0 while stopping */
	struct cds_list_head conns;     /* every connection not yet freed */
	uint64_t nopen;                 /* connections not yet closed */
	bool stopping;
	bool listeners_closed;
	uint64_t next_conn_id;          /* under lock */

	uint64_t in_total;              /* atomic: bytes of partial requests held */
	uint64_t out_total;             /* atomic: bytes of output buffers */
	struct offload *walk;           /* RCU-published: the walk thread, NULL once stopping */
	char *walk_spares[OBUF_SPARES]; /* atomic: written-out buffers for it, size first */
	uint64_t walk_bytes;            /* atomic: bytes of requests sent to it, not yet done */
	struct evpump *pumps;           /* one per loop thread */
	struct obuf_spares *spares;     /* one per loop thread, like pumps */
	unsigned npumps;
	struct evbus_listener *bus_l;
};

struct conn {
	struct io_watch w;              /* the socket; w.thr is the conn's thread */
	struct server *srv;
	uint64_t id;                    /* for the log */
	bool ro;                        /* accepted on the read-only socket */
	uid_t uid;                      /* peer credentials at accept */
	pid_t pid;
	struct creds creds;             /* the same, with the groups: the caller's rights */
	uint32_t refs;                  /* atomic: open + calls in flight + tasks */
	struct cds_list_head link;      /* srv->conns, under srv->lock */
	bool listed_open;               /* under srv->lock: not closed yet */
	struct rcu_head rcu;

	/* Finished jobs, from runtime workers: MPSC, drained by done_task. */
	struct __cds_wfcq_head done_head;
	struct cds_wfcq_tail done_tail;
	struct io_task done_task;
	uint32_t done_posted;           /* atomic: done_task is queued */
	/* Console output waiting for a viewer: ev_task pumps it. */
	struct io_task ev_task;
	uint32_t ev_posted;             /* atomic: ev_task is queued */
	struct io_task close_task;      /* server_stop(): close from the loop thread */
	struct io_task drain_task;      /* server_stop_accepting(): stop taking requests */

	/* Everything below: the connection's loop thread only. */
	bool closed;
	bool draining;                  /* the daemon stops: no new requests, close when done */
	bool rd_eof;                    /* the client shut down its side */
	bool ev_stalled;                /* events or console output left: output was full */
	bool on_pump;                   /* on its thread's evpump list */
	uint32_t events;                /* current epoll mask */
	char *in;                       /* a partial request (and frames behind it) */
	size_t in_len, in_cap;          /* in_cap counted in srv->in_total */
	uint64_t in_since_ns;           /* when in_len became non-zero */
	struct rpc_scanner *scan;
	struct obuf out;
	uint32_t inflight;              /* calls submitted, not yet answered */
	uint32_t walks;                 /* of which walks (WALK_CONN_MAX) */
	uint64_t blocked_since_ns;      /* output waits and the client read nothing since; 0: no */
	struct cds_list_head pump_link; /* srv->pumps[thread].conns while it subscribes */
	struct io_watch tmr_w;          /* timerfd: the partial request's and the stall deadlines */
	int tmr_fd;
	uint64_t tmr_at;                /* when tmr_fd fires; 0: disarmed */
	struct cds_list_head subs;      /* struct esub */
	struct cds_list_head csubs;     /* struct csub: console viewers */
	unsigned nsubs;                 /* both kinds */
	unsigned nesubs;                /* event subscriptions */
	uint64_t next_sub_id;
};

/* A job in flight for a connection. */
struct call {
	struct cds_wfcq_node node;      /* in conn->done_* once finished */
	struct conn *conn;              /* reference */
	struct domain *dom;             /* reference, or NULL (define, attach) */
	uint32_t msgid;
	char *reply;                    /* the packed response (malloc'd) */
	size_t reply_len;
	size_t reply_cap;               /* a walk's: its buffer's size, counted in out_total */
	bool walk;                      /* answered by the walk thread */
	bool oom;                       /* packing failed: answer "out of memory" */
};

/* One request being handled on the loop thread. */
struct req {
	struct conn *c;
	struct server *srv;
	const struct method *m;
	uint32_t msgid;
	const msgpack_object *params;   /* the params map, checked against m->params */
	msgpack_packer *pk;             /* packs the result into out */
	struct obuf *out;               /* c->out; the walk thread's own buffer there */
	uint64_t timeout_ns;
	int code;                       /* enum rpc_err, after a failure */
	char msg[DOM_ERRMSG_MAX + 128];
};

/* A handler returns 0 (result packed), REQ_ASYNC (a job will answer) or -1. */
#define REQ_ASYNC 1

int req_fail(struct req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Room for len more bytes of r's answer in its connection's output, at once.  Best effort. */
void req_out_reserve(struct req *r, size_t len);
/*
 * Positions in r's answer as it is packed into the connection's output
 * (relative marks, valid while the handler runs): the bytes packed since,
 * a rewind to drop them, and a patch of n bytes already packed at mark.
 */
size_t req_out_mark(const struct req *r);
size_t req_out_since(const struct req *r, size_t mark);
void req_out_rewind(struct req *r, size_t mark);
void req_out_patch(struct req *r, size_t mark, const void *p, size_t n);

enum param_type { P_STR, P_UINT, P_MAP, P_BOOL, P_DATA /* bin or str: bytes */,
		  P_STRV /* array of strings */ };

struct param {
	const char *name;
	enum param_type type;
	bool required;
	const char *doc;
};

struct method {
	const char *name;
	int (*fn)(struct req *r);
	bool ro_ok;                     /* allowed on the read-only socket */
	const char *doc;
	const struct param *params;     /* ends with a NULL name */
	const char *result;
};

/* Find a method by name; NULL if none.  Any thread. */
const struct method *method_find(const char *name);

/*
 * Check params against m->params (types, required, unknown keys) and read
 * timeout_ms.  0, or -1 with r->code/r->msg set.  Loop thread.
 */
int req_check_params(struct req *r);

/*
 * Is r (params checked) a walk (list, stats) over more than WALK_INLINE_MAX
 * domains?  Then the walk thread answers it.  Loop thread.
 */
bool req_walk_big(const struct req *r);

/* ---- server.c, for the handlers (loop thread unless said) ---------------- */

void conn_ref(struct conn *c);                  /* any thread */
void conn_unref(struct conn *c);                /* any thread */

/*
 * A call for a job on dom (referenced; may be NULL when the VM layer picks
 * the domain, as define does); inflight counted.  NULL: -ENOMEM.
 */
struct call *call_new(struct req *r, struct domain *dom);
/* The job could not be submitted: undo call_new().  Loop thread. */
void call_cancel(struct call *cl);
/*
 * cl->reply is packed: hand it to the connection's thread, which writes it
 * (or drops it if the connection is closed) and frees cl.  Any thread;
 * lock-free.  cl is no longer the caller's.
 */
void call_complete(struct call *cl);

/* events.subscribe / unsubscribe for r->c.  0 or -1 with r->code/msg set. */
int conn_subscribe(struct req *r, const char *name, uint64_t *ret_id);
int conn_unsubscribe(struct req *r, uint64_t id);

/*
 * console.attach / detach for r->c: a viewer of con (referenced by the
 * caller; the viewer takes its own).  0 or -1 with r->code/msg set.
 */
struct console;
int conn_console_attach(struct req *r, const char *name, struct console *con, bool history,
			uint64_t *ret_id);
int conn_console_detach(struct req *r, uint64_t id);

/* Live numbers for daemon.info.  Any thread. */
uint64_t server_connections(struct server *s);

#endif /* CORRAL_DAEMON_SERVER_INTERNAL_H */

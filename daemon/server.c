/* SPDX-License-Identifier: MIT */
/*
 * The RPC server's sockets: listeners, connections, framing, output
 * buffering and backpressure, and the hand-back of finished jobs and events
 * to a connection's loop thread.  The methods live in methods.c.
 *
 * Who runs what:
 *   - the listeners' callback runs on one loop thread and accepts;
 *   - a connection's callbacks and tasks run on its own loop thread (chosen
 *     round-robin at accept), always inside an RCU read section;
 *   - job done callbacks run on runtime workers and event notifications on
 *     publishers' threads: they only enqueue and io_post();
 *   - the main thread creates and stops the server.
 *
 * A connection is freed when its last reference goes: one for being open,
 * one per call in flight, one per queued task, one per subscription.  So a
 * client may disconnect with jobs in flight: the connection closes its fd at
 * once, and the replies that arrive later are dropped, never written to a
 * reused fd.  The memory goes after an RCU grace period, because the loop
 * may still hold an event for the deleted watch (see common/ioloop.h).
 */
#include "daemon/server-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "actors/console.h"
#include "actors/evbus.h"
#include "common/tsan.h"
#include "common/wfcq.h"
#include "common/util.h"
#include "daemon/log.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

#define IN_CHUNK       (64u * 1024)
#define READ_BUDGET    (1u * 1024 * 1024)      /* per callback, for fairness */
#define ACCEPT_BUDGET  64
#define STOP_WAIT_NS   (10 * NSEC_PER_SEC)

struct esub {
	struct cds_list_head link;      /* conn->subs; loop thread */
	struct evbus_sub *sub;          /* a cursor in the bus's ring */
	uint64_t id;
};

/* A console viewer on a connection (console.attach). */
struct csub {
	struct cds_list_head link;      /* conn->csubs; loop thread */
	struct console_viewer *v;
	struct conn *c;                 /* reference */
	uint64_t id;                    /* shares the numbering of subscriptions */
	char name[DOM_NAME_MAX + 1];
};

static void conn_service(struct conn *c);
static void conn_close(struct conn *c, const char *why);
static void drain_task_fn(struct io_task *t);

/* ---- output buffer ------------------------------------------------------- */

static size_t obuf_pending(const struct obuf *b)
{
	return b->len - b->off;
}

/* Output buffers up to this size are kept by their connection when empty. */
#define OBUF_KEEP       (4 * IN_CHUNK)
#define OBUF_SPARE_MAX  (RPC_MAX_FRAME + 256u * 1024)

/* A connection's output: its loop thread's spare buffers.  NULL: a walk's buffer. */
static struct obuf_spares *obuf_spares(struct obuf *b)
{
	struct conn *c;
	struct server *s;

	if (b->walk)
		return NULL;
	c = container_of(b, struct conn, out);
	s = c->srv;
	return &s->spares[ioloop_thr_index(s->o.io, c->w.thr) % s->npumps];
}

/*
 * Move b's unwritten bytes into a spare buffer of its thread that holds
 * need bytes, when there is one and b's own is smaller: true if done.
 * Its loop thread only.
 */
static bool obuf_take_spare(struct obuf *b, size_t need)
{
	struct obuf_spares *sp = obuf_spares(b);
	size_t pending = b->len - b->off;

	if (!sp || need <= OBUF_KEEP || need > OBUF_SPARE_MAX)
		return false;
	for (unsigned i = 0; i < OBUF_SPARES; i++) {
		char *data = sp->v[i].data;
		size_t cap = sp->v[i].cap;

		if (!data || cap < need || cap <= b->cap)
			continue;
		sp->v[i].data = NULL;
		sp->v[i].cap = 0;
		if (pending)
			memcpy(data, b->data + b->off, pending);
		free(b->data);
		if (b->total)
			__atomic_add_fetch(b->total, cap - b->cap, __ATOMIC_RELAXED);
		b->data = data;
		b->cap = cap;
		b->off = 0;
		b->len = pending;
		return true;
	}
	return false;
}

/* msgpack_packer write callback: append, or -1 when out of memory. */
static int obuf_write(void *data, const char *buf, size_t len)
{
	struct obuf *b = data;

	if (!len)
		return 0;       /* buf may be NULL (an empty buffer's) */
	if (b->cap - b->len < len) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		if (b->off && b->off >= b->len / 2) {
			/* Mostly written already: slide the rest down first. */
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		if (b->cap - b->len < len && b->len <= SIZE_MAX - len &&
		    obuf_take_spare(b, b->len - b->off + len))
			goto copy;
		while (cap - b->len < len) {
			if (cap > SIZE_MAX / 2)
				return -1;
			cap *= 2;
		}
		if (cap != b->cap) {
			p = realloc(b->data, cap);
			if (!p)
				return -1;
			b->data = p;
			if (b->total)
				__atomic_add_fetch(b->total, cap - b->cap, __ATOMIC_RELAXED);
			b->cap = cap;
		}
	}
copy:
	memcpy(b->data + b->len, buf, len);
	b->len += len;
	return 0;
}

/*
 * A position in the output, for rewinding a message that could not be
 * packed whole.  Counted from the first unwritten byte, not from the start
 * of the buffer: obuf_write() may slide the unwritten bytes down (off and
 * len both shrink) in the middle of a message, so a raw offset into data
 * would go stale and a rewind would cut into bytes of earlier replies.
 */
static size_t obuf_mark(const struct obuf *b)
{
	return b->len - b->off;
}

static void obuf_rewind(struct obuf *b, size_t mark)
{
	BUG_ON(mark > b->len - b->off);
	b->len = b->off + mark;
}

/* Bytes appended since mark. */
static size_t obuf_since(const struct obuf *b, size_t mark)
{
	return b->len - b->off - mark;
}

static void obuf_fini(struct obuf *b)
{
	uint64_t *total = b->total;

	if (total)
		__atomic_sub_fetch(total, b->cap, __ATOMIC_RELAXED);
	free(b->data);
	memset(b, 0, sizeof(*b));
	b->total = total;
}

/*
 * A large buffer for the walk thread, whose answers leave it with their
 * buffers (obuf_adopt): data (cap bytes, no longer counted) is kept with its
 * size in its first bytes.  False when both places are taken.  Any thread.
 */
static bool walk_spare_put(struct server *s, char *data, size_t cap)
{
	memcpy(data, &cap, sizeof(cap));
	for (unsigned i = 0; i < OBUF_SPARES; i++) {
		char *none = NULL;

		if (__atomic_compare_exchange_n(&s->walk_spares[i], &none, data, false,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return true;
	}
	return false;
}

/* A buffer walk_spare_put() kept, and its size; NULL if none.  Any thread. */
static char *walk_spare_take(struct server *s, size_t *ret_cap)
{
	for (unsigned i = 0; i < OBUF_SPARES; i++) {
		char *p = __atomic_exchange_n(&s->walk_spares[i], NULL, __ATOMIC_ACQUIRE);

		if (p) {
			memcpy(ret_cap, p, sizeof(*ret_cap));
			return p;
		}
	}
	return NULL;
}

/*
 * b is empty (written out, or its connection closed): a large buffer goes
 * to the walk thread's spares, else to its thread's, in place of a smaller
 * one when they are all taken; b is left empty.  Its loop thread only.
 */
static void obuf_release(struct obuf *b)
{
	struct obuf_spares *sp = obuf_spares(b);
	unsigned best = 0;

	if (!sp || b->cap <= OBUF_KEEP || b->cap > OBUF_SPARE_MAX) {
		obuf_fini(b);
		return;
	}
	if (walk_spare_put(container_of(b, struct conn, out)->srv, b->data, b->cap)) {
		if (b->total)
			__atomic_sub_fetch(b->total, b->cap, __ATOMIC_RELAXED);
		b->data = NULL;
		b->off = b->len = b->cap = 0;
		return;
	}
	for (unsigned i = 1; i < OBUF_SPARES; i++)
		if (sp->v[i].cap < sp->v[best].cap)
			best = i;
	if (sp->v[best].cap >= b->cap) {
		obuf_fini(b);
		return;
	}
	free(sp->v[best].data);
	sp->v[best].data = b->data;
	sp->v[best].cap = b->cap;
	if (b->total)
		__atomic_sub_fetch(b->total, b->cap, __ATOMIC_RELAXED);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

/*
 * b is empty: take cl's reply (a walk's buffer, its size already counted in
 * the output total) as b's buffer instead of copying megabytes.  Its loop
 * thread only.
 */
static void obuf_adopt(struct obuf *b, struct call *cl)
{
	obuf_release(b);        /* leaves b empty, its buffer kept or freed */
	b->data = cl->reply;
	b->cap = cl->reply_cap;
	b->len = cl->reply_len;
	b->off = 0;
	cl->reply = NULL;
	cl->reply_cap = 0;      /* counted as b's now */
}

/* ---- references ---------------------------------------------------------- */

static void conn_free_rcu(struct rcu_head *head)
{
	struct conn *c = container_of(head, struct conn, rcu);

	crcu_reclaim_begin(head);
	free(c);
}

void conn_ref(struct conn *c)
{
	__atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED);
}

void conn_unref(struct conn *c)
{
	/*
	 * Read before the decrement: once it is done, another thread may drop
	 * the last reference and free c, and this thread need not be in a
	 * read section that would hold the free back.
	 */
	struct server *s = c->srv;
	uint32_t left = __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);

	BUG_ON(left == UINT32_MAX);
	if (left)
		return;
	/* Closed (the open reference is gone), nothing in flight, no task queued. */
	pthread_mutex_lock(&s->lock);
	cds_list_del(&c->link);
	pthread_mutex_unlock(&s->lock);
	crcu_call(&c->rcu, conn_free_rcu);
}

uint64_t server_connections(struct server *s)
{
	return __atomic_load_n(&s->nopen, __ATOMIC_RELAXED);
}

/* ---- finished jobs ------------------------------------------------------- */

struct call *call_new(struct req *r, struct domain *dom)
{
	struct call *cl = calloc(1, sizeof(*cl));

	if (!cl)
		return NULL;
	cds_wfcq_node_init(&cl->node);
	cl->conn = r->c;
	cl->dom = dom;
	cl->msgid = r->msgid;
	conn_ref(r->c);
	if (dom)
		dom_ref(dom);
	r->c->inflight++;
	return cl;
}

static void call_free(struct call *cl)
{
	struct conn *c = cl->conn;

	if (cl->reply_cap)
		__atomic_sub_fetch(&c->srv->out_total, cl->reply_cap, __ATOMIC_RELAXED);
	free(cl->reply);
	if (cl->dom)
		dom_unref(cl->dom);
	free(cl);
	conn_unref(c);
}

void call_cancel(struct call *cl)
{
	cl->conn->inflight--;
	call_free(cl);
}

void call_complete(struct call *cl)
{
	struct conn *c = cl->conn;

	/*
	 * Our own reference for the post: once cl is queued the loop thread
	 * may drain it and drop cl's reference before we are done with c.
	 */
	conn_ref(c);
	log_debug("client %" PRIu64 ": reply to %u ready (%zu bytes)", c->id, cl->msgid,
		  cl->reply_len);
	tsan_handoff_release(&cl->node);
	cds_wfcq_enqueue(&c->done_head, &c->done_tail, &cl->node);
	/*
	 * Post the drain task unless it is queued already.  The task clears
	 * done_posted before it dequeues, so a call enqueued after that is
	 * either seen by this run or posts a new one.
	 */
	if (!__atomic_exchange_n(&c->done_posted, 1, __ATOMIC_SEQ_CST))
		io_post(c->w.thr, &c->done_task);       /* the task takes our reference */
	else
		conn_unref(c);
}

static void pack_oom_error(struct conn *c, uint32_t msgid)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, &c->out, obuf_write);
	if (rpc_pack_error_response(&pk, msgid, RPC_ERR_INTERNAL, "out of memory") < 0)
		conn_close(c, "out of memory");
}

static void done_task_fn(struct io_task *t)
{
	struct conn *c = container_of(t, struct conn, done_task);
	struct cds_wfcq_node *node;

	crcu_read_lock();
	/*
	 * Clear, then look at the queue: a store followed by loads, which a
	 * weakly ordered CPU (and x86's store buffer) may reorder unless a full
	 * fence sits between them.  The producer's side is the same pattern in
	 * mirror (enqueue, whose xchg is a full barrier, then read the flag):
	 * so either it sees 0 and posts again, or we see its call.  The clear
	 * is a release: this thread is done with the task's node (taken off
	 * the loop's queue) before a thread that sees 0 posts it again.
	 */
	__atomic_store_n(&c->done_posted, 0, __ATOMIC_RELEASE);
	cmm_smp_mb();
	while ((node = wfcq_take(&c->done_head, &c->done_tail))) {
		struct call *cl = container_of(node, struct call, node);

		tsan_handoff_acquire(node);
		c->inflight--;
		if (cl->walk)
			c->walks--;
		if (c->closed)
			;       /* dropped */
		else if (cl->oom)
			pack_oom_error(c, cl->msgid);
		else if (cl->reply_cap && !obuf_pending(&c->out))
			obuf_adopt(&c->out, cl);
		else if (obuf_write(&c->out, cl->reply, cl->reply_len) < 0)
			pack_oom_error(c, cl->msgid);
		call_free(cl);
	}
	if (!c->closed)
		conn_service(c);
	conn_unref(c);
	crcu_read_unlock();
}

/* ---- events -------------------------------------------------------------- */

/*
 * After every publish, on the publisher's thread (inside its read section):
 * wake the pump of each loop thread that has subscribers.  O(loop threads),
 * whatever the number of subscriptions.
 */
static void bus_notify(void *arg)
{
	struct server *s = arg;

	for (unsigned i = 0; i < s->npumps; i++) {
		struct evpump *p = &s->pumps[i];

		if (!__atomic_load_n(&p->nconns, __ATOMIC_SEQ_CST))
			continue;
		if (!__atomic_exchange_n(&p->posted, 1, __ATOMIC_SEQ_CST))
			io_post(p->thr, &p->task);
	}
}

static struct evpump *conn_pump(struct conn *c)
{
	struct server *s = c->srv;

	return &s->pumps[ioloop_thr_index(s->o.io, c->w.thr) % s->npumps];
}

/* Run the pump of c's thread soon (again).  Any thread. */
static void pump_kick(struct evpump *p)
{
	if (!__atomic_exchange_n(&p->posted, 1, __ATOMIC_SEQ_CST))
		io_post(p->thr, &p->task);
}

static void esub_release(struct conn *c, struct esub *es)
{
	cds_list_del(&es->link);
	c->nsubs--;
	c->nesubs--;
	/* A cursor, ours alone: no publisher ever touches it. */
	evbus_unsubscribe(c->srv->o.bus, es->sub);
	free(es);
	if (!c->nesubs && c->on_pump) {
		cds_list_del(&c->pump_link);
		__atomic_sub_fetch(&conn_pump(c)->nconns, 1, __ATOMIC_SEQ_CST);
		c->on_pump = false;
	}
}

int conn_subscribe(struct req *r, const char *name, uint64_t *ret_id)
{
	struct conn *c = r->c;
	struct esub *es;
	int err;

	if (c->nsubs >= c->srv->o.subs_max)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT,
				"too many subscriptions on this connection (at most %u)",
				c->srv->o.subs_max);
	es = calloc(1, sizeof(*es));
	if (!es)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	es->id = ++c->next_sub_id;
	err = evbus_subscribe(c->srv->o.bus, name, &es->sub);
	if (err < 0) {
		free(es);
		return req_fail(r, RPC_ERR_INTERNAL, "cannot subscribe: %s", strerror(-err));
	}
	cds_list_add_tail(&es->link, &c->subs);
	c->nsubs++;
	c->nesubs++;
	if (!c->on_pump) {
		struct evpump *p = conn_pump(c);

		cds_list_add_tail(&c->pump_link, &p->conns);
		__atomic_add_fetch(&p->nconns, 1, __ATOMIC_SEQ_CST);
		c->on_pump = true;
	}
	/*
	 * A publish that looked at nconns before we counted ourselves did not
	 * wake the pump, but its event may be ours: look once.
	 */
	pump_kick(conn_pump(c));
	*ret_id = es->id;
	return 0;
}

int conn_unsubscribe(struct req *r, uint64_t id)
{
	struct esub *es;

	cds_list_for_each_entry(es, &r->c->subs, link) {
		if (es->id == id) {
			esub_release(r->c, es);
			return 0;
		}
	}
	return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "no subscription %" PRIu64
			" on this connection", id);
}

/* ---- console viewers -------------------------------------------------------- */

static void csub_notify(struct console_viewer *v, void *arg)
{
	struct csub *cs = arg;
	struct conn *c = cs->c;

	/* Under the console's lock: only post (cs lives until detached under that lock). */
	conn_ref(c);
	if (!__atomic_exchange_n(&c->ev_posted, 1, __ATOMIC_SEQ_CST))
		io_post(c->w.thr, &c->ev_task);
	else
		conn_unref(c);
}

static void csub_release(struct conn *c, struct csub *cs)
{
	cds_list_del(&cs->link);
	c->nsubs--;
	/* After this no notify runs, so cs can go at once. */
	console_detach(cs->v);
	conn_unref(c);
	free(cs);
}

int conn_console_attach(struct req *r, const char *name, struct console *con, bool history,
			uint64_t *ret_id)
{
	struct conn *c = r->c;
	struct csub *cs;
	int err;

	if (c->nsubs >= c->srv->o.subs_max)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT,
				"too many subscriptions on this connection (at most %u)",
				c->srv->o.subs_max);
	cs = calloc(1, sizeof(*cs));
	if (!cs)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	cs->c = c;
	snprintf(cs->name, sizeof(cs->name), "%s", name);
	conn_ref(c);
	err = console_attach(con, history, csub_notify, cs, &cs->v);
	if (err < 0) {
		conn_unref(c);
		free(cs);
		if (err == -EPIPE)
			return req_fail(r, RPC_ERR_BAD_STATE, "domain '%s': its console just closed "
					"(the guest stopped)", name);
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	}
	cs->id = ++c->next_sub_id;
	cds_list_add_tail(&cs->link, &c->csubs);
	c->nsubs++;
	*ret_id = cs->id;
	return 0;
}

int conn_console_detach(struct req *r, uint64_t id)
{
	struct csub *cs;

	cds_list_for_each_entry(cs, &r->c->csubs, link) {
		if (cs->id == id) {
			csub_release(r->c, cs);
			return 0;
		}
	}
	return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "no console subscription %" PRIu64
			" on this connection", id);
}

/* [2, METHOD, [{subscription, name, KEY: ...}]]: the header, before the last value. */
static int pack_console_head(msgpack_packer *pk, const char *method, const struct csub *cs,
			     const char *key)
{
	int r = rpc_pack_notification_begin(pk, method);

	if (r < 0)
		return r;
	if (msgpack_pack_array(pk, 1) < 0 || msgpack_pack_map(pk, 3) < 0 ||
	    rpc_pack_cstr(pk, "subscription") < 0 || msgpack_pack_uint64(pk, cs->id) < 0 ||
	    rpc_pack_cstr(pk, "name") < 0 || rpc_pack_cstr(pk, cs->name) < 0 ||
	    rpc_pack_cstr(pk, key) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * Move console output into the output buffer: "console.dropped" (bytes
 * lost before what follows), "console" (data: bin), "console.closed"
 * (reason; the subscription ends).  Stops while CONSOLE_VIEWER_MAX bytes are unwritten: the viewer's
 * queue then fills and drops, and nothing upstream waits.  Loop thread.
 */
static bool pump_consoles(struct conn *c, msgpack_packer *pk)
{
	struct csub *cs, *tmp;
	bool progressed = false;

	cds_list_for_each_entry_safe(cs, tmp, &c->csubs, link) {
		char reason[CONSOLE_REASON_MAX], *data;
		uint64_t dropped;
		size_t len, mark;
		bool ended;

		/*
		 * Console output waits in the viewer's queue, not here, once a
		 * little is unwritten: the queue is what drops (and says so), so
		 * a viewer that does not read costs a bounded amount and is not
		 * closed as a stalled client.
		 */
		if (obuf_pending(&c->out) >= CONSOLE_VIEWER_MAX) {
			c->ev_stalled = true;
			return progressed;
		}
		ended = console_viewer_take(cs->v, &data, &len, &dropped, reason);
		mark = obuf_mark(&c->out);
		if (dropped && (pack_console_head(pk, "console.dropped", cs, "bytes") < 0 ||
				msgpack_pack_uint64(pk, dropped) < 0))
			obuf_rewind(&c->out, mark);
		mark = obuf_mark(&c->out);
		if (len && (pack_console_head(pk, "console", cs, "data") < 0 ||
			    msgpack_pack_bin(pk, len) < 0 || msgpack_pack_bin_body(pk, data, len) < 0))
			obuf_rewind(&c->out, mark);
		free(data);
		mark = obuf_mark(&c->out);
		if (ended) {
			if (pack_console_head(pk, "console.closed", cs, "reason") < 0 ||
			    rpc_pack_cstr(pk, reason) < 0)
				obuf_rewind(&c->out, mark);
			csub_release(c, cs);
		}
		progressed |= len || dropped || ended;
	}
	return progressed;
}

static bool out_full(const struct conn *c);

/* [2, "event", [{domain, event, timestamp, data, subscription}]] */
static int pack_event(msgpack_packer *pk, const struct evbus_event *ev, uint64_t sub_id)
{
	int r;

	r = rpc_pack_notification_begin(pk, "event");
	if (r < 0)
		return r;
	if (msgpack_pack_array(pk, 1) < 0 || msgpack_pack_map(pk, 5) < 0)
		return -ENOMEM;
	if (rpc_pack_cstr(pk, "domain") < 0 || rpc_pack_cstr(pk, ev->domain) < 0 ||
	    rpc_pack_cstr(pk, "event") < 0 || rpc_pack_cstr(pk, ev->event) < 0 ||
	    rpc_pack_cstr(pk, "timestamp") < 0 || msgpack_pack_double(pk, ev->timestamp) < 0 ||
	    rpc_pack_cstr(pk, "data") < 0)
		return -ENOMEM;
	/* Packed once at publish: written as it is to every subscriber. */
	if (pk->callback(pk->data, ev->data, ev->data_len) < 0 ||
	    rpc_pack_cstr(pk, "subscription") < 0 || msgpack_pack_uint64(pk, sub_id) < 0)
		return -ENOMEM;
	return 0;
}

/* [2, "events.dropped", [{count, subscription}]] */
static int pack_dropped(msgpack_packer *pk, uint64_t count, uint64_t sub_id)
{
	int r = rpc_pack_notification_begin(pk, "events.dropped");

	if (r < 0)
		return r;
	if (msgpack_pack_array(pk, 1) < 0 || msgpack_pack_map(pk, 2) < 0)
		return -ENOMEM;
	if (rpc_pack_cstr(pk, "count") < 0 || msgpack_pack_uint64(pk, count) < 0 ||
	    rpc_pack_cstr(pk, "subscription") < 0 || msgpack_pack_uint64(pk, sub_id) < 0)
		return -ENOMEM;
	return 0;
}

/* Output bytes waiting: is there room for no more requests? */
static bool out_full(const struct conn *c)
{
	size_t pending = obuf_pending(&c->out);
	const struct server *s = c->srv;

	return pending >= s->o.output_max ||
	       (pending && __atomic_load_n(&s->out_total, __ATOMIC_RELAXED) >= s->o.output_total);
}

/* Is there room for more events? */
static bool out_events_full(const struct conn *c)
{
	return obuf_pending(&c->out) >= EV_OUT_MAX || out_full(c);
}

/*
 * Move this turn's share of events into the output: at most EV_TURN_MAX
 * for the connection, shared among its subscriptions, while less than EV_OUT_MAX bytes wait (else
 * ev_stalled: conn_service() comes back once the client reads).  Events a
 * subscriber has no room for wait in the bus's ring, where the oldest are
 * overwritten: the next one written is then preceded by events.dropped.
 * Returns whether anything was written; *more: a subscription had more
 * than its share.  Loop thread.
 */
static bool pump_subs(struct conn *c, msgpack_packer *pk, bool *more)
{
	struct evbus *bus = c->srv->o.bus;
	struct esub *es;
	bool progressed = false;

	unsigned share = c->nesubs ? EV_TURN_MAX / c->nesubs : EV_TURN_MAX;

	if (share < 2)
		share = 2;
	cds_list_for_each_entry(es, &c->subs, link) {
		for (unsigned n = 0;; n++) {
			const struct evbus_event *ev;
			uint64_t dropped;
			size_t mark;

			if (out_events_full(c)) {
				c->ev_stalled = true;
				return progressed;
			}
			if (n == share) {
				if (evbus_sub_pending(bus, es->sub))
					*more = true;
				break;
			}
			ev = evbus_sub_next(bus, es->sub);
			dropped = evbus_sub_take_dropped(es->sub);
			if (dropped) {
				mark = obuf_mark(&c->out);
				if (pack_dropped(pk, dropped, es->id) < 0)
					obuf_rewind(&c->out, mark);
				progressed = true;
			}
			if (!ev)
				break;
			mark = obuf_mark(&c->out);
			if (pack_event(pk, ev, es->id) < 0) {
				obuf_rewind(&c->out, mark);     /* drop this one */
				log_warn("client %" PRIu64 ": cannot pack an event; dropped", c->id);
			}
			progressed = true;
		}
	}
	return progressed;
}

/* Events and console output.  Loop thread. */
static bool pump_events(struct conn *c, bool *more)
{
	msgpack_packer pk;
	bool progressed;

	msgpack_packer_init(&pk, &c->out, obuf_write);
	c->ev_stalled = false;
	progressed = pump_subs(c, &pk, more);
	return pump_consoles(c, &pk) || progressed;
}

/*
 * The pump of one loop thread: every subscribed connection on it gets its
 * share; if one had more, the pump posts itself again, behind the tasks
 * and sockets already waiting (ioloop's bounded batch), so a storm of
 * events never keeps the thread from a query.
 */
static void pump_task_fn(struct io_task *t)
{
	struct evpump *p = container_of(t, struct evpump, task);
	struct conn *c, *tmp;
	bool more = false;

	crcu_read_lock();
	/* Clear, full fence, then read the ring: see done_task_fn. */
	__atomic_store_n(&p->posted, 0, __ATOMIC_RELEASE);
	cmm_smp_mb();
	cds_list_for_each_entry_safe(c, tmp, &p->conns, pump_link) {
		if (c->closed)
			continue;
		/* Only c itself can leave the list in here. */
		if (pump_events(c, &more))
			conn_service(c);
	}
	if (more)
		pump_kick(p);
	crcu_read_unlock();
}

/* Console output is ready for a viewer of c. */
static void ev_task_fn(struct io_task *t)
{
	struct conn *c = container_of(t, struct conn, ev_task);
	bool more = false;

	crcu_read_lock();
	/* Clear, full fence, then take the output: see done_task_fn. */
	__atomic_store_n(&c->ev_posted, 0, __ATOMIC_RELEASE);
	cmm_smp_mb();
	if (!c->closed) {
		pump_events(c, &more);
		if (more)
			pump_kick(conn_pump(c));
		conn_service(c);
	}
	conn_unref(c);
	crcu_read_unlock();
}

/* ---- requests ------------------------------------------------------------ */

void req_out_reserve(struct req *r, size_t len)
{
	struct obuf *b = r->out;
	size_t cap;
	char *p;

	if (b->cap - b->len >= len || b->len > SIZE_MAX - len ||
	    obuf_take_spare(b, b->len - b->off + len))
		return;
	cap = b->len + len;
	p = realloc(b->data, cap);
	if (!p)
		return;         /* obuf_write grows it as it goes, or fails */
	b->data = p;
	if (b->total)
		__atomic_add_fetch(b->total, cap - b->cap, __ATOMIC_RELAXED);
	b->cap = cap;
}

size_t req_out_mark(const struct req *r)
{
	return obuf_mark(r->out);
}

size_t req_out_since(const struct req *r, size_t mark)
{
	return obuf_since(r->out, mark);
}

void req_out_rewind(struct req *r, size_t mark)
{
	obuf_rewind(r->out, mark);
}

void req_out_patch(struct req *r, size_t mark, const void *p, size_t n)
{
	struct obuf *b = r->out;

	BUG_ON(mark > b->len - b->off || n > b->len - b->off - mark);
	memcpy(b->data + b->off + mark, p, n);
}

int req_fail(struct req *r, int code, const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* A msgpack uint at *p (any width); advances *p. */
static bool read_uint(const unsigned char **p, const unsigned char *end, uint64_t *ret)
{
	const unsigned char *q = *p;
	unsigned n;
	uint64_t v = 0;

	if (q >= end)
		return false;
	if (*q <= 0x7f) {
		*ret = *q;
		*p = q + 1;
		return true;
	}
	switch (*q) {
	case 0xcc: case 0xd0: n = 1; break;
	case 0xcd: case 0xd1: n = 2; break;
	case 0xce: case 0xd2: n = 4; break;
	case 0xcf: case 0xd3: n = 8; break;
	default: return false;
	}
	if ((size_t)(end - q) < 1 + n)
		return false;
	if (*q >= 0xd0 && (q[1] & 0x80))
		return false;           /* negative */
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | q[1 + i];
	*ret = v;
	*p = q + 1 + n;
	return true;
}

/*
 * Recover the type and msgid from the first bytes of a message that could
 * not be decoded (or not even scanned): an array of at least two elements
 * whose first is 0, 1 or 2; for a request (0) also the msgid.  Returns the
 * type, or -1.
 */
static int peek_header(const char *buf, size_t len, uint32_t *ret_msgid)
{
	const unsigned char *p = (const unsigned char *)buf, *end = p + len;
	uint64_t n, type, id;

	if (p >= end)
		return -1;
	if ((*p & 0xf0) == 0x90) {
		n = *p & 0x0f;
		p++;
	} else if (*p == 0xdc && end - p >= 3) {
		n = (uint64_t)p[1] << 8 | p[2];
		p += 3;
	} else if (*p == 0xdd && end - p >= 5) {
		n = (uint64_t)p[1] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 8 | p[4];
		p += 5;
	} else {
		return -1;
	}
	if (n < 2 || !read_uint(&p, end, &type) || type > 2)
		return -1;
	if (type != RPC_REQUEST)
		return (int)type;
	if (!read_uint(&p, end, &id) || id > UINT32_MAX)
		return -1;
	*ret_msgid = (uint32_t)id;
	return RPC_REQUEST;
}

static void pack_error(struct conn *c, uint32_t msgid, int code, const char *msg)
{
	msgpack_packer pk;
	size_t mark = obuf_mark(&c->out);

	msgpack_packer_init(&pk, &c->out, obuf_write);
	if (rpc_pack_error_response(&pk, msgid, code, msg) < 0) {
		obuf_rewind(&c->out, mark);
		conn_close(c, "out of memory");
	}
}

/* ---- walks --------------------------------------------------------------- */

/*
 * A request for the walk thread (WALK_INLINE_MAX): its frame as it came,
 * decoded there again, since the loop's decoded message is gone once the
 * frame is handled.
 */
struct walk_task {
	struct offload_task t;
	struct call *cl;                /* the connection's reference, inflight and walks counted */
	const struct method *m;
	uint64_t timeout_ns;
	size_t len;
	char frame[];
};

/* A result of n bytes is over what one message may hold: fail r.  -1. */
static int result_too_big(struct req *r, size_t n)
{
	return req_fail(r, RPC_ERR_INTERNAL, "the result of '%s' is %zu bytes, over the %u "
			"bytes a message may hold", r->m->name, n, RPC_MAX_FRAME);
}

/*
 * The walk thread: answer into a buffer of its own, counted in the output
 * total as it grows; the connection's thread writes it (walk_done).
 */
static void walk_work(struct offload_task *t)
{
	struct walk_task *wt = container_of(t, struct walk_task, t);
	struct call *cl = wt->cl;
	struct server *s = cl->conn->srv;
	struct obuf ob = { .total = &s->out_total, .walk = true };
	struct req r = { .c = cl->conn, .srv = s, .m = wt->m, .msgid = cl->msgid, .out = &ob,
			 .timeout_ns = wt->timeout_ns };
	struct rpc_msg *m = NULL;
	msgpack_packer pk;
	int ret = -1;

	ob.data = walk_spare_take(s, &ob.cap);
	if (ob.data)
		__atomic_add_fetch(&s->out_total, ob.cap, __ATOMIC_RELAXED);
	msgpack_packer_init(&pk, &ob, obuf_write);
	r.pk = &pk;
	crcu_read_lock();
	if (rpc_decode(wt->frame, wt->len, &m, r.msg, sizeof(r.msg)) < 0) {
		m = NULL;
		r.code = RPC_ERR_INTERNAL;      /* it decoded on the loop thread */
	} else if (rpc_msg_params_map(m, &r.params, r.msg, sizeof(r.msg)) < 0) {
		r.code = RPC_ERR_INVALID_ARGUMENT;
	} else if (rpc_pack_response_begin(&pk, r.msgid) < 0) {
		req_fail(&r, RPC_ERR_INTERNAL, "out of memory");
	} else {
		ret = r.m->fn(&r);
		BUG_ON(ret == REQ_ASYNC);
		if (ret == 0 && obuf_since(&ob, 0) > RPC_MAX_FRAME)
			ret = result_too_big(&r, obuf_since(&ob, 0));
	}
	crcu_read_unlock();
	if (ret < 0) {
		obuf_rewind(&ob, 0);
		if (rpc_pack_error_response(&pk, r.msgid, r.code, r.msg) < 0)
			cl->oom = true;
	}
	if (m)
		rpc_msg_free(m);
	cl->reply = ob.data;
	cl->reply_len = ob.len;
	cl->reply_cap = ob.cap;
}

static void walk_done(struct offload_task *t)
{
	struct walk_task *wt = container_of(t, struct walk_task, t);
	struct server *s = wt->cl->conn->srv;

	__atomic_sub_fetch(&s->walk_bytes, wt->len, __ATOMIC_RELAXED);
	call_complete(wt->cl);
	free(wt);
}

/*
 * Send r (frame, len bytes) to the walk thread.  0, or -1 when it is to be
 * answered here: no memory, the daemon is stopping, or the copy of the
 * request would take the requests waiting for the walk thread over
 * WALK_QUEUE_MAX bytes (a client may send walks of 4 MiB of names, and
 * they wait while the walk thread works through the ones before).  Loop
 * thread.
 */
static int walk_submit(struct req *r, const char *frame, size_t len)
{
	struct conn *c = r->c;
	struct server *s = c->srv;
	struct walk_task *wt = NULL;
	struct offload *o;
	int ret = -1;

	crcu_read_lock();
	o = crcu_dereference(s->walk);
	if (o) {
		uint64_t queued = __atomic_add_fetch(&s->walk_bytes, len, __ATOMIC_RELAXED);

		if (queued <= WALK_QUEUE_MAX)
			wt = malloc(sizeof(*wt) + len);
		else
			log_debug("client %" PRIu64 ": %s answered on the I/O thread: %" PRIu64
				  " bytes of requests wait for the walk thread", c->id, r->m->name,
				  queued - len);
		if (!wt)
			__atomic_sub_fetch(&s->walk_bytes, len, __ATOMIC_RELAXED);
	}
	if (wt && !(wt->cl = call_new(r, NULL))) {
		__atomic_sub_fetch(&s->walk_bytes, len, __ATOMIC_RELAXED);
		free(wt);
		wt = NULL;
	}
	if (wt) {
		wt->cl->walk = true;
		c->walks++;
		wt->m = r->m;
		wt->timeout_ns = r->timeout_ns;
		wt->len = len;
		memcpy(wt->frame, frame, len);
		wt->t.work = walk_work;
		wt->t.done = walk_done;
		offload_submit(o, &wt->t);
		ret = 0;
	}
	crcu_read_unlock();
	return ret;
}

static void dispatch(struct conn *c, struct rpc_msg *m, const char *frame, size_t len)
{
	struct req r = { .c = c, .srv = c->srv, .msgid = rpc_msg_id(m), .out = &c->out };
	const char *name = rpc_msg_method(m);
	msgpack_packer pk;
	size_t mark;
	int ret;

	if (c->draining) {
		/* Buffered before the daemon began to stop: answered, not run. */
		pack_error(c, r.msgid, RPC_ERR_UNAVAILABLE, "corrald is shutting down");
		return;
	}
	r.m = method_find(name);
	if (!r.m) {
		req_fail(&r, RPC_ERR_METHOD_NOT_FOUND, "no method '%s' (api.info lists them)",
			 name);
		goto fail;
	}
	if (c->ro && !r.m->ro_ok) {
		req_fail(&r, RPC_ERR_PERMISSION,
			 "method '%s' is not allowed on the read-only socket", name);
		goto fail;
	}
	if (!r.m->ro_ok && c->inflight >= c->srv->o.inflight_max) {
		req_fail(&r, RPC_ERR_BUSY, "%u requests of this connection are in flight already "
			 "(at most %u, --client-inflight-max): wait for their answers",
			 c->inflight, c->srv->o.inflight_max);
		goto fail;
	}
	if (rpc_msg_params_map(m, &r.params, r.msg, sizeof(r.msg)) < 0) {
		r.code = RPC_ERR_INVALID_ARGUMENT;
		goto fail;
	}
	if (req_check_params(&r) < 0)
		goto fail;
	if (req_walk_big(&r) && walk_submit(&r, frame, len) == 0)
		return;

	mark = obuf_mark(&c->out);
	msgpack_packer_init(&pk, &c->out, obuf_write);
	r.pk = &pk;
	if (rpc_pack_response_begin(&pk, r.msgid) < 0) {
		req_fail(&r, RPC_ERR_INTERNAL, "out of memory");
		goto fail_rewind;
	}
	ret = r.m->fn(&r);
	if (ret == REQ_ASYNC) {
		obuf_rewind(&c->out, mark);
		return;
	}
	if (ret < 0)
		goto fail_rewind;
	if (obuf_since(&c->out, mark) > RPC_MAX_FRAME) {
		result_too_big(&r, obuf_since(&c->out, mark));
		goto fail_rewind;
	}
	return;

fail_rewind:
	obuf_rewind(&c->out, mark);
fail:
	pack_error(c, r.msgid, r.code, r.msg);
}

/* One complete frame (scanned): decode and act.  Loop thread. */
static void handle_frame(struct conn *c, const char *frame, size_t len)
{
	struct rpc_msg *m;
	char err[256];
	uint32_t msgid = 0;
	int r, type;

	r = rpc_decode(frame, len, &m, err, sizeof(err));
	if (r < 0) {
		type = peek_header(frame, len, &msgid);
		if (type == RPC_REQUEST) {
			pack_error(c, msgid, r == -ENOMEM ? RPC_ERR_INTERNAL : RPC_ERR_INVALID_REQUEST,
				   err);
		} else if (type < 0) {
			log_info("client %" PRIu64 ": malformed message (%s): closing", c->id, err);
			conn_close(c, NULL);
		}
		/* A malformed response or notification: ignored like any other. */
		return;
	}
	if (rpc_msg_type(m) == RPC_REQUEST)
		dispatch(c, m, frame, len);
	/* Responses and notifications from a client mean nothing to us. */
	rpc_msg_free(m);
}

/*
 * The stream cannot go on (a frame over the limits, bytes that are not
 * msgpack, a request that never completes, no room for it): there is no
 * resynchronising.  Answer if the request's msgid can be read from buf (the
 * start of the unfinished frame), then close.
 */
static void refuse_stream(struct conn *c, const char *buf, size_t len, const char *why)
{
	uint32_t msgid;
	char msg[256];

	snprintf(msg, sizeof(msg), "message refused: %s; closing the connection", why);
	log_info("client %" PRIu64 " (pid %d): %s", c->id, (int)c->pid, msg);
	if (peek_header(buf, len, &msgid) == RPC_REQUEST) {
		pack_error(c, msgid, RPC_ERR_INVALID_REQUEST, msg);
		if (!c->closed && obuf_pending(&c->out))
			(void)!send(c->w.fd, c->out.data + c->out.off, obuf_pending(&c->out),
				    MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	conn_close(c, NULL);
}

static void stream_error(struct conn *c, const char *buf, size_t len, int err)
{
	char why[160];

	if (err == -EMSGSIZE && c->srv->o.frame_max < RPC_MAX_FRAME)
		snprintf(why, sizeof(why), "the message is larger than %" PRIu64 " bytes "
			 "(--frame-max)", c->srv->o.frame_max);
	else
		snprintf(why, sizeof(why), "%s", rpc_strerror_scan(err));
	refuse_stream(c, buf, len, why);
}

/* WALK_CONN_MAX walks in flight: no more requests until one is answered. */
static bool walks_full(const struct conn *c)
{
	return c->walks >= WALK_CONN_MAX;
}

static bool may_read(const struct conn *c)
{
	return !c->closed && !c->rd_eof && !c->draining && !out_full(c) && !walks_full(c);
}

/* The partial-request buffer is empty: give it back. */
static void in_release(struct conn *c)
{
	if (c->in_cap)
		__atomic_sub_fetch(&c->srv->in_total, c->in_cap, __ATOMIC_RELAXED);
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	c->in_since_ns = 0;
}

/*
 * Keep n more bytes of an unfinished request, within the bytes all
 * clients' unfinished requests may hold (input_total).  0, or -1 when the
 * connection was refused and closed.
 */
static int in_append(struct conn *c, const char *data, size_t n)
{
	struct server *s = c->srv;
	size_t need = c->in_len + n;

	if (need > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : IN_CHUNK;
		uint64_t total;
		char *p;

		while (cap < need)
			cap *= 2;
		total = __atomic_add_fetch(&s->in_total, cap - c->in_cap, __ATOMIC_RELAXED);
		if (total > s->o.input_total) {
			char why[200];

			__atomic_sub_fetch(&s->in_total, cap - c->in_cap, __ATOMIC_RELAXED);
			snprintf(why, sizeof(why), "corrald holds %" PRIu64 " bytes of unfinished "
				 "requests from its clients, and may hold %" PRIu64
				 " (--client-input-total): try again", total - (cap - c->in_cap),
				 s->o.input_total);
			refuse_stream(c, c->in_len ? c->in : data, c->in_len ? c->in_len : n, why);
			return -1;
		}
		p = realloc(c->in, cap);
		if (!p) {
			__atomic_sub_fetch(&s->in_total, cap - c->in_cap, __ATOMIC_RELAXED);
			log_err("client %" PRIu64 ": out of memory: closing", c->id);
			conn_close(c, NULL);
			return -1;
		}
		c->in = p;
		c->in_cap = cap;
	}
	memcpy(c->in + c->in_len, data, n);
	c->in_len += n;
	return 0;
}

/*
 * Handle the complete frames at the start of buf[0..len) while the output
 * has room.  Returns the bytes handled, or -1 once the connection is closed.
 * Notes when the rest is an unfinished request (its deadline runs from its
 * first byte).  Loop thread.
 */
static ssize_t consume_frames(struct conn *c, const char *buf, size_t len, bool *progressed)
{
	uint64_t fmax = c->srv->o.frame_max;
	size_t off = 0, flen = 0;
	int r;

	while (!c->closed && !out_full(c) && !walks_full(c) && off < len) {
		r = rpc_scanner_scan(c->scan, buf + off, len - off, &flen);
		if (r == 0 && len - off > fmax)
			r = -EMSGSIZE;          /* a smaller bound than the protocol's */
		if (r == 0)
			break;
		if (r > 0 && flen > fmax)
			r = -EMSGSIZE;
		if (r < 0) {
			stream_error(c, buf + off, len - off, r);
			return -1;
		}
		handle_frame(c, buf + off, flen);
		off += flen;
		*progressed = true;
	}
	if (c->closed)
		return -1;
	if (off < len && !out_full(c) && !walks_full(c)) {
		if (off || !c->in_since_ns)
			c->in_since_ns = now_ns();
	} else {
		c->in_since_ns = 0;
	}
	return (ssize_t)off;
}

/* Decode and handle the complete frames buffered.  Returns whether any was. */
static bool process_frames(struct conn *c)
{
	bool progressed = false;
	ssize_t off = consume_frames(c, c->in, c->in_len, &progressed);

	if (off < 0)
		return true;
	if (off) {
		memmove(c->in, c->in + off, c->in_len - (size_t)off);
		c->in_len -= (size_t)off;
	}
	if (c->in_len == 0)
		in_release(c);
	return progressed;
}

/*
 * Read what the socket has (up to a budget), handling frames as they come.
 * Bytes are read into a buffer of the thread's; only an unfinished request
 * is kept in the connection, so an idle client holds no input buffer.
 */
static void conn_read(struct conn *c)
{
	static __thread char scratch[IN_CHUNK];
	size_t total = 0;
	ssize_t n, used;

	while (may_read(c) && total < READ_BUDGET) {
		bool progressed = false;

		n = read(c->w.fd, scratch, sizeof(scratch));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_close(c, strerror(errno));
			return;
		}
		if (n == 0) {
			c->rd_eof = true;
			return;
		}
		total += (size_t)n;
		if (c->in_len == 0) {
			used = consume_frames(c, scratch, (size_t)n, &progressed);
			if (used < 0)
				return;
			if (used < n && in_append(c, scratch + used, (size_t)(n - used)) < 0)
				return;
		} else {
			if (in_append(c, scratch, (size_t)n) < 0)
				return;
			process_frames(c);
		}
	}
}

/* Write what we can; 0, or -1 when the connection was closed. */
static int conn_flush(struct conn *c)
{
	while (obuf_pending(&c->out)) {
		ssize_t n = send(c->w.fd, c->out.data + c->out.off, obuf_pending(&c->out),
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				/* The client reads nothing for now: the stall clock runs. */
				if (!c->blocked_since_ns)
					c->blocked_since_ns = now_ns();
				return 0;
			}
			conn_close(c, NULL);    /* EPIPE, ECONNRESET: the client left */
			return -1;
		}
		c->out.off += (size_t)n;
		c->blocked_since_ns = 0;
	}
	c->blocked_since_ns = 0;
	c->out.off = c->out.len = 0;
	if (c->out.cap > OBUF_KEEP)
		obuf_release(&c->out);
	return 0;
}

static void conn_timer_update(struct conn *c);

/*
 * The connection's deadlines: an unfinished request must be complete
 * frame_timeout_ms after its first byte; a client that reads nothing
 * while output waits for it (its socket buffer full) is closed after
 * client_stall_ms.  A slow reader is never closed: it reads.
 */
static void tmr_cb(struct io_watch *w, uint32_t events)
{
	struct conn *c = container_of(w, struct conn, tmr_w);
	const struct server_opts *o = &c->srv->o;
	uint64_t ticks, now = now_ns();

	if (c->closed || c->tmr_fd < 0)
		return;
	(void)!read(c->tmr_fd, &ticks, sizeof(ticks));
	c->tmr_at = 0;
	if (c->in_since_ns && now - c->in_since_ns >= o->frame_timeout_ms * NSEC_PER_MSEC) {
		char why[160];

		snprintf(why, sizeof(why), "the message was not complete %" PRIu64 " ms after "
			 "its first byte (%zu bytes came; --frame-timeout-ms)", o->frame_timeout_ms,
			 c->in_len);
		refuse_stream(c, c->in, c->in_len, why);
		return;
	}
	if (c->blocked_since_ns && now - c->blocked_since_ns >= o->client_stall_ms * NSEC_PER_MSEC) {
		log_warn("client %" PRIu64 " (pid %d) has read nothing for %" PRIu64 " ms while "
			 "%zu bytes waited for it; closing", c->id, (int)c->pid,
			 o->client_stall_ms, obuf_pending(&c->out));
		conn_close(c, NULL);
		return;
	}
	conn_timer_update(c);
}

static void conn_timer_stop(struct conn *c)
{
	if (c->tmr_fd < 0)
		return;
	io_watch_del(&c->tmr_w);
	close(c->tmr_fd);
	c->tmr_fd = -1;
	c->tmr_at = 0;
}

/* Arm the timer for the earliest deadline, or disarm it.  Loop thread. */
static void conn_timer_update(struct conn *c)
{
	const struct server_opts *o = &c->srv->o;
	struct itimerspec its = { 0 };
	uint64_t at = UINT64_MAX;
	int fd;

	if (c->in_since_ns)
		at = c->in_since_ns + o->frame_timeout_ms * NSEC_PER_MSEC;
	if (c->blocked_since_ns && c->blocked_since_ns + o->client_stall_ms * NSEC_PER_MSEC < at)
		at = c->blocked_since_ns + o->client_stall_ms * NSEC_PER_MSEC;
	if (at == UINT64_MAX)
		at = 0;
	if (at == c->tmr_at)
		return;
	if (c->tmr_fd < 0) {
		if (!at)
			return;
		fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (fd < 0) {
			log_warn("client %" PRIu64 ": no timer (%s): closing it now", c->id,
				 strerror(errno));
			conn_close(c, NULL);
			return;
		}
		if (io_watch_add_on(c->w.thr, &c->tmr_w, fd, EPOLLIN, tmr_cb) < 0) {
			close(fd);
			conn_close(c, NULL);
			return;
		}
		c->tmr_fd = fd;
	}
	its.it_value.tv_sec = (time_t)(at / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(at % NSEC_PER_SEC);
	if (timerfd_settime(c->tmr_fd, at ? TFD_TIMER_ABSTIME : 0, &its, NULL) < 0) {
		conn_close(c, NULL);
		return;
	}
	c->tmr_at = at;
}

/*
 * Bring the connection up to date after anything happened: write, handle
 * buffered frames and waiting events while the output has room, close when
 * the client has said all it will and got every answer, set the epoll mask
 * (no EPOLLIN while the output is full: backpressure) and the deadlines.
 * Events are pumped at most once here: a fast reader gets the rest on the
 * pump's next turn, behind everyone else.  Loop thread.
 */
static void conn_service(struct conn *c)
{
	uint32_t want = 0;
	bool more, pumped = false;

	do {
		if (c->closed || conn_flush(c) < 0)
			return;
		more = false;
		if (!out_full(c)) {
			if (c->in_len)
				more |= process_frames(c);
			if (c->ev_stalled && !pumped && !c->closed) {
				bool again = false;

				pumped = true;
				more |= pump_events(c, &again);
				if (again)
					pump_kick(conn_pump(c));
			}
		}
	} while (more);
	if (c->closed)
		return;
	if ((c->rd_eof || c->draining) && !c->inflight && !obuf_pending(&c->out)) {
		conn_close(c, NULL);
		return;
	}
	if (may_read(c))
		want |= EPOLLIN | EPOLLRDHUP;
	if (obuf_pending(&c->out))
		want |= EPOLLOUT;
	if (want != c->events) {
		if (io_watch_mod(&c->w, want) < 0) {
			conn_close(c, strerror(errno));
			return;
		}
		c->events = want;
	}
	conn_timer_update(c);
}

static void conn_cb(struct io_watch *w, uint32_t events)
{
	struct conn *c = container_of(w, struct conn, w);

	if (c->closed)
		return;         /* an event taken before the close */
	if (events & EPOLLERR) {
		conn_close(c, NULL);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) && may_read(c))
		conn_read(c);
	if (c->closed)
		return;
	/*
	 * Hang-up: the client is gone both ways.  EPOLLHUP cannot be masked,
	 * so once we cannot (or need not) read any more, close now; replies
	 * still to come are dropped.
	 */
	if ((events & EPOLLHUP) && !may_read(c)) {
		conn_close(c, NULL);
		return;
	}
	conn_service(c);
}

static void conn_close(struct conn *c, const char *why)
{
	struct server *s = c->srv;
	struct esub *es, *tmp;
	struct csub *cs, *ctmp;

	if (c->closed)
		return;
	c->closed = true;
	if (why)
		log_info("client %" PRIu64 " closed: %s", c->id, why);
	else
		log_debug("client %" PRIu64 " closed", c->id);
	io_watch_del(&c->w);
	close(c->w.fd);
	conn_timer_stop(c);
	cds_list_for_each_entry_safe(es, tmp, &c->subs, link)
		esub_release(c, es);
	cds_list_for_each_entry_safe(cs, ctmp, &c->csubs, link)
		csub_release(c, cs);
	in_release(c);
	obuf_release(&c->out);
	rpc_scanner_free(c->scan);
	c->scan = NULL;

	pthread_mutex_lock(&s->lock);
	__atomic_store_n(&s->nopen, s->nopen - 1, __ATOMIC_RELAXED);
	c->listed_open = false;                 /* still listed until freed */
	if (s->stopping && s->nopen == 0)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	conn_unref(c);                          /* the open reference */
}

static void close_task_fn(struct io_task *t)
{
	struct conn *c = container_of(t, struct conn, close_task);

	crcu_read_lock();
	conn_close(c, NULL);
	conn_unref(c);
	crcu_read_unlock();
}

/* ---- accepting ----------------------------------------------------------- */

static bool in_group(int fd, gid_t group, gid_t primary)
{
	gid_t small[64], *gids = small;
	socklen_t len = sizeof(small);
	bool found = false;

	if (primary == group)
		return true;
#ifdef SO_PEERGROUPS
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) < 0) {
		if (errno != ERANGE || !(gids = malloc(len)))
			return false;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) < 0) {
			free(gids);
			return false;
		}
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (gids[i] == group)
			found = true;
	if (gids != small)
		free(gids);
#endif
	return found;
}

static void conn_new(struct server *s, int fd, bool ro)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *c;
	const char *sock = ro ? "read-only" : "read-write";

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("%s socket: no peer credentials (%s): refused", sock, strerror(errno));
		close(fd);
		return;
	}
	if (cred.uid != s->uid && cred.uid != 0 &&
	    !(s->o.group_set && in_group(fd, s->o.group, cred.gid))) {
		log_warn("%s socket: refused pid %d, uid %u: not the daemon's user, root or the "
			 "socket group", sock, (int)cred.pid, (unsigned)cred.uid);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || rpc_scanner_new(&c->scan) < 0) {
		log_err("%s socket: out of memory: refused pid %d", sock, (int)cred.pid);
		free(c);
		close(fd);
		return;
	}
	c->srv = s;
	c->ro = ro;
	c->uid = cred.uid;
	c->pid = cred.pid;
	if (creds_from_socket(fd, &c->creds, NULL) < 0) {
		/* The groups are what may fail: act with uid and gid alone. */
		memset(&c->creds, 0, sizeof(c->creds));
		c->creds.uid = cred.uid;
		c->creds.gid = cred.gid;
	}
	c->refs = 1;
	c->tmr_fd = -1;
	c->out.total = &s->out_total;
	c->events = EPOLLIN | EPOLLRDHUP;
	__cds_wfcq_init(&c->done_head, &c->done_tail);
	c->done_task.fn = done_task_fn;
	c->ev_task.fn = ev_task_fn;
	c->close_task.fn = close_task_fn;
	c->drain_task.fn = drain_task_fn;
	CDS_INIT_LIST_HEAD(&c->subs);
	CDS_INIT_LIST_HEAD(&c->csubs);
	CDS_INIT_LIST_HEAD(&c->pump_link);

	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		rpc_scanner_free(c->scan);
		free(c);
		close(fd);
		return;
	}
	c->id = ++s->next_conn_id;
	cds_list_add(&c->link, &s->conns);
	c->listed_open = true;
	__atomic_store_n(&s->nopen, s->nopen + 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->lock);

	log_debug("client %" PRIu64 ": pid %d uid %u on the %s socket", c->id, (int)cred.pid,
		  (unsigned)cred.uid, sock);
	/* From here on c belongs to its loop thread, which may already run it. */
	if (io_watch_add(s->o.io, &c->w, fd, c->events, conn_cb) < 0) {
		log_err("client %" PRIu64 ": cannot watch its socket: %s", c->id, strerror(errno));
		pthread_mutex_lock(&s->lock);
		cds_list_del(&c->link);
		__atomic_store_n(&s->nopen, s->nopen - 1, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&s->lock);
		rpc_scanner_free(c->scan);
		free(c);
		close(fd);
	}
}

static void accept_cb(struct io_watch *w, uint32_t events)
{
	struct listener *l = container_of(w, struct listener, w);
	struct server *s = l->srv;

	for (int i = 0; i < ACCEPT_BUDGET && !l->closed; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/*
				 * Level-triggered: a pending client we cannot
				 * take would wake us forever.  Take it with the
				 * spare descriptor, and drop it.
				 */
				log_warn("out of file descriptors: refusing a client");
				if (s->reserve_fd >= 0) {
					close(s->reserve_fd);
					fd = accept(w->fd, NULL, NULL);
					if (fd >= 0)
						close(fd);
					s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				}
				return;
			}
			if (errno != EAGAIN)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		conn_new(s, fd, l->ro);
	}
}

/* ---- listeners ------------------------------------------------------------ */

/* Create the missing directories above path, mode 0700. */
static int mkdir_parents(const char *path)
{
	char buf[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* Is a daemon answering on path?  Removes a stale socket file. */
static int check_stale(const char *path, char *errbuf, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(errbuf, errlen, "%s exists and is not a socket: not touching it", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(errbuf, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	strcpy(sa.sun_path, path);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0) {
		snprintf(errbuf, errlen, "another corrald is already listening on %s", path);
		return -EADDRINUSE;
	}
	if (errno != ECONNREFUSED) {
		snprintf(errbuf, errlen, "cannot tell whether a daemon listens on %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	log_info("removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(errbuf, errlen, "cannot remove stale socket %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * A listening socket the service manager passed: checked by the caller
 * (service.c) to be a listening UNIX stream socket.  Made non-blocking; its
 * path (for messages) is the bound one.
 */
static int listener_take(struct server *s, struct listener *l, int fd, const char *path,
			 bool ro, char *errbuf, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len = sizeof(sa);
	int fl;

	l->srv = s;
	l->ro = ro;
	l->passed = true;
	l->w.fd = -1;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(errbuf, errlen, "the %s socket passed by the service manager (fd %d): %s",
			 ro ? "read-only" : "read-write", fd, strerror(errno));
		close(fd);
		return -EBADF;
	}
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && len > offsetof(struct sockaddr_un, sun_path) &&
	    sa.sun_path[0] == '/')
		l->path = strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
	else
		l->path = strdup(path);
	if (!l->path) {
		close(fd);
		return -ENOMEM;
	}
	l->w.fd = fd;
	return 0;
}

static int listener_open(struct server *s, struct listener *l, const char *path, bool ro,
			 char *errbuf, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t mode = s->o.group_set ? 0660 : 0600, old_umask;
	int fd, r;

	l->srv = s;
	l->ro = ro;
	l->w.fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(errbuf, errlen, "socket path %s is too long (at most %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	r = mkdir_parents(path);
	if (r < 0) {
		snprintf(errbuf, errlen, "cannot create the directory of %s: %s", path,
			 strerror(-r));
		return r;
	}
	r = check_stale(path, errbuf, errlen);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(errbuf, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	strcpy(sa.sun_path, path);
	/* Born with its final mode: no window where others could connect. */
	old_umask = umask(0777 & ~mode);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (r < 0) {
		r = -errno;
		snprintf(errbuf, errlen, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!(l->path = strdup(path))) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	if (s->o.group_set && (chown(path, (uid_t)-1, s->o.group) < 0 || chmod(path, mode) < 0)) {
		r = -errno;
		snprintf(errbuf, errlen, "cannot give %s to the socket group: %s", path,
			 strerror(errno));
		goto fail;
	}
	if (listen(fd, 4096) < 0) {
		r = -errno;
		snprintf(errbuf, errlen, "listen on %s: %s", path, strerror(errno));
		goto fail;
	}
	l->w.fd = fd;
	return 0;
fail:
	close(fd);
	unlink(path);
	free(l->path);
	l->path = NULL;
	return r;
}

/* Loop thread of the listeners. */
static void listener_close(struct listener *l)
{
	if (l->closed || l->w.fd < 0)
		return;
	l->closed = true;
	io_watch_del(&l->w);
	close(l->w.fd);
	/* A passed socket stays the service manager's: it listens on for the next start. */
	if (l->path && !l->passed)
		unlink(l->path);
}

static void stop_task_fn(struct io_task *t)
{
	struct server *s = container_of(t, struct server, stop_task);

	listener_close(&s->rw);
	listener_close(&s->ro);
	pthread_mutex_lock(&s->lock);
	s->listeners_closed = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int server_new(const struct server_opts *opts, struct server **ret, char *errbuf,
	       size_t errlen)
{
	struct server *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	int r;

	if (!s)
		return -ENOMEM;
	s->o = *opts;
	s->uid = geteuid();
	s->started_ns = now_ns();
	s->rw.w.fd = s->ro.w.fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	CDS_INIT_LIST_HEAD(&s->conns);
	s->stop_task.fn = stop_task_fn;
	s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	s->npumps = ioloop_nthreads(opts->io);
	s->pumps = calloc(s->npumps, sizeof(*s->pumps));
	s->spares = calloc(s->npumps, sizeof(*s->spares));
	if (!s->pumps || !s->spares || offload_new(1, &s->walk) < 0) {
		free(s->pumps);
		free(s->spares);
		if (s->reserve_fd >= 0)
			close(s->reserve_fd);
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < s->npumps; i++) {
		s->pumps[i].task.fn = pump_task_fn;
		s->pumps[i].srv = s;
		s->pumps[i].thr = ioloop_thr_at(opts->io, i);
		CDS_INIT_LIST_HEAD(&s->pumps[i].conns);
	}

	r = evbus_listen(opts->bus, bus_notify, s, &s->bus_l);
	if (r < 0)
		snprintf(errbuf, errlen, "out of memory");
	if (r == 0 && opts->rw_fd >= 0)
		r = listener_take(s, &s->rw, opts->rw_fd, opts->rw_path, false, errbuf, errlen);
	else if (r == 0)
		r = listener_open(s, &s->rw, opts->rw_path, false, errbuf, errlen);
	if (r == 0 && opts->ro_fd >= 0)
		r = listener_take(s, &s->ro, opts->ro_fd, opts->ro_path, true, errbuf, errlen);
	else if (r == 0)
		r = listener_open(s, &s->ro, opts->ro_path, true, errbuf, errlen);
	else if (opts->ro_fd >= 0)
		close(opts->ro_fd);
	if (r == 0) {
		r = io_watch_add(opts->io, &s->rw.w, s->rw.w.fd, EPOLLIN, accept_cb);
		if (r == 0) {
			r = io_watch_add_on(s->rw.w.thr, &s->ro.w, s->ro.w.fd, EPOLLIN, accept_cb);
			if (r < 0) {
				io_watch_del(&s->rw.w);
				/* Let the loop finish any event it took. */
				crcu_synchronize();
			}
		}
		if (r < 0)
			snprintf(errbuf, errlen, "cannot watch the sockets: %s", strerror(-r));
	}
	if (r < 0) {
		for (struct listener *l = &s->rw; l <= &s->ro; l++) {
			if (l->w.fd >= 0)
				close(l->w.fd);
			if (l->path && !l->passed)
				unlink(l->path);
			free(l->path);
		}
		if (s->reserve_fd >= 0)
			close(s->reserve_fd);
		if (s->bus_l) {
			evbus_unlisten(opts->bus, s->bus_l);
			crcu_synchronize();    /* no publisher is in bus_notify() */
			urcu_memb_barrier();            /* the listener is freed */
		}
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		offload_free(s->walk);
		free(s->pumps);
		free(s->spares);
		free(s);
		return r;
	}
	for (struct listener *l = &s->rw; l <= &s->ro; l++) {
		if (l->passed)
			log_info("listening on %s (%s, passed by the service manager)", l->path,
				 l->ro ? "read-only" : "read-write");
		else
			log_info("listening on %s (%s, mode %s)", l->path,
				 l->ro ? "read-only" : "read-write",
				 opts->group_set ? "0660" : "0600");
	}
	*ret = s;
	return 0;
}

/* Wait on s->cond until *flag or n == 0, at most STOP_WAIT_NS.  Under lock. */
static bool wait_locked(struct server *s, const bool *flag, const uint64_t *n)
{
	struct timespec ts;
	uint64_t deadline = now_ns() + STOP_WAIT_NS;

	ts.tv_sec = (time_t)(deadline / NSEC_PER_SEC);
	ts.tv_nsec = (long)(deadline % NSEC_PER_SEC);
	while (flag ? !*flag : *n != 0) {
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
			return false;
	}
	return true;
}

static void drain_task_fn(struct io_task *t)
{
	struct conn *c = container_of(t, struct conn, drain_task);

	crcu_read_lock();
	if (!c->closed) {
		c->draining = true;
		conn_service(c);        /* closes it now if nothing is owed */
	}
	conn_unref(c);
	crcu_read_unlock();
}

void server_stop_accepting(struct server *s)
{
	struct conn *c;

	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);

	io_post(s->rw.w.thr, &s->stop_task);
	pthread_mutex_lock(&s->lock);
	if (!wait_locked(s, &s->listeners_closed, NULL))
		log_warn("the listeners' thread did not answer in time");
	/*
	 * Every open connection stops taking requests; what it has buffered is
	 * answered "unavailable", its calls in flight are answered as their
	 * jobs end (the domains stop next), and it closes once nothing is owed.
	 */
	cds_list_for_each_entry(c, &s->conns, link) {
		if (!c->listed_open)
			continue;
		conn_ref(c);    /* for the task; safe: still holds its open reference */
		io_post(c->w.thr, &c->drain_task);
	}
	pthread_mutex_unlock(&s->lock);
}

void server_drain(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	if (!wait_locked(s, NULL, &s->nopen))
		log_warn("%" PRIu64 " clients still owed answers after %llu s", s->nopen,
			 STOP_WAIT_NS / NSEC_PER_SEC);
	pthread_mutex_unlock(&s->lock);
}

void server_stop(struct server *s)
{
	struct offload *walk;
	struct conn *c;
	unsigned posted = 0;

	server_stop_accepting(s);
	pthread_mutex_lock(&s->lock);
	/* Every connection still open: close it on its own thread. */
	cds_list_for_each_entry(c, &s->conns, link) {
		if (!c->listed_open)
			continue;
		conn_ref(c);    /* for the task; safe: still holds its open reference */
		io_post(c->w.thr, &c->close_task);
		posted++;
	}
	if (!wait_locked(s, NULL, &s->nopen))
		log_warn("%" PRIu64 " clients did not close in time", s->nopen);
	pthread_mutex_unlock(&s->lock);
	/*
	 * The walk thread answers what it was given (to connections closed
	 * by now: dropped on their threads, which still run) and stops.  A
	 * connection that did not close sends no walk after the grace period:
	 * it reads the pointer inside a read section.
	 */
	walk = s->walk;
	crcu_assign_pointer(s->walk, NULL);
	crcu_synchronize();
	offload_free(walk);
	/* No more pumps posted; one already queued runs before the loops end. */
	evbus_unlisten(s->o.bus, s->bus_l);
	s->bus_l = NULL;
	log_info("stopped listening; closed %u clients", posted);
}

void server_free(struct server *s)
{
	struct conn *c, *tmp;
	unsigned left = 0;

	if (!s)
		return;
	/*
	 * Loops and runtime are gone: nothing can call back.  Connections
	 * still here waited for jobs that never ended (the runtime stopped
	 * under them); their memory is ours to free now.
	 */
	pthread_mutex_lock(&s->lock);  /* for the checkers: nobody else is left */
	cds_list_for_each_entry_safe(c, tmp, &s->conns, link) {
		cds_list_del(&c->link);
		rpc_scanner_free(c->scan);
		free(c->in);
		obuf_fini(&c->out);
		free(c);
		left++;
	}
	pthread_mutex_unlock(&s->lock);
	if (left)
		log_debug("freed %u connections whose jobs never ended", left);
	if (s->bus_l)
		evbus_unlisten(s->o.bus, s->bus_l);
	free(s->pumps);
	for (unsigned i = 0; i < s->npumps; i++)
		for (unsigned k = 0; k < OBUF_SPARES; k++)
			free(s->spares[i].v[k].data);
	for (unsigned k = 0; k < OBUF_SPARES; k++)
		free(s->walk_spares[k]);
	free(s->spares);
	free(s->rw.path);
	free(s->ro.path);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

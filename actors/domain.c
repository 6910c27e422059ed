/* SPDX-License-Identifier: MIT */
/*
 * The domain actor: job queue, state, snapshot publication.
 */
#include "actors/domain.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <urcu/list.h>

#include "common/names.h"
#include "common/tsan.h"
#include "common/util.h"

enum {
	DOM_MSG_JOB = 1,        /* struct dom_job */
	DOM_MSG_DEADLINE,       /* struct dom_deadline */
	DOM_MSG_STEP,           /* struct dom_step */
	DOM_MSG_CALL,           /* struct dom_callmsg */
};

struct dom_callmsg {
	struct mbx_msg msg;
	void (*fn)(struct domain *d, void *arg);
	void *arg;
	void (*drop)(void *arg);
};

struct dom_deadline {
	struct mbx_msg msg;
	uint64_t at;                    /* the deadline it was armed for */
};

struct dom_step {
	struct mbx_msg msg;
	uint64_t job_id;
	int err;
	json_t *data;
};

_Static_assert(DOM_NAME_MAX <= UINT8_MAX, "a name's length fits struct domain's name_len");

struct domain {
	struct actor actor;
	/*
	 * Registry links (written by reg_add/reg_del under liburcu's rules),
	 * each next to the key a lookup compares, so a probe touches one
	 * cache line.  Keys are immutable after dom_new().
	 */
	struct cds_lfht_node name_node;
	char name[DOM_NAME_MAX + 1];
	struct cds_lfht_node uuid_node;
	uint8_t uuid[16];
	uint32_t dir_idx;               /* its slot in the directory; atomic (a hint to readers) */
	uint8_t name_len;               /* strlen(name), immutable */
	/* Published by the actor with rcu_assign_pointer; read by anyone. */
	struct dom_snapshot *snap;

	/* Everything below: domain actor only. */
	struct dom_job *holder;
	struct cds_list_head waiting;   /* FIFO: the order jobs take the domain */
	uint32_t nwaiting;
	/*
	 * The same jobs by deadline: a binary min-heap, so that the next
	 * deadline is found in O(1) and a job joins or leaves in O(log n),
	 * however many wait.
	 */
	struct dom_job **heap;
	uint32_t heap_cap;
	uint64_t timer_at;              /* the armed deadline timer's time; 0: none */
	struct cds_list_head ended;     /* jobs ended this turn, done not yet called */
	bool dirty;                     /* publish at the end of this message */
	bool shutdown;                  /* atomic: stopping because the daemon is */
	enum dom_state state;
	const char *reason;
	int pid;
	bool autostart;
	enum dom_mon_state mon;
	uint64_t mon_since_ns;
	uint64_t seq;
	uint64_t jobs_done, jobs_failed, jobs_busy, jobs_timeout, events;
	void *ext;
	void (*on_stop)(struct domain *d);
	void (*free_ext)(void *);
};

static uint64_t next_job_id = 1;       /* atomic; job ids are daemon-wide */
static uint32_t waiting_max = DOM_WAITING_MAX_DEFAULT;

void dom_set_waiting_max(uint32_t max)
{
	waiting_max = max ? max : DOM_WAITING_MAX_DEFAULT;
}

/* ---- the waiting jobs' deadline heap (actor only) ------------------------ */

static void heap_set(struct domain *d, uint32_t i, struct dom_job *job)
{
	d->heap[i] = job;
	job->heap_idx = i;
}

static void heap_up(struct domain *d, uint32_t i)
{
	struct dom_job *job = d->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (d->heap[parent]->deadline_ns <= job->deadline_ns)
			break;
		heap_set(d, i, d->heap[parent]);
		i = parent;
	}
	heap_set(d, i, job);
}

static void heap_down(struct domain *d, uint32_t i)
{
	struct dom_job *job = d->heap[i];
	uint32_t n = d->nwaiting;

	for (;;) {
		uint32_t l = 2 * i + 1, m = i;
		uint64_t best = job->deadline_ns;

		if (l < n && d->heap[l]->deadline_ns < best) {
			m = l;
			best = d->heap[l]->deadline_ns;
		}
		if (l + 1 < n && d->heap[l + 1]->deadline_ns < best)
			m = l + 1;
		if (m == i)
			break;
		heap_set(d, i, d->heap[m]);
		i = m;
	}
	heap_set(d, i, job);
}

/* Queue job behind the others.  0, or -ENOMEM (nothing changed). */
static int waiting_add(struct domain *d, struct dom_job *job)
{
	if (d->nwaiting == d->heap_cap) {
		uint32_t cap = d->heap_cap ? d->heap_cap * 2 : 16;
		struct dom_job **h = realloc(d->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		d->heap = h;
		d->heap_cap = cap;
	}
	cds_list_add_tail(&job->link, &d->waiting);
	heap_set(d, d->nwaiting++, job);
	heap_up(d, job->heap_idx);
	return 0;
}

/* Take job out of the queue, wherever it is: O(log n). */
static void waiting_del(struct domain *d, struct dom_job *job)
{
	uint32_t i = job->heap_idx;
	struct dom_job *last;

	BUG_ON(i >= d->nwaiting || d->heap[i] != job);
	cds_list_del_init(&job->link);
	last = d->heap[--d->nwaiting];
	if (last != job) {
		heap_set(d, i, last);
		if (i > 0 && d->heap[(i - 1) / 2]->deadline_ns > last->deadline_ns)
			heap_up(d, i);
		else
			heap_down(d, i);
	}
	if (!d->nwaiting && d->heap_cap > 64) {
		free(d->heap);          /* a burst is over: give the memory back */
		d->heap = NULL;
		d->heap_cap = 0;
	}
}

static const char *const state_names[DOM_STATE_COUNT] = {
	[DOM_SHUTOFF] = "shutoff",
	[DOM_STARTING] = "starting",
	[DOM_RUNNING] = "running",
	[DOM_PAUSED] = "paused",
	[DOM_SHUTTING_DOWN] = "shutting-down",
	[DOM_CRASHED] = "crashed",
	[DOM_PMSUSPENDED] = "pmsuspended",
};

const char *dom_state_name(enum dom_state s)
{
	return (unsigned)s < DOM_STATE_COUNT ? state_names[s] : "unknown";
}

const char *dom_mon_state_name(enum dom_mon_state s)
{
	switch (s) {
	case DOM_MON_NONE: return "none";
	case DOM_MON_CONNECTING: return "connecting";
	case DOM_MON_OK: return "ok";
	case DOM_MON_UNRESPONSIVE: return "unresponsive";
	case DOM_MON_BROKEN: return "broken";
	}
	return "unknown";
}

bool dom_name_valid(const char *name)
{
	return corral_name_valid(name);
}

static struct domain *to_dom(struct actor *a)
{
	return container_of(a, struct domain, actor);
}

/* ---- snapshot publication ------------------------------------------------ */

static void snap_free(struct dom_snapshot *s)
{
	if (s)
		free(__atomic_load_n(&s->memo, __ATOMIC_ACQUIRE));
	free(s);
}

static void snap_free_rcu_cb(struct rcu_head *head)
{
	crcu_reclaim_begin(head);
	snap_free(container_of(head, struct dom_snapshot, rcu));
}

/*
 * Copy the actor's state into a fresh snapshot and publish it.  Readers see
 * either the old or the new one, never a mix.  On allocation failure the old
 * snapshot stays (stale but consistent) and the next change retries.
 */
static void dom_publish(struct domain *d)
{
	struct dom_snapshot *s = calloc(1, sizeof(*s)), *old;

	if (!s)
		return;
	s->seq = ++d->seq;
	memcpy(s->name, d->name, sizeof(s->name));
	memcpy(s->uuid, d->uuid, sizeof(s->uuid));
	s->state = d->state;
	s->reason = d->reason;
	s->pid = d->pid;
	if (d->holder) {
		s->job.id = d->holder->id;
		s->job.name = d->holder->ops->name;
		s->job.started_ns = d->holder->started_ns;
	}
	s->jobs_waiting = d->nwaiting;
	s->autostart = d->autostart;
	s->mon = d->mon;
	s->mon_since_ns = d->mon_since_ns;
	s->counters.jobs_done = d->jobs_done;
	s->counters.jobs_failed = d->jobs_failed;
	s->counters.jobs_busy = d->jobs_busy;
	s->counters.jobs_timeout = d->jobs_timeout;
	s->counters.events = d->events;
	s->updated_wall_ns = wall_ns();

	old = d->snap;
	crcu_assign_pointer(d->snap, s);
	if (old)
		crcu_call(&old->rcu, snap_free_rcu_cb);
	d->dirty = false;
}

const struct dom_snapshot *dom_snap_rcu(struct domain *d)
{
	return crcu_dereference(d->snap);
}

void **dom_snap_memo_rcu(const struct dom_snapshot *sn)
{
	/* The snapshot is immutable but for this one slot, set once. */
	return (void **)&sn->memo;
}

void dom_prefetch_rcu(struct domain *d, int step)
{
	const char *sn;

	if (step == 0) {
		__builtin_prefetch(&d->snap);
		__builtin_prefetch(&d->ext);
		return;
	}
	if (step == 2) {
		/* Its rendering (dom_snap_memo_rcu), when a reader made one. */
		const char *m = __atomic_load_n(&crcu_dereference(d->snap)->memo, __ATOMIC_RELAXED);

		if (m) {
			__builtin_prefetch(m);
			__builtin_prefetch(m + 64);
			__builtin_prefetch(m + 128);
		}
		return;
	}
	/* Every line of it: a list entry reads its name, state, job and monitor. */
	sn = (const char *)crcu_dereference(d->snap);
	for (size_t off = 0; off < sizeof(struct dom_snapshot); off += 64)
		__builtin_prefetch(sn + off);
	__builtin_prefetch(sn + sizeof(struct dom_snapshot) - 1);
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_msg_drop(struct mbx_msg *msg, int err)
{
	struct dom_job *job = container_of(msg, struct dom_job, msg);

	job->err = err;
	if (job->dom && __atomic_load_n(&job->dom->shutdown, __ATOMIC_ACQUIRE)) {
		job->code = DOM_ERR_UNAVAILABLE;
		snprintf(job->errmsg, sizeof(job->errmsg), "corrald is shutting down: job '%s' "
			 "on domain '%s' not run", job->ops->name, job->dom->name);
	} else {
		job->code = DOM_ERR_GONE;
		snprintf(job->errmsg, sizeof(job->errmsg), "domain '%s' is gone: job '%s' not run",
			 job->dom ? job->dom->name : "?", job->ops->name);
	}
	job->done(job, job->done_arg);
}

int dom_job_new(const struct dom_job_ops *ops, void *priv, uint64_t timeout_ns,
		dom_job_done_fn done, void *done_arg, struct dom_job **ret)
{
	struct dom_job *job = calloc(1, sizeof(*job));

	if (!job)
		return -ENOMEM;
	BUG_ON(!ops || !ops->start || !done);
	mbx_msg_init(&job->msg, DOM_MSG_JOB, job_msg_drop);
	CDS_INIT_LIST_HEAD(&job->link);
	job->ops = ops;
	job->priv = priv;
	job->id = __atomic_fetch_add(&next_job_id, 1, __ATOMIC_RELAXED);
	job->submitted_ns = now_ns();
	job->deadline_ns = job->submitted_ns + timeout_ns;
	job->done = done;
	job->done_arg = done_arg;
	*ret = job;
	return 0;
}

void dom_job_free(struct dom_job *job)
{
	if (!job)
		return;
	if (job->ops->free_priv)
		job->ops->free_priv(job->priv);
	json_decref(job->result);
	free(job);
}

int dom_submit(struct domain *d, struct dom_job *job)
{
	job->dom = d;
	job->msg.deadline_ns = job->deadline_ns;
	return actor_send(&d->actor, &job->msg);
}

static void deadline_msg_drop(struct mbx_msg *msg, int err)
{
	free(container_of(msg, struct dom_deadline, msg));
}

static void step_msg_drop(struct mbx_msg *msg, int err)
{
	struct dom_step *st = container_of(msg, struct dom_step, msg);

	json_decref(st->data);
	free(st);
}

static struct dom_step *step_new(uint64_t job_id, int err, json_t *data)
{
	struct dom_step *st = malloc(sizeof(*st));

	if (!st) {
		json_decref(data);
		return NULL;
	}
	mbx_msg_init(&st->msg, DOM_MSG_STEP, step_msg_drop);
	st->job_id = job_id;
	st->err = err;
	st->data = data;
	return st;
}

int dom_job_step(struct domain *d, uint64_t job_id, int err, json_t *data)
{
	struct dom_step *st = step_new(job_id, err, data);
	int r;

	if (!st)
		return -ENOMEM;
	r = actor_send(&d->actor, &st->msg);
	if (r < 0)
		step_msg_drop(&st->msg, r);
	return r;
}

int dom_job_step_at(struct domain *d, uint64_t job_id, int err, json_t *data, uint64_t at_ns)
{
	struct dom_step *st = step_new(job_id, err, data);

	if (!st)
		return -ENOMEM;
	return rt_send_at(&d->actor, &st->msg, at_ns);
}

static void call_msg_drop(struct mbx_msg *msg, int err)
{
	struct dom_callmsg *cm = container_of(msg, struct dom_callmsg, msg);

	if (cm->drop)
		cm->drop(cm->arg);
	free(cm);
}

int dom_call(struct domain *d, void (*fn)(struct domain *d, void *arg), void *arg,
	     void (*drop)(void *arg))
{
	struct dom_callmsg *cm = malloc(sizeof(*cm));
	int r;

	if (!cm) {
		if (drop)
			drop(arg);
		return -ENOMEM;
	}
	mbx_msg_init(&cm->msg, DOM_MSG_CALL, call_msg_drop);
	cm->fn = fn;
	cm->arg = arg;
	cm->drop = drop;
	r = actor_send(&d->actor, &cm->msg);
	if (r < 0)
		call_msg_drop(&cm->msg, r);
	return r;
}

int dom_stop_for_shutdown(struct domain *d)
{
	/* Read by the stop's turn and by the drops of jobs queued behind it. */
	__atomic_store_n(&d->shutdown, true, __ATOMIC_RELEASE);
	return actor_stop(&d->actor);
}

int dom_call_at(struct domain *d, void (*fn)(struct domain *d, void *arg), void *arg,
		void (*drop)(void *arg), uint64_t at_ns)
{
	struct dom_callmsg *cm = malloc(sizeof(*cm));
	int r;

	if (!cm) {
		if (drop)
			drop(arg);
		return -ENOMEM;
	}
	mbx_msg_init(&cm->msg, DOM_MSG_CALL, call_msg_drop);
	cm->fn = fn;
	cm->arg = arg;
	cm->drop = drop;
	/* The timer thread sends it then; a stopped domain drops it (drop runs). */
	r = rt_send_at(&d->actor, &cm->msg, at_ns);
	if (r < 0)
		call_msg_drop(&cm->msg, r);
	return r;
}

struct dom_job *dom_holder(struct domain *d)
{
	ASSERT_ON_ACTOR(&d->actor);
	return d->holder;
}

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* End a job that no longer holds the domain (or never did).  Actor only. */
static void job_end(struct domain *d, struct dom_job *job)
{
	switch (job->code) {
	case DOM_ERR_NONE: d->jobs_done++; break;
	case DOM_ERR_BUSY: d->jobs_busy++; break;
	case DOM_ERR_TIMEOUT: d->jobs_timeout++; break;
	default: d->jobs_failed++; break;
	}
	d->dirty = true;
	/*
	 * done runs at the end of the turn, after the snapshot showing the
	 * job's effect is published: whoever hears of the end and asks again
	 * reads that snapshot (read-your-writes).
	 */
	cds_list_add_tail(&job->link, &d->ended);
}

/* End of a turn: publish, then tell the ended jobs' owners.  Actor only. */
static void dom_turn_end(struct domain *d)
{
	struct dom_job *job;

	if (d->dirty)
		dom_publish(d);
	while (!cds_list_empty(&d->ended)) {
		job = cds_list_first_entry(&d->ended, struct dom_job, link);
		cds_list_del_init(&job->link);
		job->done(job, job->done_arg);  /* may free job */
	}
}

static void job_fail_busy(struct domain *d, struct dom_job *job, uint64_t now)
{
	job->err = -EBUSY;
	job->code = DOM_ERR_BUSY;
	if (d->holder)
		snprintf(job->errmsg, sizeof(job->errmsg),
			 "domain '%s' is busy: job '%s' (id %" PRIu64 ") has held it for %.1f s; "
			 "'%s' gave up after %.1f s",
			 d->name, d->holder->ops->name, d->holder->id,
			 secs(now - d->holder->started_ns), job->ops->name,
			 secs(now - job->submitted_ns));
	else
		snprintf(job->errmsg, sizeof(job->errmsg),
			 "domain '%s' is busy: '%s' gave up after %.1f s before the domain "
			 "could take it", d->name, job->ops->name, secs(now - job->submitted_ns));
	job_end(d, job);
}

void dom_job_finish(struct domain *d, struct dom_job *job, int err, int code,
		    json_t *result, const char *fmt, ...)
{
	va_list ap;

	ASSERT_ON_ACTOR(&d->actor);
	BUG_ON(d->holder != job);
	d->holder = NULL;
	job->err = err;
	job->code = err ? (code ? code : DOM_ERR_FAILED) : DOM_ERR_NONE;
	json_decref(job->result);
	job->result = result;
	job->errmsg[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(job->errmsg, sizeof(job->errmsg), fmt, ap);
		va_end(ap);
	}
	job_end(d, job);
}

static void job_start(struct domain *d, struct dom_job *job)
{
	d->holder = job;
	job->started_ns = now_ns();
	d->dirty = true;
	job->ops->start(d, job);
}

/*
 * Hand the domain to the next waiting job while nobody holds it.  A job
 * that finishes inside its start() leaves the domain free again, so this is
 * a loop, not a recursion.
 */
static void dom_kick(struct domain *d)
{
	while (!d->holder && !cds_list_empty(&d->waiting)) {
		struct dom_job *job = cds_list_first_entry(&d->waiting, struct dom_job, link);
		uint64_t now = now_ns();

		waiting_del(d, job);
		d->dirty = true;
		if (now > job->deadline_ns)
			job_fail_busy(d, job, now);
		else
			job_start(d, job);
	}
}

static void job_timeout_holder(struct domain *d, struct dom_job *job)
{
	uint64_t held = now_ns() - job->started_ns;

	if (job->ops->abort)
		job->ops->abort(d, job, -ETIMEDOUT);
	if (d->holder != job)
		return;         /* abort finished it itself */
	dom_job_finish(d, job, -ETIMEDOUT, DOM_ERR_TIMEOUT, NULL,
		       "domain '%s': job '%s' (id %" PRIu64 ") timed out after %.1f s "
		       "(%.1f s waiting, %.1f s holding the domain)",
		       d->name, job->ops->name, job->id, secs(now_ns() - job->submitted_ns),
		       secs(job->started_ns - job->submitted_ns), secs(held));
}

/*
 * One deadline timer per domain, for the earliest deadline among the holder
 * and the waiting jobs: a job that ends early leaves no timer behind (only
 * the domain's one, which finds nothing to do and re-arms if needed).
 */
static void dom_rearm(struct domain *d)
{
	uint64_t min = d->holder ? d->holder->deadline_ns : UINT64_MAX;
	struct dom_deadline *dl;

	if (d->nwaiting && d->heap[0]->deadline_ns < min)
		min = d->heap[0]->deadline_ns;
	if (min == UINT64_MAX || (d->timer_at && d->timer_at <= min))
		return;         /* nothing to time, or a timer fires early enough */
	dl = malloc(sizeof(*dl));
	if (!dl)
		return;         /* retried after the next message */
	mbx_msg_init(&dl->msg, DOM_MSG_DEADLINE, deadline_msg_drop);
	dl->at = min;
	d->timer_at = min;
	rt_send_at(&d->actor, &dl->msg, min);
}

static void handle_deadline(struct domain *d, uint64_t at)
{
	uint64_t now = now_ns();

	if (at == d->timer_at)
		d->timer_at = 0;        /* the armed one fired; dom_rearm arms the next */
	/* Waiters first: their error names the holder.  Only those due. */
	while (d->nwaiting && now >= d->heap[0]->deadline_ns) {
		struct dom_job *job = d->heap[0];

		waiting_del(d, job);
		d->dirty = true;
		job_fail_busy(d, job, now);
	}
	if (d->holder && now >= d->holder->deadline_ns)
		job_timeout_holder(d, d->holder);
}

static void handle_job(struct domain *d, struct dom_job *job)
{
	if (job->preempt && d->holder) {
		/* destroy: the holder ends now, whatever it waits for. */
		struct dom_job *h = d->holder;

		if (h->ops->abort)
			h->ops->abort(d, h, -ECANCELED);
		if (d->holder == h)
			dom_job_finish(d, h, -ECANCELED, DOM_ERR_CANCELLED, NULL,
				       "domain '%s': job '%s' (id %" PRIu64 ") was cancelled by "
				       "'%s' (id %" PRIu64 ")", d->name, h->ops->name, h->id,
				       job->ops->name, job->id);
	}
	if (!d->holder) {
		job_start(d, job);      /* free domain: take it now */
		return;
	}
	if (d->nwaiting >= waiting_max) {
		job->err = -EBUSY;
		job->code = DOM_ERR_BUSY;
		snprintf(job->errmsg, sizeof(job->errmsg),
			 "domain '%s' is busy: job '%s' (id %" PRIu64 ") has held it for %.1f s "
			 "and %u jobs wait already (at most %u, --waiting-jobs-max); '%s' is "
			 "refused", d->name, d->holder->ops->name, d->holder->id,
			 secs(now_ns() - d->holder->started_ns), d->nwaiting, waiting_max,
			 job->ops->name);
		job_end(d, job);
		return;
	}
	if (waiting_add(d, job) < 0) {
		job->err = -ENOMEM;
		job->code = DOM_ERR_FAILED;
		snprintf(job->errmsg, sizeof(job->errmsg), "domain '%s': corrald is out of "
			 "memory: '%s' could not be queued", d->name, job->ops->name);
		job_end(d, job);
		return;
	}
	d->dirty = true;
}

static void dom_handle(struct actor *a, struct mbx_msg *msg)
{
	struct domain *d = to_dom(a);

	switch (msg->type) {
	case DOM_MSG_JOB:
		handle_job(d, container_of(msg, struct dom_job, msg));
		break;
	case DOM_MSG_DEADLINE: {
		struct dom_deadline *dl = container_of(msg, struct dom_deadline, msg);

		handle_deadline(d, dl->at);
		free(dl);
		break;
	}
	case DOM_MSG_STEP: {
		struct dom_step *st = container_of(msg, struct dom_step, msg);
		struct dom_job *job = d->holder;

		if (job && job->id == st->job_id && job->ops->step) {
			job->ops->step(d, job, st->err, st->data);
			st->data = NULL;
		}
		step_msg_drop(&st->msg, 0);
		break;
	}
	case DOM_MSG_CALL: {
		struct dom_callmsg *cm = container_of(msg, struct dom_callmsg, msg);

		cm->fn(d, cm->arg);
		free(cm);
		break;
	}
	default:
		BUG_ON(msg->type != DOM_MSG_JOB);
	}
	dom_kick(d);
	dom_rearm(d);
}

/* A job request whose deadline passed while it sat in the mailbox. */
static void dom_expire(struct actor *a, struct mbx_msg *msg)
{
	struct domain *d = to_dom(a);

	if (msg->type != DOM_MSG_JOB) {
		msg->deadline_ns = 0;
		dom_handle(a, msg);
		return;
	}
	job_fail_busy(d, container_of(msg, struct dom_job, msg), now_ns());
}

/*
 * The turn's messages are handled: one snapshot for all of them (a QMP
 * event and the reply after it, read together, come in one turn), then
 * the ended jobs' owners are told.
 */
static void dom_turn_end_cb(struct actor *a)
{
	dom_turn_end(to_dom(a));
}

/* The domain is stopping: every job it holds or queues ends now. */
static void dom_stopping(struct actor *a)
{
	struct domain *d = to_dom(a);
	struct dom_job *job, *tmp;
	bool shutdown = __atomic_load_n(&d->shutdown, __ATOMIC_ACQUIRE);

	if (d->holder) {
		job = d->holder;
		if (job->ops->abort)
			job->ops->abort(d, job, -ESHUTDOWN);
		if (d->holder == job && shutdown)
			dom_job_finish(d, job, -ESHUTDOWN, DOM_ERR_UNAVAILABLE, NULL,
				       "corrald is shutting down: job '%s' (id %" PRIu64 ") on "
				       "domain '%s' did not finish", job->ops->name, job->id,
				       d->name);
		else if (d->holder == job)
			dom_job_finish(d, job, -ESHUTDOWN, DOM_ERR_GONE, NULL,
				       "domain '%s' was removed while job '%s' (id %" PRIu64
				       ") held it", d->name, job->ops->name, job->id);
	}
	cds_list_for_each_entry_safe(job, tmp, &d->waiting, link) {
		waiting_del(d, job);
		job->err = -ESHUTDOWN;
		job->code = shutdown ? DOM_ERR_UNAVAILABLE : DOM_ERR_GONE;
		if (shutdown)
			snprintf(job->errmsg, sizeof(job->errmsg), "corrald is shutting down: job "
				 "'%s' on domain '%s' not run", job->ops->name, d->name);
		else
			snprintf(job->errmsg, sizeof(job->errmsg),
				 "domain '%s' was removed before job '%s' could run", d->name,
				 job->ops->name);
		job_end(d, job);
	}
	if (d->on_stop)
		d->on_stop(d);
	d->dirty = true;
	dom_turn_end(d);
}

/* Last reference gone, after a grace period: no reader can see d. */
static void dom_free(struct actor *a)
{
	struct domain *d = to_dom(a);

	if (d->free_ext)
		d->free_ext(d->ext);
	free(d->heap);
	snap_free(d->snap);
	free(d);
}

static const struct actor_ops dom_actor_ops = {
	.kind = "domain",
	.handle = dom_handle,
	.expire = dom_expire,
	.stopping = dom_stopping,
	.turn_end = dom_turn_end_cb,
	.free = dom_free,
};

int dom_new(struct rt *rt, const char *name, const uint8_t *uuid, struct domain **ret,
	    char *errbuf, size_t errlen)
{
	struct domain *d;

	if (!dom_name_valid(name)) {
		snprintf(errbuf, errlen,
			 "invalid domain name: must match " CORRAL_NAME_RULE);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	actor_init(&d->actor, rt, &dom_actor_ops);
	strcpy(d->name, name);
	d->name_len = (uint8_t)strlen(name);
	if (uuid) {
		memcpy(d->uuid, uuid, 16);
	} else {
		if (getrandom(d->uuid, 16, 0) != 16) {
			snprintf(errbuf, errlen, "cannot generate a UUID");
			free(d);
			return -EIO;
		}
		d->uuid[6] = (uint8_t)((d->uuid[6] & 0x0f) | 0x40);   /* version 4 */
		d->uuid[8] = (uint8_t)((d->uuid[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
	}
	cds_lfht_node_init(&d->name_node);
	cds_lfht_node_init(&d->uuid_node);
	CDS_INIT_LIST_HEAD(&d->waiting);
	CDS_INIT_LIST_HEAD(&d->ended);
	d->state = DOM_SHUTOFF;
	d->reason = "defined";
	d->mon_since_ns = now_ns();
	/* Not yet shared: publish the first snapshot directly. */
	dom_publish(d);
	*ret = d;
	return 0;
}

struct actor *dom_actor(struct domain *d) { return &d->actor; }
const char *dom_name(const struct domain *d) { return d->name; }
size_t dom_name_len(const struct domain *d) { return d->name_len; }
const uint8_t *dom_uuid(const struct domain *d) { return d->uuid; }
void dom_ref(struct domain *d) { actor_ref(&d->actor); }
void dom_unref(struct domain *d) { actor_unref(&d->actor); }

void dom_set_state(struct domain *d, enum dom_state st, const char *reason)
{
	ASSERT_ON_ACTOR(&d->actor);
	d->state = st;
	d->reason = reason;
	d->dirty = true;
}

void dom_set_pid(struct domain *d, int pid)
{
	ASSERT_ON_ACTOR(&d->actor);
	d->pid = pid;
	d->dirty = true;
}

void dom_set_monitor(struct domain *d, enum dom_mon_state ms)
{
	ASSERT_ON_ACTOR(&d->actor);
	if (d->mon == ms)
		return;
	d->mon = ms;
	d->mon_since_ns = now_ns();
	d->dirty = true;
}

void dom_set_autostart(struct domain *d, bool on)
{
	d->autostart = on;
	if (actor_is_current(&d->actor)) {
		d->dirty = true;
		return;
	}
	/* Not shared yet: no turn of d can run now, nor publish; nobody reads it. */
	dom_publish(d);
}

void dom_count_event(struct domain *d)
{
	ASSERT_ON_ACTOR(&d->actor);
	d->events++;
	d->dirty = true;
}

enum dom_state dom_state_actor(struct domain *d)
{
	ASSERT_ON_ACTOR(&d->actor);
	return d->state;
}

const char *dom_reason_actor(struct domain *d)
{
	ASSERT_ON_ACTOR(&d->actor);
	return d->reason;
}

void *dom_ext(struct domain *d) { return d->ext; }

void dom_set_ext(struct domain *d, void *ext, void (*on_stop)(struct domain *d),
		 void (*free_ext)(void *))
{
	d->ext = ext;
	d->on_stop = on_stop;
	d->free_ext = free_ext;
}

/* ---- registry ------------------------------------------------------------ */

/*
 * The directory: every registered domain in an array, for walks.  A walk of
 * the name table visits its bucket nodes too and takes a cache miss per
 * node, one after the other (in hung-10 at 10,000, with its list and stats
 * over every domain, that walk was 8 % of corrald's CPU); the directory is
 * read in order and the domains ahead prefetched.
 * Readers load the array and its count under RCU and skip empty slots.
 * Writers (reg_add, reg_del) hold the registry's mutex through the tables'
 * update too (memory only, never I/O; lookups and walks take nothing): an add
 * fills the slot after the count and then publishes the count; a delete
 * empties its slot.  A domain never moves within an array: a full array is
 * replaced by a new one (the holes squeezed out, room for twice the
 * domains it holds), published, and the old one freed after a grace period,
 * so a walk on either sees each domain present throughout exactly once.
 */
struct reg_dir {
	struct rcu_head rcu;
	uint32_t n;                     /* slots used; atomic (release/acquire) */
	uint32_t cap;
	uint32_t holes;                 /* emptied slots below n; writers only */
	struct domain *v[];             /* atomic pointers; NULL: an empty slot */
};

#define REG_DIR_MIN 1024

struct registry {
	struct cds_lfht *by_name;
	struct cds_lfht *by_uuid;
	uint64_t count;                 /* atomic */
	pthread_mutex_t dir_lock;       /* writers of dir; memory only under it */
	struct reg_dir *dir;            /* RCU-published */
};

static struct reg_dir *dir_alloc(uint32_t cap)
{
	struct reg_dir *dir = calloc(1, sizeof(*dir) + (size_t)cap * sizeof(dir->v[0]));

	if (dir)
		dir->cap = cap;
	return dir;
}

static void dir_free_rcu(struct rcu_head *head)
{
	crcu_reclaim_begin(head);
	free(container_of(head, struct reg_dir, rcu));
}

/* A slot for d (dir_lock held): after the count, in a new array when full. */
static int dir_add(struct registry *reg, struct domain *d)
{
	struct reg_dir *dir = reg->dir, *nd;
	uint32_t live, i, k = 0;

	if (dir->n == dir->cap) {
		live = dir->n - dir->holes;
		if (live > UINT32_MAX / 4)
			return -ENOMEM;
		nd = dir_alloc(live * 2 > REG_DIR_MIN ? live * 2 : REG_DIR_MIN);
		if (!nd)
			return -ENOMEM;
		for (i = 0; i < dir->n; i++) {
			struct domain *o = dir->v[i];

			if (o) {
				__atomic_store_n(&o->dir_idx, k, __ATOMIC_RELAXED);
				nd->v[k++] = o;
			}
		}
		nd->n = k;
		crcu_assign_pointer(reg->dir, nd);
		crcu_call(&dir->rcu, dir_free_rcu);
		dir = nd;
	}
	__atomic_store_n(&d->dir_idx, dir->n, __ATOMIC_RELAXED);
	crcu_assign_pointer(dir->v[dir->n], d);
	__atomic_store_n(&dir->n, dir->n + 1, __ATOMIC_RELEASE);
	return 0;
}

static void dir_del(struct registry *reg, struct domain *d)
{
	struct reg_dir *dir = reg->dir;

	BUG_ON(d->dir_idx >= dir->n || dir->v[d->dir_idx] != d);
	__atomic_store_n(&dir->v[d->dir_idx], NULL, __ATOMIC_RELAXED);
	dir->holes++;
}

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static uint64_t hash_uuid(const uint8_t *u)
{
	uint64_t a, b;

	memcpy(&a, u, 8);
	memcpy(&b, u + 8, 8);
	a ^= b * 0x9e3779b97f4a7c15ULL;
	return a ^ (a >> 31);
}

static int match_name(struct cds_lfht_node *node, const void *key)
{
	return strcmp(container_of(node, struct domain, name_node)->name, key) == 0;
}

static int match_uuid(struct cds_lfht_node *node, const void *key)
{
	return memcmp(container_of(node, struct domain, uuid_node)->uuid, key, 16) == 0;
}

int reg_new(struct registry **ret)
{
	struct registry *reg = calloc(1, sizeof(*reg));
	int flags = CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING;

	if (!reg)
		return -ENOMEM;
	pthread_mutex_init(&reg->dir_lock, NULL);
	reg->dir = dir_alloc(REG_DIR_MIN);
	reg->by_name = cds_lfht_new_flavor(1024, 1024, 0, flags, &urcu_memb_flavor, NULL);
	reg->by_uuid = cds_lfht_new_flavor(1024, 1024, 0, flags, &urcu_memb_flavor, NULL);
	if (!reg->dir || !reg->by_name || !reg->by_uuid) {
		reg_free(reg);
		return -ENOMEM;
	}
	*ret = reg;
	return 0;
}

void reg_free(struct registry *reg)
{
	if (!reg)
		return;
	if (reg->by_name)
		BUG_ON(cds_lfht_destroy(reg->by_name, NULL) != 0);
	if (reg->by_uuid)
		BUG_ON(cds_lfht_destroy(reg->by_uuid, NULL) != 0);
	free(reg->dir);
	pthread_mutex_destroy(&reg->dir_lock);
	free(reg);
}

int reg_add(struct registry *reg, struct domain *d)
{
	struct cds_lfht_node *got;
	int r = 0;

	/*
	 * rculfhash publishes the node with a release (a cmpxchg in liburcu's
	 * assembly) and a lookup reads it with a dependency: ordering TSan
	 * cannot see.  Say it: everything written to d before the add happens
	 * before whatever a reader on another thread does with it.
	 */
	tsan_handoff_release(d);
	/*
	 * The whole add under the directory's mutex (memory only): a reg_del
	 * of d by another thread that found it by name cannot come between
	 * the tables and the directory, nor before the reference is taken.
	 */
	pthread_mutex_lock(&reg->dir_lock);
	crcu_read_lock();
	got = cds_lfht_add_unique(reg->by_name, hash_name(d->name), match_name, d->name,
				  &d->name_node);
	if (got != &d->name_node) {
		r = -EEXIST;
		goto out;
	}
	got = cds_lfht_add_unique(reg->by_uuid, hash_uuid(d->uuid), match_uuid, d->uuid,
				  &d->uuid_node);
	if (got != &d->uuid_node) {
		cds_lfht_del(reg->by_name, &d->name_node);
		r = -EEXIST;
		goto out;
	}
	r = dir_add(reg, d);
	if (r < 0) {
		cds_lfht_del(reg->by_uuid, &d->uuid_node);
		cds_lfht_del(reg->by_name, &d->name_node);
		goto out;
	}
	actor_ref(&d->actor);
	__atomic_fetch_add(&reg->count, 1, __ATOMIC_RELAXED);
out:
	crcu_read_unlock();
	pthread_mutex_unlock(&reg->dir_lock);
	return r;
}

int reg_del(struct registry *reg, struct domain *d)
{
	int r;

	pthread_mutex_lock(&reg->dir_lock);
	crcu_read_lock();
	r = cds_lfht_del(reg->by_name, &d->name_node);
	if (r == 0)
		BUG_ON(cds_lfht_del(reg->by_uuid, &d->uuid_node) != 0);
	crcu_read_unlock();
	/* Only the delete that took d out of the table empties its slot: once. */
	if (r == 0)
		dir_del(reg, d);
	pthread_mutex_unlock(&reg->dir_lock);
	if (r < 0)
		return -ENOENT;
	__atomic_fetch_sub(&reg->count, 1, __ATOMIC_RELAXED);
	/* Readers that found d keep it: the free waits for a grace period. */
	actor_unref(&d->actor);
	return 0;
}

struct domain *reg_lookup_name_rcu(struct registry *reg, const char *name)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(reg->by_name, hash_name(name), match_name, name, &iter);
	node = cds_lfht_iter_get_node(&iter);
	if (!node)
		return NULL;
	tsan_handoff_acquire(container_of(node, struct domain, name_node));     /* see reg_add */
	return container_of(node, struct domain, name_node);
}

struct domain *reg_lookup_name_after_rcu(struct registry *reg, const char *name,
					 struct domain *prev)
{
	struct reg_dir *dir = crcu_dereference(reg->dir);
	uint32_t n = __atomic_load_n(&dir->n, __ATOMIC_ACQUIRE);
	uint32_t i = prev ? __atomic_load_n(&prev->dir_idx, __ATOMIC_RELAXED) + 1 : n;
	struct domain *d = i < n ? crcu_dereference(dir->v[i]) : NULL;

	/*
	 * prev's slot may be stale (the array was squeezed since): only a
	 * domain in the current array whose name is the one asked for is
	 * taken, so a wrong guess costs a look and the hash lookup.
	 */
	if (i + 2 < n)
		__builtin_prefetch(__atomic_load_n(&dir->v[i + 2], __ATOMIC_RELAXED));
	if (d && !strcmp(d->name, name)) {
		tsan_handoff_acquire(d);        /* see reg_add */
		return d;
	}
	return reg_lookup_name_rcu(reg, name);
}

struct domain *reg_lookup_uuid_rcu(struct registry *reg, const uint8_t uuid[16])
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(reg->by_uuid, hash_uuid(uuid), match_uuid, uuid, &iter);
	node = cds_lfht_iter_get_node(&iter);
	if (!node)
		return NULL;
	tsan_handoff_acquire(container_of(node, struct domain, uuid_node));     /* see reg_add */
	return container_of(node, struct domain, uuid_node);
}

int reg_for_each_rcu(struct registry *reg, int (*fn)(struct domain *d, void *arg), void *arg)
{
	struct reg_dir *dir = crcu_dereference(reg->dir);
	uint32_t n = __atomic_load_n(&dir->n, __ATOMIC_ACQUIRE);
	int r;

	for (uint32_t i = 0; i < n; i++) {
		struct domain *d = crcu_dereference(dir->v[i]);

		if (i + 8 < n)
			__builtin_prefetch(__atomic_load_n(&dir->v[i + 8], __ATOMIC_RELAXED));
		if (!d)
			continue;
		tsan_handoff_acquire(d);        /* see reg_add */
		r = fn(d, arg);
		if (r)
			return r;
	}
	return 0;
}

uint64_t reg_count(struct registry *reg)
{
	return __atomic_load_n(&reg->count, __ATOMIC_RELAXED);
}

void uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

int uuid_parse(const char *s, uint8_t u[16])
{
	int n = 0;

	for (size_t i = 0; s[i] && n < 32; i++) {
		char c = s[i];
		int v;

		if (c == '-' && (i == 8 || i == 13 || i == 18 || i == 23))
			continue;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -EINVAL;
		if (n % 2 == 0)
			u[n / 2] = (uint8_t)(v << 4);
		else
			u[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 32 && strlen(s) == 36 ? 0 : -EINVAL;
}

/* SPDX-License-Identifier: MIT */
/*
 * The actor runtime: worker pool, run queue, delayed sends (timer thread).
 * See THREADS.md for the rules this file implements.
 */
#include "actors/actor.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>
#include <urcu/call-rcu.h>

#include "common/futex.h"
#include "common/wfcq.h"
#include "common/util.h"

/* How late a delayed send may be, so that near deadlines share a wake-up. */
#define RT_TIMER_SLACK_NS (1000 * 1000UL)

struct timer_ent {
	uint64_t deadline;
	struct mbx_msg *msg;            /* msg->rt_priv: the target actor */
};

struct rt {
	/*
	 * Run queue: actors with mail, each at most once.  Producers are
	 * senders (lock-free append); consumers are workers, which serialise
	 * on the queue's internal dequeue mutex for a few instructions (no I/O
	 * or user code under it).
	 */
	struct __cds_wfcq_head runq_head;
	struct cds_wfcq_tail runq_tail;
	pthread_mutex_t runq_lock;      /* consumers only; held for one dequeue */
	sem_t ready;                    /* one token per run-queue entry */
	bool stopping;                  /* atomic */

	unsigned nworkers;
	pthread_t *workers;

	/* Timer thread: requests arrive on an MPSC queue, live in a heap. */
	pthread_t timer_thread;
	struct __cds_wfcq_head treq_head;
	struct cds_wfcq_tail treq_tail;
	uint32_t timer_seq;             /* futex word: bumped to wake the timer thread */
	/*
	 * The deadline the timer thread sleeps until (UINT64_MAX: none), or 0
	 * while it is awake or already woken: only a request due earlier
	 * than this needs to wake it.
	 */
	uint64_t timer_until;           /* atomic */
	struct timer_ent *heap;         /* timer thread only */
	size_t heap_len, heap_cap;      /* timer thread only */

	/*
	 * Actors scheduled or running (the low bits); a futex word, woken
	 * when they drop to 0.  A turn's own sends count before the turn's
	 * release, so work that chains from actor to actor never lets it
	 * touch 0 on the way.  ACTIVE_WAITED is set by the first rt_quiesce()
	 * and stays: until then the turn that leaves the runtime idle makes no
	 * futex call.  The flag lives in the same word because that turn may
	 * not read rt again once its decrement is done (the futex call only
	 * names the address): a quiesce that sees 0 may free rt at once.
	 */
	uint32_t active;

	/* Statistics, relaxed atomics. */
	uint64_t st_turns, st_messages, st_expired, st_timers_pending, st_timers_fired;
	uint64_t st_timers_cancelled;
};

#define ACTIVE_WAITED (1u << 31)  /* in rt->active: a quiesce has waited */

static __thread struct actor *tls_current;
/*
 * Hand-off scheduling: when an actor running on a worker makes another
 * actor runnable (a domain sending a command to its monitor, a monitor
 * returning a reply to its domain), the worker keeps it and runs it right
 * after the current turn instead of queueing it and waking a second worker:
 * one thread wake-up less per hop.  One slot per worker, and a bounded
 * chain (RUNNEXT_MAX) so a ping-pong pair cannot starve the run queue.
 */
static __thread struct rt *tls_worker_rt;
static __thread struct actor *tls_runnext;

#define RUNNEXT_MAX 16

static void stat_add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* ---- scheduling ---------------------------------------------------------- */

/*
 * Take the run queue's head.  The dequeue never waits under the lock: when
 * a producer is between its two stores (the tail exchanged, the link not
 * yet written), the nonblocking dequeue says so and we let it run
 * (sched_yield) before trying again, without holding anything.  NULL when
 * the queue is empty.
 */
static struct cds_wfcq_node *runq_take(struct rt *rt)
{
	for (;;) {
		struct cds_wfcq_node *node;

		pthread_mutex_lock(&rt->runq_lock);
		node = __cds_wfcq_dequeue_nonblocking(&rt->runq_head, &rt->runq_tail);
		pthread_mutex_unlock(&rt->runq_lock);
		if (node != CDS_WFCQ_WOULDBLOCK)
			return node;
		sched_yield();
	}
}

/* Put a on the run queue.  The caller owns the right to schedule a. */
static void rt_schedule(struct rt *rt, struct actor *a)
{
	cds_wfcq_node_init(&a->runq_node);
	tsan_handoff_release(&a->runq_node);
	cds_wfcq_enqueue(&rt->runq_head, &rt->runq_tail, &a->runq_node);
	sem_post(&rt->ready);
}

int actor_send(struct actor *a, struct mbx_msg *msg)
{
	int r;

	/*
	 * The read section keeps a from being freed between the append and
	 * the schedule, even if the caller holds no reference.
	 */
	crcu_read_lock();
	r = mbx_send(&a->mbx, msg);
	if (r == MBX_SCHEDULE) {
		__atomic_fetch_add(&a->rt->active, 1, __ATOMIC_RELAXED);
		if (tls_worker_rt == a->rt && !tls_runnext)
			tls_runnext = a;        /* this worker runs it next */
		else
			rt_schedule(a->rt, a);
	}
	crcu_read_unlock();
	return r < 0 ? r : 0;
}

static void actor_run(struct rt *rt, struct actor *a);
static void run_handoffs(struct rt *rt);

int actor_send_run(struct actor *a, struct mbx_msg *msg)
{
	struct rt *rt = a->rt;
	int r;

	BUG_ON(tls_current);
	if (tls_worker_rt)
		return actor_send(a, msg);      /* a worker: hand-off as usual */
	urcu_memb_read_lock();
	r = mbx_send(&a->mbx, msg);
	urcu_memb_read_unlock();
	if (r != MBX_SCHEDULE)
		return r < 0 ? r : 0;
	/*
	 * This thread owns the turn now: run it here, as a worker would, with
	 * hand-offs (the monitor's reply waking its domain) run here too.
	 */
	__atomic_fetch_add(&rt->active, 1, __ATOMIC_RELAXED);
	tls_worker_rt = rt;
	actor_run(rt, a);
	run_handoffs(rt);
	tls_worker_rt = NULL;
	return 0;
}

bool actor_is_current(const struct actor *a)
{
	return tls_current == a;
}

/* ---- lifetime ------------------------------------------------------------ */

void actor_init(struct actor *a, struct rt *rt, const struct actor_ops *ops)
{
	memset(a, 0, sizeof(*a));
	mbx_init(&a->mbx);
	a->ops = ops;
	a->rt = rt;
	a->refcount = 1;
}

void actor_ref(struct actor *a)
{
	uint32_t old = __atomic_fetch_add(&a->refcount, 1, __ATOMIC_RELAXED);

	BUG_ON(old == 0);
}

/* After the grace period: no sender can still be inside actor_send(). */
static void actor_reclaim_rcu_cb(struct rcu_head *head)
{
	struct actor *a = container_of(head, struct actor, rcu);

	crcu_reclaim_begin(head);
	mbx_drain(&a->mbx, -ESHUTDOWN);
	a->ops->free(a);
}

void actor_unref(struct actor *a)
{
	uint32_t left = __atomic_sub_fetch(&a->refcount, 1, __ATOMIC_ACQ_REL);

	BUG_ON(left == UINT32_MAX);
	if (left == 0)
		crcu_call(&a->rcu, actor_reclaim_rcu_cb);
}

static void stop_msg_drop(struct mbx_msg *msg, int err)
{
	free(msg);
}

int actor_stop(struct actor *a)
{
	struct mbx_msg *msg = malloc(sizeof(*msg));
	int r;

	if (!msg)
		return -ENOMEM;
	mbx_msg_init(msg, ACTOR_MSG_STOP, stop_msg_drop);
	r = actor_send(a, msg);
	if (r < 0)
		free(msg);
	return r;
}

void actor_stop_self(struct actor *a)
{
	ASSERT_ON_ACTOR(a);
	if (mbx_closed(&a->mbx))
		return;
	if (a->ops->stopping)
		a->ops->stopping(a);
	mbx_close(&a->mbx);
}

/* ---- workers ------------------------------------------------------------- */

static void actor_dispatch(struct rt *rt, struct actor *a, struct mbx_msg *msg)
{
	if (msg->type == ACTOR_MSG_STOP) {
		actor_stop_self(a);
		free(msg);
		return;
	}
	if (mbx_closed(&a->mbx)) {
		msg->drop(msg, -ESHUTDOWN);
		return;
	}
	if (msg->deadline_ns && now_ns() > msg->deadline_ns) {
		stat_add(&rt->st_expired, 1);
		if (a->ops->expire)
			a->ops->expire(a, msg);
		else
			msg->drop(msg, -ETIMEDOUT);
		return;
	}
	a->ops->handle(a, msg);
}

/* One turn: at most ACTOR_BATCH messages, then yield. */
static void actor_run(struct rt *rt, struct actor *a)
{
	uint64_t n = mbx_pending(&a->mbx), left;

	BUG_ON(n == 0);
	BUG_ON(__atomic_exchange_n(&a->on_worker, 1, __ATOMIC_ACQUIRE) != 0);
	tls_current = a;
	if (n > ACTOR_BATCH)
		n = ACTOR_BATCH;
	for (uint64_t i = 0; i < n; i++) {
		struct mbx_msg *msg = mbx_recv(&a->mbx);

		BUG_ON(!msg);   /* counted messages are always linked */
		actor_dispatch(rt, a, msg);
	}
	if (a->ops->turn_end)
		a->ops->turn_end(a);
	a->turns++;
	tls_current = NULL;
	/* Clear before releasing: the next owner may start right after. */
	__atomic_store_n(&a->on_worker, 0, __ATOMIC_RELEASE);
	stat_add(&rt->st_turns, 1);
	stat_add(&rt->st_messages, n);

	left = mbx_release(&a->mbx, n);
	if (left & MBX_COUNT_MASK) {
		rt_schedule(rt, a);     /* still ours: back of the queue */
		return;
	}
	/*
	 * No longer ours: only the value mbx_release returned may be used.
	 * Closed and drained means nobody can schedule it again, so the alive
	 * reference is ours to drop; the free still waits for a grace period.
	 */
	if (left & MBX_CLOSED)
		actor_unref(a);
	if (__atomic_sub_fetch(&rt->active, 1, __ATOMIC_RELEASE) == ACTIVE_WAITED)
		futex_wake(&rt->active, INT_MAX);       /* rt_quiesce */
}

/* Run the actors this thread's turns handed off, then queue the rest. */
static void run_handoffs(struct rt *rt)
{
	for (int i = 0; tls_runnext && i < RUNNEXT_MAX; i++) {
		struct actor *next = tls_runnext;

		tls_runnext = NULL;
		actor_run(rt, next);
	}
	if (tls_runnext) {
		/* Chain long enough: let the other workers have it. */
		rt_schedule(rt, tls_runnext);
		tls_runnext = NULL;
	}
}

static void *worker_main(void *arg)
{
	struct rt *rt = arg;

	urcu_memb_register_thread();
	tls_worker_rt = rt;
	for (;;) {
		struct cds_wfcq_node *node;

		if (sem_wait(&rt->ready) < 0)
			continue;       /* EINTR */
		if (__atomic_load_n(&rt->stopping, __ATOMIC_ACQUIRE))
			break;
		node = runq_take(rt);
		BUG_ON(!node);          /* a token means an entry */
		tsan_handoff_acquire(node);
		actor_run(rt, container_of(node, struct actor, runq_node));
		run_handoffs(rt);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

/* ---- timer thread: delayed sends ----------------------------------------- */

static void heap_swap(struct timer_ent *h, size_t i, size_t j)
{
	struct timer_ent t = h[i];

	h[i] = h[j];
	h[j] = t;
}

static int heap_push(struct rt *rt, struct timer_ent e)
{
	size_t i;

	if (rt->heap_len == rt->heap_cap) {
		size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 1024;
		struct timer_ent *h = realloc(rt->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		rt->heap = h;
		rt->heap_cap = cap;
	}
	i = rt->heap_len++;
	rt->heap[i] = e;
	while (i > 0 && rt->heap[(i - 1) / 2].deadline > rt->heap[i].deadline) {
		heap_swap(rt->heap, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static struct timer_ent heap_pop(struct rt *rt)
{
	struct timer_ent top = rt->heap[0];
	size_t i = 0, n = --rt->heap_len;

	rt->heap[0] = rt->heap[n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < n && rt->heap[l].deadline < rt->heap[m].deadline)
			m = l;
		if (r < n && rt->heap[r].deadline < rt->heap[m].deadline)
			m = r;
		if (m == i)
			break;
		heap_swap(rt->heap, i, m);
		i = m;
	}
	return top;
}

static void timer_fire(struct rt *rt, struct mbx_msg *msg)
{
	struct actor *a = msg->rt_priv;

	msg->rt_priv = NULL;
	if (actor_send(a, msg) < 0)
		msg->drop(msg, -ESHUTDOWN);
	actor_unref(a);         /* the reference rt_send_at took */
	stat_add(&rt->st_timers_fired, 1);
	__atomic_fetch_sub(&rt->st_timers_pending, 1, __ATOMIC_RELAXED);
}

/* A timer at its deadline: sent, or dropped if its receiver cancelled it. */
static void timer_due(struct rt *rt, struct mbx_msg *msg)
{
	struct actor *a = msg->rt_priv;

	if (!__atomic_load_n(&msg->rt_cancel, __ATOMIC_ACQUIRE)) {
		timer_fire(rt, msg);
		return;
	}
	msg->rt_priv = NULL;
	msg->drop(msg, -ECANCELED);
	actor_unref(a);         /* the reference rt_send_at took */
	stat_add(&rt->st_timers_cancelled, 1);
	__atomic_fetch_sub(&rt->st_timers_pending, 1, __ATOMIC_RELAXED);
}

static void timer_take_requests(struct rt *rt)
{
	struct cds_wfcq_node *node;

	while ((node = wfcq_take(&rt->treq_head, &rt->treq_tail))) {
		tsan_handoff_acquire(node);
		struct mbx_msg *msg = container_of(node, struct mbx_msg, node);
		struct timer_ent e = { .deadline = msg->deadline_ns, .msg = msg };

		/* The request rode in deadline_ns; the message itself has none. */
		msg->deadline_ns = 0;
		cds_wfcq_node_init(&msg->node);
		if (heap_push(rt, e) < 0)
			timer_fire(rt, msg);    /* no memory: deliver early, never lose it */
	}
}

static void *timer_main(void *arg)
{
	struct rt *rt = arg;

	urcu_memb_register_thread();
	/*
	 * Let the kernel wake this thread up to RT_TIMER_SLACK_NS after the
	 * earliest deadline: the deadlines that fall due meanwhile fire in the
	 * same wake-up, and their actors' turns share a worker's.
	 */
	prctl(PR_SET_TIMERSLACK, RT_TIMER_SLACK_NS, 0, 0, 0);
	for (;;) {
		uint32_t seq = __atomic_load_n(&rt->timer_seq, __ATOMIC_ACQUIRE);
		uint64_t now, until;

		if (__atomic_load_n(&rt->stopping, __ATOMIC_ACQUIRE))
			break;
		timer_take_requests(rt);
		now = now_ns();
		while (rt->heap_len && rt->heap[0].deadline <= now)
			timer_due(rt, heap_pop(rt).msg);
		until = rt->heap_len ? rt->heap[0].deadline : UINT64_MAX;
		/*
		 * Publish the deadline, then look at the queue once more: a
		 * sender that enqueued before seeing it did not wake us, and
		 * its request is taken now.  Both sides write, then read the
		 * other's word, with a full barrier between (here a seq_cst
		 * exchange; in rt_send_at the enqueue's own), so at least one
		 * of the two sees the other.  The queue is empty when its
		 * tail is the head's dummy node: this thread alone dequeues.
		 */
		__atomic_exchange_n(&rt->timer_until, until, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&rt->treq_tail.p, __ATOMIC_SEQ_CST) != &rt->treq_head.node)
			continue;
		if (rt->heap_len) {
			struct timespec ts = ns_to_timespec(until - now);

			futex_wait(&rt->timer_seq, seq, &ts);
		} else {
			futex_wait(&rt->timer_seq, seq, NULL);
		}
		/* Awake: requests are taken before the next sleep, unprompted. */
		__atomic_store_n(&rt->timer_until, 0, __ATOMIC_SEQ_CST);
	}
	/* Shutting down: what is still pending will never fire. */
	timer_take_requests(rt);
	while (rt->heap_len) {
		struct mbx_msg *msg = heap_pop(rt).msg;
		struct actor *a = msg->rt_priv;

		msg->drop(msg, -ECANCELED);
		actor_unref(a);
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static void timer_kick(struct rt *rt)
{
	__atomic_fetch_add(&rt->timer_seq, 1, __ATOMIC_RELEASE);
	futex_wake(&rt->timer_seq, 1);
}

int rt_send_at(struct actor *a, struct mbx_msg *msg, uint64_t deadline_ns)
{
	struct rt *rt = a->rt;
	uint64_t until;

	actor_ref(a);
	msg->rt_priv = a;
	msg->deadline_ns = deadline_ns;
	msg->rt_cancel = 0;
	cds_wfcq_node_init(&msg->node);
	tsan_handoff_release(&msg->node);
	__atomic_fetch_add(&rt->st_timers_pending, 1, __ATOMIC_RELAXED);
	/* A full barrier after the tail's exchange (liburcu's uatomic_xchg). */
	cds_wfcq_enqueue(&rt->treq_head, &rt->treq_tail, &msg->node);
	/*
	 * Most deadlines (heartbeats, command thresholds, job deadlines) fall
	 * after the one the timer thread already sleeps until: it takes them
	 * when it wakes, and nobody pays a wake-up.  An earlier one wakes it,
	 * once: the sender that swaps the deadline to 0 kicks, and requests
	 * that follow ride along until the thread sleeps again.
	 */
	until = __atomic_load_n(&rt->timer_until, __ATOMIC_SEQ_CST);
	while (deadline_ns < until) {
		if (__atomic_compare_exchange_n(&rt->timer_until, &until, 0, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			timer_kick(rt);
			break;
		}
	}
	return 0;
}

void rt_cancel_at(struct mbx_msg *msg)
{
	__atomic_store_n(&msg->rt_cancel, 1, __ATOMIC_RELEASE);
}

/* ---- runtime ------------------------------------------------------------- */

int rt_new(unsigned nworkers, struct rt **ret)
{
	struct rt *rt;
	int r;

	if (nworkers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nworkers = n > 0 ? (unsigned)n : 1;
	}
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	__cds_wfcq_init(&rt->runq_head, &rt->runq_tail);
	pthread_mutex_init(&rt->runq_lock, NULL);
	__cds_wfcq_init(&rt->treq_head, &rt->treq_tail);
	if (sem_init(&rt->ready, 0, 0) < 0) {
		free(rt);
		return -errno;
	}
	rt->workers = calloc(nworkers, sizeof(*rt->workers));
	if (!rt->workers) {
		r = -ENOMEM;
		goto fail;
	}
	r = -pthread_create(&rt->timer_thread, NULL, timer_main, rt);
	if (r < 0)
		goto fail;
	for (unsigned i = 0; i < nworkers; i++) {
		r = -pthread_create(&rt->workers[i], NULL, worker_main, rt);
		if (r < 0) {
			rt->nworkers = i;
			rt_free(rt);
			return r;
		}
	}
	rt->nworkers = nworkers;
	*ret = rt;
	return 0;
fail:
	sem_destroy(&rt->ready);
	free(rt->workers);
	free(rt);
	return r;
}

void rt_free(struct rt *rt)
{
	struct cds_wfcq_node *node;

	if (!rt)
		return;
	/* Let stops and other messages already sent run first. */
	rt_quiesce(rt, 5 * NSEC_PER_SEC);
	__atomic_store_n(&rt->stopping, true, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < rt->nworkers; i++)
		sem_post(&rt->ready);
	for (unsigned i = 0; i < rt->nworkers; i++)
		pthread_join(rt->workers[i], NULL);
	timer_kick(rt);
	pthread_join(rt->timer_thread, NULL);

	/*
	 * Actors left runnable (quiesce timed out): close them and drop their
	 * mail; closed and drained, they give up their alive reference.
	 */
	while ((node = runq_take(rt))) {
		struct actor *a = container_of(node, struct actor, runq_node);

		tsan_handoff_acquire(node);
		mbx_close(&a->mbx);
		mbx_drain(&a->mbx, -ESHUTDOWN);
		actor_unref(a);
	}
	/* Reclaim callbacks may still reference actors freed above. */
	urcu_memb_barrier();
	pthread_mutex_destroy(&rt->runq_lock);
	sem_destroy(&rt->ready);
	free(rt->heap);
	free(rt->workers);
	free(rt);
}

int rt_quiesce(struct rt *rt, uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;
	uint32_t n;

	/*
	 * One atomic word: the turn that takes the count to 0 either sees the
	 * flag (and wakes us) or made its decrement before our OR, which
	 * then returns the 0.
	 */
	n = __atomic_or_fetch(&rt->active, ACTIVE_WAITED, __ATOMIC_ACQ_REL);
	while (n != ACTIVE_WAITED) {
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= deadline)
			return -ETIMEDOUT;
		ts = ns_to_timespec(deadline - now);
		futex_wait(&rt->active, n, &ts);
		n = __atomic_load_n(&rt->active, __ATOMIC_ACQUIRE);
	}
	return 0;
}

unsigned rt_nworkers(const struct rt *rt)
{
	return rt->nworkers;
}

void rt_get_stats(struct rt *rt, struct rt_stats *ret)
{
	ret->turns = __atomic_load_n(&rt->st_turns, __ATOMIC_RELAXED);
	ret->messages = __atomic_load_n(&rt->st_messages, __ATOMIC_RELAXED);
	ret->expired = __atomic_load_n(&rt->st_expired, __ATOMIC_RELAXED);
	ret->timers_pending = __atomic_load_n(&rt->st_timers_pending, __ATOMIC_RELAXED);
	ret->timers_fired = __atomic_load_n(&rt->st_timers_fired, __ATOMIC_RELAXED);
	ret->timers_cancelled = __atomic_load_n(&rt->st_timers_cancelled, __ATOMIC_RELAXED);
}

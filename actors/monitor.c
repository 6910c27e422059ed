/* SPDX-License-Identifier: MIT */
/*
 * The monitor actor: one QMP connection, driven by ioloop readiness
 * messages, commands with deadlines, replies matched by id.
 */
#include "actors/monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <urcu/arch.h>
#include <urcu/list.h>

#include "common/util.h"
#include "qmp/qmp.h"

/* Per turn, so one chatty QEMU cannot hog a worker. */
#define MON_READ_BUDGET (1u << 20)
#define MON_OUT_MAX     (4u << 20)

enum {
	MON_MSG_IO = 1,         /* embedded: the fd is ready */
	MON_MSG_CMD,            /* struct mon_cmdmsg */
	MON_MSG_DEADLINE,       /* struct mon_deadline */
	MON_MSG_POLL_SET,       /* struct mon_pollset */
	MON_MSG_TICK,           /* struct mon_tick: begin a statistics round */
};

enum mon_phase { PH_GREETING, PH_CAPS, PH_READY, PH_DEAD };

/* Who waits for a reply. */
enum pend_kind {
	PEND_JOB,                       /* job_id's step (0: nobody, e.g. a quit) */
	PEND_CAPS,                      /* our qmp_capabilities */
	PEND_POLL,                      /* a statistics round's query */
};

struct mon_pending {
	struct cds_list_head link;
	enum pend_kind kind;
	uint64_t qmp_id;
	uint64_t job_id;
	uint64_t sent_ns;
	uint64_t deadline_ns;           /* UINT64_MAX: none */
	bool late;                      /* unanswered past the heartbeat threshold */
	char execute[64];
};

struct mon_cmdmsg {
	struct mbx_msg msg;
	struct domain *dom;             /* no reference: the monitor holds one */
	uint64_t job_id;
	char *execute;
	json_t *args;
	char *raw;
	uint64_t deadline_ns;
	int fd;                         /* passed with the command (SCM_RIGHTS), or -1 */
};

/* qmp_id 0: the handshake's deadline; otherwise a check of every pending command. */
struct mon_deadline {
	struct mbx_msg msg;
	uint64_t qmp_id;
	uint64_t at;
};

struct mon_pollset {
	struct mbx_msg msg;
	uint64_t interval_ns, late_ns, first_ns;
	int pid;
};

struct mon_tick {
	struct mbx_msg msg;
	uint32_t gen;
};

struct monitor {
	struct actor actor;
	struct domain *dom;             /* reference */
	mon_note_fn note;
	struct io_watch watch;
	struct mbx_msg io_msg;
	uint32_t io_queued;             /* atomic: io_msg is in the mailbox */
	uint32_t io_events;             /* atomic: events seen since */
	uint32_t watch_ev;              /* what the watch asks for (actor) */

	/* Actor only. */
	int fd;
	enum mon_phase phase;
	bool caps_queued;               /* qmp_capabilities is out (or queued): once */
	struct qmp_conn *qmp;
	char *out;
	size_t out_len, out_off, out_cap;
	struct cds_list_head pending;
	uint64_t timer_at;              /* the armed command timer's time; 0: none */
	/*
	 * The armed command timer and the handshake's, until handled or
	 * cancelled (rt_cancel_at); NULL: none.  See on_reply for when the
	 * command timer is cancelled.
	 */
	struct mon_deadline *timer_msg, *ready_msg;
	bool unresponsive;
	/* Statistics rounds (mon_set_poll). */
	uint64_t poll_interval_ns, late_ns;
	uint64_t poll_first_ns;         /* the first round's delay after the handshake */
	int pid;
	uint32_t tick_gen;              /* bumped when the interval changes: old ticks die */
	uint64_t round_id;              /* the current round's number */
	unsigned poll_due;              /* replies of the current round still due */
	json_t *round;                  /* the round being built */
	json_t *vcpus;                  /* [{index, thread}] from query-cpus-fast */
	bool no_balloon;                /* query-balloon said there is none */
	/*
	 * An fd to pass with the byte at out_fd_at of the output (the first
	 * byte of its command), or -1.  One at a time: a second command with
	 * an fd while one is unsent is refused (a job sends one, then waits
	 * for its reply).
	 */
	int out_fd;
	size_t out_fd_at;
};

static struct monitor *to_mon(struct actor *a)
{
	return container_of(a, struct monitor, actor);
}

void mon_note_free(struct mon_note *n)
{
	if (!n)
		return;
	free(n->event);
	json_decref(n->data);
	free(n);
}

static void note_call(struct domain *d, void *arg)
{
	struct mon_note *n = arg;
	struct monitor *m = n->mon;

	m->note(d, n);
	mon_note_free(n);
	actor_unref(&m->actor);
}

static void note_drop(void *arg)
{
	struct mon_note *n = arg;

	actor_unref(&n->mon->actor);
	mon_note_free(n);
}

/* Tell the domain actor; the note keeps the monitor alive until handled. */
static void notify(struct monitor *m, struct mon_note *n)
{
	n->mon = m;
	actor_ref(&m->actor);
	dom_call(m->dom, note_call, n, note_drop);
}

static struct mon_note *note_new(enum mon_note_kind kind)
{
	struct mon_note *n = calloc(1, sizeof(*n));

	if (n)
		n->kind = kind;
	return n;
}

static void set_responsive(struct monitor *m, bool ok)
{
	struct mon_note *n;

	if (m->unresponsive == !ok)
		return;
	m->unresponsive = !ok;
	n = note_new(MON_NOTE_STATE);
	if (!n)
		return;
	n->st = ok ? DOM_MON_OK : DOM_MON_UNRESPONSIVE;
	notify(m, n);
}

static void step(struct monitor *m, uint64_t job_id, int err, json_t *data)
{
	if (job_id)
		dom_job_step(m->dom, job_id, err, data);
	else
		json_decref(data);
}

static void round_drop(struct monitor *m)
{
	json_decref(m->round);
	m->round = NULL;
	m->poll_due = 0;
}

/* Nothing pending: the command timer would find nothing to check. */
static void mon_timer_idle(struct monitor *m)
{
	if (!cds_list_empty(&m->pending) || !m->timer_msg)
		return;
	rt_cancel_at(&m->timer_msg->msg);
	m->timer_msg = NULL;
	m->timer_at = 0;
}

static void fail_pending(struct monitor *m, int err, const char *reason)
{
	struct mon_pending *p, *tmp;

	cds_list_for_each_entry_safe(p, tmp, &m->pending, link) {
		cds_list_del(&p->link);
		if (p->kind == PEND_JOB)
			step(m, p->job_id, err, json_pack("{s:s}", "reason", reason));
		free(p);
	}
	round_drop(m);
	mon_timer_idle(m);
}

static void fd_sent(struct monitor *m)
{
	close(m->out_fd);
	m->out_fd = -1;
}

static void shut_fd(struct monitor *m)
{
	if (m->out_fd >= 0)
		fd_sent(m);     /* never sent: closed all the same */
	if (m->fd < 0)
		return;
	io_watch_del(&m->watch);
	close(m->fd);
	m->fd = -1;
}

/* The connection is unusable: say why, once, and fail what waits on it. */
static void mon_broken(struct monitor *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void mon_broken(struct monitor *m, const char *fmt, ...)
{
	struct mon_note *n;
	va_list ap;

	if (m->phase == PH_DEAD)
		return;
	m->phase = PH_DEAD;
	shut_fd(m);
	n = note_new(MON_NOTE_CLOSED);
	if (n) {
		va_start(ap, fmt);
		vsnprintf(n->reason, sizeof(n->reason), fmt, ap);
		va_end(ap);
		fail_pending(m, -EPIPE, n->reason);
		notify(m, n);
	} else {
		fail_pending(m, -EPIPE, "monitor connection broken");
	}
}

/*
 * The watch is edge-triggered and stays armed: every arrival of data is an
 * event (the loop turns it into io_msg unless one is queued), so a turn
 * reads until a short read and needs no epoll_ctl.  EPOLLOUT is added
 * only while output waits, and removed once it is out: otherwise every
 * read QEMU does would wake the monitor for nothing.
 */
#define MON_WATCH_EV (EPOLLIN | EPOLLRDHUP | EPOLLET)

static void watch_output(struct monitor *m)
{
	uint32_t ev = MON_WATCH_EV;

	if (m->fd < 0)
		return;
	if (m->out_off < m->out_len)
		ev |= EPOLLOUT;
	if (ev == m->watch_ev)
		return;
	if (io_watch_mod(&m->watch, ev) < 0) {
		mon_broken(m, "cannot watch the monitor socket: %s", strerror(errno));
		return;
	}
	m->watch_ev = ev;
}

/*
 * Send from out_off up to limit; the first byte carries out_fd when it is
 * the byte at out_fd_at (QEMU takes the fd with the bytes it arrives with,
 * and getfd / add-fd then find it).
 */
static ssize_t send_some(struct monitor *m, size_t limit)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { m->out + m->out_off, limit - m->out_off };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (m->out_fd >= 0 && m->out_off == m->out_fd_at) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &m->out_fd, sizeof(int));
	}
	/* MSG_NOSIGNAL: a QEMU gone meanwhile is EPIPE here, never a SIGPIPE. */
	return sendmsg(m->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int flush_out(struct monitor *m)
{
	while (m->out_off < m->out_len) {
		size_t limit = m->out_len;
		ssize_t n;

		if (m->out_fd >= 0 && m->out_off < m->out_fd_at)
			limit = m->out_fd_at;   /* up to the fd's byte, which goes alone */
		n = send_some(m, limit);
		if (n > 0 && m->out_fd >= 0 && m->out_off == m->out_fd_at)
			fd_sent(m);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			mon_broken(m, "write to QEMU monitor failed: %s", strerror(errno));
			return -EPIPE;
		}
		m->out_off += (size_t)n;
	}
	m->out_off = m->out_len = 0;
	return 0;
}

static int queue_out(struct monitor *m, char *buf, size_t len)
{
	if (m->out_off) {
		memmove(m->out, m->out + m->out_off, m->out_len - m->out_off);
		m->out_len -= m->out_off;
		if (m->out_fd >= 0)
			m->out_fd_at -= m->out_off;
		m->out_off = 0;
	}
	if (m->out_len + len > MON_OUT_MAX)
		return -ENOBUFS;        /* QEMU has not read 4 MiB of commands */
	if (m->out_len + len > m->out_cap) {
		size_t cap = (m->out_len + len) * 2;
		char *o = realloc(m->out, cap);

		if (!o)
			return -ENOMEM;
		m->out = o;
		m->out_cap = cap;
	}
	memcpy(m->out + m->out_len, buf, len);
	m->out_len += len;
	return 0;
}

static void deadline_drop(struct mbx_msg *msg, int err)
{
	free(container_of(msg, struct mon_deadline, msg));
}

/* Queue an encoded command and remember who waits for it. */
/*
 * One command timer per monitor, for the earliest pending deadline: a
 * command answered in time leaves no timer behind.
 */
static void mon_rearm_timer(struct monitor *m)
{
	uint64_t min = UINT64_MAX;
	struct mon_pending *p;
	struct mon_deadline *dl;

	cds_list_for_each_entry(p, &m->pending, link) {
		if (p->deadline_ns < min)
			min = p->deadline_ns;
		/* The heartbeat's threshold comes first, once per command. */
		if (!p->late && p->kind != PEND_CAPS && m->late_ns &&
		    p->sent_ns + m->late_ns < min)
			min = p->sent_ns + m->late_ns;
	}
	if (min == UINT64_MAX || (m->timer_at && m->timer_at <= min))
		return;
	dl = malloc(sizeof(*dl));
	if (!dl)
		return;         /* retried with the next command or reply */
	mbx_msg_init(&dl->msg, MON_MSG_DEADLINE, deadline_drop);
	dl->qmp_id = 1;         /* any non-zero id: "check the pending commands" */
	dl->at = min;
	if (m->timer_msg)
		rt_cancel_at(&m->timer_msg->msg);       /* superseded by an earlier one */
	m->timer_at = min;
	m->timer_msg = dl;
	rt_send_at(&m->actor, &dl->msg, min);
}

/* Queue an encoded command and remember who waits for it. */
static int send_encoded(struct monitor *m, uint64_t qmp_id, char *buf, size_t len,
			enum pend_kind kind, uint64_t job_id, const char *execute,
			uint64_t deadline_ns, int *fd)
{
	struct mon_pending *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	r = queue_out(m, buf, len);
	if (r < 0) {
		free(p);
		return r;
	}
	p->kind = kind;
	if (fd && *fd >= 0) {
		/* Its first byte carries the fd: the monitor owns it from now on. */
		m->out_fd = *fd;
		m->out_fd_at = m->out_len - len;
		*fd = -1;
	}
	p->qmp_id = qmp_id;
	p->job_id = job_id;
	p->sent_ns = now_ns();
	p->deadline_ns = deadline_ns;
	snprintf(p->execute, sizeof(p->execute), "%s", execute ? execute : "?");
	cds_list_add_tail(&p->link, &m->pending);
	mon_rearm_timer(m);
	/* Only output left over needs a change of the watch (EPOLLOUT). */
	if (flush_out(m) == 0 && m->out_off < m->out_len)
		watch_output(m);
	return 0;
}

static struct mon_pending *take_pending(struct monitor *m, uint64_t id)
{
	struct mon_pending *p;

	cds_list_for_each_entry(p, &m->pending, link) {
		if (p->qmp_id == id) {
			cds_list_del(&p->link);
			return p;
		}
	}
	return NULL;
}

/* ---- statistics rounds and heartbeat ------------------------------------ */

/* A round's queries may wait this long; a lost round is simply not published. */
#define MON_POLL_DEADLINE_NS (30 * NSEC_PER_SEC)

static void tick_drop(struct mbx_msg *msg, int err)
{
	free(container_of(msg, struct mon_tick, msg));
}

static void tick_schedule(struct monitor *m, uint64_t at)
{
	struct mon_tick *t;

	if (!m->poll_interval_ns)
		return;
	t = malloc(sizeof(*t));
	if (!t)
		return;         /* no more rounds on this monitor: the figures go stale */
	mbx_msg_init(&t->msg, MON_MSG_TICK, tick_drop);
	t->gen = m->tick_gen;
	rt_send_at(&m->actor, &t->msg, at);
}

static void poll_send(struct monitor *m, const char *execute)
{
	uint64_t id;
	char *buf;
	size_t len;

	if (qmp_conn_encode_cmd(m->qmp, execute, NULL, &id, &buf, &len) < 0)
		return;
	if (send_encoded(m, id, buf, len, PEND_POLL, m->round_id, execute,
			 now_ns() + MON_POLL_DEADLINE_NS, NULL) == 0)
		m->poll_due++;
	free(buf);
}

static void round_finish(struct monitor *m);

static void round_begin(struct monitor *m)
{
	if (m->round)
		return;         /* the previous round is unanswered: one at a time */
	m->round = json_pack("{s:{}, s:{}, s:[]}", "cpu", "memory", "disks");
	if (!m->round)
		return;
	m->round_id++;
	m->poll_due = 0;
	poll_send(m, "query-blockstats");
	if (!m->vcpus)
		poll_send(m, "query-cpus-fast");
	if (!m->no_balloon)
		poll_send(m, "query-balloon");
	if (m->phase == PH_READY && !m->poll_due)
		round_finish(m);        /* nothing could be sent: /proc alone */
}

static uint64_t jint(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v > 0 ? (uint64_t)v : 0;
}

static void on_blockstats(struct monitor *m, json_t *ret)
{
	json_t *disks = json_object_get(m->round, "disks"), *e;
	size_t i;

	json_array_foreach(ret, i, e) {
		json_t *st = json_object_get(e, "stats");
		const char *qdev = json_string_value(json_object_get(e, "qdev"));
		const char *dev = json_string_value(json_object_get(e, "device"));
		const char *node = json_string_value(json_object_get(e, "node-name"));

		char id[64];

		if (!json_is_object(st))
			continue;
		/* A device's id: "vd0" of "/machine/peripheral/vd0/virtio-backend". */
		if (qdev && !strncmp(qdev, "/machine/peripheral/", 20)) {
			snprintf(id, sizeof(id), "%s", qdev + 20);
			id[strcspn(id, "/")] = '\0';
			qdev = id;
		}
		json_array_append_new(disks, json_pack(
			"{s:s, s:s, s:I, s:I, s:I, s:I, s:I}",
			"device", qdev && *qdev ? qdev : dev ? dev : "",
			"node", node ? node : "",
			"rd_bytes", (json_int_t)jint(st, "rd_bytes"),
			"wr_bytes", (json_int_t)jint(st, "wr_bytes"),
			"rd_ops", (json_int_t)jint(st, "rd_operations"),
			"wr_ops", (json_int_t)jint(st, "wr_operations"),
			"flush_ops", (json_int_t)jint(st, "flush_operations")));
	}
}

static void on_cpus(struct monitor *m, json_t *ret)
{
	json_t *v = json_array(), *e;
	size_t i;

	if (!v)
		return;
	json_array_foreach(ret, i, e)
		json_array_append_new(v, json_pack("{s:I, s:I}",
						   "index", (json_int_t)jint(e, "cpu-index"),
						   "thread", (json_int_t)jint(e, "thread-id")));
	json_decref(m->vcpus);
	m->vcpus = v;
}

static void on_poll_reply(struct monitor *m, struct mon_pending *p, struct qmp_msg *msg)
{
	bool err = qmp_msg_kind(msg) == QMP_MSG_ERROR;
	json_t *ret = err ? NULL : qmp_msg_return(msg);

	if (!m->round || p->job_id != m->round_id)
		return;         /* a round already given up */
	if (!strcmp(p->execute, "query-blockstats") && json_is_array(ret)) {
		on_blockstats(m, ret);
	} else if (!strcmp(p->execute, "query-cpus-fast") && json_is_array(ret)) {
		on_cpus(m, ret);
	} else if (!strcmp(p->execute, "query-cpus-fast") && err && !m->vcpus) {
		m->vcpus = json_array();        /* refused: no vCPU figures, never asked again */
	} else if (!strcmp(p->execute, "query-balloon")) {
		if (err)
			m->no_balloon = true;   /* no balloon device: do not ask again */
		else
			json_object_set_new(json_object_get(m->round, "memory"), "balloon_bytes",
					    json_integer((json_int_t)jint(ret, "actual")));
	}
	if (m->poll_due && --m->poll_due == 0)
		round_finish(m);
}

/*
 * utime + stime (ns) and rss (bytes) of /proc/<pid>[/task/<tid>]/stat.
 * procfs, no disk, and /stat takes no lock of the target's memory map, so
 * this does not block the turn.  0 or -errno.
 */
static int proc_stat(int pid, int tid, uint64_t *cpu_ns, uint64_t *rss)
{
	char path[64], buf[1024], *p;
	unsigned long long f[22];
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	ssize_t n;
	int fd, i;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = 0;
	/* The command name may hold anything but ends at the last ')'. */
	p = strrchr(buf, ')');
	if (!p || hz <= 0 || page <= 0)
		return -EIO;
	p++;
	/* Fields 3 (state) to 24 (rss): f[0] is the state's letter, skipped. */
	for (i = 0; i < 22; i++) {
		char *end;

		while (*p == ' ')
			p++;
		if (i == 0) {
			f[0] = 0;
			p = strchr(p, ' ');
			if (!p)
				return -EIO;
			continue;
		}
		f[i] = strtoull(p, &end, 10);
		if (end == p)
			return -EIO;
		p = end;
	}
	/* f[i] is field i + 3: utime 14, stime 15, rss 24. */
	*cpu_ns = (f[11] + f[12]) * (NSEC_PER_SEC / (unsigned long long)hz);
	if (rss)
		*rss = f[21] * (unsigned long long)page;
	return 0;
}

static void round_finish(struct monitor *m)
{
	json_t *cpu = json_object_get(m->round, "cpu");
	json_t *mem = json_object_get(m->round, "memory");
	json_t *vcpus = json_array(), *e;
	struct mon_note *n;
	uint64_t t, rss;
	size_t i;

	if (m->pid > 0 && proc_stat(m->pid, 0, &t, &rss) == 0) {
		json_object_set_new(cpu, "time_ns", json_integer((json_int_t)t));
		json_object_set_new(mem, "rss_bytes", json_integer((json_int_t)rss));
	}
	json_array_foreach(m->vcpus, i, e) {
		int tid = (int)jint(e, "thread");

		if (m->pid > 0 && tid > 0 && proc_stat(m->pid, tid, &t, NULL) == 0)
			json_array_append_new(vcpus, json_pack("{s:I, s:i, s:I}", "index",
							       (json_int_t)jint(e, "index"),
							       "thread", tid, "time_ns",
							       (json_int_t)t));
	}
	json_object_set_new(cpu, "vcpus", vcpus);
	json_object_set_new(m->round, "collected_ns", json_integer((json_int_t)now_ns()));
	n = note_new(MON_NOTE_STATS);
	if (n) {
		n->data = m->round;
		m->round = NULL;
		notify(m, n);
	}
	round_drop(m);
}

/*
 * qmp_capabilities, queued and remembered; 0, or -errno.  Its deadline was
 * armed at creation (ready_deadline_ns).  mon_new sends it before the
 * greeting has come: QMP reads a client's input only once it has greeted,
 * so the command waits in the socket, and the greeting and its reply often
 * arrive together (one turn and one read where a handshake took two).
 */
static int queue_caps(struct monitor *m)
{
	struct mon_pending *p = calloc(1, sizeof(*p));
	uint64_t id;
	char *buf;
	size_t len;
	int r;

	if (!p)
		return -ENOMEM;
	r = qmp_conn_encode_capabilities(m->qmp, &id, &buf, &len);
	if (r == 0) {
		r = queue_out(m, buf, len);
		free(buf);
	}
	if (r < 0) {
		free(p);
		return r;
	}
	p->kind = PEND_CAPS;
	p->qmp_id = id;
	p->sent_ns = now_ns();
	p->deadline_ns = UINT64_MAX;
	snprintf(p->execute, sizeof(p->execute), "qmp_capabilities");
	cds_list_add_tail(&p->link, &m->pending);
	m->caps_queued = true;
	return 0;
}

static void on_greeting(struct monitor *m)
{
	if (m->phase != PH_GREETING) {
		mon_broken(m, "QEMU sent a second greeting");
		return;
	}
	m->phase = PH_CAPS;
	if (m->caps_queued)
		return;         /* sent at creation: its reply comes next */
	if (queue_caps(m) < 0) {
		mon_broken(m, "cannot queue qmp_capabilities");
		return;
	}
	if (flush_out(m) == 0 && m->out_off < m->out_len)
		watch_output(m);
}

static void on_reply(struct monitor *m, struct qmp_msg *msg)
{
	struct mon_pending *p;
	bool poll;
	uint64_t id;

	/* Any reply proves QEMU's main loop runs again. */
	set_responsive(m, true);
	if (!qmp_msg_id(msg, &id) || !(p = take_pending(m, id)))
		return;         /* unknown or late (already timed out): dropped */
	poll = p->kind == PEND_POLL;
	if (p->kind == PEND_POLL) {
		on_poll_reply(m, p, msg);
	} else if (p->kind == PEND_CAPS) {
		/* qmp_capabilities */
		if (m->phase == PH_GREETING) {
			mon_broken(m, "QEMU answered qmp_capabilities before its greeting");
		} else if (qmp_msg_kind(msg) == QMP_MSG_ERROR) {
			mon_broken(m, "qmp_capabilities refused: %s", qmp_msg_error_desc(msg));
		} else {
			struct mon_note *n = note_new(MON_NOTE_READY);

			m->phase = PH_READY;
			if (m->ready_msg)
				rt_cancel_at(&m->ready_msg->msg);
			m->ready_msg = NULL;
			if (n)
				notify(m, n);
			tick_schedule(m, now_ns() + m->poll_first_ns);
		}
	} else if (qmp_msg_kind(msg) == QMP_MSG_ERROR) {
		step(m, p->job_id, -EIO,
		     json_pack("{s:s, s:s}", "class", qmp_msg_error_class(msg), "desc",
			       qmp_msg_error_desc(msg)));
	} else {
		/* Taken out of the reply: it crosses threads whole, shared with nothing. */
		step(m, p->job_id, 0, json_pack("{s:o}", "return", qmp_msg_take_return(msg)));
	}
	free(p);
	/*
	 * A statistics round's last reply cancels the command timer: the next
	 * round is an interval away, and a cancelled timer costs no turn.  A
	 * job's command leaves it armed, since jobs come in runs: the commands
	 * that follow before it fires need no timer of their own (a cancelled
	 * one stays in the runtime's heap until its time, one per command).
	 */
	if (poll)
		mon_timer_idle(m);
}

static void on_event(struct monitor *m, struct qmp_msg *msg)
{
	struct mon_note *n = note_new(MON_NOTE_EVENT);

	if (!n)
		return;
	n->event = strdup(qmp_msg_event_name(msg));
	n->data = qmp_msg_take_event_data(msg);     /* shared with nothing, as a return */
	n->seconds = qmp_msg_event_seconds(msg);
	n->micros = qmp_msg_event_microseconds(msg);
	notify(m, n);
}

static void handle_io(struct monitor *m)
{
	uint32_t events;
	size_t total = 0;
	char buf[65536];

	/*
	 * Clear, full fence, then read the socket (THREADS.md, flag hand-offs):
	 * data that arrives after our last read is a new edge, and its
	 * callback then sees the flag clear and queues io_msg again.
	 */
	__atomic_store_n(&m->io_queued, 0, __ATOMIC_RELEASE);
	cmm_smp_mb();
	events = __atomic_exchange_n(&m->io_events, 0, __ATOMIC_ACQ_REL);
	if (m->phase == PH_DEAD)
		return;
	if (events & EPOLLOUT && flush_out(m) < 0)
		return;
	while (total < MON_READ_BUDGET) {
		ssize_t n = read(m->fd, buf, sizeof(buf));
		struct qmp_msg *msg;
		int r;

		if (n == 0) {
			mon_broken(m, "QEMU closed the monitor connection");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			mon_broken(m, "read from QEMU monitor failed: %s", strerror(errno));
			return;
		}
		total += (size_t)n;
		if (qmp_conn_feed(m->qmp, buf, (size_t)n) < 0) {
			mon_broken(m, "QMP stream broken: %s", qmp_conn_error(m->qmp));
			return;
		}
		while ((r = qmp_conn_next(m->qmp, &msg)) == 1) {
			switch (qmp_msg_kind(msg)) {
			case QMP_MSG_GREETING: on_greeting(m); break;
			case QMP_MSG_RETURN:
			case QMP_MSG_ERROR: on_reply(m, msg); break;
			case QMP_MSG_EVENT: on_event(m, msg); break;
			}
			qmp_msg_free(msg);
			if (m->phase == PH_DEAD)
				return;
		}
		if (r < 0) {
			mon_broken(m, "QMP stream broken: %s", qmp_conn_error(m->qmp));
			return;
		}
		if ((size_t)n < sizeof(buf) && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
			/*
			 * Drained: what comes later is a new edge, a new turn.
			 * Not after a hang-up, whose edge this turn consumed:
			 * read on to the EOF it announced.
			 */
			watch_output(m);
			return;
		}
	}
	/* EAGAIN, or the budget is spent: no edge will come for what is left. */
	if (total >= MON_READ_BUDGET && !__atomic_exchange_n(&m->io_queued, 1, __ATOMIC_ACQ_REL))
		actor_send(&m->actor, &m->io_msg);
	watch_output(m);
}

static void handle_cmd(struct monitor *m, struct mon_cmdmsg *cm)
{
	uint64_t id;
	char *buf;
	size_t len;
	int r;

	if (m->phase == PH_DEAD) {
		step(m, cm->job_id, -EPIPE, json_pack("{s:s}", "reason", "monitor is closed"));
		return;
	}
	if (m->phase != PH_READY) {
		step(m, cm->job_id, -EAGAIN,
		     json_pack("{s:s}", "reason", "monitor is still negotiating with QEMU"));
		return;
	}
	if (cm->fd >= 0 && m->out_fd >= 0) {
		step(m, cm->job_id, -EPIPE,
		     json_pack("{s:s}", "reason", "another fd is still being passed to QEMU"));
		return;
	}
	if (cm->raw)
		r = qmp_conn_encode_raw(m->qmp, cm->raw, &id, &buf, &len);
	else
		r = qmp_conn_encode_cmd(m->qmp, cm->execute, cm->args, &id, &buf, &len);
	if (r < 0) {
		step(m, cm->job_id, -EINVAL,
		     json_pack("{s:s}", "reason", qmp_conn_encode_error(m->qmp)));
		return;
	}
	r = send_encoded(m, id, buf, len, PEND_JOB, cm->job_id,
			 cm->execute ? cm->execute : "(raw)", cm->deadline_ns, &cm->fd);
	free(buf);
	if (r < 0)
		step(m, cm->job_id, -EPIPE,
		     json_pack("{s:s}", "reason", r == -ENOBUFS ?
			       "QEMU is not reading its monitor (4 MiB of commands queued)" :
			       "out of memory"));
}

static void handle_deadline(struct monitor *m, struct mon_deadline *dl)
{
	struct mon_pending *p, *tmp;
	uint64_t now = now_ns();

	if (dl->qmp_id == 0) {
		/* No greeting or no capabilities reply in time. */
		if (dl == m->ready_msg)
			m->ready_msg = NULL;
		if (m->phase == PH_GREETING || m->phase == PH_CAPS)
			set_responsive(m, false);
		return;
	}
	/* Not a timer superseded or cancelled, but already sent. */
	if (dl == m->timer_msg) {
		m->timer_msg = NULL;
		m->timer_at = 0;
	}
	cds_list_for_each_entry_safe(p, tmp, &m->pending, link) {
		if (!p->late && p->kind != PEND_CAPS && m->late_ns &&
		    now >= p->sent_ns + m->late_ns) {
			p->late = true;
			set_responsive(m, false);
		}
		if (now < p->deadline_ns)
			continue;
		cds_list_del(&p->link);
		set_responsive(m, false);
		if (p->kind == PEND_JOB)
			step(m, p->job_id, -ETIMEDOUT,
			     json_pack("{s:s, s:f}", "execute", p->execute, "waited_s",
				       (double)(now - p->sent_ns) / 1e9));
		else if (p->kind == PEND_POLL && p->job_id == m->round_id)
			round_drop(m);  /* this round is lost; the next tick begins another */
		free(p);
	}
	mon_rearm_timer(m);
}

static void cmd_msg_free(struct mon_cmdmsg *cm)
{
	if (cm->fd >= 0)
		close(cm->fd);
	free(cm->execute);
	free(cm->raw);
	json_decref(cm->args);
	free(cm);
}

static void mon_handle(struct actor *a, struct mbx_msg *msg)
{
	struct monitor *m = to_mon(a);

	switch (msg->type) {
	case MON_MSG_IO:
		handle_io(m);
		break;
	case MON_MSG_CMD: {
		struct mon_cmdmsg *cm = container_of(msg, struct mon_cmdmsg, msg);

		handle_cmd(m, cm);
		cmd_msg_free(cm);
		break;
	}
	case MON_MSG_DEADLINE: {
		struct mon_deadline *dl = container_of(msg, struct mon_deadline, msg);

		handle_deadline(m, dl);
		free(dl);
		break;
	}
	case MON_MSG_POLL_SET: {
		struct mon_pollset *ps = container_of(msg, struct mon_pollset, msg);

		m->poll_interval_ns = ps->interval_ns;
		m->late_ns = ps->late_ns;
		m->poll_first_ns = ps->first_ns;
		m->pid = ps->pid;
		m->tick_gen++;
		if (m->phase == PH_READY)
			tick_schedule(m, now_ns() + m->poll_first_ns);
		free(ps);
		break;
	}
	case MON_MSG_TICK: {
		struct mon_tick *t = container_of(msg, struct mon_tick, msg);

		if (t->gen == m->tick_gen && m->phase == PH_READY) {
			tick_schedule(m, now_ns() + m->poll_interval_ns);
			round_begin(m);
		}
		free(t);
		break;
	}
	default:
		BUG_ON(true);
	}
}

static void mon_stopping(struct actor *a)
{
	struct monitor *m = to_mon(a);

	if (m->phase != PH_DEAD) {
		m->phase = PH_DEAD;
		shut_fd(m);
	}
	fail_pending(m, -EPIPE, "monitor closed");
}

static void mon_free(struct actor *a)
{
	struct monitor *m = to_mon(a);

	if (m->out_fd >= 0)
		close(m->out_fd);
	qmp_conn_free(m->qmp);
	json_decref(m->round);
	json_decref(m->vcpus);
	free(m->out);
	dom_unref(m->dom);
	free(m);
}

static const struct actor_ops mon_actor_ops = {
	.kind = "monitor",
	.handle = mon_handle,
	.stopping = mon_stopping,
	.free = mon_free,
};

/*
 * Loop thread, RCU read section: hand the readiness to the actor, whose
 * turn then runs right here (actor_send_run) unless it is already queued or
 * running: one thread wake-up less on every QMP reply.
 */
static void mon_io_cb(struct io_watch *w, uint32_t events)
{
	struct monitor *m = container_of(w, struct monitor, watch);

	__atomic_fetch_or(&m->io_events, events, __ATOMIC_ACQ_REL);
	if (__atomic_exchange_n(&m->io_queued, 1, __ATOMIC_ACQ_REL) == 0)
		actor_send_run(&m->actor, &m->io_msg);
}

static void io_msg_drop(struct mbx_msg *msg, int err)
{
	/* Embedded in the monitor: nothing to free. */
}

int mon_new(struct rt *rt, struct ioloop *io, struct domain *d, int fd, mon_note_fn note,
	    uint64_t ready_deadline_ns, struct monitor **ret)
{
	struct monitor *m = calloc(1, sizeof(*m));
	struct mon_deadline *dl;
	int r;

	if (!m)
		return -ENOMEM;
	if (qmp_conn_new(&m->qmp) < 0) {
		free(m);
		return -ENOMEM;
	}
	actor_init(&m->actor, rt, &mon_actor_ops);
	mbx_msg_init(&m->io_msg, MON_MSG_IO, io_msg_drop);
	CDS_INIT_LIST_HEAD(&m->pending);
	m->out_fd = -1;
	m->fd = fd;
	m->note = note;
	m->dom = d;
	dom_ref(d);
	actor_ref(&m->actor);           /* the caller's reference */
	m->watch_ev = MON_WATCH_EV;
	/*
	 * Not shared yet (no watch, no message): qmp_capabilities is written
	 * here, ahead of the greeting.  A socket that takes nothing yet keeps
	 * it queued for EPOLLOUT; one that fails is found broken by the read
	 * that follows (the hang-up), as it would be without this.
	 */
	if (queue_caps(m) == 0) {
		ssize_t n = send_some(m, m->out_len);

		if (n > 0)
			m->out_off += (size_t)n;
		if (m->out_off == m->out_len)
			m->out_off = m->out_len = 0;
		else
			m->watch_ev |= EPOLLOUT;
	}
	/* The handshake's deadline: id 0 (QMP ids start at 1) means "ready by now". */
	dl = malloc(sizeof(*dl));
	if (dl) {
		mbx_msg_init(&dl->msg, MON_MSG_DEADLINE, deadline_drop);
		dl->qmp_id = 0;
		dl->at = ready_deadline_ns;
		m->ready_msg = dl;
		rt_send_at(&m->actor, &dl->msg, ready_deadline_ns);
	}
	r = io_watch_add(io, &m->watch, fd, m->watch_ev, mon_io_cb);
	if (r < 0) {
		close(fd);
		m->fd = -1;
		m->phase = PH_DEAD;
		actor_stop(&m->actor);
		actor_unref(&m->actor);
		return r;
	}
	*ret = m;
	return 0;
}

static void cmd_msg_drop(struct mbx_msg *msg, int err)
{
	struct mon_cmdmsg *cm = container_of(msg, struct mon_cmdmsg, msg);

	/* The monitor is stopping; it still holds its domain reference. */
	if (cm->job_id)
		dom_job_step(cm->dom, cm->job_id, -EPIPE,
			     json_pack("{s:s}", "reason", "monitor is closed"));
	cmd_msg_free(cm);
}

int mon_cmd(struct monitor *m, uint64_t job_id, const char *execute, json_t *args,
	    const char *raw_json, uint64_t deadline_ns)
{
	return mon_cmd_fd(m, job_id, execute, args, -1, deadline_ns, raw_json);
}

int mon_cmd_fd(struct monitor *m, uint64_t job_id, const char *execute, json_t *args, int fd,
	       uint64_t deadline_ns, const char *raw_json)
{
	struct mon_cmdmsg *cm = calloc(1, sizeof(*cm));
	int r;

	if (!cm) {
		json_decref(args);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	cm->fd = fd;
	mbx_msg_init(&cm->msg, MON_MSG_CMD, cmd_msg_drop);
	cm->dom = m->dom;
	cm->job_id = job_id;
	cm->execute = execute ? strdup(execute) : NULL;
	cm->raw = raw_json ? strdup(raw_json) : NULL;
	cm->args = args;
	cm->deadline_ns = deadline_ns;
	if ((execute && !cm->execute) || (raw_json && !cm->raw)) {
		cmd_msg_free(cm);
		return -ENOMEM;
	}
	r = actor_send(&m->actor, &cm->msg);
	if (r < 0)
		cmd_msg_drop(&cm->msg, r);
	return r;
}

void mon_close(struct monitor *m)
{
	if (!m)
		return;
	actor_stop(&m->actor);
	actor_unref(&m->actor);
}

int mon_connect_unix(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/*
	 * A UNIX stream connect to a listening socket completes at once (the
	 * peer accepts later) or fails: -EAGAIN when its backlog is full.
	 */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static void pollset_drop(struct mbx_msg *msg, int err)
{
	free(container_of(msg, struct mon_pollset, msg));
}

int mon_set_poll(struct monitor *m, uint64_t interval_ns, uint64_t first_ns, uint64_t late_ns,
		 int pid)
{
	struct mon_pollset *ps = malloc(sizeof(*ps));
	int r;

	if (!ps)
		return -ENOMEM;
	mbx_msg_init(&ps->msg, MON_MSG_POLL_SET, pollset_drop);
	ps->interval_ns = interval_ns;
	ps->first_ns = first_ns;
	ps->late_ns = late_ns;
	ps->pid = pid;
	r = actor_send(&m->actor, &ps->msg);
	if (r < 0)
		pollset_drop(&ps->msg, r);
	return r;
}

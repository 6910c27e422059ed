/* SPDX-License-Identifier: MIT */
/*
 * corral-qmp-sim internals, shared by its three files:
 *   main.c      options, sockets, the epoll loop, signals
 *   endpoint.c  what one endpoint says: a small imitation of QEMU's QMP
 *   timer.c     a binary heap of deadlines, so thousands of endpoints need
 *               no timerfd each: the loop sleeps until the earliest one
 *
 * The simulator is one thread; nothing here is shared with another.
 */
#ifndef CORRAL_SIM_SIM_H
#define CORRAL_SIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

enum sim_hang {
	SIM_HANG_NONE,
	SIM_HANG_AFTER_CAPS,    /* answers qmp_capabilities, then goes silent */
	SIM_HANG_ALWAYS,        /* greets, then goes silent */
};

enum sim_garbage {
	SIM_GARBAGE_NONE,
	SIM_GARBAGE_GREETING,   /* invalid JSON instead of the greeting */
	SIM_GARBAGE_REPLY,      /* invalid JSON instead of every reply */
};

/* How one endpoint misbehaves; all zero: like QEMU. */
struct sim_knobs {
	unsigned delay_ms;              /* replies leave this much later */
	enum sim_hang hang;
	enum sim_garbage garbage;
	unsigned disconnect_after;      /* close after this many commands; 0: never */
	unsigned event_storm;           /* RTC_CHANGE events per second; 0: none */
	unsigned events_before_greeting;
	bool no_shutdown;               /* as QEMU's -no-shutdown: stop, don't exit */
};

/*
 * Set knob name (as in --help, e.g. "delay-ms") from val, which may be NULL
 * for knobs with a default value.  Returns 0, or -EINVAL with a reason in
 * err.
 */
int sim_knob_set(struct sim_knobs *k, const char *name, const char *val, char *err,
		 size_t errlen);

/* ---- timers ------------------------------------------------------------ */

enum sim_timer_what {
	SIM_TIMER_REPLY,        /* the head of the delayed-reply queue is due */
	SIM_TIMER_STORM,        /* the next storm event is due */
};

struct sim_timer {
	uint64_t when_ns;       /* CLOCK_MONOTONIC */
	uint32_t ep;            /* endpoint index */
	uint32_t gen;           /* the endpoint's connection generation */
	enum sim_timer_what what;
};

/*
 * A min-heap on when_ns.  Entries are never removed early: one whose
 * generation no longer matches its endpoint's connection is stale and is
 * skipped when it fires.
 */
struct sim_timers {
	struct sim_timer *v;
	size_t n, cap;
};

int sim_timers_add(struct sim_timers *t, const struct sim_timer *e);   /* 0, -ENOMEM */
const struct sim_timer *sim_timers_peek(const struct sim_timers *t);   /* NULL: empty */
void sim_timers_pop(struct sim_timers *t);
void sim_timers_fini(struct sim_timers *t);

/* ---- endpoints --------------------------------------------------------- */

/* An endpoint's buffers up to this size are kept from one client to the next. */
#define SIM_KEEP_BUF (64u << 10)

struct sim_buf {
	char *p;
	size_t len, cap, off;   /* p[off, len) is still to be sent */
};

struct sim_reply;

struct sim_ep {
	uint32_t idx;
	char name[64];          /* prefix + index, e.g. "vm3"; also query-name */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd;
	bool listening;         /* lfd's one-shot watch is armed (no client) */
	struct sim_knobs k;

	/* The guest: survives reconnects, reset by a powerdown. */
	bool paused;
	bool shut_down;         /* no-shutdown: the guest powered off, QEMU waits */
	uint64_t queries;       /* query-blockstats answered: its counters */

	/* The current client; cfd == -1 when there is none. */
	int cfd;
	uint32_t gen;           /* bumped on every accept */
	bool negotiated;        /* qmp_capabilities succeeded */
	bool hung;              /* silent from now on */
	bool closing;           /* close once out is flushed */
	bool want_out;          /* EPOLLOUT is armed */
	unsigned ncmds;
	uint64_t event_seq;     /* "offset" of the next RTC_CHANGE */
	uint64_t storm_next_ns;
	char *in;
	size_t in_len, in_cap;
	struct sim_buf out;
	struct sim_reply *rq_head, *rq_tail;    /* delayed output, in order */
};

struct sim {
	int epfd;
	struct sim_ep *eps;
	uint32_t count;
	struct sim_timers timers;
	bool verbose;
};

/* epoll data: index << 2 | tag */
enum { SIM_TAG_LISTEN = 0, SIM_TAG_CONN = 1, SIM_TAG_SIGNAL = 2 };

static inline uint64_t sim_tag(uint32_t idx, int tag)
{
	return (uint64_t)idx << 2 | (uint64_t)tag;
}

void sim_ep_on_listen(struct sim *s, struct sim_ep *e);
void sim_ep_on_conn(struct sim *s, struct sim_ep *e, uint32_t events);
void sim_ep_on_timer(struct sim *s, struct sim_ep *e, const struct sim_timer *t);
/* Drop the client, if any, and listen again. */
void sim_ep_disconnect(struct sim *s, struct sim_ep *e);

#endif /* CORRAL_SIM_SIM_H */

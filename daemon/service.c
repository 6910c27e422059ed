/* SPDX-License-Identifier: MIT */
/*
 * service: corrald under systemd.  See service.h.
 */
#include "daemon/service.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "actors/actor.h"
#include "common/ioloop.h"
#include "common/util.h"
#include "daemon/log.h"

/* ---- socket activation --------------------------------------------------- */

#ifdef HAVE_LIBSYSTEMD
int svc_take_sockets(int *ret_rw, int *ret_ro, char *errbuf, size_t errlen)
{
	char **names = NULL;
	int n, r = 0, rw = -1, ro = -1;

	*ret_rw = *ret_ro = -1;
	/* 1: unset LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES (QEMU never sees them). */
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		snprintf(errbuf, errlen, "the sockets passed by the service manager: %s",
			 strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		int *slot = !strcmp(name, SVC_FDNAME_RW) ? &rw : !strcmp(name, SVC_FDNAME_RO) ? &ro :
			    NULL;

		if (r < 0) {
			close(fd);
			continue;
		}
		if (!slot) {
			snprintf(errbuf, errlen, "socket %d passed by the service manager is named "
				 "'%s': name it '" SVC_FDNAME_RW "' (read-write) or '" SVC_FDNAME_RO
				 "' (read-only) with FileDescriptorName=", fd, name);
			r = -EINVAL;
		} else if (*slot >= 0) {
			snprintf(errbuf, errlen, "two sockets passed by the service manager are "
				 "named '%s'", name);
			r = -EINVAL;
		} else if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			snprintf(errbuf, errlen, "socket '%s' (fd %d) passed by the service manager "
				 "is not a listening UNIX stream socket (ListenStream=/path)", name, fd);
			r = -EINVAL;
		} else {
			*slot = fd;
			continue;
		}
		close(fd);
	}
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
	if (r < 0) {
		if (rw >= 0)
			close(rw);
		if (ro >= 0)
			close(ro);
		return r;
	}
	*ret_rw = rw;
	*ret_ro = ro;
	return 0;
}

bool svc_notify_supported(void)
{
	return true;
}

static void notify(const char *what)
{
	int r = sd_notify(0, what);

	if (r < 0)
		log_warn("cannot notify the service manager (%s): %s", what, strerror(-r));
}
#else
int svc_take_sockets(int *ret_rw, int *ret_ro, char *errbuf, size_t errlen)
{
	const char *pid = getenv("LISTEN_PID");

	*ret_rw = *ret_ro = -1;
	/* Meant for us (not inherited from a parent that was activated). */
	if (getenv("LISTEN_FDS") && (!pid || strtol(pid, NULL, 10) == (long)getpid())) {
		snprintf(errbuf, errlen, "the service manager passed sockets (LISTEN_FDS), but this "
			 "corrald was built without libsystemd: rebuild with libsystemd-dev "
			 "installed (meson -Dsystemd=enabled), or run it without socket activation");
		return -ENOTSUP;
	}
	return 0;
}

bool svc_notify_supported(void)
{
	return false;
}

static void notify(const char *what)
{
}
#endif

bool svc_notify_expected(void)
{
	const char *s = getenv("NOTIFY_SOCKET");

	return s && *s;
}

void svc_notify_ready(const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status);
	notify(buf);
}

void svc_notify_stopping(void)
{
	notify("STOPPING=1\nSTATUS=shutting down (running VMs are left running)");
}

/* ---- the watchdog -------------------------------------------------------- */

/*
 * A round's probes: one task per loop thread and one message to the probe
 * actor.  `pending` counts those not yet run; a new round starts only when
 * it is 0, so a task or the message is never queued twice.
 */
struct wd_actor {
	struct actor a;
	struct mbx_msg msg;
	struct svc_watchdog *wd;
};

struct wd_task {
	struct io_task t;
	struct svc_watchdog *wd;
};

struct svc_watchdog {
	struct ioloop *io;
	uint64_t period_ns;             /* half of WATCHDOG_USEC */
	unsigned ntasks;
	struct wd_task *tasks;
	struct wd_actor *probe;         /* NULL after svc_watchdog_stop */
	uint32_t pending;               /* atomic: probes of this round not yet run */
	bool actor_late;                /* atomic: the probe message is still queued */
	bool warned;                    /* main thread */
	bool stopped;                   /* main thread */
};

static void probe_done(struct svc_watchdog *wd)
{
	__atomic_sub_fetch(&wd->pending, 1, __ATOMIC_RELEASE);
}

static void wd_task_fn(struct io_task *t)
{
	probe_done(container_of(t, struct wd_task, t)->wd);
}

static void wd_handle(struct actor *a, struct mbx_msg *msg)
{
	struct wd_actor *p = container_of(a, struct wd_actor, a);

	__atomic_store_n(&p->wd->actor_late, false, __ATOMIC_RELAXED);
	probe_done(p->wd);
}

static void wd_msg_drop(struct mbx_msg *msg, int err)
{
	/* Embedded in the probe actor: nothing to free. */
}

static void wd_free(struct actor *a)
{
	free(container_of(a, struct wd_actor, a));
}

static const struct actor_ops wd_ops = {
	.kind = "watchdog",
	.handle = wd_handle,
	.free = wd_free,
};

int svc_watchdog_new(struct ioloop *io, struct rt *rt, struct svc_watchdog **ret)
{
	struct svc_watchdog *wd;
	uint64_t usec = 0;

	*ret = NULL;
#ifdef HAVE_LIBSYSTEMD
	/* 0: keep WATCHDOG_USEC/WATCHDOG_PID (QEMU gets a clean environment anyway). */
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
#else
	return 0;
#endif
	wd = calloc(1, sizeof(*wd));
	if (!wd)
		return -ENOMEM;
	wd->io = io;
	wd->period_ns = usec * 1000 / 2;
	if (wd->period_ns < 1000000)
		wd->period_ns = 1000000;
	wd->ntasks = ioloop_nthreads(io);
	wd->tasks = calloc(wd->ntasks, sizeof(*wd->tasks));
	wd->probe = calloc(1, sizeof(*wd->probe));
	if (!wd->tasks || !wd->probe) {
		free(wd->tasks);
		free(wd->probe);
		free(wd);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < wd->ntasks; i++) {
		wd->tasks[i].t.fn = wd_task_fn;
		wd->tasks[i].wd = wd;
	}
	actor_init(&wd->probe->a, rt, &wd_ops);
	wd->probe->wd = wd;
	log_info("watchdog: every %" PRIu64 " ms, once each of the %u I/O threads and the "
		 "actor runtime has answered", wd->period_ns / 1000000, wd->ntasks);
	*ret = wd;
	return 0;
}

uint64_t svc_watchdog_period_ns(const struct svc_watchdog *w)
{
	return w->period_ns;
}

void svc_watchdog_tick(struct svc_watchdog *wd)
{
	uint32_t left = __atomic_load_n(&wd->pending, __ATOMIC_ACQUIRE);

	if (wd->stopped)
		return;
	if (left) {
		if (!wd->warned)
			log_err("watchdog: %u probe%s of the last round did not run (%s): no "
				"keep-alive sent; the service manager will restart corrald", left,
				left == 1 ? "" : "s",
				__atomic_load_n(&wd->actor_late, __ATOMIC_RELAXED) ?
				"the actor runtime is stuck" : "an I/O thread is stuck");
		wd->warned = true;
		return;
	}
	if (wd->warned)
		log_info("watchdog: every loop answers again");
	wd->warned = false;
	notify("WATCHDOG=1");
	__atomic_store_n(&wd->pending, wd->ntasks + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&wd->actor_late, true, __ATOMIC_RELAXED);
	mbx_msg_init(&wd->probe->msg, 1, wd_msg_drop);
	if (actor_send(&wd->probe->a, &wd->probe->msg) < 0)
		probe_done(wd);         /* stopped: shutting down */
	for (unsigned i = 0; i < wd->ntasks; i++)
		io_post(ioloop_thr_at(wd->io, i), &wd->tasks[i].t);
}

void svc_watchdog_stop(struct svc_watchdog *wd)
{
	if (!wd || wd->stopped)
		return;
	wd->stopped = true;
	/* The runtime drops the alive reference once the mailbox is closed and drained. */
	actor_stop(&wd->probe->a);
	wd->probe = NULL;
}

void svc_watchdog_free(struct svc_watchdog *wd)
{
	if (!wd)
		return;
	BUG_ON(!wd->stopped);
	free(wd->tasks);
	free(wd);
}

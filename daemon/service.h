/* SPDX-License-Identifier: MIT */
/*
 * service: corrald under a service manager (systemd).  Socket activation
 * (the listening sockets passed as LISTEN_FDS, told apart by their
 * FileDescriptorName), readiness and stopping notifications (Type=notify),
 * and the watchdog.  Built on libsystemd when meson found it (-Dsystemd);
 * without it, svc_take_sockets() refuses passed sockets with a clear message
 * and the notifications do nothing.
 *
 * The watchdog proves that corrald's loops turn, not merely that a thread
 * is alive: each round posts a task to every ioloop thread and a message to
 * an actor, and WATCHDOG=1 goes out only once all of them ran.  A wedged loop
 * thread (or a runtime whose every worker is stuck) stops the keep-alives,
 * and the service manager restarts corrald (KillMode=process: the VMs stay).
 * No thread of its own: the main thread ticks it between signals.
 *
 * Main thread only.
 */
#ifndef CORRAL_DAEMON_SERVICE_H
#define CORRAL_DAEMON_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ioloop;
struct rt;
struct svc_watchdog;

/* The FileDescriptorName of each socket (docs/daemon.md, "systemd"). */
#define SVC_FDNAME_RW "rw"
#define SVC_FDNAME_RO "ro"

/*
 * Take the sockets passed by the service manager, if any: *ret_rw and
 * *ret_ro get a listening UNIX stream socket or -1 (none passed: corrald
 * binds that one itself).  LISTEN_FDS and friends are removed from the
 * environment.  0, or -errno with a one-line reason (a passed fd that is
 * not a listening UNIX stream socket, an unknown name, built without
 * libsystemd); passed fds are closed on failure.
 */
int svc_take_sockets(int *ret_rw, int *ret_ro, char *errbuf, size_t errlen);

/* Does the service manager expect notifications (NOTIFY_SOCKET is set)? */
bool svc_notify_expected(void);
/* Could corrald send them (built with libsystemd)? */
bool svc_notify_supported(void);

/* READY=1 with a STATUS= line: corrald answers from now on. */
void svc_notify_ready(const char *status);
/* STOPPING=1: shutting down. */
void svc_notify_stopping(void);

/*
 * The watchdog, when the service manager asks for one (WATCHDOG_USEC for
 * this pid): 0 and *ret (NULL when none is asked for), or -ENOMEM.
 */
int svc_watchdog_new(struct ioloop *io, struct rt *rt, struct svc_watchdog **ret);
/* How long the main thread may wait before the next svc_watchdog_tick(). */
uint64_t svc_watchdog_period_ns(const struct svc_watchdog *w);
/*
 * One round: if every probe of the last round ran, send WATCHDOG=1 and post
 * the next round; otherwise say (once) which part is late and send nothing.
 */
void svc_watchdog_tick(struct svc_watchdog *w);
/*
 * Before rt_free() and ioloop_free(): stop the probe actor.  The rest is
 * freed once the probe tasks still queued have run (ioloop_free runs them)
 * and the actor's last reference is gone.  Accepts NULL.
 */
void svc_watchdog_stop(struct svc_watchdog *w);
/* After ioloop_free() and rt_free(): free.  Accepts NULL. */
void svc_watchdog_free(struct svc_watchdog *w);

#endif /* CORRAL_DAEMON_SERVICE_H */

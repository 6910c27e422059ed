/* SPDX-License-Identifier: MIT */
/*
 * daemon/service.c's watchdog: WATCHDOG=1 goes to NOTIFY_SOCKET only while
 * every I/O thread and the actor runtime run their probes.  A loop thread
 * wedged on purpose (a task that blocks until released) stops the
 * keep-alives after at most the one whose round was already complete; once
 * released they come again.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "actors/actor.h"
#include "common/ioloop.h"
#include "common/rcu.h"
#include "common/util.h"
#include "daemon/service.h"

#define WAIT_NS (30 * NSEC_PER_SEC)

static char dir[] = "/tmp/corral-wd-XXXXXX";
static char sock_path[128];
static int nfd = -1;

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	urcu_memb_register_thread();
	cr_assert(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	strcpy(sa.sun_path, sock_path);
	nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert(nfd >= 0);
	cr_assert(bind(nfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	setenv("WATCHDOG_USEC", "1000000", 1);
	unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
	close(nfd);
	unlink(sock_path);
	rmdir(dir);
	urcu_memb_unregister_thread();
}

/* How many WATCHDOG=1 messages wait on the socket (read them all). */
static int keepalives(void)
{
	char buf[256];
	ssize_t n;
	int count = 0;

	while ((n = recv(nfd, buf, sizeof(buf) - 1, 0)) > 0) {
		buf[n] = '\0';
		if (strstr(buf, "WATCHDOG=1"))
			count++;
	}
	return count;
}

/* Tick until a keep-alive went out; false if none within WAIT_NS. */
static bool tick_until_keepalive(struct svc_watchdog *wd)
{
	uint64_t deadline = now_ns() + WAIT_NS;

	while (now_ns() < deadline) {
		svc_watchdog_tick(wd);
		if (keepalives() > 0)
			return true;
		usleep(2000);
	}
	return false;
}

struct wedge {
	struct io_task t;
	int efd;
};

/* Runs on a loop thread and blocks it until the test writes the eventfd. */
static void wedge_fn(struct io_task *t)
{
	struct wedge *w = container_of(t, struct wedge, t);
	uint64_t v;

	while (read(w->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

TestSuite(watchdog, .init = setup, .fini = teardown, .timeout = 120);

Test(watchdog, wedged_io_thread_stops_keepalives)
{
	struct rt *rt = NULL;
	struct ioloop *io = NULL;
	struct svc_watchdog *wd = NULL;
	struct wedge w = { .t.fn = wedge_fn };
	uint64_t one = 1;
	int after;

	if (!svc_notify_supported())
		cr_skip_test("built without libsystemd");
	cr_assert_eq(rt_new(2, &rt), 0);
	cr_assert_eq(ioloop_new(2, &io), 0);
	cr_assert_eq(svc_watchdog_new(io, rt, &wd), 0);
	cr_assert(wd, "WATCHDOG_USEC is set: a watchdog is expected");
	cr_assert_eq(svc_watchdog_period_ns(wd), 500 * NSEC_PER_MSEC);

	cr_assert(tick_until_keepalive(wd), "no WATCHDOG=1 while every loop runs");
	cr_assert(tick_until_keepalive(wd), "keep-alives did not go on");

	/* Wedge the second loop thread.  The round already posted may still
	 * complete (one more keep-alive); every later round waits behind it. */
	w.efd = eventfd(0, EFD_CLOEXEC);
	cr_assert(w.efd >= 0);
	io_post(ioloop_thr_at(io, 1), &w.t);
	after = 0;
	for (int i = 0; i < 200; i++) {
		svc_watchdog_tick(wd);
		after += keepalives();
		usleep(1000);
	}
	cr_assert_leq(after, 1, "%d keep-alives with a wedged I/O thread", after);

	/* Released: the late probe runs, and keep-alives resume. */
	cr_assert_eq(write(w.efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	cr_assert(tick_until_keepalive(wd), "no WATCHDOG=1 after the thread came back");

	svc_watchdog_stop(wd);
	rt_quiesce(rt, 5 * NSEC_PER_SEC);
	rt_free(rt);
	ioloop_free(io);
	svc_watchdog_free(wd);
	close(w.efd);
}

Test(watchdog, none_without_watchdog_usec)
{
	struct rt *rt = NULL;
	struct ioloop *io = NULL;
	struct svc_watchdog *wd = (struct svc_watchdog *)1;

	unsetenv("WATCHDOG_USEC");
	cr_assert_eq(rt_new(1, &rt), 0);
	cr_assert_eq(ioloop_new(1, &io), 0);
	cr_assert_eq(svc_watchdog_new(io, rt, &wd), 0);
	cr_assert_null(wd);
	rt_free(rt);
	ioloop_free(io);
}

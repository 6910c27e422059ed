/* SPDX-License-Identifier: MIT */
/*
 * server: corrald's msgpack-RPC server.  Two listening UNIX sockets (read-write
 * and read-only) and their clients, all watches on the ioloop; see
 * docs/daemon.md for the sockets and docs/API.md for the methods.
 *
 * Threads: a connection lives on one ioloop thread for its whole life; its
 * queries are answered there, from RCU snapshots.  State-changing calls are
 * jobs on the domain actors; their done callbacks (runtime workers) hand
 * the packed reply back to the connection's thread with io_post().
 */
#ifndef CORRAL_DAEMON_SERVER_H
#define CORRAL_DAEMON_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct ioloop;
struct registry;
struct evbus;
struct vm_env;
struct rt;
struct server;

struct server_opts {
	struct ioloop *io;
	struct rt *rt;
	struct registry *reg;
	struct evbus *bus;
	struct vm_env *env;
	const char *rw_path;            /* read-write socket */
	const char *ro_path;            /* read-only socket */
	/*
	 * Listening sockets passed by the service manager (socket activation),
	 * -1 each for none: used as they are (mode and owner are the socket
	 * unit's), never unlinked; the path above is then only for messages.
	 */
	int rw_fd, ro_fd;
	bool group_set;                 /* socket_group configured */
	gid_t group;
	uint64_t default_timeout_ms;
	uint64_t client_stall_ms;       /* close a client that reads nothing this long */
	uint64_t frame_max;             /* bytes of one request (at most RPC_MAX_FRAME) */
	uint64_t frame_timeout_ms;      /* a request begun must be complete by then */
	uint64_t input_total;           /* bytes of partial requests across clients */
	uint64_t output_max;            /* output bytes waiting for one client */
	uint64_t output_total;          /* output bytes across clients */
	unsigned inflight_max;          /* state changes in flight per connection */
	unsigned subs_max;              /* subscriptions per connection */
	uint64_t stats_interval_ms;     /* the VM layer's statistics rounds (0: none) */
	unsigned workers, io_threads;   /* for daemon.info */
};

/*
 * Bind and listen on both sockets (or take the passed ones) and start
 * accepting.  Refuses (-EADDRINUSE) when a daemon already answers on either
 * path; removes stale socket files.  A passed fd is the server's from here on,
 * success or failure.
 * 0 or -errno with a one-line reason in errbuf.  Main thread.
 */
int server_new(const struct server_opts *opts, struct server **ret, char *errbuf,
	       size_t errlen);

/*
 * Stop accepting and remove the socket files; every client stops being
 * read: what it had sent and was not yet handled is answered
 * "unavailable", and each closes once its calls in flight are answered.
 * Main thread, loops running.
 */
void server_stop_accepting(struct server *s);
/* Wait (bounded) until every client has been answered and closed.  Main thread. */
void server_drain(struct server *s);
/*
 * server_stop_accepting() if not done, then close every client still open
 * (waiting a bounded time for their loop threads to do it).  Jobs in flight
 * keep their connection's memory until they call back.  Main thread, loops
 * running.
 */
void server_stop(struct server *s);

/*
 * Free what is left, after ioloop_free() and rt_free(): nothing can call
 * back any more.  Main thread.  Accepts NULL.
 */
void server_free(struct server *s);

/* Print the API reference in markdown (docs/API.md).  Any thread. */
void server_dump_api_md(FILE *f);
/* The same table as corrald(8)'s API section (roff).  Any thread. */
void server_dump_api_man(FILE *f);

#endif /* CORRAL_DAEMON_SERVER_H */

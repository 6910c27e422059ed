/* SPDX-License-Identifier: MIT */
/*
 * metrics: an optional HTTP listener (libmicrohttpd) serving GET /metrics in
 * Prometheus's text format (rpc/prom.h), read from the domains' snapshots
 * and published statistics: it never waits for a domain or a QEMU.
 *
 * libmicrohttpd runs one thread of its own, registered with RCU for its
 * reads (THREADS.md, "Metrics").  Bounded: a few connections at once, each
 * with an idle timeout and a memory cap.
 */
#ifndef CORRAL_DAEMON_METRICS_H
#define CORRAL_DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct registry;
struct metrics;

/*
 * Listen on listen ("PORT" for 127.0.0.1:PORT, or "ADDR:PORT" with an IPv4
 * address).  0, or -errno with a one-line reason in errbuf.  Main thread.
 */
int metrics_start(const char *listen, struct registry *reg, struct metrics **ret,
		  char *errbuf, size_t errlen);
/* Stop listening and join the thread.  Main thread; accepts NULL. */
void metrics_stop(struct metrics *m);

/* listen's address (network order; 127.0.0.1 when only a port) and port: 0 or -EINVAL. */
int metrics_parse_listen(const char *listen, uint32_t *addr_be, uint16_t *port);

#endif /* CORRAL_DAEMON_METRICS_H */

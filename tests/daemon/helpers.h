/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the end-to-end tests of corrald: start the real binary in a
 * temporary directory, talk msgpack-RPC to it over its sockets, stop it.
 * Every wait has a generous bound; failures are Criterion assertions.
 */
#ifndef CORRAL_TESTS_DAEMON_HELPERS_H
#define CORRAL_TESTS_DAEMON_HELPERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc/rpc.h"

/* Generous: a loaded CI machine under ASan must not fail on time. */
#define DT_WAIT_MS 30000

struct dt_daemon {
	pid_t pid;
	char dir[128];          /* temporary; removed by dt_stop */
	char rw[160], ro[160];  /* socket paths */
	char log[160];
};

/*
 * Start corrald (path from $CORRALD) with its sockets and directories in a
 * fresh temporary directory (or in d->dir again, if set: a restart), plus
 * extra flags (NULL-terminated, may be NULL); wait until it accepts on both
 * sockets.  d must be zeroed before the first start.
 */
void dt_start(struct dt_daemon *d, const char *const *extra);
/* SIGTERM; it must exit 0 within DT_WAIT_MS.  Removes the directory. */
void dt_stop(struct dt_daemon *d);
/* Print the daemon's log to stderr (for a failing test). */
void dt_dump_log(const struct dt_daemon *d);

struct dt_client {
	int fd;
	uint32_t next_id;
	char *buf;
	size_t len, cap;
	struct rpc_scanner *scan;
};

/* Connect to a socket (retrying until DT_WAIT_MS). */
void dt_connect(struct dt_client *c, const char *path);
void dt_close(struct dt_client *c);

/* Send raw bytes, all of them. */
void dt_send_raw(struct dt_client *c, const void *buf, size_t len);

/*
 * Send a request whose params map is given as JSON text (NULL: no params);
 * returns its msgid.
 */
uint32_t dt_send(struct dt_client *c, const char *method, const char *params_json);

/*
 * The next message from the daemon (within timeout_ms), decoded: 1 with
 * *ret, 0 on timeout, -EPIPE when the daemon closed the connection.
 */
int dt_recv(struct dt_client *c, struct rpc_msg **ret, int timeout_ms);

/* The next response (skipping notifications), which must come in DT_WAIT_MS. */
struct rpc_msg *dt_expect_response(struct dt_client *c);

/*
 * A call: send, wait for the response with this msgid (others are
 * assertion failures).  On success returns the result as JSON (a new
 * reference; JSON null for nil) and *ret_code 0; on error returns the
 * message as a JSON string and *ret_code the error code.
 */
json_t *dt_call(struct dt_client *c, const char *method, const char *params_json,
		int *ret_code);
/* The same; the call must succeed. */
json_t *dt_call_ok(struct dt_client *c, const char *method, const char *params_json);
/* The same; the call must fail with code, and its message contain text. */
void dt_call_err(struct dt_client *c, const char *method, const char *params_json, int code,
		 const char *text);

/* Wait until the daemon closes c (reads and discards); false on timeout. */
bool dt_wait_closed(struct dt_client *c, int timeout_ms);

/* Raise the soft RLIMIT_NOFILE to at least n (up to the hard limit). */
void dt_raise_nofile(unsigned long n);

/* fork+exec argv with stdout to a pipe (read end in *out_fd); dies with us. */
pid_t dt_spawn(char *const argv[], int *out_fd);
/* Read from fd until a line starting with prefix arrives, in DT_WAIT_MS. */
void dt_wait_line(int fd, const char *prefix);

#endif /* CORRAL_TESTS_DAEMON_HELPERS_H */

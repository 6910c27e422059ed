/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests that drive a qmp_conn over a real socket
 * (test-qemu.c, test-sim.c): child processes, temp dirs, blocking reads
 * with generous bounds.  Failures are Criterion assertions.
 */
#ifndef CORRAL_TESTS_QMP_HELPERS_H
#define CORRAL_TESTS_QMP_HELPERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qmp/qmp.h"

/* Generous: a loaded CI machine under ASan must not fail on time. */
#define TH_WAIT_MS 20000

/* A client of one QMP socket. */
struct th_peer {
	int fd;
	struct qmp_conn *c;
};

/* Connect to path, retrying until it accepts or timeout_ms passes. */
void th_peer_open(struct th_peer *p, const char *path, int timeout_ms);
/* A peer on an already connected socket, which it now owns. */
void th_peer_adopt(struct th_peer *p, int fd);
void th_peer_close(struct th_peer *p);

/*
 * The next message, reading as needed.  Returns 1 with *ret, 0 if nothing
 * complete arrived within timeout_ms, -EPIPE on end of stream, or the
 * conn's error if the stream broke.
 */
int th_next(struct th_peer *p, struct qmp_msg **ret, int timeout_ms);

/* The next message, which must arrive within TH_WAIT_MS. */
struct qmp_msg *th_expect(struct th_peer *p);

/* The first message that is not an event (the greeting, unless broken). */
struct qmp_msg *th_expect_greeting(struct th_peer *p);

/* Encode and send a command; returns its id. */
uint64_t th_send_cmd(struct th_peer *p, const char *execute, json_t *args);
void th_send_raw(struct th_peer *p, const char *bytes);

/*
 * Send execute and wait for its reply, skipping events (freed).  Returns
 * the reply, a RETURN or an ERROR with the command's id.
 */
struct qmp_msg *th_call(struct th_peer *p, const char *execute, json_t *args);

/* Greeting then qmp_capabilities, as every client starts. */
void th_handshake(struct th_peer *p);

/* A fresh directory under $TMPDIR; th_rmdir removes it and its files. */
void th_mkdtemp(char *buf, size_t len);
void th_rmdir(const char *dir);

/*
 * fork+exec argv (no shell); the child dies with the test process.  If
 * stdout_fd is not NULL the child's stdout is a pipe whose read end lands
 * there.
 */
pid_t th_spawn(char *const argv[], int *stdout_fd);

/* Signal pid and reap it; returns its wait status. */
int th_kill_wait(pid_t pid, int sig);

/* Read from fd until line (with its "\n") has arrived, within TH_WAIT_MS. */
void th_wait_line(int fd, const char *line);

/* Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft. */
unsigned long th_raise_nofile(void);

#endif /* CORRAL_TESTS_QMP_HELPERS_H */

/* SPDX-License-Identifier: MIT */
/*
 * A stand-in corrald for the CLI tests: listens on a UNIX socket, serves one
 * connection at a time on its own thread, logs every request and answers as
 * the test's handler says.  It speaks the wire protocol through rpc/ and
 * nothing else, as the real daemon's clients see it.
 */
#ifndef CORRAL_TESTS_CLI_FAKE_H
#define CORRAL_TESTS_CLI_FAKE_H

#include <jansson.h>
#include <stdbool.h>

enum fake_action {
	FAKE_REPLY,     /* result (NULL: nil) */
	FAKE_ERROR,     /* [code, message] */
	FAKE_SILENT,    /* never answer */
	FAKE_HANGUP,    /* close the connection */
};

struct fake_reply {
	enum fake_action action;
	json_t *result;         /* stolen */
	int code;
	const char *message;
};

/* On the server thread, for every request; reply starts as FAKE_REPLY nil. */
typedef void (*fake_handler_fn)(const char *method, json_t *params, struct fake_reply *reply,
				void *arg);

struct fake;

/* NULL on failure.  once: stop serving when the first connection closes. */
struct fake *fake_start(const char *sock_path, fake_handler_fn fn, void *arg, bool once);
/* Wait for the server thread to end (once) or stop it; accepts NULL. */
void fake_stop(struct fake *f);
/* Block until the server thread ends by itself (once). */
void fake_join(struct fake *f);

/* Requests seen for method so far. */
unsigned fake_count(struct fake *f, const char *method);
/* Wait up to timeout_ms until at least n requests for method were seen. */
bool fake_wait(struct fake *f, const char *method, unsigned n, unsigned timeout_ms);
/* The params of the i-th request for method (a new reference), or NULL. */
json_t *fake_params(struct fake *f, const char *method, unsigned i);

/* Send the notification [2, method, [params]] (params stolen).  0 or -errno. */
int fake_notify(struct fake *f, const char *method, json_t *params);

#endif /* CORRAL_TESTS_CLI_FAKE_H */

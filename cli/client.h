/* SPDX-License-Identifier: MIT */
/*
 * cli client: one connection to corrald, msgpack-RPC over a UNIX stream
 * socket, with a deadline on every wait.  Params go out and results come back
 * as JSON values (rpc/json-conv.h); the codec is rpc/rpc.h.
 *
 * Single-threaded: one thread uses a client at a time.  No printing.
 */
#ifndef CORRAL_CLI_CLIENT_H
#define CORRAL_CLI_CLIENT_H

#include <jansson.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

struct cli_client;

/* What went wrong in a call: the daemon's error, or a local reason. */
struct cli_call_err {
	int code;               /* enum rpc_err from the daemon; 0 for a local failure */
	char message[512];
};

/*
 * Handed every notification that arrives while the client waits: method and
 * params (an array) are borrowed for the duration of the call.
 */
typedef void (*cli_notify_fn)(const char *method, json_t *params, void *arg);

/*
 * Connect to the socket at path and check who listens there
 * (SO_PEERCRED, to *ret_peer when not NULL): it must be this user or root,
 * else -EPERM and nothing was sent.  0, -ENAMETOOLONG if path does not fit
 * a sockaddr_un, -ENOMEM, or -errno from socket()/connect() (-ENOENT: no
 * socket there; -ECONNREFUSED: nobody listens).
 */
int cli_client_connect(const char *path, struct cli_client **ret, struct ucred *ret_peer);

/* Accepts NULL. */
void cli_client_free(struct cli_client *c);

void cli_client_set_notify(struct cli_client *c, cli_notify_fn fn, void *arg);

/*
 * Raw hooks, for what JSON cannot hold (console bytes are msgpack bin):
 * notifications as msgpack (params borrowed for the call), and responses
 * to calls sent with cli_client_post() (error NULL on success).  When set,
 * the raw notify hook replaces the JSON one.
 */
struct msgpack_object;
typedef void (*cli_raw_notify_fn)(const char *method, const struct msgpack_object *params,
				  void *arg);
typedef void (*cli_response_fn)(uint32_t id, const struct cli_call_err *error, void *arg);
void cli_client_set_raw(struct cli_client *c, cli_raw_notify_fn notify,
			cli_response_fn response, void *arg);

/*
 * cli_client_call() for results JSON cannot hold: on success fn gets the
 * result as msgpack (borrowed for the call).  Errors as cli_client_call().
 */
typedef void (*cli_raw_result_fn)(const struct msgpack_object *result, void *arg);
int cli_client_call_raw(struct cli_client *c, const char *method, json_t *params,
			uint64_t deadline_ns, cli_raw_result_fn fn, void *arg,
			struct cli_call_err *err);

/*
 * Send a call without waiting for its answer (it goes to the response
 * hook during a later wait): params as JSON plus, if bin_key is not NULL,
 * one more param bin_key holding len bytes as msgpack bin.  0 and the
 * call's id to *ret_id, or an error as cli_client_call() returns.
 */
int cli_client_post(struct cli_client *c, const char *method, json_t *params,
		    const char *bin_key, const void *bin, size_t len, uint64_t deadline_ns,
		    uint32_t *ret_id, struct cli_call_err *err);

/*
 * Call method with params (a JSON object, borrowed; NULL sends no params)
 * and wait for its response until deadline_ns (on now_ns()'s clock).
 * Notifications that arrive first go to the callback.
 *
 * Returns 0 and *ret_result (a new reference; null for nil), or fills *err and
 * returns:
 *   -EREMOTEIO    the daemon answered with an error (err->code, message);
 *   -ETIMEDOUT    no answer by the deadline;
 *   -ECONNRESET   the daemon closed the connection;
 *   -EPROTO       the daemon sent something that is not corral's msgpack-RPC;
 *   -EMSGSIZE     the request is over RPC_MAX_FRAME;
 *   -ENOMEM, or another -errno from the socket.
 * After any error but -EREMOTEIO the connection is unusable.
 */
int cli_client_call(struct cli_client *c, const char *method, json_t *params,
		    uint64_t deadline_ns, json_t **ret_result, struct cli_call_err *err);

/*
 * Wait for notifications: returns 1 once at least one was handed to the
 * callback, 0 if extra_fd (>= 0) became readable first, -ETIMEDOUT at
 * deadline_ns (UINT64_MAX: none), or an error as cli_client_call() does.
 */
int cli_client_wait(struct cli_client *c, uint64_t deadline_ns, int extra_fd,
		    struct cli_call_err *err);

#endif /* CORRAL_CLI_CLIENT_H */

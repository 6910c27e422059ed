/* SPDX-License-Identifier: MIT */
/* cli client: msgpack-RPC calls over a UNIX socket, with deadlines (see client.h). */
#include "cli/client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

#define READ_CHUNK (64u * 1024)

struct cli_client {
	int fd;
	uint32_t next_id;
	struct rpc_scanner *scan;
	/* Bytes read but not yet decoded; never more than RPC_MAX_FRAME. */
	char *buf;
	size_t len, cap;
	cli_notify_fn notify;
	void *notify_arg;
	cli_raw_notify_fn raw_notify;
	cli_response_fn raw_response;
	void *raw_arg;
};

static int fail(struct cli_call_err *err, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct cli_call_err *err, int r, const char *fmt, ...)
{
	va_list ap;

	err->code = 0;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return r;
}

int cli_client_connect(const char *path, struct cli_client **ret, struct ucred *ret_peer)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct cli_client *c;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->next_id = 1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		r = -errno;
		free(c);
		return r;
	}
	r = rpc_scanner_new(&c->scan);
	if (r) {
		cli_client_free(c);
		return r;
	}
	do {
		r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		r = -errno;
		cli_client_free(c);
		return r;
	}
	/*
	 * Before anything is sent (a definition may hold secrets): the other
	 * end must be the user's own daemon or root's.  Anyone could have made
	 * the socket's directory first, under /tmp say, and listen there.
	 */
	{
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			r = -errno;
			cli_client_free(c);
			return r;
		}
		if (ret_peer)
			*ret_peer = cred;
		if (cred.uid != getuid() && cred.uid != 0) {
			cli_client_free(c);
			return -EPERM;
		}
	}
	*ret = c;
	return 0;
}

void cli_client_free(struct cli_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	rpc_scanner_free(c->scan);
	free(c->buf);
	free(c);
}

void cli_client_set_notify(struct cli_client *c, cli_notify_fn fn, void *arg)
{
	c->notify = fn;
	c->notify_arg = arg;
}

void cli_client_set_raw(struct cli_client *c, cli_raw_notify_fn notify,
			cli_response_fn response, void *arg)
{
	c->raw_notify = notify;
	c->raw_response = response;
	c->raw_arg = arg;
}

/* Milliseconds for poll() until deadline_ns, rounded up; -1 for no deadline. */
static int poll_timeout(uint64_t deadline_ns)
{
	uint64_t now = now_ns(), ms;

	if (deadline_ns == UINT64_MAX)
		return -1;
	if (now >= deadline_ns)
		return 0;
	ms = (deadline_ns - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int send_all(struct cli_client *c, const char *p, size_t n, uint64_t deadline_ns,
		    struct cli_call_err *err)
{
	while (n) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w >= 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return fail(err, -ECONNRESET, "corrald closed the connection");
		if (errno != EAGAIN)
			return fail(err, -errno, "cannot send to corrald: %s", strerror(errno));
		if (poll(&pfd, 1, poll_timeout(deadline_ns)) == 0 && now_ns() >= deadline_ns)
			return fail(err, -ETIMEDOUT, "timed out sending to corrald");
	}
	return 0;
}

/*
 * The next message from the daemon: 1 and *ret, 0 if extra_fd became
 * readable first, or a negative error (err filled).
 */
static int next_msg(struct cli_client *c, uint64_t deadline_ns, int extra_fd,
		    struct rpc_msg **ret, struct cli_call_err *err)
{
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = extra_fd, .events = POLLIN },
		};
		char reason[256];
		size_t frame_len;
		ssize_t n;
		int r;

		if (c->len) {
			r = rpc_scanner_scan(c->scan, c->buf, c->len, &frame_len);
			if (r < 0)
				return fail(err, -EPROTO, "corrald sent a bad message: %s",
					    rpc_strerror_scan(r));
			if (r == 1) {
				r = rpc_decode(c->buf, frame_len, ret, reason, sizeof(reason));
				c->len -= frame_len;
				memmove(c->buf, c->buf + frame_len, c->len);
				if (r == -ENOMEM)
					return fail(err, r, "out of memory");
				if (r)
					return fail(err, -EPROTO, "corrald sent a bad message: %s",
						    reason);
				return 1;
			}
		}
		if (c->cap - c->len < READ_CHUNK && c->cap < RPC_MAX_FRAME) {
			size_t cap = c->cap ? c->cap * 2 : READ_CHUNK;
			char *buf;

			if (cap > RPC_MAX_FRAME)
				cap = RPC_MAX_FRAME;
			buf = realloc(c->buf, cap);
			if (!buf)
				return fail(err, -ENOMEM, "out of memory");
			c->buf = buf;
			c->cap = cap;
		}

		r = poll(pfd, extra_fd >= 0 ? 2 : 1, poll_timeout(deadline_ns));
		if (r < 0 && errno != EINTR)
			return fail(err, -errno, "poll: %s", strerror(errno));
		if (r <= 0) {
			if (now_ns() >= deadline_ns)
				return fail(err, -ETIMEDOUT, "no answer from corrald in time");
			continue;
		}
		if (extra_fd >= 0 && pfd[1].revents)
			return 0;
		/* The scanner refuses a frame before it reaches RPC_MAX_FRAME. */
		BUG_ON(c->len == c->cap);
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n == 0)
			return fail(err, -ECONNRESET, "corrald closed the connection");
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ECONNRESET)
				return fail(err, -ECONNRESET, "corrald closed the connection");
			return fail(err, -errno, "cannot read from corrald: %s", strerror(errno));
		}
		c->len += (size_t)n;
	}
}

/* A value from the daemon as JSON; what names it in the reason. */
static int to_json(const msgpack_object *obj, const char *what, json_t **ret,
		   struct cli_call_err *err)
{
	char reason[256];
	int r = rpc_obj_to_json(obj, what, ret, reason, sizeof(reason));

	if (r == -ENOMEM)
		return fail(err, r, "out of memory");
	if (r)
		return fail(err, -EPROTO, "corrald sent what JSON cannot hold: %s", reason);
	return 0;
}

static int dispatch(struct cli_client *c, const struct rpc_msg *m, struct cli_call_err *err)
{
	json_t *params;
	int r;

	if (c->raw_notify) {
		c->raw_notify(rpc_msg_method(m), rpc_msg_params(m), c->raw_arg);
		return 0;
	}
	if (!c->notify)
		return 0;
	r = to_json(rpc_msg_params(m), rpc_msg_method(m), &params, err);
	if (r)
		return r;
	c->notify(rpc_msg_method(m), params, c->notify_arg);
	json_decref(params);
	return 0;
}

static int pack_request_bin(msgpack_packer *pk, uint32_t id, const char *method,
			    json_t *params, const char *bin_key, const void *bin, size_t len,
			    struct cli_call_err *err)
{
	const char *key;
	json_t *val;
	int r;

	r = rpc_pack_request_begin(pk, id, method);
	if (r == -EINVAL)
		return fail(err, r, "invalid method name '%s'", method);
	if (!r && !params && !bin_key)
		r = msgpack_pack_array(pk, 0) ? -ENOMEM : 0;
	else if (!r)
		r = rpc_pack_params_map_begin(pk, (uint32_t)json_object_size(params) +
					      (bin_key ? 1 : 0));
	json_object_foreach(params, key, val) {
		if (!r)
			r = rpc_pack_cstr(pk, key);
		if (!r)
			r = rpc_pack_json(pk, val);
	}
	if (!r && bin_key && (rpc_pack_cstr(pk, bin_key) || len > UINT32_MAX ||
			      msgpack_pack_bin(pk, len) || msgpack_pack_bin_body(pk, bin, len)))
		r = -ENOMEM;
	if (r == -EINVAL)
		return fail(err, r, "the request nests deeper than %d levels", RPC_JSON_MAX_DEPTH);
	if (r)
		return fail(err, r, "out of memory");
	return 0;
}

static int pack_request(msgpack_packer *pk, uint32_t id, const char *method, json_t *params,
			struct cli_call_err *err)
{
	return pack_request_bin(pk, id, method, params, NULL, NULL, 0, err);
}

/* The response m to our call: its result or its error. */
static int take_response(const struct rpc_msg *m, json_t **ret_result, struct cli_call_err *err)
{
	const msgpack_object *e = rpc_msg_error(m);
	const char *text;
	size_t len;
	int64_t code;
	json_t *res;
	int r;

	if (e) {
		if (rpc_error_parse(e, &code, &text, &len))
			return fail(err, -EPROTO, "corrald sent an error of the wrong shape (%s)",
				    rpc_obj_type_name(e));
		fail(err, -EREMOTEIO, "%.*s", (int)(len > INT_MAX ? INT_MAX : len), text);
		err->code = code > 0 && code <= INT_MAX ? (int)code : RPC_ERR_INTERNAL;
		return -EREMOTEIO;
	}
	r = to_json(rpc_msg_result(m), "result", &res, err);
	if (r)
		return r;
	*ret_result = res;
	return 0;
}

static int call(struct cli_client *c, const char *method, json_t *params,
		uint64_t deadline_ns, json_t **ret_result, cli_raw_result_fn raw, void *raw_arg,
		struct cli_call_err *err);

int cli_client_call(struct cli_client *c, const char *method, json_t *params,
		    uint64_t deadline_ns, json_t **ret_result, struct cli_call_err *err)
{
	return call(c, method, params, deadline_ns, ret_result, NULL, NULL, err);
}

int cli_client_call_raw(struct cli_client *c, const char *method, json_t *params,
			uint64_t deadline_ns, cli_raw_result_fn fn, void *arg,
			struct cli_call_err *err)
{
	return call(c, method, params, deadline_ns, NULL, fn, arg, err);
}

static int call(struct cli_client *c, const char *method, json_t *params,
		uint64_t deadline_ns, json_t **ret_result, cli_raw_result_fn raw, void *raw_arg,
		struct cli_call_err *err)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	uint32_t id = c->next_id++;
	bool done = false;
	int r;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	r = pack_request(&pk, id, method, params, err);
	if (!r && sb.size > RPC_MAX_FRAME)
		r = fail(err, -EMSGSIZE, "request is %zu bytes, over the limit of %u", sb.size,
			 RPC_MAX_FRAME);
	else
		r = send_all(c, sb.data, sb.size, deadline_ns, err);
	msgpack_sbuffer_destroy(&sb);
	if (r)
		return r;

	for (;;) {
		r = next_msg(c, deadline_ns, -1, &m, err);
		if (r < 0)
			return r;
		r = 0;
		if (rpc_msg_type(m) == RPC_NOTIFICATION) {
			r = dispatch(c, m, err);
		} else if (rpc_msg_type(m) == RPC_RESPONSE && rpc_msg_id(m) == id) {
			done = true;
			if (raw && !rpc_msg_error(m))
				raw(rpc_msg_result(m), raw_arg);
			else
				r = take_response(m, ret_result, err);
		}
		/* Anything else (a stray response, a request) is not for us. */
		rpc_msg_free(m);
		if (r || done)
			return r;
	}
}

int cli_client_post(struct cli_client *c, const char *method, json_t *params,
		    const char *bin_key, const void *bin, size_t len, uint64_t deadline_ns,
		    uint32_t *ret_id, struct cli_call_err *err)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint32_t id = c->next_id++;
	int r;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	r = pack_request_bin(&pk, id, method, params, bin_key, bin, len, err);
	if (!r && sb.size > RPC_MAX_FRAME)
		r = fail(err, -EMSGSIZE, "request is %zu bytes, over the limit of %u", sb.size,
			 RPC_MAX_FRAME);
	else if (!r)
		r = send_all(c, sb.data, sb.size, deadline_ns, err);
	msgpack_sbuffer_destroy(&sb);
	if (!r)
		*ret_id = id;
	return r;
}

/* A response to a posted call: to the response hook. */
static void posted_response(struct cli_client *c, const struct rpc_msg *m)
{
	struct cli_call_err e = { 0 };
	json_t *res = NULL;

	if (take_response(m, &res, &e) == 0) {
		json_decref(res);
		c->raw_response(rpc_msg_id(m), NULL, c->raw_arg);
	} else {
		c->raw_response(rpc_msg_id(m), &e, c->raw_arg);
	}
}

int cli_client_wait(struct cli_client *c, uint64_t deadline_ns, int extra_fd,
		    struct cli_call_err *err)
{
	struct rpc_msg *m;
	int r;

	for (;;) {
		r = next_msg(c, deadline_ns, extra_fd, &m, err);
		if (r <= 0)
			return r;
		r = 0;
		if (rpc_msg_type(m) == RPC_NOTIFICATION) {
			r = dispatch(c, m, err);
			if (!r)
				r = 1;
		} else if (rpc_msg_type(m) == RPC_RESPONSE && c->raw_response) {
			posted_response(c, m);
			r = 1;
		}
		rpc_msg_free(m);
		if (r)
			return r;
	}
}

/* SPDX-License-Identifier: MIT */
/* A stand-in corrald for the CLI tests (see fake.h). */
#include "fake.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rpc/json-conv.h"
#include "rpc/rpc.h"

struct fake {
	int lfd, cfd, stop_pipe[2];
	bool once;
	pthread_t thread;
	pthread_mutex_t lock;   /* log, cfd writes */
	pthread_cond_t cond;
	json_t *log;            /* [{"method", "params"}] */
	fake_handler_fn fn;
	void *arg;
	char buf[1 << 20];      /* bytes read, not yet decoded */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Send what pk's buffer holds on the connection, under the lock. */
static int send_buf(struct fake *f, msgpack_sbuffer *sb)
{
	int r = -ENOTCONN;

	pthread_mutex_lock(&f->lock);
	if (f->cfd >= 0)
		r = write_all(f->cfd, sb->data, sb->size);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void close_conn(struct fake *f)
{
	pthread_mutex_lock(&f->lock);
	close(f->cfd);
	f->cfd = -1;
	pthread_mutex_unlock(&f->lock);
}

/* 0, or -1 to hang up. */
static int serve_request(struct fake *f, const struct rpc_msg *m)
{
	struct fake_reply reply = { .action = FAKE_REPLY };
	const msgpack_object *map;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	json_t *params;
	int r = 0;

	if (rpc_msg_params_map(m, &map, NULL, 0) || rpc_obj_to_json(map, "params", &params, NULL, 0))
		params = json_object();
	pthread_mutex_lock(&f->lock);
	json_array_append_new(f->log, json_pack("{s:s, s:O}", "method", rpc_msg_method(m),
						"params", params));
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);

	if (f->fn)
		f->fn(rpc_msg_method(m), params, &reply, f->arg);
	json_decref(params);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	switch (reply.action) {
	case FAKE_REPLY:
		rpc_pack_response_begin(&pk, rpc_msg_id(m));
		if (reply.result)
			rpc_pack_json(&pk, reply.result);
		else
			msgpack_pack_nil(&pk);
		send_buf(f, &sb);
		break;
	case FAKE_ERROR:
		rpc_pack_error_response(&pk, rpc_msg_id(m), reply.code, reply.message);
		send_buf(f, &sb);
		break;
	case FAKE_SILENT:
		break;
	case FAKE_HANGUP:
		r = -1;
		break;
	}
	json_decref(reply.result);
	msgpack_sbuffer_destroy(&sb);
	return r;
}

static void *serve(void *arg)
{
	struct fake *f = arg;
	struct rpc_scanner *scan;
	char *buf = f->buf;
	size_t len = 0;

	if (rpc_scanner_new(&scan))
		return NULL;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = f->cfd >= 0 ? f->cfd : f->lfd, .events = POLLIN },
			{ .fd = f->stop_pipe[0], .events = POLLIN },
		};
		size_t frame_len;
		ssize_t n;
		int r;

		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents)
			break;
		if (f->cfd < 0) {
			int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);

			pthread_mutex_lock(&f->lock);
			f->cfd = fd;
			pthread_mutex_unlock(&f->lock);
			len = 0;
			rpc_scanner_reset(scan);
			continue;
		}
		n = read(f->cfd, buf + len, sizeof(f->buf) - len);
		if (n <= 0) {
			close_conn(f);
			if (f->once)
				break;
			continue;
		}
		len += (size_t)n;
		while ((r = rpc_scanner_scan(scan, buf, len, &frame_len)) == 1) {
			struct rpc_msg *m;

			r = rpc_decode(buf, frame_len, &m, NULL, 0);
			len -= frame_len;
			memmove(buf, buf + frame_len, len);
			if (r)
				break;
			r = rpc_msg_type(m) == RPC_REQUEST ? serve_request(f, m) : 0;
			rpc_msg_free(m);
			if (r)
				break;
		}
		if (r < 0) {
			close_conn(f);
			if (f->once)
				break;
		}
	}
	rpc_scanner_free(scan);
	return NULL;
}

struct fake *fake_start(const char *sock_path, fake_handler_fn fn, void *arg, bool once)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fake *f = calloc(1, sizeof(*f));

	if (!f || strlen(sock_path) >= sizeof(sa.sun_path))
		return NULL;
	strcpy(sa.sun_path, sock_path);
	f->cfd = -1;
	f->fn = fn;
	f->arg = arg;
	f->once = once;
	f->log = json_array();
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(f->lfd, 8) || pipe2(f->stop_pipe, O_CLOEXEC) ||
	    pthread_create(&f->thread, NULL, serve, f))
		return NULL;
	return f;
}

void fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
}

void fake_stop(struct fake *f)
{
	if (!f)
		return;
	if (write(f->stop_pipe[1], "x", 1) < 0)
		abort();
	fake_join(f);
	if (f->cfd >= 0)
		close(f->cfd);
	close(f->lfd);
	close(f->stop_pipe[0]);
	close(f->stop_pipe[1]);
	json_decref(f->log);
	free(f);
}

static unsigned count_locked(struct fake *f, const char *method)
{
	unsigned n = 0;
	json_t *e;
	size_t i;

	json_array_foreach(f->log, i, e)
		n += !strcmp(json_string_value(json_object_get(e, "method")), method);
	return n;
}

unsigned fake_count(struct fake *f, const char *method)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = count_locked(f, method);
	pthread_mutex_unlock(&f->lock);
	return n;
}

bool fake_wait(struct fake *f, const char *method, unsigned n, unsigned timeout_ms)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&f->lock);
	while (!(ok = count_locked(f, method) >= n))
		if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) == ETIMEDOUT)
			break;
	ok = count_locked(f, method) >= n;
	pthread_mutex_unlock(&f->lock);
	return ok;
}

json_t *fake_params(struct fake *f, const char *method, unsigned i)
{
	json_t *e, *res = NULL;
	size_t k;

	pthread_mutex_lock(&f->lock);
	json_array_foreach(f->log, k, e) {
		if (strcmp(json_string_value(json_object_get(e, "method")), method))
			continue;
		if (i-- == 0) {
			res = json_incref(json_object_get(e, "params"));
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return res;
}

int fake_notify(struct fake *f, const char *method, json_t *params)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int r;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	rpc_pack_notification_begin(&pk, method);
	msgpack_pack_array(&pk, 1);
	rpc_pack_json(&pk, params);
	r = send_buf(f, &sb);
	msgpack_sbuffer_destroy(&sb);
	json_decref(params);
	return r;
}

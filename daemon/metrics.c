/* SPDX-License-Identifier: MIT */
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/domain.h"
#include "actors/vm.h"
#include "common/rcu.h"
#include "common/util.h"
#include "rpc/prom.h"

/* Bounds of the listener: a scraper or two, never a crowd. */
#define METRICS_CONNECTIONS     16
#define METRICS_IDLE_S          10
#define METRICS_CONN_MEMORY     (32u << 10)

struct metrics {
	struct MHD_Daemon *httpd;
	struct registry *reg;
};

/*
 * libmicrohttpd's thread reads snapshots, so it is an RCU reader: it
 * registers on its first request and unregisters when it exits (the key's
 * destructor), as liburcu requires of every reader thread.
 */
static pthread_key_t rcu_key;
static pthread_once_t rcu_key_once = PTHREAD_ONCE_INIT;

static void rcu_thread_exit(void *arg)
{
	urcu_memb_unregister_thread();
}

static void rcu_key_init(void)
{
	if (pthread_key_create(&rcu_key, rcu_thread_exit) != 0)
		abort();
}

static void rcu_reader(void)
{
	pthread_once(&rcu_key_once, rcu_key_init);
	if (!pthread_getspecific(rcu_key)) {
		urcu_memb_register_thread();
		pthread_setspecific(rcu_key, &rcu_key);
	}
}

struct collect {
	json_t *doms;
	uint64_t now;
};

/* One domain, in the shape of a `stats` answer's entries (docs/API.md). */
static int collect_one(struct domain *d, void *arg)
{
	struct collect *c = arg;
	const struct dom_snapshot *sn = dom_snap_rcu(d);
	uint64_t age;
	bool stale;
	const json_t *st = vm_stats_rcu(d, c->now, &age, &stale);
	json_t *e = json_pack("{s:s, s:s, s:{s:s}, s:b}", "name", sn->name, "state",
			      dom_state_name(sn->state), "monitor", "state",
			      dom_mon_state_name(sn->mon), "stale", stale);

	if (!e)
		return 1;
	if (st) {
		/* Copies: the published objects are never touched, not even their counts. */
		json_object_set_new(e, "age_s", json_real((double)age / 1e9));
		json_object_set_new(e, "cpu", json_deep_copy(json_object_get(st, "cpu")));
		json_object_set_new(e, "memory", json_deep_copy(json_object_get(st, "memory")));
		json_object_set_new(e, "disks", json_deep_copy(json_object_get(st, "disks")));
		json_object_set_new(e, "nics", json_deep_copy(json_object_get(st, "nics")));
	}
	return json_array_append_new(c->doms, e) < 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
			     size_t len, const char *type)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer_with_free_callback(len, body, free);
	enum MHD_Result r;

	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
				  const char *text)
{
	char *body = strdup(text);

	return body ? reply(conn, status, body, strlen(text), "text/plain; charset=utf-8")
		    : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	static int headers_seen;
	struct metrics *m = cls;
	struct collect c = { .now = now_ns() };
	json_t *stats;
	char *text;
	size_t len;
	int failed;

	/* The first call brings the headers; answer on the second. */
	if (*con_cls != &headers_seen) {
		*con_cls = &headers_seen;
		return MHD_YES;
	}
	if (*upload_data_size)
		return MHD_NO;          /* a body: not a scraper */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
	if (strcmp(url, "/metrics"))
		return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
	rcu_reader();
	c.doms = json_array();
	stats = json_pack("{s:o}", "domains", c.doms);
	if (!c.doms || !stats) {
		json_decref(stats);
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	crcu_read_lock();
	failed = reg_for_each_rcu(m->reg, collect_one, &c);
	crcu_read_unlock();
	text = failed ? NULL : prom_render_stats(stats, &len);
	json_decref(stats);
	if (!text)
		return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(conn, MHD_HTTP_OK, text, len, "text/plain; version=0.0.4; charset=utf-8");
}

int metrics_parse_listen(const char *listen, uint32_t *addr_be, uint16_t *port)
{
	const char *colon = strrchr(listen, ':'), *p = colon ? colon + 1 : listen;
	char host[INET_ADDRSTRLEN];
	struct in_addr a = { .s_addr = htonl(INADDR_LOOPBACK) };
	char *end;
	unsigned long v;

	if (colon) {
		if ((size_t)(colon - listen) >= sizeof(host))
			return -EINVAL;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
		if (inet_pton(AF_INET, host, &a) != 1)
			return -EINVAL;
	}
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*addr_be = a.s_addr;
	*port = (uint16_t)v;
	return 0;
}

int metrics_start(const char *listen, struct registry *reg, struct metrics **ret,
		  char *errbuf, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct metrics *m;
	uint16_t port;

	if (metrics_parse_listen(listen, &sa.sin_addr.s_addr, &port) < 0) {
		snprintf(errbuf, errlen, "metrics_listen: '%s' is not PORT or IPV4-ADDRESS:PORT",
			 listen);
		return -EINVAL;
	}
	sa.sin_port = htons(port);
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	m->reg = reg;
	m->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
				    port, NULL, NULL, on_request, m,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_S,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_CONN_MEMORY,
				    MHD_OPTION_END);
	if (!m->httpd) {
		int err = errno ? errno : EADDRINUSE;

		snprintf(errbuf, errlen, "cannot serve /metrics on %s: %s", listen, strerror(err));
		free(m);
		return -err;
	}
	*ret = m;
	return 0;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->httpd);
	free(m);
}

/* SPDX-License-Identifier: MIT */
/*
 * The RPC methods: one table drives dispatch, parameter checking, api.info
 * and docs/API.md (corrald --dump-api-md).
 *
 * Handlers run on the connection's loop thread inside its RCU read section
 * (domain pointers from the registry are valid until the handler returns).
 * Queries answer from snapshots right here; state changes become jobs whose
 * done callback (job_done, on a runtime worker) packs the reply and hands it
 * back with call_complete().
 */
#include "daemon/server-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "actors/console.h"
#include "actors/evbus.h"
#include "actors/vm.h"
#include "common/names.h"
#include "common/proc.h"
#include "common/roff.h"
#include "common/util.h"
#include "qemu/config.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

#ifndef CORRAL_VERSION
#define CORRAL_VERSION "unknown"
#endif

#define MAX_PARAMS       16
#define TIMEOUT_MAX_MS   86400000ULL     /* one day */

/* ---- small helpers -------------------------------------------------------- */

/*
 * A client's bytes for an error message: printable ASCII, the rest as \xNN,
 * cut at 64 bytes.  Error messages are msgpack str, which clients decode as
 * UTF-8: never echo raw bytes.
 */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < size; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i == 64) {
			o += (size_t)snprintf(buf + o, size - o, "...");
			break;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'')
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
	}
	buf[o] = '\0';
	return buf;
}

#define PK(expr)                                                        \
	do {                                                            \
		if ((expr) < 0)                                         \
			return req_fail(r, RPC_ERR_INTERNAL, "out of memory"); \
	} while (0)

static int pk_str(msgpack_packer *pk, const char *s)
{
	return rpc_pack_cstr(pk, s ? s : "");
}

static int pk_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	if (rpc_pack_cstr(pk, k) < 0)
		return -ENOMEM;
	return v ? rpc_pack_cstr(pk, v) : msgpack_pack_nil(pk);
}

static int pk_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
	if (rpc_pack_cstr(pk, k) < 0)
		return -ENOMEM;
	return msgpack_pack_uint64(pk, v);
}

static int pk_kv_double(msgpack_packer *pk, const char *k, double v)
{
	if (rpc_pack_cstr(pk, k) < 0)
		return -ENOMEM;
	return msgpack_pack_double(pk, v);
}

static int pk_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
	if (rpc_pack_cstr(pk, k) < 0)
		return -ENOMEM;
	return v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

/* uuid_format() without snprintf: list formats one per domain. */
static void fmt_uuid(const uint8_t u[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 15];
	}
	*p = '\0';
}

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* A str param as a C string (copied into buf); -1 with r set on error. */
static int get_str(struct req *r, const char *key, char *buf, size_t size, bool *ret_present)
{
	const msgpack_object *o = rpc_map_get(r->params, key);
	const char *s;
	size_t len;
	char q[300];

	if (ret_present)
		*ret_present = o != NULL;
	if (!o) {
		buf[0] = '\0';
		return 0;
	}
	/* Types were checked by req_check_params(). */
	rpc_obj_str(o, &s, &len);
	if (len >= size || memchr(s, 0, len))
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param '%s' is too long or holds a "
				"NUL byte: '%s'", key, quote(q, sizeof(q), s, len));
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

/* The "name" param, checked against the name rule. */
static int get_name(struct req *r, const char *key, char name[DOM_NAME_MAX + 1])
{
	const msgpack_object *o = rpc_map_get(r->params, key);
	const char *s;
	size_t len;
	char q[300];

	if (!o || rpc_obj_str(o, &s, &len) < 0)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "missing param '%s'", key);
	if (len > DOM_NAME_MAX || memchr(s, 0, len)) {
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "invalid domain name '%s': must "
				"match %s", quote(q, sizeof(q), s, len), CORRAL_NAME_RULE);
	}
	memcpy(name, s, len);
	name[len] = '\0';
	if (!corral_name_valid(name))
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "invalid domain name '%s': must "
				"match %s", quote(q, sizeof(q), s, len), CORRAL_NAME_RULE);
	return 0;
}

/* Look up the domain named by params.name.  RCU reader. */
static struct domain *lookup(struct req *r)
{
	char name[DOM_NAME_MAX + 1];
	struct domain *d;

	if (get_name(r, "name", name) < 0)
		return NULL;
	d = reg_lookup_name_rcu(r->srv->o.reg, name);
	if (!d)
		req_fail(r, RPC_ERR_NO_SUCH_DOMAIN, "no such domain '%s'", name);
	return d;
}

/* ---- jobs ------------------------------------------------------------------ */

static int dom_err_to_rpc(const struct dom_job *job)
{
	switch (job->code) {
	case DOM_ERR_BUSY: return RPC_ERR_BUSY;
	case DOM_ERR_TIMEOUT: return RPC_ERR_TIMEOUT;
	case DOM_ERR_STATE: return RPC_ERR_BAD_STATE;
	case DOM_ERR_GONE: return RPC_ERR_NO_SUCH_DOMAIN;
	case DOM_ERR_QEMU: return RPC_ERR_QEMU;
	case DOM_ERR_MONITOR: return RPC_ERR_MONITOR_BROKEN;
	case DOM_ERR_INVALID: return RPC_ERR_INVALID_ARGUMENT;
	case DOM_ERR_CANCELLED: return RPC_ERR_CANCELLED;
	case DOM_ERR_STORAGE: return RPC_ERR_STORAGE;
	case DOM_ERR_PERMISSION: return RPC_ERR_PERMISSION;
	case DOM_ERR_UNAVAILABLE: return RPC_ERR_UNAVAILABLE;
	}
	return RPC_ERR_INTERNAL;
}

/*
 * The domain's state for a job without a result: done runs after the
 * snapshot with the job's effect is published, so the snapshot is current.
 */
static const char *state_after_job(struct domain *d)
{
	const char *name;

	crcu_read_lock();
	name = dom_state_name(dom_snap_rcu(d)->state);
	crcu_read_unlock();
	return name;
}

/*
 * A job that failed because something ran out says what, first: never a
 * bare "Too many open files" or "No space left on device" the caller has
 * to decode.  Returns msg, or buf with the name of what ran out in front.
 */
static const char *name_what_ran_out(int err, const char *msg, char *buf, size_t len,
				     int *code)
{
	struct rlimit rl;

	switch (-err) {
	case EMFILE:
		if (strstr(msg, "out of file descriptors"))
			return msg;
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
			rl.rlim_cur = 0;
		snprintf(buf, len, "corrald is out of file descriptors (at its limit of %llu "
			 "open files: raise it, or close clients): %s",
			 (unsigned long long)rl.rlim_cur, msg);
		return buf;
	case ENFILE:
		if (strstr(msg, "out of file descriptors"))
			return msg;
		snprintf(buf, len, "the system is out of file descriptors: %s", msg);
		return buf;
	case ENOMEM:
		if (strstr(msg, "out of memory"))
			return msg;
		snprintf(buf, len, "corrald is out of memory: %s", msg);
		return buf;
	case ENOSPC:
	case EDQUOT:
		*code = RPC_ERR_STORAGE;
		if (strstr(msg, " full"))
			return msg;
		snprintf(buf, len, "disk full: %s", msg);
		return buf;
	}
	return msg;
}

static int pack_job_reply(msgpack_packer *pk, struct call *cl, struct dom_job *job)
{
	if (job->err || job->code != DOM_ERR_NONE) {
		const char *msg = job->errmsg[0] ? job->errmsg : strerror(-job->err);
		char named[DOM_ERRMSG_MAX + 160];
		int code = dom_err_to_rpc(job);

		msg = name_what_ran_out(job->err, msg, named, sizeof(named), &code);
		return rpc_pack_error_response(pk, cl->msgid, code, msg);
	}
	if (rpc_pack_response_begin(pk, cl->msgid) < 0)
		return -ENOMEM;
	if (job->result)
		return rpc_pack_json(pk, job->result);
	if (msgpack_pack_map(pk, 1) < 0)
		return -ENOMEM;
	return pk_kv_str(pk, "state", state_after_job(cl->dom ? cl->dom : job->dom));
}

/* Runtime worker (the domain actor): must not block. */
static void job_done(struct dom_job *job, void *arg)
{
	struct call *cl = arg;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	/*
	 * Most replies are tens of bytes: start small (the sbuffer doubles as
	 * it needs) rather than at msgpack's 8 KiB, a large allocation per job.
	 */
	sb.data = malloc(256);
	sb.alloc = sb.data ? 256 : 0;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (pack_job_reply(&pk, cl, job) < 0 || sb.size > RPC_MAX_FRAME) {
		msgpack_sbuffer_clear(&sb);
		/* Too big or out of memory: a short error instead. */
		if (rpc_pack_error_response(&pk, cl->msgid, RPC_ERR_INTERNAL,
					    "the job's result could not be sent") < 0)
			cl->oom = true;
	}
	cl->reply_len = cl->oom ? 0 : sb.size;
	cl->reply = msgpack_sbuffer_release(&sb);      /* zeroes sb.size */
	msgpack_sbuffer_destroy(&sb);
	dom_job_free(job);
	/* Read-your-writes holds: done runs after the domain published the effect. */
	call_complete(cl);
}

/*
 * Queue op on d, answered when it ends.  as_caller: a job that opens files
 * (hotplug, save, restore) opens them with the caller's rights
 * (SO_PEERCRED), as define and start open a definition's.
 */
static int submit(struct req *r, struct domain *d, enum vm_op op, json_t *args, bool as_caller)
{
	struct dom_job *job;
	struct call *cl;
	char err[DOM_ERRMSG_MAX];
	int ret;

	cl = call_new(r, d);
	if (!cl)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	err[0] = '\0';
	ret = vm_job_new(op, args, r->timeout_ns, job_done, cl, &job, err, sizeof(err));
	if (ret < 0) {
		call_cancel(cl);
		return req_fail(r, ret == -EINVAL ? RPC_ERR_INVALID_ARGUMENT : RPC_ERR_INTERNAL,
				"%s", err[0] ? err : strerror(-ret));
	}
	if (as_caller)
		vm_job_set_caller(job, &r->c->creds);
	ret = vm_submit(d, job);
	if (ret < 0) {
		dom_job_free(job);
		call_cancel(cl);
		return req_fail(r, RPC_ERR_NO_SUCH_DOMAIN, "domain '%s' is gone", dom_name(d));
	}
	return REQ_ASYNC;
}

static int submit_job(struct req *r, struct domain *d, enum vm_op op, json_t *args)
{
	return submit(r, d, op, args, false);
}

static int submit_job_as(struct req *r, struct domain *d, enum vm_op op, json_t *args)
{
	return submit(r, d, op, args, true);
}

/* ---- methods ---------------------------------------------------------------- */

static const char *const err_docs[RPC_ERR_MAX + 1] = {
	[RPC_ERR_INVALID_REQUEST] = "malformed message, or not the shape of a request",
	[RPC_ERR_METHOD_NOT_FOUND] = "no method of that name",
	[RPC_ERR_INVALID_ARGUMENT] = "params missing, of the wrong type or out of range",
	[RPC_ERR_NO_SUCH_DOMAIN] = "no domain of that name is defined",
	[RPC_ERR_EXISTS] = "a domain of that name (or UUID) is already defined",
	[RPC_ERR_BUSY] = "the domain was held by other jobs past the call's deadline; or, at "
			 "once, `waiting_jobs_max` jobs already wait for it, or the connection "
			 "has `client_inflight_max` state changes in flight (docs/daemon.md)",
	[RPC_ERR_TIMEOUT] = "the operation ran past its deadline",
	[RPC_ERR_BAD_STATE] = "not valid in the domain's current state",
	[RPC_ERR_PERMISSION] = "read-only socket, or the caller may not do this",
	[RPC_ERR_QEMU] = "QEMU answered the command with an error",
	[RPC_ERR_MONITOR_BROKEN] = "the QMP connection to QEMU failed, hangs or was lost",
	[RPC_ERR_INTERNAL] = "a bug or resource failure inside corrald",
	[RPC_ERR_UNAVAILABLE] = "corrald is shutting down",
	[RPC_ERR_CANCELLED] = "the job was cancelled by a destroy of its domain",
	[RPC_ERR_STORAGE] = "corrald could not write its state (disk full, read-only, I/O "
			    "error); nothing was changed",
};

static const char *type_name(enum param_type t)
{
	switch (t) {
	case P_STR: return "str";
	case P_UINT: return "uint";
	case P_MAP: return "map";
	case P_BOOL: return "bool";
	case P_DATA: return "bin|str";
	case P_STRV: return "[str]";
	}
	return "?";
}

extern const struct method methods[];
extern const size_t methods_count;

/* A row's comma-separated states ("running, paused") as an array. */
static int pk_words(msgpack_packer *pk, const char *list)
{
	const char *p = list;
	uint32_t n = 1;

	for (const char *c = list; *c; c++)
		n += *c == ',';
	if (msgpack_pack_array(pk, n) < 0)
		return -ENOMEM;
	while (*p) {
		size_t len = strcspn(p, ",");

		if (msgpack_pack_str(pk, len) < 0 || msgpack_pack_str_body(pk, p, len) < 0)
			return -ENOMEM;
		p += len;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

/* The tables a client is written from: states, reasons, monitor, events, config. */
static int pack_api_tables(msgpack_packer *pk, uint64_t default_timeout_ms)
{
	size_t nmon, nf = qemu_config_field_count();
	const struct vm_doc *mon = vm_monitor_docs(&nmon);

	if (rpc_pack_cstr(pk, "limits") < 0 || msgpack_pack_map(pk, 7) < 0 ||
	    pk_kv_u64(pk, "message_bytes", RPC_MAX_FRAME) < 0 ||
	    pk_kv_u64(pk, "depth", RPC_MAX_DEPTH) < 0 ||
	    pk_kv_u64(pk, "objects", RPC_MAX_OBJECTS) < 0 ||
	    pk_kv_u64(pk, "msgid_max", UINT32_MAX) < 0 ||
	    pk_kv_u64(pk, "params", MAX_PARAMS) < 0 ||
	    pk_kv_u64(pk, "timeout_ms_max", TIMEOUT_MAX_MS) < 0 ||
	    pk_kv_u64(pk, "timeout_ms_default", default_timeout_ms) < 0)
		return -ENOMEM;
	if (rpc_pack_cstr(pk, "states") < 0 || msgpack_pack_array(pk, DOM_STATE_COUNT) < 0)
		return -ENOMEM;
	for (int i = 0; i < DOM_STATE_COUNT; i++) {
		const struct vm_doc *row = vm_state_doc((enum dom_state)i);

		if (msgpack_pack_map(pk, 2) < 0 || pk_kv_str(pk, "name", row->name) < 0 ||
		    pk_kv_str(pk, "doc", row->doc) < 0)
			return -ENOMEM;
	}
	if (rpc_pack_cstr(pk, "reasons") < 0 || msgpack_pack_array(pk, VR_COUNT) < 0)
		return -ENOMEM;
	for (int i = 0; i < VR_COUNT; i++) {
		const struct vm_doc *row = vm_reason_doc((enum vm_reason)i);

		if (msgpack_pack_map(pk, 3) < 0 || pk_kv_str(pk, "name", row->name) < 0 ||
		    rpc_pack_cstr(pk, "states") < 0 || pk_words(pk, row->applies) < 0 ||
		    pk_kv_str(pk, "doc", row->doc) < 0)
			return -ENOMEM;
	}
	if (rpc_pack_cstr(pk, "monitor_states") < 0 || msgpack_pack_array(pk, nmon) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < nmon; i++)
		if (msgpack_pack_map(pk, 2) < 0 || pk_kv_str(pk, "name", mon[i].name) < 0 ||
		    pk_kv_str(pk, "doc", mon[i].doc) < 0)
			return -ENOMEM;
	if (rpc_pack_cstr(pk, "events") < 0 || msgpack_pack_array(pk, VE_COUNT + 1) < 0)
		return -ENOMEM;
	for (int i = 0; i <= VE_COUNT; i++) {
		const struct vm_doc *row = i < VE_COUNT ? vm_event_doc((enum vm_event)i) :
							  vm_qemu_event_doc();

		if (msgpack_pack_map(pk, 4) < 0 || pk_kv_str(pk, "name", row->name) < 0 ||
		    pk_kv_str(pk, "family", i < VE_COUNT ? "corral" : "qemu") < 0 ||
		    pk_kv_str(pk, "payload", row->applies) < 0 ||
		    pk_kv_str(pk, "doc", row->doc) < 0)
			return -ENOMEM;
	}
	if (rpc_pack_cstr(pk, "config_fields") < 0 || msgpack_pack_array(pk, nf) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < nf; i++) {
		const struct qemu_config_field *f = qemu_config_field(i);

		if (msgpack_pack_map(pk, f->has_range ? 9 : 6) < 0 ||
		    pk_kv_str(pk, "name", f->key) < 0 || pk_kv_str(pk, "type", f->type) < 0 ||
		    pk_kv_bool(pk, "required", f->required) < 0 ||
		    pk_kv_str(pk, "default", f->def) < 0 || pk_kv_str(pk, "rule", f->rule) < 0 ||
		    pk_kv_str(pk, "example", f->example) < 0)
			return -ENOMEM;
		if (f->has_range && (rpc_pack_cstr(pk, "min") < 0 ||
				     msgpack_pack_int64(pk, f->min) < 0 ||
				     rpc_pack_cstr(pk, "max") < 0 ||
				     msgpack_pack_int64(pk, f->max) < 0 ||
				     pk_kv_str(pk, "unit", f->unit) < 0))
			return -ENOMEM;
	}
	return 0;
}

static int m_api_info(struct req *r)
{
	msgpack_packer *pk = r->pk;

	PK(msgpack_pack_map(pk, 9));
	PK(pk_kv_str(pk, "version", CORRAL_VERSION));
	PK(pk_str(pk, "methods"));
	PK(msgpack_pack_array(pk, methods_count));
	for (size_t i = 0; i < methods_count; i++) {
		const struct method *m = &methods[i];
		unsigned n = 0;

		while (m->params[n].name)
			n++;
		PK(msgpack_pack_map(pk, 5));
		PK(pk_kv_str(pk, "name", m->name));
		PK(pk_kv_str(pk, "doc", m->doc));
		PK(pk_kv_bool(pk, "read_only_socket", m->ro_ok));
		PK(pk_str(pk, "params"));
		PK(msgpack_pack_array(pk, n));
		for (unsigned j = 0; j < n; j++) {
			const struct param *p = &m->params[j];

			PK(msgpack_pack_map(pk, 4));
			PK(pk_kv_str(pk, "name", p->name));
			PK(pk_kv_str(pk, "type", type_name(p->type)));
			PK(pk_kv_bool(pk, "required", p->required));
			PK(pk_kv_str(pk, "doc", p->doc));
		}
		PK(pk_kv_str(pk, "result", m->result));
	}
	PK(pk_str(pk, "errors"));
	PK(msgpack_pack_array(pk, RPC_ERR_MAX - RPC_ERR_MIN + 1));
	for (int code = RPC_ERR_MIN; code <= RPC_ERR_MAX; code++) {
		PK(msgpack_pack_map(pk, 3));
		PK(pk_kv_u64(pk, "code", (uint64_t)code));
		PK(pk_kv_str(pk, "name", rpc_err_name(code)));
		PK(pk_kv_str(pk, "doc", err_docs[code]));
	}
	PK(pack_api_tables(pk, r->srv->o.default_timeout_ms));
	return 0;
}

struct daemon_counts {
	uint64_t running;
	uint64_t mon[DOM_MON_BROKEN + 1];
};

static int count_domain(struct domain *d, void *arg)
{
	const struct dom_snapshot *sn = dom_snap_rcu(d);
	struct daemon_counts *c = arg;

	c->running += sn->state == DOM_RUNNING;
	if ((unsigned)sn->mon <= DOM_MON_BROKEN)
		c->mon[sn->mon]++;
	return 0;
}

static int m_daemon_info(struct req *r)
{
	struct server *s = r->srv;
	msgpack_packer *pk = r->pk;
	struct daemon_counts c = { 0 };

	reg_for_each_rcu(s->o.reg, count_domain, &c);
	PK(msgpack_pack_map(pk, 13));
	PK(pk_kv_str(pk, "version", CORRAL_VERSION));
	PK(pk_kv_u64(pk, "pid", (uint64_t)getpid()));
	PK(pk_kv_double(pk, "uptime_s", secs(now_ns() - s->started_ns)));
	PK(pk_kv_u64(pk, "domains", reg_count(s->o.reg)));
	PK(pk_kv_u64(pk, "running", c.running));
	/* Every state, even at 0: a client reads the key it waits on. */
	PK(pk_str(pk, "monitors"));
	PK(msgpack_pack_map(pk, DOM_MON_BROKEN + 1));
	for (unsigned m = 0; m <= DOM_MON_BROKEN; m++)
		PK(pk_kv_u64(pk, dom_mon_state_name(m), c.mon[m]));
	PK(pk_kv_u64(pk, "rss_bytes", proc_rss_bytes()));
	PK(pk_kv_u64(pk, "workers", s->o.workers));
	PK(pk_kv_u64(pk, "io_threads", s->o.io_threads));
	PK(pk_kv_u64(pk, "connections", server_connections(s)));
	PK(pk_kv_u64(pk, "events_published", evbus_published(s->o.bus)));
	PK(pk_kv_u64(pk, "input_bytes", __atomic_load_n(&s->in_total, __ATOMIC_RELAXED)));
	PK(pk_kv_u64(pk, "output_bytes", __atomic_load_n(&s->out_total, __ATOMIC_RELAXED)));
	return 0;
}

struct list_acc {
	struct domain **v;
	size_t n, cap;
	int state;                      /* -1: all */
	bool oom;
};

static int list_collect(struct domain *d, void *arg)
{
	struct list_acc *acc = arg;

	if (acc->state >= 0 && (int)dom_snap_rcu(d)->state != acc->state)
		return 0;
	if (acc->n == acc->cap) {
		size_t cap = acc->cap ? acc->cap * 2 : 64;
		struct domain **v = realloc(acc->v, cap * sizeof(*v));

		if (!v) {
			acc->oom = true;
			return 1;
		}
		acc->v = v;
		acc->cap = cap;
	}
	acc->v[acc->n++] = d;
	return 0;
}

/* "monitor": {"state": ..., "since_s": (the caller packs the value) */
static int pack_monitor_head(msgpack_packer *pk, const struct dom_snapshot *sn)
{
	if (rpc_pack_cstr(pk, "monitor") < 0 || msgpack_pack_map(pk, 2) < 0 ||
	    pk_kv_str(pk, "state", dom_mon_state_name(sn->mon)) < 0 ||
	    rpc_pack_cstr(pk, "since_s") < 0)
		return -ENOMEM;
	return 0;
}

static double mon_since_s(const struct dom_snapshot *sn, uint64_t now)
{
	return now > sn->mon_since_ns ? secs(now - sn->mon_since_ns) : 0;
}

/* "monitor": {state, since_s}, the same in list, stats and info. */
static int pack_monitor(msgpack_packer *pk, const struct dom_snapshot *sn, uint64_t now)
{
	if (pack_monitor_head(pk, sn) < 0 || msgpack_pack_double(pk, mon_since_s(sn, now)) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * A rendering made by a reader, p, into a memo slot that takes one (set
 * once from NULL): what the slot holds afterwards.  Another I/O thread may
 * have made the same one meanwhile: one is kept, p freed if it lost.
 */
static void *memo_set(void **slot, void *p)
{
	void *expected = NULL;

	if (!p)
		return NULL;
	if (__atomic_compare_exchange_n(slot, &expected, p, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return p;
	free(p);
	return expected;
}

/*
 * A snapshot's list and stats entries as packed bytes, made on the first
 * call that needs them and kept with the snapshot (dom_snap_memo_rcu):
 * each later call copies them instead of packing some thirty small pieces
 * per domain (a walk over 10,000 domains, a hundred times a second in
 * hung-10).  Only the monitor's `since_s`, from the clock, is packed per
 * call; it goes between a head and a tail.
 */
struct snap_packed {
	uint16_t list_head;     /* the list entry up to since_s's value */
	uint16_t list_tail;     /* the list entry after it */
	uint16_t stats_head;    /* the stats entry after its map header, up to since_s's value */
	char data[];            /* list head, list tail, stats head */
};

/* The three parts of struct snap_packed into pk, writing to sb; their lengths in len. */
static int pack_snap_parts(msgpack_packer *pk, const struct dom_snapshot *sn, size_t len[3],
			   const msgpack_sbuffer *sb)
{
	char uuid[37];

	fmt_uuid(sn->uuid, uuid);
	if (msgpack_pack_map(pk, 7) < 0 || pk_kv_str(pk, "name", sn->name) < 0 ||
	    pk_kv_str(pk, "uuid", uuid) < 0 ||
	    pk_kv_str(pk, "state", dom_state_name(sn->state)) < 0 ||
	    pk_kv_str(pk, "reason", sn->reason) < 0 ||
	    pk_kv_str(pk, "job", sn->job.id ? sn->job.name : NULL) < 0 ||
	    pack_monitor_head(pk, sn) < 0)
		return -ENOMEM;
	len[0] = sb->size;
	if (pk_kv_bool(pk, "autostart", sn->autostart) < 0)
		return -ENOMEM;
	len[1] = sb->size - len[0];
	if (pk_kv_str(pk, "name", sn->name) < 0 ||
	    pk_kv_str(pk, "state", dom_state_name(sn->state)) < 0 || pack_monitor_head(pk, sn) < 0)
		return -ENOMEM;
	len[2] = sb->size - len[0] - len[1];
	return 0;
}

static const struct snap_packed *snap_packed(const struct dom_snapshot *sn)
{
	void **slot = dom_snap_memo_rcu(sn);
	struct snap_packed *sp = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t len[3];

	if (sp)
		return sp;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* Under 600 bytes: names are at most DOM_NAME_MAX, the rest is fixed. */
	if (pack_snap_parts(&pk, sn, len, &sb) == 0 && sb.size <= UINT16_MAX)
		sp = malloc(sizeof(*sp) + sb.size);
	if (sp) {
		sp->list_head = (uint16_t)len[0];
		sp->list_tail = (uint16_t)len[1];
		sp->stats_head = (uint16_t)len[2];
		memcpy(sp->data, sb.data, sb.size);
	}
	msgpack_sbuffer_destroy(&sb);
	return memo_set(slot, sp);
}

static int pack_list_entry(msgpack_packer *pk, struct domain *d, uint64_t now)
{
	const struct dom_snapshot *sn = dom_snap_rcu(d);
	const struct snap_packed *sp = snap_packed(sn);

	if (!sp || pk->callback(pk->data, sp->data, sp->list_head) < 0 ||
	    msgpack_pack_double(pk, mon_since_s(sn, now)) < 0 ||
	    pk->callback(pk->data, sp->data + sp->list_head, sp->list_tail) < 0)
		return -ENOMEM;
	return 0;
}

static int m_info(struct req *r)
{
	struct domain *d = lookup(r);
	const struct dom_snapshot *sn;
	msgpack_packer *pk = r->pk;
	uint64_t now = now_ns();
	char uuid[37];

	if (!d)
		return -1;
	sn = dom_snap_rcu(d);
	fmt_uuid(sn->uuid, uuid);
	PK(msgpack_pack_map(pk, 15));
	PK(pk_kv_str(pk, "name", sn->name));
	PK(pk_kv_str(pk, "uuid", uuid));
	PK(pk_kv_str(pk, "state", dom_state_name(sn->state)));
	PK(pk_kv_str(pk, "reason", sn->reason));
	PK(pk_kv_u64(pk, "pid", (uint64_t)(sn->pid > 0 ? sn->pid : 0)));
	PK(pk_kv_bool(pk, "autostart", sn->autostart));
	PK(pk_str(pk, "job"));
	if (sn->job.id) {
		PK(msgpack_pack_map(pk, 3));
		PK(pk_kv_u64(pk, "id", sn->job.id));
		PK(pk_kv_str(pk, "name", sn->job.name));
		PK(pk_kv_double(pk, "held_s",
				now > sn->job.started_ns ? secs(now - sn->job.started_ns) : 0));
	} else {
		PK(msgpack_pack_nil(pk));
	}
	PK(pk_kv_u64(pk, "jobs_waiting", sn->jobs_waiting));
	PK(pack_monitor(pk, sn, now));
	PK(pk_str(pk, "counters"));
	PK(msgpack_pack_map(pk, 5));
	PK(pk_kv_u64(pk, "jobs_done", sn->counters.jobs_done));
	PK(pk_kv_u64(pk, "jobs_failed", sn->counters.jobs_failed));
	PK(pk_kv_u64(pk, "jobs_busy", sn->counters.jobs_busy));
	PK(pk_kv_u64(pk, "jobs_timeout", sn->counters.jobs_timeout));
	PK(pk_kv_u64(pk, "events", sn->counters.events));
	PK(pk_str(pk, "config"));
	if (rpc_pack_json(pk, vm_config_rcu(d)) < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "cannot pack the config");
	PK(pk_str(pk, "config_unknown"));
	if (rpc_pack_json(pk, vm_config_unknown_rcu(d)) < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "cannot pack the config");
	PK(pk_kv_double(pk, "updated", (double)sn->updated_wall_ns / 1e9));
	PK(pk_kv_u64(pk, "seq", sn->seq));
	PK(pk_str(pk, "live"));
	if (vm_live_rcu(d)) {
		if (rpc_pack_json(pk, vm_live_rcu(d)) < 0)
			return req_fail(r, RPC_ERR_INTERNAL, "cannot pack the devices");
	} else {
		PK(msgpack_pack_nil(pk));
	}
	return 0;
}

/*
 * stats: each domain's latest figures, from what its monitor published
 * (vm_stats_rcu): nothing here waits for a QEMU.
 */
/* Like PK, for helpers whose caller reports the failure once. */
#define PKE(expr)                                                       \
	do {                                                            \
		if ((expr) < 0)                                         \
			return -1;                                      \
	} while (0)

/* msgpack objects a JSON value becomes (rpc/rpc.h counts every key and value). */
static size_t json_objects(const json_t *j)
{
	const char *k;
	json_t *v;
	size_t i, n = 1;

	if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			n += json_objects(v);
	} else if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, v)
			n += 1 + json_objects(v);
	}
	return n;
}

/*
 * A publication's figures (cpu, memory, disks, nics: four key/value pairs),
 * packed once: every later stats call copies these bytes.
 */
struct stats_packed {
	size_t objects;
	size_t len;
	char data[];
};

static const struct stats_packed *stats_packed(struct domain *d, const json_t *st)
{
	static const char *const keys[] = { "cpu", "memory", "disks", "nics" };
	void **slot = vm_stats_memo_rcu(d, st);
	struct stats_packed *sp = slot ? __atomic_load_n(slot, __ATOMIC_ACQUIRE) : NULL;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t objects = 0;
	int r = 0;

	if (sp || !slot)
		return sp;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (size_t i = 0; r == 0 && i < sizeof(keys) / sizeof(keys[0]); i++) {
		const json_t *v = json_object_get(st, keys[i]);

		r = pk_str(&pk, keys[i]) < 0 || rpc_pack_json(&pk, v) < 0 ? -1 : 0;
		objects += 1 + json_objects(v);
	}
	sp = r == 0 ? malloc(sizeof(*sp) + sb.size) : NULL;
	if (sp) {
		sp->objects = objects;
		sp->len = sb.size;
		memcpy(sp->data, sb.data, sb.size);
	}
	msgpack_sbuffer_destroy(&sb);
	return memo_set(slot, sp);
}

/* One entry of a stats answer into pk; *objects: how many msgpack objects it holds. */
static int pack_stats_entry(msgpack_packer *pk, struct domain *d, uint64_t now,
			    size_t *objects)
{
	const struct dom_snapshot *sn = dom_snap_rcu(d);
	uint64_t age;
	bool stale;
	const json_t *st = vm_stats_rcu(d, now, &age, &stale);
	const struct stats_packed *sp = st ? stats_packed(d, st) : NULL;
	const struct snap_packed *snp = snap_packed(sn);

	if ((st && !sp) || !snp)
		return -1;
	*objects = 1 + 2 * 5 + 4;       /* the map, five pairs, monitor's two */
	PKE(msgpack_pack_map(pk, st ? 9 : 5));
	PKE(pk->callback(pk->data, snp->data + snp->list_head + snp->list_tail, snp->stats_head));
	PKE(msgpack_pack_double(pk, mon_since_s(sn, now)));
	PKE(pk_str(pk, "age_s"));
	if (st)
		PKE(msgpack_pack_double(pk, secs(age)));
	else
		PKE(msgpack_pack_nil(pk));
	PKE(pk_kv_bool(pk, "stale", stale));
	if (sp) {
		PKE(pk->callback(pk->data, sp->data, sp->len));
		*objects += sp->objects;
	}
	return 0;
}

/*
 * What one stats answer may hold, so that any client that keeps the
 * protocol's limits (RPC_MAX_FRAME, RPC_MAX_OBJECTS) can read it: the
 * entries that fit go in `domains`, the names of the others in `more`.
 */
#define PAGE_BYTES_MAX   (RPC_MAX_FRAME - 64 * 1024)
#define PAGE_OBJECTS_MAX (RPC_MAX_OBJECTS - 1024)

static int pack_name(msgpack_packer *pk, const char *s, size_t len)
{
	if (msgpack_pack_str(pk, len) < 0 || msgpack_pack_str_body(pk, s, len) < 0)
		return -1;
	return 0;
}

/*
 * The domains named in names (all, when NULL) into acc; the names not
 * defined packed into miss, *nmissing of them.  One lookup per name, so a
 * domain defined meanwhile is in one list, never two.  Inside the read
 * section.  0, or -1 (out of memory; acc->v freed).
 */
static int collect_named(struct req *r, const msgpack_object *names, struct list_acc *acc,
			 msgpack_packer *miss, size_t *nmissing)
{
	*nmissing = 0;
	if (names) {
		struct domain *prev = NULL;

		for (uint32_t k = 0; k < names->via.array.size; k++) {
			const msgpack_object *o = &names->via.array.ptr[k];
			char name[DOM_NAME_MAX + 1];
			struct domain *d = NULL;

			/* A NUL would cut the name short: such a name is no domain's. */
			if (o->via.str.size <= DOM_NAME_MAX &&
			    !memchr(rpc_str_ptr(o), 0, o->via.str.size)) {
				memcpy(name, rpc_str_ptr(o), o->via.str.size);
				name[o->via.str.size] = '\0';
				/* A page's `more` comes in the order of the walk. */
				d = reg_lookup_name_after_rcu(r->srv->o.reg, name, prev);
			}
			prev = d;
			if (!d) {
				(*nmissing)++;
				if (pack_name(miss, rpc_str_ptr(o), o->via.str.size) < 0)
					acc->oom = true;
				continue;
			}
			if (list_collect(d, acc))
				break;
		}
	} else {
		reg_for_each_rcu(r->srv->o.reg, list_collect, acc);
	}
	if (acc->oom) {
		free(acc->v);
		acc->v = NULL;
		return -1;
	}
	return 0;
}

/*
 * After the first entry of a page is packed (first bytes): room in the
 * output for all n like it, up to a page, so that the output is not
 * copied again and again as it grows (a 10,000-domain list is megabytes).
 * Best effort.
 */
static void page_reserve(struct req *r, size_t first, size_t n)
{
	req_out_reserve(r, first && n <= (PAGE_BYTES_MAX + 65536) / first ? first * n + 1024
									 : PAGE_BYTES_MAX + 65536);
}

/*
 * An array header whose count is patched in once known: entries are packed
 * straight into the output (not into a buffer of their own and copied, a
 * copy of megabytes per call over 10,000 domains).  array32 holds any
 * count; a decoder takes it for a short array as well.  0 with its mark
 * in *ret_mark (for array_count_patch), or -1 (out of memory).
 */
static int array_count_begin(struct req *r, size_t *ret_mark)
{
	*ret_mark = req_out_mark(r);
	return r->pk->callback(r->pk->data, "\xdd\0\0\0\0", 5);
}

static void array_count_patch(struct req *r, size_t mark, uint32_t n)
{
	unsigned char be[4] = { n >> 24, n >> 16, n >> 8, n };

	req_out_patch(r, mark + 1, be, sizeof(be));
}

typedef int (*entry_fn)(msgpack_packer *pk, struct domain *d, uint64_t now, size_t *objects);

/* How to pack one domain's entry, and whether it reads the domain's statistics too. */
struct entry_kind {
	entry_fn pack;
	bool stats;
};

/*
 * Before packing entry n of v: what the entries a few places ahead will
 * read is asked for, stage by stage (each stage needs the pointer the one
 * before brought in), so that a walk over 10,000 domains does not wait on
 * one cache miss after another: the domain, its snapshot and the
 * snapshot's rendering, and for stats its published figures and theirs.
 */
static void entries_ahead(const struct entry_kind *k, struct domain *const *v, size_t n,
			  size_t count)
{
	if (n + 12 < count)
		dom_prefetch_rcu(v[n + 12], 0);
	if (n + 8 < count) {
		dom_prefetch_rcu(v[n + 8], 1);
		if (k->stats)
			vm_stats_prefetch_rcu(v[n + 8], 0);
	}
	if (n + 4 < count) {
		dom_prefetch_rcu(v[n + 4], 2);
		if (k->stats)
			vm_stats_prefetch_rcu(v[n + 4], 1);
	}
	if (k->stats && n + 2 < count)
		vm_stats_prefetch_rcu(v[n + 2], 2);
}

/*
 * Pack `domains: [entries that fit], missing: [names not defined], more:
 * [names of the entries that did not fit]` into r->pk (the caller has
 * begun a map and counts these three pairs).  miss holds the packed
 * missing names.  Frees acc->v.
 */
static int pack_paged(struct req *r, struct list_acc *acc, const msgpack_sbuffer *miss,
		      size_t nmissing, const struct entry_kind *k)
{
	msgpack_sbuffer tail;
	msgpack_packer tpk;
	size_t n = 0, objects, more_bytes = 0, i, count_at = 0, body_at;
	uint64_t now = now_ns();
	int ret = 0;

	/* Room for every name in `more`, as if none fitted: a name is one object. */
	objects = 16 + nmissing;        /* the envelope, and `missing` */
	for (i = 0; i < acc->n; i++)
		more_bytes += 2 + dom_name_len(acc->v[i]);
	msgpack_sbuffer_init(&tail);
	msgpack_packer_init(&tpk, &tail, msgpack_sbuffer_write);
	if (pk_str(r->pk, "domains") < 0 || array_count_begin(r, &count_at) < 0)
		ret = -1;
	body_at = req_out_mark(r);
	for (n = 0; n < acc->n && ret == 0; n++) {
		size_t mark = req_out_mark(r), obj;

		entries_ahead(k, acc->v, n, acc->n);
		ret = k->pack(r->pk, acc->v[n], now, &obj);
		if (n == 0 && ret == 0)
			page_reserve(r, req_out_since(r, body_at), acc->n);
		more_bytes -= 2 + dom_name_len(acc->v[n]);
		if (ret == 0 && (req_out_since(r, body_at) + more_bytes > PAGE_BYTES_MAX ||
				 objects + obj + (acc->n - n - 1) > PAGE_OBJECTS_MAX)) {
			/* It does not fit: it and the rest go in more. */
			req_out_rewind(r, mark);
			more_bytes += 2 + dom_name_len(acc->v[n]);
			break;
		}
		objects += obj;
	}
	if (ret == 0)
		array_count_patch(r, count_at, (uint32_t)n);
	/* missing: the names asked for that are not defined; more: what did not fit. */
	if (ret == 0 && (msgpack_pack_array(&tpk, nmissing) < 0 ||
			 (miss->size && msgpack_sbuffer_write(&tail, miss->data, miss->size) < 0)))
		ret = -1;
	if (ret == 0 && (rpc_pack_cstr(&tpk, "more") < 0 ||
			 msgpack_pack_array(&tpk, acc->n - n) < 0))
		ret = -1;
	for (i = n; i < acc->n && ret == 0; i++)
		ret = pack_name(&tpk, dom_name(acc->v[i]), dom_name_len(acc->v[i]));
	free(acc->v);
	acc->v = NULL;
	/* An empty sbuffer's data is NULL: the callback gets nothing to copy then. */
	if (ret == 0 && (pk_str(r->pk, "missing") < 0 ||
			 r->pk->callback(r->pk->data, tail.data, tail.size) < 0))
		ret = -1;
	msgpack_sbuffer_destroy(&tail);
	return ret;
}

/*
 * A paged answer (stats, list) for the domains r asks for: the caller's
 * head (a map of head_pairs + 3 pairs, its own pairs packed by head).
 */
static int answer_paged(struct req *r, struct list_acc *acc, uint32_t head_pairs,
			int (*head)(struct req *r), const struct entry_kind *k)
{
	const msgpack_object *names = rpc_map_get(r->params, "names");
	msgpack_sbuffer miss;
	msgpack_packer mpk;
	size_t nmissing;
	int ret = -1;

	msgpack_sbuffer_init(&miss);
	msgpack_packer_init(&mpk, &miss, msgpack_sbuffer_write);
	if (collect_named(r, names, acc, &mpk, &nmissing) < 0)
		goto out;
	if (msgpack_pack_map(r->pk, head_pairs + 3) < 0 || (head && head(r) < 0)) {
		free(acc->v);
		goto out;
	}
	ret = pack_paged(r, acc, &miss, nmissing, k);
out:
	msgpack_sbuffer_destroy(&miss);
	if (ret < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	return 0;
}

/*
 * Every domain r asks for as one array, when it fits in one message;
 * else invalid-argument, naming `paged`.
 */
static int answer_array(struct req *r, struct list_acc *acc, const struct entry_kind *k)
{
	size_t objects = 16, n, obj, none, count_at = 0, body_at;
	uint64_t now = now_ns();
	int ret = 0;

	if (collect_named(r, NULL, acc, NULL, &none) < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	if (array_count_begin(r, &count_at) < 0)
		ret = -1;
	body_at = req_out_mark(r);
	for (n = 0; n < acc->n && ret == 0; n++) {
		entries_ahead(k, acc->v, n, acc->n);
		ret = k->pack(r->pk, acc->v[n], now, &obj);
		if (n == 0 && ret == 0)
			page_reserve(r, req_out_since(r, body_at), acc->n);
		objects += obj;
		if (ret == 0 && (req_out_since(r, body_at) > PAGE_BYTES_MAX ||
				 objects > PAGE_OBJECTS_MAX))
			ret = 1;
	}
	free(acc->v);
	acc->v = NULL;
	if (ret == 0)
		array_count_patch(r, count_at, (uint32_t)n);
	/* A failure's partial answer is rewound by the server with the rest of it. */
	if (ret > 0)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "%zu domains do not fit in one "
				"answer: ask for pages (paged: true)", acc->n);
	if (ret < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	return 0;
}

static int stats_head(struct req *r)
{
	return pk_kv_double(r->pk, "interval_s", (double)r->srv->o.stats_interval_ms / 1e3);
}

static int m_list(struct req *r);
static int m_stats(struct req *r);

bool req_walk_big(const struct req *r)
{
	const msgpack_object *names;

	if (r->m->fn != m_list && r->m->fn != m_stats)
		return false;
	names = rpc_map_get(r->params, "names");
	if (names)      /* an array: req_check_params() saw to it */
		return names->via.array.size > WALK_INLINE_MAX;
	return reg_count(r->srv->o.reg) > WALK_INLINE_MAX;
}

static int m_stats(struct req *r)
{
	static const struct entry_kind kind = { pack_stats_entry, true };
	struct list_acc acc = { .state = -1 };

	return answer_paged(r, &acc, 1, stats_head, &kind);
}

static int list_entry(msgpack_packer *pk, struct domain *d, uint64_t now, size_t *objects)
{
	*objects = 1 + 2 * 7 + 4;       /* the map, seven pairs, the monitor's two */
	return pack_list_entry(pk, d, now);
}

static const struct entry_kind list_kind = { list_entry, false };

static int m_list(struct req *r)
{
	struct list_acc acc = { .state = -1 };
	char state[32], q[300];
	bool have, paged = false;

	if (get_str(r, "state", state, sizeof(state), &have) < 0)
		return -1;
	if (have) {
		for (int s = 0; s < DOM_STATE_COUNT; s++)
			if (!strcmp(state, dom_state_name((enum dom_state)s)))
				acc.state = s;
		if (acc.state < 0)
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "unknown state '%s' (one of "
					"shutoff, starting, running, paused, shutting-down, "
					"crashed, pmsuspended)",
					quote(q, sizeof(q), state, strlen(state)));
	}
	/* A bool when present: req_check_params() saw to it. */
	rpc_obj_bool(rpc_map_get(r->params, "paged"), &paged);
	if (paged || rpc_map_get(r->params, "names"))
		return answer_paged(r, &acc, 0, NULL, &list_kind);
	return answer_array(r, &acc, &list_kind);
}

/* A synchronous refusal of the VM layer, as an RPC error. */
static int vm_refusal(struct req *r, int ret, const char *err)
{
	int code;

	switch (ret) {
	case -EINVAL: code = RPC_ERR_INVALID_ARGUMENT; break;
	case -EPERM: case -EACCES: code = RPC_ERR_PERMISSION; break;
	case -EEXIST: code = RPC_ERR_EXISTS; break;
	case -EAGAIN: code = RPC_ERR_BUSY; break;
	case -ESHUTDOWN: code = RPC_ERR_NO_SUCH_DOMAIN; break;
	default: code = RPC_ERR_INTERNAL; break;
	}
	return req_fail(r, code, "%s", err[0] ? err : strerror(-ret));
}

/* config.name present, a string and a valid name: the messages users see first. */
static int check_config_name(struct req *r, const json_t *config)
{
	json_t *name = json_object_get(config, "name");
	char q[300];

	if (!json_is_string(name))
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "config.name: missing or not a string");
	if (!corral_name_valid(json_string_value(name)))
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "config.name: invalid domain name "
				"'%s': must match %s",
				quote(q, sizeof(q), json_string_value(name),
				      json_string_length(name)), CORRAL_NAME_RULE);
	return 0;
}

static int m_define(struct req *r)
{
	char err[DOM_ERRMSG_MAX];
	struct call *cl;
	json_t *config;
	int ret;

	ret = rpc_obj_to_json(rpc_map_get(r->params, "config"), "config", &config, err,
			      sizeof(err));
	if (ret < 0)
		return req_fail(r, ret == -ENOMEM ? RPC_ERR_INTERNAL : RPC_ERR_INVALID_ARGUMENT,
				"%s", err);
	if (!json_is_object(config)) {
		json_decref(config);
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param 'config' must be a map");
	}
	if (check_config_name(r, config) < 0) {
		json_decref(config);
		return -1;
	}
	cl = call_new(r, NULL);
	if (!cl) {
		json_decref(config);
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	}
	/* A job on the domain (a new name is reserved first); job_done answers. */
	err[0] = '\0';
	ret = vm_define_submit(r->srv->o.env, config, &r->c->creds, r->timeout_ns, job_done, cl,
			       err, sizeof(err));
	json_decref(config);
	if (ret < 0) {
		call_cancel(cl);
		return vm_refusal(r, ret, err);
	}
	return REQ_ASYNC;
}

static int m_undefine(struct req *r)
{
	struct domain *d = lookup(r);

	if (!d)
		return -1;
	/* Decided by the domain actor, behind every job queued before it. */
	return submit_job(r, d, VM_OP_UNDEFINE, NULL);
}

static int m_autostart(struct req *r)
{
	struct domain *d = lookup(r);
	bool enable = false;
	json_t *args;
	int ret;

	if (!d)
		return -1;
	/* Present and a boolean: req_check_params() saw to it. */
	rpc_obj_bool(rpc_map_get(r->params, "enable"), &enable);
	args = json_pack("{s:b}", "enable", enable);
	if (!args)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	/* A job like define: behind the domain's other jobs, answered once on disk. */
	ret = submit_job(r, d, VM_OP_AUTOSTART, args);
	json_decref(args);
	return ret;
}

/*
 * Hotplug, save, restore: a job whose args are the call's params (all but
 * name), strings and booleans as they are.
 */
static int m_device_job(struct req *r)
{
	struct domain *d = lookup(r);
	int op = vm_op_from_name(r->m->name);
	char buf[4096];
	json_t *args;
	int ret;

	if (!d)
		return -1;
	BUG_ON(op < 0);
	args = json_object();
	if (!args)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	for (const struct param *p = r->m->params; p->name; p++) {
		const msgpack_object *o = rpc_map_get(r->params, p->name);
		bool have;
		json_t *v;

		if (!o || !strcmp(p->name, "name"))
			continue;
		if (p->type == P_BOOL) {
			json_object_set_new(args, p->name, json_boolean(o->via.boolean));
			continue;
		}
		if (get_str(r, p->name, buf, sizeof(buf), &have) < 0) {
			json_decref(args);
			return -1;
		}
		v = json_string(buf);
		if (!v) {
			json_decref(args);
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param '%s' must be UTF-8 text",
					p->name);
		}
		json_object_set_new(args, p->name, v);
	}
	ret = submit_job_as(r, d, (enum vm_op)op, args);
	json_decref(args);
	return ret;
}

static int m_lifecycle(struct req *r)
{
	struct domain *d = lookup(r);
	int op = vm_op_from_name(r->m->name);
	json_t *args = NULL;
	int ret;

	if (!d)
		return -1;
	BUG_ON(op < 0);
	/* Boolean params go to the job as they are (shutdown: wait, force). */
	for (const struct param *p = r->m->params; p->name; p++) {
		const msgpack_object *o = rpc_map_get(r->params, p->name);

		if (p->type != P_BOOL || !o)
			continue;
		if (!args && !(args = json_object()))
			return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
		json_object_set_new(args, p->name, json_boolean(o->via.boolean));
	}
	ret = submit_job(r, d, (enum vm_op)op, args);
	json_decref(args);
	return ret;
}

static int m_qmp(struct req *r)
{
	const msgpack_object *o = rpc_map_get(r->params, "command");
	struct domain *d;
	const char *s;
	size_t len;
	json_t *args;
	int ret;

	if (r->srv->uid == 0 && r->c->uid != 0)
		return req_fail(r, RPC_ERR_PERMISSION, "method 'qmp' is for root only when "
				"corrald runs as root");
	d = lookup(r);
	if (!d)
		return -1;
	rpc_obj_str(o, &s, &len);
	args = json_object();
	if (!args || json_object_set_new(args, "command", json_stringn(s, len)) < 0) {
		json_decref(args);
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT,
				"param 'command' must be QMP JSON text in UTF-8");
	}
	ret = submit_job(r, d, VM_OP_QMP, args);
	json_decref(args);
	return ret;
}

static int m_attach(struct req *r)
{
	char name[DOM_NAME_MAX + 1], path[4096], err[DOM_ERRMSG_MAX];
	const msgpack_object *cfg = rpc_map_get(r->params, "config");
	json_t *args, *config = NULL;
	struct call *cl;
	uint64_t pid = 0;
	bool have_pid = rpc_map_get(r->params, "pid") != NULL;
	int ret;

	if (get_name(r, "name", name) < 0 || get_str(r, "qmp_socket", path, sizeof(path), NULL) < 0)
		return -1;
	if (path[0] != '/')
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT,
				"param 'qmp_socket' must be an absolute path");
	if (have_pid) {
		rpc_obj_u64(rpc_map_get(r->params, "pid"), &pid);
		if (pid < 1 || pid > INT32_MAX)
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param 'pid' is out of range");
	}
	if (cfg) {
		ret = rpc_obj_to_json(cfg, "config", &config, err, sizeof(err));
		if (ret < 0)
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "%s", err);
	}
	args = json_pack("{s:s}", "qmp_socket", path);
	if (args && have_pid && json_object_set_new(args, "pid", json_integer((json_int_t)pid)))
		json_decref(args), args = NULL;
	cl = args ? call_new(r, NULL) : NULL;
	if (!cl) {
		json_decref(args);
		json_decref(config);
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	}
	err[0] = '\0';
	ret = vm_attach_submit(r->srv->o.env, name, config, args, &r->c->creds, r->timeout_ns,
			       job_done, cl, err, sizeof(err));
	json_decref(args);
	json_decref(config);
	if (ret < 0) {
		call_cancel(cl);
		return vm_refusal(r, ret, err);
	}
	return REQ_ASYNC;
}

static int m_events_subscribe(struct req *r)
{
	char name[DOM_NAME_MAX + 1];
	bool have = rpc_map_get(r->params, "name") != NULL;
	uint64_t id;

	if (have && get_name(r, "name", name) < 0)
		return -1;
	if (conn_subscribe(r, have ? name : NULL, &id) < 0)
		return -1;
	PK(msgpack_pack_map(r->pk, 1));
	PK(pk_kv_u64(r->pk, "subscription", id));
	return 0;
}

static int m_events_unsubscribe(struct req *r)
{
	uint64_t id = 0;

	rpc_obj_u64(rpc_map_get(r->params, "subscription"), &id);
	if (conn_unsubscribe(r, id) < 0)
		return -1;
	PK(msgpack_pack_map(r->pk, 1));
	PK(pk_kv_u64(r->pk, "subscription", id));
	return 0;
}

/* ---- the serial console ------------------------------------------------------ */

/* The running console of the domain named in params, referenced; NULL with r failed. */
static struct console *console_of(struct req *r, struct domain **ret_d)
{
	struct domain *d = lookup(r);
	struct console *con;

	if (!d)
		return NULL;
	con = vm_console_get(d);
	if (!con) {
		const struct dom_snapshot *sn = dom_snap_rcu(d);

		req_fail(r, RPC_ERR_BAD_STATE, "domain '%s' has no console now: it is %s%s",
			 dom_name(d), dom_state_name(sn->state),
			 sn->state == DOM_SHUTOFF ? " (start it first)" :
			 " (a domain corral did not start, or one whose console is not connected)");
		return NULL;
	}
	*ret_d = d;
	return con;
}

static int m_console_attach(struct req *r)
{
	const msgpack_object *h = rpc_map_get(r->params, "history");
	struct domain *d = NULL;
	struct console *con = console_of(r, &d);
	uint64_t id;
	int ret;

	if (!con)
		return -1;
	ret = conn_console_attach(r, dom_name(d), con, !h || h->via.boolean, &id);
	console_put(con);
	if (ret < 0)
		return -1;
	PK(msgpack_pack_map(r->pk, 3));
	PK(pk_kv_u64(r->pk, "subscription", id));
	PK(pk_kv_str(r->pk, "name", dom_name(d)));
	PK(pk_kv_bool(r->pk, "read_only", r->c->ro));
	return 0;
}

static int m_console_write(struct req *r)
{
	const msgpack_object *o = rpc_map_get(r->params, "data");
	struct domain *d = NULL;
	struct console *con;
	const char *p = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.ptr : o->via.str.ptr;
	uint32_t n = o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.str.size;
	int err;

	if (n > CONSOLE_INPUT_MAX)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "data: at most %u bytes per call, "
				"got %u", CONSOLE_INPUT_MAX, n);
	con = console_of(r, &d);
	if (!con)
		return -1;
	err = n ? console_write(con, p, n) : 0;
	console_put(con);
	if (err == -EAGAIN)
		return req_fail(r, RPC_ERR_BUSY, "domain '%s': the console's input is full (the "
				"guest is not reading); try again", dom_name(d));
	if (err == -EPIPE)
		return req_fail(r, RPC_ERR_BAD_STATE, "domain '%s': its console closed",
				dom_name(d));
	PK(msgpack_pack_map(r->pk, 1));
	PK(pk_kv_u64(r->pk, "bytes", n));
	return 0;
}

static int m_console_history(struct req *r)
{
	struct domain *d = NULL;
	struct console *con = console_of(r, &d);
	struct console_stats st;
	char *data;
	size_t len;
	int err;

	if (!con)
		return -1;
	err = console_history(con, &data, &len);
	console_stats(con, &st);
	console_put(con);
	if (err < 0)
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	if (msgpack_pack_map(r->pk, 3) < 0 || pk_kv_str(r->pk, "name", dom_name(d)) < 0 ||
	    pk_kv_u64(r->pk, "total_bytes", st.bytes_out) < 0 ||
	    rpc_pack_cstr(r->pk, "data") < 0 || msgpack_pack_bin(r->pk, len) < 0 ||
	    msgpack_pack_bin_body(r->pk, data, len) < 0) {
		free(data);
		return req_fail(r, RPC_ERR_INTERNAL, "out of memory");
	}
	free(data);
	return 0;
}

static int m_console_detach(struct req *r)
{
	uint64_t id = 0;

	rpc_obj_u64(rpc_map_get(r->params, "subscription"), &id);
	if (conn_console_detach(r, id) < 0)
		return -1;
	PK(msgpack_pack_map(r->pk, 1));
	PK(pk_kv_u64(r->pk, "subscription", id));
	return 0;
}

/* ---- the table -------------------------------------------------------------- */

#define END { NULL, 0, false, NULL }
#define P_NAME { "name", P_STR, true, "the domain's name" }

static const struct param no_params[] = { END };
static const struct param name_only[] = { P_NAME, END };


const struct method methods[] = {
	{ "api.info", m_api_info, true,
	  "Describe this API: every method with its params and result, the error codes, and "
	  "the tables of this document (limits, states, reasons, monitor states, events, "
	  "config fields), from the same code.",
	  no_params,
	  "`{version, methods: [{name, doc, read_only_socket, params: [{name, type, required, "
	  "doc}], result}], errors: [{code, name, doc}], limits: {message_bytes, depth, "
	  "objects, msgid_max, params, timeout_ms_max, timeout_ms_default}, states: [{name, "
	  "doc}], reasons: [{name, states: [state], doc}], monitor_states: [{name, doc}], "
	  "events: [{name, family, payload, doc}], config_fields: [{name, type, required, "
	  "default, rule, example, min?, max?, unit?}]}`; `family`: `corral` or `qemu` (the "
	  "row `qemu.NAME` stands for every QEMU event); a config field `a[].b` or `a.b` is "
	  "key `b` of field `a`'s objects; `default` nil: none; `example`: JSON text" },
	{ "daemon.info", m_daemon_info, true,
	  "The daemon's own figures.", no_params,
	  "`{version, pid, uptime_s, domains, running, monitors, rss_bytes, workers, "
	  "io_threads, connections, events_published, input_bytes, output_bytes}`; "
	  "`monitors`: `{none, connecting, ok, unresponsive, broken}`, how many domains' "
	  "monitors are in each state (`monitor_states` in `api.info`); `input_bytes`: held "
	  "by clients' unfinished requests (at most `client_input_total`), `output_bytes`: "
	  "by output waiting for clients (`client_output_total` bounds it), docs/daemon.md" },
	{ "list", m_list, true,
	  "Every defined domain, in no particular order, from the snapshots (never waits for "
	  "a domain).",
	  (const struct param[]){ { "state", P_STR, false,
				    "only domains in this state (`shutoff`, `running`, ...)" },
				  { "names", P_STRV, false, "only these domains (default: all); "
				    "names not defined are listed in `missing`; implies `paged`" },
				  { "paged", P_BOOL, false, "answer a page (a map, below) rather than "
				    "an array: needed past about 13,000 domains" },
				  END },
	  "`[{name, uuid, state, reason, job, monitor: {state, since_s}, autostart}]`; `job` is "
	  "the name of the job holding the domain, or nil; `monitor` as in `info`; `autostart`: "
	  "whether corrald starts it when it starts.  An array must fit in one message (the "
	  "protocol's limits: about 13,000 domains); past that the call fails with "
	  "`invalid-argument`, and a client asks for pages: with `paged` (or `names`) the "
	  "result is `{domains: [...], missing: [name], more: [name]}`, `domains` the entries "
	  "that fit in this answer and `more` the names of the others: ask again with `names` "
	  "set to it, as `stats` does (`corral list` does)." },
	{ "stats", m_stats, true,
	  "Statistics of several domains, or all, in one call: what each running QEMU's "
	  "monitor last read (every `stats_interval_ms`, docs/daemon.md), from the "
	  "snapshots; never waits for a domain, so a hung QEMU's figures are simply old.",
	  (const struct param[]){ { "names", P_STRV, false, "the domains (default: all); "
				    "names not defined are listed in `missing`" }, END },
	  "`{interval_s, domains: [{name, state, monitor: {state, since_s}, age_s, stale, "
	  "cpu, memory, disks, nics}], missing: [name], more: [name]}`.  `interval_s`: the daemon's "
	  "interval (a domain's config may set its own, `stats_interval_ms`).  `more`: domains whose "
	  "figures did not fit in this answer (it stays within the message limits, about "
	  "5,000 domains of one disk and one vCPU each): ask again with `names` set to it.  `age_s`: seconds since the figures "
	  "were read, nil when there are none (not running, or no round done yet: then "
	  "`cpu`, `memory`, `disks` and `nics` are absent); `stale`: the monitor is not `ok`, or the "
	  "figures are older than two intervals and a second.  `cpu: {time_ns, vcpus: "
	  "[{index, thread, time_ns}]}`: QEMU's CPU time (user + system) and each vCPU "
	  "thread's; `memory: {rss_bytes, balloon_bytes}` (the balloon only when the guest "
	  "has one); `disks: [{device, node, rd_bytes, wr_bytes, rd_ops, wr_ops, "
	  "flush_ops}]` from QEMU's `query-blockstats` (`device`: the guest device, "
	  "`vd0` for `disks[0]`, `node`: QEMU's block node, `disk0`); `nics: [{device, mac, "
	  "type, host_device, rx_bytes, tx_bytes, rx_packets, tx_packets, rx_dropped, "
	  "tx_dropped}]`, each NIC of the running guest, its traffic as the guest sees it "
	  "(`rx`: received by the guest) read from the host side of a bridged NIC's tap device "
	  "(`host_device`, `crlN`); a `user` NIC has no counters (QEMU's user networking "
	  "counts nothing a client can read), nor has a NIC of an attached QEMU whose tap "
	  "corrald did not make.  Counters are cumulative since QEMU started (a tap's, since "
	  "it was made: at the start, or at the NIC's hotplug)." },
	{ "info", m_info, true,
	  "One domain in detail, from its snapshot (never waits for the domain).", name_only,
	  "`{name, uuid, state, reason, pid, autostart, job: nil | {id, name, held_s}, "
	  "jobs_waiting, monitor: {state, since_s}, counters: {jobs_done, jobs_failed, "
	  "jobs_busy, jobs_timeout, events}, config, config_unknown, updated, seq, live}`; `pid` 0 "
	  "when there is no QEMU; `autostart`: whether corrald starts the domain when it "
	  "starts; `monitor.since_s`: seconds in that monitor state; `config`: the config in "
	  "canonical form (every default filled in), or for a domain attached without a "
	  "config only what QEMU told; `config_unknown`: the config's fields corral does not "
	  "know (`[]` normally); `updated` is the snapshot's Unix time, `seq` its sequence "
	  "number; `live`: nil when no QEMU runs, else what it has now, `{disks: [{target, path, "
	  "format, readonly, device, hotplugged, ...}], nics: [{type, mac, hostfwd | bridge, "
	  "device, hotplugged, ...}], progress: nil | {job, status, elapsed_s, "
	  "transferred_bytes, remaining_bytes, total_bytes, percent}}` (progress: a save or "
	  "restore under way)" },
	{ "define", m_define, false,
	  "Define a domain from a config map (its fields: see [Config](#config)), or "
	  "replace the definition of an existing one for its next start (a job queued behind "
	  "its other jobs; the UUID may not change). The name must match `" CORRAL_NAME_RULE
	  "`. Disks without a `format` are probed from their header, with the caller's "
	  "rights. Answered once the definition is on disk (`storage` if it cannot be "
	  "written; nothing changes then).",
	  (const struct param[]){ { "config", P_MAP, true, "the domain's config; `name` "
				    "is required" }, END },
	  "`{name, uuid}`" },
	{ "undefine", m_undefine, false,
	  "Remove a shut-off domain, its definition and its logs. Decided by the domain "
	  "behind every job queued before it (an earlier start makes it fail with "
	  "`bad-state`).", name_only, "`{name}`" },
	{ "autostart", m_autostart, false,
	  "Mark the domain to be started whenever corrald starts, or unmark it. The flag is "
	  "kept in the domain's definition (a define of the same name keeps it, undefine "
	  "drops it) and is not part of its config. A job queued behind the domain's other "
	  "jobs, answered once the definition is on disk (`storage` if it cannot be "
	  "written; nothing changes then). At start-up, after every running QEMU is found "
	  "again, corrald starts each marked domain that is shut off, all at once, while it "
	  "serves (`corrald --no-autostart` skips this); a start that fails is logged and "
	  "shows in the domain's state and reason.",
	  (const struct param[]){ P_NAME,
				  { "enable", P_BOOL, true, "true: mark it; false: unmark it" },
				  END },
	  "`{name, autostart}`" },
	{ "start", m_lifecycle, false,
	  "Start the domain's QEMU: spawn it (its guest stopped), connect its monitor, then run "
	  "the guest. Answered once the guest runs; the events are `lifecycle` "
	  "starting/user (starting/autostart at corrald's start) and running/booted. A start "
	  "that fails or times out kills what it spawned (shutoff/failed). A domain attached "
	  "without a config is refused (`bad-state`) until a config is defined for it.",
	  name_only,
	  "`{state, pid}`: state `running`, `pid` QEMU's process id" },
	{ "shutdown", m_lifecycle, false,
	  "Ask the guest to power off (ACPI) and wait until it has: QEMU has exited when the "
	  "answer comes. A paused guest cannot see the power button: it is refused "
	  "(`bad-state`).",
	  (const struct param[]){ P_NAME,
				  { "wait", P_BOOL, false, "false: answer once QEMU accepted the "
				    "power-button press (state `running`, `requested: true`)" },
				  { "force", P_BOOL, false, "true: if the guest is still on shortly "
				    "before the call's deadline, destroy it (the result says "
				    "`forced: true`, reason `destroyed`)" },
				  END },
	  "`{state, reason}` once off (`shutoff`, `shutdown`); `{state, requested: true}` with "
	  "wait false (the state then, usually `running`); `{state, reason, forced: true}` "
	  "when forced (`shutoff`, `destroyed`)" },
	{ "destroy", m_lifecycle, false,
	  "Stop QEMU now (SIGKILL through its pidfd; works on a hung or stopped QEMU). Does "
	  "not wait behind other jobs: the job holding the domain is cancelled "
	  "(`cancelled`). Answered once QEMU is gone and its files removed.", name_only,
	  "`{state, reason}`: `shutoff` with `destroyed`; `detached` for an attached process "
	  "that is not an allowed emulator (let go, not killed); `failed` for a start stopped "
	  "before its QEMU existed" },
	{ "suspend", m_lifecycle, false,
	  "Pause the guest's CPUs (QMP `stop`). Refused (`bad-state`) when already paused.",
	  name_only, "`{state, reason}`: `paused`, `user`" },
	{ "resume", m_lifecycle, false,
	  "Resume a paused guest (QMP `cont`). Refused (`bad-state`) when not paused.",
	  name_only, "`{state, reason}`: `running`, `user`" },
	{ "reset", m_lifecycle, false,
	  "Hard-reset the guest (QMP `system_reset`), answered once QEMU reports the reset "
	  "(its RESET event). The state stays what it was (a paused guest stays paused); the "
	  "reason becomes `reset`.", name_only,
	  "`{state, reason}`: the state (`running`, `paused`), `reset`" },
	{ "reboot", m_lifecycle, false,
	  "Reboot: a hardware reset, or with the config's reboot \"acpi\" the guest's own "
	  "power-off turned into a reset (then it needs a running guest that handles ACPI). "
	  "One lifecycle event, reason `rebooted`.", name_only,
	  "`{state, reason}`: `running` (or `paused` for a hardware reset of a paused guest), "
	  "`rebooted`" },
	{ "qmp", m_qmp, false,
	  "Send one QMP command to the domain's QEMU. Read-write socket only; root only when "
	  "corrald runs as root.",
	  (const struct param[]){ P_NAME,
				  { "command", P_STR, true, "the command as QMP JSON text, "
				    "e.g. `{\"execute\": \"query-status\"}`" },
				  END },
	  "QMP's `return` value as QEMU sent it: a map, an array, or a string (`\"\"` for an "
	  "HMP command without output)" },
	{ "attach", m_attach, false,
	  "Take over a QEMU that is already running: define the domain if needed (from "
	  "`config`, or without one), then connect to its QMP socket as the caller. The "
	  "process is the socket's peer, and must be the caller's own (or the caller root); "
	  "destroy kills it only if it runs an allowed emulator. Without a config, corral "
	  "asks QEMU what it can (machine, memory, vCPUs, accelerator) and records the rest "
	  "as unknown (`info`'s `config_unknown`): such a domain is never booted from a "
	  "guess: `start` and `autostart` are refused until a config is defined for it "
	  "(`define`, `corral edit`).",
	  (const struct param[]){ P_NAME,
				  { "qmp_socket", P_STR, true, "absolute path of QEMU's QMP "
				    "UNIX socket" },
				  { "pid", P_UINT, false, "QEMU's process id: must be the "
				    "socket's peer (the daemon reads it from the socket)" },
				  { "config", P_MAP, false, "config for a domain not yet "
				    "defined; ignored if it is" },
				  END },
	  "`{state, pid}`: the state QEMU was found in (`running`, `paused`, ...), its "
	  "process id" },
	{ "attach-disk", m_device_job, false,
	  "Plug a disk into the running guest (a virtio disk, as a job on the domain): "
	  "corrald opens the image with the caller's rights and hands QEMU the open file "
	  "(QMP add-fd, blockdev-add, device_add); QEMU never sees the path. With "
	  "`persistent` the disk is also added to the definition, for the next start (written "
	  "as define writes it; a shut-off domain changes only there). `info` shows the "
	  "devices the guest has (`live`); the event `device-attached` (data: the result) "
	  "says it too.",
	  (const struct param[]){ P_NAME,
				  { "path", P_STR, true, "the image, an absolute path" },
				  { "target", P_STR, false, "its name, `vda` .. `vdz` (default: "
				    "the first free one); in the definition, disks are named by "
				    "their order" },
				  { "readonly", P_BOOL, false, "read-only (default false)" },
				  { "format", P_STR, false, "`raw` or `qcow2`; default: read from "
				    "the image's header" },
				  { "persistent", P_BOOL, false, "also change the definition" },
				  END },
	  "`{target, path, format, readonly, live, persistent}`; `live`: the running guest "
	  "got it" },
	{ "detach-disk", m_device_job, false,
	  "Unplug a disk: ask the guest (device_del) and wait until QEMU says it let go "
	  "(DEVICE_DELETED); then its block nodes and file go. A guest that does not let go "
	  "keeps it: the call fails at its deadline (`timeout`) with the disk still listed, "
	  "and should the guest let go later, it goes then (event `device-detached`, data "
	  "`{device, target | mac}`, whenever it goes). `persistent` also removes it from "
	  "the definition.",
	  (const struct param[]){ P_NAME,
				  { "target", P_STR, true, "the disk's name (`vdb`): see `info`'s "
				    "`live.disks`" },
				  { "persistent", P_BOOL, false, "also change the definition" },
				  END },
	  "`{target, device, live, persistent}`" },
	{ "attach-nic", m_device_job, false,
	  "Plug a virtio NIC into the running guest: user networking (QMP netdev_add, with "
	  "port forwards), or a tap device corrald makes on an allowed bridge and hands QEMU "
	  "as an open fd (getfd). `persistent` also adds it to the definition.",
	  (const struct param[]){ P_NAME,
				  { "spec", P_STR, false, "`user[,hostfwd=RULE]...` or "
				    "`bridge=BR` (the config's NIC shorthand; default `user`)" },
				  { "mac", P_STR, false, "its MAC address (default: a new "
				    "52:54:00:xx:xx:xx)" },
				  { "persistent", P_BOOL, false, "also change the definition" },
				  END },
	  "`{type, mac, hostfwd | bridge, live, persistent}`" },
	{ "detach-nic", m_device_job, false,
	  "Unplug a NIC, like `detach-disk`: done when QEMU says the guest let go; a guest "
	  "that does not fails the call at its deadline with the NIC still listed.",
	  (const struct param[]){ P_NAME,
				  { "mac", P_STR, true, "the NIC's MAC address" },
				  { "persistent", P_BOOL, false, "also change the definition" },
				  END },
	  "`{mac, device, live, persistent}`" },
	{ "save", m_device_job, false,
	  "Save the running (or paused) guest to a file and stop it: corrald creates the file "
	  "with the caller's rights, writes a header (the config QEMU started with), pauses "
	  "the guest and hands QEMU the open file (getfd, migrate `fd:`); QEMU never sees a "
	  "path. Progress shows in `info` (`live.progress`) and as `progress` events (data: "
	  "the same map, `{job, status, elapsed_s, transferred_bytes, remaining_bytes, "
	  "total_bytes, percent}`, every 250 ms while it runs). Once "
	  "QEMU is done and the file is flushed to disk, QEMU ends: the domain is `shutoff`, "
	  "reason `saved`. A save that fails (the file system fills, the deadline passes) "
	  "removes the partial file and leaves the guest as it was. Refused when devices "
	  "were hot-plugged since the start (a restore could not rebuild them).",
	  (const struct param[]){ P_NAME,
				  { "path", P_STR, true, "the file to write, an absolute path "
				    "(replaced if it exists)" },
				  END },
	  "`{state, reason}`: `shutoff`, `saved`" },
	{ "restore", m_device_job, false,
	  "Start a shut-off domain from a file `save` wrote: corrald opens it with the "
	  "caller's rights, checks that it holds this domain's state and that the definition "
	  "has not changed since, starts QEMU with `-incoming defer` and feeds it the open "
	  "file (getfd, migrate-incoming `fd:`); then the guest runs on where it was. "
	  "Reason `restored`.",
	  (const struct param[]){ P_NAME,
				  { "path", P_STR, true, "the saved state, an absolute path" },
				  END },
	  "`{state, pid}`" },
	{ "events.subscribe", m_events_subscribe, true,
	  "Receive domain events on this connection as notifications `[2, \"event\", [{domain, "
	  "event, timestamp, data, subscription}]]` (`timestamp`: corrald's Unix time; the "
	  "events and their `data`: see [Events](#events)). A subscriber that does not keep up "
	  "loses the oldest events (corrald keeps the last `event_queue`, docs/daemon.md) and "
	  "is never disconnected for it while it reads; before the next event it gets it is "
	  "sent `[2, \"events.dropped\", [{count, subscription}]]` (with `name`, `count` is an "
	  "upper bound: it counts the lost events of every domain). At most "
	  "`subscriptions_max` subscriptions (events and consoles) per connection.",
	  (const struct param[]){ { "name", P_STR, false, "only this domain's events" }, END },
	  "`{subscription}`" },
	{ "console.attach", m_console_attach, true,
	  "View the domain's serial console on this connection: the last 64 KiB of output "
	  "first (unless `history` is false), then live output, as notifications `[2, "
	  "\"console\", [{subscription, name, data}]]` (`data`: bin, the bytes as the guest "
	  "wrote them). A viewer that does not keep up loses its oldest waiting output (it "
	  "keeps the newest 256 KiB and so catches up), and is first told `[2, "
	  "\"console.dropped\", [{subscription, name, bytes}]]`; it never slows the guest or "
	  "other viewers (a connection that reads nothing at all for `client_stall_timeout_ms` "
	  "is closed, docs/daemon.md). When the console ends (the guest stops, corrald stops) it is told "
	  "`[2, \"console.closed\", [{subscription, name, reason}]]` and the subscription is "
	  "over. Allowed on the read-only socket (a view: input needs `console.write` on the "
	  "read-write socket).",
	  (const struct param[]){ P_NAME,
				  { "history", P_BOOL, false, "replay the last 64 KiB first "
				    "(default true)" }, END },
	  "`{subscription, name, read_only}`" },
	{ "console.write", m_console_write, false,
	  "Type into the domain's serial console: the bytes are queued (at most 64 KiB waiting "
	  "for the guest, else `busy`) and written as the guest reads them. Needs no "
	  "`console.attach`.",
	  (const struct param[]){ P_NAME,
				  { "data", P_DATA, true, "the bytes (bin, or str), at most "
				    "65536" }, END },
	  "`{bytes}`: how many were queued" },
	{ "console.history", m_console_history, true,
	  "The console's last 64 KiB of output, at once (no subscription): for scripts that "
	  "wait for a line.", name_only,
	  "`{name, data, total_bytes}`: `data` (bin) the bytes, `total_bytes` how many the "
	  "guest wrote since corrald connected to this console" },
	{ "console.detach", m_console_detach, true,
	  "Stop viewing a console (closing the connection does the same).",
	  (const struct param[]){ { "subscription", P_UINT, true, "its id" }, END },
	  "`{subscription}`" },
	{ "events.unsubscribe", m_events_unsubscribe, true,
	  "Stop a subscription of this connection.",
	  (const struct param[]){ { "subscription", P_UINT, true, "its id" }, END },
	  "`{subscription}`" },
};

const size_t methods_count = ARRAY_SIZE(methods);

const struct method *method_find(const char *name)
{
	for (size_t i = 0; i < methods_count; i++)
		if (!strcmp(methods[i].name, name))
			return &methods[i];
	return NULL;
}

static bool type_ok(enum param_type t, const msgpack_object *o)
{
	switch (t) {
	case P_STR: return o->type == MSGPACK_OBJECT_STR;
	case P_UINT: return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
	case P_MAP: return o->type == MSGPACK_OBJECT_MAP;
	case P_BOOL: return o->type == MSGPACK_OBJECT_BOOLEAN;
	case P_DATA: return o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_STR;
	case P_STRV:
		if (o->type != MSGPACK_OBJECT_ARRAY)
			return false;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if (o->via.array.ptr[i].type != MSGPACK_OBJECT_STR)
				return false;
		return true;
	}
	return false;
}

static const char *type_phrase(enum param_type t)
{
	switch (t) {
	case P_STR: return "a string";
	case P_UINT: return "an unsigned integer";
	case P_MAP: return "a map";
	case P_BOOL: return "a boolean";
	case P_DATA: return "bytes (bin or str)";
	case P_STRV: return "an array of strings";
	}
	return "?";
}

static const struct param timeout_param = {
	"timeout_ms", P_UINT, false, "deadline of the call in milliseconds"
};

int req_check_params(struct req *r)
{
	const msgpack_object_map *map = &r->params->via.map;
	const struct param *p;
	char q[300];
	uint64_t ms = r->srv->o.default_timeout_ms;

	if (map->size > MAX_PARAMS)
		return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "too many params (%u) for '%s'",
				map->size, r->m->name);
	for (uint32_t i = 0; i < map->size; i++) {
		const msgpack_object *k = &map->ptr[i].key, *v = &map->ptr[i].val;

		if (k->type != MSGPACK_OBJECT_STR)
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param names must be "
					"strings, got %s", rpc_obj_type_name(k));
		for (p = r->m->params; p->name; p++)
			if (strlen(p->name) == k->via.str.size &&
			    !memcmp(p->name, rpc_str_ptr(k), k->via.str.size))
				break;
		if (!p->name && k->via.str.size == strlen(timeout_param.name) &&
		    !memcmp(rpc_str_ptr(k), timeout_param.name, k->via.str.size))
			p = &timeout_param;
		if (!p->name)
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "unknown param '%s' for '%s'",
					quote(q, sizeof(q), rpc_str_ptr(k), k->via.str.size),
					r->m->name);
		for (uint32_t j = 0; j < i; j++) {
			const msgpack_object *k2 = &map->ptr[j].key;

			if (k2->via.str.size == k->via.str.size &&
			    !memcmp(rpc_str_ptr(k2), rpc_str_ptr(k), k->via.str.size))
				return req_fail(r, RPC_ERR_INVALID_ARGUMENT,
						"param '%s' is given twice", p->name);
		}
		if (!type_ok(p->type, v))
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param '%s' must be %s, got %s",
					p->name, type_phrase(p->type), rpc_obj_type_name(v));
		if (p == &timeout_param) {
			ms = v->via.u64;
			if (ms < 1 || ms > TIMEOUT_MAX_MS)
				return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "param 'timeout_ms' "
						"must be from 1 to %llu", TIMEOUT_MAX_MS);
		}
	}
	for (p = r->m->params; p->name; p++)
		if (p->required && !rpc_map_get(r->params, p->name))
			return req_fail(r, RPC_ERR_INVALID_ARGUMENT, "missing param '%s' for '%s'",
					p->name, r->m->name);
	r->timeout_ns = ms * NSEC_PER_MSEC;
	return 0;
}

/* ---- docs/API.md -------------------------------------------------------------- */

/* States, reasons, monitor states, events and config fields, from their tables. */
static void dump_tables_md(FILE *f)
{
	size_t nmon, nf = qemu_config_field_count();
	const struct vm_doc *mon = vm_monitor_docs(&nmon);
	const struct vm_doc *q = vm_qemu_event_doc();

	fprintf(f, "\n## Domains\n\n"
		"A domain's `state` is one of these (`list`, `info`, the `lifecycle` event):\n\n"
		"| state | meaning |\n|---|---|\n");
	for (int i = 0; i < DOM_STATE_COUNT; i++)
		fprintf(f, "| `%s` | %s |\n", vm_state_doc((enum dom_state)i)->name,
			vm_state_doc((enum dom_state)i)->doc);
	fprintf(f, "\nIts `reason` says why it is in that state: the last transition's "
		"cause. A reason asked for by a call is the call's (`user`, `booted`, `reset`, "
		"`rebooted`, `shutdown`, `destroyed`); a change no job asked for takes QEMU's "
		"word (`paused`, `unpaused`, `guest-reset`, `guest-shutdown`, `quit`, ...).\n\n"
		"| reason | states | meaning |\n|---|---|---|\n");
	for (int i = 0; i < VR_COUNT; i++) {
		const struct vm_doc *r = vm_reason_doc((enum vm_reason)i);

		fprintf(f, "| `%s` | %s | %s |\n", r->name, r->applies, r->doc);
	}
	fprintf(f, "\nThe monitor (`monitor.state` in `list` and `info`) is corral's QMP "
		"connection to the domain's QEMU:\n\n| monitor | meaning |\n|---|---|\n");
	for (size_t i = 0; i < nmon; i++)
		fprintf(f, "| `%s` | %s |\n", mon[i].name, mon[i].doc);
	fprintf(f, "\n## Events\n\n"
		"`events.subscribe` delivers `[2, \"event\", [{domain, event, timestamp, data, "
		"subscription}]]`. Events come in two families: corral's own, named in lower "
		"case, and QEMU's, passed through as `qemu.NAME`. Each transition of a domain is "
		"exactly one `lifecycle` event; the QEMU event that caused it (if any) comes as "
		"well, in its own family.\n\n"
		"| event | family | data | meaning |\n|---|---|---|---|\n");
	for (int i = 0; i < VE_COUNT; i++) {
		const struct vm_doc *e = vm_event_doc((enum vm_event)i);

		fprintf(f, "| `%s` | corral | %s | %s |\n", e->name, e->applies, e->doc);
	}
	fprintf(f, "| `%s` | qemu | %s | %s |\n", q->name, q->applies, q->doc);
	fprintf(f, "\n## Config\n\n"
		"`define` takes a config map; `info` shows it in canonical form (memory in MiB, "
		"disks as objects, every default filled in). Unknown keys, values of the wrong "
		"type or out of range are refused (`invalid-argument`, naming the field); nil "
		"counts as absent; no string may hold a control character. `disks[].path` is a "
		"key of each object in `disks`. Rules between fields: `initrd` and `cmdline` need "
		"`kernel`; machine \"none\" takes no `kernel`, disks, NICs, cdrom or UEFI, and "
		"1 vCPU; `boot` names only devices the domain has; the cdrom is not also a disk."
		"\n\n| field | type | required | default | accepted | example |\n"
		"|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < nf; i++) {
		const struct qemu_config_field *c = qemu_config_field(i);

		fprintf(f, "| `%s` | %s | %s | %s | ", c->key, c->type, c->required ? "yes" : "no",
			c->def ? c->def : "-");
		if (c->has_range)
			fprintf(f, "%lld to %lld%s%s; ", c->min, c->max, c->unit ? " " : "",
				c->unit ? c->unit : "");
		fprintf(f, "%s | `%s` |\n", c->rule, c->example);
	}
}

void server_dump_api_md(FILE *f)
{
	fprintf(f, "# corrald API\n\n"
		"<!-- Generated by `corrald --dump-api-md` from the method table in "
		"daemon/methods.c; do not edit. -->\n\n"
		"corrald speaks [msgpack-RPC](https://github.com/msgpack-rpc/msgpack-rpc/blob/"
		"master/spec.md) on two UNIX sockets (see docs/daemon.md): messages are msgpack "
		"arrays sent back to back, with no other framing.\n\n"
		"| message | shape |\n|---|---|\n"
		"| request | `[0, msgid, method, [params]]` |\n"
		"| response | `[1, msgid, error, result]` |\n"
		"| notification | `[2, method, [params]]` |\n\n"
		"Every method takes one map as its only param (`[{...}]`); no params at all "
		"reads as an empty map. Unknown keys, missing required keys and values of the "
		"wrong type are refused with `invalid-argument`. Many requests may be in flight "
		"on one connection; answers come as they are ready, so out of order. Queries "
		"(`api.info`, `daemon.info`, `list`, `info`) are answered from snapshots and "
		"never wait for a domain; state changes are jobs on the domain, one at a time.\n\n"
		"Every method also takes `timeout_ms` (uint, 1 to %llu): the deadline of the call, "
		"waiting behind other jobs included; the default is 30000 (the daemon's "
		"`default_timeout_ms`).\n\n"
		"A message may be at most %u bytes and %d containers deep. A frame over the "
		"limits, or bytes that are not msgpack, close the connection (after an error "
		"response if the request's msgid could be read); a well-formed message of the "
		"wrong shape gets an `invalid-request` error if it has a msgid, and closes the "
		"connection otherwise. Responses and notifications from a client are ignored.\n\n"
		"A request's msgid is an unsigned integer that fits in 32 bits (0 to %u); a "
		"negative or larger one is refused (`invalid-request`). corrald echoes it in the "
		"response and does not check that it is unique: a client that reuses a msgid "
		"while a call with it is in flight cannot tell the two answers apart. A request "
		"has at most %d params, and a message at most %u msgpack objects.\n\n"
		"## Timeouts\n\n"
		"A call that passes its deadline (`timeout_ms`) fails with `busy` if it was still "
		"waiting behind other jobs (then nothing was done), or with `timeout` if it held "
		"the domain: a `timeout` says corrald stopped waiting, not that nothing happened. "
		"A command QEMU had received may still take effect later: a `suspend` sent to a "
		"QEMU that was stopped (SIGSTOP) pauses the guest when QEMU runs again, a "
		"`shutdown`'s power button may still be answered by the guest. The domain's state "
		"always follows what QEMU reports: such a late change arrives as a `lifecycle` "
		"event with the reason for changes no job asked for (`paused`, `unpaused`, "
		"`guest-shutdown`, ...), and `info` shows it. A `start` that times out kills what "
		"it spawned (shutoff/failed); `destroy` needs no answer from QEMU.\n\n"
		"## Errors\n\n"
		"An error is `[code, message]`; the message says what was wrong, e.g. "
		"`no such domain 'web9'` or `param 'name' must be a string, got int`.\n\n"
		"| code | name | meaning |\n|---|---|---|\n",
		TIMEOUT_MAX_MS, RPC_MAX_FRAME, RPC_MAX_DEPTH, UINT32_MAX, MAX_PARAMS,
		RPC_MAX_OBJECTS);
	for (int code = RPC_ERR_MIN; code <= RPC_ERR_MAX; code++)
		fprintf(f, "| %d | `%s` | %s |\n", code, rpc_err_name(code), err_docs[code]);
	dump_tables_md(f);
	fprintf(f, "\n## Methods\n\n"
		"The read-only socket serves only the methods marked so below; any other "
		"gets `permission`.\n\n"
		"| method | read-only socket | what it does |\n|---|---|---|\n");
	for (size_t i = 0; i < methods_count; i++) {
		char anchor[64];
		size_t n = 0;

		/* GitHub's anchor for a heading drops the dots. */
		for (const char *c = methods[i].name; *c && n < sizeof(anchor) - 1; c++)
			if (*c != '.')
				anchor[n++] = *c;
		anchor[n] = '\0';
		fprintf(f, "| [`%s`](#%s) | %s | %s |\n", methods[i].name, anchor,
			methods[i].ro_ok ? "yes" : "no", methods[i].doc);
	}
	for (size_t i = 0; i < methods_count; i++) {
		const struct method *m = &methods[i];
		const struct param *p;

		fprintf(f, "\n### %s\n\n%s\n\n", m->name, m->doc);
		if (!m->params[0].name) {
			fprintf(f, "Params: none.\n\n");
		} else {
			fprintf(f, "| param | type | required | description |\n|---|---|---|---|\n");
			for (p = m->params; p->name; p++)
				fprintf(f, "| `%s` | %s | %s | %s |\n", p->name, type_name(p->type),
					p->required ? "yes" : "no", p->doc);
			fprintf(f, "\n");
		}
		/* A result that ends its own sentence gets no second full stop. */
		fprintf(f, "Result: %s%s\n", m->result,
			m->result[0] && m->result[strlen(m->result) - 1] == '.' ? "" : ".");
	}
}

/* The API section of corrald(8), from the same table as docs/API.md. */
void server_dump_api_man(FILE *f)
{
	char line[512];

	roff_macro(f, "SH", "API");
	snprintf(line, sizeof(line), "corrald speaks msgpack-RPC on both sockets: requests "
		 "`[0, msgid, method, [params]]`, responses `[1, msgid, error, result]`, "
		 "notifications `[2, method, [params]]`.  Every method takes one map; every "
		 "method also takes `timeout_ms` (1 to %llu; default `default_timeout_ms`).  "
		 "Methods marked (ro) are served on the read-only socket too.\n",
		 TIMEOUT_MAX_MS);
	roff_text(f, line);
	for (size_t i = 0; i < methods_count; i++) {
		const struct method *m = &methods[i];

		roff_macro(f, "TP", NULL);
		fputs("\\fB", f);
		roff_text(f, m->name);
		fprintf(f, "\\fR%s\n", m->ro_ok ? " (ro)" : "");
		roff_text(f, m->doc);
		fputc('\n', f);
		for (const struct param *p = m->params; p->name; p++) {
			fputs(".br\n\\fI", f);
			roff_text(f, p->name);
			fprintf(f, "\\fR (%s%s): ", type_name(p->type), p->required ? ", required" : "");
			roff_text(f, p->doc);
			fputc('\n', f);
		}
		fputs(".br\nResult: ", f);
		roff_text(f, m->result);
		fputc('\n', f);
	}
	roff_macro(f, "SS", "Errors");
	roff_text(f, "An error is `[code, message]`:\n");
	for (int code = RPC_ERR_MIN; code <= RPC_ERR_MAX; code++) {
		roff_macro(f, "TP", NULL);
		fprintf(f, "\\fB%d\\fR ", code);
		roff_text(f, rpc_err_name(code));
		fputc('\n', f);
		roff_text(f, err_docs[code]);
		fputc('\n', f);
	}
}

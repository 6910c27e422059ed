/* SPDX-License-Identifier: MIT */
/*
 * Decoding a scanned frame into a struct rpc_msg, and typed access to the
 * msgpack tree it holds.
 */
#include "rpc/rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc-internal.h"

struct rpc_msg {
	enum rpc_msg_type type;
	uint32_t msgid;                 /* 0 for a notification */
	const msgpack_object *params;   /* request, notification: an array */
	const msgpack_object *error;    /* response */
	const msgpack_object *result;   /* response */
	msgpack_object root;
	/*
	 * Owns the tree and the copy of the frame it points into: msgpack-c
	 * does not copy str, bin and ext bodies, they point into the input.
	 */
	msgpack_zone *zone;
	char method[RPC_MAX_METHOD + 1];
};

/* What rpc_msg_params_map() gives for empty params. */
static const msgpack_object empty_map = { .type = MSGPACK_OBJECT_MAP };

__attribute__((format(printf, 3, 4)))
static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errbuf && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int fail_nomem(char *errbuf, size_t errlen)
{
	if (errbuf && errlen > 0)
		snprintf(errbuf, errlen, "out of memory");
	return -ENOMEM;
}

const char *rpc_obj_type_name(const msgpack_object *obj)
{
	if (!obj)
		return "nothing";
	switch (obj->type) {
	case MSGPACK_OBJECT_NIL:
		return "nil";
	case MSGPACK_OBJECT_BOOLEAN:
		return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return "int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return "float";
	case MSGPACK_OBJECT_STR:
		return "str";
	case MSGPACK_OBJECT_BIN:
		return "bin";
	case MSGPACK_OBJECT_ARRAY:
		return "array";
	case MSGPACK_OBJECT_MAP:
		return "map";
	case MSGPACK_OBJECT_EXT:
		return "ext";
	}
	return "unknown";
}

const char *rpc__method_problem(const char *s, size_t len)
{
	if (len == 0)
		return "is empty";
	if (len > RPC_MAX_METHOD)
		return "is longer than 128 bytes";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f)
			return "has a byte that is not printable ASCII or is a space";
	}
	return NULL;
}

static int check_msgid(const char *what, const msgpack_object *o, uint32_t *ret,
		       char *errbuf, size_t errlen)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return fail(errbuf, errlen, "%s msgid must not be negative, got %" PRId64,
			    what, o->via.i64);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return fail(errbuf, errlen, "%s msgid must be an int, got %s", what,
			    rpc_obj_type_name(o));
	if (o->via.u64 > UINT32_MAX)
		return fail(errbuf, errlen, "%s msgid %" PRIu64 " does not fit in 32 bits",
			    what, o->via.u64);
	*ret = (uint32_t)o->via.u64;
	return 0;
}

static int check_method(const char *what, const msgpack_object *o, char *method,
			char *errbuf, size_t errlen)
{
	const char *problem;

	if (o->type != MSGPACK_OBJECT_STR)
		return fail(errbuf, errlen, "%s method must be a str, got %s", what,
			    rpc_obj_type_name(o));
	problem = rpc__method_problem(rpc_str_ptr(o), o->via.str.size);
	if (problem)
		return fail(errbuf, errlen, "%s method %s", what, problem);
	memcpy(method, rpc_str_ptr(o), o->via.str.size);
	method[o->via.str.size] = '\0';
	return 0;
}

static int check_params(const char *what, const msgpack_object *o, char *errbuf,
			size_t errlen)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return fail(errbuf, errlen, "%s params must be an array, got %s", what,
			    rpc_obj_type_name(o));
	return 0;
}

static int check_shape(struct rpc_msg *m, char *errbuf, size_t errlen)
{
	const msgpack_object *o = &m->root, *a;
	const char *what;
	uint32_t want;
	int r;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return fail(errbuf, errlen, "message must be an array, got %s",
			    rpc_obj_type_name(o));
	if (o->via.array.size == 0)
		return fail(errbuf, errlen, "message must not be an empty array");
	a = o->via.array.ptr;
	if (a[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return fail(errbuf, errlen, "message type must be 0, 1 or 2, got %" PRId64,
			    a[0].via.i64);
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return fail(errbuf, errlen, "message type must be an int, got %s",
			    rpc_obj_type_name(&a[0]));
	switch (a[0].via.u64) {
	case RPC_REQUEST:
		what = "request";
		want = 4;
		break;
	case RPC_RESPONSE:
		what = "response";
		want = 4;
		break;
	case RPC_NOTIFICATION:
		what = "notification";
		want = 3;
		break;
	default:
		return fail(errbuf, errlen, "message type must be 0, 1 or 2, got %" PRIu64,
			    a[0].via.u64);
	}
	if (o->via.array.size != want)
		return fail(errbuf, errlen, "%s must be an array of %" PRIu32
			    " elements, got %" PRIu32, what, want, o->via.array.size);
	m->type = (enum rpc_msg_type)a[0].via.u64;

	switch (m->type) {
	case RPC_REQUEST:
		r = check_msgid(what, &a[1], &m->msgid, errbuf, errlen);
		if (r < 0)
			return r;
		r = check_method(what, &a[2], m->method, errbuf, errlen);
		if (r < 0)
			return r;
		r = check_params(what, &a[3], errbuf, errlen);
		if (r < 0)
			return r;
		m->params = &a[3];
		return 0;
	case RPC_RESPONSE:
		r = check_msgid(what, &a[1], &m->msgid, errbuf, errlen);
		if (r < 0)
			return r;
		m->error = &a[2];
		m->result = &a[3];
		return 0;
	case RPC_NOTIFICATION:
		r = check_method(what, &a[1], m->method, errbuf, errlen);
		if (r < 0)
			return r;
		r = check_params(what, &a[2], errbuf, errlen);
		if (r < 0)
			return r;
		m->params = &a[2];
		return 0;
	}
	return fail(errbuf, errlen, "unreachable");
}

int rpc_decode(const char *frame, size_t len, struct rpc_msg **ret, char *errbuf,
	       size_t errlen)
{
	struct rpc_msg *m;
	msgpack_unpack_return ur;
	size_t frame_len = 0, off = 0;
	char *copy;
	int r;

	r = rpc_frame_scan(frame, len, &frame_len);
	if (r < 0) {
		if (errbuf && errlen > 0)
			snprintf(errbuf, errlen, "%s", rpc_strerror_scan(r));
		return r;
	}
	if (r == 0)
		return fail(errbuf, errlen, "message is truncated");
	if (frame_len != len)
		return fail(errbuf, errlen, "trailing bytes after the message: %zu",
			    len - frame_len);

	m = calloc(1, sizeof(*m));
	if (!m)
		return fail_nomem(errbuf, errlen);
	/*
	 * A zone sized to the message (its copy and, typically, its objects;
	 * the zone grows when they need more): most requests are tens of
	 * bytes, and a fixed 8 KiB chunk per message made every request a
	 * large allocation, which costs malloc far more than a small one.
	 */
	m->zone = msgpack_zone_new(len < MSGPACK_ZONE_CHUNK_SIZE / 4 ? 4 * len + 256
								   : MSGPACK_ZONE_CHUNK_SIZE);
	if (!m->zone) {
		r = -ENOMEM;
		goto err_free;
	}
	copy = msgpack_zone_malloc(m->zone, len);
	if (!copy) {
		r = -ENOMEM;
		goto err_free;
	}
	memcpy(copy, frame, len);

	ur = msgpack_unpack(copy, len, &off, m->zone, &m->root);
	if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
		r = -ENOMEM;
		goto err_free;
	}
	if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
		/* The scanner accepted it: msgpack-c should too. */
		r = fail(errbuf, errlen, "msgpack-c could not unpack the message (%d)",
			 (int)ur);
		goto err_free;
	}

	r = check_shape(m, errbuf, errlen);
	if (r < 0)
		goto err_free;
	*ret = m;
	return 0;

err_free:
	if (r == -ENOMEM)
		fail_nomem(errbuf, errlen);
	rpc_msg_free(m);
	return r;
}

void rpc_msg_free(struct rpc_msg *m)
{
	if (!m)
		return;
	if (m->zone)
		msgpack_zone_free(m->zone);
	free(m);
}

enum rpc_msg_type rpc_msg_type(const struct rpc_msg *m)
{
	return m->type;
}

uint32_t rpc_msg_id(const struct rpc_msg *m)
{
	return m->msgid;
}

const char *rpc_msg_method(const struct rpc_msg *m)
{
	return m->type == RPC_RESPONSE ? NULL : m->method;
}

const msgpack_object *rpc_msg_params(const struct rpc_msg *m)
{
	return m->params;
}

int rpc_msg_params_map(const struct rpc_msg *m, const msgpack_object **ret_map,
		       char *errbuf, size_t errlen)
{
	const msgpack_object *p = m->params;

	if (!p)
		return fail(errbuf, errlen, "a response has no params");
	if (p->via.array.size == 0) {
		*ret_map = &empty_map;
		return 0;
	}
	if (p->via.array.size > 1)
		return fail(errbuf, errlen, "params must hold one map, got %" PRIu32
			    " elements", p->via.array.size);
	if (p->via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
		return fail(errbuf, errlen, "params[0] must be a map, got %s",
			    rpc_obj_type_name(&p->via.array.ptr[0]));
	*ret_map = &p->via.array.ptr[0];
	return 0;
}

const msgpack_object *rpc_msg_error(const struct rpc_msg *m)
{
	if (!m->error || m->error->type == MSGPACK_OBJECT_NIL)
		return NULL;
	return m->error;
}

const msgpack_object *rpc_msg_result(const struct rpc_msg *m)
{
	return m->result;
}

int rpc_error_parse(const msgpack_object *err, int64_t *ret_code, const char **ret_text,
		    size_t *ret_len)
{
	const msgpack_object *a;
	int64_t code;

	if (!err || err->type != MSGPACK_OBJECT_ARRAY || err->via.array.size != 2)
		return -EINVAL;
	a = err->via.array.ptr;
	if (rpc_obj_i64(&a[0], &code) < 0 || a[1].type != MSGPACK_OBJECT_STR)
		return -EINVAL;
	*ret_code = code;
	*ret_text = rpc_str_ptr(&a[1]);
	*ret_len = a[1].via.str.size;
	return 0;
}

const msgpack_object *rpc_map_get(const msgpack_object *map, const char *key)
{
	size_t klen = strlen(key);

	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    memcmp(rpc_str_ptr(k), key, klen) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

int rpc_obj_str(const msgpack_object *obj, const char **ret_s, size_t *ret_len)
{
	if (!obj)
		return -ENOENT;
	if (obj->type != MSGPACK_OBJECT_STR)
		return -EINVAL;
	*ret_s = rpc_str_ptr(obj);
	*ret_len = obj->via.str.size;
	return 0;
}

int rpc_obj_strdup(const msgpack_object *obj, char **ret)
{
	const char *s;
	size_t len;
	char *copy;
	int r;

	r = rpc_obj_str(obj, &s, &len);
	if (r < 0)
		return r;
	if (memchr(s, '\0', len))
		return -EINVAL;
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, s, len);
	copy[len] = '\0';
	*ret = copy;
	return 0;
}

int rpc_obj_u64(const msgpack_object *obj, uint64_t *ret)
{
	if (!obj)
		return -ENOENT;
	if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return -ERANGE;
	if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EINVAL;
	*ret = obj->via.u64;
	return 0;
}

int rpc_obj_i64(const msgpack_object *obj, int64_t *ret)
{
	if (!obj)
		return -ENOENT;
	if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*ret = obj->via.i64;
		return 0;
	}
	if (obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EINVAL;
	if (obj->via.u64 > INT64_MAX)
		return -ERANGE;
	*ret = (int64_t)obj->via.u64;
	return 0;
}

int rpc_obj_bool(const msgpack_object *obj, bool *ret)
{
	if (!obj)
		return -ENOENT;
	if (obj->type != MSGPACK_OBJECT_BOOLEAN)
		return -EINVAL;
	*ret = obj->via.boolean;
	return 0;
}

/* SPDX-License-Identifier: MIT */
/* msgpack objects <-> jansson values, for the daemon's RPC layer. */
#include "rpc/json-conv.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"

/* Where a conversion is, for error messages: "config.disks[2]". */
struct conv {
	char path[256];
	size_t len;             /* strlen(path) */
	char *errbuf;
	size_t errlen;
};

static int conv_fail(struct conv *cv, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int conv_fail(struct conv *cv, int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!cv->errlen)
		return err;
	n = snprintf(cv->errbuf, cv->errlen, "%s: ", cv->path);
	if (n < 0 || (size_t)n >= cv->errlen)
		return err;
	va_start(ap, fmt);
	vsnprintf(cv->errbuf + n, cv->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* Append a path element; returns the old length for path_pop(). */
static size_t path_push(struct conv *cv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t path_push(struct conv *cv, const char *fmt, ...)
{
	size_t old = cv->len;
	va_list ap;
	int n;

	if (cv->len >= sizeof(cv->path) - 1)
		return old;
	va_start(ap, fmt);
	n = vsnprintf(cv->path + cv->len, sizeof(cv->path) - cv->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		cv->len += (size_t)n < sizeof(cv->path) - cv->len ? (size_t)n
								     : sizeof(cv->path) - cv->len - 1;
	return old;
}

static void path_pop(struct conv *cv, size_t old)
{
	cv->len = old;
	cv->path[old] = '\0';
}

static bool is_plain_key(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int to_json(struct conv *cv, const msgpack_object *o, unsigned depth, json_t **ret);

static int map_to_json(struct conv *cv, const msgpack_object_map *m, unsigned depth,
		       json_t **ret)
{
	json_t *obj = json_object();

	if (!obj)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		char key[1024];
		json_t *v;
		size_t old;
		int r;

		if (k->type != MSGPACK_OBJECT_STR) {
			json_decref(obj);
			return conv_fail(cv, -EINVAL, "map keys must be strings, got %s",
					 rpc_obj_type_name(k));
		}
		if (k->via.str.size >= sizeof(key) || memchr(rpc_str_ptr(k), 0, k->via.str.size)) {
			json_decref(obj);
			return conv_fail(cv, -EINVAL, "map key too long or holding a NUL byte");
		}
		memcpy(key, rpc_str_ptr(k), k->via.str.size);
		key[k->via.str.size] = '\0';
		if (is_plain_key(key, k->via.str.size))
			old = path_push(cv, ".%s", key);
		else
			old = path_push(cv, "[key %u]", (unsigned)i);
		if (json_object_get(obj, key)) {
			r = conv_fail(cv, -EINVAL, "key given twice");
			path_pop(cv, old);
			json_decref(obj);
			return r;
		}
		r = to_json(cv, &m->ptr[i].val, depth + 1, &v);
		if (r < 0) {
			path_pop(cv, old);
			json_decref(obj);
			return r;
		}
		path_pop(cv, old);
		/* json_object_set_new() also checks that the key is UTF-8. */
		if (json_object_set_new(obj, key, v) < 0) {
			json_decref(obj);
			return conv_fail(cv, -EINVAL, "map key is not valid UTF-8");
		}
	}
	*ret = obj;
	return 0;
}

static int to_json(struct conv *cv, const msgpack_object *o, unsigned depth, json_t **ret)
{
	json_t *j = NULL;

	if (depth > RPC_JSON_MAX_DEPTH &&
	    (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP))
		return conv_fail(cv, -EINVAL, "nested deeper than %d levels", RPC_JSON_MAX_DEPTH);
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		j = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		j = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return conv_fail(cv, -EINVAL, "integer %" PRIu64 " is out of range",
					 o->via.u64);
		j = json_integer((json_int_t)o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		j = json_integer((json_int_t)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			return conv_fail(cv, -EINVAL, "NaN and infinities are not allowed");
		j = json_real(o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		j = json_stringn(rpc_str_ptr(o), o->via.str.size);
		if (!j)
			return conv_fail(cv, -EINVAL, "string is not valid UTF-8");
		*ret = j;
		return 0;
	case MSGPACK_OBJECT_ARRAY:
		j = json_array();
		if (!j)
			return -ENOMEM;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			size_t old = path_push(cv, "[%u]", (unsigned)i);
			json_t *v;
			int r = to_json(cv, &o->via.array.ptr[i], depth + 1, &v);

			path_pop(cv, old);
			if (r < 0) {
				json_decref(j);
				return r;
			}
			if (json_array_append_new(j, v) < 0) {
				json_decref(j);
				return -ENOMEM;
			}
		}
		*ret = j;
		return 0;
	case MSGPACK_OBJECT_MAP:
		return map_to_json(cv, &o->via.map, depth, ret);
	case MSGPACK_OBJECT_BIN:
		return conv_fail(cv, -EINVAL, "bin values are not allowed (send a str)");
	case MSGPACK_OBJECT_EXT:
	default:
		return conv_fail(cv, -EINVAL, "%s values are not allowed", rpc_obj_type_name(o));
	}
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

int rpc_obj_to_json(const msgpack_object *obj, const char *what, json_t **ret, char *errbuf,
		    size_t errlen)
{
	struct conv cv = { .errbuf = errbuf, .errlen = errlen };
	json_t *j;
	int r;

	if (errlen)
		errbuf[0] = '\0';
	path_push(&cv, "%s", what ? what : "value");
	if (!obj)
		return conv_fail(&cv, -EINVAL, "missing");
	r = to_json(&cv, obj, 1, &j);
	if (r == -ENOMEM && errlen)
		snprintf(errbuf, errlen, "out of memory");
	if (r < 0)
		return r;
	*ret = j;
	return 0;
}

#define TRY(expr)                       \
	do {                            \
		if ((expr) < 0)         \
			return -ENOMEM; \
	} while (0)

static int pack_json(msgpack_packer *pk, const json_t *j, unsigned depth)
{
	if (depth > RPC_JSON_MAX_DEPTH && (json_is_object(j) || json_is_array(j)))
		return -EINVAL;
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *v;
		int r;

		TRY(msgpack_pack_map(pk, json_object_size(j)));
		json_object_foreach((json_t *)j, key, v) {
			r = rpc_pack_cstr(pk, key);
			if (r < 0)
				return r;
			r = pack_json(pk, v, depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;
		int r;

		TRY(msgpack_pack_array(pk, json_array_size(j)));
		json_array_foreach(j, i, v) {
			r = pack_json(pk, v, depth + 1);
			if (r < 0)
				return r;
		}
		return 0;
	}
	case JSON_STRING:
		return rpc_pack_str(pk, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		TRY(msgpack_pack_int64(pk, json_integer_value(j)));
		return 0;
	case JSON_REAL:
		TRY(msgpack_pack_double(pk, json_real_value(j)));
		return 0;
	case JSON_TRUE:
		TRY(msgpack_pack_true(pk));
		return 0;
	case JSON_FALSE:
		TRY(msgpack_pack_false(pk));
		return 0;
	case JSON_NULL:
		TRY(msgpack_pack_nil(pk));
		return 0;
	}
	return -EINVAL;
}

int rpc_pack_json(msgpack_packer *pk, const json_t *j)
{
	if (!j) {
		TRY(msgpack_pack_nil(pk));
		return 0;
	}
	return pack_json(pk, j, 1);
}

/* SPDX-License-Identifier: MIT */
/* cli json-conv: msgpack objects <-> jansson values (see json-conv.h). */
#include "cli/json-conv.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack/timestamp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0 if it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	/* The second byte's range excludes overlongs, surrogates and > U+10FFFF. */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* A JSON string from bytes that failed jansson's UTF-8 check. */
static json_t *string_replacing_bad_bytes(const char *s, size_t len)
{
	static const char replacement[] = "\xef\xbf\xbd";
	const unsigned char *u = (const unsigned char *)s;
	json_t *out;
	char *buf;
	size_t i = 0, o = 0;

	/* Each bad byte grows to three. */
	buf = malloc(len * 3 + 1);
	if (!buf)
		return NULL;
	while (i < len) {
		size_t n = utf8_seq_len(u + i, len - i);

		if (n) {
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(buf + o, replacement, 3);
			o += 3;
			i++;
		}
	}
	out = json_stringn(buf, o);
	free(buf);
	return out;
}

static json_t *string_from(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);

	return j ? j : string_replacing_bad_bytes(s, len);
}

static json_t *hex_from(const char *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	json_t *out;
	char *buf;
	size_t i;

	buf = malloc(len * 2 + 1);
	if (!buf)
		return NULL;
	for (i = 0; i < len; i++) {
		buf[2 * i] = digits[(unsigned char)p[i] >> 4];
		buf[2 * i + 1] = digits[(unsigned char)p[i] & 0xf];
	}
	out = json_stringn(buf, len * 2);
	free(buf);
	return out;
}

/* json_real() refuses NaN and infinities: they become null. */
static json_t *real_from(double d)
{
	return isfinite(d) ? json_real(d) : json_null();
}

/* A map key as a C string: a str as is, anything else as its JSON text. */
static char *key_from(const msgpack_object *k)
{
	json_t *j;
	char *s;

	if (k->type == MSGPACK_OBJECT_STR) {
		j = string_from(k->via.str.ptr, k->via.str.size);
		if (!j)
			return NULL;
		s = strdup(json_string_value(j));
		json_decref(j);
		return s;
	}
	j = cli_json_from_msgpack(k);
	if (!j)
		return NULL;
	s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	return s;
}

static json_t *map_from(const msgpack_object_map *m)
{
	json_t *obj = json_object();
	uint32_t i;

	if (!obj)
		return NULL;
	for (i = 0; i < m->size; i++) {
		char *key = key_from(&m->ptr[i].key);
		int r;

		if (!key) {
			json_decref(obj);
			return NULL;
		}
		/* A repeated key: the first wins, as rpc_map_get() reads it. */
		if (json_object_get(obj, key)) {
			free(key);
			continue;
		}
		/* set_new() takes the value even when it fails, and fails on NULL. */
		r = json_object_set_new(obj, key, cli_json_from_msgpack(&m->ptr[i].val));
		free(key);
		if (r) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

static json_t *array_from(const msgpack_object_array *a)
{
	json_t *arr = json_array();
	uint32_t i;

	if (!arr)
		return NULL;
	for (i = 0; i < a->size; i++) {
		if (json_array_append_new(arr, cli_json_from_msgpack(&a->ptr[i]))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

json_t *cli_json_from_msgpack(const msgpack_object *obj)
{
	msgpack_timestamp ts;

	if (!obj)
		return json_null();
	switch (obj->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(obj->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (obj->via.u64 > INT64_MAX)
			return json_real((double)obj->via.u64);
		return json_integer((json_int_t)obj->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)obj->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return real_from(obj->via.f64);
	case MSGPACK_OBJECT_STR:
		return string_from(obj->via.str.ptr, obj->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return hex_from(obj->via.bin.ptr, obj->via.bin.size);
	case MSGPACK_OBJECT_ARRAY:
		return array_from(&obj->via.array);
	case MSGPACK_OBJECT_MAP:
		return map_from(&obj->via.map);
	case MSGPACK_OBJECT_EXT:
		if (msgpack_object_to_timestamp(obj, &ts))
			return json_real((double)ts.tv_sec + ts.tv_nsec / 1e9);
		return json_null();
	}
	return json_null();
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	if (msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len))
		return -ENOMEM;
	return 0;
}

int cli_json_pack(msgpack_packer *pk, const json_t *value)
{
	const char *key;
	json_t *v;
	size_t i;
	int r;

	switch (json_typeof(value)) {
	case JSON_NULL:
		return msgpack_pack_nil(pk) ? -ENOMEM : 0;
	case JSON_TRUE:
		return msgpack_pack_true(pk) ? -ENOMEM : 0;
	case JSON_FALSE:
		return msgpack_pack_false(pk) ? -ENOMEM : 0;
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, json_integer_value(value)) ? -ENOMEM : 0;
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(value)) ? -ENOMEM : 0;
	case JSON_STRING:
		return pack_str(pk, json_string_value(value), json_string_length(value));
	case JSON_ARRAY:
		if (msgpack_pack_array(pk, json_array_size(value)))
			return -ENOMEM;
		json_array_foreach((json_t *)value, i, v) {
			r = cli_json_pack(pk, v);
			if (r)
				return r;
		}
		return 0;
	case JSON_OBJECT:
		if (msgpack_pack_map(pk, json_object_size(value)))
			return -ENOMEM;
		json_object_foreach((json_t *)value, key, v) {
			r = pack_str(pk, key, strlen(key));
			if (!r)
				r = cli_json_pack(pk, v);
			if (r)
				return r;
		}
		return 0;
	}
	return -EINVAL;
}

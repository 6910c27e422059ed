/* SPDX-License-Identifier: MIT */
/* rpc_decode(): message shapes, their error messages, and typed access. */
#include "helpers.h"

/* A string literal of msgpack bytes; mind hex escapes before a-f. */
#define INVALID(lit, msg) decode_invalid(lit, sizeof(lit) - 1, msg)
#define DECODE(lit)       decode_ok(lit, sizeof(lit) - 1)

Test(decode, top_level_must_be_an_array)
{
	INVALID("\xa3" "abc", "message must be an array, got str");
	INVALID("\x81\xa1k\xc0", "message must be an array, got map");
	INVALID("\x2a", "message must be an array, got int");
	INVALID("\xc0", "message must be an array, got nil");
	INVALID("\x90", "message must not be an empty array");
}

Test(decode, message_type_must_be_0_1_or_2)
{
	INVALID("\x94\xa1x\x01\xa1m\x90", "message type must be an int, got str");
	INVALID("\x94\xc0\x01\xa1m\x90", "message type must be an int, got nil");
	INVALID("\x94\xff\x01\xa1m\x90", "message type must be 0, 1 or 2, got -1");
	INVALID("\x94\x03\x01\xa1m\x90", "message type must be 0, 1 or 2, got 3");
}

Test(decode, wrong_length_is_refused)
{
	INVALID("\x93\x00\x01\xa1m", "request must be an array of 4 elements, got 3");
	INVALID("\x95\x00\x01\xa1m\x90\xc0", "request must be an array of 4 elements, got 5");
	INVALID("\x91\x00", "request must be an array of 4 elements, got 1");
	INVALID("\x93\x01\x01\xc0", "response must be an array of 4 elements, got 3");
	INVALID("\x94\x02\xa1m\x90\xc0", "notification must be an array of 3 elements, got 4");
	INVALID("\x92\x02\xa1m", "notification must be an array of 3 elements, got 2");
}

Test(decode, msgid_must_be_a_uint32)
{
	INVALID("\x94\x00\xa1x\xa1m\x90", "request msgid must be an int, got str");
	INVALID("\x94\x00\xc0\xa1m\x90", "request msgid must be an int, got nil");
	INVALID("\x94\x00\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xa1m\x90",
		"request msgid must be an int, got float");
	INVALID("\x94\x00\xff\xa1m\x90", "request msgid must not be negative, got -1");
	INVALID("\x94\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa1m\x90",
		"request msgid 4294967296 does not fit in 32 bits");
	INVALID("\x94\x01\xd0\x80\xc0\xc0", "response msgid must not be negative, got -128");
	INVALID("\x94\x01\x90\xc0\xc0", "response msgid must be an int, got array");
}

Test(decode, msgid_bounds_are_accepted)
{
	struct rpc_msg *m = DECODE("\x94\x00\x00\xa1m\x90");

	cr_assert_eq(rpc_msg_id(m), 0);
	rpc_msg_free(m);
	m = DECODE("\x94\x00\xce\xff\xff\xff\xff\xa1m\x90");
	cr_assert_eq(rpc_msg_id(m), UINT32_MAX);
	rpc_msg_free(m);
	/* a non-negative int in a signed encoding is still a msgid */
	m = DECODE("\x94\x01\xd3\x00\x00\x00\x00\x00\x00\x00\x07\xc0\xc0");
	cr_assert_eq(rpc_msg_id(m), 7);
	rpc_msg_free(m);
}

Test(decode, method_must_be_a_short_printable_str)
{
	INVALID("\x94\x00\x01\x05\x90", "request method must be a str, got int");
	INVALID("\x94\x00\x01\xc4\x01m\x90", "request method must be a str, got bin");
	INVALID("\x93\x02\xc0\x90", "notification method must be a str, got nil");
	INVALID("\x94\x00\x01\xa0\x90", "request method is empty");
	INVALID("\x94\x00\x01\xa2m\x00\x90",
		"request method has a byte that is not printable ASCII or is a space");
	INVALID("\x94\x00\x01\xa2m\n\x90",
		"request method has a byte that is not printable ASCII or is a space");
	INVALID("\x94\x00\x01\xa3m m\x90",
		"request method has a byte that is not printable ASCII or is a space");
	INVALID("\x93\x02\xa2\xc3\xa9\x90",
		"notification method has a byte that is not printable ASCII or is a space");
}

static void method_of_length(size_t n, bool ok)
{
	unsigned char b[8 + 200];
	size_t len = 0;

	b[len++] = 0x94;
	b[len++] = 0x00;
	b[len++] = 0x01;
	b[len++] = 0xd9;
	b[len++] = (unsigned char)n;
	memset(b + len, 'a', n);
	len += n;
	b[len++] = 0x90;
	if (ok) {
		struct rpc_msg *m = decode_ok(b, len);

		cr_assert_eq(strlen(rpc_msg_method(m)), n);
		rpc_msg_free(m);
	} else {
		decode_invalid(b, len, "request method is longer than 128 bytes");
	}
}

Test(decode, method_of_128_bytes_is_the_longest)
{
	method_of_length(RPC_MAX_METHOD, true);
	method_of_length(RPC_MAX_METHOD + 1, false);
	method_of_length(200, false);
}

Test(decode, params_must_be_an_array)
{
	INVALID("\x94\x00\x01\xa1m\xa3" "abc", "request params must be an array, got str");
	INVALID("\x94\x00\x01\xa1m\x80", "request params must be an array, got map");
	INVALID("\x94\x00\x01\xa1m\xc0", "request params must be an array, got nil");
	INVALID("\x93\x02\xa1m\x80", "notification params must be an array, got map");
	INVALID("\x93\x02\xa1m\xd6\xff\x00\x00\x00\x00",
		"notification params must be an array, got ext");
}

Test(decode, truncated_or_trailing_bytes_are_refused)
{
	INVALID("", "message is truncated");
	INVALID("\x94\x00\x01", "message is truncated");
	INVALID("\x94\x00\x01\xa1m\x90\xc0", "trailing bytes after the message: 1");
	INVALID("\x94\x00\x01\xa1m\x90\x94\x00\x01\xa1m\x90",
		"trailing bytes after the message: 6");
}

Test(decode, scan_errors_come_through_with_their_reason)
{
	struct rpc_msg *m = NULL;
	char err[128] = "";

	cr_assert_eq(rpc_decode("\x94\x00\x01\xc1", 4, &m, err, sizeof(err)), -EBADMSG);
	cr_assert_str_eq(err, "reserved msgpack type byte 0xc1");
	cr_assert_null(m);
	/* no errbuf is fine too */
	cr_assert_eq(rpc_decode("\xc1", 1, &m, NULL, 0), -EBADMSG);
	cr_assert_eq(rpc_decode("\x90", 1, &m, NULL, 0), -EINVAL);
	/* a short errbuf gets a truncated, terminated message */
	cr_assert_eq(rpc_decode("\x90", 1, &m, err, 8), -EINVAL);
	cr_assert_str_eq(err, "message");
}

/* [0, 1, "m", [[[...[nil]...]]]] nested to depth total */
static unsigned char *deep_request(unsigned int total, size_t *ret_len)
{
	size_t len = 5 + (total - 1) + 1;
	unsigned char *b = malloc(len);

	cr_assert_not_null(b);
	memcpy(b, "\x94\x00\x01\xa1m", 5);
	memset(b + 5, 0x91, total - 1);
	b[len - 1] = 0xc0;
	*ret_len = len;
	return b;
}

Test(decode, depth_32_decodes_and_33_is_refused)
{
	size_t len;
	unsigned char *b = deep_request(RPC_MAX_DEPTH, &len);
	struct rpc_msg *m = decode_ok(b, len);
	const msgpack_object *o = rpc_msg_params(m);
	int depth = 2;
	char err[128];

	while (o->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY) {
		o = &o->via.array.ptr[0];
		depth++;
	}
	cr_assert_eq(depth, RPC_MAX_DEPTH);
	rpc_msg_free(m);
	free(b);

	b = deep_request(RPC_MAX_DEPTH + 1, &len);
	cr_assert_eq(rpc_decode((const char *)b, len, &m, err, sizeof(err)), -ELOOP);
	cr_assert_str_eq(err, "containers nested deeper than 32 levels");
	free(b);
}

Test(decode, message_outlives_the_input_buffer)
{
	static const char lit[] = "\x94\x00\x01\xa4ping\x91\x81\xa4name\xa3vm1";
	char *buf = malloc(sizeof(lit));
	struct rpc_msg *m;
	const msgpack_object *map;
	const char *s;
	size_t len;

	cr_assert_not_null(buf);
	memcpy(buf, lit, sizeof(lit));
	m = decode_ok(buf, sizeof(lit) - 1);
	memset(buf, 0, sizeof(lit));
	free(buf);
	cr_assert_str_eq(rpc_msg_method(m), "ping");
	cr_assert_eq(rpc_msg_params_map(m, &map, NULL, 0), 0);
	cr_assert_eq(rpc_obj_str(rpc_map_get(map, "name"), &s, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(s, "vm1", 3), 0);
	rpc_msg_free(m);
	rpc_msg_free(NULL);
}

Test(decode, request_notification_and_response_accessors)
{
	struct rpc_msg *m = decode_ok(samples[0].bytes, samples[0].len);
	const msgpack_object *o;
	uint64_t u = 0;
	bool b = false;
	int64_t code;
	const char *text;
	size_t len;

	cr_assert_eq(rpc_msg_type(m), RPC_REQUEST);
	cr_assert_eq(rpc_msg_id(m), 1);
	cr_assert_str_eq(rpc_msg_method(m), "ping");
	cr_assert_eq(rpc_msg_params(m)->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_null(rpc_msg_error(m));
	cr_assert_null(rpc_msg_result(m));
	rpc_msg_free(m);

	m = decode_ok(samples[4].bytes, samples[4].len);
	cr_assert_eq(rpc_msg_type(m), RPC_NOTIFICATION);
	cr_assert_eq(rpc_msg_id(m), 0);
	cr_assert_str_eq(rpc_msg_method(m), "event");
	rpc_msg_free(m);

	m = decode_ok(samples[2].bytes, samples[2].len);
	cr_assert_eq(rpc_msg_type(m), RPC_RESPONSE);
	cr_assert_eq(rpc_msg_id(m), 65536);
	cr_assert_null(rpc_msg_method(m));
	cr_assert_null(rpc_msg_params(m));
	cr_assert_null(rpc_msg_error(m));
	o = rpc_msg_result(m);
	cr_assert_eq(rpc_obj_bool(rpc_map_get(o, "ok"), &b), 0);
	cr_assert(b);
	cr_assert_eq(rpc_obj_u64(rpc_map_get(o, "mem"), &u), 0);
	cr_assert_eq(u, 1ULL << 36);
	cr_assert_eq(rpc_msg_params_map(m, &o, NULL, 0), -EINVAL);
	rpc_msg_free(m);

	m = decode_ok(samples[3].bytes, samples[3].len);
	o = rpc_msg_error(m);
	cr_assert_not_null(o);
	cr_assert_eq(rpc_error_parse(o, &code, &text, &len), 0);
	cr_assert_eq(code, RPC_ERR_NO_SUCH_DOMAIN);
	cr_assert_eq(len, strlen("no-such-domain"));
	cr_assert_eq(memcmp(text, "no-such-domain", len), 0);
	cr_assert_eq(rpc_msg_result(m)->type, MSGPACK_OBJECT_NIL);
	rpc_msg_free(m);

	/* a foreign server's error: not [code, message] */
	m = DECODE("\x94\x01\x01\xa4oops\xc0");
	cr_assert_not_null(rpc_msg_error(m));
	cr_assert_eq(rpc_error_parse(rpc_msg_error(m), &code, &text, &len), -EINVAL);
	cr_assert_eq(rpc_error_parse(NULL, &code, &text, &len), -EINVAL);
	rpc_msg_free(m);
}

Test(decode, params_map_is_params_0_or_empty)
{
	struct rpc_msg *m;
	const msgpack_object *map = NULL;
	char err[128] = "";

	m = DECODE("\x94\x00\x01\xa1m\x90");
	cr_assert_eq(rpc_msg_params_map(m, &map, err, sizeof(err)), 0);
	cr_assert_eq(map->type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(map->via.map.size, 0);
	cr_assert_null(rpc_map_get(map, "name"));
	rpc_msg_free(m);

	m = DECODE("\x94\x00\x01\xa1m\x91\x81\xa1k\x01");
	cr_assert_eq(rpc_msg_params_map(m, &map, err, sizeof(err)), 0);
	cr_assert_eq(map->via.map.size, 1);
	rpc_msg_free(m);

	map = NULL;
	m = DECODE("\x94\x00\x01\xa1m\x91\x01");
	cr_assert_eq(rpc_msg_params_map(m, &map, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "params[0] must be a map, got int");
	cr_assert_null(map);
	rpc_msg_free(m);

	m = DECODE("\x94\x00\x01\xa1m\x92\x80\x80");
	cr_assert_eq(rpc_msg_params_map(m, &map, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "params must hold one map, got 2 elements");
	rpc_msg_free(m);
}

/* [0, 1, "m", [{ ... }]] with one value of every kind */
static struct rpc_msg *typed_request(const msgpack_object **ret_map)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, "m"), 0);
	cr_assert_eq(rpc_pack_params_map_begin(&pk, 9), 0);
	rpc_pack_cstr(&pk, "name");
	rpc_pack_cstr(&pk, "vm1");
	rpc_pack_cstr(&pk, "mem");
	msgpack_pack_uint64(&pk, 1024);
	rpc_pack_cstr(&pk, "neg");
	msgpack_pack_int64(&pk, -5);
	rpc_pack_cstr(&pk, "big");
	msgpack_pack_uint64(&pk, UINT64_MAX);
	rpc_pack_cstr(&pk, "min");
	msgpack_pack_int64(&pk, INT64_MIN);
	rpc_pack_cstr(&pk, "on");
	msgpack_pack_true(&pk);
	rpc_pack_cstr(&pk, "nul");
	rpc_pack_str(&pk, "a\0b", 3);
	rpc_pack_cstr(&pk, "f");
	msgpack_pack_double(&pk, 1.5);
	msgpack_pack_int(&pk, 7);       /* a non-str key: never matched */
	rpc_pack_cstr(&pk, "seven");
	m = decode_ok(sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	cr_assert_eq(rpc_msg_params_map(m, ret_map, NULL, 0), 0);
	return m;
}

Test(decode, typed_accessors_check_types_and_ranges)
{
	const msgpack_object *map;
	struct rpc_msg *m = typed_request(&map);
	const char *s = NULL;
	char *dup = NULL;
	size_t len = 0;
	uint64_t u = 99;
	int64_t i = 99;
	bool b = false;

	cr_assert_null(rpc_map_get(map, "absent"));
	cr_assert_null(rpc_map_get(map, "nam"));
	cr_assert_null(rpc_map_get(map, "name2"));
	cr_assert_null(rpc_map_get(NULL, "name"));
	cr_assert_null(rpc_map_get(rpc_map_get(map, "name"), "name"));

	cr_assert_eq(rpc_obj_str(rpc_map_get(map, "name"), &s, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(s, "vm1", 3), 0);
	cr_assert_eq(rpc_obj_str(rpc_map_get(map, "mem"), &s, &len), -EINVAL);
	cr_assert_eq(rpc_obj_str(rpc_map_get(map, "absent"), &s, &len), -ENOENT);

	cr_assert_eq(rpc_obj_strdup(rpc_map_get(map, "name"), &dup), 0);
	cr_assert_str_eq(dup, "vm1");
	free(dup);
	dup = NULL;
	cr_assert_eq(rpc_obj_strdup(rpc_map_get(map, "nul"), &dup), -EINVAL);
	cr_assert_null(dup);
	cr_assert_eq(rpc_obj_strdup(rpc_map_get(map, "on"), &dup), -EINVAL);

	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "mem"), &u), 0);
	cr_assert_eq(u, 1024);
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "big"), &u), 0);
	cr_assert_eq(u, UINT64_MAX);
	u = 99;
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "neg"), &u), -ERANGE);
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "name"), &u), -EINVAL);
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "f"), &u), -EINVAL);
	cr_assert_eq(rpc_obj_u64(NULL, &u), -ENOENT);
	cr_assert_eq(u, 99, "not written on failure");

	cr_assert_eq(rpc_obj_i64(rpc_map_get(map, "neg"), &i), 0);
	cr_assert_eq(i, -5);
	cr_assert_eq(rpc_obj_i64(rpc_map_get(map, "min"), &i), 0);
	cr_assert_eq(i, INT64_MIN);
	cr_assert_eq(rpc_obj_i64(rpc_map_get(map, "mem"), &i), 0);
	cr_assert_eq(i, 1024);
	i = 99;
	cr_assert_eq(rpc_obj_i64(rpc_map_get(map, "big"), &i), -ERANGE);
	cr_assert_eq(rpc_obj_i64(rpc_map_get(map, "on"), &i), -EINVAL);
	cr_assert_eq(rpc_obj_i64(NULL, &i), -ENOENT);
	cr_assert_eq(i, 99);

	cr_assert_eq(rpc_obj_bool(rpc_map_get(map, "on"), &b), 0);
	cr_assert(b);
	cr_assert_eq(rpc_obj_bool(rpc_map_get(map, "mem"), &b), -EINVAL);
	cr_assert_eq(rpc_obj_bool(NULL, &b), -ENOENT);

	cr_assert_str_eq(rpc_obj_type_name(rpc_map_get(map, "f")), "float");
	cr_assert_str_eq(rpc_obj_type_name(rpc_map_get(map, "on")), "bool");
	cr_assert_str_eq(rpc_obj_type_name(rpc_map_get(map, "neg")), "int");
	cr_assert_str_eq(rpc_obj_type_name(map), "map");
	cr_assert_str_eq(rpc_obj_type_name(NULL), "nothing");
	rpc_msg_free(m);
}

Test(decode, repeated_key_first_one_wins)
{
	struct rpc_msg *m = DECODE("\x94\x00\x01\xa1m\x91\x82\xa1k\x01\xa1k\x02");
	const msgpack_object *map;
	uint64_t u = 0;

	cr_assert_eq(rpc_msg_params_map(m, &map, NULL, 0), 0);
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "k"), &u), 0);
	cr_assert_eq(u, 1);
	rpc_msg_free(m);
}

Test(decode, every_sample_that_is_a_message_decodes)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		struct rpc_msg *m = NULL;
		int r = rpc_decode((const char *)samples[i].bytes, samples[i].len, &m, NULL, 0);

		if (strcmp(samples[i].name, "scalar") == 0 ||
		    strcmp(samples[i].name, "nested") == 0) {
			cr_assert_eq(r, -EINVAL, "%s", samples[i].name);
			continue;
		}
		cr_assert_eq(r, 0, "%s", samples[i].name);
		rpc_msg_free(m);
	}
}

/* SPDX-License-Identifier: MIT */
/* rpc/json-conv: msgpack <-> JSON, and what it refuses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "rpc/json-conv.h"
#include "rpc/rpc.h"

static msgpack_sbuffer sb;
static msgpack_packer pk;
static msgpack_unpacked up;

static void setup(void)
{
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&up);
}

static void teardown(void)
{
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
}

static const msgpack_object *unpack(void)
{
	cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
	return &up.data;
}

TestSuite(json_conv, .init = setup, .fini = teardown);

Test(json_conv, round_trip_keeps_every_type)
{
	const char *text = "{\"name\": \"web1\", \"memory\": 512, \"neg\": -3, \"ratio\": 0.5, "
			   "\"on\": true, \"off\": false, \"none\": null, "
			   "\"disks\": [{\"path\": \"/a\", \"readonly\": true}, \"/b,ro\"]}";
	json_t *in = json_loads(text, 0, NULL), *out = NULL;
	char err[256];

	cr_assert_not_null(in);
	cr_assert_eq(rpc_pack_json(&pk, in), 0);
	cr_assert_eq(rpc_obj_to_json(unpack(), "config", &out, err, sizeof(err)), 0, "%s", err);
	cr_assert(json_equal(in, out));
	json_decref(in);
	json_decref(out);
}

static void expect_refused(const char *why)
{
	json_t *out = NULL;
	char err[256];

	cr_assert_eq(rpc_obj_to_json(unpack(), "config", &out, err, sizeof(err)), -EINVAL);
	cr_assert_null(out);
	cr_assert(strstr(err, why), "'%s' does not say '%s'", err, why);
}

Test(json_conv, int_keys_refused)
{
	msgpack_pack_map(&pk, 1);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 2);
	expect_refused("map keys must be strings, got int");
}

Test(json_conv, bin_refused_with_its_path)
{
	msgpack_pack_map(&pk, 1);
	rpc_pack_cstr(&pk, "disks");
	msgpack_pack_array(&pk, 2);
	rpc_pack_cstr(&pk, "/a");
	msgpack_pack_bin(&pk, 1);
	msgpack_pack_bin_body(&pk, "x", 1);
	expect_refused("config.disks[1]: bin values are not allowed");
}

Test(json_conv, too_deep_refused)
{
	/* Built by hand: msgpack-c's own unpacker stops at 32 levels too. */
	msgpack_object o[RPC_JSON_MAX_DEPTH + 2];
	json_t *out = NULL;
	char err[256];

	for (int i = 0; i <= RPC_JSON_MAX_DEPTH; i++) {
		o[i].type = MSGPACK_OBJECT_ARRAY;
		o[i].via.array.size = 1;
		o[i].via.array.ptr = &o[i + 1];
	}
	o[RPC_JSON_MAX_DEPTH + 1].type = MSGPACK_OBJECT_NIL;
	cr_assert_eq(rpc_obj_to_json(&o[0], "v", &out, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "nested deeper than 32"), "%s", err);
	/* And JSON that deep is not packed either. */
	out = json_null();
	for (int i = 0; i <= RPC_JSON_MAX_DEPTH; i++) {
		json_t *a = json_array();

		json_array_append_new(a, out);
		out = a;
	}
	cr_assert_eq(rpc_pack_json(&pk, out), -EINVAL);
	json_decref(out);
}

Test(json_conv, depth_limit_itself_accepted)
{
	json_t *out = NULL;

	for (int i = 0; i < RPC_JSON_MAX_DEPTH; i++)
		msgpack_pack_array(&pk, 1);
	msgpack_pack_nil(&pk);
	cr_assert_eq(rpc_obj_to_json(unpack(), NULL, &out, NULL, 0), 0);
	json_decref(out);
}

Test(json_conv, huge_uint_refused)
{
	msgpack_pack_uint64(&pk, UINT64_MAX);
	expect_refused("out of range");
}

Test(json_conv, bad_utf8_refused)
{
	rpc_pack_str(&pk, "\xff\xfe", 2);
	expect_refused("not valid UTF-8");
}

Test(json_conv, duplicate_key_refused)
{
	msgpack_pack_map(&pk, 2);
	rpc_pack_cstr(&pk, "name");
	rpc_pack_cstr(&pk, "a");
	rpc_pack_cstr(&pk, "name");
	rpc_pack_cstr(&pk, "b");
	expect_refused("config.name: key given twice");
}

Test(json_conv, nan_refused)
{
	msgpack_pack_double(&pk, __builtin_nan(""));
	expect_refused("NaN");
}

Test(json_conv, null_packs_nil)
{
	cr_assert_eq(rpc_pack_json(&pk, NULL), 0);
	cr_assert_eq(unpack()->type, MSGPACK_OBJECT_NIL);
}

/*
 * An empty string as msgpack-c can hand it over: a NULL pointer with size
 * 0 (a fixstr 0xa0 unpacked first).  It is "", not invalid UTF-8 (QMP's
 * empty results, e.g. human-monitor-command's, used to fail so), and an
 * empty map key is a key like any other.
 */
Test(json_conv, empty_strings)
{
	static const char msg[] = "\x94\x01\x05\xc0\xa0";          /* [1, 5, nil, ""] */
	static const char map[] = "\x94\x01\x05\xc0\x81\xa0\x01";  /* [1, 5, nil, {"": 1}] */
	msgpack_unpacked u;
	json_t *out = NULL;
	char err[256];

	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, msg, sizeof(msg) - 1, NULL), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(rpc_obj_to_json(&u.data.via.array.ptr[3], "result", &out, err, sizeof(err)),
		     0, "%s", err);
	cr_assert(json_is_string(out) && json_string_length(out) == 0);
	json_decref(out);
	cr_assert_eq(msgpack_unpack_next(&u, map, sizeof(map) - 1, NULL), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(rpc_obj_to_json(&u.data.via.array.ptr[3], "result", &out, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(json_integer_value(json_object_get(out, "")), 1);
	json_decref(out);
	msgpack_unpacked_destroy(&u);
}

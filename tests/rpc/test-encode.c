/* SPDX-License-Identifier: MIT */
/* The encoders: round trips through the scanner and the decoder. */
#include "helpers.h"

/* Scan sb as the daemon would, then decode exactly the frame found. */
static struct rpc_msg *round_trip(const msgpack_sbuffer *sb)
{
	size_t frame_len = 0;

	cr_assert_eq(rpc_frame_scan(sb->data, sb->size, &frame_len), 1);
	cr_assert_eq(frame_len, sb->size);
	return decode_ok(sb->data, frame_len);
}

Test(encode, request_round_trip)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	const msgpack_object *map;
	uint64_t vcpus = 0;
	bool autostart = true;
	char *name = NULL;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_request_begin(&pk, 42, "domain.define"), 0);
	cr_assert_eq(rpc_pack_params_map_begin(&pk, 3), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "name"), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "vm1"), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "vcpus"), 0);
	cr_assert_eq(msgpack_pack_uint32(&pk, 4), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "autostart"), 0);
	cr_assert_eq(msgpack_pack_false(&pk), 0);

	m = round_trip(&sb);
	cr_assert_eq(rpc_msg_type(m), RPC_REQUEST);
	cr_assert_eq(rpc_msg_id(m), 42);
	cr_assert_str_eq(rpc_msg_method(m), "domain.define");
	cr_assert_eq(rpc_msg_params(m)->via.array.size, 1);
	cr_assert_eq(rpc_msg_params_map(m, &map, NULL, 0), 0);
	cr_assert_eq(rpc_obj_strdup(rpc_map_get(map, "name"), &name), 0);
	cr_assert_str_eq(name, "vm1");
	cr_assert_eq(rpc_obj_u64(rpc_map_get(map, "vcpus"), &vcpus), 0);
	cr_assert_eq(vcpus, 4);
	cr_assert_eq(rpc_obj_bool(rpc_map_get(map, "autostart"), &autostart), 0);
	cr_assert_not(autostart);
	free(name);
	rpc_msg_free(m);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, request_with_largest_msgid_and_empty_params)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	const msgpack_object *map;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_request_begin(&pk, UINT32_MAX, "domain.list"), 0);
	cr_assert_eq(msgpack_pack_array(&pk, 0), 0);
	m = round_trip(&sb);
	cr_assert_eq(rpc_msg_id(m), UINT32_MAX);
	cr_assert_eq(rpc_msg_params_map(m, &map, NULL, 0), 0);
	cr_assert_eq(map->via.map.size, 0);
	rpc_msg_free(m);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, request_bytes_are_what_generic_clients_send)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, "ping"), 0);
	cr_assert_eq(msgpack_pack_array(&pk, 0), 0);
	cr_assert_eq(sb.size, samples[0].len);
	cr_assert_eq(memcmp(sb.data, samples[0].bytes, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, response_round_trip)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	const char *s;
	size_t len;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_response_begin(&pk, 7), 0);
	cr_assert_eq(msgpack_pack_map(&pk, 1), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "state"), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "running"), 0);
	m = round_trip(&sb);
	cr_assert_eq(rpc_msg_type(m), RPC_RESPONSE);
	cr_assert_eq(rpc_msg_id(m), 7);
	cr_assert_null(rpc_msg_error(m));
	cr_assert_eq(rpc_obj_str(rpc_map_get(rpc_msg_result(m), "state"), &s, &len), 0);
	cr_assert_eq(len, 7);
	cr_assert_eq(memcmp(s, "running", 7), 0);
	rpc_msg_free(m);

	/* a nil result */
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(rpc_pack_response_begin(&pk, 8), 0);
	cr_assert_eq(msgpack_pack_nil(&pk), 0);
	m = round_trip(&sb);
	cr_assert_null(rpc_msg_error(m));
	cr_assert_eq(rpc_msg_result(m)->type, MSGPACK_OBJECT_NIL);
	rpc_msg_free(m);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, error_response_round_trip)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	const msgpack_object *err;
	int64_t code = 0;
	const char *text;
	size_t len;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_error_response(&pk, 9, RPC_ERR_NO_SUCH_DOMAIN,
					     "domain vm9 is not defined"), 0);
	m = round_trip(&sb);
	cr_assert_eq(rpc_msg_type(m), RPC_RESPONSE);
	cr_assert_eq(rpc_msg_id(m), 9);
	err = rpc_msg_error(m);
	cr_assert_not_null(err);
	/* generic clients see error = [int, str] */
	cr_assert_eq(err->type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(err->via.array.size, 2);
	cr_assert_eq(rpc_error_parse(err, &code, &text, &len), 0);
	cr_assert_eq(code, RPC_ERR_NO_SUCH_DOMAIN);
	cr_assert_eq(len, strlen("domain vm9 is not defined"));
	cr_assert_eq(memcmp(text, "domain vm9 is not defined", len), 0);
	cr_assert_eq(rpc_msg_result(m)->type, MSGPACK_OBJECT_NIL);
	rpc_msg_free(m);

	/* no message: the code's name; and the exact bytes */
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(rpc_pack_error_response(&pk, 5, RPC_ERR_NO_SUCH_DOMAIN, NULL), 0);
	cr_assert_eq(sb.size, samples[3].len);
	cr_assert_eq(memcmp(sb.data, samples[3].bytes, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, notification_round_trip)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *m;
	const msgpack_object *map;
	const char *s;
	size_t len;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_notification_begin(&pk, "domain.event"), 0);
	cr_assert_eq(rpc_pack_params_map_begin(&pk, 1), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "event"), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "STOP"), 0);
	m = round_trip(&sb);
	cr_assert_eq(rpc_msg_type(m), RPC_NOTIFICATION);
	cr_assert_eq(rpc_msg_id(m), 0);
	cr_assert_str_eq(rpc_msg_method(m), "domain.event");
	cr_assert_eq(rpc_msg_params_map(m, &map, NULL, 0), 0);
	cr_assert_eq(rpc_obj_str(rpc_map_get(map, "event"), &s, &len), 0);
	cr_assert_eq(len, 4);
	cr_assert_eq(memcmp(s, "STOP", 4), 0);
	rpc_msg_free(m);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, method_the_decoder_would_refuse_is_refused_and_nothing_written)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char longest[RPC_MAX_METHOD + 2];

	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';    /* 129 bytes */
	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, ""), -EINVAL);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, NULL), -EINVAL);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, "a b"), -EINVAL);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, "x\n"), -EINVAL);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, longest), -EINVAL);
	cr_assert_eq(rpc_pack_notification_begin(&pk, ""), -EINVAL);
	cr_assert_eq(rpc_pack_notification_begin(&pk, longest), -EINVAL);
	cr_assert_eq(sb.size, 0);
	longest[RPC_MAX_METHOD] = '\0';         /* 128 bytes: fine */
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, longest), 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(encode, str_helpers)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	sb_pk_init(&sb, &pk);
	cr_assert_eq(rpc_pack_cstr(&pk, NULL), -EINVAL);
	cr_assert_eq(rpc_pack_str(&pk, NULL, 1), -EINVAL);
	cr_assert_eq(sb.size, 0);
	cr_assert_eq(rpc_pack_str(&pk, NULL, 0), 0);
	cr_assert_eq(rpc_pack_cstr(&pk, "hi"), 0);
	cr_assert_eq(rpc_pack_str(&pk, "a\0b", 3), 0);
	cr_assert_eq(sb.size, 1 + 3 + 4);
	cr_assert_eq(memcmp(sb.data, "\xa0\xa2hi\xa3" "a\0b", sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
}

/* A packer whose writes always fail, as an sbuffer out of memory would. */
static int failing_write(void *data, const char *buf, size_t len)
{
	return -1;
}

Test(encode, write_failure_is_enomem)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, NULL, failing_write);
	cr_assert_eq(rpc_pack_request_begin(&pk, 1, "m"), -ENOMEM);
	cr_assert_eq(rpc_pack_response_begin(&pk, 1), -ENOMEM);
	cr_assert_eq(rpc_pack_error_response(&pk, 1, RPC_ERR_INTERNAL, "x"), -ENOMEM);
	cr_assert_eq(rpc_pack_notification_begin(&pk, "m"), -ENOMEM);
	cr_assert_eq(rpc_pack_params_map_begin(&pk, 1), -ENOMEM);
	cr_assert_eq(rpc_pack_cstr(&pk, "x"), -ENOMEM);
}

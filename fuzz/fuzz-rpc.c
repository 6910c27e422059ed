/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the rpc codec: arbitrary bytes through the scanner
 * and the decoder.  Beyond "no crash, no sanitizer report" it checks:
 *
 *   - the resumable scanner, fed the input in pieces, finds what the one-shot
 *     scan finds;
 *   - msgpack-c unpacks every frame the scanner accepts, to the same length;
 *   - a decoded message, encoded again from its parts, decodes to the same
 *     type, msgid and method (re-encoding never grows a message);
 *   - the daemon's msgpack -> JSON conversion (rpc/json-conv.h) of every
 *     message's params, result and error either refuses with a reason or
 *     gives a JSON value that, packed back to msgpack and converted again,
 *     is equal to it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msgpack_c_agrees(const char *frame, size_t len)
{
	msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	msgpack_object obj;
	size_t off = 0;

	if (!z)
		return;
	BUG_ON(msgpack_unpack(frame, len, &off, z, &obj) != MSGPACK_UNPACK_SUCCESS);
	BUG_ON(off != len);
	msgpack_zone_free(z);
}

static void check_incremental(const char *buf, size_t size, int want, size_t want_len)
{
	struct rpc_scanner *s;
	size_t step = size > 0 ? 1 + (unsigned char)buf[0] % 7 : 1, k, frame_len = 0;
	int r = 0;

	if (rpc_scanner_new(&s) < 0)
		return;
	for (k = 0; r == 0; k += step) {
		if (k > size)
			k = size;
		r = rpc_scanner_scan(s, buf, k, &frame_len);
		if (k == size)
			break;
	}
	BUG_ON(r != want);
	BUG_ON(r == 1 && frame_len != want_len);
	rpc_scanner_free(s);
}

/* Read the tree through the accessors, as a method handler would. */
static void walk_params(const struct rpc_msg *m)
{
	const msgpack_object *map;
	char err[128];

	if (rpc_msg_params_map(m, &map, err, sizeof(err)) < 0)
		return;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		const msgpack_object *v;
		char key[64], *dup;
		const char *s;
		size_t len;
		uint64_t u;
		int64_t i64;
		bool b;

		if (k->type != MSGPACK_OBJECT_STR || k->via.str.size >= sizeof(key) ||
		    memchr(k->via.str.ptr, '\0', k->via.str.size))
			continue;
		memcpy(key, k->via.str.ptr, k->via.str.size);
		key[k->via.str.size] = '\0';
		v = rpc_map_get(map, key);
		BUG_ON(!v);
		(void)rpc_obj_str(v, &s, &len);
		(void)rpc_obj_u64(v, &u);
		(void)rpc_obj_i64(v, &i64);
		(void)rpc_obj_bool(v, &b);
		(void)rpc_obj_type_name(v);
		if (rpc_obj_strdup(v, &dup) == 0)
			free(dup);
	}
}

static void check_reencode(const struct rpc_msg *m, size_t frame_len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct rpc_msg *again = NULL;
	const msgpack_object *err;
	int r = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	switch (rpc_msg_type(m)) {
	case RPC_REQUEST:
		r = rpc_pack_request_begin(&pk, rpc_msg_id(m), rpc_msg_method(m));
		if (r == 0)
			r = msgpack_pack_object(&pk, *rpc_msg_params(m));
		break;
	case RPC_NOTIFICATION:
		r = rpc_pack_notification_begin(&pk, rpc_msg_method(m));
		if (r == 0)
			r = msgpack_pack_object(&pk, *rpc_msg_params(m));
		break;
	case RPC_RESPONSE:
		err = rpc_msg_error(m);
		if (!err) {
			r = rpc_pack_response_begin(&pk, rpc_msg_id(m));
		} else {
			msgpack_pack_array(&pk, 4);
			msgpack_pack_uint32(&pk, RPC_RESPONSE);
			msgpack_pack_uint32(&pk, rpc_msg_id(m));
			r = msgpack_pack_object(&pk, *err);
		}
		if (r == 0)
			r = msgpack_pack_object(&pk, *rpc_msg_result(m));
		break;
	}
	if (r < 0)
		goto out;       /* out of memory: nothing to check */
	BUG_ON(sb.size > frame_len);
	r = rpc_decode(sb.data, sb.size, &again, NULL, 0);
	if (r == -ENOMEM)
		goto out;
	BUG_ON(r != 0);
	BUG_ON(rpc_msg_type(again) != rpc_msg_type(m));
	BUG_ON(rpc_msg_id(again) != rpc_msg_id(m));
	BUG_ON(rpc_msg_type(m) != RPC_RESPONSE &&
	       strcmp(rpc_msg_method(again), rpc_msg_method(m)) != 0);
	rpc_msg_free(again);
out:
	msgpack_sbuffer_destroy(&sb);
}



/* msgpack -> JSON -> msgpack -> JSON gives the same JSON twice. */
static void check_json_conv(const msgpack_object *obj)
{
	msgpack_zone *z = NULL;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_object again;
	json_t *j = NULL, *j2 = NULL;
	char err[256];
	size_t off = 0;
	int r;

	if (!obj)
		return;
	msgpack_sbuffer_init(&sb);
	r = rpc_obj_to_json(obj, "params", &j, err, sizeof(err));
	if (r < 0) {
		BUG_ON(r != -EINVAL && r != -ENOMEM);
		BUG_ON(!*err);
		goto out;
	}
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	r = rpc_pack_json(&pk, j);
	if (r == -ENOMEM)
		goto out;
	/* A value that came from a frame nests within RPC_JSON_MAX_DEPTH. */
	BUG_ON(r != 0);
	z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	if (!z)
		goto out;
	BUG_ON(msgpack_unpack(sb.data, sb.size, &off, z, &again) != MSGPACK_UNPACK_SUCCESS);
	BUG_ON(off != sb.size);
	r = rpc_obj_to_json(&again, "params", &j2, err, sizeof(err));
	if (r == -ENOMEM)
		goto out;
	if (r != 0)
		fprintf(stderr, "JSON packed back is refused: %s\n", err);
	BUG_ON(r != 0);
	BUG_ON(!json_equal(j, j2));
out:
	json_decref(j);
	json_decref(j2);
	if (z)
		msgpack_zone_free(z);
	msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* jansson seeds its hash from /dev/urandom: fix it, runs must repeat. */
	json_object_seed(0x636f7272616cu);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0, frame_len = 0;
	struct rpc_msg *m = NULL;
	char err[256];
	int r;

	r = rpc_frame_scan(buf, size, &frame_len);
	BUG_ON(r > 1);
	BUG_ON(r == 1 && (frame_len == 0 || frame_len > size));
	BUG_ON(r < 0 && strcmp(rpc_strerror_scan(r), "unknown error") == 0);
	check_incremental(buf, size, r, frame_len);

	/* The whole input as one message: also the trailing-bytes path. */
	if (rpc_decode(buf, size, &m, err, sizeof(err)) == 0)
		rpc_msg_free(m);

	/* Frame after frame, as the daemon reads a stream. */
	while (off < size && rpc_frame_scan(buf + off, size - off, &frame_len) == 1) {
		check_msgpack_c_agrees(buf + off, frame_len);
		m = NULL;
		if (rpc_decode(buf + off, frame_len, &m, err, sizeof(err)) == 0) {
			walk_params(m);
			check_reencode(m, frame_len);
			if (rpc_msg_type(m) == RPC_RESPONSE) {
				check_json_conv(rpc_msg_error(m));
				check_json_conv(rpc_msg_result(m));
			} else {
				check_json_conv(rpc_msg_params(m));
			}
			rpc_msg_free(m);
		}
		off += frame_len;
	}
	return 0;
}

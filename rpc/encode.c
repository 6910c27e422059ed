/* SPDX-License-Identifier: MIT */
/* Encoding msgpack-RPC messages with a msgpack_packer. */
#include "rpc/rpc.h"

#include <errno.h>
#include <string.h>

#include "rpc/rpc-internal.h"

/* msgpack_pack_*() return the write callback's result: 0 or -1. */
#define TRY(expr)                       \
	do {                            \
		if ((expr) < 0)         \
			return -ENOMEM; \
	} while (0)

int rpc_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	if (!s && len > 0)
		return -EINVAL;
	if (len > UINT32_MAX)
		return -EINVAL;
	TRY(msgpack_pack_str(pk, len));
	TRY(msgpack_pack_str_body(pk, s, len));
	return 0;
}

int rpc_pack_cstr(msgpack_packer *pk, const char *s)
{
	if (!s)
		return -EINVAL;
	return rpc_pack_str(pk, s, strlen(s));
}

int rpc_pack_request_begin(msgpack_packer *pk, uint32_t msgid, const char *method)
{
	/* Checked before anything is written, so a refusal leaves no bytes. */
	if (!method || rpc__method_problem(method, strlen(method)))
		return -EINVAL;
	TRY(msgpack_pack_array(pk, 4));
	TRY(msgpack_pack_uint32(pk, RPC_REQUEST));
	TRY(msgpack_pack_uint32(pk, msgid));
	return rpc_pack_cstr(pk, method);
}

int rpc_pack_response_begin(msgpack_packer *pk, uint32_t msgid)
{
	TRY(msgpack_pack_array(pk, 4));
	TRY(msgpack_pack_uint32(pk, RPC_RESPONSE));
	TRY(msgpack_pack_uint32(pk, msgid));
	TRY(msgpack_pack_nil(pk));
	return 0;
}

int rpc_pack_error_response(msgpack_packer *pk, uint32_t msgid, int code, const char *message)
{
	int r;

	TRY(msgpack_pack_array(pk, 4));
	TRY(msgpack_pack_uint32(pk, RPC_RESPONSE));
	TRY(msgpack_pack_uint32(pk, msgid));
	TRY(msgpack_pack_array(pk, 2));
	TRY(msgpack_pack_int(pk, code));
	r = rpc_pack_cstr(pk, message ? message : rpc_err_name(code));
	if (r < 0)
		return r;
	TRY(msgpack_pack_nil(pk));
	return 0;
}

int rpc_pack_notification_begin(msgpack_packer *pk, const char *method)
{
	if (!method || rpc__method_problem(method, strlen(method)))
		return -EINVAL;
	TRY(msgpack_pack_array(pk, 3));
	TRY(msgpack_pack_uint32(pk, RPC_NOTIFICATION));
	return rpc_pack_cstr(pk, method);
}

int rpc_pack_params_map_begin(msgpack_packer *pk, uint32_t n)
{
	TRY(msgpack_pack_array(pk, 1));
	TRY(msgpack_pack_map(pk, n));
	return 0;
}

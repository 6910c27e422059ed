/* SPDX-License-Identifier: MIT */
/* The error code table and the errno mapping. */
#include "helpers.h"

/* The wire contract: these numbers and names never change. */
static const struct {
	int code;
	const char *name;
} table[] = {
	{ 1, "invalid-request" },
	{ 2, "method-not-found" },
	{ 3, "invalid-argument" },
	{ 4, "no-such-domain" },
	{ 5, "exists" },
	{ 6, "busy" },
	{ 7, "timeout" },
	{ 8, "bad-state" },
	{ 9, "permission" },
	{ 10, "qemu-error" },
	{ 11, "monitor-broken" },
	{ 12, "internal" },
	{ 13, "unavailable" },
	{ 14, "cancelled" },
	{ 15, "storage" },
};

Test(errors, codes_and_names_are_stable)
{
	cr_assert_eq(RPC_ERR_MIN, 1);
	cr_assert_eq(RPC_ERR_MAX, 15);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		cr_assert_str_eq(rpc_err_name(table[i].code), table[i].name);
		cr_assert_eq(rpc_err_from_name(table[i].name), table[i].code);
	}
	cr_assert_eq(RPC_ERR_NO_SUCH_DOMAIN, 4);
	cr_assert_eq(RPC_ERR_UNAVAILABLE, 13);
	cr_assert_eq(RPC_ERR_CANCELLED, 14);
	cr_assert_eq(RPC_ERR_STORAGE, 15);
}

Test(errors, unknown_codes_and_names)
{
	cr_assert_str_eq(rpc_err_name(0), "unknown");
	cr_assert_str_eq(rpc_err_name(16), "unknown");
	cr_assert_str_eq(rpc_err_name(-1), "unknown");
	cr_assert_eq(rpc_err_from_name("unknown"), -EINVAL);
	cr_assert_eq(rpc_err_from_name(""), -EINVAL);
}

Test(errors, errno_mapping)
{
	/* decoding: the client's fault, except our own memory */
	cr_assert_eq(rpc_err_from_errno(-EINVAL, RPC_CTX_DECODE), RPC_ERR_INVALID_REQUEST);
	cr_assert_eq(rpc_err_from_errno(-EMSGSIZE, RPC_CTX_DECODE), RPC_ERR_INVALID_REQUEST);
	cr_assert_eq(rpc_err_from_errno(-ELOOP, RPC_CTX_DECODE), RPC_ERR_INVALID_REQUEST);
	cr_assert_eq(rpc_err_from_errno(-ENOMEM, RPC_CTX_DECODE), RPC_ERR_INTERNAL);

	cr_assert_eq(rpc_err_from_errno(-EINVAL, RPC_CTX_ARGS), RPC_ERR_INVALID_ARGUMENT);
	cr_assert_eq(rpc_err_from_errno(-ENOENT, RPC_CTX_ARGS), RPC_ERR_INVALID_ARGUMENT);
	cr_assert_eq(rpc_err_from_errno(-ERANGE, RPC_CTX_ARGS), RPC_ERR_INVALID_ARGUMENT);

	cr_assert_eq(rpc_err_from_errno(-ENOENT, RPC_CTX_DOMAIN), RPC_ERR_NO_SUCH_DOMAIN);
	cr_assert_eq(rpc_err_from_errno(-EEXIST, RPC_CTX_DOMAIN), RPC_ERR_EXISTS);
	cr_assert_eq(rpc_err_from_errno(-ESRCH, RPC_CTX_DOMAIN), RPC_ERR_BAD_STATE);
	cr_assert_eq(rpc_err_from_errno(-EBUSY, RPC_CTX_DOMAIN), RPC_ERR_BUSY);
	cr_assert_eq(rpc_err_from_errno(-ESHUTDOWN, RPC_CTX_DOMAIN), RPC_ERR_UNAVAILABLE);

	cr_assert_eq(rpc_err_from_errno(-EREMOTEIO, RPC_CTX_MONITOR), RPC_ERR_QEMU);
	cr_assert_eq(rpc_err_from_errno(-EPIPE, RPC_CTX_MONITOR), RPC_ERR_MONITOR_BROKEN);
	cr_assert_eq(rpc_err_from_errno(-ECONNRESET, RPC_CTX_MONITOR), RPC_ERR_MONITOR_BROKEN);
	cr_assert_eq(rpc_err_from_errno(-ETIMEDOUT, RPC_CTX_MONITOR), RPC_ERR_TIMEOUT);

	cr_assert_eq(rpc_err_from_errno(-EAGAIN, RPC_CTX_GENERIC), RPC_ERR_BUSY);
	cr_assert_eq(rpc_err_from_errno(-EROFS, RPC_CTX_GENERIC), RPC_ERR_PERMISSION);
	cr_assert_eq(rpc_err_from_errno(-EACCES, RPC_CTX_GENERIC), RPC_ERR_PERMISSION);
	cr_assert_eq(rpc_err_from_errno(-ENOENT, RPC_CTX_GENERIC), RPC_ERR_INTERNAL);
	cr_assert_eq(rpc_err_from_errno(-EPIPE, RPC_CTX_GENERIC), RPC_ERR_INTERNAL);
	/* the sign does not matter */
	cr_assert_eq(rpc_err_from_errno(EEXIST, RPC_CTX_GENERIC), RPC_ERR_EXISTS);
}

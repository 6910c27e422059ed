/* SPDX-License-Identifier: MIT */
/* The error codes of corral's RPC protocol, by number and by name. */
#include "rpc/rpc.h"

#include <errno.h>
#include <string.h>

static const char *const names[] = {
	[RPC_ERR_INVALID_REQUEST] = "invalid-request",
	[RPC_ERR_METHOD_NOT_FOUND] = "method-not-found",
	[RPC_ERR_INVALID_ARGUMENT] = "invalid-argument",
	[RPC_ERR_NO_SUCH_DOMAIN] = "no-such-domain",
	[RPC_ERR_EXISTS] = "exists",
	[RPC_ERR_BUSY] = "busy",
	[RPC_ERR_TIMEOUT] = "timeout",
	[RPC_ERR_BAD_STATE] = "bad-state",
	[RPC_ERR_PERMISSION] = "permission",
	[RPC_ERR_QEMU] = "qemu-error",
	[RPC_ERR_MONITOR_BROKEN] = "monitor-broken",
	[RPC_ERR_INTERNAL] = "internal",
	[RPC_ERR_UNAVAILABLE] = "unavailable",
	[RPC_ERR_CANCELLED] = "cancelled",
	[RPC_ERR_STORAGE] = "storage",
};

_Static_assert(sizeof(names) / sizeof(names[0]) == RPC_ERR_MAX + 1,
	       "every error code has a name");

const char *rpc_err_name(int code)
{
	if (code < RPC_ERR_MIN || code > RPC_ERR_MAX)
		return "unknown";
	return names[code];
}

int rpc_err_from_name(const char *name)
{
	for (int code = RPC_ERR_MIN; code <= RPC_ERR_MAX; code++)
		if (strcmp(names[code], name) == 0)
			return code;
	return -EINVAL;
}

int rpc_err_from_errno(int err, enum rpc_err_ctx ctx)
{
	int e = err < 0 ? -err : err;

	if (e == ENOMEM)
		return RPC_ERR_INTERNAL;
	if (ctx == RPC_CTX_DECODE)
		return RPC_ERR_INVALID_REQUEST;

	switch (e) {
	case EEXIST:
		return RPC_ERR_EXISTS;
	case EBUSY:
	case EAGAIN:
		return RPC_ERR_BUSY;
	case ETIMEDOUT:
	case ETIME:
		return RPC_ERR_TIMEOUT;
	case EPERM:
	case EACCES:
	case EROFS:
		return RPC_ERR_PERMISSION;
	case ESHUTDOWN:
		return RPC_ERR_UNAVAILABLE;
	}

	switch (ctx) {
	case RPC_CTX_ARGS:
		switch (e) {
		case EINVAL:
		case ENOENT:
		case ERANGE:
		case E2BIG:
		case EOVERFLOW:
			return RPC_ERR_INVALID_ARGUMENT;
		}
		break;
	case RPC_CTX_DOMAIN:
		switch (e) {
		case ENOENT:
			return RPC_ERR_NO_SUCH_DOMAIN;
		case ESRCH:
		case EALREADY:
		case ENOTCONN:
			return RPC_ERR_BAD_STATE;
		case EINVAL:
			return RPC_ERR_INVALID_ARGUMENT;
		}
		break;
	case RPC_CTX_MONITOR:
		switch (e) {
		case EREMOTEIO:
			return RPC_ERR_QEMU;
		case EPIPE:
		case ECONNRESET:
		case ENOTCONN:
		case EIO:
		case EPROTO:
		case EBADMSG:
			return RPC_ERR_MONITOR_BROKEN;
		}
		break;
	case RPC_CTX_GENERIC:
	case RPC_CTX_DECODE:
		break;
	}
	return RPC_ERR_INTERNAL;
}

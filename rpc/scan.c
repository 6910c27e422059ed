/* SPDX-License-Identifier: MIT */
/*
 * The pre-scanner: walks msgpack bytes without allocating and without
 * recursion, to find where the first object ends and to refuse what is over
 * the limits before msgpack-c would allocate for it.
 *
 * The walk keeps an explicit stack of "elements still owed" per open
 * container.  Besides the depth, it keeps two lower bounds: every owed
 * element costs at least one byte and one object.  So a header is refused
 * as soon as what it claims, plus what is already owed, cannot fit under
 * RPC_MAX_FRAME or RPC_MAX_OBJECTS, whether or not those bytes have arrived.
 */
#include "rpc/rpc.h"
#include "rpc/msgpack-header.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct rpc_scanner {
	size_t pos;                     /* bytes accepted: always an object boundary */
	uint64_t owed;                  /* sum of remain[]: elements still to come */
	uint32_t objects;               /* objects accepted */
	uint32_t depth;                 /* open containers */
	int err;                        /* sticky error; 0 if none */
	uint32_t remain[RPC_MAX_DEPTH]; /* elements still to come, per open container */
};

static void scanner_reset(struct rpc_scanner *s)
{
	memset(s, 0, sizeof(*s));
}

static int scanner_fail(struct rpc_scanner *s, int err)
{
	s->err = err;
	return err;
}

/*
 * State is only committed once a whole object header (and, for a scalar, its
 * payload) is in the buffer, so a call that runs out of bytes leaves s at
 * the last object boundary and the next call reads at most one header again.
 */
int rpc_scanner_scan(struct rpc_scanner *s, const char *buf, size_t len,
		     size_t *ret_frame_len)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t limit = len < RPC_MAX_FRAME ? len : RPC_MAX_FRAME;

	if (s->err)
		return s->err;
	BUG_ON(len < s->pos);   /* the caller dropped bytes it had passed before */

	for (;;) {
		struct rpc_hdr h;
		uint64_t others, end;
		int r;

		if (s->pos >= limit)
			goto starved;
		r = rpc_read_header(p + s->pos, limit - s->pos, &h);
		if (r < 0)
			return scanner_fail(s, r);
		if (r == 0)
			goto starved;

		/*
		 * This object is one of the elements owed to the innermost
		 * container; the others still owe a byte and an object each.
		 * No overflow: pos and owed stay under 2^23, payload and items
		 * under 2^33.
		 */
		others = s->owed - (s->depth > 0);
		end = s->pos + h.len + h.payload;
		if (h.container) {
			if (s->depth >= RPC_MAX_DEPTH)
				return scanner_fail(s, -ELOOP);
			if (end + h.items + others > RPC_MAX_FRAME)
				return scanner_fail(s, -E2BIG);
		} else if (end + others > RPC_MAX_FRAME) {
			return scanner_fail(s, -EMSGSIZE);
		}
		if (s->objects + 1 + h.items + others > RPC_MAX_OBJECTS)
			return scanner_fail(s, -EOVERFLOW);
		if (end > limit)
			goto starved;

		s->pos = end;
		s->objects++;
		if (s->depth > 0) {
			s->remain[s->depth - 1]--;
			s->owed--;
		}
		if (h.items > 0) {
			/* Fits: items <= RPC_MAX_OBJECTS, checked above. */
			s->remain[s->depth++] = (uint32_t)h.items;
			s->owed += h.items;
			continue;
		}
		/* A complete object: close every container it completes. */
		while (s->depth > 0 && s->remain[s->depth - 1] == 0)
			s->depth--;
		if (s->depth == 0) {
			*ret_frame_len = s->pos;
			scanner_reset(s);
			return 1;
		}
	}

starved:
	/* Out of bytes: fine below the limit, fatal at it. */
	if (len >= RPC_MAX_FRAME)
		return scanner_fail(s, -EMSGSIZE);
	return 0;
}

int rpc_frame_scan(const char *buf, size_t len, size_t *ret_frame_len)
{
	struct rpc_scanner s;

	scanner_reset(&s);
	return rpc_scanner_scan(&s, buf, len, ret_frame_len);
}

int rpc_scanner_new(struct rpc_scanner **ret)
{
	struct rpc_scanner *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

void rpc_scanner_free(struct rpc_scanner *s)
{
	free(s);
}

void rpc_scanner_reset(struct rpc_scanner *s)
{
	scanner_reset(s);
}

const char *rpc_strerror_scan(int err)
{
	switch (err) {
	case -EMSGSIZE:
		return "message larger than the 4 MiB frame limit";
	case -E2BIG:
		return "container claims more elements than fit in the 4 MiB frame limit";
	case -EOVERFLOW:
		return "message has more than 262144 objects";
	case -ELOOP:
		return "containers nested deeper than 32 levels";
	case -EBADMSG:
		return "reserved msgpack type byte 0xc1";
	case -EPROTO:
		return "ext type not accepted (only timestamp: type -1, 4, 8 or 12 bytes)";
	default:
		return "unknown error";
	}
}

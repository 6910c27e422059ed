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

/* One object header, as far as the scanner cares. */
struct hdr {
	uint32_t len;           /* header bytes: type byte, length, ext type */
	uint64_t payload;       /* bytes after the header */
	uint64_t items;         /* container: child objects (a map has 2 per entry) */
	bool container;
};

static uint64_t be_read(const unsigned char *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Timestamps are the only ext corral accepts. */
static bool ext_ok(int8_t type, uint64_t len)
{
	return type == -1 && (len == 4 || len == 8 || len == 12);
}

/*
 * Parse the header at p[0, avail), avail >= 1.  1 and *h when it is complete,
 * 0 if more bytes are needed to read it, -EBADMSG or -EPROTO.
 */
static int read_header(const unsigned char *p, size_t avail, struct hdr *h)
{
	unsigned char b = p[0];
	unsigned int lenbytes = 0;      /* big-endian length after the type byte */
	unsigned int fixed = 0;         /* payload size fixed by the type byte */
	bool ext = false;
	enum { SCALAR, STRLIKE, ARRAY, MAP } kind = SCALAR;

	*h = (struct hdr){ .len = 1 };

	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return 1;       /* fixint, nil, bool */
	if (b <= 0x8f) {
		h->container = true;
		h->items = 2u * (b & 0x0f);
		return 1;
	}
	if (b <= 0x9f) {
		h->container = true;
		h->items = b & 0x0f;
		return 1;
	}
	if (b <= 0xbf) {
		h->payload = b & 0x1f;
		return 1;
	}

	switch (b) {
	case 0xc1:
		return -EBADMSG;
	case 0xc4: case 0xd9: kind = STRLIKE; lenbytes = 1; break;  /* bin8, str8 */
	case 0xc5: case 0xda: kind = STRLIKE; lenbytes = 2; break;  /* bin16, str16 */
	case 0xc6: case 0xdb: kind = STRLIKE; lenbytes = 4; break;  /* bin32, str32 */
	case 0xc7: ext = true; lenbytes = 1; break;                 /* ext8 */
	case 0xc8: ext = true; lenbytes = 2; break;                 /* ext16 */
	case 0xc9: ext = true; lenbytes = 4; break;                 /* ext32 */
	case 0xca: fixed = 4; break;                                /* float32 */
	case 0xcb: fixed = 8; break;                                /* float64 */
	case 0xcc: case 0xd0: fixed = 1; break;                     /* (u)int8 */
	case 0xcd: case 0xd1: fixed = 2; break;                     /* (u)int16 */
	case 0xce: case 0xd2: fixed = 4; break;                     /* (u)int32 */
	case 0xcf: case 0xd3: fixed = 8; break;                     /* (u)int64 */
	case 0xd4: ext = true; fixed = 1; break;                    /* fixext1 */
	case 0xd5: ext = true; fixed = 2; break;                    /* fixext2 */
	case 0xd6: ext = true; fixed = 4; break;                    /* fixext4 */
	case 0xd7: ext = true; fixed = 8; break;                    /* fixext8 */
	case 0xd8: ext = true; fixed = 16; break;                   /* fixext16 */
	case 0xdc: kind = ARRAY; lenbytes = 2; break;               /* array16 */
	case 0xdd: kind = ARRAY; lenbytes = 4; break;               /* array32 */
	case 0xde: kind = MAP; lenbytes = 2; break;                 /* map16 */
	case 0xdf: kind = MAP; lenbytes = 4; break;                 /* map32 */
	default:
		BUG_ON(1);      /* every byte value is handled above */
	}

	h->len = 1 + lenbytes + (ext ? 1 : 0);
	if (avail < h->len)
		return 0;

	if (lenbytes == 0) {
		h->payload = fixed;
	} else {
		uint64_t n = be_read(p + 1, lenbytes);

		if (kind == ARRAY || kind == MAP) {
			h->container = true;
			h->items = kind == MAP ? 2 * n : n;
		} else {
			h->payload = n;
		}
	}
	if (ext && !ext_ok((int8_t)p[1 + lenbytes], h->payload))
		return -EPROTO;
	return 1;
}

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
		struct hdr h;
		uint64_t others, end;
		int r;

		if (s->pos >= limit)
			goto starved;
		r = read_header(p + s->pos, limit - s->pos, &h);
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

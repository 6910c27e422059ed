/* SPDX-License-Identifier: MIT */
/*
 * One msgpack object header, parsed without allocating: the frame scanner
 * (rpc/scan.c) walks frames with it, and corral-bench skips members of a
 * frame the scanner has accepted with it.  Inline: called once per object.
 */
#ifndef CORRAL_RPC_MSGPACK_HEADER_H
#define CORRAL_RPC_MSGPACK_HEADER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* One object header, as far as the scanner (and a skip) cares. */
struct rpc_hdr {
	uint32_t len;           /* header bytes: type byte, length, ext type */
	uint64_t payload;       /* bytes after the header */
	uint64_t items;         /* container: child objects (a map has 2 per entry) */
	bool container;
};

static inline uint64_t rpc_be_read(const unsigned char *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Timestamps are the only ext corral accepts. */
static inline bool rpc_ext_ok(int8_t type, uint64_t len)
{
	return type == -1 && (len == 4 || len == 8 || len == 12);
}

/*
 * Parse the header at p[0, avail), avail >= 1.  1 and *h when it is complete,
 * 0 if more bytes are needed to read it, -EBADMSG or -EPROTO.
 */
static inline int rpc_read_header(const unsigned char *p, size_t avail, struct rpc_hdr *h)
{
	unsigned char b = p[0];
	unsigned int lenbytes = 0;      /* big-endian length after the type byte */
	unsigned int fixed = 0;         /* payload size fixed by the type byte */
	bool ext = false;
	enum { SCALAR, STRLIKE, ARRAY, MAP } kind = SCALAR;

	*h = (struct rpc_hdr){ .len = 1 };

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
		uint64_t n = rpc_be_read(p + 1, lenbytes);

		if (kind == ARRAY || kind == MAP) {
			h->container = true;
			h->items = kind == MAP ? 2 * n : n;
		} else {
			h->payload = n;
		}
	}
	if (ext && !rpc_ext_ok((int8_t)p[1 + lenbytes], h->payload))
		return -EPROTO;
	return 1;
}

#endif

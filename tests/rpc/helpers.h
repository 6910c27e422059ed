/* SPDX-License-Identifier: MIT */
/* Shared by the rpc test binaries: sample messages and small wrappers. */
#ifndef CORRAL_TESTS_RPC_HELPERS_H
#define CORRAL_TESTS_RPC_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

struct sample {
	const char *name;
	const unsigned char *bytes;
	size_t len;
};

#define SAMPLE(n, ...)                                                          \
	{ .name = n, .bytes = (const unsigned char[]){ __VA_ARGS__ },           \
	  .len = sizeof((const unsigned char[]){ __VA_ARGS__ }) }

/*
 * Valid messages in every msgpack format, most in non-minimal encodings
 * (legal msgpack) so that each length width is exercised with few bytes.
 */
static const struct sample samples[] = {
	/* [0, 1, "ping", []] */
	SAMPLE("request", 0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x90),
	/* [0, 256, "domain.start", [{"name": "vm1"}]] */
	SAMPLE("request-map", 0x94, 0x00, 0xcd, 0x01, 0x00, 0xac, 'd', 'o', 'm', 'a', 'i',
	       'n', '.', 's', 't', 'a', 'r', 't', 0x91, 0x81, 0xa4, 'n', 'a', 'm', 'e',
	       0xa3, 'v', 'm', '1'),
	/* [1, 65536, nil, {"ok": true, "mem": 1 << 36}] */
	SAMPLE("response", 0x94, 0x01, 0xce, 0x00, 0x01, 0x00, 0x00, 0xc0, 0x82, 0xa2, 'o',
	       'k', 0xc3, 0xa3, 'm', 'e', 'm', 0xcf, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
	       0x00, 0x00),
	/* [1, 5, [4, "no-such-domain"], nil] */
	SAMPLE("error", 0x94, 0x01, 0x05, 0x92, 0x04, 0xae, 'n', 'o', '-', 's', 'u', 'c',
	       'h', '-', 'd', 'o', 'm', 'a', 'i', 'n', 0xc0),
	/* [2, "event", [{}]] */
	SAMPLE("notification", 0x93, 0x02, 0xa5, 'e', 'v', 'e', 'n', 't', 0x91, 0x80),
	/* [0, 7, "m", [ every format ]] in wide encodings */
	SAMPLE("all-formats", 0xdd, 0x00, 0x00, 0x00, 0x04, 0x00, 0xd0, 0x07,
	       0xdb, 0x00, 0x00, 0x00, 0x01, 'm',
	       0xdc, 0x00, 0x21,                                /* array16 of 33 */
	       0xc0, 0xc2, 0xc3, 0x7f, 0xe0,                    /* 5 */
	       0xcc, 0xff, 0xcd, 0xff, 0xff,                    /* 7 */
	       0xce, 0xff, 0xff, 0xff, 0xff,                    /* 8 */
	       0xcf, 1, 2, 3, 4, 5, 6, 7, 8,                    /* 9 */
	       0xd0, 0x80, 0xd1, 0x80, 0x00,                    /* 11 */
	       0xd2, 0x80, 0, 0, 0,                             /* 12 */
	       0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,                 /* 13 */
	       0xca, 0x3f, 0x80, 0, 0,                          /* 14 */
	       0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,              /* 15 */
	       0xa3, 'a', 'b', 'c', 0xd9, 0x02, 'h', 'i',       /* 17 */
	       0xda, 0x00, 0x01, 'x',                           /* 18 */
	       0xc4, 0x01, 0x00, 0xc5, 0x00, 0x00,              /* 20 */
	       0xc6, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb,        /* 21 */
	       0xd6, 0xff, 0, 0, 0, 1,                          /* 22: timestamp32 */
	       0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 1,              /* 23: timestamp64 */
	       0xc7, 0x0c, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 24: timestamp96 */
	       0xc8, 0x00, 0x04, 0xff, 0, 0, 0, 2,              /* 25: ext16 ts */
	       0xc9, 0x00, 0x00, 0x00, 0x08, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, /* 26 */
	       0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0,              /* 27 */
	       0xde, 0x00, 0x01, 0xa1, 'k', 0xc0,               /* 28 */
	       0xdf, 0x00, 0x00, 0x00, 0x01, 0x90, 0x80,        /* 29 */
	       0x80, 0x90, 0xa0,                                /* 32 */
	       0x9f, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14), /* 33 */
	/* a lone scalar is a complete msgpack object too */
	SAMPLE("scalar", 0x2a),
	/* [[[[]]]] */
	SAMPLE("nested", 0x91, 0x91, 0x91, 0x90),
};

#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

/* A packer writing into a fresh sbuffer. */
static inline void sb_pk_init(msgpack_sbuffer *sb, msgpack_packer *pk)
{
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

/* A deterministic generator: xorshift64*. */
static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* n nested one-element arrays around a nil: n + 1 bytes, depth n. */
static inline unsigned char *nested_arrays(unsigned int n, size_t *ret_len)
{
	unsigned char *b = malloc(n + 1);

	cr_assert_not_null(b);
	memset(b, 0x91, n);
	b[n] = 0xc0;
	*ret_len = n + 1;
	return b;
}

/* Decode bytes that must be a valid message. */
static inline struct rpc_msg *decode_ok(const void *buf, size_t len)
{
	struct rpc_msg *m = NULL;
	char err[256] = "";
	int r = rpc_decode(buf, len, &m, err, sizeof(err));

	cr_assert_eq(r, 0, "rpc_decode: %d (%s)", r, err);
	cr_assert_not_null(m);
	return m;
}

/* Decode bytes that must be refused with -EINVAL and exactly this reason. */
static inline void decode_invalid(const void *buf, size_t len, const char *want)
{
	struct rpc_msg *m = NULL;
	char err[256] = "";
	int r = rpc_decode(buf, len, &m, err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "rpc_decode: %d (%s), want -EINVAL (%s)", r, err, want);
	cr_assert_null(m);
	cr_assert_str_eq(err, want);
}

#endif /* CORRAL_TESTS_RPC_HELPERS_H */

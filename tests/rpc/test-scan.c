/* SPDX-License-Identifier: MIT */
/* rpc_frame_scan() and struct rpc_scanner: framing and limits. */
#include "helpers.h"

static int scan(const void *buf, size_t len, size_t *ret_frame_len)
{
	return rpc_frame_scan(buf, len, ret_frame_len);
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* A header with a 32-bit count or length: 0xdd, 0xdf, 0xdb, 0xc6. */
static int scan_claim(unsigned char type, uint32_t n, size_t buffered)
{
	unsigned char b[16] = { type };
	size_t frame_len = 0;

	put_be32(b + 1, n);
	cr_assert_leq(buffered, sizeof(b));
	return scan(b, buffered, &frame_len);
}

/* Whenever the scanner finds a frame, msgpack-c must agree on its length. */
static void agree_with_msgpack_c(const void *buf, size_t frame_len)
{
	msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	msgpack_object obj;
	size_t off = 0;
	msgpack_unpack_return ur;

	cr_assert_not_null(z);
	ur = msgpack_unpack(buf, frame_len, &off, z, &obj);
	cr_assert_eq(ur, MSGPACK_UNPACK_SUCCESS, "msgpack_unpack: %d", (int)ur);
	cr_assert_eq(off, frame_len);
	msgpack_zone_free(z);
}

Test(scan, every_sample_is_one_complete_frame)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		size_t frame_len = 0;

		cr_assert_eq(scan(samples[i].bytes, samples[i].len, &frame_len), 1,
			     "%s", samples[i].name);
		cr_assert_eq(frame_len, samples[i].len, "%s", samples[i].name);
		agree_with_msgpack_c(samples[i].bytes, frame_len);
	}
}

Test(scan, every_prefix_of_a_valid_message_needs_more)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		for (size_t k = 0; k < samples[i].len; k++) {
			size_t frame_len = 12345;

			cr_assert_eq(scan(samples[i].bytes, k, &frame_len), 0,
				     "%s: prefix of %zu bytes", samples[i].name, k);
			cr_assert_eq(frame_len, 12345, "ret_frame_len written on 0");
		}
	}
}

Test(scan, scanner_fed_one_byte_at_a_time_finds_the_same_frame)
{
	struct rpc_scanner *s;

	cr_assert_eq(rpc_scanner_new(&s), 0);
	for (size_t i = 0; i < N_SAMPLES; i++) {
		size_t frame_len = 0;

		for (size_t k = 0; k < samples[i].len; k++)
			cr_assert_eq(rpc_scanner_scan(s, (const char *)samples[i].bytes, k,
						      &frame_len), 0,
				     "%s: prefix of %zu bytes", samples[i].name, k);
		cr_assert_eq(rpc_scanner_scan(s, (const char *)samples[i].bytes,
					      samples[i].len, &frame_len), 1);
		cr_assert_eq(frame_len, samples[i].len, "%s", samples[i].name);
	}
	rpc_scanner_free(s);
	rpc_scanner_free(NULL);
}

Test(scan, scanner_accepts_a_moved_buffer_between_calls)
{
	const struct sample *smp = &samples[1];
	char *a = malloc(smp->len), *b = malloc(smp->len);
	struct rpc_scanner *s;
	size_t frame_len = 0;

	cr_assert(a && b);
	memcpy(a, smp->bytes, smp->len);
	memcpy(b, smp->bytes, smp->len);
	cr_assert_eq(rpc_scanner_new(&s), 0);
	cr_assert_eq(rpc_scanner_scan(s, a, smp->len / 2, &frame_len), 0);
	memset(a, 0xc1, smp->len);      /* the old buffer is gone */
	cr_assert_eq(rpc_scanner_scan(s, b, smp->len, &frame_len), 1);
	cr_assert_eq(frame_len, smp->len);
	rpc_scanner_free(s);
	free(a);
	free(b);
}

Test(scan, concatenated_messages_scan_and_decode_one_by_one)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t off = 0, frame_len;
	uint32_t n = 0;

	sb_pk_init(&sb, &pk);
	for (uint32_t id = 0; id < 300; id++) {
		cr_assert_eq(rpc_pack_request_begin(&pk, id, "domain.list"), 0);
		cr_assert_eq(rpc_pack_params_map_begin(&pk, 1), 0);
		cr_assert_eq(rpc_pack_cstr(&pk, "i"), 0);
		cr_assert_eq(msgpack_pack_uint32(&pk, id * 1000), 0);
	}
	/* and half a message at the end */
	cr_assert_eq(rpc_pack_request_begin(&pk, 9999, "domain.list"), 0);

	for (;;) {
		struct rpc_msg *m;
		const msgpack_object *params;
		uint64_t v = 0;
		int r = scan(sb.data + off, sb.size - off, &frame_len);

		cr_assert_geq(r, 0);
		if (r == 0)
			break;
		m = decode_ok(sb.data + off, frame_len);
		cr_assert_eq(rpc_msg_id(m), n);
		cr_assert_str_eq(rpc_msg_method(m), "domain.list");
		cr_assert_eq(rpc_msg_params_map(m, &params, NULL, 0), 0);
		cr_assert_eq(rpc_obj_u64(rpc_map_get(params, "i"), &v), 0);
		cr_assert_eq(v, (uint64_t)n * 1000);
		rpc_msg_free(m);
		off += frame_len;
		n++;
	}
	cr_assert_eq(n, 300);
	cr_assert_lt(off, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/*
 * A claim that no frame under RPC_MAX_FRAME can hold is an error at once,
 * however few bytes are buffered: waiting for more would let a peer make us
 * buffer up to the limit for a message we will refuse anyway.
 */
Test(scan, array_claiming_4g_elements_in_10_bytes_is_refused)
{
	unsigned char b[10] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0 };
	size_t frame_len;

	cr_assert_eq(scan(b, sizeof(b), &frame_len), -E2BIG);
	cr_assert_eq(scan_claim(0xdd, UINT32_MAX, 5), -E2BIG);
	cr_assert_eq(scan_claim(0xdf, UINT32_MAX, 5), -E2BIG);
	cr_assert_eq(scan_claim(0xdf, 0x80000000u, 5), -E2BIG);
}

Test(scan, array_claim_limits_are_exact)
{
	/* 5 header bytes + one byte per element must fit in the frame ... */
	cr_assert_eq(scan_claim(0xdd, RPC_MAX_FRAME - 4, 5), -E2BIG);
	/* ... and 1 + elements must fit in the object cap. */
	cr_assert_eq(scan_claim(0xdd, RPC_MAX_FRAME - 5, 5), -EOVERFLOW);
	cr_assert_eq(scan_claim(0xdd, RPC_MAX_OBJECTS, 5), -EOVERFLOW);
	cr_assert_eq(scan_claim(0xdd, RPC_MAX_OBJECTS - 1, 5), 0);
	/* a map entry is two objects */
	cr_assert_eq(scan_claim(0xdf, RPC_MAX_OBJECTS / 2, 5), -EOVERFLOW);
	cr_assert_eq(scan_claim(0xdf, RPC_MAX_OBJECTS / 2 - 1, 5), 0);
}

Test(scan, str_and_bin_claiming_more_than_the_frame_are_refused)
{
	cr_assert_eq(scan_claim(0xdb, UINT32_MAX, 5), -EMSGSIZE);
	cr_assert_eq(scan_claim(0xc6, UINT32_MAX, 5), -EMSGSIZE);
	cr_assert_eq(scan_claim(0xdb, RPC_MAX_FRAME - 4, 5), -EMSGSIZE);
	cr_assert_eq(scan_claim(0xdb, RPC_MAX_FRAME - 5, 5), 0);
	cr_assert_eq(scan_claim(0xc6, RPC_MAX_FRAME - 5, 5), 0);
}

/* A claim that fits under the limits but has not arrived yet: read more. */
Test(scan, claim_within_the_limits_not_yet_buffered_needs_more)
{
	unsigned char arr16[] = { 0xdc, 0x03, 0xe8, 0xc0, 0xc0, 0xc0 }; /* 1000 elements */
	size_t frame_len;

	cr_assert_eq(scan(arr16, sizeof(arr16), &frame_len), 0);
	cr_assert_eq(scan_claim(0xdd, 100000, 5), 0);
	cr_assert_eq(scan_claim(0xdb, 1u << 20, 5), 0);
	cr_assert_eq(scan_claim(0xc6, 1u << 20, 5), 0);
	cr_assert_eq(scan_claim(0xdf, 1000, 5), 0);
}

/* Elements still owed to open containers count against the limit. */
Test(scan, owed_elements_count_against_the_frame_limit)
{
	unsigned char b[8] = { 0xdc, 0x00, 0x02, 0xdb };  /* [str32, one more] */
	size_t frame_len;

	put_be32(b + 4, RPC_MAX_FRAME - 9);     /* 3 + 5 + len + 1 == limit */
	cr_assert_eq(scan(b, sizeof(b), &frame_len), 0);
	put_be32(b + 4, RPC_MAX_FRAME - 8);
	cr_assert_eq(scan(b, sizeof(b), &frame_len), -EMSGSIZE);

	/* the same for a nested container's claim */
	unsigned char c[8] = { 0xdc, 0x00, 0x02, 0xdd };  /* [array32, one more] */

	put_be32(c + 4, RPC_MAX_FRAME - 9);
	cr_assert_eq(scan(c, sizeof(c), &frame_len), -EOVERFLOW);
	put_be32(c + 4, RPC_MAX_FRAME - 8);
	cr_assert_eq(scan(c, sizeof(c), &frame_len), -E2BIG);
}

Test(scan, object_cap_is_exact)
{
	/* one array (1 object) of RPC_MAX_OBJECTS - 1 nils: exactly the cap */
	size_t len = 5 + RPC_MAX_OBJECTS - 1, frame_len = 0;
	unsigned char *b = malloc(len + 1);

	cr_assert_not_null(b);
	b[0] = 0xdd;
	put_be32(b + 1, RPC_MAX_OBJECTS - 1);
	memset(b + 5, 0xc0, len - 5);
	cr_assert_eq(scan(b, len, &frame_len), 1);
	cr_assert_eq(frame_len, len);
	agree_with_msgpack_c(b, len);

	/* the last element as [nil]: one object more than the cap */
	b[len - 1] = 0x91;
	b[len] = 0xc0;
	cr_assert_eq(scan(b, len + 1, &frame_len), -EOVERFLOW);
	free(b);
}

Test(scan, depth_32_is_accepted_and_decodes)
{
	size_t len, frame_len = 0;
	unsigned char *b = nested_arrays(RPC_MAX_DEPTH, &len);

	cr_assert_eq(scan(b, len, &frame_len), 1);
	cr_assert_eq(frame_len, len);
	/* msgpack-c's own stack is 32 deep too: make sure it agrees */
	agree_with_msgpack_c(b, len);
	free(b);
}

Test(scan, depth_33_is_refused)
{
	size_t len, frame_len;
	unsigned char *b = nested_arrays(RPC_MAX_DEPTH + 1, &len);

	cr_assert_eq(scan(b, len, &frame_len), -ELOOP);
	/* refused as soon as the 33rd header arrives */
	cr_assert_eq(scan(b, RPC_MAX_DEPTH + 1, &frame_len), -ELOOP);
	cr_assert_eq(scan(b, RPC_MAX_DEPTH, &frame_len), 0);
	/* an empty container at level 33 too */
	b[RPC_MAX_DEPTH] = 0x90;
	cr_assert_eq(scan(b, RPC_MAX_DEPTH + 1, &frame_len), -ELOOP);
	b[RPC_MAX_DEPTH] = 0x80;
	cr_assert_eq(scan(b, RPC_MAX_DEPTH + 1, &frame_len), -ELOOP);
	free(b);
}

Test(scan, deep_but_wide_is_fine)
{
	/* depth is nesting, not the number of containers: [[[]], [[]], ...] */
	unsigned char b[3 + 2 * 500];
	size_t frame_len = 0;

	b[0] = 0xdc;
	b[1] = 0x01;
	b[2] = 0xf4;
	for (size_t i = 3; i < sizeof(b); i += 2) {
		b[i] = 0x91;
		b[i + 1] = 0x90;
	}
	cr_assert_eq(scan(b, sizeof(b), &frame_len), 1);
	cr_assert_eq(frame_len, sizeof(b));
}

Test(scan, reserved_byte_c1_is_refused)
{
	unsigned char top[] = { 0xc1 };
	unsigned char nested[] = { 0x94, 0x00, 0x01, 0xc1 };
	size_t frame_len;

	cr_assert_eq(scan(top, sizeof(top), &frame_len), -EBADMSG);
	cr_assert_eq(scan(nested, sizeof(nested), &frame_len), -EBADMSG);
}

Test(scan, only_timestamp_ext_is_accepted)
{
	static const struct {
		unsigned char b[6];
		size_t len;
		int want;
	} cases[] = {
		{ { 0xd6, 0xff, 0, 0, 0, 0 }, 6, 1 },     /* timestamp32 */
		{ { 0xd4, 0x05, 0 }, 3, -EPROTO },        /* application type */
		{ { 0xd4, 0x00, 0 }, 3, -EPROTO },
		{ { 0xd5, 0xff, 0, 0 }, 4, -EPROTO },     /* -1 with 2 bytes */
		{ { 0xd8, 0xff }, 2, -EPROTO },           /* -1 with 16 bytes */
		{ { 0xd6, 0xfe }, 2, -EPROTO },           /* reserved type -2 */
		{ { 0xd6, 0x80 }, 2, -EPROTO },           /* reserved type -128 */
		{ { 0xc7, 0x0c, 0xfe }, 3, -EPROTO },
		{ { 0xc7, 0x0c, 0xff }, 3, 0 },           /* timestamp96, data to come */
		{ { 0xc7, 0x0d, 0xff }, 3, -EPROTO },
		{ { 0xc9, 0xff, 0xff, 0xff, 0xff, 0xff }, 6, -EPROTO },
		{ { 0xc7, 0x0c }, 2, 0 },                 /* type byte not here yet */
	};
	size_t frame_len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(scan(cases[i].b, cases[i].len, &frame_len), cases[i].want,
			     "case %zu", i);
}

/* [0, 1, "m", [str32 of n bytes]]: 11 bytes of header, then the str. */
static char *big_request(size_t total, size_t *ret_len)
{
	char *b = malloc(total + 64);

	cr_assert_not_null(b);
	memcpy(b, "\x94\x00\x01\xa1m\x91\xdb", 7);
	put_be32((unsigned char *)b + 7, (uint32_t)(total - 11));
	memset(b + 11, 'x', total - 11 + 64);
	*ret_len = total;
	return b;
}

Test(scan, frame_of_exactly_the_limit_is_accepted)
{
	size_t len, frame_len = 0;
	char *b = big_request(RPC_MAX_FRAME, &len);
	struct rpc_msg *m;
	const char *s;
	size_t slen;

	cr_assert_eq(scan(b, len + 64, &frame_len), 1);
	cr_assert_eq(frame_len, RPC_MAX_FRAME);
	m = decode_ok(b, frame_len);
	cr_assert_eq(rpc_obj_str(&rpc_msg_params(m)->via.array.ptr[0], &s, &slen), 0);
	cr_assert_eq(slen, RPC_MAX_FRAME - 11);
	rpc_msg_free(m);
	free(b);
}

Test(scan, frame_one_byte_over_the_limit_is_refused_from_its_header)
{
	size_t len, frame_len;
	char *b = big_request(RPC_MAX_FRAME + 1, &len);

	cr_assert_eq(scan(b, 11, &frame_len), -EMSGSIZE);
	cr_assert_eq(scan(b, 10, &frame_len), 0);
	free(b);
}

Test(scan, limit_reached_with_an_incomplete_message_is_refused)
{
	/* [str32 that ends 1 byte before the limit, str32 header cut by it] */
	size_t len = RPC_MAX_FRAME + 16, frame_len;
	unsigned char *b = calloc(1, len);

	cr_assert_not_null(b);
	memcpy(b, "\xdc\x00\x02\xdb", 4);
	put_be32(b + 4, RPC_MAX_FRAME - 9);
	b[RPC_MAX_FRAME - 1] = 0xdb;
	cr_assert_eq(scan(b, RPC_MAX_FRAME - 1, &frame_len), 0);
	cr_assert_eq(scan(b, RPC_MAX_FRAME, &frame_len), -EMSGSIZE);
	cr_assert_eq(scan(b, len, &frame_len), -EMSGSIZE);
	free(b);
}

Test(scan, large_message_trickling_in_costs_linear_time)
{
	/* 100000 one-byte elements, fed 7 bytes at a time through a scanner */
	size_t n = 100000, len = 5 + n, frame_len = 0, k;
	unsigned char *b = malloc(len);
	struct rpc_scanner *s;
	int r = 0;

	cr_assert_not_null(b);
	b[0] = 0xdd;
	put_be32(b + 1, (uint32_t)n);
	memset(b + 5, 0x01, n);
	cr_assert_eq(rpc_scanner_new(&s), 0);
	for (k = 0; k <= len && r == 0; k += 7)
		r = rpc_scanner_scan(s, (const char *)b, k, &frame_len);
	if (r == 0)
		r = rpc_scanner_scan(s, (const char *)b, len, &frame_len);
	cr_assert_eq(r, 1);
	cr_assert_eq(frame_len, len);
	rpc_scanner_free(s);
	free(b);
}

Test(scan, scanner_errors_stick_until_reset)
{
	struct rpc_scanner *s;
	size_t frame_len;
	const char bad[] = "\xc1";

	cr_assert_eq(rpc_scanner_new(&s), 0);
	cr_assert_eq(rpc_scanner_scan(s, bad, 1, &frame_len), -EBADMSG);
	cr_assert_eq(rpc_scanner_scan(s, (const char *)samples[0].bytes, samples[0].len,
				      &frame_len), -EBADMSG);
	rpc_scanner_reset(s);
	cr_assert_eq(rpc_scanner_scan(s, (const char *)samples[0].bytes, samples[0].len,
				      &frame_len), 1);
	rpc_scanner_free(s);
}

Test(scan, every_error_has_its_own_reason)
{
	const int errs[] = { -EMSGSIZE, -E2BIG, -EOVERFLOW, -ELOOP, -EBADMSG, -EPROTO };

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		cr_assert_str_neq(rpc_strerror_scan(errs[i]), "unknown error");
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(rpc_strerror_scan(errs[i]),
					  rpc_strerror_scan(errs[j]));
	}
	cr_assert_str_eq(rpc_strerror_scan(-EINVAL), "unknown error");
	cr_assert_str_eq(rpc_strerror_scan(-ELOOP), "containers nested deeper than 32 levels");
}

static void scan_and_decode_anything(const unsigned char *b, size_t len)
{
	size_t frame_len = 0;
	struct rpc_msg *m = NULL;
	char err[128];
	int r = scan(b, len, &frame_len);

	cr_assert(r == 0 || r == 1 || r == -EMSGSIZE || r == -E2BIG || r == -EOVERFLOW ||
		  r == -ELOOP || r == -EBADMSG || r == -EPROTO, "r = %d", r);
	if (r == 1) {
		cr_assert_leq(frame_len, len);
		cr_assert_gt(frame_len, 0);
		agree_with_msgpack_c(b, frame_len);
		if (rpc_decode((const char *)b, frame_len, &m, err, sizeof(err)) == 0) {
			const msgpack_object *map;

			if (rpc_msg_type(m) != RPC_RESPONSE)
				(void)rpc_msg_params_map(m, &map, err, sizeof(err));
			rpc_msg_free(m);
		}
	}
	/* decoding the whole buffer must not crash either */
	m = NULL;
	if (rpc_decode((const char *)b, len, &m, err, sizeof(err)) == 0)
		rpc_msg_free(m);
}

Test(scan, random_bytes_never_crash)
{
	uint64_t seed = 0x636f7272616cULL;      /* fixed: failures reproduce */
	unsigned char b[256];

	for (int iter = 0; iter < 50000; iter++) {
		size_t len = rng_next(&seed) % sizeof(b);

		for (size_t i = 0; i < len; i++)
			b[i] = (unsigned char)rng_next(&seed);
		/* bias towards containers so that something nests */
		if (len > 0 && (rng_next(&seed) & 1))
			b[0] = (unsigned char)(0x90 | (rng_next(&seed) & 0x0f));
		scan_and_decode_anything(b, len);
	}
}

Test(scan, mutated_valid_messages_never_crash)
{
	uint64_t seed = 42;
	unsigned char b[512];

	for (int iter = 0; iter < 50000; iter++) {
		const struct sample *smp = &samples[rng_next(&seed) % N_SAMPLES];
		size_t len = smp->len;
		int flips = 1 + (int)(rng_next(&seed) % 3);

		memcpy(b, smp->bytes, len);
		for (int f = 0; f < flips; f++)
			b[rng_next(&seed) % len] = (unsigned char)rng_next(&seed);
		if (rng_next(&seed) % 4 == 0)
			len = rng_next(&seed) % (len + 1);
		scan_and_decode_anything(b, len);
	}
}

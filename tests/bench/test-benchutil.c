/* SPDX-License-Identifier: MIT */
/* bench/benchutil: the latency histogram, the option table and its parser, --only, messages, msgpack skipping. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <msgpack.h>
#include <unistd.h>

#include "bench/benchutil.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

Test(hist, small_values_are_exact)
{
	static struct hist h;

	hist_init(&h);
	for (uint64_t v = 0; v < 64; v++)
		hist_add(&h, v);
	cr_assert_eq(h.count, 64);
	cr_assert_eq(hist_quantile(&h, 0), 0);
	cr_assert_eq(hist_quantile(&h, 0.5), 32);
	cr_assert_eq(hist_quantile(&h, 1), 63);
	cr_assert_eq(h.min, 0);
}

/* Every quantile within one bucket (1/32) above the exact one, never below. */
Test(hist, quantiles_within_one_bucket_of_exact)
{
	static struct hist h, a, b;
	static uint64_t v[100000];
	static const double qs[] = { 0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1 };
	unsigned seed = 7;

	hist_init(&h);
	hist_init(&a);
	hist_init(&b);
	for (size_t i = 0; i < 100000; i++) {
		/* log-uniform from 1 ns to about 10 s */
		double e = (double)rand_r(&seed) / RAND_MAX * 23;

		v[i] = (uint64_t)(1ULL << (unsigned)e) + (uint64_t)rand_r(&seed) % (1u << 20);
		hist_add(&h, v[i]);
		hist_add(i % 2 ? &a : &b, v[i]);
	}
	hist_merge(&a, &b);
	qsort(v, 100000, sizeof(v[0]), cmp_u64);
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		size_t rank = (size_t)(qs[k] * 100000);
		uint64_t exact = v[rank >= 100000 ? 99999 : rank];
		uint64_t got = hist_quantile(&h, qs[k]);

		cr_assert_geq(got, exact, "q %g: %lu < exact %lu", qs[k], (unsigned long)got,
			      (unsigned long)exact);
		cr_assert_leq((double)got, (double)exact * (1 + 1.0 / 32) + 1,
			      "q %g: %lu, exact %lu", qs[k], (unsigned long)got,
			      (unsigned long)exact);
		cr_assert_eq(hist_quantile(&a, qs[k]), got, "merged differs at q %g", qs[k]);
	}
	cr_assert_eq(hist_quantile(&h, 1), v[99999]);
	cr_assert_eq(a.count, h.count);
	cr_assert_eq(a.sum, h.sum);
}

Test(hist, huge_values_do_not_overflow)
{
	static struct hist h;

	hist_init(&h);
	hist_add(&h, UINT64_MAX);
	hist_add(&h, 1ULL << 63);
	cr_assert_eq(hist_quantile(&h, 0.99), UINT64_MAX);
	cr_assert_eq(hist_quantile(&h, 0), 1ULL << 63 | ((1ULL << 58) - 1));
}

Test(hist, empty_is_zero)
{
	static struct hist h;

	hist_init(&h);
	cr_assert_eq(hist_quantile(&h, 0.5), 0);
}

static const struct bench_opt opts[] = {
	{ "alpha", "N", 300, "The first option, with a help text long enough to need more than "
			     "one line when it is wrapped at eighty columns." },
	{ "beta", NULL, 301, "A flag." },
	{ NULL, NULL, 0, NULL },
};

Test(opts, getopt_table_and_help_from_one_table)
{
	struct option *o = bench_opts_getopt(opts);
	char *argv[] = { "x", "--beta", "--alpha", "5", NULL }, *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int seen = 0, c;

	cr_assert_not_null(o);
	cr_assert_eq(o[1].has_arg, no_argument);
	cr_assert_null(o[2].name);
	optind = 1;
	while ((c = getopt_long(4, argv, "", o, NULL)) != -1) {
		cr_assert(c == 300 || c == 301);
		if (c == 300)
			cr_assert_str_eq(optarg, "5");
		seen |= 1 << (c - 300);
	}
	cr_assert_eq(seen, 3);
	free(o);
	bench_opts_help(f, opts);
	fclose(f);
	cr_assert_not_null(strstr(buf, "  --alpha N "));
	cr_assert_not_null(strstr(buf, "  --beta "));
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		cr_assert_leq(strlen(line), 80, "line too long: '%s'", line);
	free(buf);
}

static const char *const sections[] = { "mailbox", "snapshot", "timers" };

Test(only, known_names_mark_their_section_and_repeat)
{
	bool run[3] = { false };

	cr_assert_eq(bench_only("timers", sections, 3, run), 2);
	cr_assert_eq(bench_only("mailbox", sections, 3, run), 0);
	cr_assert_eq(bench_only("timers", sections, 3, run), 2);
	cr_assert(run[0] && !run[1] && run[2]);
	bench_only_default(run, 3);
	cr_assert(run[0] && !run[1] && run[2], "an --only given: the others stay off");
}

Test(only, unknown_name_is_minus_one_and_marks_nothing)
{
	bool run[3] = { false };

	cr_assert_eq(bench_only("timer", sections, 3, run), -1);
	cr_assert_eq(bench_only("", sections, 3, run), -1);
	cr_assert_eq(bench_only("mailboxes", sections, 3, run), -1);
	cr_assert(!run[0] && !run[1] && !run[2]);
	bench_only_default(run, 3);
	cr_assert(run[0] && run[1] && run[2], "no --only: every section runs");
}

/*
 * Each index has one owner whatever range it is drawn from: corral-bench's
 * suspend draws from every domain and its start from the real ones at the
 * end, and two workers driving one domain see each other's jobs fail.
 */
Test(owned, an_index_has_one_owner_whatever_the_range)
{
	for (unsigned n = 1; n <= 5; n++)
		for (unsigned lo = 0; lo <= 7; lo++)
			for (unsigned hi = lo; hi <= 13; hi++)
				for (unsigned idx = 0; idx < n; idx++) {
					unsigned seen = 0, want = 0;

					for (unsigned i = lo; i < hi; i++)
						want += i % n == idx;
					for (unsigned k = 0; k < 64; k++) {
						long d = bench_owned_index(lo, hi, idx, n, k / 64.0);

						if (!want) {
							cr_assert_eq(d, -1);
							continue;
						}
						cr_assert(d >= lo && d < hi, "%ld of [%u, %u)", d, lo, hi);
						cr_assert_eq((unsigned long)d % n, idx,
							     "[%u, %u) worker %u of %u drew %ld", lo, hi,
							     idx, n, d);
						seen |= 1u << (d - lo);
					}
					cr_assert_eq(__builtin_popcount(seen), want,
						     "[%u, %u) worker %u of %u: some never drawn", lo,
						     hi, idx, n);
				}
	cr_assert_eq(bench_owned_index(0, 10, 0, 0, 0.5), -1, "no workers");
	cr_assert_eq(bench_owned_index(0, 10, 3, 3, 0.5), -1, "no such worker");
}

/* One object holding every msgpack type corral takes, in each of its length forms. */
static void pack_every_type(msgpack_packer *pk)
{
	static char blob[70000];

	msgpack_pack_array(pk, 4);
	msgpack_pack_map(pk, 20);               /* map16 */
	for (int i = 0; i < 20; i++) {
		msgpack_pack_int64(pk, i);
		switch (i % 5) {
		case 0: msgpack_pack_nil(pk); break;
		case 1: msgpack_pack_true(pk); break;
		case 2: msgpack_pack_false(pk); break;
		case 3: msgpack_pack_double(pk, 1.5); break;
		default: msgpack_pack_float(pk, 2.5f); break;
		}
	}
	msgpack_pack_array(pk, 17);             /* array16 */
	msgpack_pack_int64(pk, -1);             /* negative fixint */
	msgpack_pack_int64(pk, 200);            /* uint8 */
	msgpack_pack_int64(pk, 60000);          /* uint16 */
	msgpack_pack_int64(pk, 4000000000LL);   /* uint32 */
	msgpack_pack_int64(pk, 1LL << 40);      /* uint64 */
	msgpack_pack_int64(pk, -100);           /* int8 */
	msgpack_pack_int64(pk, -30000);         /* int16 */
	msgpack_pack_int64(pk, -2000000000LL);  /* int32 */
	msgpack_pack_int64(pk, -(1LL << 40));   /* int64 */
	msgpack_pack_str_with_body(pk, "more", 4);              /* fixstr */
	msgpack_pack_str_with_body(pk, blob, 100);              /* str8 */
	msgpack_pack_str_with_body(pk, blob, 1000);             /* str16 */
	msgpack_pack_str_with_body(pk, blob, sizeof(blob));     /* str32 */
	msgpack_pack_bin_with_body(pk, blob, 10);               /* bin8 */
	msgpack_pack_bin_with_body(pk, blob, 300);              /* bin16 */
	msgpack_pack_bin_with_body(pk, blob, sizeof(blob));     /* bin32 */
	msgpack_pack_array(pk, 4);              /* timestamps, the only ext corral takes */
	msgpack_pack_ext_with_body(pk, blob, 4, -1);            /* fixext4 */
	msgpack_pack_ext_with_body(pk, blob, 8, -1);            /* fixext8 */
	msgpack_pack_ext_with_body(pk, blob, 12, -1);           /* ext8 */
	msgpack_pack_map(pk, 0);
	msgpack_pack_array(pk, 70000);          /* array32 */
	for (int i = 0; i < 70000; i++)
		msgpack_pack_array(pk, 0);
	msgpack_pack_map(pk, 70000);            /* map32 */
	for (int i = 0; i < 70000; i++) {
		msgpack_pack_int64(pk, i);
		msgpack_pack_map(pk, 1);        /* fixmap */
		msgpack_pack_str_with_body(pk, "k", 1);
		msgpack_pack_nil(pk);
	}
}

/* corral-bench skips a stats answer's members this way to read its `more`. */
Test(msgpack, skip_ends_where_the_packer_did)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	const unsigned char *p;
	size_t one;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_every_type(&pk);
	one = sb.size;
	msgpack_pack_str_with_body(&pk, "x", 1);
	p = (const unsigned char *)sb.data;
	cr_assert_eq(bench_msgpack_skip(p, sb.size, 0, 1), one);
	cr_assert_eq(bench_msgpack_skip(p, sb.size, 0, 2), sb.size);
	cr_assert_eq(bench_msgpack_skip(p, sb.size, one, 1), sb.size);
	cr_assert_eq(bench_msgpack_skip(p, sb.size, 0, 0), 0, "no objects: where it starts");
	cr_assert_eq(bench_msgpack_skip(p, sb.size, 0, 3), 0, "a third object is not there");
	/* Cut anywhere (every 997th byte, and near both ends): never past the end. */
	for (size_t cut = 0; cut < one; cut += cut < 64 || one - cut < 64 ? 1 : 997)
		cr_assert_eq(bench_msgpack_skip(p, cut, 0, 1), 0, "cut at %zu of %zu", cut, one);
	msgpack_sbuffer_destroy(&sb);
}

Test(msgpack, skip_refuses_what_the_scanner_does_and_lengths_past_the_end)
{
	static const unsigned char reserved[] = { 0x92, 0x01, 0xc1 };
	static const unsigned char str32[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
	static const unsigned char map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02 };
	static const unsigned char head[] = { 0xcd, 0x01 };     /* uint16 missing a byte */
	static const unsigned char ext5[] = { 0xd4, 0x05, 0x00 };       /* fixext1, type 5 */

	cr_assert_eq(bench_msgpack_skip(reserved, sizeof(reserved), 0, 1), 0);
	cr_assert_eq(bench_msgpack_skip(str32, sizeof(str32), 0, 1), 0);
	cr_assert_eq(bench_msgpack_skip(map32, sizeof(map32), 0, 1), 0);
	cr_assert_eq(bench_msgpack_skip(head, sizeof(head), 0, 1), 0);
	cr_assert_eq(bench_msgpack_skip(ext5, sizeof(ext5), 0, 1), 0);
	cr_assert_eq(bench_msgpack_skip(reserved, sizeof(reserved), 1, 1), 2, "the fixint alone");
}

/* Under Criterion the worker's name is boxfort-worker: compare with whatever it is. */
Test(msg, warn_prefixes_the_program_name, .init = cr_redirect_stderr)
{
	char want[256];

	cr_assert_gt(strlen(program_invocation_short_name), 0);
	snprintf(want, sizeof(want), "%s: connect: 7\n", program_invocation_short_name);
	bench_warn("%s: %d", "connect", 7);
	fflush(stderr);
	cr_assert_stderr_eq_str(want);
}

Test(msg, die_exits_with_the_status_given, .init = cr_redirect_stderr, .exit_code = 2)
{
	bench_die(2, "bad usage");
}

Test(msg, die_exits_with_another_status, .init = cr_redirect_stderr, .exit_code = 1)
{
	bench_die(1, "failed");
}

static const struct bench_opt parse_opts[] = {
	{ "only", "NAME", 300, "A section." },
	{ "quick", NULL, 301, "A flag." },
	{ "help", NULL, 302, "This help." },
	{ NULL, NULL, 0, NULL },
};

static int usage_calls;

static void test_usage(FILE *f)
{
	usage_calls++;
	fprintf(f, "usage: test\n");
}

/* Options come back by id, in order; -1 leaves optind at the first operand. */
Test(getopt, returns_ids_then_minus_one_at_the_operands)
{
	char *argv[] = { "x", "--only", "a", "--quick", "--only=b", "operand", NULL };
	int got[4], n = 0, o;

	optind = 1;
	while ((o = bench_getopt(6, argv, parse_opts, test_usage)) != -1) {
		cr_assert_lt(n, 3);
		got[n++] = o;
		if (o == 300)
			cr_assert_str_eq(optarg, n == 1 ? "a" : "b");
	}
	cr_assert_eq(n, 3);
	cr_assert(got[0] == 300 && got[1] == 301 && got[2] == 300);
	cr_assert_eq(optind, 5);
	cr_assert_eq(usage_calls, 0);
	/* The table was freed at -1; a second parse makes it again. */
	optind = 1;
	cr_assert_eq(bench_getopt(3, (char *[]){ "x", "--quick", "y", NULL }, parse_opts,
				  test_usage), 301);
	cr_assert_eq(bench_getopt(3, (char *[]){ "x", "--quick", "y", NULL }, parse_opts,
				  test_usage), -1);
}

/* Parse "x arg": bench_getopt must exit (the test says with what status), not return. */
static void parse_one(char *arg)
{
	char *argv[] = { "x", arg, NULL };

	optind = 1;
	bench_getopt(2, argv, parse_opts, test_usage);
	cr_assert_fail("%s: bench_getopt returned", arg);
}

Test(getopt, help_prints_usage_on_stdout_and_exits_0, .init = cr_redirect_stdout,
     .exit_code = 0)
{
	parse_one("--help");
}

Test(getopt, short_h_is_help_too, .init = cr_redirect_stdout, .exit_code = 0)
{
	parse_one("-h");
}

Test(getopt, unknown_option_exits_2, .init = cr_redirect_stderr, .exit_code = 2)
{
	parse_one("--no-such");
}

Test(getopt, missing_argument_exits_2, .init = cr_redirect_stderr, .exit_code = 2)
{
	parse_one("--only");
}

Test(getopt, usage_error_exits_2, .init = cr_redirect_stderr, .exit_code = 2)
{
	bench_usage_error(test_usage, "unexpected argument '%s'", "y");
}

/* The descriptor count moves with what the process opens and closes. */
Test(proc, sample_counts_open_descriptors_exactly)
{
	struct proc_sample a, b, c;
	int fds[100];

	cr_assert_eq(proc_sample_read(getpid(), &a), 0);
	for (int i = 0; i < 100; i++)
		cr_assert_geq(fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	cr_assert_eq(proc_sample_read(getpid(), &b), 0);
	for (int i = 0; i < 100; i++)
		close(fds[i]);
	cr_assert_eq(proc_sample_read(getpid(), &c), 0);
	cr_assert_eq(b.fds, a.fds + 100, "%u then %u", a.fds, b.fds);
	cr_assert_eq(c.fds, a.fds);
	cr_assert_gt(b.rss_bytes, 0);
}

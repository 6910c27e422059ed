/* SPDX-License-Identifier: MIT */
/*
 * What the benchmark programs share: a table of result rows grouped by
 * section, and facts about the machine a figure was measured on.
 */
#ifndef CORRAL_BENCH_BENCHUTIL_H
#define CORRAL_BENCH_BENCHUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Add a markdown table row (printf-style) to section sec. */
void row_add(int sec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the rows of section sec, in the order they were added. */
void rows_print(int sec);

/* /proc/cpuinfo's first "model name", or "unknown". */
void cpu_model(char *buf, size_t len);
/* The 1-minute load average, or -1: other work on the machine skews every figure. */
double loadavg(void);

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/*
 * A log-linear latency histogram: exact below 64, then 32 buckets per power
 * of two (each at most 1/32 = 3.1 % wide), up to 2^64.  Fixed size, no
 * allocation on the recording path: one per thread and series, merged at
 * the end.  Not thread-safe.
 */
#define HIST_SUB_BITS 5
#define HIST_BUCKETS (64 + (64 - HIST_SUB_BITS - 1) * (1 << HIST_SUB_BITS))

struct hist {
	uint64_t count, sum, min, max;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *dst, const struct hist *src);
/*
 * The value at quantile q (0..1): the upper edge of the bucket holding it,
 * capped by the largest value seen (so q = 1 is the exact max).  0 if empty.
 */
uint64_t hist_quantile(const struct hist *h, double q);

/*
 * Command-line options described once: getopt_long's table and --help are
 * both made from it (and a manual page can be).  name NULL ends the table.
 */
struct bench_opt {
	const char *name;       /* long option, without the dashes */
	const char *arg;        /* the argument's placeholder; NULL: a flag */
	int id;                 /* getopt_long's return value */
	const char *help;       /* one or more sentences */
};

/* getopt_long's table for opts: malloc'd, NULL-terminated; NULL if out of memory. */
struct option *bench_opts_getopt(const struct bench_opt *opts);
/* head, then text from column 24, word-wrapped at 80 columns. */
void bench_wrap(FILE *f, const char *head, const char *text);
/* "  --name ARG   help", wrapped at 80 columns, one entry per option. */
void bench_opts_help(FILE *f, const struct bench_opt *opts);

/*
 * getopt_long over opts, with what every program does alike: the option
 * named "help" and -h print usage on stdout and exit 0; an unknown option
 * or a missing argument prints usage on stderr and exits 2.  The id of the
 * next other option, optarg set; -1 after the last one (optind is then the
 * first argument that is not an option).  Call with the same argv and opts
 * until it returns -1; it exits 1 when out of memory.  No id may be 'h',
 * '?' or ':' but the help option's.
 */
int bench_getopt(int argc, char **argv, const struct bench_opt *opts, void (*usage)(FILE *f));
/* Bad usage: "PROGRAM: message", then usage on stderr; exits 2. */
void bench_usage_error(void (*usage)(FILE *f), const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/*
 * --only NAME, which a program takes more than once: marks run[i] for the
 * i with names[i] equal to name, of the n, and returns i; -1 (run[] left
 * alone) if name is none of them, for the caller to print its usage.
 */
int bench_only(const char *name, const char *const names[], unsigned n, bool run[]);
/* After the options: without any --only, every one of the n sections runs. */
void bench_only_default(bool run[], unsigned n);

/*
 * Of the indexes in [lo, hi), the ones a worker idx of n owns are those
 * with index % n == idx: one owner per index whatever range it is drawn
 * from.  Returns the k-th of them for u in [0, 1) (k = u times how many),
 * or -1 when the worker owns none in the range.
 */
long bench_owned_index(unsigned lo, unsigned hi, unsigned idx, unsigned n, double u);

/*
 * "PROGRAM: message" and a newline on stderr, PROGRAM being
 * program_invocation_short_name; one line even when threads print at once.
 */
void bench_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_vwarn(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* bench_warn, then exit(status): each program documents its own status. */
void bench_die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/*
 * The offset just past the n msgpack objects that start at p[off], or 0
 * when they run past len or a header is one the frame scanner refuses (the
 * reserved 0xc1, an ext other than a timestamp).  For bytes the frame
 * scanner (rpc_scanner_scan) has already accepted: it reads the same
 * headers (rpc/msgpack-header.h) but checks no limit (depth, objects),
 * which is what makes it cheaper than a second scan.
 */
size_t bench_msgpack_skip(const unsigned char *p, size_t len, size_t off, uint64_t n);

/* What /proc says about a process. */
struct proc_sample {
	uint64_t t_ns;          /* bench_now_ns() when read */
	uint64_t cpu_ns;        /* user + system */
	uint64_t rss_bytes;
	unsigned fds;           /* entries of /proc/PID/fd */
	uint64_t ctxsw;         /* context switches of all its threads, both kinds */
};

/* 0, or -errno (-ESRCH: the process is gone). */
int proc_sample_read(pid_t pid, struct proc_sample *ret);

/*
 * fork and exec argv (argv[0] looked up on PATH when it has no '/').  The
 * child gets SIGTERM when this process dies, and its own process group when
 * own_group (a ^C to the benchmark is then not its).  Its stdout goes to a
 * pipe whose read end is *out_fd when out_fd is not NULL; its stderr (and
 * its stdout, without out_fd) is appended to log when log is not NULL.  The
 * pid; when the pipe or the fork fails, the benchmark exits with a message.
 */
pid_t bench_spawn(char *const argv[], int *out_fd, const char *log, bool own_group);

/*
 * A private corrald for a benchmark: its read-write socket (written to
 * rw[rwlen]), read-only socket, state and runtime directories and log
 * (corrald.log) all in dir, log level warning, then the nextra extra
 * arguments.  Spawned as bench_spawn does; the caller waits for it to
 * listen (the read-only socket, made last).
 */
#define BENCH_CORRALD_EXTRA_MAX 32
pid_t bench_spawn_corrald(const char *corrald, const char *dir, char *rw, size_t rwlen,
			  const char *const extra[], unsigned nextra, bool own_group);

/*
 * SIGTERM to pid, then SIGKILL if it has not exited 30 s later; reaps it.
 * Its wait status; *killed says whether SIGKILL was needed.
 */
int bench_stop(pid_t pid, bool *killed);

#endif

/* SPDX-License-Identifier: MIT */
#include "bench/benchutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "rpc/msgpack-header.h"

struct row {
	int sec;
	char text[512];
};

static struct row rows[256];
static unsigned nrows;

void row_add(int sec, const char *fmt, ...)
{
	va_list ap;

	BUG_ON(nrows == ARRAY_SIZE(rows));
	rows[nrows].sec = sec;
	va_start(ap, fmt);
	vsnprintf(rows[nrows].text, sizeof(rows[nrows].text), fmt, ap);
	va_end(ap);
	nrows++;
}

void rows_print(int sec)
{
	for (unsigned i = 0; i < nrows; i++)
		if (rows[i].sec == sec)
			printf("%s\n", rows[i].text);
}

void cpu_model(char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) == 0 && colon) {
			snprintf(buf, len, "%s", colon + 2);
			buf[strcspn(buf, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
}

double loadavg(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double l = -1;

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ------------------------------------------------------------- */

static unsigned hist_index(uint64_t v)
{
	unsigned m;

	if (v < 64)
		return (unsigned)v;
	m = 63u - (unsigned)__builtin_clzll(v);         /* m >= 6 */
	/* The top HIST_SUB_BITS + 1 bits: 32..63. */
	return 64 + (m - 6) * (1u << HIST_SUB_BITS) +
	       (unsigned)((v >> (m - HIST_SUB_BITS)) - (1u << HIST_SUB_BITS));
}

/* The largest value that falls in bucket i. */
static uint64_t hist_upper(unsigned i)
{
	unsigned m, sub;

	if (i < 64)
		return i;
	m = (i - 64) / (1u << HIST_SUB_BITS) + 6;
	sub = (i - 64) % (1u << HIST_SUB_BITS) + (1u << HIST_SUB_BITS);
	if (m == 63 && sub == (2u << HIST_SUB_BITS) - 1)
		return UINT64_MAX;
	return (((uint64_t)sub + 1) << (m - HIST_SUB_BITS)) - 1;
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (!src->count)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	if (q >= 1)
		return h->max;
	rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen > rank) {
			uint64_t u = hist_upper(i);

			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* ---- options ------------------------------------------------------------------ */

struct option *bench_opts_getopt(const struct bench_opt *opts)
{
	size_t n = 0;
	struct option *o;

	while (opts[n].name)
		n++;
	o = calloc(n + 1, sizeof(*o));
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o[i] = (struct option){ opts[i].name,
					opts[i].arg ? required_argument : no_argument, NULL,
					opts[i].id };
	return o;
}

void bench_wrap(FILE *f, const char *head, const char *text)
{
	const char *p = text;
	int col;

	fputs(head, f);
	col = (int)strlen(head);
	if (col > 23) {
		fputc('\n', f);
		col = 0;
	}
	fprintf(f, "%*s", 24 - col, "");
	col = 24;
	/* Word-wrap at 80 columns, continuation lines at 24. */
	while (*p) {
		size_t w = strcspn(p, " ");

		if (col > 24 && col + 1 + (int)w > 80) {
			fprintf(f, "\n%24s", "");
			col = 24;
		} else if (col > 24) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, w, f);
		col += (int)w;
		p += w;
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

void bench_opts_help(FILE *f, const struct bench_opt *opts)
{
	for (const struct bench_opt *o = opts; o->name; o++) {
		char head[64];

		snprintf(head, sizeof(head), "  --%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		bench_wrap(f, head, o->help);
	}
}

long bench_owned_index(unsigned lo, unsigned hi, unsigned idx, unsigned n, double u)
{
	unsigned long first, owned;

	if (!n || idx >= n)
		return -1;
	/* The first index >= lo that idx owns, then every n-th. */
	first = lo + (idx + n - lo % n) % n;
	if (first >= hi)
		return -1;
	owned = (hi - first + n - 1) / n;
	return (long)(first + n * (unsigned long)(u * (double)owned));
}

int bench_only(const char *name, const char *const names[], unsigned n, bool run[])
{
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(name, names[i]) == 0) {
			run[i] = true;
			return (int)i;
		}
	}
	return -1;
}

void bench_only_default(bool run[], unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (run[i])
			return;
	for (unsigned i = 0; i < n; i++)
		run[i] = true;
}

/* The table of the bench_getopt() calls under way; reachable while the program exits. */
static struct option *getopt_table;

int bench_getopt(int argc, char **argv, const struct bench_opt *opts, void (*usage)(FILE *f))
{
	int o, help = -1;

	if (!getopt_table) {
		getopt_table = bench_opts_getopt(opts);
		if (!getopt_table)
			bench_die(1, "out of memory");
	}
	for (const struct bench_opt *p = opts; p->name; p++)
		if (strcmp(p->name, "help") == 0)
			help = p->id;
	o = getopt_long(argc, argv, "h", getopt_table, NULL);
	if (o == -1) {
		free(getopt_table);
		getopt_table = NULL;
	} else if (o == 'h' || o == help) {
		usage(stdout);
		exit(0);
	} else if (o == '?' || o == ':') {
		/* getopt_long has said what was wrong. */
		usage(stderr);
		exit(2);
	}
	return o;
}

void bench_usage_error(void (*usage)(FILE *f), const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vwarn(fmt, ap);
	va_end(ap);
	usage(stderr);
	exit(2);
}

/* ---- messages ------------------------------------------------------------------ */

void bench_vwarn(const char *fmt, va_list ap)
{
	/* stderr is unbuffered: three writes, kept together against other stdio users. */
	flockfile(stderr);
	fprintf(stderr, "%s: ", program_invocation_short_name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void bench_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vwarn(fmt, ap);
	va_end(ap);
}

void bench_die(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vwarn(fmt, ap);
	va_end(ap);
	exit(status);
}

/* ---- msgpack ---------------------------------------------------------------------- */

size_t bench_msgpack_skip(const unsigned char *p, size_t len, size_t off, uint64_t n)
{
	while (n > 0) {
		struct rpc_hdr h;

		if (off >= len || rpc_read_header(p + off, len - off, &h) != 1 ||
		    h.payload > len - off - h.len)
			return 0;
		off += h.len + h.payload;
		n = n - 1 + h.items;
	}
	return off;
}

/* ---- /proc ------------------------------------------------------------------------ */

int proc_sample_read(pid_t pid, struct proc_sample *ret)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	struct proc_sample s = { .t_ns = bench_now_ns() };
	struct dirent *de;
	struct stat fdst;
	FILE *f;
	DIR *d;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields resume after the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return -EINVAL;
	s.cpu_ns = (ut + st) * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK));

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(buf, sizeof(buf), f)) {
		unsigned long long kb;

		if (sscanf(buf, "VmRSS: %llu kB", &kb) == 1)
			s.rss_bytes = kb * 1024;
	}
	fclose(f);

	/* Per thread only: /proc/PID/status counts the main thread's alone. */
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char tpath[320];

		if (de->d_name[0] == '.')
			continue;
		snprintf(tpath, sizeof(tpath), "/proc/%d/task/%s/status", (int)pid, de->d_name);
		f = fopen(tpath, "r");
		if (!f)
			continue;       /* the thread just ended */
		while (fgets(buf, sizeof(buf), f)) {
			unsigned long long k;

			if (sscanf(buf, "voluntary_ctxt_switches: %llu", &k) == 1 ||
			    sscanf(buf, "nonvoluntary_ctxt_switches: %llu", &k) == 1)
				s.ctxsw += k;
		}
		fclose(f);
	}
	closedir(d);

	/*
	 * Linux 6.2 and later give the count as the directory's size: one
	 * stat, where reading 10,000 entries cost the harness 2-4 % of the
	 * machine at ten samples a second.  0 on older kernels: count them.
	 */
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if (stat(path, &fdst) == 0 && fdst.st_size > 0) {
		s.fds = (unsigned)fdst.st_size;
		*ret = s;
		return 0;
	}
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			s.fds++;
	closedir(d);
	*ret = s;
	return 0;
}

pid_t bench_spawn(char *const argv[], int *out_fd, const char *log, bool own_group)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	if ((out_fd && pipe2(p, O_CLOEXEC) < 0) || (pid = fork()) < 0) {
		fprintf(stderr, "%s: cannot start %s: %s\n", program_invocation_short_name,
			argv[0], strerror(errno));
		exit(1);
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (own_group)
			setpgid(0, 0);
		if (out_fd)
			dup2(p[1], STDOUT_FILENO);
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

			if (fd >= 0) {
				dup2(fd, STDERR_FILENO);
				if (!out_fd)
					dup2(fd, STDOUT_FILENO);
			}
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

pid_t bench_spawn_corrald(const char *corrald, const char *dir, char *rw, size_t rwlen,
			  const char *const extra[], unsigned nextra, bool own_group)
{
	char ro[PATH_MAX], state[PATH_MAX], run[PATH_MAX], log[PATH_MAX];
	char *argv[12 + BENCH_CORRALD_EXTRA_MAX];
	int n = 0;

	if (nextra > BENCH_CORRALD_EXTRA_MAX)
		bench_die(2, "at most %d arguments for corrald", BENCH_CORRALD_EXTRA_MAX);
	snprintf(rw, rwlen, "%s/rw.sock", dir);
	snprintf(ro, sizeof(ro), "%s/ro.sock", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(run, sizeof(run), "%s/run", dir);
	snprintf(log, sizeof(log), "%s/corrald.log", dir);
	argv[n++] = (char *)corrald;
	argv[n++] = "--socket";
	argv[n++] = rw;
	argv[n++] = "--ro-socket";
	argv[n++] = ro;
	argv[n++] = "--state-dir";
	argv[n++] = state;
	argv[n++] = "--runtime-dir";
	argv[n++] = run;
	argv[n++] = "--log-level";
	argv[n++] = "warning";
	for (unsigned i = 0; i < nextra; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	return bench_spawn(argv, NULL, log, own_group);
}

int bench_stop(pid_t pid, bool *killed)
{
	int status = 0;

	*killed = false;
	kill(pid, SIGTERM);
	for (int i = 0; i < 3000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	*killed = true;
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

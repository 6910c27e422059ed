/* SPDX-License-Identifier: MIT */
/*
 * rpc-bench: query throughput and latency of corrald over its socket, as a
 * client sees them.
 *
 * For each domain count it starts a fresh corrald in a temporary directory
 * and fills it with domains, in one of two ways:
 *   shutoff  define N domains (machine "none", never started);
 *   hung10   attach N monitors of corral-qmp-sim, every tenth of which
 *            hangs after capabilities, and park a job that never ends on
 *            each hung domain (it holds the domain for the whole run);
 * then runs `info` on random domains for --duration-ms with 1 and 4
 * connections, each with 1 or 64 requests in flight, and `list` once.
 * Prints one markdown table row per run: calls/s, p50 and p99 latency.
 *
 *   rpc-bench [--corrald PATH] [--sim PATH] [--domains 10,1000,10000]
 *             [--duration-ms 2000] [--scenarios shutoff,hung10]
 *             [--workers N] [--io-threads N] [--help]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "rpc/rpc.h"

static const char *corrald_path = "build/daemon/corrald";
static const char *sim_path = "build/sim/corral-qmp-sim";
static unsigned duration_ms = 2000;
static const char *workers = NULL, *io_threads = NULL;

#define now_ns bench_now_ns

/* Any failure exits 1; bad usage exits 2. */
#define die(...) bench_die(1, __VA_ARGS__)

/* ---- a minimal blocking client ------------------------------------------------ */

struct client {
	int fd;
	char *in;
	size_t in_len, in_cap;
	struct rpc_scanner *scan;
	msgpack_sbuffer out;
	msgpack_packer pk;
};

static void client_open(struct client *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect %s: %s", path, strerror(errno));
	if (rpc_scanner_new(&c->scan) < 0)
		die("out of memory");
	c->in_cap = 1 << 20;
	c->in = malloc(c->in_cap);
	msgpack_sbuffer_init(&c->out);
	msgpack_packer_init(&c->pk, &c->out, msgpack_sbuffer_write);
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->in);
	rpc_scanner_free(c->scan);
	msgpack_sbuffer_destroy(&c->out);
}

/* Queue [0, id, method, [{name: dom, ...}]] in c->out. */
static void queue_call(struct client *c, uint32_t id, const char *method, const char *name,
		       const char *k2, const char *v2, uint64_t timeout_ms)
{
	uint32_t n = (name ? 1 : 0) + (k2 ? 1 : 0) + (timeout_ms ? 1 : 0);

	rpc_pack_request_begin(&c->pk, id, method);
	rpc_pack_params_map_begin(&c->pk, n);
	if (name) {
		rpc_pack_cstr(&c->pk, "name");
		rpc_pack_cstr(&c->pk, name);
	}
	if (k2) {
		rpc_pack_cstr(&c->pk, k2);
		rpc_pack_cstr(&c->pk, v2);
	}
	if (timeout_ms) {
		rpc_pack_cstr(&c->pk, "timeout_ms");
		msgpack_pack_uint64(&c->pk, timeout_ms);
	}
}

static void flush_out(struct client *c)
{
	size_t off = 0;

	while (off < c->out.size) {
		ssize_t n = send(c->fd, c->out.data + off, c->out.size - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("send: %s", strerror(errno));
		off += (size_t)n;
	}
	msgpack_sbuffer_clear(&c->out);
}

/* For wait_held(): a copy of the last response, when keep_frame is set. */
static bool keep_frame;
static char *last_frame;
static size_t last_len;

/*
 * The next response: its msgid and whether it is an error (read from the
 * frame's first bytes: [1, msgid, error, ...]).  Blocks.
 */
static uint32_t next_response(struct client *c, bool *ret_err)
{
	for (;;) {
		size_t flen;
		int r = c->in_len ? rpc_scanner_scan(c->scan, c->in, c->in_len, &flen) : 0;

		if (r < 0)
			die("bad frame from corrald: %s", rpc_strerror_scan(r));
		if (r == 1) {
			const unsigned char *p = (const unsigned char *)c->in;
			uint32_t id;
			size_t hl;

			if (p[0] != 0x94 || p[1] != 0x01) {     /* a notification: skip */
				memmove(c->in, c->in + flen, c->in_len - flen);
				c->in_len -= flen;
				continue;
			}
			if (p[2] <= 0x7f) {
				id = p[2];
				hl = 3;
			} else if (p[2] == 0xcc) {
				id = p[3];
				hl = 4;
			} else if (p[2] == 0xcd) {
				id = (uint32_t)p[3] << 8 | p[4];
				hl = 5;
			} else if (p[2] == 0xce) {
				id = (uint32_t)p[3] << 24 | (uint32_t)p[4] << 16 |
				     (uint32_t)p[5] << 8 | p[6];
				hl = 7;
			} else {
				die("unexpected msgid encoding 0x%02x", p[2]);
			}
			*ret_err = p[hl] != 0xc0;
			if (keep_frame) {
				free(last_frame);
				last_frame = malloc(flen);
				if (!last_frame)
					die("out of memory");
				memcpy(last_frame, c->in, flen);
				last_len = flen;
			}
			memmove(c->in, c->in + flen, c->in_len - flen);
			c->in_len -= flen;
			return id;
		}
		if (c->in_len == c->in_cap) {
			c->in_cap *= 2;
			c->in = realloc(c->in, c->in_cap);
			if (!c->in)
				die("out of memory");
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("corrald closed the connection");
		c->in_len += (size_t)n;
	}
}

/* ---- processes ------------------------------------------------------------------ */

/* SIGTERM, and SIGKILL if it has not exited after 30 s. */
static void stop(pid_t pid, const char *what)
{
	bool killed;
	int status = bench_stop(pid, &killed);

	if (killed)
		bench_warn("%s did not exit within 30 s of SIGTERM: killed", what);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		bench_warn("%s exited with status 0x%x", what, status);
}

static pid_t start_corrald(const char *dir, char *rw, size_t rwlen)
{
	char ro[256], log[256];
	const char *extra[4];
	unsigned n = 0;
	pid_t pid;

	snprintf(ro, sizeof(ro), "%s/ro.sock", dir);
	snprintf(log, sizeof(log), "%s/corrald.log", dir);
	if (workers) {
		extra[n++] = "--workers";
		extra[n++] = workers;
	}
	if (io_threads) {
		extra[n++] = "--io-threads";
		extra[n++] = io_threads;
	}
	pid = bench_spawn_corrald(corrald_path, dir, rw, rwlen, extra, n, false);
	for (int i = 0; i < 3000 && access(ro, F_OK) != 0; i++)
		usleep(10000);
	if (access(ro, F_OK) != 0)
		die("corrald did not start (see %s)", log);
	return pid;
}

static pid_t start_sim(const char *dir, unsigned n)
{
	char count[16], line[64];
	char *argv[] = { (char *)sim_path, "--dir", (char *)dir, "--count", count,
			 "--fault", "%10:hang=after-caps", NULL };
	int out;
	ssize_t r;
	size_t len = 0;
	pid_t pid;

	snprintf(count, sizeof(count), "%u", n);
	pid = bench_spawn(argv, &out, NULL, false);
	while (len < sizeof(line) - 1 && (r = read(out, line + len, 1)) == 1 && line[len] != '\n')
		len++;
	line[len] = '\0';
	if (strncmp(line, "ready", 5))
		die("corral-qmp-sim did not start: '%s'", line);
	close(out);
	return pid;
}

/* ---- filling ---------------------------------------------------------------------- */

/* Run calls 0..n-1 pipelined, up to 256 in flight; count errors. */
static unsigned run_all(struct client *c, unsigned n,
			void (*queue)(struct client *c, uint32_t id, unsigned i, void *arg),
			void *arg)
{
	unsigned sent = 0, done = 0, errors = 0;

	while (done < n) {
		while (sent < n && sent - done < 256) {
			queue(c, sent + 1, sent, arg);
			sent++;
		}
		flush_out(c);
		do {
			bool err;

			next_response(c, &err);
			errors += err;
			done++;
		} while (done < sent && c->in_len);
	}
	return errors;
}

static void queue_define(struct client *c, uint32_t id, unsigned i, void *arg)
{
	char name[32];

	snprintf(name, sizeof(name), "vm%u", i);
	rpc_pack_request_begin(&c->pk, id, "define");
	rpc_pack_params_map_begin(&c->pk, 1);
	rpc_pack_cstr(&c->pk, "config");
	msgpack_pack_map(&c->pk, 2);
	rpc_pack_cstr(&c->pk, "name");
	rpc_pack_cstr(&c->pk, name);
	rpc_pack_cstr(&c->pk, "machine");
	rpc_pack_cstr(&c->pk, "none");
}

/*
 * One simulator serves at most SIM_MAX endpoints (two descriptors each,
 * under the usual 20,000 open files); domain i is endpoint i % SIM_MAX of
 * simulator i / SIM_MAX.  SIM_MAX is a multiple of 10, so the tenths are
 * the same either way.
 */
#define SIM_MAX 5000

static void qmp_path(char *buf, size_t len, const char *qdir, unsigned i)
{
	snprintf(buf, len, "%s/%u/vm%u.qmp", qdir, i / SIM_MAX, i % SIM_MAX);
}

/* The i-th domain whose monitor answers: every one but the tenths. */
static void queue_attach(struct client *c, uint32_t id, unsigned i, void *arg)
{
	char name[32], path[400];

	i = i / 9 * 10 + i % 9 + 1;
	snprintf(name, sizeof(name), "vm%u", i);
	qmp_path(path, sizeof(path), arg, i);
	queue_call(c, id, "attach", name, "qmp_socket", path, 3000);
}

/* ---- measuring ---------------------------------------------------------------------- */

struct worker {
	pthread_t th;
	const char *path;
	unsigned ndom, depth;
	const char *method;
	uint64_t stop_ns;
	uint64_t *lat;                  /* ns, one per answered call */
	size_t nlat, caplat;
	uint64_t errors;
	unsigned seed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct client c;
	uint64_t *sent_at = calloc(w->depth + 1, sizeof(uint64_t));
	char name[32];
	unsigned inflight = 0;

	client_open(&c, w->path);
	for (uint32_t slot = 1; slot <= w->depth; slot++) {
		snprintf(name, sizeof(name), "vm%u", (unsigned)rand_r(&w->seed) % w->ndom);
		queue_call(&c, slot, w->method, strcmp(w->method, "info") ? NULL : name, NULL,
			   NULL, 0);
		sent_at[slot] = now_ns();
		inflight++;
	}
	flush_out(&c);
	while (inflight) {
		bool err;
		uint32_t id = next_response(&c, &err);
		uint64_t t = now_ns();

		inflight--;
		if (id < 1 || id > w->depth)
			die("unexpected msgid %u", id);
		if (w->nlat == w->caplat) {
			w->caplat = w->caplat ? 2 * w->caplat : 1 << 16;
			w->lat = realloc(w->lat, w->caplat * sizeof(*w->lat));
			if (!w->lat)
				die("out of memory");
		}
		w->lat[w->nlat++] = t - sent_at[id];
		w->errors += err;
		if (t < w->stop_ns) {
			/* msgid = slot: reuse it for the next call. */
			snprintf(name, sizeof(name), "vm%u", (unsigned)rand_r(&w->seed) % w->ndom);
			queue_call(&c, id, w->method, strcmp(w->method, "info") ? NULL : name,
				   NULL, NULL, 0);
			sent_at[id] = now_ns();
			inflight++;
			if (!c.in_len)
				flush_out(&c);
		}
		if (!c.in_len && c.out.size)
			flush_out(&c);
	}
	client_close(&c);
	free(sent_at);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void measure(const char *scenario, const char *rw, unsigned ndom, const char *method,
		    unsigned nconn, unsigned depth, unsigned ms)
{
	struct worker w[8];
	uint64_t start = now_ns(), total = 0, errors = 0, *all;
	size_t k = 0;
	double secs;

	memset(w, 0, sizeof(w));
	for (unsigned i = 0; i < nconn; i++) {
		w[i].path = rw;
		w[i].ndom = ndom;
		w[i].depth = depth;
		w[i].method = method;
		w[i].stop_ns = start + (uint64_t)ms * 1000000ULL;
		w[i].seed = 12345 + i;
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	for (unsigned i = 0; i < nconn; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].nlat;
		errors += w[i].errors;
	}
	secs = (double)(now_ns() - start) / 1e9;
	all = malloc(total * sizeof(*all));
	for (unsigned i = 0; i < nconn; i++) {
		memcpy(all + k, w[i].lat, w[i].nlat * sizeof(*all));
		k += w[i].nlat;
		free(w[i].lat);
	}
	qsort(all, total, sizeof(*all), cmp_u64);
	printf("| %s | %u | `%s` | %u | %u | %.0f | %.1f | %.1f |%s\n", scenario, ndom, method,
	       nconn, depth, (double)total / secs, total ? (double)all[total / 2] / 1e3 : 0,
	       total ? (double)all[total * 99 / 100] / 1e3 : 0,
	       errors ? " errors!" : "");
	fflush(stdout);
	free(all);
}

static void run_matrix(const char *scenario, const char *rw, unsigned ndom)
{
	static const unsigned conns[] = { 1, 4 }, depths[] = { 1, 64 };

	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < 2; j++)
			measure(scenario, rw, ndom, "info", conns[i], depths[j], duration_ms);
	measure(scenario, rw, ndom, "list", 1, 1, duration_ms);
	/* stats of every domain in one call: the bulk statistics call. */
	measure(scenario, rw, ndom, "stats", 1, 1, duration_ms);
}

/* Poll list until n domains show a job holding them (bounded). */
static void wait_held(struct client *c, unsigned n)
{
	for (int tries = 0; tries < 600; tries++) {
		unsigned held = 0;
		bool err;

		queue_call(c, 1, "list", NULL, NULL, NULL, 0);
		flush_out(c);
		keep_frame = true;
		next_response(c, &err);
		keep_frame = false;
		/* Count "job" keys followed by a str, not nil, in the raw reply. */
		for (size_t i = 0; i + 4 < last_len; i++)
			if (!memcmp(last_frame + i, "\xa3job", 4) &&
			    ((unsigned char)last_frame[i + 4] & 0xe0) == 0xa0)
				held++;
		if (held >= n) {
			bench_warn("%u domains held by hung jobs", held);
			return;
		}
		usleep(100000);
	}
	die("the hung domains' jobs did not start");
}

static void scenario(const char *name, unsigned ndom)
{
	char dir[] = "/tmp/rpc-bench-XXXXXX", rw[300], qdir[300], cmd[400];
	pid_t daemon, sim[16] = { 0 };
	unsigned nsim = 0;
	struct client c, holder;
	unsigned errors;

	if (!mkdtemp(dir))
		die("mkdtemp: %s", strerror(errno));
	if (!strcmp(name, "hung10")) {
		snprintf(qdir, sizeof(qdir), "%s/qmp", dir);
		if (mkdir(qdir, 0700) < 0)
			die("mkdir %s: %s", qdir, strerror(errno));
		for (unsigned k = 0; k * SIM_MAX < ndom && k < 16; k++) {
			char sdir[400];
			unsigned n = ndom - k * SIM_MAX;

			snprintf(sdir, sizeof(sdir), "%s/%u", qdir, k);
			sim[nsim++] = start_sim(sdir, n < SIM_MAX ? n : SIM_MAX);
		}
	}
	daemon = start_corrald(dir, rw, sizeof(rw));
	client_open(&c, rw);
	if (!nsim) {
		errors = run_all(&c, ndom, queue_define, NULL);
		if (errors)
			die("%u defines failed", errors);
	} else {
		unsigned good = ndom - (ndom + 9) / 10;

		errors = run_all(&c, good, queue_attach, qdir);
		if (errors)
			die("%u attaches failed", errors);
		/*
		 * The tenths hang after capabilities: their attach jobs hold
		 * their domains (waiting for QEMU's answer) for the whole run.
		 */
		client_open(&holder, rw);
		for (unsigned i = 0; i < ndom; i += 10) {
			char nm[32], path[400];

			snprintf(nm, sizeof(nm), "vm%u", i);
			qmp_path(path, sizeof(path), qdir, i);
			queue_call(&holder, i + 1, "attach", nm, "qmp_socket", path, 3600000);
		}
		flush_out(&holder);
		wait_held(&c, (ndom + 9) / 10);
	}
	client_close(&c);
	run_matrix(name, rw, ndom);
	stop(daemon, "corrald");
	if (nsim) {
		client_close(&holder);
		for (unsigned k = 0; k < nsim; k++)
			stop(sim[k], "corral-qmp-sim");
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		bench_warn("cannot remove %s", dir);
}

static const struct bench_opt opts[] = {
	{ "corrald", "PATH", 'c', "corrald to start (default build/daemon/corrald)." },
	{ "sim", "PATH", 's', "corral-qmp-sim (default build/sim/corral-qmp-sim)." },
	{ "domains", "N,N...", 'd', "Domain counts (default 10,1000,10000)." },
	{ "duration-ms", "MS", 't', "Each measurement's length (default 2000)." },
	{ "scenarios", "LIST", 'S', "shutoff, hung10 (default both)." },
	{ "workers", "N", 'w', "corrald --workers." },
	{ "io-threads", "N", 'i', "corrald --io-threads." },
	{ "help", NULL, 'h', "Print this help and exit (also -h)." },
	{ NULL, NULL, 0, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: rpc-bench [options]\n"
		   "Exits 0; 1 if a daemon, a simulator or a call fails; 2 on bad usage.\n");
	bench_opts_help(f, opts);
}

int main(int argc, char **argv)
{
	char domains[256] = "10,1000,10000", scenarios[64] = "shutoff,hung10";
	struct rlimit rl = { 65536, 65536 };
	int o;

	while ((o = bench_getopt(argc, argv, opts, usage)) != -1) {
		switch (o) {
		case 'c': corrald_path = optarg; break;
		case 's': sim_path = optarg; break;
		case 'd': snprintf(domains, sizeof(domains), "%s", optarg); break;
		case 't': duration_ms = (unsigned)atoi(optarg); break;
		case 'S': snprintf(scenarios, sizeof(scenarios), "%s", optarg); break;
		case 'w': workers = optarg; break;
		case 'i': io_threads = optarg; break;
		default: abort();
		}
	}
	if (optind != argc)
		bench_usage_error(usage, "unexpected argument '%s'", argv[optind]);
	/* 10,000 simulated monitors need 20,000 descriptors in the simulator. */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	printf("| domains | N | method | connections | in flight | calls/s | p50 µs | p99 µs |\n");
	printf("|---|---|---|---|---|---|---|---|\n");
	for (char *sc = strtok(scenarios, ","); sc; sc = strtok(NULL, ",")) {
		char list[256], *save = NULL;

		snprintf(list, sizeof(list), "%s", domains);
		for (char *d = strtok_r(list, ",", &save); d; d = strtok_r(NULL, ",", &save))
			scenario(sc, (unsigned)atoi(d));
	}
	return 0;
}

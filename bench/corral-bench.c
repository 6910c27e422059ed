/* SPDX-License-Identifier: MIT */
/*
 * corral-bench: how a VM daemon behaves with many VMs, under load and
 * faults, as its clients see it.
 *
 * It drives corrald through its socket (an existing daemon, or a private
 * one it starts), with domains attached to simulated QEMUs (corral-qmp-sim,
 * one process serving thousands of monitors) and optionally real QEMUs
 * (machine none) started by the daemon.  C connections, one thread each,
 * send requests pipelined: closed loop with K in flight each, or open loop
 * on a fixed schedule whose latency counts from each request's due time (a
 * stalled daemon shows as latency, not as fewer requests).  Each thread
 * records latencies in log-linear histograms per operation, phase (before
 * and after the faults) and class of domain (healthy or faulted); the main
 * thread samples the daemon's CPU time, RSS and descriptors from /proc,
 * strikes the faults, and prints a progress line on a terminal.
 *
 * The harness checks itself and exits 1 if a check fails: every request
 * answered, every event in order and none missing, the descriptors of a
 * churned daemon back where they started, a restarted daemon back in full.
 * Timings are reported, never asserted.
 *
 * Targets: corral.  The target is a table of operations (struct target);
 * a libvirt one needs libvirt's client library (see BENCHMARKS.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "bench/corral-bench-opts.h"
#include "common/roff.h"
#include "rpc/rpc.h"

/* ---- configuration ------------------------------------------------------------ */

enum scenario { SC_BOOT_STORM, SC_STEADY, SC_MIXED, SC_HUNG10, SC_CHURN, SC_RESTART };

static struct {
	enum scenario sc;
	const char *sc_name;
	unsigned domains, real, conns, inflight;
	double duration, rate, fault_at;
	double f_hang, f_slow, f_close, f_kill;
	unsigned slow_ms, event_rate, timeout_ms;
	const char *socket, *plot, *target, *corrald, *sim, *machine, *mix;
	const char *daemon_args[16];
	unsigned ndaemon_args;
	bool json, quiet, inflight_set, event_rate_set, hang_set;
	unsigned seed;
} cfg = {
	.domains = 100, .conns = 4, .inflight = 16, .duration = 10, .fault_at = -1,
	.slow_ms = 200, .timeout_ms = 5000, .target = "corral", .seed = 1,
};

/* Bad usage or a failed setup exits 2 (see --help); a failed check exits 1. */
#define die(...) bench_die(2, __VA_ARGS__)
#define warn bench_warn

/* ---- operations and results ---------------------------------------------------- */

enum op {
	OP_INFO, OP_QMP, OP_LIST, OP_STATS, OP_SUSPEND, OP_RESUME, OP_START, OP_DESTROY,
	OP_DEFINE, OP_UNDEFINE, OP_ATTACH, OP_N
};

static const char *const op_names[OP_N] = {
	"info", "qmp", "list", "stats", "suspend", "resume", "start", "destroy",
	"define", "undefine", "attach",
};

/* Error slots: corral's codes 1..15, then the harness's own. */
enum { ERR_LOST = 16, ERR_OTHER = 17, ERR_N = 18 };

static const char *err_name(unsigned code)
{
	if (code == ERR_LOST)
		return "connection-lost";
	if (code == ERR_OTHER)
		return "unknown-error";
	return rpc_err_name((int)code);
}

/* Phase: before (0) and after (1) the faults; class: healthy (0), faulted (1). */
struct series {
	struct hist h;
	uint64_t err[ERR_N];
};

struct results {
	struct series s[OP_N][2][2];
};

static struct results *results_new(void)
{
	struct results *r = malloc(sizeof(*r));

	if (!r)
		die("out of memory");
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				hist_init(&r->s[o][p][c].h);
				memset(r->s[o][p][c].err, 0, sizeof(r->s[o][p][c].err));
			}
	return r;
}

static void results_merge(struct results *dst, const struct results *src)
{
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				hist_merge(&dst->s[o][p][c].h, &src->s[o][p][c].h);
				for (int e = 0; e < ERR_N; e++)
					dst->s[o][p][c].err[e] += src->s[o][p][c].err[e];
			}
}

/* ---- domains --------------------------------------------------------------------- */

enum dom_kind { DK_SIM, DK_REAL };

struct dom {
	char name[48];
	char qmp[108];                  /* DK_SIM: the simulator's socket */
	uint8_t kind, fclass;
	/* Written by the owning worker (index % connections) only. */
	bool paused, running, busy;
	uint32_t lc_ok, lc_err;         /* suspend/resume answered, failed */
	/* Written by the event subscriber only. */
	int64_t last_rtc;               /* -1: no expectation */
	uint8_t last_sr;                /* 0, OP_SUSPEND (STOP seen) or OP_RESUME */
	uint32_t ev_sr;                 /* STOP and RESUME events seen */
};

static struct dom *doms;
static unsigned ndoms;                  /* simulated, then real */
static char prefix[32];                 /* of every domain name of this run */

/* ---- a pipelined, non-blocking corral connection ---------------------------------- */

struct conn {
	int fd;
	char *in;
	size_t in_len, in_off, in_cap;
	struct rpc_scanner *scan;
	msgpack_sbuffer out;
	size_t out_off;
	msgpack_packer pk;
};

static int conn_open(struct conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -errno;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(c->fd);
		c->fd = -1;
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;

		close(c->fd);
		c->fd = -1;
		return e;
	}
	if (!c->scan && rpc_scanner_new(&c->scan) < 0)
		die("out of memory");
	rpc_scanner_reset(c->scan);
	if (!c->in) {
		c->in_cap = 1 << 16;
		c->in = malloc(c->in_cap);
		if (!c->in)
			die("out of memory");
		msgpack_sbuffer_init(&c->out);
		msgpack_packer_init(&c->pk, &c->out, msgpack_sbuffer_write);
	}
	c->in_len = c->in_off = 0;
	msgpack_sbuffer_clear(&c->out);
	c->out_off = 0;
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void conn_free(struct conn *c)
{
	conn_close(c);
	free(c->in);
	rpc_scanner_free(c->scan);
	if (c->in)
		msgpack_sbuffer_destroy(&c->out);
}

/* Send what is queued, as far as the socket takes it.  0, or -1: broken. */
static int conn_flush(struct conn *c)
{
	while (c->out_off < c->out.size) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.size - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		c->out_off += (size_t)n;
	}
	msgpack_sbuffer_clear(&c->out);
	c->out_off = 0;
	return 0;
}

static bool conn_pending(const struct conn *c)
{
	return c->out_off < c->out.size;
}

/* Read what is there.  1: read something, 0: nothing yet, -1: closed or broken. */
static int conn_read(struct conn *c)
{
	ssize_t n;

	if (c->in_off) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len == c->in_cap) {
		c->in_cap *= 2;
		c->in = realloc(c->in, c->in_cap);
		if (!c->in)
			die("out of memory");
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	c->in_len += (size_t)n;
	return 1;
}

/* The next complete frame, or NULL.  Consumed by the next call. -1 in *bad: garbage. */
static const char *conn_frame(struct conn *c, size_t *ret_len, bool *bad)
{
	size_t flen;
	int r;

	if (c->in_off == c->in_len)
		return NULL;
	r = rpc_scanner_scan(c->scan, c->in + c->in_off, c->in_len - c->in_off, &flen);
	if (r < 0) {
		*bad = true;
		return NULL;
	}
	if (r == 0)
		return NULL;
	*ret_len = flen;
	c->in_off += flen;
	return c->in + c->in_off - flen;
}

/* A blocking call for the control paths; the decoded response, or NULL (broken). */
static struct rpc_msg *conn_wait(struct conn *c, uint32_t id)
{
	for (;;) {
		size_t len;
		bool bad = false;
		const char *f;
		struct pollfd pfd = { .fd = c->fd };

		while ((f = conn_frame(c, &len, &bad))) {
			struct rpc_msg *m;

			if (rpc_decode(f, len, &m, NULL, 0) < 0)
				return NULL;
			if (rpc_msg_type(m) == RPC_RESPONSE && rpc_msg_id(m) == id)
				return m;
			rpc_msg_free(m);
		}
		if (bad)
			return NULL;
		if (conn_flush(c) < 0)
			return NULL;
		pfd.events = POLLIN | (conn_pending(c) ? POLLOUT : 0);
		if (poll(&pfd, 1, 60000) <= 0)
			return NULL;
		if (conn_read(c) < 0)
			return NULL;
	}
}

/* ---- the target: how a request is put to the daemon ---------------------------- */

/*
 * A target packs an operation on a domain for its daemon and tells an
 * answer's msgid and error code.  corral is the only one built here; a
 * libvirt target would map the same operations onto virDomain* calls made
 * from K threads per connection (libvirt's API is synchronous).
 */
struct target {
	const char *name;
	/* corral: pack a request for the pipelined worker. */
	void (*pack)(struct conn *c, uint32_t id, enum op op, const struct dom *d,
		     unsigned lane);
	/* A worker thread's body (struct worker *). */
	void *(*worker)(void *arg);
	bool sims;              /* its domains can be simulated QEMUs */
};

static void *worker_main(void *arg);

/* The deadline of the calls being made: --timeout-ms, or a longer one for setup. */
static unsigned cur_timeout_ms;

static void pack_timeout(struct conn *c)
{
	rpc_pack_cstr(&c->pk, "timeout_ms");
	msgpack_pack_uint32(&c->pk, cur_timeout_ms ? cur_timeout_ms : cfg.timeout_ms);
}

static void lane_name(char *buf, size_t len, unsigned lane)
{
	snprintf(buf, len, "%schurn%u", prefix, lane);
}

static void corral_pack(struct conn *c, uint32_t id, enum op op, const struct dom *d,
			unsigned lane)
{
	msgpack_packer *pk = &c->pk;
	char lname[64];
	const char *name = d ? d->name : NULL;

	if (!d && (op == OP_DEFINE || op == OP_START || op == OP_DESTROY || op == OP_UNDEFINE)) {
		lane_name(lname, sizeof(lname), lane);
		name = lname;
	}
	rpc_pack_request_begin(pk, id, op_names[op]);
	switch (op) {
	case OP_LIST:
	case OP_STATS:
		rpc_pack_params_map_begin(pk, 1);
		break;
	case OP_QMP:
		rpc_pack_params_map_begin(pk, 3);
		rpc_pack_cstr(pk, "command");
		rpc_pack_cstr(pk, "{\"execute\": \"query-status\"}");
		break;
	case OP_ATTACH:
		rpc_pack_params_map_begin(pk, 3);
		rpc_pack_cstr(pk, "qmp_socket");
		rpc_pack_cstr(pk, d->qmp);
		break;
	case OP_DEFINE:
		rpc_pack_params_map_begin(pk, 2);
		rpc_pack_cstr(pk, "config");
		msgpack_pack_map(pk, 2);
		rpc_pack_cstr(pk, "name");
		rpc_pack_cstr(pk, name);
		rpc_pack_cstr(pk, "machine");
		rpc_pack_cstr(pk, cfg.machine ? cfg.machine : "none");
		pack_timeout(c);
		return;
	default:
		rpc_pack_params_map_begin(pk, 2);
		break;
	}
	if (op != OP_LIST && op != OP_STATS) {
		rpc_pack_cstr(pk, "name");
		rpc_pack_cstr(pk, name);
	}
	pack_timeout(c);
}

static const struct target target_corral = { "corral", corral_pack, worker_main, true };
static const struct target *target = &target_corral;

/*
 * A response's msgid and error code (0: success) from its first bytes,
 * [1, msgid, error, result]: no decoding on the common path.  -1: not a
 * response (a notification), -2: malformed.
 */
static int peek_response(const char *f, size_t len, uint32_t *ret_id, unsigned *ret_code,
			 size_t *ret_result_off)
{
	const unsigned char *p = (const unsigned char *)f;
	size_t hl;

	if (len < 4 || p[0] != 0x94)
		return -2;
	if (p[1] != 0x01)
		return -1;
	if (p[2] <= 0x7f) {
		*ret_id = p[2];
		hl = 3;
	} else if (p[2] == 0xcc && len > 4) {
		*ret_id = p[3];
		hl = 4;
	} else if (p[2] == 0xcd && len > 5) {
		*ret_id = (uint32_t)p[3] << 8 | p[4];
		hl = 5;
	} else if (p[2] == 0xce && len > 7) {
		*ret_id = (uint32_t)p[3] << 24 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
		hl = 7;
	} else {
		return -2;
	}
	if (p[hl] == 0xc0) {
		*ret_code = 0;
		if (ret_result_off)
			*ret_result_off = hl + 1;
		return 0;
	}
	/* An error: [code, message], code a positive fixint in corral. */
	if (p[hl] == 0x92 && hl + 1 < len && p[hl + 1] >= 1 && p[hl + 1] <= 15)
		*ret_code = p[hl + 1];
	else
		*ret_code = ERR_OTHER;
	return 0;
}

/* ---- processes --------------------------------------------------------------------- */

static char tmpdir[64];
static volatile sig_atomic_t interrupted;       /* ^C */
static pid_t daemon_pid;
static bool private_daemon;
static char rw_path[300];

/* SIGTERM, and SIGKILL after 30 s. */
static void stop_proc(pid_t pid, const char *what)
{
	bool killed;

	if (pid <= 0)
		return;
	bench_stop(pid, &killed);
	if (killed)
		warn("%s did not exit within 30 s of SIGTERM: killed", what);
}

/* A line from fd (blocking), without its newline. */
static void read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n < len - 1 && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
		n++;
	buf[n] = '\0';
}

/* A program next to our own executable (installed), in the build tree, or on PATH. */
static const char *find_prog(const char *name, const char *build_rel)
{
	static char buf[2][PATH_MAX];
	static int k;
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *b = buf[k++ % 2];

	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if (snprintf(b, PATH_MAX, "%s/%s", self, name) < PATH_MAX &&
			    access(b, X_OK) == 0)
				return b;
			if (snprintf(b, PATH_MAX, "%s/%s", self, build_rel) < PATH_MAX &&
			    access(b, X_OK) == 0)
				return b;
		}
	}
	return name;
}

static void start_daemon(void)
{
	char ro[300], log[300];

	snprintf(ro, sizeof(ro), "%s/ro.sock", tmpdir);
	snprintf(log, sizeof(log), "%s/corrald.log", tmpdir);
	daemon_pid = bench_spawn_corrald(cfg.corrald, tmpdir, rw_path, sizeof(rw_path),
					 cfg.daemon_args, cfg.ndaemon_args, true);
	/* Up when the read-only socket exists (the last one made) and answers. */
	for (int i = 0; i < 6000; i++) {
		struct conn c = { .fd = -1 };
		int status;

		if (waitpid(daemon_pid, &status, WNOHANG) == daemon_pid)
			die("corrald exited at start (status 0x%x); see %s", status, log);
		if (access(ro, F_OK) == 0 && conn_open(&c, rw_path) == 0) {
			conn_free(&c);
			return;
		}
		conn_free(&c);
		usleep(5000);
	}
	die("corrald did not start within 30 s (see %s)", log);
}

/* ---- simulators -------------------------------------------------------------------- */

/* Endpoints per simulator: two descriptors each under the 20,000 open files. */
#define SIM_MAX 9000

struct sim {
	pid_t pid;
	int out;                /* its stdout: "ready N", "faulted N" */
	unsigned first, count;  /* domains [first, first + count) */
	bool victim;            /* --kill: killed at the fault time */
	bool faults;            /* has --fault-on-usr1 knobs */
};

static struct sim sims[64];
static unsigned nsims;
static unsigned n_hang, n_slow, n_close, n_kill;

/* Domains: [0, n_kill) in the victim simulator, then hang, slow, close, healthy. */
static void plan_sims(void)
{
	unsigned n = cfg.domains, i = 0;

	n_kill = (unsigned)(cfg.f_kill * n + 0.5);
	n_hang = (unsigned)(cfg.f_hang * n + 0.5);
	n_slow = (unsigned)(cfg.f_slow * n + 0.5);
	n_close = (unsigned)(cfg.f_close * n + 0.5);
	if (n_kill + n_hang + n_slow + n_close > n)
		die("--hang, --slow, --close and --kill add up to more than --domains");
	if (n_kill) {
		for (unsigned f = 0; f < n_kill; f += SIM_MAX)
			sims[nsims++] = (struct sim){ .first = f, .victim = true,
				.count = n_kill - f < SIM_MAX ? n_kill - f : SIM_MAX };
		i = n_kill;
	}
	while (i < n) {
		if (nsims == 64)
			die("too many domains for 64 simulators");
		sims[nsims++] = (struct sim){ .first = i,
					      .count = n - i < SIM_MAX ? n - i : SIM_MAX };
		i += sims[nsims - 1].count;
	}
}

/* Append "--fault-on-usr1 a-b:KNOB" for the part of [lo, hi) inside sim s. */
static void sim_range_arg(char **argv, int *n, char *store, size_t *used, const struct sim *s,
			  unsigned lo, unsigned hi, const char *knob)
{
	unsigned a = lo > s->first ? lo : s->first;
	unsigned b = hi < s->first + s->count ? hi : s->first + s->count;

	if (a >= b)
		return;
	argv[(*n)++] = "--fault-on-usr1";
	argv[(*n)++] = store + *used;
	*used += (size_t)sprintf(store + *used, "%u-%u:%s", a - s->first, b - 1 - s->first,
				 knob) + 1;
}

static void start_sims(void)
{
	unsigned ev_doms = 0, ev_each = 0;

	if (cfg.event_rate && cfg.domains) {
		ev_doms = cfg.event_rate < cfg.domains ? cfg.event_rate : cfg.domains;
		ev_each = (cfg.event_rate + ev_doms - 1) / ev_doms;
	}
	for (unsigned k = 0; k < nsims; k++) {
		struct sim *s = &sims[k];
		char dir[80], count[16], line[64], store[1024], slow[32], evk[48];
		char *argv[32];
		size_t used = 0;
		int n = 0;
		/* The last ev_doms domains send events (spread over the simulators). */
		unsigned ev_lo = cfg.domains - ev_doms;

		snprintf(dir, sizeof(dir), "%s/sim%u", tmpdir, k);
		snprintf(count, sizeof(count), "%u", s->count);
		argv[n++] = (char *)cfg.sim;
		argv[n++] = "--dir";
		argv[n++] = dir;
		argv[n++] = "--count";
		argv[n++] = count;
		if (ev_doms) {
			unsigned a = ev_lo > s->first ? ev_lo : s->first;

			if (a < s->first + s->count) {
				snprintf(evk, sizeof(evk), "%u-%u:event-storm=%u", a - s->first,
					 s->count - 1, ev_each);
				argv[n++] = "--fault";
				argv[n++] = evk;
			}
		}
		if (!s->victim) {
			unsigned h0 = n_kill, s0 = h0 + n_hang, c0 = s0 + n_slow, e0 = c0 + n_close;

			snprintf(slow, sizeof(slow), "delay-ms=%u", cfg.slow_ms);
			sim_range_arg(argv, &n, store, &used, s, h0, s0, "hang=after-caps");
			sim_range_arg(argv, &n, store, &used, s, s0, c0, slow);
			sim_range_arg(argv, &n, store, &used, s, c0, e0, "disconnect-after=1");
			s->faults = used > 0;
		}
		argv[n] = NULL;
		s->pid = bench_spawn(argv, &s->out, NULL, true);
		read_line(s->out, line, sizeof(line));
		if (strncmp(line, "ready", 5))
			die("%s did not start: '%s'", cfg.sim, line);
		for (unsigned i = s->first; i < s->first + s->count; i++) {
			snprintf(doms[i].qmp, sizeof(doms[i].qmp), "%s/vm%u.qmp", dir,
				 i - s->first);
			doms[i].fclass = s->victim || (i >= n_kill && i < n_kill + n_hang + n_slow +
								   n_close);
		}
	}
}

/* ---- workers ------------------------------------------------------------------------ */

/* What a worker does: a list of requests (setup, teardown), or load until stop. */
enum wmode { W_BATCH, W_LOAD, W_CHURN };

struct item {
	enum op op;
	unsigned dom;
};

struct slot {
	uint64_t sched;
	enum op op;
	int dom;                /* -1: none, or a churn lane */
	uint8_t phase;
	bool used;
	/* W_CHURN: the lane's next step */
	enum op lane_next;
};

struct worker {
	pthread_t th;
	unsigned idx;
	enum wmode mode;
	struct results *res;
	struct conn c;
	struct slot *slots;     /* msgid i + 1 is slot i */
	unsigned nslots, inflight;
	unsigned *free_ids;
	unsigned nfree;
	/* W_BATCH */
	const struct item *items;
	size_t nitems, next_item;
	/* counters for the progress line */
	_Atomic uint64_t done, errors;
	uint64_t unanswered, reconnects, stats_rounds;
	unsigned seed;
};

static struct worker *workers;
/*
 * corral: one worker per connection, K requests in flight on it.  libvirt:
 * its API is synchronous, so K workers per connection, one call each.
 */
static unsigned nworkers;
static atomic_bool stop_load;           /* set by the main thread at the end */
static uint64_t load_start_ns, load_stop_ns;
/*
 * When the faults struck (the daemon was killed, the simulators confirmed):
 * requests due from then on are "after".  UINT64_MAX while they are still
 * to come; 0 in a run without faults.  Written by the main thread.
 */
static _Atomic uint64_t fault_ns;
static unsigned mix[OP_N];              /* per-mille weights of W_LOAD */
static unsigned mix_total;

static double frand(struct worker *w)
{
	return (double)rand_r(&w->seed) / ((double)RAND_MAX + 1);
}

/*
 * A domain for a lifecycle job, or -1.  A domain that jobs change has one
 * owner among the workers whichever operation picks it (suspend draws from
 * all, start from the real ones only): the owner alone reads and writes its
 * busy, running and paused.
 */
static int pick_owned(struct worker *w, unsigned lo, unsigned hi, bool need_running)
{
	for (int tries = 0; tries < 8; tries++) {
		long d = bench_owned_index(lo, hi, w->idx, nworkers, frand(w));

		if (d < 0)
			return -1;
		if (doms[d].busy || (need_running && !doms[d].running))
			continue;
		return (int)d;
	}
	return -1;
}

/* Choose the next operation of a W_LOAD worker. */
static void choose(struct worker *w, enum op *ret_op, int *ret_dom)
{
	unsigned r = (unsigned)(frand(w) * mix_total), acc = 0;
	enum op op = OP_INFO;
	int d;

	for (int o = 0; o < OP_N; o++) {
		acc += mix[o];
		if (r < acc) {
			op = (enum op)o;
			break;
		}
	}
	switch (op) {
	case OP_LIST:
	case OP_STATS:
		*ret_op = op;
		*ret_dom = -1;
		return;
	case OP_SUSPEND:
		d = pick_owned(w, 0, ndoms, true);
		if (d >= 0) {
			*ret_op = doms[d].paused ? OP_RESUME : OP_SUSPEND;
			*ret_dom = d;
			return;
		}
		break;
	case OP_START:
		d = pick_owned(w, cfg.domains, ndoms, false);
		if (d >= 0) {
			*ret_op = doms[d].running ? OP_DESTROY : OP_START;
			*ret_dom = d;
			return;
		}
		break;
	default:
		break;
	}
	*ret_op = op == OP_QMP ? OP_QMP : OP_INFO;
	*ret_dom = (int)(frand(w) * ndoms);
}

static void issue(struct worker *w, enum op op, int dom, uint64_t sched, enum op lane_next)
{
	unsigned id = w->free_ids[--w->nfree];
	struct slot *s = &w->slots[id];

	*s = (struct slot){ .sched = sched, .op = op, .dom = dom, .used = true,
			    .phase = sched >= atomic_load_explicit(&fault_ns, memory_order_relaxed),
			    .lane_next = lane_next };
	if (dom >= 0 && w->mode != W_CHURN && (op >= OP_SUSPEND && op <= OP_DESTROY))
		doms[dom].busy = true;
	target->pack(&w->c, id + 1, op, w->mode == W_CHURN ? NULL : dom >= 0 ? &doms[dom] : NULL,
		     w->mode == W_CHURN ? (unsigned)dom : 0);
	w->inflight++;
}

/* The churn cycle: define, start, destroy, undefine. */
static enum op churn_next(enum op op)
{
	switch (op) {
	case OP_DEFINE: return OP_START;
	case OP_START: return OP_DESTROY;
	case OP_DESTROY: return OP_UNDEFINE;
	default: return OP_DEFINE;
	}
}

static void record(struct worker *w, struct slot *s, unsigned code, uint64_t now)
{
	int cls = s->dom >= 0 && w->mode != W_CHURN ? doms[s->dom].fclass : 0;
	struct series *se = &w->res->s[s->op][s->phase][cls];

	hist_add(&se->h, now > s->sched ? now - s->sched : 0);
	if (code)
		se->err[code]++;
	atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
	if (code)
		atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
}

/* Record an answer, and what it changed in the domain (its owner's view). */
static void finish(struct worker *w, struct slot *s, unsigned code, uint64_t now)
{
	record(w, s, code, now);
	if (s->dom >= 0 && w->mode != W_CHURN) {
		struct dom *d = &doms[s->dom];

		switch (s->op) {
		case OP_SUSPEND:
		case OP_RESUME:
			d->busy = false;
			if (code) {
				d->lc_err++;
			} else {
				d->lc_ok++;
				d->paused = s->op == OP_SUSPEND;
			}
			break;
		case OP_START:
		case OP_DESTROY:
			d->busy = false;
			if (!code) {
				d->running = s->op == OP_START;
				d->paused = false;
			}
			break;
		default:
			break;
		}
	}
}

/* After a churn step: the lane's next one. */
static enum op churn_after(const struct slot *s, unsigned code)
{
	if (!code)
		return s->lane_next;
	/* After a failure, put the lane back on its feet: destroy, undefine, define. */
	switch (s->op) {
	case OP_DEFINE:
		return code == RPC_ERR_EXISTS ? OP_DESTROY : OP_DEFINE;
	case OP_START:
		return OP_DESTROY;
	case OP_DESTROY:
		return OP_UNDEFINE;
	default:
		return code == RPC_ERR_NO_SUCH_DOMAIN ? OP_DEFINE : OP_DESTROY;
	}
}

static void complete(struct worker *w, unsigned id, unsigned code, uint64_t now)
{
	struct slot *s = &w->slots[id];

	finish(w, s, code, now);
	s->used = false;
	w->free_ids[w->nfree++] = id;
	w->inflight--;
	if (w->mode == W_CHURN) {
		enum op next = churn_after(s, code);

		/* A lane stops only after its undefine: the daemon ends as it began. */
		if (next == OP_DEFINE && atomic_load(&stop_load))
			return;
		issue(w, next, s->dom, now, churn_next(next));
	}
}

/* Every request in flight is lost (the connection broke). */
static void lose_all(struct worker *w, uint64_t now)
{
	for (unsigned i = 0; i < w->nslots; i++)
		if (w->slots[i].used)
			complete(w, i, ERR_LOST, now);
}

/*
 * The packed value of key in the map at p (len bytes), found by skipping
 * the other members: a stats answer of 10,000 domains is megabytes, and
 * decoding it into objects only to read `more` made the harness use as much
 * CPU as the daemon (hung-10 at 10,000).  The frame scanner has accepted
 * these bytes already, so the skip checks no limit again.
 * False when p is not a map or has no such key.
 */
static bool map_member(const char *p, size_t len, const char *key, const char **ret,
		       size_t *ret_len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t klen = strlen(key), off, n, end;

	if (!len || klen > 31)
		return false;
	if (u[0] >= 0x80 && u[0] <= 0x8f) {
		n = u[0] & 0x0f;
		off = 1;
	} else if (u[0] == 0xde && len >= 3) {
		n = (size_t)u[1] << 8 | u[2];
		off = 3;
	} else {
		return false;
	}
	while (n--) {
		bool match;

		end = bench_msgpack_skip(u, len, off, 1);
		if (!end)
			return false;
		/* The key as packed: a fixstr header and its bytes. */
		match = end - off == klen + 1 && u[off] == (0xa0 | klen) &&
			!memcmp(p + off + 1, key, klen);
		off = end;
		end = bench_msgpack_skip(u, len, off, 1);
		if (!end)
			return false;
		if (match) {
			*ret = p + off;
			*ret_len = end - off;
			return true;
		}
		off = end;
	}
	return false;
}

/*
 * A stats answer that could not hold every domain names the rest in
 * `more` (docs/API.md): ask for them on the same msgid, so that the
 * operation's latency is that of the whole bulk read.  True if asked.
 * result: the answer's result, len bytes.
 */
static bool stats_more(struct worker *w, uint32_t id, const char *result, size_t len)
{
	const unsigned char *m;
	msgpack_packer *pk = &w->c.pk;
	const char *more;
	size_t mlen;

	if (!map_member(result, len, "more", &more, &mlen))
		return false;
	/* A non-empty array (fixarray or array16/32 with a count), else done. */
	m = (const unsigned char *)more;
	if (!((m[0] > 0x90 && m[0] <= 0x9f) ||
	      (m[0] == 0xdc && mlen >= 3 && (m[1] | m[2])) ||
	      (m[0] == 0xdd && mlen >= 5 && (m[1] | m[2] | m[3] | m[4]))))
		return false;
	rpc_pack_request_begin(pk, id, "stats");
	rpc_pack_params_map_begin(pk, 2);
	rpc_pack_cstr(pk, "names");
	pk->callback(pk->data, more, mlen);     /* the names as they came */
	pack_timeout(&w->c);
	w->stats_rounds++;
	return true;
}

static void handle_frames(struct worker *w, bool *broken)
{
	const char *f;
	size_t len;
	bool bad = false;

	while ((f = conn_frame(&w->c, &len, &bad))) {
		uint32_t id = 0;
		unsigned code = 0;
		size_t result_off = 0;
		int r = peek_response(f, len, &id, &code, &result_off);

		if (r == -1)
			continue;       /* a notification */
		if (r < 0 || id < 1 || id > w->nslots || !w->slots[id - 1].used) {
			warn("connection %u: unexpected response (msgid %u)", w->idx, id);
			*broken = true;
			return;
		}
		if (!code && w->slots[id - 1].op == OP_STATS &&
		    stats_more(w, id, f + result_off, len - result_off))
			continue;       /* the rest of the answer is asked for: not done yet */
		complete(w, id - 1, code, bench_now_ns());
	}
	if (bad) {
		warn("connection %u: malformed data from the daemon", w->idx);
		*broken = true;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	double interval = 0;
	uint64_t next_sched = 0, drain_ns = ((uint64_t)cfg.timeout_ms + 10000) * 1000000ULL;
	bool stopping = false;

	w->c.fd = -1;
	if (conn_open(&w->c, rw_path) < 0)
		die("connect %s: %s", rw_path, strerror(errno));
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	w->free_ids = malloc(w->nslots * sizeof(*w->free_ids));
	if (!w->slots || !w->free_ids)
		die("out of memory");
	for (unsigned i = 0; i < w->nslots; i++)
		w->free_ids[w->nfree++] = w->nslots - 1 - i;
	if (w->mode == W_LOAD && cfg.rate > 0) {
		interval = 1e9 * cfg.conns / cfg.rate;
		next_sched = load_start_ns + (uint64_t)(interval * w->idx / cfg.conns);
	}
	if (w->mode == W_CHURN)
		for (unsigned i = 0; i < w->nslots; i++)
			issue(w, OP_DEFINE, (int)(w->idx * w->nslots + i), load_start_ns,
			      OP_START);

	for (;;) {
		uint64_t now = bench_now_ns();
		struct pollfd pfd = { .fd = w->c.fd, .events = POLLIN };
		int timeout = 50;
		bool broken = false;

		if (!stopping && (w->mode == W_BATCH ? w->next_item == w->nitems
						     : atomic_load(&stop_load))) {
			stopping = true;
		}
		if (stopping && !w->inflight)
			break;
		if (stopping && w->mode != W_BATCH && now > load_stop_ns + drain_ns) {
			w->unanswered += w->inflight;
			break;
		}
		if (w->mode == W_BATCH && interrupted)
			w->next_item = w->nitems;       /* ^C: send no more */
		if (w->mode == W_BATCH) {
			while (w->nfree && w->next_item < w->nitems) {
				const struct item *it = &w->items[w->next_item++];

				issue(w, it->op, (int)it->dom, bench_now_ns(), OP_N);
			}
		} else if (w->mode == W_LOAD && !stopping) {
			if (interval > 0) {
				while (w->nfree && next_sched <= now) {
					enum op op;
					int d;

					choose(w, &op, &d);
					issue(w, op, d, next_sched, OP_N);
					next_sched += (uint64_t)interval;
				}
				if (next_sched > now) {
					uint64_t ms = (next_sched - now) / 1000000 + 1;

					timeout = ms < 50 ? (int)ms : 50;
				}
			} else {
				while (w->nfree) {
					enum op op;
					int d;

					choose(w, &op, &d);
					issue(w, op, d, bench_now_ns(), OP_N);
				}
			}
		}
		if (conn_flush(&w->c) < 0)
			broken = true;
		if (!broken) {
			pfd.events |= conn_pending(&w->c) ? POLLOUT : 0;
			if (w->nfree && w->mode == W_LOAD && !stopping && interval > 0 &&
			    next_sched <= bench_now_ns())
				timeout = 0;
			poll(&pfd, 1, timeout);
			if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
				int r;

				while ((r = conn_read(&w->c)) > 0)
					handle_frames(w, &broken);
				if (r < 0)
					broken = true;
			}
		}
		if (broken) {
			/* The daemon went away (restart): what was in flight is lost; reconnect. */
			lose_all(w, bench_now_ns());
			conn_close(&w->c);
			while (conn_open(&w->c, rw_path) < 0) {
				if (atomic_load(&stop_load) || w->mode == W_BATCH) {
					if (w->mode == W_BATCH) {
						w->unanswered += w->nitems - w->next_item;
						w->next_item = w->nitems;
					}
					goto out;
				}
				usleep(2000);
			}
			w->reconnects++;
		}
	}
out:
	conn_free(&w->c);
	free(w->slots);
	free(w->free_ids);
	return NULL;
}

static struct results *total;
static uint64_t total_unanswered, total_stats_rounds;

/* Run C workers of one mode to their end; merge their results into total. */
static void run_workers(enum wmode mode, const struct item *items, size_t nitems,
			unsigned depth)
{
	workers = calloc(nworkers, sizeof(*workers));
	if (!workers)
		die("out of memory");
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];

		w->idx = i;
		w->mode = mode;
		w->res = results_new();
		w->nslots = depth;
		w->seed = cfg.seed * 7919 + i;
		if (mode == W_BATCH) {
			/* Contiguous shares keep each domain's items on one connection, in order. */
			size_t a = nitems * i / nworkers, b = nitems * (i + 1) / nworkers;

			w->items = items + a;
			w->nitems = b - a;
		}
		pthread_create(&w->th, NULL, target->worker, w);
	}
}

static double join_workers(struct results *into, uint64_t t0)
{
	for (unsigned i = 0; i < nworkers; i++) {
		pthread_join(workers[i].th, NULL);
		results_merge(into, workers[i].res);
		total_unanswered += workers[i].unanswered;
		total_stats_rounds += workers[i].stats_rounds;
		free(workers[i].res);
	}
	free(workers);
	workers = NULL;
	return (double)(bench_now_ns() - t0) / 1e9;
}

/* Run items to the end on C connections, K in flight each; seconds taken. */
static double batch(const struct item *items, size_t n, struct results *into)
{
	uint64_t t0 = bench_now_ns();

	double t;

	if (!n)
		return 0;
	load_stop_ns = 0;
	/* A storm of thousands takes its time: its calls get 10 minutes, not --timeout-ms. */
	cur_timeout_ms = cfg.timeout_ms > 600000 ? cfg.timeout_ms : 600000;
	/*
	 * 64 to 512 in flight per connection: an open loop's K (4096 by
	 * default) would pass corrald's client_inflight_max (1024), and the
	 * excess attaches end "busy" at once.
	 */
	run_workers(W_BATCH, items, n, cfg.inflight < 64 ? 64 : cfg.inflight > 512 ? 512 : cfg.inflight);
	t = join_workers(into, t0);
	cur_timeout_ms = 0;
	return t;
}

/* ---- the libvirt target -------------------------------------------------------- */

#ifdef HAVE_LIBVIRT
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

/*
 * The same operations through libvirt's C API.  Its calls are synchronous:
 * each of the C connections (virConnectPtr, thread-safe) is shared by K
 * worker threads, one call in flight each; open loop, each thread takes the
 * connection's next due time, sleeps until it, and counts latency from it.
 * No simulated QEMUs (libvirt cannot adopt a QMP socket): the domains are
 * real QEMUs of libvirt's QEMU driver (TCG, machine pc with no disk: libvirt
 * refuses machine none, so the guest is SeaBIOS finding nothing to boot and
 * halting), or the test driver's (test:///default: no QEMU, no daemon).
 */
static virConnectPtr lv_conns[256];
static virDomainPtr *lv_doms;           /* [connection * ndoms + domain], looked up once */
static _Atomic uint64_t lv_seq[256];
static bool lv_test;

static void lv_quiet(void *data, virErrorPtr e)
{
	(void)data;
	(void)e;
}

/* A libvirt error as one of corral's codes, so both tables read alike. */
static unsigned lv_code(void)
{
	virErrorPtr e = virGetLastError();

	if (!e)
		return ERR_OTHER;
	switch (e->code) {
	case VIR_ERR_NO_DOMAIN: return RPC_ERR_NO_SUCH_DOMAIN;
	case VIR_ERR_OPERATION_INVALID: return RPC_ERR_BAD_STATE;
	case VIR_ERR_OPERATION_TIMEOUT: return RPC_ERR_TIMEOUT;
	case VIR_ERR_AGENT_UNRESPONSIVE: return RPC_ERR_MONITOR_BROKEN;
	case VIR_ERR_INVALID_ARG: return RPC_ERR_INVALID_ARGUMENT;
	case VIR_ERR_OPERATION_DENIED: return RPC_ERR_PERMISSION;
	case VIR_ERR_SYSTEM_ERROR: return RPC_ERR_INTERNAL;
	case VIR_ERR_OPERATION_FAILED:
		return e->domain == VIR_FROM_QEMU ? RPC_ERR_QEMU : ERR_OTHER;
	case VIR_ERR_DOM_EXIST: return RPC_ERR_EXISTS;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_RPC: return ERR_LOST;
	default: return ERR_OTHER;
	}
}

static void lv_xml(char *buf, size_t len, const char *name)
{
	if (lv_test)
		snprintf(buf, len, "<domain type='test'><name>%s</name><memory>8192</memory>"
			 "<os><type>hvm</type></os></domain>", name);
	else
		snprintf(buf, len, "<domain type='qemu'><name>%s</name><memory unit='MiB'>16"
			 "</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='%s'>hvm"
			 "</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
			 "<controller type='usb' model='none'/><memballoon model='none'/>"
			 "</devices></domain>", name, cfg.machine ? cfg.machine : "pc");
}

static virDomainPtr lv_dom(unsigned c, unsigned d)
{
	virDomainPtr *p = &lv_doms[(size_t)c * ndoms + d];

	if (!*p)
		*p = virDomainLookupByName(lv_conns[c], doms[d].name);
	return *p;
}

/* One operation, synchronously: 0 or a code. */
static unsigned lv_do(unsigned c, enum op op, int d, virDomainPtr *lane_dom, const char *lane)
{
	virConnectPtr conn = lv_conns[c];
	virDomainPtr dom = NULL;
	char xml[1024];
	int r = -1;

	if (op == OP_DEFINE) {
		lv_xml(xml, sizeof(xml), lane ? lane : doms[d].name);
		dom = virDomainDefineXML(conn, xml);
		if (!dom)
			return lv_code();
		if (lane_dom)
			*lane_dom = dom;
		else
			virDomainFree(dom);
		return 0;
	}
	if (op == OP_LIST) {
		virDomainPtr *all = NULL;
		int n = virConnectListAllDomains(conn, &all, 0);

		for (int i = 0; i < n; i++)
			virDomainFree(all[i]);
		free(all);
		return n < 0 ? lv_code() : 0;
	}
	if (op == OP_STATS) {
		virDomainStatsRecordPtr *recs = NULL;
		int n = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_STATE |
						    VIR_DOMAIN_STATS_CPU_TOTAL |
						    VIR_DOMAIN_STATS_BALLOON |
						    VIR_DOMAIN_STATS_BLOCK, &recs, 0);

		if (n >= 0)
			virDomainStatsRecordListFree(recs);
		return n < 0 ? lv_code() : 0;
	}
	dom = lane_dom ? *lane_dom : lv_dom(c, (unsigned)d);
	if (!dom)
		return lv_code();
	switch (op) {
	case OP_INFO: {
		virDomainInfo info;

		r = virDomainGetInfo(dom, &info);
		break;
	}
	case OP_QMP: {
		char *out = NULL;

		r = virDomainQemuMonitorCommand(dom, "{\"execute\": \"query-status\"}", &out, 0);
		free(out);
		break;
	}
	case OP_SUSPEND: r = virDomainSuspend(dom); break;
	case OP_RESUME: r = virDomainResume(dom); break;
	case OP_START: r = virDomainCreate(dom); break;
	case OP_DESTROY: r = virDomainDestroy(dom); break;
	case OP_UNDEFINE:
		r = virDomainUndefine(dom);
		if (r == 0 && lane_dom) {
			virDomainFree(dom);
			*lane_dom = NULL;
		}
		break;
	default:
		break;
	}
	return r < 0 ? lv_code() : 0;
}

static void *lv_worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned c = w->idx / cfg.inflight;
	double interval = cfg.rate > 0 ? 1e9 * cfg.conns / cfg.rate : 0;
	struct slot s = { .dom = -1 };
	virDomainPtr lane_dom = NULL;
	char lane[64];

	if (w->mode == W_BATCH) {
		for (size_t i = 0; i < w->nitems; i++) {
			unsigned code;

			s = (struct slot){ .op = w->items[i].op, .dom = (int)w->items[i].dom,
					   .sched = bench_now_ns() };
			code = lv_do(c, s.op, s.dom, NULL, NULL);
			finish(w, &s, code, bench_now_ns());
		}
		return NULL;
	}
	if (w->mode == W_CHURN) {
		lane_name(lane, sizeof(lane), w->idx);
		s = (struct slot){ .op = OP_DEFINE, .dom = (int)w->idx, .lane_next = OP_START };
		for (;;) {
			unsigned code;

			s.sched = bench_now_ns();
			s.phase = s.sched >= atomic_load_explicit(&fault_ns, memory_order_relaxed);
			code = lv_do(c, s.op, -1, &lane_dom, lane);
			record(w, &s, code, bench_now_ns());
			s.op = churn_after(&s, code);
			s.lane_next = churn_next(s.op);
			if (s.op == OP_DEFINE && atomic_load(&stop_load))
				break;
		}
		return NULL;
	}
	while (!atomic_load(&stop_load)) {
		enum op op;
		int d;
		unsigned code;
		uint64_t now = bench_now_ns();

		if (interval > 0) {
			uint64_t k = atomic_fetch_add(&lv_seq[c], 1);
			uint64_t due = load_start_ns + (uint64_t)(interval * c / cfg.conns) +
				       (uint64_t)(interval * (double)k);

			if (due > now) {
				struct timespec ts = { .tv_sec = (time_t)(due / 1000000000ULL),
						       .tv_nsec = (long)(due % 1000000000ULL) };

				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			}
			now = due;
			if (atomic_load(&stop_load))
				break;
		}
		choose(w, &op, &d);
		if (d >= 0 && op >= OP_SUSPEND && op <= OP_DESTROY)
			doms[d].busy = true;
		s = (struct slot){ .op = op, .dom = d, .sched = now,
				   .phase = now >= atomic_load_explicit(&fault_ns,
									  memory_order_relaxed) };
		code = lv_do(c, op, d, NULL, NULL);
		finish(w, &s, code, bench_now_ns());
	}
	return NULL;
}

static const struct target target_libvirt = { "libvirt", NULL, lv_worker_main, false };

/* The pid serving a libvirt URI's UNIX socket, from its peer credentials; 0 if none. */
static pid_t lv_daemon_pid(const char *uri)
{
	const char *p = strstr(uri, "socket=");
	char path[108];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int fd;

	if (p)
		snprintf(path, sizeof(path), "%.*s", (int)strcspn(p + 7, "&"), p + 7);
	else if (strstr(uri, "/system"))
		snprintf(path, sizeof(path), "/var/run/libvirt/libvirt-sock");
	else
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	close(fd);
	return cr.pid;
}

static void lv_open(void)
{
	const char *uri = cfg.target + strlen("libvirt:");

	/* libvirt:URI; "libvirt:///system" is short for qemu:///system. */
	if (!strncmp(uri, "///", 3))
		uri = "qemu:///system";
	lv_test = !strncmp(uri, "test:", 5);
	virSetErrorFunc(NULL, lv_quiet);
	for (unsigned c = 0; c < cfg.conns; c++) {
		lv_conns[c] = virConnectOpen(uri);
		if (!lv_conns[c])
			die("virConnectOpen %s: %s", uri,
			    virGetLastErrorMessage() ? virGetLastErrorMessage() : "failed");
	}
	daemon_pid = lv_test ? 0 : lv_daemon_pid(uri);
	target = &target_libvirt;
	snprintf(prefix, sizeof(prefix), "cb%d-", (int)getpid());
}

static void lv_close(void)
{
	if (lv_doms)
		for (size_t i = 0; i < (size_t)cfg.conns * ndoms; i++)
			if (lv_doms[i])
				virDomainFree(lv_doms[i]);
	free(lv_doms);
	for (unsigned c = 0; c < cfg.conns; c++)
		if (lv_conns[c])
			virConnectClose(lv_conns[c]);
}
#endif

/* ---- control connection -------------------------------------------------------- */

static struct conn ctl = { .fd = -1 };
static uint32_t ctl_id;

/* One call on the control connection; names: its `names` parameter (NULL: none). */
static struct rpc_msg *ctl_call_names(const char *method, const msgpack_object *names)
{
	struct rpc_msg *m;

	if (ctl.fd < 0 && conn_open(&ctl, rw_path) < 0)
		return NULL;
	rpc_pack_request_begin(&ctl.pk, ++ctl_id, method);
	if (!strcmp(method, "list")) {
		/* Pages: one array may not hold every domain. */
		rpc_pack_params_map_begin(&ctl.pk, names ? 2 : 1);
		rpc_pack_cstr(&ctl.pk, "paged");
		msgpack_pack_true(&ctl.pk);
	} else {
		rpc_pack_params_map_begin(&ctl.pk, names ? 1 : 0);
	}
	if (names) {
		rpc_pack_cstr(&ctl.pk, "names");
		msgpack_pack_object(&ctl.pk, *names);
	}
	m = conn_wait(&ctl, ctl_id);
	if (!m)
		conn_close(&ctl);
	return m;
}

static struct rpc_msg *ctl_call(const char *method)
{
	return ctl_call_names(method, NULL);
}

/*
 * One `list` of the given domains (pending[0..npending), indexes into
 * doms[]), or of every domain when npending is 0.  For each of ours in the
 * answer: listed[i] set, and up[i] once its monitor is "ok".  Pages are
 * followed through `more` (the names that did not fit in one message).
 * -1: no answer.
 */
static int list_some(const unsigned *pending, unsigned npending, bool *listed, bool *up)
{
	size_t plen = strlen(prefix);
	struct rpc_msg *m;

	if (ctl.fd < 0 && conn_open(&ctl, rw_path) < 0)
		return -1;
	rpc_pack_request_begin(&ctl.pk, ++ctl_id, "list");
	rpc_pack_params_map_begin(&ctl.pk, npending ? 2 : 1);
	rpc_pack_cstr(&ctl.pk, "paged");
	msgpack_pack_true(&ctl.pk);
	if (npending) {
		rpc_pack_cstr(&ctl.pk, "names");
		msgpack_pack_array(&ctl.pk, npending);
		for (unsigned k = 0; k < npending; k++)
			rpc_pack_cstr(&ctl.pk, doms[pending[k]].name);
	}
	m = conn_wait(&ctl, ctl_id);
	if (!m) {
		conn_close(&ctl);
		return -1;
	}
	while (m) {
		const msgpack_object *r = rpc_msg_result(m), *page, *more;
		struct rpc_msg *next = NULL;

		page = r ? rpc_map_get(r, "domains") : NULL;
		more = r ? rpc_map_get(r, "more") : NULL;
		if (rpc_msg_error(m) || !page || page->type != MSGPACK_OBJECT_ARRAY) {
			rpc_msg_free(m);
			return -1;
		}
		for (uint32_t i = 0; i < page->via.array.size; i++) {
			const msgpack_object *e = &page->via.array.ptr[i], *mon;
			const char *s;
			char *end;
			size_t len;
			unsigned long idx;

			if (rpc_obj_str(rpc_map_get(e, "name"), &s, &len) < 0 || len <= plen ||
			    len >= 32 || memcmp(s, prefix, plen) || !memcmp(s + plen, "churn", 5))
				continue;
			{
				char num[32];

				memcpy(num, s + plen, len - plen);
				num[len - plen] = '\0';
				idx = strtoul(num, &end, 10);
				if (*end || idx >= ndoms)
					continue;
			}
			listed[idx] = true;
			mon = rpc_map_get(e, "monitor");
			if (mon && mon->type == MSGPACK_OBJECT_MAP)
				mon = rpc_map_get(mon, "state");
			if (rpc_obj_str(mon, &s, &len) == 0 && len == 2 && !memcmp(s, "ok", 2))
				up[idx] = true;
		}
		/* A page that holds nothing but names more: no progress, stop there. */
		if (more && more->type == MSGPACK_OBJECT_ARRAY && more->via.array.size &&
		    page->via.array.size) {
			next = ctl_call_names("list", more);
			if (!next) {
				rpc_msg_free(m);
				return -1;
			}
		}
		rpc_msg_free(m);
		m = next;
	}
	return 0;
}

/*
 * The count of monitors "ok" in daemon.info (every domain's, ours or not),
 * polled every 5 ms on a connection of its own while wait_all_up lists:
 * it costs the daemon next to nothing where a list of 10,000 costs it tens
 * of milliseconds (and under load takes a quarter of a second or more to
 * come back).  at_ns: when the count first reached n (0: not yet);
 * failed: no count to be had (a daemon without it), the lists alone tell.
 */
struct mon_count {
	unsigned n;
	atomic_bool stop, failed;
	_Atomic uint64_t at_ns;
	pthread_t th;
};

static void *mon_count_main(void *arg)
{
	struct mon_count *mc = arg;
	struct conn c = { .fd = -1 };
	uint32_t id = 0;

	while (!atomic_load(&mc->stop)) {
		struct rpc_msg *m;
		uint64_t ok = 0;
		int r;

		if (c.fd < 0 && conn_open(&c, rw_path) < 0) {
			usleep(5000);
			continue;
		}
		rpc_pack_request_begin(&c.pk, ++id, "daemon.info");
		rpc_pack_params_map_begin(&c.pk, 0);
		m = conn_wait(&c, id);
		if (!m) {
			conn_close(&c);
			usleep(5000);
			continue;
		}
		r = rpc_obj_u64(rpc_map_get(rpc_map_get(rpc_msg_result(m), "monitors"), "ok"),
				&ok);
		rpc_msg_free(m);
		if (r < 0) {
			atomic_store(&mc->failed, true);
			break;
		}
		if (ok >= mc->n) {
			atomic_store(&mc->at_ns, bench_now_ns());
			break;
		}
		usleep(5000);
	}
	conn_free(&c);
	return NULL;
}

/*
 * Wait (at most max_s) until n of our domains are listed and have had
 * their monitor up.  Every domain is listed first (the time that takes is
 * when every domain answers); meanwhile a thread polls daemon.info's count
 * of monitors up.  Once the count has reached n, a list of those of ours
 * not yet seen up confirms it, and the time is the count's.  Without a
 * count, or with one the list does not bear out (other domains counted),
 * the pending ones are listed every 20 ms until each is seen up.
 */
static double wait_all_up(unsigned n, double max_s, double *ret_listed_s)
{
	uint64_t t0 = bench_now_ns();
	bool *listed = calloc(ndoms, sizeof(*listed)), *up = calloc(ndoms, sizeof(*up));
	unsigned *pending = calloc(ndoms, sizeof(*pending)), npending = 0;
	struct mon_count mc = { .n = n };
	bool counting, started;
	double ret = -1;

	if (!listed || !up || !pending)
		die("out of memory");
	started = counting = pthread_create(&mc.th, NULL, mon_count_main, &mc) == 0;
	*ret_listed_s = -1;
	while ((double)(bench_now_ns() - t0) / 1e9 < max_s) {
		unsigned nlisted = 0, nup = 0;
		uint64_t at = 0;
		double t;

		if (*ret_listed_s >= 0 && counting) {
			/* Listed: the count says when to look. */
			at = atomic_load(&mc.at_ns);
			if (!at && !atomic_load(&mc.failed)) {
				usleep(2000);
				continue;
			}
		}
		if (list_some(pending, npending, listed, up) < 0) {
			usleep(20000);
			continue;
		}
		t = (double)(bench_now_ns() - t0) / 1e9;
		for (unsigned i = 0; i < ndoms; i++) {
			nlisted += listed[i];
			nup += up[i];
		}
		if (nlisted >= n && *ret_listed_s < 0)
			*ret_listed_s = t;
		if (nup >= n) {
			/* The count's time, when it came before this list. */
			ret = at && at > t0 ? (double)(at - t0) / 1e9 : t;
			break;
		}
		if (*ret_listed_s >= 0) {
			npending = 0;
			for (unsigned i = 0; i < ndoms; i++)
				if (!up[i])
					pending[npending++] = i;
		}
		if (at)
			counting = false;       /* a count the list did not bear out */
		if (!counting || *ret_listed_s < 0)
			usleep(20000);
	}
	atomic_store(&mc.stop, true);
	if (started)
		pthread_join(mc.th, NULL);
	free(listed);
	free(up);
	free(pending);
	return ret;
}

static pid_t daemon_pid_of(void)
{
	struct rpc_msg *m = ctl_call("daemon.info");
	uint64_t pid = 0;

	if (m) {
		rpc_obj_u64(rpc_map_get(rpc_msg_result(m), "pid"), &pid);
		rpc_msg_free(m);
	}
	return (pid_t)pid;
}

/* ---- the event subscriber ---------------------------------------------------------- */

static struct {
	pthread_t th;
	bool on;
	atomic_bool workers_done;
	uint64_t received, rtc, stop_resume, violations, dropped, missing, foreign;
	bool timed_out;
} ev;

static void ev_reset_all(void)
{
	for (unsigned i = 0; i < ndoms; i++) {
		doms[i].last_rtc = -1;
		doms[i].last_sr = 0;
	}
}

static void ev_handle(const struct rpc_msg *m)
{
	const msgpack_object *p = NULL, *data;
	const char *method = rpc_msg_method(m), *s, *evn;
	size_t len, elen;
	char *end;
	unsigned long i;
	uint64_t count;

	if (rpc_msg_params_map(m, &p, NULL, 0) < 0)
		return;
	if (!strcmp(method, "events.dropped")) {
		if (rpc_obj_u64(rpc_map_get(p, "count"), &count) == 0)
			ev.dropped += count;
		ev_reset_all();
		return;
	}
	if (strcmp(method, "event"))
		return;
	ev.received++;
	if (rpc_obj_str(rpc_map_get(p, "domain"), &s, &len) < 0 ||
	    rpc_obj_str(rpc_map_get(p, "event"), &evn, &elen) < 0)
		return;
	if (len <= strlen(prefix) || memcmp(s, prefix, strlen(prefix)) ||
	    s[strlen(prefix)] < '0' || s[strlen(prefix)] > '9') {
		ev.foreign++;
		return;
	}
	i = strtoul(s + strlen(prefix), &end, 10);
	if (end != s + len || i >= ndoms) {
		ev.foreign++;
		return;
	}
	struct dom *d = &doms[i];

	data = rpc_map_get(p, "data");
	/* QEMU's events come as qemu.NAME (docs/API.md, Events); bare NAME before that. */
	if (elen > 5 && !memcmp(evn, "qemu.", 5)) {
		evn += 5;
		elen -= 5;
	}
	if (elen == 10 && !memcmp(evn, "RTC_CHANGE", 10)) {
		int64_t off;

		ev.rtc++;
		if (rpc_obj_i64(rpc_map_get(data, "offset"), &off) < 0) {
			ev.violations++;
			return;
		}
		/* Numbered per QMP connection: 0 starts a new one. */
		if (d->last_rtc >= 0 && off != d->last_rtc + 1 && off != 0) {
			ev.violations++;
			if (!cfg.quiet)
				warn("event order: %s RTC_CHANGE offset %" PRId64 " after %" PRId64,
				     d->name, off, d->last_rtc);
		}
		d->last_rtc = off;
	} else if ((elen == 4 && !memcmp(evn, "STOP", 4)) ||
		   (elen == 6 && !memcmp(evn, "RESUME", 6))) {
		uint8_t k = elen == 4 ? OP_SUSPEND : OP_RESUME;

		ev.stop_resume++;
		/* A real QEMU also stops and resumes when it starts: not only our jobs. */
		if (d->kind != DK_SIM)
			return;
		d->ev_sr++;
		if (d->last_sr == k) {
			ev.violations++;
			if (!cfg.quiet)
				warn("event order: %s %.*s twice in a row", d->name, (int)elen, evn);
		}
		d->last_sr = k;
	} else if (elen == 7 && !memcmp(evn, "monitor", 7)) {
		/* A monitor that reconnected numbers its events from 0 again. */
		d->last_rtc = -1;
	}
}

/* Domains whose STOP/RESUME count does not yet match their answered jobs. */
static uint64_t ev_missing(void)
{
	uint64_t miss = 0;

	if (ev.dropped)
		return 0;       /* the daemon said it dropped some: no count to expect */
	for (unsigned i = 0; i < ndoms; i++)
		if (doms[i].kind == DK_SIM && !doms[i].fclass && !doms[i].lc_err &&
		    doms[i].ev_sr != doms[i].lc_ok)
			miss += doms[i].ev_sr > doms[i].lc_ok ? doms[i].ev_sr - doms[i].lc_ok
							      : doms[i].lc_ok - doms[i].ev_sr;
	return miss;
}

static void *ev_main(void *arg)
{
	struct conn c = { .fd = -1 };
	uint64_t done_at = 0;
	struct rpc_msg *m;

	(void)arg;
	ev_reset_all();
	if (conn_open(&c, rw_path) < 0)
		die("connect %s: %s", rw_path, strerror(errno));
	rpc_pack_request_begin(&c.pk, 1, "events.subscribe");
	rpc_pack_params_map_begin(&c.pk, 0);
	m = conn_wait(&c, 1);
	if (!m || rpc_msg_error(m))
		die("events.subscribe failed");
	rpc_msg_free(m);
	for (;;) {
		struct pollfd pfd = { .fd = c.fd, .events = POLLIN };
		const char *f;
		size_t len;
		bool bad = false;

		if (atomic_load(&ev.workers_done)) {
			uint64_t now = bench_now_ns();

			if (!done_at)
				done_at = now;
			/* Every answered suspend/resume's event, or 5 s for the stragglers. */
			if (!ev_missing())
				break;
			if (now - done_at > 5000000000ULL) {
				ev.timed_out = true;
				break;
			}
		}
		poll(&pfd, 1, 20);
		if (conn_read(&c) < 0) {
			if (cfg.sc == SC_RESTART && !atomic_load(&ev.workers_done)) {
				/* The daemon was killed: subscribe again to the new one. */
				conn_close(&c);
				while (conn_open(&c, rw_path) < 0 && !atomic_load(&ev.workers_done))
					usleep(2000);
				rpc_pack_request_begin(&c.pk, 1, "events.subscribe");
				rpc_pack_params_map_begin(&c.pk, 0);
				m = conn_wait(&c, 1);
				rpc_msg_free(m);
				ev_reset_all();
				continue;
			}
			break;
		}
		while ((f = conn_frame(&c, &len, &bad))) {
			if (rpc_decode(f, len, &m, NULL, 0) < 0)
				continue;
			if (rpc_msg_type(m) == RPC_NOTIFICATION)
				ev_handle(m);
			rpc_msg_free(m);
		}
	}
	ev.missing = ev_missing();
	conn_free(&c);
	return NULL;
}

/* ---- sampling the daemon --------------------------------------------------------------- */

static struct proc_sample *samples;
static size_t nsamples, capsamples;
static struct proc_sample base_sample;  /* before setup, private daemon only */
static bool have_base;

static void sample(void)
{
	struct proc_sample s;

	if (daemon_pid <= 0 || proc_sample_read(daemon_pid, &s) < 0)
		return;
	if (nsamples == capsamples) {
		capsamples = capsamples ? 2 * capsamples : 256;
		samples = realloc(samples, capsamples * sizeof(*samples));
		if (!samples)
			die("out of memory");
	}
	samples[nsamples++] = s;
}

/* ---- scenario runs ------------------------------------------------------------------ */

static struct results *setup_res;
static double t_attach, t_start_real, t_all_up, t_listed;
static struct {
	double kill_to_reaped;  /* the old corrald's exit: the kernel's teardown of it */
	double kill_to_listen, kill_to_listed, kill_to_all_up;
	bool back;
} rs;
static struct {
	struct proc_sample before, after;
	bool settled;
} churn;
/* After a fatal error: the private daemon and simulators die with us (PDEATHSIG). */
static void remove_tmpdir(void)
{
	char cmd[128];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		warn("cannot remove %s", tmpdir);
	tmpdir[0] = '\0';
}

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void attach_all(void)
{
	struct item *items = malloc((cfg.domains + 1) * sizeof(*items));
	unsigned n = 0;

	if (!items)
		die("out of memory");
	for (unsigned i = 0; i < cfg.domains; i++)
		items[n++] = (struct item){ OP_ATTACH, i };
	t_attach = batch(items, n, setup_res);
	for (unsigned i = 0; i < cfg.domains; i++)
		doms[i].running = true;
	free(items);
}

static void start_real(void)
{
	struct item *items = malloc((cfg.real + 1) * sizeof(*items));
	unsigned n = 0;

	if (!items)
		die("out of memory");
	/* All defines, then all starts: the storm is in the starts. */
	for (unsigned i = cfg.domains; i < ndoms; i++)
		items[n++] = (struct item){ OP_DEFINE, i };
	t_start_real = batch(items, n, setup_res);
	n = 0;
	for (unsigned i = cfg.domains; i < ndoms; i++)
		items[n++] = (struct item){ OP_START, i };
	t_start_real += batch(items, n, setup_res);
	for (unsigned i = cfg.domains; i < ndoms; i++)
		doms[i].running = true;
	free(items);
}

/* Destroy and undefine what this run made (the real QEMUs would outlive corrald). */
static void teardown(void)
{
	struct item *items = malloc((ndoms + 1) * sizeof(*items));
	struct results *junk = results_new();
	unsigned n = 0;
	uint64_t saved = total_unanswered;

	if (!items)
		die("out of memory");
	for (unsigned i = 0; i < ndoms; i++)
		if (doms[i].kind == DK_REAL || !private_daemon)
			items[n++] = (struct item){ OP_DESTROY, i };
	batch(items, n, junk);
	n = 0;
	for (unsigned i = 0; i < ndoms && (!private_daemon || !target->sims); i++)
		items[n++] = (struct item){ OP_UNDEFINE, i };
	batch(items, n, junk);
	total_unanswered = saved;
	free(items);
	free(junk);
}

static double parse_num(const char *s, const char *opt, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		die("--%s: '%s' is not a number from %g to %g", opt, s, lo, hi);
	return v;
}

static void set_mix(void)
{
	memset(mix, 0, sizeof(mix));
	switch (cfg.sc) {
	case SC_STEADY:
	case SC_RESTART:
		mix[OP_INFO] = 880;
		mix[OP_QMP] = 100;
		mix[OP_LIST] = 10;
		mix[OP_STATS] = 10;
		break;
	default:
		mix[OP_INFO] = 590;
		mix[OP_QMP] = 100;
		mix[OP_SUSPEND] = 250;
		mix[OP_START] = cfg.real ? 40 : 0;
		mix[OP_LIST] = 10;
		mix[OP_STATS] = 10;
		break;
	}
	if (cfg.mix) {
		/* --mix op=weight,...: suspend stands for suspend/resume, start for start/destroy. */
		char buf[256], *save = NULL;

		memset(mix, 0, sizeof(mix));
		snprintf(buf, sizeof(buf), "%s", cfg.mix);
		for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(t, '=');
			int o;

			if (!eq)
				die("--mix: '%s' is not op=weight", t);
			*eq = '\0';
			for (o = 0; o < OP_N; o++)
				if (!strcmp(op_names[o], t))
					break;
			if (o != OP_INFO && o != OP_QMP && o != OP_LIST && o != OP_STATS &&
			    o != OP_SUSPEND && o != OP_START)
				die("--mix: '%s' is not one of info, qmp, list, stats, suspend, start", t);
			mix[o] = (unsigned)parse_num(eq + 1, "mix", 0, 1000000);
		}
	}
	mix_total = 0;
	for (int o = 0; o < OP_N; o++)
		mix_total += mix[o];
	if (!mix_total)
		die("--mix: every weight is 0");
}

static void progress(double t, bool final)
{
	static uint64_t last_done;
	static double last_t;
	uint64_t done = 0, errs = 0;

	if (cfg.quiet || cfg.json || !isatty(STDOUT_FILENO))
		return;
	for (unsigned i = 0; workers && i < nworkers; i++) {
		done += atomic_load_explicit(&workers[i].done, memory_order_relaxed);
		errs += atomic_load_explicit(&workers[i].errors, memory_order_relaxed);
	}
	printf("\r%s %5.1f s  %10" PRIu64 " ops  %9.0f ops/s  %6" PRIu64 " errors",
	       cfg.sc_name, t, done, t > last_t ? (double)(done - last_done) / (t - last_t) : 0,
	       errs);
	if (nsamples)
		printf("  daemon RSS %.1f MiB, %u fds", samples[nsamples - 1].rss_bytes / 1048576.0,
		       samples[nsamples - 1].fds);
	printf("   %s", final ? "\n" : "");
	fflush(stdout);
	last_done = done;
	last_t = t;
}

static void strike_faults(void)
{
	for (unsigned k = 0; k < nsims; k++) {
		char line[64];

		if (sims[k].victim) {
			kill(sims[k].pid, SIGKILL);
			waitpid(sims[k].pid, NULL, 0);
			sims[k].pid = 0;
		} else if (sims[k].faults) {
			kill(sims[k].pid, SIGUSR1);
			read_line(sims[k].out, line, sizeof(line));
			if (strncmp(line, "faulted", 7))
				warn("simulator %u did not confirm its faults: '%s'", k, line);
		}
	}
}

static void restart_daemon(void)
{
	uint64_t t0 = bench_now_ns();
	double listed;

	kill(daemon_pid, SIGKILL);
	waitpid(daemon_pid, NULL, 0);
	rs.kill_to_reaped = (double)(bench_now_ns() - t0) / 1e9;
	conn_close(&ctl);
	start_daemon();
	rs.kill_to_listen = (double)(bench_now_ns() - t0) / 1e9;
	rs.kill_to_all_up = wait_all_up(ndoms, 60, &listed);
	if (rs.kill_to_all_up >= 0)
		rs.kill_to_all_up += rs.kill_to_listen;
	rs.kill_to_listed = listed >= 0 ? listed + rs.kill_to_listen : -1;
	rs.back = rs.kill_to_all_up >= 0;
}

static bool fds_settle(struct proc_sample *ret, unsigned target_fds, double max_s)
{
	uint64_t t0 = bench_now_ns();

	do {
		if (proc_sample_read(daemon_pid, ret) == 0 && ret->fds <= target_fds)
			return true;
		usleep(50000);
	} while ((double)(bench_now_ns() - t0) / 1e9 < max_s);
	return false;
}

/* CPU time of corral-bench itself and of its simulators: who else used the machine. */
static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double sims_cpu(void)
{
	double t = 0;

	for (unsigned k = 0; k < nsims; k++) {
		struct proc_sample ps;

		if (sims[k].pid > 0 && proc_sample_read(sims[k].pid, &ps) == 0)
			t += (double)ps.cpu_ns / 1e9;
	}
	return t;
}

static double self_cpu0, sims_cpu0, load_avg0;
static double self_cpu1, sims_cpu1, load_avg1;

static void run_load(void)
{
	enum wmode mode = cfg.sc == SC_CHURN ? W_CHURN : W_LOAD;
	unsigned depth = cfg.inflight;
	/* hung-10 without faults (--hang 0) still splits before and after the strike. */
	bool faults = n_hang || n_slow || n_close || n_kill || cfg.sc == SC_RESTART ||
		      cfg.sc == SC_HUNG10;
	uint64_t t0, next_progress, strike_at, end, wake;
	bool struck = false;

	if (mode == W_CHURN && daemon_pid > 0) {
		sample();
		if (nsamples)
			churn.before = samples[nsamples - 1];
	}
	set_mix();
	/* Events come from the simulated QEMUs (numbered) and from suspend/resume. */
	if (target->sims && cfg.domains &&
	    (cfg.event_rate || cfg.sc == SC_MIXED || cfg.sc == SC_HUNG10)) {
		ev.on = true;
		pthread_create(&ev.th, NULL, ev_main, NULL);
		usleep(100000);         /* subscribed before the load starts */
	}
	atomic_store(&stop_load, false);
	load_stop_ns = 0;
	self_cpu0 = self_cpu();
	sims_cpu0 = sims_cpu();
	load_avg0 = loadavg();
	t0 = load_start_ns = bench_now_ns();
	atomic_store(&fault_ns, faults ? UINT64_MAX : 0);
	next_progress = t0 + 1000000000ULL;
	strike_at = t0 + (uint64_t)(cfg.fault_at * 1e9);
	end = t0 + (uint64_t)(cfg.duration * 1e9);
	run_workers(mode, NULL, 0, depth);
	for (;;) {
		uint64_t now = bench_now_ns();

		if (interrupted || now >= end)
			break;
		if (faults && !struck && now >= strike_at) {
			struck = true;
			if (cfg.sc == SC_RESTART) {
				atomic_store(&fault_ns, bench_now_ns());
				restart_daemon();
			} else {
				strike_faults();
				atomic_store(&fault_ns, bench_now_ns());
			}
		}
		sample();
		if (now >= next_progress) {
			progress((double)(now - t0) / 1e9, false);
			next_progress += 1000000000ULL;
		}
		/* Wake at the next sample, the strike or the end, whichever comes first. */
		now = bench_now_ns();
		wake = now + 100000000;
		if (faults && !struck && strike_at > now && strike_at < wake)
			wake = strike_at;
		if (end > now && end < wake)
			wake = end;
		if (wake > now)
			usleep((useconds_t)((wake - now) / 1000));
	}
	load_stop_ns = bench_now_ns();
	self_cpu1 = self_cpu();
	sims_cpu1 = sims_cpu();
	load_avg1 = loadavg();
	atomic_store(&stop_load, true);
	join_workers(total, t0);
	sample();
	progress((double)(bench_now_ns() - t0) / 1e9, true);
	if (ev.on) {
		atomic_store(&ev.workers_done, true);
		pthread_join(ev.th, NULL);
	}
	if (mode == W_CHURN) {
		/* No daemon (libvirt's test driver runs in this process): nothing to compare. */
		churn.settled = daemon_pid <= 0 || fds_settle(&churn.after, churn.before.fds, 10);
		sample();
	}
}

/* ---- output ------------------------------------------------------------------------------ */

static const double quants[] = { 0.5, 0.9, 0.99, 0.999 };

static double elapsed_for(int phase)
{
	uint64_t fns = atomic_load(&fault_ns);
	double all = (double)(load_stop_ns - load_start_ns) / 1e9;
	double f = fns && fns != UINT64_MAX ? (double)(fns - load_start_ns) / 1e9 : all;

	if (!fns)
		return all;
	if (fns == UINT64_MAX)
		return phase ? 0 : all;
	return phase ? all - f : f;
}

static const char *phase_name(int p)
{
	if (!fault_ns)
		return "-";
	return p ? "after" : "before";
}

static const char *class_name(int c)
{
	if (!(n_hang || n_slow || n_close || n_kill))
		return "all";
	return c ? "faulted" : "healthy";
}

static void print_table(const struct results *r, bool setup)
{
	printf("| op | phase | domains | count | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | errors |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				const struct series *s = &r->s[o][p][c];
				uint64_t errs = 0;
				double secs = setup ? 0 : elapsed_for(p);

				if (!s->h.count)
					continue;
				for (int e = 0; e < ERR_N; e++)
					errs += s->err[e];
				printf("| %s | %s | %s | %" PRIu64 " | ", op_names[o],
				       setup ? "setup" : phase_name(p), class_name(c), s->h.count);
				if (secs > 0)
					printf("%.0f", (double)s->h.count / secs);
				else
					printf("-");
				for (size_t q = 0; q < 4; q++)
					printf(" | %.1f", hist_quantile(&s->h, quants[q]) / 1e3);
				printf(" | %.1f | %" PRIu64 " |\n", s->h.max / 1e3, errs);
			}
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++)
				for (int e = 0; e < ERR_N; e++)
					if (r->s[o][p][c].err[e])
						printf("errors: %s (%s, %s): %s x %" PRIu64 "\n",
						       op_names[o], setup ? "setup" : phase_name(p),
						       class_name(c), err_name((unsigned)e),
						       r->s[o][p][c].err[e]);
}

struct summary {
	double cpu_s, cpu_pct, secs, self_cpu_s, sims_cpu_s, load0, load1;
	double ctxsw_per_s;     /* the daemon's context switches over the load */
	uint64_t rss_peak, rss_end;
	unsigned fds_end;
	double rss_per_dom;
	uint64_t ops;
};

/* Setup calls that failed (libvirt: every define and start must work). */
static uint64_t setup_errors(void)
{
	uint64_t n = 0;

	for (int o = 0; o < OP_N; o++)
		for (int e = 0; e < ERR_N; e++)
			n += setup_res->s[o][0][0].err[e] + setup_res->s[o][0][1].err[e];
	return n;
}

/* A counter's growth between two samples; a drop is a new process, all of it new. */
static uint64_t counter_step(uint64_t now, uint64_t before)
{
	return now >= before ? now - before : now;
}

static void summarize(struct summary *sm)
{
	memset(sm, 0, sizeof(*sm));
	sm->secs = (double)(load_stop_ns - load_start_ns) / 1e9;
	for (size_t i = 0; i < nsamples; i++)
		if (samples[i].rss_bytes > sm->rss_peak)
			sm->rss_peak = samples[i].rss_bytes;
	if (nsamples) {
		/*
		 * CPU over the load: the sum of the steps between samples from the
		 * last one before it; a step down is a new process (restart), whose
		 * whole time counts.
		 */
		const struct proc_sample *b = &samples[nsamples - 1];
		uint64_t cpu = 0, csw = 0;

		for (size_t i = 1; i < nsamples; i++) {
			if (samples[i].t_ns <= load_start_ns)
				continue;
			cpu += counter_step(samples[i].cpu_ns, samples[i - 1].cpu_ns);
			csw += counter_step(samples[i].ctxsw, samples[i - 1].ctxsw);
		}
		sm->cpu_s = (double)cpu / 1e9;
		sm->ctxsw_per_s = sm->secs > 0 ? (double)csw / sm->secs : 0;
		sm->cpu_pct = sm->secs > 0 ? 100 * sm->cpu_s / sm->secs : 0;
		sm->rss_end = b->rss_bytes;
		sm->fds_end = b->fds;
		if (ndoms)
			sm->rss_per_dom = (double)(b->rss_bytes - (have_base && b->rss_bytes >
					   base_sample.rss_bytes ? base_sample.rss_bytes : 0)) / ndoms;
	}
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++)
				sm->ops += total->s[o][p][c].h.count;
	sm->self_cpu_s = self_cpu1 - self_cpu0;
	sm->sims_cpu_s = sims_cpu1 > sims_cpu0 ? sims_cpu1 - sims_cpu0 : 0;
	sm->load0 = load_avg0;
	sm->load1 = load_avg1;
}

static void print_human(const struct summary *sm, bool ok)
{
	printf("corral-bench %s: target %s (%s, pid %d); %u simulated + %u real domains; "
	       "%u connections x %u in flight, %s",
	       cfg.sc_name, cfg.target, !target->sims ? "its daemon" : private_daemon ?
	       "private corrald" : "existing corrald", (int)daemon_pid,
	       cfg.domains, cfg.real, cfg.conns, cfg.inflight,
	       cfg.rate > 0 ? "open loop" : "closed loop");
	if (cfg.rate > 0)
		printf(" at %.0f/s", cfg.rate);
	printf("; load %.2f s\n", cfg.sc == SC_BOOT_STORM ? 0 : sm->secs);
	if (n_hang || n_slow || n_close || n_kill)
		printf("faults at %.1f s: %u hung, %u slow (%u ms), %u closing, %u killed\n",
		       cfg.fault_at, n_hang, n_slow, cfg.slow_ms, n_close, n_kill);
	if (target->sims)
		printf("setup: attach %u in %.3f s", cfg.domains, t_attach);
	else
		printf("setup: %" PRIu64 " setup errors", setup_errors());
	if (cfg.real)
		printf(", define+start %u real in %.3f s", cfg.real, t_start_real);
	if (!target->sims)
		;
	else if (t_all_up >= 0)
		printf(", all listed after %.3f s, all monitors up after %.3f s", t_listed, t_all_up);
	else
		printf(", NOT all monitors up");
	printf("\n\n");
	print_table(setup_res, true);
	if (cfg.sc != SC_BOOT_STORM) {
		printf("\n");
		print_table(total, false);
		printf("\nall operations: %" PRIu64 " in %.2f s = %.0f ops/s\n", sm->ops, sm->secs,
		       sm->secs > 0 ? (double)sm->ops / sm->secs : 0);
	}
	printf("daemon: CPU %.2f s (%.0f %% of one core over the load, %.1f µs per operation), "
	       "%.0f context switches a second, "
	       "RSS peak %.1f MiB, end %.1f MiB, %.1f KiB per domain%s, %u fds\n",
	       sm->cpu_s, sm->cpu_pct, sm->ops ? sm->cpu_s * 1e6 / (double)sm->ops : 0,
	       sm->ctxsw_per_s, sm->rss_peak / 1048576.0, sm->rss_end / 1048576.0,
	       sm->rss_per_dom / 1024, have_base ? " (over the empty daemon)" : " (all of it)",
	       sm->fds_end);
	if (cfg.sc != SC_BOOT_STORM)
		printf("machine: corral-bench used %.2f s of CPU over the load, its simulators "
		       "%.2f s; load average %.2f at the start, %.2f at the end (%ld CPUs)\n",
		       sm->self_cpu_s, sm->sims_cpu_s, sm->load0, sm->load1,
		       sysconf(_SC_NPROCESSORS_ONLN));
	if (ev.on)
		printf("events: %" PRIu64 " received (%" PRIu64 " RTC_CHANGE, %" PRIu64
		       " STOP/RESUME), %" PRIu64 " out of order, %" PRIu64 " missing, %" PRIu64
		       " dropped by the daemon\n", ev.received, ev.rtc, ev.stop_resume,
		       ev.violations, ev.missing, ev.dropped);
	if (cfg.sc == SC_CHURN)
		printf("churn: daemon before: RSS %.1f MiB, %u fds; after: RSS %.1f MiB, %u fds%s\n",
		       churn.before.rss_bytes / 1048576.0, churn.before.fds,
		       churn.after.rss_bytes / 1048576.0, churn.after.fds,
		       churn.settled ? "" : " (descriptors did not come back within 10 s)");
	if (cfg.sc == SC_RESTART) {
		if (rs.back)
			printf("restart: kill -9 to the old corrald reaped %.3f s, to listening %.3f s, "
			       "every domain listed %.3f s, every monitor up %.3f s\n",
			       rs.kill_to_reaped, rs.kill_to_listen, rs.kill_to_listed,
			       rs.kill_to_all_up);
		else
			printf("restart: kill -9 to the old corrald reaped %.3f s, to listening %.3f s; "
			       "NOT every monitor back within 60 s\n", rs.kill_to_reaped,
			       rs.kill_to_listen);
	}
	if (total_stats_rounds)
		printf("stats: %" PRIu64 " further calls for the domains an answer named in "
		       "'more'\n", total_stats_rounds);
	printf("checks: %" PRIu64 " requests unanswered; %s\n", total_unanswered,
	       ok ? "PASS" : "FAIL");
}

static void json_series(FILE *f, const struct results *r, const char *kind, bool *first)
{
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				const struct series *s = &r->s[o][p][c];
				double secs = strcmp(kind, "setup") ? elapsed_for(p) : 0;
				bool fe = true;

				if (!s->h.count)
					continue;
				fprintf(f, "%s\n    {\"op\": \"%s\", \"stage\": \"%s\", \"phase\": \"%s\", "
					"\"domains\": \"%s\", \"count\": %" PRIu64 ", \"ops_per_s\": %.1f, "
					"\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
					"\"p999_us\": %.1f, \"max_us\": %.1f, \"errors\": {",
					*first ? "" : ",", op_names[o], kind,
					strcmp(kind, "setup") ? phase_name(p) : "setup", class_name(c),
					s->h.count, secs > 0 ? (double)s->h.count / secs : 0,
					hist_quantile(&s->h, 0.5) / 1e3, hist_quantile(&s->h, 0.9) / 1e3,
					hist_quantile(&s->h, 0.99) / 1e3,
					hist_quantile(&s->h, 0.999) / 1e3, s->h.max / 1e3);
				for (int e = 0; e < ERR_N; e++)
					if (s->err[e]) {
						fprintf(f, "%s\"%s\": %" PRIu64, fe ? "" : ", ",
							err_name((unsigned)e), s->err[e]);
						fe = false;
					}
				fprintf(f, "}}");
				*first = false;
			}
}

static void print_json(const struct summary *sm, bool ok)
{
	bool first = true;

	printf("{\"scenario\": \"%s\", \"target\": \"%s\", \"private_daemon\": %s, "
	       "\"domains\": %u, \"real\": %u, \"connections\": %u, \"in_flight\": %u, "
	       "\"rate\": %.1f, \"duration_s\": %.3f, \"timeout_ms\": %u,\n",
	       cfg.sc_name, target->name, private_daemon ? "true" : "false", cfg.domains,
	       cfg.real, cfg.conns, cfg.inflight, cfg.rate, sm->secs, cfg.timeout_ms);
	printf(" \"faults\": {\"at_s\": %.3f, \"hung\": %u, \"slow\": %u, \"slow_ms\": %u, "
	       "\"closing\": %u, \"killed\": %u},\n", cfg.fault_at, n_hang, n_slow, cfg.slow_ms,
	       n_close, n_kill);
	printf(" \"setup\": {\"attach_s\": %.4f, \"start_real_s\": %.4f, \"listed_s\": %.4f, "
	       "\"all_up_s\": %.4f},\n", t_attach, t_start_real, t_listed, t_all_up);
	printf(" \"ops_total\": %" PRIu64 ", \"ops_per_s\": %.1f,\n \"series\": [", sm->ops,
	       sm->secs > 0 ? (double)sm->ops / sm->secs : 0);
	json_series(stdout, setup_res, "setup", &first);
	json_series(stdout, total, "load", &first);
	printf("],\n \"daemon\": {\"pid\": %d, \"cpu_s\": %.3f, \"cpu_pct\": %.1f, "
	       "\"cpu_us_per_op\": %.2f, \"ctxsw_per_s\": %.1f, ", (int)daemon_pid, sm->cpu_s,
	       sm->cpu_pct, sm->ops ? sm->cpu_s * 1e6 / (double)sm->ops : 0, sm->ctxsw_per_s);
	printf("\"rss_peak_bytes\": %" PRIu64 ", \"rss_end_bytes\": %" PRIu64
	       ", \"rss_per_domain_bytes\": %.0f, \"rss_per_domain_over_empty\": %s, "
	       "\"fds_end\": %u, \"samples\": [",
	       sm->rss_peak, sm->rss_end, sm->rss_per_dom, have_base ? "true" : "false",
	       sm->fds_end);
	for (size_t i = 0; i < nsamples; i++)
		printf("%s[%.2f, %.3f, %" PRIu64 ", %u]", i ? ", " : "",
		       ((double)samples[i].t_ns - (double)load_start_ns) / 1e9,
		       samples[i].cpu_ns / 1e9, samples[i].rss_bytes, samples[i].fds);
	printf("]},\n");
	if (ev.on)
		printf(" \"events\": {\"received\": %" PRIu64 ", \"rtc_change\": %" PRIu64
		       ", \"stop_resume\": %" PRIu64 ", \"out_of_order\": %" PRIu64
		       ", \"missing\": %" PRIu64 ", \"dropped\": %" PRIu64 "},\n", ev.received,
		       ev.rtc, ev.stop_resume, ev.violations, ev.missing, ev.dropped);
	if (cfg.sc == SC_CHURN)
		printf(" \"churn\": {\"rss_before\": %" PRIu64 ", \"fds_before\": %u, "
		       "\"rss_after\": %" PRIu64 ", \"fds_after\": %u, \"fds_back\": %s},\n",
		       churn.before.rss_bytes, churn.before.fds, churn.after.rss_bytes,
		       churn.after.fds, churn.settled ? "true" : "false");
	if (cfg.sc == SC_RESTART)
		printf(" \"restart\": {\"reaped_s\": %.4f, \"listening_s\": %.4f, "
		       "\"listed_s\": %.4f, \"all_up_s\": %.4f, \"back\": %s},\n",
		       rs.kill_to_reaped, rs.kill_to_listen, rs.kill_to_listed,
		       rs.kill_to_all_up, rs.back ? "true" : "false");
	printf(" \"stats_more_calls\": %" PRIu64 ",\n", total_stats_rounds);
	printf(" \"machine\": {\"bench_cpu_s\": %.3f, \"sims_cpu_s\": %.3f, \"loadavg_start\": "
	       "%.2f, \"loadavg_end\": %.2f, \"cpus\": %ld},\n", sm->self_cpu_s, sm->sims_cpu_s,
	       sm->load0, sm->load1, sysconf(_SC_NPROCESSORS_ONLN));
	printf(" \"unanswered\": %" PRIu64 ", \"ok\": %s}\n", total_unanswered,
	       ok ? "true" : "false");
}

/* Latency percentile curves, one per series, in SVG: x = 1/(1-q) on a log scale. */
static void write_plot(const char *path)
{
	static const char *const colors[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
					      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
					      "#bcbd22", "#17becf" };
	FILE *f = fopen(path, "w");
	const double W = 900, H = 540, L = 80, R = 230, T = 40, B = 60;
	double ymin = 1e300, ymax = 0, xmax = 5;        /* x: log10 1/(1-q), up to 99.999 % */
	int ncurve = 0;

	if (!f)
		die("cannot write %s: %s", path, strerror(errno));
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				const struct hist *h = &total->s[o][p][c].h;

				if (!h->count)
					continue;
				if (h->max / 1e3 > ymax)
					ymax = h->max / 1e3;
				if (h->min / 1e3 < ymin)
					ymin = h->min / 1e3;
			}
	if (ymax <= 0) {
		ymin = 1;
		ymax = 10;
	}
	ymin = pow(10, floor(log10(ymin > 0.1 ? ymin : 0.1)));
	ymax = pow(10, ceil(log10(ymax)));
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">corral-bench %s: %u domains, "
		"%u x %u, %s (latency by percentile)</text>\n", L, cfg.sc_name, ndoms, cfg.conns,
		cfg.inflight, cfg.rate > 0 ? "open loop" : "closed loop");
#define PX(x) (L + (x) / xmax * (W - L - R))
#define PY(y) (H - B - (log10(y) - log10(ymin)) / (log10(ymax) - log10(ymin)) * (H - T - B))
	for (double y = ymin; y <= ymax * 1.001; y *= 10) {
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			L, W - R, PY(y), PY(y));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g µs</text>\n",
			L - 5, PY(y) + 4, y);
	}
	for (int x = 0; x <= 5; x++) {
		static const char *const lab[] = { "0 %", "90 %", "99 %", "99.9 %", "99.99 %",
						   "99.999 %" };

		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			PX(x), PX(x), (double)T, H - B);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", PX(x),
			H - B + 18, lab[x]);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">percentile</text>\n",
		(L + W - R) / 2, H - 15);
	for (int o = 0; o < OP_N; o++)
		for (int p = 0; p < 2; p++)
			for (int c = 0; c < 2; c++) {
				const struct hist *h = &total->s[o][p][c].h;
				const char *col = colors[ncurve % 10];

				if (!h->count)
					continue;
				fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s "
					"points=\"", col, p ? " stroke-dasharray=\"6,3\"" : "");
				for (double x = 0; x <= xmax + 1e-9; x += 0.05) {
					double q = 1 - pow(10, -x), v;

					if (x > 0 && q * (double)h->count > (double)h->count - 1)
						break;  /* past the last sample: no information */
					v = hist_quantile(h, q) / 1e3;
					fprintf(f, "%.1f,%.1f ", PX(x), PY(v > ymin ? v : ymin));
				}
				fprintf(f, "\"/>\n");
				fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
					"stroke-width=\"2\"%s/>\n", W - R + 10, W - R + 35,
					(int)T + 10 + 18 * ncurve, (int)T + 10 + 18 * ncurve, col,
					p ? " stroke-dasharray=\"6,3\"" : "");
				fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s%s%s%s%s</text>\n", W - R + 40,
					(int)T + 14 + 18 * ncurve, op_names[o], fault_ns ? " " : "",
					fault_ns ? phase_name(p) : "",
					(n_hang || n_slow || n_close || n_kill) ? " " : "",
					(n_hang || n_slow || n_close || n_kill) ? class_name(c) : "");
				ncurve++;
			}
#undef PX
#undef PY
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0)
		die("cannot write %s", path);
}

/* ---- main ------------------------------------------------------------------------------- */

/* corral-bench(1), from the tables --help prints: corral-bench --dump-man. */
static void dump_man(FILE *f)
{
	roff_head(f, "corral-bench", "1", CORRAL_VERSION, "corral manual",
		  "load and faults for a VM daemon with many domains");
	roff_macro(f, "SH", "SYNOPSIS");
	fputs(".B corral-bench\n.I SCENARIO\n.RI [ OPTION ]...\n", f);
	roff_macro(f, "SH", "DESCRIPTION");
	roff_text(f, "corral-bench drives a VM daemon with many domains and faults, as its "
		  "clients see it: operations per second, latency percentiles per operation "
		  "(from a log-linear histogram; in open loop measured from each request's "
		  "scheduled time), errors by code, and the daemon's CPU time, memory and "
		  "descriptors sampled while it runs.  Its domains are attached to simulated "
		  "QEMUs (corral-qmp-sim, many endpoints per process); with --real, real "
		  "QEMUs are started too.  It drives the corrald given with --socket, or "
		  "starts a private one; with --target libvirt:URI, libvirt instead.\n");
	roff_macro(f, "SH", "SCENARIOS");
	for (const struct bench_scenario_doc *s = corral_bench_scenarios; s->name; s++) {
		roff_macro(f, "TP", NULL);
		fputs("\\fB", f);
		roff_text(f, s->name);
		fputs("\\fR\n", f);
		roff_text(f, s->help);
		fputc('\n', f);
	}
	roff_macro(f, "SH", "OPTIONS");
	for (const struct bench_opt *o = corral_bench_opts; o->name; o++) {
		roff_macro(f, "TP", NULL);
		fputs("\\fB\\-\\-", f);
		roff_text(f, o->name);
		fputs("\\fR", f);
		if (o->arg) {
			fputs(" \\fI", f);
			roff_text(f, o->arg);
			fputs("\\fR", f);
		}
		fputc('\n', f);
		roff_text(f, o->help);
		fputc('\n', f);
	}
	roff_macro(f, "SH", "EXIT STATUS");
	roff_text(f, "0 when its own checks pass (every request answered, events in order, "
		  "descriptors back after churn, every domain back after a restart); 1 when one "
		  "does not; 2 on bad usage.\n");
	roff_macro(f, "SH", "SEE ALSO");
	fputs(".BR corral (1),\n.BR corrald (8)\n", f);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: corral-bench SCENARIO [options]\n\n"
		   "Load and faults for a VM daemon with many domains, as its clients see them:\n"
		   "operations per second, latency percentiles per operation, errors by code,\n"
		   "the daemon's CPU time, memory and descriptors.  Exits 0 when its own checks\n"
		   "pass (every request answered, events in order, descriptors back), 1 if not,\n"
		   "2 on bad usage.\n\nScenarios:\n");
	for (const struct bench_scenario_doc *s = corral_bench_scenarios; s->name; s++) {
		char head[32];

		snprintf(head, sizeof(head), "  %s", s->name);
		bench_wrap(f, head, s->help);
	}
	fprintf(f, "\nTargets (--target): corral (default)%s\n",
#ifdef HAVE_LIBVIRT
		",\n  libvirt:URI (libvirt:///system, libvirt:test:///default, ...)"
#else
		"; built without libvirt"
#endif
		);
	fprintf(f, "\nOptions:\n");
	bench_opts_help(f, corral_bench_opts);
}


int main(int argc, char **argv)
{
	struct rlimit rl;
	struct summary sm;
	bool ok;
	int o;

	if (argc == 2 && !strcmp(argv[1], "--dump-man")) {
		dump_man(stdout);
		return fflush(stdout) ? 1 : 0;
	}
	while ((o = bench_getopt(argc, argv, corral_bench_opts, usage)) != -1) {
		switch (o) {
		case OPT_DOMAINS: cfg.domains = (unsigned)parse_num(optarg, "domains", 0, 200000); break;
		case OPT_MACHINE: cfg.machine = optarg; break;
		case OPT_MIX: cfg.mix = optarg; break;
		case OPT_DURATION: cfg.duration = parse_num(optarg, "duration", 0.1, 86400); break;
		case OPT_CONNECTIONS: cfg.conns = (unsigned)parse_num(optarg, "connections", 1, 256); break;
		case OPT_IN_FLIGHT:
			cfg.inflight = (unsigned)parse_num(optarg, "in-flight", 1, 65536);
			cfg.inflight_set = true;
			break;
		case OPT_RATE: cfg.rate = parse_num(optarg, "rate", 0, 1e8); break;
		case OPT_REAL: cfg.real = (unsigned)parse_num(optarg, "real", 0, 10000); break;
		case OPT_SOCKET: cfg.socket = optarg; break;
		case OPT_JSON: cfg.json = true; break;
		case OPT_PLOT: cfg.plot = optarg; break;
		case OPT_TARGET: cfg.target = optarg; break;
		case OPT_HANG:
			cfg.f_hang = parse_num(optarg, "hang", 0, 1);
			cfg.hang_set = true;
			break;
		case OPT_SLOW: cfg.f_slow = parse_num(optarg, "slow", 0, 1); break;
		case OPT_SLOW_MS: cfg.slow_ms = (unsigned)parse_num(optarg, "slow-ms", 1, 600000); break;
		case OPT_CLOSE: cfg.f_close = parse_num(optarg, "close", 0, 1); break;
		case OPT_KILL: cfg.f_kill = parse_num(optarg, "kill", 0, 1); break;
		case OPT_FAULT_AT: cfg.fault_at = parse_num(optarg, "fault-at", 0, 86400); break;
		case OPT_EVENT_RATE:
			cfg.event_rate = (unsigned)parse_num(optarg, "event-rate", 0, 1000000);
			cfg.event_rate_set = true;
			break;
		case OPT_TIMEOUT: cfg.timeout_ms = (unsigned)parse_num(optarg, "timeout-ms", 1, 86400000); break;
		case OPT_CORRALD: cfg.corrald = optarg; break;
		case OPT_SIM: cfg.sim = optarg; break;
		case OPT_DAEMON_ARG:
			if (cfg.ndaemon_args == 16)
				die("at most 16 --daemon-arg");
			cfg.daemon_args[cfg.ndaemon_args++] = optarg;
			break;
		case OPT_SEED: cfg.seed = (unsigned)parse_num(optarg, "seed", 0, 4e9); break;
		case OPT_QUIET: cfg.quiet = true; break;
		default: abort();
		}
	}
	if (optind == argc)
		bench_usage_error(usage, "no scenario");
	if (optind < argc - 1)
		bench_usage_error(usage, "unexpected argument '%s'", argv[optind + 1]);
	cfg.sc_name = argv[optind];
	{
		static const char *const names[] = { "boot-storm", "steady-query", "mixed",
						      "hung-10", "churn", "restart" };
		int found = -1;

		for (int i = 0; i < 6; i++)
			if (!strcmp(names[i], cfg.sc_name))
				found = i;
		if (found < 0)
			die("unknown scenario '%s' (see --help)", cfg.sc_name);
		cfg.sc = (enum scenario)found;
	}
	if (strcmp(cfg.target, "corral")) {
		if (strncmp(cfg.target, "libvirt:", 8))
			die("--target: unknown target '%s' (corral, or libvirt:URI, e.g. "
			    "libvirt:///system or libvirt:test:///default)", cfg.target);
#ifndef HAVE_LIBVIRT
		die("--target %s: this corral-bench was built without libvirt (libvirt's "
		    "development files were not found at build time; see BENCHMARKS.md)",
		    cfg.target);
#endif
		if (cfg.sc == SC_HUNG10 || cfg.sc == SC_RESTART)
			die("%s needs simulated monitors or a daemon of its own: corral only",
			    cfg.sc_name);
		if (cfg.socket || cfg.f_hang > 0 || cfg.f_slow > 0 || cfg.f_close > 0 ||
		    cfg.f_kill > 0 || cfg.real || cfg.event_rate)
			die("with libvirt, --domains N are N libvirt domains: no --socket, --real, "
			    "faults or events");
	}
	if (cfg.rate > 0 && !cfg.inflight_set)
		cfg.inflight = 4096;
	/* hung-10 --hang 0: the same run without the fault, to compare with. */
	if (cfg.sc == SC_HUNG10 && !cfg.hang_set)
		cfg.f_hang = 0.1;
	/* The same offered load before and after: open loop, unless told otherwise. */
	if (cfg.sc == SC_HUNG10 && cfg.rate == 0 && !cfg.inflight_set) {
		cfg.rate = 5000;
		cfg.inflight = 4096;
	}
	if ((cfg.sc == SC_MIXED || cfg.sc == SC_HUNG10) && !cfg.event_rate_set)
		cfg.event_rate = 200;
	if (cfg.domains + cfg.real == 0)
		die("no domains: --domains or --real must be at least 1");
	if (cfg.fault_at < 0)
		cfg.fault_at = cfg.duration / 2;
	if (cfg.sc == SC_RESTART && cfg.socket)
		die("restart kills and restarts the daemon: only with a private one (no --socket)");
	if (cfg.sc == SC_CHURN && cfg.rate > 0)
		die("churn is closed loop: C x K lanes (no --rate)");
	if (!cfg.corrald)
		cfg.corrald = find_prog("corrald", "../daemon/corrald");
	if (!cfg.sim)
		cfg.sim = find_prog("corral-qmp-sim", "../sim/corral-qmp-sim");

	/* The simulators inherit this: two descriptors per endpoint. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)cfg.domains + 200 > rl.rlim_cur)
		die("%u attached domains need about %u descriptors in corrald (one each: the QMP "
		    "socket); RLIMIT_NOFILE is %llu, so at most %llu domains per daemon",
		    cfg.domains, cfg.domains + 200, (unsigned long long)rl.rlim_cur,
		    (unsigned long long)(rl.rlim_cur - 200));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/corral-bench-XXXXXX");
	if (!mkdtemp(tmpdir))
		die("mkdtemp: %s", strerror(errno));
	atexit(remove_tmpdir);
	snprintf(prefix, sizeof(prefix), "%s", "vm");
	nworkers = cfg.conns;
#ifdef HAVE_LIBVIRT
	if (strcmp(cfg.target, "corral")) {
		lv_open();
		nworkers = cfg.conns * cfg.inflight;
		/* --domains N: N libvirt domains, defined and started like --real ones. */
		cfg.real = cfg.domains;
		cfg.domains = 0;
	} else
#endif
	if (cfg.socket) {
		snprintf(rw_path, sizeof(rw_path), "%s", cfg.socket);
		/* Our names must not meet another run's on a shared daemon. */
		snprintf(prefix, sizeof(prefix), "cb%d-", (int)getpid());
		daemon_pid = daemon_pid_of();
		if (!daemon_pid)
			die("no corrald answers on %s", cfg.socket);
	} else {
		private_daemon = true;
		start_daemon();
		have_base = proc_sample_read(daemon_pid, &base_sample) == 0;
	}

	ndoms = cfg.domains + cfg.real;
	doms = calloc(ndoms, sizeof(*doms));
	if (!doms)
		die("out of memory");
	for (unsigned i = 0; i < ndoms; i++) {
		snprintf(doms[i].name, sizeof(doms[i].name), "%s%u", prefix, i);
		doms[i].kind = i < cfg.domains ? DK_SIM : DK_REAL;
	}
	setup_res = results_new();
	total = results_new();
	if (target->sims) {
		plan_sims();
		start_sims();
	}
#ifdef HAVE_LIBVIRT
	if (target == &target_libvirt) {
		lv_doms = calloc((size_t)cfg.conns * ndoms + 1, sizeof(*lv_doms));
		if (!lv_doms)
			die("out of memory");
	}
#endif

	/* Setup: the boot storm, for every scenario (it is the whole of boot-storm). */
	sample();
	if (cfg.domains)
		attach_all();
	if (cfg.real)
		start_real();
	if (target->sims)
		t_all_up = wait_all_up(ndoms, 60 + ndoms / 100.0, &t_listed);
	sample();
	if (cfg.sc != SC_BOOT_STORM && !interrupted)
		run_load();
	else
		load_stop_ns = load_start_ns = bench_now_ns();

	summarize(&sm);
	ok = total_unanswered == 0 && t_all_up >= 0 && (target->sims || !setup_errors());
	if (ev.on)
		ok = ok && !ev.violations && !ev.missing;
	if (cfg.sc == SC_CHURN)
		ok = ok && churn.settled;
	if (cfg.sc == SC_RESTART)
		ok = ok && rs.back;
	if (cfg.json)
		print_json(&sm, ok);
	else
		print_human(&sm, ok);
	if (cfg.plot)
		write_plot(cfg.plot);
	fflush(stdout);

	teardown();
	conn_free(&ctl);
#ifdef HAVE_LIBVIRT
	if (target == &target_libvirt)
		lv_close();
#endif
	if (private_daemon)
		stop_proc(daemon_pid, "corrald");
	for (unsigned k = 0; k < nsims; k++)
		stop_proc(sims[k].pid, "corral-qmp-sim");
	remove_tmpdir();
	free(doms);
	free(samples);
	free(setup_res);
	free(total);
	return ok ? 0 : 1;
}

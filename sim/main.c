/* SPDX-License-Identifier: MIT */
/*
 * corral-qmp-sim: many QMP endpoints from one process and one thread.
 *
 * Tests and benchmarks need monitors that hang, lie, flood or vanish on
 * cue, and thousands of them; real QEMU can do none of that cheaply.  Each
 * endpoint is a listening UNIX socket; one epoll loop serves them all and a
 * heap of deadlines (timer.c) stands in for per-endpoint timers.  See
 * --help and sim/README.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "sim/sim.h"

static const char usage[] =
	"Usage: corral-qmp-sim --dir DIR --count N [--prefix vm] [knobs]\n"
	"                      [--fault SEL:KNOB[=VALUE]]... [--fault-on-usr1 SEL:KNOB[=VALUE]]...\n"
	"\n"
	"Serves N simulated QEMU QMP monitors on UNIX sockets DIR/<prefix>0.qmp ..\n"
	"DIR/<prefix>N-1.qmp (mode 0600), prints \"ready N\" on stdout once all of them\n"
	"listen, and runs until SIGTERM or SIGINT, then removes its sockets.\n"
	"\n"
	"Each endpoint greets like QEMU 7.2, requires qmp_capabilities first, and knows\n"
	"query-status, query-name, query-version, stop, cont (STOP/RESUME events),\n"
	"system_reset (RESET) and system_powerdown (POWERDOWN, the return, SHUTDOWN,\n"
	"then it closes the connection; the next client finds a fresh running guest),\n"
	"query-blockstats (one disk, vd0, whose counters grow with each query) and\n"
	"query-cpus-fast (one vCPU, the simulator's thread).\n"
	"Any other command gets CommandNotFound.  One client per endpoint at a time:\n"
	"a second one waits in the listen backlog, as with QEMU.  Commands are read\n"
	"one per line.\n"
	"\n"
	"Options:\n"
	"  --dir DIR            where to create the sockets (created if missing)\n"
	"  --count N            number of endpoints\n"
	"  --prefix P           socket and VM name prefix (default: vm)\n"
	"  --verbose            log connections on stderr\n"
	"  --help               this text\n"
	"\n"
	"Knobs, for every endpoint (all off by default):\n"
	"  --delay-ms D         answer each command D ms late (events it causes too)\n"
	"  --hang MODE          after-caps: answer qmp_capabilities, then nothing;\n"
	"                       always: greet, then answer nothing.  A hung endpoint\n"
	"                       keeps reading and sends no reply and no event.\n"
	"  --garbage[=WHEN]     reply (default): every reply is invalid JSON;\n"
	"                       greeting: an invalid JSON line instead of the greeting\n"
	"  --disconnect-after K close the connection after answering the K-th command\n"
	"                       (qmp_capabilities counts)\n"
	"  --event-storm R      after negotiation, send R RTC_CHANGE events per second\n"
	"  --events-before-greeting N\n"
	"                       send N RTC_CHANGE events before the greeting\n"
	"RTC_CHANGE events carry {\"offset\": n}, n counting 0, 1, 2... per connection.\n"
	"Per endpoint only (--fault SEL:no-shutdown): behave as QEMU run with\n"
	"-no-shutdown: after system_powerdown the guest stops (status \"shutdown\")\n"
	"and the endpoint stays; system_reset then cont start it again; quit closes.\n"
	"\n"
	"Per-endpoint knobs: --fault SEL:KNOB[=VALUE], repeatable, applied in order\n"
	"after the global knobs.  KNOB is a knob name above without the dashes\n"
	"(delay-ms, hang, garbage, disconnect-after, event-storm,\n"
	"events-before-greeting, no-shutdown); hang, garbage and no-shutdown may omit\n"
	"the value (always, reply, on);\n"
	"hang=none and garbage=none switch them off.  SEL picks endpoints by index:\n"
	"  *        all             3      endpoint 3\n"
	"  2-5      2 to 5          %K     every K-th: 0, K, 2K...\n"
	"  %K+O     those with index % K == O\n"
	"Examples: --fault 3:hang   --fault %10+9:delay-ms=500   --fault 0-1:garbage\n"
	"\n"
	"Faults mid-run: --fault-on-usr1 SEL:KNOB[=VALUE], the same syntax, is applied\n"
	"when the simulator receives SIGUSR1 (each time), to the connected clients\n"
	"too: hang makes a negotiated endpoint silent at once, disconnect-after K closes\n"
	"a connection that has already answered K commands.  Then \"faulted N\" (the\n"
	"endpoints changed) is printed on stdout.\n"
	"\n"
	"Each endpoint uses up to two descriptors; the soft RLIMIT_NOFILE is raised to\n"
	"the hard limit at start.\n";

enum sel_kind { SEL_ALL, SEL_RANGE, SEL_MOD };

struct fault {
	enum sel_kind kind;
	unsigned long a, b;     /* range a..b, or index % a == b */
	char knob[32];
	const char *val;        /* NULL: the knob's default; points into argv */
};

static int parse_ulong(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

int sim_knob_set(struct sim_knobs *k, const char *name, const char *val, char *err,
		 size_t errlen)
{
	unsigned long v;

	if (!strcmp(name, "hang")) {
		if (!val || !strcmp(val, "always"))
			k->hang = SIM_HANG_ALWAYS;
		else if (!strcmp(val, "after-caps"))
			k->hang = SIM_HANG_AFTER_CAPS;
		else if (!strcmp(val, "none"))
			k->hang = SIM_HANG_NONE;
		else
			goto bad;
		return 0;
	}
	if (!strcmp(name, "garbage")) {
		if (!val || !strcmp(val, "reply"))
			k->garbage = SIM_GARBAGE_REPLY;
		else if (!strcmp(val, "greeting"))
			k->garbage = SIM_GARBAGE_GREETING;
		else if (!strcmp(val, "none"))
			k->garbage = SIM_GARBAGE_NONE;
		else
			goto bad;
		return 0;
	}
	if (!strcmp(name, "delay-ms")) {
		if (parse_ulong(val, 3600u * 1000, &v) < 0)
			goto bad;
		k->delay_ms = (unsigned)v;
		return 0;
	}
	if (!strcmp(name, "disconnect-after")) {
		if (parse_ulong(val, UINT_MAX, &v) < 0)
			goto bad;
		k->disconnect_after = (unsigned)v;
		return 0;
	}
	if (!strcmp(name, "event-storm")) {
		if (parse_ulong(val, 1000000, &v) < 0)
			goto bad;
		k->event_storm = (unsigned)v;
		return 0;
	}
	if (!strcmp(name, "events-before-greeting")) {
		if (parse_ulong(val, 1000000, &v) < 0)
			goto bad;
		k->events_before_greeting = (unsigned)v;
		return 0;
	}
	if (!strcmp(name, "no-shutdown")) {
		if (!val || !strcmp(val, "on"))
			k->no_shutdown = true;
		else if (!strcmp(val, "off"))
			k->no_shutdown = false;
		else
			goto bad;
		return 0;
	}
	snprintf(err, errlen, "unknown knob '%s'", name);
	return -EINVAL;
bad:
	snprintf(err, errlen, "bad value '%s' for %s", val ? val : "(none)", name);
	return -EINVAL;
}

/* SEL:KNOB[=VALUE] */
static int parse_fault(char *spec, struct fault *f, char *err, size_t errlen)
{
	char *colon = strchr(spec, ':'), *eq, *sel = spec, *plus;
	size_t knob_len;

	if (!colon) {
		snprintf(err, errlen, "--fault '%s': expected SEL:KNOB[=VALUE]", spec);
		return -EINVAL;
	}
	*colon = '\0';
	eq = strchr(colon + 1, '=');
	knob_len = eq ? (size_t)(eq - (colon + 1)) : strlen(colon + 1);
	if (knob_len == 0 || knob_len >= sizeof(f->knob)) {
		snprintf(err, errlen, "--fault: bad knob name in '%s'", colon + 1);
		return -EINVAL;
	}
	memcpy(f->knob, colon + 1, knob_len);
	f->knob[knob_len] = '\0';
	f->val = eq ? eq + 1 : NULL;

	if (!strcmp(sel, "*")) {
		f->kind = SEL_ALL;
		return 0;
	}
	if (sel[0] == '%') {
		f->kind = SEL_MOD;
		f->b = 0;
		plus = strchr(sel + 1, '+');
		if (plus) {
			*plus = '\0';
			if (parse_ulong(plus + 1, UINT_MAX, &f->b) < 0)
				goto bad_sel;
		}
		if (parse_ulong(sel + 1, UINT_MAX, &f->a) < 0 || f->a == 0 || f->b >= f->a)
			goto bad_sel;
		return 0;
	}
	f->kind = SEL_RANGE;
	plus = strchr(sel, '-');
	if (plus) {
		*plus = '\0';
		if (parse_ulong(sel, UINT_MAX, &f->a) < 0 ||
		    parse_ulong(plus + 1, UINT_MAX, &f->b) < 0 || f->b < f->a)
			goto bad_sel;
		return 0;
	}
	if (parse_ulong(sel, UINT_MAX, &f->a) < 0)
		goto bad_sel;
	f->b = f->a;
	return 0;
bad_sel:
	snprintf(err, errlen, "--fault: bad endpoint selector '%s'", sel);
	return -EINVAL;
}

static bool fault_selects(const struct fault *f, unsigned long idx)
{
	switch (f->kind) {
	case SEL_ALL:
		return true;
	case SEL_RANGE:
		return idx >= f->a && idx <= f->b;
	case SEL_MOD:
		return idx % f->a == f->b;
	}
	return false;
}

static void remove_sockets(struct sim *s)
{
	for (uint32_t i = 0; i < s->count; i++) {
		struct sim_ep *e = &s->eps[i];

		if (e->cfd >= 0)
			sim_ep_disconnect(s, e);
		if (e->lfd >= 0) {
			unlink(e->path);
			close(e->lfd);
			e->lfd = -1;
		}
		/* Kept from one client to the next (ep_reset_client): freed here. */
		free(e->in);
		e->in = NULL;
		free(e->out.p);
		e->out.p = NULL;
	}
}

static int ep_listen(struct sim *s, struct sim_ep *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLONESHOT,       /* armed again after each client */
		.data.u64 = sim_tag(e->idx, SIM_TAG_LISTEN),
	};
	struct stat st;
	int fd;

	memcpy(sa.sun_path, e->path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket left by a killed run would make bind() fail. */
	if (lstat(e->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(e->path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(e->path, 0600) < 0 ||
	    listen(fd, 64) < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	e->lfd = fd;
	e->listening = true;
	return 0;
}

static int raise_nofile(uint32_t count)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)count * 2 + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -errno;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		fprintf(stderr,
			"corral-qmp-sim: %u endpoints need about %llu descriptors; "
			"RLIMIT_NOFILE allows %llu\n",
			count, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
		return -EMFILE;
	}
	return 0;
}

/* SIGUSR1: apply the --fault-on-usr1 knobs now, to live connections too. */
static void apply_later(struct sim *s, const struct fault *later, size_t nlater)
{
	unsigned changed = 0;
	char err[256];

	for (uint32_t i = 0; i < s->count; i++) {
		struct sim_ep *e = &s->eps[i];
		bool hit = false;

		for (size_t j = 0; j < nlater; j++) {
			if (!fault_selects(&later[j], i))
				continue;
			/* Checked at start: cannot fail. */
			BUG_ON(sim_knob_set(&e->k, later[j].knob, later[j].val, err,
					    sizeof(err)) < 0);
			hit = true;
		}
		if (!hit)
			continue;
		changed++;
		if (e->cfd < 0)
			continue;
		if (e->k.hang == SIM_HANG_ALWAYS ||
		    (e->k.hang == SIM_HANG_AFTER_CAPS && e->negotiated))
			e->hung = true;
		if (e->k.disconnect_after && e->ncmds >= e->k.disconnect_after)
			sim_ep_disconnect(s, e);
	}
	printf("faulted %u\n", changed);
	fflush(stdout);
}

static void run(struct sim *s, int sfd, const struct fault *later, size_t nlater)
{
	struct epoll_event evs[256];

	for (;;) {
		const struct sim_timer *t = sim_timers_peek(&s->timers);
		int timeout = -1, n;
		uint64_t now;

		if (t) {
			now = now_ns();
			if (t->when_ns <= now) {
				timeout = 0;
			} else {
				uint64_t ms = (t->when_ns - now + NSEC_PER_MSEC - 1) /
					      NSEC_PER_MSEC;

				timeout = ms > INT_MAX ? INT_MAX : (int)ms;
			}
		}
		n = epoll_wait(s->epfd, evs, (int)ARRAY_SIZE(evs), timeout);
		if (n < 0) {
			BUG_ON(errno != EINTR);
			continue;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64 & 3;
			struct sim_ep *e = &s->eps[evs[i].data.u64 >> 2];

			if (tag == SIM_TAG_SIGNAL) {
				struct signalfd_siginfo si;

				if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
					continue;
				if (si.ssi_signo == SIGUSR1) {
					apply_later(s, later, nlater);
					continue;
				}
				if (s->verbose)
					fprintf(stderr, "corral-qmp-sim: signal %u, exiting\n",
						si.ssi_signo);
				return;
			}
			if (tag == SIM_TAG_LISTEN) {
				if (e->listening)
					sim_ep_on_listen(s, e);
			} else if (e->cfd >= 0) {
				/* The client may have left earlier in this batch. */
				sim_ep_on_conn(s, e, evs[i].events);
			}
		}

		now = now_ns();
		while ((t = sim_timers_peek(&s->timers)) && t->when_ns <= now) {
			struct sim_timer fired = *t;

			sim_timers_pop(&s->timers);
			sim_ep_on_timer(s, &s->eps[fired.ep], &fired);
		}
	}
}

int main(int argc, char **argv)
{
	enum { O_DIR = 256, O_COUNT, O_PREFIX, O_VERBOSE, O_HELP, O_DELAY, O_HANG, O_GARBAGE,
	       O_DISC, O_STORM, O_EARLY, O_FAULT, O_LATER };
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, O_DIR },
		{ "count", required_argument, NULL, O_COUNT },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "delay-ms", required_argument, NULL, O_DELAY },
		{ "hang", required_argument, NULL, O_HANG },
		{ "garbage", optional_argument, NULL, O_GARBAGE },
		{ "disconnect-after", required_argument, NULL, O_DISC },
		{ "event-storm", required_argument, NULL, O_STORM },
		{ "events-before-greeting", required_argument, NULL, O_EARLY },
		{ "fault", required_argument, NULL, O_FAULT },
		{ "fault-on-usr1", required_argument, NULL, O_LATER },
		{ NULL, 0, NULL, 0 },
	};
	struct sim s = { .epfd = -1 };
	struct sim_knobs global = { 0 };
	struct fault *faults = NULL, *later = NULL;
	size_t nfaults = 0, nlater = 0;
	const char *dir = NULL, *prefix = "vm";
	unsigned long count = 0;
	struct epoll_event ev;
	char err[256];
	sigset_t mask;
	int opt, sfd = -1, r, rc = 0;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *knob = NULL;

		switch (opt) {
		case O_DIR:
			dir = optarg;
			break;
		case O_COUNT:
			if (parse_ulong(optarg, 1u << 20, &count) < 0 || count == 0) {
				fprintf(stderr, "corral-qmp-sim: bad --count '%s'\n", optarg);
				rc = 2;
				goto out;
			}
			break;
		case O_PREFIX:
			prefix = optarg;
			break;
		case O_VERBOSE:
			s.verbose = true;
			break;
		case O_HELP:
			fputs(usage, stdout);
			goto out;
		case O_DELAY:
			knob = "delay-ms";
			break;
		case O_HANG:
			knob = "hang";
			break;
		case O_GARBAGE:
			knob = "garbage";
			break;
		case O_DISC:
			knob = "disconnect-after";
			break;
		case O_STORM:
			knob = "event-storm";
			break;
		case O_EARLY:
			knob = "events-before-greeting";
			break;
		case O_FAULT:
		case O_LATER: {
			struct fault **v = opt == O_FAULT ? &faults : &later;
			size_t *nv = opt == O_FAULT ? &nfaults : &nlater;
			struct fault *nf = realloc(*v, (*nv + 1) * sizeof(*nf));
			struct sim_knobs probe = { 0 };

			if (!nf) {
				fprintf(stderr, "corral-qmp-sim: out of memory\n");
				rc = 1;
				goto out;
			}
			*v = nf;
			if (parse_fault(optarg, &nf[*nv], err, sizeof(err)) < 0 ||
			    sim_knob_set(&probe, nf[*nv].knob, nf[*nv].val, err,
					 sizeof(err)) < 0) {
				fprintf(stderr, "corral-qmp-sim: %s\n", err);
				rc = 2;
				goto out;
			}
			(*nv)++;
			break;
		}
		default:
			fputs(usage, stderr);
			rc = 2;
			goto out;
		}
		if (knob && sim_knob_set(&global, knob, optarg, err, sizeof(err)) < 0) {
			fprintf(stderr, "corral-qmp-sim: %s\n", err);
			rc = 2;
			goto out;
		}
	}
	if (!dir || !count || optind != argc) {
		fputs(usage, stderr);
		rc = 2;
		goto out;
	}

	s.count = (uint32_t)count;
	s.eps = calloc(s.count, sizeof(*s.eps));
	if (!s.eps) {
		fprintf(stderr, "corral-qmp-sim: out of memory\n");
		rc = 1;
		goto out;
	}
	for (uint32_t i = 0; i < s.count; i++) {
		struct sim_ep *e = &s.eps[i];
		int n;

		e->idx = i;
		e->lfd = e->cfd = -1;
		e->k = global;
		for (size_t j = 0; j < nfaults; j++) {
			if (!fault_selects(&faults[j], i))
				continue;
			if (sim_knob_set(&e->k, faults[j].knob, faults[j].val, err,
					 sizeof(err)) < 0) {
				fprintf(stderr, "corral-qmp-sim: --fault: %s\n", err);
				rc = 2;
				goto out;
			}
		}
		n = snprintf(e->name, sizeof(e->name), "%s%u", prefix, i);
		if (n < 0 || (size_t)n >= sizeof(e->name)) {
			fprintf(stderr, "corral-qmp-sim: --prefix too long\n");
			rc = 2;
			goto out;
		}
		n = snprintf(e->path, sizeof(e->path), "%s/%s.qmp", dir, e->name);
		if (n < 0 || (size_t)n >= sizeof(e->path)) {
			fprintf(stderr, "corral-qmp-sim: socket path %s/%s.qmp is too long for "
				"a UNIX socket\n", dir, e->name);
			rc = 2;
			goto out;
		}
	}
	if (raise_nofile(s.count) < 0) {
		rc = 1;
		goto out;
	}
	umask(0077);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "corral-qmp-sim: mkdir %s: %s\n", dir, strerror(errno));
		rc = 1;
		goto out;
	}

	/* Signals arrive through the loop, never in the middle of it. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	BUG_ON(sigprocmask(SIG_BLOCK, &mask, NULL) < 0);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || s.epfd < 0) {
		fprintf(stderr, "corral-qmp-sim: setup: %s\n", strerror(errno));
		rc = 1;
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = sim_tag(0, SIM_TAG_SIGNAL) };
	BUG_ON(epoll_ctl(s.epfd, EPOLL_CTL_ADD, sfd, &ev) < 0);

	for (uint32_t i = 0; i < s.count; i++) {
		r = ep_listen(&s, &s.eps[i]);
		if (r < 0) {
			fprintf(stderr, "corral-qmp-sim: listen on %s: %s\n", s.eps[i].path,
				strerror(-r));
			remove_sockets(&s);
			rc = 1;
			goto out;
		}
	}
	printf("ready %u\n", s.count);
	fflush(stdout);

	run(&s, sfd, later, nlater);

	remove_sockets(&s);
out:
	sim_timers_fini(&s.timers);
	if (sfd >= 0)
		close(sfd);
	if (s.epfd >= 0)
		close(s.epfd);
	free(s.eps);
	free(faults);
	free(later);
	return rc;
}

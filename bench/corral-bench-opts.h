/* SPDX-License-Identifier: MIT */
/*
 * corral-bench's options and scenarios, in one table each: --help is made
 * from them, and so can a manual page be (include this header, walk the
 * tables).  The ids are getopt_long's return values.
 */
#ifndef CORRAL_BENCH_OPTS_H
#define CORRAL_BENCH_OPTS_H

#include "bench/benchutil.h"

enum {
	OPT_DOMAINS = 256, OPT_DURATION, OPT_CONNECTIONS, OPT_IN_FLIGHT, OPT_RATE, OPT_REAL,
	OPT_SOCKET, OPT_JSON, OPT_PLOT, OPT_TARGET, OPT_HANG, OPT_SLOW, OPT_SLOW_MS,
	OPT_CLOSE, OPT_KILL, OPT_FAULT_AT, OPT_EVENT_RATE, OPT_TIMEOUT, OPT_CORRALD,
	OPT_SIM, OPT_DAEMON_ARG, OPT_SEED, OPT_QUIET, OPT_HELP, OPT_MACHINE, OPT_MIX,
};

static const struct bench_opt corral_bench_opts[] = {
	{ "domains", "N", OPT_DOMAINS,
	  "Domains attached to simulated QEMUs (default 100). corrald holds one descriptor "
	  "per attached domain (its QMP socket), so N is at most its RLIMIT_NOFILE - 200." },
	{ "duration", "S", OPT_DURATION, "Seconds of load, after setup (default 10)." },
	{ "connections", "C", OPT_CONNECTIONS,
	  "Client connections, one thread each (default 4)." },
	{ "in-flight", "K", OPT_IN_FLIGHT,
	  "Closed loop: requests in flight per connection (default 16). Open loop: the "
	  "most in flight per connection (default 4096); later sends wait, their latency "
	  "counted from the time they were due. Setup (the attach or start storm) keeps "
	  "K in flight, at least 64 and at most 512 (corrald refuses more than its "
	  "client_inflight_max, 1024 by default)." },
	{ "rate", "R", OPT_RATE,
	  "Open loop: R requests per second in all, on a fixed schedule; latency is "
	  "measured from each request's scheduled time (default 0: closed loop)." },
	{ "real", "N", OPT_REAL,
	  "Also define and start N real QEMUs (machine none) through the daemon." },
	{ "mix", "OP=W,...", OPT_MIX,
	  "The operations of the load and their weights, e.g. info=90,stats=10 (ops: info, "
	  "qmp, list, stats, suspend for suspend/resume, start for start/destroy of --real "
	  "domains); default: the scenario's." },
	{ "machine", "TYPE", OPT_MACHINE,
	  "QEMU machine type of the real domains (default none; pc with libvirt, which "
	  "refuses none)." },
	{ "socket", "PATH", OPT_SOCKET,
	  "Drive the daemon serving PATH (read-write socket); default: start a private "
	  "corrald in a temporary directory." },
	{ "json", NULL, OPT_JSON, "Print the results as one JSON object instead of tables." },
	{ "plot", "FILE", OPT_PLOT,
	  "Write latency percentile curves per operation to FILE (SVG)." },
	{ "target", "URI", OPT_TARGET,
	  "corral (default) or a libvirt URI such as libvirt:///system (only when built "
	  "with libvirt)." },
	{ "hang", "F", OPT_HANG,
	  "Fraction (0..1) of simulated monitors that stop answering at the fault time "
	  "(hung-10: default 0.1; 0 runs it without the fault, the run to compare with)." },
	{ "slow", "F", OPT_SLOW,
	  "Fraction of simulated monitors that answer --slow-ms late from the fault time." },
	{ "slow-ms", "MS", OPT_SLOW_MS, "Delay of a slow monitor (default 200)." },
	{ "close", "F", OPT_CLOSE,
	  "Fraction of simulated monitors that close their connection at the fault time "
	  "(and every later one after its first command)." },
	{ "kill", "F", OPT_KILL,
	  "Fraction of simulated QEMUs killed (SIGKILL) at the fault time: they are served "
	  "by a simulator process of their own." },
	{ "fault-at", "S", OPT_FAULT_AT,
	  "When faults strike, in seconds into the load (default: half of --duration)." },
	{ "event-rate", "E", OPT_EVENT_RATE,
	  "Events per second in all from the simulated QEMUs (RTC_CHANGE, numbered), checked "
	  "in order by a subscriber (default 200 in mixed and hung-10, else 0)." },
	{ "timeout-ms", "MS", OPT_TIMEOUT,
	  "The deadline (timeout_ms) of every call (default 5000)." },
	{ "corrald", "PATH", OPT_CORRALD,
	  "The corrald to start (default: next to corral-bench, else on PATH)." },
	{ "sim", "PATH", OPT_SIM, "The corral-qmp-sim to start (default: likewise)." },
	{ "daemon-arg", "ARG", OPT_DAEMON_ARG,
	  "Pass ARG to the private corrald (repeatable), e.g. --daemon-arg=--workers=2." },
	{ "seed", "N", OPT_SEED, "Seed of the random choices (default 1)." },
	{ "quiet", NULL, OPT_QUIET, "No progress line, even on a terminal." },
	{ "help", NULL, OPT_HELP, "This text." },
	{ NULL, NULL, 0, NULL },
};

struct bench_scenario_doc {
	const char *name;
	const char *help;
};

static const struct bench_scenario_doc corral_bench_scenarios[] = {
	{ "boot-storm", "Attach N simulated domains (and start --real N) all at once; the "
			"time until every one answers with its monitor up." },
	{ "steady-query", "info, qmp query-status, list and stats on random domains." },
	{ "mixed", "Queries, qmp, suspend/resume (and start/destroy of --real domains) "
		   "with an event subscriber checking every event's order. A qmp call that "
		   "lands on a --real domain while it is shut off fails (bad-state)." },
	{ "hung-10", "mixed, and 10 % of the monitors hang at the fault time: healthy "
		     "domains' latency before and after, and the hung ones'. With --hang 0, "
		     "the same run without the fault." },
	{ "churn", "define, start (a real QEMU, machine none), destroy, undefine in a loop "
		   "on C x K lanes: the daemon's memory and descriptors before and after." },
	{ "restart", "Queries, then kill -9 of the daemon at the fault time and a restart: "
		     "the time until every domain answers and every monitor is back." },
	{ NULL, NULL },
};

#endif

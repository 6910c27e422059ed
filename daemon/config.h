/* SPDX-License-Identifier: MIT */
/*
 * config: corrald's settings, from defaults, an optional key=value file
 * (--config) and command-line flags, in that order of precedence (a flag
 * beats the file, the file beats the default).  See docs/daemon.md.
 *
 * Main thread only, before any other thread starts.
 */
#ifndef CORRAL_DAEMON_CONFIG_H
#define CORRAL_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * What a client (or a domain's queue) can make corrald hold: docs/daemon.md,
 * "Limits and clients that do not read".  config.c has each one's key, flag,
 * range and default.
 */
enum dlimit {
	LIM_FRAME_MAX,                  /* bytes of one request */
	LIM_FRAME_TIMEOUT_MS,           /* a request begun must be complete by then */
	LIM_INPUT_TOTAL,                /* bytes of unfinished requests, all clients */
	LIM_OUTPUT_MAX,                 /* output bytes waiting for one client */
	LIM_OUTPUT_TOTAL,               /* output bytes, all clients */
	LIM_INFLIGHT_MAX,               /* state changes in flight per connection */
	LIM_SUBS_MAX,                   /* subscriptions per connection */
	LIM_EVENT_QUEUE,                /* events a subscriber may fall behind */
	LIM_WAITING_JOBS_MAX,           /* jobs waiting per domain */
	LIM_COUNT
};

struct dconf {
	char *socket;                   /* read-write socket */
	char *ro_socket;                /* read-only socket */
	char *state_dir;
	char *runtime_dir;
	char *socket_group;             /* NULL: sockets for the daemon's user only */
	char *emulator;                 /* NULL: the VM layer's default */
	char *config_file;              /* --config, for messages */
	char *qemu_user;                /* NULL: QEMU runs as the daemon's user */
	char *cgroup_parent;            /* the VMs' parent control group */
	char **emulators;               /* allowed, NULL-terminated; NULL: the default */
	size_t nemulators;
	char **bridges;                 /* bridged NICs may join these; NULL-terminated */
	size_t nbridges;
	char *ovmf_code, *ovmf_vars;    /* NULL: Debian's ovmf */
	char *metrics_listen;           /* NULL: no /metrics listener */
	uint64_t console_log_max;       /* 0: the default */
	unsigned workers;               /* actor runtime threads */
	unsigned io_threads;            /* epoll threads */
	uint64_t default_timeout_ms;    /* jobs without "timeout_ms" */
	uint64_t client_stall_ms;       /* close a client whose output stays over the cap */
	uint64_t stats_interval_ms;     /* statistics rounds; 0: none */
	uint64_t mon_threshold_ms;      /* heartbeat threshold; 0: none */
	uint64_t lim[LIM_COUNT];        /* enum dlimit */
	bool set[64];                   /* which keys were given (config.c's K_*) */
	int log_level;                  /* enum log_level */
	bool no_autostart;              /* --no-autostart: leave marked domains off */
	/* What to do instead of serving. */
	bool help, version, dump_api_md;
	char *dump_man;                 /* --dump-man PAGE */
};

/*
 * Read argv (and the file named by --config, if any) into conf and fill in
 * the defaults.  0, or -EINVAL with a one-line reason in errbuf.
 */
int dconf_load(struct dconf *conf, int argc, char **argv, char *errbuf, size_t errlen);
void dconf_fini(struct dconf *conf);

/* The --help text. */
void dconf_usage(FILE *f);

/*
 * The man page corrald.8 or corral.conf.5 (roff), from the flag table;
 * corrald.8 also lists the methods (api_list prints them).  0, or -ENOENT
 * for another page name.
 */
int dconf_man(FILE *f, const char *page, const char *version, void (*api_list)(FILE *f));

#endif /* CORRAL_DAEMON_CONFIG_H */

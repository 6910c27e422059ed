/* SPDX-License-Identifier: MIT */
/*
 * cli: what main.c (options, dispatch, help, error reporting) shares with
 * commands.c (one function per command).  The CLI speaks only the wire
 * protocol (rpc/, docs/API.md); it never sees actors/ or daemon/.
 *
 * Main thread only.
 */
#ifndef CORRAL_CLI_CLI_H
#define CORRAL_CLI_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/client.h"

/* Exit codes: stable, documented in `corral --help` and cli/README.md. */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,             /* anything not below */
	CLI_EXIT_USAGE = 2,             /* bad command line; nothing was sent */
	CLI_EXIT_NOT_FOUND = 3,         /* no-such-domain */
	CLI_EXIT_BUSY = 4,              /* busy */
	CLI_EXIT_TIMEOUT = 5,           /* timeout, from corrald or waiting for it */
	CLI_EXIT_UNREACHABLE = 6,       /* cannot connect, connection lost, or unavailable */
	CLI_EXIT_PERMISSION = 7,        /* permission */
};

enum cli_format {
	CLI_FORMAT_TABLE,
	CLI_FORMAT_JSON,
	CLI_FORMAT_PROMETHEUS,  /* corral stats only */
};

/* How long past the daemon's own deadline the CLI waits for its answer. */
#define CLI_TIMEOUT_MARGIN_MS 2000
#define CLI_DEFAULT_TIMEOUT_MS 30000
/* corrald refuses a longer timeout_ms. */
#define CLI_TIMEOUT_MAX_MS (24 * 3600 * 1000)

/*
 * JSON output: 15 significant digits print 0.0033448250000000001 as
 * 0.003344825 and still hold a Unix time to the microsecond.
 */
#define CLI_JSON_REALS JSON_REAL_PRECISION(15)

struct cli_opt {
	const char *name;       /* long name without "--" */
	char short_name;        /* 0: none */
	const char *metavar;    /* NULL: a flag without a value */
	bool repeat;            /* may be given more than once */
	const char *help;
};

/* One option as given on the command line. */
struct cli_optval {
	const struct cli_opt *opt;
	const char *value;      /* NULL for a flag */
};

/* The command's own arguments, after the global options were taken out. */
struct cli_args {
	const char **pos;
	size_t npos;
	struct cli_optval *opts;
	size_t nopts;
};

struct cli_cmd;

struct cli {
	const struct cli_cmd *cmd;      /* the command being run; NULL before it is known */
	const char *socket;
	bool may_autostart;     /* the socket is the default one: start corrald if absent */
	enum cli_format format;
	uint64_t timeout_ms;
	struct cli_client *client;      /* connected at the first call */
	/* The failure main() reports: set by cli_fail() and cli_call(). */
	int err_code;           /* enum rpc_err, or 0 for a local failure */
	const char *err_name;   /* rpc_err_name(), or "usage", "unreachable", ... */
	char err_message[1024];
};

struct cli_cmd {
	const char *name;
	const char *synopsis;   /* after "corral NAME " */
	const char *summary;    /* one line for `corral help` */
	const char *details;    /* more text for `corral NAME --help`, or NULL */
	const struct cli_opt *opts;     /* ends with { 0 }; NULL: none */
	unsigned min_pos, max_pos;
	int (*run)(struct cli *c, const struct cli_args *a);
	bool hidden;            /* not in help (completion helpers) */
};

/* corral console (console.c). */
int cmd_console(struct cli *c, const struct cli_args *a);

/* Every command, ending with { 0 }. */
extern const struct cli_cmd cli_cmds[];

/* The command of that name, or NULL. */
const struct cli_cmd *cli_cmd_find(const char *name);

/* The help of cmd, or of corral as a whole for NULL. */
void cli_help(FILE *f, const struct cli_cmd *cmd);

/* The last value of option name, or NULL if not given. */
const char *cli_opt_get(const struct cli_args *a, const char *name);
bool cli_opt_has(const struct cli_args *a, const char *name);

/*
 * Record a failure for main() to print and return exit.  For usage errors,
 * use cli_usage(): it adds the hint to `--help`.
 */
int cli_fail(struct cli *c, int exit, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int cli_usage(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Connect now if not yet connected (starting a session corrald if allowed).
 * 0, or the exit code with the failure recorded.
 */
int cli_connect(struct cli *c);

/*
 * Connect on first use (starting a session corrald if allowed), call method
 * with params (a JSON object, stolen; NULL: none) plus timeout_ms, and wait
 * for the answer until the timeout and a margin have passed.  0 and *ret
 * (may be NULL when the caller does not want it), or the exit code with the
 * failure recorded.
 */
int cli_call(struct cli *c, const char *method, json_t *params, json_t **ret);

/* Like cli_call() with an explicit deadline (now_ns() clock) and no timeout_ms. */
int cli_call_until(struct cli *c, const char *method, json_t *params, uint64_t deadline_ns,
		   json_t **ret);

/* Map a failed client call to an exit code, recording it. */
int cli_call_failed(struct cli *c, int r, const struct cli_call_err *err);

/* Print v as JSON on stdout (pretty, with a newline).  0 or CLI_EXIT_ERROR. */
int cli_print_json(struct cli *c, const json_t *v);

#endif /* CORRAL_CLI_CLI_H */

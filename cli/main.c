/* SPDX-License-Identifier: MIT */
/*
 * corral: the command-line client of corrald.  This file reads the command
 * line, prints help and errors, and owns the connection; commands.c has one
 * function per command.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/session.h"
#include "common/roff.h"
#include "common/util.h"
#include "rpc/rpc.h"

#ifndef CORRAL_VERSION
#define CORRAL_VERSION "unknown"
#endif

#define SESSION_START_TIMEOUT_NS (10 * NSEC_PER_SEC)

static const struct cli_opt global_opts[] = {
	{ "socket", 0, "PATH", false, "corrald's socket (default: $CORRAL_SOCKET, else the per-user one)" },
	{ "format", 0, "table|json|prometheus", false,
	  "output for people (table, the default) or programs (json; prometheus: stats)" },
	{ "timeout", 0, "S", false, "deadline of each call in seconds (default 30; also 500ms, 2m)" },
	{ "help", 'h', NULL, false, "show help and exit" },
	{ "version", 0, NULL, false, "show the version and exit" },
	{ 0 },
};

/* ------------------------------------------------------------------------ */
/* Failures */

static int vfail(struct cli *c, int exit, int code, const char *name, const char *fmt,
		 va_list ap)
{
	c->err_code = code;
	c->err_name = name;
	vsnprintf(c->err_message, sizeof(c->err_message), fmt, ap);
	return exit;
}

int cli_fail(struct cli *c, int exit, const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, exit, 0, name, fmt, ap);
	va_end(ap);
	return exit;
}

int cli_usage(struct cli *c, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->cmd)
		return cli_fail(c, CLI_EXIT_USAGE, "usage", "%s: %s (see 'corral %s --help')",
				c->cmd->name, msg, c->cmd->name);
	return cli_fail(c, CLI_EXIT_USAGE, "usage", "%s (see 'corral --help')", msg);
}

static int exit_for_rpc_err(int code)
{
	switch (code) {
	case RPC_ERR_NO_SUCH_DOMAIN:
		return CLI_EXIT_NOT_FOUND;
	case RPC_ERR_BUSY:
		return CLI_EXIT_BUSY;
	case RPC_ERR_TIMEOUT:
		return CLI_EXIT_TIMEOUT;
	case RPC_ERR_PERMISSION:
		return CLI_EXIT_PERMISSION;
	case RPC_ERR_UNAVAILABLE:
		return CLI_EXIT_UNREACHABLE;
	default:
		return CLI_EXIT_ERROR;
	}
}

int cli_call_failed(struct cli *c, int r, const struct cli_call_err *err)
{
	switch (r) {
	case -EREMOTEIO:
		c->err_code = err->code;
		c->err_name = rpc_err_name(err->code);
		snprintf(c->err_message, sizeof(c->err_message), "%s", err->message);
		return exit_for_rpc_err(err->code);
	case -ETIMEDOUT:
		return cli_fail(c, CLI_EXIT_TIMEOUT, "timeout",
				"no answer from corrald at %s within --timeout + %u s", c->socket,
				CLI_TIMEOUT_MARGIN_MS / 1000);
	case -ECONNRESET:
		return cli_fail(c, CLI_EXIT_UNREACHABLE, "unreachable",
				"lost the connection to corrald at %s: %s", c->socket,
				err->message);
	default:
		return cli_fail(c, CLI_EXIT_ERROR, "error", "%s", err->message);
	}
}

/* Errors go to stderr: a line for people, or {"error": {...}} for programs. */
static void print_error(const struct cli *c)
{
	json_t *j;

	if (c->format == CLI_FORMAT_JSON) {
		j = json_pack("{s:{s:o, s:s, s:s}}", "error", "code",
			      c->err_code ? json_integer(c->err_code) : json_null(), "name",
			      c->err_name ? c->err_name : "error", "message", c->err_message);
		if (j) {
			json_dumpf(j, stderr, JSON_COMPACT);
			fputc('\n', stderr);
			json_decref(j);
			return;
		}
	}
	if (c->err_code)
		fprintf(stderr, "corral: %s: %s\n", c->err_name, c->err_message);
	else
		fprintf(stderr, "corral: %s\n", c->err_message);
}

/* ------------------------------------------------------------------------ */
/* Calls */

int cli_connect(struct cli *c)
{
	char reason[512];
	struct ucred peer = { 0 };
	int r;

	if (c->client)
		return 0;
	r = cli_client_connect(c->socket, &c->client, &peer);
	if (r == -EPERM)
		return cli_fail(c, CLI_EXIT_PERMISSION, "permission",
				"refusing %s: it is served by pid %d of uid %u, neither you nor "
				"root; nothing was sent", c->socket, (int)peer.pid,
				(unsigned)peer.uid);
	if (r && c->may_autostart && (r == -ENOENT || r == -ECONNREFUSED)) {
		r = cli_session_start(c->socket, SESSION_START_TIMEOUT_NS, &c->client, reason,
				      sizeof(reason));
		if (r)
			return cli_fail(c, CLI_EXIT_UNREACHABLE, "unreachable",
					"cannot reach corrald at %s: starting it failed: %s",
					c->socket, reason);
	}
	if (r)
		return cli_fail(c, CLI_EXIT_UNREACHABLE, "unreachable",
				"cannot reach corrald at %s: %s", c->socket, strerror(-r));
	return 0;
}

int cli_call_until(struct cli *c, const char *method, json_t *params, uint64_t deadline_ns,
		   json_t **ret)
{
	struct cli_call_err err;
	json_t *res = NULL;
	int r;

	r = cli_connect(c);
	if (!r) {
		r = cli_client_call(c->client, method, params, deadline_ns, &res, &err);
		if (r)
			r = cli_call_failed(c, r, &err);
	}
	json_decref(params);
	if (r)
		return r;
	if (ret)
		*ret = res;
	else
		json_decref(res);
	return 0;
}

int cli_call(struct cli *c, const char *method, json_t *params, json_t **ret)
{
	uint64_t deadline_ns = now_ns() + (c->timeout_ms + CLI_TIMEOUT_MARGIN_MS) * NSEC_PER_MSEC;

	if (!params)
		params = json_object();
	if (!params || json_object_set_new(params, "timeout_ms", json_integer((json_int_t)c->timeout_ms))) {
		json_decref(params);
		return cli_fail(c, CLI_EXIT_ERROR, "error", "out of memory");
	}
	return cli_call_until(c, method, params, deadline_ns, ret);
}

int cli_print_json(struct cli *c, const json_t *v)
{
	if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY | CLI_JSON_REALS) ||
	    putchar('\n') == EOF)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "cannot write the output: %s", strerror(errno));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Help */

const struct cli_cmd *cli_cmd_find(const char *name)
{
	const struct cli_cmd *cmd;

	for (cmd = cli_cmds; cmd->name; cmd++)
		if (!strcmp(cmd->name, name))
			return cmd;
	return NULL;
}

static void print_opts(FILE *f, const struct cli_opt *opts)
{
	const struct cli_opt *o;

	for (o = opts; o && o->name; o++) {
		char left[64], shrt[5] = "    ";

		if (o->short_name)
			snprintf(shrt, sizeof(shrt), "-%c, ", o->short_name);
		snprintf(left, sizeof(left), "%s--%s%s%s", shrt, o->name, o->metavar ? " " : "",
			 o->metavar ? o->metavar : "");
		fprintf(f, "  %-28s %s\n", left, o->help);
	}
}

/* The help and the man page (corral --dump-man) print these tables. */
static const struct { int code; const char *text; } exit_codes[] = {
	{ 0, "success" },
	{ 1, "other error (the message says which)" },
	{ 2, "usage error: bad command line, nothing was sent" },
	{ 3, "not found: no domain of that name" },
	{ 4, "busy: the domain's job queue stayed full" },
	{ 5, "timeout: the operation or the wait for corrald ran out of time" },
	{ 6, "corrald unreachable (or shutting down)" },
	{ 7, "permission denied" },
};

static const struct { const char *name, *text; } environment[] = {
	{ "CORRAL_SOCKET", "the socket, when --socket is not given" },
	{ "CORRAL_DAEMON", "the corrald to start when none is listening" },
};

static const char default_socket_text[] =
	"Without --socket or CORRAL_SOCKET, corral uses the per-user socket\n"
	"(/run/corral/corral.sock for root, else $XDG_RUNTIME_DIR/corral/corral.sock)\n"
	"and starts a session corrald there if none is listening.\n";

void cli_help(FILE *f, const struct cli_cmd *cmd)
{
	const struct cli_cmd *k;

	if (cmd) {
		fprintf(f, "Usage: corral %s%s%s\n\n%s.\n", cmd->name, *cmd->synopsis ? " " : "",
			cmd->synopsis, cmd->summary);
		if (cmd->details)
			fprintf(f, "\n%s", cmd->details);
		if (cmd->opts) {
			fputs("\nOptions:\n", f);
			print_opts(f, cmd->opts);
		}
		fputs("\nGlobal options:\n", f);
		print_opts(f, global_opts);
		return;
	}
	fputs("Usage: corral [OPTION]... COMMAND [ARG]...\n"
	      "Manage QEMU virtual machines (domains) through corrald.\n"
	      "\nCommands:\n", f);
	for (k = cli_cmds; k->name; k++)
		if (!k->hidden)
			fprintf(f, "  %-12s %s\n", k->name, k->summary);
	fputs("\nGlobal options (anywhere on the line):\n", f);
	print_opts(f, global_opts);
	fputs("\nEnvironment:\n", f);
	for (size_t i = 0; i < ARRAY_SIZE(environment); i++)
		fprintf(f, "  %-13s  %s\n", environment[i].name, environment[i].text);
	fprintf(f, "\n%s\nExit codes:\n", default_socket_text);
	for (size_t i = 0; i < ARRAY_SIZE(exit_codes); i++)
		fprintf(f, "  %d  %s\n", exit_codes[i].code, exit_codes[i].text);
	fputs("\nRun 'corral COMMAND --help' for the options of a command.\n", f);
}

static void man_opts(FILE *f, const struct cli_opt *opts)
{
	for (const struct cli_opt *o = opts; o && o->name; o++) {
		roff_macro(f, "TP", NULL);
		fputs("\\fB", f);
		if (o->short_name)
			fprintf(f, "\\-%c\\fR, \\fB", o->short_name);
		fputs("\\-\\-", f);
		roff_text(f, o->name);
		fputs("\\fR", f);
		if (o->metavar) {
			fputs(" \\fI", f);
			roff_text(f, o->metavar);
			fputs("\\fR", f);
		}
		fputc('\n', f);
		roff_text(f, o->help);
		fputs(o->repeat ? " (repeatable)\n" : "\n", f);
	}
}

/* corral(1), from the tables the help prints: corral --dump-man. */
static void cli_dump_man(FILE *f)
{
	roff_head(f, "corral", "1", CORRAL_VERSION, "corral manual",
		  "manage QEMU virtual machines through corrald");
	roff_macro(f, "SH", "SYNOPSIS");
	fputs(".B corral\n.RI [ OPTION ]...\n.I COMMAND\n.RI [ ARG ]...\n", f);
	roff_macro(f, "SH", "DESCRIPTION");
	roff_text(f, "corral is the command-line client of corrald(8): it defines, starts, "
		  "stops and inspects virtual machines (domains), follows their events and "
		  "attaches to their serial consoles.  It speaks corrald's msgpack-RPC API "
		  "on a UNIX socket and nothing else.\n");
	roff_macro(f, "PP", NULL);
	roff_text(f, default_socket_text);
	roff_macro(f, "SH", "COMMANDS");
	for (const struct cli_cmd *k = cli_cmds; k->name; k++) {
		if (k->hidden)
			continue;
		roff_macro(f, "TP", NULL);
		fputs("\\fBcorral ", f);
		roff_text(f, k->name);
		fputs("\\fR", f);
		if (*k->synopsis) {
			/* A second synopsis line starts "corral NAME" again. */
			const char *nl = strchr(k->synopsis, '\n');

			fputc(' ', f);
			if (nl) {
				char first[256];

				snprintf(first, sizeof(first), "%.*s", (int)(nl - k->synopsis),
					 k->synopsis);
				roff_text(f, first);
				/* The tag is one line: the second goes first in the body. */
				fputs("\n\\fB", f);
				roff_text(f, nl + 1 + strspn(nl + 1, " "));
				fputs("\\fR\n.br", f);
			} else {
				roff_text(f, k->synopsis);
			}
		}
		fputc('\n', f);
		roff_text(f, k->summary);
		fputs(".\n", f);
		if (k->details) {
			roff_macro(f, "IP", NULL);
			roff_text(f, k->details);
		}
		if (k->opts) {
			roff_macro(f, "RS", NULL);
			man_opts(f, k->opts);
			roff_macro(f, "RE", NULL);
		}
	}
	roff_macro(f, "SH", "GLOBAL OPTIONS");
	roff_text(f, "They may appear anywhere on the line.\n");
	man_opts(f, global_opts);
	roff_macro(f, "SH", "ENVIRONMENT");
	for (size_t i = 0; i < ARRAY_SIZE(environment); i++) {
		roff_macro(f, "TP", NULL);
		fprintf(f, ".B %s\n", environment[i].name);
		roff_text(f, environment[i].text);
		fputc('\n', f);
	}
	roff_macro(f, "SH", "EXIT STATUS");
	for (size_t i = 0; i < ARRAY_SIZE(exit_codes); i++) {
		roff_macro(f, "TP", NULL);
		fprintf(f, ".B %d\n", exit_codes[i].code);
		roff_text(f, exit_codes[i].text);
		fputc('\n', f);
	}
	roff_macro(f, "SH", "EXAMPLES");
	roff_verbatim(f, "corral define vm1 --memory 512 --disk /srv/vm1.qcow2\n"
		      "corral start vm1 --wait\n"
		      "corral list\n"
		      "corral console vm1\n"
		      "corral destroy vm1\n");
	roff_macro(f, "SH", "SEE ALSO");
	fputs(".BR corrald (8),\n.BR corral.conf (5)\n", f);
}

/* ------------------------------------------------------------------------ */
/* The command line */

const char *cli_opt_get(const struct cli_args *a, const char *name)
{
	const char *v = NULL;
	size_t i;

	for (i = 0; i < a->nopts; i++)
		if (!strcmp(a->opts[i].opt->name, name))
			v = a->opts[i].value;
	return v;
}

bool cli_opt_has(const struct cli_args *a, const char *name)
{
	size_t i;

	for (i = 0; i < a->nopts; i++)
		if (!strcmp(a->opts[i].opt->name, name))
			return true;
	return false;
}

static const struct cli_opt *find_opt(const struct cli_opt *opts, const char *name, size_t len,
				      char short_name)
{
	const struct cli_opt *o;

	for (o = opts; o && o->name; o++) {
		if (short_name ? o->short_name == short_name
			       : strlen(o->name) == len && !strncmp(o->name, name, len))
			return o;
	}
	return NULL;
}

static bool any_cmd_has_opt(const char *name, size_t len, char short_name)
{
	const struct cli_cmd *k;

	for (k = cli_cmds; k->name; k++)
		if (find_opt(k->opts, name, len, short_name))
			return true;
	return false;
}

/* "30", "1.5", "30s", "500ms", "2m" -> milliseconds in 1 ms .. 1 day (docs/API.md). */
static int parse_timeout(const char *s, uint64_t *ret_ms)
{
	double v, mult = 1000;
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		mult = 1;
	else if (!strcmp(end, "m"))
		mult = 60000;
	else if (*end && strcmp(end, "s"))
		return -EINVAL;
	v *= mult;
	if (!(v >= 1 && v <= CLI_TIMEOUT_MAX_MS))
		return -EINVAL;
	*ret_ms = (uint64_t)(v + 0.5);
	return 0;
}

struct cmdline {
	const struct cli_cmd *cmd;
	bool help, version;
	const char *socket, *format, *timeout;
	struct cli_args args;
	char first_err[512];    /* the first problem; reported unless --help wins */
};

static void cmdline_err(struct cmdline *cl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void cmdline_err(struct cmdline *cl, const char *fmt, ...)
{
	va_list ap;

	if (cl->first_err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(cl->first_err, sizeof(cl->first_err), fmt, ap);
	va_end(ap);
}

static void take_global(struct cmdline *cl, const struct cli_opt *o, const char *value)
{
	if (!strcmp(o->name, "help"))
		cl->help = true;
	else if (!strcmp(o->name, "version"))
		cl->version = true;
	else if (!strcmp(o->name, "socket"))
		cl->socket = value;
	else if (!strcmp(o->name, "format"))
		cl->format = value;
	else if (!strcmp(o->name, "timeout"))
		cl->timeout = value;
}

/* One option at argv[*i]; may take argv[*i + 1] as its value. */
static void parse_opt(struct cmdline *cl, int argc, char **argv, int *i)
{
	const char *arg = argv[*i], *name, *eq = NULL, *value = NULL;
	const struct cli_opt *o;
	char short_name = 0;
	size_t len, k;

	if (arg[1] == '-') {
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
	} else if (!arg[2]) {
		name = arg + 1;
		len = 1;
		short_name = arg[1];
	} else {
		cmdline_err(cl, "unknown option '%s'", arg);
		return;
	}
	/* A command's own option wins after it (attach-disk --format is the image's). */
	o = cl->cmd ? find_opt(cl->cmd->opts, name, len, short_name) : NULL;
	if (!o)
		o = find_opt(global_opts, name, len, short_name);
	if (!o) {
		if (!cl->cmd && any_cmd_has_opt(name, len, short_name))
			cmdline_err(cl, "option '%s' must come after the command", arg);
		else
			cmdline_err(cl, "unknown option '%.*s'", (int)(name - arg + len), arg);
		return;
	}
	if (o->metavar) {
		if (eq) {
			value = eq + 1;
		} else if (*i + 1 < argc) {
			value = argv[++*i];
		} else {
			cmdline_err(cl, "option '%s' needs a value (%s)", arg, o->metavar);
			return;
		}
	} else if (eq) {
		cmdline_err(cl, "option '--%s' takes no value", o->name);
		return;
	}
	if (find_opt(global_opts, o->name, strlen(o->name), 0) == o) {
		take_global(cl, o, value);
		return;
	}
	for (k = 0; k < cl->args.nopts && !o->repeat; k++) {
		if (cl->args.opts[k].opt == o) {
			cmdline_err(cl, "option '--%s' given twice", o->name);
			return;
		}
	}
	cl->args.opts[cl->args.nopts++] = (struct cli_optval){ .opt = o, .value = value };
}

/*
 * Split argv into global options, the command, and its arguments.  Global
 * options may stand anywhere; the command's own options after it; "--"
 * ends options.  Problems are noted, not returned, so that --help wins.
 */
static void parse_cmdline(struct cmdline *cl, int argc, char **argv)
{
	bool options_end = false;
	int i;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_end && !strcmp(arg, "--")) {
			options_end = true;
		} else if (!options_end && arg[0] == '-' && arg[1]) {
			parse_opt(cl, argc, argv, &i);
		} else if (!cl->cmd) {
			cl->cmd = cli_cmd_find(arg);
			if (!cl->cmd) {
				cmdline_err(cl, "unknown command '%s'", arg);
				return;
			}
		} else {
			cl->args.pos[cl->args.npos++] = arg;
		}
	}
}

/* Apply the global options to c.  0 or a usage exit code. */
static int apply_globals(struct cli *c, const struct cmdline *cl)
{
	static char default_socket[4096];
	const char *env = getenv("CORRAL_SOCKET");

	if (cl->format && !strcmp(cl->format, "json"))
		c->format = CLI_FORMAT_JSON;
	else if (cl->format && !strcmp(cl->format, "prometheus") && cl->cmd &&
		 !strcmp(cl->cmd->name, "stats"))
		c->format = CLI_FORMAT_PROMETHEUS;
	else if (cl->format && strcmp(cl->format, "table"))
		return cli_usage(c, "--format must be table or json%s, not '%s'",
				 cl->cmd && !strcmp(cl->cmd->name, "stats") ? " or prometheus" :
				 " (prometheus: corral stats only)", cl->format);
	if (cl->timeout && parse_timeout(cl->timeout, &c->timeout_ms))
		return cli_usage(c, "--timeout takes seconds up to a day (e.g. 30, 1.5, 500ms, "
				 "2m), not '%s'", cl->timeout);
	if (cl->socket) {
		if (!*cl->socket)
			return cli_usage(c, "--socket needs a path");
		c->socket = cl->socket;
	} else if (env && *env) {
		c->socket = env;
	} else {
		if (cli_default_socket(default_socket, sizeof(default_socket)))
			return cli_usage(c, "XDG_RUNTIME_DIR is too long; give --socket");
		c->socket = default_socket;
		c->may_autostart = true;
	}
	return 0;
}

static int run(struct cli *c, int argc, char **argv)
{
	struct cmdline cl = { 0 };
	int r;

	/* Each argument is at most one positional or option. */
	cl.args.pos = calloc((size_t)argc, sizeof(*cl.args.pos));
	cl.args.opts = calloc((size_t)argc, sizeof(*cl.args.opts));
	if (!cl.args.pos || !cl.args.opts) {
		r = cli_fail(c, CLI_EXIT_ERROR, "error", "out of memory");
		goto out;
	}
	parse_cmdline(&cl, argc, argv);
	c->cmd = cl.cmd;
	if (cl.format && !strcmp(cl.format, "json"))
		c->format = CLI_FORMAT_JSON;

	r = 0;
	if (argc == 2 && !strcmp(argv[1], "--dump-man")) {
		/* Not in the help: the build makes corral.1 with it. */
		cli_dump_man(stdout);
	} else if (cl.version) {
		printf("corral %s\n", CORRAL_VERSION);
	} else if (cl.help) {
		cli_help(stdout, cl.cmd);
	} else if (cl.first_err[0]) {
		r = cli_usage(c, "%s", cl.first_err);
	} else if (!cl.cmd) {
		r = cli_usage(c, "no command given");
	} else if (cl.args.npos < cl.cmd->min_pos) {
		r = cli_usage(c, "missing argument (usage: corral %s %s)", cl.cmd->name,
			      cl.cmd->synopsis);
	} else if (cl.args.npos > cl.cmd->max_pos) {
		r = cli_usage(c, "unexpected argument '%s'", cl.args.pos[cl.cmd->max_pos]);
	} else {
		r = apply_globals(c, &cl);
		if (!r)
			r = cl.cmd->run(c, &cl.args);
	}
out:
	free(cl.args.pos);
	free(cl.args.opts);
	return r;
}

/*
 * `corral __complete-words`: the command and option tables, for the shell
 * completion, which so never lists a command or option corral lacks.  Lines:
 * "cmd NAME [domain [file]]" ("domain": its first argument names a domain;
 * "file": its second is a file), then
 * "opt CMD OPTION [METAVAR]" ("*" for a global option, each option as -x and
 * as --long).  No daemon is involved.
 */
static void print_opt_words(const char *cmd, const struct cli_opt *opts)
{
	const struct cli_opt *o;

	for (o = opts; o && o->name; o++) {
		if (o->short_name)
			printf("opt %s -%c%s%s\n", cmd, o->short_name, o->metavar ? " " : "",
			       o->metavar ? o->metavar : "");
		printf("opt %s --%s%s%s\n", cmd, o->name, o->metavar ? " " : "",
		       o->metavar ? o->metavar : "");
	}
}

static void print_complete_words(void)
{
	const struct cli_cmd *cmd;

	for (cmd = cli_cmds; cmd->name; cmd++)
		if (!cmd->hidden)
			printf("cmd %s%s%s\n", cmd->name,
			       !strncmp(cmd->synopsis, "NAME", 4) ||
			       !strncmp(cmd->synopsis, "[NAME", 5) ? " domain" : "",
			       !strncmp(cmd->synopsis, "NAME PATH", 9) ||
			       !strncmp(cmd->synopsis, "NAME FILE", 9) ? " file" : "");
	print_opt_words("*", global_opts);
	for (cmd = cli_cmds; cmd->name; cmd++)
		if (!cmd->hidden)
			print_opt_words(cmd->name, cmd->opts);
}

int main(int argc, char **argv)
{
	struct cli c = { .format = CLI_FORMAT_TABLE, .timeout_ms = CLI_DEFAULT_TIMEOUT_MS };
	int r;

	if (argc == 2 && !strcmp(argv[1], "__complete-words")) {
		print_complete_words();
		return fflush(stdout) ? 1 : 0;
	}

	/* A daemon that goes away must give an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	r = run(&c, argc, argv);
	cli_client_free(c.client);
	/* `corral list | head -1` is not an error. */
	if ((fflush(stdout) == EOF || ferror(stdout)) && errno != EPIPE && !r)
		r = cli_fail(&c, CLI_EXIT_ERROR, "error", "cannot write the output: %s", strerror(errno));
	if (r)
		print_error(&c);
	return r;
}

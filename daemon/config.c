/* SPDX-License-Identifier: MIT */
#include "daemon/config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/roff.h"
#include "common/util.h"
#include "daemon/log.h"
#include "daemon/metrics.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_STALL_MS   30000
#define DEFAULT_STATS_INTERVAL_MS 5000
#define DEFAULT_MON_THRESHOLD_MS  3000

/* The keys of the file; each flag of the same name (with '-') sets the same thing. */
enum key {
	K_SOCKET,
	K_RO_SOCKET,
	K_STATE_DIR,
	K_RUNTIME_DIR,
	K_SOCKET_GROUP,
	K_WORKERS,
	K_IO_THREADS,
	K_DEFAULT_TIMEOUT_MS,
	K_CLIENT_STALL_MS,
	K_EMULATOR,
	K_LOG_LEVEL,
	K_QEMU_USER,
	K_CGROUP_PARENT,
	K_ALLOW_EMULATOR,
	K_ALLOW_BRIDGE,
	K_OVMF_CODE,
	K_OVMF_VARS,
	K_CONSOLE_LOG_MAX,
	K_STATS_INTERVAL_MS,
	K_MON_THRESHOLD_MS,
	K_METRICS_LISTEN,
	K_LIMIT,                        /* the first of LIM_COUNT keys: enum dlimit */
	K_COUNT = K_LIMIT + LIM_COUNT
};

_Static_assert(K_COUNT <= sizeof(((struct dconf *)0)->set), "dconf.set is too small");

static const char *const key_names[K_COUNT] = {
	[K_SOCKET] = "socket",
	[K_RO_SOCKET] = "ro_socket",
	[K_STATE_DIR] = "state_dir",
	[K_RUNTIME_DIR] = "runtime_dir",
	[K_SOCKET_GROUP] = "socket_group",
	[K_WORKERS] = "workers",
	[K_IO_THREADS] = "io_threads",
	[K_DEFAULT_TIMEOUT_MS] = "default_timeout_ms",
	[K_CLIENT_STALL_MS] = "client_stall_timeout_ms",
	[K_EMULATOR] = "emulator",
	[K_LOG_LEVEL] = "log_level",
	[K_QEMU_USER] = "qemu_user",
	[K_CGROUP_PARENT] = "cgroup_parent",
	[K_ALLOW_EMULATOR] = "allowed_emulators",
	[K_ALLOW_BRIDGE] = "allowed_bridges",
	[K_OVMF_CODE] = "ovmf_code",
	[K_OVMF_VARS] = "ovmf_vars",
	[K_CONSOLE_LOG_MAX] = "console_log_max",
	[K_STATS_INTERVAL_MS] = "stats_interval_ms",
	[K_MON_THRESHOLD_MS] = "monitor_threshold_ms",
	[K_METRICS_LISTEN] = "metrics_listen",
	[K_LIMIT + LIM_FRAME_MAX] = "frame_max",
	[K_LIMIT + LIM_FRAME_TIMEOUT_MS] = "frame_timeout_ms",
	[K_LIMIT + LIM_INPUT_TOTAL] = "client_input_total",
	[K_LIMIT + LIM_OUTPUT_MAX] = "client_output_max",
	[K_LIMIT + LIM_OUTPUT_TOTAL] = "client_output_total",
	[K_LIMIT + LIM_INFLIGHT_MAX] = "client_inflight_max",
	[K_LIMIT + LIM_SUBS_MAX] = "subscriptions_max",
	[K_LIMIT + LIM_EVENT_QUEUE] = "event_queue",
	[K_LIMIT + LIM_WAITING_JOBS_MAX] = "waiting_jobs_max",
};

/* The limits' ranges and defaults (docs/daemon.md has the why). */
static const struct {
	uint64_t min, max, def;
	const char *unit;
} limits[LIM_COUNT] = {
	[LIM_FRAME_MAX] = { 4096, 4u << 20, 4u << 20, "bytes" },
	[LIM_FRAME_TIMEOUT_MS] = { 100, 3600000, 10000, "milliseconds" },
	[LIM_INPUT_TOTAL] = { 1u << 20, 1ull << 40, 64u << 20, "bytes" },
	[LIM_OUTPUT_MAX] = { 1u << 20, 1ull << 32, 16u << 20, "bytes" },
	[LIM_OUTPUT_TOTAL] = { 1u << 20, 1ull << 40, 256u << 20, "bytes" },
	[LIM_INFLIGHT_MAX] = { 1, 1u << 20, 1024, "requests" },
	[LIM_SUBS_MAX] = { 1, 65536, 64, "subscriptions" },
	[LIM_EVENT_QUEUE] = { 16, 1u << 20, 4096, "events" },
	[LIM_WAITING_JOBS_MAX] = { 1, 1u << 20, 4096, "jobs" },
};

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int set_str(char **field, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

static bool ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 15 || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* Append a copy of s to a NULL-terminated list of *n.  0 or -ENOMEM. */
static int strv_add(char ***v, size_t *n, const char *s)
{
	char **list = realloc(*v, (*n + 2) * sizeof(*list));

	if (!list)
		return -ENOMEM;
	*v = list;
	list[*n + 1] = NULL;
	if (!(list[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* Apply one setting.  where: "--workers" or "corrald.conf:3", for messages. */
static int dconf_set(struct dconf *c, enum key k, const char *value, const char *where,
		     char *errbuf, size_t errlen)
{
	uint64_t v;

	switch (k) {
	case K_SOCKET:
	case K_RO_SOCKET:
	case K_STATE_DIR:
	case K_RUNTIME_DIR:
		if (value[0] != '/') {
			snprintf(errbuf, errlen, "%s: '%s' must be an absolute path", where, value);
			return -EINVAL;
		}
		if (strlen(value) >= PATH_MAX) {
			snprintf(errbuf, errlen, "%s: path too long", where);
			return -EINVAL;
		}
		return set_str(k == K_SOCKET ? &c->socket :
			       k == K_RO_SOCKET ? &c->ro_socket :
			       k == K_STATE_DIR ? &c->state_dir : &c->runtime_dir, value);
	case K_SOCKET_GROUP:
		return set_str(&c->socket_group, value);
	case K_EMULATOR:
		return set_str(&c->emulator, value);
	case K_QEMU_USER:
		if (!*value || strchr(value, '/') || strchr(value, ':')) {
			snprintf(errbuf, errlen, "%s: '%s' is not a user name", where, value);
			return -EINVAL;
		}
		return set_str(&c->qemu_user, value);
	case K_CGROUP_PARENT:
		for (const char *p = value; *p; p++) {
			if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) {
				snprintf(errbuf, errlen, "%s: '%s' must be a plain name "
					 "([A-Za-z0-9_.-])", where, value);
				return -EINVAL;
			}
		}
		if (!*value || value[0] == '.' || strlen(value) > 100) {
			snprintf(errbuf, errlen, "%s: '%s' must be a plain name ([A-Za-z0-9_.-])",
				 where, value);
			return -EINVAL;
		}
		return set_str(&c->cgroup_parent, value);
	case K_ALLOW_EMULATOR:
	case K_ALLOW_BRIDGE: {
		/* A comma-separated list in the file; one per flag, repeatable. */
		char *copy = strdup(value), *save = NULL;
		bool bridge = k == K_ALLOW_BRIDGE;
		int r = 0;

		if (!copy)
			return -ENOMEM;
		for (char *p = strtok_r(copy, ",", &save); p && !r; p = strtok_r(NULL, ",", &save)) {
			while (*p == ' ')
				p++;
			if (!bridge && p[0] != '/') {
				snprintf(errbuf, errlen, "%s: emulator '%s' must be an absolute path",
					 where, p);
				r = -EINVAL;
			} else if (bridge && !ifname_ok(p)) {
				snprintf(errbuf, errlen, "%s: '%s' is not an interface name (1 to 15 "
					 "of [A-Za-z0-9_.-])", where, p);
				r = -EINVAL;
			} else {
				r = strv_add(bridge ? &c->bridges : &c->emulators,
					     bridge ? &c->nbridges : &c->nemulators, p);
			}
		}
		free(copy);
		return r;
	}
	case K_CONSOLE_LOG_MAX:
		if (parse_uint(value, 4096, 1ull << 30, &v) < 0) {
			snprintf(errbuf, errlen, "%s: '%s' is not a byte count from 4096 to %llu",
				 where, value, 1ull << 30);
			return -EINVAL;
		}
		c->console_log_max = v;
		return 0;
	case K_OVMF_CODE:
	case K_OVMF_VARS:
		if (value[0] != '/' || strlen(value) >= PATH_MAX) {
			snprintf(errbuf, errlen, "%s: '%s' must be an absolute path", where, value);
			return -EINVAL;
		}
		return set_str(k == K_OVMF_CODE ? &c->ovmf_code : &c->ovmf_vars, value);
	case K_WORKERS:
	case K_IO_THREADS:
		if (parse_uint(value, 1, 256, &v) < 0) {
			snprintf(errbuf, errlen, "%s: '%s' is not a number from 1 to 256", where,
				 value);
			return -EINVAL;
		}
		if (k == K_WORKERS)
			c->workers = (unsigned)v;
		else
			c->io_threads = (unsigned)v;
		return 0;
	case K_METRICS_LISTEN: {
		uint32_t a;
		uint16_t port;

		if (metrics_parse_listen(value, &a, &port) < 0) {
			snprintf(errbuf, errlen, "%s: '%s' is not PORT (on 127.0.0.1) or "
				 "IPV4-ADDRESS:PORT", where, value);
			return -EINVAL;
		}
		return set_str(&c->metrics_listen, value);
	}
	case K_STATS_INTERVAL_MS:
	case K_MON_THRESHOLD_MS:
		if (parse_uint(value, 0, 3600000, &v) < 0 || (v && v < 100)) {
			snprintf(errbuf, errlen, "%s: '%s' is not 0 (off) or a number of "
				 "milliseconds from 100 to 3600000", where, value);
			return -EINVAL;
		}
		if (k == K_STATS_INTERVAL_MS)
			c->stats_interval_ms = v;
		else
			c->mon_threshold_ms = v;
		c->set[k] = true;
		return 0;
	case K_DEFAULT_TIMEOUT_MS:
	case K_CLIENT_STALL_MS:
		if (parse_uint(value, 1, 86400000, &v) < 0) {
			snprintf(errbuf, errlen, "%s: '%s' is not a number of milliseconds from 1 "
				 "to 86400000", where, value);
			return -EINVAL;
		}
		if (k == K_DEFAULT_TIMEOUT_MS)
			c->default_timeout_ms = v;
		else
			c->client_stall_ms = v;
		return 0;
	case K_LOG_LEVEL:
		if (!strcmp(value, "error"))
			c->log_level = LOG_ERR;
		else if (!strcmp(value, "warning"))
			c->log_level = LOG_WARN;
		else if (!strcmp(value, "info"))
			c->log_level = LOG_INFO;
		else if (!strcmp(value, "debug"))
			c->log_level = LOG_DEBUG;
		else {
			snprintf(errbuf, errlen, "%s: log level '%s' is not one of error, warning, "
				 "info, debug", where, value);
			return -EINVAL;
		}
		return 0;
	case K_COUNT:
		break;
	default:
		if (k >= K_LIMIT && k < K_COUNT) {
			unsigned i = (unsigned)(k - K_LIMIT);

			if (parse_uint(value, limits[i].min, limits[i].max, &v) < 0) {
				snprintf(errbuf, errlen, "%s: '%s' is not a number of %s from %" PRIu64
					 " to %" PRIu64, where, value, limits[i].unit, limits[i].min,
					 limits[i].max);
				return -EINVAL;
			}
			c->lim[i] = v;
			c->set[k] = true;
			return 0;
		}
		break;
	}
	BUG_ON(1);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* key = value lines; '#' starts a comment line; values may be "quoted". */
static int load_file(struct dconf *c, const char *path, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[PATH_MAX + 128];
	unsigned lineno = 0;
	int r = 0;

	if (!f) {
		snprintf(errbuf, errlen, "cannot open config file %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	while (fgets(line, sizeof(line), f)) {
		char where[PATH_MAX + 32], *key, *value, *eq;
		size_t vlen;
		int k;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(errbuf, errlen, "%s: line too long", where);
			r = -EINVAL;
			break;
		}
		key = trim(line);
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			snprintf(errbuf, errlen, "%s: expected key = value", where);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		vlen = strlen(value);
		if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
			value[vlen - 1] = '\0';
			value++;
		}
		for (k = 0; k < K_COUNT; k++)
			if (!strcmp(key, key_names[k]))
				break;
		if (k == K_COUNT) {
			snprintf(errbuf, errlen, "%s: unknown key '%s'", where, key);
			r = -EINVAL;
			break;
		}
		r = dconf_set(c, (enum key)k, value, where, errbuf, errlen);
		if (r < 0)
			break;
	}
	fclose(f);
	return r;
}

/*
 * Every flag, in --help order: the help, the man pages (corrald(8) and,
 * for those with a file key, corral.conf(5)) and getopt are made from it.
 */
enum {
	OPT_FOREGROUND = 1000, OPT_CONFIG, OPT_DUMP, OPT_DUMP_MAN, OPT_HELP, OPT_VERSION,
	OPT_NO_AUTOSTART, OPT_KEY
};

struct dflag {
	const char *name;               /* long name without "--" */
	const char *metavar;            /* NULL: takes no value */
	int id;                         /* OPT_KEY + enum key, or another OPT_ */
	const char *help;               /* one sentence, wrapped by --help */
	const char *dflt;               /* the default, for the man pages; NULL: none */
};

static const struct dflag dflags[] = {
	{ "socket", "PATH", OPT_KEY + K_SOCKET, "read-write socket",
	 "RUNTIME_DIR/corral.sock" },
	{ "ro-socket", "PATH", OPT_KEY + K_RO_SOCKET, "read-only socket",
	 "corral-ro.sock in the read-write socket's directory" },
	{ "state-dir", "DIR", OPT_KEY + K_STATE_DIR, "definitions, logs, UEFI variable stores",
	 "/var/lib/corral as root, else $XDG_STATE_HOME/corral or ~/.local/state/corral" },
	{ "runtime-dir", "DIR", OPT_KEY + K_RUNTIME_DIR, "sockets, pid file, run records",
	 "/run/corral as root, else $XDG_RUNTIME_DIR/corral or /tmp/corral-UID" },
	{ "config", "FILE", OPT_CONFIG, "key = value settings (corral.conf(5)); flags "
	 "override them", "none" },
	{ "workers", "N", OPT_KEY + K_WORKERS, "actor worker threads (1 to 256)",
	 "online CPUs less the I/O threads, at least 1" },
	{ "io-threads", "N", OPT_KEY + K_IO_THREADS, "socket I/O threads (1 to 256)",
	 "CPUs / 2, at least 1, at most 4" },
	{ "socket-group", "NAME", OPT_KEY + K_SOCKET_GROUP, "let this group use the sockets "
	 "(mode 0660)", "none: the sockets are the daemon user's alone" },
	{ "default-timeout-ms", "MS", OPT_KEY + K_DEFAULT_TIMEOUT_MS, "deadline of calls without "
	 "timeout_ms", "30000" },
	{ "client-stall-timeout-ms", "MS", OPT_KEY + K_CLIENT_STALL_MS, "close a client that "
	 "reads nothing this long while output waits for it", "30000" },
	{ "emulator", "PATH", OPT_KEY + K_EMULATOR, "the emulator of a definition that names "
	 "none (always allowed)", "qemu-system-x86_64" },
	{ "allow-emulator", "PATH", OPT_KEY + K_ALLOW_EMULATOR, "an emulator definitions may "
	 "name (repeatable; in the file: a comma-separated list)",
	 "every /usr/bin/qemu-system-* present" },
	{ "allow-bridge", "NAME", OPT_KEY + K_ALLOW_BRIDGE, "a host bridge guests' bridged NICs "
	 "may join (repeatable; in the file: a comma-separated list)", "none" },
	{ "ovmf-code", "FILE", OPT_KEY + K_OVMF_CODE, "UEFI firmware of firmware: uefi",
	 "/usr/share/OVMF/OVMF_CODE_4M.fd" },
	{ "ovmf-vars", "FILE", OPT_KEY + K_OVMF_VARS, "UEFI variable store template",
	 "/usr/share/OVMF/OVMF_VARS_4M.fd" },
	{ "console-log-max", "BYTES", OPT_KEY + K_CONSOLE_LOG_MAX, "a console log's size limit "
	 "(4096 to 1 GiB)", "4194304" },
	{ "qemu-user", "NAME", OPT_KEY + K_QEMU_USER, "run QEMU as this user ('root' keeps it "
	 "as root)", "as root: corral-qemu; else the daemon's user" },
	{ "cgroup-parent", "NAME", OPT_KEY + K_CGROUP_PARENT, "the control group every QEMU's "
	 "group is made under; none: no control groups",
	 "corral for /run/corral, else corral-HASH of the runtime directory" },
	{ "stats-interval-ms", "MS", OPT_KEY + K_STATS_INTERVAL_MS, "how often each running "
	 "QEMU's statistics are read (0: never; else 100 to 3600000)", "5000" },
	{ "monitor-threshold-ms", "MS", OPT_KEY + K_MON_THRESHOLD_MS, "a QMP command unanswered "
	 "this long marks the monitor unresponsive (0: only at its deadline; else 100 to "
	 "3600000)", "3000" },
	{ "metrics-listen", "[ADDR:]PORT", OPT_KEY + K_METRICS_LISTEN, "serve Prometheus "
	 "metrics at http://ADDR:PORT/metrics (ADDR default 127.0.0.1)", "none: no listener" },
	{ "log-level", "LEVEL", OPT_KEY + K_LOG_LEVEL, "error, warning, info or debug", "info" },
	/* The limits: docs/daemon.md, "Limits and clients that do not read". */
	{ "frame-max", "BYTES", OPT_KEY + K_LIMIT + LIM_FRAME_MAX, "the largest request (4096 to "
	 "4194304, the protocol's)", "4194304" },
	{ "frame-timeout-ms", "MS", OPT_KEY + K_LIMIT + LIM_FRAME_TIMEOUT_MS, "a request begun "
	 "must be complete this long after its first byte", "10000" },
	{ "client-input-total", "BYTES", OPT_KEY + K_LIMIT + LIM_INPUT_TOTAL, "bytes of "
	 "unfinished requests of all clients together", "67108864" },
	{ "client-output-max", "BYTES", OPT_KEY + K_LIMIT + LIM_OUTPUT_MAX, "output waiting for "
	 "one client before its requests wait", "16777216" },
	{ "client-output-total", "BYTES", OPT_KEY + K_LIMIT + LIM_OUTPUT_TOTAL, "output waiting "
	 "for all clients together", "268435456" },
	{ "client-inflight-max", "N", OPT_KEY + K_LIMIT + LIM_INFLIGHT_MAX, "state changes in "
	 "flight per connection; more get busy", "1024" },
	{ "subscriptions-max", "N", OPT_KEY + K_LIMIT + LIM_SUBS_MAX, "subscriptions (events "
	 "and consoles) per connection", "64" },
	{ "event-queue", "N", OPT_KEY + K_LIMIT + LIM_EVENT_QUEUE, "events a subscriber may "
	 "fall behind before it loses the oldest", "4096" },
	{ "waiting-jobs-max", "N", OPT_KEY + K_LIMIT + LIM_WAITING_JOBS_MAX, "jobs waiting per "
	 "domain; more get busy at once", "4096" },
	{ "no-autostart", NULL, OPT_NO_AUTOSTART, "do not start the domains marked autostart "
	 "(they stay as they are; for recovery)", NULL },
	{ "foreground", NULL, OPT_FOREGROUND, "stay in the foreground (always; kept for "
	 "scripts)", NULL },
	{ "dump-api-md", NULL, OPT_DUMP, "print the API reference (docs/API.md) and exit", NULL },
	{ "dump-man", "PAGE", OPT_DUMP_MAN, "print a man page (corrald.8, corral.conf.5) "
	 "and exit", NULL },
	{ "help", NULL, OPT_HELP, "print this and exit", NULL },
	{ "version", NULL, OPT_VERSION, "print the version and exit", NULL },
};

static const struct dflag *dflag_of_key(enum key k)
{
	for (size_t i = 0; i < ARRAY_SIZE(dflags); i++)
		if (dflags[i].id == OPT_KEY + (int)k)
			return &dflags[i];
	BUG_ON(1);
	return NULL;
}

/* Print words, wrapped at 79 columns, continued lines indented by indent. */
static void wrap(FILE *f, const char *text, int col, int indent)
{
	const char *p = text;

	while (*p) {
		size_t n = strcspn(p, " ");

		if (col > indent && col + 1 + (int)n > 79) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, n, f);
		col += (int)n;
		p += n;
		p += strspn(p, " ");
	}
}

void dconf_usage(FILE *f)
{
	enum { INDENT = 26 };

	fputs("Usage: corrald [OPTION]...\n"
	      "The corral daemon: runs QEMU virtual machines and serves the msgpack-RPC API.\n"
	      "\n", f);
	for (size_t i = 0; i < ARRAY_SIZE(dflags); i++) {
		const struct dflag *d = &dflags[i];
		char text[512];
		int n = fprintf(f, "  --%s%s%s", d->name, d->metavar ? " " : "",
				d->metavar ? d->metavar : "");

		if (n >= INDENT) {
			fprintf(f, "\n%*s", INDENT, "");
		} else {
			fprintf(f, "%*s", INDENT - n, "");
		}
		snprintf(text, sizeof(text), "%s%s%s%s", d->help, d->dflt ? " (default: " : "",
			 d->dflt ? d->dflt : "", d->dflt ? ")" : "");
		wrap(f, text, INDENT, INDENT);
		fputc('\n', f);
	}
	fputs("\nSee corrald(8), corral.conf(5) and docs/daemon.md.\n", f);
}

/* One flag or key of the man pages: .TP, its name and value, help, default. */
static void man_entry(FILE *f, const struct dflag *d, bool as_key)
{
	roff_macro(f, "TP", NULL);
	if (as_key) {
		fputs("\\fB", f);
		roff_text(f, key_names[d->id - OPT_KEY]);
		fputs("\\fR = \\fI", f);
	} else {
		fputs("\\fB\\-\\-", f);
		roff_text(f, d->name);
		fputs("\\fR", f);
		if (d->metavar)
			fputs(" \\fI", f);
	}
	if (d->metavar) {
		roff_text(f, d->metavar);
		fputs("\\fR", f);
	}
	fputc('\n', f);
	roff_text(f, d->help);
	fputs(".\n", f);
	if (d->dflt) {
		fputs("Default: ", f);
		roff_text(f, d->dflt);
		fputs(".\n", f);
	}
	if (as_key) {
		fputs("Flag: \\fB\\-\\-", f);
		roff_text(f, d->name);
		fputs("\\fR.\n", f);
	} else if (d->id >= OPT_KEY) {
		fputs("In the file: \\fB", f);
		roff_text(f, key_names[d->id - OPT_KEY]);
		fputs("\\fR.\n", f);
	}
}

static void man_corrald(FILE *f, const char *version, void (*api_list)(FILE *f))
{
	roff_head(f, "corrald", "8", version, "corral manual",
		  "the corral daemon: QEMU virtual machines behind a msgpack-RPC API");
	roff_macro(f, "SH", "SYNOPSIS");
	fputs(".B corrald\n.RI [ OPTION ]...\n", f);
	roff_macro(f, "SH", "DESCRIPTION");
	roff_text(f, "corrald runs QEMU virtual machines (domains): each is an actor whose "
		  "jobs (define, start, shutdown, ...) run one at a time with a deadline, and "
		  "whose state is published as a snapshot that queries read without waiting.  "
		  "It serves its API on two UNIX sockets: a read-write one for corral(1) and "
		  "other managers, and a read-only one (queries and events) for monitoring.\n");
	roff_macro(f, "PP", NULL);
	roff_text(f, "It needs no configuration.  It stays in the foreground and logs to "
		  "standard error, one line per message.  Settings come from the defaults, "
		  "then the file named by --config (corral.conf(5)), then the flags.\n");
	roff_macro(f, "SH", "OPTIONS");
	for (size_t i = 0; i < ARRAY_SIZE(dflags); i++)
		man_entry(f, &dflags[i], false);
	roff_macro(f, "SH", "SOCKETS");
	roff_text(f, "Both sockets have mode 0600, or 0660 and the socket group's with "
		  "socket_group.  At every accept corrald reads the peer's credentials and "
		  "takes the connection only from root, its own user or a member of the "
		  "socket group.  The read-only socket serves the methods marked (ro) below; "
		  "anything else gets the permission error.  The qmp method is refused to "
		  "every caller but root when corrald runs as root.\n");
	roff_macro(f, "SH", "SIGNALS");
	roff_text(f, "SIGTERM or SIGINT: corrald stops accepting, answers what is in flight, "
		  "and exits 0.  Running VMs are not touched: QEMU runs in its own session, "
		  "and the next corrald finds every QEMU again and re-attaches it.  SIGHUP "
		  "is logged and ignored (there is no reload).\n");
	roff_macro(f, "SH", "SYSTEMD");
	roff_text(f, "The units corrald.service, corrald.socket and corrald-ro.socket "
		  "(system, and the same for systemctl --user) start corrald at the first "
		  "connection.  corrald takes the listening sockets the service manager "
		  "passes and tells them apart by FileDescriptorName: `rw` for the "
		  "read-write socket, `ro` for the read-only one; it never removes a passed "
		  "socket.  Type=notify: READY=1 once it serves, STOPPING=1 at SIGTERM.  "
		  "With WatchdogSec=, WATCHDOG=1 is sent only while every I/O thread and the "
		  "actor runtime answer a probe.  KillMode=process: stopping or restarting "
		  "the service never touches a running VM.\n");
	if (api_list)
		api_list(f);
	roff_macro(f, "SH", "FILES");
	roff_text(f, "Paths for root; a session daemon uses its user's directories "
		  "(see --state-dir and --runtime-dir).\n");
	static const char *const files[][2] = {
		{ "/etc/corral/corrald.conf", "the configuration file of the system service" },
		{ "/var/lib/corral/domains/NAME.json", "a domain's definition" },
		{ "/var/lib/corral/logs/", "each domain's QEMU log and console log" },
		{ "/var/lib/corral/nvram/NAME.fd", "a UEFI domain's variable store" },
		{ "/run/corral/corral.sock, /run/corral/corral-ro.sock", "the sockets" },
		{ "/run/corral/corrald.pid", "the daemon's pid, locked while it runs" },
		{ "/run/corral/vms/NAME.json", "a running QEMU's record" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		roff_macro(f, "TP", NULL);
		fputs("\\fI", f);
		roff_text(f, files[i][0]);
		fputs("\\fR\n", f);
		roff_text(f, files[i][1]);
		fputc('\n', f);
	}
	roff_macro(f, "SH", "SEE ALSO");
	fputs(".BR corral (1),\n.BR corral.conf (5),\n.BR systemd.socket (5)\n", f);
}

static void man_conf(FILE *f, const char *version)
{
	roff_head(f, "corral.conf", "5", version, "corral manual",
		  "configuration file of corrald, the corral daemon");
	roff_macro(f, "SH", "SYNOPSIS");
	fputs(".I /etc/corral/corrald.conf\n", f);
	roff_macro(f, "SH", "DESCRIPTION");
	roff_text(f, "corrald(8) reads the file named by its --config flag (the system "
		  "service gives /etc/corral/corrald.conf).  Each line is `key = value`; "
		  "blank lines and lines starting with # are skipped; a value may be in "
		  "double quotes.  Paths must be absolute.  An unknown key or a bad value "
		  "stops the daemon with the file and line.  A flag on the command line "
		  "beats the file, and the file beats the default.  Every key is optional.\n");
	roff_macro(f, "SH", "KEYS");
	for (size_t i = 0; i < ARRAY_SIZE(dflags); i++)
		if (dflags[i].id >= OPT_KEY)
			man_entry(f, &dflags[i], true);
	roff_macro(f, "SH", "EXAMPLE");
	roff_verbatim(f, "# /etc/corral/corrald.conf\n"
		      "socket_group = corral\n"
		      "workers = 8\n"
		      "default_timeout_ms = 60000\n"
		      "allowed_bridges = br0, br1\n");
	roff_macro(f, "SH", "SEE ALSO");
	fputs(".BR corrald (8),\n.BR corral (1)\n", f);
}

int dconf_man(FILE *f, const char *page, const char *version, void (*api_list)(FILE *f))
{
	if (!strcmp(page, "corrald.8"))
		man_corrald(f, version, api_list);
	else if (!strcmp(page, "corral.conf.5"))
		man_conf(f, version);
	else
		return -ENOENT;
	return 0;
}

static char *path_join(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s/%s", a, b) < 0)
		return NULL;
	return s;
}

static int fill_defaults(struct dconf *c, char *errbuf, size_t errlen)
{
	uid_t uid = getuid();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *env;

	if (ncpu < 1)
		ncpu = 1;
	if (!c->runtime_dir) {
		if (uid == 0)
			c->runtime_dir = strdup("/run/corral");
		else if ((env = getenv("XDG_RUNTIME_DIR")) && env[0] == '/')
			c->runtime_dir = path_join(env, "corral");
		else if (asprintf(&c->runtime_dir, "/tmp/corral-%u", (unsigned)uid) < 0)
			c->runtime_dir = NULL;
		if (!c->runtime_dir)
			return -ENOMEM;
	}
	if (!c->state_dir) {
		if (uid == 0) {
			c->state_dir = strdup("/var/lib/corral");
		} else if ((env = getenv("XDG_STATE_HOME")) && env[0] == '/') {
			c->state_dir = path_join(env, "corral");
		} else {
			const char *home = getenv("HOME");
			struct passwd *pw;

			if (!home || home[0] != '/') {
				pw = getpwuid(uid);
				home = pw ? pw->pw_dir : NULL;
			}
			if (!home || home[0] != '/') {
				snprintf(errbuf, errlen, "no home directory: give --state-dir");
				return -EINVAL;
			}
			c->state_dir = path_join(home, ".local/state/corral");
		}
		if (!c->state_dir)
			return -ENOMEM;
	}
	if (!c->socket && !(c->socket = path_join(c->runtime_dir, "corral.sock")))
		return -ENOMEM;
	if (!c->ro_socket) {
		const char *slash = strrchr(c->socket, '/');

		if (asprintf(&c->ro_socket, "%.*s/corral-ro.sock", (int)(slash - c->socket),
			     c->socket) < 0)
			return -ENOMEM;
	}
	if (!strcmp(c->socket, c->ro_socket)) {
		snprintf(errbuf, errlen, "the read-write and read-only sockets are both %s",
			 c->socket);
		return -EINVAL;
	}
	if (!c->qemu_user && uid == 0 && !(c->qemu_user = strdup("corral-qemu")))
		return -ENOMEM;
	if (!c->cgroup_parent) {
		/* One parent per runtime dir: two daemons never share a VM's group. */
		uint32_t h = 2166136261u;

		for (const char *p = c->runtime_dir; *p; p++)
			h = (h ^ (unsigned char)*p) * 16777619u;
		if (!strcmp(c->runtime_dir, "/run/corral"))
			c->cgroup_parent = strdup("corral");
		else if (asprintf(&c->cgroup_parent, "corral-%08x", h) < 0)
			c->cgroup_parent = NULL;
		if (!c->cgroup_parent)
			return -ENOMEM;
	}
	if (!c->io_threads)
		c->io_threads = ncpu / 2 < 1 ? 1 : ncpu / 2 > 4 ? 4 : (unsigned)(ncpu / 2);
	/*
	 * One busy thread per CPU in all: with a worker more, the two contend
	 * for the CPU the I/O thread needs (2 CPUs, 10,000 domains: 23,800
	 * jobs/s with one worker, 19,000 with two; BENCHMARKS.md).
	 */
	if (!c->workers)
		c->workers = ncpu > (long)c->io_threads ? (unsigned)(ncpu - (long)c->io_threads) : 1;
	if (!c->default_timeout_ms)
		c->default_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!c->client_stall_ms)
		c->client_stall_ms = DEFAULT_STALL_MS;
	if (!c->set[K_STATS_INTERVAL_MS])
		c->stats_interval_ms = DEFAULT_STATS_INTERVAL_MS;
	if (!c->set[K_MON_THRESHOLD_MS])
		c->mon_threshold_ms = DEFAULT_MON_THRESHOLD_MS;
	for (unsigned i = 0; i < LIM_COUNT; i++)
		if (!c->set[K_LIMIT + i])
			c->lim[i] = limits[i].def;
	return 0;
}

int dconf_load(struct dconf *c, int argc, char **argv, char *errbuf, size_t errlen)
{
	struct option opts[ARRAY_SIZE(dflags) + 1];
	/* Flags are applied after the file, so remember them first. */
	struct { enum key k; const char *v; } flags[64];
	unsigned nflags = 0;
	int o, r;

	memset(c, 0, sizeof(*c));
	c->log_level = LOG_INFO;
	for (size_t i = 0; i < ARRAY_SIZE(dflags); i++)
		opts[i] = (struct option){ dflags[i].name,
					   dflags[i].metavar ? required_argument : no_argument,
					   NULL, dflags[i].id };
	opts[ARRAY_SIZE(dflags)] = (struct option){ 0 };
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (o) {
		case OPT_FOREGROUND:
			break;
		case OPT_NO_AUTOSTART:
			c->no_autostart = true;
			break;
		case OPT_CONFIG:
			r = set_str(&c->config_file, optarg);
			if (r < 0)
				return r;
			break;
		case OPT_DUMP:
			c->dump_api_md = true;
			break;
		case OPT_DUMP_MAN:
			r = set_str(&c->dump_man, optarg);
			if (r < 0)
				return r;
			break;
		case 'h':
		case OPT_HELP:
			c->help = true;
			break;
		case 'V':
		case OPT_VERSION:
			c->version = true;
			break;
		case '?':
		case ':':
			if (optopt)
				snprintf(errbuf, errlen, "option '-%c' is unknown or needs a value",
					 optopt);
			else
				snprintf(errbuf, errlen, "option '%s' is unknown or needs a value",
					 argv[optind - 1]);
			return -EINVAL;
		default:
			if (nflags == ARRAY_SIZE(flags)) {
				snprintf(errbuf, errlen, "too many options");
				return -EINVAL;
			}
			flags[nflags].k = (enum key)(o - OPT_KEY);
			flags[nflags].v = optarg;
			nflags++;
		}
	}
	if (optind < argc) {
		snprintf(errbuf, errlen, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (c->help || c->version || c->dump_api_md || c->dump_man)
		return 0;
	if (c->config_file) {
		r = load_file(c, c->config_file, errbuf, errlen);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < nflags; i++) {
		char where[64];

		snprintf(where, sizeof(where), "--%s", dflag_of_key(flags[i].k)->name);
		r = dconf_set(c, flags[i].k, flags[i].v, where, errbuf, errlen);
		if (r < 0)
			return r;
	}
	r = fill_defaults(c, errbuf, errlen);
	if (r == -ENOMEM)
		snprintf(errbuf, errlen, "out of memory");
	return r;
}

void dconf_fini(struct dconf *c)
{
	free(c->socket);
	free(c->ro_socket);
	free(c->state_dir);
	free(c->runtime_dir);
	free(c->socket_group);
	free(c->emulator);
	free(c->config_file);
	free(c->dump_man);
	free(c->qemu_user);
	free(c->cgroup_parent);
	for (size_t i = 0; i < c->nemulators; i++)
		free(c->emulators[i]);
	free(c->emulators);
	for (size_t i = 0; i < c->nbridges; i++)
		free(c->bridges[i]);
	free(c->bridges);
	free(c->ovmf_code);
	free(c->metrics_listen);
	free(c->ovmf_vars);
	memset(c, 0, sizeof(*c));
}

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
	K_COUNT
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

void dconf_usage(FILE *f)
{
	fputs("Usage: corrald [OPTION]...\n"
	      "The corral daemon: runs QEMU virtual machines and serves the msgpack-RPC API.\n"
	      "\n"
	      "  --socket PATH        read-write socket (default RUNTIME_DIR/corral.sock)\n"
	      "  --ro-socket PATH     read-only socket (default: corral-ro.sock next to --socket)\n"
	      "  --state-dir DIR      configs and logs (default /var/lib/corral as root,\n"
	      "                       else $XDG_STATE_HOME/corral or ~/.local/state/corral)\n"
	      "  --runtime-dir DIR    sockets, pid file (default /run/corral as root,\n"
	      "                       else $XDG_RUNTIME_DIR/corral or /tmp/corral-UID)\n"
	      "  --config FILE        key = value settings; flags override them\n"
	      "  --workers N          actor worker threads (default: online CPUs)\n"
	      "  --io-threads N       socket I/O threads (default: CPUs / 2, 1 to 4)\n"
	      "  --socket-group NAME  let this group use the sockets (mode 0660)\n"
	      "  --default-timeout-ms MS  deadline of calls without timeout_ms (30000)\n"
	      "  --log-level LEVEL    error, warning, info (default) or debug\n"
	      "  --qemu-user NAME     run QEMU as this user (as root: default corral-qemu)\n"
	      "  --cgroup-parent NAME the control group every QEMU's group is made under\n"
	      "  --allow-emulator PATH  an emulator definitions may name (repeatable; default\n"
	      "                       every /usr/bin/qemu-system-*)\n"
	      "  --allow-bridge NAME  a host bridge guests' bridged NICs may join (repeatable;\n"
	      "                       default none)\n"
	      "  --ovmf-code FILE     UEFI firmware (default /usr/share/OVMF/OVMF_CODE_4M.fd)\n"
	      "  --ovmf-vars FILE     UEFI variable store template (default\n"
	      "                       /usr/share/OVMF/OVMF_VARS_4M.fd)\n"
	      "  --console-log-max BYTES  a console log's size limit (default 4194304)\n"
	      "  --stats-interval-ms MS  how often each running QEMU's statistics are read\n"
	      "                       (default 5000; 0: never)\n"
	      "  --monitor-threshold-ms MS  a QMP command unanswered this long marks the\n"
	      "                       monitor unresponsive (default 3000; 0: only at its deadline)\n"
	      "  --metrics-listen [ADDR:]PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
	      "                       (ADDR default 127.0.0.1; default: no listener)\n"
	      "  --no-autostart       do not start the domains marked autostart (they stay\n"
	      "                       as they are; for recovery and debugging)\n"
	      "  --foreground         stay in the foreground (the default; kept for scripts)\n"
	      "  --dump-api-md        print the API reference (docs/API.md) and exit\n"
	      "  --help               print this and exit\n"
	      "  --version            print the version and exit\n"
	      "\n"
	      "See docs/daemon.md.\n", f);
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
	if (!c->workers)
		c->workers = (unsigned)ncpu;
	if (!c->io_threads)
		c->io_threads = ncpu / 2 < 1 ? 1 : ncpu / 2 > 4 ? 4 : (unsigned)(ncpu / 2);
	if (!c->default_timeout_ms)
		c->default_timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!c->client_stall_ms)
		c->client_stall_ms = DEFAULT_STALL_MS;
	if (!c->set[K_STATS_INTERVAL_MS])
		c->stats_interval_ms = DEFAULT_STATS_INTERVAL_MS;
	if (!c->set[K_MON_THRESHOLD_MS])
		c->mon_threshold_ms = DEFAULT_MON_THRESHOLD_MS;
	return 0;
}

int dconf_load(struct dconf *c, int argc, char **argv, char *errbuf, size_t errlen)
{
	enum {
		OPT_FOREGROUND = 1000, OPT_CONFIG, OPT_DUMP, OPT_HELP, OPT_VERSION,
		OPT_NO_AUTOSTART, OPT_KEY
	};
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, OPT_KEY + K_SOCKET },
		{ "ro-socket", required_argument, NULL, OPT_KEY + K_RO_SOCKET },
		{ "state-dir", required_argument, NULL, OPT_KEY + K_STATE_DIR },
		{ "runtime-dir", required_argument, NULL, OPT_KEY + K_RUNTIME_DIR },
		{ "socket-group", required_argument, NULL, OPT_KEY + K_SOCKET_GROUP },
		{ "workers", required_argument, NULL, OPT_KEY + K_WORKERS },
		{ "io-threads", required_argument, NULL, OPT_KEY + K_IO_THREADS },
		{ "default-timeout-ms", required_argument, NULL, OPT_KEY + K_DEFAULT_TIMEOUT_MS },
		{ "client-stall-timeout-ms", required_argument, NULL, OPT_KEY + K_CLIENT_STALL_MS },
		{ "emulator", required_argument, NULL, OPT_KEY + K_EMULATOR },
		{ "log-level", required_argument, NULL, OPT_KEY + K_LOG_LEVEL },
		{ "qemu-user", required_argument, NULL, OPT_KEY + K_QEMU_USER },
		{ "cgroup-parent", required_argument, NULL, OPT_KEY + K_CGROUP_PARENT },
		{ "allow-emulator", required_argument, NULL, OPT_KEY + K_ALLOW_EMULATOR },
		{ "allow-bridge", required_argument, NULL, OPT_KEY + K_ALLOW_BRIDGE },
		{ "ovmf-code", required_argument, NULL, OPT_KEY + K_OVMF_CODE },
		{ "ovmf-vars", required_argument, NULL, OPT_KEY + K_OVMF_VARS },
		{ "console-log-max", required_argument, NULL, OPT_KEY + K_CONSOLE_LOG_MAX },
		{ "stats-interval-ms", required_argument, NULL, OPT_KEY + K_STATS_INTERVAL_MS },
		{ "monitor-threshold-ms", required_argument, NULL, OPT_KEY + K_MON_THRESHOLD_MS },
		{ "metrics-listen", required_argument, NULL, OPT_KEY + K_METRICS_LISTEN },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "foreground", no_argument, NULL, OPT_FOREGROUND },
		{ "no-autostart", no_argument, NULL, OPT_NO_AUTOSTART },
		{ "dump-api-md", no_argument, NULL, OPT_DUMP },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	/* Flags are applied after the file, so remember them first. */
	struct { enum key k; const char *v; } flags[64];
	unsigned nflags = 0;
	int o, r;

	memset(c, 0, sizeof(*c));
	c->log_level = LOG_INFO;
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
	if (c->help || c->version || c->dump_api_md)
		return 0;
	if (c->config_file) {
		r = load_file(c, c->config_file, errbuf, errlen);
		if (r < 0)
			return r;
	}
	for (unsigned i = 0; i < nflags; i++) {
		char where[64];

		snprintf(where, sizeof(where), "--%s", opts[flags[i].k].name);
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

/* SPDX-License-Identifier: MIT */
/*
 * corral's commands: check the arguments, build the params, call, print.
 * The methods and their params are those of docs/API.md.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/format.h"
#include "common/names.h"
#include "common/util.h"
#include "rpc/prom.h"
#include "rpc/rpc.h"

/* The limits of a config, as corrald checks them (qemu/config.h). */
#define MEMORY_MIN_MIB  16u
#define MEMORY_MAX_MIB  (1024u * 1024)
#define VCPUS_MAX       256u

/* How often `start --wait` looks again when no event wakes it first. */
#define WAIT_RECHECK_NS (500 * NSEC_PER_MSEC)

/* ------------------------------------------------------------------------ */
/* Checking arguments: every problem is a usage error, found before sending. */

static int check_name(struct cli *c, const char *name)
{
	if (corral_name_valid(name))
		return 0;
	return cli_usage(c, "'%s' is not a domain name (1 to %d of A-Z a-z 0-9 _ . -, "
			 "starting with a letter or digit)", name, CORRAL_NAME_MAX);
}

/* A decimal in [min, max]. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* "512" (MiB), "512M", "512MiB", "2G", "1TiB", any case: binary units. */
static int parse_memory(const char *s, uint64_t *ret_mib)
{
	static const struct {
		const char *suffix;
		uint64_t mib;
	} units[] = {
		{ "", 1 }, { "m", 1 }, { "mib", 1 }, { "g", 1024 }, { "gib", 1024 },
		{ "t", 1024 * 1024 }, { "tib", 1024 * 1024 },
	};
	unsigned long long v;
	char *end;
	size_t i;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(end, units[i].suffix))
			continue;
		if (v > MEMORY_MAX_MIB / units[i].mib || v * units[i].mib < MEMORY_MIN_MIB)
			return -ERANGE;
		*ret_mib = v * units[i].mib;
		return 0;
	}
	return -EINVAL;
}

/*
 * corrald runs in another directory: a relative path is made absolute from
 * ours, as the user meant it.  NULL on -ENOMEM.
 */
static char *absolute_path(const char *p)
{
	char cwd[PATH_MAX], *s;

	if (p[0] == '/')
		return strdup(p);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (asprintf(&s, "%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p) < 0)
		return NULL;
	return s;
}

/* obj[key] = a string; -1 for out of memory or bytes that are not UTF-8. */
static int set_string(json_t *obj, const char *key, const char *value)
{
	return json_object_set_new(obj, key, json_string(value));
}

/* params {"name": name}, or NULL when out of memory. */
static json_t *name_params(const char *name)
{
	return json_pack("{s:s}", "name", name);
}

static int out_of_memory(struct cli *c)
{
	return cli_fail(c, CLI_EXIT_ERROR, "error", "out of memory");
}

/* A str field of an object, or fallback. */
static const char *get_str(const json_t *obj, const char *key, const char *fallback)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : fallback;
}

/* Seconds since the epoch as local time, "2026-11-26T02:21:03.123+0000". */
static void format_time(double t, char *buf, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;
	size_t n;

	localtime_r(&s, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(buf + n, len - n, ".%03d", (int)((t - (double)s) * 1000));
	strftime(buf + n, len - n, "%z", &tm);
}

/* ------------------------------------------------------------------------ */
/* list, info, daemon-info */

static const char *const domain_states[] = {
	"shutoff", "starting", "running", "paused", "shutting-down", "crashed", "pmsuspended",
};

/* The table's MONITOR column: the monitor's state ({state, since_s} on the wire). */
static int list_for_people(json_t *list)
{
	size_t i;
	json_t *e, *mon;

	json_array_foreach(list, i, e) {
		mon = json_object_get(e, "monitor");
		if (json_is_object(mon) &&
		    json_object_set_new(e, "monitor", json_string(get_str(mon, "state", "?"))))
			return -ENOMEM;
	}
	return 0;
}

/*
 * Every domain list answers (params: its filters, stolen; NULL: none), as
 * one array in *ret: an answer holds what fits in one message, and names
 * the rest in `more`, which is asked for by name until nothing is left.
 */
static int list_all(struct cli *c, json_t *params, json_t **ret)
{
	json_t *res, *all, *more;
	int r;

	if (!params)
		params = json_object();
	if (!params || json_object_set_new(params, "paged", json_true()) < 0) {
		json_decref(params);
		return out_of_memory(c);
	}
	r = cli_call(c, "list", params, &res);
	if (r)
		return r;
	all = json_object_get(res, "domains");
	if (!json_is_array(all)) {
		json_decref(res);
		return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald's list has no domains");
	}
	json_incref(all);
	more = json_incref(json_object_get(res, "more"));
	json_decref(res);
	while (json_array_size(more)) {
		params = json_pack("{s:o}", "names", more);
		more = NULL;
		if (!params) {
			json_decref(all);
			return out_of_memory(c);
		}
		r = cli_call(c, "list", params, &res);
		if (r) {
			json_decref(all);
			return r;
		}
		if (!json_array_size(json_object_get(res, "domains"))) {
			json_decref(res);
			json_decref(all);
			return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald's list made no progress");
		}
		/* Domains undefined meanwhile are simply gone. */
		json_array_extend(all, json_object_get(res, "domains"));
		more = json_incref(json_object_get(res, "more"));
		json_decref(res);
	}
	json_decref(more);
	*ret = all;
	return 0;
}

static int cmd_list(struct cli *c, const struct cli_args *a)
{
	static const struct cli_column cols[] = {
		{ "NAME", "name" },       { "STATE", "state" },     { "REASON", "reason" },
		{ "JOB", "job" },         { "MONITOR", "monitor" }, { "UUID", "uuid" },
	};
	const char *state = cli_opt_get(a, "state");
	json_t *params = NULL, *res;
	size_t i;
	int r;

	if (state) {
		for (i = 0; i < ARRAY_SIZE(domain_states); i++)
			if (!strcmp(state, domain_states[i]))
				break;
		if (i == ARRAY_SIZE(domain_states))
			return cli_usage(c, "--state: unknown state '%s' (one of shutoff, starting, "
					 "running, paused, shutting-down, crashed, pmsuspended)",
					 state);
		params = json_pack("{s:s}", "state", state);
		if (!params)
			return out_of_memory(c);
	}
	r = list_all(c, params, &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON)
		r = cli_print_json(c, res);
	else if (list_for_people(res) || cli_print_table(stdout, res, cols, ARRAY_SIZE(cols)))
		r = out_of_memory(c);
	json_decref(res);
	return r;
}

/* info's job {id, name, held_s} as "start (id 7, held 1.5 s)"; "-" for none. */
static json_t *job_text(const json_t *job)
{
	char buf[256];

	if (!json_is_object(job))
		return json_string(json_is_string(job) ? json_string_value(job) : "-");
	snprintf(buf, sizeof(buf), "%s (id %" JSON_INTEGER_FORMAT ", held %.1f s)",
		 get_str(job, "name", "?"), json_integer_value(json_object_get(job, "id")),
		 json_number_value(json_object_get(job, "held_s")));
	return json_string(buf);
}

/* info's monitor {state, since_s} as "ok (for 12.0 s)". */
static json_t *monitor_text(const json_t *mon)
{
	char buf[256];

	if (!json_is_object(mon))
		return json_string(json_is_string(mon) ? json_string_value(mon) : "-");
	if (!json_is_number(json_object_get(mon, "since_s")))
		return json_string(get_str(mon, "state", "?"));
	snprintf(buf, sizeof(buf), "%s (for %.1f s)", get_str(mon, "state", "?"),
		 json_number_value(json_object_get(mon, "since_s")));
	return json_string(buf);
}

/* Rewrite info's fields that read better as text.  0 or -ENOMEM. */
static int info_for_people(json_t *info)
{
	json_t *v;
	char when[64];
	int r = 0;

	if ((v = json_object_get(info, "job")))
		r |= json_object_set_new(info, "job", job_text(v));
	if ((v = json_object_get(info, "monitor")))
		r |= json_object_set_new(info, "monitor", monitor_text(v));
	/* No process is pid 0 on the wire. */
	if (json_integer_value(json_object_get(info, "pid")) == 0 && json_object_get(info, "pid"))
		r |= json_object_set_new(info, "pid", json_string("-"));
	if (json_is_number((v = json_object_get(info, "updated")))) {
		format_time(json_number_value(v), when, sizeof(when));
		r |= json_object_set_new(info, "updated", json_string(when));
	}
	return r ? -ENOMEM : 0;
}

static int cmd_info(struct cli *c, const struct cli_args *a)
{
	json_t *res, *shown;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	r = cli_call(c, "info", name_params(a->pos[0]), &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON) {
		r = cli_print_json(c, res);
		json_decref(res);
		return r;
	}
	/* People get the job and the monitor on one line each. */
	shown = json_deep_copy(res);
	json_decref(res);
	if (!shown || !json_is_object(shown)) {
		json_decref(shown);
		return shown ? cli_fail(c, CLI_EXIT_ERROR, "error", "corrald's info is not a map")
			     : out_of_memory(c);
	}
	if (info_for_people(shown) || cli_print_fields(stdout, shown))
		r = out_of_memory(c);
	json_decref(shown);
	return r;
}

/* ------------------------------------------------------------------------ */
/* stats */

/* Bytes for people: 512 B, 1.5 KiB, 42.0 MiB, ... */
static void human_bytes(char *buf, size_t size, double v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%.0f B", v);
	else
		snprintf(buf, size, "%.1f %s", v, unit[u]);
}

/* Bytes of key summed over list's entries into buf; "-" when none has it. */
static void sum_bytes(char *buf, size_t size, const json_t *list, const char *key)
{
	const json_t *x;
	double sum = 0;
	bool any = false;
	size_t i;

	json_array_foreach(list, i, x) {
		if (json_is_number(json_object_get(x, key))) {
			sum += json_number_value(json_object_get(x, key));
			any = true;
		}
	}
	if (any)
		human_bytes(buf, size, sum);
	else
		snprintf(buf, size, "-");
}

/* One table row of a stats entry: figures summed over disks and NICs, "-" when none. */
static json_t *stats_row(const json_t *e)
{
	const json_t *cpu = json_object_get(e, "cpu"), *mem = json_object_get(e, "memory");
	const json_t *mon = json_object_get(e, "monitor"), *age = json_object_get(e, "age_s");
	char b_age[32] = "-", b_cpu[32] = "-", b_rss[32] = "-", b_rd[32], b_wr[32], b_rx[32];
	char b_tx[32];

	if (json_is_number(age))
		snprintf(b_age, sizeof(b_age), "%.1fs%s", json_number_value(age),
			 json_is_true(json_object_get(e, "stale")) ? " (stale)" : "");
	if (json_is_number(json_object_get(cpu, "time_ns")))
		snprintf(b_cpu, sizeof(b_cpu), "%.2fs",
			 json_number_value(json_object_get(cpu, "time_ns")) / 1e9);
	if (json_is_number(json_object_get(mem, "rss_bytes")))
		human_bytes(b_rss, sizeof(b_rss),
			    json_number_value(json_object_get(mem, "rss_bytes")));
	sum_bytes(b_rd, sizeof(b_rd), json_object_get(e, "disks"), "rd_bytes");
	sum_bytes(b_wr, sizeof(b_wr), json_object_get(e, "disks"), "wr_bytes");
	sum_bytes(b_rx, sizeof(b_rx), json_object_get(e, "nics"), "rx_bytes");
	sum_bytes(b_tx, sizeof(b_tx), json_object_get(e, "nics"), "tx_bytes");
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
			 "name", get_str(e, "name", "?"), "state", get_str(e, "state", "?"),
			 "monitor", get_str(mon, "state", "?"), "age", b_age, "cpu", b_cpu,
			 "rss", b_rss, "read", b_rd, "written", b_wr, "net_rx", b_rx,
			 "net_tx", b_tx);
}

static int cmd_stats(struct cli *c, const struct cli_args *a)
{
	static const struct cli_column cols[] = {
		{ "NAME", "name" },  { "STATE", "state" }, { "MONITOR", "monitor" },
		{ "AGE", "age" },    { "CPU", "cpu" },     { "RSS", "rss" },
		{ "DISK-READ", "read" }, { "DISK-WRITTEN", "written" },
		{ "NET-RX", "net_rx" },  { "NET-TX", "net_tx" },
	};
	json_t *params = NULL, *names, *res, *rows, *e, *missing;
	size_t i;
	int r;

	if (a->npos) {
		names = json_array();
		params = json_pack("{s:o}", "names", names);
		if (!names || !params) {
			json_decref(params);
			return out_of_memory(c);
		}
		for (i = 0; i < a->npos; i++) {
			r = check_name(c, a->pos[i]);
			if (r) {
				json_decref(params);
				return r;
			}
			json_array_append_new(names, json_string(a->pos[i]));
		}
	}
	r = cli_call(c, "stats", params, &res);
	if (r)
		return r;
	if (!json_is_array(json_object_get(res, "domains"))) {
		json_decref(res);
		return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald's stats have no domains");
	}
	/* An answer holds what fits in one message: ask for the rest by name. */
	while (json_array_size(json_object_get(res, "more"))) {
		json_t *next, *more = json_object_get(res, "more");

		params = json_pack("{s:O}", "names", more);
		if (!params) {
			json_decref(res);
			return out_of_memory(c);
		}
		r = cli_call(c, "stats", params, &next);
		if (r) {
			json_decref(res);
			return r;
		}
		if (!json_array_size(json_object_get(next, "domains"))) {
			json_decref(next);
			json_decref(res);
			return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald's stats made no progress");
		}
		/* Domains undefined meanwhile are simply gone, not missing. */
		json_array_extend(json_object_get(res, "domains"), json_object_get(next, "domains"));
		more = json_object_get(next, "more");
		json_object_set_new(res, "more", json_is_array(more) ? json_incref(more) : json_array());
		json_decref(next);
	}
	if (c->format == CLI_FORMAT_JSON) {
		r = cli_print_json(c, res);
	} else if (c->format == CLI_FORMAT_PROMETHEUS) {
		size_t len;
		char *text = prom_render_stats(res, &len);

		if (!text)
			r = out_of_memory(c);
		else
			fwrite(text, 1, len, stdout);
		free(text);
	} else {
		rows = json_array();
		json_array_foreach(json_object_get(res, "domains"), i, e)
			json_array_append_new(rows, stats_row(e));
		if (!rows || cli_print_table(stdout, rows, cols, ARRAY_SIZE(cols)))
			r = out_of_memory(c);
		json_decref(rows);
	}
	/* What was found is printed; a name that was not is an error all the same. */
	missing = json_object_get(res, "missing");
	if (!r && json_array_size(missing)) {
		const char *m = json_string_value(json_array_get(missing, 0));

		/* As if corrald had said it: the same code and name. */
		r = cli_fail(c, CLI_EXIT_NOT_FOUND, rpc_err_name(RPC_ERR_NO_SUCH_DOMAIN),
			     "no domain '%s'", m ? m : "?");
		c->err_code = RPC_ERR_NO_SUCH_DOMAIN;
	}
	json_decref(res);
	return r;
}

static int cmd_daemon_info(struct cli *c, const struct cli_args *a)
{
	json_t *res;
	int r;

	r = cli_call(c, "daemon.info", NULL, &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON || !json_is_object(res))
		r = cli_print_json(c, res);
	else if (cli_print_fields(stdout, res))
		r = out_of_memory(c);
	json_decref(res);
	return r;
}

/* Hidden: the names of the domains, one a line, for shell completion. */
static int cmd_complete_domains(struct cli *c, const struct cli_args *a)
{
	json_t *res, *d;
	size_t i;
	int r;

	/* Pressing TAB must not start a daemon, nor hang. */
	c->may_autostart = false;
	if (c->timeout_ms > 2000)
		c->timeout_ms = 2000;
	r = list_all(c, NULL, &res);
	if (r)
		return r;
	json_array_foreach(res, i, d)
		if (json_is_string(json_object_get(d, "name")))
			puts(json_string_value(json_object_get(d, "name")));
	json_decref(res);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* define */

/* The config from -f FILE ("-": stdin), or a new empty one. */
static int load_config(struct cli *c, const char *file, json_t **ret)
{
	json_error_t jerr;
	json_t *config;

	if (!file) {
		*ret = json_object();
		return *ret ? 0 : out_of_memory(c);
	}
	if (!strcmp(file, "-"))
		config = json_loadf(stdin, 0, &jerr);
	else
		config = json_load_file(file, 0, &jerr);
	if (!config)
		return cli_usage(c, "%s: line %d: %s", strcmp(file, "-") ? file : "stdin",
				 jerr.line, jerr.text);
	if (!json_is_object(config)) {
		json_decref(config);
		return cli_usage(c, "%s: the config must be a JSON object", file);
	}
	*ret = config;
	return 0;
}

/*
 * --disk PATH[,ro][,format=raw|qcow2] as {"path": absolute, "readonly",
 * "format"}: the options are taken from the end, so a path may hold commas.
 */
static int add_disk(struct cli *c, json_t *disks, const char *spec)
{
	size_t len = strlen(spec);
	const char *format = NULL;
	bool ro = false;
	char *path, *abs;
	json_t *d;
	int r;

	for (;;) {
		if (len >= 3 && !strncmp(spec + len - 3, ",ro", 3)) {
			ro = true;
			len -= 3;
		} else if (len >= 11 && !strncmp(spec + len - 11, ",format=raw", 11)) {
			format = "raw";
			len -= 11;
		} else if (len >= 13 && !strncmp(spec + len - 13, ",format=qcow2", 13)) {
			format = "qcow2";
			len -= 13;
		} else {
			break;
		}
	}
	if (!len)
		return cli_usage(c, "--disk needs a path");
	path = strndup(spec, len);
	abs = path ? absolute_path(path) : NULL;
	free(path);
	if (!abs)
		return out_of_memory(c);
	d = json_pack("{s:s, s:b}", "path", abs, "readonly", ro);
	if (d && format)
		json_object_set_new(d, "format", json_string(format));
	r = json_array_append_new(disks, d);
	if (r)
		r = cli_usage(c, "--disk: '%s' is not valid UTF-8", abs);
	free(abs);
	return r;
}

/* The values of a repeatable option, as a JSON array of strings (corrald checks them). */
static int add_repeated(struct cli *c, const struct cli_args *a, const char *opt,
			json_t *config, const char *field)
{
	json_t *arr;

	if (!cli_opt_has(a, opt))
		return 0;
	arr = json_array();
	if (!arr || json_object_set_new(config, field, arr))
		return out_of_memory(c);
	for (size_t i = 0; i < a->nopts; i++) {
		if (strcmp(a->opts[i].opt->name, opt))
			continue;
		if (json_array_append_new(arr, json_string(a->opts[i].value)))
			return cli_usage(c, "--%s: '%s' is not valid UTF-8", opt, a->opts[i].value);
	}
	return 0;
}

/* --memory-limit, --cpu-weight, --cpu-limit into "limits" (kept from the file otherwise). */
static int apply_limits(struct cli *c, const struct cli_args *a, json_t *config)
{
	json_t *l = json_object_get(config, "limits");
	const char *v;
	uint64_t n;

	if (!cli_opt_has(a, "memory-limit") && !cli_opt_has(a, "cpu-weight") &&
	    !cli_opt_has(a, "cpu-limit"))
		return 0;
	if (!json_is_object(l)) {
		l = json_object();
		if (!l || json_object_set_new(config, "limits", l))
			return out_of_memory(c);
	}
	if ((v = cli_opt_get(a, "memory-limit"))) {
		if (parse_memory(v, &n))
			return cli_usage(c, "--memory-limit: '%s' is not a size (MiB, or with M, "
					 "G or T)", v);
		json_object_set_new(l, "memory", json_integer((json_int_t)n));
	}
	if ((v = cli_opt_get(a, "cpu-weight"))) {
		if (parse_uint(v, 1, 10000, &n))
			return cli_usage(c, "--cpu-weight: '%s' is not a number from 1 to 10000", v);
		json_object_set_new(l, "cpu_weight", json_integer((json_int_t)n));
	}
	if ((v = cli_opt_get(a, "cpu-limit"))) {
		char *end;
		double x = strtod(v, &end);

		if (!*v || *end || !(x >= 0.01 && x <= VCPUS_MAX))
			return cli_usage(c, "--cpu-limit: '%s' is not a number of CPUs from 0.01 "
					 "to %u", v, VCPUS_MAX);
		json_object_set_new(l, "cpus", json_real(x));
	}
	return 0;
}

/* The options that set a string field as they are given (corrald checks the words). */
static const char *const plain_fields[] = { "machine", "cmdline", "uuid", "reboot",
					    "firmware", "boot" };
/* The options that name a file: relative paths are made absolute. */
static const char *const path_fields[] = { "kernel", "initrd", "cdrom" };

static int apply_options(struct cli *c, const struct cli_args *a, json_t *config)
{
	const char *v;
	uint64_t n;
	json_t *disks;
	size_t i;

	if ((v = cli_opt_get(a, "memory"))) {
		int r = parse_memory(v, &n);

		if (r)
			return cli_usage(c, r == -ERANGE
				? "--memory: '%s' is out of range (16M to 1T)"
				: "--memory: '%s' is not a size (MiB, or with M, G or T)", v);
		if (json_object_set_new(config, "memory", json_integer((json_int_t)n)))
			return out_of_memory(c);
	}
	if ((v = cli_opt_get(a, "vcpus"))) {
		if (parse_uint(v, 1, VCPUS_MAX, &n))
			return cli_usage(c, "--vcpus: '%s' is not a number from 1 to %u", v,
					 VCPUS_MAX);
		if (json_object_set_new(config, "vcpus", json_integer((json_int_t)n)))
			return out_of_memory(c);
	}
	if ((v = cli_opt_get(a, "accel"))) {
		if (strcmp(v, "auto") && strcmp(v, "kvm") && strcmp(v, "tcg"))
			return cli_usage(c, "--accel must be auto, kvm or tcg, not '%s'", v);
		if (set_string(config, "accel", v))
			return out_of_memory(c);
	}
	for (i = 0; i < ARRAY_SIZE(plain_fields); i++) {
		v = cli_opt_get(a, plain_fields[i]);
		if (v && !*v && strcmp(plain_fields[i], "cmdline"))
			return cli_usage(c, "--%s needs a value", plain_fields[i]);
		if (v && set_string(config, plain_fields[i], v))
			return cli_usage(c, "--%s: '%s' is not valid UTF-8", plain_fields[i], v);
	}
	for (i = 0; i < ARRAY_SIZE(path_fields); i++) {
		char *abs;
		int r;

		v = cli_opt_get(a, path_fields[i]);
		if (!v)
			continue;
		if (!*v)
			return cli_usage(c, "--%s needs a path", path_fields[i]);
		abs = absolute_path(v);
		if (!abs)
			return out_of_memory(c);
		r = set_string(config, path_fields[i], abs);
		free(abs);
		if (r)
			return cli_usage(c, "--%s: '%s' is not valid UTF-8", path_fields[i], v);
	}
	/* A bare name is looked up in corrald's PATH; anything else is a path. */
	if ((v = cli_opt_get(a, "emulator"))) {
		char *abs = strchr(v, '/') ? absolute_path(v) : strdup(v);
		int r;

		if (!*v)
			return cli_usage(c, "--emulator needs a path or a command name");
		if (!abs)
			return out_of_memory(c);
		r = set_string(config, "emulator", abs);
		free(abs);
		if (r)
			return cli_usage(c, "--emulator: '%s' is not valid UTF-8", v);
	}
	if (cli_opt_has(a, "disk")) {
		disks = json_array();
		if (!disks || json_object_set_new(config, "disks", disks))
			return out_of_memory(c);
		for (i = 0; i < a->nopts; i++) {
			int r;

			if (strcmp(a->opts[i].opt->name, "disk"))
				continue;
			r = add_disk(c, disks, a->opts[i].value);
			if (r)
				return r;
		}
	}
	{
		int r = add_repeated(c, a, "nic", config, "nics");

		if (!r)
			r = apply_limits(c, a, config);
		if (r)
			return r;
	}
	if (!json_is_string(json_object_get(config, "kernel")) &&
	    (json_is_string(json_object_get(config, "initrd")) ||
	     json_is_string(json_object_get(config, "cmdline"))))
		return cli_usage(c, "--initrd and --cmdline need --kernel");
	return 0;
}

static int cmd_define(struct cli *c, const struct cli_args *a)
{
	json_t *config, *res;
	const char *name;
	int r;

	r = load_config(c, cli_opt_get(a, "file"), &config);
	if (r)
		return r;
	/* NAME beats the file's "name", as every option beats its field. */
	if (a->npos && set_string(config, "name", a->pos[0])) {
		json_decref(config);
		return out_of_memory(c);
	}
	name = json_string_value(json_object_get(config, "name"));
	if (!name)
		r = cli_usage(c, "missing NAME (or a \"name\" in the -f file)");
	else
		r = check_name(c, name);
	if (!r)
		r = apply_options(c, a, config);
	if (r) {
		json_decref(config);
		return r;
	}
	r = cli_call(c, "define", json_pack("{s:o}", "config", config), &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON)
		r = cli_print_json(c, res);
	else
		printf("Domain %s defined (uuid %s).\n", get_str(res, "name", "?"),
		       get_str(res, "uuid", "?"));
	json_decref(res);
	return r;
}

/* ------------------------------------------------------------------------ */
/* dumpconfig, edit */

/* The domain's definition as corrald keeps it (what define -f takes back). */
static int fetch_config(struct cli *c, const char *name, json_t **ret)
{
	json_t *res, *config;
	int r = cli_call(c, "info", name_params(name), &res);

	if (r)
		return r;
	config = json_incref(json_object_get(res, "config"));
	json_decref(res);
	if (!json_is_object(config)) {
		json_decref(config);
		return cli_fail(c, CLI_EXIT_ERROR, "error", "corrald sent no config for %s", name);
	}
	*ret = config;
	return 0;
}

static int cmd_dumpconfig(struct cli *c, const struct cli_args *a)
{
	json_t *config;
	int r = check_name(c, a->pos[0]);

	if (!r)
		r = fetch_config(c, a->pos[0], &config);
	if (r)
		return r;
	if (json_dumpf(config, stdout, JSON_INDENT(2) | JSON_SORT_KEYS | CLI_JSON_REALS) ||
	    putchar('\n') == EOF)
		r = cli_fail(c, CLI_EXIT_ERROR, "error", "cannot write the output: %s",
			     strerror(errno));
	json_decref(config);
	return r;
}

/* $VISUAL, else $EDITOR, else vi, on path: through sh, as editors are often "cmd -flags". */
static int run_editor(struct cli *c, const char *path)
{
	const char *ed = getenv("VISUAL");
	pid_t pid;
	int st;

	if (!ed || !*ed)
		ed = getenv("EDITOR");
	if (!ed || !*ed)
		ed = "vi";
	pid = fork();
	if (pid < 0)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "fork: %s", strerror(errno));
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exec $CORRAL_EDITOR \"$1\"", "sh", path, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "the editor (%s) failed; nothing was "
				"changed", ed);
	return 0;
}

/* Ask on the terminal; false when there is none. */
static bool ask_again(const char *what)
{
	char line[16];

	if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
		return false;
	fprintf(stderr, "%s\nEdit again? [y/N] ", what);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

static int cmd_edit(struct cli *c, const struct cli_args *a)
{
	const char *name = a->pos[0];
	char path[] = "/tmp/corral-edit-XXXXXX.json";
	json_t *orig = NULL, *edited = NULL, *res = NULL;
	json_error_t jerr;
	const char *ed;
	FILE *f;
	int fd, r = check_name(c, name);

	if (!r)
		r = fetch_config(c, name, &orig);
	if (r)
		return r;
	ed = getenv("VISUAL");
	if (!ed || !*ed)
		ed = getenv("EDITOR");
	setenv("CORRAL_EDITOR", ed && *ed ? ed : "vi", 1);
	fd = mkstemps(path, 5);
	if (fd < 0) {
		json_decref(orig);
		return cli_fail(c, CLI_EXIT_ERROR, "error", "cannot make a temporary file: %s",
				strerror(errno));
	}
	f = fdopen(fd, "w");
	if (!f || json_dumpf(orig, f, JSON_INDENT(2) | JSON_SORT_KEYS | CLI_JSON_REALS) ||
	    fputc('\n', f) == EOF || fclose(f)) {
		r = cli_fail(c, CLI_EXIT_ERROR, "error", "cannot write %s: %s", path,
			     strerror(errno));
		goto out;
	}
	for (;;) {
		const char *new_name;

		r = run_editor(c, path);
		if (r)
			goto out;
		json_decref(edited);
		edited = json_load_file(path, 0, &jerr);
		if (!edited || !json_is_object(edited)) {
			char why[256];

			snprintf(why, sizeof(why), "%s: line %d: %s", path, jerr.line,
				 edited ? "the config must be a JSON object" : jerr.text);
			if (ask_again(why))
				continue;
			r = cli_usage(c, "%s; nothing was changed", why);
			goto out;
		}
		if (json_equal(edited, orig)) {
			fprintf(stderr, "No changes to %s.\n", name);
			r = 0;
			goto out;
		}
		new_name = json_string_value(json_object_get(edited, "name"));
		if (!new_name || strcmp(new_name, name)) {
			if (ask_again("The name cannot be changed by edit (define a new domain "
				      "instead)."))
				continue;
			r = cli_usage(c, "the name cannot be changed by edit; nothing was changed");
			goto out;
		}
		r = cli_call(c, "define", json_pack("{s:O}", "config", edited), &res);
		if (r == 0)
			break;
		if (c->err_code != RPC_ERR_INVALID_ARGUMENT || !ask_again(c->err_message))
			goto out;
		c->err_code = 0;
	}
	printf("Domain %s's definition updated; it applies from its next start.\n", name);
out:
	unlink(path);
	json_decref(orig);
	json_decref(edited);
	json_decref(res);
	return r;
}

/* ------------------------------------------------------------------------ */
/* State changes */

static const struct {
	const char *method, *done;
} changes[] = {
	{ "undefine", "undefined" }, { "start", "started" },   { "shutdown", "shut down" },
	{ "destroy", "destroyed" },  { "suspend", "suspended" }, { "resume", "resumed" },
	{ "reset", "reset" },        { "reboot", "rebooted" },  { "attach", "attached" },
};

/* Report a state change: the result for programs, a sentence for people. */
static int print_change(struct cli *c, const char *name, json_t *res)
{
	const char *state = get_str(res, "state", NULL);
	const char *done = "done";
	size_t i;

	if (c->format == CLI_FORMAT_JSON)
		return cli_print_json(c, res);
	for (i = 0; i < ARRAY_SIZE(changes); i++)
		if (!strcmp(changes[i].method, c->cmd->name))
			done = changes[i].done;
	if (state)
		printf("Domain %s %s (%s).\n", name, done, state);
	else
		printf("Domain %s %s.\n", name, done);
	return 0;
}

/* undefine, shutdown, destroy, suspend, resume, reset, reboot: NAME alone. */
static int cmd_change(struct cli *c, const struct cli_args *a)
{
	json_t *res;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	r = cli_call(c, c->cmd->name, name_params(a->pos[0]), &res);
	if (r)
		return r;
	r = print_change(c, a->pos[0], res);
	json_decref(res);
	return r;
}

/*
 * shutdown: waits until the guest is off (corrald answers once QEMU has
 * exited); --no-wait returns once the power button is pressed; --force
 * destroys a guest still on near the deadline, and says so.
 */
static int cmd_shutdown(struct cli *c, const struct cli_args *a)
{
	const char *name = a->pos[0];
	json_t *params, *res;
	int r;

	r = check_name(c, name);
	if (r)
		return r;
	params = name_params(name);
	if (!params)
		return out_of_memory(c);
	if (cli_opt_has(a, "no-wait"))
		json_object_set_new(params, "wait", json_false());
	if (cli_opt_has(a, "force"))
		json_object_set_new(params, "force", json_true());
	r = cli_call(c, "shutdown", params, &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON)
		r = cli_print_json(c, res);
	else if (json_is_true(json_object_get(res, "forced")))
		printf("Domain %s did not power off within %.0f s: destroyed (%s).\n", name,
		       c->timeout_ms / 1000.0, get_str(res, "state", "?"));
	else if (json_is_true(json_object_get(res, "requested")))
		printf("Domain %s: power-off requested (%s).\n", name, get_str(res, "state", "?"));
	else
		printf("Domain %s shut down (%s).\n", name, get_str(res, "state", "?"));
	json_decref(res);
	return r;
}

static void note_wakeup(const char *method, json_t *params, void *arg)
{
}

/*
 * `start --wait`: after start, look at the domain's state until it is
 * running, within --timeout of the command's start.  Events on the domain
 * (subscribed before starting, when corrald allows) wake the wait early; a
 * recheck every WAIT_RECHECK_NS covers the rest.
 */
static int wait_running(struct cli *c, const char *name, json_t *res, uint64_t deadline_ns)
{
	const char *state = get_str(res, "state", "");
	bool left_shutoff = *state && strcmp(state, "shutoff");
	struct cli_call_err err;
	json_t *info = NULL;
	int r;

	for (;;) {
		if (!strcmp(state, "running"))
			break;
		if (left_shutoff && (!strcmp(state, "shutoff") || !strcmp(state, "crashed"))) {
			r = cli_fail(c, CLI_EXIT_ERROR, "error",
				     "domain %s stopped before it ran: %s (%s)", name, state,
				     get_str(info, "reason", "no reason given"));
			goto out;
		}
		left_shutoff |= *state && strcmp(state, "shutoff");
		if (now_ns() >= deadline_ns) {
			r = cli_fail(c, CLI_EXIT_TIMEOUT, "timeout",
				     "domain %s is still %s after %.1f s", name,
				     *state ? state : "not running", c->timeout_ms / 1000.0);
			goto out;
		}
		r = cli_client_wait(c->client,
				    deadline_ns - now_ns() < WAIT_RECHECK_NS ? deadline_ns
									     : now_ns() + WAIT_RECHECK_NS,
				    -1, &err);
		if (r < 0 && r != -ETIMEDOUT) {
			r = cli_call_failed(c, r, &err);
			goto out;
		}
		json_decref(info);
		info = NULL;
		r = cli_call(c, "info", name_params(name), &info);
		if (r)
			goto out;
		state = get_str(info, "state", "");
	}
	r = 0;
	if (json_is_object(res) && json_object_set_new(res, "state", json_string("running")))
		r = out_of_memory(c);
out:
	json_decref(info);
	return r;
}

static int cmd_start(struct cli *c, const struct cli_args *a)
{
	uint64_t deadline_ns = now_ns() + c->timeout_ms * NSEC_PER_MSEC;
	bool wait = cli_opt_has(a, "wait");
	const char *name = a->pos[0];
	json_t *res;
	int r;

	r = check_name(c, name);
	if (r)
		return r;
	if (wait) {
		r = cli_connect(c);
		if (r)
			return r;
		cli_client_set_notify(c->client, note_wakeup, NULL);
		/* Only a wake-up: without it, rechecks alone do the job. */
		r = cli_call(c, "events.subscribe", name_params(name), NULL);
		if (r == CLI_EXIT_UNREACHABLE || r == CLI_EXIT_TIMEOUT)
			return r;
	}
	r = cli_call(c, "start", name_params(name), &res);
	if (r)
		return r;
	if (wait)
		r = wait_running(c, name, res, deadline_ns);
	if (!r)
		r = print_change(c, name, res);
	json_decref(res);
	return r;
}

static int cmd_attach(struct cli *c, const struct cli_args *a)
{
	const char *sock = cli_opt_get(a, "qmp-socket"), *pid = cli_opt_get(a, "pid");
	json_t *params, *res;
	uint64_t n = 0;
	char *abs;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	if (!sock || !*sock)
		return cli_usage(c, "--qmp-socket PATH is required");
	if (pid && parse_uint(pid, 1, INT_MAX, &n))
		return cli_usage(c, "--pid: '%s' is not a process id", pid);
	abs = absolute_path(sock);
	params = abs ? json_pack("{s:s, s:s}", "name", a->pos[0], "qmp_socket", abs) : NULL;
	free(abs);
	if (!params || (pid && json_object_set_new(params, "pid", json_integer((json_int_t)n)))) {
		json_decref(params);
		return out_of_memory(c);
	}
	r = cli_call(c, "attach", params, &res);
	if (r)
		return r;
	r = print_change(c, a->pos[0], res);
	json_decref(res);
	return r;
}

/* autostart NAME [--disable]: mark (or unmark) a domain to start with corrald. */
static int cmd_autostart(struct cli *c, const struct cli_args *a)
{
	bool enable = !cli_opt_has(a, "disable");
	json_t *res;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	r = cli_call(c, "autostart", json_pack("{s:s, s:b}", "name", a->pos[0], "enable", enable),
		     &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON)
		r = cli_print_json(c, res);
	else
		printf("Domain %s: autostart %s.\n", get_str(res, "name", a->pos[0]),
		       json_is_true(json_object_get(res, "autostart")) ? "enabled" : "disabled");
	json_decref(res);
	return r;
}

static int cmd_qmp(struct cli *c, const struct cli_args *a)
{
	const char *text = a->pos[1];
	json_error_t jerr;
	json_t *cmd, *res;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	cmd = json_loads(text, 0, &jerr);
	if (!cmd)
		return cli_usage(c, "the QMP command is not JSON: %s", jerr.text);
	if (!json_is_string(json_object_get(cmd, "execute")))
		r = cli_usage(c, "the QMP command needs an \"execute\" string");
	json_decref(cmd);
	if (r)
		return r;
	r = cli_call(c, "qmp", json_pack("{s:s, s:s}", "name", a->pos[0], "command", text), &res);
	if (r)
		return r;
	r = cli_print_json(c, res);
	json_decref(res);
	return r;
}

/* ------------------------------------------------------------------------ */
/* hotplug, save, restore */

/* Call method with params (taken); print its result for people or as JSON. */
static int device_call(struct cli *c, const char *name, const char *method, json_t *params,
		       const char *done)
{
	json_t *res;
	int r;

	if (!params)
		return out_of_memory(c);
	r = cli_call(c, method, params, &res);
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON) {
		r = cli_print_json(c, res);
	} else {
		const char *what = get_str(res, "target", get_str(res, "mac", NULL));
		bool live = json_is_true(json_object_get(res, "live"));
		bool pers = json_is_true(json_object_get(res, "persistent"));

		printf("Domain %s: %s%s%s%s%s.\n", name,
		       what ? what : "", what ? " " : "", done,
		       live ? " (live)" : "", pers ? (live ? " and in the definition" :
						      " in the definition") : "");
	}
	json_decref(res);
	return r;
}

static int set_flags(json_t *params, const struct cli_args *a)
{
	int r = 0;

	if (cli_opt_has(a, "persistent"))
		r |= json_object_set_new(params, "persistent", json_true());
	if (cli_opt_has(a, "ro"))
		r |= json_object_set_new(params, "readonly", json_true());
	return r;
}

/* attach-disk NAME PATH [--target vdX] [--ro] [--format raw|qcow2] [--persistent] */
static int cmd_attach_disk(struct cli *c, const struct cli_args *a)
{
	const char *target = cli_opt_get(a, "target"), *format = cli_opt_get(a, "format");
	json_t *params;
	char *abs;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	if (format && strcmp(format, "raw") && strcmp(format, "qcow2"))
		return cli_usage(c, "--format must be raw or qcow2, not '%s'", format);
	abs = absolute_path(a->pos[1]);
	params = abs ? json_pack("{s:s}", "name", a->pos[0]) : NULL;
	if (params && (set_string(params, "path", abs) ||
		       (target && set_string(params, "target", target)) ||
		       (format && set_string(params, "format", format)) || set_flags(params, a))) {
		free(abs);
		json_decref(params);
		return cli_usage(c, "the path and the target must be UTF-8 text");
	}
	free(abs);
	return device_call(c, a->pos[0], "attach-disk", params, "attached");
}

/* detach-disk NAME TARGET [--persistent] */
static int cmd_detach_disk(struct cli *c, const struct cli_args *a)
{
	json_t *params;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	params = json_pack("{s:s}", "name", a->pos[0]);
	if (params && (set_string(params, "target", a->pos[1]) || set_flags(params, a))) {
		json_decref(params);
		return cli_usage(c, "the target must be UTF-8 text");
	}
	return device_call(c, a->pos[0], "detach-disk", params, "detached");
}

/* attach-nic NAME [user[,hostfwd=R]... | bridge=BR] [--mac M] [--persistent] */
static int cmd_attach_nic(struct cli *c, const struct cli_args *a)
{
	const char *mac = cli_opt_get(a, "mac");
	json_t *params;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	params = json_pack("{s:s}", "name", a->pos[0]);
	if (params && ((a->npos > 1 && set_string(params, "spec", a->pos[1])) ||
		       (mac && set_string(params, "mac", mac)) || set_flags(params, a))) {
		json_decref(params);
		return cli_usage(c, "the NIC and its MAC must be UTF-8 text");
	}
	return device_call(c, a->pos[0], "attach-nic", params, "attached");
}

/* detach-nic NAME MAC [--persistent] */
static int cmd_detach_nic(struct cli *c, const struct cli_args *a)
{
	json_t *params;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	params = json_pack("{s:s}", "name", a->pos[0]);
	if (params && (set_string(params, "mac", a->pos[1]) || set_flags(params, a))) {
		json_decref(params);
		return cli_usage(c, "the MAC must be UTF-8 text");
	}
	return device_call(c, a->pos[0], "detach-nic", params, "detached");
}

struct progress_view {
	const char *name;
	bool shown;
};

/* A progress event of our domain: one line, rewritten in place on a terminal. */
static void note_progress(const char *method, json_t *params, void *arg)
{
	struct progress_view *pv = arg;
	json_t *ev = json_array_get(params, 0), *data = json_object_get(ev, "data");

	if (strcmp(method, "event") || strcmp(get_str(ev, "event", ""), "progress") ||
	    strcmp(get_str(ev, "domain", ""), pv->name))
		return;
	if (json_object_get(data, "percent"))
		fprintf(stderr, "%s%s: %s %.0f%% (%.0f of %.0f MiB) %.1f s%s",
			isatty(STDERR_FILENO) ? "\r" : "", get_str(data, "job", "?"),
			get_str(data, "status", "?"), json_number_value(json_object_get(data, "percent")),
			json_number_value(json_object_get(data, "transferred_bytes")) / 1048576.0,
			json_number_value(json_object_get(data, "total_bytes")) / 1048576.0,
			json_number_value(json_object_get(data, "elapsed_s")),
			isatty(STDERR_FILENO) ? "\033[K" : "\n");
	else
		fprintf(stderr, "%s%s: %s %.1f s%s", isatty(STDERR_FILENO) ? "\r" : "",
			get_str(data, "job", "?"), get_str(data, "status", "?"),
			json_number_value(json_object_get(data, "elapsed_s")),
			isatty(STDERR_FILENO) ? "\033[K" : "\n");
	pv->shown = true;
}

/* save NAME FILE, restore NAME FILE: the file is opened by corrald with our rights. */
static int cmd_save_restore(struct cli *c, const struct cli_args *a)
{
	const char *method = c->cmd->name;
	struct progress_view pv = { .name = a->pos[0] };
	json_t *params, *res;
	char *abs;
	int r;

	r = check_name(c, a->pos[0]);
	if (r)
		return r;
	abs = absolute_path(a->pos[1]);
	params = abs ? json_pack("{s:s}", "name", a->pos[0]) : NULL;
	if (params && set_string(params, "path", abs)) {
		free(abs);
		json_decref(params);
		return cli_usage(c, "the file's path must be UTF-8 text");
	}
	free(abs);
	if (!params)
		return out_of_memory(c);
	/* Progress, as corrald reports it, while the call runs. */
	if (c->format != CLI_FORMAT_JSON) {
		r = cli_connect(c);
		if (r) {
			json_decref(params);
			return r;
		}
		cli_client_set_notify(c->client, note_progress, &pv);
		r = cli_call(c, "events.subscribe", name_params(a->pos[0]), NULL);
		if (r == CLI_EXIT_UNREACHABLE || r == CLI_EXIT_TIMEOUT) {
			json_decref(params);
			return r;
		}
	}
	r = cli_call(c, method, params, &res);
	if (pv.shown && isatty(STDERR_FILENO))
		fprintf(stderr, "\n");
	if (r)
		return r;
	if (c->format == CLI_FORMAT_JSON)
		r = cli_print_json(c, res);
	else if (!strcmp(method, "save"))
		printf("Domain %s saved to %s: %s (%s).\n", a->pos[0], a->pos[1],
		       get_str(res, "state", "?"), get_str(res, "reason", "?"));
	else
		printf("Domain %s restored from %s: running, pid %" JSON_INTEGER_FORMAT ".\n",
		       a->pos[0], a->pos[1], json_integer_value(json_object_get(res, "pid")));
	json_decref(res);
	return r;
}

/* ------------------------------------------------------------------------ */
/* events */

struct events {
	struct cli *c;
	bool out_broken;        /* stdout failed (a closed pipe): stop */
};

/* One event for people; takes data. */
static void print_event_line(double t, const char *domain, const char *event, json_t *data)
{
	char when[64], *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | CLI_JSON_REALS);

	format_time(t, when, sizeof(when));
	printf("%s  %-16s  %-24s  %s\n", when, domain, event, text ? text : "{}");
	free(text);
	json_decref(data);
}

static void on_event(const char *method, json_t *params, void *arg)
{
	struct events *ev = arg;
	json_t *e = json_array_get(params, 0), *line = NULL;
	double now = (double)wall_ns() / 1e9;

	if (!strcmp(method, "event")) {
		if (ev->c->format == CLI_FORMAT_JSON)
			line = json_incref(e);
		else
			print_event_line(json_is_number(json_object_get(e, "timestamp"))
						 ? json_number_value(json_object_get(e, "timestamp"))
						 : now,
					 get_str(e, "domain", "-"), get_str(e, "event", "?"),
					 json_incref(json_object_get(e, "data")));
	} else if (!strcmp(method, "events.dropped")) {
		/* Gaps are part of the stream: say so where they are. */
		json_t *count = json_object_get(e, "count");

		if (ev->c->format == CLI_FORMAT_JSON)
			line = json_pack("{s:s, s:f, s:O?}", "event", "events.dropped", "timestamp",
					 now, "count", count);
		else
			print_event_line(now, "-", "events.dropped",
					 json_pack("{s:O?}", "count", count));
	}
	if (line) {
		json_dumpf(line, stdout, JSON_COMPACT | CLI_JSON_REALS);
		putchar('\n');
		json_decref(line);
	}
	if (fflush(stdout) == EOF)
		ev->out_broken = true;
}

static int cmd_events(struct cli *c, const struct cli_args *a)
{
	struct events ev = { .c = c };
	struct cli_call_err err;
	json_t *params, *res, *sub;
	sigset_t sigs;
	int sfd, r;

	if (a->npos) {
		r = check_name(c, a->pos[0]);
		if (r)
			return r;
	}
	/* SIGINT and SIGTERM end the stream through a descriptor, not a handler. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return cli_fail(c, CLI_EXIT_ERROR, "error", "signalfd: %s", strerror(errno));

	/* Set the callback first: events may come before the answer. */
	r = cli_connect(c);
	if (r)
		goto out;
	cli_client_set_notify(c->client, on_event, &ev);
	params = a->npos ? name_params(a->pos[0]) : json_object();
	r = cli_call(c, "events.subscribe", params, &res);
	if (r)
		goto out;
	sub = json_incref(json_object_get(res, "subscription"));
	json_decref(res);

	while (!ev.out_broken) {
		r = cli_client_wait(c->client, UINT64_MAX, sfd, &err);
		if (r == 0)
			break;  /* a signal */
		if (r < 0) {
			r = cli_call_failed(c, r, &err);
			json_decref(sub);
			goto out;
		}
	}
	/* Polite, not required: corrald forgets the subscription when we close. */
	if (sub) {
		cli_client_set_notify(c->client, NULL, NULL);
		cli_call_until(c, "events.unsubscribe", json_pack("{s:O}", "subscription", sub),
			       now_ns() + CLI_TIMEOUT_MARGIN_MS * NSEC_PER_MSEC, NULL);
		json_decref(sub);
	}
	r = 0;
out:
	close(sfd);
	return r;
}

/* ------------------------------------------------------------------------ */
/* help */

static int cmd_help(struct cli *c, const struct cli_args *a)
{
	const struct cli_cmd *cmd = NULL;

	if (a->npos) {
		cmd = cli_cmd_find(a->pos[0]);
		if (!cmd)
			return cli_usage(c, "unknown command '%s'", a->pos[0]);
	}
	cli_help(stdout, cmd);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The table */

static const struct cli_opt list_opts[] = {
	{ "state", 0, "STATE", false, "only domains in STATE (shutoff, running, paused, ...)" },
	{ 0 },
};

static const struct cli_opt define_opts[] = {
	{ "file", 'f', "FILE.json", false, "start from this config ('-': stdin)" },
	{ "memory", 0, "SIZE", false, "memory in MiB, or with M, G or T (16M to 1T)" },
	{ "vcpus", 0, "N", false, "virtual CPUs (1 to 256)" },
	{ "machine", 0, "TYPE", false, "QEMU machine type (pc, q35, none, ...)" },
	{ "accel", 0, "auto|kvm|tcg", false, "accelerator" },
	{ "emulator", 0, "PATH", false, "the QEMU binary (a bare name: from PATH)" },
	{ "kernel", 0, "FILE", false, "boot this kernel directly" },
	{ "initrd", 0, "FILE", false, "initial ramdisk (needs --kernel)" },
	{ "cmdline", 0, "TEXT", false, "kernel command line (needs --kernel)" },
	{ "disk", 0, "PATH[,ro][,format=F]", true, "a disk image (raw or qcow2; read from its "
	  "header unless given), ',ro' for read-only; repeatable" },
	{ "cdrom", 0, "FILE", false, "an ISO image on a CD drive (read-only)" },
	{ "boot", 0, "LIST", false, "boot order: disk, cdrom, network, comma-separated" },
	{ "firmware", 0, "bios|uefi", false, "firmware (uefi: OVMF, with the domain's own "
	  "variable store)" },
	{ "nic", 0, "SPEC", true, "a virtio NIC: user[,hostfwd=tcp:127.0.0.1:2222-:22]..."
	  "[,mac=MAC] or bridge=BR[,mac=MAC]; repeatable" },
	{ "uuid", 0, "UUID", false, "the domain's UUID (default: a new one)" },
	{ "reboot", 0, "reset|acpi", false, "how a reboot is done" },
	{ "memory-limit", 0, "SIZE", false, "QEMU's memory cap (default: memory + 1/4, at "
	  "least +256M)" },
	{ "cpu-weight", 0, "N", false, "CPU share, 1 to 10000 (default 100)" },
	{ "cpu-limit", 0, "CPUS", false, "CPU cap in CPUs, e.g. 0.5 (default: none)" },
	{ 0 },
};

static const struct cli_opt start_opts[] = {
	{ "wait", 0, NULL, false, "then wait until it is running (within --timeout)" },
	{ 0 },
};

static const struct cli_opt shutdown_opts[] = {
	{ "no-wait", 0, NULL, false, "return once the power button is pressed" },
	{ "force", 0, NULL, false, "destroy the domain if it is still on near --timeout" },
	{ 0 },
};

static const struct cli_opt console_opts[] = {
	{ "read-only", 0, NULL, false, "view only: send no input" },
	{ "no-history", 0, NULL, false, "skip the last 64 KiB of output; live output only" },
	{ "history", 0, NULL, false, "print the last 64 KiB of output and exit (for scripts)" },
	{ 0 },
};

static const struct cli_opt autostart_opts[] = {
	{ "disable", 0, NULL, false, "do not start it with corrald any more" },
	{ 0 },
};

static const struct cli_opt attach_disk_opts[] = {
	{ "target", 0, "vdX", false, "its name, vda to vdz (default: the first free one)" },
	{ "ro", 0, NULL, false, "read-only" },
	{ "format", 0, "raw|qcow2", false, "the image's format (default: read from its header); "
	  "after the command, --format is this one, not the output's" },
	{ "persistent", 0, NULL, false, "also add it to the definition (for the next start)" },
	{ 0 },
};

static const struct cli_opt attach_nic_opts[] = {
	{ "mac", 0, "MAC", false, "its MAC address (default: a new 52:54:00:xx:xx:xx)" },
	{ "persistent", 0, NULL, false, "also add it to the definition (for the next start)" },
	{ 0 },
};

static const struct cli_opt detach_opts[] = {
	{ "persistent", 0, NULL, false, "also remove it from the definition" },
	{ 0 },
};

static const struct cli_opt attach_opts[] = {
	{ "qmp-socket", 0, "PATH", false, "QMP socket of the running QEMU (required)" },
	{ "pid", 0, "N", false, "QEMU's process id" },
	{ 0 },
};

const struct cli_cmd cli_cmds[] = {
	{ .name = "list", .synopsis = "[--state STATE]", .summary = "List the domains",
	  .opts = list_opts, .run = cmd_list },
	{ .name = "info", .synopsis = "NAME",
	  .summary = "Show a domain's state, job, monitor, counters and config",
	  .min_pos = 1, .max_pos = 1, .run = cmd_info },
	{ .name = "stats", .synopsis = "[NAME]...",
	  .summary = "Show domains' CPU, memory and disk figures (never waits for a VM)",
	  .details = "Without NAME, every domain.  The figures are what each running QEMU's\n"
		     "monitor last read (corrald's --stats-interval-ms); AGE says how old they\n"
		     "are, '(stale)' when the monitor does not answer.  --format json prints\n"
		     "the answer of the stats method; --format prometheus the Prometheus text\n"
		     "format, as corrald's /metrics serves it.  A NAME not defined: exit 3,\n"
		     "after the others are printed.\n",
	  .min_pos = 0, .max_pos = 4096, .run = cmd_stats },
	{ .name = "define",
	  .synopsis = "NAME [OPTION]...\n       corral define -f FILE.json [NAME] [OPTION]...",
	  .summary = "Define a new domain",
	  .details = "The config is the -f file, if any: a JSON object with the fields name,\n"
		     "uuid, memory, vcpus, machine, accel, emulator, kernel, initrd, cmdline,\n"
		     "disks, reboot, limits, nics, firmware, cdrom and boot (docs/config.md).\n"
		     "NAME and each option replace their field; --disk options together\n"
		     "replace \"disks\", --nic options \"nics\".  Relative paths given as\n"
		     "options are taken from the current directory.  Defining an existing\n"
		     "name replaces its definition for its next start (see also edit).\n"
		     "Each NIC gets a MAC address at its first define and keeps it.\n",
	  .opts = define_opts, .max_pos = 1, .run = cmd_define },
	{ .name = "dumpconfig", .synopsis = "NAME",
	  .summary = "Print a domain's definition as JSON (what define -f takes)",
	  .min_pos = 1, .max_pos = 1, .run = cmd_dumpconfig },
	{ .name = "edit", .synopsis = "NAME",
	  .summary = "Edit a domain's definition in $VISUAL or $EDITOR",
	  .details = "Opens the definition as JSON in $VISUAL, $EDITOR or vi.  When the\n"
		     "editor exits, the new definition is checked by corrald and replaces\n"
		     "the old one through the domain's job queue; a running domain keeps\n"
		     "its current one until its next start.  An invalid definition is\n"
		     "reported, and on a terminal you may edit it again; nothing changes\n"
		     "until one is accepted.  The name and the UUID cannot be changed.\n",
	  .min_pos = 1, .max_pos = 1, .run = cmd_edit },
	{ .name = "undefine", .synopsis = "NAME", .summary = "Remove a shut-off domain",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "start", .synopsis = "NAME [--wait]", .summary = "Start a domain",
	  .opts = start_opts, .min_pos = 1, .max_pos = 1, .run = cmd_start },
	{ .name = "autostart", .synopsis = "NAME [--disable]",
	  .summary = "Start a domain whenever corrald starts (or, --disable, not)",
	  .details = "The mark is kept with the domain's definition: a new define of the\n"
		     "same name keeps it, undefine removes it.  When corrald starts, once it\n"
		     "has found the VMs still running, it starts every marked domain that is\n"
		     "shut off, all at once; a start that fails shows in `corral info` (reason\n"
		     "failed) and in corrald's log.  `corral info` shows the mark.\n",
	  .opts = autostart_opts, .min_pos = 1, .max_pos = 1, .run = cmd_autostart },
	{ .name = "shutdown", .synopsis = "NAME [--no-wait] [--force] [--timeout S]",
	  .summary = "Ask a domain's guest to power off",
	  .details = "Presses the ACPI power button and waits up to --timeout (default 30 s)\n"
		     "until the guest is off (QEMU has exited).  With --force, a guest still\n"
		     "on shortly before the timeout is destroyed, and the command says so.\n"
		     "A paused guest cannot see the button: resume or destroy it.\n",
	  .opts = shutdown_opts, .min_pos = 1, .max_pos = 1, .run = cmd_shutdown },
	{ .name = "destroy", .synopsis = "NAME", .summary = "Stop a domain at once (kill QEMU)",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "suspend", .synopsis = "NAME", .summary = "Pause a domain's vCPUs",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "resume", .synopsis = "NAME", .summary = "Resume a suspended domain",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "reset", .synopsis = "NAME", .summary = "Reset a domain, as its reset button does",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "reboot", .synopsis = "NAME", .summary = "Reboot a domain",
	  .min_pos = 1, .max_pos = 1, .run = cmd_change },
	{ .name = "events", .synopsis = "[NAME]",
	  .summary = "Print domain events as they happen, until interrupted",
	  .details = "One line per event: time, domain, event, data (JSON).  A line with the\n"
		     "event events.dropped says how many events corrald had to drop for us.\n"
		     "With --format json, one JSON object per line.  SIGINT or SIGTERM ends\n"
		     "the stream with exit code 0.\n",
	  .max_pos = 1, .run = cmd_events },
	{ .name = "console", .synopsis = "NAME [--read-only] [--no-history | --history]",
	  .summary = "Attach to a domain's serial console",
	  .details = "Shows the last 64 KiB of the console's output, then live output, and\n"
		     "sends what you type.  Ctrl-] detaches (the guest goes on).  Several\n"
		     "viewers may attach at once; a slow one loses output (it is told how\n"
		     "much) and never slows the guest.  On the read-only socket, or with\n"
		     "--read-only, nothing is sent.  With input from a pipe, the input ends\n"
		     "when the pipe does and the view goes on until the console closes or\n"
		     "SIGINT.  The console's log: STATE_DIR/logs/NAME.console.log (this\n"
		     "start) and NAME.console.log.1 (the one before).\n",
	  .opts = console_opts, .min_pos = 1, .max_pos = 1, .run = cmd_console },
	{ .name = "qmp", .synopsis = "NAME 'QMP-JSON'",
	  .summary = "Send a QMP command to a domain's QEMU",
	  .details = "Example: corral qmp vm1 '{\"execute\":\"query-status\"}'\n"
		     "Prints QEMU's return value as JSON.\n",
	  .min_pos = 2, .max_pos = 2, .run = cmd_qmp },
	{ .name = "attach", .synopsis = "NAME --qmp-socket PATH [--pid N]",
	  .summary = "Adopt a QEMU that is already running", .opts = attach_opts,
	  .min_pos = 1, .max_pos = 1, .run = cmd_attach },
	{ .name = "attach-disk",
	  .synopsis = "NAME PATH [--target vdX] [--ro] [--format raw|qcow2] [--persistent]",
	  .summary = "Plug a disk into a running domain",
	  .details = "corrald opens PATH with your rights and hands QEMU the open file; the\n"
		     "guest sees a new virtio disk.  `corral info` lists the disks the\n"
		     "guest has (live.disks) by target.  With --persistent the disk is also\n"
		     "added to the definition for the next start (there disks are named by\n"
		     "their order: vda, vdb, ...); a shut-off domain changes only there.\n"
		     "Put an output --format before the command: after it, --format is the\n"
		     "image's.\n",
	  .opts = attach_disk_opts, .min_pos = 2, .max_pos = 2, .run = cmd_attach_disk },
	{ .name = "detach-disk", .synopsis = "NAME TARGET [--persistent]",
	  .summary = "Unplug a disk from a running domain",
	  .details = "Asks the guest to let go of the disk and waits until QEMU says it has\n"
		     "(within --timeout).  A guest that does not let go keeps the disk: the\n"
		     "command fails with a timeout and the disk stays listed; should the\n"
		     "guest let go later, it goes then.\n",
	  .opts = detach_opts, .min_pos = 2, .max_pos = 2, .run = cmd_detach_disk },
	{ .name = "attach-nic",
	  .synopsis = "NAME [user[,hostfwd=RULE]... | bridge=BR] [--mac MAC] [--persistent]",
	  .summary = "Plug a virtio NIC into a running domain",
	  .details = "user (the default): QEMU's user networking, with port forwards such as\n"
		     "hostfwd=tcp:127.0.0.1:2222-:22.  bridge=BR: a tap device corrald makes\n"
		     "on bridge BR (one corrald allows: --allow-bridge) and hands QEMU.\n",
	  .opts = attach_nic_opts, .min_pos = 1, .max_pos = 2, .run = cmd_attach_nic },
	{ .name = "detach-nic", .synopsis = "NAME MAC [--persistent]",
	  .summary = "Unplug a NIC from a running domain (like detach-disk)",
	  .opts = detach_opts, .min_pos = 2, .max_pos = 2, .run = cmd_detach_nic },
	{ .name = "save", .synopsis = "NAME FILE",
	  .summary = "Save a running domain's state to FILE and stop it",
	  .details = "corrald creates FILE with your rights (replacing it) and QEMU writes the\n"
		     "guest's state into it; progress shows while it runs.  Then the domain\n"
		     "is shut off (reason saved).  If the save fails (the file system fills,\n"
		     "--timeout passes), the partial file is removed and the guest runs on.\n"
		     "Devices plugged in since the start must be made part of the definition\n"
		     "and the domain restarted first.\n",
	  .min_pos = 2, .max_pos = 2, .run = cmd_save_restore },
	{ .name = "restore", .synopsis = "NAME FILE",
	  .summary = "Start a shut-off domain from a state that save wrote",
	  .details = "The guest runs on where it was saved.  FILE must hold this domain's\n"
		     "state, and its definition must not have changed since the save.\n",
	  .min_pos = 2, .max_pos = 2, .run = cmd_save_restore },
	{ .name = "daemon-info", .synopsis = "", .summary = "Show corrald's version, uptime and load",
	  .run = cmd_daemon_info },
	{ .name = "help", .synopsis = "[COMMAND]", .summary = "Show help for corral or a command",
	  .max_pos = 1, .run = cmd_help },
	{ .name = "__complete-domains", .synopsis = "",
	  .summary = "Print the domain names, for shell completion",
	  .run = cmd_complete_domains, .hidden = true },
	{ 0 },
};

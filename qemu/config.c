/* SPDX-License-Identifier: MIT */
/*
 * qemu/config: parse and check a domain config.  See config.h for the
 * fields and their rules.
 *
 * Every parser below gets a value that is present and not null, checks
 * it completely and only then stores it, so that a config that exists is
 * a config that passed every rule.  Strings are copied: the config does
 * not keep the caller's json_t alive.
 */
#include "qemu/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/names.h"
#include "common/util.h"
#include "qemu/qemu-internal.h"

#define DEFAULT_MACHINE  "pc"
#define DEFAULT_ACCEL    "auto"
#define DEFAULT_EMULATOR "qemu-system-x86_64"
#define DEFAULT_REBOOT   "reset"
#define DEFAULT_FIRMWARE "bios"

/* Room for "disks[15].readonly" and the like. */
#define FIELD_LEN 32

struct qemu_disk {
	char *path;
	bool readonly;
	const char *format;     /* static: "raw" or "qcow2"; NULL: not declared yet */
};

struct qemu_nic {
	const char *type;       /* static: "user" or "bridge" */
	bool has_mac;
	char mac[QEMU_MAC_LEN + 1];
	char *bridge;           /* bridge: the host bridge's name */
	size_t n_fwd;
	char **fwd;                     /* user: port forwards, as QEMU takes them */
};

struct qemu_config {
	char *name;
	bool has_uuid;
	char uuid[QEMU_UUID_LEN + 1];
	uint64_t memory_mib;
	unsigned int vcpus;
	char *machine;
	const char *accel;      /* static: "auto", "kvm" or "tcg" */
	char *emulator;
	char *kernel;           /* NULL, or an absolute path */
	char *initrd;           /* NULL, or an absolute path; only with kernel */
	char *cmdline;          /* NULL, or a string; only with kernel */
	/* Arrays of just what the config has: one is kept per domain. */
	size_t n_disks;
	struct qemu_disk *disks;
	const char *reboot;     /* static: "reset" or "acpi" */
	bool has_limits;
	uint64_t limit_memory_mib;      /* 0: the default */
	unsigned int cpu_weight;        /* 0: the default */
	bool has_stats_interval;        /* stats_interval_ms given; else the daemon's */
	uint32_t stats_interval_ms;
	unsigned int cpu_max_pct;       /* 0: no cap */
	size_t n_nics;
	struct qemu_nic *nics;
	const char *firmware;   /* static: "bios" or "uefi" */
	char *cdrom;            /* NULL, or an absolute path */
	size_t n_boot;
	const char *boot[3];    /* static: "disk", "cdrom", "network"; each once */
};

/* ---- messages ----------------------------------------------------------- */

/* A JSON value as the user wrote it, for "got ..." (bounded, escaped). */
static void describe(const json_t *v, char *buf, size_t len)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		qemu__quote(json_string_value(v), json_string_length(v), buf, len);
		break;
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		/* Keep the ".0": "expected an integer, got 512" would puzzle. */
		snprintf(buf, len, "%.15g", json_real_value(v));
		if (!strpbrk(buf, ".e"))
			strncat(buf, ".0", len - strlen(buf) - 1);
		break;
	case JSON_TRUE:
		snprintf(buf, len, "true");
		break;
	case JSON_FALSE:
		snprintf(buf, len, "false");
		break;
	case JSON_NULL:
		snprintf(buf, len, "null");
		break;
	case JSON_ARRAY:
		snprintf(buf, len, "an array");
		break;
	case JSON_OBJECT:
		snprintf(buf, len, "an object");
		break;
	}
}

/* "field 'F': REASON[, got VALUE]", and -EINVAL.  got may be NULL. */
static int bad(char *err, size_t errlen, const char *field, const json_t *got,
	       const char *reason)
{
	char desc[QEMU__QUOTE_MAX + 16];

	if (!got) {
		qemu__seterr(err, errlen, "field '%s': %s", field, reason);
		return -EINVAL;
	}
	describe(got, desc, sizeof(desc));
	qemu__seterr(err, errlen, "field '%s': %s, got %s", field, reason, desc);
	return -EINVAL;
}

static int oom(char *err, size_t errlen)
{
	qemu__seterr(err, errlen, "out of memory");
	return -ENOMEM;
}

/* "unknown field 'PREFIXKEY'"; a key unfit to print is quoted instead. */
static int unknown(char *err, size_t errlen, const char *prefix, const char *key)
{
	char q[QEMU__QUOTE_MAX + 16];
	size_t n = strlen(key);

	if (n <= QEMU__QUOTE_MAX && !qemu__has_ctl(key) && !strchr(key, '\'')) {
		qemu__seterr(err, errlen, "unknown field '%s%s'", prefix, key);
	} else {
		qemu__quote(key, n, q, sizeof(q));
		qemu__seterr(err, errlen, "unknown field %s%s", prefix, q);
	}
	return -EINVAL;
}

/* ---- value checks --------------------------------------------------------- */

/*
 * v must be a string free of control characters (NUL included: jansson
 * allows "\u0000", and C would silently cut the string there).  On success
 * *ret borrows it.
 */
static int get_string(const char *field, const json_t *v, const char **ret, char *err,
		      size_t errlen)
{
	const char *s = NULL;

	if (!json_is_string(v))
		return bad(err, errlen, field, v, "expected a string");
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || qemu__has_ctl(s))
		return bad(err, errlen, field, v, "must not contain control characters");
	*ret = s;
	return 0;
}

/* A string that is one of words[] (NULL-terminated); *ret is the static word. */
static int get_word(const char *field, const json_t *v, const char *const words[],
		    const char *reason, const char **ret, char *err, size_t errlen)
{
	const char *s = NULL;
	size_t i;

	if (!json_is_string(v))
		return bad(err, errlen, field, v, reason);
	s = json_string_value(v);
	for (i = 0; words[i]; i++) {
		if (strlen(s) == json_string_length(v) && strcmp(s, words[i]) == 0) {
			*ret = words[i];
			return 0;
		}
	}
	return bad(err, errlen, field, v, reason);
}

/* An absolute path; *ret is a copy. */
static int get_path(const char *field, const json_t *v, char **ret, char *err, size_t errlen)
{
	const char *s = NULL, *problem;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	problem = qemu__path_problem(s);
	if (problem)
		return bad(err, errlen, field, v, problem);
	*ret = strdup(s);
	return *ret ? 0 : oom(err, errlen);
}

/*
 * "512", "512M", "512MiB", "2G", "1TiB" (suffix in any case; binary
 * units) to MiB.  0, -EINVAL for anything else, -ERANGE when it does not
 * fit in 64 bits.  No sign, space or fraction: a size is a count.
 */
static int size_parse_mib(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t mul;
	} units[] = {
		{ "", 1 },      { "m", 1 },             { "mib", 1 },
		{ "g", 1024 },  { "gib", 1024 },        { "t", 1024 * 1024 },
		{ "tib", 1024 * 1024 },
	};
	uint64_t n = 0;
	size_t i;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned int d = (unsigned int)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -ERANGE;
		n = n * 10 + d;
	}
	for (i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(s, units[i].suffix) != 0)
			continue;
		if (n > UINT64_MAX / units[i].mul)
			return -ERANGE;
		*ret = n * units[i].mul;
		return 0;
	}
	return -EINVAL;
}

/* ---- fields --------------------------------------------------------------- */

static int keys_known(const json_t *v, const char *prefix, const char *shown, char *err,
		      size_t errlen);
static bool in_range(const char *key, long long n);

static int parse_name(struct qemu_config *c, const char *field, const json_t *v, char *err,
		      size_t errlen)
{
	const char *s = NULL;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	if (!corral_name_valid(s))
		return bad(err, errlen, field, v, "must match " CORRAL_NAME_RULE);
	c->name = strdup(s);
	return c->name ? 0 : oom(err, errlen);
}

static int parse_uuid(struct qemu_config *c, const char *field, const json_t *v, char *err,
		      size_t errlen)
{
	const char *s = NULL;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	if (qemu_config_set_uuid(c, s) < 0)
		return bad(err, errlen, field, v, "must be a UUID (8-4-4-4-12 hex digits)");
	return 0;
}

static int parse_memory(struct qemu_config *c, const char *field, const json_t *v, char *err,
			size_t errlen)
{
	static const char type_reason[] = "expected an integer (MiB) or a string like \"512M\"";
	uint64_t mib;

	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);

		mib = n < 0 ? 0 : (uint64_t)n;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		int r;

		if (strlen(s) != json_string_length(v))
			return bad(err, errlen, field, v, type_reason);
		r = size_parse_mib(s, &mib);
		if (r == -ERANGE)
			mib = UINT64_MAX;
		else if (r < 0)
			return bad(err, errlen, field, v, type_reason);
	} else {
		return bad(err, errlen, field, v, type_reason);
	}
	if (mib > (uint64_t)LLONG_MAX || !in_range("memory", (long long)mib))
		return bad(err, errlen, field, v, "must be between 16 MiB and 1 TiB");
	c->memory_mib = mib;
	return 0;
}

static int parse_vcpus(struct qemu_config *c, const char *field, const json_t *v, char *err,
		       size_t errlen)
{
	json_int_t n;

	if (!json_is_integer(v))
		return bad(err, errlen, field, v, "expected an integer");
	n = json_integer_value(v);
	if (!in_range("vcpus", n))
		return bad(err, errlen, field, v, "must be between 1 and 256");
	c->vcpus = (unsigned int)n;
	return 0;
}

static bool machine_char_ok(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-';
}

/*
 * The charset keeps ',' out (no "pc,accel=xen" smuggled into -machine)
 * and '=' (no "type=..." key).  "help" is refused because QEMU would list
 * the machine types and exit 0, which the daemon would read as a clean
 * shutdown.
 */
static int parse_machine(struct qemu_config *c, const char *field, const json_t *v, char *err,
			 size_t errlen)
{
	const char *s = NULL;
	size_t i;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	for (i = 0; s[i]; i++)
		if (!machine_char_ok(s[i]))
			break;
	if (i == 0 || s[i] || i > QEMU_MACHINE_MAX)
		return bad(err, errlen, field, v, "must be 1 to 64 characters from [A-Za-z0-9_.-]");
	if (strcmp(s, "help") == 0)
		return bad(err, errlen, field, v, "must name a machine type");
	free(c->machine);
	c->machine = strdup(s);
	return c->machine ? 0 : oom(err, errlen);
}

static int parse_accel(struct qemu_config *c, const char *field, const json_t *v, char *err,
		       size_t errlen)
{
	static const char *const words[] = { "auto", "kvm", "tcg", NULL };

	return get_word(field, v, words, "must be \"auto\", \"kvm\" or \"tcg\"", &c->accel, err,
			errlen);
}

static bool command_char_ok(char ch)
{
	return machine_char_ok(ch) || ch == '+';
}

/*
 * An absolute path, or a bare name that posix_spawnp() looks up in the
 * daemon's PATH.  A relative path with a '/' is refused: it would depend
 * on the daemon's working directory.
 */
static int parse_emulator(struct qemu_config *c, const char *field, const json_t *v, char *err,
			  size_t errlen)
{
	static const char reason[] = "must be an absolute path or a command name";
	const char *s = NULL;
	char *copy;
	size_t i;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	if (s[0] == '/') {
		r = get_path(field, v, &copy, err, errlen);
		if (r < 0)
			return r;
	} else {
		for (i = 0; s[i]; i++)
			if (!command_char_ok(s[i]))
				break;
		/* A first letter or digit: no "-x", ".", "..", ".hidden". */
		if (s[i] || i == 0 || i > 255 || !machine_char_ok(s[0]) || s[0] == '-' ||
		    s[0] == '.' || s[0] == '_')
			return bad(err, errlen, field, v, reason);
		copy = strdup(s);
		if (!copy)
			return oom(err, errlen);
	}
	free(c->emulator);
	c->emulator = copy;
	return 0;
}

static int parse_kernel(struct qemu_config *c, const char *field, const json_t *v, char *err,
			size_t errlen)
{
	return get_path(field, v, &c->kernel, err, errlen);
}

static int parse_initrd(struct qemu_config *c, const char *field, const json_t *v, char *err,
			size_t errlen)
{
	return get_path(field, v, &c->initrd, err, errlen);
}

/*
 * The kernel command line goes to QEMU as one argv element after -append,
 * which QEMU stores as is (it is not a key=value list), so commas and
 * spaces are fine; control characters are not.
 */
static int parse_cmdline(struct qemu_config *c, const char *field, const json_t *v, char *err,
			 size_t errlen)
{
	const char *s = NULL;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	if (strlen(s) >= QEMU_CMDLINE_MAX)
		return bad(err, errlen, field, v, "must be shorter than 4096 bytes");
	c->cmdline = strdup(s);
	return c->cmdline ? 0 : oom(err, errlen);
}

static int parse_disk_object(struct qemu_disk *d, const char *field, const json_t *v, char *err,
			     size_t errlen)
{
	static const char *const formats[] = { "raw", "qcow2", NULL };
	char sub[FIELD_LEN + 16], prefix[FIELD_LEN + 1];
	json_t *m;
	int r;

	snprintf(prefix, sizeof(prefix), "%s.", field);
	r = keys_known(v, "disks[].", prefix, err, errlen);
	if (r < 0)
		return r;

	snprintf(sub, sizeof(sub), "%s.path", field);
	m = json_object_get(v, "path");
	if (!m || json_is_null(m))
		return bad(err, errlen, sub, NULL, "required");
	r = get_path(sub, m, &d->path, err, errlen);
	if (r < 0)
		return r;

	snprintf(sub, sizeof(sub), "%s.readonly", field);
	m = json_object_get(v, "readonly");
	if (m && !json_is_null(m)) {
		if (!json_is_boolean(m))
			return bad(err, errlen, sub, m, "expected true or false");
		d->readonly = json_is_true(m);
	}

	snprintf(sub, sizeof(sub), "%s.format", field);
	m = json_object_get(v, "format");
	if (m && !json_is_null(m))
		return get_word(sub, m, formats, "must be \"raw\" or \"qcow2\"", &d->format, err,
				errlen);
	return 0;
}

/* The CLI's "--disk PATH[,ro]": a raw image, read-only with ",ro". */
static int parse_disk_string(struct qemu_disk *d, const char *field, const json_t *v, char *err,
			     size_t errlen)
{
	const char *s = NULL, *problem;
	size_t n;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	n = strlen(s);
	if (n > 3 && strcmp(s + n - 3, ",ro") == 0) {
		d->readonly = true;
		n -= 3;
	}
	d->path = strndup(s, n);
	if (!d->path)
		return oom(err, errlen);
	problem = qemu__path_problem(d->path);
	if (problem)
		return bad(err, errlen, field, v, problem);
	return 0;
}

static int parse_disks(struct qemu_config *c, const char *field, const json_t *v, char *err,
		       size_t errlen)
{
	char sub[FIELD_LEN];
	size_t i, j;
	int r;

	if (!json_is_array(v))
		return bad(err, errlen, field, v, "expected an array");
	if (!in_range("disks", (long long)json_array_size(v))) {
		qemu__seterr(err, errlen, "field '%s': at most %u disks, got %zu", field,
			     QEMU_DISKS_MAX, json_array_size(v));
		return -EINVAL;
	}
	if (json_array_size(v)) {
		c->disks = calloc(json_array_size(v), sizeof(*c->disks));
		if (!c->disks)
			return oom(err, errlen);
	}
	for (i = 0; i < json_array_size(v); i++) {
		struct qemu_disk *d = &c->disks[c->n_disks];
		const json_t *e = json_array_get(v, i);

		/* Counted first so that qemu_config_free() sees a half-parsed disk. */
		c->n_disks++;
		snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
		if (json_is_object(e))
			r = parse_disk_object(d, sub, e, err, errlen);
		else if (json_is_string(e))
			r = parse_disk_string(d, sub, e, err, errlen);
		else
			r = bad(err, errlen, sub, e,
				"expected an object or a string like \"/path/disk.img,ro\"");
		if (r < 0)
			return r;
		/* Two devices on one image corrupt it (or fail on QEMU's lock). */
		for (j = 0; j < i; j++) {
			if (strcmp(c->disks[j].path, d->path) == 0) {
				qemu__seterr(err, errlen, "field '%s': same image as %s[%zu]", sub,
					     field, j);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static int parse_stats_interval(struct qemu_config *c, const char *field, const json_t *v,
				char *err, size_t errlen)
{
	if (!json_is_integer(v))
		return bad(err, errlen, field, v, "expected an integer");
	if (!in_range("stats_interval_ms", json_integer_value(v)) ||
	    (json_integer_value(v) > 0 && json_integer_value(v) < 100))
		return bad(err, errlen, field, v, "must be 0 (never) or 100 to 3600000");
	c->has_stats_interval = true;
	c->stats_interval_ms = (uint32_t)json_integer_value(v);
	return 0;
}

static int parse_reboot(struct qemu_config *c, const char *field, const json_t *v, char *err,
			size_t errlen)
{
	static const char *const words[] = { "reset", "acpi", NULL };

	return get_word(field, v, words, "must be \"reset\" or \"acpi\"", &c->reboot, err, errlen);
}

/*
 * "limits": {"memory": size, "cpu_weight": 1..10000, "cpus": a number of
 * CPUs, fractions allowed}.  What QEMU's cgroup enforces.
 */
static int parse_limits(struct qemu_config *c, const char *field, const json_t *v, char *err,
			size_t errlen)
{
	static const char size_reason[] = "expected an integer (MiB) or a string like \"1G\"";
	json_t *m;

	if (!json_is_object(v))
		return bad(err, errlen, field, v, "expected an object");
	if (keys_known(v, "limits.", "limits.", err, errlen) < 0)
		return -EINVAL;
	c->has_limits = true;
	m = json_object_get(v, "memory");
	if (m && !json_is_null(m)) {
		uint64_t mib = 0;

		if (json_is_integer(m)) {
			mib = json_integer_value(m) < 0 ? 0 : (uint64_t)json_integer_value(m);
		} else if (json_is_string(m) && strlen(json_string_value(m)) ==
			   json_string_length(m)) {
			int r = size_parse_mib(json_string_value(m), &mib);

			if (r == -ERANGE)
				mib = UINT64_MAX;
			else if (r < 0)
				return bad(err, errlen, "limits.memory", m, size_reason);
		} else {
			return bad(err, errlen, "limits.memory", m, size_reason);
		}
		if (mib > (uint64_t)LLONG_MAX || !in_range("limits.memory", (long long)mib))
			return bad(err, errlen, "limits.memory", m, "must be between 32 MiB and 2 TiB");
		c->limit_memory_mib = mib;
	}
	m = json_object_get(v, "cpu_weight");
	if (m && !json_is_null(m)) {
		if (!json_is_integer(m) || !in_range("limits.cpu_weight", json_integer_value(m)))
			return bad(err, errlen, "limits.cpu_weight", m,
				   "must be an integer from 1 to 10000");
		c->cpu_weight = (unsigned int)json_integer_value(m);
	}
	m = json_object_get(v, "cpus");
	if (m && !json_is_null(m)) {
		double n = json_number_value(m);

		if (!json_is_number(m) || n < 0.01 || n > QEMU_VCPUS_MAX)
			return bad(err, errlen, "limits.cpus", m,
				   "must be a number of CPUs from 0.01 to 256");
		c->cpu_max_pct = (unsigned int)(n * 100 + 0.5);
	}
	return 0;
}

/* ---- network, firmware, install media ---------------------------------------- */

/* A hex digit's value, or -1. */
static int hex_val(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * "52:54:00:12:34:56": six octets, either case (stored in lower case); a
 * unicast address (the group bit of the first octet clear), not all zero.
 */
bool qemu_mac_valid(const char *s)
{
	bool zero = true;

	if (strlen(s) != QEMU_MAC_LEN)
		return false;
	for (size_t i = 0; i < QEMU_MAC_LEN; i++) {
		if (i % 3 == 2 ? s[i] != ':' : hex_val(s[i]) < 0)
			return false;
		if (i % 3 != 2 && s[i] != '0')
			zero = false;
	}
	/* The second hex digit of the first octet holds the group bit. */
	return !zero && (hex_val(s[1]) & 1) == 0;
}

static void mac_store(struct qemu_nic *n, const char *mac)
{
	for (size_t i = 0; i < QEMU_MAC_LEN; i++)
		n->mac[i] = mac[i] >= 'A' && mac[i] <= 'F' ? (char)(mac[i] - 'A' + 'a') : mac[i];
	n->mac[QEMU_MAC_LEN] = '\0';
	n->has_mac = true;
}

/* A Linux interface name: 1 to 15 of [A-Za-z0-9_.-], not "." or "..". */
static bool ifname_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!machine_char_ok(s[i]))
			return false;
	return i >= 1 && i <= 15 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* "ADDR" (IPv4 dotted quad) or empty, ending at the first ':'; *p moves past it. */
static bool fwd_addr(const char **p)
{
	const char *colon = strchr(*p, ':');
	char buf[INET_ADDRSTRLEN];
	struct in_addr a;
	size_t n;

	if (!colon)
		return false;
	n = (size_t)(colon - *p);
	if (n) {
		if (n >= sizeof(buf))
			return false;
		memcpy(buf, *p, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET, buf, &a) != 1)
			return false;
	}
	*p = colon + 1;
	return true;
}

/* A port 1..65535 in decimal, ending at end (a char, or '\0'). */
static bool fwd_port(const char **p, char end)
{
	unsigned long v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9' || (*s == '0'))
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return false;
	}
	if (*s != end)
		return false;
	*p = end ? s + 1 : s;
	return true;
}

/*
 * A user-mode port forward as QEMU's hostfwd takes it:
 * "tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT", addresses IPv4.
 */
bool qemu_hostfwd_valid(const char *s)
{
	const char *p = s;

	if (!strncmp(p, "tcp:", 4) || !strncmp(p, "udp:", 4))
		p += 4;
	else
		return false;
	return fwd_addr(&p) && fwd_port(&p, '-') && fwd_addr(&p) && fwd_port(&p, '\0');
}

static int nic_add_fwd(struct qemu_nic *n, const char *field, const json_t *got, const char *s,
		       char *err, size_t errlen)
{
	char **more;

	if (n->n_fwd == QEMU_HOSTFWD_MAX)
		return bad(err, errlen, field, NULL, "at most 16 port forwards per NIC");
	more = realloc(n->fwd, (n->n_fwd + 1) * sizeof(*n->fwd));
	if (!more)
		return oom(err, errlen);
	n->fwd = more;
	if (!qemu_hostfwd_valid(s))
		return bad(err, errlen, field, got, "must look like \"tcp:127.0.0.1:2222-:22\" "
			   "(tcp or udp, IPv4 addresses optional, ports 1-65535)");
	n->fwd[n->n_fwd] = strdup(s);
	if (!n->fwd[n->n_fwd])
		return oom(err, errlen);
	n->n_fwd++;
	return 0;
}

static int nic_set_bridge(struct qemu_nic *n, const char *field, const json_t *got,
			  const char *s, char *err, size_t errlen)
{
	if (!ifname_ok(s))
		return bad(err, errlen, field, got, "must be an interface name: 1 to 15 of "
			   "[A-Za-z0-9_.-]");
	n->bridge = strdup(s);
	return n->bridge ? 0 : oom(err, errlen);
}

static int nic_check(const struct qemu_nic *n, const char *field, char *err, size_t errlen)
{
	if (!n->type)
		return bad(err, errlen, field, NULL, "needs a type: \"user\" or \"bridge\"");
	if (!strcmp(n->type, "bridge") && !n->bridge)
		return bad(err, errlen, field, NULL, "type \"bridge\" needs 'bridge' (its name)");
	if (!strcmp(n->type, "user") && n->bridge)
		return bad(err, errlen, field, NULL, "'bridge' is for type \"bridge\" only");
	if (!strcmp(n->type, "bridge") && n->n_fwd)
		return bad(err, errlen, field, NULL, "'hostfwd' is for type \"user\" only");
	return 0;
}

static int parse_nic_object(struct qemu_nic *n, const char *field, const json_t *v, char *err,
			    size_t errlen)
{
	static const char *const types[] = { "user", "bridge", NULL };
	char sub[FIELD_LEN + 48], prefix[FIELD_LEN + 1];
	const char *s = NULL;
	json_t *m;
	int r;

	snprintf(prefix, sizeof(prefix), "%s.", field);
	r = keys_known(v, "nics[].", prefix, err, errlen);
	if (r < 0)
		return r;
	snprintf(sub, sizeof(sub), "%s.type", field);
	m = json_object_get(v, "type");
	if (!m || json_is_null(m))
		return bad(err, errlen, sub, NULL, "required (\"user\" or \"bridge\")");
	r = get_word(sub, m, types, "must be \"user\" or \"bridge\"", &n->type, err, errlen);
	if (r < 0)
		return r;
	snprintf(sub, sizeof(sub), "%s.mac", field);
	m = json_object_get(v, "mac");
	if (m && !json_is_null(m)) {
		r = get_string(sub, m, &s, err, errlen);
		if (r < 0)
			return r;
		if (!qemu_mac_valid(s))
			return bad(err, errlen, sub, m, "must be a unicast MAC address like "
				   "\"52:54:00:12:34:56\"");
		mac_store(n, s);
	}
	snprintf(sub, sizeof(sub), "%s.bridge", field);
	m = json_object_get(v, "bridge");
	if (m && !json_is_null(m)) {
		r = get_string(sub, m, &s, err, errlen);
		if (r == 0)
			r = nic_set_bridge(n, sub, m, s, err, errlen);
		if (r < 0)
			return r;
	}
	m = json_object_get(v, "hostfwd");
	if (m && !json_is_null(m)) {
		if (!json_is_array(m)) {
			snprintf(sub, sizeof(sub), "%s.hostfwd", field);
			return bad(err, errlen, sub, m, "expected an array of strings");
		}
		if (json_array_size(m) > QEMU_HOSTFWD_MAX) {
			snprintf(sub, sizeof(sub), "%s.hostfwd", field);
			return bad(err, errlen, sub, NULL, "at most 16 port forwards per NIC");
		}
		for (size_t i = 0; i < json_array_size(m); i++) {
			json_t *e = json_array_get(m, i);

			snprintf(sub, sizeof(sub), "%s.hostfwd[%zu]", field, i);
			r = get_string(sub, e, &s, err, errlen);
			if (r == 0)
				r = nic_add_fwd(n, sub, e, s, err, errlen);
			if (r < 0)
				return r;
		}
	}
	return nic_check(n, field, err, errlen);
}

/*
 * The CLI's "--nic": "user[,hostfwd=RULE]...[,mac=MAC]" or
 * "bridge=NAME[,mac=MAC]".
 */
static int parse_nic_string(struct qemu_nic *n, const char *field, const json_t *v, char *err,
			    size_t errlen)
{
	const char *s = NULL;
	char *copy, *tok, *save = NULL;
	int r;

	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	copy = strdup(s);
	if (!copy)
		return oom(err, errlen);
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
		if (tok == copy && !strcmp(tok, "user")) {
			n->type = "user";
		} else if (tok == copy && !strncmp(tok, "bridge=", 7)) {
			n->type = "bridge";
			r = nic_set_bridge(n, field, v, tok + 7, err, errlen);
		} else if (tok == copy) {
			r = bad(err, errlen, field, v, "must start with \"user\" or \"bridge=NAME\"");
		} else if (!strncmp(tok, "hostfwd=", 8)) {
			r = nic_add_fwd(n, field, v, tok + 8, err, errlen);
		} else if (!strncmp(tok, "mac=", 4)) {
			if (qemu_mac_valid(tok + 4))
				mac_store(n, tok + 4);
			else
				r = bad(err, errlen, field, v, "mac= must be a unicast MAC address "
					"like 52:54:00:12:34:56");
		} else {
			r = bad(err, errlen, field, v, "options are hostfwd=RULE and mac=MAC");
		}
	}
	if (!n->type && r == 0)
		r = bad(err, errlen, field, v, "must start with \"user\" or \"bridge=NAME\"");
	free(copy);
	return r < 0 ? r : nic_check(n, field, err, errlen);
}

static int parse_nics(struct qemu_config *c, const char *field, const json_t *v, char *err,
		      size_t errlen)
{
	char sub[FIELD_LEN];
	int r;

	if (!json_is_array(v))
		return bad(err, errlen, field, v, "expected an array");
	if (!in_range("nics", (long long)json_array_size(v))) {
		qemu__seterr(err, errlen, "field '%s': at most %u NICs, got %zu", field,
			     QEMU_NICS_MAX, json_array_size(v));
		return -EINVAL;
	}
	if (json_array_size(v)) {
		c->nics = calloc(json_array_size(v), sizeof(*c->nics));
		if (!c->nics)
			return oom(err, errlen);
	}
	for (size_t i = 0; i < json_array_size(v); i++) {
		struct qemu_nic *n = &c->nics[c->n_nics];
		const json_t *e = json_array_get(v, i);

		c->n_nics++;
		snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
		if (json_is_object(e))
			r = parse_nic_object(n, sub, e, err, errlen);
		else if (json_is_string(e))
			r = parse_nic_string(n, sub, e, err, errlen);
		else
			r = bad(err, errlen, sub, e, "expected an object or a string like "
				"\"user,hostfwd=tcp:127.0.0.1:2222-:22\"");
		if (r < 0)
			return r;
		for (size_t j = 0; j < i && n->has_mac; j++) {
			if (c->nics[j].has_mac && !strcmp(c->nics[j].mac, n->mac)) {
				qemu__seterr(err, errlen, "field '%s': same MAC address as "
					     "%s[%zu]", sub, field, j);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static int parse_firmware(struct qemu_config *c, const char *field, const json_t *v, char *err,
			  size_t errlen)
{
	static const char *const words[] = { "bios", "uefi", NULL };

	return get_word(field, v, words, "must be \"bios\" or \"uefi\"", &c->firmware, err,
			errlen);
}

static int parse_cdrom(struct qemu_config *c, const char *field, const json_t *v, char *err,
		       size_t errlen)
{
	return get_path(field, v, &c->cdrom, err, errlen);
}

static int boot_add(struct qemu_config *c, const char *field, const json_t *got, const char *s,
		    size_t n, char *err, size_t errlen)
{
	static const char *const words[] = { "disk", "cdrom", "network" };

	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		if (strlen(words[i]) != n || strncmp(s, words[i], n) != 0)
			continue;
		for (size_t j = 0; j < c->n_boot; j++)
			if (c->boot[j] == words[i])
				return bad(err, errlen, field, got, "names a device twice");
		c->boot[c->n_boot++] = words[i];
		return 0;
	}
	return bad(err, errlen, field, got, "must list \"disk\", \"cdrom\" and \"network\", "
		   "each at most once");
}

/* ["cdrom", "disk"], or the CLI's "cdrom,disk". */
static int parse_boot(struct qemu_config *c, const char *field, const json_t *v, char *err,
		      size_t errlen)
{
	const char *s = NULL;
	int r;

	if (json_is_array(v)) {
		if (json_array_size(v) == 0 || json_array_size(v) > ARRAY_SIZE(c->boot))
			return bad(err, errlen, field, v, "must list 1 to 3 devices");
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *e = json_array_get(v, i);

			if (!json_is_string(e))
				return bad(err, errlen, field, v, "expected strings");
			r = boot_add(c, field, v, json_string_value(e), json_string_length(e), err,
				     errlen);
			if (r < 0)
				return r;
		}
		return 0;
	}
	r = get_string(field, v, &s, err, errlen);
	if (r < 0)
		return r;
	do {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);

		if (c->n_boot == ARRAY_SIZE(c->boot))
			return bad(err, errlen, field, v, "must list 1 to 3 devices");
		r = boot_add(c, field, v, s, n, err, errlen);
		if (r < 0)
			return r;
		s = comma ? comma + 1 : NULL;
	} while (s);
	return 0;
}

typedef int field_parse_fn(struct qemu_config *c, const char *field, const json_t *v, char *err,
			   size_t errlen);

#define RANGE(lo, hi, u) .has_range = true, .min = (lo), .max = (hi), .unit = (u)
#define F(k, t, d, r, e, ...) { .key = (k), .type = (t), .def = (d), .rule = (r), \
				.example = (e), __VA_ARGS__ }

/*
 * The config's fields: what the validator accepts (the keys of the config
 * and of its objects, which are required, the ranges the parsers check)
 * and their documentation (docs/API.md, api.info) in one table, so that
 * the two cannot drift.  Top-level rows have a parser, in the order errors
 * are found in; "disks[].x", "limits.x", "nics[].x" rows are the keys of
 * those objects (their parsers look them up here: a key without a row is
 * an unknown field).
 */
static const struct {
	struct qemu_config_field f;
	field_parse_fn *parse;
} fields[] = {
	{ F("name", "string", NULL, "the domain's name: " CORRAL_NAME_RULE, "\"web1\"",
	    .required = true ), parse_name },
	{ F("uuid", "string", "one is made at define",
	    "8-4-4-4-12 hex digits, stored in lower case; cannot change once defined",
	    "\"6b2e6c4c-3f0a-4c1e-9d55-0e3a1f1e0a01\"" ), parse_uuid },
	{ F("memory", "integer (MiB) or size string", "256",
	    "a string is a count with M/MiB, G/GiB or T/TiB (any case, binary units), e.g. "
	    "\"512M\", \"2G\"", "1024", RANGE(QEMU_MEMORY_MIN_MIB, QEMU_MEMORY_MAX_MIB, "MiB") ), parse_memory },
	{ F("vcpus", "integer", "1", "1 with machine \"none\"", "2",
	    RANGE(1, QEMU_VCPUS_MAX, NULL) ), parse_vcpus },
	{ F("machine", "string", "\"pc\"", "QEMU's machine type: 1 to 64 of [A-Za-z0-9_.-], not "
	    "\"help\"; \"none\" is a QEMU without a board (no disks, NICs, kernel or "
	    "firmware)", "\"q35\"" ), parse_machine },
	{ F("accel", "string", "\"auto\"",
	    "\"auto\" (KVM when QEMU's user can use it, else TCG), \"kvm\" or \"tcg\"",
	    "\"tcg\"" ), parse_accel },
	{ F("emulator", "string", "\"qemu-system-x86_64\"",
	    "an absolute path or a command name, and one of the daemon's allowed emulators",
	    "\"qemu-system-x86_64\"" ), parse_emulator },
	{ F("kernel", "string", "none (boot from firmware)", "absolute path of a kernel to boot "
	    "directly", "\"/srv/vm/vmlinuz\"" ), parse_kernel },
	{ F("initrd", "string", "none", "absolute path; needs `kernel`",
	    "\"/srv/vm/initrd.img\"" ), parse_initrd },
	{ F("cmdline", "string", "none", "the kernel's command line; needs `kernel`; shorter "
	    "than 4096 bytes", "\"console=ttyS0\"" ), parse_cmdline },
	{ F("disks", "array of objects, or of strings \"PATH[,ro]\"", "[]",
	    "each image once; a string is a disk of that path (read-only with \",ro\")",
	    "[{\"path\": \"/srv/vm/web1.qcow2\", \"format\": \"qcow2\"}]",
	    RANGE(0, QEMU_DISKS_MAX, "items") ), parse_disks },
	{ F("disks[].path", "string", NULL, "absolute path of the image", "\"/srv/vm/web1.qcow2\"",
	    .required = true ), NULL },
	{ F("disks[].readonly", "boolean", "false", "attach it read-only", "false" ), NULL },
	{ F("disks[].format", "string", "probed at define", "\"raw\" or \"qcow2\"; when absent "
	    "the daemon reads the image's header at define (with the caller's rights) and records "
	    "what it found", "\"qcow2\"" ), NULL },
	{ F("reboot", "string", "\"reset\"", "how `reboot` is carried out: \"reset\" (a "
	    "hardware reset) or \"acpi\" (the guest powers off, QEMU holds, corral resets it)",
	    "\"reset\"" ), parse_reboot },
	{ F("stats_interval_ms", "integer", "the daemon's `--stats-interval-ms` (5000)",
	    "how often corral reads this domain's statistics while it runs (method `stats`); "
	    "0: never; else at least 100; takes effect at the next start", "10000",
	    RANGE(0, 3600000, "ms") ), parse_stats_interval },
	{ F("limits", "object", "{}", "what QEMU's control group enforces", "{\"cpus\": 1.5}" ),
	  parse_limits },
	{ F("limits.memory", "integer (MiB) or size string", "memory plus a quarter, at least "
	    "plus 256 MiB", "QEMU's own memory included", "\"2G\"",
	    RANGE(32, 2 * (long long)QEMU_MEMORY_MAX_MIB, "MiB") ), NULL },
	{ F("limits.cpu_weight", "integer", "100", "the share of CPU time under contention",
	    "200", RANGE(1, 10000, NULL) ), NULL },
	{ F("limits.cpus", "number", "no cap", "0.01 to 256: at most this many CPUs' time",
	    "1.5" ), NULL },
	{ F("nics", "array of objects, or of strings \"user[,hostfwd=R]...[,mac=M]\" or "
	    "\"bridge=BR[,mac=M]\"", "[]", "MAC addresses unique", "[{\"type\": \"user\", "
	    "\"hostfwd\": [\"tcp:127.0.0.1:2222-:22\"]}]", RANGE(0, QEMU_NICS_MAX, "items") ),
	  parse_nics },
	{ F("nics[].type", "string", NULL, "\"user\" (QEMU's user-mode network) or \"bridge\" "
	    "(a tap on a host bridge the daemon allows)", "\"user\"", .required = true ), NULL },
	{ F("nics[].mac", "string", "made at define (52:54:00:xx:xx:xx)", "a unicast MAC address, "
	    "unique among the NICs", "\"52:54:00:12:34:56\"" ), NULL },
	{ F("nics[].hostfwd", "array of strings", "[]", "user only, at most 16: "
	    "\"tcp:[ADDR]:PORT-[ADDR]:PORT\" or udp, IPv4", "[\"tcp:127.0.0.1:2222-:22\"]" ),
	  NULL },
	{ F("nics[].bridge", "string", NULL, "bridge only (and required there): the host bridge, "
	    "1 to 15 of [A-Za-z0-9_.-]", "\"br0\"" ), NULL },
	{ F("firmware", "string", "\"bios\"", "\"bios\" or \"uefi\" (OVMF, with the domain's "
	    "own variable store)", "\"bios\"" ), parse_firmware },
	{ F("cdrom", "string", "none", "absolute path of an ISO image, attached read-only",
	    "\"/srv/iso/debian.iso\"" ), parse_cdrom },
	{ F("boot", "array of strings, or a string \"cdrom,disk\"", "disks, then the cdrom",
	    "\"disk\", \"cdrom\", \"network\", each at most once and only devices the domain "
	    "has", "[\"cdrom\", \"disk\"]" ), parse_boot },
};

size_t qemu_config_field_count(void)
{
	return ARRAY_SIZE(fields);
}

const struct qemu_config_field *qemu_config_field(size_t i)
{
	BUG_ON(i >= ARRAY_SIZE(fields));
	return &fields[i].f;
}

/* The row of key in the object prefix ("disks[].", "limits.", ...), or NULL. */
static const struct qemu_config_field *field_row(const char *prefix, const char *key)
{
	size_t n = strlen(prefix);

	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		const char *k = fields[i].f.key;

		if (!strncmp(k, prefix, n) && !strcmp(k + n, key))
			return &fields[i].f;
	}
	return NULL;
}

/* Every key of object v has a row under prefix; else "unknown field 'shownKEY'". */
static int keys_known(const json_t *v, const char *prefix, const char *shown, char *err,
		      size_t errlen)
{
	const char *key;
	json_t *m;

	json_object_foreach((json_t *)v, key, m) {
		if (!field_row(prefix, key))
			return unknown(err, errlen, shown, key);
	}
	return 0;
}

/* Is the integer n within the row's range? */
static bool in_range(const char *key, long long n)
{
	const struct qemu_config_field *f = field_row("", key);

	BUG_ON(!f || !f->has_range);
	return n >= f->min && n <= f->max;
}

/* Rules between fields, once each field is fine on its own. */
static int check_combination(const struct qemu_config *c, char *err, size_t errlen)
{
	if (c->initrd && !c->kernel)
		return bad(err, errlen, "initrd", NULL, "needs 'kernel'");
	if (c->cmdline && !c->kernel)
		return bad(err, errlen, "cmdline", NULL, "needs 'kernel'");
	if (strcmp(c->machine, "none") == 0) {
		/* QEMU says so too, but later and in its own words. */
		if (c->vcpus != 1)
			return bad(err, errlen, "vcpus", NULL, "must be 1 with machine 'none'");
		if (c->kernel)
			return bad(err, errlen, "kernel", NULL,
				   "cannot be used with machine 'none'");
		if (c->n_disks)
			return bad(err, errlen, "disks", NULL,
				   "cannot be used with machine 'none' (it has no bus)");
		if (c->n_nics)
			return bad(err, errlen, "nics", NULL,
				   "cannot be used with machine 'none' (it has no bus)");
		if (c->cdrom)
			return bad(err, errlen, "cdrom", NULL,
				   "cannot be used with machine 'none' (it has no bus)");
		if (strcmp(c->firmware, "bios") != 0)
			return bad(err, errlen, "firmware", NULL,
				   "cannot be used with machine 'none' (it runs no firmware)");
	}
	for (size_t i = 0; i < c->n_boot; i++) {
		if ((!strcmp(c->boot[i], "disk") && !c->n_disks) ||
		    (!strcmp(c->boot[i], "cdrom") && !c->cdrom) ||
		    (!strcmp(c->boot[i], "network") && !c->n_nics)) {
			qemu__seterr(err, errlen, "field 'boot': names \"%s\", but the domain has "
				     "no %s", c->boot[i], !strcmp(c->boot[i], "disk") ? "disks" :
				     !strcmp(c->boot[i], "cdrom") ? "cdrom" : "nics");
			return -EINVAL;
		}
	}
	if (c->cdrom) {
		for (size_t i = 0; i < c->n_disks; i++)
			if (!strcmp(c->disks[i].path, c->cdrom))
				return bad(err, errlen, "cdrom", NULL, "is also one of the disks");
	}
	return 0;
}

static int set_defaults(struct qemu_config *c)
{
	c->memory_mib = QEMU_MEMORY_DEFAULT_MIB;
	c->vcpus = 1;
	c->accel = DEFAULT_ACCEL;
	c->reboot = DEFAULT_REBOOT;
	c->firmware = DEFAULT_FIRMWARE;
	c->machine = strdup(DEFAULT_MACHINE);
	c->emulator = strdup(DEFAULT_EMULATOR);
	return c->machine && c->emulator ? 0 : -ENOMEM;
}

int qemu_config_from_json(const json_t *in, struct qemu_config **ret, char *err, size_t errlen)
{
	struct qemu_config *c;
	const char *key;
	json_t *v;
	size_t i;
	int r;

	if (!json_is_object(in)) {
		char desc[QEMU__QUOTE_MAX + 16];

		if (!in)
			snprintf(desc, sizeof(desc), "nothing");
		else
			describe(in, desc, sizeof(desc));
		qemu__seterr(err, errlen, "expected a JSON object, got %s", desc);
		return -EINVAL;
	}

	/* Unknown keys first: a typo ("memroy") must not pass as a default. */
	json_object_foreach((json_t *)in, key, v) {
		for (i = 0; i < ARRAY_SIZE(fields); i++)
			if (fields[i].parse && strcmp(key, fields[i].f.key) == 0)
				break;
		if (i == ARRAY_SIZE(fields))
			return unknown(err, errlen, "", key);
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		return oom(err, errlen);
	r = set_defaults(c);
	if (r < 0) {
		oom(err, errlen);
		goto fail;
	}
	for (i = 0; i < ARRAY_SIZE(fields); i++) {
		if (!fields[i].parse)
			continue;       /* a key of an object: its field's parser checks it */
		v = json_object_get(in, fields[i].f.key);
		if (!v || json_is_null(v)) {
			if (!fields[i].f.required)
				continue;
			r = bad(err, errlen, fields[i].f.key, NULL, "required");
			goto fail;
		}
		r = fields[i].parse(c, fields[i].f.key, v, err, errlen);
		if (r < 0)
			goto fail;
	}
	r = check_combination(c, err, errlen);
	if (r < 0)
		goto fail;
	*ret = c;
	return 0;

fail:
	qemu_config_free(c);
	return r;
}

json_t *qemu_config_to_json(const struct qemu_config *c)
{
	json_t *o = json_object(), *disks = json_array();
	size_t i;
	int r = 0;

	if (!o || !disks)
		goto fail;
	/* json_object_set_new() takes the value even when it fails: no leak. */
	r |= json_object_set_new(o, "name", json_string(c->name));
	if (c->has_uuid)
		r |= json_object_set_new(o, "uuid", json_string(c->uuid));
	r |= json_object_set_new(o, "memory", json_integer((json_int_t)c->memory_mib));
	r |= json_object_set_new(o, "vcpus", json_integer(c->vcpus));
	r |= json_object_set_new(o, "machine", json_string(c->machine));
	r |= json_object_set_new(o, "accel", json_string(c->accel));
	r |= json_object_set_new(o, "emulator", json_string(c->emulator));
	if (c->kernel)
		r |= json_object_set_new(o, "kernel", json_string(c->kernel));
	if (c->initrd)
		r |= json_object_set_new(o, "initrd", json_string(c->initrd));
	if (c->cmdline)
		r |= json_object_set_new(o, "cmdline", json_string(c->cmdline));
	for (i = 0; i < c->n_disks; i++) {
		json_t *d = json_pack("{s:s, s:b}", "path", c->disks[i].path, "readonly",
				      c->disks[i].readonly);

		if (d && c->disks[i].format)
			r |= json_object_set_new(d, "format", json_string(c->disks[i].format));
		r |= json_array_append_new(disks, d);
	}
	r |= json_object_set_new(o, "disks", disks);
	disks = NULL;
	r |= json_object_set_new(o, "reboot", json_string(c->reboot));
	if (c->has_stats_interval)
		r |= json_object_set_new(o, "stats_interval_ms",
					 json_integer((json_int_t)c->stats_interval_ms));
	if (c->has_limits) {
		json_t *l = json_object();

		if (l && c->limit_memory_mib)
			r |= json_object_set_new(l, "memory", json_integer((json_int_t)c->limit_memory_mib));
		if (l && c->cpu_weight)
			r |= json_object_set_new(l, "cpu_weight", json_integer(c->cpu_weight));
		if (l && c->cpu_max_pct)
			r |= json_object_set_new(l, "cpus", json_real(c->cpu_max_pct / 100.0));
		r |= json_object_set_new(o, "limits", l);
	}
	{
		json_t *nics = json_array();

		for (i = 0; nics && i < c->n_nics; i++) {
			const struct qemu_nic *n = &c->nics[i];
			json_t *e = json_pack("{s:s}", "type", n->type);

			if (e && n->has_mac)
				r |= json_object_set_new(e, "mac", json_string(n->mac));
			if (e && n->bridge)
				r |= json_object_set_new(e, "bridge", json_string(n->bridge));
			if (e && !strcmp(n->type, "user")) {
				json_t *fw = json_array();

				for (size_t j = 0; fw && j < n->n_fwd; j++)
					r |= json_array_append_new(fw, json_string(n->fwd[j]));
				r |= json_object_set_new(e, "hostfwd", fw);
			}
			r |= json_array_append_new(nics, e);
		}
		r |= json_object_set_new(o, "nics", nics);
	}
	r |= json_object_set_new(o, "firmware", json_string(c->firmware));
	if (c->cdrom)
		r |= json_object_set_new(o, "cdrom", json_string(c->cdrom));
	if (c->n_boot) {
		json_t *b = json_array();

		for (i = 0; b && i < c->n_boot; i++)
			r |= json_array_append_new(b, json_string(c->boot[i]));
		r |= json_object_set_new(o, "boot", b);
	}
	if (r == 0)
		return o;
fail:
	json_decref(disks);
	json_decref(o);
	return NULL;
}

void qemu_config_free(struct qemu_config *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_disks; i++)
		free(c->disks[i].path);
	free(c->disks);
	for (i = 0; i < c->n_nics; i++) {
		free(c->nics[i].bridge);
		for (size_t j = 0; j < c->nics[i].n_fwd; j++)
			free(c->nics[i].fwd[j]);
		free(c->nics[i].fwd);
	}
	free(c->nics);
	free(c->cdrom);
	free(c->name);
	free(c->machine);
	free(c->emulator);
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c);
}

int qemu_config_set_uuid(struct qemu_config *c, const char *uuid)
{
	size_t i;

	if (!uuid || !qemu__uuid_valid(uuid))
		return -EINVAL;
	for (i = 0; i < QEMU_UUID_LEN; i++) {
		char ch = uuid[i];

		c->uuid[i] = ch >= 'A' && ch <= 'F' ? (char)(ch - 'A' + 'a') : ch;
	}
	c->uuid[QEMU_UUID_LEN] = '\0';
	c->has_uuid = true;
	return 0;
}

/* ---- getters -------------------------------------------------------------- */

const char *qemu_config_name(const struct qemu_config *c)
{
	return c->name;
}

bool qemu_config_has_uuid(const struct qemu_config *c)
{
	return c->has_uuid;
}

const char *qemu_config_uuid(const struct qemu_config *c)
{
	return c->has_uuid ? c->uuid : NULL;
}

uint64_t qemu_config_memory_mib(const struct qemu_config *c)
{
	return c->memory_mib;
}

unsigned int qemu_config_vcpus(const struct qemu_config *c)
{
	return c->vcpus;
}

const char *qemu_config_machine(const struct qemu_config *c)
{
	return c->machine;
}

const char *qemu_config_accel(const struct qemu_config *c)
{
	return c->accel;
}

const char *qemu_config_emulator(const struct qemu_config *c)
{
	return c->emulator;
}

const char *qemu_config_kernel(const struct qemu_config *c)
{
	return c->kernel;
}

const char *qemu_config_initrd(const struct qemu_config *c)
{
	return c->initrd;
}

const char *qemu_config_cmdline(const struct qemu_config *c)
{
	return c->cmdline;
}

const char *qemu_config_reboot(const struct qemu_config *c)
{
	return c->reboot;
}

size_t qemu_config_disk_count(const struct qemu_config *c)
{
	return c->n_disks;
}

const char *qemu_config_disk_path(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_disks);
	return c->disks[i].path;
}

bool qemu_config_disk_readonly(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_disks);
	return c->disks[i].readonly;
}

const char *qemu_config_disk_format(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_disks);
	return c->disks[i].format;
}

uint64_t qemu_config_limit_memory_mib(const struct qemu_config *c)
{
	uint64_t extra = c->memory_mib / 4;

	if (c->limit_memory_mib)
		return c->limit_memory_mib;
	/* QEMU's own needs on top of the guest's: at least 256 MiB, or a quarter. */
	return c->memory_mib + (extra > 256 ? extra : 256);
}

uint64_t qemu_config_stats_interval_ms(const struct qemu_config *c, uint64_t daemon_ms)
{
	return c->has_stats_interval ? c->stats_interval_ms : daemon_ms;
}

unsigned int qemu_config_limit_cpu_weight(const struct qemu_config *c)
{
	return c->cpu_weight ? c->cpu_weight : 100;
}

unsigned int qemu_config_limit_cpu_pct(const struct qemu_config *c)
{
	return c->cpu_max_pct;
}

int qemu_config_set_emulator(struct qemu_config *c, const char *path)
{
	char *copy = strdup(path);

	if (!copy)
		return -ENOMEM;
	free(c->emulator);
	c->emulator = copy;
	return 0;
}

int qemu_config_set_disk_format(struct qemu_config *c, size_t i, const char *format)
{
	BUG_ON(i >= c->n_disks);
	if (!strcmp(format, "raw"))
		c->disks[i].format = "raw";
	else if (!strcmp(format, "qcow2"))
		c->disks[i].format = "qcow2";
	else
		return -EINVAL;
	return 0;
}

size_t qemu_config_nic_count(const struct qemu_config *c)
{
	return c->n_nics;
}

const char *qemu_config_nic_type(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_nics);
	return c->nics[i].type;
}

const char *qemu_config_nic_mac(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_nics);
	return c->nics[i].has_mac ? c->nics[i].mac : NULL;
}

const char *qemu_config_nic_bridge(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_nics);
	return c->nics[i].bridge;
}

size_t qemu_config_nic_hostfwd_count(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_nics);
	return c->nics[i].n_fwd;
}

const char *qemu_config_nic_hostfwd(const struct qemu_config *c, size_t i, size_t j)
{
	BUG_ON(i >= c->n_nics || j >= c->nics[i].n_fwd);
	return c->nics[i].fwd[j];
}

int qemu_config_set_nic_mac(struct qemu_config *c, size_t i, const char *mac)
{
	BUG_ON(i >= c->n_nics);
	if (!qemu_mac_valid(mac))
		return -EINVAL;
	for (size_t j = 0; j < c->n_nics; j++)
		if (j != i && c->nics[j].has_mac && !strcasecmp(c->nics[j].mac, mac))
			return -EEXIST;
	mac_store(&c->nics[i], mac);
	return 0;
}

const char *qemu_config_firmware(const struct qemu_config *c)
{
	return c->firmware;
}

const char *qemu_config_cdrom(const struct qemu_config *c)
{
	return c->cdrom;
}

size_t qemu_config_boot_count(const struct qemu_config *c)
{
	return c->n_boot;
}

const char *qemu_config_boot(const struct qemu_config *c, size_t i)
{
	BUG_ON(i >= c->n_boot);
	return c->boot[i];
}

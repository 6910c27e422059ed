/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the domain config (qemu/config.h) and the QEMU
 * command line built from it (qemu_argv_build in qemu/qemu.h).  The input is
 * parsed as JSON, duplicate keys refused and "\u0000" allowed (the daemon
 * gets configs from msgpack, whose strings may hold NUL bytes), and given to
 * qemu_config_from_json().  Beyond "no crash, no leak, no sanitizer report"
 * it checks:
 *
 *   - a refusal is -EINVAL with a reason that is not empty, fits in 256
 *     bytes as config.h promises, and holds no control character (a hostile
 *     value must not forge a log line);
 *   - an accepted config obeys every rule of the table in config.h, as
 *     read back through the getters;
 *   - the canonical form round-trips: qemu_config_to_json() of the config,
 *     parsed again (as a value and as dumped text), gives a config whose
 *     canonical form is equal;
 *   - qemu_argv_build(), with a fixed launch (accel "tcg", QMP fd 3, a serial
 *     log whose path holds a comma), either fails cleanly or gives an argv
 *     in which no element holds a control character; and the config's data
 *     never changes the argv's structure: built again from a twin config of
 *     the same shape whose free-form strings are plain placeholders, the
 *     argv has the same length, the same options and, in every QEMU
 *     "key=value,..." value split by QEMU's ",," rule, the same keys, the
 *     data appearing whole where the placeholders are (see check_argv);
 *     whether it can be built at all does not depend on the data either.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/names.h"
#include "common/util.h"
#include "qemu/config.h"
#include "qemu/qemu.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SERIAL_LOG         "/var/lib/corral/run,1/serial.log"
#define SERIAL_LOG_ESCAPED "/var/lib/corral/run,,1/serial.log"

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool is_word(const char *s, const char *const words[])
{
	for (size_t i = 0; words[i]; i++)
		if (s == words[i] || str_eq(s, words[i]))
			return true;
	return false;
}

/* ---- errors ---------------------------------------------------------------- */

/* A clean refusal: -EINVAL and a printable reason; max: its promised size. */
static void check_refusal(int r, const char *err, size_t max)
{
	if (r == -ENOMEM)
		return;
	BUG_ON(r != -EINVAL);
	BUG_ON(!*err);
	BUG_ON(strlen(err) >= max);
	BUG_ON(has_ctl(err));
}

/* ---- the rules of config.h -------------------------------------------------- */

static bool path_ok(const char *s)
{
	return s && s[0] == '/' && !has_ctl(s) && strlen(s) < PATH_MAX;
}

static bool uuid_lower_ok(const char *s)
{
	for (size_t i = 0; i < QEMU_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' :
			   !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return s[QEMU_UUID_LEN] == '\0';
}

static void check_rules(const struct qemu_config *c)
{
	static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
	static const char *const reboots[] = { "reset", "acpi", NULL };
	static const char *const formats[] = { "raw", "qcow2", NULL };
	const char *machine = qemu_config_machine(c), *emu = qemu_config_emulator(c);
	size_t i, j, n;

	BUG_ON(!corral_name_valid(qemu_config_name(c)));
	BUG_ON(qemu_config_has_uuid(c) != (qemu_config_uuid(c) != NULL));
	BUG_ON(qemu_config_has_uuid(c) && !uuid_lower_ok(qemu_config_uuid(c)));
	BUG_ON(qemu_config_memory_mib(c) < QEMU_MEMORY_MIN_MIB);
	BUG_ON(qemu_config_memory_mib(c) > QEMU_MEMORY_MAX_MIB);
	BUG_ON(qemu_config_vcpus(c) < 1 || qemu_config_vcpus(c) > QEMU_VCPUS_MAX);
	n = strlen(machine);
	BUG_ON(n < 1 || n > QEMU_MACHINE_MAX || strspn(machine, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
							"abcdefghijklmnopqrstuvwxyz"
							"0123456789_.-") != n);
	BUG_ON(!strcmp(machine, "help"));
	BUG_ON(!is_word(qemu_config_accel(c), accels));
	BUG_ON(!is_word(qemu_config_reboot(c), reboots));
	BUG_ON(has_ctl(emu) || (emu[0] != '/' && (strchr(emu, '/') || emu[0] == '-')));
	BUG_ON(emu[0] == '/' && !path_ok(emu));
	BUG_ON(qemu_config_kernel(c) && !path_ok(qemu_config_kernel(c)));
	BUG_ON(qemu_config_initrd(c) && !path_ok(qemu_config_initrd(c)));
	BUG_ON(qemu_config_initrd(c) && !qemu_config_kernel(c));
	BUG_ON(qemu_config_cmdline(c) && !qemu_config_kernel(c));
	BUG_ON(qemu_config_cmdline(c) && (has_ctl(qemu_config_cmdline(c)) ||
					  strlen(qemu_config_cmdline(c)) >= QEMU_CMDLINE_MAX));
	n = qemu_config_disk_count(c);
	BUG_ON(n > QEMU_DISKS_MAX);
	for (i = 0; i < n; i++) {
		BUG_ON(!path_ok(qemu_config_disk_path(c, i)));
		/* NULL: not declared, the daemon reads the image's header later. */
		BUG_ON(qemu_config_disk_format(c, i) &&
		       !is_word(qemu_config_disk_format(c, i), formats));
		for (j = 0; j < i; j++)
			BUG_ON(str_eq(qemu_config_disk_path(c, i), qemu_config_disk_path(c, j)));
	}
	if (!strcmp(machine, "none"))
		BUG_ON(qemu_config_vcpus(c) != 1 || qemu_config_kernel(c) || n);
}

/* ---- canonical form ---------------------------------------------------------- */

/*
 * canon, parsed again: from the value itself and from its text as the
 * daemon stores it, must give a config whose canonical form is canon.
 */
static void check_canonical(const json_t *canon)
{
	struct qemu_config *c2 = NULL;
	json_t *again = NULL, *reread = NULL;
	char err[1024] = "";
	char *text = NULL;
	int r;

	r = qemu_config_from_json(canon, &c2, err, sizeof(err));
	if (r == -ENOMEM)
		return;
	if (r != 0) {
		fprintf(stderr, "canonical form refused: %s\n", err);
		BUG_ON(r != 0);
	}
	check_rules(c2);
	again = qemu_config_to_json(c2);
	if (!again)
		goto out;
	BUG_ON(!json_equal((json_t *)canon, again));

	text = json_dumps(canon, JSON_COMPACT);
	if (!text)
		goto out;
	reread = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	if (!reread)
		goto out;
	BUG_ON(!json_equal(reread, (json_t *)canon));
out:
	free(text);
	json_decref(reread);
	json_decref(again);
	qemu_config_free(c2);
}

/* ---- argv ------------------------------------------------------------------ */

/*
 * The argv oracle is differential, so that it holds whatever options the
 * builder adds: the config's free-form strings (name, emulator, kernel,
 * initrd, cmdline, disk paths) are replaced by plain placeholders in a twin
 * config of the same shape, and both argvs are built.  Data may change
 * values, never the structure: the argvs have the same length; an element
 * differs only where it is a value taken whole (argv[0], after -kernel,
 * -initrd and -append) equal to the datum, or a QEMU "key=value,..." list
 * that splits, by QEMU's ",," rule, into the same keys, the differing
 * values being exactly the data.  A path with a ',' that the builder
 * failed to double would split into more items and fail here.
 */
struct datum {
	const char *real, *neutral;
};

#define DATA_MAX (5 + QEMU_DISKS_MAX)

/*
 * The items of a QEMU option value, split as QemuOpts and keyval do: at
 * each ',' that is not doubled; ",," stands for one ','.  Up to max items,
 * each malloc'd; returns their number, or -1 (too many, out of memory).
 */
static int opt_split(const char *s, char **items, int max)
{
	int n = 0;

	for (;;) {
		size_t len = 0;
		char *item = malloc(strlen(s) + 1);

		if (!item || n == max) {
			free(item);
			goto fail;
		}
		for (; *s; s++) {
			if (*s == ',') {
				if (s[1] != ',')
					break;
				s++;
			}
			item[len++] = *s;
		}
		item[len] = '\0';
		items[n++] = item;
		if (!*s)
			return n;
		s++;    /* the separating comma */
	}
fail:
	while (n > 0)
		free(items[--n]);
	return -1;
}

static void items_free(char **items, int n)
{
	while (n > 0)
		free(items[--n]);
}

static bool is_datum(const struct datum *d, size_t nd, const char *real, const char *neutral)
{
	for (size_t i = 0; i < nd; i++)
		if (!strcmp(d[i].real, real) && !strcmp(d[i].neutral, neutral))
			return true;
	return false;
}

/* real and neutral: the same key=value list but for data values. */
static void check_same_keys(const char *real, const char *neutral, const struct datum *d,
			    size_t nd)
{
	char *ri[64], *ni[64];
	int rn, nn, i;

	rn = opt_split(real, ri, (int)ARRAY_SIZE(ri));
	nn = opt_split(neutral, ni, (int)ARRAY_SIZE(ni));
	if (rn >= 0 && nn >= 0) {
		if (rn != nn)
			fprintf(stderr, "option value \"%s\" splits unlike \"%s\"\n", real, neutral);
		BUG_ON(rn != nn);
		for (i = 0; i < rn; i++) {
			const char *re = strchr(ri[i], '='), *ne = strchr(ni[i], '=');

			if (!strcmp(ri[i], ni[i]))
				continue;
			if (!re || !ne || re - ri[i] != ne - ni[i] ||
			    strncmp(ri[i], ni[i], (size_t)(re - ri[i])) != 0 ||
			    !is_datum(d, nd, re + 1, ne + 1)) {
				fprintf(stderr, "option item \"%s\" does not match \"%s\"\n", ri[i],
					ni[i]);
				BUG_ON(true);
			}
		}
	}
	if (rn >= 0)
		items_free(ri, rn);
	if (nn >= 0)
		items_free(ni, nn);
}

static void check_argv(char **real, char **neutral, const struct datum *d, size_t nd)
{
	static const char *const whole[] = { "-kernel", "-initrd", "-append", NULL };
	size_t i, n;

	for (n = 0; real[n]; n++)
		BUG_ON(has_ctl(real[n]));
	for (i = 0; neutral[i]; i++)
		;
	BUG_ON(n != i || n == 0);
	for (i = 0; i < n; i++) {
		if (!strcmp(real[i], neutral[i]))
			continue;
		if ((i == 0 || is_word(real[i - 1], whole)) &&
		    is_datum(d, nd, real[i], neutral[i]))
			continue;
		/* Anywhere else the element is an option value QEMU splits. */
		BUG_ON(i == 0 || real[i - 1][0] != '-' || strcmp(real[i - 1], neutral[i - 1]));
		check_same_keys(real[i], neutral[i], d, nd);
	}

	/* The launch's own path, with its comma, survives too. */
	for (i = 0; i < n; i++)
		if (strstr(real[i], "path=" SERIAL_LOG_ESCAPED))
			break;
	BUG_ON(i == n);
}

/*
 * canon with every free-form string replaced by a placeholder of the same
 * kind (absolute path, bare command, plain word); the pairs go to d.
 */
static json_t *neutral_twin(const json_t *canon, const struct qemu_config *c, struct datum *d,
			    size_t *nd, char paths[][16])
{
	json_t *t = json_deep_copy(canon), *disks;
	const char *emu = qemu_config_emulator(c);
	size_t i;
	int r = 0;

#define TWIN(key, real, neutral)                                                   \
	do {                                                                       \
		r |= json_object_set_new(t, key, json_string(neutral));            \
		d[(*nd)++] = (struct datum){ real, neutral };                      \
	} while (0)

	if (!t)
		return NULL;
	*nd = 0;
	TWIN("name", qemu_config_name(c), "n0");
	TWIN("emulator", emu, emu[0] == '/' ? "/e0" : "e0");
	if (qemu_config_kernel(c))
		TWIN("kernel", qemu_config_kernel(c), "/k0");
	if (qemu_config_initrd(c))
		TWIN("initrd", qemu_config_initrd(c), "/i0");
	if (qemu_config_cmdline(c))
		TWIN("cmdline", qemu_config_cmdline(c), "c0");
#undef TWIN
	disks = json_object_get(t, "disks");
	for (i = 0; i < qemu_config_disk_count(c); i++) {
		snprintf(paths[i], sizeof(paths[i]), "/d%zu", i);
		r |= json_object_set_new(json_array_get(disks, i), "path", json_string(paths[i]));
		d[(*nd)++] = (struct datum){ qemu_config_disk_path(c, i), paths[i] };
	}
	if (r) {
		json_decref(t);
		return NULL;
	}
	return t;
}

static void check_launch(const struct qemu_config *c, const json_t *canon)
{
	const struct qemu_launch l = {
		.accel = "tcg",
		.qmp_fd = 3,
		.serial_log = SERIAL_LOG,
		.uuid_str = NULL,
	};
	char **argv = NULL, **argv2 = NULL, err[1024] = "", err2[1024] = "";
	char paths[QEMU_DISKS_MAX][16];
	struct qemu_config *c2 = NULL;
	struct datum d[DATA_MAX];
	json_t *twin;
	size_t nd = 0;
	int r, r2;

	r = qemu_argv_build(c, &l, &argv, err, sizeof(err));
	if (r < 0) {
		BUG_ON(argv);
		check_refusal(r, err, sizeof(err));
	} else {
		BUG_ON(r != 0 || !argv);
	}

	twin = neutral_twin(canon, c, d, &nd, paths);
	if (!twin || qemu_config_from_json(twin, &c2, err2, sizeof(err2)) == -ENOMEM)
		goto out;
	if (!c2)
		fprintf(stderr, "neutral twin refused: %s\n", err2);
	BUG_ON(!c2);
	r2 = qemu_argv_build(c2, &l, &argv2, err2, sizeof(err2));
	if (r == -ENOMEM || r2 == -ENOMEM)
		goto out;
	/* Data alone never decides whether a command line can be built. */
	BUG_ON(r != r2);
	if (r == 0)
		check_argv(argv, argv2, d, nd);
out:
	qemu_argv_free(argv);
	qemu_argv_free(argv2);
	qemu_config_free(c2);
	json_decref(twin);
}

/* ---- entry points ------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* jansson seeds its hash from /dev/urandom: fix it, runs must repeat. */
	json_object_seed(0x636f7272616cu);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
	struct qemu_config *c = NULL;
	json_t *in, *canon;
	char err[1024] = "";
	int r;

	in = json_loadb((const char *)data, size, flags, NULL);
	r = qemu_config_from_json(in, &c, err, sizeof(err));
	json_decref(in);
	if (r < 0) {
		BUG_ON(c);
		/* config.h: "errlen of 256 holds every message in full". */
		check_refusal(r, err, 256);
		return 0;
	}
	BUG_ON(r != 0 || !c);
	check_rules(c);
	canon = qemu_config_to_json(c);
	if (canon) {
		check_canonical(canon);
		check_launch(c, canon);
		json_decref(canon);
	}
	qemu_config_free(c);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * qemu/config: every field, valid and invalid, with the exact message a
 * user would see; defaults; the canonical form; hostile names and paths.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/config.h"

/* JSON_ALLOW_NUL: a caller may decode that way, so the parser must cope. */
static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

	cr_assert(j, "test JSON does not parse: %s: %s", text, jerr.text);
	return j;
}

static struct qemu_config *parse_ok(const char *text)
{
	json_t *j = load(text);
	struct qemu_config *c = NULL;
	char err[256] = "";
	int r = qemu_config_from_json(j, &c, err, sizeof(err));

	cr_assert_eq(r, 0, "%s: %d: %s", text, r, err);
	json_decref(j);
	return c;
}

static void parse_fails(const char *text, const char *want)
{
	json_t *j = load(text);
	struct qemu_config *c = (struct qemu_config *)&c; /* must stay untouched */
	char err[256] = "";
	int r = qemu_config_from_json(j, &c, err, sizeof(err));

	cr_assert_eq(r, -EINVAL, "%s: got %d (%s)", text, r, err);
	cr_assert_str_eq(err, want, "%s", text);
	cr_assert_eq(c, (struct qemu_config *)&c, "ret written on failure");
	json_decref(j);
}

/* The canonical JSON of a config, compact, for comparing as a string. */
static char *canon(const struct qemu_config *c)
{
	json_t *j = qemu_config_to_json(c);
	char *s;

	cr_assert(j);
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

static void assert_canon(const char *in, const char *want)
{
	struct qemu_config *c = parse_ok(in);
	char *s = canon(c);

	cr_assert_str_eq(s, want, "%s", in);
	free(s);
	qemu_config_free(c);
}

/* ---- whole object --------------------------------------------------------- */

Test(config, minimal_gets_every_default)
{
	struct qemu_config *c = parse_ok("{\"name\": \"vm1\"}");

	cr_assert_str_eq(qemu_config_name(c), "vm1");
	cr_assert_not(qemu_config_has_uuid(c));
	cr_assert_null(qemu_config_uuid(c));
	cr_assert_eq(qemu_config_memory_mib(c), 256);
	cr_assert_eq(qemu_config_vcpus(c), 1);
	cr_assert_str_eq(qemu_config_machine(c), "pc");
	cr_assert_str_eq(qemu_config_accel(c), "auto");
	cr_assert_str_eq(qemu_config_emulator(c), "qemu-system-x86_64");
	cr_assert_null(qemu_config_kernel(c));
	cr_assert_null(qemu_config_initrd(c));
	cr_assert_null(qemu_config_cmdline(c));
	cr_assert_eq(qemu_config_disk_count(c), 0);
	cr_assert_str_eq(qemu_config_reboot(c), "reset");
	qemu_config_free(c);
}

Test(config, canonical_form_fills_defaults)
{
	assert_canon("{\"name\": \"vm1\"}",
		     "{\"name\":\"vm1\",\"memory\":256,\"vcpus\":1,\"machine\":\"pc\","
		     "\"accel\":\"auto\",\"emulator\":\"qemu-system-x86_64\",\"disks\":[],"
		     "\"reboot\":\"reset\",\"nics\":[],\"firmware\":\"bios\"}");
}

Test(config, canonical_form_of_everything)
{
	assert_canon("{\"reboot\": \"acpi\", \"disks\": [\"/img/a.img,ro\", {\"path\": "
		     "\"/img/b.qcow2\", \"format\": \"qcow2\"}], \"cmdline\": \"console=ttyS0\", "
		     "\"initrd\": \"/boot/initrd\", \"kernel\": \"/boot/vmlinuz\", \"emulator\": "
		     "\"/usr/bin/qemu-system-x86_64\", \"accel\": \"tcg\", \"machine\": \"q35\", "
		     "\"vcpus\": 4, \"memory\": \"2G\", \"uuid\": "
		     "\"0F2E6C1A-9B3D-4E5F-8A7B-1C2D3E4F5A6B\", \"name\": \"web-1\"}",
		     "{\"name\":\"web-1\",\"uuid\":\"0f2e6c1a-9b3d-4e5f-8a7b-1c2d3e4f5a6b\","
		     "\"memory\":2048,\"vcpus\":4,\"machine\":\"q35\",\"accel\":\"tcg\","
		     "\"emulator\":\"/usr/bin/qemu-system-x86_64\",\"kernel\":\"/boot/vmlinuz\","
		     "\"initrd\":\"/boot/initrd\",\"cmdline\":\"console=ttyS0\",\"disks\":["
		     "{\"path\":\"/img/a.img\",\"readonly\":true},"
		     "{\"path\":\"/img/b.qcow2\",\"readonly\":false,\"format\":\"qcow2\"}],"
		     "\"reboot\":\"acpi\",\"nics\":[],\"firmware\":\"bios\"}");
}

Test(config, canonical_form_parses_back_equal)
{
	struct qemu_config *a = parse_ok(
		"{\"name\": \"x\", \"memory\": \"1TiB\", \"disks\": [\"/a,b.img,ro\"], "
		"\"kernel\": \"/k\", \"cmdline\": \"a,b c=d\", \"uuid\": "
		"\"00000000-0000-0000-0000-000000000000\"}");
	json_t *ja = qemu_config_to_json(a);
	struct qemu_config *b = NULL;
	json_t *jb;

	cr_assert_eq(qemu_config_from_json(ja, &b, NULL, 0), 0);
	jb = qemu_config_to_json(b);
	cr_assert(json_equal(ja, jb));
	json_decref(ja);
	json_decref(jb);
	qemu_config_free(a);
	qemu_config_free(b);
}

Test(config, null_counts_as_absent)
{
	assert_canon("{\"name\": \"vm1\", \"memory\": null, \"uuid\": null, \"kernel\": null, "
		     "\"disks\": null}",
		     "{\"name\":\"vm1\",\"memory\":256,\"vcpus\":1,\"machine\":\"pc\","
		     "\"accel\":\"auto\",\"emulator\":\"qemu-system-x86_64\",\"disks\":[],"
		     "\"reboot\":\"reset\",\"nics\":[],\"firmware\":\"bios\"}");
}

Test(config, not_an_object)
{
	struct qemu_config *c = NULL;
	char err[256];

	parse_fails("[]", "expected a JSON object, got an array");
	parse_fails("\"vm1\"", "expected a JSON object, got \"vm1\"");
	cr_assert_eq(qemu_config_from_json(NULL, &c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "expected a JSON object, got nothing");
}

Test(config, unknown_field)
{
	parse_fails("{\"name\": \"vm1\", \"foo\": 1}", "unknown field 'foo'");
	parse_fails("{\"name\": \"vm1\", \"memroy\": 512}", "unknown field 'memroy'");
	/* Reported before any other problem: a typo never passes as a default. */
	parse_fails("{\"name\": \"../x\", \"foo\": 1}", "unknown field 'foo'");
	/* A key unfit to print is quoted and escaped. */
	parse_fails("{\"name\": \"vm1\", \"a\\nb\": 1}", "unknown field \"a\\nb\"");
	parse_fails("{\"name\": \"vm1\", \"it's\": 1}", "unknown field \"it's\"");
}

Test(config, no_error_buffer)
{
	json_t *j = load("{\"name\": 1}");
	struct qemu_config *c = NULL;

	cr_assert_eq(qemu_config_from_json(j, &c, NULL, 0), -EINVAL);
	json_decref(j);
}

Test(config, small_error_buffer_is_cut_not_overrun)
{
	json_t *j = load("{\"name\": 1}");
	struct qemu_config *c = NULL;
	char err[12];

	cr_assert_eq(qemu_config_from_json(j, &c, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "field 'name");
	json_decref(j);
}

/* ---- name ----------------------------------------------------------------- */

#define NAME_RULE "must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}"

Test(config, name_valid)
{
	static const char *const ok[] = { "a", "vm1", "Web_01.prod-eu", "0abc",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 64 */ };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char text[128];
		struct qemu_config *c;

		snprintf(text, sizeof(text), "{\"name\": \"%s\"}", ok[i]);
		c = parse_ok(text);
		cr_assert_str_eq(qemu_config_name(c), ok[i]);
		qemu_config_free(c);
	}
}

Test(config, name_required)
{
	parse_fails("{}", "field 'name': required");
	parse_fails("{\"name\": null}", "field 'name': required");
}

Test(config, name_wrong_type)
{
	parse_fails("{\"name\": 5}", "field 'name': expected a string, got 5");
	parse_fails("{\"name\": [\"vm\"]}", "field 'name': expected a string, got an array");
}

Test(config, name_hostile)
{
	parse_fails("{\"name\": \"../x\"}", "field 'name': " NAME_RULE ", got \"../x\"");
	parse_fails("{\"name\": \"a,b\"}", "field 'name': " NAME_RULE ", got \"a,b\"");
	parse_fails("{\"name\": \"a/b\"}", "field 'name': " NAME_RULE ", got \"a/b\"");
	parse_fails("{\"name\": \"a=b\"}", "field 'name': " NAME_RULE ", got \"a=b\"");
	parse_fails("{\"name\": \"a b\"}", "field 'name': " NAME_RULE ", got \"a b\"");
	parse_fails("{\"name\": \"-x\"}", "field 'name': " NAME_RULE ", got \"-x\"");
	parse_fails("{\"name\": \".x\"}", "field 'name': " NAME_RULE ", got \".x\"");
	parse_fails("{\"name\": \"\"}", "field 'name': " NAME_RULE ", got \"\"");
	parse_fails("{\"name\": \"vm\\\"1\"}", "field 'name': " NAME_RULE ", got \"vm\\\"1\"");
	parse_fails("{\"name\": \"v\\u00e9\"}", "field 'name': " NAME_RULE ", got \"v\xc3\xa9\"");
	parse_fails("{\"name\": \"a\\nb\"}",
		    "field 'name': must not contain control characters, got \"a\\nb\"");
	parse_fails("{\"name\": \"a\\u0000b\"}",
		    "field 'name': must not contain control characters, got \"a\\x00b\"");
}

Test(config, name_too_long_is_cut_in_message)
{
	/* 65 characters: one too many; the message shows 64 and "...". */
	parse_fails("{\"name\": "
		    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}",
		    "field 'name': " NAME_RULE
		    ", got \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
}

/* ---- uuid ----------------------------------------------------------------- */

Test(config, uuid_valid_and_lowercased)
{
	struct qemu_config *c = parse_ok(
		"{\"name\": \"vm1\", \"uuid\": \"ABCDEF01-2345-6789-abcd-ef0123456789\"}");

	cr_assert(qemu_config_has_uuid(c));
	cr_assert_str_eq(qemu_config_uuid(c), "abcdef01-2345-6789-abcd-ef0123456789");
	qemu_config_free(c);
}

Test(config, uuid_invalid)
{
	static const char *const bad[] = {
		"abc",
		"abcdef01-2345-6789-abcd-ef012345678",          /* short */
		"abcdef01-2345-6789-abcd-ef01234567890",        /* long */
		"abcdef0123456789abcdef0123456789",             /* no dashes */
		"{abcdef01-2345-6789-abcd-ef0123456789}",       /* braces */
		"abcdef01-2345-6789-abcd_ef0123456789",         /* wrong separator */
		"gbcdef01-2345-6789-abcd-ef0123456789",         /* not hex */
		"",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[128], want[160];

		snprintf(text, sizeof(text), "{\"name\": \"vm1\", \"uuid\": \"%s\"}", bad[i]);
		snprintf(want, sizeof(want),
			 "field 'uuid': must be a UUID (8-4-4-4-12 hex digits), got \"%s\"", bad[i]);
		parse_fails(text, want);
	}
	parse_fails("{\"name\": \"vm1\", \"uuid\": 12}", "field 'uuid': expected a string, got 12");
}

Test(config, set_uuid)
{
	struct qemu_config *c = parse_ok("{\"name\": \"vm1\"}");
	char *s;

	cr_assert_eq(qemu_config_set_uuid(c, "not-a-uuid"), -EINVAL);
	cr_assert_eq(qemu_config_set_uuid(c, NULL), -EINVAL);
	cr_assert_not(qemu_config_has_uuid(c));
	cr_assert_eq(qemu_config_set_uuid(c, "12345678-9ABC-DEF0-1234-56789ABCDEF0"), 0);
	cr_assert(qemu_config_has_uuid(c));
	cr_assert_str_eq(qemu_config_uuid(c), "12345678-9abc-def0-1234-56789abcdef0");
	s = canon(c);
	cr_assert(strstr(s, "\"uuid\":\"12345678-9abc-def0-1234-56789abcdef0\""), "%s", s);
	free(s);
	qemu_config_free(c);
}

/* ---- memory --------------------------------------------------------------- */

static void assert_memory(const char *value, uint64_t mib)
{
	char text[128];
	struct qemu_config *c;

	snprintf(text, sizeof(text), "{\"name\": \"vm1\", \"memory\": %s}", value);
	c = parse_ok(text);
	cr_assert_eq(qemu_config_memory_mib(c), mib, "%s: %llu", value,
		     (unsigned long long)qemu_config_memory_mib(c));
	qemu_config_free(c);
}

#define MEM_TYPE "field 'memory': expected an integer (MiB) or a string like \"512M\", got "
#define MEM_RANGE "field 'memory': must be between 16 MiB and 1 TiB, got "

Test(config, memory_integer_and_suffixes)
{
	assert_memory("512", 512);
	assert_memory("16", 16);
	assert_memory("1048576", 1048576);
	assert_memory("\"512\"", 512);
	assert_memory("\"256M\"", 256);
	assert_memory("\"256m\"", 256);
	assert_memory("\"512MiB\"", 512);
	assert_memory("\"512mib\"", 512);
	assert_memory("\"1G\"", 1024);
	assert_memory("\"1g\"", 1024);
	assert_memory("\"3GiB\"", 3072);
	assert_memory("\"1T\"", 1048576);
	assert_memory("\"1TiB\"", 1048576);
	assert_memory("\"0016M\"", 16);
}

Test(config, memory_wrong_type)
{
	parse_fails("{\"name\": \"vm1\", \"memory\": true}", MEM_TYPE "true");
	parse_fails("{\"name\": \"vm1\", \"memory\": 3.5}", MEM_TYPE "3.5");
	parse_fails("{\"name\": \"vm1\", \"memory\": 512.0}", MEM_TYPE "512.0");
	parse_fails("{\"name\": \"vm1\", \"memory\": [512]}", MEM_TYPE "an array");
	parse_fails("{\"name\": \"vm1\", \"memory\": {}}", MEM_TYPE "an object");
}

Test(config, memory_bad_strings)
{
	parse_fails("{\"name\": \"vm1\", \"memory\": \"512K\"}", MEM_TYPE "\"512K\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"512MB\"}", MEM_TYPE "\"512MB\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"512 M\"}", MEM_TYPE "\"512 M\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \" 512\"}", MEM_TYPE "\" 512\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"+512\"}", MEM_TYPE "\"+512\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"-512\"}", MEM_TYPE "\"-512\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"1.5G\"}", MEM_TYPE "\"1.5G\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"M\"}", MEM_TYPE "\"M\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"\"}", MEM_TYPE "\"\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"512\\u0000M\"}", MEM_TYPE "\"512\\x00M\"");
}

Test(config, memory_out_of_range)
{
	parse_fails("{\"name\": \"vm1\", \"memory\": 15}", MEM_RANGE "15");
	parse_fails("{\"name\": \"vm1\", \"memory\": 0}", MEM_RANGE "0");
	parse_fails("{\"name\": \"vm1\", \"memory\": -1}", MEM_RANGE "-1");
	parse_fails("{\"name\": \"vm1\", \"memory\": 1048577}", MEM_RANGE "1048577");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"15M\"}", MEM_RANGE "\"15M\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"2T\"}", MEM_RANGE "\"2T\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"1025G\"}", MEM_RANGE "\"1025G\"");
	/* Overflow while reading the digits, and while applying the unit. */
	parse_fails("{\"name\": \"vm1\", \"memory\": \"99999999999999999999999\"}",
		    MEM_RANGE "\"99999999999999999999999\"");
	parse_fails("{\"name\": \"vm1\", \"memory\": \"18446744073709551615T\"}",
		    MEM_RANGE "\"18446744073709551615T\"");
}

/* ---- vcpus, machine, accel, reboot ---------------------------------------- */

Test(config, vcpus)
{
	struct qemu_config *c = parse_ok("{\"name\": \"vm1\", \"vcpus\": 256}");

	cr_assert_eq(qemu_config_vcpus(c), 256);
	qemu_config_free(c);
	parse_fails("{\"name\": \"vm1\", \"vcpus\": 0}",
		    "field 'vcpus': must be between 1 and 256, got 0");
	parse_fails("{\"name\": \"vm1\", \"vcpus\": 257}",
		    "field 'vcpus': must be between 1 and 256, got 257");
	parse_fails("{\"name\": \"vm1\", \"vcpus\": -3}",
		    "field 'vcpus': must be between 1 and 256, got -3");
	parse_fails("{\"name\": \"vm1\", \"vcpus\": \"2\"}",
		    "field 'vcpus': expected an integer, got \"2\"");
	parse_fails("{\"name\": \"vm1\", \"vcpus\": 2.0}",
		    "field 'vcpus': expected an integer, got 2.0");
}

#define MACHINE_RULE "field 'machine': must be 1 to 64 characters from [A-Za-z0-9_.-], got "

Test(config, machine)
{
	static const char *const ok[] = { "pc", "q35", "pc-i440fx-7.2", "pc-q35-7.2", "none",
					  "microvm" };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char text[128];
		struct qemu_config *c;

		snprintf(text, sizeof(text), "{\"name\": \"vm1\", \"machine\": \"%s\"}", ok[i]);
		c = parse_ok(text);
		cr_assert_str_eq(qemu_config_machine(c), ok[i]);
		qemu_config_free(c);
	}
	parse_fails("{\"name\": \"vm1\", \"machine\": \"pc,accel=xen\"}",
		    MACHINE_RULE "\"pc,accel=xen\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"type=pc\"}", MACHINE_RULE "\"type=pc\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"pc q35\"}", MACHINE_RULE "\"pc q35\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"\"}", MACHINE_RULE "\"\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": "
		    "\"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm\"}",
		    MACHINE_RULE
		    "\"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm...\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"help\"}",
		    "field 'machine': must name a machine type, got \"help\"");
	parse_fails("{\"name\": \"vm1\", \"machine\": 5}",
		    "field 'machine': expected a string, got 5");
}

Test(config, accel)
{
	static const char *const ok[] = { "auto", "kvm", "tcg" };
	size_t i;

	for (i = 0; i < 3; i++) {
		char text[128];
		struct qemu_config *c;

		snprintf(text, sizeof(text), "{\"name\": \"vm1\", \"accel\": \"%s\"}", ok[i]);
		c = parse_ok(text);
		cr_assert_str_eq(qemu_config_accel(c), ok[i]);
		qemu_config_free(c);
	}
	parse_fails("{\"name\": \"vm1\", \"accel\": \"xen\"}",
		    "field 'accel': must be \"auto\", \"kvm\" or \"tcg\", got \"xen\"");
	parse_fails("{\"name\": \"vm1\", \"accel\": \"KVM\"}",
		    "field 'accel': must be \"auto\", \"kvm\" or \"tcg\", got \"KVM\"");
	parse_fails("{\"name\": \"vm1\", \"accel\": \"kvm\\u0000x\"}",
		    "field 'accel': must be \"auto\", \"kvm\" or \"tcg\", got \"kvm\\x00x\"");
	parse_fails("{\"name\": \"vm1\", \"accel\": false}",
		    "field 'accel': must be \"auto\", \"kvm\" or \"tcg\", got false");
}

Test(config, reboot)
{
	struct qemu_config *c = parse_ok("{\"name\": \"vm1\", \"reboot\": \"acpi\"}");

	cr_assert_str_eq(qemu_config_reboot(c), "acpi");
	qemu_config_free(c);
	parse_fails("{\"name\": \"vm1\", \"reboot\": \"halt\"}",
		    "field 'reboot': must be \"reset\" or \"acpi\", got \"halt\"");
}

/* ---- emulator, kernel, initrd, cmdline ------------------------------------ */

#define EMU_RULE "field 'emulator': must be an absolute path or a command name, got "

Test(config, emulator)
{
	struct qemu_config *c;

	c = parse_ok("{\"name\": \"vm1\", \"emulator\": \"/opt/qemu 8/bin/qemu-system-x86_64\"}");
	cr_assert_str_eq(qemu_config_emulator(c), "/opt/qemu 8/bin/qemu-system-x86_64");
	qemu_config_free(c);
	c = parse_ok("{\"name\": \"vm1\", \"emulator\": \"qemu-kvm\"}");
	cr_assert_str_eq(qemu_config_emulator(c), "qemu-kvm");
	qemu_config_free(c);

	parse_fails("{\"name\": \"vm1\", \"emulator\": \"bin/qemu\"}", EMU_RULE "\"bin/qemu\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"./qemu\"}", EMU_RULE "\"./qemu\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"..\"}", EMU_RULE "\"..\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"-qemu\"}", EMU_RULE "\"-qemu\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"qemu;rm -rf\"}", EMU_RULE "\"qemu;rm -rf\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"\"}", EMU_RULE "\"\"");
	parse_fails("{\"name\": \"vm1\", \"emulator\": \"/usr/bin/qemu\\t\"}",
		    "field 'emulator': must not contain control characters, got "
		    "\"/usr/bin/qemu\\t\"");
}

Test(config, kernel_initrd_cmdline)
{
	struct qemu_config *c = parse_ok(
		"{\"name\": \"vm1\", \"kernel\": \"/boot/vm,linuz\", \"initrd\": \"/boot/initrd\", "
		"\"cmdline\": \"console=ttyS0,115200 root=/dev/vda quiet\"}");

	cr_assert_str_eq(qemu_config_kernel(c), "/boot/vm,linuz");
	cr_assert_str_eq(qemu_config_initrd(c), "/boot/initrd");
	cr_assert_str_eq(qemu_config_cmdline(c), "console=ttyS0,115200 root=/dev/vda quiet");
	qemu_config_free(c);
}

Test(config, kernel_invalid)
{
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"vmlinuz\"}",
		    "field 'kernel': must be an absolute path, got \"vmlinuz\"");
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"\"}",
		    "field 'kernel': must be an absolute path, got \"\"");
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"/boot/a\\nb\"}",
		    "field 'kernel': must not contain control characters, got \"/boot/a\\nb\"");
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"/boot/a\\u0000b\"}",
		    "field 'kernel': must not contain control characters, got \"/boot/a\\x00b\"");
	parse_fails("{\"name\": \"vm1\", \"kernel\": 1}", "field 'kernel': expected a string, got 1");
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"/k\", \"initrd\": \"initrd\"}",
		    "field 'initrd': must be an absolute path, got \"initrd\"");
}

Test(config, initrd_and_cmdline_need_kernel)
{
	parse_fails("{\"name\": \"vm1\", \"initrd\": \"/boot/initrd\"}",
		    "field 'initrd': needs 'kernel'");
	parse_fails("{\"name\": \"vm1\", \"cmdline\": \"quiet\"}", "field 'cmdline': needs 'kernel'");
}

Test(config, cmdline_invalid)
{
	char *text = malloc(4200);
	char *want = malloc(4200);

	parse_fails("{\"name\": \"vm1\", \"kernel\": \"/k\", \"cmdline\": \"a\\nroot=/dev/sdb\"}",
		    "field 'cmdline': must not contain control characters, got "
		    "\"a\\nroot=/dev/sdb\"");
	parse_fails("{\"name\": \"vm1\", \"kernel\": \"/k\", \"cmdline\": \"a\\u0000b\"}",
		    "field 'cmdline': must not contain control characters, got \"a\\x00b\"");
	/* 4096 bytes: one too many. */
	snprintf(text, 4200, "{\"name\": \"vm1\", \"kernel\": \"/k\", \"cmdline\": \"%4096s\"}", "");
	snprintf(want, 4200, "field 'cmdline': must be shorter than 4096 bytes, got \"%64s...\"",
		 "");
	parse_fails(text, want);
	/* 4095 are fine. */
	snprintf(text, 4200, "{\"name\": \"vm1\", \"kernel\": \"/k\", \"cmdline\": \"%4095s\"}", "");
	qemu_config_free(parse_ok(text));
	free(text);
	free(want);
}

/* ---- machine none --------------------------------------------------------- */

Test(config, machine_none_rules)
{
	qemu_config_free(parse_ok("{\"name\": \"vm1\", \"machine\": \"none\", \"vcpus\": 1}"));
	parse_fails("{\"name\": \"vm1\", \"machine\": \"none\", \"vcpus\": 2}",
		    "field 'vcpus': must be 1 with machine 'none'");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"none\", \"kernel\": \"/k\"}",
		    "field 'kernel': cannot be used with machine 'none'");
	parse_fails("{\"name\": \"vm1\", \"machine\": \"none\", \"disks\": [\"/a.img\"]}",
		    "field 'disks': cannot be used with machine 'none' (it has no bus)");
}

/* ---- disks ---------------------------------------------------------------- */

Test(config, disks_objects)
{
	struct qemu_config *c = parse_ok(
		"{\"name\": \"vm1\", \"disks\": [{\"path\": \"/img/a.img\"}, "
		"{\"path\": \"/img/b.qcow2\", \"readonly\": true, \"format\": \"qcow2\"}, "
		"{\"path\": \"/img/c.img\", \"readonly\": false, \"format\": \"raw\"}, "
		"{\"path\": \"/img/d.img\", \"readonly\": null, \"format\": null}]}");

	cr_assert_eq(qemu_config_disk_count(c), 4);
	cr_assert_str_eq(qemu_config_disk_path(c, 0), "/img/a.img");
	cr_assert_not(qemu_config_disk_readonly(c, 0));
	/* Not declared: the daemon reads the image's header (qemu/image.h). */
	cr_assert_null(qemu_config_disk_format(c, 0));
	cr_assert_str_eq(qemu_config_disk_path(c, 1), "/img/b.qcow2");
	cr_assert(qemu_config_disk_readonly(c, 1));
	cr_assert_str_eq(qemu_config_disk_format(c, 1), "qcow2");
	cr_assert_not(qemu_config_disk_readonly(c, 2));
	cr_assert_str_eq(qemu_config_disk_format(c, 2), "raw");
	cr_assert_null(qemu_config_disk_format(c, 3));
	qemu_config_free(c);
}

Test(config, disks_shorthand)
{
	struct qemu_config *c = parse_ok(
		"{\"name\": \"vm1\", \"disks\": [\"/img/a.img\", \"/img/b.img,ro\", "
		"\"/img/with,comma.img\", \"/img/with,comma2.img,ro\", \"/img/x,rw\"]}");

	cr_assert_eq(qemu_config_disk_count(c), 5);
	cr_assert_str_eq(qemu_config_disk_path(c, 0), "/img/a.img");
	cr_assert_not(qemu_config_disk_readonly(c, 0));
	cr_assert_null(qemu_config_disk_format(c, 0));
	cr_assert_str_eq(qemu_config_disk_path(c, 1), "/img/b.img");
	cr_assert(qemu_config_disk_readonly(c, 1));
	cr_assert_str_eq(qemu_config_disk_path(c, 2), "/img/with,comma.img");
	cr_assert_not(qemu_config_disk_readonly(c, 2));
	cr_assert_str_eq(qemu_config_disk_path(c, 3), "/img/with,comma2.img");
	cr_assert(qemu_config_disk_readonly(c, 3));
	/* Only ",ro" is an option; anything else is part of the path. */
	cr_assert_str_eq(qemu_config_disk_path(c, 4), "/img/x,rw");
	cr_assert_not(qemu_config_disk_readonly(c, 4));
	qemu_config_free(c);
}

Test(config, disks_invalid)
{
	parse_fails("{\"name\": \"vm1\", \"disks\": \"/a.img\"}",
		    "field 'disks': expected an array, got \"/a.img\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [5]}",
		    "field 'disks[0]': expected an object or a string like \"/path/disk.img,ro\", "
		    "got 5");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\"a.img\"]}",
		    "field 'disks[0]': must be an absolute path, got \"a.img\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\",ro\"]}",
		    "field 'disks[0]': must be an absolute path, got \",ro\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\"/a.img\", \"/b\\n.img,ro\"]}",
		    "field 'disks[1]': must not contain control characters, got \"/b\\n.img,ro\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [{}]}", "field 'disks[0].path': required");
	parse_fails("{\"name\": \"vm1\", \"disks\": [{\"path\": null}]}",
		    "field 'disks[0].path': required");
	parse_fails("{\"name\": \"vm1\", \"disks\": [{\"path\": \"x\"}]}",
		    "field 'disks[0].path': must be an absolute path, got \"x\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [{\"path\": \"/a\", \"size\": 1}]}",
		    "unknown field 'disks[0].size'");
	parse_fails("{\"name\": \"vm1\", \"disks\": [{\"path\": \"/a\", \"readonly\": \"yes\"}]}",
		    "field 'disks[0].readonly': expected true or false, got \"yes\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\"/a\", {\"path\": \"/b\", \"format\": "
		    "\"vmdk\"}]}",
		    "field 'disks[1].format': must be \"raw\" or \"qcow2\", got \"vmdk\"");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\"/a\", {\"path\": \"/a\", \"readonly\": "
		    "true}]}",
		    "field 'disks[1]': same image as disks[0]");
	parse_fails("{\"name\": \"vm1\", \"disks\": [\"/a,ro\", \"/a\"]}",
		    "field 'disks[1]': same image as disks[0]");
}

Test(config, disks_at_most_16)
{
	char text[1024];
	size_t i, o;

	o = (size_t)snprintf(text, sizeof(text), "{\"name\": \"vm1\", \"disks\": [");
	for (i = 0; i < 16; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%s\"/d%zu\"", i ? "," : "", i);
	snprintf(text + o, sizeof(text) - o, "]}");
	qemu_config_free(parse_ok(text));

	snprintf(text + o, sizeof(text) - o, ",\"/d16\"]}");
	parse_fails(text, "field 'disks': at most 16 disks, got 17");
}

/* ---- nics, firmware, cdrom, boot ------------------------------------------------ */

Test(config, nics_objects_and_shorthand_canonical)
{
	assert_canon("{\"name\": \"n\", \"nics\": [\"user,hostfwd=tcp:127.0.0.1:2222-:22,"
		     "hostfwd=udp::5353-10.0.2.15:53\", {\"type\": \"bridge\", \"bridge\": "
		     "\"br0\", \"mac\": \"52:54:00:AB:cd:01\"}, \"bridge=virbr1,mac=02:00:00:00:00:01\"], "
		     "\"firmware\": \"uefi\", \"cdrom\": \"/iso/debian.iso\", \"boot\": \"cdrom,disk\", "
		     "\"disks\": [{\"path\": \"/img/a.img\", \"format\": \"raw\"}]}",
		     "{\"name\":\"n\",\"memory\":256,\"vcpus\":1,\"machine\":\"pc\","
		     "\"accel\":\"auto\",\"emulator\":\"qemu-system-x86_64\",\"disks\":["
		     "{\"path\":\"/img/a.img\",\"readonly\":false,\"format\":\"raw\"}],"
		     "\"reboot\":\"reset\",\"nics\":[{\"type\":\"user\",\"hostfwd\":["
		     "\"tcp:127.0.0.1:2222-:22\",\"udp::5353-10.0.2.15:53\"]},"
		     "{\"type\":\"bridge\",\"mac\":\"52:54:00:ab:cd:01\",\"bridge\":\"br0\"},"
		     "{\"type\":\"bridge\",\"mac\":\"02:00:00:00:00:01\",\"bridge\":\"virbr1\"}],"
		     "\"firmware\":\"uefi\",\"cdrom\":\"/iso/debian.iso\",\"boot\":[\"cdrom\","
		     "\"disk\"]}");
}

Test(config, nics_refused)
{
	parse_fails("{\"name\": \"n\", \"nics\": [\"tap\"]}",
		    "field 'nics[0]': must start with \"user\" or \"bridge=NAME\", got \"tap\"");
	parse_fails("{\"name\": \"n\", \"nics\": [{\"type\": \"user\", \"mac\": "
		    "\"01:00:5e:00:00:01\"}]}",
		    "field 'nics[0].mac': must be a unicast MAC address like \"52:54:00:12:34:56\", "
		    "got \"01:00:5e:00:00:01\"");
	parse_fails("{\"name\": \"n\", \"nics\": [{\"type\": \"user\", \"mac\": "
		    "\"00:00:00:00:00:00\"}]}",
		    "field 'nics[0].mac': must be a unicast MAC address like \"52:54:00:12:34:56\", "
		    "got \"00:00:00:00:00:00\"");
	/* A comma would add a QEMU option: the grammar has none. */
	parse_fails("{\"name\": \"n\", \"nics\": [{\"type\": \"user\", \"hostfwd\": "
		    "[\"tcp::22-:22,smb=/\"]}]}",
		    "field 'nics[0].hostfwd[0]': must look like \"tcp:127.0.0.1:2222-:22\" (tcp or "
		    "udp, IPv4 addresses optional, ports 1-65535), got \"tcp::22-:22,smb=/\"");
	parse_fails("{\"name\": \"n\", \"nics\": [\"user,hostfwd=tcp::0-:22\"]}",
		    "field 'nics[0]': must look like \"tcp:127.0.0.1:2222-:22\" (tcp or udp, IPv4 "
		    "addresses optional, ports 1-65535), got \"user,hostfwd=tcp::0-:22\"");
	parse_fails("{\"name\": \"n\", \"nics\": [\"user,hostfwd=tcp:1.2.3:22-:22\"]}",
		    "field 'nics[0]': must look like \"tcp:127.0.0.1:2222-:22\" (tcp or udp, IPv4 "
		    "addresses optional, ports 1-65535), got \"user,hostfwd=tcp:1.2.3:22-:22\"");
	parse_fails("{\"name\": \"n\", \"nics\": [{\"type\": \"bridge\"}]}",
		    "field 'nics[0]': type \"bridge\" needs 'bridge' (its name)");
	parse_fails("{\"name\": \"n\", \"nics\": [\"bridge=br0,hostfwd=tcp::1-:2\"]}",
		    "field 'nics[0]': 'hostfwd' is for type \"user\" only");
	parse_fails("{\"name\": \"n\", \"nics\": [\"bridge=br0,x\"]}",
		    "field 'nics[0]': options are hostfwd=RULE and mac=MAC, got \"bridge=br0,x\"");
	parse_fails("{\"name\": \"n\", \"nics\": [\"bridge=a/b\"]}",
		    "field 'nics[0]': must be an interface name: 1 to 15 of [A-Za-z0-9_.-], got "
		    "\"bridge=a/b\"");
	parse_fails("{\"name\": \"n\", \"nics\": [\"user,mac=52:54:00:00:00:01\", "
		    "\"user,mac=52:54:00:00:00:01\"]}",
		    "field 'nics[1]': same MAC address as nics[0]");
	parse_fails("{\"name\": \"n\", \"nics\": [\"user\",\"user\",\"user\",\"user\",\"user\","
		    "\"user\",\"user\",\"user\",\"user\"]}",
		    "field 'nics': at most 8 NICs, got 9");
	parse_fails("{\"name\": \"n\", \"machine\": \"none\", \"nics\": [\"user\"]}",
		    "field 'nics': cannot be used with machine 'none' (it has no bus)");
}

Test(config, firmware_cdrom_boot_refused)
{
	parse_fails("{\"name\": \"n\", \"firmware\": \"efi\"}",
		    "field 'firmware': must be \"bios\" or \"uefi\", got \"efi\"");
	parse_fails("{\"name\": \"n\", \"cdrom\": \"x.iso\"}",
		    "field 'cdrom': must be an absolute path, got \"x.iso\"");
	parse_fails("{\"name\": \"n\", \"boot\": \"cdrom\"}",
		    "field 'boot': names \"cdrom\", but the domain has no cdrom");
	parse_fails("{\"name\": \"n\", \"cdrom\": \"/a.iso\", \"boot\": \"cdrom,cdrom\"}",
		    "field 'boot': names a device twice, got \"cdrom,cdrom\"");
	parse_fails("{\"name\": \"n\", \"cdrom\": \"/a.iso\", \"boot\": [\"floppy\"]}",
		    "field 'boot': must list \"disk\", \"cdrom\" and \"network\", each at most "
		    "once, got an array");
	parse_fails("{\"name\": \"n\", \"cdrom\": \"/a.img\", \"disks\": [\"/a.img\"]}",
		    "field 'cdrom': is also one of the disks");
	parse_fails("{\"name\": \"n\", \"machine\": \"none\", \"firmware\": \"uefi\"}",
		    "field 'firmware': cannot be used with machine 'none' (it runs no firmware)");
}

Test(config, nic_mac_set_once_unique)
{
	struct qemu_config *c = parse_ok("{\"name\": \"n\", \"nics\": [\"user\", "
					 "\"user,mac=52:54:00:00:00:02\"]}");

	cr_assert_null(qemu_config_nic_mac(c, 0));
	cr_assert_eq(qemu_config_set_nic_mac(c, 0, "52:54:00:00:00:02"), -EEXIST);
	cr_assert_eq(qemu_config_set_nic_mac(c, 0, "ff:ff:ff:ff:ff:ff"), -EINVAL);
	cr_assert_eq(qemu_config_set_nic_mac(c, 0, "52:54:00:AA:00:01"), 0);
	cr_assert_str_eq(qemu_config_nic_mac(c, 0), "52:54:00:aa:00:01");
	qemu_config_free(c);
}

/* ---- the field table: what docs/API.md and api.info show is what is accepted ---- */

static json_t *example(const struct qemu_config_field *f)
{
	json_error_t jerr;
	json_t *v = json_loads(f->example, JSON_DECODE_ANY, &jerr);

	cr_assert(v, "field '%s': example %s is not JSON: %s", f->key, f->example, jerr.text);
	return v;
}

/* The config of every top-level field's example, which must form a valid config. */
static json_t *examples_config(void)
{
	json_t *cfg = json_object();

	for (size_t i = 0; i < qemu_config_field_count(); i++) {
		const struct qemu_config_field *f = qemu_config_field(i);

		if (!strchr(f->key, '.'))
			json_object_set_new(cfg, f->key, example(f));
	}
	return cfg;
}

static int check(json_t *cfg, char *err, size_t errlen)
{
	struct qemu_config *c = NULL;
	int r = qemu_config_from_json(cfg, &c, err, errlen);

	qemu_config_free(c);
	return r;
}

static const struct qemu_config_field *row(const char *key)
{
	for (size_t i = 0; i < qemu_config_field_count(); i++)
		if (!strcmp(qemu_config_field(i)->key, key))
			return qemu_config_field(i);
	return NULL;
}

/* Every key of obj has a row "PREFIXkey". */
static void keys_documented(const json_t *obj, const char *prefix)
{
	const char *key;
	json_t *v;
	char full[128];

	json_object_foreach((json_t *)obj, key, v) {
		snprintf(full, sizeof(full), "%s%s", prefix, key);
		cr_expect(row(full), "'%s' is accepted (the canonical form has it) but not "
			  "documented", full);
	}
}

Test(config_table, every_example_passes_and_every_accepted_key_is_documented)
{
	json_t *cfg = examples_config(), *canon;
	struct qemu_config *c = NULL;
	char err[256] = "";

	cr_assert_eq(qemu_config_from_json(cfg, &c, err, sizeof(err)), 0,
		     "the documented examples together are refused: %s", err);
	/* The other side: every key of the canonical form (defaults filled in) has a row. */
	canon = qemu_config_to_json(c);
	keys_documented(canon, "");
	for (size_t i = 0; i < json_array_size(json_object_get(canon, "disks")); i++)
		keys_documented(json_array_get(json_object_get(canon, "disks"), i), "disks[].");
	for (size_t i = 0; i < json_array_size(json_object_get(canon, "nics")); i++)
		keys_documented(json_array_get(json_object_get(canon, "nics"), i), "nics[].");
	keys_documented(json_object_get(canon, "limits"), "limits.");
	json_decref(canon);
	qemu_config_free(c);
	json_decref(cfg);
}

Test(config_table, object_keys_come_from_the_table)
{
	static const struct {
		const char *prefix, *field;
	} objs[] = { { "disks[].", "disks" }, { "nics[].", "nics" }, { "limits.", "limits" } };
	char err[256];

	for (size_t o = 0; o < sizeof(objs) / sizeof(objs[0]); o++) {
		json_t *cfg = examples_config(), *obj = json_object();
		size_t n = strlen(objs[o].prefix);
		bool array = objs[o].prefix[n - 2] == ']';

		/* Every documented key of the object, with its example: accepted. */
		for (size_t i = 0; i < qemu_config_field_count(); i++) {
			const struct qemu_config_field *f = qemu_config_field(i);

			if (strncmp(f->key, objs[o].prefix, n) != 0)
				continue;
			if (!strcmp(f->key, "nics[].bridge"))
				continue;       /* bridge NICs only: its own check below */
			json_object_set_new(obj, f->key + n, example(f));
		}
		json_object_set_new(cfg, objs[o].field, array ? json_pack("[O]", obj) :
							       json_incref(obj));
		cr_expect_eq(check(cfg, err, sizeof(err)), 0, "%s from its rows: %s",
			     objs[o].field, err);
		/* A key without a row: refused, by name. */
		json_object_set_new(obj, "undocumented", json_true());
		json_object_set_new(cfg, objs[o].field, array ? json_pack("[O]", obj) :
							       json_incref(obj));
		cr_expect_eq(check(cfg, err, sizeof(err)), -EINVAL);
		cr_expect(strstr(err, "unknown field") && strstr(err, "undocumented"), "%s", err);
		json_decref(obj);
		json_decref(cfg);
	}
	{
		json_t *cfg = examples_config();

		json_object_set_new(cfg, "nics", json_pack("[{s:s, s:o}]", "type", "bridge",
							   "bridge", example(row("nics[].bridge"))));
		cr_expect_eq(check(cfg, err, sizeof(err)), 0, "bridge NIC: %s", err);
		json_object_set_new(cfg, "undocumented", json_true());
		cr_expect_eq(check(cfg, err, sizeof(err)), -EINVAL);
		cr_expect(strstr(err, "unknown field 'undocumented'"), "%s", err);
		json_decref(cfg);
	}
}

/* A value of n for field key (a count: an array of n distinct items). */
static json_t *value_of(const char *key, long long n)
{
	json_t *a;

	if (strcmp(key, "disks") && strcmp(key, "nics"))
		return json_integer(n);
	a = json_array();
	for (long long i = 0; i < n; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/srv/vm/d%lld.img", i);
		json_array_append_new(a, !strcmp(key, "disks") ? json_string(path) :
							   json_string("user"));
	}
	return a;
}

Test(config_table, documented_ranges_are_the_checked_ones)
{
	char err[256];
	unsigned ranges = 0;

	for (size_t i = 0; i < qemu_config_field_count(); i++) {
		const struct qemu_config_field *f = qemu_config_field(i);
		const char *dot = strchr(f->key, '.');
		long long probe[4] = { f->min, f->max, f->min - 1, f->max + 1 };

		if (!f->has_range)
			continue;
		ranges++;
		for (int k = 0; k < 4; k++) {
			json_t *cfg;

			if (probe[k] < 0)
				continue;       /* a count below 0 cannot be written */
			cfg = json_pack("{s:s, s:s}", "name", "r1", "machine", "pc");
			if (dot)
				json_object_set_new(cfg, "limits",
						    json_pack("{s:o}", dot + 1, value_of(f->key,
											  probe[k])));
			else
				json_object_set_new(cfg, f->key, value_of(f->key, probe[k]));
			if (k < 2)
				cr_expect_eq(check(cfg, err, sizeof(err)), 0, "%s = %lld (documented "
					     "bound) refused: %s", f->key, probe[k], err);
			else
				cr_expect_eq(check(cfg, err, sizeof(err)), -EINVAL, "%s = %lld (out "
					     "of the documented range) accepted", f->key, probe[k]);
			json_decref(cfg);
		}
	}
	cr_expect_geq(ranges, 6);
}

Test(config_table, required_rows_are_required)
{
	char err[256];
	json_t *cfg = examples_config();

	cr_assert(row("name") && row("name")->required);
	json_object_del(cfg, "name");
	cr_expect_eq(check(cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "'name': required"), "%s", err);
	json_decref(cfg);
	cfg = examples_config();
	json_object_set_new(cfg, "disks", json_pack("[{s:b}]", "readonly", 1));
	cr_expect_eq(check(cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "disks[0].path': required"), "%s", err);
	json_decref(cfg);
	for (size_t i = 0; i < qemu_config_field_count(); i++) {
		const struct qemu_config_field *f = qemu_config_field(i);

		cr_expect(f->type && f->rule && f->example, "row '%s' is not fully documented",
			  f->key);
	}
}

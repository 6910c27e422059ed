/* SPDX-License-Identifier: MIT */
/*
 * qemu/config: what a user asks a domain to be, checked once, at the door.
 *
 * A struct qemu_config is parsed from the JSON object the CLI sends
 * (qemu_config_from_json) and written back in canonical form
 * (qemu_config_to_json: memory as integer MiB, every default filled in).
 * Every value is checked here so that later stages (the command line in
 * qemu/qemu.h, the daemon's state files) can rely on it:
 *
 *   field      type                          default               rule
 *   name       string (required)             -                     CORRAL_NAME_RULE
 *   uuid       string                        unset (caller makes   8-4-4-4-12 hex, stored in
 *                                            one)                  lower case
 *   memory     integer MiB, or string        256                   16 MiB .. 1 TiB; suffixes
 *              "512", "512M", "512MiB",                            M/MiB, G/GiB, T/TiB, any
 *              "2G", "1TiB"                                        case; binary units
 *   vcpus      integer                       1                     1 .. 256
 *   machine    string                        "pc"                  1..64 of [A-Za-z0-9_.-]
 *   accel      string                        "auto"                auto | kvm | tcg
 *   emulator   string                        "qemu-system-x86_64"  absolute path, or a bare
 *                                                                  command name (PATH lookup)
 *   kernel     string                        none                  absolute path
 *   initrd     string                        none                  absolute path; needs kernel
 *   cmdline    string                        none                  needs kernel; < 4096 bytes
 *   disks      array of {"path", "readonly", []                    at most 16; path absolute
 *              "format"} or "PATH[,ro]"                            and unique; format raw |
 *                                                                  qcow2, or absent: the
 *                                                                  daemon reads the image's
 *                                                                  header (qemu/image.h) and
 *                                                                  records what it found;
 *                                                                  readonly default false
 *   reboot     string                        "reset"               reset | acpi
 *   limits     {"memory": size, "cpu_weight": see below            memory 32 MiB .. 2 TiB
 *              int, "cpus": number}                                 (default: the guest's
 *                                                                  memory plus a quarter of
 *                                                                  it, at least 256 MiB);
 *                                                                  cpu_weight 1..10000
 *                                                                  (default 100); cpus
 *                                                                  0.01..256 (default: no
 *                                                                  cap)
 *   nics       array of {"type", "mac",      []                    at most 8; type user |
 *              "hostfwd", "bridge"}, or                            bridge; mac a unicast
 *              "user[,hostfwd=R]...[,mac=M]"                       address, unique (the
 *              | "bridge=BR[,mac=M]"                               daemon makes one at
 *                                                                  define when absent);
 *                                                                  hostfwd (user only, at
 *                                                                  most 16): "tcp|udp:
 *                                                                  [ADDR]:PORT-[ADDR]:PORT",
 *                                                                  IPv4; bridge (bridge
 *                                                                  only): an interface name
 *   firmware   string                        "bios"                bios | uefi
 *   cdrom      string                        none                  absolute path (an ISO,
 *                                                                  read-only)
 *   boot       array of "disk", "cdrom",     none: disks, then     each at most once, and
 *              "network", or "cdrom,disk"    the cdrom             only devices the domain
 *                                                                  has
 *
 * JSON null counts as absent.  No string may hold a control character,
 * anywhere.  The disk shorthand "PATH,ro" is what `--disk PATH[,ro]`
 * passes; a path that itself ends in ",ro" needs the object form.
 *
 * Machine "none" (a QEMU with no board, used by tests and probes) has no
 * CPU, no bus and no firmware loader, so with it vcpus must be 1 and
 * kernel, initrd, disks, nics, cdrom and firmware "uefi" are refused here
 * rather than by QEMU later.
 *
 * "reboot" does not change the command line: it tells the daemon how to
 * carry out a host-requested reboot ("reset": QMP system_reset at once;
 * "acpi": ask the guest through ACPI and let it restart itself).
 *
 * Errors name the field and the reason, and show the offending value
 * (quoted, escaped, cut at 64 bytes), e.g.
 *   field 'memory': expected an integer (MiB) or a string like "512M", got true
 *   field 'disks[1].path': must be an absolute path, got "disk.img"
 *   unknown field 'foo'
 *
 * Threading: a config has no lock.  It is immutable once built, except for
 * qemu_config_set_uuid(), which its owner calls before sharing it; after
 * that, any thread may call the getters.  The module never prints.
 */
#ifndef CORRAL_QEMU_CONFIG_H
#define CORRAL_QEMU_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QEMU_MEMORY_MIN_MIB     16u
#define QEMU_MEMORY_MAX_MIB     (1024u * 1024)  /* 1 TiB */
#define QEMU_MEMORY_DEFAULT_MIB 256u
#define QEMU_VCPUS_MAX          256u
#define QEMU_MACHINE_MAX        64u
#define QEMU_CMDLINE_MAX        4096u
#define QEMU_DISKS_MAX          16u
#define QEMU_UUID_LEN           36u     /* without the NUL */
#define QEMU_NICS_MAX           8u
#define QEMU_HOSTFWD_MAX        16u
#define QEMU_MAC_LEN            17u     /* "52:54:00:12:34:56", without the NUL */

struct qemu_config;

/*
 * Parse and check a domain config.  Any thread.
 *
 * in must be a JSON object; it is borrowed.  On success a new config goes
 * to *ret (free with qemu_config_free).  Returns 0, -EINVAL with a reason
 * in err (the first problem found: unknown fields first, then the fields
 * in the order of the table above, then rules between fields), or -ENOMEM.
 * err may be NULL; errlen of 256 holds every message in full.
 */
int qemu_config_from_json(const json_t *in, struct qemu_config **ret, char *err, size_t errlen);

/*
 * The canonical form: every field with its value or default (memory as
 * integer MiB, disks as objects), uuid only if set, kernel, initrd and
 * cmdline only if given.  qemu_config_from_json() of it gives an equal
 * config.  A new reference, or NULL when out of memory.  Any thread.
 */
json_t *qemu_config_to_json(const struct qemu_config *c);

/* Accepts NULL.  Owner. */
void qemu_config_free(struct qemu_config *c);

/*
 * Set the UUID (the caller generates one when the user gave none).  Stored
 * in lower case.  0, or -EINVAL if uuid is not 8-4-4-4-12 hex.  Owner, before
 * the config is shared.
 */
int qemu_config_set_uuid(struct qemu_config *c, const char *uuid);

/*
 * Getters.  Any thread.  Strings live as long as the config; optional ones
 * are NULL when absent.  accel, reboot and disk formats are one of the
 * words in the table above.
 */
const char *qemu_config_name(const struct qemu_config *c);
bool qemu_config_has_uuid(const struct qemu_config *c);
const char *qemu_config_uuid(const struct qemu_config *c);       /* NULL if unset */
uint64_t qemu_config_memory_mib(const struct qemu_config *c);
unsigned int qemu_config_vcpus(const struct qemu_config *c);
const char *qemu_config_machine(const struct qemu_config *c);
const char *qemu_config_accel(const struct qemu_config *c);      /* auto, kvm, tcg */
const char *qemu_config_emulator(const struct qemu_config *c);
const char *qemu_config_kernel(const struct qemu_config *c);
const char *qemu_config_initrd(const struct qemu_config *c);
const char *qemu_config_cmdline(const struct qemu_config *c);
const char *qemu_config_reboot(const struct qemu_config *c);     /* reset, acpi */

/* Disks, in the order given; i < qemu_config_disk_count() or BUG. */
size_t qemu_config_disk_count(const struct qemu_config *c);
const char *qemu_config_disk_path(const struct qemu_config *c, size_t i);
bool qemu_config_disk_readonly(const struct qemu_config *c, size_t i);
/* raw, qcow2, or NULL while not declared nor probed. */
const char *qemu_config_disk_format(const struct qemu_config *c, size_t i);
/*
 * The limits QEMU's cgroup gets (see the table): memory in MiB (given or
 * the default), CPU weight, and a CPU cap in percent of one CPU (0: none).
 */
uint64_t qemu_config_limit_memory_mib(const struct qemu_config *c);
unsigned int qemu_config_limit_cpu_weight(const struct qemu_config *c);
/* How often to read its statistics: its own stats_interval_ms, else daemon_ms. */
uint64_t qemu_config_stats_interval_ms(const struct qemu_config *c, uint64_t daemon_ms);
unsigned int qemu_config_limit_cpu_pct(const struct qemu_config *c);

/* NICs, in the order given; i < qemu_config_nic_count() or BUG. */
size_t qemu_config_nic_count(const struct qemu_config *c);
const char *qemu_config_nic_type(const struct qemu_config *c, size_t i);   /* user, bridge */
const char *qemu_config_nic_mac(const struct qemu_config *c, size_t i);    /* NULL: not yet */
const char *qemu_config_nic_bridge(const struct qemu_config *c, size_t i); /* NULL: user */
size_t qemu_config_nic_hostfwd_count(const struct qemu_config *c, size_t i);
const char *qemu_config_nic_hostfwd(const struct qemu_config *c, size_t i, size_t j);
const char *qemu_config_firmware(const struct qemu_config *c);     /* bios, uefi */
const char *qemu_config_cdrom(const struct qemu_config *c);        /* NULL if none */
/* The boot order as given ("disk", "cdrom", "network"); 0 when not given. */
size_t qemu_config_boot_count(const struct qemu_config *c);
const char *qemu_config_boot(const struct qemu_config *c, size_t i);

/*
 * The config's fields, documented: the validator's own table (the keys it
 * accepts, which are required, the integer ranges it checks), which
 * docs/API.md and api.info show.  Keys of objects in a field are written
 * "disks[].path", "limits.memory".  Any thread; static strings.
 */
struct qemu_config_field {
	const char *key;
	const char *type;               /* as a client writes it */
	const char *def;                /* the default, as text; NULL: none (or required) */
	const char *rule;               /* what is accepted */
	const char *example;            /* JSON text of a value that passes */
	bool required;
	bool has_range;                 /* an integer (or count of items) from min to max */
	long long min, max;
	const char *unit;               /* of min and max: "MiB", "items", or NULL */
};

size_t qemu_config_field_count(void);
/* Row i < qemu_config_field_count(). */
const struct qemu_config_field *qemu_config_field(size_t i);

/* Is s a unicast MAC address "xx:xx:xx:xx:xx:xx" (not all zero)?  Any thread. */
bool qemu_mac_valid(const char *s);
/* Is s a port forward "tcp|udp:[ADDR]:PORT-[ADDR]:PORT"?  Any thread. */
bool qemu_hostfwd_valid(const char *s);

/*
 * Give NIC i its MAC address (the daemon's, at define).  0, -EINVAL (not a
 * unicast MAC), -EEXIST (another NIC has it).  Owner.
 */
int qemu_config_set_nic_mac(struct qemu_config *c, size_t i, const char *mac);
/* Replace the emulator with the path it resolved to.  0 or -ENOMEM.  Owner. */
int qemu_config_set_emulator(struct qemu_config *c, const char *path);
/* Record a probed format ("raw" or "qcow2"); -EINVAL for others.  Owner. */
int qemu_config_set_disk_format(struct qemu_config *c, size_t i, const char *format);

#endif /* CORRAL_QEMU_CONFIG_H */

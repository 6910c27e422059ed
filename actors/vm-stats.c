/* SPDX-License-Identifier: MIT */
/*
 * vm-stats: the latest statistics of each domain's QEMU, as the monitor
 * actor's rounds deliver them (mon_set_poll()), published through RCU so
 * that a query reads them without waiting for anything.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/vm-internal.h"
#include "common/rcu.h"
#include "common/util.h"

static void pubstats_free_rcu(struct rcu_head *head)
{
	struct vm_pubstats *p = container_of(head, struct vm_pubstats, rcu);

	crcu_reclaim_begin(head);
	json_decref(p->data);
	free(p->memo);
	free(p);
}

static void replace(struct vm *vm, struct vm_pubstats *p)
{
	struct vm_pubstats *old = vm->stats;

	crcu_assign_pointer(vm->stats, p);
	if (old)
		crcu_call(&old->rcu, pubstats_free_rcu);
}

/*
 * A small sysfs file (an interface's address or a counter) into buf.
 * sysfs answers from memory: no disk, nothing that waits for another party.
 */
static int sysfs_read(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Whether interface ifname has the host-side address want (lower case). */
static bool if_has_address(const char *ifname, const char *want)
{
	char path[96], addr[64];

	if (strlen(ifname) >= 16)       /* IFNAMSIZ: no interface's name */
		return false;
	snprintf(path, sizeof(path), "/sys/class/net/%.15s/address", ifname);
	return sysfs_read(path, addr, sizeof(addr)) == 0 && !strcmp(addr, want);
}

/*
 * The host tap device of a bridged NIC: corrald makes it with the guest's
 * MAC address, first octet 0xfe (qemu/tap.c), and names it crlN.  Found
 * once by that address, then remembered and checked on every round.
 */
static const char *nic_ifname(struct vm *vm, const char *mac)
{
	char want[18];
	const char *known;
	DIR *dir;
	struct dirent *de;

	if (strlen(mac) != 17)
		return NULL;
	snprintf(want, sizeof(want), "fe%s", mac + 2);
	for (char *p = want; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	known = json_string_value(json_object_get(vm->nic_ifnames, want));
	if (known && if_has_address(known, want))
		return known;
	dir = opendir("/sys/class/net");
	if (!dir)
		return NULL;
	while ((de = readdir(dir))) {
		if (strncmp(de->d_name, "crl", 3) || !if_has_address(de->d_name, want))
			continue;
		if (!vm->nic_ifnames)
			vm->nic_ifnames = json_object();
		json_object_set_new(vm->nic_ifnames, want, json_string(de->d_name));
		break;
	}
	closedir(dir);
	return json_string_value(json_object_get(vm->nic_ifnames, want));
}

static void nic_counter(json_t *e, const char *ifname, const char *file, const char *key)
{
	char path[128], buf[32], *end;
	unsigned long long v;

	snprintf(path, sizeof(path), "/sys/class/net/%.15s/statistics/%s", ifname, file);
	if (sysfs_read(path, buf, sizeof(buf)) < 0)
		return;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return;
	json_object_set_new(e, key, json_integer((json_int_t)v));
}

/*
 * Each NIC of the running guest, with its traffic as the guest sees it
 * when corral can read it: a bridged NIC's tap device counts on the host
 * side, so what it transmits the guest received.  QEMU's user networking
 * counts nothing a client can read: its NICs have no counters.
 */
static json_t *nics_stats(struct vm *vm)
{
	static const char *const pairs[][2] = {
		{ "tx_bytes", "rx_bytes" },     { "rx_bytes", "tx_bytes" },
		{ "tx_packets", "rx_packets" }, { "rx_packets", "tx_packets" },
		{ "tx_dropped", "rx_dropped" }, { "rx_dropped", "tx_dropped" },
	};
	json_t *out = json_array(), *nic;
	size_t i;

	if (!out)
		return NULL;
	json_array_foreach(vm_live_nics(vm), i, nic) {
		const char *mac = json_string_value(json_object_get(nic, "mac"));
		const char *type = json_string_value(json_object_get(nic, "type"));
		const char *dev = json_string_value(json_object_get(nic, "device"));
		const char *ifname = NULL;
		json_t *e;

		if (!mac || !type)
			continue;
		e = json_pack("{s:s, s:s, s:s}", "device", dev ? dev : "", "mac", mac, "type", type);
		if (!e)
			continue;
		if (!strcmp(type, "bridge"))
			ifname = nic_ifname(vm, mac);
		if (ifname) {
			json_object_set_new(e, "host_device", json_string(ifname));
			for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++)
				nic_counter(e, ifname, pairs[k][0], pairs[k][1]);
		}
		json_array_append_new(out, e);
	}
	return out;
}

void vm_stats_publish(struct domain *d, json_t *data)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p = calloc(1, sizeof(*p));
	json_int_t at = json_integer_value(json_object_get(data, "collected_ns"));

	if (!p || !vm || at <= 0) {
		/* Not published: the previous figures stay, and age. */
		free(p);
		json_decref(data);
		return;
	}
	json_object_del(data, "collected_ns");
	json_object_set_new(data, "nics", nics_stats(vm));
	p->data = data;
	p->collected_ns = (uint64_t)at;
	p->interval_ns = vm->poll_ns;
	replace(vm, p);
}

void vm_stats_clear(struct domain *d)
{
	struct vm *vm = vm_of(d);

	if (vm) {
		/* Another QEMU: its taps are new ones. */
		json_decref(vm->nic_ifnames);
		vm->nic_ifnames = NULL;
	}

	if (vm && vm->stats)
		replace(vm, NULL);
}

void vm_stats_free(struct vm *vm)
{
	json_decref(vm->nic_ifnames);
	vm->nic_ifnames = NULL;
	/* The domain is freed after a grace period: nobody reads vm->stats. */
	if (vm->stats) {
		json_decref(vm->stats->data);
		free(vm->stats->memo);
		free(vm->stats);
		vm->stats = NULL;
	}
}

const json_t *vm_stats_rcu(struct domain *d, uint64_t now, uint64_t *age_ns, bool *stale)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p;

	*age_ns = 0;
	*stale = false;
	if (!vm)
		return NULL;
	p = crcu_dereference(vm->stats);
	if (!p)
		return NULL;
	*age_ns = now > p->collected_ns ? now - p->collected_ns : 0;
	*stale = dom_snap_rcu(d)->mon != DOM_MON_OK ||
		 *age_ns > 2 * p->interval_ns + NSEC_PER_SEC;
	return p->data;
}

void vm_stats_prefetch_rcu(struct domain *d, int step)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p;

	if (!vm)
		return;
	if (step == 0) {
		__builtin_prefetch(&vm->stats);
		return;
	}
	p = crcu_dereference(vm->stats);
	if (!p)
		return;
	if (step == 1) {
		__builtin_prefetch(p);
	} else {
		void *memo = __atomic_load_n(&p->memo, __ATOMIC_RELAXED);

		if (memo)
			__builtin_prefetch(memo);
	}
}

void **vm_stats_memo_rcu(struct domain *d, const json_t *figures)
{
	struct vm *vm = vm_of(d);
	struct vm_pubstats *p = vm ? crcu_dereference(vm->stats) : NULL;

	/* Only the publication whose figures the caller holds. */
	return p && p->data == figures ? &p->memo : NULL;
}

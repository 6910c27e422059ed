/* SPDX-License-Identifier: MIT */
/*
 * cgroup: one control group per QEMU, under one parent for all of them, so
 * that a VM gets the memory and CPU its definition allows and the guests
 * together compete with the daemon as one party, however busy they are.
 *
 * Layouts:
 *   - cgroup v2 (/sys/fs/cgroup is cgroup2): PARENT/NAME with memory.max,
 *     cpu.weight and cpu.max; the parent gets "+cpu +memory" in
 *     cgroup.subtree_control;
 *   - cgroup v1, and the hybrid layout (v1 controllers, plus an unified
 *     tree without them at /sys/fs/cgroup/unified): memory/PARENT/NAME
 *     with memory.limit_in_bytes; in the cpu hierarchy the vCPU threads go
 *     to cpu/PARENT/vcpu/NAME (cpu.shares, cpu.cfs_quota_us) and QEMU's
 *     other threads to cpu/PARENT/emu/NAME, emu weighing ten times vcpu:
 *     a monitor is answered however busy the guests' vCPUs are (v2 has one
 *     hierarchy for both controllers and cannot split threads across VMs
 *     this way);
 *   - neither usable (not root, no controllers): no cgroups; cg_open() says
 *     why and every other call does nothing.
 *
 * The parent's CPU weight is the default (v2 100, v1 1024): all the guests
 * together weigh as much as one busy process of the daemon's.
 *
 * Every call writes to cgroupfs, which does not wait for anything else:
 * still, they run where blocking is allowed (offload threads, start-up).
 * No state changes after cg_open(): any thread.
 */
#ifndef CORRAL_COMMON_CGROUP_H
#define CORRAL_COMMON_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum cg_mode { CG_NONE = 0, CG_V2, CG_V1 };

struct cg;

struct cg_limits {
	uint64_t memory_bytes;          /* 0: no limit */
	uint32_t cpu_weight;            /* 1..10000, 100 the default share */
	uint32_t cpu_max_pct;           /* 0: no cap; 150: one and a half CPUs */
};

/*
 * Find the layout and create parent (a name, no '/'; "none" turns control
 * groups off) in it.  Always gives
 * a struct cg: in mode CG_NONE when cgroups cannot be used, with the reason
 * in why (for the log).  Returns -ENOMEM only.
 */
int cg_open(const char *parent, struct cg **ret, char *why, size_t whylen);
/* Remove the parent if it is empty, free.  Accepts NULL. */
void cg_close(struct cg *cg);

enum cg_mode cg_mode(const struct cg *cg);
const char *cg_mode_name(const struct cg *cg);

/* Make NAME's group (again) and set its limits.  0 or -errno with err. */
int cg_vm_create(struct cg *cg, const char *name, const struct cg_limits *l, char *err,
		 size_t errlen);
/* Move pid (and all its threads) into NAME's group. */
int cg_vm_attach(struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen);
/*
 * v1: move pid's vCPU threads to NAME's vcpu group.  Call once QEMU has made
 * them (its monitor answers; the guest has not run yet).  0 or -errno.
 */
int cg_vm_split_vcpus(struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen);
/*
 * Remove NAME's group, waiting a little (bounded, about a second) while
 * the kernel still counts a process that has just exited.  0, -ENOENT (it
 * did not exist), or -errno.
 */
int cg_vm_remove(struct cg *cg, const char *name);
/* Does NAME's group exist?  (Tests, start-up clean-up.) */
bool cg_vm_exists(struct cg *cg, const char *name);
/*
 * Call fn for every group under the parent (start-up: the ones no QEMU
 * uses any more are removed).
 */
void cg_for_each(struct cg *cg, void (*fn)(const char *name, void *arg), void *arg);
/* Where NAME's group is (the memory hierarchy's, in v1), for info and tests. */
int cg_vm_path(const struct cg *cg, const char *name, char *buf, size_t len);

#endif /* CORRAL_COMMON_CGROUP_H */

/* SPDX-License-Identifier: MIT */
/*
 * Control groups for QEMUs.  See cgroup.h.
 */
#include "common/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define CGROUP2_MAGIC 0x63677270
#define ROOT          "/sys/fs/cgroup"
#define V1_PERIOD_US  100000

/*
 * v1: a QEMU's vCPU threads and its other threads (the main loop that
 * answers QMP, I/O) sit in two groups of the cpu hierarchy, under two
 * parents weighted EMU_SHARES to VCPU_SHARES: however busy every guest's
 * vCPUs are, a monitor command is answered as soon as its QEMU can run.
 */
#define EMU_SHARES  "10240"
#define VCPU_SHARES "1024"

struct cg {
	enum cg_mode mode;
	char parent[128];
	/* v2: one directory; v1: the cpu and the memory hierarchies' parents. */
	char dir[PATH_MAX];             /* v2, and v1's memory */
	char cpu_dir[PATH_MAX];         /* v1: PARENT; emu/ and vcpu/ beneath */
};

enum cg_mode cg_mode(const struct cg *cg)
{
	return cg ? cg->mode : CG_NONE;
}

const char *cg_mode_name(const struct cg *cg)
{
	switch (cg_mode(cg)) {
	case CG_V2: return "v2";
	case CG_V1: return "v1";
	case CG_NONE: break;
	}
	return "none";
}

static int write_file(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX + 64];
	size_t len = strlen(val);
	ssize_t n;
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = write(fd, val, len);
	if (n < 0)
		r = -errno;
	else if ((size_t)n != len)
		r = -EIO;
	close(fd);
	return r;
}

static bool readable(const char *path)
{
	return access(path, R_OK) == 0;
}

static bool has_controllers(const char *root, const char *want)
{
	char path[PATH_MAX], buf[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (const char *w = want; *w;) {
		size_t len = strcspn(w, " ");
		char word[32];
		const char *p = buf;
		bool found = false;

		snprintf(word, sizeof(word), "%.*s", (int)len, w);
		while ((p = strstr(p, word))) {
			if ((p == buf || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\n' ||
							   !p[len])) {
				found = true;
				break;
			}
			p += len;
		}
		if (!found)
			return false;
		w += len;
		while (*w == ' ')
			w++;
	}
	return true;
}

static int make(const char *dir)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int cg_open(const char *parent, struct cg **ret, char *why, size_t whylen)
{
	struct cg *cg = calloc(1, sizeof(*cg));
	struct statfs sf;
	int r;

	if (!cg)
		return -ENOMEM;
	*ret = cg;
	snprintf(cg->parent, sizeof(cg->parent), "%s", parent);
	if (!strcmp(parent, "none")) {
		snprintf(why, whylen, "disabled (cgroup_parent = none)");
		return 0;
	}
	if (geteuid() != 0) {
		snprintf(why, whylen, "not root: QEMUs share the daemon's own cgroup");
		return 0;
	}
	if (statfs(ROOT, &sf) == 0 && sf.f_type == CGROUP2_MAGIC) {
		if (!has_controllers(ROOT, "cpu memory")) {
			snprintf(why, whylen, "cgroup v2 without the cpu and memory controllers");
			return 0;
		}
		snprintf(cg->dir, sizeof(cg->dir), ROOT "/%s", parent);
		/* The root may have them enabled already (systemd does). */
		write_file(ROOT, "cgroup.subtree_control", "+cpu +memory");
		r = make(cg->dir);
		if (r == 0)
			r = write_file(cg->dir, "cgroup.subtree_control", "+cpu +memory");
		if (r < 0) {
			snprintf(why, whylen, "cannot set up %s: %s", cg->dir, strerror(-r));
			return 0;
		}
		cg->mode = CG_V2;
		return 0;
	}
	/* v1, or hybrid: the controllers live in their own hierarchies. */
	if (!readable(ROOT "/cpu/cpu.shares") || !readable(ROOT "/memory/memory.limit_in_bytes")) {
		snprintf(why, whylen, "no cgroup v2 with controllers and no v1 cpu and memory "
			 "hierarchies under " ROOT);
		return 0;
	}
	snprintf(cg->dir, sizeof(cg->dir), ROOT "/memory/%s", parent);
	snprintf(cg->cpu_dir, sizeof(cg->cpu_dir), ROOT "/cpu/%s", parent);
	r = make(cg->dir);
	if (r == 0)
		r = make(cg->cpu_dir);
	if (r == 0) {
		char sub[PATH_MAX + 8];

		snprintf(sub, sizeof(sub), "%s/emu", cg->cpu_dir);
		r = make(sub);
		if (r == 0)
			r = write_file(sub, "cpu.shares", EMU_SHARES);
		snprintf(sub, sizeof(sub), "%s/vcpu", cg->cpu_dir);
		if (r == 0)
			r = make(sub);
		if (r == 0)
			r = write_file(sub, "cpu.shares", VCPU_SHARES);
	}
	if (r < 0) {
		snprintf(why, whylen, "cannot create %s: %s", parent, strerror(-r));
		return 0;
	}
	/* Hierarchical accounting, so the parent's usage is the guests' sum. */
	write_file(cg->dir, "memory.use_hierarchy", "1");
	cg->mode = CG_V1;
	return 0;
}

void cg_close(struct cg *cg)
{
	if (!cg)
		return;
	if (cg->mode != CG_NONE)
		rmdir(cg->dir);
	if (cg->mode == CG_V1) {
		char sub[PATH_MAX + 8];

		snprintf(sub, sizeof(sub), "%s/emu", cg->cpu_dir);
		rmdir(sub);
		snprintf(sub, sizeof(sub), "%s/vcpu", cg->cpu_dir);
		rmdir(sub);
		rmdir(cg->cpu_dir);
	}
	free(cg);
}

/* NAME's groups: memory (and v2's only one), v1's vCPU and other-thread cpu groups. */
static void vm_dirs3(const struct cg *cg, const char *name, char *mem, char *vcpu, char *emu,
		     size_t len)
{
	snprintf(mem, len, "%s/%s", cg->dir, name);
	if (cg->mode == CG_V1) {
		snprintf(vcpu, len, "%s/vcpu/%s", cg->cpu_dir, name);
		snprintf(emu, len, "%s/emu/%s", cg->cpu_dir, name);
	} else {
		snprintf(vcpu, len, "%s", mem);
		snprintf(emu, len, "%s", mem);
	}
}

static void vm_dirs(const struct cg *cg, const char *name, char *mem, char *cpu, size_t len)
{
	char emu[PATH_MAX + 80];

	vm_dirs3(cg, name, mem, cpu, emu, len < sizeof(emu) ? len : sizeof(emu));
}

int cg_vm_path(const struct cg *cg, const char *name, char *buf, size_t len)
{
	if (!cg || cg->mode == CG_NONE)
		return -ENOENT;
	snprintf(buf, len, "%s/%s", cg->dir, name);
	return 0;
}

static int seterr(char *err, size_t errlen, int r, const char *what, const char *dir)
{
	snprintf(err, errlen, "cgroup: cannot %s %s: %s", what, dir, strerror(-r));
	return r;
}

int cg_vm_create(struct cg *cg, const char *name, const struct cg_limits *l, char *err,
		 size_t errlen)
{
	char mem[PATH_MAX + 80], cpu[PATH_MAX + 80], v[64];
	uint32_t weight = l->cpu_weight ? l->cpu_weight : 100;
	int r;

	if (!cg || cg->mode == CG_NONE)
		return 0;
	vm_dirs(cg, name, mem, cpu, sizeof(mem));
	r = make(mem);
	if (r < 0)
		return seterr(err, errlen, r, "create", mem);
	if (cg->mode == CG_V2) {
		if (l->memory_bytes)
			snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes);
		else
			snprintf(v, sizeof(v), "max");
		r = write_file(mem, "memory.max", v);
		if (r < 0)
			return seterr(err, errlen, r, "set memory.max in", mem);
		/* No swap behind the limit's back. */
		write_file(mem, "memory.swap.max", l->memory_bytes ? "0" : "max");
		snprintf(v, sizeof(v), "%u", weight);
		r = write_file(mem, "cpu.weight", v);
		if (r < 0)
			return seterr(err, errlen, r, "set cpu.weight in", mem);
		if (l->cpu_max_pct)
			snprintf(v, sizeof(v), "%u %u", l->cpu_max_pct * (V1_PERIOD_US / 100),
				 V1_PERIOD_US);
		else
			snprintf(v, sizeof(v), "max %u", V1_PERIOD_US);
		r = write_file(mem, "cpu.max", v);
		if (r < 0)
			return seterr(err, errlen, r, "set cpu.max in", mem);
		return 0;
	}
	r = make(cpu);
	if (r < 0)
		return seterr(err, errlen, r, "create", cpu);
	{
		char emu[PATH_MAX + 80], m2[PATH_MAX + 80], c2[PATH_MAX + 80];
		uint64_t shares = (uint64_t)weight * 1024 / 100 < 2 ? 2 :
				  (uint64_t)weight * 1024 / 100;

		vm_dirs3(cg, name, m2, c2, emu, sizeof(emu));
		r = make(emu);
		if (r < 0)
			return seterr(err, errlen, r, "create", emu);
		snprintf(v, sizeof(v), "%" PRIu64, shares);
		r = write_file(emu, "cpu.shares", v);
		if (r < 0)
			return seterr(err, errlen, r, "set cpu.shares in", emu);
	}
	if (l->memory_bytes)
		snprintf(v, sizeof(v), "%" PRIu64, l->memory_bytes);
	else
		snprintf(v, sizeof(v), "-1");
	r = write_file(mem, "memory.limit_in_bytes", v);
	if (r < 0)
		return seterr(err, errlen, r, "set memory.limit_in_bytes in", mem);
	/* cpu.weight 100 is cpu.shares 1024 (2 is v1's least). */
	snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)weight * 1024 / 100 < 2 ? 2 :
		 (uint64_t)weight * 1024 / 100);
	r = write_file(cpu, "cpu.shares", v);
	if (r < 0)
		return seterr(err, errlen, r, "set cpu.shares in", cpu);
	snprintf(v, sizeof(v), "%d", V1_PERIOD_US);
	write_file(cpu, "cpu.cfs_period_us", v);
	if (l->cpu_max_pct)
		snprintf(v, sizeof(v), "%u", l->cpu_max_pct * (V1_PERIOD_US / 100));
	else
		snprintf(v, sizeof(v), "-1");
	r = write_file(cpu, "cpu.cfs_quota_us", v);
	if (r < 0)
		return seterr(err, errlen, r, "set cpu.cfs_quota_us in", cpu);
	return 0;
}

/* Write the tid of every thread of pid named "CPU ..." to dir/tasks. */
static int move_vcpus(pid_t pid, const char *dir)
{
	char path[320], comm[64];
	struct dirent *de;
	DIR *dp;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dp = opendir(path);
	if (!dp)
		return -errno;
	while ((de = readdir(dp)) && r == 0) {
		ssize_t n;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (n < 4 || strncmp(comm, "CPU ", 4) != 0)
			continue;
		r = write_file(dir, "tasks", de->d_name);
		if (r == -ESRCH)
			r = 0;          /* the thread ended meanwhile */
	}
	closedir(dp);
	return r;
}

int cg_vm_attach(struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen)
{
	char mem[PATH_MAX + 80], cpu[PATH_MAX + 80], v[32];
	int r;

	if (!cg || cg->mode == CG_NONE)
		return 0;
	vm_dirs(cg, name, mem, cpu, sizeof(mem));
	snprintf(v, sizeof(v), "%d", (int)pid);
	r = write_file(mem, "cgroup.procs", v);
	if (r < 0)
		return seterr(err, errlen, r, "move the QEMU into", mem);
	if (cg->mode == CG_V1) {
		char emu[PATH_MAX + 80], m2[PATH_MAX + 80];

		vm_dirs3(cg, name, m2, cpu, emu, sizeof(emu));
		r = write_file(emu, "cgroup.procs", v);
		if (r < 0)
			return seterr(err, errlen, r, "move the QEMU into", emu);
	}
	return 0;
}

int cg_vm_split_vcpus(struct cg *cg, const char *name, pid_t pid, char *err, size_t errlen)
{
	char mem[PATH_MAX + 80], cpu[PATH_MAX + 80], emu[PATH_MAX + 80];
	int r;

	if (!cg || cg->mode != CG_V1)
		return 0;
	vm_dirs3(cg, name, mem, cpu, emu, sizeof(emu));
	/* "CPU 0/TCG", "CPU 1/KVM": QEMU names its threads (debug-threads=on). */
	r = move_vcpus(pid, cpu);
	if (r < 0)
		return seterr(err, errlen, r, "move the vCPU threads into", cpu);
	return 0;
}

static int rmdir_wait(const char *dir)
{
	for (int i = 0; i < 100; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if (rmdir(dir) == 0)
			return 0;
		if (errno != EBUSY)
			return -errno;
		/* A process that has just exited may still be counted for a moment. */
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

int cg_vm_remove(struct cg *cg, const char *name)
{
	char mem[PATH_MAX + 80], cpu[PATH_MAX + 80];
	int r, r2 = 0;

	if (!cg || cg->mode == CG_NONE)
		return 0;
	{
		char emu[PATH_MAX + 80];

		vm_dirs3(cg, name, mem, cpu, emu, sizeof(emu));
		r = rmdir_wait(mem);
		if (cg->mode == CG_V1) {
			r2 = rmdir_wait(cpu);
			if (r2 == 0 || r2 == -ENOENT)
				r2 = rmdir_wait(emu);
		}
	}
	return r < 0 ? r : r2;
}

bool cg_vm_exists(struct cg *cg, const char *name)
{
	char mem[PATH_MAX + 80], cpu[PATH_MAX + 80];
	struct stat st;

	if (!cg || cg->mode == CG_NONE)
		return false;
	vm_dirs(cg, name, mem, cpu, sizeof(mem));
	return stat(mem, &st) == 0;
}

void cg_for_each(struct cg *cg, void (*fn)(const char *name, void *arg), void *arg)
{
	struct dirent *de;
	DIR *dp;

	if (!cg || cg->mode == CG_NONE || !(dp = opendir(cg->dir)))
		return;
	while ((de = readdir(dp)))
		if (de->d_type == DT_DIR && de->d_name[0] != '.')
			fn(de->d_name, arg);
	closedir(dp);
}

/* SPDX-License-Identifier: MIT */
/*
 * QEMU-backed domains: the environment, definitions (define, redefine,
 * undefine as jobs), the lifecycle jobs, the monitor's notes, and each
 * domain's strand of file operations.  QEMU's process, run records and the
 * recovery at start-up live in vm-proc.c.
 *
 * Everything in struct vm belongs to the domain actor, except pub, which
 * readers load under RCU.
 */
#include "actors/vm-internal.h"
#include "actors/vm-def.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crash.h"
#include "common/durable.h"
#include "common/futex.h"
#include "common/pfor.h"
#include "common/rcu.h"
#include "common/util.h"
#include "qemu/image.h"
#include "qemu/qemu.h"
#include "rpc/json-conv.h"
#include "rpc/rpc.h"

#define DEFINE_ATTEMPTS 4       /* a define that races an undefine of its name */

static const char *const op_names[VM_OP_COUNT] = {
	[VM_OP_START] = "start",     [VM_OP_SHUTDOWN] = "shutdown", [VM_OP_DESTROY] = "destroy",
	[VM_OP_SUSPEND] = "suspend", [VM_OP_RESUME] = "resume",     [VM_OP_RESET] = "reset",
	[VM_OP_REBOOT] = "reboot",   [VM_OP_QMP] = "qmp",           [VM_OP_ATTACH] = "attach",
	[VM_OP_UNDEFINE] = "undefine", [VM_OP_DEFINE] = "define",
	[VM_OP_AUTOSTART] = "autostart",
	[VM_OP_REATTACH] = "reattach", [VM_OP_SETTLE] = "settle",
	[VM_OP_ATTACH_DISK] = "attach-disk", [VM_OP_DETACH_DISK] = "detach-disk",
	[VM_OP_ATTACH_NIC] = "attach-nic", [VM_OP_DETACH_NIC] = "detach-nic",
	[VM_OP_SAVE] = "save", [VM_OP_RESTORE] = "restore",
};

const char *vm_op_name(enum vm_op op)
{
	return (unsigned)op < VM_OP_COUNT ? op_names[op] : "?";
}

int vm_op_from_name(const char *name)
{
	for (int i = 0; i < VM_OP_COUNT; i++)
		if (strcmp(op_names[i], name) == 0)
			return i;
	return -1;
}

static const struct dom_job_ops vm_ops[VM_OP_COUNT];

struct vm_job *vm_held_job(struct domain *d, struct dom_job **ret_job)
{
	struct dom_job *job = dom_holder(d);

	*ret_job = job;
	if (!job || job->ops < vm_ops || job->ops >= vm_ops + VM_OP_COUNT)
		return NULL;
	return job->priv;
}

/* ---- env ------------------------------------------------------------------ */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The allowed emulators: the given list, or /usr/bin/qemu-system-*; real paths. */
static int emulators_init(struct vm_env *env, const char *const *list)
{
	glob_t g = { 0 };
	const char *const *src = list;
	size_t n = 0, cap = 8;
	char **v = calloc(cap, sizeof(*v));
	char real[PATH_MAX];

	if (!v)
		return -ENOMEM;
	if (!list && glob("/usr/bin/qemu-system-*", 0, NULL, &g) == 0)
		src = (const char *const *)g.gl_pathv;
	for (size_t i = 0;; i++) {
		const char *p = src ? src[i] : NULL;

		if (!p && env->default_emulator && strchr(env->default_emulator, '/')) {
			/* The default is always allowed: append it last, once. */
			p = env->default_emulator;
			env->default_emulator = NULL;   /* consumed; restored below */
			env->default_emulator = strdup(p);
			if (!env->default_emulator)
				break;
			p = env->default_emulator;
			src = NULL;
			if (realpath(p, real)) {
				bool dup = false;

				for (size_t j = 0; j < n; j++)
					dup |= !strcmp(v[j], real);
				if (!dup && n + 1 < cap)
					v[n++] = strdup(real);
			}
			break;
		}
		if (!p)
			break;
		if (!realpath(p, real))
			continue;       /* not installed: nothing to allow */
		if (n + 2 >= cap) {
			char **nv = realloc(v, 2 * cap * sizeof(*v));

			if (!nv)
				break;
			v = nv;
			cap *= 2;
		}
		v[n] = strdup(real);
		if (v[n])
			n++;
	}
	v[n] = NULL;
	if (!list)
		globfree(&g);
	env->emulators = v;
	return 0;
}

int vm_emulator_resolve(struct vm_env *env, const char *emulator, char *out, size_t outlen,
			char *err, size_t errlen)
{
	char real[PATH_MAX], list[512];
	size_t o = 0;

	if (strchr(emulator, '/')) {
		if (realpath(emulator, real)) {
			for (char **e = env->emulators; *e; e++) {
				if (!strcmp(*e, real)) {
					snprintf(out, outlen, "%s", real);
					return 0;
				}
			}
		}
	} else {
		/* A bare name: the allowed binary of that name. */
		for (char **e = env->emulators; *e; e++) {
			const char *base = strrchr(*e, '/');

			if (base && !strcmp(base + 1, emulator)) {
				snprintf(out, outlen, "%s", *e);
				return 0;
			}
		}
	}
	list[0] = '\0';
	for (char **e = env->emulators; *e && o < sizeof(list) - 1; e++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", *e);
	snprintf(err, errlen, "emulator '%s' is not one this daemon runs (allowed: %s)", emulator,
		 list[0] ? list : "none");
	return -EPERM;
}

/* A NULL-terminated copy of v (NULL: an empty list).  0 or -ENOMEM. */
static int strv_copy(const char *const *v, char ***ret)
{
	size_t n = 0;
	char **out;

	while (v && v[n])
		n++;
	out = calloc(n + 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		out[i] = strdup(v[i]);
		if (!out[i]) {
			while (i)
				free(out[--i]);
			free(out);
			return -ENOMEM;
		}
	}
	*ret = out;
	return 0;
}

int vm_env_new(const struct vm_env_opts *o, struct vm_env **ret, char *errbuf, size_t errlen)
{
	struct vm_env *env = calloc(1, sizeof(*env));
	int r;

	if (!env)
		return -ENOMEM;
	env->state_fd = env->domains_fd = env->logs_fd = env->nvram_fd = -1;
	env->runtime_fd = env->vms_fd = env->qmp_fd = env->console_fd = -1;
	env->rt = o->rt;
	env->io = o->io;
	env->reg = o->reg;
	env->bus = o->bus;
	env->off = o->off;
	env->qemu_run_as = o->qemu_run_as;
	env->qemu_creds = o->qemu_creds;
	env->cg = o->cg;
	env->console_log_max = o->console_log_max;
	env->stats_interval_ns = o->stats_interval_ns;
	env->mon_late_ns = o->mon_late_ns;
	env->qemu_user_problem = o->qemu_user_problem ? strdup(o->qemu_user_problem) : NULL;
	env->runtime_dir = strdup(o->runtime_dir);
	env->state_dir = strdup(o->state_dir);
	env->default_emulator = o->default_emulator ? strdup(o->default_emulator) : NULL;
	env->ovmf_code = strdup(o->ovmf_code ? o->ovmf_code : VM_OVMF_CODE);
	env->ovmf_vars = strdup(o->ovmf_vars ? o->ovmf_vars : VM_OVMF_VARS);
	if (!env->runtime_dir || !env->state_dir || !env->ovmf_code || !env->ovmf_vars ||
	    (o->default_emulator && !env->default_emulator) || emulators_init(env, o->emulators) ||
	    strv_copy(o->bridges, &env->bridges) < 0) {
		snprintf(errbuf, errlen, "out of memory");
		vm_env_free(env);
		return -ENOMEM;
	}
	r = env->state_fd = durable_open_dir(env->state_dir, "state dir", 1, errbuf, errlen);
	if (r >= 0)
		r = env->runtime_fd = durable_open_dir(env->runtime_dir, "runtime dir", 1, errbuf,
						      errlen);
	if (r >= 0)
		r = env->domains_fd = durable_open_subdir(env->state_fd, "domains", "state dir",
							 errbuf, errlen);
	if (r >= 0)
		r = env->logs_fd = durable_open_subdir(env->state_fd, "logs", "state dir", errbuf,
						      errlen);
	if (r >= 0)
		r = env->nvram_fd = durable_open_subdir(env->state_fd, "nvram", "state dir", errbuf,
						       errlen);
	if (r >= 0)
		r = env->vms_fd = durable_open_subdir(env->runtime_fd, "vms", "runtime dir", errbuf,
						     errlen);
	if (r >= 0)
		r = env->console_fd = durable_open_subdir(env->runtime_fd, "console", "runtime dir",
							 errbuf, errlen);
	if (r >= 0)
		r = env->qmp_fd = durable_open_subdir(env->runtime_fd, "qmp", "runtime dir", errbuf,
						     errlen);
	if (r < 0) {
		vm_env_free(env);
		return r;
	}
	*ret = env;
	return 0;
}

void vm_env_free(struct vm_env *env)
{
	if (!env)
		return;
	close_fd(&env->state_fd);
	close_fd(&env->domains_fd);
	close_fd(&env->logs_fd);
	close_fd(&env->runtime_fd);
	close_fd(&env->vms_fd);
	close_fd(&env->qmp_fd);
	close_fd(&env->nvram_fd);
	close_fd(&env->console_fd);
	for (char **e = env->emulators; e && *e; e++)
		free(*e);
	free(env->emulators);
	for (char **b = env->bridges; b && *b; b++)
		free(*b);
	free(env->bridges);
	free(env->ovmf_code);
	free(env->ovmf_vars);
	free(env->runtime_dir);
	free(env->state_dir);
	free(env->default_emulator);
	free(env->qemu_user_problem);
	free(env);
}

/* ---- the UEFI variable store ------------------------------------------------- */

#define NVRAM_MAX (16u << 20)

static void nvram_file(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s.fd", name);
}

int vm_nvram_ensure(struct vm_env *env, const char *name, char *err, size_t errlen)
{
	char file[DOM_NAME_MAX + 8], *data = NULL;
	struct stat st;
	size_t len = 0;
	int fd, r;

	nvram_file(name, file, sizeof(file));
	if (fstatat(env->nvram_fd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	fd = open(env->ovmf_vars, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot read the UEFI variable store template %s: %s "
			 "(is the ovmf package installed?)", env->ovmf_vars, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > NVRAM_MAX) {
		close(fd);
		snprintf(err, errlen, "the UEFI variable store template %s is not a file of at "
			 "most 16 MiB", env->ovmf_vars);
		return -EINVAL;
	}
	len = (size_t)st.st_size;
	data = malloc(len);
	r = data && pread(fd, data, len, 0) == (ssize_t)len ? 0 : -EIO;
	close(fd);
	if (r == 0)
		r = durable_write(env->nvram_fd, "state dir", file, data, len, 0600, "nvram", err,
				  errlen);
	else
		snprintf(err, errlen, "cannot read the UEFI variable store template %s",
			 env->ovmf_vars);
	free(data);
	return r;
}

int vm_nvram_open(struct vm_env *env, const char *name, char *err, size_t errlen)
{
	char file[DOM_NAME_MAX + 8];
	struct stat st;
	int fd;

	nvram_file(name, file, sizeof(file));
	fd = openat(env->nvram_fd, file, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fd < 0 ? errno : EINVAL;

		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "cannot open the UEFI variable store %s/nvram/%s: %s",
			 env->state_dir, file, strerror(e));
		return -e;
	}
	return fd;
}

/* ---- the file strand -------------------------------------------------------- */

static void vm_io_free(struct vm_io *io)
{
	struct domain *d = io->dom;

	io->free(io);
	if (d)
		dom_unref(d);
}

static void io_task_work(struct offload_task *t)
{
	struct vm_io *io = container_of(t, struct vm_io, task);

	io->work(io);
}

static void io_complete_call(struct domain *d, void *arg);

static void io_drop(void *arg)
{
	struct vm_io *io = arg;

	if (io->dropped)
		io->dropped(io);
	vm_io_free(io);
}

static void io_task_done(struct offload_task *t)
{
	struct vm_io *io = container_of(t, struct vm_io, task);

	/* Offload thread: hand the outcome to the domain, or drop it if gone. */
	dom_call(io->dom, io_complete_call, io, io_drop);
}

void vm_io_init(struct vm_io *io, uint64_t job_id, void (*work)(struct vm_io *),
		void (*complete)(struct domain *, struct vm_io *), void (*dropped)(struct vm_io *),
		void (*free_fn)(struct vm_io *))
{
	io->task.work = io_task_work;
	io->task.done = io_task_done;
	CDS_INIT_LIST_HEAD(&io->link);
	io->job_id = job_id;
	io->work = work;
	io->complete = complete;
	io->dropped = dropped;
	io->free = free_fn;
}

void vm_io_submit(struct domain *d, struct vm_io *io)
{
	struct vm *vm = vm_of(d);

	io->dom = d;
	io->env = vm->env;
	dom_ref(d);
	if (vm->io_busy) {
		cds_list_add_tail(&io->link, &vm->io_queue);
		return;
	}
	vm->io_busy = true;
	offload_submit(vm->env->off, &io->task);
}

static void io_complete_call(struct domain *d, void *arg)
{
	struct vm_io *io = arg;
	struct vm *vm = vm_of(d);

	/*
	 * The completion runs first, with the strand still busy: an operation
	 * it queues goes behind those already waiting (the strand stays in
	 * order), and one it makes pointless never starts: an undefine's
	 * completion retires the domain, whose stop drops the queue, so a
	 * spawn queued behind the removal is not run.  The model-checker found
	 * that order mattered (models/jobs.pml, P7).
	 */
	io->complete(d, io);
	vm_io_free(io);
	vm->io_busy = false;
	if (!cds_list_empty(&vm->io_queue)) {
		struct vm_io *next = cds_list_first_entry(&vm->io_queue, struct vm_io, link);

		cds_list_del_init(&next->link);
		vm->io_busy = true;
		offload_submit(vm->env->off, &next->task);
	}
}

/* ---- domains ------------------------------------------------------------------ */

static void pubcfg_free(struct vm_pubcfg *p)
{
	if (p) {
		json_decref(p->config);
		json_decref(p->unknown);
		free(p);
	}
}

static void pubcfg_free_rcu(struct rcu_head *head)
{
	crcu_reclaim_begin(head);
	pubcfg_free(container_of(head, struct vm_pubcfg, rcu));
}

/*
 * cfg's canonical JSON for readers, without the fields corral does not
 * know (unknown: NULL or an array of names).  NULL when out of memory.
 * A pure function of its arguments: the definition loaders call it.
 */
static struct vm_pubcfg *pubcfg_new(const struct qemu_config *cfg, const json_t *unknown)
{
	struct vm_pubcfg *p = calloc(1, sizeof(*p));
	json_t *f;
	size_t i;

	if (!p || !(p->config = qemu_config_to_json(cfg)) ||
	    !(p->unknown = unknown ? json_deep_copy(unknown) : json_array())) {
		pubcfg_free(p);
		return NULL;
	}
	json_array_foreach(p->unknown, i, f)
		json_object_del(p->config, json_string_value(f));
	return p;
}

/* Publish p (NULL: make it from vm's config); the old one goes after a grace period. */
static int vm_publish_pubcfg(struct vm *vm, struct vm_pubcfg *p)
{
	struct vm_pubcfg *old = vm->pub;

	if (!p)
		p = pubcfg_new(vm->cfg, vm->unknown);
	if (!p)
		return -ENOMEM;
	crcu_assign_pointer(vm->pub, p);
	if (old)
		crcu_call(&old->rcu, pubcfg_free_rcu);
	return 0;
}

static int vm_publish_config(struct vm *vm)
{
	return vm_publish_pubcfg(vm, NULL);
}

const json_t *vm_config_rcu(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct vm_pubcfg *p;

	if (!vm)
		return NULL;
	p = crcu_dereference(vm->pub);
	return p ? p->config : NULL;
}

const json_t *vm_config_unknown_rcu(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct vm_pubcfg *p;

	if (!vm)
		return NULL;
	p = crcu_dereference(vm->pub);
	return p ? p->unknown : NULL;
}

bool vm_config_unknown(struct vm *vm)
{
	return vm->unknown && json_array_size(vm->unknown) > 0;
}

json_t *vm_all_fields_unknown(void)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < qemu_config_field_count(); i++) {
		const char *k = qemu_config_field(i)->key;

		if (!strchr(k, '.') && strcmp(k, "name") && strcmp(k, "uuid"))
			json_array_append_new(a, json_string(k));
	}
	return a;
}

static void vm_free_ext(void *p)
{
	struct vm *vm = p;

	/* The domain is being freed after a grace period: nobody reads pub. */
	vm_stats_free(vm);
	if (vm->pub) {
		json_decref(vm->pub->config);
		json_decref(vm->pub->unknown);
		free(vm->pub);
	}
	json_decref(vm->unknown);
	vm_live_free(vm);
	qemu_config_free(vm->cfg);
	free(vm);
}

/*
 * The domain actor stops (undefine, daemon shutdown): let go of what refers
 * back to it.  QEMU itself is left alone: stopping corral never touches a
 * running VM, and its run record names it for the next daemon.
 */
static void vm_on_stop(struct domain *d)
{
	struct vm *vm = vm_of(d);

	while (!cds_list_empty(&vm->io_queue)) {
		struct vm_io *io = cds_list_first_entry(&vm->io_queue, struct vm_io, link);

		cds_list_del_init(&io->link);
		if (io->dropped)
			io->dropped(io);
		vm_io_free(io);
	}
	vm_proc_release(vm);
}

/*
 * A domain for cfg, its unknown fields (NULL, or an array of names: taken)
 * and, when pre is not NULL, the publication of its config made beforehand
 * (taken; used if the domain's UUID is the one cfg named, else made again).
 */
static int domain_new(struct vm_env *env, struct qemu_config *cfg, const struct creds *owner,
		      json_t *unknown, struct vm_pubcfg *pre, struct domain **ret, char *errbuf,
		      size_t errlen)
{
	const char *uuid_txt = qemu_config_uuid(cfg);
	struct domain *d;
	uint8_t uuid[16];
	struct vm *vm;
	char txt[37];
	int r;

	if (uuid_txt && uuid_parse(uuid_txt, uuid) < 0) {
		snprintf(errbuf, errlen, "field 'uuid': not a UUID");
		r = -EINVAL;
		goto fail;
	}
	r = dom_new(env->rt, qemu_config_name(cfg), uuid_txt ? uuid : NULL, &d, errbuf, errlen);
	if (r < 0)
		goto fail;
	uuid_format(dom_uuid(d), txt);
	if (pre && (!uuid_txt || strcmp(uuid_txt, txt) != 0)) {
		pubcfg_free(pre);       /* it shows another UUID text */
		pre = NULL;
	}
	qemu_config_set_uuid(cfg, txt);
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		actor_stop(dom_actor(d));
		snprintf(errbuf, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	vm->env = env;
	vm->quitting = VR_COUNT;
	vm->cfg = cfg;
	vm->owner = *owner;
	vm->unknown = unknown && json_array_size(unknown) ? json_incref(unknown) : NULL;
	CDS_INIT_LIST_HEAD(&vm->io_queue);
	r = vm_publish_pubcfg(vm, pre);
	pre = NULL;             /* published: a given one always is */
	if (r < 0) {
		vm->cfg = NULL;         /* still the caller's */
		vm_free_ext(vm);
		actor_stop(dom_actor(d));
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	json_decref(unknown);
	/* Not yet shared: plain stores, published by reg_add's ordering. */
	dom_set_ext(d, vm, vm_on_stop, vm_free_ext);
	*ret = d;
	return 0;
fail:
	pubcfg_free(pre);
	json_decref(unknown);
	return r;
}

int vm_domain_new(struct vm_env *env, struct qemu_config *cfg, const struct creds *owner,
		  struct domain **ret, char *errbuf, size_t errlen)
{
	return domain_new(env, cfg, owner, NULL, NULL, ret, errbuf, errlen);
}

/*
 * Take d out of the registry and stop its actor, from outside it.  Its
 * queued jobs end "gone".  Any thread.
 */
static void vm_domain_remove(struct vm_env *env, struct domain *d)
{
	reg_del(env->reg, d);
	actor_stop(dom_actor(d));
}

/*
 * The same from d's own turn, at once: no job waiting behind (a define
 * queued behind an undefine, say) may start on a domain that is no longer
 * registered; each ends "gone" and its caller defines the name afresh.
 * Domain actor only.
 */
static void vm_domain_retire(struct vm_env *env, struct domain *d)
{
	reg_del(env->reg, d);
	actor_stop_self(dom_actor(d));
}

/* ---- definitions ------------------------------------------------------------ */

/*
 * The definition file (vm-def.h): {"version": 2, "config": {...}, "owner":
 * {...}, "autostart": bool, "unknown": [...]}.  The config is what define
 * took, in canonical form; owner is who defined it, whose rights open its
 * files at every start; autostart says whether corrald starts the domain
 * when it starts.  The flag is the domain's, not its config's: a define of
 * an existing name keeps it.
 */
struct def_io {
	struct vm_io io;
	json_t *doc;                    /* handed to the offload thread whole */
	struct creds owner;
	char name[DOM_NAME_MAX + 1];
	char formats[QEMU_DISKS_MAX][8];
	size_t ndisks;
	bool remove;                    /* undefine: remove instead of write */
	bool probe;                     /* define: probe and check the disks first */
	const char *tag;                /* crash points: "define", "autostart" */
	void (*then)(struct domain *d, struct vm_io *io);       /* vm_def_rewrite, _replace */
};

/* The crash point TAG.what of this write (see DESIGN.md, "Crash points"). */
static void def_crash_point(const struct def_io *di, const char *what)
{
	char name[64];

	if (!crash_armed())
		return;
	snprintf(name, sizeof(name), "%s.%s", di->tag, what);
	crash_point(name);
}

static void def_io_free(struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);

	json_decref(di->doc);
	free(di);
}

/*
 * Open a disk image with the owner's rights (the caller is already in
 * them) and read its header.  Returns the open fd, or -errno with err set.
 */
int vm_open_image(const char *path, bool readonly, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	int r;

	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "disk %s: cannot open it%s: %s", path,
			 readonly ? "" : " for writing", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		close(fd);
		snprintf(err, errlen, "disk %s: not a regular file or a block device", path);
		return -EINVAL;
	}
	/* Only the open had to be non-blocking (a FIFO would hang it). */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

/*
 * Offload thread: probe the disks whose format is not declared (and check
 * the declared ones that exist), as the owner; then write the file.
 */
static const char *const log_suffixes[] = { ".qemu.log", ".qemu.log.1", ".console.log",
					     ".console.log.1" };

static void def_io_work(struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);
	json_t *disks = json_object_get(json_object_get(di->doc, "config"), "disks");
	char file[DOM_NAME_MAX + 16], *text;
	const char *fw;
	size_t i;
	int r;

	snprintf(file, sizeof(file), "%s.json", di->name);
	if (di->remove) {
		crash_point("undefine.before-unlink");
		r = durable_unlink(io->env->domains_fd, "state dir", file, "undefine", io->errmsg,
				   sizeof(io->errmsg));
		if (r < 0) {
			io->err = r;
			io->code = DOM_ERR_STORAGE;
			return;
		}
		crash_point("undefine.after-unlink");
		/* Its logs and store go with it (a failure here changes nothing that matters). */
		for (size_t k = 0; k < ARRAY_SIZE(log_suffixes); k++) {
			snprintf(file, sizeof(file), "%s%s", di->name, log_suffixes[k]);
			unlinkat(io->env->logs_fd, file, 0);
		}
		nvram_file(di->name, file, sizeof(file));
		unlinkat(io->env->nvram_fd, file, 0);
		return;
	}
	if (!di->probe)
		goto write;     /* the config on disk already: its disks were probed then */
	r = creds_enter(&di->owner);
	if (r < 0) {
		io->err = r;
		io->code = DOM_ERR_PERMISSION;
		snprintf(io->errmsg, sizeof(io->errmsg), "cannot take on the caller's identity: %s",
			 strerror(-r));
		return;
	}
	for (i = 0; i < json_array_size(disks); i++) {
		json_t *disk = json_array_get(disks, i);
		const char *path = json_string_value(json_object_get(disk, "path"));
		const char *declared = json_string_value(json_object_get(disk, "format"));
		const char *found = NULL;
		int fd;

		fd = vm_open_image(path, true, io->errmsg, sizeof(io->errmsg));
		if (fd < 0) {
			if (declared && fd == -ENOENT)
				continue;       /* declared: checked at start, when it exists */
			io->err = fd;
			io->code = fd == -EACCES || fd == -EPERM ? DOM_ERR_PERMISSION :
								   DOM_ERR_INVALID;
			if (!declared && fd == -ENOENT)
				snprintf(io->errmsg, sizeof(io->errmsg), "disk %s: does not exist "
					 "(declare its format to define it before it exists)", path);
			break;
		}
		r = qemu_image_probe(fd, path, declared, &found, io->errmsg, sizeof(io->errmsg));
		close(fd);
		if (r < 0) {
			io->err = r;
			io->code = DOM_ERR_INVALID;
			break;
		}
		json_object_set_new(disk, "format", json_string(found));
	}
	creds_leave();
	if (io->err)
		return;
write:
	text = json_dumps(di->doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text) {
		io->err = -ENOMEM;
		io->code = DOM_ERR_STORAGE;
		snprintf(io->errmsg, sizeof(io->errmsg), "out of memory");
		return;
	}
	fw = json_string_value(json_object_get(json_object_get(di->doc, "config"), "firmware"));
	if (fw && !strcmp(fw, "uefi")) {
		/* The store first: a definition on disk always has what it needs. */
		r = vm_nvram_ensure(io->env, di->name, io->errmsg, sizeof(io->errmsg));
		if (r < 0) {
			io->err = r;
			io->code = DOM_ERR_STORAGE;
			return;
		}
	}
	def_crash_point(di, "before-write");
	r = durable_write(io->env->domains_fd, "state dir", file, text, strlen(text), 0600,
			  di->tag, io->errmsg, sizeof(io->errmsg));
	free(text);
	if (r < 0) {
		io->err = r;
		io->code = DOM_ERR_STORAGE;
		return;
	}
	def_crash_point(di, "after-write");
}

static struct def_io *def_io_new(struct domain *d, uint64_t job_id,
				 void (*complete)(struct domain *, struct vm_io *))
{
	struct def_io *di = calloc(1, sizeof(*di));

	if (!di)
		return NULL;
	vm_io_init(&di->io, job_id, def_io_work, complete, NULL, def_io_free);
	snprintf(di->name, sizeof(di->name), "%s", dom_name(d));
	di->tag = "define";
	return di;
}

/* Queue a write or removal of d's definition on its strand.  Domain actor only. */
static void def_io_submit(struct domain *d, struct def_io *di)
{
	vm_of(d)->def_writes++;
	vm_io_submit(d, &di->io);
}

static void def_written(struct domain *d);

/* vm_def_replace(): the definition is written (or not); the job's own step follows. */
static void replaced_written(struct domain *d, struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);
	struct vm *vm = vm_of(d);
	struct qemu_config *cfg = NULL;
	char err[256];

	if (!io->err && qemu_config_from_json(json_object_get(di->doc, "config"), &cfg, err,
					      sizeof(err)) == 0) {
		/* The domain follows the disk, whatever became of the job. */
		qemu_config_free(vm->cfg);
		vm->cfg = cfg;
		vm->owner = di->owner;
		json_decref(vm->unknown);
		vm->unknown = NULL;     /* a whole config: vm_x_start refuses an unknown one */
		vm_publish_config(vm);
		vm_publish(d, VE_DEFINED, json_pack("{s:b}", "replaced", 1));
	} else if (!io->err) {
		io->err = -EINVAL;
		io->code = DOM_ERR_INVALID;
		snprintf(io->errmsg, sizeof(io->errmsg), "%s", err);
	}
	def_written(d);
	di->then(d, io);
}

int vm_def_replace(struct domain *d, uint64_t job_id, json_t *config, const struct creds *owner,
		   void (*then)(struct domain *d, struct vm_io *io))
{
	struct vm *vm = vm_of(d);
	struct def_io *di = def_io_new(d, job_id, replaced_written);

	if (!di) {
		json_decref(config);
		return -ENOMEM;
	}
	di->doc = vm_def_doc(config, owner, vm->autostart, NULL);
	di->owner = *owner;
	di->then = then;
	if (!di->doc) {
		def_io_free(&di->io);
		return -ENOMEM;
	}
	def_io_submit(d, di);
	return 0;
}

/* ---- helpers on the domain actor -------------------------------------------- */

void vm_lifecycle(struct domain *d, enum dom_state st, enum vm_reason reason)
{
	struct evbus_data ed;

	dom_set_state(d, st, vm_reason_name(reason));
	/* {state, reason}: packed as clients read it, no JSON on the way. */
	evbus_data_init(&ed);
	if (msgpack_pack_map(&ed.pk, 2) < 0 || rpc_pack_cstr(&ed.pk, "state") < 0 ||
	    rpc_pack_cstr(&ed.pk, dom_state_name(st)) < 0 || rpc_pack_cstr(&ed.pk, "reason") < 0 ||
	    rpc_pack_cstr(&ed.pk, vm_reason_name(reason)) < 0)
		evbus_data_reset(&ed);
	evbus_publish_data(vm_of(d)->env->bus, dom_name(d), vm_event_name(VE_LIFECYCLE), &ed);
}

void vm_publish(struct domain *d, enum vm_event ev, json_t *data)
{
	evbus_publish(vm_of(d)->env->bus, dom_name(d), vm_event_name(ev), data);
}

void vm_fail(struct domain *d, struct dom_job *job, int code, const char *fmt, ...)
{
	char msg[DOM_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dom_job_finish(d, job, -EINVAL, code, NULL, "%s", msg);
}

/* reboot "acpi": QEMU runs with -no-shutdown and a reboot is a power-off + reset. */
static bool guest_reboot(struct vm *vm)
{
	return !strcmp(qemu_config_reboot(vm->cfg), "acpi");
}

static bool is_active(enum dom_state st)
{
	return st == DOM_RUNNING || st == DOM_PAUSED || st == DOM_STARTING ||
	       st == DOM_SHUTTING_DOWN || st == DOM_PMSUSPENDED;
}

void vm_job_cmd(struct domain *d, struct dom_job *job, const char *execute, json_t *args,
		const char *raw)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;

	if (!vm->mon) {
		json_decref(args);
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': no monitor connection to QEMU",
			dom_name(d));
		return;
	}
	vj->phase = VP_WAIT_CMD;
	if (mon_cmd(vm->mon, job->id, execute, args, raw, job->deadline_ns) < 0)
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': monitor is closed", dom_name(d));
}

/* ---- define / undefine / autostart jobs -------------------------------------- */

static void vmj_start(struct domain *d, struct dom_job *job);

/*
 * A job that writes the definition builds the file from what the domain
 * holds, which is what is on disk only once no earlier write is still on
 * the strand (one whose job ended at its deadline while the disk was
 * slow).  Such a job waits for that (VP_WAIT_DEF), bounded by its own
 * deadline.  Domain actor only.
 */
static bool def_wait(struct domain *d, struct dom_job *job)
{
	if (!vm_of(d)->def_writes)
		return false;
	((struct vm_job *)job->priv)->phase = VP_WAIT_DEF;
	return true;
}

/* A definition write is complete: a job waiting for it goes on. */
static void def_written(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj;

	BUG_ON(!vm->def_writes);
	vm->def_writes--;
	vj = vm_held_job(d, &job);
	if (!vm->def_writes && vj && vj->phase == VP_WAIT_DEF) {
		vj->phase = VP_INIT;
		vmj_start(d, job);
	}
}

static json_t *name_uuid(struct domain *d)
{
	char uuid[37];

	uuid_format(dom_uuid(d), uuid);
	return json_pack("{s:s, s:s}", "name", dom_name(d), "uuid", uuid);
}

/*
 * The definition file is written (or not): the domain follows the disk
 * whether or not its define still holds it (a deadline or a destroy may
 * have ended it meanwhile), so that memory and disk never disagree.
 */
static void define_written(struct domain *d, struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && job->id == io->job_id;
	struct qemu_config *cfg = NULL;
	char err[256];
	bool first = !vm->defined;

	if (io->err) {
		if (mine)
			dom_job_finish(d, job, io->err, io->code, NULL, "%s", io->errmsg);
		if (first)
			vm_domain_retire(vm->env, d);   /* the name was only reserved */
		def_written(d);
		return;
	}
	/* The file holds the probed formats: so does the config from now on. */
	if (qemu_config_from_json(json_object_get(di->doc, "config"), &cfg, err,
				  sizeof(err)) < 0) {
		/* Written, but unreadable back: cannot happen (it was checked). */
		if (mine)
			dom_job_finish(d, job, -EINVAL, DOM_ERR_INVALID, NULL, "%s", err);
		def_written(d);
		return;
	}
	qemu_config_free(vm->cfg);
	vm->cfg = cfg;
	vm->owner = di->owner;
	json_decref(vm->unknown);
	vm->unknown = json_deep_copy(json_object_get(di->doc, "unknown"));
	vm_publish_config(vm);
	vm->defined = true;
	vm->autostart = json_is_true(json_object_get(di->doc, "autostart"));
	dom_set_autostart(d, vm->autostart);
	vm_publish(d, VE_DEFINED, first ? NULL : json_pack("{s:b}", "replaced", 1));
	if (mine)
		dom_job_finish(d, job, 0, 0, name_uuid(d), NULL);
	def_written(d);
}

/* A MAC address in QEMU's locally administered range 52:54:00, random. */
static void mac_random(char out[QEMU_MAC_LEN + 1])
{
	uint8_t b[3] = { 0 };

	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		uint64_t t = now_ns();

		memcpy(b, &t, sizeof(b));
	}
	snprintf(out, QEMU_MAC_LEN + 1, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
}

/*
 * Every NIC gets its MAC once and keeps it: one without a MAC takes the
 * one its place had in the definition being replaced (same type), or a
 * new random one.  A bridged NIC must name a bridge the daemon allows.
 * 0, or -EPERM with err set.  Domain actor.
 */
static int nics_settle(struct vm *vm, struct qemu_config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < qemu_config_nic_count(cfg); i++) {
		const char *br = qemu_config_nic_bridge(cfg, i);
		bool allowed = !br;

		for (char **b = vm->env->bridges; br && b && *b; b++)
			allowed |= !strcmp(*b, br);
		if (!allowed) {
			snprintf(err, errlen, "nics[%zu]: bridge '%s' is not one corrald lets guests "
				 "join (see corrald --allow-bridge)", i, br);
			return -EPERM;
		}
		if (qemu_config_nic_mac(cfg, i))
			continue;
		if (vm->defined && vm->cfg && i < qemu_config_nic_count(vm->cfg) &&
		    !strcmp(qemu_config_nic_type(vm->cfg, i), qemu_config_nic_type(cfg, i)) &&
		    qemu_config_nic_mac(vm->cfg, i) &&
		    qemu_config_set_nic_mac(cfg, i, qemu_config_nic_mac(vm->cfg, i)) == 0)
			continue;
		for (int tries = 0; tries < 64; tries++) {
			char mac[QEMU_MAC_LEN + 1];

			mac_random(mac);
			if (qemu_config_set_nic_mac(cfg, i, mac) == 0)
				break;
		}
	}
	return 0;
}

static void define_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct qemu_config *cfg = NULL;
	json_t *config = vj->args;
	const char *uuid = json_string_value(json_object_get(config, "uuid"));
	struct def_io *di;
	char err[256], own[37];

	if (def_wait(d, job))
		return;
	uuid_format(dom_uuid(d), own);
	if (vm->defined && uuid && strcasecmp(uuid, own) != 0) {
		vm_fail(d, job, DOM_ERR_INVALID, "domain '%s' has UUID %s: a definition may not "
			"change it (got %s)", dom_name(d), own, uuid);
		return;
	}
	/* Canonical, with this domain's UUID. */
	if (qemu_config_from_json(config, &cfg, err, sizeof(err)) < 0) {
		vm_fail(d, job, DOM_ERR_INVALID, "%s", err);
		if (!vm->defined)
			vm_domain_retire(vm->env, d);
		return;
	}
	qemu_config_set_uuid(cfg, own);
	if (nics_settle(vm, cfg, err, sizeof(err)) < 0) {
		qemu_config_free(cfg);
		vm_fail(d, job, DOM_ERR_PERMISSION, "%s", err);
		if (!vm->defined)
			vm_domain_retire(vm->env, d);
		return;
	}
	di = def_io_new(d, job->id, define_written);
	/* A new name starts unmarked; a redefine keeps the domain's flag. */
	if (di) {
		/* A config given is whole; an attach without one knows nothing yet. */
		json_t *unknown = vj->discover ? vm_all_fields_unknown() : NULL;

		di->doc = vm_def_doc(qemu_config_to_json(cfg), &vj->creds, vm->autostart,
					 unknown);
		json_decref(unknown);
	}
	qemu_config_free(cfg);
	if (!di || !di->doc) {
		if (di)
			def_io_free(&di->io);
		vm_fail(d, job, DOM_ERR_STORAGE, "out of memory");
		if (!vm->defined)
			vm_domain_retire(vm->env, d);
		return;
	}
	di->owner = vj->creds;
	di->probe = true;
	vj->phase = VP_IO;
	def_io_submit(d, di);
}

static void undefine_done(struct domain *d, struct vm_io *io)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && job->id == io->job_id;

	if (io->err) {
		if (mine)
			dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s' is still "
				       "defined: %s", dom_name(d), io->errmsg);
		def_written(d);
		return;
	}
	/*
	 * The file is gone, so the domain goes: even if its undefine ended
	 * meanwhile (its deadline, a destroy), whatever ran since cannot have
	 * made a QEMU (a spawn would be queued behind this removal), and a
	 * domain left defined without its file would vanish at the next
	 * start-up.  Its caller was told it timed out: a timeout may still
	 * take effect.
	 */
	vm->defined = false;
	vm_publish(d, VE_UNDEFINED, NULL);
	if (mine)
		dom_job_finish(d, job, 0, 0, json_pack("{s:s}", "name", dom_name(d)), NULL);
	crash_point("undefine.after-remove");
	vm_domain_retire(vm->env, d);
	def_written(d);         /* nothing waits any more: the retired domain ended its jobs */
}

/*
 * Decided here, in the domain's turn, behind every job queued before it:
 * a start that was waiting has run by now, and its QEMU is seen.
 */
static void undefine_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	enum dom_state st = dom_state_actor(d);
	struct def_io *di;

	if (vm->proc != VPROC_NONE || vm->mon || is_active(st)) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is %s: destroy it first", dom_name(d),
			vm->proc == VPROC_SPAWNING ? "starting" : dom_state_name(st));
		return;
	}
	di = def_io_new(d, job->id, undefine_done);
	if (!di) {
		vm_fail(d, job, DOM_ERR_STORAGE, "out of memory");
		return;
	}
	di->remove = true;
	vj->phase = VP_IO;
	def_io_submit(d, di);
}

static json_t *autostart_result(struct domain *d, bool on)
{
	return json_pack("{s:s, s:b}", "name", dom_name(d), "autostart", on);
}

/*
 * The file with the new flag is written (or not): as for a define, the
 * domain follows the disk, whether or not its job still holds it.
 */
static void autostart_written(struct domain *d, struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	bool mine = vj && job->id == io->job_id;

	if (io->err) {
		if (mine)
			dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': autostart "
				       "unchanged (%s): %s", dom_name(d),
				       vm->autostart ? "enabled" : "disabled", io->errmsg);
		def_written(d);
		return;
	}
	vm->autostart = json_is_true(json_object_get(di->doc, "autostart"));
	dom_set_autostart(d, vm->autostart);
	vm_publish(d, VE_AUTOSTART, json_pack("{s:b}", "autostart", vm->autostart));
	if (mine)
		dom_job_finish(d, job, 0, 0, autostart_result(d, vm->autostart), NULL);
	def_written(d);
}

/*
 * Mark or unmark: the definition is written again with the flag (the
 * config and owner as they are), durably, before the answer.
 */
static void autostart_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	json_t *enable = json_object_get(vj->args, "enable");
	bool on = json_is_true(enable);
	struct def_io *di;

	if (!json_is_boolean(enable)) {
		vm_fail(d, job, DOM_ERR_INVALID, "autostart: 'enable' must be a boolean");
		return;
	}
	if (def_wait(d, job))
		return;
	if (!vm->defined) {
		/* Cannot be: the define that reserved the name ran before us. */
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is not defined yet", dom_name(d));
		return;
	}
	if (on && vm_config_unknown(vm)) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' was attached without a config: it "
			"cannot be started until it has one (corral define / corral edit)",
			dom_name(d));
		return;
	}
	if (vm->autostart == on) {
		/* The file says so already. */
		dom_job_finish(d, job, 0, 0, autostart_result(d, on), NULL);
		return;
	}
	di = def_io_new(d, job->id, autostart_written);
	if (di)
		di->doc = vm_def_doc(qemu_config_to_json(vm->cfg), &vm->owner, on,
					 vm->unknown);
	if (!di || !di->doc) {
		if (di)
			def_io_free(&di->io);
		vm_fail(d, job, DOM_ERR_STORAGE, "out of memory");
		return;
	}
	di->owner = vm->owner;
	di->tag = "autostart";
	vj->phase = VP_IO;
	def_io_submit(d, di);
}

/*
 * The definition rewritten with a new config and unknown list (discovery
 * at attach): as for a define, the domain follows the disk.
 */
static void rewrite_written(struct domain *d, struct vm_io *io)
{
	struct def_io *di = container_of(io, struct def_io, io);
	struct vm *vm = vm_of(d);
	struct qemu_config *cfg = NULL;

	if (!io->err && qemu_config_from_json(json_object_get(di->doc, "config"), &cfg, NULL,
					      0) == 0) {
		qemu_config_free(vm->cfg);
		vm->cfg = cfg;
		json_decref(vm->unknown);
		vm->unknown = json_deep_copy(json_object_get(di->doc, "unknown"));
		vm_publish_config(vm);
		vm_publish(d, VE_DEFINED, json_pack("{s:b}", "replaced", 1));
	}
	def_written(d);
	if (di->then)
		di->then(d, io);
}

int vm_def_rewrite(struct domain *d, uint64_t job_id, json_t *config, json_t *unknown,
		   void (*then)(struct domain *d, struct vm_io *io))
{
	struct vm *vm = vm_of(d);
	struct def_io *di = def_io_new(d, job_id, rewrite_written);

	if (di)
		di->doc = vm_def_doc(config, &vm->owner, vm->autostart, unknown);
	else
		json_decref(config);
	if (!di || !di->doc) {
		if (di)
			def_io_free(&di->io);
		return -ENOMEM;
	}
	di->owner = vm->owner;
	di->then = then;
	def_io_submit(d, di);
	return 0;
}

/* ---- define and attach requests -------------------------------------------- */

/* One define (or define-then-attach) call, across retries. */
struct vm_req {
	struct vm_env *env;
	json_t *config;                 /* validated */
	json_t *attach_args;            /* NULL: define only */
	bool discover;                  /* attach without a config: the config is unknown */
	struct creds creds;
	uint64_t deadline_ns;
	int attempts;
	dom_job_done_fn done;
	void *done_arg;
};

static void req_free(struct vm_req *req)
{
	json_decref(req->config);
	json_decref(req->attach_args);
	free(req);
}

static int req_run(struct vm_req *req, char *errbuf, size_t errlen);

static uint64_t req_timeout(const struct vm_req *req)
{
	uint64_t now = now_ns();

	return req->deadline_ns > now ? req->deadline_ns - now : 1;
}

/*
 * A job done callback that ends the request: with the job itself when the
 * request is over, or by going on (attach after define, or again after a
 * race with an undefine of the same name).  On a domain actor.
 */
static void req_define_done(struct dom_job *job, void *arg)
{
	struct vm_req *req = arg;
	struct dom_job *aj;
	char err[DOM_ERRMSG_MAX];

	if (job->code == DOM_ERR_GONE && ++req->attempts < DEFINE_ATTEMPTS &&
	    now_ns() < req->deadline_ns) {
		/* The name was being undefined: define it afresh. */
		if (req_run(req, err, sizeof(err)) == 0) {
			dom_job_free(job);
			return;
		}
	}
	if (job->err || !req->attach_args) {
		req->done(job, req->done_arg);
		req_free(req);
		return;
	}
	/* Defined: now the attach, on the same domain, with the same caller. */
	if (vm_job_new(VM_OP_ATTACH, req->attach_args, req_timeout(req), req->done,
		       req->done_arg, &aj, err, sizeof(err)) == 0) {
		((struct vm_job *)aj->priv)->creds = req->creds;
		if (vm_submit(job->dom, aj) == 0) {
			dom_job_free(job);
			req_free(req);
			return;
		}
		dom_job_free(aj);
	}
	job->err = -ENOMEM;
	job->code = DOM_ERR_FAILED;
	snprintf(job->errmsg, sizeof(job->errmsg), "cannot attach: out of memory");
	req->done(job, req->done_arg);
	req_free(req);
}

static int req_submit_define(struct vm_req *req, struct domain *d, char *errbuf, size_t errlen)
{
	struct dom_job *job;
	int r;

	r = vm_job_new(VM_OP_DEFINE, req->config, req_timeout(req), req_define_done, req, &job,
		       errbuf, errlen);
	if (r < 0)
		return r;
	((struct vm_job *)job->priv)->creds = req->creds;
	((struct vm_job *)job->priv)->discover = req->discover;
	r = vm_submit(d, job);
	if (r < 0) {
		dom_job_free(job);
		return r;
	}
	return 0;
}

/*
 * Find or reserve the name, then queue the define job on that domain.
 * -ESHUTDOWN (the domain was stopping) and -EEXIST (a name raced) are
 * retried here.  Any thread.
 */
static int req_run(struct vm_req *req, char *errbuf, size_t errlen)
{
	const char *name = json_string_value(json_object_get(req->config, "name"));
	struct qemu_config *cfg;
	struct domain *d;
	int r = -EAGAIN;

	for (int tries = 0; tries < 8 && r < 0; tries++) {
		crcu_read_lock();
		d = reg_lookup_name_rcu(req->env->reg, name);
		if (d)
			dom_ref(d);
		crcu_read_unlock();
		if (d) {
			r = req_submit_define(req, d, errbuf, errlen);
			dom_unref(d);
			if (r == -ESHUTDOWN)
				continue;       /* being removed: reserve it afresh */
			return r;
		}
		r = qemu_config_from_json(req->config, &cfg, errbuf, errlen);
		if (r < 0)
			return r;
		r = vm_domain_new(req->env, cfg, &req->creds, &d, errbuf, errlen);
		if (r < 0) {
			qemu_config_free(cfg);
			return r;
		}
		r = reg_add(req->env->reg, d);
		if (r == -EEXIST) {
			const char *uuid = json_string_value(json_object_get(req->config, "uuid"));

			actor_stop(dom_actor(d));
			crcu_read_lock();
			if (uuid && !reg_lookup_name_rcu(req->env->reg, name)) {
				crcu_read_unlock();
				snprintf(errbuf, errlen, "UUID %s is taken by another domain", uuid);
				return -EEXIST;
			}
			crcu_read_unlock();
			continue;               /* the name raced: look again */
		}
		/* Reserved: the define job writes the file (or removes the name again). */
		r = req_submit_define(req, d, errbuf, errlen);
		if (r == -ESHUTDOWN)
			/*
			 * An undefine on another thread found the reserved name
			 * and removed it before this job reached it: define it
			 * afresh.
			 */
			continue;
		if (r < 0)
			vm_domain_remove(req->env, d);
		return r;
	}
	snprintf(errbuf, errlen, "domain '%s' keeps changing under this call; try again", name);
	return -EAGAIN;
}

static int req_new(struct vm_env *env, json_t *config, const struct creds *caller,
		   uint64_t timeout_ns, dom_job_done_fn done, void *done_arg, struct vm_req **ret,
		   char *errbuf, size_t errlen)
{
	struct qemu_config *cfg = NULL;
	struct vm_req *req;
	char emu[PATH_MAX];
	int r;

	r = qemu_config_from_json(config, &cfg, errbuf, errlen);
	if (r < 0)
		return r;
	r = vm_emulator_resolve(env, qemu_config_emulator(cfg), emu, sizeof(emu), errbuf,
				errlen);
	if (r < 0) {
		qemu_config_free(cfg);
		return r;
	}
	req = calloc(1, sizeof(*req));
	if (req)
		req->config = qemu_config_to_json(cfg);
	qemu_config_free(cfg);
	if (!req || !req->config) {
		free(req);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	req->env = env;
	req->creds = *caller;
	req->deadline_ns = now_ns() + timeout_ns;
	req->done = done;
	req->done_arg = done_arg;
	*ret = req;
	return 0;
}

int vm_define_submit(struct vm_env *env, json_t *config, const struct creds *caller,
		     uint64_t timeout_ns, dom_job_done_fn done, void *done_arg, char *errbuf,
		     size_t errlen)
{
	struct vm_req *req;
	int r;

	r = req_new(env, config, caller, timeout_ns, done, done_arg, &req, errbuf, errlen);
	if (r < 0)
		return r;
	r = req_run(req, errbuf, errlen);
	if (r < 0)
		req_free(req);
	return r;
}

int vm_attach_submit(struct vm_env *env, const char *name, json_t *config, json_t *args,
		     const struct creds *caller, uint64_t timeout_ns, dom_job_done_fn done,
		     void *done_arg, char *errbuf, size_t errlen)
{
	struct dom_job *job;
	struct vm_req *req;
	struct domain *d;
	json_t *cfg;
	int r;

	crcu_read_lock();
	d = reg_lookup_name_rcu(env->reg, name);
	if (d)
		dom_ref(d);
	crcu_read_unlock();
	if (d) {
		/* Defined already: its config stays; just the attach. */
		r = vm_job_new(VM_OP_ATTACH, args, timeout_ns, done, done_arg, &job, errbuf,
			       errlen);
		if (r == 0) {
			((struct vm_job *)job->priv)->creds = *caller;
			r = vm_submit(d, job);
			if (r < 0) {
				dom_job_free(job);
				snprintf(errbuf, errlen, "domain '%s' is being removed", name);
			}
		}
		dom_unref(d);
		return r;
	}
	if (config && json_object_get(config, "name") &&
	    !(json_is_string(json_object_get(config, "name")) &&
	      !strcmp(json_string_value(json_object_get(config, "name")), name))) {
		snprintf(errbuf, errlen, "config.name must be absent or equal to param 'name'");
		return -EINVAL;
	}
	cfg = config ? json_deep_copy(config) : json_object();
	if (!cfg || (!json_object_get(cfg, "name") &&
		     json_object_set_new(cfg, "name", json_string(name)) < 0)) {
		json_decref(cfg);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	r = req_new(env, cfg, caller, timeout_ns, done, done_arg, &req, errbuf, errlen);
	json_decref(cfg);
	if (r < 0)
		return r;
	req->attach_args = json_incref(args);
	/* No config: nothing of it is known until QEMU is asked (never a guess). */
	req->discover = !config;
	r = req_run(req, errbuf, errlen);
	if (r < 0)
		req_free(req);
	return r;
}

/* ---- monitor notes -------------------------------------------------------------- */

static void submit_settle(struct domain *d);

static void reset_seen(struct domain *d, struct dom_job *job, struct vm_job *vj);

/*
 * QEMU's event as a transition, with one lifecycle event for it.  The
 * reason is the job that asked for it when one holds the domain (its reply
 * then finds the state already there and says nothing more), otherwise
 * what QEMU says.  QEMU sends STOP and RESUME before its reply to stop and
 * cont, RESET after its reply to system_reset (the simulator before): each
 * order gives one event.
 */
static void event_to_state(struct domain *d, const char *ev, json_t *data)
{
	struct vm *vm = vm_of(d);
	enum dom_state st = dom_state_actor(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	enum vm_op op = vj ? vj->op : VM_OP_COUNT;
	bool guest = json_is_true(json_object_get(data, "guest"));

	/*
	 * A guest reboot is one transition: its power-off, stop, reset and
	 * cont are steps of the job, which ends in running/rebooted.
	 */
	if (op == VM_OP_REBOOT && guest_reboot(vm))
		return;
	if (!strcmp(ev, "STOP")) {
		if (st == DOM_RUNNING)
			vm_lifecycle(d, DOM_PAUSED, op == VM_OP_SUSPEND ? VR_USER :
				     op == VM_OP_SAVE ? VR_SAVING : VR_PAUSED);
	} else if (!strcmp(ev, "RESUME")) {
		if (st == DOM_STARTING || (vj && vj->phase == VP_WAIT_CONT))
			vm_lifecycle(d, DOM_RUNNING, vj && vj->restore ? VR_RESTORED : VR_BOOTED);
		else if (st == DOM_PAUSED || st == DOM_PMSUSPENDED)
			vm_lifecycle(d, DOM_RUNNING, op == VM_OP_RESUME ? VR_USER : VR_UNPAUSED);
	} else if (!strcmp(ev, "RESET")) {
		if (!is_active(st) || st == DOM_STARTING)
			return;
		vm_lifecycle(d, st, op == VM_OP_RESET ? VR_RESET : op == VM_OP_REBOOT ?
			     VR_REBOOTED : guest ? VR_GUEST_RESET : VR_RESET);
		if (op == VM_OP_RESET || op == VM_OP_REBOOT)
			reset_seen(d, job, vj);
	} else if (!strcmp(ev, "SHUTDOWN")) {
		/* The first says why: a quit that follows (reboot "acpi") changes nothing. */
		if (vm->quitting != VR_COUNT)
			return;
		vm->quitting = !guest ? VR_QUIT : op == VM_OP_SHUTDOWN || vm->powerdown_asked ?
			       VR_SHUTDOWN : VR_GUEST_SHUTDOWN;
		vm_lifecycle(d, DOM_SHUTTING_DOWN, vm->quitting);
	} else if (!strcmp(ev, "SUSPEND")) {
		if (st != DOM_PMSUSPENDED)
			vm_lifecycle(d, DOM_PMSUSPENDED, VR_GUEST_SUSPEND);
	} else if (!strcmp(ev, "WAKEUP")) {
		if (st == DOM_PMSUSPENDED)
			vm_lifecycle(d, DOM_RUNNING, VR_WAKEUP);
	} else if (!strcmp(ev, "GUEST_PANICKED")) {
		if (st != DOM_CRASHED)
			vm_lifecycle(d, DOM_CRASHED, VR_PANICKED);
	}
}

/* The monitor finished its handshake while job holds the domain. */
static void vmj_start(struct domain *d, struct dom_job *job);

static void job_monitor_ready(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;

	if (!vj || vj->phase != VP_WAIT_MON)
		return;
	if (vj->op != VM_OP_START && vj->op != VM_OP_ATTACH && vj->op != VM_OP_REATTACH &&
	    vj->op != VM_OP_SETTLE) {
		/* A job that came while the monitor negotiated: it starts now. */
		vj->phase = VP_INIT;
		vmj_start(d, job);
		return;
	}
	if (vj->op == VM_OP_START && vj->restore) {
		vm_x_restore_ready(d, job);     /* the saved state first, then cont */
	} else if (vj->op == VM_OP_START) {
		vm_proc_ready_to_run(d, job);
	} else if (vj->op == VM_OP_ATTACH || vj->op == VM_OP_REATTACH ||
		   vj->op == VM_OP_SETTLE) {
		vm_job_cmd(d, job, "query-status", NULL, NULL);
		vj->phase = VP_WAIT_STATUS;
	}
}

/*
 * QEMU's data with its time added as qemu_timestamp (a key of QEMU's own
 * by that name gives way), packed straight from the note.
 */
static void publish_qemu_event(struct domain *d, const char *name, const struct mon_note *n)
{
	double ts = (double)n->seconds + (double)n->micros / 1e6;
	json_t *data = json_is_object(n->data) ? n->data : NULL;
	size_t keys = data ? json_object_size(data) : 0;
	struct evbus_data ed;
	const char *k;
	json_t *v;

	if (data && json_object_get(data, "qemu_timestamp"))
		keys--;
	evbus_data_init(&ed);
	if (msgpack_pack_map(&ed.pk, (uint32_t)keys + 1) < 0)
		goto fail;
	json_object_foreach(data, k, v) {
		if (!strcmp(k, "qemu_timestamp"))
			continue;
		if (rpc_pack_cstr(&ed.pk, k) < 0 || rpc_pack_json(&ed.pk, v) < 0)
			goto fail;
	}
	if (rpc_pack_cstr(&ed.pk, "qemu_timestamp") < 0 || msgpack_pack_double(&ed.pk, ts) < 0)
		goto fail;
	evbus_publish_data(vm_of(d)->env->bus, dom_name(d), name, &ed);
	return;
fail:
	/* Nested too deep (or no memory): the event and its time, without QEMU's data. */
	evbus_data_reset(&ed);
	if (msgpack_pack_map(&ed.pk, 1) < 0 || rpc_pack_cstr(&ed.pk, "qemu_timestamp") < 0 ||
	    msgpack_pack_double(&ed.pk, ts) < 0)
		evbus_data_reset(&ed);
	evbus_publish_data(vm_of(d)->env->bus, dom_name(d), name, &ed);
}

void vm_on_note(struct domain *d, struct mon_note *n)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (n->mon != vm->mon)
		return;         /* from a monitor we already dropped */
	switch (n->kind) {
	case MON_NOTE_READY:
		vm->mon_ready = true;
		dom_set_monitor(d, DOM_MON_OK);
		if (vm->mon_said_broken) {
			/* Subscribers heard it was broken: now they hear it is back. */
			vm->mon_said_broken = false;
			vm_publish(d, VE_MONITOR, json_pack("{s:s}", "state", "ok"));
		}
		vm->mon_retries = 0;
		/* Its end will say when QEMU ends: the pidfd of the start or attach goes. */
		vm_proc_monitor_up(d);
		if (vj && vj->phase == VP_WAIT_MON)
			job_monitor_ready(d, job);
		else
			submit_settle(d);       /* a monitor that came back: what is QEMU doing? */
		break;
	case MON_NOTE_STATE:
		dom_set_monitor(d, n->st);
		vm_publish(d, VE_MONITOR, json_pack("{s:s}", "state", dom_mon_state_name(n->st)));
		break;
	case MON_NOTE_EVENT: {
		char name[160];

		dom_count_event(d);
		/* QEMU's own, passed through under its name in the "qemu." family. */
		snprintf(name, sizeof(name), VM_QEMU_EVENT_PREFIX "%s", n->event);
		publish_qemu_event(d, name, n);
		/* After the passthrough: corral's reading of it follows QEMU's word. */
		event_to_state(d, n->event, n->data);
		vm_x_event(d, n->event, n->data);
		vj = vm_held_job(d, &job);      /* a reset may have ended its job */
		if (strcmp(n->event, "SHUTDOWN") != 0)
			break;
		if (vj && vj->op == VM_OP_REBOOT && vj->phase == VP_WAIT_GUEST) {
			/* The guest powered off for our reboot: reset it and run it. */
			vm_job_cmd(d, job, "system_reset", NULL, NULL);
			vj->phase = VP_RESET;
			break;
		}
		if (vm->mon && guest_reboot(vm))
			/* -no-shutdown keeps QEMU waiting: this power-off was meant. */
			mon_cmd(vm->mon, 0, "quit", NULL, NULL, now_ns() + 10 * NSEC_PER_SEC);
		/* A shutdown waits on: it ends when QEMU has exited. */
		break;
	}
	case MON_NOTE_STATS:
		vm_stats_publish(d, n->data);
		n->data = NULL;
		break;
	case MON_NOTE_CLOSED:
		if (vm->killing || vm->quitting != VR_COUNT || vm->proc != VPROC_RUNNING) {
			/* QEMU is exiting: it closes its monitor first.  No failure. */
			dom_set_monitor(d, DOM_MON_NONE);
		} else {
			/*
			 * Broken, unless QEMU is exiting on its own (a crash, a kill
			 * from outside): the event waits for the first retry, which
			 * its exit cancels (vm-proc.c, retry_call).
			 */
			dom_set_monitor(d, DOM_MON_BROKEN);
			snprintf(vm->mon_lost, sizeof(vm->mon_lost), "%s", n->reason);
		}
		if (vm->mon) {
			mon_close(vm->mon);
			vm->mon = NULL;
		}
		vm->mon_ready = false;
		if (vj && vj->phase == VP_WAIT_MON && vj->op != VM_OP_START &&
		    vj->op != VM_OP_ATTACH) {
			/* A job waiting for the handshake: no monitor now. */
			vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': QEMU's monitor failed: %s",
				dom_name(d), n->reason);
		} else if (vj && vj->phase == VP_WAIT_MON && vj->op == VM_OP_START &&
			   vm->proc == VPROC_RUNNING) {
			/*
			 * QEMU closed its monitor before it was up: it is exiting (a bad
			 * option, a file it could not use).  The start fails when the
			 * exit is seen, with what QEMU wrote to its log (vm_proc_gone).
			 */
			vm->start_failed = true;
			vm->killing = true;
			vm_proc_kill(d);
			vj->phase = VP_WAIT_EXIT;
		} else if (vj && vj->phase == VP_WAIT_MON) {
			/* The handshake failed: the job waiting for it fails now. */
			dom_job_finish(d, job, -EPIPE, DOM_ERR_MONITOR, NULL,
				       "domain '%s': QEMU's monitor failed: %s", dom_name(d),
				       n->reason);
		}
		vm_proc_monitor_lost(d);
		break;
	}
}

/* ---- lifecycle jobs ---------------------------------------------------------------- */

static void vm_job_free_priv(void *p)
{
	struct vm_job *vj = p;

	if (!vj)
		return;
	vm_x_free(vj->x);
	json_decref(vj->args);
	json_decref(vj->found_cfg);
	free(vj);
}

/* A job's result: {state, reason} as the domain has them now. */
static json_t *state_reason(struct domain *d)
{
	return json_pack("{s:s, s:s}", "state", dom_state_name(dom_state_actor(d)), "reason",
			 dom_reason_actor(d));
}

/* reset, reboot (a hardware reset): QEMU's RESET came; the job ends if replied. */
static void reset_seen(struct domain *d, struct dom_job *job, struct vm_job *vj)
{
	vj->saw_event = true;
	if (vj->phase == VP_WAIT_EVENT)
		dom_job_finish(d, job, 0, 0, state_reason(d), NULL);
}

static void vmj_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	enum dom_state st = dom_state_actor(d);
	const char *name = dom_name(d);

	switch (vj->op) {
	case VM_OP_DEFINE:
		define_start(d, job);
		return;
	case VM_OP_UNDEFINE:
		undefine_start(d, job);
		return;
	case VM_OP_AUTOSTART:
		autostart_start(d, job);
		return;
	case VM_OP_ATTACH_DISK:
	case VM_OP_DETACH_DISK:
	case VM_OP_ATTACH_NIC:
	case VM_OP_DETACH_NIC:
	case VM_OP_SAVE:
		vm_x_start(d, job);
		return;
	case VM_OP_START:
		if (vj->boot && (!vm->autostart || is_active(st) || vm->proc != VPROC_NONE)) {
			/* Decided now, behind a re-attach or an unmarking queued first. */
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:s}", "state",
				       vm->proc == VPROC_SPAWNING ? "starting" : dom_state_name(st),
				       "skipped", vm->autostart ? "already running" :
				       "no longer marked autostart"), NULL);
			return;
		}
		if (is_active(st) || vm->proc != VPROC_NONE) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is already %s", name,
				vm->proc == VPROC_SPAWNING ? "starting" : dom_state_name(st));
			return;
		}
		if (vm_config_unknown(vm)) {
			char *u = json_dumps(vm->unknown, JSON_COMPACT);

			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' was attached without a config: "
				"corral knows only what its QEMU told, not its %s; give it a config "
				"first (corral define NAME ... / corral edit NAME)", name,
				u ? u : "config");
			free(u);
			return;
		}
		if (vj->restore)
			vm_x_restore_begin(d, job);
		else
			vm_proc_start(d, job);
		return;
	case VM_OP_ATTACH:
		if (is_active(st) || vm->proc != VPROC_NONE || vm->mon) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is already %s", name,
				dom_state_name(st));
			return;
		}
		vm_proc_attach(d, job);
		return;
	case VM_OP_REATTACH:
		vm_proc_reattach(d, job);
		return;
	case VM_OP_SETTLE:
		if (!vm->mon || vm->proc != VPROC_RUNNING) {
			dom_job_finish(d, job, 0, 0, NULL, NULL);
			return;
		}
		vm_job_cmd(d, job, "query-status", NULL, NULL);
		vj->phase = VP_WAIT_STATUS;
		return;
	case VM_OP_DESTROY:
		if (vm->proc == VPROC_SPAWNING) {
			/* The spawn lands in a moment; its QEMU is killed then. */
			vm->kill_on_spawn = true;
			vj->phase = VP_WAIT_EXIT;
			return;
		}
		if (vm->proc == VPROC_NONE) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is not running", name);
			return;
		}
		if (!vm->signalable) {
			/* Not a QEMU corral may kill (see attach): let go of it only. */
			vm_proc_gone(d, 0, false);
			return;
		}
		vm->killing = true;
		/* SIGKILL works on a stopped process too: no cooperation needed. */
		vm_proc_kill(d);
		crash_point("destroy.after-kill");
		vj->phase = VP_WAIT_EXIT;
		return;
	default:
		break;
	}

	if (!is_active(st) || vm->proc != VPROC_RUNNING) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is not running (%s)", name,
			dom_state_name(st));
		return;
	}
	if (vm->mon && !vm->mon_ready) {
		/* The monitor is still negotiating (a re-attach): wait for it. */
		vj->phase = VP_WAIT_MON;
		return;
	}
	switch (vj->op) {
	case VM_OP_SHUTDOWN:
		if (st == DOM_PAUSED) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is paused: its guest cannot see "
				"the power button; resume it first, or destroy it", name);
			return;
		}
		if (json_is_true(json_object_get(vj->args, "force")))
			vm_proc_arm_force(d, job);
		vm_job_cmd(d, job, "system_powerdown", NULL, NULL);
		break;
	case VM_OP_SUSPEND:
		if (st == DOM_PAUSED) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is already paused", name);
			return;
		}
		vm_job_cmd(d, job, "stop", NULL, NULL);
		break;
	case VM_OP_RESUME:
		if (st != DOM_PAUSED) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is not paused (%s)", name,
				dom_state_name(st));
			return;
		}
		vm_job_cmd(d, job, "cont", NULL, NULL);
		break;
	case VM_OP_REBOOT:
		if (guest_reboot(vm)) {
			if (st != DOM_RUNNING) {
				vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is %s: a guest reboot "
					"needs a running guest", name, dom_state_name(st));
				return;
			}
			/* Ask the guest to power off; its SHUTDOWN turns into a reset. */
			vm_job_cmd(d, job, "system_powerdown", NULL, NULL);
			break;
		}
		/* reboot "reset" is a hardware reset */
		__attribute__((fallthrough));
	case VM_OP_RESET:
		vm_job_cmd(d, job, "system_reset", NULL, NULL);
		break;
	case VM_OP_QMP: {
		const char *cmd = json_string_value(json_object_get(vj->args, "command"));

		if (!cmd) {
			vm_fail(d, job, DOM_ERR_INVALID, "qmp: 'command' must be a JSON string");
			return;
		}
		vm_job_cmd(d, job, NULL, NULL, cmd);
		break;
	}
	default:
		BUG_ON(true);
	}
}

static void vmj_step(struct domain *d, struct dom_job *job, int err, json_t *data)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	const char *name = dom_name(d);
	enum vm_op op = vj->op;         /* job and vj are gone once finished */

	if (vj->discovering && vj->phase == VP_WAIT_CMD) {
		vm_discover_step(d, job, err, data);
		return;
	}
	if (vj->x && vm_x_step(d, job, err, data))
		return;
	if (err) {
		const char *desc = json_string_value(json_object_get(data, "desc"));
		const char *reason = json_string_value(json_object_get(data, "reason"));

		if (err == -ETIMEDOUT)
			dom_job_finish(d, job, err, DOM_ERR_TIMEOUT, NULL,
				       "domain '%s': QMP command '%s' got no reply within %.1f s; "
				       "the monitor is unresponsive", name,
				       json_string_value(json_object_get(data, "execute")),
				       json_real_value(json_object_get(data, "waited_s")));
		else if (err == -EIO)
			dom_job_finish(d, job, err, DOM_ERR_QEMU, NULL,
				       "domain '%s': QEMU refused '%s': %s (%s)", name,
				       job->ops->name, desc ? desc : "?",
				       json_string_value(json_object_get(data, "class")));
		else if (err == -EINVAL)
			dom_job_finish(d, job, err, DOM_ERR_INVALID, NULL, "qmp: %s",
				       reason ? reason : "invalid command");
		else
			dom_job_finish(d, job, err, DOM_ERR_MONITOR, NULL, "domain '%s': %s", name,
				       reason ? reason : "monitor failed");
		json_decref(data);
		if (op == VM_OP_START && vm->proc == VPROC_RUNNING &&
		    dom_state_actor(d) == DOM_STARTING) {
			/* A half-started VM is no use to anyone. */
			vm->killing = true;
			vm_proc_kill(d);
		}
		return;
	}

	switch (op) {
	case VM_OP_START:
		crash_point("start.after-cont");
		if (dom_state_actor(d) == DOM_STARTING)         /* no RESUME seen first */
			vm_lifecycle(d, DOM_RUNNING, vj->restore ? VR_RESTORED : VR_BOOTED);
		dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:i}", "state", "running", "pid",
						       vm->pid), NULL);
		break;
	case VM_OP_ATTACH:
	case VM_OP_REATTACH:
	case VM_OP_SETTLE:
		if (vj->phase == VP_WAIT_CONT) {
			/* A start cut short by a crash, now finished. */
			if (dom_state_actor(d) != DOM_RUNNING)  /* no RESUME seen first */
				vm_lifecycle(d, DOM_RUNNING, VR_BOOTED);
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:i}", "state", "running",
							       "pid", vm->pid), NULL);
			break;
		}
		vm_proc_status(d, job, json_object_get(data, "return"));
		break;
	case VM_OP_SHUTDOWN:
		vm->powerdown_asked = true;     /* the guest's power-off is this shutdown */
		if (json_is_false(json_object_get(vj->args, "wait"))) {
			dom_job_finish(d, job, 0, 0, json_pack("{s:s, s:b}", "state",
				       dom_state_name(dom_state_actor(d)), "requested", 1), NULL);
			break;
		}
		/* Accepted: now wait for QEMU's exit (or the deadline). */
		vj->phase = VP_WAIT_EXIT;
		break;
	case VM_OP_SUSPEND:
		if (dom_state_actor(d) != DOM_PAUSED)           /* no STOP seen first */
			vm_lifecycle(d, DOM_PAUSED, VR_USER);
		dom_job_finish(d, job, 0, 0, state_reason(d), NULL);
		break;
	case VM_OP_RESUME:
		if (dom_state_actor(d) != DOM_RUNNING)          /* no RESUME seen first */
			vm_lifecycle(d, DOM_RUNNING, VR_USER);
		dom_job_finish(d, job, 0, 0, state_reason(d), NULL);
		break;
	case VM_OP_REBOOT:
		if (guest_reboot(vm)) {
			if (vj->phase == VP_RESET) {
				vm_job_cmd(d, job, "cont", NULL, NULL);
				vj->phase = VP_CONT;
			} else if (vj->phase == VP_CONT) {
				vm_lifecycle(d, DOM_RUNNING, VR_REBOOTED);
				dom_job_finish(d, job, 0, 0, state_reason(d), NULL);
			} else {
				/* powerdown accepted: now the guest must power off */
				vj->phase = VP_WAIT_GUEST;
			}
			break;
		}
		__attribute__((fallthrough));
	case VM_OP_RESET:
		/* Done once QEMU reports the reset (RESET), which may come after this. */
		if (vj->saw_event)
			dom_job_finish(d, job, 0, 0, state_reason(d), NULL);
		else
			vj->phase = VP_WAIT_EVENT;
		break;
	case VM_OP_QMP:
		/* The result leaves this thread: give it its own copy. */
		dom_job_finish(d, job, 0, 0, json_deep_copy(json_object_get(data, "return")),
			       NULL);
		break;
	default:
		break;
	}
	json_decref(data);
}

/* Deadline passed, or the domain is going away, or destroy preempts us. */
static void vmj_abort(struct domain *d, struct dom_job *job, int err)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;

	if (vj->x)
		vm_x_abort(d, job, err);
	if (dom_holder(d) != job)
		return;         /* it ended itself */
	switch (vj->op) {
	case VM_OP_START:
		if (err == -ESHUTDOWN)
			break;          /* the daemon stops: the next one finishes the start */
		if (vm->proc == VPROC_SPAWNING) {
			vm->kill_on_spawn = true;       /* never leave a half-started QEMU */
			vm->start_failed = true;        /* its end says failed, not destroyed */
		} else if (vm->proc == VPROC_RUNNING && dom_state_actor(d) == DOM_STARTING) {
			vm->start_failed = true;
			vm->killing = true;
			vm_proc_kill(d);
		}
		break;
	case VM_OP_ATTACH:
		if (dom_state_actor(d) == DOM_SHUTOFF && err != -ESHUTDOWN) {
			vm_proc_release(vm);    /* never ours: let go of it */
			dom_set_pid(d, 0);
			dom_set_monitor(d, DOM_MON_NONE);
		}
		break;
	case VM_OP_REBOOT:
		/*
		 * A guest reboot cut short may have left QEMU powered off or
		 * stopped, which its events did not show (they were the job's
		 * steps): learn QEMU's state again.
		 */
		if (guest_reboot(vm) && err != -ESHUTDOWN && vj->phase != VP_WAIT_CMD)
			submit_settle(d);
		break;
	default:
		/*
		 * A re-attach or settle that times out keeps the QEMU: it is
		 * running whatever its monitor says.
		 */
		break;
	}
}

static const struct dom_job_ops vm_ops[VM_OP_COUNT] = {
#define VMOP(op, nm) [op] = { .name = nm, .start = vmj_start, .step = vmj_step, \
			       .abort = vmj_abort, .free_priv = vm_job_free_priv }
	VMOP(VM_OP_START, "start"),     VMOP(VM_OP_SHUTDOWN, "shutdown"),
	VMOP(VM_OP_DESTROY, "destroy"), VMOP(VM_OP_SUSPEND, "suspend"),
	VMOP(VM_OP_RESUME, "resume"),   VMOP(VM_OP_RESET, "reset"),
	VMOP(VM_OP_REBOOT, "reboot"),   VMOP(VM_OP_QMP, "qmp"),
	VMOP(VM_OP_ATTACH, "attach"),   VMOP(VM_OP_UNDEFINE, "undefine"),
	VMOP(VM_OP_DEFINE, "define"),   VMOP(VM_OP_AUTOSTART, "autostart"),
	VMOP(VM_OP_REATTACH, "reattach"), VMOP(VM_OP_SETTLE, "settle"),
	VMOP(VM_OP_ATTACH_DISK, "attach-disk"), VMOP(VM_OP_DETACH_DISK, "detach-disk"),
	VMOP(VM_OP_ATTACH_NIC, "attach-nic"), VMOP(VM_OP_DETACH_NIC, "detach-nic"),
	VMOP(VM_OP_SAVE, "save"), VMOP(VM_OP_RESTORE, "restore"),
#undef VMOP
};

int vm_job_new(enum vm_op op, json_t *args, uint64_t timeout_ns, dom_job_done_fn done,
	       void *done_arg, struct dom_job **ret, char *errbuf, size_t errlen)
{
	struct vm_job *vj;
	int r;

	if ((unsigned)op >= VM_OP_COUNT) {
		snprintf(errbuf, errlen, "unknown operation");
		return -EINVAL;
	}
	vj = calloc(1, sizeof(*vj));
	if (!vj) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	vj->op = op;
	if (op == VM_OP_RESTORE) {
		/* A start, from a saved state: every start rule applies. */
		vj->op = VM_OP_START;
		vj->restore = true;
	}
	/*
	 * A copy of its own: the job runs on a worker while the caller (an
	 * I/O thread) drops its reference, and jansson's reference count is
	 * no hand-off between threads (its final decrement only releases).
	 */
	vj->args = args ? json_deep_copy(args) : NULL;
	if (args && !vj->args) {
		free(vj);
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	creds_self(&vj->creds);
	r = dom_job_new(&vm_ops[op], vj, timeout_ns, done, done_arg, ret);
	if (r < 0) {
		vm_job_free_priv(vj);
		snprintf(errbuf, errlen, "out of memory");
		return r;
	}
	(*ret)->preempt = op == VM_OP_DESTROY;
	return 0;
}

void vm_job_set_caller(struct dom_job *job, const struct creds *caller)
{
	((struct vm_job *)job->priv)->creds = *caller;
}

int vm_submit(struct domain *d, struct dom_job *job)
{
	return dom_submit(d, job);
}

static void settle_done(struct dom_job *job, void *arg)
{
	dom_job_free(job);
}

/* A monitor came back with no job waiting for it: learn QEMU's state. */
static void submit_settle(struct domain *d)
{
	struct dom_job *job;
	char err[64];

	if (vm_job_new(VM_OP_SETTLE, NULL, 30 * NSEC_PER_SEC, settle_done, NULL, &job, err,
		       sizeof(err)) < 0)
		return;
	if (vm_submit(d, job) < 0)
		dom_job_free(job);
}

/* ---- autostart at start-up --------------------------------------------------------- */

struct autostart_walk {
	uint64_t timeout_ns;
	dom_job_done_fn done;
	void *done_arg;
	int submitted;
	bool oom;
};

static int autostart_one(struct domain *d, void *arg)
{
	const struct dom_snapshot *sn = dom_snap_rcu(d);
	struct autostart_walk *w = arg;
	struct dom_job *job;
	char err[64];

	/* A first look; the job decides again in the domain's turn. */
	if (!sn->autostart || sn->state != DOM_SHUTOFF)
		return 0;
	if (vm_job_new(VM_OP_START, NULL, w->timeout_ns, w->done, w->done_arg, &job, err,
		       sizeof(err)) < 0) {
		w->oom = true;
		return 0;
	}
	((struct vm_job *)job->priv)->boot = true;
	if (vm_submit(d, job) < 0)
		dom_job_free(job);      /* removed meanwhile: nothing to start */
	else
		w->submitted++;
	return 0;
}

int vm_autostart_submit_all(struct vm_env *env, uint64_t timeout_ns, dom_job_done_fn done,
			    void *done_arg)
{
	struct autostart_walk w = { .timeout_ns = timeout_ns, .done = done,
				    .done_arg = done_arg };

	/* Sends only: nothing here waits, so the walk may hold the read section. */
	crcu_read_lock();
	reg_for_each_rcu(env->reg, autostart_one, &w);
	crcu_read_unlock();
	return w.oom ? -ENOMEM : w.submitted;
}

/* ---- loading at start-up ----------------------------------------------------------- */

/* Move a definition that cannot be used out of the way, keeping it for a human. */
static void set_aside(struct vm_env *env, const char *file,
		      void (*report)(const char *path, const char *why, void *arg), void *arg,
		      const char *why)
{
	char aside[300], path[PATH_MAX], msg[DOM_ERRMSG_MAX + 300];

	snprintf(aside, sizeof(aside), "%s.corrupt", file);
	snprintf(path, sizeof(path), "%s/domains/%s", env->state_dir, file);
	if (renameat(env->domains_fd, file, env->domains_fd, aside) == 0)
		snprintf(msg, sizeof(msg), "%s; moved aside to %s.corrupt", why, file);
	else
		snprintf(msg, sizeof(msg), "%s; cannot move it aside: %s", why, strerror(errno));
	if (report)
		report(path, msg, arg);
}

/*
 * Definitions are read and parsed on several threads (a file's read and
 * jansson's parse are most of a restart's time, and touch nothing shared),
 * a batch at a time so that a state dir of 100,000 holds at most two
 * batches of parsed definitions at once.  The main thread defines each
 * batch, in directory order, while the loaders parse the next one, then
 * helps them finish it: parsing and defining overlap.
 */
#define LOAD_BATCH 1024
#define LOAD_STOP_EVERY 64      /* directory entries between two looks at stop() */

struct load_slot {
	char *file;
	int r;                  /* 0: def is filled; < 0: err says why */
	bool unreadable;        /* skipped and left alone (not set aside) */
	char *err;
	struct vm_def def;
	struct vm_pubcfg *pub;  /* its config's publication, made here too (or NULL) */
};

struct load_batch {
	struct vm_env *env;
	struct load_slot *v;
	size_t n;
	struct pfor par;        /* its loaders */
};

/* Read, parse and check one definition file (vm-def.c).  Any thread. */
static void load_parse(void *ctx, size_t i)
{
	struct load_batch *b = ctx;
	struct vm_env *env = b->env;
	struct load_slot *sl = &b->v[i];
	char err[DOM_ERRMSG_MAX], *text = NULL;
	size_t len;

	err[0] = '\0';
	sl->r = durable_read(env->domains_fd, "state dir", sl->file, VM_DEF_MAX, &text, &len,
			     err, sizeof(err));
	if (sl->r < 0) {
		/* Not a regular file, a link, unreadable: skipped, left alone. */
		sl->unreadable = true;
	} else {
		sl->r = vm_def_parse(sl->file, text, len, &sl->def, err, sizeof(err));
		free(text);
		if (sl->r == 0)
			sl->pub = pubcfg_new(sl->def.cfg, sl->def.unknown);
	}
	if (sl->r < 0)
		sl->err = strdup(err[0] ? err : strerror(-sl->r));
}

/* Set up to nthreads threads parsing the batch. */
static void load_parse_start(struct load_batch *b, unsigned nthreads)
{
	b->par.fn = load_parse;
	b->par.ctx = b;
	b->par.n = b->n;
	pfor_start(&b->par, nthreads);
}

/* Define one parsed definition (without writing it back).  The main thread. */
static int load_define(struct vm_env *env, struct load_slot *sl,
		       void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	char err[DOM_ERRMSG_MAX], path[PATH_MAX];
	const char *why = sl->err ? sl->err : "out of memory";
	struct vm_def *def = &sl->def;
	struct domain *d;
	struct vm *vm;
	int r;

	snprintf(path, sizeof(path), "%s/domains/%s", env->state_dir, sl->file);
	if (sl->r < 0) {
		if (!sl->unreadable)
			set_aside(env, sl->file, report, arg, why);
		else if (report)
			report(path, why, arg);
		return sl->r;
	}
	if (!def->has_owner)
		creds_self(&def->owner);
	r = domain_new(env, def->cfg, &def->owner, def->unknown, sl->pub, &d, err, sizeof(err));
	sl->pub = NULL;         /* taken, as def->unknown */
	if (r < 0) {
		qemu_config_free(def->cfg);
		if (report)
			report(path, err, arg);
		return r;
	}
	vm = vm_of(d);
	vm->defined = true;
	vm->autostart = def->autostart;
	/* Not shared yet: its first snapshot shows the flag before anyone sees it. */
	dom_set_autostart(d, vm->autostart);
	r = reg_add(env->reg, d);
	if (r < 0) {
		actor_stop(dom_actor(d));
		set_aside(env, sl->file, report, arg,
			  "its name or UUID is taken by another definition");
		return r;
	}
	return 0;
}

/* Define a parsed batch in order and empty it; the number defined. */
static int load_define_batch(struct load_batch *b,
			     void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	int n = 0;

	for (size_t i = 0; i < b->n; i++) {
		if (load_define(b->env, &b->v[i], report, arg) == 0)
			n++;
		free(b->v[i].err);
		free(b->v[i].file);
	}
	memset(b->v, 0, b->n * sizeof(*b->v));
	b->n = 0;
	return n;
}

/*
 * The full batch cur goes to the loaders; the main thread defines the one
 * parsed before it (prev) meanwhile, then helps with cur.
 */
static int load_step(struct load_batch *cur, struct load_batch *prev, unsigned nthreads,
		     void (*report)(const char *path, const char *why, void *arg), void *arg)
{
	int n;

	load_parse_start(cur, nthreads - 1);
	n = load_define_batch(prev, report, arg);
	pfor_finish(&cur->par);
	return n;
}

int vm_env_load(struct vm_env *env,
		void (*report)(const char *path, const char *why, void *arg), void *arg,
		bool (*stop)(void *arg))
{
	struct load_batch bb[2] = { { .env = env }, { .env = env } };
	unsigned nthreads = pfor_threads();
	unsigned cur = 0, seen = 0;
	bool stopped = false;
	struct dirent *de;
	int n = 0, dfd;
	DIR *dp;

	bb[0].v = calloc(LOAD_BATCH, sizeof(*bb[0].v));
	bb[1].v = calloc(LOAD_BATCH, sizeof(*bb[1].v));
	if (!bb[0].v || !bb[1].v) {
		free(bb[0].v);
		free(bb[1].v);
		return -ENOMEM;
	}
	dfd = fcntl(env->domains_fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0 || !(dp = fdopendir(dfd))) {
		int e = errno;

		if (dfd >= 0)
			close(dfd);
		free(bb[0].v);
		free(bb[1].v);
		return -e;
	}
	rewinddir(dp);
	while ((de = readdir(dp))) {
		struct load_batch *b = &bb[cur];
		size_t len = strlen(de->d_name);

		if (stop && ++seen % LOAD_STOP_EVERY == 0 && stop(arg)) {
			stopped = true;
			break;
		}
		if (len > 4 && !strcmp(de->d_name + len - 4, ".tmp")) {
			/* A write cut short by a crash: the file it was to replace is whole. */
			unlinkat(env->domains_fd, de->d_name, 0);
			continue;
		}
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;       /* ., .., NAME.json.corrupt */
		b->v[b->n].file = strdup(de->d_name);
		if (!b->v[b->n].file) {
			if (report)
				report(de->d_name, "out of memory: not loaded", arg);
			continue;
		}
		if (++b->n == LOAD_BATCH) {
			n += load_step(b, &bb[cur ^ 1], nthreads, report, arg);
			cur ^= 1;
		}
	}
	if (stop && !stopped)
		stopped = stop(arg);
	/* The batch parsed last is defined even on a stop: parsed, it is owned here. */
	if (bb[cur].n && !stopped)
		n += load_step(&bb[cur], &bb[cur ^ 1], nthreads, report, arg);
	else
		cur ^= 1;
	n += load_define_batch(&bb[cur], report, arg);
	for (size_t i = 0; i < bb[cur ^ 1].n; i++)
		free(bb[cur ^ 1].v[i].file);    /* a batch left unparsed by a stop */
	free(bb[0].v);
	free(bb[1].v);
	closedir(dp);
	if (!stopped)
		vm_proc_recover(env, report, arg);
	return n;
}

/* ---- blocking conveniences (tools and tests) ---------------------------------------- */

struct vm_wait {
	struct completion done;
	struct dom_job *job;
};

static void wait_done(struct dom_job *job, void *arg)
{
	struct vm_wait *w = arg;

	w->job = job;
	completion_signal(&w->done);
}

/* Wait for a submitted job's end; its error to errbuf; the job freed. */
static int wait_job(struct vm_wait *w, struct domain **ret, char *errbuf, size_t errlen)
{
	int r;

	if (completion_wait(&w->done, 300 * NSEC_PER_SEC) < 0) {
		snprintf(errbuf, errlen, "no answer within 300 s");
		return -ETIMEDOUT;      /* w leaks: its job may still call back */
	}
	r = w->job->err;
	if (r) {
		snprintf(errbuf, errlen, "%s", w->job->errmsg);
		if (w->job->code == DOM_ERR_INVALID)
			r = -EINVAL;
		else if (w->job->code == DOM_ERR_STATE)
			r = -EBUSY;
		else if (w->job->code == DOM_ERR_PERMISSION)
			r = -EPERM;
	} else if (ret) {
		*ret = w->job->dom;
	}
	dom_job_free(w->job);
	free(w);
	return r;
}

int vm_define_wait(struct vm_env *env, json_t *config, struct domain **ret, char *errbuf,
		   size_t errlen)
{
	struct vm_wait *w = calloc(1, sizeof(*w));
	struct creds self;
	int r;

	if (!w)
		return -ENOMEM;
	completion_init(&w->done);
	creds_self(&self);
	r = vm_define_submit(env, config, &self, 60 * NSEC_PER_SEC, wait_done, w, errbuf,
			     errlen);
	if (r < 0) {
		free(w);
		return r;
	}
	return wait_job(w, ret, errbuf, errlen);
}

int vm_undefine_wait(struct vm_env *env, struct domain *d, char *errbuf, size_t errlen)
{
	struct vm_wait *w = calloc(1, sizeof(*w));
	struct dom_job *job;
	int r;

	if (!w)
		return -ENOMEM;
	completion_init(&w->done);
	r = vm_job_new(VM_OP_UNDEFINE, NULL, 60 * NSEC_PER_SEC, wait_done, w, &job, errbuf,
		       errlen);
	if (r == 0 && (r = vm_submit(d, job)) < 0) {
		dom_job_free(job);
		snprintf(errbuf, errlen, "no such domain '%s'", dom_name(d));
	}
	if (r < 0) {
		free(w);
		return r;
	}
	return wait_job(w, NULL, errbuf, errlen);
}

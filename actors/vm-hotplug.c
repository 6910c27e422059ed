/* SPDX-License-Identifier: MIT */
/*
 * Hotplug, save and restore: jobs on the domain like the others, each a
 * short chain of QMP commands and file operations.
 *
 * Disks are opened by an offload thread with the caller's rights (as
 * define and start open theirs) and handed to QEMU as an fd over the
 * monitor (add-fd: QEMU opens /dev/fdset/N, never a path); a bridged NIC's
 * tap device is made by corrald and handed over with getfd.  A detach
 * ends only when QEMU says the device is gone (DEVICE_DELETED): a guest
 * that does not let go keeps it, and the job fails at its deadline with
 * the device still listed.  Should the guest let go later, the event still
 * removes it.
 *
 * save: the guest is paused, its state migrates into a file corrald
 * opened as the caller (getfd + migrate "fd:NAME": no path, no shell for
 * QEMU), corrald fsyncs the file, and QEMU ends (reason "saved").  The
 * file starts with a header line and the config QEMU started with; a
 * restore checks it against the definition, starts QEMU with -incoming
 * defer and feeds it the rest of the file the same way.  A save that fails
 * (the file system fills, its deadline passes) resumes the guest as it was.
 *
 * Everything here runs on the domain actor, except the work of a vm_io.
 */
#include "actors/vm-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rcu.h"
#include "common/util.h"
#include "qemu/image.h"
#include "qemu/qemu.h"

#define POLL_NS         (250 * NSEC_PER_MSEC)   /* query-migrate while a save runs */
#define SAVE_MAGIC      "CORRAL-SAVE 1\n"
#define SAVE_HDR_MAX    (1u << 20)
#define SAVE_FDNAME     "corral-save"
#define RESTORE_FDNAME  "corral-restore"
#define TARGETS         26                      /* vda .. vdz */
#define TICK            (-EINPROGRESS)          /* a step that is our own timer */

enum x_phase {
	X_INIT = 0,
	X_IO,                   /* a file operation on the strand */
	X_ADDFD,                /* attach-disk: add-fd */
	X_BLK_FILE,             /* blockdev-add of the protocol node */
	X_BLK_FMT,              /* blockdev-add of the format node */
	X_GETFD,                /* attach-nic (bridge): getfd of the tap */
	X_NETDEV,               /* netdev_add */
	X_DEVICE,               /* device_add */
	X_DEL,                  /* device_del sent */
	X_WAIT_DELETED,         /* DEVICE_DELETED awaited */
	X_DEF,                  /* the definition is being written */
	X_STOP,                 /* save: stop */
	X_PARAMS,               /* save: migrate-set-parameters */
	X_SAVE_GETFD,           /* save: getfd */
	X_MIGRATE,              /* save: migrate */
	X_POLL,                 /* save / restore: query-migrate on a timer */
	X_FINISH_IO,            /* save: fsync, or the failed file's removal */
	X_RESUME,               /* save failed: cont, before the answer */
	X_RS_GETFD,             /* restore: getfd */
	X_RS_INCOMING,          /* restore: migrate-incoming */
	X_RS_DONE,              /* restore: state loaded; the start goes on (cont) */
};

struct vm_xjob {
	enum x_phase phase;
	bool persistent;
	bool live;                      /* the running QEMU changes (not only the definition) */
	json_t *newcfg;                 /* persistent: the definition to write */
	json_t *entry;                  /* the live device added, or being removed */
	json_t *result;
	int fd;                         /* a disk, tap or state file, until QEMU has it */
	int64_t fdset;                  /* attach-disk: add-fd's set; -1: none */
	bool made_file, made_fmt, made_netdev, made_getfd;
	char dev[48], node[48], file_node[48], netdev[48], fdname[48];
	char path[PATH_MAX];
	/* save / restore */
	bool was_running;
	bool is_restore;
	bool fail_save;                 /* X_FINISH_IO removes the file, then fails */
	int fail_code;
	uint64_t started_ns;
	uint64_t file_bytes;
	struct creds creds;             /* the caller's, for the file's removal */
	char msg[DOM_ERRMSG_MAX];
};

static struct vm_xjob *x_new(void)
{
	struct vm_xjob *x = calloc(1, sizeof(*x));

	if (x) {
		x->fd = -1;
		x->fdset = -1;
	}
	return x;
}

void vm_x_free(struct vm_xjob *x)
{
	if (!x)
		return;
	if (x->fd >= 0)
		close(x->fd);
	json_decref(x->newcfg);
	json_decref(x->entry);
	json_decref(x->result);
	free(x);
}

/* ---- the live devices --------------------------------------------------------------- */

static void pub_free_rcu(struct rcu_head *head)
{
	struct vm_pubcfg *p = container_of(head, struct vm_pubcfg, rcu);

	crcu_reclaim_begin(head);
	json_decref(p->config);
	free(p);
}

/* Publish what QEMU has now (and a save's progress), or nothing when it is gone. */
static void live_publish(struct vm *vm)
{
	struct vm_pubcfg *p = NULL, *old = vm->live_pub;

	if (vm->live) {
		p = calloc(1, sizeof(*p));
		if (p)
			p->config = json_pack("{s:O, s:O, s:O?}", "disks",
					      json_object_get(vm->live, "disks"), "nics",
					      json_object_get(vm->live, "nics"), "progress",
					      vm->progress);
		if (p && p->config) {
			/* Readers get a copy nobody changes. */
			json_t *c = json_deep_copy(p->config);

			json_decref(p->config);
			p->config = c;
		}
		if (p && !p->config) {
			free(p);
			return;         /* out of memory: the old view stays */
		}
	}
	crcu_assign_pointer(vm->live_pub, p);
	if (old)
		crcu_call(&old->rcu, pub_free_rcu);
}

const json_t *vm_live_rcu(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct vm_pubcfg *p;

	if (!vm)
		return NULL;
	p = crcu_dereference(vm->live_pub);
	return p ? p->config : NULL;
}

static void target_name(size_t i, char out[8])
{
	snprintf(out, 8, "vd%c", (char)('a' + i));
}

void vm_live_init(struct vm *vm, const struct qemu_config *cfg, const int *disk_fdsets)
{
	json_t *disks = json_array(), *nics = json_array();

	for (size_t i = 0; disks && i < qemu_config_disk_count(cfg); i++) {
		char t[8], dev[32], node[32], file[32];
		const char *fmt = qemu_config_disk_format(cfg, i);

		target_name(i, t);
		snprintf(dev, sizeof(dev), "vd%zu", i);
		snprintf(node, sizeof(node), "disk%zu", i);
		snprintf(file, sizeof(file), "file%zu", i);
		json_array_append_new(disks, json_pack(
			"{s:s, s:s, s:s?, s:b, s:s, s:s, s:s, s:I, s:b}", "target", t, "path",
			qemu_config_disk_path(cfg, i), "format", fmt, "readonly",
			qemu_config_disk_readonly(cfg, i), "device", dev, "node", node, "file_node",
			file, "fdset", (json_int_t)(disk_fdsets ? disk_fdsets[i] : -1),
			"hotplugged", 0));
	}
	for (size_t i = 0; nics && i < qemu_config_nic_count(cfg); i++) {
		char dev[32], net[32];
		json_t *n, *fwd = json_array();

		snprintf(dev, sizeof(dev), "nic%zu", i);
		snprintf(net, sizeof(net), "net%zu", i);
		for (size_t j = 0; fwd && j < qemu_config_nic_hostfwd_count(cfg, i); j++)
			json_array_append_new(fwd, json_string(qemu_config_nic_hostfwd(cfg, i, j)));
		n = json_pack("{s:s, s:s?, s:s, s:s, s:b}", "type", qemu_config_nic_type(cfg, i),
			      "mac", qemu_config_nic_mac(cfg, i), "device", dev, "netdev", net,
			      "hotplugged", 0);
		if (n && qemu_config_nic_bridge(cfg, i))
			json_object_set_new(n, "bridge", json_string(qemu_config_nic_bridge(cfg, i)));
		if (n && !strcmp(qemu_config_nic_type(cfg, i), "user"))
			json_object_set(n, "hostfwd", fwd);
		json_decref(fwd);
		json_array_append_new(nics, n);
	}
	json_decref(vm->live);
	vm->live = disks && nics ? json_pack("{s:o, s:o}", "disks", disks, "nics", nics) : NULL;
	if (!vm->live) {
		json_decref(disks);
		json_decref(nics);
	}
	vm->live_changed = false;
	json_decref(vm->progress);
	vm->progress = NULL;
	live_publish(vm);
}

void vm_live_clear(struct vm *vm)
{
	json_decref(vm->live);
	vm->live = NULL;
	json_decref(vm->run_config);
	vm->run_config = NULL;
	json_decref(vm->progress);
	vm->progress = NULL;
	vm->live_changed = false;
	live_publish(vm);
}

void vm_live_free(struct vm *vm)
{
	/* The domain is freed after a grace period: nobody reads live_pub. */
	if (vm->live_pub) {
		json_decref(vm->live_pub->config);
		free(vm->live_pub);
		vm->live_pub = NULL;
	}
	json_decref(vm->live);
	json_decref(vm->run_config);
	json_decref(vm->progress);
}

/*
 * The live list of kind ("disks", "nics") of a running QEMU, made from the
 * definition if none was made (a QEMU attached or found after a restart);
 * NULL when no QEMU runs.
 */
static json_t *live_list(struct vm *vm, const char *kind)
{
	if (!vm->live && vm->proc == VPROC_RUNNING)
		vm_live_init(vm, vm->cfg, NULL);
	return json_object_get(vm->live, kind);
}

json_t *vm_live_nics(struct vm *vm)
{
	return live_list(vm, "nics");
}

static json_t *live_find(struct vm *vm, const char *kind, const char *key, const char *val,
			 size_t *ret_i)
{
	json_t *list = live_list(vm, kind), *e;
	size_t i;

	json_array_foreach(list, i, e) {
		const char *v = json_string_value(json_object_get(e, key));

		if (v && !strcasecmp(v, val)) {
			if (ret_i)
				*ret_i = i;
			return e;
		}
	}
	return NULL;
}

/* "vda, vdb" or "none": what the user may name. */
static void live_names(struct vm *vm, const char *kind, const char *key, char *out, size_t len)
{
	json_t *e;
	size_t i, o = 0;

	out[0] = '\0';
	json_array_foreach(live_list(vm, kind), i, e)
		if (o < len)
			o += (size_t)snprintf(out + o, len - o, "%s%s", o ? ", " : "",
					      json_string_value(json_object_get(e, key)));
	if (!out[0])
		snprintf(out, len, "none");
}

/* ---- helpers ------------------------------------------------------------------------ */

static bool is_live(struct domain *d)
{
	struct vm *vm = vm_of(d);
	enum dom_state st = dom_state_actor(d);

	return (st == DOM_RUNNING || st == DOM_PAUSED) && vm->proc == VPROC_RUNNING;
}

static void x_cmd(struct domain *d, struct dom_job *job, enum x_phase ph, const char *execute,
		  json_t *args, int fd)
{
	struct vm *vm = vm_of(d);
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;

	x->phase = ph;
	((struct vm_job *)job->priv)->phase = VP_WAIT_CMD;
	if (!vm->mon || mon_cmd_fd(vm->mon, job->id, execute, args, fd, job->deadline_ns,
				   NULL) < 0) {
		if (!vm->mon) {
			json_decref(args);
			if (fd >= 0)
				close(fd);
		}
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': no monitor connection to QEMU",
			dom_name(d));
	}
}

/* A command whose answer nobody waits for (undoing, cleaning up). */
static void x_cmd_bg(struct vm *vm, const char *execute, json_t *args)
{
	if (!vm->mon) {
		json_decref(args);
		return;
	}
	mon_cmd(vm->mon, 0, execute, args, NULL, now_ns() + 30 * NSEC_PER_SEC);
}

static void tick_at(struct domain *d, struct dom_job *job, uint64_t delay)
{
	dom_job_step_at(d, job->id, TICK, NULL, now_ns() + delay);
}

static const char *qemu_desc(json_t *data)
{
	const char *s = json_string_value(json_object_get(data, "desc"));

	if (!s)
		s = json_string_value(json_object_get(data, "reason"));
	return s ? s : "no reply";
}

static void mac_random(char out[QEMU_MAC_LEN + 1])
{
	uint8_t b[3] = { 0 };

	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		uint64_t t = now_ns();

		memcpy(b, &t, sizeof(b));
	}
	snprintf(out, QEMU_MAC_LEN + 1, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
}

/* "52:54:00:ab:cd:ef" -> "525400abcdef" */
static void mac_compact(const char *mac, char out[13])
{
	size_t o = 0;

	for (const char *c = mac; *c && o < 12; c++)
		if (*c != ':')
			out[o++] = *c;
	out[o] = '\0';
}

/* The definition with list kind changed; checked.  NULL with msg set when refused. */
static json_t *def_check(struct domain *d, json_t *cfg, char *msg, size_t len)
{
	struct qemu_config *c = NULL;
	char err[256];

	if (qemu_config_from_json(cfg, &c, err, sizeof(err)) < 0) {
		snprintf(msg, len, "domain '%s': the definition would not be valid: %s", dom_name(d),
			 err);
		json_decref(cfg);
		return NULL;
	}
	qemu_config_free(c);
	return cfg;
}

static json_t *def_copy(struct domain *d)
{
	json_t *c = json_deep_copy(vm_config_rcu(d));

	if (c && !json_is_array(json_object_get(c, "disks")))
		json_object_set_new(c, "disks", json_array());
	if (c && !json_is_array(json_object_get(c, "nics")))
		json_object_set_new(c, "nics", json_array());
	return c;
}

static void x_finish_ok(struct domain *d, struct dom_job *job);

static void def_done(struct domain *d, struct vm_io *io)
{
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	if (!vj || job->id != io->job_id || !vj->x)
		return;
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s%s", dom_name(d),
			       vj->x->live ? "changed live, but the definition was not: " : "",
			       io->errmsg);
		return;
	}
	x_finish_ok(d, job);
}

/* Done live (or nothing live to do): write the definition if asked, then answer. */
static void x_after_live(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;

	if (!x->persistent) {
		x_finish_ok(d, job);
		return;
	}
	x->phase = X_DEF;
	vj->phase = VP_IO;
	if (vm_def_replace(d, job->id, json_incref(x->newcfg), &vj->creds, def_done) < 0)
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
}

static void x_finish_ok(struct domain *d, struct dom_job *job)
{
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;
	json_t *res = x->result ? json_incref(x->result) : json_object();

	json_object_set_new(res, "live", json_boolean(x->live));
	json_object_set_new(res, "persistent", json_boolean(x->persistent));
	dom_job_finish(d, job, 0, 0, res, NULL);
}

/* ---- opening files as the caller ------------------------------------------------------ */

struct x_io {
	struct vm_io io;
	struct creds creds;
	char path[PATH_MAX];
	char declared[8];               /* attach-disk: the given format, or "" */
	bool readonly;
	int kind;                       /* X_IO_* */
	/* tap */
	char bridge[QEMU_IFNAME_MAX + 1];
	char mac[QEMU_MAC_LEN + 1];
	/* save header */
	char *header;
	size_t header_len;
	int keep_fd;                    /* X_IO_FSYNC, X_IO_DISCARD: the file (not ours) */
	/* Out. */
	int fd;
	char format[8];
	json_t *hdr;                    /* restore: the parsed header */
	uint64_t size;
};

enum { X_IO_DISK, X_IO_TAP, X_IO_SAVE_OPEN, X_IO_RESTORE_OPEN, X_IO_FSYNC, X_IO_DISCARD };

static void x_io_free(struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);

	if (xi->fd >= 0)
		close(xi->fd);
	free(xi->header);
	json_decref(xi->hdr);
	free(xi);
}

static void x_io_err(struct vm_io *io, int err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void x_io_err(struct vm_io *io, int err, int code, const char *fmt, ...)
{
	va_list ap;

	io->err = err;
	io->code = code;
	va_start(ap, fmt);
	vsnprintf(io->errmsg, sizeof(io->errmsg), fmt, ap);
	va_end(ap);
}

static int errno_code(int e)
{
	return e == EACCES || e == EPERM ? DOM_ERR_PERMISSION :
	       e == ENOSPC || e == EDQUOT || e == EROFS || e == EIO ? DOM_ERR_STORAGE :
	       DOM_ERR_INVALID;
}

static void io_save_open(struct x_io *xi)
{
	struct vm_io *io = &xi->io;
	struct stat st;
	size_t off = 0;
	int fd = open(xi->path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		      0600);

	if (fd < 0) {
		x_io_err(io, -errno, errno_code(errno), "cannot create the save file %s: %s",
			 xi->path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		x_io_err(io, -EINVAL, DOM_ERR_INVALID, "the save file %s is not a regular file",
			 xi->path);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	while (off < xi->header_len) {
		ssize_t n = write(fd, xi->header + off, xi->header_len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(fd);
			unlink(xi->path);
			x_io_err(io, -e, errno_code(e), "cannot write the save file %s: %s", xi->path,
				 strerror(e));
			return;
		}
		off += (size_t)n;
	}
	xi->fd = fd;
}

static void io_restore_open(struct x_io *xi)
{
	struct vm_io *io = &xi->io;
	size_t cap = 65536, len = 0, magic = strlen(SAVE_MAGIC);
	char *buf = NULL, *nl = NULL;
	json_error_t jerr;
	struct stat st;
	int fd = open(xi->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		x_io_err(io, -errno, errno_code(errno), "cannot open the saved state %s: %s",
			 xi->path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		x_io_err(io, -EINVAL, DOM_ERR_INVALID, "%s is not a regular file", xi->path);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	xi->size = (uint64_t)st.st_size;
	/* The header: the magic line, then one line of JSON. */
	while (!nl && len < SAVE_HDR_MAX) {
		char *nb = len + 4096 > cap || !buf ? realloc(buf, cap *= 2) : buf;
		ssize_t n;

		if (!nb)
			break;
		buf = nb;
		n = pread(fd, buf + len, cap - len - 1, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (len >= magic)
			nl = memchr(buf + magic, '\n', len - magic);
	}
	if (!buf || len < magic || memcmp(buf, SAVE_MAGIC, magic) != 0 || !nl) {
		close(fd);
		free(buf);
		x_io_err(io, -EINVAL, DOM_ERR_INVALID, "%s is not a state saved by corral", xi->path);
		return;
	}
	xi->hdr = json_loadb(buf + magic, (size_t)(nl - buf) - magic, 0, &jerr);
	if (!json_is_object(xi->hdr) ||
	    lseek(fd, (off_t)(nl + 1 - buf), SEEK_SET) != (off_t)(nl + 1 - buf)) {
		close(fd);
		free(buf);
		x_io_err(io, -EINVAL, DOM_ERR_INVALID, "%s: its header is damaged", xi->path);
		return;
	}
	free(buf);
	xi->fd = fd;
}

static void x_io_work(struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	const char *found = NULL;
	char err[256];
	int r;

	if (xi->kind == X_IO_TAP) {
		char ifname[QEMU_IFNAME_MAX];

		/* The daemon's own: it makes tap devices for the bridges it allows. */
		r = qemu_tap_open(xi->bridge, xi->mac, ifname, err, sizeof(err));
		if (r < 0)
			x_io_err(io, r, r == -EPERM ? DOM_ERR_PERMISSION : DOM_ERR_FAILED, "%s", err);
		else
			xi->fd = r;
		return;
	}
	if (xi->kind == X_IO_FSYNC) {
		struct stat st;

		/* The state is only saved once it is on disk. */
		if (fsync(xi->keep_fd) < 0)
			x_io_err(io, -errno, errno_code(errno), "cannot flush the save file %s: %s",
				 xi->path, strerror(errno));
		else if (fstat(xi->keep_fd, &st) == 0)
			xi->size = (uint64_t)st.st_size;
		return;
	}
	if (xi->kind == X_IO_DISCARD) {
		/* A save that failed: its partial file frees the space it took. */
		if (xi->keep_fd >= 0 && ftruncate(xi->keep_fd, 0) < 0)
			io->err = -errno;
	}
	r = creds_enter(&xi->creds);
	if (r < 0) {
		x_io_err(io, r, DOM_ERR_PERMISSION, "cannot take on the caller's identity: %s",
			 strerror(-r));
		return;
	}
	switch (xi->kind) {
	case X_IO_DISK:
		r = xi->fd = vm_open_image(xi->path, xi->readonly, io->errmsg, sizeof(io->errmsg));
		if (r < 0) {
			io->err = r;
			io->code = errno_code(-r);
			break;
		}
		r = qemu_image_probe(xi->fd, xi->path, xi->declared[0] ? xi->declared : NULL,
				     &found, io->errmsg, sizeof(io->errmsg));
		if (r < 0) {
			io->err = r;
			io->code = DOM_ERR_INVALID;
			break;
		}
		snprintf(xi->format, sizeof(xi->format), "%s", found);
		break;
	case X_IO_SAVE_OPEN:
		io_save_open(xi);
		break;
	case X_IO_RESTORE_OPEN:
		io_restore_open(xi);
		break;
	case X_IO_DISCARD:
		unlink(xi->path);
		break;
	}
	creds_leave();
}

static struct x_io *x_io_new(struct dom_job *job, int kind,
			     void (*complete)(struct domain *, struct vm_io *))
{
	struct x_io *xi = calloc(1, sizeof(*xi));

	if (!xi)
		return NULL;
	vm_io_init(&xi->io, job ? job->id : 0, x_io_work, complete, NULL, x_io_free);
	xi->kind = kind;
	xi->fd = xi->keep_fd = -1;
	if (job)
		xi->creds = ((struct vm_job *)job->priv)->creds;
	return xi;
}

static void x_io_go(struct domain *d, struct dom_job *job, struct x_io *xi)
{
	struct vm_job *vj = job->priv;

	vj->x->phase = X_IO;
	vj->phase = VP_IO;
	vm_io_submit(d, &xi->io);
}

/* The x_io's job, if it still holds d; else NULL (what it opened is then closed). */
static struct dom_job *x_io_job(struct domain *d, struct vm_io *io)
{
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);

	return vj && vj->x && job->id == io->job_id ? job : NULL;
}

/* ---- attach-disk ----------------------------------------------------------------------- */

static void disk_opened(struct domain *d, struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	struct dom_job *job = x_io_job(d, io);
	struct vm_xjob *x;

	if (!job)
		return;
	x = ((struct vm_job *)job->priv)->x;
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	json_object_set_new(x->entry, "format", json_string(xi->format));
	json_object_set_new(x->result, "format", json_string(xi->format));
	if (x->newcfg) {
		json_t *disks = json_object_get(x->newcfg, "disks");

		json_object_set_new(json_array_get(disks, json_array_size(disks) - 1), "format",
				    json_string(xi->format));
	}
	if (!x->live) {
		x_after_live(d, job);
		return;
	}
	x_cmd(d, job, X_ADDFD, "add-fd", json_pack("{s:s}", "opaque", x->dev), xi->fd);
	xi->fd = -1;                    /* the monitor's now */
}

static void attach_disk_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	const char *path = json_string_value(json_object_get(vj->args, "path"));
	const char *target = json_string_value(json_object_get(vj->args, "target"));
	const char *format = json_string_value(json_object_get(vj->args, "format"));
	bool ro = json_is_true(json_object_get(vj->args, "readonly"));
	json_t *disk, *e, *probe;
	char t[8], names[256];
	struct x_io *xi;
	size_t ndef = 0;

	if (!path) {
		vm_fail(d, job, DOM_ERR_INVALID, "attach-disk: 'path' is required");
		return;
	}
	disk = json_pack("{s:s, s:b}", "path", path, "readonly", ro);
	if (disk && format)
		json_object_set_new(disk, "format", json_string(format));
	/* The config's own rules for a disk (absolute path, format, characters). */
	probe = json_pack("{s:s, s:[O]}", "name", dom_name(d), "disks", disk);
	if (!def_check(d, probe, x->msg, sizeof(x->msg))) {
		json_decref(disk);
		vm_fail(d, job, DOM_ERR_INVALID, "%s", x->msg);
		return;
	}
	json_decref(probe);
	if (x->persistent) {
		x->newcfg = def_copy(d);
		ndef = json_array_size(json_object_get(x->newcfg, "disks"));
		json_array_append(json_object_get(x->newcfg, "disks"), disk);
		x->newcfg = def_check(d, x->newcfg, x->msg, sizeof(x->msg));
		if (!x->newcfg) {
			json_decref(disk);
			vm_fail(d, job, DOM_ERR_INVALID, "%s", x->msg);
			return;
		}
	}
	json_decref(disk);
	if (x->live) {
		if ((e = live_find(vm, "disks", "path", path, NULL))) {
			vm_fail(d, job, DOM_ERR_INVALID, "domain '%s': %s is already attached as %s",
				dom_name(d), path, json_string_value(json_object_get(e, "target")));
			return;
		}
		if (target) {
			if (strlen(target) != 3 || strncmp(target, "vd", 2) || target[2] < 'a' ||
			    target[2] > 'z') {
				vm_fail(d, job, DOM_ERR_INVALID, "attach-disk: target '%.16s' is not "
					"vda .. vdz", target);
				return;
			}
			if ((e = live_find(vm, "disks", "target", target, NULL))) {
				vm_fail(d, job, DOM_ERR_INVALID, "domain '%s': target %s is taken by %s",
					dom_name(d), target,
					json_string_value(json_object_get(e, "path")));
				return;
			}
			snprintf(t, sizeof(t), "%s", target);
		} else {
			/* The one the definition would give it, or the first free one. */
			size_t i = x->persistent ? ndef : 0;

			for (t[0] = '\0'; !t[0] && i < TARGETS; i++) {
				target_name(i, t);
				if (live_find(vm, "disks", "target", t, NULL))
					t[0] = '\0';
			}
			for (i = 0; !t[0] && i < TARGETS; i++) {
				target_name(i, t);
				if (live_find(vm, "disks", "target", t, NULL))
					t[0] = '\0';
			}
			if (!t[0]) {
				live_names(vm, "disks", "target", names, sizeof(names));
				vm_fail(d, job, DOM_ERR_INVALID, "domain '%s': no free target (%s)",
					dom_name(d), names);
				return;
			}
		}
	} else {
		target_name(ndef, t);   /* in the definition, disks are named by their order */
	}
	snprintf(x->dev, sizeof(x->dev), "hp-%s", t);
	snprintf(x->node, sizeof(x->node), "hp-%s-fmt", t);
	snprintf(x->file_node, sizeof(x->file_node), "hp-%s-file", t);
	x->entry = json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:b}", "target", t, "path", path,
			     "readonly", ro, "device", x->dev, "node", x->node, "file_node",
			     x->file_node, "hotplugged", 1);
	x->result = json_pack("{s:s, s:s, s:b}", "target", t, "path", path, "readonly", ro);
	xi = x_io_new(job, X_IO_DISK, disk_opened);
	if (!x->entry || !x->result || !xi) {
		if (xi)
			x_io_free(&xi->io);
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	snprintf(xi->path, sizeof(xi->path), "%s", path);
	snprintf(xi->declared, sizeof(xi->declared), "%s", format ? format : "");
	xi->readonly = ro;
	x_io_go(d, job, xi);
}

/* Undo what a failed attach made in QEMU, in reverse order. */
static void attach_undo(struct vm *vm, struct vm_xjob *x)
{
	if (x->made_fmt)
		x_cmd_bg(vm, "blockdev-del", json_pack("{s:s}", "node-name", x->node));
	if (x->made_file)
		x_cmd_bg(vm, "blockdev-del", json_pack("{s:s}", "node-name", x->file_node));
	if (x->fdset >= 0)
		x_cmd_bg(vm, "remove-fd", json_pack("{s:I}", "fdset-id", (json_int_t)x->fdset));
	if (x->made_netdev)
		x_cmd_bg(vm, "netdev_del", json_pack("{s:s}", "id", x->netdev));
	else if (x->made_getfd)
		x_cmd_bg(vm, "closefd", json_pack("{s:s}", "fdname", x->fdname));
	x->made_fmt = x->made_file = x->made_netdev = x->made_getfd = false;
	x->fdset = -1;
}

static void attached(struct domain *d, struct dom_job *job, const char *kind)
{
	struct vm *vm = vm_of(d);
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;

	json_array_append(live_list(vm, kind), x->entry);
	vm->live_changed = true;
	live_publish(vm);
	vm_publish(d, VE_DEVICE_ATTACHED, json_deep_copy(x->result));
	x->made_fmt = x->made_file = x->made_netdev = x->made_getfd = false;
	x->fdset = -1;
	x_after_live(d, job);
}

/* ---- attach-nic ----------------------------------------------------------------------- */

static void netdev_add(struct domain *d, struct dom_job *job)
{
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;
	json_t *a;

	if (!strcmp(json_string_value(json_object_get(x->entry, "type")), "bridge")) {
		a = json_pack("{s:s, s:s, s:s}", "type", "tap", "id", x->netdev, "fd", x->fdname);
	} else {
		json_t *fwd = json_array(), *r;
		size_t i;

		json_array_foreach(json_object_get(x->entry, "hostfwd"), i, r)
			json_array_append_new(fwd, json_pack("{s:O}", "str", r));
		a = json_pack("{s:s, s:s, s:o}", "type", "user", "id", x->netdev, "hostfwd", fwd);
	}
	x_cmd(d, job, X_NETDEV, "netdev_add", a, -1);
}

static void tap_opened(struct domain *d, struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	struct dom_job *job = x_io_job(d, io);
	struct vm_xjob *x;

	if (!job)
		return;
	x = ((struct vm_job *)job->priv)->x;
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	x_cmd(d, job, X_GETFD, "getfd", json_pack("{s:s}", "fdname", x->fdname), xi->fd);
	xi->fd = -1;
}

static void attach_nic_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	const char *spec = json_string_value(json_object_get(vj->args, "spec"));
	const char *mac = json_string_value(json_object_get(vj->args, "mac"));
	struct qemu_config *c = NULL;
	json_t *probe, *nic = NULL, *fwd;
	char m[QEMU_MAC_LEN + 1], r[QEMU_MAC_LEN + 1], hex[13], err[256], brbuf[QEMU_IFNAME_MAX + 1];
	const char *br;

	probe = json_pack("{s:s, s:[s]}", "name", dom_name(d), "nics", spec ? spec : "user");
	if (!probe || qemu_config_from_json(probe, &c, err, sizeof(err)) < 0) {
		json_decref(probe);
		vm_fail(d, job, DOM_ERR_INVALID, "attach-nic: %s", probe ? err : "out of memory");
		return;
	}
	json_decref(probe);
	/* The config is freed below: keep what is needed of it. */
	br = qemu_config_nic_bridge(c, 0) ? brbuf : NULL;
	if (br)
		snprintf(brbuf, sizeof(brbuf), "%s", qemu_config_nic_bridge(c, 0));
	if (mac && !qemu_mac_valid(mac)) {
		qemu_config_free(c);
		vm_fail(d, job, DOM_ERR_INVALID, "attach-nic: '%.32s' is not a unicast MAC address",
			mac);
		return;
	}
	if (!mac)
		mac = qemu_config_nic_mac(c, 0);
	if (br) {
		bool allowed = false;

		for (char **b = vm->env->bridges; b && *b; b++)
			allowed |= !strcmp(*b, br);
		if (!allowed) {
			vm_fail(d, job, DOM_ERR_PERMISSION, "attach-nic: bridge '%s' is not one corrald "
				"lets guests join (see corrald --allow-bridge)", br);
			qemu_config_free(c);
			return;
		}
	}
	for (int tries = 0; !mac && tries < 64; tries++) {
		mac_random(r);
		if (!x->live || !live_find(vm, "nics", "mac", r, NULL))
			mac = r;        /* the definition's own are checked with it below */
	}
	snprintf(m, sizeof(m), "%s", mac ? mac : "52:54:00:00:00:01");
	for (char *p = m; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	nic = json_pack("{s:s, s:s}", "type", qemu_config_nic_type(c, 0), "mac", m);
	if (nic && br)
		json_object_set_new(nic, "bridge", json_string(br));
	if (nic && !br) {
		fwd = json_array();
		for (size_t j = 0; fwd && j < qemu_config_nic_hostfwd_count(c, 0); j++)
			json_array_append_new(fwd, json_string(qemu_config_nic_hostfwd(c, 0, j)));
		json_object_set_new(nic, "hostfwd", fwd);
	}
	qemu_config_free(c);
	if (!nic) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	if (x->persistent) {
		x->newcfg = def_copy(d);
		/* A copy: the live entry gets fields a definition does not have. */
		json_array_append_new(json_object_get(x->newcfg, "nics"), json_deep_copy(nic));
		x->newcfg = def_check(d, x->newcfg, x->msg, sizeof(x->msg));
		if (!x->newcfg) {
			json_decref(nic);
			vm_fail(d, job, DOM_ERR_INVALID, "%s", x->msg);
			return;
		}
	}
	if (x->live && live_find(vm, "nics", "mac", m, NULL)) {
		json_decref(nic);
		vm_fail(d, job, DOM_ERR_INVALID, "domain '%s' already has a NIC with MAC %s",
			dom_name(d), m);
		return;
	}
	mac_compact(m, hex);
	snprintf(x->dev, sizeof(x->dev), "hp-nic-%s", hex);
	snprintf(x->netdev, sizeof(x->netdev), "hp-net-%s", hex);
	snprintf(x->fdname, sizeof(x->fdname), "hp-tap-%s", hex);
	x->result = json_deep_copy(nic);
	x->entry = nic;
	json_object_set_new(x->entry, "device", json_string(x->dev));
	json_object_set_new(x->entry, "netdev", json_string(x->netdev));
	json_object_set_new(x->entry, "hotplugged", json_true());
	if (!x->live) {
		x_after_live(d, job);
		return;
	}
	if (br) {
		struct x_io *xi = x_io_new(job, X_IO_TAP, tap_opened);

		if (!xi) {
			vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
			return;
		}
		snprintf(xi->bridge, sizeof(xi->bridge), "%s", br);
		snprintf(xi->mac, sizeof(xi->mac), "%s", m);
		x_io_go(d, job, xi);
		return;
	}
	netdev_add(d, job);
}

/* ---- detach --------------------------------------------------------------------------- */

static void detach_start(struct domain *d, struct dom_job *job, bool disk)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	const char *key = disk ? "target" : "mac";
	const char *val = json_string_value(json_object_get(vj->args, key));
	const char *kind = disk ? "disks" : "nics";
	json_t *e = NULL, *list, *de;
	char names[512];
	size_t i, di = SIZE_MAX;

	if (!val) {
		vm_fail(d, job, DOM_ERR_INVALID, "%s: '%s' is required", vj->op ==
			VM_OP_DETACH_DISK ? "detach-disk" : "detach-nic", key);
		return;
	}
	if (x->live) {
		e = live_find(vm, kind, key, val, NULL);
		if (!e) {
			live_names(vm, kind, key, names, sizeof(names));
			vm_fail(d, job, DOM_ERR_INVALID, "domain '%s' has no %s %.32s (it has: %s)",
				dom_name(d), disk ? "disk" : "NIC with MAC", val, names);
			return;
		}
	}
	if (x->persistent) {
		x->newcfg = def_copy(d);
		list = json_object_get(x->newcfg, kind);
		json_array_foreach(list, i, de) {
			const char *v;
			char t[8];

			if (disk && e) {
				v = json_string_value(json_object_get(de, "path"));
				if (v && !strcmp(v, json_string_value(json_object_get(e, "path"))))
					di = i;
			} else if (disk) {
				target_name(i, t);
				if (!strcmp(t, val))
					di = i;
			} else {
				v = json_string_value(json_object_get(de, "mac"));
				if (v && !strcasecmp(v, val))
					di = i;
			}
		}
		if (di == SIZE_MAX) {
			vm_fail(d, job, DOM_ERR_INVALID, "domain '%s': its definition has no %s %.32s",
				dom_name(d), disk ? "disk" : "NIC with MAC", val);
			return;
		}
		json_array_remove(list, di);
		x->newcfg = def_check(d, x->newcfg, x->msg, sizeof(x->msg));
		if (!x->newcfg) {
			vm_fail(d, job, DOM_ERR_INVALID, "%s", x->msg);
			return;
		}
	}
	x->result = json_pack("{s:s}", key, val);
	if (!x->live) {
		x_after_live(d, job);
		return;
	}
	x->entry = json_incref(e);
	json_object_set_new(x->result, "device", json_string(json_string_value(
		json_object_get(e, "device"))));
	x_cmd(d, job, X_DEL, "device_del",
	      json_pack("{s:s}", "id", json_string_value(json_object_get(e, "device"))), -1);
}

/* The device is gone from QEMU: its back ends go too, and it leaves the list. */
static void device_gone(struct domain *d, const char *dev)
{
	struct vm *vm = vm_of(d);
	struct dom_job *job;
	struct vm_job *vj = vm_held_job(d, &job);
	json_t *e;
	size_t i;
	bool disk = true;

	e = vm->live ? live_find(vm, "disks", "device", dev, &i) : NULL;
	if (!e && vm->live) {
		e = live_find(vm, "nics", "device", dev, &i);
		disk = false;
	}
	if (!e)
		return;
	json_incref(e);
	if (disk) {
		json_int_t fdset = json_integer_value(json_object_get(e, "fdset"));

		x_cmd_bg(vm, "blockdev-del", json_pack("{s:s}", "node-name",
			 json_string_value(json_object_get(e, "node"))));
		x_cmd_bg(vm, "blockdev-del", json_pack("{s:s}", "node-name",
			 json_string_value(json_object_get(e, "file_node"))));
		if (fdset >= 0 && json_object_get(e, "fdset"))
			x_cmd_bg(vm, "remove-fd", json_pack("{s:I}", "fdset-id", fdset));
	} else {
		x_cmd_bg(vm, "netdev_del", json_pack("{s:s}", "id",
			 json_string_value(json_object_get(e, "netdev"))));
	}
	json_array_remove(json_object_get(vm->live, disk ? "disks" : "nics"), i);
	vm->live_changed = true;
	live_publish(vm);
	vm_publish(d, VE_DEVICE_DETACHED,
		   json_pack("{s:s, s:s?, s:s?}", "device", dev, "target",
				json_string_value(json_object_get(e, "target")), "mac",
				json_string_value(json_object_get(e, "mac"))));
	if (vj && vj->x && vj->x->phase == X_WAIT_DELETED && vj->x->entry &&
	    !strcmp(json_string_value(json_object_get(vj->x->entry, "device")), dev))
		x_after_live(d, job);
	json_decref(e);
}

/* ---- save ------------------------------------------------------------------------------ */

static void progress_set(struct domain *d, struct vm_xjob *x, const char *status,
			 json_t *ram)
{
	struct vm *vm = vm_of(d);
	uint64_t total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
	uint64_t done = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
	uint64_t left = (uint64_t)json_integer_value(json_object_get(ram, "remaining"));
	json_t *p = json_pack("{s:s, s:s, s:f}", "job", x->is_restore ? "restore" : "save",
			      "status", status, "elapsed_s",
			      (double)(now_ns() - x->started_ns) / 1e9);

	if (!p)
		return;
	if (ram) {
		json_object_set_new(p, "transferred_bytes", json_integer((json_int_t)done));
		json_object_set_new(p, "remaining_bytes", json_integer((json_int_t)left));
		json_object_set_new(p, "total_bytes", json_integer((json_int_t)total));
		json_object_set_new(p, "percent", json_real(total ? 100.0 * (double)(total - left) /
							      (double)total : 0.0));
	}
	json_decref(vm->progress);
	vm->progress = p;
	live_publish(vm);
	vm_publish(d, VE_PROGRESS, json_deep_copy(p));
}

static void progress_clear(struct vm *vm)
{
	if (!vm->progress)
		return;
	json_decref(vm->progress);
	vm->progress = NULL;
	live_publish(vm);
}

static void discarded(struct domain *d, struct vm_io *io)
{
	struct dom_job *job = x_io_job(d, io);
	struct vm_xjob *x;

	if (!job)
		return;
	x = ((struct vm_job *)job->priv)->x;
	dom_job_finish(d, job, -EIO, x->fail_code, NULL, "%s", x->msg);
}

/*
 * The save failed: the guest runs on as it did, the partial file goes
 * (truncated, then removed as the caller), and the job fails with msg.
 * job may be NULL (its deadline already ended it).
 */
static void save_failed(struct domain *d, struct dom_job *job, struct vm_xjob *x, int code)
{
	struct vm *vm = vm_of(d);
	struct x_io *xi;

	progress_clear(vm);
	x->fail_code = code;
	if (x->was_running) {
		x->was_running = false;
		if (job && vm->mon) {
			/* Running again before the answer: as it was. */
			x_cmd(d, job, X_RESUME, "cont", NULL, -1);
			return;
		}
		x_cmd_bg(vm, "cont", NULL);
	}
	xi = x_io_new(job, X_IO_DISCARD, discarded);
	if (!xi) {
		if (job)
			dom_job_finish(d, job, -EIO, code, NULL, "%s", x->msg);
		return;
	}
	xi->creds = x->creds;
	snprintf(xi->path, sizeof(xi->path), "%s", x->path);
	xi->keep_fd = x->fd;
	xi->fd = x->fd;                 /* closed with the io */
	x->fd = -1;
	if (job) {
		x_io_go(d, job, xi);
		x->phase = X_FINISH_IO;
	} else {
		vm_io_submit(d, &xi->io);
	}
}

static void nothing_done(struct domain *d, struct vm_io *io)
{
}

static void save_opened(struct domain *d, struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	struct dom_job *job = x_io_job(d, io);
	struct vm_xjob *x;

	if (!job) {
		/* The job ended meanwhile: the file, empty of state, goes (as the caller). */
		struct x_io *gone = xi->fd >= 0 ? x_io_new(NULL, X_IO_DISCARD, nothing_done) : NULL;

		if (gone) {
			gone->creds = xi->creds;
			gone->fd = gone->keep_fd = xi->fd;
			xi->fd = -1;
			snprintf(gone->path, sizeof(gone->path), "%s", xi->path);
			vm_io_submit(d, &gone->io);
		}
		return;
	}
	x = ((struct vm_job *)job->priv)->x;
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	x->fd = xi->fd;
	xi->fd = -1;
	if (!is_live(d)) {
		snprintf(x->msg, sizeof(x->msg), "domain '%s' stopped before its save began",
			 dom_name(d));
		save_failed(d, job, x, DOM_ERR_STATE);
		return;
	}
	progress_set(d, x, "setup", NULL);
	x->was_running = dom_state_actor(d) == DOM_RUNNING;
	if (x->was_running)
		x_cmd(d, job, X_STOP, "stop", NULL, -1);
	else
		x_cmd(d, job, X_PARAMS, "migrate-set-parameters",
		      json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40), -1);
}

static void save_synced(struct domain *d, struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	struct dom_job *job = x_io_job(d, io);
	struct vm *vm = vm_of(d);
	struct vm_xjob *x;

	xi->keep_fd = -1;
	if (!job)
		return;
	x = ((struct vm_job *)job->priv)->x;
	if (io->err) {
		snprintf(x->msg, sizeof(x->msg), "domain '%s': save failed: %.300s; the guest runs on",
			 dom_name(d), io->errmsg);
		save_failed(d, job, x, io->code);
		return;
	}
	x->file_bytes = xi->size;
	progress_clear(vm);
	/* On disk: this QEMU's work is done.  Its end answers the job (reason saved). */
	vm->saved = true;
	vm->killing = true;
	((struct vm_job *)job->priv)->phase = VP_WAIT_EXIT;
	if (vm_proc_kill(d) < 0)
		x_cmd_bg(vm, "quit", NULL);
}

static void save_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	const char *path = json_string_value(json_object_get(vj->args, "path"));
	char uuid[37];
	struct x_io *xi;
	json_t *hdr;
	char *text;

	if (!path || path[0] != '/') {
		vm_fail(d, job, DOM_ERR_INVALID, "save: 'path' must be an absolute path");
		return;
	}
	if (!vm->signalable) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s': its QEMU is not one corral started and "
			"may stop: it cannot be saved", dom_name(d));
		return;
	}
	if (!vm->run_config) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s': this corrald did not start its QEMU "
			"(it was attached, or found again after a restart), so the config a restore "
			"needs is unknown; restart it before saving", dom_name(d));
		return;
	}
	if (vm->live_changed) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s': devices were attached or detached "
			"since it started, which a restore could not rebuild; restart it (with "
			"--persistent changes) before saving", dom_name(d));
		return;
	}
	uuid_format(dom_uuid(d), uuid);
	hdr = json_pack("{s:i, s:s, s:s, s:O, s:f}", "version", 1, "name", dom_name(d), "uuid",
			uuid, "config", vm->run_config, "saved",
			(double)wall_ns() / 1e9);
	text = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(hdr);
	xi = text ? x_io_new(job, X_IO_SAVE_OPEN, save_opened) : NULL;
	if (!xi || asprintf(&xi->header, "%s%s\n", SAVE_MAGIC, text) < 0) {
		if (xi) {
			xi->header = NULL;
			x_io_free(&xi->io);
		}
		free(text);
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	free(text);
	xi->header_len = strlen(xi->header);
	snprintf(xi->path, sizeof(xi->path), "%s", path);
	snprintf(x->path, sizeof(x->path), "%s", path);
	x->started_ns = now_ns();
	x_io_go(d, job, xi);
}

/* A query-migrate answer, for a save or a restore. */
static void migrate_status(struct domain *d, struct dom_job *job, json_t *ret)
{
	struct vm *vm = vm_of(d);
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;
	const char *status = json_string_value(json_object_get(ret, "status"));
	const char *desc = json_string_value(json_object_get(ret, "error-desc"));

	if (!status)
		status = x->is_restore ? "active" : "setup";   /* nothing begun yet */
	if (!strcmp(status, "completed")) {
		if (x->is_restore) {
			progress_clear(vm);
			x->phase = X_RS_DONE;
			((struct vm_job *)job->priv)->phase = VP_INIT;
			vm_proc_ready_to_run(d, job);   /* cont; the start ends "restored" */
			return;
		}
		progress_set(d, x, status, json_object_get(ret, "ram"));
		{
			struct x_io *xi = x_io_new(job, X_IO_FSYNC, save_synced);

			if (!xi) {
				snprintf(x->msg, sizeof(x->msg), "out of memory");
				save_failed(d, job, x, DOM_ERR_FAILED);
				return;
			}
			snprintf(xi->path, sizeof(xi->path), "%s", x->path);
			xi->keep_fd = x->fd;    /* still ours: closed with the job */
			x_io_go(d, job, xi);
			x->phase = X_FINISH_IO;
		}
		return;
	}
	if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
		bool full = desc && (strstr(desc, "No space") || strstr(desc, "quota"));

		if (x->is_restore) {
			progress_clear(vm);
			vm->start_failed = true;
			vm->killing = true;
			vm_proc_kill(d);
			dom_job_finish(d, job, -EIO, DOM_ERR_QEMU, NULL, "domain '%s': QEMU could not "
				       "load the saved state %s: %s", dom_name(d), x->path,
				       desc ? desc : status);
			return;
		}
		snprintf(x->msg, sizeof(x->msg), "domain '%s': save to %.200s failed: %.200s; the guest "
			 "runs on as before and the partial file was removed", dom_name(d), x->path,
			 desc ? desc : status);
		save_failed(d, job, x, full ? DOM_ERR_STORAGE : DOM_ERR_QEMU);
		return;
	}
	progress_set(d, x, status, json_object_get(ret, "ram"));
	x->phase = X_POLL;
	((struct vm_job *)job->priv)->phase = VP_WAIT_CMD;
	tick_at(d, job, POLL_NS);
}

/* ---- restore --------------------------------------------------------------------------- */

static void restore_opened(struct domain *d, struct vm_io *io)
{
	struct x_io *xi = container_of(io, struct x_io, io);
	struct dom_job *job = x_io_job(d, io);
	struct vm_xjob *x;
	const json_t *now;
	char uuid[37];
	const char *hname, *huuid;

	if (!job)
		return;
	x = ((struct vm_job *)job->priv)->x;
	if (io->err) {
		dom_job_finish(d, job, io->err, io->code, NULL, "domain '%s': %s", dom_name(d),
			       io->errmsg);
		return;
	}
	uuid_format(dom_uuid(d), uuid);
	hname = json_string_value(json_object_get(xi->hdr, "name"));
	huuid = json_string_value(json_object_get(xi->hdr, "uuid"));
	if (!hname || !huuid || strcmp(hname, dom_name(d)) || strcasecmp(huuid, uuid)) {
		vm_fail(d, job, DOM_ERR_INVALID, "%s holds the state of domain '%.64s' (%.36s), "
			"not of '%s'", x->path, hname ? hname : "?", huuid ? huuid : "?",
			dom_name(d));
		return;
	}
	now = vm_config_rcu(d);
	if (!json_equal(json_object_get(xi->hdr, "config"), (json_t *)now)) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s': its definition changed since %s was "
			"saved; a restore needs the same devices and sizes (see corral dumpconfig)",
			dom_name(d), x->path);
		return;
	}
	x->fd = xi->fd;
	xi->fd = -1;
	x->file_bytes = xi->size;
	x->phase = X_INIT;
	vm_proc_start(d, job);
}

void vm_x_restore_begin(struct domain *d, struct dom_job *job)
{
	struct vm_job *vj = job->priv;
	const char *path = json_string_value(json_object_get(vj->args, "path"));
	struct x_io *xi;

	if (!path || path[0] != '/') {
		vm_fail(d, job, DOM_ERR_INVALID, "restore: 'path' must be an absolute path");
		return;
	}
	vj->x = x_new();
	xi = vj->x ? x_io_new(job, X_IO_RESTORE_OPEN, restore_opened) : NULL;
	if (!xi) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	vj->x->is_restore = true;
	vj->x->started_ns = now_ns();
	snprintf(vj->x->path, sizeof(vj->x->path), "%s", path);
	snprintf(xi->path, sizeof(xi->path), "%s", path);
	x_io_go(d, job, xi);
}

void vm_x_restore_ready(struct domain *d, struct dom_job *job)
{
	struct vm_xjob *x = ((struct vm_job *)job->priv)->x;

	progress_set(d, x, "setup", NULL);
	x_cmd(d, job, X_RS_GETFD, "getfd", json_pack("{s:s}", "fdname", RESTORE_FDNAME), x->fd);
	x->fd = -1;
}

/* ---- the job's steps --------------------------------------------------------------------- */

void vm_x_start(struct domain *d, struct dom_job *job)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	enum dom_state st = dom_state_actor(d);
	struct vm_xjob *x;

	x = vj->x = x_new();
	if (!x) {
		vm_fail(d, job, DOM_ERR_FAILED, "out of memory");
		return;
	}
	x->creds = vj->creds;
	x->persistent = json_is_true(json_object_get(vj->args, "persistent"));
	x->live = is_live(d);
	if (vj->op == VM_OP_SAVE) {
		if (!x->live) {
			vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is %s: only a running or paused "
				"domain can be saved", dom_name(d), dom_state_name(st));
			return;
		}
	} else if (!x->live && (st != DOM_SHUTOFF && st != DOM_CRASHED)) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is %s: try again once it runs or is "
			"off", dom_name(d), dom_state_name(st));
		return;
	} else if (!x->live && !x->persistent) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' is not running: a device can be plugged "
			"into a running domain, or with persistent into its definition",
			dom_name(d));
		return;
	}
	if (x->live && (!vm->mon || !vm->mon_ready)) {
		vm_fail(d, job, DOM_ERR_MONITOR, "domain '%s': its monitor is not connected",
			dom_name(d));
		return;
	}
	if (x->persistent && vm_config_unknown(vm)) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s' was attached without a config: give it "
			"one before changing its definition (corral define / corral edit)",
			dom_name(d));
		return;
	}
	if (x->persistent && vm->def_writes) {
		vm_fail(d, job, DOM_ERR_STATE, "domain '%s': an earlier change of its definition is "
			"still being written; try again", dom_name(d));
		return;
	}
	switch (vj->op) {
	case VM_OP_ATTACH_DISK: attach_disk_start(d, job); break;
	case VM_OP_DETACH_DISK: detach_start(d, job, true); break;
	case VM_OP_ATTACH_NIC: attach_nic_start(d, job); break;
	case VM_OP_DETACH_NIC: detach_start(d, job, false); break;
	case VM_OP_SAVE: save_start(d, job); break;
	default: BUG_ON(true);
	}
}

bool vm_x_step(struct domain *d, struct dom_job *job, int err, json_t *data)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	json_t *ret = json_object_get(data, "return");
	enum x_phase ph = x->phase;

	if (err == TICK) {
		json_decref(data);
		if (ph == X_POLL)
			x_cmd(d, job, X_POLL, "query-migrate", NULL, -1);
		return true;
	}
	if (ph == X_RS_DONE || ph == X_INIT)
		return false;           /* restore: the start's own steps */
	if (err) {
		char msg[DOM_ERRMSG_MAX];

		if (ph == X_RESUME) {
			snprintf(x->msg + strlen(x->msg), sizeof(x->msg) - strlen(x->msg),
				 "; but QEMU refused to resume the guest: %s", qemu_desc(data));
			json_decref(data);
			save_failed(d, job, x, x->fail_code);
			return true;
		}

		snprintf(msg, sizeof(msg), "domain '%s': QEMU refused '%s': %s", dom_name(d),
			 ph == X_ADDFD ? "add-fd" : ph == X_BLK_FILE || ph == X_BLK_FMT ?
			 "blockdev-add" : ph == X_GETFD || ph == X_SAVE_GETFD || ph == X_RS_GETFD ?
			 "getfd" : ph == X_NETDEV ? "netdev_add" : ph == X_DEVICE ? "device_add" :
			 ph == X_DEL ? "device_del" : ph == X_STOP ? "stop" : ph == X_PARAMS ?
			 "migrate-set-parameters" : ph == X_MIGRATE ? "migrate" : ph ==
			 X_RS_INCOMING ? "migrate-incoming" : "query-migrate", qemu_desc(data));
		json_decref(data);
		if (err == -ETIMEDOUT)
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
				 " (no reply in time)");
		if (x->is_restore) {
			progress_clear(vm);
			vm->start_failed = true;
			vm->killing = true;
			vm_proc_kill(d);
			dom_job_finish(d, job, err, DOM_ERR_QEMU, NULL, "%s", msg);
		} else if (vj->op == VM_OP_SAVE) {
			snprintf(x->msg, sizeof(x->msg), "%s; the guest runs on as before", msg);
			if (ph == X_STOP)
				x->was_running = false;
			if (ph != X_POLL && ph != X_MIGRATE && ph != X_SAVE_GETFD && ph != X_PARAMS &&
			    ph != X_STOP)
				x_cmd_bg(vm, "migrate_cancel", NULL);
			save_failed(d, job, x, err == -EIO ? DOM_ERR_QEMU : DOM_ERR_MONITOR);
		} else {
			attach_undo(vm, x);
			dom_job_finish(d, job, err, err == -EIO ? DOM_ERR_QEMU : DOM_ERR_MONITOR, NULL,
				       "%s", msg);
		}
		return true;
	}
	switch (ph) {
	case X_ADDFD: {
		char set[40];

		x->fdset = json_integer_value(json_object_get(ret, "fdset-id"));
		json_object_set_new(x->entry, "fdset", json_integer((json_int_t)x->fdset));
		/* The filename names the set: /dev/fdset/N, never a host path. */
		snprintf(set, sizeof(set), "/dev/fdset/%" PRId64, x->fdset);
		x_cmd(d, job, X_BLK_FILE, "blockdev-add", json_pack(
			"{s:s, s:s, s:s, s:b}", "driver", "file", "filename", set, "node-name",
			x->file_node, "read-only", json_is_true(json_object_get(x->entry,
										 "readonly"))), -1);
		break;
	}
	case X_BLK_FILE:
		x->made_file = true;
		x_cmd(d, job, X_BLK_FMT, "blockdev-add", json_pack(
			"{s:s, s:s, s:s, s:b}", "driver",
			json_string_value(json_object_get(x->entry, "format")), "file", x->file_node,
			"node-name", x->node, "read-only",
			json_is_true(json_object_get(x->entry, "readonly"))), -1);
		break;
	case X_BLK_FMT:
		x->made_fmt = true;
		x_cmd(d, job, X_DEVICE, "device_add", json_pack(
			"{s:s, s:s, s:s}", "driver", "virtio-blk-pci", "drive", x->node, "id", x->dev),
		      -1);
		break;
	case X_GETFD:
		x->made_getfd = true;
		netdev_add(d, job);
		break;
	case X_NETDEV:
		x->made_netdev = true;
		x_cmd(d, job, X_DEVICE, "device_add", json_pack(
			"{s:s, s:s, s:s, s:s, s:s}", "driver", "virtio-net-pci", "netdev", x->netdev,
			"id", x->dev, "mac", json_string_value(json_object_get(x->entry, "mac")),
			"romfile", ""), -1);
		break;
	case X_DEVICE:
		attached(d, job, vj->op == VM_OP_ATTACH_DISK ? "disks" : "nics");
		break;
	case X_DEL:
		/* Asked: now the guest must let go (DEVICE_DELETED), or the deadline passes. */
		x->phase = X_WAIT_DELETED;
		break;
	case X_STOP:
		x_cmd(d, job, X_PARAMS, "migrate-set-parameters",
		      json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40), -1);
		break;
	case X_PARAMS: {
		int fd = dup(x->fd);    /* ours stays, for the fsync */

		if (fd < 0) {
			snprintf(x->msg, sizeof(x->msg), "domain '%s': save failed: %s",
				 dom_name(d), strerror(errno));
			save_failed(d, job, x, DOM_ERR_FAILED);
			break;
		}
		x_cmd(d, job, X_SAVE_GETFD, "getfd", json_pack("{s:s}", "fdname", SAVE_FDNAME),
		      fd);
		break;
	}
	case X_SAVE_GETFD:
		x_cmd(d, job, X_MIGRATE, "migrate", json_pack("{s:s}", "uri", "fd:" SAVE_FDNAME),
		      -1);
		break;
	case X_RESUME:
		/* QEMU's RESUME event came first and says so; if not, the answer does. */
		if (dom_state_actor(d) == DOM_PAUSED)
			vm_lifecycle(d, DOM_RUNNING, VR_UNPAUSED);
		save_failed(d, job, x, x->fail_code);
		break;
	case X_RS_GETFD:
		x_cmd(d, job, X_RS_INCOMING, "migrate-incoming",
		      json_pack("{s:s}", "uri", "fd:" RESTORE_FDNAME), -1);
		break;
	case X_MIGRATE:
	case X_RS_INCOMING:
		x->phase = X_POLL;
		tick_at(d, job, POLL_NS / 5);
		break;
	case X_POLL:
		migrate_status(d, job, ret);
		break;
	default:
		break;
	}
	json_decref(data);
	return true;
}

void vm_x_abort(struct domain *d, struct dom_job *job, int err)
{
	struct vm *vm = vm_of(d);
	struct vm_job *vj = job->priv;
	struct vm_xjob *x = vj->x;
	char t[DOM_ERRMSG_MAX];

	if (err == -ESHUTDOWN)
		return;
	if (x->phase == X_WAIT_DELETED || x->phase == X_DEL) {
		/* The guest kept it: it stays listed; a late DEVICE_DELETED still removes it. */
		if (err == -ETIMEDOUT)
			dom_job_finish(d, job, err, DOM_ERR_TIMEOUT, NULL, "domain '%s': the guest did "
				       "not release %s %s within %.1f s; it is still attached (if the "
				       "guest lets go of it later, it goes then)", dom_name(d),
				       vj->op == VM_OP_DETACH_DISK ? "disk" : "NIC",
				       json_string_value(json_object_get(x->result,
					       vj->op == VM_OP_DETACH_DISK ? "target" : "mac")),
				       (double)(now_ns() - job->started_ns) / 1e9);
		return;
	}
	if (vj->op == VM_OP_SAVE && vm->saved)
		return;                 /* saved: QEMU is ending, as it should */
	if (vj->op == VM_OP_SAVE && x->phase != X_IO && x->phase != X_INIT) {
		x_cmd_bg(vm, "migrate_cancel", NULL);
		snprintf(t, sizeof(t), "domain '%s': save to %.200s %s after %.1f s: cancelled; the "
			 "guest runs on as before", dom_name(d), x->path,
			 err == -ETIMEDOUT ? "did not finish" : "was interrupted",
			 (double)(now_ns() - job->started_ns) / 1e9);
		snprintf(x->msg, sizeof(x->msg), "%s", t);
		save_failed(d, NULL, x, DOM_ERR_TIMEOUT);
		dom_job_finish(d, job, err, err == -ETIMEDOUT ? DOM_ERR_TIMEOUT : DOM_ERR_CANCELLED,
			       NULL, "%s", t);
		return;
	}
	if (x->is_restore)
		progress_clear(vm);
	else if (vj->op != VM_OP_SAVE)
		attach_undo(vm, x);
}

void vm_x_event(struct domain *d, const char *event, const json_t *data)
{
	const char *dev = json_string_value(json_object_get(data, "device"));

	if (!strcmp(event, "DEVICE_DELETED") && dev)
		device_gone(d, dev);
}

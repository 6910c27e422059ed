/* SPDX-License-Identifier: MIT */
/*
 * A domain's serial console: its socket and log files at each start, the
 * console object (actors/console.h) while QEMU runs, and finding it again
 * after a daemon restart.
 *
 *   RUNTIME_DIR/console/NAME.sock      QEMU's listening serial socket
 *   STATE_DIR/logs/NAME.console.log    this start's output (CONSOLE_LOG_MAX)
 *   STATE_DIR/logs/NAME.console.log.1  the start before
 *
 * The daemon makes the listening socket, connects to it, and only then
 * hands it to QEMU (-chardev socket,fd=N,server=on,wait=off): QEMU accepts
 * the waiting connection as it starts, paused, so the guest's first byte
 * already has a reader.  While no daemon is connected (between a crash and
 * the restart) QEMU drops what the guest writes; the guest never waits.
 */
#include "actors/vm-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/console.h"
#include "common/rcu.h"
#include "common/util.h"
#include "qemu/qemu.h"

void vm_console_sock_path(struct vm_env *env, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/console/%s.sock", env->runtime_dir, name);
}

static void log_name(const char *name, const char *suffix, char *out, size_t len)
{
	snprintf(out, len, "%s.console.log%s", name, suffix);
}

int vm_console_prepare(struct vm_env *env, const char *name, struct vm_console_files *f,
		       char *err, size_t errlen)
{
	char cur[DOM_NAME_MAX + 32], old[DOM_NAME_MAX + 32];
	int r;

	f->listen_fd = f->conn_fd = f->log_fd = -1;
	vm_console_sock_path(env, name, f->path, sizeof(f->path));
	r = qemu_qmp_listen(f->path, &f->listen_fd);
	if (r < 0) {
		snprintf(err, errlen, "cannot create the console socket %s: %s", f->path,
			 r == -EADDRINUSE ? "a QEMU still listens on it" : strerror(-r));
		f->path[0] = '\0';
		return r;
	}
	r = mon_connect_unix(f->path, &f->conn_fd);
	if (r < 0) {
		snprintf(err, errlen, "cannot connect to the console socket %s: %s", f->path,
			 strerror(-r));
		vm_console_files_close(f, true);
		return r;
	}
	/*
	 * A fresh log for each start, the previous one kept.  A log that
	 * cannot be made (full or read-only disk) costs the log, not the start.
	 */
	log_name(name, "", cur, sizeof(cur));
	log_name(name, ".1", old, sizeof(old));
	if (renameat(env->logs_fd, cur, env->logs_fd, old) < 0 && errno != ENOENT)
		unlinkat(env->logs_fd, cur, 0);
	f->log_fd = openat(env->logs_fd, cur, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC |
			   O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
	return 0;
}

void vm_console_files_close(struct vm_console_files *f, bool unlink_sock)
{
	if (f->listen_fd >= 0)
		close(f->listen_fd);
	if (f->conn_fd >= 0)
		close(f->conn_fd);
	if (f->log_fd >= 0)
		close(f->log_fd);
	if (unlink_sock && f->path[0])
		unlink(f->path);
	f->listen_fd = f->conn_fd = f->log_fd = -1;
}

/* ---- on the domain actor --------------------------------------------------------- */

void vm_console_install(struct domain *d, int conn_fd, int log_fd, uint64_t log_size,
			const void *seed, size_t seed_len)
{
	struct vm *vm = vm_of(d);
	struct console *con;

	vm_console_drop(vm, "the console was replaced");
	if (console_new(vm->env->io, vm->env->off, dom_name(d), conn_fd, log_fd, log_size,
			vm->env->console_log_max, seed, seed_len, &con) < 0)
		return;         /* the guest runs on without a console */
	vm->console = con;
	crcu_assign_pointer(vm->con_pub, con);
}

void vm_console_drop(struct vm *vm, const char *reason)
{
	struct console *con = vm->console;

	if (!con)
		return;
	crcu_assign_pointer(vm->con_pub, NULL);
	vm->console = NULL;
	/* Readers that found it keep their reference; its memory outlives them (RCU). */
	console_close(con, reason);
}

struct console *vm_console_get(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct console *con;

	crcu_read_lock();
	con = crcu_dereference(vm->con_pub);
	if (con && !console_tryget(con))
		con = NULL;
	crcu_read_unlock();
	return con;
}

/* ---- after a daemon restart ------------------------------------------------------- */

struct recon_io {
	struct vm_io io;
	char name[DOM_NAME_MAX + 1];
	uint32_t gen;                   /* vm->mon_gen when asked: the same QEMU */
	int fd, log_fd;
	uint64_t log_size;
	char *seed;
	size_t seed_len;
};

static void recon_io_free(struct vm_io *io)
{
	struct recon_io *ri = container_of(io, struct recon_io, io);

	if (ri->fd >= 0)
		close(ri->fd);
	if (ri->log_fd >= 0)
		close(ri->log_fd);
	free(ri->seed);
	free(ri);
}

/* Offload thread: connect again; the log goes on, and its tail is the history. */
static void recon_io_work(struct vm_io *io)
{
	struct recon_io *ri = container_of(io, struct recon_io, io);
	char path[VM_SOCK_PATH_MAX], file[DOM_NAME_MAX + 32];
	struct stat st;
	int r;

	vm_console_sock_path(io->env, ri->name, path, sizeof(path));
	r = mon_connect_unix(path, &ri->fd);
	if (r < 0) {
		ri->fd = -1;
		io->err = r;
		snprintf(io->errmsg, sizeof(io->errmsg), "cannot connect to the console %s: %s",
			 path, strerror(-r));
		return;
	}
	log_name(ri->name, "", file, sizeof(file));
	ri->log_fd = openat(io->env->logs_fd, file, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW |
			    O_CLOEXEC | O_NOCTTY, 0600);
	if (ri->log_fd < 0 || fstat(ri->log_fd, &st) < 0)
		return;
	ri->log_size = (uint64_t)st.st_size;
	ri->seed_len = ri->log_size < CONSOLE_HISTORY ? (size_t)ri->log_size : CONSOLE_HISTORY;
	ri->seed = ri->seed_len ? malloc(ri->seed_len) : NULL;
	if (ri->seed) {
		ssize_t n = pread(ri->log_fd, ri->seed, ri->seed_len,
				  (off_t)(ri->log_size - ri->seed_len));

		ri->seed_len = n > 0 ? (size_t)n : 0;
	} else {
		ri->seed_len = 0;
	}
}

static void recon_io_complete(struct domain *d, struct vm_io *io)
{
	struct recon_io *ri = container_of(io, struct recon_io, io);
	struct vm *vm = vm_of(d);

	if (io->err || vm->proc != VPROC_RUNNING || vm->con_gen != ri->gen ||
	    vm->console)
		return;
	vm_console_install(d, ri->fd, ri->log_fd, ri->log_size, ri->seed, ri->seed_len);
	ri->fd = ri->log_fd = -1;
}

void vm_console_reconnect(struct domain *d)
{
	struct vm *vm = vm_of(d);
	struct recon_io *ri = calloc(1, sizeof(*ri));

	if (!ri)
		return;
	vm_io_init(&ri->io, 0, recon_io_work, recon_io_complete, NULL, recon_io_free);
	snprintf(ri->name, sizeof(ri->name), "%s", dom_name(d));
	ri->gen = vm->con_gen;
	ri->fd = ri->log_fd = -1;
	vm_io_submit(d, &ri->io);
}

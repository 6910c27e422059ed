/* SPDX-License-Identifier: MIT */
/*
 * console: a running guest's serial console, shared by any number of
 * viewers, kept in a log, and never able to stall the guest.
 *
 * QEMU serves the guest's serial port on a listening UNIX socket that the
 * daemon made and passed to it; the daemon is its one client (a restarted
 * daemon connects again).  A console object owns that connection:
 *
 *   - its loop thread (common/ioloop.h) reads whatever QEMU writes, as fast
 *     as QEMU writes it, and never waits for anyone;
 *   - the last CONSOLE_HISTORY bytes are kept in a ring: a new viewer gets
 *     them first, then live output;
 *   - each viewer has a queue of at most CONSOLE_VIEWER_MAX bytes.  A viewer
 *     that does not keep up loses its oldest queued output (counted, and
 *     reported to it once it reads again), so that it catches up with the
 *     present, instead of slowing the guest or the other viewers;
 *   - the output also goes to a log file, through the offload pool (a file
 *     write may block: never on the loop thread).  At most log_max bytes
 *     per log (CONSOLE_LOG_MAX unless the daemon says otherwise); past that
 *     a line says the log is full and the rest is not written.  Output the disk cannot take in time (more than
 *     CONSOLE_LOG_BACKLOG bytes waiting) is counted and said in the log;
 *   - input from viewers (console_write) is queued, at most CONSOLE_INPUT_MAX
 *     bytes, and written to QEMU by the loop thread when the socket takes it.
 *
 * Threading.  One mutex per console (con->lock) guards the ring, the viewer
 * list, the viewers' queues, the pending input and log bytes: held only for
 * memcpy and list updates, never across a system call.  The socket is the
 * loop thread's alone; the log fd the offload task's alone.  A viewer's
 * notify callback runs under the lock on the thread that queued the bytes
 * and must only post a task (io_post) to the viewer's own thread.
 *
 * Lifetime.  A console is reference-counted: its owner (the domain) holds
 * one, each viewer one, a queued loop task or log write one.  The memory
 * goes after an RCU grace period, so a reader that found the console
 * through an RCU-published pointer may take a reference with
 * console_tryget() inside its read section.
 */
#ifndef CORRAL_ACTORS_CONSOLE_H
#define CORRAL_ACTORS_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_HISTORY      (64u * 1024)       /* replayed to a new viewer */
#define CONSOLE_VIEWER_MAX   (256u * 1024)      /* queued per viewer */
#define CONSOLE_INPUT_MAX    (64u * 1024)       /* queued input, all viewers */
#define CONSOLE_LOG_MAX      (4u * 1024 * 1024) /* bytes of one log file, by default */
#define CONSOLE_LOG_BACKLOG  (1u * 1024 * 1024) /* waiting for the disk */
#define CONSOLE_REASON_MAX   128

struct ioloop;
struct offload;
struct console;
struct console_viewer;

/*
 * Called with the console's lock held when a viewer's queue goes from
 * "nothing new" to "something new" (bytes, a drop, the end).  Must not
 * block nor call into the console.
 */
typedef void (*console_notify_fn)(struct console_viewer *v, void *arg);

/*
 * A console for domain `name` on the connected socket fd (taken), logging
 * to log_fd (taken; -1: no log) which already holds log_size bytes, up to
 * log_max bytes.  The
 * history starts with seed (seed_len bytes, may be 0: what the log held
 * from before a daemon restart).  The caller owns the one reference.
 * 0, or -errno (fds closed).  Any registered thread.
 */
int console_new(struct ioloop *io, struct offload *off, const char *name, int fd, int log_fd,
		uint64_t log_size, uint64_t log_max, const void *seed, size_t seed_len,
		struct console **ret);

/*
 * The owner lets go: viewers are told `reason` (after any output still
 * queued for them), the socket is closed on its loop thread, queued input
 * is dropped, the log gets what is pending; then the owner's reference is
 * dropped.  Any registered thread.
 */
void console_close(struct console *con, const char *reason);

/* A reference for a reader that found con under RCU: false if it is going. */
bool console_tryget(struct console *con);
void console_put(struct console *con);

/*
 * Queue input for the guest.  0 (all of it), -EAGAIN when it does not fit
 * in CONSOLE_INPUT_MAX (nothing queued: the caller may retry), -EPIPE once
 * the console is closed.  Any registered thread; never blocks.
 */
int console_write(struct console *con, const void *data, size_t len);

/*
 * A new viewer: with history, the last CONSOLE_HISTORY bytes come first.
 * Takes a reference to con.  0 or -ENOMEM; -EPIPE if the console is
 * closed already.  Any thread.
 */
int console_attach(struct console *con, bool history, console_notify_fn notify, void *arg,
		   struct console_viewer **ret);

/*
 * What has come for v since the last call, in order: *dropped bytes the
 * viewer missed (older output), then *data (malloc'd, the caller frees;
 * NULL when none) of *len bytes, the newest; then, if the console ended,
 * true is returned and its reason copied to reason (CONSOLE_REASON_MAX
 * bytes).  After the
 * end the viewer only needs console_detach().  The viewer's own thread.
 */
bool console_viewer_take(struct console_viewer *v, char **data, size_t *len,
			 uint64_t *dropped, char reason[CONSOLE_REASON_MAX]);

/*
 * Stop and free the viewer: its notify is never called again once this
 * returns.  The viewer's own thread.
 */
void console_detach(struct console_viewer *v);

/*
 * A copy of the history (the last CONSOLE_HISTORY bytes of output) to
 * *data (malloc'd; NULL when empty) and its length.  0 or -ENOMEM.  Any
 * thread.
 */
int console_history(struct console *con, char **data, size_t *len);

/* Figures for tests and info.  Any thread. */
struct console_stats {
	uint64_t bytes_out;             /* read from QEMU */
	uint64_t bytes_in;              /* written to QEMU */
	uint64_t log_bytes;             /* in the log file */
	uint64_t log_dropped;           /* not logged: the disk was too slow */
	unsigned viewers;
	bool closed;
};
void console_stats(struct console *con, struct console_stats *st);

#endif /* CORRAL_ACTORS_CONSOLE_H */

/* SPDX-License-Identifier: MIT */
/*
 * log: corrald's log, to stderr, one line per message:
 *
 *   2026-11-26T02:21:03.123Z corrald[4242] info: listening on /run/corral/corral.sock
 *
 * Each line leaves in one write(2), so lines from different threads never
 * interleave.  Control characters in the message (a client's text, say)
 * are replaced by '?': one message is always one line.  Any thread: the
 * line is queued (bounded) for the log thread, which alone writes to
 * stderr, so no loop or actor ever waits for it.
 */
#ifndef CORRAL_DAEMON_LOG_H
#define CORRAL_DAEMON_LOG_H

enum log_level {
	LOG_ERR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/*
 * Start and stop the log thread (main thread).  Before the start and after
 * the stop, lines are written directly.  0 or -EAGAIN.
 */
int log_start(void);
void log_stop(void);

/* Messages above level are dropped.  Default LOG_INFO.  Before threads start. */
void log_set_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif /* CORRAL_DAEMON_LOG_H */

/* SPDX-License-Identifier: MIT */
/*
 * qmp: the client side of the QEMU Machine Protocol, and nothing else.
 *
 * A struct qmp_conn is a byte-stream parser and a command encoder.  It owns
 * no socket, thread, timer or event loop: the caller reads bytes from
 * wherever it likes and feeds them in, then pulls parsed messages out; to
 * send a command it asks for an encoded line and writes it itself.  That
 * is why the daemon's monitor actor, a unit test and the simulator can all
 * drive it the same way.
 *
 *     qmp_conn_feed(c, buf, n);                  after each read()
 *     while ((r = qmp_conn_next(c, &m)) == 1) {  drain, every time
 *             ...  qmp_msg_free(m);
 *     }
 *     if (r < 0)  the stream is broken for good: qmp_conn_error(c) says why
 *
 * Threading: a qmp_conn has no lock.  Any thread may use it, one thread at
 * a time (in corral: the monitor actor that owns the VM's socket).  A
 * qmp_msg is independent of its conn once returned and may be handed to
 * another thread.  The module has no global state and never prints.
 */
#ifndef CORRAL_QMP_QMP_H
#define CORRAL_QMP_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The longest server message accepted, newline included.  QEMU's biggest
 * ordinary reply, query-qmp-schema, is a few hundred KiB; a line that grows
 * past this cap without a newline breaks the stream instead of eating the
 * daemon's memory.
 */
#define QMP_MAX_MSG (16u * 1024 * 1024)

struct qmp_conn;
struct qmp_msg;

enum qmp_msg_kind {
	QMP_MSG_GREETING,       /* {"QMP": {"version": ..., "capabilities": [...]}} */
	QMP_MSG_RETURN,         /* {"return": value, "id": ...} */
	QMP_MSG_ERROR,          /* {"error": {"class": s, "desc": s}, "id": ...} */
	QMP_MSG_EVENT,          /* {"event": s, "data": {...}, "timestamp": {...}} */
};

/* ---- connection ------------------------------------------------------- */

/* A fresh parser and id counter.  -ENOMEM.  Any thread. */
int qmp_conn_new(struct qmp_conn **ret);

/* Frees the conn and its buffered bytes.  Accepts NULL.  Owner thread. */
void qmp_conn_free(struct qmp_conn *c);

/*
 * Append bytes read from the server.  Owner thread.
 *
 * The caller must drain qmp_conn_next() until it returns 0 before feeding
 * again, so that only a partial message stays buffered.
 *
 * Returns 0, -ENOMEM (nothing was appended, the conn is intact, the caller
 * may retry), or the conn's error once broken.  A line that passes
 * QMP_MAX_MSG without a newline breaks the stream here, at once, with
 * -EMSGSIZE; messages still buffered are dropped with it.
 */
int qmp_conn_feed(struct qmp_conn *c, const char *buf, size_t len);

/*
 * Take the next complete message.  Owner thread.
 *
 * Returns 1 and a message in *ret (free with qmp_msg_free), 0 if more bytes
 * are needed, or a negative errno when the stream is broken:
 *   -EBADMSG   a line is not valid JSON
 *   -EMSGSIZE  a line is longer than QMP_MAX_MSG
 *   -EPROTO    valid JSON that is no QMP message: not an object, or an
 *              object of a shape QMP does not define
 * Once broken, every later call returns the same error and
 * qmp_conn_error() explains it.  -ENOMEM is transient: the line stays
 * buffered and the next call tries again.
 *
 * Empty lines are skipped.  The parser does not police message order: an
 * event before the greeting is returned as an event, and the caller decides
 * what to make of it.
 */
int qmp_conn_next(struct qmp_conn *c, struct qmp_msg **ret);

/*
 * Why the stream broke, e.g. "invalid JSON at byte 17 of line 3 (stream
 * offset 120): ...", or NULL while it is healthy.  Valid until the conn is
 * freed.  Owner thread.
 */
const char *qmp_conn_error(const struct qmp_conn *c);

/*
 * Encode {"execute": execute, "arguments": args, "id": N} as one compact
 * JSON line ending in "\n".  args may be NULL (no "arguments" member) and is
 * borrowed; it must be an object.  N is fresh for this conn: ids start at 1
 * and only grow.
 *
 * On success writes the id to *ret_id, and a malloc'd buffer (release with
 * free()) and its length, newline included, to *ret_buf and *ret_len.
 * Returns 0, -EINVAL (empty execute, args not an object) or -ENOMEM; on
 * failure no id is used up and qmp_conn_encode_error() says why.  Encoding
 * never breaks the stream and works on a broken conn.  Owner thread.
 */
int qmp_conn_encode_cmd(struct qmp_conn *c, const char *execute, json_t *args,
			uint64_t *ret_id, char **ret_buf, size_t *ret_len);

/*
 * qmp_capabilities with no arguments (corral enables no optional
 * capability), with an id from the same counter.  As qmp_conn_encode_cmd().
 */
int qmp_conn_encode_capabilities(struct qmp_conn *c, uint64_t *ret_id, char **ret_buf,
				 size_t *ret_len);

/*
 * Encode a command a user typed as JSON text (NUL-terminated), for raw
 * passthrough.  It must be an object with a non-empty string "execute", an
 * optional object "arguments", an optional "id" (any value: it is replaced
 * by this conn's own id) and no other member.  Duplicate members are
 * refused.  Returns as qmp_conn_encode_cmd(); on -EINVAL,
 * qmp_conn_encode_error() gives a reason fit to show the user.
 */
int qmp_conn_encode_raw(struct qmp_conn *c, const char *json_text, uint64_t *ret_id,
			char **ret_buf, size_t *ret_len);

/*
 * Why the last failed encode call failed; NULL if the last encode call
 * succeeded or none was made.  Valid until the next encode call on this
 * conn.  Owner thread.
 */
const char *qmp_conn_encode_error(const struct qmp_conn *c);

/* ---- messages ----------------------------------------------------------
 *
 * A message owns its JSON tree.  Every pointer an accessor returns (json_t
 * values, strings) is borrowed from the message and valid until
 * qmp_msg_free(); json_incref() a value to keep it longer.  Accessors for
 * another kind's fields return NULL, false or -1.  Any thread holding the
 * message.
 */

void qmp_msg_free(struct qmp_msg *m);   /* accepts NULL */

enum qmp_msg_kind qmp_msg_kind(const struct qmp_msg *m);

/* The whole message as received, e.g. to pass a raw reply through. */
json_t *qmp_msg_json(const struct qmp_msg *m);

/*
 * Return and error replies: true and the id in *ret_id when the reply
 * carries a non-negative integer id, as corral's commands always do.
 * False when the id is missing (QEMU omits it when it could not read the
 * command) or is any other JSON value: the spec asks clients to drop such
 * replies.  False for greetings and events.
 */
bool qmp_msg_id(const struct qmp_msg *m, uint64_t *ret_id);

/* Return: the "return" value (an empty object for commands with none). */
json_t *qmp_msg_return(const struct qmp_msg *m);
/*
 * The same, taken out of the message: a reference the caller holds alone
 * (nothing in m points to it any more), to hand to another thread without a
 * copy.  NULL for other kinds; after it, qmp_msg_return(m) is NULL.
 */
json_t *qmp_msg_take_return(struct qmp_msg *m);

/* Error: class, e.g. "CommandNotFound", and the human-readable desc. */
const char *qmp_msg_error_class(const struct qmp_msg *m);
const char *qmp_msg_error_desc(const struct qmp_msg *m);

/* Event: its name, and its "data" object or NULL when it has none. */
const char *qmp_msg_event_name(const struct qmp_msg *m);
json_t *qmp_msg_event_data(const struct qmp_msg *m);
/* The data taken out of the event, as qmp_msg_take_return takes a return. */
json_t *qmp_msg_take_event_data(struct qmp_msg *m);

/*
 * Event: when the server says it happened, relative to the Unix epoch.
 * Both are -1 when the server could not read its clock or sent no
 * timestamp.  -1 for other kinds.
 */
int64_t qmp_msg_event_seconds(const struct qmp_msg *m);
int64_t qmp_msg_event_microseconds(const struct qmp_msg *m);

/*
 * Greeting: QEMU's version.  Writes major/minor/micro (any may be NULL;
 * missing numbers read as 0) and returns the package string ("" if absent),
 * or NULL for other kinds (then nothing is written).
 */
const char *qmp_msg_greeting_version(const struct qmp_msg *m, int *ret_major, int *ret_minor,
				     int *ret_micro);

/* Greeting: the capabilities array (possibly empty), NULL for other kinds. */
json_t *qmp_msg_greeting_capabilities(const struct qmp_msg *m);

/* Greeting: whether the server offers capability name, e.g. "oob". */
bool qmp_msg_greeting_has_capability(const struct qmp_msg *m, const char *name);

#endif /* CORRAL_QMP_QMP_H */

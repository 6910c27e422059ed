/* SPDX-License-Identifier: MIT */
/*
 * rpc: the msgpack-RPC wire codec between corrald and its clients.
 *
 * Messages follow the msgpack-RPC spec, one msgpack object per message, sent
 * back to back on the stream with no other framing:
 *
 *   request       [0, msgid, method, params]
 *   response      [1, msgid, error, result]
 *   notification  [2, method, params]
 *
 * msgid is an unsigned int that fits in 32 bits (0 included: generic clients
 * start there).  method is a str of 1..RPC_MAX_METHOD printable ASCII bytes
 * without spaces.  params is an array; every corral method takes one map as
 * params[0] (or no params at all, read as an empty map).  A corral error is
 * [code, message]: code from enum rpc_err, message a str.
 *
 * This module is a pure codec: no sockets, no threads, no printing.  The
 * daemon's I/O layer buffers bytes and, for every message:
 *
 *   1. rpc_scanner_scan() (or rpc_frame_scan()) on the buffered bytes: a
 *      non-allocating pre-scan that finds where the first message ends and
 *      refuses anything over the limits below before msgpack-c sees it;
 *   2. rpc_decode() on exactly that frame: unpacks it into a tree owned by
 *      the returned struct rpc_msg and checks its shape;
 *   3. drops frame_len bytes from its buffer.
 *
 * All functions: any thread.  A struct rpc_scanner or struct rpc_msg is used
 * by one thread at a time; msgpack objects reached through a message are
 * read-only and live until rpc_msg_free().
 */
#ifndef CORRAL_RPC_RPC_H
#define CORRAL_RPC_RPC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Limits, checked by the scanner before anything is allocated.
 *
 * RPC_MAX_FRAME: 4 MiB.  The largest message in bytes; a peer that sends a
 * bigger one is broken or hostile and its connection should be dropped.
 *
 * RPC_MAX_DEPTH: 32 nested containers (the outer message array is level 1).
 * It also matches msgpack-c's own unpacker stack (MSGPACK_EMBED_STACK_SIZE).
 *
 * RPC_MAX_OBJECTS: 262144 msgpack objects (every scalar, str, container,
 * map key and map value counts one).  msgpack-c turns each object into a
 * 24-byte msgpack_object (48 per map pair), so a 4 MiB frame of one-byte
 * objects would cost ~100 MiB of tree; this cap keeps the tree of one
 * message under ~6 MiB.  Long strings and binaries cost one object each.
 *
 * RPC_MAX_METHOD: 128 bytes of method name.
 */
#define RPC_MAX_FRAME   (4u * 1024 * 1024)
#define RPC_MAX_DEPTH   32
#define RPC_MAX_OBJECTS (256u * 1024)
#define RPC_MAX_METHOD  128

/*
 * The bytes of a msgpack str or bin object, never NULL.  msgpack-c leaves
 * the pointer NULL for an empty string in some encodings; passing that to
 * memcpy, memcmp or json_stringn is undefined or refused.  Any thread.
 */
static inline const char *rpc_str_ptr(const msgpack_object *o)
{
	return o->via.str.size ? o->via.str.ptr : "";
}

/* ------------------------------------------------------------------------ */
/* Framing */

/*
 * rpc_frame_scan() and rpc_scanner_scan() return:
 *
 *    1          the buffer starts with one complete message of
 *               *ret_frame_len bytes (there may be more bytes after it);
 *    0          the bytes so far are a valid beginning: read more;
 *   -EMSGSIZE   the message is or would be larger than RPC_MAX_FRAME: a str,
 *               bin or ext claims more bytes than are left under the limit,
 *               or RPC_MAX_FRAME bytes are buffered and the message is not
 *               complete;
 *   -E2BIG      a container claims more elements than could fit under
 *               RPC_MAX_FRAME, counting one byte per element still owed;
 *   -EOVERFLOW  the message holds, or a container claims, more than
 *               RPC_MAX_OBJECTS objects;
 *   -ELOOP      containers nested deeper than RPC_MAX_DEPTH;
 *   -EBADMSG    the reserved type byte 0xc1;
 *   -EPROTO     an ext other than a timestamp (type -1 with 4, 8 or 12
 *               bytes of data): corral's protocol uses no other ext.
 *
 * Claims are judged against the limits, not against what is buffered: an
 * array32 header claiming 2^32-1 elements is refused at once even in a
 * 10-byte buffer, because no frame under RPC_MAX_FRAME can hold them; an
 * array claiming 1000 elements with 3 of them buffered is only
 * incomplete (0), because the rest may still arrive within the limit.
 *
 * Every error is final for the stream: there is no way to resynchronise on
 * msgpack, so the caller answers (if it wants to) and closes.
 * rpc_strerror_scan() gives a stable one-line reason for each code.
 */
int rpc_frame_scan(const char *buf, size_t len, size_t *ret_frame_len);

/* A stable reason for an error from the scanner; "unknown error" otherwise. */
const char *rpc_strerror_scan(int err);

/*
 * The same scan, resumable: rpc_frame_scan() starts over on every call, which
 * costs quadratic time if a large message trickles in a few bytes at a
 * time.  A scanner remembers how far it got (at most one object header is
 * read twice).  Between calls that return 0 the caller passes the same
 * leading bytes again, possibly moved to a new buffer, with len never
 * smaller.  After 1 the scanner is reset for the next message; an error
 * sticks until rpc_scanner_reset().
 */
struct rpc_scanner;

/* 0 or -ENOMEM. */
int rpc_scanner_new(struct rpc_scanner **ret);
/* Accepts NULL. */
void rpc_scanner_free(struct rpc_scanner *s);
void rpc_scanner_reset(struct rpc_scanner *s);
int rpc_scanner_scan(struct rpc_scanner *s, const char *buf, size_t len,
		     size_t *ret_frame_len);

/* ------------------------------------------------------------------------ */
/* Decoding */

enum rpc_msg_type {
	RPC_REQUEST = 0,
	RPC_RESPONSE = 1,
	RPC_NOTIFICATION = 2,
};

struct rpc_msg;

/*
 * Decode exactly one message from frame[0, len).  The frame is scanned again
 * (so no unchecked byte ever reaches msgpack-c) and copied: the caller may
 * reuse its buffer as soon as this returns.
 *
 * Returns 0 and *ret, or:
 *   -EINVAL     not a well-formed msgpack-RPC message: truncated, trailing
 *               bytes, or the wrong shape ("request params must be an
 *               array, got str");
 *   any error of rpc_frame_scan();
 *   -ENOMEM.
 * On error, errbuf (if errlen > 0) receives a one-line reason.
 */
int rpc_decode(const char *frame, size_t len, struct rpc_msg **ret, char *errbuf,
	       size_t errlen);

/* Accepts NULL. */
void rpc_msg_free(struct rpc_msg *m);

enum rpc_msg_type rpc_msg_type(const struct rpc_msg *m);

/* Request and response: the msgid.  Notification: 0. */
uint32_t rpc_msg_id(const struct rpc_msg *m);

/* Request and notification: the method, NUL-terminated.  Response: NULL. */
const char *rpc_msg_method(const struct rpc_msg *m);

/* Request and notification: the params array.  Response: NULL. */
const msgpack_object *rpc_msg_params(const struct rpc_msg *m);

/*
 * Request and notification: params[0] as a map, the shape every corral method
 * takes.  Empty params read as an empty map.  -EINVAL, with a reason in
 * errbuf, if params has more than one element or params[0] is not a map, or
 * if m is a response.
 */
int rpc_msg_params_map(const struct rpc_msg *m, const msgpack_object **ret_map,
		       char *errbuf, size_t errlen);

/* Response: the error, or NULL when it is nil (success).  Others: NULL. */
const msgpack_object *rpc_msg_error(const struct rpc_msg *m);

/* Response: the result (nil included).  Others: NULL. */
const msgpack_object *rpc_msg_result(const struct rpc_msg *m);

/*
 * Split a corral error [code, message].  The text is not NUL-terminated.
 * -EINVAL if err has another shape (a foreign server's error).
 */
int rpc_error_parse(const msgpack_object *err, int64_t *ret_code, const char **ret_text,
		    size_t *ret_len);

/* ------------------------------------------------------------------------ */
/* Typed access to a decoded tree.  obj may be NULL (a missing key). */

/*
 * The value for a str key in a map; NULL if map is NULL, not a map, or has no
 * such key.  If a key repeats, the first one wins: keep every lookup going
 * through here so that all layers agree.
 */
const msgpack_object *rpc_map_get(const msgpack_object *map, const char *key);

/*
 * All return 0 and write *ret only on success; -ENOENT if obj is NULL,
 * -EINVAL if it has another type, -ERANGE if an int does not fit.
 */
/* A str, not NUL-terminated, borrowed from the message. */
int rpc_obj_str(const msgpack_object *obj, const char **ret_s, size_t *ret_len);
/* A copy of a str, NUL-terminated; -EINVAL also if it holds a NUL; -ENOMEM. */
int rpc_obj_strdup(const msgpack_object *obj, char **ret);
int rpc_obj_u64(const msgpack_object *obj, uint64_t *ret);
int rpc_obj_i64(const msgpack_object *obj, int64_t *ret);
int rpc_obj_bool(const msgpack_object *obj, bool *ret);

/* "nil", "bool", "int", "float", "str", "bin", "array", "map", "ext"; "nothing" for NULL. */
const char *rpc_obj_type_name(const msgpack_object *obj);

/* ------------------------------------------------------------------------ */
/* Encoding, over any msgpack_packer (usually one on a msgpack_sbuffer). */

/*
 * All return 0, -EINVAL for a method name the decoder would refuse, or
 * -ENOMEM when the packer's write callback fails (for an sbuffer: out of
 * memory); after a failure the buffer holds a partial message: discard it.
 *
 * The encoders do not know the final size: before sending, check that the
 * buffer holds at most RPC_MAX_FRAME bytes, or the peer will refuse it.
 */

/* A str from bytes, or from a C string (-EINVAL for NULL). */
int rpc_pack_str(msgpack_packer *pk, const char *s, size_t len);
int rpc_pack_cstr(msgpack_packer *pk, const char *s);

/* [0, msgid, method, ...: the caller packs params, an array, next. */
int rpc_pack_request_begin(msgpack_packer *pk, uint32_t msgid, const char *method);

/* [1, msgid, nil, ...: the caller packs the result next (nil if none). */
int rpc_pack_response_begin(msgpack_packer *pk, uint32_t msgid);

/*
 * A complete error response [1, msgid, [code, message], nil].  A NULL message
 * sends the code's name.
 */
int rpc_pack_error_response(msgpack_packer *pk, uint32_t msgid, int code, const char *message);

/* [2, method, ...: the caller packs params, an array, next. */
int rpc_pack_notification_begin(msgpack_packer *pk, const char *method);

/* Corral's params shape: [{...: the caller packs n key/value pairs next. */
int rpc_pack_params_map_begin(msgpack_packer *pk, uint32_t n);

/* ------------------------------------------------------------------------ */
/* Error codes: error[0] of an error response.  Stable: never renumber. */

enum rpc_err {
	RPC_ERR_INVALID_REQUEST = 1,  /* malformed message, or not the shape of a request */
	RPC_ERR_METHOD_NOT_FOUND = 2, /* no method of that name */
	RPC_ERR_INVALID_ARGUMENT = 3, /* params missing, of the wrong type or out of range */
	RPC_ERR_NO_SUCH_DOMAIN = 4,   /* no domain of that name is defined */
	RPC_ERR_EXISTS = 5,           /* a domain of that name is already defined */
	RPC_ERR_BUSY = 6,             /* the domain's job queue stayed full past the deadline */
	RPC_ERR_TIMEOUT = 7,          /* the operation ran past its deadline */
	RPC_ERR_BAD_STATE = 8,        /* not valid in the domain's current state (e.g. not running) */
	RPC_ERR_PERMISSION = 9,       /* read-only socket, or the caller may not do this */
	RPC_ERR_QEMU = 10,            /* QEMU answered the command with an error */
	RPC_ERR_MONITOR_BROKEN = 11,  /* the QMP connection to QEMU failed or was lost */
	RPC_ERR_INTERNAL = 12,        /* a bug or resource failure inside corrald */
	RPC_ERR_UNAVAILABLE = 13,     /* corrald is shutting down */
	RPC_ERR_CANCELLED = 14,       /* the job was cancelled by destroy */
	RPC_ERR_STORAGE = 15,         /* corrald could not write its state: nothing changed */
};

#define RPC_ERR_MIN RPC_ERR_INVALID_REQUEST
#define RPC_ERR_MAX RPC_ERR_STORAGE

/* "invalid-request", "method-not-found", ...; "unknown" for other codes. */
const char *rpc_err_name(int code);

/* The code for a name from rpc_err_name(); -EINVAL if none. */
int rpc_err_from_name(const char *name);

/* Where a -errno came from, for rpc_err_from_errno(). */
enum rpc_err_ctx {
	RPC_CTX_GENERIC,  /* nothing more to say */
	RPC_CTX_DECODE,   /* scanning or decoding the request itself */
	RPC_CTX_ARGS,     /* reading params (rpc_obj_*, rpc_msg_params_map) */
	RPC_CTX_DOMAIN,   /* looking up or acting on the named domain */
	RPC_CTX_MONITOR,  /* talking to QEMU over QMP */
};

/*
 * The code for an -errno (the sign is ignored), where the mapping is obvious:
 *
 *   any context     ENOMEM -> internal
 *   DECODE          everything else -> invalid-request
 *   other contexts  EEXIST -> exists, EBUSY/EAGAIN -> busy,
 *                   ETIMEDOUT/ETIME -> timeout, EPERM/EACCES/EROFS ->
 *                   permission, ESHUTDOWN -> unavailable
 *   ARGS            EINVAL/ENOENT/ERANGE/E2BIG/EOVERFLOW -> invalid-argument
 *   DOMAIN          ENOENT -> no-such-domain, ESRCH/EALREADY/ENOTCONN ->
 *                   bad-state, EINVAL -> invalid-argument
 *   MONITOR         EREMOTEIO -> qemu-error, EPIPE/ECONNRESET/ENOTCONN/EIO/
 *                   EPROTO/EBADMSG -> monitor-broken
 *   otherwise       internal
 */
int rpc_err_from_errno(int err, enum rpc_err_ctx ctx);

#endif /* CORRAL_RPC_RPC_H */

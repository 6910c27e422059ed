/* SPDX-License-Identifier: MIT */
/*
 * json-conv: between msgpack objects (the RPC wire) and jansson values (what
 * the actors and the VM layer speak).
 *
 * msgpack -> JSON refuses what JSON cannot say or corral does not accept:
 * map keys that are not strings, bin and ext, integers above INT64_MAX,
 * NaN and infinities, strings that are not UTF-8, repeated map keys, and
 * nesting deeper than RPC_JSON_MAX_DEPTH.  The reason goes to errbuf, with
 * the path of the offending value ("config.disks[2].size: ...").
 *
 * JSON -> msgpack packs objects as maps with str keys, arrays, strings,
 * integers, reals, booleans and null.
 *
 * Pure functions: any thread.
 */
#ifndef CORRAL_RPC_JSON_CONV_H
#define CORRAL_RPC_JSON_CONV_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

/* Containers nested deeper than this are refused both ways (the top is 1). */
#define RPC_JSON_MAX_DEPTH 32

/*
 * Convert obj to a new JSON value (*ret, owned by the caller).  what names
 * obj in error messages (e.g. "config"; NULL: "value").  0, -EINVAL with a
 * reason in errbuf, or -ENOMEM.
 */
int rpc_obj_to_json(const msgpack_object *obj, const char *what, json_t **ret, char *errbuf,
		    size_t errlen);

/*
 * Pack j (NULL packs nil).  0, -EINVAL (nesting deeper than
 * RPC_JSON_MAX_DEPTH; the packer then holds a partial value: discard it), or
 * -ENOMEM when the packer's write callback fails.
 */
int rpc_pack_json(msgpack_packer *pk, const json_t *j);

#endif /* CORRAL_RPC_JSON_CONV_H */

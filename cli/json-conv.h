/* SPDX-License-Identifier: MIT */
/*
 * cli json-conv: between the wire's msgpack objects and jansson values.
 *
 * The CLI builds every request's params as a JSON object (so `define -f`
 * files and command-line options take one path) and turns every result back
 * into JSON for printing.  Written for the CLI alone; if rpc/ grows a shared
 * converter, this one can go.
 *
 * All functions: any thread; no printing.
 */
#ifndef CORRAL_CLI_JSON_CONV_H
#define CORRAL_CLI_JSON_CONV_H

#include <jansson.h>
#include <msgpack.h>

/*
 * A new JSON value for obj (NULL is read as nil), or NULL on -ENOMEM.
 *
 * The mapping is lossless for what corrald sends (nil, bool, int, float,
 * UTF-8 str, array, map with str keys).  For the rest, JSON has no
 * equivalent and the result is readable rather than reversible: a str that is
 * not UTF-8 gets U+FFFD for each bad byte; bin becomes a string of hex
 * digits; a timestamp ext becomes a real number of seconds; other exts,
 * NaN and infinities become null; a uint above INT64_MAX becomes a real; a
 * map key that is not a str is written as its JSON text (1 -> "1").
 */
json_t *cli_json_from_msgpack(const msgpack_object *obj);

/*
 * Pack a JSON value: null -> nil, integer -> int, real -> float64, string
 * -> str, array -> array, object -> map (in the object's order).
 * 0, or -ENOMEM when the packer's write fails.
 */
int cli_json_pack(msgpack_packer *pk, const json_t *value);

#endif /* CORRAL_CLI_JSON_CONV_H */

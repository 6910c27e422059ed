/* SPDX-License-Identifier: MIT */
/* rpc: what the codec's own files share and nobody else sees. */
#ifndef CORRAL_RPC_RPC_INTERNAL_H
#define CORRAL_RPC_RPC_INTERNAL_H

#include <stddef.h>

/*
 * The one rule for method names, so that the encoder never sends what the
 * decoder refuses: 1..RPC_MAX_METHOD bytes, each printable ASCII other than
 * space (method names end up in logs and error messages).  NULL if the name
 * is fine, otherwise what is wrong with it, e.g. "is empty".
 */
const char *rpc__method_problem(const char *s, size_t len);

#endif /* CORRAL_RPC_RPC_INTERNAL_H */

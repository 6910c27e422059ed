/* SPDX-License-Identifier: MIT */
/*
 * prom: the answer of the `stats` method (docs/API.md) in Prometheus's text
 * exposition format, for `corral stats --format prometheus` and corrald's
 * /metrics alike, so that both print the same metrics.
 *
 * Metric names follow Prometheus's conventions: the corral_domain_ prefix,
 * base units (seconds, bytes), _total on counters; each domain is the label
 * `domain`, each disk `device`, each vCPU `vcpu`.  Pure: no I/O.
 */
#ifndef CORRAL_RPC_PROM_H
#define CORRAL_RPC_PROM_H

#include <jansson.h>
#include <stddef.h>

/*
 * stats is the JSON form of a `stats` answer ({domains: [...]}).  Returns
 * the text (malloc'd, NUL-terminated, *len bytes), or NULL when out of
 * memory.
 */
char *prom_render_stats(const json_t *stats, size_t *len);

#endif /* CORRAL_RPC_PROM_H */

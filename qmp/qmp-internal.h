/* SPDX-License-Identifier: MIT */
/*
 * qmp internals that the module's own tests may look at.  Nothing outside
 * qmp/ and tests/qmp/ includes this.
 */
#ifndef CORRAL_QMP_QMP_INTERNAL_H
#define CORRAL_QMP_QMP_INTERNAL_H

#include <stdint.h>

#include "qmp/qmp.h"

/*
 * Work the framer has done since the conn was created, so a test can check
 * that it stays linear in the bytes fed, without timing anything.
 */
struct qmp_conn_counters {
	uint64_t fed;           /* bytes accepted by qmp_conn_feed() */
	uint64_t scanned;       /* bytes examined while looking for newlines */
	uint64_t moved;         /* bytes memmove()d to the front of the buffer */
	uint64_t copied;        /* bytes copied by realloc() when the buffer grew */
};

/* Owner thread. */
void qmp_conn_get_counters(const struct qmp_conn *c, struct qmp_conn_counters *ret);

#endif /* CORRAL_QMP_QMP_INTERNAL_H */

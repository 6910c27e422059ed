/* SPDX-License-Identifier: MIT */
#include "common/futex.h"
#include "common/util.h"

int completion_wait(struct completion *c, uint64_t timeout_ns)
{
	uint64_t deadline = now_ns() + timeout_ns;

	while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
		uint64_t now = now_ns();
		struct timespec ts;

		if (now >= deadline)
			return -ETIMEDOUT;
		ts = ns_to_timespec(deadline - now);
		futex_wait(&c->done, 0, &ts);
	}
	return 0;
}

#include "common/rcu.h"
#ifdef CORRAL_TSAN
char crcu_tsan_sync;
#endif

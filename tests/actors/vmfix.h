/* SPDX-License-Identifier: MIT */
/*
 * The fixture shared by the VM tests (test-vm.c, test-attach.c): a runtime,
 * an ioloop, a registry, an event bus and a vm_env in a temporary
 * directory, jobs run to their end, snapshots read, and a teardown that
 * kills every QEMU and frees everything so ASan sees no leak.
 */
#ifndef CORRAL_TESTS_ACTORS_VMFIX_H
#define CORRAL_TESTS_ACTORS_VMFIX_H

#include "actors/vm.h"
#include "common/offload.h"

struct vmfix {
	struct rt *rt;
	struct ioloop *io;
	struct registry *reg;
	struct evbus *bus;
	struct offload *off;
	struct vm_env *env;
	char dir[128];                  /* runtime and state dirs are beneath */
};

extern struct vmfix fx;

void vmfix_setup(void);
/* SIGKILLs every QEMU still known, stops every domain, frees everything. */
void vmfix_teardown(void);

#include "common/futex.h"

struct vmfix_waiter {
	struct completion done;
	struct dom_job *job;
};

/* Submit a lifecycle job (args borrowed); its end signals w. */
struct dom_job *vmfix_submit(struct domain *d, enum vm_op op, json_t *args, uint64_t ms,
			     struct vmfix_waiter *w);
/* Wait (bounded) for w's job to end; returns it. */
struct dom_job *vmfix_wait(struct vmfix_waiter *w);

/* Submit a lifecycle job and wait (bounded) for its end; args is borrowed. */
struct dom_job *vmfix_run(struct domain *d, enum vm_op op, json_t *args, uint64_t ms);
/* The same, asserting success. */
void vmfix_run_ok(struct domain *d, enum vm_op op, json_t *args, uint64_t ms);

/* What a reader sees now, copied out of the snapshot. */
struct snapview {
	enum dom_state state;
	const char *reason;
	int pid;
	enum dom_mon_state mon;
	uint64_t job;
	uint64_t events;
	char job_name[32];
};

struct snapview vmfix_snap(struct domain *d);
/* Snapshots follow jobs' done callbacks: wait (bounded) for them. */
void vmfix_wait_state(struct domain *d, enum dom_state st);
void vmfix_wait_mon(struct domain *d, enum dom_mon_state ms);

#endif

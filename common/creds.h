/* SPDX-License-Identifier: MIT */
/*
 * creds: who a client is, and acting with that client's rights.
 *
 * A client's identity comes from its socket (SO_PEERCRED, SO_PEERGROUPS)
 * and is recorded with what it defines.  When corrald runs as root, the
 * files a definition names are opened by an offload thread that has taken
 * on the client's file-system identity for just those calls: fsuid, fsgid
 * and supplementary groups, set for the calling thread only (raw system
 * calls: glibc's setgroups() would change every thread).  A client that
 * cannot open a file itself cannot make the daemon open it.
 *
 * A daemon that is not root cannot change identity; its clients are its
 * own user or root, so acting as itself gives nobody more than they have.
 */
#ifndef CORRAL_COMMON_CREDS_H
#define CORRAL_COMMON_CREDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CREDS_GROUPS_MAX 64

struct creds {
	uid_t uid;
	gid_t gid;
	uint32_t ngroups;
	gid_t groups[CREDS_GROUPS_MAX];
};

/* The peer of a connected UNIX socket.  0 or -errno.  Any thread. */
int creds_from_socket(int fd, struct creds *ret, pid_t *ret_pid);

/* The process's own identity (read once: it never changes).  Any thread. */
void creds_self(struct creds *ret);

/* Is uid 0?  */
static inline bool creds_is_root(const struct creds *c)
{
	return c->uid == 0;
}

/*
 * Take on c's file-system identity on this thread (a no-op unless the
 * process runs as root).  0 or -errno; on failure nothing changed.
 * creds_leave() restores the daemon's.  Offload threads only: never on a
 * thread that other work shares between the two calls.
 */
int creds_enter(const struct creds *c);
void creds_leave(void);

/* {"uid": n, "gid": n, "groups": [n, ...]}; NULL when out of memory. */
json_t *creds_to_json(const struct creds *c);
/* Back from that form; -EINVAL for anything else. */
int creds_from_json(const json_t *j, struct creds *ret);

#endif /* CORRAL_COMMON_CREDS_H */

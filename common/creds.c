/* SPDX-License-Identifier: MIT */
#include "common/creds.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"

int creds_from_socket(int fd, struct creds *ret, pid_t *ret_pid)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);
	gid_t gids[CREDS_GROUPS_MAX];

	memset(ret, 0, sizeof(*ret));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	ret->uid = uc.uid;
	ret->gid = uc.gid;
	if (ret_pid)
		*ret_pid = uc.pid;
#ifdef SO_PEERGROUPS
	len = sizeof(gids);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) == 0) {
		ret->ngroups = (uint32_t)(len / sizeof(gid_t));
		memcpy(ret->groups, gids, ret->ngroups * sizeof(gid_t));
	} else if (errno == ERANGE) {
		/* More groups than we keep: keep none rather than a random part. */
		ret->ngroups = 0;
	}
#endif
	return 0;
}

/*
 * The process's identity never changes (only a thread's file-system ids and
 * groups do, in creds_enter), so it is read once: a job is made per request, and
 * three system calls for each were about 3 % of corrald's CPU under load.
 * creds_enter reads it first, so that no thread reads it while it acts as a
 * caller.
 */
static struct creds self_creds;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_read(void)
{
	int n;

	self_creds.uid = geteuid();
	self_creds.gid = getegid();
	n = getgroups(CREDS_GROUPS_MAX, self_creds.groups);
	self_creds.ngroups = n > 0 ? (uint32_t)n : 0;
}

void creds_self(struct creds *ret)
{
	BUG_ON(pthread_once(&self_once, self_read) != 0);
	*ret = self_creds;
}

/*
 * The thread's identity is changed with the raw system calls: glibc's
 * wrappers for setgroups (and setresuid and friends) signal every thread
 * to change all of them together, and that is exactly what must not
 * happen here.  setfsuid/setfsgid are per-thread by nature.
 */
int creds_enter(const struct creds *c)
{
	BUG_ON(pthread_once(&self_once, self_read) != 0);
	if (geteuid() != 0)
		return 0;
	if (syscall(SYS_setgroups, (size_t)c->ngroups, c->groups) < 0)
		return -errno;
	setfsgid(c->gid);
	setfsuid(c->uid);
	/* setfsuid reports the previous value: ask again to know it took. */
	if ((uid_t)setfsuid((uid_t)-1) != c->uid || (gid_t)setfsgid((gid_t)-1) != c->gid) {
		creds_leave();
		return -EPERM;
	}
	return 0;
}

void creds_leave(void)
{
	if (geteuid() != 0)
		return;
	setfsuid(0);
	setfsgid(0);
	BUG_ON(syscall(SYS_setgroups, (size_t)0, NULL) < 0);
	BUG_ON(setfsuid((uid_t)-1) != 0);
}

json_t *creds_to_json(const struct creds *c)
{
	json_t *g = json_array(), *o;

	if (!g)
		return NULL;
	for (uint32_t i = 0; i < c->ngroups; i++)
		if (json_array_append_new(g, json_integer(c->groups[i])) < 0) {
			json_decref(g);
			return NULL;
		}
	o = json_pack("{s:I, s:I, s:o}", "uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
		      "groups", g);
	return o;
}

static bool id_ok(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 &&
	       json_integer_value(v) < (json_int_t)UINT32_MAX;
}

int creds_from_json(const json_t *j, struct creds *ret)
{
	const json_t *uid = json_object_get(j, "uid"), *gid = json_object_get(j, "gid");
	const json_t *g = json_object_get(j, "groups"), *v;
	size_t i;

	memset(ret, 0, sizeof(*ret));
	if (!json_is_object(j) || !id_ok(uid) || !id_ok(gid) || (g && !json_is_array(g)) ||
	    json_array_size(g) > CREDS_GROUPS_MAX)
		return -EINVAL;
	ret->uid = (uid_t)json_integer_value(uid);
	ret->gid = (gid_t)json_integer_value(gid);
	json_array_foreach(g, i, v) {
		if (!id_ok(v))
			return -EINVAL;
		ret->groups[ret->ngroups++] = (gid_t)json_integer_value(v);
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/* Shared by the CLI test binaries: run corral and look at what it did. */
#ifndef CORRAL_TESTS_CLI_HELPERS_H
#define CORRAL_TESTS_CLI_HELPERS_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

/* The longest any one run of corral may take before the test fails. */
#define RUN_LIMIT_MS 60000

struct run {
	int status;     /* exit code; 128 + signal if killed */
	char *out, *err;
};

/*
 * Run corral ($CORRAL_CLI) with args (NULL-terminated) and wait at most
 * RUN_LIMIT_MS.  The environment is ours without CORRAL_* and
 * XDG_RUNTIME_DIR, plus env ("K=V" strings, NULL-terminated; may be NULL).
 * stdin is /dev/null; stdout and stderr are captured.  Fails the test if
 * corral cannot start or overstays.
 */
void run_cli(struct run *r, const char *const *env, const char *const *args);
void run_free(struct run *r);

#define RUN(r, ...) run_cli((r), NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define RUN_ENV(r, env, ...) run_cli((r), (env), (const char *const[]){ __VA_ARGS__, NULL })

/* spawn_cli()'s child exits with this when it may not execute corral. */
#define SPAWN_EACCES 125

/*
 * Start corral in the background, stdout and stderr to files in dir
 * ("out", "err").  uid: run as this user (when we are root), or -1.
 */
pid_t spawn_cli(const char *dir, const char *const *env, const char *const *args, int uid);
/* Its exit status (as run.status), waiting at most RUN_LIMIT_MS. */
int wait_cli(pid_t pid);

/* A new private directory under /tmp; the test fails if it cannot make one. */
char *make_tmpdir(void);
/* text parsed as JSON; the test fails if it is not JSON. */
json_t *parse_json(const char *text);
/* rm -rf dir (from make_tmpdir()); accepts NULL. */
void remove_tree(const char *dir);
/* dir/name as a new string. */
char *path_in(const char *dir, const char *name);
/* The whole file as a string ("" if missing). */
char *slurp(const char *path);
/* Wait up to timeout_ms until the file contains needle n times. */
bool wait_contains(const char *path, const char *needle, unsigned n, unsigned timeout_ms);
/* Wait up to timeout_ms until nothing is at path. */
bool wait_gone(const char *path, unsigned timeout_ms);
/* Lines in s. */
unsigned count_lines(const char *s);
/* Times needle occurs in s. */
unsigned count_str(const char *s, const char *needle);

#endif /* CORRAL_TESTS_CLI_HELPERS_H */

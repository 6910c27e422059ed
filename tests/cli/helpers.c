/* SPDX-License-Identifier: MIT */
/* Shared by the CLI test binaries (see helpers.h). */
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *make_tmpdir(void)
{
	char *dir = strdup("/tmp/corral-cli-test-XXXXXX");

	cr_assert(dir && mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	return dir;
}

char *path_in(const char *dir, const char *name)
{
	char *s;

	cr_assert(asprintf(&s, "%s/%s", dir, name) > 0);
	return s;
}

char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t len = 0;

	if (!f)
		return strdup("");
	/* getdelim() leaves s undefined at end of file: empty files are "". */
	if (getdelim(&s, &len, '\0', f) < 0) {
		cr_assert(feof(f));
		free(s);
		s = strdup("");
	}
	fclose(f);
	return s;
}

unsigned count_str(const char *s, const char *needle)
{
	unsigned n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s += strlen(needle);
	}
	return n;
}

unsigned count_lines(const char *s)
{
	return count_str(s, "\n");
}

bool wait_contains(const char *path, const char *needle, unsigned n, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;

	for (;;) {
		char *s = slurp(path);
		bool ok = count_str(s, needle) >= n;

		free(s);
		if (ok)
			return true;
		if (mono_ms() >= end)
			return false;
		sleep_ms(10);
	}
}

/* environ without CORRAL_* and XDG_RUNTIME_DIR, plus extra. */
static char **build_env(const char *const *extra)
{
	size_t n = 0, k = 0, i;
	char **env;

	while (environ[n])
		n++;
	for (i = 0; extra && extra[i]; i++)
		n++;
	env = calloc(n + 1, sizeof(*env));
	cr_assert(env);
	for (i = 0; environ[i]; i++)
		if (strncmp(environ[i], "CORRAL_", 7) && strncmp(environ[i], "XDG_RUNTIME_DIR=", 16))
			env[k++] = environ[i];
	for (i = 0; extra && extra[i]; i++)
		env[k++] = (char *)extra[i];
	return env;
}

pid_t spawn_cli(const char *dir, const char *const *env, const char *const *args, int uid)
{
	const char *cli = getenv("CORRAL_CLI");
	char **envp = build_env(env);
	char *out = path_in(dir, "out"), *err = path_in(dir, "err");
	size_t n = 0, i;
	char **argv;
	pid_t pid;

	cr_assert(cli && *cli, "CORRAL_CLI is not set: run the tests through meson");
	while (args[n])
		n++;
	argv = calloc(n + 2, sizeof(*argv));
	cr_assert(argv);
	argv[0] = (char *)cli;
	for (i = 0; i < n; i++)
		argv[i + 1] = (char *)args[i];

	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);

		if (in < 0 || o < 0 || e < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		if (uid >= 0 && getuid() == 0 &&
		    (setgroups(0, NULL) || setgid((gid_t)uid) || setuid((uid_t)uid)))
			_exit(126);
		execve(cli, argv, envp);
		_exit(errno == EACCES ? SPAWN_EACCES : 127);
	}
	free(argv);
	free(envp);
	free(out);
	free(err);
	return pid;
}

int wait_cli(pid_t pid)
{
	uint64_t end = mono_ms() + RUN_LIMIT_MS;
	int status;

	/* A child has no descriptor to wait on here: look every 2 ms. */
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (mono_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			cr_assert_fail("corral ran past %u ms", RUN_LIMIT_MS);
		}
		sleep_ms(2);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void run_cli(struct run *r, const char *const *env, const char *const *args)
{
	char *dir = make_tmpdir(), *out = path_in(dir, "out"), *err = path_in(dir, "err");

	r->status = wait_cli(spawn_cli(dir, env, args, -1));
	r->out = slurp(out);
	r->err = slurp(err);
	unlink(out);
	unlink(err);
	rmdir(dir);
	free(out);
	free(err);
	free(dir);
}

void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

bool wait_gone(const char *path, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;

	while (access(path, F_OK) == 0) {
		if (mono_ms() >= end)
			return false;
		sleep_ms(10);
	}
	return true;
}

void remove_tree(const char *dir)
{
	char *cmd;

	if (!dir)
		return;
	cr_assert(asprintf(&cmd, "rm -rf -- '%s'", dir) > 0);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

json_t *parse_json(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);

	cr_assert(j, "not JSON (%s): %s", jerr.text, text);
	return j;
}

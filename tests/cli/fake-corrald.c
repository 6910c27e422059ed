/* SPDX-License-Identifier: MIT */
/*
 * fake-corrald: what the autostart test has corral start as CORRAL_DAEMON.
 * Takes --socket PATH as corrald does, serves one connection (list answers
 * one domain, "auto"), then exits.  Says where it listens on stdout, which
 * corral sends to its log.  With FAKE_CORRALD_FORK=1 in its environment it
 * goes into the background first, as a forking daemon would: the process
 * corral started exits 0 before anything listens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake.h"

static void handle(const char *method, json_t *params, struct fake_reply *reply, void *arg)
{
	if (!strcmp(method, "list"))
		reply->result = json_pack("{s:[{s:s, s:s, s:s, s:s, s:n, s:{s:s, s:f}}], s:[], s:[]}",
					  "domains", "name", "auto",
					  "uuid", "00000000-0000-4000-8000-000000000001",
					  "state", "shutoff", "reason", "defined", "job",
					  "monitor", "state", "none", "since_s", 0.0, "missing", "more");
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	struct fake *f;
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--socket"))
			sock = argv[i + 1];
	if (!sock) {
		fprintf(stderr, "fake-corrald: no --socket\n");
		return 2;
	}
	if (getenv("FAKE_CORRALD_FORK")) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid > 0)
			return 0;
	}
	/* Never outlive a test that went wrong. */
	alarm(60);
	f = fake_start(sock, handle, NULL, true);
	if (!f) {
		perror("fake-corrald");
		return 1;
	}
	printf("fake corrald on %s\n", sock);
	fflush(stdout);
	fake_join(f);
	unlink(sock);
	return 0;
}

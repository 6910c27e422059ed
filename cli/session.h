/* SPDX-License-Identifier: MIT */
/*
 * cli session: where the CLI looks for corrald, and the per-user session
 * daemon it starts when nobody listens there (as libvirt's session URI does).
 *
 * Main thread only.  No printing: reasons go to errbuf.
 */
#ifndef CORRAL_CLI_SESSION_H
#define CORRAL_CLI_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "cli/client.h"

/*
 * The default socket for this user: /run/corral/corral.sock for root, else
 * $XDG_RUNTIME_DIR/corral/corral.sock, else /tmp/corral-$UID/corral.sock.
 * 0, or -ENAMETOOLONG.
 */
int cli_default_socket(char *buf, size_t len);

/*
 * Start corrald for sock_path and connect to it, waiting at most timeout_ns
 * for it to listen.  The daemon is the first of: $CORRAL_DAEMON; corrald
 * next to this program; ../daemon/corrald from this program (the build
 * tree); corrald from PATH.  It runs in its own session with stdin from
 * /dev/null and stdout and stderr appended to corrald.log beside the socket,
 * and outlives the CLI.
 *
 * Concurrent CLIs take turns under a lock file in the socket's directory, so
 * one daemon starts and the others connect to it.
 *
 * 0 and *ret; or -errno with a one-line reason in errbuf (-ETIMEDOUT: it did
 * not listen in time; -ECHILD: it failed or was killed before it listened;
 * an exit with status 0 is read as forking into the background).
 */
int cli_session_start(const char *sock_path, uint64_t timeout_ns, struct cli_client **ret,
		      char *errbuf, size_t errlen);

#endif /* CORRAL_CLI_SESSION_H */

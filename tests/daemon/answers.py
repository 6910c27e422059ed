#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Every call gets an answer that says what happened.

Usage: answers.py CORRALD QEMU [TEST...]

  cancelled_by_destroy   a job stuck on a SIGSTOPped QEMU, preempted by
                         destroy, is answered `cancelled` (14), not `internal`
  unavailable_at_shutdown  when corrald gets SIGTERM, the job it holds, the
                         jobs waiting behind it and the requests it had read
                         but not handled are all answered `unavailable` (13)
                         before the connection closes

Exits 0 when every test passes, 1 otherwise.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, run_tests, wait_until  # noqa: E402

CORRALD = QEMU = None
ERR_UNAVAILABLE, ERR_CANCELLED = 13, 14


def vm_config(name):
    return {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}


def hung_vm(c, name):
    """A running domain whose QEMU is SIGSTOPped; returns its pid."""
    c.call("define", {"config": vm_config(name)})
    pid = c.call("start", {"name": name})["pid"]
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_cancelled_by_destroy():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        pid = hung_vm(c, "h1")
        stuck = c.send("suspend", {"name": "h1", "timeout_ms": 60000})
        wait_until(lambda: (c.call("info", {"name": "h1"})["job"] or {}).get("name")
                   == "suspend", "the suspend to hold the domain")
        r = c.call("destroy", {"name": "h1"})
        check(r["state"] == "shutoff", "destroy: %r" % r)
        m = c.response(stuck)
        check(m[2] is not None and m[2][0] == ERR_CANCELLED,
              "the preempted job was answered %r" % (m[2],))
        check("cancelled by 'destroy'" in m[2][1], m[2][1])
        check(not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read()
              .split(")")[-1].split()[0] == "Z", "QEMU survived destroy")
        d.stop()
    finally:
        d.cleanup()


def test_unavailable_at_shutdown():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        hung_vm(c, "h2")
        holder = c.send("suspend", {"name": "h2", "timeout_ms": 60000})
        wait_until(lambda: (d.client().call("info", {"name": "h2"})["job"] or {}).get("name")
                   == "suspend", "the suspend to hold the domain")
        waiting = [c.send("resume", {"name": "h2", "timeout_ms": 60000}) for _ in range(3)]
        wait_until(lambda: d.client().call("info", {"name": "h2"})["jobs_waiting"] == 3,
                   "three jobs to wait")
        d.proc.send_signal(signal.SIGTERM)
        got = {}
        try:
            while len(got) < 4:
                m = c.recv()
                if m[0] == 1:
                    got[m[1]] = m
        except EOFError:
            pass
        for i in [holder] + waiting:
            check(i in got, "call %d got no answer before the connection closed (got %r)"
                  % (i, sorted(got)))
            check(got[i][2] is not None and got[i][2][0] == ERR_UNAVAILABLE,
                  "call %d was answered %r" % (i, got[i][2]))
            check("shutting down" in got[i][2][1], got[i][2][1])
        rc = d.proc.wait(timeout=60)
        check(rc == 0, "corrald exited %d" % rc)
    finally:
        d.cleanup()


TESTS = [test_cancelled_by_destroy, test_unavailable_at_shutdown]


def main():
    global CORRALD, QEMU
    CORRALD, QEMU = sys.argv[1], sys.argv[2]
    if not QEMU:
        print("answers: skipped (no QEMU)")
        return 0
    only = sys.argv[3:]
    return run_tests(TESTS, only)


if __name__ == "__main__":
    sys.exit(main())

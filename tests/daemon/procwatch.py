#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""One descriptor per running QEMU, and every end still seen.

Usage: procwatch.py CORRALD QEMU [TEST...]

Real corrald, real QEMU (-machine none, TCG).  corrald watches a QEMU
through its monitor's socket alone while the monitor is up, and opens a
pidfd only to kill or when the monitor cannot tell (actors/vm-proc.c).
The tests:

  descriptors       20 attached QEMUs and 3 started ones: once their
                    monitors are up, corrald holds one more descriptor per
                    attached QEMU (its QMP socket), not two (with a pidfd);
  killed_outside    QEMUs killed with SIGKILL from outside, one attached
                    and one corral's own (also one SIGSTOPped first): each
                    domain ends (shutoff or crashed, with the reason) and no
                    child of corrald is left a zombie; the descriptors come
                    back;
  closed_monitor    an attached process that closes its QMP connection and
                    lives on stays running (its pid watched), and its end
                    is seen later;
  restart_serves    after kill -9, a new corrald lists every QEMU running with
                    its pid as soon as it listens (monitors still connecting
                    or frozen); jobs sent at once wait behind the re-attach:
                    start is refused, suspend and resume work, destroy of a
                    SIGSTOPped QEMU kills it; no second QEMU is started;
  pid_reuse         destroy of an attached process whose pid now belongs to
                    another process: the start time does not match, so the
                    other process is not signalled (needs root, to pick the
                    next pid through /proc/sys/kernel/ns_last_pid).

Exits 0 when every test passes, 1 otherwise.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, run_tests, wait_until, zombies_of  # noqa: E402

CORRALD = QEMU = None
N_ATTACHED = 20


def vm_config(name, **kw):
    cfg = {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}
    cfg.update(kw)
    return cfg


def own_qemu(dmn, name):
    """A QEMU corral did not start, with a QMP socket to attach to."""
    sock = "%s/%s.qmp" % (dmn.dir, name)
    p = subprocess.Popen([QEMU, "-machine", "none", "-accel", "tcg", "-nodefaults",
                          "-no-user-config", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: os.path.exists(sock), "the QMP socket of " + name)
    return p, sock


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fds(dmn, c):
    """corrald's descriptors once every domain is free of jobs, monitors up or none."""
    def quiet():
        for d in c.call("list"):
            if d["job"] is not None or d["monitor"]["state"] not in ("ok", "none"):
                return False
        return True
    wait_until(quiet, "every monitor up")
    # The same count twice in a row, 0.2 s apart: nothing in flight.
    prev = -1
    for _ in range(100):
        n = nfds(dmn.proc.pid)
        if n == prev:
            return n
        prev = n
        time.sleep(0.2)
    return prev


def state_of(c, name):
    return c.call("info", {"name": name})


def test_descriptors():
    dmn = Daemon(CORRALD).start()
    qemus = []
    try:
        c = dmn.client()
        base = settled_fds(dmn, c)
        for i in range(N_ATTACHED):
            p, sock = own_qemu(dmn, "a%d" % i)
            qemus.append(p)
            r = c.call("attach", {"name": "a%d" % i, "qmp_socket": sock,
                                  "config": vm_config("a%d" % i)})
            check(r["pid"] == p.pid, "attach a%d: %r" % (i, r))
        with_attached = settled_fds(dmn, c)
        grown = with_attached - base
        check(grown == N_ATTACHED,
              "%d attached QEMUs: corrald's descriptors grew by %d (%d -> %d), not by %d"
              % (N_ATTACHED, grown, base, with_attached, N_ATTACHED))
        # corral's own: the pidfd of the start goes once the monitor is up.
        per = []
        for i in range(3):
            c.call("define", {"config": vm_config("s%d" % i)})
            before = settled_fds(dmn, c)
            c.call("start", {"name": "s%d" % i})
            per.append(settled_fds(dmn, c) - before)
        check(len(set(per)) == 1, "started QEMUs cost %r descriptors each" % per)
        # Killing one opens its pidfd, and its end closes both.
        before = settled_fds(dmn, c)
        r = c.call("destroy", {"name": "a0"})
        check(r["state"] == "shutoff" and r["reason"] == "destroyed", "destroy a0: %r" % r)
        check(qemus[0].wait(timeout=30) == -signal.SIGKILL, "a0 was not killed")
        after = settled_fds(dmn, c)
        check(after == before - 1, "destroy: descriptors %d -> %d" % (before, after))
        for i in range(3):
            c.call("destroy", {"name": "s%d" % i})
        check(zombies_of(dmn.proc.pid) == [], "zombies: %r" % zombies_of(dmn.proc.pid))
        print("     descriptors: %d idle, %d with %d attached (+%d), %d per started QEMU"
              % (base, with_attached, N_ATTACHED, grown, per[0]))
        dmn.stop()
    finally:
        for p in qemus:
            p.kill()
            p.wait()
        dmn.cleanup()


def test_killed_outside():
    dmn = Daemon(CORRALD).start()
    p = None
    try:
        c = dmn.client()
        base = settled_fds(dmn, c)
        p, sock = own_qemu(dmn, "att")
        c.call("attach", {"name": "att", "qmp_socket": sock, "config": vm_config("att")})
        for n in ("own", "frozen"):
            c.call("define", {"config": vm_config(n)})
            c.call("start", {"name": n})
        pids = {n: state_of(c, n)["pid"] for n in ("own", "frozen")}
        settled_fds(dmn, c)
        os.kill(p.pid, signal.SIGKILL)
        os.kill(pids["own"], signal.SIGKILL)
        os.kill(pids["frozen"], signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(pids["frozen"], signal.SIGKILL)

        def ended(n):
            i = state_of(c, n)
            return i if i["state"] in ("shutoff", "crashed") and i["job"] is None else None
        i = wait_until(lambda: ended("att"), "the attached QEMU's end")
        check(i["state"] == "shutoff" and i["reason"] == "exited" and i["pid"] == 0,
              "att: %r" % i)
        for n in ("own", "frozen"):
            i = wait_until(lambda: ended(n), "the end of " + n)
            check(i["state"] == "crashed" and i["reason"] == "killed" and i["pid"] == 0,
                  "%s: %r" % (n, i))
        p.wait(timeout=30)
        # corral's children are reaped: none is left a zombie.
        wait_until(lambda: zombies_of(dmn.proc.pid) == [], "no zombie children", timeout=10)
        check(not dmn.qemus(), "QEMUs left: %r" % dmn.qemus())
        after = settled_fds(dmn, c)
        check(after == base, "descriptors %d before, %d after" % (base, after))
        dmn.stop()
    finally:
        if p:
            p.kill()
            p.wait()
        dmn.cleanup()


# A QMP server in Python: greets, answers every command, and on "close-now"
# (a line on stdin) closes its connections and lives on; on "exit" it exits.
# listen() is called by the process that serves (SO_PEERCRED names it).
QMP_SERVER = r'''
import json, os, select, socket, sys
path = sys.argv[1]
fork_after = len(sys.argv) > 2 and sys.argv[2] == "fork"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(8)
print(os.getpid(), flush=True)
if fork_after:
    # The child serves; the parent (the socket's peer) waits for "exit".
    if os.fork() != 0:
        srv.close()
        sys.stdin.readline()
        os._exit(0)
    print(os.getpid(), flush=True)
conns = {}
while True:
    rl = [srv] + ([] if fork_after else [sys.stdin]) + list(conns)
    r, _, _ = select.select(rl, [], [])
    for s in r:
        if s is srv:
            c, _ = srv.accept()
            conns[c] = b""
            c.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                      b'"package": ""}, "capabilities": []}}\r\n')
        elif s is sys.stdin:
            line = sys.stdin.readline().strip()
            if line == "close-now":
                for c in list(conns):
                    c.close()
                conns.clear()
            elif line in ("exit", ""):
                sys.exit(0)
        else:
            data = s.recv(65536)
            if not data:
                s.close()
                del conns[s]
                continue
            conns[s] += data
            while b"\n" in conns[s] or b"}" in conns[s]:
                try:
                    dec = json.JSONDecoder()
                    text = conns[s].decode().lstrip()
                    obj, end = dec.raw_decode(text)
                except ValueError:
                    break
                conns[s] = text[end:].encode()
                cmd = obj.get("execute")
                ret = {}
                if cmd == "query-status":
                    ret = {"status": "running", "running": True, "singlestep": False}
                elif cmd in ("query-cpus-fast", "query-iothreads", "query-blockstats"):
                    ret = []
                out = {"return": ret}
                if "id" in obj:
                    out["id"] = obj["id"]
                s.sendall(json.dumps(out).encode() + b"\r\n")
'''


def qmp_server(dmn, name, fork=False):
    sock = "%s/%s.qmp" % (dmn.dir, name)
    p = subprocess.Popen([sys.executable, "-c", QMP_SERVER, sock] + (["fork"] if fork else []),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    pid = int(p.stdout.readline())
    server = int(p.stdout.readline()) if fork else pid
    wait_until(lambda: os.path.exists(sock), "the QMP socket of " + name)
    return p, pid, sock, server


def python_exe():
    return os.path.realpath(sys.executable)


def test_closed_monitor():
    # The Python server is "an allowed emulator" here, so corral may kill it.
    dmn = Daemon(CORRALD, extra=["--stats-interval-ms", "0", "--allow-emulator", python_exe(),
                                 "--allow-emulator", QEMU]).start()
    p = None
    try:
        c = dmn.client()
        p, pid, sock, _ = qmp_server(dmn, "srv")
        r = c.call("attach", {"name": "srv", "qmp_socket": sock, "config": vm_config("srv")})
        check(r["pid"] == pid, "attach: %r" % r)
        base = settled_fds(dmn, c)
        # It closes its monitor and lives on: running, monitor broken, pid watched.
        p.stdin.write("close-now\n")
        p.stdin.flush()
        wait_until(lambda: state_of(c, "srv")["monitor"]["state"] in ("broken", "connecting",
                                                                          "ok"),
                   "the monitor to be lost")
        time.sleep(1.5)
        i = state_of(c, "srv")
        check(i["state"] == "running" and i["pid"] == pid, "a live process was dropped: %r" % i)
        # Its end is seen even if no monitor comes back in time.
        p.stdin.write("exit\n")
        p.stdin.flush()
        p.wait(timeout=30)
        i = wait_until(lambda: (lambda i: i if i["state"] == "shutoff" else None)(
            state_of(c, "srv")), "the end of the process")
        check(i["reason"] == "exited", "srv: %r" % i)
        after = settled_fds(dmn, c)
        check(after == base - 1, "descriptors %d with it, %d after" % (base, after))
        dmn.stop()
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        dmn.cleanup()


def next_pid_is(pid):
    """Make the next process in this pid namespace get pid (best effort)."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        return True
    except OSError:
        return False


def test_pid_reuse():
    if os.geteuid() != 0:
        print("     pid_reuse: skipped (not root)")
        return
    dmn = Daemon(CORRALD, extra=["--stats-interval-ms", "0", "--allow-emulator", python_exe(),
                                 "--allow-emulator", QEMU]).start()
    p = victim = None
    server = 0
    try:
        c = dmn.client()
        # The socket's peer (pid L) forks the server and exits on request:
        # the monitor stays up, and L is free for another process.
        p, peer, sock, server = qmp_server(dmn, "reuse", fork=True)
        r = c.call("attach", {"name": "reuse", "qmp_socket": sock, "config": vm_config("reuse")})
        check(r["pid"] == peer, "attach: %r" % r)
        settled_fds(dmn, c)
        p.stdin.write("exit\n")
        p.stdin.flush()
        p.wait(timeout=30)
        # Another process takes pid L.
        for _ in range(200):
            if not next_pid_is(peer):
                print("     pid_reuse: skipped (ns_last_pid not writable)")
                return
            v = subprocess.Popen(["sleep", "300"])
            if v.pid == peer:
                victim = v
                break
            v.kill()
            v.wait()
        if not victim:
            print("     pid_reuse: skipped (pid %d not taken again in 200 tries)" % peer)
            return
        check(state_of(c, "reuse")["pid"] == peer, "domain lost its pid")
        r = c.call("destroy", {"name": "reuse"})
        check(r["state"] == "shutoff", "destroy: %r" % r)
        time.sleep(0.5)
        check(victim.poll() is None,
              "destroy killed pid %d, which another process had taken" % peer)
        # The server (the domain's monitor) was not the peer: it lives on; stop it.
        dmn.stop()
    finally:
        if victim:
            victim.kill()
            victim.wait()
        if p and p.poll() is None:
            p.kill()
            p.wait()
        if server:
            try:
                os.kill(server, signal.SIGKILL)
            except OSError:
                pass
        dmn.cleanup()


def test_restart_serves():
    dmn = Daemon(CORRALD).start()
    qemus = []
    try:
        c = dmn.client()
        for i in range(10):
            p, sock = own_qemu(dmn, "a%d" % i)
            qemus.append(p)
            c.call("attach", {"name": "a%d" % i, "qmp_socket": sock,
                              "config": vm_config("a%d" % i)})
        for n in ("s0", "frozen"):
            c.call("define", {"config": vm_config(n)})
            c.call("start", {"name": n})
        before = {d["name"]: c.call("info", {"name": d["name"]})["pid"]
                  for d in c.call("list")}
        own = set(dmn.qemus())
        c.close()
        dmn.kill9()
        os.kill(before["frozen"], signal.SIGSTOP)
        dmn.start()
        c = dmn.client()
        # The first answers already show every QEMU, with its pid.
        now = {d["name"]: d["state"] for d in c.call("list")}
        check(now == {n: "running" for n in before},
              "first list after the restart: %r" % now)
        now = {n: c.call("info", {"name": n})["pid"] for n in before}
        check(now == before, "pids after the restart: %r, not %r" % (now, before))
        # Sent at once: they wait behind the re-attach, then decide.
        ids = {n: c.send("start", {"name": n}) for n in before}
        for n, msgid in ids.items():
            m = c.response(msgid)
            check(m[2] is not None and "already" in m[2][1],
                  "start of %s after the restart: %r" % (n, m))
        r = c.call("suspend", {"name": "a1"})
        check(r["state"] == "paused", "suspend a1: %r" % r)
        r = c.call("resume", {"name": "a1"})
        check(r["state"] == "running", "resume a1: %r" % r)
        check(set(dmn.qemus()) == own, "QEMUs %r, not %r" % (set(dmn.qemus()), own))
        r = c.call("destroy", {"name": "frozen"})
        check(r["state"] == "shutoff" and r["reason"] == "destroyed", "destroy frozen: %r" % r)
        check(before["frozen"] not in dmn.qemus(), "frozen QEMU still there")
        c.call("destroy", {"name": "s0"})
        dmn.stop()
    finally:
        for p in qemus:
            p.kill()
            p.wait()
        dmn.cleanup()


TESTS = [test_descriptors, test_killed_outside, test_closed_monitor, test_restart_serves,
         test_pid_reuse]


def main():
    global CORRALD, QEMU
    CORRALD, QEMU = sys.argv[1], sys.argv[2]
    if not QEMU:
        print("procwatch: skipped (no QEMU)")
        return 0
    only = sys.argv[3:]
    return run_tests(TESTS, only)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Every resource a client can make corrald hold is bounded, and queries are
never starved (issue 12).  Each test says what it shows; each fails on the
corrald before the bounds (0973fd6).

Usage: bounds.py CORRALD SIM CLI QEMU [TEST...]

  partial_frames       40 clients on the read-only socket each send all but
                       the last 16 bytes of a 4 MiB request and go quiet:
                       corrald holds at most --client-input-total of them
                       (the client over it gets an error naming the flag and
                       is closed), the rest are closed with an error at
                       --frame-timeout-ms, the memory goes back, and `info`
                       answers throughout.  Before: +160 MiB held for ever.
  event_storm          1,000 events/s from 4 simulated QEMUs; 4 connections x
                       64 subscriptions reading as fast as they can, 2 that
                       read slowly, 2 that read nothing: `info` on the
                       read-write socket stays quick (under 5 s at worst,
                       generous: it takes milliseconds), the slow readers get
                       `events.dropped` and stay connected, the ones that read
                       nothing are closed after --client-stall-timeout-ms, and
                       corrald's memory stays bounded.  Before: `info` took
                       10-30 s, slow readers were closed, non-readers pinned
                       ~330 MiB each.
  subscriptions_max    --subscriptions-max 3: the 4th subscription on a
                       connection is refused, naming the bound.
  inflight_max         --client-inflight-max 8: past 8 state changes in flight
                       on one connection the next gets `busy` at once; queries
                       still answer.
  waiting_jobs         --waiting-jobs-max 1000: behind a job held by a
                       SIGSTOPped QEMU, 1,000 jobs wait and the rest get
                       `busy` at once; queueing 40,000 costs about 4 times the
                       CPU of 10,000 (linear; before: 20-25 times, quadratic).
  state_dir_full       a state dir on a 3 MiB tmpfs, filled: define, autostart
                       and start fail at once with `storage` and "state dir
                       full" (before: start failed with QEMU's "cannot write
                       to log"), queries answer, and once there is room again
                       everything works.
  list_paging          18,000 domains (15 msgpack objects each: more than the
                       262,144 a message may hold): a `list` array is
                       refused, naming pages; a paged answer stays within
                       the protocol's limits and names the rest in `more`, asking for those by name gets them, and
                       `corral list` (which reads with those limits) shows
                       all.  Before: one answer corrald's own clients could
                       not read.
  out_of_fds           corrald with RLIMIT_NOFILE 48 and clients holding the
                       rest: define and start say "corrald is out of file
                       descriptors" (before: "too many open files", or
                       "Too many open files" alone); a client over the limit
                       is refused and the daemon goes on.

Exits 0 when every test passes, 1 otherwise.
"""
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import (Client, Daemon, check, define_by_files, mount_tmpfs,  # noqa: E402
                        run_tests, wait_until)

CORRALD = SIM = CLI = QEMU = None
ERR_INVALID_REQUEST, ERR_INVALID_ARGUMENT, ERR_BUSY = 1, 3, 6
MIB = 1 << 20


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sanitized(pid):
    """A corrald built with ASan or TSan: its allocator keeps freed memory
    (quarantine, shadow), so RSS says nothing about what corrald holds; the
    tests then rely on daemon.info's exact counts."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_all_until_closed(s, timeout):
    """Everything the peer sends until it closes; None if it does not close in time."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        return data


def responses(data):
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    return [m for m in u if m[0] == 1]


def test_partial_frames():
    # A deadline longer than sending them all takes, even on a loaded machine.
    d = Daemon(CORRALD, extra=["--frame-timeout-ms", "30000"]).start()
    try:
        q = d.client()
        q.call("define", {"config": {"name": "p1", "machine": "none"}})
        big = msgpack.packb([0, 7, "info", [{"name": "x" * (4 * MIB - 64)}]])
        check(len(big) <= 4 * MIB, "the request is %d bytes" % len(big))
        base = rss(d.proc.pid)
        socks, refused = [], []
        for _ in range(40):
            s = raw_connect(d.ro)
            try:
                s.sendall(big[:-16])
            except (BrokenPipeError, ConnectionResetError):
                pass
            socks.append(s)
            # Queries answer while the partial requests pile up.
            check(q.call("info", {"name": "p1"})["state"] == "shutoff", "info failed")
        held = rss(d.proc.pid) - base
        held_in = q.call("daemon.info")["input_bytes"]
        check(32 * MIB <= held_in <= 64 * MIB, "daemon.info: %d bytes of input" % held_in)
        print("  40 partial 4 MiB requests: corrald's RSS grew by %.1f MiB" % (held / MIB))
        check(held < 100 * MIB or sanitized(d.proc.pid), "40 partial requests pin %.0f MiB "
              "(at most 64 MiB may be held)" % (held / MIB))
        # Some were refused at once, with an answer naming the bound; the rest
        # are closed at their deadline, with an error saying so.
        timed_out = 0
        for s in socks:
            data = read_all_until_closed(s, 60)
            check(data is not None, "a partial request was held past its deadline")
            r = responses(data)
            check(r and r[0][1] == 7 and r[0][2][0] == ERR_INVALID_REQUEST, "closed with %r" % r)
            if "--client-input-total" in r[0][2][1]:
                refused.append(s)
            else:
                check("not complete" in r[0][2][1], "closed with %r" % r)
                timed_out += 1
        check(len(refused) >= 20, "only %d of 40 partial requests were refused (64 MiB of "
              "160 may be held)" % len(refused))
        check(timed_out >= 10, "only %d partial requests were held" % timed_out)
        for s in socks:
            s.close()
        wait_until(lambda: q.call("daemon.info")["input_bytes"] == 0, "the input to go")
        wait_until(lambda: rss(d.proc.pid) - base < 40 * MIB or sanitized(d.proc.pid),
                   "the partial requests' memory to go back (RSS +%.0f MiB)"
                   % ((rss(d.proc.pid) - base) / MIB), timeout=30)
        # A whole 4 MiB request is still fine.
        s = raw_connect(d.ro)
        s.sendall(big)
        s.settimeout(30)
        u = msgpack.Unpacker(raw=False)
        while True:
            u.feed(s.recv(1 << 16))
            got = [m for m in u]
            if got:
                break
        check(got[0][2][0] == ERR_INVALID_ARGUMENT, "a whole request: %r" % got[0][2])
        s.close()
        d.stop()
    finally:
        d.cleanup()


class Subscriber(threading.Thread):
    """A connection with 64 subscriptions that reads fast, slowly or not at all."""

    def __init__(self, path, mode, nsubs=64):
        super().__init__(daemon=True)
        self.c = Client(path)
        # All at once: the answers come amid the events, read by run().
        self.c.sock.sendall(b"".join(msgpack.packb([0, i + 1, "events.subscribe", [{}]])
                                     for i in range(nsubs)))
        self.c.next_id = nsubs
        self.subscribed = 0
        self.mode = mode
        self.stop = threading.Event()
        self.bytes = 0
        self.dropped = 0
        self.events = 0
        self.closed = False

    def run(self):
        s = self.c.sock
        s.settimeout(1)
        # The client's own unpacker: it may hold the start of a message.
        u = self.c.unpacker
        for m in self.c.notes:
            if m[1] == "events.dropped":
                self.dropped += m[2][0]["count"]
        self.c.notes = []
        while not self.stop.is_set():
            if self.mode == "none":
                time.sleep(0.1)
                continue
            if self.mode == "slow":
                time.sleep(0.05)
            try:
                data = s.recv(1 << 20 if self.mode == "fast" else 16384)
            except socket.timeout:
                continue
            except OSError as e:
                self.closed = "recv: %r" % e
                return
            if not data:
                self.closed = "EOF"
                return
            self.bytes += len(data)
            if self.mode == "slow":
                u.feed(data)
                for m in u:
                    if m[0] == 2 and m[1] == "events.dropped":
                        self.dropped += m[2][0]["count"]
                    elif m[0] == 2 and m[1] == "event":
                        self.events += 1
                    elif m[0] == 1 and m[2] is None:
                        self.subscribed += 1


def test_event_storm():
    tmp_qmp = None
    sim = None
    d = Daemon(CORRALD, extra=["--client-stall-timeout-ms", "5000"])
    try:
        tmp_qmp = d.dir + "/qmp"
        os.makedirs(d.dir, exist_ok=True)
        sim = subprocess.Popen([SIM, "--dir", tmp_qmp, "--count", "4", "--event-storm", "250"],
                               stdout=subprocess.PIPE, text=True)
        check(sim.stdout.readline().strip() == "ready 4", "the simulator did not start")
        d.start()
        c = d.client()
        for i in range(4):
            c.call("attach", {"name": "vm%d" % i, "qmp_socket": "%s/vm%d.qmp" % (tmp_qmp, i)})
        # The storm reaches a subscriber.
        probe = d.client(ro=True)
        probe.call("events.subscribe", {"name": "vm0"})
        check(probe.note(10) is not None, "no event from the storm")
        probe.close()

        base = rss(d.proc.pid)
        # Each starts reading as soon as it has subscribed: one that waited
        # for the others would be a client that reads nothing.
        subs = []
        for mode in ["fast"] * 4 + ["slow"] * 2 + ["none"] * 2:
            subs.append(Subscriber(d.ro, mode))
            subs[-1].start()
        lat, peak, t_end = [], 0, time.monotonic() + 15
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            c.call("info", {"name": "vm1"})
            lat.append(time.monotonic() - t0)
            peak = max(peak, rss(d.proc.pid))
            time.sleep(0.05)
        fast_mb = sum(s.bytes for s in subs if s.mode == "fast") / 15 / MIB
        lat.sort()
        worst = lat[-1]
        print("  %d info calls during the storm: median %.1f ms, worst %.1f ms; fast "
              "subscribers read %.1f MiB/s in all; RSS peak +%.0f MiB"
              % (len(lat), lat[len(lat) // 2] * 1000, worst * 1000, fast_mb,
                 (peak - base) / MIB))
        for s in subs:
            if s.mode == "slow":
                print("  a slow subscriber: %d events, %d dropped, %.1f MiB read"
                      % (s.events, s.dropped, s.bytes / MIB))
        check(worst < 5.0, "info took %.1f s during the event storm" % worst)
        check(peak - base < 200 * MIB or sanitized(d.proc.pid),
              "the storm pinned %.0f MiB" % ((peak - base) / MIB))
        for s in subs:
            if s.mode == "fast":
                check(not s.closed and s.bytes > 0, "a fast subscriber was closed (%r) or "
                      "starved (%d bytes):\n%s" % (s.closed, s.bytes, "\n".join(
                          l for l in d.log_text().splitlines() if "closed" in l or
                          "read nothing" in l)))
            if s.mode == "slow":
                check(not s.closed, "a slow subscriber that reads was disconnected (%r)"
                      % s.closed)
                check(s.subscribed == 64, "%d subscriptions" % s.subscribed)
                check(s.dropped > 0, "a slow subscriber got no events.dropped")
        # Those that read nothing are closed once the stall timeout passes.
        wait_until(lambda: d.log_text().count("has read nothing") >= 2,
                   "the two clients that read nothing to be closed", timeout=30)
        for s in subs:
            s.stop.set()
        for s in subs:
            s.join(10)
        # The slow ones are still served: ask and read until the answer comes.
        for s in subs:
            if s.mode != "slow":
                continue
            s.c.sock.settimeout(60)
            s.c.notes = []
            mid = s.c.send("daemon.info")
            check(s.c.response(mid)[2] is None, "daemon.info on a slow subscriber failed")
        for s in subs:
            s.c.close()
        wait_until(lambda: d.client().call("daemon.info")["output_bytes"] < MIB,
                   "the subscribers' output to go")
        wait_until(lambda: rss(d.proc.pid) - base < 100 * MIB or sanitized(d.proc.pid),
                   "memory to go back after the subscribers left", timeout=30)
        d.stop()
    finally:
        if sim:
            sim.terminate()
            sim.wait()
        d.cleanup()


def test_subscriptions_max():
    d = Daemon(CORRALD, extra=["--subscriptions-max", "3"]).start()
    try:
        c = d.client(ro=True)
        for _ in range(3):
            c.call("events.subscribe", {})
        msg = c.err("events.subscribe", {}, ERR_INVALID_ARGUMENT).message
        check("at most 3" in msg, msg)
        check(d.client(ro=True).call("events.subscribe", {})["subscription"] == 1,
              "another connection has its own subscriptions")
        d.stop()
    finally:
        d.cleanup()


def hung_vm(c, name):
    """A running domain whose QEMU is SIGSTOPped, held by a suspend; returns the pid."""
    c.call("define", {"config": {"name": name, "machine": "none", "accel": "tcg",
                                 "memory": 32, "emulator": QEMU}})
    pid = c.call("start", {"name": name})["pid"]
    os.kill(pid, signal.SIGSTOP)
    c.send("suspend", {"name": name, "timeout_ms": 600000})
    return pid


def test_inflight_max():
    d = Daemon(CORRALD, extra=["--client-inflight-max", "8"]).start()
    try:
        c = d.client()
        hung_vm(c, "i1")
        ids = [c.send("reset", {"name": "i1", "timeout_ms": 600000}) for _ in range(12)]
        # 1 suspend + 7 resets in flight; the other 5 are refused at once.
        refused = 0
        for i in ids[7:]:
            m = c.response(i)
            check(m[2] is not None and m[2][0] == ERR_BUSY and "in flight" in m[2][1],
                  "call %d: %r" % (i, m[2]))
            refused += 1
        wait_until(lambda: c.call("info", {"name": "i1"})["jobs_waiting"] == 7, "7 to wait")
        check(refused == 5, "refused %d" % refused)
        d.client().call("destroy", {"name": "i1"})
        d.stop()
    finally:
        d.cleanup()


def queue_jobs(c, d, name, n):
    """Queue n resets behind the holder; the CPU corrald spent taking them."""
    t0 = cpu_s(d.proc.pid)
    for i in range(0, n, 1000):
        c.sock.sendall(b"".join(
            msgpack.packb([0, 100000 + i + k, "reset", [{"name": name, "timeout_ms": 600000}]])
            for k in range(min(1000, n - i))))
    wait_until(lambda: d.client().call("info", {"name": name})["jobs_waiting"] >= n,
               "%d jobs to wait" % n, timeout=120)
    return cpu_s(d.proc.pid) - t0


def test_waiting_jobs():
    d = Daemon(CORRALD, extra=["--waiting-jobs-max", "1000",
                               "--client-inflight-max", "5000"]).start()
    try:
        c = d.client()
        hung_vm(c, "w1")
        wait_until(lambda: (c.call("info", {"name": "w1"})["job"] or {}).get("name")
                   == "suspend", "the suspend to hold the domain")
        ids = [c.send("reset", {"name": "w1", "timeout_ms": 600000}) for _ in range(1200)]
        t0 = time.monotonic()
        for i in ids[1000:]:
            m = c.response(i)
            check(m[2] is not None and m[2][0] == ERR_BUSY and "--waiting-jobs-max" in m[2][1],
                  "call %d: %r" % (i, m[2]))
        check(time.monotonic() - t0 < 30, "the refusals were not at once")
        check(c.call("info", {"name": "w1"})["jobs_waiting"] == 1000, "not 1000 waiting")
        d.client().call("destroy", {"name": "w1"})
        d.stop()
    finally:
        d.cleanup()
    # The cost per job does not grow with the queue.
    costs = {}
    for n in (10000, 40000):
        d = Daemon(CORRALD, extra=["--client-inflight-max", "100000",
                                   "--waiting-jobs-max", "100000"]).start()
        try:
            c = d.client()
            hung_vm(c, "w2")
            wait_until(lambda: (c.call("info", {"name": "w2"})["job"] or {}).get("name")
                       == "suspend", "the suspend to hold the domain")
            costs[n] = queue_jobs(c, d, "w2", n)
            d.client().call("destroy", {"name": "w2"})
            d.stop()
        finally:
            d.cleanup()
    print("  CPU to queue 10,000 jobs: %.2f s; 40,000: %.2f s" % (costs[10000], costs[40000]))
    check(costs[40000] < 8 * max(costs[10000], 0.05),
          "40,000 waiting jobs cost %.2f s of CPU, 10,000 cost %.2f s: not linear"
          % (costs[40000], costs[10000]))


ERR_STORAGE, ERR_INTERNAL = 15, 12


def test_state_dir_full():
    d = Daemon(CORRALD)
    try:
        os.makedirs(d.state, exist_ok=True)
        mount_tmpfs(d.state, "3m")
        d.start()
        c = d.client()
        vm = {"machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}
        c.call("define", {"config": dict(vm, name="f1")})
        fill = d.state + "/fill"
        subprocess.call(["dd", "if=/dev/zero", "of=" + fill, "bs=4k", "count=2000"],
                        stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        for method, params in (("define", {"config": dict(vm, name="f2")}),
                               ("autostart", {"name": "f1", "enable": True}),
                               ("start", {"name": "f1"})):
            e = c.err(method, params, ERR_STORAGE)
            check("state dir full" in e.message and "No space left" in e.message,
                  "%s: %s" % (method, e.message))
        check(time.monotonic() - t0 < 20, "the failures were not at once")
        listed = {x["name"]: x["state"] for x in c.call("list")}
        check(listed == {"f1": "shutoff"}, "list: %r" % listed)
        os.unlink(fill)
        c.call("define", {"config": dict(vm, name="f2")})
        c.call("autostart", {"name": "f1", "enable": True})
        check(c.call("start", {"name": "f1"})["state"] == "running", "no start with room")
        c.call("destroy", {"name": "f1"})
        d.stop()
    finally:
        d.cleanup()


def test_out_of_fds():
    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    d = Daemon(CORRALD)
    popen = subprocess.Popen

    class LimitedPopen(popen):
        def __init__(self, *a, **k):
            k["preexec_fn"] = lower
            super().__init__(*a, **k)
    subprocess.Popen = LimitedPopen
    try:
        d.start()
    finally:
        subprocess.Popen = popen
    try:
        c = d.client()
        c.call("define", {"config": {"name": "e1", "machine": "none", "accel": "tcg",
                                     "memory": 32, "emulator": QEMU}})
        hogs = []
        while len(hogs) < 100:
            try:
                h = d.client()
                h.call("daemon.info")
                hogs.append(h)
            except (OSError, EOFError):
                break
        check(len(hogs) < 100, "the descriptor limit was never reached")
        e = c.err("define", {"config": {"name": "e2", "machine": "none"}})
        check("corrald is out of file descriptors" in e.message, e.message)
        e = c.err("start", {"name": "e1"})
        check("corrald is out of file descriptors" in e.message, e.message)
        check(c.call("info", {"name": "e1"})["state"] == "shutoff", "info failed")
        for h in hogs:
            h.close()
        wait_until(lambda: d.client().call("daemon.info"), "the daemon to take clients again")
        c.call("define", {"config": {"name": "e2", "machine": "none"}})
        check(c.call("start", {"name": "e1"})["state"] == "running", "no start with fds back")
        c.call("destroy", {"name": "e1"})
        check(d.log_text().count("out of file descriptors") >= 1, "nothing logged")
        d.stop()
    finally:
        d.cleanup()


def test_list_paging():
    import json
    d = Daemon(CORRALD)
    n = 18000
    define_by_files(d, ["l%05d" % i for i in range(n)])
    d.start()
    try:
        c = d.client()
        c.sock.settimeout(60)
        # The answer as corrald's own clients read it: rpc/rpc.h's limits.
        c.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=4 * MIB,
                                      max_array_len=262144, max_map_len=131072)
        # An array of 18,000 would not fit in one message: refused, naming pages.
        e = c.err("list", {}, ERR_INVALID_ARGUMENT)
        check("paged" in e.message, e.message)
        r = c.call("list", {"paged": True})
        got = [e["name"] for e in r["domains"]]
        check(0 < len(got) < n and len(got) + len(r["more"]) == n,
              "%d in the answer, %d in more" % (len(got), len(r["more"])))
        check(not set(got) & set(r["more"]), "a domain both in the answer and in more")
        r2 = c.call("list", {"names": r["more"] + ["nope"]})
        check(r2["more"] == [] and r2["missing"] == ["nope"] and
              len(r2["domains"]) == len(r["more"]), "the rest: %d, more %d" %
              (len(r2["domains"]), len(r2["more"])))
        check(c.call("list", {"state": "running"}) == [], "none runs")
        out = subprocess.run([CLI, "--socket", d.rw, "--format", "json", "--timeout", "60",
                              "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=120)
        check(out.returncode == 0, out.stderr)
        j = json.loads(out.stdout)
        check(len(j) == n and len({e["name"] for e in j}) == n, "CLI: %d" % len(j))
    finally:
        d.stop()
        d.cleanup()


TESTS = [test_partial_frames, test_event_storm, test_subscriptions_max, test_inflight_max,
         test_waiting_jobs, test_state_dir_full, test_list_paging, test_out_of_fds]
NEEDS_QEMU = {test_inflight_max, test_waiting_jobs, test_state_dir_full, test_out_of_fds}


def main():
    global CORRALD, SIM, CLI, QEMU
    CORRALD, SIM, CLI, QEMU = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    only = sys.argv[5:]
    return run_tests(TESTS, only,
                     lambda t: "no QEMU" if t in NEEDS_QEMU and not QEMU else None)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""soak: mixed load with faults on one corrald for a long time, then checks.

Usage: soak.py [--corrald PATH] [--sim PATH] [--qemu PATH] [--minutes M]
               [--real N] [--sims G] [--per-sim K] [--guest GUEST_JSON]
               [--seed S] [--sample-s S] [--no-flat] [--verbose]

A private corrald (tests/daemon/corraltest.py's Daemon) serves, for M minutes
(default 2), all at once:

  - real QEMUs: N domains (`machine none`, TCG) that workers start, destroy,
    suspend, resume, reset, redefine, and undefine and define again; with
    --guest, one more domain booting the test guest of tests/guest, whose
    console viewers attach and detach and type into it;
  - simulated QEMUs: G corral-qmp-sim processes of K endpoints each,
    attached as domains; some endpoints hang after negotiation, some close
    their connection after a few commands, some send a storm of RTC_CHANGE
    events;
  - query clients (list, info, stats, daemon.info, api.info), pipelined on
    the read-write and the read-only socket;
  - event subscribers that check every domain's RTC_CHANGE offsets come in
    order, without a gap unless events.dropped said so;
  - faults: real QEMUs SIGKILLed, and SIGSTOPped then SIGCONTed; a whole
    simulator SIGKILLed and started again (its domains re-attached);
    clients that send a call and close at once, or close in the middle of a
    frame.

Every reply on every connection is checked as it comes: well-formed
msgpack, [1, msgid, error, result] with a msgid that was sent and not
answered yet, error nil or [code, message].  The daemon's RSS and open fds
are sampled every --sample-s seconds.

At the end: every call answered exactly once; no corrupted message; event
order kept; no daemon crash (it serves to the end, then exits 0 on
SIGTERM); no QEMU left running after the domains are destroyed, none a
zombie; every domain the soak defined (and did not undefine) still listed;
and RSS and fds flat after warm-up.  The rule for "flat": the first quarter
of the run is warm-up; of the samples after it, the largest RSS of the last
third must be at most 10% + 8 MiB over the largest of the first third, and
the largest fd count of the last third at most 10% + 16 over the first
third's.

Prints the figures (calls, errors by code, faults done, RSS and fd
samples) and exits 0 when every check holds, 1 otherwise.  --no-flat skips
the RSS and fd rule, for a corrald built with a sanitizer (whose quarantine
and shadow memory are not the daemon's own): there the soak looks for
sanitizer reports, which end corrald and so fail the run.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "daemon"))
from corraltest import Daemon, is_zombie, zombies_of  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ERR_NAMES = {1: "invalid-request", 2: "method-not-found", 3: "invalid-argument",
             4: "no-such-domain", 5: "exists", 6: "busy", 7: "timeout", 8: "bad-state",
             9: "permission", 10: "qemu-error", 11: "monitor-broken", 12: "internal",
             13: "unavailable", 14: "cancelled", 15: "storage"}


class Stats:
    """Counters shared by every thread of the soak."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.answered = 0
        self.errors = {}
        self.messages = {}      # error key -> the first message seen
        self.faults = {}
        self.events = 0
        self.dropped = 0
        self.problems = []

    def add(self, table, key, n=1):
        with self.lock:
            d = getattr(self, table)
            d[key] = d.get(key, 0) + n

    def problem(self, what):
        with self.lock:
            if len(self.problems) < 50:
                self.problems.append(what)
            sys.stderr.write("soak: PROBLEM: %s\n" % what)


class Conn:
    """One connection whose every message is checked as it arrives."""

    def __init__(self, path, stats, label):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.stats = stats
        self.label = label
        self.next_id = 0
        self.pending = {}       # msgid -> method
        self.answered = set()
        self.notes = []

    def close(self):
        self.sock.close()

    def send(self, method, params=None):
        self.next_id += 1
        self.pending[self.next_id] = method
        self.sock.sendall(msgpack.packb([0, self.next_id, method,
                                         [] if params is None else [params]]))
        with self.stats.lock:
            self.stats.calls += 1
        return self.next_id

    def _recv(self):
        while True:
            try:
                for m in self.unpacker:
                    return m
            except (msgpack.UnpackException, ValueError) as e:
                self.stats.problem("%s: corrupted message: %r" % (self.label, e))
                raise
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("%s: corrald closed the connection" % self.label)
            self.unpacker.feed(data)

    def _check_reply(self, m):
        if not (isinstance(m, list) and len(m) == 4 and m[0] == 1 and isinstance(m[1], int)):
            self.stats.problem("%s: malformed reply %r" % (self.label, m)[:300])
            return None
        if m[1] in self.answered:
            self.stats.problem("%s: msgid %d answered twice" % (self.label, m[1]))
            return None
        if m[1] not in self.pending:
            self.stats.problem("%s: reply to msgid %d never sent" % (self.label, m[1]))
            return None
        err = m[2]
        if err is not None and not (isinstance(err, list) and len(err) == 2 and
                                    isinstance(err[0], int) and isinstance(err[1], str)):
            self.stats.problem("%s: malformed error %r" % (self.label, err))
        method = self.pending.pop(m[1])
        self.answered.add(m[1])
        with self.stats.lock:
            self.stats.answered += 1
        if err is not None and isinstance(err, list):
            key = "%s %s" % (method, ERR_NAMES.get(err[0], err[0]))
            self.stats.add("errors", key)
            self.stats.messages.setdefault(key, err[1])
        return m

    def next(self):
        """The next reply (checked) or notification."""
        while True:
            m = self._recv()
            if isinstance(m, list) and len(m) == 3 and m[0] == 2:
                return m
            r = self._check_reply(m)
            if r is not None:
                return r

    def call(self, method, params=None):
        """Send and wait for this call's answer; notifications are kept."""
        msgid = self.send(method, params)
        while True:
            m = self.next()
            if m[0] == 2:
                self.notes.append(m)
                continue
            if m[1] == msgid:
                return m[2], m[3]

    def drain(self):
        """Wait for every call in flight."""
        while self.pending:
            m = self.next()
            if m[0] == 2:
                self.notes.append(m)


def list_all(c):
    """Every domain list answers: its pages, following `more` (the names
    that did not fit in one message) until none is left."""
    err, res = c.call("list", {"paged": True})
    out = []
    while True:
        if err or not isinstance(res, dict):
            raise AssertionError("list: %r" % (err,))
        out.extend(res["domains"])
        if not res["more"] or not res["domains"]:
            return out
        err, res = c.call("list", {"names": res["more"]})


def sample(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None
    return rss, fds


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.stop = threading.Event()
        self.d = None
        self.sims = {}          # group -> Popen
        self.sim_lock = threading.Lock()
        self.stopped = {}       # pid -> when it was SIGSTOPped
        self.stopped_lock = threading.Lock()
        self.samples = []
        self.threads = []
        self.real = ["real%d" % i for i in range(args.real)]
        self.sim_names = ["sim%d-%d" % (g, i) for g in range(args.sims)
                          for i in range(args.per_sim)]
        self.defined = set()
        self.defined_lock = threading.Lock()

    # ---- set-up --------------------------------------------------------------

    def real_config(self, name):
        return {"name": name, "machine": "none", "accel": "tcg", "memory": 16,
                "emulator": self.args.qemu}

    def start_sim(self, g):
        k = self.args.per_sim
        # Faults by endpoint: every 5th hangs after negotiation, every 7th
        # (+3) closes after 25 commands, every 4th (+1) sends 20 events/s.
        p = subprocess.Popen([self.args.sim, "--dir", "%s/sim%d" % (self.d.dir, g),
                              "--count", str(k), "--prefix", "vm",
                              "--fault", "%5:hang=after-caps",
                              "--fault", "%7+3:disconnect-after=25",
                              "--fault", "%4+1:event-storm=20"],
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().strip()
        if line != "ready %d" % k:
            raise AssertionError("simulator %d did not start: %r" % (g, line))
        self.sims[g] = p

    def sim_socket(self, name):
        g, i = name[3:].split("-")
        return "%s/sim%s/vm%s.qmp" % (self.d.dir, g, i)

    def setup(self):
        extra = ["--stats-interval-ms", "1000", "--log-level", "info"]
        self.d = Daemon(self.args.corrald, extra=extra).start()
        for g in range(self.args.sims):
            self.start_sim(g)
        c = Conn(self.d.rw, self.stats, "setup")
        for n in self.real:
            err, _ = c.call("define", {"config": self.real_config(n)})
            if err:
                raise AssertionError("define %s: %r" % (n, err))
            self.defined.add(n)
        for n in self.sim_names:
            c.send("attach", {"name": n, "qmp_socket": self.sim_socket(n),
                              "config": {"name": n}, "timeout_ms": 5000})
        c.drain()
        # Every attach defines its name, whether or not the monitor answers.
        names = set(x["name"] for x in list_all(c))
        for n in self.sim_names:
            if n not in names:
                raise AssertionError("attach did not define %s" % n)
            self.defined.add(n)
        if self.args.guest:
            g = json.load(open(self.args.guest))
            base = os.path.dirname(os.path.abspath(self.args.guest))
            kernel = os.path.join(base, os.path.basename(g.get("kernel_pvh") or g["kernel"]))
            initrd = os.path.join(base, os.path.basename(g["initrd"]))
            err, _ = c.call("define", {"config": {
                "name": "guest", "memory": 128, "accel": "tcg", "kernel": kernel,
                "initrd": initrd, "cmdline": g["cmdline"], "emulator": self.args.qemu}})
            if err:
                raise AssertionError("define guest: %r" % (err,))
            self.defined.add("guest")
            err, _ = c.call("start", {"name": "guest", "timeout_ms": 60000})
            if err:
                raise AssertionError("start guest: %r" % (err,))
        c.drain()
        c.close()

    # ---- load ------------------------------------------------------------------

    def spawn(self, fn, *a):
        t = threading.Thread(target=self.guard, args=(fn,) + a, daemon=True)
        self.threads.append(t)
        t.start()

    def guard(self, fn, *a):
        try:
            fn(*a)
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            if not self.stop.is_set() or not isinstance(e, (EOFError, OSError)):
                self.stats.problem("%s%r died: %r" % (fn.__name__, a, e))

    def queries(self, ro, idx):
        c = Conn(self.d.ro if ro else self.d.rw, self.stats, "query%d" % idx)
        rng = random.Random(self.args.seed * 100 + idx)
        names = self.real + self.sim_names
        while not self.stop.is_set():
            for _ in range(8):
                k = rng.random()
                if k < 0.3:
                    c.send("info", {"name": rng.choice(names)})
                elif k < 0.5:
                    c.send("list")
                elif k < 0.7:
                    c.send("stats", {"names": rng.sample(names, min(4, len(names)))})
                elif k < 0.8:
                    c.send("stats")
                elif k < 0.95:
                    c.send("daemon.info")
                else:
                    c.send("api.info")
            c.drain()
            time.sleep(0.01)
        c.drain()
        c.close()

    def lifecycle_real(self, idx):
        """Jobs on the real domains, several in flight on one connection."""
        c = Conn(self.d.rw, self.stats, "real%d" % idx)
        rng = random.Random(self.args.seed * 1000 + idx)
        mine = self.real[idx::self.args.workers]
        ops = ["start", "start", "destroy", "suspend", "resume", "reset", "define",
               "undefine"]
        while not self.stop.is_set():
            for n in mine:
                op = rng.choice(ops)
                if op == "define":
                    c.send("define", {"config": self.real_config(n)})
                elif op == "undefine":
                    # Off first, then undefine and define again (the latter
                    # queued behind it, so the name is never left undefined
                    # unless the undefine's own answer says so).
                    c.send("destroy", {"name": n})
                    err, _ = c.call("undefine", {"name": n})
                    err2, _ = c.call("define", {"config": self.real_config(n)})
                    if err2 and not err:
                        self.stats.problem("%s: undefined, then define failed: %r" % (n, err2))
                else:
                    c.send(op, {"name": n, "timeout_ms": 8000})
            c.drain()
            time.sleep(rng.uniform(0.05, 0.3))
        c.drain()
        c.close()

    def lifecycle_sim(self, idx):
        c = Conn(self.d.rw, self.stats, "simjobs%d" % idx)
        rng = random.Random(self.args.seed * 2000 + idx)
        mine = self.sim_names[idx::self.args.workers]
        while not self.stop.is_set():
            for n in rng.sample(mine, min(8, len(mine))):
                k = rng.random()
                if k < 0.25:
                    c.send("attach", {"name": n, "qmp_socket": self.sim_socket(n),
                                      "timeout_ms": 3000})
                elif k < 0.45:
                    c.send("suspend", {"name": n, "timeout_ms": 3000})
                elif k < 0.65:
                    c.send("resume", {"name": n, "timeout_ms": 3000})
                elif k < 0.75:
                    c.send("reset", {"name": n, "timeout_ms": 3000})
                else:
                    c.send("qmp", {"name": n, "command": '{"execute": "query-status"}',
                                   "timeout_ms": 3000})
            c.drain()
            time.sleep(rng.uniform(0.05, 0.2))
        c.drain()
        c.close()

    def subscriber(self, idx):
        """All events; RTC_CHANGE offsets per domain in order, gaps only when told."""
        c = Conn(self.d.ro, self.stats, "events%d" % idx)
        err, r = c.call("events.subscribe", {})
        if err:
            raise AssertionError("events.subscribe: %r" % (err,))
        last = {}
        c.sock.settimeout(1.0)
        pending_notes = list(c.notes)
        c.notes = []
        while not self.stop.is_set():
            if pending_notes:
                m = pending_notes.pop(0)
            else:
                try:
                    m = c.next()
                except socket.timeout:
                    continue
            if m[0] != 2:
                continue
            if m[1] == "events.dropped":
                with self.stats.lock:
                    self.stats.dropped += m[2][0]["count"]
                last.clear()    # a gap is allowed once
                continue
            if m[1] != "event":
                self.stats.problem("events%d: unexpected notification %r" % (idx, m[1]))
                continue
            ev = m[2][0]
            with self.stats.lock:
                self.stats.events += 1
            dom, name = ev.get("domain"), ev.get("event")
            if not isinstance(dom, str) or not isinstance(name, str):
                self.stats.problem("events%d: malformed event %r" % (idx, ev))
                continue
            # QEMU's events pass through as "qemu.NAME" (plain NAME before).
            if name not in ("qemu.RTC_CHANGE", "RTC_CHANGE"):
                # A new monitor connection starts counting from 0 again.
                if name in ("monitor", "lifecycle", "defined", "undefined"):
                    last.pop(dom, None)
                continue
            off = (ev.get("data") or {}).get("offset")
            prev = last.get(dom)
            if prev is not None and off != prev + 1 and off != 0:
                self.stats.problem("events%d: %s RTC_CHANGE offset %r after %r" %
                                   (idx, dom, off, prev))
            last[dom] = off
        c.close()

    def consoles(self, idx):
        """Console viewers come and go; some type into it."""
        rng = random.Random(self.args.seed * 3000 + idx)
        names = (["guest"] if self.args.guest else []) + self.real[:2]
        while not self.stop.is_set():
            n = rng.choice(names)
            c = Conn(self.d.ro if rng.random() < 0.5 else self.d.rw, self.stats,
                     "console%d" % idx)
            err, r = c.call("console.attach", {"name": n, "history": rng.random() < 0.5})
            t_end = time.monotonic() + rng.uniform(0.2, 2.0)
            c.sock.settimeout(0.2)
            if not err and c.sock.getpeername() == self.d.rw and rng.random() < 0.5:
                c.send("console.write", {"name": n, "data": b"echo soak\n"})
            while time.monotonic() < t_end and not self.stop.is_set():
                try:
                    c.next()
                except socket.timeout:
                    pass
            c.sock.settimeout(30)
            if not err and rng.random() < 0.5:
                c.send("console.detach", {"subscription": r["subscription"]})
            c.drain()
            c.close()

    # ---- faults ------------------------------------------------------------------

    def pids(self):
        """pid of each real domain's QEMU, from info."""
        c = Conn(self.d.ro, self.stats, "faults-query")
        out = {}
        for n in self.real:
            err, r = c.call("info", {"name": n})
            if not err and r.get("pid"):
                out[n] = r["pid"]
        c.close()
        return out

    def faults(self):
        rng = random.Random(self.args.seed * 4000)
        while not self.stop.wait(rng.uniform(0.5, 2.0)):
            # SIGCONT whatever has been stopped long enough.
            now = time.monotonic()
            with self.stopped_lock:
                for pid, t in list(self.stopped.items()):
                    if now - t > 3.0:
                        try:
                            os.kill(pid, signal.SIGCONT)
                        except OSError:
                            pass
                        del self.stopped[pid]
            k = rng.random()
            if k < 0.25:
                pids = self.pids()
                if pids:
                    pid = rng.choice(list(pids.values()))
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.stats.add("faults", "real QEMU SIGKILL")
                    except OSError:
                        pass
            elif k < 0.45:
                pids = self.pids()
                if pids:
                    pid = rng.choice(list(pids.values()))
                    with self.stopped_lock:
                        if pid not in self.stopped:
                            try:
                                os.kill(pid, signal.SIGSTOP)
                                self.stopped[pid] = time.monotonic()
                                self.stats.add("faults", "real QEMU SIGSTOP+SIGCONT")
                            except OSError:
                                pass
            elif k < 0.55 and self.sims:
                g = rng.choice(list(self.sims))
                with self.sim_lock:
                    p = self.sims.pop(g)
                    p.kill()
                    p.wait()
                    self.stats.add("faults", "simulator SIGKILL")
                    time.sleep(rng.uniform(0.2, 1.0))
                    self.start_sim(g)
            elif k < 0.8:
                # A client that sends a job or a query and leaves at once.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.d.rw)
                op = rng.choice(["start", "suspend", "resume", "info", "list", "reset"])
                # A sim domain's config is the default one: starting it
                # would run a full PC; only real domains get a start.
                n = rng.choice(self.real + (self.sim_names if op != "start" else []))
                s.sendall(msgpack.packb([0, 1, op, [{"name": n}]]))
                s.close()
                self.stats.add("faults", "client gone after a call")
            else:
                # A client that leaves in the middle of a frame.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.d.ro if rng.random() < 0.5 else self.d.rw)
                frame = msgpack.packb([0, 7, "info", [{"name": "x" * rng.randint(1, 5000)}]])
                s.sendall(frame[:rng.randint(1, len(frame) - 1)])
                s.close()
                self.stats.add("faults", "client gone mid-frame")

    def sampler(self):
        pid = self.d.proc.pid
        t0 = time.monotonic()
        while True:
            s = sample(pid)
            if s is None or self.d.proc.poll() is not None:
                self.stats.problem("corrald died during the soak (exit %r)" %
                                   self.d.proc.poll())
                return
            self.samples.append((time.monotonic() - t0, s[0], s[1]))
            if self.stop.wait(self.args.sample_s):
                return

    # ---- the run -----------------------------------------------------------------

    def run(self):
        a = self.args
        self.setup()
        t0 = time.monotonic()
        self.spawn(self.sampler)
        for i in range(a.workers):
            self.spawn(self.lifecycle_real, i)
            self.spawn(self.lifecycle_sim, i)
        for i in range(4):
            self.spawn(self.queries, i % 2 == 1, i)
        for i in range(2):
            self.spawn(self.subscriber, i)
        for i in range(2):
            self.spawn(self.consoles, i)
        self.spawn(self.faults)
        end = t0 + a.minutes * 60
        last = 0
        while time.monotonic() < end and self.d.proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last > 60:
                last = time.monotonic()
                s = self.samples[-1] if self.samples else (0, 0, 0)
                sys.stderr.write("soak: %4.0fs calls %d answered %d events %d rss %.1f MiB "
                                 "fds %d\n" % (time.monotonic() - t0, self.stats.calls,
                                               self.stats.answered, self.stats.events,
                                               s[1] / 1048576.0, s[2]))
        self.stop.set()
        for t in self.threads:
            t.join(timeout=180)
            if t.is_alive():
                self.stats.problem("a load thread did not finish (a call never answered?)")
        return self.finish(time.monotonic() - t0)

    def finish(self, wall):
        st = self.stats
        with self.stopped_lock:
            for pid in self.stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
        if self.d.proc.poll() is not None:
            st.problem("corrald is not running at the end (exit %r)" % self.d.proc.poll())
        else:
            c = Conn(self.d.rw, st, "final")
            names = set(x["name"] for x in list_all(c))
            with self.defined_lock:
                want = set(self.defined)
            if want - names:
                st.problem("domains lost: %s" % sorted(want - names))
            for n in sorted(names):
                c.send("destroy", {"name": n, "timeout_ms": 60000})
            c.drain()
            deadline = time.monotonic() + 60
            while self.d.qemus() and time.monotonic() < deadline:
                time.sleep(0.2)
            left = self.d.qemus()
            if left:
                st.problem("QEMUs still running after every destroy: %s" %
                           self.describe(left, c))
            c.close()
            z = zombies_of(self.d.proc.pid)
            if z:
                st.problem("zombies of corrald: %s" % z)
            try:
                self.d.stop()
            except AssertionError as e:
                st.problem(str(e)[:500])
        for p in self.sims.values():
            p.terminate()
            p.wait()
        left = [pid for pid in self.d.qemus() if not is_zombie(pid)]
        if left:
            st.problem("QEMUs left after corrald stopped: %s" % left)
        if st.calls != st.answered:
            st.problem("%d calls sent, %d answered" % (st.calls, st.answered))
        if not self.args.no_flat:
            self.flat_check()
        self.report(wall)
        return not st.problems

    def describe(self, pids, c):
        """Which domain each leftover QEMU was for, and what corrald says of it."""
        out = []
        for pid in sorted(pids):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
                with open("/proc/%d/stat" % pid) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            name = "?"
            for i, a in enumerate(argv[:-1]):
                if a == b"-name":
                    name = argv[i + 1].decode(errors="replace").split(",")[0]
                    name = name.split("=", 1)[-1]
            err, r = c.call("info", {"name": name})
            out.append("pid %d (%s, state %s): corrald says %s" %
                       (pid, name, state, err or {k: r.get(k) for k in
                                                  ("state", "reason", "pid", "job")}))
        return "; ".join(out)

    def flat_check(self):
        s = self.samples
        w = [x for x in s if x[0] >= self.args.minutes * 60 / 4.0]
        if len(w) < 6:
            self.stats.problem("too few samples (%d) to judge RSS and fds" % len(w))
            return
        third = len(w) // 3
        first, last = w[:third], w[-third:]
        rss_a, rss_b = max(x[1] for x in first), max(x[1] for x in last)
        fd_a, fd_b = max(x[2] for x in first), max(x[2] for x in last)
        self.flat = (rss_a, rss_b, fd_a, fd_b)
        if rss_b > rss_a * 1.10 + 8 * 1048576:
            self.stats.problem("RSS grew: %.1f MiB after warm-up, %.1f MiB at the end" %
                               (rss_a / 1048576.0, rss_b / 1048576.0))
        if fd_b > fd_a * 1.10 + 16:
            self.stats.problem("fds grew: %d after warm-up, %d at the end" % (fd_a, fd_b))

    def report(self, wall):
        st = self.stats
        a = self.args
        print("soak: %.1f min, %d real + %d simulated domains%s, seed %d" %
              (wall / 60.0, a.real, len(self.sim_names), " + guest" if a.guest else "",
               a.seed))
        print("calls: %d sent, %d answered; events %d received, %d dropped (told)" %
              (st.calls, st.answered, st.events, st.dropped))
        print("faults: " + ", ".join("%s %d" % kv for kv in sorted(st.faults.items())))
        print("errors: " + ", ".join("%s %d" % kv for kv in sorted(st.errors.items())))
        if self.args.verbose:
            for k, m in sorted(st.messages.items()):
                print("  %s, e.g. %s" % (k, m[:160]))
        if self.samples:
            rss = [x[1] for x in self.samples]
            fds = [x[2] for x in self.samples]
            print("samples: %d; RSS min %.1f max %.1f MiB; fds min %d max %d" %
                  (len(self.samples), min(rss) / 1048576.0, max(rss) / 1048576.0,
                   min(fds), max(fds)))
        if getattr(self, "flat", None):
            print("after warm-up: RSS max %.1f MiB (first third) -> %.1f MiB (last third); "
                  "fds max %d -> %d" % (self.flat[0] / 1048576.0, self.flat[1] / 1048576.0,
                                        self.flat[2], self.flat[3]))
        if st.problems:
            print("FAIL: %d problem(s):" % len(st.problems))
            for p in st.problems:
                print("  " + p)
        else:
            print("ok: every call answered once, no corrupted reply, events in order, "
                  "no QEMU left, no zombie, corrald exited 0, " +
                  ("RSS and fds not judged (--no-flat)" if a.no_flat else "RSS and fds flat"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corrald", default=os.path.join(ROOT, "build/daemon/corrald"))
    ap.add_argument("--sim", default=os.path.join(ROOT, "build/sim/corral-qmp-sim"))
    ap.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--real", type=int, default=6)
    ap.add_argument("--sims", type=int, default=3)
    ap.add_argument("--per-sim", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--guest", help="tests/guest's guest.json: boot one guest too")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample-s", type=float, default=2.0)
    ap.add_argument("--no-flat", action="store_true",
                    help="skip the RSS and fd rule (a sanitizer build's RSS is not the daemon's)")
    ap.add_argument("--verbose", action="store_true",
                    help="print an example message of each kind of error")
    args = ap.parse_args()
    if not os.access(args.qemu, os.X_OK):
        print("soak: no QEMU at %s: skipped" % args.qemu)
        return 77
    s = Soak(args)
    try:
        ok = s.run()
    finally:
        if s.d:
            for p in s.sims.values():
                if p.poll() is None:
                    p.kill()
            s.d.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""scale-defined: corrald's own costs with many domains and no QEMU at all.

Usage: scale-defined.py [--corrald PATH] [--domains N] [--dir DIR] [--window W]
                        [--restarts K] [--compare PATH]

A private corrald whose state and runtime directories are under DIR
(default: a new directory in /dev/shm, so that the disk's fsyncs do not
hide the daemon's own costs; pass a directory on disk to see those).  It
defines N domains (machine none, no QEMU started: each is a domain actor,
its VM layer and its snapshots, with no monitor and no descriptor), W
definitions in flight on one connection, then measures:

- define throughput, and corrald's RSS and descriptors before and after
  (RSS per domain = the difference / N);
- `list` of every domain (following `more`), `info` of random domains
  (5,000 calls, one at a time), `stats` of every domain;
- restarts (K of them, default 1): SIGTERM, a new corrald on the same
  directories, the time to listen and the load's own time (corrald's log
  line), then the time until `list` shows all N and its RSS; with
  --compare PATH each restart starts the two corralds in turn;
- undefine of every domain, and the RSS after.

A program, not a test: it checks only that every call succeeded and that
every domain came back.  Prints a markdown table for BENCHMARKS.md.
"""
import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "daemon"))
from corraltest import Daemon, check, wait_until  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def pipelined(c, calls, window):
    """Each (method, params) of calls, window in flight; every answer checked."""
    pending = []
    for method, params in calls:
        pending.append(c.send(method, params))
        if len(pending) >= window:
            m = c.response(pending.pop(0))
            check(m[2] is None, "%s: %r" % (method, m[2]))
    for msgid in pending:
        m = c.response(msgid)
        check(m[2] is None, "%r" % (m[2],))


def list_all(c):
    r = c.call("list", {"paged": True})
    out = list(r["domains"])
    while r["more"]:
        r = c.call("list", {"names": r["more"]})
        check(r["domains"], "list made no progress")
        out.extend(r["domains"])
    return out


def stats_all(c):
    r = c.call("stats", {})
    n = len(r["domains"])
    while r["more"]:
        r = c.call("stats", {"names": r["more"]})
        check(r["domains"], "stats made no progress")
        n += len(r["domains"])
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrald", default=os.path.join(ROOT, "build/daemon/corrald"))
    ap.add_argument("--domains", type=int, default=100000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--restarts", type=int, default=1,
                    help="start corrald this many times on the defined domains")
    ap.add_argument("--compare", default=None, metavar="PATH",
                    help="another corrald, started in turn with --corrald at each restart")
    a = ap.parse_args()
    base = a.dir or "/dev/shm"
    tmp = tempfile.mkdtemp(prefix="scale-", dir=base)
    rows = []
    d = Daemon(a.corrald, tmpdir=tmp, extra=["--client-inflight-max", str(2 * a.window)])
    try:
        d.start()
        pid = d.proc.pid
        c = d.client()
        time.sleep(0.5)
        rss0, fd0 = status(pid, "VmRSS"), fds(pid)
        names = ["s%06d" % i for i in range(a.domains)]
        t0 = time.monotonic()
        pipelined(c, [("define", {"config": {"name": n, "machine": "none", "memory": 16}})
                      for n in names], a.window)
        t_def = time.monotonic() - t0
        rss1, fd1 = status(pid, "VmRSS"), fds(pid)
        rows.append(("define, %d in flight" % a.window, "%.0f /s" % (a.domains / t_def),
                     "%.1f s for %d" % (t_def, a.domains)))
        rows.append(("RSS per defined domain", "%.0f B" % ((rss1 - rss0) / a.domains),
                     "%.1f MiB -> %.1f MiB" % (rss0 / 2**20, rss1 / 2**20)))
        rows.append(("descriptors", "%d -> %d" % (fd0, fd1), "none per domain"))

        t0 = time.monotonic()
        got = list_all(c)
        t_list = time.monotonic() - t0
        check(len(got) == a.domains, "list: %d of %d" % (len(got), a.domains))
        rows.append(("`list` of every domain (paged)", "%.0f ms" % (t_list * 1e3),
                     "Python client, decoding included"))
        t0 = time.monotonic()
        n = stats_all(c)
        t_stats = time.monotonic() - t0
        check(n == a.domains, "stats: %d" % n)
        rows.append(("`stats` of every domain (paged)", "%.0f ms" % (t_stats * 1e3), ""))
        lat = []
        rng = random.Random(1)
        for _ in range(5000):
            nm = names[rng.randrange(a.domains)]
            t0 = time.perf_counter()
            c.call("info", {"name": nm})
            lat.append(time.perf_counter() - t0)
        rows.append(("`info`, one at a time", "p50 %.3f ms" % (pct(lat, 50) * 1e3),
                     "p99 %.3f ms, max %.3f ms" % (pct(lat, 99) * 1e3, max(lat) * 1e3)))
        c.close()

        # Restarts, alternating the corralds compared: start to listening, and
        # the load's own time from corrald's log line.
        bins = [a.corrald] + ([a.compare] if a.compare else [])
        starts = {b: [] for b in bins}
        for i in range(a.restarts):
            for b in bins:
                d.stop()
                d.corrald = b
                t0 = time.monotonic()
                d.start()
                t_listen = time.monotonic() - t0
                with open(d.logs[-1]) as f:
                    m = re.findall(r"loaded \d+ domain definitions .* in ([0-9.]+) s",
                                   f.read())
                starts[b].append((t_listen, float(m[-1]) if m else float("nan")))
        d.corrald = a.corrald
        if len(bins) > 1:
            d.stop()
            d.start()
        t0 = time.monotonic()
        c = d.client()
        wait_until(lambda: len(list_all(c)) == a.domains, "every domain after the restart",
                   timeout=600, step=0.05)
        t_back = time.monotonic() - t0
        pid = d.proc.pid
        rss2 = status(pid, "VmRSS")
        for b in bins:
            v = starts[b]
            who = "" if len(bins) == 1 else " (%s)" % b
            rows.append(("restart%s: start to listening" % who,
                         "%.2f-%.2f s" % (min(x[0] for x in v), max(x[0] for x in v)),
                         "the load (its log line) %.3f-%.3f s, %d starts" %
                         (min(x[1] for x in v), max(x[1] for x in v), len(v))))
        rows.append(("restart: every domain listed", "%.2f s after listening" % t_back,
                     "RSS %.1f MiB" % (rss2 / 2**20)))

        t0 = time.monotonic()
        pipelined(c, [("undefine", {"name": n}) for n in names], a.window)
        t_undef = time.monotonic() - t0
        check(list_all(c) == [], "domains left")
        time.sleep(1)
        rss3 = status(pid, "VmRSS")
        rows.append(("undefine, %d in flight" % a.window, "%.0f /s" % (a.domains / t_undef),
                     "RSS after %.1f MiB" % (rss3 / 2**20)))
        c.close()
        d.stop()
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print("\n%d defined domains (state dir in %s; load average %s at the end)\n"
          % (a.domains, base, load))
    print("| measure | figure | notes |\n|---|---|---|")
    for r in rows:
        print("| %s | %s | %s |" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())

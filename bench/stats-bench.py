#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""stats-bench: the bulk `stats` call over N real QEMUs, with one SIGSTOPped.

Usage: stats-bench.py [--corrald PATH] [--domains N] [--calls K] [--qemu PATH]

A private corrald (default flags: statistics every 5 s); N domains
(machine none, TCG, 16 MiB), all started.  Once every domain has figures,
K calls of `stats` (all domains, one call at a time on one connection),
then one QEMU is SIGSTOPped, its monitor marked unresponsive, and K calls
again.  Latency is the client's round trip (Python), an upper bound on the
time corrald spends.  Prints a markdown table for BENCHMARKS.md.
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "daemon"))
from corraltest import Daemon, wait_until  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def measure(c, calls):
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = c.call("stats", {})
        lat.append(time.perf_counter() - t0)
    return lat, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrald", default=os.path.join(ROOT, "build/daemon/corrald"))
    ap.add_argument("--domains", type=int, default=50)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    a = ap.parse_args()
    d = Daemon(a.corrald).start()
    pid = None
    try:
        c = d.client()
        names = ["b%d" % i for i in range(a.domains)]
        for n in names:
            c.call("define", {"config": {"name": n, "machine": "none", "accel": "tcg",
                                         "memory": 16, "emulator": a.qemu}})
        for n in names:
            c.call("start", {"name": n, "timeout_ms": 120000})

        def all_fresh():
            r = c.call("stats", {})
            return all(e["age_s"] is not None and not e["stale"] for e in r["domains"])
        wait_until(all_fresh, "figures for every domain", timeout=120)
        rows = []
        lat, r = measure(c, a.calls)
        rows.append(("all healthy", lat, r))
        pid = c.call("info", {"name": names[0]})["pid"]
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: c.call("info", {"name": names[0]})["monitor"]["state"] ==
                   "unresponsive", "the stopped QEMU's monitor", timeout=60)
        lat, r = measure(c, a.calls)
        rows.append(("one QEMU SIGSTOPped", lat, r))
        print("| domains | phase | calls | p50 ms | p99 ms | max ms | stale in answer |")
        print("|---|---|---|---|---|---|---|")
        for phase, lat, r in rows:
            print("| %d | %s | %d | %.3f | %.3f | %.3f | %d |" % (
                a.domains, phase, len(lat), pct(lat, 50) * 1e3, pct(lat, 99) * 1e3,
                max(lat) * 1e3, sum(1 for e in r["domains"] if e["stale"])))
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        d.stop()


if __name__ == "__main__":
    main()

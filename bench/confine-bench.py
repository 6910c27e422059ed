#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""confine-bench: does corrald keep answering while its guests eat the host?

Usage: confine-bench.py [--corrald PATH] [--guests N] [--seconds S] [--guest-dir DIR]

As root.  Builds the tiny test guest (tests/guest), starts a private
corrald, and a probe domain (machine none).  Then, for each of three
phases, measures from one client connection, closed loop:
  - `info` of the probe: calls/s and latency percentiles, for S seconds;
  - `suspend` + `resume` of the probe: pairs/s and latency, for S seconds.
Phases:
  idle        nothing else runs;
  confined    N guests (TCG, 96 MiB) all booting at once, in their cgroups
              (the default: one parent group for all QEMUs);
  confined, probe cpu_weight 5000
              the same, the probe's definition giving it a larger CPU share
              (limits.cpu_weight): suspend and resume need the probe's own
              QEMU to run, and by default it is one guest among N + 1;
  unconfined  the same with control groups off (--cgroup-parent none), as
              every QEMU was a peer of corrald before.
Prints a markdown table for BENCHMARKS.md.  The guests are destroyed after
each phase.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "daemon"))
from corraltest import Daemon  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def measure(c, seconds):
    """info for seconds, then suspend+resume pairs for seconds."""
    out = {}
    lat = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        c.call("info", {"name": "probe"})
        lat.append(time.perf_counter() - t0)
    out["info"] = (len(lat) / seconds, lat)
    lat = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.perf_counter()
        c.call("suspend", {"name": "probe"})
        c.call("resume", {"name": "probe"})
        lat.append(time.perf_counter() - t0)
    out["suspend+resume"] = (len(lat) / seconds, lat)
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def phase(args, guest, n_guests, confined, probe_weight):
    extra = [] if confined else ["--cgroup-parent", "none"]
    d = Daemon(args.corrald, extra=extra).start()
    try:
        c = d.client()
        c.call("define", {"config": {"name": "probe", "machine": "none", "accel": "tcg",
                                     "memory": 16,
                                     "limits": {"cpu_weight": probe_weight}}})
        c.call("start", {"name": "probe"})
        names = []
        for i in range(n_guests):
            n = "g%02d" % i
            names.append(n)
            c.call("define", {"config": {"name": n, "machine": "pc", "accel": "tcg",
                                         "memory": 96, "kernel": guest["kernel"],
                                         "initrd": guest["initrd"],
                                         "cmdline": guest["cmdline"]}})
        # All at once, pipelined: their boots overlap.
        ids = [c.send("start", {"name": n, "timeout_ms": 120000}) for n in names]
        for i in ids:
            m = c.response(i)
            if m[2] is not None:
                raise SystemExit("start failed: %r" % (m[2],))
        if n_guests:
            time.sleep(2)
        load0 = loadavg()
        res = measure(c, args.seconds)
        load1 = loadavg()
        for n in names:
            c.call("destroy", {"name": n})
        c.call("destroy", {"name": "probe"})
        d.stop()
        return res, (load0, load1)
    finally:
        d.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrald", default=os.path.join(ROOT, "build/daemon/corrald"))
    ap.add_argument("--guests", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--guest-dir", default=os.path.join(ROOT, "build/guest"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("confine-bench: run as root")
    subprocess.check_call([os.path.join(ROOT, "tests/guest/build-guest.sh"), args.guest_dir])
    with open(os.path.join(args.guest_dir, "guest.json")) as f:
        guest = json.load(f)
    rows = []
    for name, n, confined, w in (("idle", 0, True, 100), ("confined", args.guests, True, 100),
                                 ("confined, probe cpu_weight 5000", args.guests, True, 5000),
                                 ("unconfined", args.guests, False, 100)):
        res, load = phase(args, guest, n, confined, w)
        for op, (rate, lat) in res.items():
            rows.append((name, op, rate, lat, load))
        sys.stderr.write("confine-bench: %s done (load %s -> %s)\n" % (name, load[0],
                                                                       load[1]))
    print("| phase | operation | per s | p50 ms | p90 ms | p99 ms | max ms | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for name, op, rate, lat, load in rows:
        print("| %s | %s | %.0f | %.3f | %.3f | %.3f | %.3f | %s -> %s |"
              % (name, op, rate, pct(lat, 50) * 1e3, pct(lat, 90) * 1e3, pct(lat, 99) * 1e3,
                 max(lat) * 1e3, load[0], load[1]))


if __name__ == "__main__":
    main()

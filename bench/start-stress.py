#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""start-stress: start and destroy `machine none` VMs, many times, several in
flight, and count every start that hangs.

Usage: start-stress.py [--corrald PATH] [--starts N] [--in-flight K]
                       [--hang-ms MS]

A private corrald; K domains (QEMU -machine none, TCG); each one is started
and destroyed over and over, all K at once (pipelined on one connection),
until N starts are done.  A start that does not answer within --hang-ms
(default 20000) is a hang.  Prints starts/s, the start latency percentiles,
failures by error and hangs, as a markdown table row.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "tests", "daemon"))
from corraltest import Daemon  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrald", default=os.path.join(ROOT, "build/daemon/corrald"))
    ap.add_argument("--starts", type=int, default=10000)
    ap.add_argument("--in-flight", type=int, default=6)
    ap.add_argument("--hang-ms", type=int, default=20000)
    ap.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    args = ap.parse_args()
    d = Daemon(args.corrald).start()
    lat, errors, hangs = [], {}, 0
    try:
        c = d.client()
        names = ["s%d" % i for i in range(args.in_flight)]
        for n in names:
            c.call("define", {"config": {"name": n, "machine": "none", "accel": "tcg",
                                         "memory": 16, "emulator": args.qemu}})
        t0 = time.monotonic()
        started = 0
        # One step per domain in flight: start, then destroy, then start again.
        pending = {}
        for n in names:
            pending[c.send("start", {"name": n, "timeout_ms": args.hang_ms})] = \
                (n, "start", time.monotonic())
            started += 1
        while pending:
            m = c.recv()
            if m[0] != 1 or m[1] not in pending:
                continue
            n, what, ts = pending.pop(m[1])
            if what == "start":
                lat.append(time.monotonic() - ts)
                if m[2] is not None:
                    if m[2][0] == 7:
                        hangs += 1
                    key = "%d %s" % (m[2][0], m[2][1][:60])
                    errors[key] = errors.get(key, 0) + 1
                pending[c.send("destroy", {"name": n})] = (n, "destroy", time.monotonic())
            else:
                if m[2] is not None and m[2][0] != 8:       # 8: nothing ran
                    key = "destroy %d %s" % (m[2][0], m[2][1][:60])
                    errors[key] = errors.get(key, 0) + 1
                if started < args.starts:
                    pending[c.send("start", {"name": n, "timeout_ms": args.hang_ms})] = \
                        (n, "start", time.monotonic())
                    started += 1
                    if started % 1000 == 0:
                        sys.stderr.write("start-stress: %d starts, %d hangs\n" % (started,
                                                                                 hangs))
        wall = time.monotonic() - t0
        leftovers = d.qemus()
        d.stop()
    finally:
        d.cleanup()
    print("| starts | in flight | starts/s | p50 ms | p99 ms | max ms | hangs | errors | QEMUs left |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %.1f | %.1f | %.1f | %.1f | %d | %s | %d |"
          % (len(lat), args.in_flight, len(lat) / wall, pct(lat, 50) * 1e3, pct(lat, 99) * 1e3,
             max(lat) * 1e3, hangs, "; ".join("%s: %d" % kv for kv in errors.items()) or "none",
             len(leftovers)))
    return 1 if hangs or errors else 0


if __name__ == "__main__":
    sys.exit(main())

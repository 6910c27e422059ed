#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hung-10 beside its fault-free run, several times: is the fault's effect
on healthy domains larger than the machine's own run-to-run noise?

One hung-10 run compares healthy latency before and after the fault, but
on a small machine a single run's p99 moves by tens of per cent with no
fault at all.  This runs ROUNDS pairs, alternating
`corral-bench hung-10 --hang 0` (the same load, split at the same time,
nothing hung) and `corral-bench hung-10` (10 % hung), and prints each
run's p99 before and after, then the medians over the rounds of the p99
after the strike: healthy domains with the fault against all domains
without it.  Exit status 0 when every run passed its own checks, else 1.

    bench/hung10-control.py [--bench build/bench/corral-bench] [--domains 1000]
                            [--duration 10] [--rounds 5] [--op info] [--out DIR]
                            [-- EXTRA corral-bench ARGS]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys


def p99(d, op, phase):
    """The p99 in ms of op's healthy series (all domains' without a fault), or None."""
    for s in d.get("series", []):
        if (s["op"] == op and s["stage"] == "load" and s["phase"] == phase and
                s["domains"] in ("healthy", "all") and s["count"]):
            return s["p99_us"] / 1000.0
    return None


def run(args, hang, k):
    cmd = [args.bench, "hung-10", "--domains", str(args.domains), "--duration",
           str(args.duration), "--json", "--quiet"] + args.extra
    if hang is not None:
        cmd += ["--hang", hang]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        d = json.loads(p.stdout)
    except ValueError:
        sys.stderr.write("%s: no JSON (exit %d)\n%s" % (" ".join(cmd), p.returncode, p.stderr))
        return None
    if args.out:
        name = "hung-10-%s-%d.json" % ("control" if hang == "0" else "fault", k)
        with open(os.path.join(args.out, name), "w") as f:
            f.write(p.stdout)
    return d


def fmt(v):
    return "-" if v is None else "%.2f" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join("build", "bench", "corral-bench"))
    ap.add_argument("--domains", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--op", default="info", help="the operation compared (default info)")
    ap.add_argument("--out", help="keep each run's JSON in this directory")
    ap.add_argument("extra", nargs="*", help="after --: more corral-bench arguments")
    args = ap.parse_args()
    if args.rounds < 1 or args.domains < 1 or args.duration <= 0:
        ap.error("--rounds, --domains and --duration must be positive")
    if args.out:
        os.makedirs(args.out, exist_ok=True)

    after = {"control": [], "fault": []}
    ok = True
    print("| round | run | %s p99 before (ms) | after (ms) | after / before | checks |" % args.op)
    print("|---|---|---|---|---|---|")
    for k in range(1, args.rounds + 1):
        for kind, hang in (("control", "0"), ("fault", None)):
            d = run(args, hang, k)
            if d is None:
                ok = False
                print("| %d | %s | - | - | - | no result |" % (k, kind))
                continue
            b, a = p99(d, args.op, "before"), p99(d, args.op, "after")
            ok = ok and d.get("ok") is True
            if a is not None:
                after[kind].append(a)
            ratio = "%+.0f %%" % ((a / b - 1) * 100) if a and b else "-"
            print("| %d | %s | %s | %s | %s | %s |" % (k, kind, fmt(b), fmt(a), ratio,
                                                      "PASS" if d.get("ok") else "FAIL"))
            sys.stdout.flush()
    mc = statistics.median(after["control"]) if after["control"] else None
    mf = statistics.median(after["fault"]) if after["fault"] else None
    print()
    print("median %s p99 after the strike over %d rounds: %s ms without the fault, "
          "%s ms on healthy domains with it" % (args.op, args.rounds, fmt(mc), fmt(mf)),
          end="")
    if mc and mf:
        print(" (%+.0f %%)" % ((mf / mc - 1) * 100))
    else:
        print()
    if after["control"]:
        print("without the fault, p99 after the strike ranged %s-%s ms: the machine's own "
              "noise" % (fmt(min(after["control"])), fmt(max(after["control"]))))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

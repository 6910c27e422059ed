#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every corral-bench scenario at several sizes, one after the other, as one table.

Each run is `corral-bench SCENARIO --domains N --duration S --json` (a private
corrald and its simulators each time); its JSON is kept in --out, and the
Markdown table that BENCHMARKS.md shows is printed at the end.  Latencies are
the healthy domains' before any fault; hung-10 adds the healthy p99 after the
fault and its ratio to before.  A run that fails its checks is marked FAIL,
and the table is printed all the same.

    bench/matrix.py [--bench build/bench/corral-bench] [--sizes 100,1000,10000]
                    [--scenarios boot-storm,...] [--duration 10] [--out DIR]
                    [-- EXTRA corral-bench ARGS]
    bench/matrix.py --from DIR      (the table of runs kept in DIR, again)
"""

import argparse
import json
import os
import subprocess
import sys
import time

SCENARIOS = ["boot-storm", "steady-query", "mixed", "hung-10", "restart", "churn"]


def series(d, op, phase="before"):
    """The healthy domains' series (all domains' in a run without faults)."""
    for s in d.get("series", []):
        if (s["op"] == op and s["stage"] == "load" and s["count"] and
                (s["phase"], s["domains"]) in ((phase, "healthy"), (phase, "all"),
                                               ("-", "all"))):
            return s
    return None


def lat(d, op, phase="before"):
    s = series(d, op, phase)
    if not s:
        return "-"
    return "%s / %s" % (ms(s["p50_us"]), ms(s["p99_us"]))


def ms(us):
    v = us / 1e3
    return "%.2f" % v if v < 10 else "%.0f" % v


def notes(d):
    out = []
    st = d.get("setup", {})
    if d["scenario"] == "boot-storm":
        out.append("%d attached in %.2f s, every monitor up %.2f s later"
                   % (d["domains"], st.get("attach_s", 0), st.get("all_up_s", 0)))
    elif st.get("attach_s") is not None:
        out.append("attach %.1f s" % st["attach_s"])
    rs = d.get("restart")
    if rs:
        reaped = ("old corrald reaped %.2f s, " % rs["reaped_s"]) if "reaped_s" in rs else ""
        out.append("kill -9 to %slistening %.2f s, every domain listed %.2f s, every monitor "
                   "up %.2f s" % (reaped, rs["listening_s"], rs["listed_s"], rs["all_up_s"]))
    ev = d.get("events")
    if ev:
        out.append("%d events, %d out of order, %d missing" %
                   (ev["received"], ev["out_of_order"], ev["missing"]))
    if d["scenario"] == "hung-10":
        for op in ("info", "qmp"):
            b, a = series(d, op), series(d, op, "after")
            if b and a:
                out.append("healthy %s p99 after the fault %s ms (%+.0f %%)"
                           % (op, ms(a["p99_us"]), 100 * (a["p99_us"] / b["p99_us"] - 1)))
    ch = d.get("churn")
    if ch:
        out.append("churn: fds %s -> %s, RSS %.1f -> %.1f MiB" % (
            ch.get("fds_before"), ch.get("fds_after"),
            ch.get("rss_before", 0) / 2**20, ch.get("rss_after", 0) / 2**20))
    errs = {}
    for s in d.get("series", []):
        for k, v in s.get("errors", {}).items():
            if s["domains"] == "healthy" and s["phase"] != "setup":
                errs[k] = errs.get(k, 0) + v
    if errs:
        out.append("healthy errors: " + ", ".join("%s %d" % kv for kv in sorted(errs.items())))
    return "; ".join(out)


def row(d):
    dm, mc = d.get("daemon", {}), d.get("machine", {})
    ops = "-" if d["scenario"] == "boot-storm" else "%.0f" % d.get("ops_per_s", 0)
    return "| %s | %d | %.2f | %s | %s | %s | %s | %.0f %% | %.1f | %.1f KiB | %s | %s |" % (
        d["scenario"], d["domains"], mc.get("loadavg_start", 0), ops, lat(d, "info"),
        lat(d, "qmp"), lat(d, "suspend"), dm.get("cpu_pct", 0), dm.get("cpu_us_per_op", 0),
        dm.get("rss_per_domain_bytes", 0) / 1024, notes(d), "PASS" if d.get("ok") else "FAIL")


HEADER = ("| scenario | domains | load avg | ops/s | info p50 / p99 ms | qmp p50 / p99 ms | "
          "suspend p50 / p99 ms | daemon CPU | µs / op | RSS / domain | notes | checks |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "bench",
                                                    "corral-bench"))
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--out", default="matrix-%s" % time.strftime("%Y%m%d-%H%M%S"))
    ap.add_argument("--from", dest="src", metavar="DIR",
                    help="run nothing: print the table of the runs kept in DIR")
    a = ap.parse_args(argv)
    if a.src:
        print(HEADER)
        for sc in a.scenarios.split(","):
            for n in (int(x) for x in a.sizes.split(",")):
                path = os.path.join(a.src, "%s-%d.json" % (sc, n))
                if os.path.exists(path):
                    with open(path) as f:
                        print(row(json.load(f)))
        return
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for sc in a.scenarios.split(","):
        for n in (int(x) for x in a.sizes.split(",")):
            cmd = [a.bench, sc, "--domains", str(n), "--duration", "%g" % a.duration,
                   "--json"] + extra
            print("# " + " ".join(cmd), file=sys.stderr, flush=True)
            load = os.getloadavg()[0]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            path = os.path.join(a.out, "%s-%d.json" % (sc, n))
            with open(path, "w") as f:
                f.write(p.stdout)
            try:
                d = json.loads(p.stdout)
            except ValueError:
                rows.append("| %s | %d | corral-bench exited %d without JSON |"
                            % (sc, n, p.returncode))
                continue
            d.setdefault("machine", {}).setdefault("loadavg_start", load)
            rows.append(row(d))
            print(rows[-1], file=sys.stderr, flush=True)
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""corral-bench checks itself: run every scenario short and small and read
its JSON.  Nothing here looks at a timing; what is checked is that the
harness did what it says (every request answered and counted, the faults
struck where it says, events in order and none missing, descriptors back
after churn, the restarted daemon back in full) and that bad usage is
refused clearly."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from corraltest import Daemon, check  # noqa: E402

BENCH = sys.argv[1]
CORRALD = os.environ["CORRALD"]
SIM = os.environ["CORRAL_QMP_SIM"]
QEMU = os.environ.get("CORRAL_QEMU", "")


def bench(*args, expect=0):
    cmd = [BENCH] + list(args) + ["--corrald", CORRALD, "--sim", SIM, "--quiet"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    check(p.returncode == expect, "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(cmd), p.returncode, expect, p.stdout, p.stderr))
    return p


def run(scenario, *args):
    p = bench(scenario, "--json", *args)
    r = json.loads(p.stdout)
    check(r["scenario"] == scenario, "scenario %r" % r["scenario"])
    check(r["ok"] is True and r["unanswered"] == 0, "%s: checks failed: %s" % (scenario, p.stdout))
    return r


def series(r, op, stage="load", phase=None, domains=None):
    return [s for s in r["series"] if s["op"] == op and s["stage"] == stage and
            (phase is None or s["phase"] == phase) and (domains is None or s["domains"] == domains)]


def count(r, op, **kw):
    return sum(s["count"] for s in series(r, op, **kw))


def errors(r, op, **kw):
    return sum(sum(s["errors"].values()) for s in series(r, op, **kw))


def quantiles_ordered(r):
    for s in r["series"]:
        qs = [s["p50_us"], s["p90_us"], s["p99_us"], s["p999_us"], s["max_us"]]
        check(qs == sorted(qs), "quantiles out of order: %r" % s)


# Usage: clear errors, exit 2, nothing started.
p = bench("no-such-scenario", expect=2)
check("unknown scenario" in p.stderr, p.stderr)
p = bench("mixed", "--domains", "zero", expect=2)
check("--domains" in p.stderr, p.stderr)
p = bench("mixed", "--hang", "0.6", "--kill", "0.6", expect=2)
check("add up to more" in p.stderr, p.stderr)
p = bench("restart", "--socket", "/nonexistent", expect=2)
check("private" in p.stderr, p.stderr)
p = bench("mixed", "--target", "xen", expect=2)
check("unknown target" in p.stderr, p.stderr)
p = bench("--help")
for opt in ("--domains", "--duration", "--connections", "--in-flight", "--rate", "--real",
            "--socket", "--json", "--plot", "--target"):
    check(opt in p.stdout, "--help lacks %s" % opt)
for line in p.stdout.splitlines():
    check(len(line) <= 80, "--help line over 80 columns: %r" % line)

# boot-storm: every attach answered, every monitor up.
r = run("boot-storm", "--domains", "40")
check(count(r, "attach", stage="setup") == 40, "40 attaches: %r" % r["series"])
check(errors(r, "attach", stage="setup") == 0, "attach errors")
check(r["setup"]["all_up_s"] >= 0, "not all up")
check(r["daemon"]["pid"] > 0 and r["daemon"]["rss_end_bytes"] > 0, "no daemon sample")

# steady-query, closed loop: the four query operations, no errors, and the
# total is the sum of the parts.
r = run("steady-query", "--domains", "30", "--duration", "1.5")
for op in ("info", "qmp", "list", "stats"):
    check(count(r, op) > 0, "no %s" % op)
    check(errors(r, op) == 0, "%s errors" % op)
# A daemon answering queries switches context: counted over all its threads.
check(r["daemon"]["ctxsw_per_s"] > 0, "no context switches: %r" % r["daemon"])
check(r["ops_total"] == sum(s["count"] for s in r["series"] if s["stage"] == "load"),
      "ops_total is not the sum of the series")
quantiles_ordered(r)

# Open loop: the offered rate is what was sent (within the schedule's
# granularity: one interval per connection at the end).
r = run("steady-query", "--domains", "20", "--duration", "2", "--rate", "400",
        "--connections", "2")
check(abs(r["ops_total"] - 800) <= 10, "open loop sent %d, expected 800" % r["ops_total"])

# mixed: suspend/resume, every STOP/RESUME event seen, RTC_CHANGE in order;
# the plot is written.
with tempfile.TemporaryDirectory() as tmp:
    svg = os.path.join(tmp, "p.svg")
    extra = ["--real", "2"] if QEMU else []
    r = run("mixed", "--domains", "30", "--duration", "2", "--plot", svg, *extra)
    with open(svg) as f:
        text = f.read()
    check(text.startswith("<svg") and "polyline" in text and "suspend" in text,
          "plot: %s" % text[:200])
ev = r["events"]
check(ev["out_of_order"] == 0 and ev["missing"] == 0, "events: %r" % ev)
check(ev["stop_resume"] > 0 and ev["rtc_change"] > 0, "no events: %r" % ev)
check(count(r, "suspend") > 0 and count(r, "resume") > 0, "no suspend/resume")
check(errors(r, "suspend") + errors(r, "resume") == 0, "suspend/resume errors: %r" % [
    s for s in r["series"] if s["op"] in ("suspend", "resume") and s["errors"]])
if QEMU:
    check(count(r, "start", stage="setup") == 2, "2 real QEMUs started")
    # Real QEMUs only: no simulator, no events to number.
    r = run("mixed", "--domains", "0", "--real", "1", "--duration", "1")
    check(count(r, "suspend") > 0 and "events" not in r, "mixed with real QEMUs only: %r" % r)

# hung-10: the tenth that hangs answers nothing after the fault (its qmp calls
# time out), the healthy ones keep answering; both phases measured.
r = run("hung-10", "--domains", "40", "--duration", "3", "--rate", "300",
        "--timeout-ms", "1000")
check(r["faults"]["hung"] == 4, "4 of 40 hung: %r" % r["faults"])
check(count(r, "info", phase="before", domains="healthy") > 0, "no healthy before")
check(count(r, "info", phase="after", domains="healthy") > 0, "no healthy after")
check(errors(r, "qmp", phase="after", domains="healthy") == 0, "healthy qmp failed after")
check(errors(r, "info") == 0, "info never waits for a domain")
hung_after = series(r, "qmp", phase="after", domains="faulted")
check(hung_after and all(s["errors"] for s in hung_after), "hung qmp answered: %r" % hung_after)
check(r["events"]["out_of_order"] == 0, "events out of order")

# hung-10 --hang 0: the run to compare with, split at the same time and
# nothing failing after it.
r = run("hung-10", "--hang", "0", "--domains", "40", "--duration", "3", "--rate", "300",
        "--timeout-ms", "1000")
check(r["faults"]["hung"] == 0 and r["faults"]["at_s"] == 1.5, "no fault: %r" % r["faults"])
check(count(r, "info", phase="before", domains="all") > 0, "no before: %r" % r["series"])
check(count(r, "info", phase="after", domains="all") > 0, "no after: %r" % r["series"])
check(all(not s["errors"] for s in r["series"]), "errors without a fault: %r" % r["series"])

# bench/hung10-control.py: pairs of both, the medians, each run's JSON kept.
with tempfile.TemporaryDirectory() as tmp:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                          "hung10-control.py")
    p = subprocess.run([sys.executable, script, "--bench", BENCH, "--domains", "20",
                        "--duration", "1", "--rounds", "1", "--out", tmp, "--",
                        "--rate", "300", "--corrald", CORRALD, "--sim", SIM],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    check(p.returncode == 0, "hung10-control: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr))
    check("| 1 | control |" in p.stdout and "| 1 | fault |" in p.stdout and
          "without the fault" in p.stdout, p.stdout)
    faulted = json.load(open(os.path.join(tmp, "hung-10-fault-1.json")))
    control = json.load(open(os.path.join(tmp, "hung-10-control-1.json")))
    check(faulted["faults"]["hung"] == 2 and control["faults"]["hung"] == 0,
          "%r %r" % (faulted["faults"], control["faults"]))

# Killed simulated QEMUs: their domains stop answering jobs, the rest go on.
r = run("steady-query", "--domains", "40", "--duration", "2", "--kill", "0.25")
check(r["faults"]["killed"] == 10, "10 killed")
check(count(r, "info", phase="after", domains="healthy") > 0, "no healthy after kill")
check(errors(r, "qmp", phase="after", domains="healthy") == 0, "healthy failed after kill")

# churn needs real QEMU: descriptors come back where they started.
if QEMU:
    r = run("churn", "--domains", "10", "--duration", "3", "--connections", "2",
            "--in-flight", "2")
    c = r["churn"]
    check(c["fds_back"] and c["fds_after"] <= c["fds_before"], "churn fds: %r" % c)
    for op in ("define", "start", "destroy", "undefine"):
        check(count(r, op) > 0, "churn: no %s" % op)
    # Each lane ends on an undefine: as many as defines.
    check(count(r, "define") == count(r, "undefine"), "churn: defines != undefines")

# restart: killed under load, back in full.
r = run("restart", "--domains", "30", "--duration", "3")
check(r["restart"]["back"] and
      0 < r["restart"]["reaped_s"] <= r["restart"]["listening_s"] <= r["restart"]["all_up_s"],
      "restart: %r" % r["restart"])
check(count(r, "info", phase="after") > 0, "no queries after the restart")

# An existing daemon (--socket): the run's domains are gone afterwards.
d = Daemon(CORRALD).start()
try:
    r = run("steady-query", "--socket", d.rw, "--domains", "10", "--duration", "1")
    check(r["private_daemon"] is False and r["daemon"]["pid"] == d.proc.pid, "pid")
    c = d.client()
    left = c.call("list")
    check(left == [], "domains left behind: %r" % left)
finally:
    d.stop()
    d.cleanup()

# libvirt, when built with it: its test driver (in this process, no daemon,
# no QEMU) through the same loops and tables.
if "libvirt:URI" in bench("--help").stdout:
    lv = "libvirt:test:///default"
    r = run("steady-query", "--target", lv, "--domains", "10", "--duration", "1",
            "--connections", "2", "--in-flight", "2")
    check(count(r, "define", stage="setup") == 10 and count(r, "start", stage="setup") == 10,
          "libvirt setup: %r" % r["series"])
    for op in ("info", "list", "stats"):
        check(count(r, op) > 0 and errors(r, op) == 0, "libvirt %s" % op)
    r = run("mixed", "--target", lv, "--domains", "10", "--duration", "1",
            "--connections", "2", "--in-flight", "2")
    check(count(r, "suspend") > 0 and errors(r, "suspend") + errors(r, "resume") == 0,
          "libvirt suspend/resume")
    r = run("churn", "--target", lv, "--domains", "4", "--duration", "1",
            "--connections", "2", "--in-flight", "2")
    check(count(r, "define") == count(r, "undefine") and count(r, "start") > 0, "libvirt churn")
    p = bench("hung-10", "--target", lv, expect=2)
    check("corral only" in p.stderr, p.stderr)
print("ok")

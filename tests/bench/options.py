#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The developer benchmarks' options: each program's --help names every
option it takes, one line each from its option table, and exits 0; bad
usage exits 2 with the usage on stderr; --only takes only the program's
section names, as often as wanted.  Nothing here runs a benchmark: every
command below ends with --help or is refused before any work starts.

    options.py CORE-BENCH QMP-BENCH RPC-BENCH CORRAL-BENCH
"""
import subprocess
import sys

core, qmp, rpc, corral = sys.argv[1:5]
failures = []

# Every option of each program, as its --help must show it.
OPTIONS = {
    core: ["quick", "no-pin", "only SECTION", "help"],
    qmp: ["quick", "only SECTION", "accel ACCEL", "sim PATH", "help"],
    rpc: ["corrald PATH", "sim PATH", "domains N,N...", "duration-ms MS", "scenarios LIST",
          "workers N", "io-threads N", "help"],
}
SECTIONS = {
    core: ["mailbox", "snapshot", "registry", "memory", "timers"],
    qmp: ["rtt", "start", "pairs", "attach"],
}


def run(prog, *args):
    return subprocess.run([prog] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def expect(prog, args, code, out=None):
    """prog args exits code; stdout (or stderr when the exit is not 0) holds out."""
    p = run(prog, *args)
    what = "%s %s" % (prog.rsplit("/", 1)[-1], " ".join(args))
    if p.returncode != code:
        failures.append("%s: exit %d, expected %d\nstderr: %s" % (what, p.returncode, code,
                                                                  p.stderr))
        return
    text = p.stdout if code == 0 else p.stderr
    if "usage:" not in text.lower():
        failures.append("%s: no usage on %s:\n%s" % (what, "stdout" if code == 0 else "stderr",
                                                    text))
    if out is not None and out not in text:
        failures.append("%s: '%s' not in:\n%s" % (what, out, text))


for prog, opts in OPTIONS.items():
    name = prog.rsplit("/", 1)[-1]
    for spelling in ("--help", "-h"):
        p = run(prog, spelling)
        if p.returncode != 0 or p.stderr:
            failures.append("%s %s: exit %d, stderr %r" % (name, spelling, p.returncode,
                                                           p.stderr))
            continue
        lines = p.stdout.splitlines()
        for o in opts:
            head = "  --" + o
            # bench_opts_help: the option, then its help from column 24 or the next line.
            if not any(ln.startswith(head + " ") or ln == head for ln in lines):
                failures.append("%s %s: no line for --%s:\n%s" % (name, spelling, o, p.stdout))
    expect(prog, ["--no-such-option"], 2)
    # Should a stray argument be let through, rpc-bench fails at once on these paths
    # instead of running its whole matrix.
    guard = ["--corrald", "/nonexistent/corrald", "--sim", "/nonexistent/sim"] if prog == rpc else []
    expect(prog, guard + ["stray-argument"], 2, "unexpected argument 'stray-argument'")

for prog, sections in SECTIONS.items():
    # Each section, repeated, and the --only=NAME spelling: accepted (then --help stops it).
    for s in sections:
        expect(prog, ["--only", s, "--only", s, "--help"], 0, "--only SECTION")
        expect(prog, ["--only=" + s, "--help"], 0)
    expect(prog, ["--only", sections[0], "--only", sections[-1], "--help"], 0)
    expect(prog, ["--only", "no-such-section"], 2, "no section 'no-such-section'")
    expect(prog, ["--only", sections[0].upper()], 2)
    expect(prog, ["--only"], 2)

# rpc-bench: a value-less option is bad usage too.
expect(rpc, ["--domains"], 2)
# corral-bench keeps its --help and its bad-usage status.
p = run(corral, "--help")
if p.returncode != 0 or "Usage: corral-bench SCENARIO" not in p.stdout:
    failures.append("corral-bench --help: exit %d\n%s" % (p.returncode, p.stdout))
p = run(corral, "--no-such-option")
if p.returncode != 2:
    failures.append("corral-bench --no-such-option: exit %d, expected 2" % p.returncode)
expect(corral, [], 2, "no scenario")
expect(corral, ["mixed", "steady-query"], 2, "unexpected argument 'steady-query'")
p = run(corral, "no-such-scenario")
if p.returncode != 2 or not p.stderr.startswith("corral-bench: unknown scenario"):
    failures.append("corral-bench no-such-scenario: exit %d, stderr %r" % (p.returncode, p.stderr))

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)

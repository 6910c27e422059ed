#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The event stream: one lifecycle event per transition, with its reason.

Usage: events.py CORRALD QEMU [TEST...]

A real QEMU (`-machine none`) through corrald, with a subscriber that
records every event:

  sequence        start, suspend, resume, reset, reboot, a stop and a cont
                  sent through `qmp`, a `quit` through `qmp`, start, destroy:
                  the exact lifecycle events, each reason in api.info's
                  table, every call's result {state, reason}, QEMU's own
                  events only as `qemu.NAME`, and no `monitor` event (a
                  normal exit is not a monitor failure)
  crashes         QEMU killed from outside (SIGKILL) and crashing (SIGSEGV):
                  crashed/killed and crashed/crashed, and no `monitor` event
  monitor_broken  a restarted corrald that cannot reach a running QEMU's
                  monitor shows it broken, says nothing more while its retries
                  fail, and sends `monitor` ok when one connects
  hmp_empty       `corral qmp` of an HMP command whose output is empty
                  prints "" (an empty str result), exit 0
  api_doc         docs/API.md's tables (states, reasons, monitor states, events,
                  config fields) equal api.info's, and a config built from the
                  documented examples is defined as it is; required, unknown
                  and out-of-range fields are refused as documented
  attach_unknown  attach without a config: the config holds what QEMU told
                  (machine, memory, accel), the rest is listed unknown, and
                  start and autostart refuse it (across a restart too) until a
                  config is defined

Exits 0 when every test passes, 1 otherwise.
"""
import json
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, wait_until, WAIT  # noqa: E402

CORRALD = QEMU = CLI = None
CORRAL_EVENTS = {"lifecycle", "monitor", "defined", "undefined", "autostart", "device-attached",
                 "device-detached", "progress"}


def vm_config(name):
    return {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}


class Events:
    """A subscriber on its own connection, recording (event, data) for one domain."""

    def __init__(self, d, name):
        self.c = d.client()
        self.c.call("events.subscribe", {"name": name})
        self.seen = []

    def pump(self, timeout):
        n = self.c.note(timeout)
        if n is None:
            return False
        if n[1] == "event":
            p = n[2][0]
            self.seen.append((p["event"], p["data"]))
        return True

    def until(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while not pred(self.seen):
            left = deadline - time.monotonic()
            check(left > 0, "timed out waiting for %s; events: %r" % (what, self.seen))
            self.pump(min(left, 1))

    def lifecycle(self):
        return [(d["state"], d["reason"]) for e, d in self.seen if e == "lifecycle"]

    def wait_lifecycle(self, n, what):
        self.until(lambda s: len([1 for e, _ in s if e == "lifecycle"]) >= n, what)

    def settle(self, quiet=0.5):
        """Take whatever else comes within `quiet` seconds (duplicates would)."""
        while self.pump(quiet):
            pass


def reason_table(c):
    return {r["name"]: r for r in c.call("api.info")["reasons"]}


def test_sequence():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        reasons = reason_table(c)
        c.call("define", {"config": vm_config("ev1")})
        ev = Events(d, "ev1")
        expect = []

        def step(method, params, want, result):
            r = c.call(method, dict({"name": "ev1"}, **params))
            for k, v in result.items():
                check(r.get(k) == v, "%s: result %r, expected %r" % (method, r, result))
            expect.extend(want)
            ev.wait_lifecycle(len(expect), "%s's events" % method)
            ev.settle()
            check(ev.lifecycle() == expect,
                  "after %s: lifecycle events\n  %r\nexpected\n  %r" % (method, ev.lifecycle(),
                                                                       expect))
            info = c.call("info", {"name": "ev1"})
            check((info["state"], info["reason"]) == expect[-1],
                  "info after %s: %s/%s" % (method, info["state"], info["reason"]))

        step("start", {}, [("starting", "user"), ("running", "booted")], {"state": "running"})
        step("suspend", {}, [("paused", "user")], {"state": "paused", "reason": "user"})
        step("resume", {}, [("running", "user")], {"state": "running", "reason": "user"})
        step("reset", {}, [("running", "reset")], {"state": "running", "reason": "reset"})
        step("reset", {}, [("running", "reset")], {"state": "running", "reason": "reset"})
        step("reboot", {}, [("running", "rebooted")], {"state": "running", "reason": "rebooted"})
        # Not corral's jobs: QEMU's word, with the reasons for outside changes.
        step("qmp", {"command": '{"execute": "stop"}'}, [("paused", "paused")], {})
        step("qmp", {"command": '{"execute": "cont"}'}, [("running", "unpaused")], {})
        # A suspend of a paused domain is refused and says nothing.
        c.call("suspend", {"name": "ev1"})
        expect.append(("paused", "user"))
        e = c.err("suspend", {"name": "ev1"}, 8)
        check("already paused" in e.message, e.message)
        step("reset", {}, [("paused", "reset")], {"state": "paused", "reason": "reset"})
        step("resume", {}, [("running", "user")], {"state": "running", "reason": "user"})
        # QEMU told to quit: it says SHUTDOWN (host), then exits 0.
        c.call("qmp", {"name": "ev1", "command": '{"execute": "quit"}'})
        expect.extend([("shutting-down", "quit"), ("shutoff", "quit")])
        ev.wait_lifecycle(len(expect), "the quit's events")
        ev.settle(1.5)      # past the monitor's first retry: no late 'broken'
        check(ev.lifecycle() == expect, "after quit: %r" % ev.lifecycle())
        step("start", {}, [("starting", "user"), ("running", "booted")], {"state": "running"})
        step("destroy", {}, [("shutoff", "destroyed")],
             {"state": "shutoff", "reason": "destroyed"})
        ev.settle(1.5)
        check(ev.lifecycle() == expect, "at the end: %r" % ev.lifecycle())

        names = [e for e, _ in ev.seen]
        check("monitor" not in names, "a monitor event on a normal exit: %r" % ev.seen)
        for n in names:
            check(n in CORRAL_EVENTS or n.startswith("qemu."),
                  "event %r is in neither family" % n)
        for want in ("qemu.STOP", "qemu.RESUME", "qemu.RESET", "qemu.SHUTDOWN"):
            check(want in names, "%s not passed through: %r" % (want, names))
        for e, data in ev.seen:
            if e.startswith("qemu."):
                check(isinstance(data.get("qemu_timestamp"), float), "%s: %r" % (e, data))
            if e in ("qemu.RESET", "qemu.SHUTDOWN"):
                # QEMU's own data passes through beside the time.
                check(isinstance(data.get("guest"), bool) and isinstance(data.get("reason"), str),
                      "%s: %r" % (e, data))
        for st, why in ev.lifecycle():
            check(why in reasons, "reason %r is not in api.info's table" % why)
            check(st in reasons[why]["states"],
                  "reason %r documented for %r, seen with %r" % (why, reasons[why]["states"],
                                                                st))
        ev.c.close()
        d.stop()
    finally:
        d.cleanup()


def test_crashes():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("ev2")})
        ev = Events(d, "ev2")
        for sig, reason in ((signal.SIGKILL, "killed"), (signal.SIGSEGV, "crashed")):
            pid = c.call("start", {"name": "ev2"})["pid"]
            os.kill(pid, sig)
            ev.until(lambda s: ("lifecycle", {"state": "crashed", "reason": reason}) in s,
                     "crashed/%s" % reason)
            ev.settle(1.5)
        check(ev.lifecycle() == [("starting", "user"), ("running", "booted"),
                                 ("crashed", "killed"),
                                 ("starting", "user"), ("running", "booted"),
                                 ("crashed", "crashed")], "lifecycle: %r" % ev.lifecycle())
        check(not [e for e, _ in ev.seen if e == "monitor"],
              "QEMU's end reported as a monitor failure: %r" % ev.seen)
        d.stop()
    finally:
        d.cleanup()


def test_hmp_empty():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("ev3")})
        c.call("start", {"name": "ev3"})
        cmd = '{"execute":"human-monitor-command","arguments":{"command-line":"%s"}}'
        # The RPC answer, as any msgpack client reads it.
        check(c.call("qmp", {"name": "ev3", "command": cmd % "info block"}) == "",
              "info block of -machine none is not empty")
        for args in ([], ["--format", "json"]):
            r = subprocess.run([CLI, "--socket", d.rw] + args +
                               ["qmp", "ev3", cmd % "info block"],
                               capture_output=True, text=True, timeout=WAIT)
            check(r.returncode == 0 and r.stdout == '""\n',
                  "corral qmp %s: %d %r %r" % (args, r.returncode, r.stdout, r.stderr))
            r = subprocess.run([CLI, "--socket", d.rw] + args +
                               ["qmp", "ev3", cmd % "info name"],
                               capture_output=True, text=True, timeout=WAIT)
            check(r.returncode == 0 and json.loads(r.stdout) == "ev3\r\n",
                  "corral qmp (info name): %d %r %r" % (r.returncode, r.stdout, r.stderr))
        c.call("destroy", {"name": "ev3"})
        d.stop()
    finally:
        d.cleanup()


def own_qemu(d, name, mem=48):
    """A QEMU of the test's own (-machine none, a listening QMP socket), and the socket."""
    sock = "%s/%s.qmp" % (d.dir, name)
    p = subprocess.Popen([QEMU, "-machine", "none", "-accel", "tcg", "-m", str(mem),
                          "-nodefaults", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_until(lambda: os.path.exists(sock) or p.poll() is not None, "QEMU's QMP socket")
    check(p.poll() is None, "QEMU exited at once")
    return p, sock


def test_attach_unknown():
    """attach without a config learns what QEMU says and never boots from a guess."""
    d = Daemon(CORRALD).start()
    procs = []
    try:
        c = d.client()
        p, sock = own_qemu(d, "at1")
        procs.append(p)
        r = c.call("attach", {"name": "at1", "qmp_socket": sock})
        check(r["state"] == "running" and r["pid"] == p.pid, "attach: %r" % r)
        info = c.call("info", {"name": "at1"})
        cfg, unknown = info["config"], info["config_unknown"]
        # What QEMU told: machine, memory, accelerator; never the invented pc/256.
        check(cfg.get("machine") == "none" and cfg.get("memory") == 48 and
              cfg.get("accel") == "tcg", "config from QEMU: %r" % cfg)
        for f in ("vcpus", "kernel", "disks", "nics", "firmware", "emulator", "reboot"):
            check(f in unknown and f not in cfg, "%s: not marked unknown: %r / %r"
                  % (f, cfg, unknown))
        check(not set(unknown) & set(cfg), "a field both known and unknown: %r" % info)
        # Refused while it runs and once it is off: no boot from unknown values.
        c.call("destroy", {"name": "at1"})
        p.wait(timeout=WAIT)
        for method, params in (("start", {}), ("autostart", {"enable": True})):
            e = c.err(method, dict({"name": "at1"}, **params), 8)
            check("attached without a config" in e.message and "define" in e.message,
                  "%s: %s" % (method, e.message))
        # A restarted corrald still knows it does not know.
        d.stop()
        d.start()
        c = d.client()
        check(c.call("info", {"name": "at1"})["config_unknown"] == unknown,
              "the unknown fields were lost across a restart")
        e = c.err("start", {"name": "at1"}, 8)
        check("attached without a config" in e.message, e.message)
        # Through the CLI, the same clear refusal.
        r = subprocess.run([CLI, "--socket", d.rw, "start", "at1"], capture_output=True,
                           text=True, timeout=WAIT)
        check(r.returncode != 0 and "attached without a config" in r.stderr,
              "corral start: %d %r" % (r.returncode, r.stderr))
        # A config given: it is whole, and start boots it.
        c.call("define", {"config": vm_config("at1")})
        info = c.call("info", {"name": "at1"})
        check(info["config_unknown"] == [] and info["config"]["vcpus"] == 1, "%r" % info)
        check(c.call("start", {"name": "at1"})["state"] == "running", "start after define")
        c.call("destroy", {"name": "at1"})
        # An attach with a config for a new name uses that config, and knows it all.
        p2, sock2 = own_qemu(d, "at2")
        procs.append(p2)
        c.call("attach", {"name": "at2", "qmp_socket": sock2, "config": vm_config("at2")})
        check(c.call("info", {"name": "at2"})["config_unknown"] == [], "at2")
        c.call("destroy", {"name": "at2"})
        d.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        d.cleanup()


def test_monitor_broken():
    """A monitor that fails while QEMU runs is reported, and so is its return."""
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("ev4")})
        pid = c.call("start", {"name": "ev4"})["pid"]
        c.close()
        d.stop()
        # corrald comes back to find QEMU's listening monitor gone.
        sock = d.run + "/qmp/ev4.sock"
        os.rename(sock, sock + ".away")
        d.start()
        c = d.client()
        # Its broken monitor shows at once (the event came before anyone could
        # subscribe: corrald re-attaches as it starts).
        i = wait_until(lambda: (lambda i: i if i["monitor"]["state"] == "broken" else None)(
            c.call("info", {"name": "ev4"})), "ev4's monitor to be broken")
        check(i["state"] == "running" and i["pid"] == pid, "info: %r" % i)
        ev = Events(d, "ev4")
        # Retries that fail again (1 s, 2 s later) say nothing more.
        ev.settle(3.5)
        check(not [x for e, x in ev.seen if e == "monitor"], "monitor events: %r" % ev.seen)
        # The socket is back: the next retry connects, and subscribers hear it.
        os.rename(sock + ".away", sock)
        ev.until(lambda s: any(e == "monitor" and x["state"] == "ok" for e, x in s),
                 "monitor ok again")
        check([x["state"] for e, x in ev.seen if e == "monitor"] == ["ok"],
              "monitor events: %r" % ev.seen)
        wait_until(lambda: c.call("info", {"name": "ev4"})["monitor"]["state"] == "ok",
                   "info's monitor ok")
        check(c.call("suspend", {"name": "ev4"})["reason"] == "user", "suspend after")
        c.call("destroy", {"name": "ev4"})
        d.stop()
    finally:
        d.cleanup()


API_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                      "API.md")


def md_tables(path):
    """{section heading: [rows as lists of cells]} of docs/API.md's tables."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                section = line[3:]
            elif line.startswith("| ") and not line.startswith("|---"):
                cells = [c.strip() for c in line.strip("|").split(" | ")]
                out.setdefault(section, []).append(cells)
    return out


def unquote(cell):
    check(cell.startswith("`") and cell.endswith("`"), "not a `name`: %r" % cell)
    return cell[1:-1]


def test_api_doc():
    """A client written from docs/API.md's tables: they are the daemon's, both ways."""
    t = md_tables(API_MD)
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        api = c.call("api.info")
        dom = t["Domains"]
        # Three tables in the section, each with its header row first.
        heads = [i for i, r in enumerate(dom) if r[0] in ("state", "reason", "monitor")]
        check(len(heads) == 3, "Domains: tables %r" % heads)
        states = [unquote(r[0]) for r in dom[heads[0] + 1:heads[1]]]
        reasons = {unquote(r[0]): r[1].split(", ") for r in dom[heads[1] + 1:heads[2]]}
        monitor = [unquote(r[0]) for r in dom[heads[2] + 1:]]
        check(states == [s["name"] for s in api["states"]], "states: %r" % states)
        check(reasons == {r["name"]: r["states"] for r in api["reasons"]},
              "reasons differ:\n%r\n%r" % (reasons, api["reasons"]))
        for name, sts in reasons.items():
            check(set(sts) <= set(states), "reason %s names an unknown state: %r" % (name, sts))
        check(monitor == [m["name"] for m in api["monitor_states"]], "monitor: %r" % monitor)
        check("unresponsive" in monitor and "broken" in monitor, "monitor states %r" % monitor)
        events = {unquote(r[0]): r[1] for r in t["Events"][1:]}
        check(events == {e["name"]: e["family"] for e in api["events"]}, "events: %r" % events)
        for name, fam in events.items():
            check((fam == "corral") == (name in CORRAL_EVENTS) and
                  (fam == "qemu") == name.startswith("qemu."), "event %s: %s" % (name, fam))
        rows = {unquote(r[0]): r for r in t["Config"][1:]}
        check(set(rows) == {f["name"] for f in api["config_fields"]},
              "config fields: %r" % sorted(rows))
        # The documented examples make a config the daemon takes as it is.
        cfg = {k: json.loads(unquote(r[5])) for k, r in rows.items() if "." not in k}
        cfg["name"] = "docs1"
        r = c.call("define", {"config": cfg})
        check(r["name"] == "docs1", "define from the documented examples: %r" % r)
        got = c.call("info", {"name": "docs1"})["config"]
        check(set(got) <= set(rows), "info shows undocumented fields: %r" %
              (set(got) - set(rows)))
        # Required fields are required; unknown ones refused.
        for k, row in rows.items():
            if "." in k or row[2] != "yes":
                continue
            e = c.err("define", {"config": {x: v for x, v in cfg.items() if x != k}}, 3)
            check(k in e.message, "without %s: %s" % (k, e.message))
        e = c.err("define", {"config": dict(cfg, undocumented=1)}, 3)
        check("unknown field 'undocumented'" in e.message, e.message)
        # Documented ranges, at their bounds, through the daemon.
        for f in api["config_fields"]:
            if "min" not in f or f["name"] not in ("memory", "vcpus"):
                continue
            for v, ok in ((f["min"], True), (f["max"], True), (f["max"] + 1, False)):
                one = {"name": "docs2", "machine": "pc", f["name"]: v}
                if ok:
                    c.call("define", {"config": one})
                    c.call("undefine", {"name": "docs2"})
                else:
                    c.err("define", {"config": one}, 3)
        # The message limits a client needs.
        lim = api["limits"]
        check(lim["msgid_max"] == 2 ** 32 - 1 and lim["message_bytes"] > 0, "limits %r" % lim)
        c.call("undefine", {"name": "docs1"})
        d.stop()
    finally:
        d.cleanup()


TESTS = {
    "api_doc": test_api_doc,
    "monitor_broken": test_monitor_broken,
    "attach_unknown": test_attach_unknown,
    "sequence": test_sequence,
    "crashes": test_crashes,
    "hmp_empty": test_hmp_empty,
}


def main():
    global CORRALD, QEMU, CLI
    CORRALD, QEMU, CLI = sys.argv[1], sys.argv[2], sys.argv[3]
    if not QEMU:
        print("no QEMU: skipped")
        sys.exit(77)
    failed = 0
    for name in sys.argv[4:] or TESTS:
        t = time.monotonic()
        try:
            TESTS[name]()
            print("%s: ok (%.1f s)" % (name, time.monotonic() - t))
        except Exception:
            failed += 1
            print("%s: FAILED" % name)
            traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Domains marked autostart start when corrald starts, in parallel, while it serves.

Usage: autostart.py CORRALD QEMU [TEST...]

Real corrald, real QEMU (-machine none, TCG).  The tests:

  flag_persists        `autostart` marks and unmarks; info, list and the
                       definition file show it; it survives restarts; bad
                       params, an unknown domain and the read-only socket are
                       refused
  old_definitions      a definition written before the flag existed (and a
                       config-only one) loads unmarked; a flag that is not a
                       boolean moves the file aside as corrupt
  restart_starts_marked  five marked shut-off domains start at start-up, the
                       unmarked ones stay off
  reattached_not_restarted  a marked domain whose QEMU outlived a kill -9 of
                       corrald is re-attached, not started a second time
  failed_start_isolated  a marked domain that cannot start (its emulator is
                       gone) fails alone: the others start, the daemon serves,
                       its info says reason `failed`, the log says why
  queries_while_starting  with an emulator held at a gate until the test opens
                       it, all five domains are `starting` at once (the starts
                       overlap), and list and info answer all the while
  redefine_keeps_flag  define of an existing name keeps the mark; undefine and
                       define again leaves it unmarked
  no_autostart         `corrald --no-autostart` leaves marked domains off
  readonly_state_dir   marking on a read-only state dir fails with `storage`
                       and changes nothing
  crash_points         kill -9 at each crash point of the flag's write: after a
                       restart the flag is the old or the new one, the file
                       whole, no temporary file left

Exits 0 when every test passes, 1 otherwise.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import (Daemon, can_mount, check, json_files_valid,  # noqa: E402
                        mount_tmpfs, remount, run_tests, wait_until)

CORRALD = QEMU = None
ERR_INVALID_ARGUMENT, ERR_NO_SUCH_DOMAIN, ERR_PERMISSION, ERR_STORAGE = 3, 4, 9, 15


def vm_config(name, **kw):
    cfg = {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}
    cfg.update(kw)
    return cfg


def info(c, name):
    return c.call("info", {"name": name})


def listed(c):
    return {d["name"]: d for d in c.call("list")}


def definition(dmn, name):
    with open("%s/domains/%s.json" % (dmn.state, name)) as f:
        return json.load(f)


def wait_state(c, name, state, timeout=60):
    return wait_until(lambda: (lambda i: i if i["state"] == state and i["job"] is None
                               else None)(info(c, name)),
                      "%s to be %s" % (name, state), timeout=timeout)


def settled(c):
    """No job holds any domain and no monitor is still connecting."""
    def ok():
        return all(d["job"] is None and d["monitor"]["state"] != "connecting"
                   for d in c.call("list"))
    wait_until(ok, "domains to settle")
    return listed(c)


def qemus_of(dmn, name):
    return [p for p, env in dmn.qemus().items() if env.get("CORRAL_DOMAIN") == name]


def test_flag_persists():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("g1")})
        check(info(c, "g1")["autostart"] is False, "a new domain is marked")
        check(listed(c)["g1"]["autostart"] is False, "list: a new domain is marked")
        check("autostart" in definition(d, "g1") and definition(d, "g1")["autostart"] is False,
              "file: %r" % definition(d, "g1"))
        r = c.call("autostart", {"name": "g1", "enable": True})
        check(r == {"name": "g1", "autostart": True}, "autostart answered %r" % r)
        check(info(c, "g1")["autostart"] is True, "info after marking")
        check(listed(c)["g1"]["autostart"] is True, "list after marking")
        check(definition(d, "g1")["autostart"] is True, "file after marking")
        # The config is the domain's as before; the flag is not part of it.
        check("autostart" not in info(c, "g1")["config"], "the flag leaked into the config")
        check(definition(d, "g1")["config"] == info(c, "g1")["config"],
              "marking changed the config on disk")
        # Again: nothing to change, same answer.
        check(c.call("autostart", {"name": "g1", "enable": True})["autostart"] is True,
              "marking twice")
        # Refusals.
        c.err("autostart", {"name": "nope", "enable": True}, ERR_NO_SUCH_DOMAIN)
        c.err("autostart", {"name": "g1"}, ERR_INVALID_ARGUMENT)
        c.err("autostart", {"name": "g1", "enable": 1}, ERR_INVALID_ARGUMENT)
        c.err("autostart", {"enable": True}, ERR_INVALID_ARGUMENT)
        d.client(ro=True).err("autostart", {"name": "g1", "enable": False}, ERR_PERMISSION)
        check(info(c, "g1")["autostart"] is True, "a refused call changed the flag")
        c.close()
        # Across a restart (without starting it, to see the flag alone).
        d.stop()
        d.start(extra=["--no-autostart"])
        c = d.client()
        i = info(c, "g1")
        check(i["autostart"] is True and i["state"] == "shutoff", "after a restart: %r" % i)
        check(c.call("autostart", {"name": "g1", "enable": False}) ==
              {"name": "g1", "autostart": False}, "unmarking")
        check(definition(d, "g1")["autostart"] is False, "file after unmarking")
        c.close()
        d.stop()
        d.start()
        c = d.client()
        check(info(c, "g1")["autostart"] is False, "unmarked, after a restart")
        time.sleep(0.5)
        check(info(c, "g1")["state"] == "shutoff", "an unmarked domain was started")
        d.stop()
    finally:
        d.cleanup()


def test_old_definitions():
    d = Daemon(CORRALD)
    try:
        # A daemon writes the owner and config; the files are then made old.
        d.start()
        c = d.client()
        for n in ("old2", "old1", "bad"):
            c.call("define", {"config": vm_config(n)})
        c.close()
        d.stop()
        doc = definition(d, "old2")
        del doc["autostart"]
        with open("%s/domains/old2.json" % d.state, "w") as f:
            json.dump(doc, f)
        config = definition(d, "old1")["config"]
        with open("%s/domains/old1.json" % d.state, "w") as f:
            json.dump(config, f)        # version 1: the config alone
        doc = definition(d, "bad")
        doc["autostart"] = "yes"
        with open("%s/domains/bad.json" % d.state, "w") as f:
            json.dump(doc, f)
        d.start()
        c = d.client()
        names = listed(c)
        check(sorted(names) == ["old1", "old2"], "loaded %r" % sorted(names))
        for n in ("old1", "old2"):
            check(names[n]["autostart"] is False and names[n]["state"] == "shutoff",
                  "%s: %r" % (n, names[n]))
        check(os.path.exists("%s/domains/bad.json.corrupt" % d.state),
              "a non-boolean flag was not set aside")
        check("bad 'autostart'" in d.log_text(), "the log does not say why bad.json was set aside")
        # Marking an old one writes the new form.
        c.call("autostart", {"name": "old1", "enable": True})
        doc = definition(d, "old1")
        check(doc.get("version") == 2 and doc["autostart"] is True and doc["config"]["name"]
              == "old1" and "owner" in doc, "old1 rewritten as %r" % doc)
        d.stop()
    finally:
        d.cleanup()


def test_restart_starts_marked():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        marked = ["m%d" % i for i in range(5)]
        unmarked = ["u0", "u1"]
        for n in marked + unmarked:
            c.call("define", {"config": vm_config(n)})
        for n in marked:
            c.call("autostart", {"name": n, "enable": True})
        c.close()
        d.stop()
        d.start()
        c = d.client()
        for n in marked:
            i = wait_state(c, n, "running")
            check(i["reason"] == "booted" and i["pid"] > 0, "%s: %r" % (n, i))
            check(len(qemus_of(d, n)) == 1, "%s: QEMUs %r" % (n, qemus_of(d, n)))
        for n in unmarked:
            i = info(c, n)
            check(i["state"] == "shutoff" and not qemus_of(d, n), "%s: %r" % (n, i))
        log = d.log_text()
        check("autostart: starting 5 domains" in log, "the log does not count the starts")
        for n in marked:
            check("autostart: domain '%s' started" % n in log, "no log line for " + n)
        for n in marked:
            c.call("destroy", {"name": n})
        d.stop()
    finally:
        d.cleanup()


def test_reattached_not_restarted():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("a1")})
        c.call("define", {"config": vm_config("a2")})
        c.call("autostart", {"name": "a1", "enable": True})
        c.call("autostart", {"name": "a2", "enable": True})
        pid = c.call("start", {"name": "a1"})["pid"]
        c.close()
        d.kill9()               # QEMU keeps running
        check(os.path.exists("/proc/%d" % pid), "QEMU died with corrald")
        d.start()
        c = d.client()
        wait_state(c, "a2", "running")
        doms = settled(c)
        time.sleep(0.5)         # a second start, if any, would be under way by now
        i = info(c, "a1")
        check(i["state"] == "running" and i["pid"] == pid, "a1 after the restart: %r" % i)
        check(qemus_of(d, "a1") == [pid], "a1's QEMUs: %r, want only %d"
              % (qemus_of(d, "a1"), pid))
        check(i["counters"]["jobs_failed"] == 0, "a1: a job failed: %r" % i)
        check(doms["a2"]["state"] == "running", "a2 (shut off, marked) did not start")
        check("autostart: starting 1 domain" in d.log_text().split("ready: pid")[-1],
              "the restarted daemon started more than a2")
        for n in ("a1", "a2"):
            c.call("destroy", {"name": n})
        d.stop()
    finally:
        d.cleanup()


def test_failed_start_isolated():
    gdir, gone, gate = gated_emulator()
    open(gate, "w").close()
    allow = ["--allow-emulator", gone, "--allow-emulator", QEMU]
    d = Daemon(CORRALD, extra=allow).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("bad1", emulator=gone)})
        for n in ("ok1", "ok2"):
            c.call("define", {"config": vm_config(n)})
        for n in ("bad1", "ok1", "ok2"):
            c.call("autostart", {"name": n, "enable": True})
        c.close()
        d.stop()
        os.unlink(gone)         # gone while no daemon ran
        d.start()
        c = d.client()
        for n in ("ok1", "ok2"):
            wait_state(c, n, "running")
        i = wait_until(lambda: (lambda i: i if i["state"] == "shutoff" and i["job"] is None
                                and i["reason"] == "failed" else None)(info(c, "bad1")),
                       "bad1's start to fail")
        check(i["counters"]["jobs_failed"] == 1 and i["autostart"] is True, "bad1: %r" % i)
        check(not qemus_of(d, "bad1"), "bad1 has a QEMU")
        wait_until(lambda: "autostart: domain 'bad1' did not start" in d.log_text(),
                   "the log to say bad1 did not start")
        line = d.log_text().split("autostart: domain 'bad1' did not start")[-1].split("\n")[0]
        check(gone in line, "the log does not name the missing emulator: %r" % line)
        check(d.proc.poll() is None, "corrald exited")
        check(sorted(listed(c)) == ["bad1", "ok1", "ok2"], "the daemon lost domains")
        for n in ("ok1", "ok2"):
            c.call("destroy", {"name": n})
        d.stop()
    finally:
        d.cleanup()
        shutil.rmtree(gdir, ignore_errors=True)


def gated_emulator():
    """A wrapper that waits until its gate file exists, then runs QEMU: a start
    that lasts exactly as long as the test wants, whatever the machine's load."""
    sdir = tempfile.mkdtemp(prefix="cd-slowqemu-", dir="/tmp")
    os.chmod(sdir, 0o755)      # QEMU may run as another user (corrald as root)
    path, gate = sdir + "/slow-qemu", sdir + "/gate"
    with open(path, "w") as f:
        f.write("#!/bin/sh\nwhile [ ! -e %s ]; do sleep 0.05; done\nexec %s \"$@\"\n"
                % (gate, QEMU))
    os.chmod(path, 0o755)
    return sdir, path, gate


def test_queries_while_starting():
    """The five marked domains start together (all five are `starting` at
    once, while their QEMUs are held at a gate), and queries answer all the
    while: a query that waited for a start would wait for the gate."""
    sdir, slow, gate = gated_emulator()
    allow = ["--allow-emulator", slow, "--allow-emulator", QEMU]
    d = Daemon(CORRALD, extra=allow).start()
    try:
        c = d.client()
        names = ["s%d" % i for i in range(5)]
        for n in names:
            c.call("define", {"config": vm_config(n, emulator=slow)})
            c.call("autostart", {"name": n, "enable": True})
        c.close()
        d.stop()
        d.start()
        c = d.client()
        worst, together, queries = 0.0, False, 0
        deadline = time.monotonic() + 20
        while not together:
            check(time.monotonic() < deadline, "the five were never starting together")
            t = time.monotonic()
            doms = c.call("list", {"timeout_ms": 10000})
            info(c, names[0])
            worst = max(worst, time.monotonic() - t)
            queries += 2
            together = {x["name"] for x in doms if x["state"] == "starting"} == set(names)
            time.sleep(0.05)
        # A few more while they all wait at the gate.
        for _ in range(20):
            c.call("list", {"timeout_ms": 10000})
            queries += 1
        check(all(x["state"] == "starting" for x in c.call("list") if x["name"] in names),
              "a start ended before the gate opened")
        print("     %d queries answered while the starts waited (slowest %.3f s)"
              % (queries, worst))
        open(gate, "w").close()
        for n in names:
            wait_state(c, n, "running")
        for n in names:
            c.call("destroy", {"name": n})
        d.stop()
    finally:
        d.cleanup()
        shutil.rmtree(sdir, ignore_errors=True)


def test_redefine_keeps_flag():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("r1")})
        c.call("autostart", {"name": "r1", "enable": True})
        c.call("define", {"config": vm_config("r1", memory=64)})
        i = info(c, "r1")
        check(i["autostart"] is True and i["config"]["memory"] == 64, "redefined: %r" % i)
        doc = definition(d, "r1")
        check(doc["autostart"] is True and doc["config"]["memory"] == 64, "file: %r" % doc)
        c.call("undefine", {"name": "r1"})
        c.call("define", {"config": vm_config("r1")})
        check(info(c, "r1")["autostart"] is False, "a new definition of the name is marked")
        check(definition(d, "r1")["autostart"] is False, "file of the new definition")
        c.close()
        d.stop()
        d.start()
        c = d.client()
        time.sleep(0.5)
        i = info(c, "r1")
        check(i["autostart"] is False and i["state"] == "shutoff", "after a restart: %r" % i)
        d.stop()
    finally:
        d.cleanup()


def test_no_autostart():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        c.call("define", {"config": vm_config("n1")})
        c.call("autostart", {"name": "n1", "enable": True})
        c.close()
        d.stop()
        d.start(extra=["--no-autostart"])
        c = d.client()
        time.sleep(1.0)
        i = info(c, "n1")
        check(i["state"] == "shutoff" and i["autostart"] is True and not qemus_of(d, "n1"),
              "with --no-autostart: %r" % i)
        check("autostart: skipped (--no-autostart)" in d.log_text(), "the log does not say so")
        c.close()
        d.stop()
        d.start()
        c = d.client()
        wait_state(c, "n1", "running")
        c.call("destroy", {"name": "n1"})
        d.stop()
    finally:
        d.cleanup()


def test_readonly_state_dir():
    if not can_mount():
        print("  skipped: needs root to mount a tmpfs")
        return
    d = Daemon(CORRALD)
    try:
        mount_tmpfs(d.state)
        d.start()
        c = d.client()
        c.call("define", {"config": vm_config("ro1")})
        remount(d.state, "ro")
        e = c.err("autostart", {"name": "ro1", "enable": True}, ERR_STORAGE)
        check("read-only" in e.message, e.message)
        check(info(c, "ro1")["autostart"] is False, "a failed write changed the flag")
        check(definition(d, "ro1")["autostart"] is False, "a failed write changed the file")
        remount(d.state, "rw")
        check(c.call("autostart", {"name": "ro1", "enable": True})["autostart"] is True,
              "marking once writable again")
        c.close()
        d.stop(); d.start(extra=["--no-autostart"])
        check(info(d.client(), "ro1")["autostart"] is True, "after a restart")
        d.stop()
    finally:
        d.cleanup()


def test_crash_points():
    # point -> the flag after a restart (True: the new one)
    points = {"autostart.before-write": False, "autostart.after-tmp": False,
              "autostart.after-rename": True, "autostart.after-write": True}
    for point, new in points.items():
        d = Daemon(CORRALD).start()
        try:
            c = d.client()
            c.call("define", {"config": vm_config("c1")})
            c.close()
            d.stop()
            d.start(crash_point=point)
            d.client().send("autostart", {"name": "c1", "enable": True})
            d.wait_dead()
            d.start(extra=["--no-autostart"])
            c = d.client()
            i = info(c, "c1")
            check(i["autostart"] is new, "%s: autostart %r, want %r" % (point, i["autostart"], new))
            check(definition(d, "c1")["autostart"] is new, "%s: the file disagrees" % point)
            check(json_files_valid(d.state + "/domains") == ["c1.json"],
                  "%s: definitions %r" % (point, os.listdir(d.state + "/domains")))
            stray = [n for n in os.listdir(d.state + "/domains") if n.endswith(".tmp")]
            check(not stray, "%s: temporary files left: %r" % (point, stray))
            # And it can be changed again.
            check(c.call("autostart", {"name": "c1", "enable": not new})["autostart"] is
                  (not new), "%s: cannot change the flag afterwards" % point)
            d.stop()
        finally:
            d.cleanup()


TESTS = [test_flag_persists, test_old_definitions, test_restart_starts_marked,
         test_reattached_not_restarted, test_failed_start_isolated,
         test_queries_while_starting, test_redefine_keeps_flag, test_no_autostart,
         test_readonly_state_dir, test_crash_points]


def main():
    global CORRALD, QEMU
    CORRALD, QEMU = sys.argv[1], sys.argv[2]
    if not QEMU:
        print("autostart: skipped (no QEMU)")
        return 0
    only = sys.argv[3:]
    return run_tests(TESTS, only)


if __name__ == "__main__":
    sys.exit(main())

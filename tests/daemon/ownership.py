#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""No VM orphaned, no definition lost: corrald's ownership across crashes.

Usage: ownership.py CORRALD QEMU [TEST...]

Real corrald, real QEMU (-machine none, TCG).  The tests:

  crash_points        every crash point between a request and its durable
                      effect (define, redefine, undefine, start, destroy, a
                      QEMU that quits, attach): the daemon dies there as by
                      kill -9, a new one starts, and then no QEMU is orphaned,
                      none is a zombie, no run record, socket or temporary
                      file is stale, every file is valid JSON, and every
                      domain is in its old state or its new one;
  undefine_behind_start  pipelined [start, undefine] pairs: undefine waits for
                      the start and refuses a running domain;
  define_undefine_race  two connections on two I/O threads define and
                      undefine one name; a restart shows what the last
                      answers said;
  readonly_state_dir  define and undefine on a read-only state dir fail with
                      'storage' and change nothing;
  runtime_dir_full    a start whose run record cannot be written fails and
                      leaves no QEMU behind;
  hung_qemu_kept      a SIGSTOPped QEMU, and one whose QMP socket was deleted,
                      stay running across a restart; start refuses, destroy
                      kills them;
  ended_while_away    a QEMU that died while no daemon ran is reported so;
  orphan_of_undefined a QEMU whose definition is gone is stopped and reported;
  startup_robust      a FIFO and a symlink named *.json are skipped, a corrupt
                      definition is moved aside, the others load, SIGTERM works;
  startup_many        2,600 definitions (three of the start-up's batches of
                      1,024, parsed on several threads): each comes back with
                      its own config and UUID, three corrupt ones spread
                      among them are moved aside; SIGTERMs during the load
                      lose none;
  disk_formats        a qcow2 image given without a format is attached as
                      qcow2; a declared format that does not match, and a
                      backing file, are refused.

Exits 0 when every test passes, 1 otherwise.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import (Daemon, can_mount, check, json_files_valid,  # noqa: E402
                        mount_tmpfs, remount, run_tests, wait_until, zombies_of)

CORRALD = QEMU = None

ERR_BAD_STATE, ERR_PERMISSION, ERR_STORAGE = 8, 9, 15


def vm_config(name, **kw):
    cfg = {"name": name, "machine": "none", "accel": "tcg", "memory": 32,
           "emulator": QEMU}
    cfg.update(kw)
    return cfg


def settled(c):
    """Every domain free of jobs and of monitor hand-shakes: the re-attaches are done."""
    def ok():
        for d in c.call("list"):
            if d["job"] is not None or d["monitor"]["state"] == "connecting":
                return False
        return True
    wait_until(ok, "domains to settle")
    return {d["name"]: c.call("info", {"name": d["name"]}) for d in c.call("list")}


def check_invariants(dmn, c, what):
    """What a restart after any crash must find.  Returns info by name."""
    infos = settled(c)
    qemus = dmn.qemus()
    owned = {i["pid"]: n for n, i in infos.items() if i["pid"]}
    for pid, env in qemus.items():
        check(pid in owned, "%s: QEMU pid %d (domain %s) is orphaned; domains: %r"
              % (what, pid, env.get("CORRAL_DOMAIN"), {n: (i["state"], i["pid"])
                                                       for n, i in infos.items()}))
        n = owned[pid]
        check(infos[n]["state"] in ("running", "paused"),
              "%s: %s has QEMU %d but is %s" % (what, n, pid, infos[n]["state"]))
    for n, i in infos.items():
        if i["pid"]:
            check(os.path.exists("/proc/%d" % i["pid"]),
                  "%s: %s names pid %d, which is gone" % (what, n, i["pid"]))
        else:
            check(i["state"] not in ("running", "paused", "starting"),
                  "%s: %s is %s with no process" % (what, n, i["state"]))
    check(not zombies_of(dmn.proc.pid), "%s: zombies %r" % (what, zombies_of(dmn.proc.pid)))
    recs = json_files_valid(dmn.run + "/vms")
    for r in recs:
        n = r[:-len(".json")]
        check(n in infos and infos[n]["pid"], "%s: stale run record %s" % (what, r))
    for s in os.listdir(dmn.run + "/qmp"):
        n = s[:-len(".sock")]
        check(n in infos and infos[n]["pid"] and not infos[n]["config"].get("_attached"),
              "%s: stale QMP socket %s" % (what, s))
    defs = json_files_valid(dmn.state + "/domains")
    check(sorted(defs) == sorted(n + ".json" for n in infos),
          "%s: definitions on disk %r, domains %r" % (what, defs, sorted(infos)))
    for d in (dmn.state + "/domains", dmn.run + "/vms"):
        stray = [n for n in os.listdir(d) if n.endswith(".tmp")]
        check(not stray, "%s: temporary files left in %s: %r" % (what, d, stray))
    return infos


def own_qemu(dmn, name):
    """A QEMU corral did not start, with a QMP socket to attach to."""
    sock = "%s/%s.qmp" % (dmn.dir, name)
    p = subprocess.Popen([QEMU, "-machine", "none", "-accel", "tcg", "-nodefaults",
                          "-no-user-config", "-display", "none",
                          "-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: os.path.exists(sock), "the QMP socket of " + name)
    return p, sock


# ---- crash points ----------------------------------------------------------------------

# scenario: (crash points, precondition, operation, check of the outcome)
def pre_none(dmn, c):
    pass


def pre_defined(dmn, c):
    c.call("define", {"config": vm_config("d1")})


def pre_running(dmn, c):
    pre_defined(dmn, c)
    c.call("start", {"name": "d1"})


def op_define(dmn, c, ctx):
    c.send("define", {"config": vm_config("d1")})


def op_redefine(dmn, c, ctx):
    c.send("define", {"config": vm_config("d1", memory=48)})


def op_undefine(dmn, c, ctx):
    c.send("undefine", {"name": "d1"})


def op_start(dmn, c, ctx):
    c.send("start", {"name": "d1"})


def op_destroy(dmn, c, ctx):
    c.send("destroy", {"name": "d1"})


def op_quit(dmn, c, ctx):
    c.send("qmp", {"name": "d1", "command": '{"execute": "quit"}'})


def op_attach(dmn, c, ctx):
    ctx["qemu"], sock = own_qemu(dmn, "ext")
    c.send("attach", {"name": "d2", "qmp_socket": sock})


def want_define(infos, ctx):
    check(set(infos) <= {"d1"}, "define: domains %r" % list(infos))
    if "d1" in infos:
        check(infos["d1"]["config"]["memory"] == 32, "define: config %r"
              % infos["d1"]["config"])


def want_redefine(infos, ctx):
    check(set(infos) == {"d1"}, "redefine lost the domain: %r" % list(infos))
    check(infos["d1"]["config"]["memory"] in (32, 48), "redefine: %r" % infos["d1"]["config"])


def want_undefine(infos, ctx):
    check(set(infos) <= {"d1"}, "undefine: domains %r" % list(infos))


def want_start(infos, ctx):
    i = infos["d1"]
    check(i["state"] in ("running", "shutoff"),
          "start: d1 is %s (%s), neither running nor shut off" % (i["state"], i["reason"]))


def want_stopped_or_running(infos, ctx):
    check(infos["d1"]["state"] in ("running", "shutoff"),
          "d1 is %s (%s)" % (infos["d1"]["state"], infos["d1"]["reason"]))


def want_attach(infos, ctx):
    if "d2" in infos and infos["d2"]["pid"]:
        check(infos["d2"]["pid"] == ctx["qemu"].pid, "attached to pid %d, not %d"
              % (infos["d2"]["pid"], ctx["qemu"].pid))
        check(infos["d2"]["state"] == "running", "attach: %s" % infos["d2"]["state"])


def record_points(tag):
    return [tag + ".after-tmp", tag + ".after-rename"]


SCENARIOS = [
    ("define", ["define.before-write", "define.after-tmp", "define.after-rename",
                "define.after-write"], pre_none, op_define, want_define),
    ("redefine", ["define.before-write", "define.after-tmp", "define.after-rename",
                  "define.after-write"], pre_defined, op_redefine, want_redefine),
    ("undefine", ["undefine.before-unlink", "undefine.after-unlink",
                  "undefine.after-remove"], pre_defined, op_undefine, want_undefine),
    ("start", record_points("start.record") + ["start.before-spawn", "start.after-spawn"]
     + record_points("start.pid-record") + ["start.after-pid-record", "start.after-cont"],
     pre_defined, op_start, want_start),
    ("destroy", ["destroy.after-kill", "exit.before-cleanup", "exit.after-unlink",
                 "exit.after-cleanup"], pre_running, op_destroy, want_stopped_or_running),
    ("quit", ["exit.before-cleanup", "exit.after-unlink"], pre_running, op_quit,
     want_stopped_or_running),
    ("attach", ["define.after-write"] + record_points("record") + ["attach.after-record"],
     pre_none, op_attach, want_attach),
]


def test_crash_points():
    n = 0
    for name, points, pre, op, want in SCENARIOS:
        for point in points:
            what = "%s at %s" % (name, point)
            dmn = Daemon(CORRALD)
            ctx = {}
            try:
                dmn.start()
                c = dmn.client()
                pre(dmn, c)
                c.close()
                dmn.stop()
                dmn.start(crash_point=point)
                c = dmn.client()
                op(dmn, c, ctx)
                try:
                    dmn.wait_dead(timeout=30)
                except AssertionError:
                    raise AssertionError("%s: the crash point was never reached:\n%s"
                                         % (what, dmn.log_text()[-3000:]))
                dmn.start()
                c = dmn.client()
                infos = check_invariants(dmn, c, what)
                want(infos, ctx)
                # The survivors still work: destroy what runs, undefine everything.
                for dn, i in infos.items():
                    if i["pid"]:
                        c.call("destroy", {"name": dn})
                    c.call("undefine", {"name": dn})
                check(not dmn.qemus(), "%s: QEMUs left after destroy" % what)
                dmn.stop()
                n += 1
            except BaseException:
                sys.stderr.write(dmn.log_text()[-6000:])
                raise
            finally:
                if "qemu" in ctx:
                    ctx["qemu"].kill()
                    ctx["qemu"].wait()
                dmn.cleanup()
    print("  %d crash points checked" % n)


# ---- jobs in order -------------------------------------------------------------------------

def test_undefine_behind_start():
    dmn = Daemon(CORRALD).start()
    try:
        c = dmn.client()
        names = ["u%d" % i for i in range(5)]
        for n in names:
            c.call("define", {"config": vm_config(n)})
        ids = []
        for n in names:
            ids.append((n, c.send("start", {"name": n}), c.send("undefine", {"name": n})))
        for n, s, u in ids:
            ms, mu = c.response(s), c.response(u)
            check(ms[2] is None, "start %s: %r" % (n, ms[2]))
            check(mu[2] is not None and mu[2][0] == ERR_BAD_STATE,
                  "undefine %s behind its start: %r" % (n, mu[2]))
            check("destroy it first" in mu[2][1], mu[2][1])
        infos = check_invariants(dmn, c, "undefine behind start")
        for n in names:
            check(infos[n]["state"] == "running", "%s: %s" % (n, infos[n]["state"]))
        for n in names:
            c.call("destroy", {"name": n})
            c.call("undefine", {"name": n})
        check(not dmn.qemus(), "QEMUs left")
        check(not zombies_of(dmn.proc.pid), "zombies left")
        check(os.listdir(dmn.run + "/vms") == [] and os.listdir(dmn.run + "/qmp") == [],
              "files left: %r %r" % (os.listdir(dmn.run + "/vms"),
                                     os.listdir(dmn.run + "/qmp")))
        dmn.stop()
    finally:
        dmn.cleanup()


def test_define_undefine_race():
    dmn = Daemon(CORRALD, extra=["--io-threads", "2"]).start()
    try:
        rounds = 150
        a, b = dmn.client(), dmn.client()
        present = None
        for i in range(rounds):
            sa = a.send("define", {"config": vm_config("race", memory=32 + (i % 8))})
            sb = b.send("undefine", {"name": "race"})
            ra, rb = a.response(sa), b.response(sb)
            check(ra[2] is None, "define failed: %r" % (ra[2],))
            # Whichever ran last decides: the list says which, and so must the disk.
            names = [d["name"] for d in a.call("list")]
            present = "race" in names
            if rb[2] is not None:
                check(rb[2][0] == 4, "undefine: %r" % (rb[2],))
        on_disk = os.path.exists(dmn.state + "/domains/race.json")
        check(on_disk == present, "the domain is %s but its file %s"
              % ("listed" if present else "gone", "exists" if on_disk else "does not"))
        a.close()
        b.close()
        dmn.stop()
        dmn.start()
        c = dmn.client()
        names = [d["name"] for d in c.call("list")]
        check(("race" in names) == present, "after a restart the domain is %s, before it was "
              "%s" % ("back" if "race" in names else "gone", present))
        dmn.stop()
    finally:
        dmn.cleanup()


# ---- the disk refuses -----------------------------------------------------------------------

def test_readonly_state_dir():
    if not can_mount():
        print("  skipped: needs root to mount a tmpfs")
        return
    dmn = Daemon(CORRALD)
    try:
        mount_tmpfs(dmn.state)
        dmn.start()
        c = dmn.client()
        c.call("define", {"config": vm_config("keep")})
        remount(dmn.state, "ro")
        e = c.err("undefine", {"name": "keep"}, ERR_STORAGE)
        check("read-only" in e.message, e.message)
        check([d["name"] for d in c.call("list")] == ["keep"], "undefine changed the list")
        e = c.err("define", {"config": vm_config("new")}, ERR_STORAGE)
        check("read-only" in e.message, e.message)
        check([d["name"] for d in c.call("list")] == ["keep"], "a failed define is listed")
        e = c.err("define", {"config": vm_config("keep", memory=64)}, ERR_STORAGE)
        check(c.call("info", {"name": "keep"})["config"]["memory"] == 32,
              "a failed redefine changed the config")
        c.close()
        dmn.stop()
        remount(dmn.state, "rw")
        dmn.start()
        c = dmn.client()
        check([d["name"] for d in c.call("list")] == ["keep"], "after a restart")
        dmn.stop()
    finally:
        dmn.cleanup()


def test_runtime_dir_full():
    if not can_mount():
        print("  skipped: needs root to mount a tmpfs")
        return
    dmn = Daemon(CORRALD)
    try:
        mount_tmpfs(dmn.run, size="64k")
        dmn.start()
        c = dmn.client()
        c.call("define", {"config": vm_config("full")})
        # Fill what is left of the runtime dir.
        with open(dmn.run + "/filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        e = c.err("start", {"name": "full"}, ERR_STORAGE)
        check("runtime dir full" in e.message, e.message)
        i = c.call("info", {"name": "full"})
        check(i["state"] == "shutoff" and i["pid"] == 0, "after a failed start: %r" % i)
        check(not dmn.qemus(), "a QEMU was left behind: %r" % dmn.qemus())
        os.unlink(dmn.run + "/filler")
        c.call("start", {"name": "full"})
        c.call("destroy", {"name": "full"})
        dmn.stop()
    finally:
        dmn.cleanup()


# ---- live QEMUs are never dropped --------------------------------------------------------------

def test_hung_qemu_kept():
    dmn = Daemon(CORRALD).start()
    try:
        c = dmn.client()
        for n in ("frozen", "nosock"):
            c.call("define", {"config": vm_config(n)})
            c.call("start", {"name": n})
        pids = {n: c.call("info", {"name": n})["pid"] for n in ("frozen", "nosock")}
        c.close()
        dmn.stop()
        os.kill(pids["frozen"], signal.SIGSTOP)
        os.unlink(dmn.run + "/qmp/nosock.sock")
        dmn.start()
        c = dmn.client()

        def seen(n, mon):
            i = c.call("info", {"name": n})
            return i if i["monitor"]["state"] in mon and i["job"] is None else None
        i = wait_until(lambda: seen("nosock", ("broken",)), "nosock's monitor to be broken")
        check(i["state"] == "running" and i["pid"] == pids["nosock"], "nosock: %r" % i)
        i = wait_until(lambda: seen("frozen", ("connecting", "unresponsive")),
                       "frozen to be re-attached")
        check(i["state"] == "running" and i["pid"] == pids["frozen"], "frozen: %r" % i)
        for n in ("frozen", "nosock"):
            e = c.err("start", {"name": n}, ERR_BAD_STATE)
            check("already" in e.message, e.message)
        # The frozen one thaws: its monitor comes back, and it is running.
        os.kill(pids["frozen"], signal.SIGCONT)
        wait_until(lambda: seen("frozen", ("ok",)), "frozen's monitor to recover")
        os.kill(pids["frozen"], signal.SIGSTOP)
        for n in ("frozen", "nosock"):
            r = c.call("destroy", {"name": n})
            check(r["state"] == "shutoff", "destroy %s: %r" % (n, r))
        check(not dmn.qemus(), "destroy left QEMUs: %r" % dmn.qemus())
        check(os.listdir(dmn.run + "/vms") == [], "records left")
        dmn.stop()
    finally:
        dmn.cleanup()


def test_ended_while_away():
    dmn = Daemon(CORRALD).start()
    try:
        c = dmn.client()
        c.call("define", {"config": vm_config("gone")})
        pid = c.call("start", {"name": "gone"})["pid"]
        c.close()
        dmn.stop()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not dmn.qemus(), "QEMU to die")
        dmn.start()
        c = dmn.client()
        i = settled(c)["gone"]
        check(i["state"] == "shutoff" and i["reason"] == "ended-while-away", "gone: %r" % i)
        check(os.listdir(dmn.run + "/vms") == [], "stale record")
        check("ended while corrald was not running" in dmn.log_text(), "not reported")
        dmn.stop()
    finally:
        dmn.cleanup()


def test_orphan_of_undefined():
    dmn = Daemon(CORRALD).start()
    try:
        c = dmn.client()
        c.call("define", {"config": vm_config("lost")})
        c.call("start", {"name": "lost"})
        c.close()
        dmn.stop()
        # The definition goes (a human, a restore of an older state dir...).
        os.unlink(dmn.state + "/domains/lost.json")
        # And the record too: the process is found by its environment alone.
        os.unlink(dmn.run + "/vms/lost.json")
        check(dmn.qemus(), "QEMU should still run")
        dmn.start()
        c = dmn.client()
        wait_until(lambda: not dmn.qemus(), "the orphan to be stopped")
        check("undefined domain 'lost'" in dmn.log_text(), "not reported:\n" + dmn.log_text())
        check(c.call("list") == [], "listed")
        dmn.stop()
    finally:
        dmn.cleanup()


# ---- start-up -------------------------------------------------------------------------------------

def test_startup_robust():
    dmn = Daemon(CORRALD)
    try:
        dmn.start()
        c = dmn.client()
        c.call("define", {"config": vm_config("fine")})
        c.close()
        dmn.stop()
        d = dmn.state + "/domains"
        os.mkfifo(d + "/fifo.json")
        os.symlink("/etc/passwd", d + "/link.json")
        with open(d + "/broken.json", "w") as f:
            f.write('{"version": 2, "config": {"name": "broken", "memory": ')
        with open(d + "/liar.json", "w") as f:
            f.write('{"name": "other"}')
        t0 = time.monotonic()
        dmn.start()
        check(time.monotonic() - t0 < 20, "start-up took too long")
        c = dmn.client()
        check([x["name"] for x in c.call("list")] == ["fine"], "loaded: %r" % c.call("list"))
        log = dmn.log_text()
        for n in ("fifo.json", "link.json", "broken.json", "liar.json"):
            check(n in log, "%s not reported:\n%s" % (n, log))
        check(os.path.exists(d + "/broken.json.corrupt"), "broken.json not moved aside")
        check(os.path.exists(d + "/liar.json.corrupt"), "liar.json not moved aside")
        c.close()
        dmn.stop()
    finally:
        dmn.cleanup()


def windowed(c, calls, window=128):
    """Each (method, params) of calls with window in flight; the answers, in order."""
    out, pending = [], []
    for method, params in calls:
        pending.append(c.send(method, params))
        if len(pending) >= window:
            out.append(c.response(pending.pop(0)))
    out.extend(c.response(m) for m in pending)
    return out


def count_listed(c):
    """How many domains a paged list shows, following `more`."""
    r = c.call("list", {"paged": True})
    got = len(r["domains"])
    while r["more"]:
        r = c.call("list", {"names": r["more"]})
        got += len(r["domains"])
    return got


def test_startup_many():
    n, bad = 2600, ("m00007", "m01300", "m02599")
    dmn = Daemon(CORRALD, extra=["--client-inflight-max", "512"])
    try:
        dmn.start()
        c = dmn.client()
        names = ["m%05d" % i for i in range(n)]
        for r in windowed(c, [("define", {"config": vm_config(x, memory=16 + i)})
                              for i, x in enumerate(names)]):
            check(r[2] is None, "define: %r" % (r[2],))
        before = {x: c.call("info", {"name": x}) for x in names[::97]}
        c.close()
        dmn.stop()
        d = dmn.state + "/domains"
        for name in bad:
            with open("%s/%s.json" % (d, name), "w") as f:
                f.write('{"version": 2, "config": {"name": "%s", "memory": ' % name)
        dmn.start()
        c = dmn.client()
        want = {x: 16 + i for i, x in enumerate(names) if x not in bad}
        for x, r in zip(want, windowed(c, [("info", {"name": x}) for x in want])):
            check(r[2] is None, "%s: %r" % (x, r[2]))
            info = r[3]
            check(info["config"]["memory"] == want[x] and info["config"]["name"] == x,
                  "%s came back with another config: %r" % (x, info["config"]))
            if x in before:
                check(info["uuid"] == before[x]["uuid"] and
                      info["config"]["uuid"] == before[x]["config"]["uuid"],
                      "%s: UUID changed across the restart" % x)
        got = count_listed(c)
        check(got == len(want), "%d domains listed, want %d" % (got, len(want)))
        for name in bad:
            check(os.path.exists("%s/%s.json.corrupt" % (d, name)), "%s not moved aside" % name)
            check(c.err("info", {"name": name}) is not None, "%s loaded" % name)
        c.close()
        dmn.stop()
        # SIGTERM at some point of the load (a batch parsed, one being
        # defined, or before the handler is set): whatever it cuts short,
        # the next start finds every definition whole.
        for delay in (0.0, 0.03, 0.08):
            p = subprocess.Popen([CORRALD, "--socket", dmn.rw, "--ro-socket", dmn.ro,
                                  "--state-dir", dmn.state, "--runtime-dir", dmn.run] +
                                 dmn.extra, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(delay)
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=60)
            check(rc in (0, -signal.SIGTERM), "corrald stopped while loading: exit %d" % rc)
        dmn.start()
        c = dmn.client()
        got = count_listed(c)
        check(got == len(want), "after stops while loading: %d domains, want %d" %
              (got, len(want)))
        check(sorted(f for f in os.listdir(d) if f.endswith(".corrupt")) ==
              sorted("%s.json.corrupt" % x for x in bad), "only the corrupt ones set aside")
        c.close()
        dmn.stop()
    finally:
        dmn.cleanup()


# ---- disk formats ---------------------------------------------------------------------------------

def qemu_img(*args):
    subprocess.check_call(["qemu-img"] + list(args), stdout=subprocess.DEVNULL)


def test_disk_formats():
    dmn = Daemon(CORRALD).start()
    try:
        c = dmn.client()
        q = dmn.dir + "/d.qcow2"
        raw = dmn.dir + "/d.raw"
        top = dmn.dir + "/top.qcow2"
        qemu_img("create", "-f", "qcow2", q, "16M")
        qemu_img("create", "-f", "raw", raw, "16M")
        qemu_img("create", "-f", "qcow2", "-b", q, "-F", "qcow2", top)
        base = {"machine": "pc", "accel": "tcg", "memory": 64, "emulator": QEMU}
        c.call("define", {"config": dict(base, name="q", disks=[q])})
        disks = c.call("info", {"name": "q"})["config"]["disks"]
        check(disks[0]["format"] == "qcow2", "probed: %r" % disks)
        c.call("define", {"config": dict(base, name="r", disks=[raw])})
        check(c.call("info", {"name": "r"})["config"]["disks"][0]["format"] == "raw", "raw")
        e = c.err("define", {"config": dict(base, name="x", disks=[
            {"path": q, "format": "raw"}])}, 3)
        check("declared raw, but the image is qcow2" in e.message, e.message)
        e = c.err("define", {"config": dict(base, name="y", disks=[top])}, 3)
        check("backing file" in e.message, e.message)
        # QEMU is told qcow2: the guest sees the virtual disk, not the container.
        c.call("start", {"name": "q"})
        blocks = c.call("qmp", {"name": "q", "command": '{"execute": "query-block"}'})
        drv = [b["inserted"]["drv"] for b in blocks if b.get("inserted")]
        check(drv == ["qcow2"], "QEMU opened %r" % drv)
        c.call("destroy", {"name": "q"})
        dmn.stop()
    finally:
        dmn.cleanup()


TESTS = [test_crash_points, test_undefine_behind_start, test_define_undefine_race,
         test_readonly_state_dir, test_runtime_dir_full, test_hung_qemu_kept,
         test_ended_while_away, test_orphan_of_undefined, test_startup_robust,
         test_startup_many, test_disk_formats]


def main():
    global CORRALD, QEMU
    CORRALD, QEMU = sys.argv[1], sys.argv[2]
    if not QEMU:
        print("ownership: skipped (no QEMU)")
        return 0
    only = sys.argv[3:]
    return run_tests(TESTS, only)


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MIT
"""Hotplug, save and restore with the real guest of tests/guest under TCG.

    hotplug.py CORRALD CLI GUEST_JSON [CHECK...]

disks: a disk the guest sees appear (/sys/block) and go after detach; the
  live list in info; --persistent in the definition; bad input (unknown
  or taken target, a path attached twice, a path that is no file).
nics: a user NIC the guest sees appear (/sys/class/net) and go.
bridge: a NIC on a bridge in a network namespace made here: corrald's tap,
  passed with getfd, carries the guest's ping to the bridge; it goes with
  the detach.
stuck: a guest that never lets go (SeaBIOS, no OS): detach fails at its
  deadline with the disk still attached.
save: a guest counting on its console is saved (shutoff, reason saved),
  restored, and counts on from where it was in the same process.
full: a save into a file system that fills fails cleanly; the guest runs on.

Every wait is bounded and looks for an event (a console line, a state).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, wait_until, WAIT, mount_tmpfs  # noqa: E402

BOOT = 240.0
ERR_INVALID, ERR_BAD_STATE, ERR_TIMEOUT, ERR_STORAGE = 3, 8, 7, 15

CORRALD, CLI, GUEST = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
KERNEL = GUEST.get("kernel_pvh") or GUEST["kernel"]


def guest_config(name, **kw):
    cfg = {"name": name, "memory": 256, "accel": "tcg", "kernel": KERNEL,
           "initrd": GUEST["initrd"], "cmdline": GUEST["cmdline"]}
    cfg.update(kw)
    return cfg


class Console:
    def __init__(self, daemon, name):
        self.c = daemon.client()
        self.name = name
        self.sub = self.c.call("console.attach", {"name": name})["subscription"]
        self.buf = b""

    def pump(self, timeout):
        n = self.c.note(timeout)
        if n is None:
            return
        p = n[2][0]
        if n[1] == "console" and p.get("subscription") == self.sub:
            self.buf += p["data"]

    def expect(self, pattern, timeout=WAIT, start=0):
        pattern = pattern.encode() if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while self.buf.find(pattern, start) < 0:
            left = deadline - time.monotonic()
            check(left > 0, "console of %s: no %r within %.0f s; last output:\n%s"
                  % (self.name, pattern, timeout, self.buf[-1500:].decode(errors="replace")))
            self.pump(min(left, 5))
        return self.buf.index(pattern, start)

    def run(self, cmd, timeout=WAIT):
        mark = "M%x" % int(time.monotonic() * 1e6)
        start = len(self.buf)
        self.c.call("console.write", {"name": self.name,
                                      "data": ("%s; echo %s\"\"-end\n" % (cmd, mark)).encode()})
        end = self.expect(mark + "-end", timeout, start)
        return self.buf[start:end].decode(errors="replace")


def boot(d, cfg):
    c = d.client()
    c.call("define", {"config": cfg})
    c.call("start", {"name": cfg["name"]})
    con = Console(d, cfg["name"])
    con.expect(GUEST["ready_line"], BOOT)
    con.expect("corral-guest# ", BOOT)
    return con


def cli(d, *args, timeout=WAIT + 60):
    p = subprocess.run([CLI, "--socket", d.rw] + list(args), capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def image(path, mib=8):
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    os.chmod(path, 0o600)
    return path


def wait_sys(con, what, present, timeout=60):
    """Wait in the guest until path what exists (or is gone); ls of its folder."""
    cond = "[ ! -e %s ]" % what if present else "[ -e %s ]" % what
    out = con.run("n=0; while %s && [ $n -lt %d ]; do sleep 0.1; n=$((n+1)); done; "
                  "echo; echo ls: $(ls %s)" % (cond, timeout * 10, os.path.dirname(what)),
                  timeout + 30)
    return out[out.rindex("ls: "):]


# ---- checks ------------------------------------------------------------------------------

def check_disks(d, tmp):
    con = boot(d, guest_config("hp1"))
    c = d.client()
    img = image(tmp + "/data.img")
    rc, out, err = cli(d, "attach-disk", "hp1", img)
    check(rc == 0, "attach-disk: %d %s %s" % (rc, out, err))
    check("vda" in out, "attach-disk did not name its target: %r" % out)
    live = c.call("info", {"name": "hp1"})["live"]
    check([x["target"] for x in live["disks"]] == ["vda"] and live["disks"][0]["hotplugged"],
          "live disks: %r" % live)
    check(live["disks"][0]["format"] == "raw", "probed format: %r" % live["disks"][0])
    out = wait_sys(con, "/sys/block/vda", True)
    check("vda" in out, "the guest does not see the disk: %r" % out)
    out = con.run("cat /proc/partitions")
    check(re.search(r"\s8192\s+vda", out), "/proc/partitions: %r" % out)
    # The guest writes through it: the host file holds what it wrote.
    con.run("echo corral-hotplug-data > /dev/vda; sync")
    # Bad input: a clear error, nothing changes.
    e = c.err("attach-disk", {"name": "hp1", "path": img}, ERR_INVALID)
    check("already attached as vda" in e.message, e.message)
    img2 = image(tmp + "/data2.img")
    e = c.err("attach-disk", {"name": "hp1", "path": img2, "target": "vda"}, ERR_INVALID)
    check("target vda is taken" in e.message, e.message)
    e = c.err("attach-disk", {"name": "hp1", "path": img2, "target": "sdb"}, ERR_INVALID)
    check("not vda .. vdz" in e.message, e.message)
    e = c.err("attach-disk", {"name": "hp1", "path": tmp + "/nope.img"})
    check("No such file" in e.message, e.message)
    e = c.err("attach-disk", {"name": "hp1", "path": "relative.img"}, ERR_INVALID)
    check("absolute" in e.message, e.message)
    e = c.err("attach-disk", {"name": "hp1", "path": tmp}, ERR_INVALID)
    check("Is a directory" in e.message or "not a regular file" in e.message, e.message)
    e = c.err("detach-disk", {"name": "hp1", "target": "vdq"}, ERR_INVALID)
    check("no disk vdq" in e.message and "vda" in e.message, e.message)
    check(len(c.call("info", {"name": "hp1"})["live"]["disks"]) == 1, "a refusal changed it")
    # --persistent: in the definition too, for the next start.
    rc, out, err = cli(d, "attach-disk", "hp1", img2, "--ro", "--persistent")
    check(rc == 0, "attach-disk --persistent: %d %s %s" % (rc, out, err))
    info = c.call("info", {"name": "hp1"})
    check([x["path"] for x in info["config"]["disks"]] == [img2], "definition: %r" % info["config"])
    check(info["config"]["disks"][0]["readonly"], "ro not kept: %r" % info["config"])
    defn = json.load(open(d.state + "/domains/hp1.json"))
    check(defn["config"]["disks"][0]["path"] == img2, "file on disk: %r" % defn)
    check(len(info["live"]["disks"]) == 2, "live: %r" % info["live"])
    wait_sys(con, "/sys/block/vdb", True)
    # Detach: the guest lets go, the disk goes.
    rc, out, err = cli(d, "detach-disk", "hp1", "vda")
    check(rc == 0, "detach-disk: %d %s %s" % (rc, out, err))
    out = wait_sys(con, "/sys/block/vda", False)
    check("vda" not in out, "the guest still has vda: %r" % out)
    check([x["target"] for x in c.call("info", {"name": "hp1"})["live"]["disks"]] == ["vdb"],
          "live after detach: %r" % c.call("info", {"name": "hp1"})["live"])
    with open(img, "rb") as f:
        check(f.read(64).startswith(b"corral-hotplug-data"), "the guest's write is not there")
    # The same target again: the old nodes are gone.
    rc, out, err = cli(d, "attach-disk", "hp1", img, "--target", "vda")
    check(rc == 0, "attach-disk again: %d %s %s" % (rc, out, err))
    rc, out, err = cli(d, "detach-disk", "hp1", "vda")
    check(rc == 0, "detach-disk again: %d %s %s" % (rc, out, err))
    rc, out, err = cli(d, "detach-disk", "hp1", "vdb", "--persistent")
    check(rc == 0, "detach-disk --persistent: %d %s %s" % (rc, out, err))
    check(c.call("info", {"name": "hp1"})["config"]["disks"] == [], "definition kept it")
    # Shut off: only the definition, and only with --persistent.
    c.call("destroy", {"name": "hp1"})
    check(c.call("info", {"name": "hp1"})["live"] is None, "live of a shut-off domain")
    e = c.err("attach-disk", {"name": "hp1", "path": img}, ERR_BAD_STATE)
    check("persistent" in e.message, e.message)
    r = c.call("attach-disk", {"name": "hp1", "path": img, "persistent": True})
    check(r["target"] == "vda" and not r["live"] and r["persistent"], "offline attach: %r" % r)
    r = c.call("detach-disk", {"name": "hp1", "target": "vda", "persistent": True})
    check(c.call("info", {"name": "hp1"})["config"]["disks"] == [], "offline detach")
    c.call("undefine", {"name": "hp1"})
    print("disks: appear, go, persistent, bad input: ok")


def check_nics(d):
    con = boot(d, guest_config("hp2"))
    c = d.client()
    out = con.run("echo; echo ls: $(ls /sys/class/net)")
    out = out[out.rindex("ls: "):]
    check("eth0" not in out, "a NIC before any: %r" % out)
    rc, out, err = cli(d, "attach-nic", "hp2", "user", "--mac", "52:54:00:12:34:56")
    check(rc == 0, "attach-nic: %d %s %s" % (rc, out, err))
    out = wait_sys(con, "/sys/class/net/eth0", True)
    check("eth0" in out, "the guest has no NIC: %r" % out)
    out = con.run("cat /sys/class/net/eth0/address")
    check("52:54:00:12:34:56" in out, "its MAC: %r" % out)
    nics = c.call("info", {"name": "hp2"})["live"]["nics"]
    check([n["mac"] for n in nics] == ["52:54:00:12:34:56"], "live nics: %r" % nics)
    e = c.err("attach-nic", {"name": "hp2", "mac": "52:54:00:12:34:56"}, ERR_INVALID)
    check("already has a NIC" in e.message, e.message)
    e = c.err("attach-nic", {"name": "hp2", "spec": "user,hostfwd=tcp:x"}, ERR_INVALID)
    e = c.err("attach-nic", {"name": "hp2", "spec": "bridge=br-nope"})
    check("not one corrald lets guests join" in e.message, e.message)
    e = c.err("detach-nic", {"name": "hp2", "mac": "52:54:00:00:00:99"}, ERR_INVALID)
    rc, out, err = cli(d, "detach-nic", "hp2", "52:54:00:12:34:56")
    check(rc == 0, "detach-nic: %d %s %s" % (rc, out, err))
    out = wait_sys(con, "/sys/class/net/eth0", False)
    check("eth0" not in out, "the NIC is still there: %r" % out)
    check(c.call("info", {"name": "hp2"})["live"]["nics"] == [], "live nics after detach")
    c.call("destroy", {"name": "hp2"})
    # Shut off: the definition only; a MAC is made for it and kept.
    r = c.call("attach-nic", {"name": "hp2", "spec": "user,hostfwd=tcp:127.0.0.1:2222-:22",
                              "persistent": True})
    info = c.call("info", {"name": "hp2"})
    check(info["live"] is None and not r["live"], "a shut-off domain got live NICs: %r" % info)
    check([n["mac"] for n in info["config"]["nics"]] == [r["mac"]] and
          info["config"]["nics"][0]["hostfwd"] == ["tcp:127.0.0.1:2222-:22"],
          "definition: %r" % info["config"])
    c.call("detach-nic", {"name": "hp2", "mac": r["mac"].upper(), "persistent": True})
    check(c.call("info", {"name": "hp2"})["config"]["nics"] == [], "offline detach-nic")
    c.call("undefine", {"name": "hp2"})
    print("nics: appear, go, bad input: ok")


def check_bridge():
    ns = "crlhp%d" % os.getpid()
    subprocess.check_call(["ip", "netns", "add", ns])
    d = None
    try:
        def nsx(*a):
            return subprocess.check_output(["ip", "netns", "exec", ns] + list(a)).decode()
        nsx("ip", "link", "set", "lo", "up")
        nsx("ip", "link", "add", "br-t", "type", "bridge")
        nsx("ip", "addr", "add", "10.78.0.254/24", "dev", "br-t")
        nsx("ip", "link", "set", "br-t", "up")
        d = Daemon(CORRALD, tmpdir=tempfile.mkdtemp(prefix="cdh-", dir="/tmp"))
        log = "%s/corrald.1.log" % d.dir
        d.logs.append(log)
        with open(log, "w") as f:
            d.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, CORRALD, "--socket", d.rw, "--ro-socket", d.ro,
                 "--state-dir", d.state, "--runtime-dir", d.run, "--log-level", "debug",
                 "--allow-bridge", "br-t"] + os.environ.get("CORRALD_ARGS", "").split(),
                stdout=f, stderr=f)
        wait_until(lambda: os.path.exists(d.rw) and os.path.exists(d.ro), "corrald to listen")
        con = boot(d, guest_config("hb"))
        c = d.client()
        r = c.call("attach-nic", {"name": "hb", "spec": "bridge=br-t",
                                  "mac": "52:54:00:77:00:01"})
        check(r["live"] and r["bridge"] == "br-t", "attach-nic bridge: %r" % r)
        links = nsx("ip", "-o", "link", "show", "master", "br-t")
        check(links.count("crl") == 1, "the tap on the bridge: %r" % links)
        wait_sys(con, "/sys/class/net/eth0", True)
        out = con.run("ip addr add 10.78.0.1/24 dev eth0 && ip link set eth0 up && "
                      "ping -c 1 -W 10 10.78.0.254 >/dev/null && echo ping""-ok", timeout=60)
        check("ping-ok" in out, "the guest did not reach the bridge: %r" % out)
        c.call("detach-nic", {"name": "hb", "mac": "52:54:00:77:00:01"})
        wait_until(lambda: "crl" not in nsx("ip", "-o", "link"), "the tap to go")
        c.call("destroy", {"name": "hb"})
    finally:
        if d:
            d.cleanup()
        subprocess.call(["ip", "netns", "del", ns])
    print("bridge: a hot-plugged NIC on a bridge carries the guest's ping, its tap goes: ok")


def check_stuck(d, tmp):
    """No OS answers the unplug request: the detach fails at its deadline."""
    c = d.client()
    c.call("define", {"config": {"name": "hp3", "memory": 64, "accel": "tcg"}})
    c.call("start", {"name": "hp3"})
    img = image(tmp + "/stuck.img")
    c.call("attach-disk", {"name": "hp3", "path": img})
    t0 = time.monotonic()
    e = c.err("detach-disk", {"name": "hp3", "target": "vda", "timeout_ms": 3000}, ERR_TIMEOUT)
    check("still attached" in e.message, e.message)
    check(time.monotonic() - t0 < 30, "the deadline did not end it")
    live = c.call("info", {"name": "hp3"})["live"]
    check([x["target"] for x in live["disks"]] == ["vda"], "not listed any more: %r" % live)
    check(c.call("info", {"name": "hp3"})["job"] is None, "the domain is still held")
    c.call("destroy", {"name": "hp3"})
    c.call("undefine", {"name": "hp3"})
    print("a guest that does not let go: detach fails at its deadline, disk kept: ok")


def counter(con):
    out = con.run("cat /tmp/cnt.pid; tail -n 1 /tmp/cnt.log")
    m = re.search(r"(\d+)\s+cnt-(\d+)", out)
    check(m, "no counter: %r" % out)
    return int(m.group(1)), int(m.group(2))


def check_save(d, tmp):
    con = boot(d, guest_config("hp4"))
    c = d.client()
    con.run("(i=0; while :; do echo cnt-$i >> /tmp/cnt.log; i=$((i+1)); sleep 1; done) & "
            "echo $! > /tmp/cnt.pid")
    wait_until(lambda: counter(con)[1] >= 2, "the counter to count", timeout=60, step=1)
    pid, before = counter(con)
    f = tmp + "/hp4.state"
    ev = d.client()
    ev.call("events.subscribe", {"name": "hp4"})
    rc, out, err = cli(d, "--timeout", "240", "save", "hp4", f, timeout=300)
    check(rc == 0, "save: %d %s %s" % (rc, out, err))
    info = c.call("info", {"name": "hp4"})
    check(info["state"] == "shutoff" and info["reason"] == "saved", "after save: %r" % info)
    check(os.path.getsize(f) > 1 << 20, "the file is small: %d" % os.path.getsize(f))
    check(open(f, "rb").read(14) == b"CORRAL-SAVE 1\n", "its header")
    check(not d.qemus(), "QEMU still runs after the save")
    seen = []
    while True:
        n = ev.note(0.5)
        if n is None:
            break
        for e in n[2]:
            if isinstance(e, dict) and e.get("event") == "progress":
                seen.append(e["data"]["status"])
    check("completed" in seen, "no progress events: %r" % seen)
    rc, out, err = cli(d, "--timeout", "240", "restore", "hp4", f, timeout=300)
    check(rc == 0, "restore: %d %s %s" % (rc, out, err))
    info = c.call("info", {"name": "hp4"})
    check(info["state"] == "running" and info["reason"] == "restored", "after restore: %r" % info)
    con = Console(d, "hp4")
    wait_until(lambda: counter(con)[1] > before + 1, "the counter to go on", timeout=120, step=1)
    pid2, after = counter(con)
    check(pid2 == pid, "another process counts: %d, was %d" % (pid2, pid))
    log = con.run("cat /tmp/cnt.log | tr '\\n' ' '")
    nums = [int(x) for x in re.findall(r"cnt-(\d+)", log)]
    check(nums == list(range(len(nums))), "the count restarted or skipped back: %r" % nums[-20:])
    # A file of another domain, or none, is refused.
    c.call("destroy", {"name": "hp4"})
    c.call("define", {"config": guest_config("hp5")})
    e = c.err("restore", {"name": "hp5", "path": f}, ERR_INVALID)
    check("not of 'hp5'" in e.message, e.message)
    open(tmp + "/junk", "w").write("junk\n")
    e = c.err("restore", {"name": "hp5", "path": tmp + "/junk"}, ERR_INVALID)
    check("not a state saved by corral" in e.message, e.message)
    c.call("undefine", {"name": "hp5"})
    c.call("undefine", {"name": "hp4"})
    print("save and restore: a counting guest counts on (%d -> %d, pid %d): ok"
          % (before, after, pid))


def check_full(d, tmp):
    con = boot(d, guest_config("hp6"))
    c = d.client()
    small = tmp + "/small"
    mount_tmpfs(small, "1m")
    try:
        e = c.err("save", {"name": "hp6", "path": small + "/hp6.state"}, ERR_STORAGE)
        check("No space" in e.message and "runs on" in e.message, e.message)
        info = c.call("info", {"name": "hp6"})
        check(info["state"] == "running", "after a failed save: %r" % info)
        check(not os.path.exists(small + "/hp6.state"), "the partial file is left")
        out = con.run("echo still-alive")
        check("still-alive" in out, "the guest does not answer: %r" % out)
    finally:
        subprocess.call(["umount", "-l", small])
    c.call("destroy", {"name": "hp6"})
    c.call("undefine", {"name": "hp6"})
    print("save into a full file system: clean error, the guest runs on: ok")


def main():
    only = sys.argv[4:]
    d = Daemon(CORRALD)
    tmp = tempfile.mkdtemp(prefix="hp-", dir="/tmp")
    try:
        d.start()
        for name, fn in (("disks", lambda: check_disks(d, tmp)), ("nics", lambda: check_nics(d)),
                         ("stuck", lambda: check_stuck(d, tmp)),
                         ("bridge", check_bridge),
                         ("save", lambda: check_save(d, tmp)),
                         ("full", lambda: check_full(d, tmp))):
            if not only or name in only:
                fn()
        d.stop()        # exits 0 (under ASan: nothing leaked)
    except Exception:
        sys.stderr.write(d.log_text()[-6000:])
        raise
    finally:
        d.cleanup()
        subprocess.call(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()

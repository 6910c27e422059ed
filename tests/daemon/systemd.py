# SPDX-License-Identifier: MIT
"""corrald under systemd, without systemd as PID 1.

- socket activation through systemd-socket-activate: the read-write and the
  read-only socket are passed (FileDescriptorName rw, ro) and served, each
  with its own rights; an fd with an unknown name is refused with a clear
  message;
- Type=notify: a datagram socket standing in for the service manager gets
  READY=1 (after which both sockets answer), WATCHDOG=1 again and again
  (WATCHDOG_USEC), and STOPPING=1 at SIGTERM;
- KillMode=process: the main process alone gets SIGTERM; a running QEMU
  (-machine none) outlives it, the passed socket files stay, and a corrald
  activated again on the same paths re-attaches the VM;
- the unit files pass `systemd-analyze verify` where that can run.

Built without libsystemd (meson -Dsystemd=disabled), corrald must refuse
passed sockets with a message saying how to rebuild: that is checked instead.

Usage: systemd.py CORRALD SOCKET_ACTIVATE QEMU UNIT_DIR WITH_LIBSYSTEMD(yes|no)
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from corraltest import Client, Daemon, check, wait_until, WAIT


class Notify:
    """A NOTIFY_SOCKET listener: what corrald tells its service manager."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.msgs = []

    def wait(self, key, timeout=WAIT):
        """The first message (after those already seen) carrying key=..."""
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                raise AssertionError("no %s from corrald in %d s (got %r)" %
                                     (key, timeout, self.msgs))
            self.msgs.append(data)
            fields = dict(l.split("=", 1) for l in data.split("\n") if "=" in l)
            if key in fields:
                return fields


def activate(corrald, d, names, notify, extra_env=()):
    """corrald under systemd-socket-activate; it starts at the first connection."""
    log = open(d + "/corrald.log", "a")
    args = [SOCKET_ACTIVATE, "-l", d + "/rw.sock", "-l", d + "/ro.sock",
            "--fdname=" + names, "-E", "NOTIFY_SOCKET=" + notify.path]
    for e in extra_env:
        args += ["-E", e]
    args += [corrald, "--state-dir", d + "/state", "--runtime-dir", d + "/run",
             "--log-level", "debug"] + os.environ.get("CORRALD_ARGS", "").split()
    p = subprocess.Popen(args, stdout=log, stderr=log)
    wait_until(lambda: os.path.exists(d + "/rw.sock") and os.path.exists(d + "/ro.sock"),
               "systemd-socket-activate to listen")
    return p


def cgroups(pid):
    """controllers -> path of /proc/PID/cgroup."""
    out = {}
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctl, path = line.rstrip("\n").split(":", 2)
            out[ctl or "unified"] = path
    return out


def log_of(d):
    with open(d + "/corrald.log") as f:
        return f.read()


def vm(name):
    return {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}


def test_bad_name(d):
    n = Notify(d + "/notify-bad.sock")
    p = activate(CORRALD, d, "rw:bogus", n)
    try:
        Client(d + "/rw.sock").sock.close()      # the first connection starts it
    except OSError:
        pass
    rc = p.wait(timeout=WAIT)
    check(rc == 1, "corrald with a socket named 'bogus' exited %r" % rc)
    check("named 'bogus'" in log_of(d) and "FileDescriptorName" in log_of(d),
          "no clear message for an unknown socket name:\n" + log_of(d))
    n.sock.close()
    for s in ("rw.sock", "ro.sock"):
        os.unlink(d + "/" + s)
    print("ok: a socket with an unknown FileDescriptorName is refused, saying why")


def test_without_libsystemd(d):
    n = Notify(d + "/notify-nosd.sock")
    p = activate(CORRALD, d, "rw:ro", n)
    try:
        Client(d + "/rw.sock").sock.close()
    except OSError:
        pass
    rc = p.wait(timeout=WAIT)
    check(rc == 1, "corrald without libsystemd, given sockets, exited %r" % rc)
    check("built without libsystemd" in log_of(d) and "-Dsystemd=enabled" in log_of(d),
          "no clear message:\n" + log_of(d))
    n.sock.close()
    print("ok: built without libsystemd, passed sockets are refused, saying how to rebuild")


def test_activation(d):
    n = Notify(d + "/notify.sock")
    p = activate(CORRALD, d, "rw:ro", n, ["WATCHDOG_USEC=400000"])
    # Nothing runs until a client connects: this connect starts corrald,
    # and the call is answered once it serves.
    rw = Client(d + "/rw.sock")
    msgid = rw.send("daemon.info")
    ready = n.wait("READY")
    check(ready.get("READY") == "1" and "serving" in ready.get("STATUS", ""),
          "READY message: %r" % ready)
    info = rw.response(msgid)[3]
    check(info["pid"] == p.pid, "daemon.info pid %r, not the activated %d" % (info, p.pid))
    ro = Client(d + "/ro.sock")
    check(isinstance(ro.call("list"), list), "list on the read-only socket")
    e = ro.err("define", {"config": vm("v1")}, 9)
    check("read-only" in e.message, "define on ro: %r" % e)
    rw.call("define", {"config": vm("v1")})
    check("passed by the service manager" in log_of(d), "log says where the sockets came from")
    print("ok: activated; read-write and read-only sockets told apart by name")

    # The watchdog: keep-alives keep coming (every 200 ms here).
    for _ in range(3):
        n.wait("WATCHDOG")
    print("ok: READY=1, then WATCHDOG=1 repeatedly")

    res = rw.call("start", {"name": "v1"})
    qemu = res["pid"]
    # Where the QEMU sits: the hierarchies in which it shares corrald's group
    # are those a KillMode=control-group stop would kill it through.
    shared = sorted(set(cgroups(p.pid).items()) & set(cgroups(qemu).items()))
    print("note: QEMU shares corrald's control group in: %s" %
          (", ".join("%s:%s" % kv for kv in shared) or "none"))
    # KillMode=process: only the main process is signalled.
    p.send_signal(signal.SIGTERM)
    n.wait("STOPPING")
    rc = p.wait(timeout=WAIT)
    check(rc == 0, "corrald exited %r:\n%s" % (rc, log_of(d)))
    check(os.path.exists("/proc/%d" % qemu), "QEMU %d died with corrald" % qemu)
    check(os.path.exists(d + "/rw.sock") and os.path.exists(d + "/ro.sock"),
          "corrald removed the sockets the service manager owns")
    rw.close()
    ro.close()
    print("ok: STOPPING=1; SIGTERM to the main process leaves the VM running")

    # A restart: the service manager activates corrald again on the same paths.
    n.sock.close()
    os.unlink(n.path)
    for s in ("rw.sock", "ro.sock"):
        os.unlink(d + "/" + s)
    n = Notify(d + "/notify.sock")
    p = activate(CORRALD, d, "rw:ro", n)
    rw = Client(d + "/rw.sock")
    n.wait("READY")
    dom = rw.call("info", {"name": "v1"})
    check(dom["state"] == "running" and dom["pid"] == qemu,
          "after the restart: %r (QEMU %d)" % (dom, qemu))
    rw.call("destroy", {"name": "v1"})
    check(rw.call("info", {"name": "v1"})["state"] == "shutoff", "destroy after the restart")
    p.send_signal(signal.SIGTERM)
    check(p.wait(timeout=WAIT) == 0, "second corrald exit")
    print("ok: the restarted corrald re-attached the running VM")


def test_verify(unit_dir, d):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("skip: systemd-analyze verify (not installed)")
        return
    names = ("corrald.service", "corrald.socket", "corrald-ro.socket")
    xdg = d + "/xdg"
    os.makedirs(xdg, mode=0o700, exist_ok=True)
    for scope, units in (("system", [os.path.join(unit_dir, u) for u in names]),
                         ("user", [os.path.join(unit_dir, "user", u) for u in names])):
        # --man=no: the man pages are not installed while this runs from the
        # build tree; nor is ExecStart's corrald, the one complaint allowed.
        r = subprocess.run([analyze, "verify", "--man=no"] +
                           (["--user"] if scope == "user" else []) + units,
                           capture_output=True, text=True,
                           env=dict(os.environ, XDG_RUNTIME_DIR=xdg))
        out = (r.stdout + r.stderr).strip()
        if "Failed to initialize manager" in out:
            print("skip: systemd-analyze verify of the %s units cannot run here: %s" %
                  (scope, out.splitlines()[-1]))
            continue
        problems = [l for l in out.splitlines() if l.strip() and
                    not (l.startswith("corrald.service: Command ") and
                         l.endswith("/corrald is not executable: No such file or directory"))]
        check(not problems, "systemd-analyze verify (%s units):\n%s" % (scope, out))
        print("ok: systemd-analyze verify of the %s units" % scope)


if __name__ == "__main__":
    CORRALD, SOCKET_ACTIVATE, QEMU, UNIT_DIR, WITH_LIBSYSTEMD = sys.argv[1:6]
    d = tempfile.mkdtemp(prefix="cd-sd-", dir="/tmp")
    try:
        test_verify(UNIT_DIR, d)
        if not SOCKET_ACTIVATE:
            print("skip: systemd-socket-activate is not installed")
            sys.exit(77)
        if not QEMU:
            print("skip: no qemu-system-x86_64")
            sys.exit(77)
        if WITH_LIBSYSTEMD != "yes":
            test_without_libsystemd(d)
            sys.exit(0)
        test_bad_name(d)
        test_activation(d)
    finally:
        left = Daemon(CORRALD, tmpdir=d)      # for its QEMU finder and clean-up
        left.run = d + "/run"
        left.cleanup()

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The trust boundary, tried as a hostile member of the socket group would.

Usage: security.py CORRALD CORRAL_CLI QEMU [TEST...]

Needs root: it creates two unprivileged users and a group for the run
(removed afterwards), starts corrald as root with --socket-group, and makes
its calls as one of those users.  Each attack must fail with a clear error
(mostly `permission`) and change nothing:

  own_emulator       a definition naming the caller's own program
  foreign_files      a disk, kernel or initrd the caller cannot read
  attach_pid         attach with the pid of a root process; destroy of an
                     attached process that is no QEMU
  impostor_socket    a CLI whose session socket directory another user made
  squatted_dirs      a runtime dir owned by another user; a pid file that is
                     a symbolic link; two daemons on one state dir
  qemu_confined      QEMU runs unprivileged, seccomp'd, in a cgroup with the
                     definition's limits, gone after
  qmp_root_only      the qmp method from a group member of a root daemon
  distinct_files     the files of domains "x" and "x.console" never mix
  accel_as_qemu      accel "auto" and "kvm" judge /dev/kvm as QEMU's user
                     would, not as root (a /dev/kvm of mode 0600)

Exits 0 when every test passes (or 0 with "skipped" when not root), 1
otherwise.
"""
import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, run_tests  # noqa: E402

CORRALD = CLI = QEMU = None
ERR_PERMISSION = 9
USER = USER2 = GROUP = None


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


def setup_users():
    global USER, USER2, GROUP
    tag = "%x" % (os.getpid() & 0xffff)
    GROUP = "corral-tg" + tag
    USER = "corral-tu" + tag
    USER2 = "corral-tv" + tag
    sh("groupadd", GROUP)
    for u in (USER, USER2):
        sh("useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
           "/usr/sbin/nologin", "--user-group", u)
    sh("usermod", "-a", "-G", GROUP, USER)


def teardown_users():
    for u in (USER, USER2):
        if u:
            subprocess.call(["pkill", "-KILL", "-u", u])
            subprocess.call(["userdel", u], stderr=subprocess.DEVNULL)
    if GROUP:
        subprocess.call(["groupdel", GROUP], stderr=subprocess.DEVNULL)


def as_user(user, argv, env=None, timeout=60, check_rc=False):
    """Run argv as user (its groups included); returns the CompletedProcess."""
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}
    if env:
        e.update(env)
    p = subprocess.run(["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups",
                        "--"] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=e, timeout=timeout)
    if check_rc:
        check(p.returncode == 0, "%r as %s: %s%s" % (argv, user, p.stdout, p.stderr))
    return p


CALLER = r'''
import json, socket, sys
sys.path.insert(0, %r)
import msgpack
s = socket.socket(socket.AF_UNIX); s.connect(%r); s.settimeout(60)
u = msgpack.Unpacker(raw=False)
out = []
for i, (m, p) in enumerate(json.loads(sys.argv[1])):
    s.sendall(msgpack.packb([0, i, m, [p]]))
    while True:
        r = next(iter(u), None)
        if r is not None:
            break
        d = s.recv(65536)
        if not d:
            out.append({"eof": True}); break
        u.feed(d)
    if r is None:
        break
    out.append({"error": r[2], "result": r[3]})
print(json.dumps(out))
'''


def calls_as(user, sock, calls):
    """A list of (method, params) made by user on sock; [{error, result}]."""
    code = CALLER % (os.path.dirname(os.path.abspath(__file__)), sock)
    p = as_user(user, ["/usr/bin/python3", "-c", code, json.dumps(calls)])
    check(p.returncode == 0, "caller failed: %s %s" % (p.stdout, p.stderr))
    return json.loads(p.stdout)


def group_daemon():
    """corrald as root, sockets usable by GROUP."""
    d = Daemon(CORRALD, extra=["--socket-group", GROUP])
    os.chmod(d.dir, 0o711)          # the group may reach the sockets, nothing else
    return d.start()


def perm_error(r, what, text=None):
    e = r.get("error")
    check(e is not None and e[0] == ERR_PERMISSION, "%s: expected permission, got %r" % (what, r))
    if text:
        check(text in e[1], "%s: %r does not say %r" % (what, e[1], text))


# ---- tests ---------------------------------------------------------------------------

def test_own_emulator():
    d = group_daemon()
    try:
        evil = d.dir + "/evil.sh"
        with open(evil, "w") as f:
            f.write("#!/bin/sh\ntouch %s/pwned\n" % d.dir)
        os.chmod(evil, 0o755)
        pw = pwd.getpwnam(USER)
        os.chown(evil, pw.pw_uid, pw.pw_gid)
        r = calls_as(USER, d.rw, [["define", {"config": {"name": "e1", "emulator": evil}}],
                                  ["define", {"config": {"name": "e2",
                                                         "emulator": "/bin/sh"}}],
                                  ["list", {}]])
        perm_error(r[0], "own emulator", "not one this daemon runs")
        perm_error(r[1], "/bin/sh as emulator")
        check(r[2]["result"] == [], "something was defined: %r" % r[2])
        check(not os.path.exists(d.dir + "/pwned"), "the script ran")
        d.stop()
    finally:
        d.cleanup()


def test_foreign_files():
    d = group_daemon()
    try:
        base = {"machine": "pc", "accel": "tcg", "memory": 64, "emulator": QEMU}
        r = calls_as(USER, d.rw, [
            ["define", {"config": dict(base, name="f1", disks=["/etc/shadow"])}],
            ["define", {"config": dict(base, name="f2", disks=[
                {"path": "/etc/shadow", "format": "raw"}])}],
            ["define", {"config": dict(base, name="f3", kernel="/etc/shadow")}],
            ["start", {"name": "f3"}],
            ["define", {"config": dict(base, name="f4", kernel="/boot/none",
                                       initrd="/etc/shadow")}],
            ["list", {}]])
        perm_error(r[0], "disk /etc/shadow", "Permission denied")
        perm_error(r[1], "disk /etc/shadow declared raw", "Permission denied")
        check(r[2]["error"] is None, "define f3: %r" % r[2])
        perm_error(r[3], "start with kernel /etc/shadow", "Permission denied")
        check([x["name"] for x in r[5]["result"]] == ["f3", "f4"], "defined: %r" % r[5])
        check(not d.qemus(), "a QEMU was started: %r" % d.qemus())
        # The owner is recorded: root starting f3 later still opens files as the owner.
        c = d.client()
        e = c.err("start", {"name": "f3"}, ERR_PERMISSION)
        check("Permission denied" in e.message, e.message)
        check(not d.qemus(), "a QEMU was started for root")
        d.stop()
    finally:
        d.cleanup()


def test_hotplug_foreign():
    """Hotplug, save and restore open files as the caller, never as corrald."""
    d = group_daemon()
    try:
        base = {"machine": "pc", "accel": "tcg", "memory": 64, "emulator": QEMU}
        r = calls_as(USER, d.rw, [
            ["define", {"config": dict(base, name="h1")}],
            ["start", {"name": "h1"}],
            ["attach-disk", {"name": "h1", "path": "/etc/shadow"}],
            ["attach-disk", {"name": "h1", "path": "/etc/shadow", "format": "raw",
                             "persistent": True}],
            ["save", {"name": "h1", "path": "/etc/corral-h1.state"}],
            ["define", {"config": dict(base, name="h2")}],
            ["restore", {"name": "h2", "path": "/etc/shadow"}],
            ["info", {"name": "h1"}]])
        check(r[1]["error"] is None, "start h1: %r" % r[1])
        perm_error(r[2], "attach-disk /etc/shadow", "Permission denied")
        perm_error(r[3], "attach-disk /etc/shadow --persistent", "Permission denied")
        perm_error(r[4], "save into /etc", "Permission denied")
        check(not os.path.exists("/etc/corral-h1.state"), "a save file was made in /etc")
        perm_error(r[6], "restore from /etc/shadow", "Permission denied")
        info = r[7]["result"]
        check(info["state"] == "running" and info["live"]["disks"] == [] and
              info["config"]["disks"] == [], "h1 changed: %r" % info)
        d.client().call("destroy", {"name": "h1"})
        d.stop()
    finally:
        d.cleanup()


FAKE_QMP = r'''
import json, os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX); s.bind(p); s.listen(4)
print("ready", flush=True)
def serve(c):
    c.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n')
    buf = b""
    while True:
        d = c.recv(4096)
        if not d:
            return
        buf += d
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = json.loads(line)
            ret = {"status": "running", "running": True} if cmd["execute"] == "query-status" else {}
            c.sendall(json.dumps({"return": ret, "id": cmd.get("id")}).encode() + b"\r\n")
while True:
    c, _ = s.accept()
    try:
        serve(c)
    except OSError:
        pass
    c.close()
'''


def test_attach_pid():
    d = group_daemon()
    fake = victim = None
    try:
        # A root process the member would like killed.
        victim = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        sockdir = tempfile.mkdtemp(prefix="corral-fake-", dir="/tmp")
        pw = pwd.getpwnam(USER)
        os.chown(sockdir, pw.pw_uid, pw.pw_gid)
        sock = sockdir + "/fake.qmp"
        fake = subprocess.Popen(["setpriv", "--reuid=" + USER, "--regid=" + USER,
                                 "--init-groups", "--", "/usr/bin/python3", "-c", FAKE_QMP,
                                 sock], stdout=subprocess.PIPE, text=True)
        check(fake.stdout.readline().strip() == "ready", "the fake QMP server did not start")
        r = calls_as(USER, d.rw, [
            ["attach", {"name": "a1", "qmp_socket": sock, "pid": victim.pid}],
            ["attach", {"name": "a2", "qmp_socket": sock}],
            ["destroy", {"name": "a2"}],
            ["info", {"name": "a2"}]])
        e = r[0]["error"]
        check(e is not None and "not %d" % victim.pid in e[1],
              "attach with a root pid: %r" % r[0])
        check(r[1]["error"] is None, "attach to the member's own process: %r" % r[1])
        check(r[1]["result"]["pid"] == fake.pid, "attached pid %r, fake %d"
              % (r[1]["result"], fake.pid))
        check(r[2]["error"] is None and r[2]["result"]["reason"] == "detached",
              "destroy of a process that is no QEMU: %r" % r[2])
        time.sleep(0.2)
        check(victim.poll() is None, "the root process was killed")
        check(fake.poll() is None, "the fake server (not a QEMU) was killed")
        # A socket the member cannot reach (root's, mode 0600): refused as well.
        root_sock = d.dir + "/root.qmp"
        rs = socket.socket(socket.AF_UNIX)
        rs.bind(root_sock)
        rs.listen(1)
        os.chmod(root_sock, 0o600)
        r = calls_as(USER, d.rw, [["attach", {"name": "a3", "qmp_socket": root_sock}]])
        perm_error(r[0], "attach to root's socket")
        rs.close()
        victim.kill()
        victim.wait()
        d.stop()
    finally:
        if fake:
            fake.kill()
            fake.wait()
        if victim:
            victim.kill()
            victim.wait()
        d.cleanup()


def test_impostor_socket():
    pw2 = pwd.getpwnam(USER2)
    uid = pwd.getpwnam(USER).pw_uid
    rundir = "/tmp/corral-%d" % uid
    subprocess.call(["rm", "-rf", rundir])
    server = None
    try:
        # USER2 makes USER's session directory first, and listens in it.
        os.mkdir(rundir, 0o755)
        os.chown(rundir, pw2.pw_uid, pw2.pw_gid)
        server = subprocess.Popen(
            ["setpriv", "--reuid=" + USER2, "--regid=" + USER2, "--init-groups", "--",
             "/usr/bin/python3", "-c",
             "import socket,os,sys\n"
             "s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1],0o777)\n"
             "s.listen(4); print('ready', flush=True)\n"
             "c,_=s.accept(); c.settimeout(3)\n"
             "try:\n  d=c.recv(4096)\nexcept Exception:\n  d=b''\n"
             "open(sys.argv[2],'w').write(repr(d))\n",
             rundir + "/corral.sock", "/tmp/corral-impostor-got"],
            stdout=subprocess.PIPE, text=True)
        check(server.stdout.readline().strip() == "ready", "impostor did not start")
        p = as_user(USER, [CLI, "define", "secret", "--kernel", "/boot/k", "--cmdline",
                           "password=hunter2", "--machine", "pc"])
        check(p.returncode == 7, "the CLI talked to an impostor: rc %d %s %s"
              % (p.returncode, p.stdout, p.stderr))
        check("refusing" in p.stderr and "nothing was sent" in p.stderr, p.stderr)
        server.wait(timeout=10)
        with open("/tmp/corral-impostor-got") as f:
            got = f.read()
        check(got == "b''", "the impostor received %s" % got)
        # corrald as USER refuses the squatted runtime dir too.
        p = as_user(USER, [CORRALD, "--state-dir", "/tmp/corral-st-%d" % uid],
                    timeout=30)
        check(p.returncode != 0 and "owned by uid %d" % pw2.pw_uid in p.stderr,
              "corrald used a squatted runtime dir: %d %s" % (p.returncode, p.stderr))
    finally:
        if server and server.poll() is None:
            server.kill()
            server.wait()
        subprocess.call(["rm", "-rf", rundir, "/tmp/corral-impostor-got",
                         "/tmp/corral-st-%d" % uid])


def test_squatted_dirs():
    d = Daemon(CORRALD)
    try:
        os.makedirs(d.run, 0o700)
        victim = d.dir + "/victim"
        with open(victim, "w") as f:
            f.write("precious\n")
        os.symlink(victim, d.run + "/corrald.pid")
        p = subprocess.run([CORRALD, "--socket", d.rw, "--ro-socket", d.ro, "--state-dir",
                            d.state, "--runtime-dir", d.run], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        check(p.returncode != 0, "corrald started with its pid file a symlink")
        with open(victim) as f:
            check(f.read() == "precious\n", "the victim file was overwritten")
        os.unlink(d.run + "/corrald.pid")
        # A runtime dir others may write.
        os.chmod(d.run, 0o777)
        p = subprocess.run([CORRALD, "--socket", d.rw, "--ro-socket", d.ro, "--state-dir",
                            d.state, "--runtime-dir", d.run], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        check(p.returncode != 0 and "writable by others" in p.stderr,
              "corrald used a world-writable runtime dir: %s" % p.stderr)
        os.chmod(d.run, 0o700)
        # Two daemons, one state dir (each with its own runtime dir and sockets).
        d.start()
        p = subprocess.run([CORRALD, "--socket", d.dir + "/b.sock", "--ro-socket",
                            d.dir + "/b-ro.sock", "--state-dir", d.state, "--runtime-dir",
                            d.dir + "/run-b"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        check(p.returncode != 0 and "in use by another corrald" in p.stderr,
              "a second daemon shared the state dir: %s" % p.stderr)
        d.stop()
    finally:
        d.cleanup()


def test_qemu_confined():
    d = group_daemon()
    try:
        c = d.client()
        c.call("define", {"config": {"name": "c1", "machine": "none", "accel": "tcg",
                                     "memory": 32, "emulator": QEMU,
                                     "limits": {"memory": "300M", "cpus": 0.5}}})
        pid = c.call("start", {"name": "c1"})["pid"]
        status = dict(l.split(":", 1) for l in open("/proc/%d/status" % pid).read().splitlines()
                      if ":" in l)
        uids = status["Uid"].split()
        check(all(u != "0" for u in uids), "QEMU runs with uids %r" % uids)
        check(status["Seccomp"].strip() == "2", "no seccomp: %r" % status["Seccomp"])
        check(status["NoNewPrivs"].strip() == "1", "no no_new_privs")
        check(int(status["CapEff"], 16) == 0, "QEMU keeps capabilities")
        cg = [l.split(":", 2) for l in open("/proc/%d/cgroup" % pid).read().splitlines()]
        mem = [x[2] for x in cg if x[1] == "memory" or (x[0] == "0" and x[1] == "")]
        path = None
        for m in mem:
            for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup"):
                p = root + m
                if m.endswith("/c1") and os.path.isdir(p):
                    path = p
        check(path, "QEMU is in no c1 cgroup: %r" % cg)
        lim = None
        for f in ("memory.limit_in_bytes", "memory.max"):
            if os.path.exists(path + "/" + f):
                lim = int(open(path + "/" + f).read())
        check(lim == 300 << 20, "memory limit %r, not 300 MiB" % lim)
        c.call("destroy", {"name": "c1"})
        check(not os.path.isdir(path), "the cgroup %s outlived its QEMU" % path)
        d.stop()
    finally:
        d.cleanup()


def test_qmp_root_only():
    d = group_daemon()
    try:
        c = d.client()
        c.call("define", {"config": {"name": "q1", "machine": "none", "accel": "tcg",
                                     "memory": 32, "emulator": QEMU}})
        c.call("start", {"name": "q1"})
        r = calls_as(USER, d.rw, [["qmp", {"name": "q1",
                                           "command": '{"execute": "query-status"}'}],
                                  ["suspend", {"name": "q1"}]])
        perm_error(r[0], "qmp by a group member", "root only")
        check(r[1]["error"] is None, "a member may suspend: %r" % r[1])
        # Someone outside the group is not even taken on.
        p = as_user(USER2, ["/usr/bin/python3", "-c",
                            "import socket,sys; s=socket.socket(socket.AF_UNIX)\n"
                            "s.connect(sys.argv[1])", d.rw])
        check(p.returncode != 0, "a non-member connected")
        c.call("destroy", {"name": "q1"})
        d.stop()
    finally:
        d.cleanup()


def test_distinct_files():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        for n in ("x", "x.console", "x.qemu"):
            c.call("define", {"config": {"name": n, "machine": "none", "accel": "tcg",
                                         "memory": 32, "emulator": QEMU}})
            c.call("start", {"name": n})
        logs = sorted(os.listdir(d.state + "/logs"))
        want = sorted(n + s for n in ("x", "x.console", "x.qemu")
                      for s in (".qemu.log", ".console.log"))
        check(logs == want, "log files %r" % logs)
        check(len(set(logs)) == 6, "files shared")
        for n in ("x", "x.console", "x.qemu"):
            c.call("destroy", {"name": n})
        d.stop()
    finally:
        d.cleanup()


KVM_PROBE = r'''
import fcntl, os
fd = os.open("/dev/kvm", os.O_RDWR)
assert fcntl.ioctl(fd, 0xAE00, 0) == 12         # KVM_GET_API_VERSION
os.close(fcntl.ioctl(fd, 0xAE01, 0))            # KVM_CREATE_VM
'''


def qemu_accel(pid):
    argv = open("/proc/%d/cmdline" % pid).read().split("\0")
    return argv[argv.index("-accel") + 1].split(",")[0] if "-accel" in argv else None


def test_accel_as_qemu():
    d = Daemon(CORRALD).start()
    try:
        c = d.client()
        user = "corral-qemu"
        pwd.getpwnam(user)
        usable = as_user(user, ["/usr/bin/python3", "-c", KVM_PROBE]).returncode == 0
        c.call("define", {"config": {"name": "a1", "machine": "none", "accel": "auto",
                                     "memory": 32, "emulator": QEMU}})
        m = c.response(c.send("start", {"name": "a1"}))
        check(m[2] is None, "accel auto: start failed: %r" % (m[2],))
        got = qemu_accel(m[3]["pid"])
        check(got == ("kvm" if usable else "tcg"),
              "accel auto gave %r; /dev/kvm usable by %s: %s" % (got, user, usable))
        c.call("destroy", {"name": "a1"})
        c.call("define", {"config": {"name": "a2", "machine": "none", "accel": "kvm",
                                     "memory": 32, "emulator": QEMU}})
        m = c.response(c.send("start", {"name": "a2"}))
        if usable:
            check(m[2] is None, "accel kvm: start failed: %r" % (m[2],))
            c.call("destroy", {"name": "a2"})
        else:
            check(m[2] is not None and "/dev/kvm" in m[2][1],
                  "accel kvm, /dev/kvm unusable by QEMU's user: %r" % (m[2],))
        d.stop()
    finally:
        d.cleanup()


TESTS = [test_own_emulator, test_foreign_files, test_hotplug_foreign, test_attach_pid, test_impostor_socket,
         test_squatted_dirs, test_qemu_confined, test_qmp_root_only, test_distinct_files,
         test_accel_as_qemu]


def main():
    global CORRALD, CLI, QEMU
    CORRALD, CLI, QEMU = sys.argv[1:4]
    if os.geteuid() != 0:
        print("security: skipped (needs root to create users)")
        return 0
    if not QEMU:
        print("security: skipped (no QEMU)")
        return 0
    only = sys.argv[4:]
    try:
        setup_users()
        return run_tests(TESTS, only)
    finally:
        teardown_users()


if __name__ == "__main__":
    sys.exit(main())

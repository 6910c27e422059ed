# SPDX-License-Identifier: MIT
"""A small harness for end-to-end tests of corrald written in Python.

Debian's python3-msgpack and the standard library only.  It starts the real
corrald in a directory of its own, talks msgpack-RPC to it, kills it as
`kill -9` would, and inspects what a crash can leave behind: QEMU
processes (found through the CORRAL_RUNTIME_DIR in their environment),
zombies, run records, sockets and definitions.

Every wait has a generous bound (WAIT seconds); failures raise
AssertionError with a message.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack

WAIT = 60.0


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_until(pred, what, timeout=WAIT, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(step)


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__("[%d] %s" % (code, message))
        self.code = code
        self.message = message


class Client:
    def __init__(self, path, timeout=WAIT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.next_id = 0
        self.early = {}
        self.notes = []     # notifications that came while waiting for responses

    def close(self):
        self.sock.close()

    def send(self, method, params=None):
        self.next_id += 1
        self.sock.sendall(msgpack.packb([0, self.next_id, method,
                                         [] if params is None else [params]]))
        return self.next_id

    def recv(self):
        while True:
            for msg in self.unpacker:
                return msg
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("corrald closed the connection")
            self.unpacker.feed(data)

    def response(self, msgid):
        if msgid in self.early:
            return self.early.pop(msgid)
        while True:
            m = self.recv()
            if m[0] == 2:
                self.notes.append(m)
                continue
            if m[0] != 1:
                continue
            if m[1] == msgid:
                return m
            self.early[m[1]] = m

    def note(self, timeout=WAIT):
        """The next notification [2, method, params], or None at the timeout."""
        if self.notes:
            return self.notes.pop(0)
        self.sock.settimeout(timeout)
        try:
            while True:
                m = self.recv()
                if m[0] == 2:
                    return m
                if m[0] == 1:
                    self.early[m[1]] = m
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(WAIT)

    def call(self, method, params=None):
        m = self.response(self.send(method, params))
        if m[2] is not None:
            raise RpcError(m[2][0], m[2][1])
        return m[3]

    def err(self, method, params, code=None):
        try:
            r = self.call(method, params)
        except RpcError as e:
            check(code is None or e.code == code,
                  "%s %r: expected error %r, got %r" % (method, params, code, e))
            return e
        raise AssertionError("%s %r succeeded: %r" % (method, params, r))


class Daemon:
    """corrald with its own state and runtime directories under self.dir."""

    def __init__(self, corrald, tmpdir=None, extra=(), env=None):
        self.corrald = corrald
        self.dir = tmpdir or tempfile.mkdtemp(prefix="cd-", dir="/tmp")
        self.state = self.dir + "/state"
        self.run = self.dir + "/run"
        self.rw = self.dir + "/rw.sock"
        self.ro = self.dir + "/ro.sock"
        # CORRALD_ARGS: flags for every daemon of a run (the TSan run adds
        # --io-threads 2 --workers 2, so that two loops and two workers race).
        self.extra = os.environ.get("CORRALD_ARGS", "").split() + list(extra)
        self.env = env
        self.proc = None
        self.logs = []
        self.nstarts = 0

    def start(self, crash_point=None, extra=()):
        env = dict(os.environ if self.env is None else self.env)
        env.pop("CORRAL_CRASH_POINT", None)
        if crash_point:
            env["CORRAL_CRASH_POINT"] = crash_point
        self.nstarts += 1
        log = "%s/corrald.%d.log" % (self.dir, self.nstarts)
        self.logs.append(log)
        with open(log, "w") as f:
            self.proc = subprocess.Popen(
                [self.corrald, "--socket", self.rw, "--ro-socket", self.ro,
                 "--state-dir", self.state, "--runtime-dir", self.run,
                 "--log-level", "debug"] + self.extra + list(extra),
                stdout=f, stderr=f, env=env)

        def up():
            check(self.proc.poll() is None,
                  "corrald exited early (%s):\n%s" % (self.proc.returncode, self.log_text()))
            for path in (self.rw, self.ro):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(path)
                except OSError:
                    return False
                finally:
                    s.close()
            return True
        wait_until(up, "corrald to listen")
        return self

    def client(self, ro=False):
        return Client(self.ro if ro else self.rw)

    def log_text(self):
        out = []
        for log in self.logs:
            try:
                with open(log) as f:
                    out.append(f.read())
            except OSError:
                pass
        return "".join(out)

    def stop(self):
        """SIGTERM: it must exit 0, leaving running VMs alone."""
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("corrald ignored SIGTERM:\n" + self.log_text()[-4000:])
        check(rc == 0, "corrald exited %d:\n%s" % (rc, self.log_text()[-4000:]))

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_dead(self, timeout=WAIT):
        """The daemon must die by itself (a crash point)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("corrald did not reach its crash point")
        check(rc == -signal.SIGKILL, "corrald exited %r, not by its crash point" % rc)

    def qemus(self):
        """pid -> environment of every process carrying this runtime dir."""
        found = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            env = {}
            for kv in raw.split(b"\0"):
                if b"=" in kv:
                    k, v = kv.split(b"=", 1)
                    env[k.decode(errors="replace")] = v.decode(errors="replace")
            if env.get("CORRAL_RUNTIME_DIR") == self.run and not is_zombie(int(d)):
                found[int(d)] = env
        return found

    def kill_qemus(self):
        for pid in self.qemus():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        wait_until(lambda: not self.qemus(), "QEMUs to die", timeout=20)

    def cleanup(self):
        self.kill9()
        try:
            self.kill_qemus()
        finally:
            for m in mounts_under(self.dir):
                subprocess.call(["umount", "-l", m])
            shutil.rmtree(self.dir, ignore_errors=True)


def define_by_files(d, names):
    """Shut-off domains (machine none) for d, written as definition files
    before it starts: thousands in a second, where define calls would take
    minutes."""
    import uuid
    os.makedirs(d.state + "/domains", mode=0o700, exist_ok=True)
    for name in names:
        with open("%s/domains/%s.json" % (d.state, name), "w") as f:
            json.dump({"version": 2, "autostart": False,
                       "owner": {"uid": 0, "gid": 0, "groups": []},
                       "config": {"name": name, "machine": "none", "memory": 16,
                                  "uuid": str(uuid.uuid4())}}, f)


def is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return s[s.rindex(")") + 2] == "Z"
    except (OSError, ValueError):
        return False


def zombies_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == ppid:
            out.append(int(d))
    return out


def mounts_under(path):
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1]
            if mp == path or mp.startswith(path + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def can_mount():
    return os.geteuid() == 0


def mount_tmpfs(path, size="4m"):
    os.makedirs(path, exist_ok=True)
    subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size,
                           "tmpfs", path])


def remount(path, opts):
    subprocess.check_call(["mount", "-o", "remount," + opts, path])


def json_files_valid(d):
    """Every file in d that ends in .json parses; returns their names."""
    names = []
    if not os.path.isdir(d):
        return names
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if n.endswith(".json"):
            with open(p) as f:
                try:
                    json.load(f)
                except ValueError as e:
                    raise AssertionError("%s is not valid JSON: %s" % (p, e))
            names.append(n)
    return names


def run_tests(tests, only, skip=None):
    """Run each test of tests (only those named in only, when it names any):
    an "ok" or "FAIL" line each, with the time and any traceback, or "skip"
    with the reason skip(test) gives; then 0 if every one passed, else 1.
    Every test runs even after a failure."""
    failed = 0
    for t in tests:
        name = t.__name__[len("test_"):]
        if only and name not in only:
            continue
        why = skip(t) if skip else None
        if why:
            print("skip %s (%s)" % (name, why))
            continue
        t0 = time.monotonic()
        try:
            t()
            print("ok   %s (%.1f s)" % (name, time.monotonic() - t0))
        except Exception:  # noqa: BLE001 - report any failure, go on
            failed += 1
            print("FAIL %s (%.1f s)" % (name, time.monotonic() - t0))
            traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
    return 1 if failed else 0

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An independent client of corrald: Debian's python3-msgpack, nothing of ours.

Usage: pyclient.py CORRALD CORRAL_QMP_SIM

Starts corrald (and the QMP simulator, for a job that hangs) in a temporary
directory, then: define, list, info, undefine; pipelined requests answered
out of order and matched by msgid; errors as [code, message]; the read-only
socket.  Exits 0 on success, 1 with a message otherwise.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

WAIT = 30.0  # seconds; generous for a loaded machine


class Client:
    def __init__(self, path):
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.sock.settimeout(WAIT)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.next_id = 0

    def send(self, method, params=None):
        self.next_id += 1
        self.sock.sendall(msgpack.packb([0, self.next_id, method, [] if params is None else [params]]))
        return self.next_id

    def recv(self):
        while True:
            for msg in self.unpacker:
                return msg
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("corrald closed the connection")
            self.unpacker.feed(data)

    def response(self):
        while True:
            msg = self.recv()
            if msg[0] == 1:
                return msg

    def call(self, method, params=None):
        msgid = self.send(method, params)
        msg = self.response()
        check(msg[1] == msgid, "response %r to request %d" % (msg, msgid))
        return msg[2], msg[3]

    def ok(self, method, params=None):
        err, result = self.call(method, params)
        check(err is None, "%s %r failed: %r" % (method, params, err))
        return result

    def err(self, method, params, code):
        err, _ = self.call(method, params)
        check(isinstance(err, list) and len(err) == 2, "%s: no error: %r" % (method, err))
        check(err[0] == code and isinstance(err[1], str) and err[1],
              "%s: expected code %d, got %r" % (method, code, err))
        return err[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_socket(path, proc):
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        check(proc.poll() is None, "corrald exited early")
        check(time.monotonic() < deadline, "corrald did not listen")
        time.sleep(0.02)


def main():
    corrald, sim = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="corrald-py-", dir="/tmp")
    procs = []
    try:
        simp = subprocess.Popen([sim, "--dir", tmp + "/qmp", "--count", "1",
                                 "--hang", "always"], stdout=subprocess.PIPE, text=True)
        procs.append(simp)
        check(simp.stdout.readline().strip() == "ready 1", "the simulator did not start")

        rw, ro = tmp + "/rw.sock", tmp + "/ro.sock"
        log = open(tmp + "/corrald.log", "w")
        d = subprocess.Popen([corrald, "--socket", rw, "--ro-socket", ro,
                              "--state-dir", tmp + "/state", "--runtime-dir", tmp + "/run"],
                             stdout=log, stderr=log)
        procs.append(d)
        wait_socket(rw, d)
        wait_socket(ro, d)
        c = Client(rw)

        names = [m["name"] for m in c.ok("api.info")["methods"]]
        for m in ("define", "list", "info", "undefine", "start", "events.subscribe"):
            check(m in names, "api.info lacks " + m)

        r = c.ok("define", {"config": {"name": "py1", "machine": "none", "memory": "128M"}})
        check(r["name"] == "py1" and len(r["uuid"]) == 36, "define: %r" % r)
        c.ok("define", {"config": {"name": "py2"}})
        listed = sorted(d["name"] for d in c.ok("list"))
        check(listed == ["py1", "py2"], "list: %r" % listed)
        info = c.ok("info", {"name": "py1"})
        check(info["state"] == "shutoff" and info["config"]["memory"] == 128,
              "info: %r" % info)

        # Errors are [code, message].
        msg = c.err("info", {"name": "nope"}, 4)
        check("nope" in msg, msg)
        c.err("info", {"name": 7}, 3)
        c.err("bogus.method", {}, 2)
        msg = c.err("define", {"config": {"name": "py3", "uuid": r["uuid"]}}, 5)
        check("UUID" in msg, msg)
        msg = Client(ro).err("define", {"config": {"name": "py3"}}, 9)
        check("read-only" in msg, msg)

        # Pipelined: a job on a hung monitor first, then queries; the queries
        # are answered before it, and every answer carries its own msgid.
        slow = c.send("attach", {"name": "hung", "qmp_socket": tmp + "/qmp/vm0.qmp",
                                 "timeout_ms": 1500})
        fast = [c.send("info", {"name": "py1"}), c.send("list"), c.send("daemon.info"),
                c.send("info", {"name": "nope"})]
        order = []
        replies = {}
        while len(order) < 5:
            m = c.response()
            order.append(m[1])
            replies[m[1]] = m
        check(sorted(order) == sorted([slow] + fast), "answers: %r" % order)
        check(order[-1] == slow, "the hung job was not answered last: %r" % order)
        check(order[:4] == fast, "queries out of their order: %r" % order)
        check(replies[fast[0]][3]["name"] == "py1", "msgid mix-up: %r" % replies[fast[0]])
        check(replies[fast[3]][2][0] == 4, "msgid mix-up: %r" % replies[fast[3]])
        check(replies[slow][2] is not None and replies[slow][2][0] in (7, 11),
              "attach to a hung monitor: %r" % replies[slow])

        c.ok("undefine", {"name": "py1"})
        c.ok("undefine", {"name": "py2"})
        check([x["name"] for x in c.ok("list")] == ["hung"], "list after undefine")

        d.send_signal(signal.SIGTERM)
        check(d.wait(timeout=WAIT) == 0, "corrald did not exit 0 on SIGTERM")
        print("pyclient: all checks passed")
        return 0
    except Exception as e:  # noqa: BLE001 - report anything as a failure
        print("pyclient: FAILED: %s" % e)
        try:
            with open(tmp + "/corrald.log") as f:
                sys.stdout.write(f.read())
        except OSError:
            pass
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The reply stream stays intact under backpressure, through an independent
client library (Debian's python3-msgpack, nothing of ours).

Usage: pystream.py CORRALD [SEED]

Defines 200 domains (machine none: no QEMU runs), then pipelines random
mixes of list / info / api.info / daemon.info / errors with tens of MiB of
replies owed, reading slowly in random chunks.  Every reply must answer a
msgid that was sent and not yet answered, with the promised result.
Exits 0 on success, 1 with a message otherwise.
"""
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

WAIT = 30.0
NDOMAINS = 200
SIZES = {"list": NDOMAINS * 110, "info": 700, "missing": 60, "api.info": 9000,
         "daemon.info": 200, "nomethod": 80}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def connect(path, proc):
    deadline = time.monotonic() + WAIT
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            check(proc.poll() is None, "corrald exited early")
            check(time.monotonic() < deadline, "corrald did not listen")
            time.sleep(0.02)


def call(sock, unpacker, msgid, method, params):
    sock.sendall(msgpack.packb([0, msgid, method, [params] if params else []]))
    while True:
        for m in unpacker:
            check(m[1] == msgid, "reply %r to %d" % (m[:2], msgid))
            return m
        data = sock.recv(65536)
        check(data, "corrald closed the connection")
        unpacker.feed(data)


def run_once(path, proc, rng, nreq, window):
    sock = connect(path, proc)
    sock.setblocking(False)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
    pending = {}
    out = bytearray()
    next_id, answered, owed = 1, 0, 0
    deadline = time.monotonic() + 300
    while answered < nreq:
        check(time.monotonic() < deadline, "stuck at %d of %d" % (answered, nreq))
        while (next_id <= nreq and len(pending) < window and owed < (64 << 20)
               and len(out) < (1 << 20)):
            kind = "list" if rng.randrange(3) else rng.choice(list(SIZES))
            dom = rng.randrange(NDOMAINS)
            if kind in ("info", "missing"):
                name = ("s%03d" if kind == "info" else "missing%d") % dom
                req = [0, next_id, "info", [{"name": name}]]
            elif kind == "nomethod":
                req = [0, next_id, "no.such.method", []]
            else:
                req = [0, next_id, kind, []]
            out += msgpack.packb(req)
            pending[next_id] = (kind, dom)
            owed += SIZES[kind]
            next_id += 1
        r, w, _ = select.select([sock], [sock] if out else [], [], 1.0)
        if w:
            try:
                n = sock.send(out)
                del out[:n]
            except BlockingIOError:
                pass
        if not r:
            continue
        want = rng.choice((1 + rng.randrange(16), 1 + rng.randrange(4096),
                           1 + rng.randrange(65536), 1 + rng.randrange(256 << 10)))
        if rng.randrange(64) == 0:
            time.sleep(rng.random() * 0.02)
        try:
            data = sock.recv(want)
        except BlockingIOError:
            continue
        check(data, "corrald closed the connection after %d replies" % answered)
        unpacker.feed(data)
        for m in unpacker:
            check(isinstance(m, list) and len(m) == 4 and m[0] == 1, "not a response: %r"
                  % (m,)[:200])
            check(m[1] in pending, "reply to msgid %r never sent or answered twice" % m[1])
            kind, dom = pending.pop(m[1])
            err, res = m[2], m[3]
            if kind == "list":
                check(err is None and len(res) == NDOMAINS, "list %d" % m[1])
                check(all(e["name"].startswith("s") for e in res), "list entries")
            elif kind == "info":
                check(err is None and res["name"] == "s%03d" % dom, "info %d" % m[1])
            elif kind == "missing":
                check(err[0] == 4 and res is None, "info missing %d: %r" % (m[1], err))
            elif kind == "nomethod":
                check(err[0] == 2, "no method %d: %r" % (m[1], err))
            elif kind == "api.info":
                check(err is None and "methods" in res, "api.info %d" % m[1])
            else:
                check(err is None and res["domains"] == NDOMAINS, "daemon.info %d" % m[1])
            owed -= SIZES[kind]
            answered += 1
    sock.close()


def main():
    corrald = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time()) ^ os.getpid()
    print("pystream: seed %d (pystream.py CORRALD %d replays it)" % (seed, seed))
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="corrald-pystream-", dir="/tmp")
    d = None
    try:
        rw = tmp + "/rw.sock"
        log = open(tmp + "/corrald.log", "w")
        d = subprocess.Popen([corrald, "--socket", rw, "--ro-socket", tmp + "/ro.sock",
                              "--state-dir", tmp + "/state", "--runtime-dir", tmp + "/run"]
                             + os.environ.get("CORRALD_ARGS", "").split(),
                             stdout=log, stderr=log)
        s = connect(rw, d)
        unpacker = msgpack.Unpacker(raw=False)
        for i in range(NDOMAINS):
            m = call(s, unpacker, i + 1, "define",
                     {"config": {"name": "s%03d" % i, "machine": "none", "memory": 16 + i}})
            check(m[2] is None, "define: %r" % (m[2],))
        s.close()
        run_once(rw, d, rng, 3000, 3000)
        run_once(rw, d, rng, 2000, 128)
        for _ in range(3):
            run_once(rw, d, rng, 200 + rng.randrange(800), 1 + rng.randrange(512))
        d.send_signal(signal.SIGTERM)
        check(d.wait(timeout=WAIT) == 0, "corrald did not exit 0 on SIGTERM")
        print("pystream: all replies intact")
        return 0
    except Exception as e:  # noqa: BLE001 - report anything as a failure
        print("pystream: FAILED: %s" % e)
        try:
            with open(tmp + "/corrald.log") as f:
                sys.stdout.write(f.read()[-20000:])
        except OSError:
            pass
        return 1
    finally:
        if d is not None and d.poll() is None:
            d.kill()
            d.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Walks over many domains (`list`, `stats` over more than 2,048) are answered
on corrald's walk thread, not on the loop thread that reads the requests:
no other request waits behind one.  Each test says what it shows.

Usage: walks.py CORRALD [TEST...]

  not_in_line          5,000 domains: `stats` over all of them and `info`
                       written in one send on one connection: the `info`
                       answer comes first (in at least one of ten tries;
                       before, never: the loop packed the whole walk before
                       it read the next request)
  answers              the same answers as on the loop thread: a `list`
                       array, a paged `list` and its `more`, `stats` by names
                       with the missing ones (a name with a NUL among them),
                       errors (an unknown state) from the walk thread, the
                       read-only socket; ten walks and an `info` pipelined
                       on one connection all answered, each by its msgid
  memory               a client pipelines 300 `list` calls over 5,000
                       domains and reads nothing: corrald holds at most its
                       output cap and two answers for it (daemon.info's
                       output_bytes), another client's `info` answers, and
                       once the hog is gone the bytes go back to where they
                       were
  shutdown             SIGTERM while walks are queued and packed: corrald
                       answers or drops them and exits 0
  queue                24 walks of 3.4 MB of names from 12 connections at
                       once: past 16 MiB of requests waiting for the walk
                       thread the rest are answered on the I/O thread (the
                       log says so), every answer is right, and afterwards
                       big walks go to the walk thread again

Exits 0 when every test passes, 1 otherwise.
"""
import os
import socket
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import (Daemon, check, define_by_files, run_tests,  # noqa: E402
                        wait_until)

CORRALD = None
ERR_INVALID_ARGUMENT = 3
MIB = 1 << 20
N = 5000


def daemon_with(n, extra=()):
    """corrald with n shut-off domains, defined by files before it starts."""
    d = Daemon(CORRALD, extra=extra)
    define_by_files(d, ["w%05d" % i for i in range(n)])
    return d.start()


def big_client(d, ro=False):
    c = d.client(ro)
    c.sock.settimeout(120)
    c.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=8 * MIB)
    return c


def info_overtakes_walk(d):
    """stats over every domain and info written in one send on one
    connection: does the info answer come first in one of ten tries?"""
    c = big_client(d)
    try:
        for _ in range(10):
            a, b = c.next_id + 1, c.next_id + 2
            c.next_id += 2
            c.sock.sendall(msgpack.packb([0, a, "stats", [{}]]) +
                           msgpack.packb([0, b, "info", [{"name": "w00007"}]]))
            first = c.recv()
            second = c.recv()
            check({first[1], second[1]} == {a, b}, "answers %r, %r" % (first[1], second[1]))
            ans = {first[1]: first, second[1]: second}
            check(ans[a][2] is None and ans[b][2] is None, "errors: %r %r" %
                  (ans[a][2], ans[b][2]))
            check(ans[b][3]["name"] == "w00007", "info's answer")
            check(len(ans[a][3]["domains"]) + len(ans[a][3]["more"]) == N, "stats' answer")
            if first[1] == b:
                return True
        return False
    finally:
        c.close()


def test_not_in_line():
    d = daemon_with(N)
    try:
        check(d.client().call("daemon.info")["domains"] == N, "every domain defined")
        check(info_overtakes_walk(d), "the info always waited for the walk before it")
    finally:
        d.stop()
        d.cleanup()


def test_answers():
    d = daemon_with(N)
    try:
        c = big_client(d)
        arr = c.call("list")
        check(len(arr) == N and len({e["name"] for e in arr}) == N, "list: %d" % len(arr))
        check(all(e["state"] == "shutoff" and e["job"] is None for e in arr), "entries")
        page = c.call("list", {"paged": True})
        check(len(page["domains"]) + len(page["more"]) == N and page["missing"] == [],
              "a page: %d + %d" % (len(page["domains"]), len(page["more"])))
        check(c.call("list", {"state": "running"}) == [], "none runs")
        e = c.err("list", {"state": "bogus"}, ERR_INVALID_ARGUMENT)
        check("unknown state" in e.message, e.message)
        # More than 2,048 names: the walk thread's too.
        names = ["w%05d" % i for i in range(2100)] + ["nope", "w00001\0x"]
        st = c.call("stats", {"names": names})
        got = {e["name"] for e in st["domains"]}
        check(got == set(names[:2100]) and sorted(st["missing"]) == sorted(names[2100:]),
              "stats by names: %d, missing %r" % (len(got), st["missing"]))
        check(all(e["age_s"] is None for e in st["domains"]), "no figures: none runs")
        ro = big_client(d, ro=True)
        check(len(ro.call("list")) == N, "the read-only socket")
        ro.close()
        # Ten walks and an info in one send: each answered, by its msgid.
        ids = []
        blob = b""
        for i in range(10):
            c.next_id += 1
            ids.append(c.next_id)
            blob += msgpack.packb([0, c.next_id, "list" if i % 2 else "stats", [{}]])
        c.next_id += 1
        info_id = c.next_id
        blob += msgpack.packb([0, info_id, "info", [{"name": "w04999"}]])
        c.sock.sendall(blob)
        seen = {}
        while len(seen) < 11:
            m = c.recv()
            check(m[0] == 1 and m[1] not in seen, "a response, once: %r" % (m[:2],))
            check(m[2] is None, "error %r" % (m[2],))
            seen[m[1]] = m[3]
        check(seen[info_id]["name"] == "w04999", "info")
        for i, msgid in enumerate(ids):
            r = seen[msgid]
            n = len(r) if i % 2 else len(r["domains"]) + len(r["more"])
            check(n == N, "walk %d: %d domains" % (msgid, n))
        c.close()
    finally:
        d.stop()
        d.cleanup()


def output_bytes(c):
    return c.call("daemon.info")["output_bytes"]


def test_memory():
    out_max = 1 * MIB
    d = daemon_with(N, extra=["--client-output-max", str(out_max)])
    try:
        c = big_client(d)
        one = len(msgpack.packb(c.call("list")))
        check(one > 256 * 1024, "a list answer of %d bytes" % one)
        base = output_bytes(c)      # this client's own (small) buffer
        hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        hog.connect(d.rw)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        blob = b"".join(msgpack.packb([0, i + 1, "list", [{}]]) for i in range(300))
        hog.setblocking(False)
        try:
            hog.send(blob)          # as much as the socket takes; the rest is never sent
        except BlockingIOError:
            pass
        # The socket buffers fill, then corrald stops reading the hog.
        time.sleep(2)
        peak = 0
        for _ in range(20):
            t0 = time.monotonic()
            peak = max(peak, output_bytes(c))
            check(time.monotonic() - t0 < 10, "daemon.info took %.1f s" % (time.monotonic() - t0))
            time.sleep(0.05)
        # The hog's cap, two walks' answers (with their buffers' slack), and
        # one more answer written over the cap.
        bound = out_max + 4 * 2 * one + 2 * MIB
        check(0 < peak <= bound, "output_bytes %d, bound %d" % (peak, bound))
        hog.close()
        wait_until(lambda: output_bytes(c) == base, "the hog's output freed")
        c.close()
    finally:
        d.stop()
        d.cleanup()


def test_shutdown():
    d = daemon_with(N)
    try:
        socks = []
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.rw)
            s.sendall(b"".join(msgpack.packb([0, i + 1, "stats", [{}]]) for i in range(20)))
            socks.append(s)
        c = big_client(d)
        c.call("info", {"name": "w00000"})
        d.stop()            # exits 0, or the check in stop() fails
        for s in socks:
            s.close()
    finally:
        d.stop()
        d.cleanup()


def test_queue():
    d = daemon_with(N)
    try:
        # 24 stats calls of 200,000 names each (3.4 MB, none defined) from
        # 12 connections at once: more than the 16 MiB of requests that may
        # wait for the walk thread.
        names = ["absent-%010d" % i for i in range(200000)]
        blob = msgpack.packb([0, 1, "stats", [{"names": names}]])
        blob += msgpack.packb([0, 2, "stats", [{"names": names}]])
        socks = []
        for _ in range(12):
            c = big_client(d)
            c.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=16 * MIB)
            socks.append(c)
        for c in socks:
            c.sock.sendall(blob)
        for c in socks:
            for _ in range(2):
                m = c.recv()
                check(m[2] is None, "error %r" % (m[2],))
                check(m[3]["domains"] == [] and len(m[3]["missing"]) == len(names),
                      "missing: %d" % len(m[3]["missing"]))
            c.close()
        check("wait for the walk thread" in d.log_text(),
              "no walk was answered on the I/O thread")
        # The queue's bytes came back: big walks go to the walk thread again.
        check(info_overtakes_walk(d), "walks no longer go to the walk thread")
    finally:
        d.stop()
        d.cleanup()


TESTS = [test_not_in_line, test_answers, test_memory, test_shutdown, test_queue]


def main():
    global CORRALD
    CORRALD = sys.argv[1]
    return run_tests(TESTS, sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

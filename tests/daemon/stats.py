#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Statistics from snapshots, the heartbeat, and /metrics.

Usage: stats.py CORRALD CLI QEMU [TEST...]

Real corrald, real QEMU (TCG).  The tests:

  figures            a running domain's CPU time, RSS, vCPU threads and disk
                     I/O (the guest's firmware reads its disk); a shut-off
                     domain has none; several names and all in one call;
                     unknown names listed as missing; bad params refused
  hung_never_waits   a SIGSTOPped QEMU: `stats` and `info` keep answering at
                     once, the monitor shows `unresponsive` long before any
                     job's deadline, its figures age and are marked stale,
                     the other domain's stay fresh; SIGCONT brings it back
  heartbeat_job      a job's command stuck on a stopped QEMU marks the
                     monitor unresponsive at the threshold, not at the job's
                     deadline
  cli                `corral stats` as a table, as JSON and in Prometheus's
                     text format
  interval_off       --stats-interval-ms 0: no rounds, no figures, except
                     for a domain whose config sets stats_interval_ms; bad
                     values of it refused
  restart_spread     a started domain polls at once; after a restart the
                     re-attached monitors' first rounds are spread over the
                     interval, not all at once; a domain started then polls
                     at once
  paging             18,000 domains: one `stats` answer stays within the
                     protocol's limits and names the rest in `more`; asking
                     for those gets them; `corral stats` follows `more`
  metrics            --metrics-listen: GET /metrics with an HTTP client, in
                     Prometheus's format, also while a QEMU is stopped;
                     other paths and methods refused; bound to loopback

Exits 0 when every test passes, 1 otherwise.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corraltest import Daemon, check, define_by_files, run_tests, wait_until  # noqa: E402

CORRALD = CLI = QEMU = None
ERR_INVALID_ARGUMENT = 3
# Short rounds and threshold, so that the tests wait little; generous waits.
FAST = ["--stats-interval-ms", "200", "--monitor-threshold-ms", "1000"]


def vm_config(d, name, disk=True):
    cfg = {"name": name, "machine": "pc", "accel": "tcg", "memory": 64, "emulator": QEMU}
    if disk:
        img = os.path.join(d.dir, name + ".img")
        with open(img, "wb") as f:
            f.truncate(8 << 20)
        cfg["disks"] = [{"path": img, "format": "raw"}]
    return cfg


def stats(c, names=None):
    r = c.call("stats", {"names": names} if names is not None else {})
    return {e["name"]: e for e in r["domains"]}, r


def running(d, c, name, **kw):
    c.call("define", {"config": vm_config(d, name, **kw)})
    c.call("start", {"name": name})


def fresh(c, name):
    e = stats(c, [name])[0].get(name)
    return e is not None and e["age_s"] is not None and e["age_s"] < 5 and not e["stale"]


def test_figures():
    d = Daemon(CORRALD, extra=FAST).start()
    try:
        c = d.client()
        running(d, c, "s1")
        c.call("define", {"config": vm_config(d, "off")})
        # SeaBIOS reads the disk's first sector while it looks for a boot device.
        wait_until(lambda: any(x["rd_ops"] > 0 for x in
                               stats(c, ["s1"])[0]["s1"].get("disks", [])),
                   "s1's disk read counters")
        e = stats(c, ["s1"])[0]["s1"]
        check(e["state"] == "running" and e["monitor"]["state"] == "ok", e)
        check(0 <= e["age_s"] < 5 and e["stale"] is False, e)
        check(e["cpu"]["time_ns"] > 0, "no CPU time: %r" % e)
        check(len(e["cpu"]["vcpus"]) == 1 and e["cpu"]["vcpus"][0]["index"] == 0 and
              e["cpu"]["vcpus"][0]["thread"] > 0, "vCPUs: %r" % e["cpu"])
        check(e["memory"]["rss_bytes"] > 1 << 20, "RSS: %r" % e["memory"])
        disk = [x for x in e["disks"] if x["device"] == "vd0"]
        check(len(disk) == 1 and disk[0]["node"] == "disk0" and disk[0]["rd_bytes"] > 0,
              "disks: %r" % e["disks"])
        # The vCPU thread is QEMU's own thread.
        pid = c.call("info", {"name": "s1"})["pid"]
        check(os.path.isdir("/proc/%d/task/%d" % (pid, e["cpu"]["vcpus"][0]["thread"])),
              "vCPU thread not in QEMU")
        # A CPU counter moves on.
        t0 = e["cpu"]["time_ns"]
        wait_until(lambda: stats(c, ["s1"])[0]["s1"]["cpu"]["time_ns"] > t0,
                   "CPU time to grow")
        # Shut off: no figures.
        e = stats(c, ["off"])[0]["off"]
        check(e["age_s"] is None and "cpu" not in e and e["stale"] is False, e)
        # All, several, missing ones.
        everything, r = stats(c)
        check(set(everything) == {"s1", "off"} and r["missing"] == [], r)
        some, r = stats(c, ["off", "nope", "s1", "x" * 100])
        check(set(some) == {"s1", "off"} and r["missing"] == ["nope", "x" * 100], r)
        # A name with a NUL in it names no domain, not the one before the NUL.
        some, r = stats(c, ["off\0x", "s1"])
        check(set(some) == {"s1"} and r["missing"] == ["off\0x"], r)
        check(r["interval_s"] == 0.2, r)
        # The read-only socket serves it.
        check("s1" in stats(d.client(ro=True))[0], "read-only socket")
        # Bad params.
        for bad in ({"names": "s1"}, {"names": [1]}, {"names": None}, {"nmes": []}):
            c.err("stats", bad, ERR_INVALID_ARGUMENT)
        # Destroyed: the figures go with the QEMU.
        c.call("destroy", {"name": "s1"})
        e = stats(c, ["s1"])[0]["s1"]
        check(e["age_s"] is None and "cpu" not in e, "figures after destroy: %r" % e)
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def test_hung_never_waits():
    d = Daemon(CORRALD, extra=FAST).start()
    pid = None
    try:
        c = d.client()
        running(d, c, "hung")
        running(d, c, "well")
        wait_until(lambda: fresh(c, "hung") and fresh(c, "well"), "first figures")
        pid = c.call("info", {"name": "hung"})["pid"]
        os.kill(pid, signal.SIGSTOP)
        # Unresponsive at the threshold (1 s here), not at some job's deadline.
        wait_until(lambda: c.call("info", {"name": "hung"})["monitor"]["state"] ==
                   "unresponsive", "the monitor of a stopped QEMU to be unresponsive",
                   timeout=20)
        # Figures go stale, with their age showing; every call answers.
        wait_until(lambda: stats(c, ["hung"])[0]["hung"]["age_s"] > 2, "the figures to age")
        e = stats(c, ["hung", "well"])[0]
        check(e["hung"]["stale"] is True and e["hung"]["monitor"]["state"] == "unresponsive",
              e["hung"])
        check("cpu" in e["hung"], "a hung QEMU's last figures are kept: %r" % e["hung"])
        check(fresh(c, "well"), "the healthy domain's figures: %r" % e["well"])
        # Many calls while it is hung: none waits for it (each has 2 s, the
        # client's own deadline; a call that waited for QEMU would fail).
        for _ in range(50):
            c.call("stats", {"timeout_ms": 2000})
            c.call("info", {"name": "hung", "timeout_ms": 2000})
        os.kill(pid, signal.SIGCONT)
        pid = None
        wait_until(lambda: fresh(c, "hung") and
                   c.call("info", {"name": "hung"})["monitor"]["state"] == "ok",
                   "the monitor to recover after SIGCONT")
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def test_heartbeat_job():
    # No rounds: only a job's command can notice the stopped QEMU.
    d = Daemon(CORRALD, extra=["--stats-interval-ms", "0",
                               "--monitor-threshold-ms", "1000"]).start()
    pid = None
    try:
        c = d.client()
        running(d, c, "j1")
        pid = c.call("info", {"name": "j1"})["pid"]
        os.kill(pid, signal.SIGSTOP)
        msgid = c.send("suspend", {"name": "j1", "timeout_ms": 60000})
        t0 = time.monotonic()
        wait_until(lambda: d.client().call("info", {"name": "j1"})["monitor"]["state"] ==
                   "unresponsive", "unresponsive while the suspend waits", timeout=30)
        waited = time.monotonic() - t0
        check(waited < 50, "unresponsive only after %.1f s: at the job's deadline" % waited)
        os.kill(pid, signal.SIGCONT)
        pid = None
        m = c.recv()
        while m[0] != 1 or m[1] != msgid:
            m = c.recv()
        check(m[2] is None, "suspend after SIGCONT: %r" % (m[2],))
        wait_until(lambda: c.call("info", {"name": "j1"})["monitor"]["state"] == "ok",
                   "ok again")
        e = stats(c, ["j1"])[0]["j1"]
        check(e["age_s"] is None, "figures without rounds: %r" % e)
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def cli(d, *args):
    return subprocess.run([CLI, "--socket", d.rw] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


def test_cli():
    d = Daemon(CORRALD, extra=FAST).start()
    try:
        c = d.client()
        running(d, c, "web")
        c.call("define", {"config": vm_config(d, "db", disk=False)})
        wait_until(lambda: fresh(c, "web"), "figures")
        r = cli(d, "stats")
        check(r.returncode == 0, r.stderr)
        lines = r.stdout.splitlines()
        check(lines[0].split()[:3] == ["NAME", "STATE", "MONITOR"], r.stdout)
        check(any(ln.split()[0] == "web" for ln in lines[1:]) and
              any(ln.split()[0] == "db" for ln in lines[1:]), r.stdout)
        r = cli(d, "--format", "json", "stats", "web")
        check(r.returncode == 0, r.stderr)
        j = json.loads(r.stdout)
        check([e["name"] for e in j["domains"]] == ["web"], j)
        r = cli(d, "stats", "web", "nope")
        check(r.returncode == 3 and "nope" in r.stderr, "missing name: %r" % (r,))
        r = cli(d, "--format", "prometheus", "stats")
        check(r.returncode == 0, r.stderr)
        text = r.stdout
        check_prometheus(text)
        check('corral_domain_cpu_seconds_total{domain="web"}' in text, text)
        check('corral_domain_disk_read_bytes_total{domain="web",device="vd0"}' in text, text)
        check('corral_domain_up{domain="db"} 0' in text, text)
        r = cli(d, "--format", "prometheus", "list")
        check(r.returncode == 2, "--format prometheus on list: %r" % (r,))
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def check_prometheus(text):
    """The text exposition format's rules: HELP/TYPE once per family, before
    its samples, each family's samples together, a float value per sample."""
    seen, current = set(), None
    for ln in text.splitlines():
        if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            fam = ln.split()[2]
            if ln.startswith("# TYPE "):
                check(ln.split()[3] in ("gauge", "counter"), ln)
                check(fam not in seen, "family %s twice" % fam)
                seen.add(fam)
            current = fam
            continue
        check(ln and not ln.startswith("#"), "stray line %r" % ln)
        name = ln.split("{")[0].split()[0]
        check(name == current or name.startswith(current + "_"),
              "sample %r outside its family %s" % (ln, current))
        float(ln.rsplit(" ", 1)[1])


def test_interval_off():
    d = Daemon(CORRALD, extra=["--stats-interval-ms", "0"]).start()
    try:
        c = d.client()
        running(d, c, "q1", disk=False)
        cfg = vm_config(d, "q2", disk=False)
        cfg["stats_interval_ms"] = 200
        c.call("define", {"config": cfg})
        c.call("start", {"name": "q2"})
        wait_until(lambda: fresh(c, "q2"), "q2's own rounds")
        e = stats(c)[0]["q1"]
        check(e["age_s"] is None and e["monitor"]["state"] == "ok", e)
        check(c.call("info", {"name": "q2"})["config"]["stats_interval_ms"] == 200, "config")
        for bad in (-1, 50, 3600001, "1s", 1.5):
            cfg["stats_interval_ms"] = bad
            c.err("define", {"config": cfg}, ERR_INVALID_ARGUMENT)
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def test_restart_spread():
    # A long interval: a first round due "within one interval" cannot fall
    # inside the test's few seconds for more than a few of the domains.
    d = Daemon(CORRALD, extra=["--stats-interval-ms", "600000"]).start()
    names = ["r%d" % i for i in range(8)]
    try:
        c = d.client()
        for n in names:
            cfg = vm_config(d, n, disk=False)
            cfg["machine"] = "none"
            c.call("define", {"config": cfg})
            c.call("start", {"name": n})
        # A client's start polls at once, not 10 minutes later.
        for n in names:
            wait_until(lambda: stats(c, [n])[0][n]["age_s"] is not None,
                       "%s's first round after its start" % n)
        c.close()
        d.stop()
        d.start()
        c = d.client()
        wait_until(lambda: all(e["monitor"]["state"] == "ok" and e["job"] is None
                               for e in c.call("list")), "every monitor re-attached")
        time.sleep(2)
        polled = [n for n, e in stats(c)[0].items() if e["age_s"] is not None]
        # Each first round is at a point of the 600 s set by the domain's
        # UUID: 5 or more of 8 inside these few seconds is a chance below
        # one in a million.
        check(len(polled) <= 4, "re-attached monitors all polled at once: %r" % polled)
        cfg = vm_config(d, "late", disk=False)
        cfg["machine"] = "none"
        c.call("define", {"config": cfg})
        c.call("start", {"name": "late"})
        wait_until(lambda: stats(c, ["late"])[0]["late"]["age_s"] is not None,
                   "the first round of a domain started after the restart")
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_metrics():
    port = free_port()
    d = Daemon(CORRALD, extra=FAST + ["--metrics-listen", str(port)]).start()
    pid = None
    url = "http://127.0.0.1:%d" % port
    try:
        c = d.client()
        running(d, c, "m1")
        running(d, c, "m2")
        wait_until(lambda: fresh(c, "m1") and fresh(c, "m2"), "figures")

        def scrape():
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                check(r.status == 200, r.status)
                check(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"),
                      r.headers["Content-Type"])
                return r.read().decode()
        text = scrape()
        check_prometheus(text)
        for dom in ("m1", "m2"):
            check('corral_domain_up{domain="%s"} 1' % dom in text, text)
            check('corral_domain_memory_rss_bytes{domain="%s"}' % dom in text, text)
            check('corral_domain_vcpu_seconds_total{domain="%s",vcpu="0"}' % dom in text,
                  text)
        # The same metrics as the CLI's, from the same renderer.
        r = cli(d, "--format", "prometheus", "stats")
        names = lambda t: sorted({ln.split("{")[0] for ln in t.splitlines()  # noqa: E731
                                  if ln and not ln.startswith("#")})
        check(names(r.stdout) == names(text), "CLI and /metrics differ")
        # A stopped QEMU: the scrape answers, its monitor shows 0.
        pid = c.call("info", {"name": "m1"})["pid"]
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: 'corral_domain_monitor_responsive{domain="m1"} 0' in scrape(),
                   "m1 unresponsive in /metrics")
        check('corral_domain_monitor_responsive{domain="m2"} 1' in scrape(), "m2")
        os.kill(pid, signal.SIGCONT)
        pid = None
        # Other paths and methods.
        for path, method, code in (("/", "GET", 404), ("/metrics", "POST", 405),
                                   ("/metrics/x", "GET", 404)):
            req = urllib.request.Request(url + path, method=method,
                                         data=b"x" if method == "POST" else None)
            try:
                urllib.request.urlopen(req, timeout=10)
                check(False, "%s %s answered 200" % (method, path))
            except urllib.error.HTTPError as e:
                check(e.code == code, "%s %s: %d" % (method, path, e.code))
            except (urllib.error.URLError, ConnectionError):
                check(method == "POST", "%s %s: connection closed" % (method, path))
        # Loopback only: the host's other addresses do not answer.
        addrs = [a for a in subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE,
                                           text=True).stdout.split() if ":" not in a]
        for a in addrs:
            s = socket.socket()
            s.settimeout(5)
            check(s.connect_ex((a, port)) != 0, "/metrics answers on %s" % a)
            s.close()
        # Garbage is closed or refused; the daemon goes on.
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        check("m1" in stats(c)[0], "the daemon after garbage on /metrics")
        scrape()
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


def test_paging():
    """A shut-off domain's entry is 15 msgpack objects: 18,000 of them are
    more than the 262,144 objects a message may hold (rpc/rpc.h)."""
    d = Daemon(CORRALD)
    n = 18000
    define_by_files(d, ["p%05d" % i for i in range(n)])
    d.start()
    try:
        c = d.client()
        c.sock.settimeout(60)
        r = c.call("stats", {})
        got = [e["name"] for e in r["domains"]]
        check(0 < len(got) < n and len(got) + len(r["more"]) == n,
              "%d in the answer, %d in more" % (len(got), len(r["more"])))
        check(not set(got) & set(r["more"]), "a domain both in the answer and in more")
        r2 = c.call("stats", {"names": r["more"]})
        check(r2["more"] == [] and r2["missing"] == [] and
              len(r2["domains"]) == len(r["more"]), "the rest: %d, more %d" %
              (len(r2["domains"]), len(r2["more"])))
        # Our own CLI reads each answer with the protocol's limits, and follows more.
        out = cli(d, "--format", "json", "--timeout", "60", "stats")
        check(out.returncode == 0, out.stderr)
        j = json.loads(out.stdout)
        check(len(j["domains"]) == n and j["more"] == [], "CLI: %d" % len(j["domains"]))
    finally:
        try:
            d.stop()
        finally:
            d.cleanup()    # the QEMUs a SIGTERM leaves running, and the directory


TESTS = [test_figures, test_hung_never_waits, test_heartbeat_job, test_cli,
         test_interval_off, test_restart_spread, test_paging, test_metrics]


def main():
    global CORRALD, CLI, QEMU
    CORRALD, CLI, QEMU = sys.argv[1], sys.argv[2], sys.argv[3]
    if not QEMU:
        print("stats: skipped (no QEMU)")
        return 0
    only = sys.argv[4:]
    return run_tests(TESTS, only)


if __name__ == "__main__":
    sys.exit(main())

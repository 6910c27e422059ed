# SPDX-License-Identifier: MIT
"""The corral package against a real corrald (QEMU -machine none; with a
guest image, the console of a booted guest too).

    test_corral.py CORRALD QEMU [GUEST_JSON]

The package is imported from the source tree (clients/python), or from
wherever it is installed when CORRAL_PY_INSTALLED is set.  Checked:

- no drift: the client's error classes are exactly api.info's error table,
  and every method api.info lists is an attribute of both clients, with its
  doc; a method corrald does not have is an AttributeError;
- calls, typed errors carrying the code, the read-only socket;
- pipelining: many calls in flight on one connection, answered out of order;
- the event iterator (sync and asyncio);
- the console (read and write) of a real guest, when GUEST_JSON is given.
"""
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("CORRALTEST_DIR") or
                os.path.join(HERE, "..", "..", "..", "tests", "daemon"))
if not os.environ.get("CORRAL_PY_INSTALLED"):
    sys.path.insert(0, os.path.join(HERE, ".."))

import corral                           # noqa: E402
import corral.errors                    # noqa: E402
from corral.aio import AsyncClient      # noqa: E402
from corraltest import Daemon, check    # noqa: E402

CORRALD, QEMU = sys.argv[1], sys.argv[2]
GUEST = json.load(open(sys.argv[3])) if len(sys.argv) > 3 and sys.argv[3] else None


def vm(name):
    return {"name": name, "machine": "none", "accel": "tcg", "memory": 32, "emulator": QEMU}


def test_no_drift(d):
    with corral.Client(d.rw) as c:
        api = c.call("api.info")
        daemon_errors = sorted((e["code"], e["name"]) for e in api["errors"])
        client_errors = sorted((code, name) for code, name, _ in corral.errors.ERRORS)
        check(daemon_errors == client_errors,
              "corral/errors.py ERRORS differs from corrald's error table:\n"
              "  corrald: %r\n  client:  %r" % (daemon_errors, client_errors))
        for code, name, cls_name in corral.errors.ERRORS:
            cls = getattr(corral, cls_name)
            check(issubclass(cls, corral.CorralError) and cls.code == code and
                  cls.name == name, "corral.%s" % cls_name)
        check(corral.__version__ == api["version"],
              "corral.__version__ %s, corrald %s: bump clients/python (pyproject.toml, "
              "corral/__init__.py) with meson.build" % (corral.__version__, api["version"]))
        with open(os.path.join(HERE, "..", "pyproject.toml")) as f:
            check('version = "%s"' % api["version"] in f.read(), "pyproject.toml's version")
        names = sorted(m["name"] for m in api["methods"])
        check(c.methods() == names, "methods(): %r vs %r" % (c.methods(), names))
        for m in api["methods"]:
            attr = m["name"].replace(".", "_").replace("-", "_")
            f = getattr(c, attr)
            check(callable(f) and m["doc"] in f.__doc__, "Client.%s" % attr)
        try:
            c.no_such_method
        except AttributeError as e:
            check("no method" in str(e), "AttributeError text: %s" % e)
        else:
            raise AssertionError("an unknown method became an attribute")
        # The daemon refuses a method it does not have with the typed error.
        try:
            c.call("no.such.method")
        except corral.MethodNotFound as e:
            check(e.code == 2 and e.name == "method-not-found", "MethodNotFound: %r" % e)

    async def aio():
        async with await AsyncClient.connect(d.rw) as a:
            check(await a.methods() == names, "AsyncClient.methods()")
            for m in api["methods"]:
                check(callable(getattr(a, m["name"].replace(".", "_").replace("-", "_"))), m["name"])
            try:
                await a.no_such_method()
            except AttributeError:
                pass
            else:
                raise AssertionError("asyncio: an unknown method was called")
    asyncio.run(aio())
    print("ok: %d methods and %d error codes match api.info" % (len(names), len(daemon_errors)))


def test_calls_and_errors(d):
    with corral.Client(d.rw) as c:
        c.define(config=vm("p1"))
        r = c.start("p1")                       # positional: the required param
        check(r["pid"] > 0, "start: %r" % r)
        check(c.info("p1")["state"] == "running", "info after start")
        check([x["name"] for x in c.list(state="running")] == ["p1"], "list(state=)")
        try:
            c.info("nope")
        except corral.NoSuchDomain as e:
            check(e.code == 4 and "nope" in e.message, "NoSuchDomain: %r" % e)
            check(isinstance(e, corral.CorralError), "a CorralError")
        else:
            raise AssertionError("info of a missing domain succeeded")
        try:
            c.start("p1")
        except corral.BadState as e:
            check(e.code == 8, "BadState code")
        else:
            raise AssertionError("a second start succeeded")
        try:
            c.info(name=5)
        except corral.InvalidArgument as e:
            check(e.code == 3, "InvalidArgument code")
        try:
            c.info("a", "b")
        except TypeError:
            pass
        else:
            raise AssertionError("too many positional arguments were accepted")
    with corral.Client(d.ro) as ro:
        check(any(x["name"] == "p1" for x in ro.list()), "list on the read-only socket")
        try:
            ro.destroy("p1")
        except corral.PermissionDenied as e:
            check(e.code == 9, "PermissionDenied code")
        else:
            raise AssertionError("destroy on the read-only socket succeeded")
    print("ok: calls, positional params, typed errors with their codes, read-only socket")


def test_pipelining(d):
    with corral.Client(d.rw) as c:
        names = ["q%d" % i for i in range(20)]
        defs = [c.submit("define", config=vm(n)) for n in names]   # all in flight
        infos = [c.submit("info", name=n) for n in names]
        for k in defs:
            k.result()
        got = [k.result()["name"] for k in infos]
        check(got == names, "pipelined answers matched to their calls: %r" % got)
        # A slow call does not hold up a quick one behind it.
        slow = c.submit("start", name="q0")
        quick = c.submit("daemon.info")
        check(quick.result()["pid"] == d.proc.pid, "daemon.info")
        check(slow.result()["pid"] > 0, "start")
        c.destroy("q0")
        for n in names:
            c.undefine(n)
    print("ok: 40 calls pipelined on one connection, each answer to its call")


def test_events(d):
    with corral.Client(d.rw) as c, corral.Client(d.rw) as actor:
        actor.define(config=vm("e1"))
        with c.events(name="e1") as evs:
            actor.start("e1")
            seen = []
            while ("lifecycle", "running") not in seen:
                ev = evs.next_event(timeout=60)
                check(ev is not None, "no lifecycle 'running' event within 60 s (got %r)"
                      % seen)
                check(ev["domain"] == "e1", "event of another domain: %r" % ev)
                seen.append((ev["event"], (ev.get("data") or {}).get("state")))
        actor.destroy("e1")

    async def aio():
        async with await AsyncClient.connect(d.rw) as a, \
                await AsyncClient.connect(d.rw) as b:
            async with await a.events(name="e1") as evs:
                # Pipelined: both calls in flight at once on one connection.
                r1, r2 = await asyncio.gather(b.start("e1"), b.info("e1"))
                check(r1["pid"] > 0 and r2["name"] == "e1", "gather: %r %r" % (r1, r2))
                got = []
                async for ev in evs:
                    check(ev["domain"] == "e1", "event of another domain: %r" % ev)
                    got.append((ev["event"], (ev.get("data") or {}).get("state")))
                    if got[-1] == ("lifecycle", "running"):
                        break
            await b.destroy("e1")
    asyncio.run(asyncio.wait_for(aio(), 120))
    print("ok: event iterators (sync and asyncio) see the domain start")


def test_console(d):
    kernel = GUEST.get("kernel_pvh") or GUEST["kernel"]
    cfg = {"name": "g1", "memory": 256, "accel": "tcg", "kernel": kernel,
           "initrd": GUEST["initrd"], "cmdline": GUEST["cmdline"]}
    with corral.Client(d.rw) as c:
        c.define(config=cfg)
        c.start("g1")
        with c.console("g1") as con:
            con.read_until(GUEST["ready_line"].encode(), 300)
            con.write(b"echo py-$((6*7))-client\n")
            con.read_until(b"py-42-client", 60)
        c.destroy("g1")

    async def aio():
        async with await AsyncClient.connect(d.rw) as a:
            await a.start("g1")
            buf = b""
            typed = False
            async with await a.console("g1") as con:
                async for chunk in con:
                    buf += chunk
                    if not typed and GUEST["ready_line"].encode() in buf:
                        await con.write(b"echo aio-$((6*7))\n")
                        typed = True
                    if b"aio-42" in buf:
                        break
            await a.destroy("g1")
    asyncio.run(asyncio.wait_for(aio(), 400))
    print("ok: console read and write (sync and asyncio) with a booted guest")


def main():
    d = Daemon(CORRALD)
    try:
        d.start()
        test_no_drift(d)
        test_calls_and_errors(d)
        test_pipelining(d)
        test_events(d)
        if GUEST:
            test_console(d)
        else:
            print("skip: console (no guest image given)")
        d.stop()
    except BaseException:
        print(d.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()

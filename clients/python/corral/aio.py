# SPDX-License-Identifier: MIT
"""The asyncio client: the same calls as corral.Client, as coroutines.

    import asyncio
    from corral.aio import AsyncClient

    async def main():
        async with await AsyncClient.connect() as c:
            infos = await asyncio.gather(*(c.info(n) for n in ("a", "b")))
            async for ev in await c.events():
                print(ev["domain"], ev["event"])

Calls on one connection are pipelined: each is sent at once and answered
when corrald is done, in any order.  One reader task per connection routes
answers to their futures and notifications to their subscriptions.
"""
import asyncio

from . import errors
from ._proto import (NOTIFICATION, Methods, Router, Unpacker, default_socket, pack_request,
                     params_of)


class AsyncClient:
    """A connection to corrald for asyncio; make it with `await connect()`."""

    def __init__(self, reader, writer, path):
        self.path = path
        self._reader = reader
        self._writer = writer
        self._unpacker = Unpacker()
        self._calls = {}
        self._next = 0
        self._router = Router()
        self._wakeup = asyncio.Event()     # set when a notification arrives
        self._methods = None
        self._lost = None
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, path=None, read_only=False):
        path = path or default_socket(read_only)
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        return cls(reader, writer, path)

    async def close(self):
        if not self._task.done():
            self._task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
        self._fail_all(errors.ConnectionLost("the client is closed"))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # -- calls -----------------------------------------------------------------

    def submit(self, method, params=None, **kwargs):
        """Send a call now; returns a future of its result."""
        if self._lost is not None:
            raise self._lost
        self._next = (self._next + 1) & 0xFFFFFFFF
        fut = asyncio.get_running_loop().create_future()
        self._calls[self._next] = fut
        self._writer.write(pack_request(self._next, method, params_of(params, kwargs)))
        return fut

    async def call(self, method, params=None, **kwargs):
        fut = self.submit(method, params, **kwargs)
        await self._writer.drain()
        return await fut

    async def api(self):
        if self._methods is None:
            self._methods = Methods(await self.call("api.info"))
        return self._methods

    async def methods(self):
        return sorted((await self.api()).by_name)

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)

        async def method(*args, **kwargs):
            api = await self.api()
            m = api.lookup(attr)
            if m is None:
                raise AttributeError("corrald has no method %r" % attr)
            return await self.call(m["name"], Methods.bind(m, args, kwargs))
        method.__name__ = attr
        return method

    # -- events and the console --------------------------------------------------

    async def events(self, name=None):
        """Subscribe to domain events (one domain's with name) and return an
        async iterator of event maps (a loss is {"event": "events.dropped",
        "count": N, ...}): `async for ev in await c.events(): ...`."""
        sub = (await self.call("events.subscribe", name=name))["subscription"]
        return AsyncEvents(self, sub)

    async def console(self, name, history=True):
        """View the domain's console: an async iterator of bytes (the last
        64 KiB first unless history is False), ending when it closes."""
        r = await self.call("console.attach", name=name, history=history)
        return AsyncConsole(self, r["subscription"], name)

    # -- the reader task ----------------------------------------------------------

    async def _next_note(self, sub, timeout=None):
        if timeout is not None:
            try:
                return await asyncio.wait_for(self._next_note(sub), timeout)
            except asyncio.TimeoutError:
                return None
        while True:
            n = self._router.take(sub)
            if n is not None:
                return n
            if self._lost is not None:
                raise self._lost
            self._wakeup.clear()
            await self._wakeup.wait()

    def _error(self, err):
        if self._methods is not None and isinstance(err, (list, tuple)) and err:
            e = self._methods.errors.get(err[0])
            if e:
                errors.error_class(err[0], e.get("name"))
        return errors.from_wire(err)

    def _fail_all(self, exc):
        if self._lost is None:
            self._lost = exc
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(exc)
        self._calls.clear()
        self._wakeup.set()

    async def _read_loop(self):
        try:
            while True:
                data = await self._reader.read(1 << 16)
                if not data:
                    raise errors.ConnectionLost("corrald closed the connection")
                self._unpacker.feed(data)
                for m in self._unpacker:
                    if m[0] == NOTIFICATION:
                        self._router.put(m[1], m[2] if len(m) > 2 else [])
                        self._wakeup.set()
                        continue
                    fut = self._calls.pop(m[1], None) if len(m) == 4 else None
                    if fut is None or fut.done():
                        continue
                    if m[2] is not None:
                        fut.set_exception(self._error(m[2]))
                    else:
                        fut.set_result(m[3])
        except asyncio.CancelledError:
            raise
        except errors.ConnectionLost as e:
            self._fail_all(e)
        except OSError as e:
            self._fail_all(errors.ConnectionLost("connection to corrald broke: %s" % e))


class AsyncEvents:
    """Domain events of one subscription (AsyncClient.events)."""

    def __init__(self, client, sub):
        self.client = client
        self.subscription = sub
        self.closed = False

    async def next_event(self, timeout=None):
        """The next event map, or None when timeout (seconds) passed first."""
        n = await self.client._next_note(self.subscription, timeout)
        if n is None:
            return None
        method, p = n
        return dict(p, event="events.dropped") if method == "events.dropped" else p

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.closed:
            raise StopAsyncIteration
        return await self.next_event()

    async def close(self):
        """Unsubscribe."""
        if not self.closed:
            self.closed = True
            self.client._router.forget(self.subscription)
            if self.client._lost is None:
                await self.client.call("events.unsubscribe", subscription=self.subscription)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class AsyncConsole:
    """A serial console's output (AsyncClient.console)."""

    def __init__(self, client, sub, name):
        self.client = client
        self.subscription = sub
        self.name = name
        self.dropped = 0
        self.closed_reason = None
        self.detached = False

    async def read(self, timeout=None):
        """The next output bytes; b"" once the console has closed; None when
        timeout (seconds) passed first."""
        while self.closed_reason is None:
            n = await self.client._next_note(self.subscription, timeout)
            if n is None:
                return None
            method, p = n
            if method == "console":
                return bytes(p.get("data", b""))
            if method == "console.dropped":
                self.dropped += p.get("bytes", 0)
            elif method == "console.closed":
                self.closed_reason = p.get("reason", "closed")
        return b""

    async def write(self, data):
        """Type data (bytes or str) into the console."""
        return await self.client.call("console.write", name=self.name, data=data)

    def __aiter__(self):
        return self

    async def __anext__(self):
        chunk = await self.read()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def close(self):
        """Stop viewing (console.detach)."""
        if not self.detached:
            self.detached = True
            self.client._router.forget(self.subscription)
            if self.client._lost is None and self.closed_reason is None:
                try:
                    await self.client.call("console.detach", subscription=self.subscription)
                except errors.CorralError:
                    pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

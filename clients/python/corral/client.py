# SPDX-License-Identifier: MIT
"""The synchronous client: one connection, calls pipelined on it.

A call is sent at once and answered when corrald is done (answers come in
any order); `submit` returns a Call without waiting, so many calls can be in
flight on one connection:

    calls = [c.submit("info", name=n) for n in names]
    infos = [k.result() for k in calls]

Not thread-safe: use one Client per thread (or the asyncio client).
"""
import select
import socket
import time

from . import errors
from ._proto import (NOTIFICATION, Methods, Router, Unpacker, default_socket, pack_request,
                     params_of)

_PENDING = object()


class Call:
    """A call in flight: result() waits for its answer."""

    def __init__(self, client, msgid, method):
        self.client = client
        self.msgid = msgid
        self.method = method
        self._result = _PENDING
        self._error = None

    def done(self):
        return self._result is not _PENDING or self._error is not None

    def _set(self, err, result):
        if err is not None:
            self._error = self.client._error(err)
        else:
            self._result = result

    def result(self, timeout=None):
        """The result, or raise the call's error.  timeout (seconds, default
        the client's): TimeoutError if no answer came by then."""
        if timeout is None:
            timeout = self.client.timeout
        self.client._wait(self.done, timeout, "the answer to %s" % self.method)
        if self._error is not None:
            raise self._error
        return self._result


class Client:
    """A connection to corrald.

    path: the socket (default: as the corral CLI finds it, see
    corral.default_socket); read_only: the read-only socket beside it.
    timeout: how long result() waits for an answer by default (seconds,
    None: for ever); corrald itself ends each call at its deadline
    (timeout_ms, a param of every method).
    """

    def __init__(self, path=None, read_only=False, timeout=300.0):
        self.path = path or default_socket(read_only)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(self.path)
        except OSError:
            self.sock.close()
            raise
        self._unpacker = Unpacker()
        self._calls = {}
        self._next = 0
        self._router = Router()
        self._methods = None
        self._closed = False

    # -- lifetime ----------------------------------------------------------

    def close(self):
        if not self._closed:
            self._closed = True
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- calls -------------------------------------------------------------

    def submit(self, method, params=None, **kwargs):
        """Send a call now; the Call's result() waits for its answer."""
        if self._closed:
            raise errors.ConnectionLost("the client is closed")
        self._next = (self._next + 1) & 0xFFFFFFFF
        msgid = self._next
        call = Call(self, msgid, method)
        self._calls[msgid] = call
        try:
            self.sock.sendall(pack_request(msgid, method, params_of(params, kwargs)))
        except OSError as e:
            del self._calls[msgid]
            raise errors.ConnectionLost("cannot send to corrald: %s" % e) from e
        return call

    def call(self, method, params=None, **kwargs):
        """Call method with params (a map, and/or keyword arguments) and
        return its result, or raise its error (a CorralError subclass)."""
        return self.submit(method, params, **kwargs).result()

    def api(self):
        """The daemon's method table (api.info), read once per connection."""
        if self._methods is None:
            self._methods = Methods(self.call("api.info"))
        return self._methods

    def methods(self):
        """The names of the daemon's methods."""
        return sorted(self.api().by_name)

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        m = self.api().lookup(attr)
        if m is None:
            raise AttributeError("corrald has no method %r (it has: %s)" %
                                 (attr, ", ".join(self.methods())))

        def method(*args, **kwargs):
            return self.call(m["name"], Methods.bind(m, args, kwargs))
        method.__name__ = attr
        method.__doc__ = Methods.doc(m)
        return method

    def __dir__(self):
        names = list(super().__dir__())
        if self._methods is not None:
            names += list(self._methods.by_attr)
        return names

    # -- events and the console ----------------------------------------------

    def events(self, name=None):
        """Subscribe to domain events (one domain's with name): an iterator
        of event maps {domain, event, timestamp, data, subscription}; a
        loss is yielded as {"event": "events.dropped", "count": N, ...}."""
        sub = self.call("events.subscribe", name=name)["subscription"]
        return EventReader(self, sub)

    def console(self, name, history=True):
        """View the domain's serial console: an iterator of bytes (the last
        64 KiB first unless history is False), ending when the console
        closes.  Type into it with console_write(name, data)."""
        r = self.call("console.attach", name=name, history=history)
        return ConsoleReader(self, r["subscription"], name)

    def notifications(self):
        """Notifications that belong to no subscription, oldest first."""
        while self._router.other:
            yield self._router.other.popleft()

    # -- the reading side ------------------------------------------------------

    def _error(self, err):
        if self._methods is not None and isinstance(err, (list, tuple)) and err:
            e = self._methods.errors.get(err[0])
            if e:
                errors.error_class(err[0], e.get("name"))
        return errors.from_wire(err)

    def _read(self, timeout):
        """Read once (waiting at most timeout seconds) and dispatch."""
        if self._closed:
            raise errors.ConnectionLost("the client is closed")
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return
        try:
            data = self.sock.recv(1 << 16)
        except OSError as e:
            self._lost("connection to corrald broke: %s" % e)
        if not data:
            self._lost("corrald closed the connection")
        self._unpacker.feed(data)
        for m in self._unpacker:
            if m[0] == NOTIFICATION:
                self._router.put(m[1], m[2] if len(m) > 2 else [])
                continue
            call = self._calls.pop(m[1], None) if len(m) == 4 else None
            if call is not None:
                call._set(m[2], m[3])

    def _lost(self, why):
        self.close()
        for call in self._calls.values():
            call._error = errors.ConnectionLost(why)
        self._calls.clear()
        raise errors.ConnectionLost(why)

    def _wait(self, pred, timeout, what):
        """Read until pred() holds; timeout None: no limit."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not pred():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("no %s from corrald within %s s" % (what, timeout))
            self._read(left)

    def _next_note(self, sub, timeout):
        """The next notification of subscription sub, or None at the timeout."""
        box = []

        def got():
            n = self._router.take(sub)
            if n is not None:
                box.append(n)
            return bool(box)
        try:
            self._wait(got, timeout, "notification")
        except TimeoutError:
            return None
        return box[0]


class EventReader:
    """Domain events of one subscription; iterate, or next_event(timeout)."""

    def __init__(self, client, sub):
        self.client = client
        self.subscription = sub
        self.closed = False

    def next_event(self, timeout=None):
        """The next event map, or None when timeout (seconds) passed first."""
        n = self.client._next_note(self.subscription, timeout)
        if n is None:
            return None
        method, p = n
        if method == "events.dropped":
            return dict(p, event="events.dropped")
        return p

    def __iter__(self):
        while not self.closed:
            ev = self.next_event()
            if ev is not None:
                yield ev

    def close(self):
        """Unsubscribe."""
        if not self.closed:
            self.closed = True
            self.client._router.forget(self.subscription)
            if not self.client._closed:
                self.client.call("events.unsubscribe", subscription=self.subscription)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ConsoleReader:
    """A serial console's output: iterate for bytes, or read(timeout)."""

    def __init__(self, client, sub, name):
        self.client = client
        self.subscription = sub
        self.name = name
        self.dropped = 0            # bytes lost because this reader lagged
        self.closed_reason = None   # why the console closed, once it has
        self.detached = False

    def read(self, timeout=None):
        """The next output bytes; b"" when the console has closed; None when
        timeout (seconds) passed first."""
        while self.closed_reason is None:
            n = self.client._next_note(self.subscription, timeout)
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

    def read_until(self, needle, timeout):
        """Read until needle (bytes) has appeared; return what was read.
        TimeoutError when it has not within timeout seconds."""
        buf = b""
        deadline = time.monotonic() + timeout
        while needle not in buf:
            left = deadline - time.monotonic()
            chunk = self.read(max(left, 0)) if left > 0 else None
            if chunk is None or (chunk == b"" and self.closed_reason):
                raise TimeoutError("%r did not appear on %s's console within %s s "
                                   "(got %r)" % (needle, self.name, timeout, buf[-200:]))
            buf += chunk
        return buf

    def write(self, data):
        """Type data (bytes or str) into the console."""
        return self.client.call("console.write", name=self.name, data=data)

    def __iter__(self):
        while True:
            chunk = self.read()
            if not chunk:
                return
            yield chunk

    def close(self):
        """Stop viewing (console.detach)."""
        if not self.detached:
            self.detached = True
            self.client._router.forget(self.subscription)
            if not self.client._closed and self.closed_reason is None:
                try:
                    self.client.call("console.detach", subscription=self.subscription)
                except errors.CorralError:
                    pass        # it closed meanwhile

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

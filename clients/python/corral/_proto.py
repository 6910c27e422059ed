# SPDX-License-Identifier: MIT
"""What the synchronous and the asyncio client share: the socket path, the
wire format, the method table read from api.info, notification routing."""
import collections
import os

import msgpack

from . import errors

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2

# Notifications that belong to a subscription, and what they mean for it.
SUB_NOTES = {"event", "events.dropped", "console", "console.dropped", "console.closed"}


def default_socket(read_only=False):
    """corrald's socket as the corral CLI finds it: $CORRAL_SOCKET, else the
    per-user one (/run/corral/corral.sock for root, else
    $XDG_RUNTIME_DIR/corral/corral.sock, else /tmp/corral-UID/corral.sock);
    read_only: corral-ro.sock beside it."""
    path = os.environ.get("CORRAL_SOCKET")
    if not path:
        xdg = os.environ.get("XDG_RUNTIME_DIR", "")
        if os.getuid() == 0:
            path = "/run/corral/corral.sock"
        elif xdg.startswith("/"):
            path = xdg + "/corral/corral.sock"
        else:
            path = "/tmp/corral-%d/corral.sock" % os.getuid()
    if read_only:
        path = os.path.join(os.path.dirname(path), "corral-ro.sock")
    return path


def attr_name(method):
    """The Python name of a method: "events.subscribe" -> "events_subscribe"."""
    return method.replace(".", "_").replace("-", "_")


def params_of(params, kwargs):
    """One params map from a dict and keyword arguments (None values dropped)."""
    out = dict(params or {})
    out.update(kwargs)
    return {k: v for k, v in out.items() if v is not None}


class Methods:
    """The daemon's method table, as api.info describes it."""

    def __init__(self, api):
        self.version = api.get("version")
        self.by_name = {m["name"]: m for m in api.get("methods", [])}
        self.by_attr = {attr_name(n): m for n, m in self.by_name.items()}
        self.errors = {e["code"]: e for e in api.get("errors", [])}
        for code, e in self.errors.items():
            errors.error_class(code, e.get("name"))     # a class for every code it has

    def lookup(self, attr):
        return self.by_attr.get(attr)

    @staticmethod
    def bind(m, args, kwargs):
        """params for method m from positional args (its required params, in
        order, then the others) and keyword args."""
        order = [p["name"] for p in m.get("params", []) if p.get("required")]
        order += [p["name"] for p in m.get("params", []) if not p.get("required")]
        if len(args) > len(order):
            raise TypeError("%s takes at most %d positional arguments (%s)" %
                            (m["name"], len(order), ", ".join(order) or "none"))
        params = dict(zip(order, args))
        for k in kwargs:
            if k in params:
                raise TypeError("%s got %r twice" % (m["name"], k))
        return params_of(params, kwargs)

    @staticmethod
    def doc(m):
        lines = [m.get("doc", ""), ""]
        for p in m.get("params", []):
            lines.append("%s (%s%s): %s" % (p["name"], p.get("type", "?"),
                                             ", required" if p.get("required") else "",
                                             p.get("doc", "")))
        if m.get("result"):
            lines += ["", "Returns " + m["result"]]
        return "\n".join(lines)


class Router:
    """Notifications by subscription id; those that arrive before anybody
    asks for them (a console's history can beat the attach's answer) wait."""

    def __init__(self):
        self.queues = collections.defaultdict(collections.deque)
        self.other = collections.deque(maxlen=4096)     # notifications of no subscription

    def put(self, method, params):
        p = params[0] if isinstance(params, list) and params else params
        sub = p.get("subscription") if isinstance(p, dict) else None
        if method in SUB_NOTES and sub is not None:
            self.queues[sub].append((method, p))
        else:
            self.other.append((method, p))

    def take(self, sub):
        q = self.queues.get(sub)
        if q:
            return q.popleft()
        return None

    def forget(self, sub):
        self.queues.pop(sub, None)


class Unpacker:
    """msgpack frames from a byte stream, checked for the message shapes."""

    def __init__(self):
        self.u = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)

    def feed(self, data):
        self.u.feed(data)

    def __iter__(self):
        for m in self.u:
            if not isinstance(m, list) or not m or m[0] not in (RESPONSE, NOTIFICATION):
                raise errors.ConnectionLost("corrald sent something that is not "
                                            "msgpack-RPC: %r" % (m,))
            yield m


def pack_request(msgid, method, params):
    return msgpack.packb([REQUEST, msgid, method, [params or {}]], use_bin_type=True)

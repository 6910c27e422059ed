# SPDX-License-Identifier: MIT
"""Typed errors: one exception class per error code of corrald.

Every error corrald answers is raised as a subclass of CorralError carrying
`code` (the number), `name` (e.g. "no-such-domain") and `message` (corrald's
text).  The table below follows corrald's error table (docs/API.md,
"Errors"); the test suite compares it with the `errors` of a running
corrald's `api.info`, so the two cannot drift apart.  A code this table does
not know yet still raises a CorralError subclass, made on the fly and named
after the code's name.
"""

__all__ = ["CorralError", "ConnectionLost", "error_class", "ERRORS"]


class CorralError(Exception):
    """An error answer from corrald: code, name and message."""

    code = 0
    name = "error"

    def __init__(self, message, code=None, name=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name

    def __str__(self):
        return "%s (%s, %d)" % (self.message, self.name, self.code)


class ConnectionLost(ConnectionError):
    """corrald closed the connection (or it broke) before answering."""


# code, name, class name: the daemon's error table.
ERRORS = [
    (1, "invalid-request", "InvalidRequest"),
    (2, "method-not-found", "MethodNotFound"),
    (3, "invalid-argument", "InvalidArgument"),
    (4, "no-such-domain", "NoSuchDomain"),
    (5, "exists", "Exists"),
    (6, "busy", "Busy"),
    (7, "timeout", "Timeout"),
    (8, "bad-state", "BadState"),
    (9, "permission", "PermissionDenied"),
    (10, "qemu-error", "QemuError"),
    (11, "monitor-broken", "MonitorBroken"),
    (12, "internal", "Internal"),
    (13, "unavailable", "Unavailable"),
    (14, "cancelled", "Cancelled"),
    (15, "storage", "Storage"),
]

_by_code = {}


def _make(code, name, cls_name):
    cls = type(cls_name, (CorralError,), {
        "code": code, "name": name,
        "__doc__": "corrald error %d, %s." % (code, name),
        "__module__": __name__,
    })
    _by_code[code] = cls
    return cls


for _code, _name, _cls_name in ERRORS:
    globals()[_cls_name] = _make(_code, _name, _cls_name)
    __all__.append(_cls_name)


def class_name(name):
    """The class name for an error name: "no-such-domain" -> "NoSuchDomain"."""
    return "".join(p.capitalize() for p in name.replace("_", "-").split("-") if p)


def error_class(code, name=None):
    """The exception class of an error code (made once for an unknown one)."""
    cls = _by_code.get(code)
    if cls is None:
        cls = _make(code, name or "error-%d" % code, class_name(name or "error-%d" % code))
    return cls


def from_wire(err):
    """The exception for an error answer [code, message]."""
    if isinstance(err, (list, tuple)) and len(err) == 2 and isinstance(err[0], int):
        code, message = err
        return error_class(code)(str(message))
    return CorralError("malformed error answer: %r" % (err,))

# SPDX-License-Identifier: MIT
"""corral: a Python client for corrald, the corral VM daemon.

    import corral

    with corral.Client() as c:              # the CLI's default socket
        c.define(config={"name": "vm1", "machine": "none", "memory": 64})
        c.start("vm1")
        print(c.info("vm1")["state"])

Methods are read from the daemon's own table (api.info): every method of
docs/API.md is an attribute ("events.subscribe" is events_subscribe), whose
positional arguments are its required params in order.  Errors raise
subclasses of corral.CorralError, one per error code (corral.NoSuchDomain,
corral.Busy, ...).  corral.aio.AsyncClient is the same for asyncio.
"""
from .client import Call, Client, ConsoleReader, EventReader
from .errors import *          # noqa: F401,F403  (CorralError and one class per code)
from .errors import __all__ as _errors_all
from ._proto import default_socket

__version__ = "0.1.0"
__all__ = ["Client", "Call", "ConsoleReader", "EventReader", "default_socket"] + _errors_all

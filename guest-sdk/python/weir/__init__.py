"""Write Weir stream transforms in Python.

A plugin is a directory with an ``app.py`` that marks its transform with
``@weir.transform`` -- a plain function for a stateless map or filter::

    import weir

    @weir.transform
    def upper(record: weir.Record, out: weir.Emitter) -> None:
        value = record.value
        out.emit(record.key, None if value is None else value.upper(), headers=record.headers)

or a :class:`Transform` subclass when it needs configuration, windows or
custom aggregations::

    @weir.transform
    class Router(weir.Transform):
        def __init__(self, config: weir.Config) -> None:
            self.routes = [(k[6:], v.encode()) for k, v in config.items() if k.startswith("route.")]

        def process(self, record: weir.Record, out: weir.Emitter) -> None:
            ...

Build it into a component with ``guest-sdk/python/build PLUGIN_DIR
OUT.wasm`` and try it with ``weir test OUT.wasm -i records.jsonl``.

Per record, ``process`` may emit any number of outputs (``out.emit``,
``out.forward``), read and write :mod:`weir.state`, and add values to
windows. Any exception it raises rejects that record alone (its outputs,
window additions and state changes are discarded; the deployment's
failure policy applies) with the exception's message; :class:`Reject`
chooses the message exactly, and :class:`Fatal` stops the deployment on
the partition instead.

The SDK hides the columnar batches of the WIT world
``weir:transform/plugin@0.2.1``: each :class:`Record` unpacks its
metadata from bytes and slices its bytes from the batch's one ``data``
buffer on demand, and :class:`Emitter` appends outputs to buffers returned
to the host. :mod:`weir.timers` act when time passes; :mod:`weir.tables`
reads the tables (compacted topics) the deployment declares.

Plugins run pre-initialised and sandboxed: every module they use must be
imported at the top of ``app.py`` (nothing can be imported once the
component is built), and there is no file system, network, clock or
environment. ``print`` goes to the host's log.
"""

from . import log, state, tables, timers, windows
from .config import Config, boolean, f64, i32, i64, u32, u64
from .emit import Emitter
from .errors import ConfigError, Fatal, Reject
from .record import Header, Record
from .tables import Table
from ._transform import Transform, transform
from .timers import Clock, Timer
from .windows import Aggregation, EmitMode, Window, WindowResult, WindowSpec

__all__ = [
    "Aggregation",
    "Clock",
    "Config",
    "ConfigError",
    "EmitMode",
    "Emitter",
    "Fatal",
    "Header",
    "Record",
    "Reject",
    "Table",
    "tables",
    "Timer",
    "timers",
    "Transform",
    "Window",
    "WindowResult",
    "WindowSpec",
    "boolean",
    "f64",
    "i32",
    "i64",
    "log",
    "state",
    "transform",
    "u32",
    "u64",
    "windows",
]

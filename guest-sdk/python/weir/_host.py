"""The generated bindings of ``weir:transform/plugin@0.2.1``, and the
layouts of its packed lists (see ``wit/0.2/types.wit``).

componentize-py generates the package ``wit_world`` while it builds the
component (its default world module name; the WIT package and version
appear in module names only when two packages would clash, so the
interfaces are plain ``wit_world.imports.types`` and so on). The rest of
the SDK imports the bindings from here only.
"""

import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state, tables, timers, types, windows

__all__ = ["Err", "exports", "log", "state", "tables", "timers", "types", "windows", "Span", "OutputBatch", "Reject", "WindowAdd", "RECORD", "OUTPUT", "HEADER", "NONE", "KEEP_TIMESTAMP"]

Span = types.Span
OutputBatch = types.OutputBatch
Reject = types.Reject
WindowAdd = types.WindowAdd

RECORD = struct.Struct("<qqIIIIII")
"""An input record: offset, timestamp, key (start, len), value (start, len), headers (first, count)."""
OUTPUT = struct.Struct("<IIIIIIIIq")
"""An output record: source, topic, key (start, len), value (start, len), headers (first, count), timestamp."""
HEADER = struct.Struct("<IIII")
"""A header: name (start, len), value (start, len)."""
NONE = 0xFFFFFFFF
"""The packed ``none``: a null key, value or header value, the default topic."""
KEEP_TIMESTAMP = -(2**63)
"""The packed "keep the source's timestamp"."""

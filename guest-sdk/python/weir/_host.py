"""The generated bindings of ``weir:transform/plugin@0.1.0``.

componentize-py generates the package ``wit_world`` while it builds the
component (its default world module name; the WIT package and version
appear in module names only when two packages would clash, so the
interfaces are plain ``wit_world.imports.types`` and so on). The rest of
the SDK imports the bindings from here only.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, state, types, windows

__all__ = ["Err", "exports", "log", "state", "types", "windows", "Span", "Header", "OutputRecord", "OutputBatch", "Reject", "WindowAdd"]

Span = types.Span
Header = types.Header
OutputRecord = types.OutputRecord
OutputBatch = types.OutputBatch
Reject = types.Reject
WindowAdd = types.WindowAdd

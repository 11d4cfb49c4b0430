"""Guards for the sandbox a built plugin runs in: clearer errors than a trap.

The component is pre-initialised: every module is imported at build time
and there is no file system at run time, so an import that was not done at
build time cannot succeed. Without this guard the import machinery would
call the (stubbed) file system and trap the instance with a bare
``unreachable``; with it the import raises an ``ImportError`` that names the
module, which rejects the record like any other exception.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

# Codecs that bytes.decode()/str.encode() would otherwise import on first use.
import encodings.ascii  # noqa: F401
import encodings.latin_1  # noqa: F401
import encodings.utf_16  # noqa: F401
import encodings.utf_32  # noqa: F401
import encodings.cp1252  # noqa: F401

__all__ = ["install"]

live = False


class _NoImportsAtRunTime:
    """A meta-path finder, first in line, that refuses imports once the
    host has started calling the plugin."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if not live:
            return None  # build time: import normally
        raise ImportError(
            f"weir: cannot import `{name}` while running: import it at the top of app.py "
            "(plugins are pre-initialised at build time and have no file system)",
            name=name,
        )


_CLOCKS = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "process_time", "process_time_ns", "sleep")


def _no_clock(name: str, fn: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(fn)
    def guarded(*args: object) -> object:
        if live:
            raise RuntimeError(
                f"weir: time.{name}() is not available in a transform (no clock in the sandbox); "
                "use the record's timestamp"
            )
        return fn(*args)

    guarded.__weir_guard__ = True  # type: ignore[attr-defined]
    return guarded


def install() -> None:
    """Installs the guards (at build time, from the build's entry module)."""
    if not any(isinstance(f, _NoImportsAtRunTime) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoImportsAtRunTime())
    # The clock functions would trap the instance; raise instead. (Other
    # clock users such as datetime.now() still trap.)
    for name in _CLOCKS:
        fn = getattr(time, name, None)
        if fn is not None and not getattr(fn, "__weir_guard__", False):
            setattr(time, name, _no_clock(name, fn))

"""Runs Python plugins under the build machine's CPython against an
in-memory host, for fast tests of the SDK and plugins without building a
component. Not a substitute for ``weir test`` (which runs the real
component): the window results given to on_window are whatever a test
passes in.

Bindings stubs come from ``componentize-py bindings`` (cached under
$WEIR_CACHE/python/stubs); their import functions are replaced here.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SDK = HERE.parent
WIT = SDK.parent.parent / "wit" / "0.2"


def _stubs() -> Path:
    cache = Path(os.environ.get("WEIR_CACHE", Path.home() / ".cache" / "weir")) / "python"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(WIT.glob("*.wit")))).hexdigest()[:16]
    out = cache / "stubs" / digest
    if not (out / "wit_world").is_dir():
        tool = cache / "venv" / "bin" / "componentize-py"
        if not tool.exists():
            subprocess.run([str(SDK / "setup")], check=True)
        subprocess.run(
            [str(tool), "-d", str(WIT), "-w", "weir:transform/plugin@0.2.1", "bindings", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


sys.path.insert(0, str(_stubs()))
sys.path.insert(0, str(SDK))

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import log as _log, state as _state, tables as _tables, timers as _timers, types as T, windows as _windows  # noqa: E402

import struct  # noqa: E402

_RECORD = struct.Struct("<qqIIIIII")
_OUTPUT = struct.Struct("<IIIIIIIIq")
_HEADER = struct.Struct("<IIII")
_NONE = 0xFFFFFFFF


class Host:
    """State, logs and window definitions of one fake deployment."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.keys: list[bytes] = []
        self.values: dict[bytes, bytes] = {}
        self.logs: list[tuple[str, str]] = []
        self.windows: dict[str, tuple[int, Any]] = {}
        self.timers: dict[bytes, tuple[int, Any]] = {}
        self.stream_time = -(2**63)
        self.wall_clock = 0
        # tables: name -> {key: value}, declared by a test (set_table)
        self.tables: dict[str, dict[bytes, bytes]] = {}
        self.table_ids: list[str] = []

    # state
    def get(self, key: bytes) -> bytes | None:
        assert type(key) is bytes, type(key)
        return self.values.get(key)

    def set(self, key: bytes, value: bytes, ttl_ms: int | None) -> None:
        assert type(key) is bytes and type(value) is bytes
        if key not in self.values:
            bisect.insort(self.keys, key)
        self.values[key] = value

    def delete(self, key: bytes) -> None:
        if key in self.values:
            del self.values[key]
            self.keys.remove(key)

    def range(self, start: bytes, end: bytes | None, limit: int) -> list[Any]:
        i = bisect.bisect_left(self.keys, start)
        out = []
        for k in self.keys[i:]:
            if (end is not None and k >= end) or len(out) >= limit:
                break
            out.append(_state.Entry(k, self.values[k]))
        return out

    def prefix(self, prefix: bytes, after: bytes | None, limit: int) -> list[Any]:
        i = bisect.bisect_right(self.keys, after) if after is not None else bisect.bisect_left(self.keys, prefix)
        out = []
        for k in self.keys[i:]:
            if not k.startswith(prefix) or len(out) >= limit:
                break
            out.append(_state.Entry(k, self.values[k]))
        return out

    # tables
    def set_table(self, name: str, entries: dict[bytes, bytes]) -> None:
        """Declares table ``name`` with these entries (as a test's setup)."""
        self.tables[name] = dict(entries)

    def open_table(self, name: str) -> int:
        if name not in self.tables:
            declared = ", ".join(f"`{n}`" for n in sorted(self.tables)) or "no tables"
            raise Err(f"no table `{name}`: the deployment declares {declared}")
        if name not in self.table_ids:
            self.table_ids.append(name)
        return self.table_ids.index(name)

    def _table(self, table: int) -> tuple[list[bytes], dict[bytes, bytes]]:
        values = self.tables[self.table_ids[table]]  # an unknown id traps (IndexError)
        return sorted(values), values

    def table_get(self, table: int, key: bytes) -> bytes | None:
        assert type(key) is bytes, type(key)
        return self._table(table)[1].get(key)

    def table_range(self, table: int, start: bytes, end: bytes | None, limit: int) -> list[Any]:
        assert type(start) is bytes and (end is None or type(end) is bytes)
        keys, values = self._table(table)
        return [_state.Entry(k, values[k]) for k in keys if k >= start and (end is None or k < end)][:limit]

    def table_prefix(self, table: int, prefix: bytes, after: bytes | None, limit: int) -> list[Any]:
        assert type(prefix) is bytes and (after is None or type(after) is bytes)
        keys, values = self._table(table)
        return [_state.Entry(k, values[k]) for k in keys if k.startswith(prefix) and (after is None or k > after)][:limit]

    # timers
    def set_timer(self, key: bytes, at: int, clock: Any) -> None:
        assert type(key) is bytes, type(key)
        self.timers[key] = (at, clock)

    def cancel_timer(self, key: bytes) -> None:
        self.timers.pop(key, None)

    def get_timer(self, key: bytes) -> tuple[int, Any] | None:
        return self.timers.get(key)

    def now(self, clock: Any) -> int:
        return self.stream_time if clock == _timers.Clock.EVENT_TIME else self.wall_clock

    # log
    def log(self, level: Any, message: str) -> None:
        self.logs.append((level.name.lower(), message))

    # windows
    def define(self, name: str, spec: Any) -> int:
        if name in self.windows:
            wid, old = self.windows[name]
            if old != spec:
                raise Err(f"window `{name}` is already defined with another spec")
            return wid
        self.windows[name] = (len(self.windows), spec)
        return len(self.windows) - 1


HOST = Host()
_state.get = HOST.get
_state.set = HOST.set
_state.delete = HOST.delete
_state.range = HOST.range
_state.prefix = HOST.prefix
_tables.open = HOST.open_table
_tables.get = HOST.table_get
_tables.range = HOST.table_range
_tables.prefix = HOST.table_prefix
_log.log = HOST.log
_windows.define = HOST.define
_timers.set = HOST.set_timer
_timers.cancel = HOST.cancel_timer
_timers.get = HOST.get_timer
_timers.now = HOST.now

import weir  # noqa: E402
import weir._export  # noqa: E402
import weir._runtime  # noqa: E402
import weir._transform  # noqa: E402

# The import guard would stop the test runner's own imports after init.
weir._runtime.install = lambda: None


def load(plugin_dir: str | Path) -> weir._export.Handler:
    """Imports ``plugin_dir/app.py`` afresh and returns the bound handler."""
    plugin_dir = str(plugin_dir)
    for name in list(sys.modules):
        mod = sys.modules[name]
        if name == "app" or (getattr(mod, "__file__", None) or "").startswith(plugin_dir + os.sep):
            del sys.modules[name]
    weir._transform._registered.clear()
    sys.path.insert(0, plugin_dir)
    try:
        app = importlib.import_module("app")
    finally:
        sys.path.remove(plugin_dir)
    weir._export.bind(app)
    weir.log._live = False
    return weir._export.Handler()


def batch(records: list[dict[str, Any]], topic: str = "in", partition: int = 0, first_offset: int = 0) -> Any:
    """An input batch from dicts with optional key, value (str or bytes),
    headers (dict or pairs) and timestamp, packed as the host packs it."""
    data = bytearray()
    headers = bytearray()
    recs = bytearray()

    def span(b: Any) -> tuple[int, int]:
        if b is None:
            return (0, _NONE)
        if isinstance(b, str):
            b = b.encode()
        start = len(data)
        data.extend(b)
        return (start, len(b))

    for i, r in enumerate(records):
        first = len(headers) // 16
        hs = r.get("headers") or {}
        for name, value in hs.items() if isinstance(hs, dict) else hs:
            headers += _HEADER.pack(*span(name), *span(value))
        key, value = span(r.get("key")), span(r.get("value"))
        recs += _RECORD.pack(first_offset + i, r.get("timestamp", 0), *key, *value, first, len(headers) // 16 - first)
    return T.InputBatch(topic, partition, bytes(data), bytes(recs), bytes(headers))


def timer_batch(timers: list[tuple[bytes, int]]) -> Any:
    """Fired event-time timers (key, at), as the host passes them."""
    data = bytearray()
    fired = []
    for key, at in timers:
        fired.append(_timers.Fired(T.Span(len(data), len(key)), at, _timers.Clock.EVENT_TIME))
        data += key
    return _timers.TimerBatch(bytes(data), fired)


def decode(out: Any) -> dict[str, Any]:
    """An output batch as plain values: outputs and rejects."""
    assert type(out.data) is bytes and type(out.records) is bytes and type(out.headers) is bytes
    data = out.data

    def b(start: int, n: int) -> bytes | None:
        return None if n == _NONE else data[start : start + n]

    outputs = []
    for source, topic, ks, kl, vs, vl, first, count, ts in _OUTPUT.iter_unpack(out.records):
        hs = [_HEADER.unpack_from(out.headers, 16 * i) for i in range(first, first + count)]
        outputs.append(
            {
                "source": source,
                "topic": None if topic == _NONE else out.topics[topic],
                "key": b(ks, kl),
                "value": b(vs, vl),
                "headers": [(b(ns, nl).decode(), b(hvs, hvl)) for ns, nl, hvs, hvl in hs],  # type: ignore[union-attr]
                "timestamp": None if ts == -(2**63) else ts,
            }
        )
    span = lambda s: None if s is None else data[s.start : s.start + s.len]  # noqa: E731
    adds = [(a.window, a.source, span(a.key), a.timestamp, a.number, span(a.custom)) for a in out.window_adds]
    return {"outputs": outputs, "rejects": [(r.source, r.message) for r in out.rejects], "adds": adds}

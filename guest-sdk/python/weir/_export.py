"""Glue between the generated ``handler`` export and the plugin's
transform. The build's entry module imports the plugin, calls
:func:`bind` and exposes :class:`Handler`, the class componentize-py
exports as ``weir:transform/handler``."""

from __future__ import annotations

from types import ModuleType, TracebackType
from typing import Any, Callable, Iterable, Iterator

from . import _host, _runtime, _transform, log
from .config import Config
from .emit import Emitter
from .errors import Fatal, message_of
from .record import Record, _Batch
from .timers import Timer
from .windows import Window, WindowResult

__all__ = ["Handler", "bind"]

_Err = _host.Err
_Reject = _host.Reject
_RECORD = _host.RECORD

_factory: Callable[[Config], Any] | None = None
_instance: Any = None


def bind(module: ModuleType) -> None:
    """Finds the plugin's transform (at build time): the target of
    ``@weir.transform``, else the one :class:`~weir.Transform` subclass
    defined in ``module``."""
    global _factory
    targets = list(_transform._registered)
    if not targets:
        targets = [
            v
            for v in vars(module).values()
            if isinstance(v, type)
            and issubclass(v, _transform.Transform)
            and v.__module__ == module.__name__
        ]
    if len(targets) != 1:
        raise RuntimeError(
            f"{module.__name__}: mark the transform with @weir.transform (a function "
            f"f(record, out) or a weir.Transform subclass); found {len(targets)} candidates"
        )
    _factory = _transform._factory(targets[0])
    log._redirect_standard_streams()
    _runtime.install()


def _trace(error: BaseException) -> str:
    """A compact traceback that reads no source files (there are none at
    run time)."""
    lines = [message_of(error)]
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(f"  at {code.co_filename}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    return "\n".join(lines)


def _each(items: Iterable[tuple[int, Any]], handle: Callable[[Any, Emitter], None], name: str) -> Any:
    """Hands each item (with its timestamp) to ``handle``: an exception
    rejects that item alone, undoing what it emitted; Fatal ends the call."""
    out = Emitter()
    data = out._data
    records = out._records
    headers = out._headers
    rejects = out._rejects
    i = 0
    for timestamp, item in items:
        out._source = i
        out._timestamp = timestamp
        nd = len(data)
        nr = len(records)
        nh = len(headers)
        try:
            handle(item, out)
        except Exception as e:
            if isinstance(e, Fatal):
                raise _Err(e.message) from None
            del data[nd:], records[nr:], headers[nh:]
            rejects.append(_Reject(i, message_of(e)))
            log.debug(_trace(e))
        i += 1
    if out._adds:
        raise _Err(f"{name} may not add to windows")
    return out._finish()


def _instance_or_trap() -> Any:
    if _instance is None:
        raise RuntimeError("weir: the host called the transform before init")
    return _instance


class Handler(_host.exports.Handler):
    def init(self, config: list[tuple[str, str]]) -> None:
        global _instance
        log._live = True
        _runtime.live = True
        if _factory is None:
            raise _Err("weir: no transform bound (the build's entry module did not call weir._export.bind)")
        try:
            _instance = _factory(Config(config))
        except Exception as e:
            log.debug(_trace(e))
            raise _Err(message_of(e)) from None

    def process(self, batch: Any) -> Any:
        ctx = _Batch(batch.data, batch.headers, batch.topic, batch.partition)
        out = Emitter(ctx)
        data = out._data
        records = out._records
        headers = out._headers
        adds = out._adds
        rejects = out._rejects
        process = _instance_or_trap().process
        i = 0
        for r in _RECORD.iter_unpack(batch.records):
            out._source = i
            out._timestamp = r[1]
            nd = len(data)
            nr = len(records)
            nh = len(headers)
            na = len(adds)
            try:
                process(Record(ctx, r), out)
            except Exception as e:
                if isinstance(e, Fatal):
                    raise _Err(e.message) from None
                del data[nd:], records[nr:], headers[nh:], adds[na:]
                rejects.append(_Reject(i, message_of(e)))
                log.debug(_trace(e))
            i += 1
        return out._finish()

    def on_window(self, batch: Any) -> Any:
        src = batch.data
        windows: dict[int, Window] = {}

        def results() -> Iterator[tuple[int, WindowResult]]:
            for r in batch.results:
                w = windows.get(r.window)
                if w is None:
                    w = windows[r.window] = Window(r.window)
                k = r.key
                c = r.custom
                custom = None if c is None else src[c.start : c.start + c.len]
                yield r.end, WindowResult(w, src[k.start : k.start + k.len], r.start, r.end, r.count, r.value, custom, r.closed)

        return _each(results(), _instance_or_trap().on_window, "on_window")

    def on_timer(self, batch: Any) -> Any:
        src = batch.data
        timers = ((t.at, Timer(src[t.key.start : t.key.start + t.key.len], t.at, t.clock)) for t in batch.timers)
        return _each(timers, _instance_or_trap().on_timer, "on_timer")

    def reduce(self, window: int, key: bytes, acc: bytes | None, values: list[bytes]) -> bytes:
        try:
            return bytes(_instance_or_trap().reduce(Window(window), key, acc, values))
        except Exception as e:
            log.error(_trace(e))  # the trap that follows carries no message
            raise

    def merge(self, window: int, key: bytes, a: bytes, b: bytes) -> bytes:
        try:
            return bytes(_instance_or_trap().merge(Window(window), key, a, b))
        except Exception as e:
            log.error(_trace(e))
            raise


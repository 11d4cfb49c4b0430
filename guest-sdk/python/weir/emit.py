"""Where a transform puts its outputs and window additions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Union

from . import _host
from .record import _Batch, _InputHeaders

if TYPE_CHECKING:
    from .record import Record
    from .windows import Window

__all__ = ["Emitter", "Bytes"]

Bytes = Union[bytes, bytearray, memoryview, str]
"""Byte data an output accepts: ``str`` is encoded as UTF-8."""

_Span = _host.Span
_WindowAdd = _host.WindowAdd
_NONE = _host.NONE
_KEEP = _host.KEEP_TIMESTAMP
_pack = _host.OUTPUT.pack
_pack_header = _host.HEADER.pack


class Emitter:
    """Collects what the current record (or window result) produces.

    All outputs of a call are appended to one byte buffer, which begins with
    the input batch's own bytes; each output refers to its key, value and
    header bytes by position, packed into another buffer, which is how they
    cross into the host (and why :meth:`forward` and re-emitting a record's
    unchanged headers copy nothing). Everything emitted for a record that is
    then rejected is dropped.
    """

    __slots__ = ("_batch", "_data", "_records", "_headers", "_topics", "_topic_ids", "_rejects", "_adds", "_source", "_timestamp")

    def __init__(self, batch: _Batch | None = None) -> None:
        self._batch = batch
        data = b"" if batch is None else batch.data
        headers = b"" if batch is None else batch.headers
        # The input batch's data and packed headers start the output's, so
        # that forward() refers to the input's positions instead of copying.
        self._data = bytearray(data)
        self._records = bytearray()
        self._headers = bytearray(headers)
        self._topics: list[str] = []
        self._topic_ids: dict[str, int] = {}
        self._rejects: list[_host.Reject] = []
        self._adds: list[_host.WindowAdd] = []
        self._source = 0
        self._timestamp = 0

    @property
    def timestamp(self) -> int:
        """The timestamp of the record (window result: its end; timer: its time) being handled."""
        return self._timestamp

    def emit(
        self,
        key: Bytes | None = None,
        value: Bytes | None = None,
        *,
        topic: str | None = None,
        headers: Iterable[tuple[str, Bytes | None]] | Mapping[str, Bytes | None] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Produces a record: ``key`` and ``value`` (``None``: null), to
        ``topic`` (default: the deployment's output topic), with
        ``headers`` (pairs or a mapping; a ``None`` value is a null header
        value) and ``timestamp`` in ms (default: the input record's, a
        window's last instant or a timer's time)."""
        data = self._data
        ks = vs = 0
        kl = vl = _NONE
        if key is not None:
            ks = len(data)
            data += key.encode() if isinstance(key, str) else key
            kl = len(data) - ks
        if value is not None:
            vs = len(data)
            data += value.encode() if isinstance(value, str) else value
            vl = len(data) - vs
        first = count = 0
        if headers:
            same = type(headers) is _InputHeaders and headers._range
            if same and same[0] is self._batch:
                first, count = same[1], same[2]
            else:
                hs = self._headers
                first = len(hs) >> 4
                for name, hv in headers.items() if isinstance(headers, Mapping) else headers:
                    ns = len(data)
                    data += name.encode()
                    nl = len(data) - ns
                    hvs, hvl = 0, _NONE
                    if hv is not None:
                        hvs = len(data)
                        data += hv.encode() if isinstance(hv, str) else hv
                        hvl = len(data) - hvs
                    hs += _pack_header(ns, nl, hvs, hvl)
                count = (len(hs) >> 4) - first
        self._records += _pack(
            self._source,
            _NONE if topic is None else self._topic(topic),
            ks,
            kl,
            vs,
            vl,
            first,
            count,
            _KEEP if timestamp is None else timestamp,
        )

    def forward(self, record: Record, *, topic: str | None = None) -> None:
        """Emits ``record`` unchanged -- key, value, headers and timestamp --
        to the deployment's output topic (or ``topic``)."""
        r = record._r
        self._records += _pack(self._source, _NONE if topic is None else self._topic(topic), r[2], r[3], r[4], r[5], r[6], r[7], _KEEP)

    def add_to_window(self, window: Window, key: Bytes, number: float = 1.0, *, timestamp: int | None = None) -> None:
        """Adds ``number`` under ``key`` to ``window`` (from
        :meth:`WindowSpec.define <weir.WindowSpec.define>`) at the record's
        timestamp, or at ``timestamp``. Only ``process`` may add to windows."""
        self._add(window, key, timestamp, float(number), None)

    def add_custom_to_window(self, window: Window, key: Bytes, value: Bytes, *, timestamp: int | None = None) -> None:
        """Adds ``value`` under ``key`` to a window with a custom
        aggregation; the host folds it with the transform's ``reduce``."""
        self._add(window, key, timestamp, 0.0, value)

    def _add(self, window: Window, key: Bytes, timestamp: int | None, number: float, custom: Bytes | None) -> None:
        data = self._data
        start = len(data)
        data += key.encode() if isinstance(key, str) else key
        key_span = _Span(start, len(data) - start)
        custom_span = None
        if custom is not None:
            start = len(data)
            data += custom.encode() if isinstance(custom, str) else custom
            custom_span = _Span(start, len(data) - start)
        self._adds.append(
            _WindowAdd(window.id, self._source, key_span, self._timestamp if timestamp is None else timestamp, number, custom_span)
        )

    def _topic(self, topic: str) -> int:
        i = self._topic_ids.get(topic)
        if i is None:
            if type(topic) is not str:
                raise TypeError(f"topic must be str, not {type(topic).__name__}")
            i = self._topic_ids[topic] = len(self._topics)
            self._topics.append(topic)
        return i

    def _finish(self) -> _host.OutputBatch:
        return _host.OutputBatch(bytes(self._data), bytes(self._records), bytes(self._headers), self._topics, self._rejects, self._adds)

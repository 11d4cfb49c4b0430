"""Input records: views of one columnar batch.

The host passes a batch's key, value and header bytes in one ``data``
buffer; a :class:`Record` remembers where its bytes are and slices them
only when asked for.
"""

from __future__ import annotations

from typing import Any

from . import _host, _json
from .errors import Reject

__all__ = ["Record", "Header"]

Header = tuple[str, "bytes | None"]
"""A header: its name and value (``None`` for a null value)."""


class _Batch:
    """What the records of one input batch share."""

    __slots__ = ("data", "headers", "topic", "partition")

    def __init__(self, data: bytes, headers: list[_host.Header], topic: str, partition: int) -> None:
        self.data = data
        self.headers = headers
        self.topic = topic
        self.partition = partition


class Record:
    """One consumed record.

    ``key`` and ``value`` are ``bytes``, or ``None`` for a null key or value
    (a tombstone); ``key_text`` and ``value_text`` decode UTF-8 (``None``
    when absent or not UTF-8). A record is only valid during the call that
    received it: copy what you need to keep.
    """

    __slots__ = ("_b", "_r")

    def __init__(self, batch: _Batch, record: _host.types.InputRecord) -> None:
        self._b = batch
        self._r = record

    @property
    def key(self) -> bytes | None:
        """The key bytes; ``None`` for a null key."""
        s = self._r.key
        if s is None:
            return None
        start = s.start
        return self._b.data[start : start + s.len]

    @property
    def value(self) -> bytes | None:
        """The value bytes; ``None`` for a null value (a tombstone)."""
        s = self._r.value
        if s is None:
            return None
        start = s.start
        return self._b.data[start : start + s.len]

    @property
    def key_text(self) -> str | None:
        """The key as UTF-8 text; ``None`` when absent or not valid UTF-8."""
        return _text(self.key)

    @property
    def value_text(self) -> str | None:
        """The value as UTF-8 text; ``None`` when absent or not valid UTF-8."""
        return _text(self.value)

    def value_json(self) -> Any:
        """The value parsed as JSON. A missing value or invalid JSON raises
        :class:`~weir.Reject`, which rejects the record if not caught."""
        value = self.value
        if value is None:
            raise Reject("record has no value")
        try:
            return _json.loads(value)
        except ValueError as e:
            raise Reject(str(e)) from None

    @property
    def timestamp(self) -> int:
        """Event time in milliseconds since the Unix epoch."""
        return self._r.timestamp

    @property
    def offset(self) -> int:
        """Offset of the record in its partition."""
        return self._r.offset

    @property
    def topic(self) -> str:
        return self._b.topic

    @property
    def partition(self) -> int:
        return self._b.partition

    @property
    def headers(self) -> list[Header]:
        """The headers in order, as ``(name, value)`` pairs; ``value`` is
        ``None`` for a null header value."""
        span = self._r.headers
        n = span.len
        if not n:
            return []
        data = self._b.data
        result = []
        first = span.start
        for h in self._b.headers[first : first + n]:
            name = h.name
            value = h.value
            result.append(
                (
                    data[name.start : name.start + name.len].decode("utf-8", "replace"),
                    None if value is None else data[value.start : value.start + value.len],
                )
            )
        return result

    def header(self, name: str, default: bytes | None = None) -> bytes | None:
        """The value of the first header called ``name``; ``default`` when
        there is none (and ``None`` for a null value)."""
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def has_header(self, name: str) -> bool:
        """Whether a header called ``name`` is present (even with a null value)."""
        return any(n == name for n, _ in self.headers)

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"timestamp={self.timestamp}, key={self.key!r}, value={self.value!r}, headers={self.headers!r})"
        )


def _text(b: bytes | None) -> str | None:
    if b is None:
        return None
    try:
        return b.decode()
    except UnicodeDecodeError:
        return None

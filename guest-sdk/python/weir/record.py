"""Input records: views of one columnar batch.

The host passes a batch's key, value and header bytes in one ``data``
buffer and each record's metadata packed into bytes; a :class:`Record`
holds its metadata as a tuple and slices its bytes only when asked for.
"""

from __future__ import annotations

from typing import Any

from . import _host, _json
from .errors import Reject

__all__ = ["Record", "Header"]

Header = tuple[str, "bytes | None"]
"""A header: its name and value (``None`` for a null value)."""

_NONE = _host.NONE
_unpack_header = _host.HEADER.unpack_from


class _Batch:
    """What the records of one input batch share."""

    __slots__ = ("data", "headers", "topic", "partition")

    def __init__(self, data: bytes, headers: bytes, topic: str, partition: int) -> None:
        self.data = data
        self.headers = headers
        self.topic = topic
        self.partition = partition


class _InputHeaders(list):  # type: ignore[type-arg]
    """A record's headers, remembering where they are in their batch while
    unchanged (``_range``: the batch, first header, count), so that
    emitting them again copies nothing."""

    __slots__ = ("_range",)

    def __setitem__(self, *a: Any) -> None:
        self._range = None
        super().__setitem__(*a)

    def __delitem__(self, *a: Any) -> None:
        self._range = None
        super().__delitem__(*a)

    def __iadd__(self, other: Any) -> Any:
        self._range = None
        return super().__iadd__(other)

    def __imul__(self, n: Any) -> Any:
        self._range = None
        return super().__imul__(n)

    def append(self, *a: Any) -> None:
        self._range = None
        super().append(*a)

    def extend(self, *a: Any) -> None:
        self._range = None
        super().extend(*a)

    def insert(self, *a: Any) -> None:
        self._range = None
        super().insert(*a)

    def pop(self, *a: Any) -> Any:
        self._range = None
        return super().pop(*a)

    def remove(self, *a: Any) -> None:
        self._range = None
        super().remove(*a)

    def clear(self) -> None:
        self._range = None
        super().clear()

    def sort(self, *a: Any, **k: Any) -> None:
        self._range = None
        super().sort(*a, **k)

    def reverse(self) -> None:
        self._range = None
        super().reverse()


class Record:
    """One consumed record.

    ``key`` and ``value`` are ``bytes``, or ``None`` for a null key or value
    (a tombstone); ``key_text`` and ``value_text`` decode UTF-8 (``None``
    when absent or not UTF-8). A record is only valid during the call that
    received it: copy what you need to keep.
    """

    __slots__ = ("_b", "_r")

    def __init__(self, batch: _Batch, record: tuple[int, int, int, int, int, int, int, int]) -> None:
        self._b = batch
        # offset, timestamp, key start, key len, value start, value len,
        # first header, header count
        self._r = record

    @property
    def key(self) -> bytes | None:
        """The key bytes; ``None`` for a null key."""
        r = self._r
        n = r[3]
        if n == _NONE:
            return None
        start = r[2]
        return self._b.data[start : start + n]

    @property
    def value(self) -> bytes | None:
        """The value bytes; ``None`` for a null value (a tombstone)."""
        r = self._r
        n = r[5]
        if n == _NONE:
            return None
        start = r[4]
        return self._b.data[start : start + n]

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
        return self._r[1]

    @property
    def offset(self) -> int:
        """Offset of the record in its partition."""
        return self._r[0]

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
        r = self._r
        first = r[6]
        n = r[7]
        result = _InputHeaders()
        result._range = (self._b, first, n)
        if not n:
            return result
        data = self._b.data
        packed = self._b.headers
        for i in range(first, first + n):
            ns, nl, vs, vl = _unpack_header(packed, i * 16)
            list.append(result, (data[ns : ns + nl].decode("utf-8", "replace"), None if vl == _NONE else data[vs : vs + vl]))
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

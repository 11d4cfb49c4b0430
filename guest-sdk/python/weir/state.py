"""Keyed state of this deployment on the current partition.

Raw bytes with :func:`get` / :func:`set` / :func:`delete` / :func:`range` /
:func:`scan_prefix`, or JSON values in a named :class:`Map`::

    counts = weir.state.Map("counts")
    n = counts.update("apple", lambda n: (n or 0) + 1)

Keys and values are ``bytes`` (``str`` is encoded as UTF-8). Changes made
while processing a record are visible at once; they are discarded if the
record is rejected and made durable before its offset is committed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Union

from . import _host, _json
from .errors import Reject

__all__ = ["get", "set", "delete", "range", "scan_prefix", "Map"]

Bytes = Union[bytes, bytearray, memoryview, str]

_st = _host.state
_get = _st.get
_set = _st.set
_delete = _st.delete
_PAGE = 256


def _b(key: Bytes) -> bytes:
    t = type(key)
    if t is bytes:
        return key  # type: ignore[return-value]
    if t is str:
        return key.encode()  # type: ignore[union-attr]
    return bytes(key)  # type: ignore[arg-type]


def get(key: Bytes) -> bytes | None:
    """The value stored under ``key``, if any."""
    return _get(_b(key))


def set(key: Bytes, value: Bytes, ttl_ms: int | None = None) -> None:
    """Stores ``value`` under ``key``. With ``ttl_ms`` the entry expires
    that many ms of stream time (event time) from now."""
    _set(_b(key), _b(value), ttl_ms)


def delete(key: Bytes) -> None:
    """Removes ``key``."""
    _delete(_b(key))


def range(start: Bytes, end: Bytes | None = None, limit: int = _PAGE) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` entries with ``start <= key < end`` (no ``end``: to
    the last key), in key order. For the next page call again with
    ``start`` = the last key returned + ``b"\\x00"``."""
    return [(e.key, e.value) for e in _st.range(_b(start), None if end is None else _b(end), limit)]


def scan_prefix(prefix: Bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every entry whose key starts with ``prefix``, in key order, fetched
    from the host a page at a time."""
    prefix = _b(prefix)
    return _paged(lambda after: _st.prefix(prefix, after, _PAGE))


def _paged(fetch) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    """The entries of successive pages, each fetched with the last key of
    the page before (``None`` first), until a page comes back short."""
    after: bytes | None = None
    while True:
        entries = fetch(after)
        for e in entries:
            yield e.key, e.value
        if len(entries) < _PAGE:
            return
        after = entries[-1].key


class Map:
    """A named collection of JSON values, stored under ``name + b"\\x00" +
    key``. Values are encoded exactly as Rust's ``serde_json`` encodes them
    (``3``, ``"text"``, ``{"a":[1,2.5]}``), so state written by a plugin in
    another language -- e.g. the Rust SDK's ``Map<u64>`` -- reads back here,
    and the other way round.

    A stored value that is not JSON raises :class:`~weir.Reject`.
    """

    __slots__ = ("name", "_prefix")

    def __init__(self, name: str) -> None:
        self.name = name
        self._prefix = name.encode() + b"\x00"

    def _key(self, key: Bytes) -> bytes:
        t = type(key)
        if t is str:
            return self._prefix + key.encode()  # type: ignore[union-attr]
        if t is bytes:
            return self._prefix + key  # type: ignore[operator]
        return self._prefix + bytes(key)  # type: ignore[arg-type]

    def get(self, key: Bytes, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when there is none."""
        raw = _get(self._key(key))
        return default if raw is None else _decode(raw)

    def set(self, key: Bytes, value: Any, ttl_ms: int | None = None) -> None:
        """Stores ``value`` (anything JSON can hold) under ``key``."""
        _set(self._key(key), _json.dumpb(value), ttl_ms)

    def delete(self, key: Bytes) -> None:
        _delete(self._key(key))

    def update(self, key: Bytes, f: Callable[[Any], Any]) -> Any:
        """Replaces the value under ``key`` with ``f(old)`` (``old`` is
        ``None`` when unset; returning ``None`` deletes it) and returns the
        new value."""
        k = self._key(key)
        raw = _get(k)
        new = f(None if raw is None else _decode(raw))
        if new is None:
            _delete(k)
        else:
            _set(k, _json.dumpb(new), None)
        return new

    def items(self) -> Iterator[tuple[bytes, Any]]:
        """Every ``(key, value)`` in key order."""
        n = len(self._prefix)
        for k, v in scan_prefix(self._prefix):
            yield k[n:], _decode(v)

    def __repr__(self) -> str:
        return f"Map({self.name!r})"


def _decode(raw: bytes) -> Any:
    if raw.isdigit() and (raw[0] != 0x30 or len(raw) == 1):
        return int(raw)  # the common case of a counter, without the JSON parser
    try:
        return _json.loads(raw)
    except ValueError as e:
        raise Reject(f"state value is not JSON: {e}") from None

"""Tables the deployment declares (world 0.2.1): for each key of a
compacted topic, its latest value, kept up to date by the host and
read-only. Open them in the transform's constructor, read them while
processing::

    @weir.transform
    class Enrich(weir.Transform):
        def __init__(self, config: weir.Config) -> None:
            self.customers = weir.tables.open("customers")

        def process(self, record: weir.Record, out: weir.Emitter) -> None:
            customer = self.customers.get(record.key) if record.key is not None else None
            if customer is not None:
                out.emit(record.key, (record.value or b"") + b";" + customer)

Keys are ``bytes`` (``str`` is encoded as UTF-8), as in :mod:`weir.state`.
A record sees the table as the host has loaded it when the record is
processed (as Kafka Streams' ``GlobalKTable``), not as of the record's
timestamp.

Open tables at run time (in ``__init__``), never at the top level of
``app.py``: that code runs while the component is built, with no host.
"""

from __future__ import annotations

from typing import Iterator

from . import _host
from .errors import ConfigError
from .state import _PAGE, Bytes, _b, _paged

__all__ = ["Table", "open"]

_t = _host.tables


class Table:
    """A table, opened by the name the deployment gives it (see
    :func:`open`). Its id stays valid for the life of the instance."""

    __slots__ = ("name", "id")

    def __init__(self, name: str, id: int) -> None:
        self.name = name
        self.id = id

    @classmethod
    def open(cls, name: str) -> Table:
        """The table the deployment declares as ``name``. An unknown name
        raises :class:`~weir.ConfigError` with the host's message (which
        names the declared tables): raised from the constructor, it stops
        the deployment with that message."""
        try:
            return cls(name, _t.open(name))
        except _host.Err as e:
            raise ConfigError(str(e.value)) from None

    def get(self, key: Bytes) -> bytes | None:
        """The value of ``key`` in the table, if any."""
        return _t.get(self.id, _b(key))

    def range(self, start: Bytes, end: Bytes | None = None, limit: int = _PAGE) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` entries with ``start <= key < end`` (no ``end``:
        to the last key), in key order. For the next page call again with
        ``start`` = the last key returned + ``b"\\x00"``."""
        return [(e.key, e.value) for e in _t.range(self.id, _b(start), None if end is None else _b(end), limit)]

    def scan_prefix(self, prefix: Bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every entry whose key starts with ``prefix``, in key order,
        fetched from the host a page at a time."""
        prefix, tid = _b(prefix), self.id
        return _paged(lambda after: _t.prefix(tid, prefix, after, _PAGE))

    def __repr__(self) -> str:
        return f"Table({self.name!r}, id={self.id})"


def open(name: str) -> Table:  # noqa: A001 - weir.tables.open, as weir.state.get
    """The table the deployment declares as ``name`` (:meth:`Table.open`)."""
    return Table.open(name)

"""Timers: act when time passes, not only when records arrive.

Each key of the current partition has at most one timer; setting it again
replaces it. When it fires, the host calls the transform's ``on_timer``
with state at hand. Timers live in the partition's state, so they survive
restarts and rebalances and are undone with a rejected record::

    @weir.transform
    class Silence(weir.Transform):
        def process(self, record, out):
            weir.timers.set(record.key, record.timestamp + 60_000)

        def on_timer(self, timer, out):
            out.emit(timer.key, "silent")

``EVENT_TIME`` timers fire when the partition's stream time (its largest
record timestamp) reaches them, before the record that takes it there;
``WALL_CLOCK`` timers when the host's clock does. See the
``weir:transform/timers`` interface for the exact rules.
"""

from __future__ import annotations

from typing import Union

from . import _host

__all__ = ["Clock", "EVENT_TIME", "WALL_CLOCK", "Timer", "set", "cancel", "get", "now"]

Bytes = Union[bytes, bytearray, memoryview, str]

_t = _host.timers
Clock = _t.Clock
EVENT_TIME = Clock.EVENT_TIME
WALL_CLOCK = Clock.WALL_CLOCK


def _b(b: Bytes) -> bytes:
    return b.encode() if isinstance(b, str) else bytes(b)


class Timer:
    """A timer that fired: its ``key`` (bytes), the time ``at`` (ms since
    the Unix epoch) it was set for, and its ``clock``."""

    __slots__ = ("key", "at", "clock")

    def __init__(self, key: bytes, at: int, clock: Clock) -> None:
        self.key = key
        self.at = at
        self.clock = clock

    def __repr__(self) -> str:
        return f"Timer(key={self.key!r}, at={self.at}, clock={self.clock.name})"


def set(key: Bytes, at: int, clock: Clock = EVENT_TIME) -> None:
    """Sets the timer of ``key`` to fire at ``at`` (ms since the epoch) on
    ``clock``, replacing the one it had."""
    _t.set(_b(key), at, clock)


def cancel(key: Bytes) -> None:
    """Removes the timer of ``key``, if any."""
    _t.cancel(_b(key))


def get(key: Bytes) -> tuple[int, Clock] | None:
    """The time and clock of the timer of ``key``, if it has one."""
    return _t.get(_b(key))


def now(clock: Clock = EVENT_TIME) -> int:
    """The current time of ``clock`` in ms: the partition's stream time, or
    the host's wall clock (the only wall clock a plugin has)."""
    return _t.now(clock)

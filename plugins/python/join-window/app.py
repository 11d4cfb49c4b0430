"""Stream-stream windowed join built from state and timers (the same
plugin as the Rust one): matches records of two input topics that share a
key and lie at most ``window_ms`` apart in event time (orders with their
payments).

Config: ``left`` and ``right``, the two topics (default ``orders`` and
``payments``); ``window_ms`` (default 60000); ``join``: ``inner``
(default), ``left`` or ``outer``.

A record with no match waits in state (one per key and side: a later one
replaces it) under its side (``l`` or ``r``) and key, as its timestamp (8
bytes, little-endian) followed by its value, with an event-time timer at
its timestamp + ``window_ms`` + 1. A record of the other side within the
window joins it: the output has the key, the value ``LEFT;RIGHT`` and the
later timestamp, and the waiting record and its timer go. When the timer
fires, the record expires: a left record is emitted as ``LEFT;`` under
``left`` and ``outer`` joins, a right one as ``;RIGHT`` under ``outer``,
with its own timestamp. Records of another topic, and records without a
key, are rejected."""

import struct

import weir
from weir import state, timers

TIMESTAMP = struct.Struct("<q")


def decode(stored: bytes) -> tuple[int, bytes]:
    """The timestamp and value of a waiting record."""
    return TIMESTAMP.unpack_from(stored)[0], stored[8:]


@weir.transform
class JoinWindow(weir.Transform):
    def __init__(self, config: weir.Config) -> None:
        self.left = config.get("left", "orders")
        self.right = config.get("right", "payments")
        if self.left == self.right:
            raise weir.ConfigError(f"left and right must be different topics, both are `{self.left}`")
        window_ms = config.get("window_ms")
        try:
            # Not trimmed, as Rust's `str::parse::<i64>`.
            self.window_ms = 60_000 if window_ms is None else weir.i64(window_ms)
        except ValueError as e:
            raise weir.ConfigError(f"window_ms: {e}") from None
        if self.window_ms < 0:
            raise weir.ConfigError(f"window_ms must not be negative, not {self.window_ms}")
        join = config.get("join", "inner")
        if join == "inner":
            self.emit_left, self.emit_right = False, False
        elif join == "left":
            self.emit_left, self.emit_right = True, False
        elif join == "outer":
            self.emit_left, self.emit_right = True, True
        else:
            raise weir.ConfigError(f"join must be `inner`, `left` or `outer`, not `{join}`")

    def process(self, record: weir.Record, out: weir.Emitter) -> None:
        topic = record.topic
        if topic == self.left:
            side, other = b"l", b"r"
        elif topic == self.right:
            side, other = b"r", b"l"
        else:
            raise weir.Reject(f"topic `{topic}` is neither left (`{self.left}`) nor right (`{self.right}`)")
        key = record.key
        if key is None:
            raise weir.Reject("record has no key")
        value = record.value or b""
        ts = record.timestamp
        other_key = other + key
        stored = state.get(other_key)
        if stored is not None:
            other_ts, other_value = decode(stored)
            if abs(ts - other_ts) <= self.window_ms:
                joined = value + b";" + other_value if side == b"l" else other_value + b";" + value
                out.emit(key, joined, timestamp=max(ts, other_ts))
                state.delete(other_key)
                timers.cancel(other_key)
                return
        own = side + key
        state.set(own, TIMESTAMP.pack(ts) + value)
        timers.set(own, ts + self.window_ms + 1, timers.EVENT_TIME)

    def on_timer(self, timer: weir.Timer, out: weir.Emitter) -> None:
        stored = state.get(timer.key)
        if stored is None:
            return
        state.delete(timer.key)
        ts, value = decode(stored)
        side, key = timer.key[:1], timer.key[1:]
        if side == b"l" and self.emit_left:
            joined = value + b";"
        elif side == b"r" and self.emit_right:
            joined = b";" + value
        else:
            return
        out.emit(key, joined, timestamp=ts)

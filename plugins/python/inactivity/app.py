"""Inactivity alert with timers (the same plugin as the Rust one): after
each record of a key, (re)sets the key's timer ``gap_ms`` later, so it
fires only once the key has been silent that long. Config ``clock``:
``event-time`` (default) or ``wall-clock``. An alert's value is
``{"records":N,"last":T,"alerts":A}``: the key's records since its last
alert, its last record's timestamp and its alerts so far."""

import weir
from weir import timers


def read(key: bytes) -> int:
    v = weir.state.get(key)
    return 0 if v is None else int(v)


@weir.transform
class Inactivity(weir.Transform):
    def __init__(self, config: weir.Config) -> None:
        self.gap_ms = int(config.get("gap_ms", "60000"))
        clock = config.get("clock", "event-time")
        if clock == "event-time":
            self.clock = timers.EVENT_TIME
        elif clock == "wall-clock":
            self.clock = timers.WALL_CLOCK
        else:
            raise weir.ConfigError(f"clock must be `event-time` or `wall-clock`, not `{clock}`")

    def process(self, record: weir.Record, out: weir.Emitter) -> None:
        key = record.key
        if key is None:
            raise weir.Reject("record has no key")
        weir.state.set(b"n:" + key, str(read(b"n:" + key) + 1))
        weir.state.set(b"t:" + key, str(record.timestamp))
        base = record.timestamp if self.clock == timers.EVENT_TIME else timers.now(timers.WALL_CLOCK)
        timers.set(key, base + self.gap_ms, self.clock)

    def on_timer(self, timer: weir.Timer, out: weir.Emitter) -> None:
        key = timer.key
        n = read(b"n:" + key)
        a = read(b"a:" + key) + 1
        last = read(b"t:" + key)
        weir.state.delete(b"n:" + key)
        weir.state.set(b"a:" + key, str(a))
        out.emit(key, f'{{"records":{n},"last":{last},"alerts":{a}}}')

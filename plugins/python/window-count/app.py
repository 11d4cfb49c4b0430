"""Counts records per key in windows computed by the host.

Config: ``window`` = ``tumbling`` | ``hopping`` | ``sliding`` | ``session`` |
``count-tumbling`` | ``count-hopping``, ``size_ms`` (tumbling, hopping,
sliding), ``advance_ms`` (hopping), ``gap_ms`` (session), ``count`` and
``step`` (count windows), ``grace_ms`` (default 0), ``emit`` = ``final`` (default) |
``update``, and optionally ``idle_close_ms``. Each result becomes a record
keyed by the record key with value ``{"start":S,"end":E,"count":N}``; ``end``
is exclusive for tumbling and hopping windows and the inclusive last instant
for sliding and session windows, as Kafka Streams reports them. In update
mode a session merged into another is reported with count 0.
"""

import weir
from weir import ConfigError, WindowSpec, u64


def spec(config: weir.Config) -> WindowSpec:
    def ms(key: str) -> int:
        value = config.parse(key, u64)
        if value is None:
            raise ConfigError(f"config `{key}` is required for this window")
        return value

    kind = config.require("window")
    if kind == "tumbling":
        spec = WindowSpec.tumbling(ms("size_ms"))
    elif kind == "hopping":
        spec = WindowSpec.hopping(ms("size_ms"), ms("advance_ms"))
    elif kind == "sliding":
        spec = WindowSpec.sliding(ms("size_ms"))
    elif kind == "session":
        spec = WindowSpec.session(ms("gap_ms"))
    elif kind == "count-tumbling":
        spec = WindowSpec.count_tumbling(ms("count"))
    elif kind == "count-hopping":
        spec = WindowSpec.count_hopping(ms("count"), ms("step"))
    else:
        raise ConfigError(f"config `window` = `{kind}`: expected tumbling, hopping, sliding, session, count-tumbling or count-hopping")
    spec = spec.grace_ms(config.parse_or("grace_ms", u64, 0)).count()
    emit = config.get("emit", "final")
    if emit == "final":
        spec = spec.emit_on_close()
    elif emit == "update":
        spec = spec.emit_on_update()
    else:
        raise ConfigError(f"config `emit` = `{emit}`: expected final or update")
    idle = config.parse("idle_close_ms", u64)
    return spec if idle is None else spec.idle_close_ms(idle)


@weir.transform
class WindowCount(weir.Transform):
    def __init__(self, config: weir.Config) -> None:
        self.window = spec(config).define("count")

    def process(self, record: weir.Record, out: weir.Emitter) -> None:
        out.add_to_window(self.window, record.key or b"", 1.0)

    def on_window(self, w: weir.WindowResult, out: weir.Emitter) -> None:
        out.emit(w.key, f'{{"start":{w.start},"end":{w.end},"count":{w.count}}}')

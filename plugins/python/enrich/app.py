"""Stream-table join (the same plugin as the Rust one): enriches each
record with the value its key has in a table (orders with their
customers). Config ``table`` names the table (default ``customers``);
``join`` is ``inner`` (default: records whose key is not in the table, or
that have no key, are dropped) or ``left`` (they pass with nothing
appended).

An output keeps the record's key and timestamp; its value is the record's
value, ``;``, and the table's value (an empty one for a left join's miss;
a null value counts as empty)."""

import weir


@weir.transform
class Enrich(weir.Transform):
    def __init__(self, config: weir.Config) -> None:
        # Opened here, in init: an unknown table stops the deployment with
        # the host's message, which names the declared tables.
        self.table = weir.tables.open(config.get("table", "customers"))
        join = config.get("join", "inner")
        if join == "inner":
            self.left = False
        elif join == "left":
            self.left = True
        else:
            raise weir.ConfigError(f"join must be `inner` or `left`, not `{join}`")

    def process(self, record: weir.Record, out: weir.Emitter) -> None:
        key = record.key
        found = None if key is None else self.table.get(key)
        if found is None and not self.left:
            return
        value = (record.value or b"") + b";" + (found or b"")
        out.emit(key, value, timestamp=record.timestamp)

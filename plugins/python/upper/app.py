"""Stateless map: forwards every record with its value upper-cased (ASCII),
keeping key, headers and timestamp."""

import weir


@weir.transform
def upper(record: weir.Record, out: weir.Emitter) -> None:
    value = record.value
    out.emit(record.key, None if value is None else value.upper(), headers=record.headers)

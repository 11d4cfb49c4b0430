"""Hostile: passes records through unchanged, but raises an ordinary Python
exception (whose message contains the value) when the value contains
``boom``. The SDK turns it into a rejection of that record alone: the
instance does not trap and the other records of the batch go through."""

import weir


@weir.transform
def hostile_raise(record: weir.Record, out: weir.Emitter) -> None:
    value = record.value_text or ""
    if "boom" in value:
        raise ValueError(f"hostile-raise: refusing record with value {value!r}")
    out.forward(record)

"""Hostile: passes records through unchanged, but allocates without bound
when the value contains ``boom``. The host's memory limit ends the call; the
host isolates the record and the others go through."""

import weir

hoard: list[bytearray] = []


@weir.transform
def hostile_memory(record: weir.Record, out: weir.Emitter) -> None:
    if b"boom" in (record.value or b""):
        while True:
            hoard.append(bytearray(1 << 20))
    out.forward(record)

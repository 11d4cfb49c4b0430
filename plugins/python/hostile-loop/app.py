"""Hostile: passes records through unchanged, but loops forever when the
value contains ``boom``. The host's CPU time limit ends the call; the host
isolates the record and the others go through."""

import weir


@weir.transform
def hostile_loop(record: weir.Record, out: weir.Emitter) -> None:
    if b"boom" in (record.value or b""):
        while True:
            pass
    out.forward(record)

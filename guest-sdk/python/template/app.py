"""{{name}}: a Weir transform in Python.

Build:  ./build    (guest-sdk/python/build . {{name}}.wasm)
Try:    weir test {{name}}.wasm -i sample.jsonl

Every module the plugin uses must be imported here at the top: the component
is pre-initialised at build time and cannot import anything later.
"""

import weir


@weir.transform
def process(record: weir.Record, out: weir.Emitter) -> None:
    """Forwards each record with its value upper-cased (ASCII), keeping key,
    headers and timestamp. Raising rejects the record."""
    value = record.value
    out.emit(record.key, None if value is None else value.upper(), headers=record.headers)

"""JSON encoded byte for byte like Rust's ``serde_json::to_vec``.

State values written by plugins in any language must read back in every
other one, so typed state uses the compact serde_json form: no spaces,
non-ASCII text unescaped, shortest round-trip floats written as serde_json 1.0.154
writes them (``1.0``, ``0.00001``, ``1e-7``, ``1.5e+300``), and non-finite
floats as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "dumpb", "loads"]

_encode_str = json.encoder.encode_basestring  # escapes like serde_json, keeps non-ASCII


def _float(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    text = repr(value)
    if "e" not in text:
        # repr uses fixed notation for 1e-4 <= |v| < 1e16 (and 0), as
        # serde_json does; an integral value already ends in ".0".
        return text
    mantissa, _, exp = text.partition("e")
    exponent = int(exp)  # value = d.ddd * 10^exponent
    if exponent > 0:
        return text  # "1e+16", "1.5e+300": the same in both
    if exponent == -5:
        # serde_json writes 1e-5 <= |v| < 1e-4 in fixed notation, repr does not.
        sign = ""
        if mantissa.startswith("-"):
            sign, mantissa = "-", mantissa[1:]
        return f"{sign}0.0000{mantissa.replace('.', '')}"
    return f"{mantissa}e{exponent}"  # "1e-7", where repr writes "1e-07"


def dumps(value: Any) -> str:
    """``value`` as compact JSON text, as serde_json writes it."""
    t = type(value)
    if t is int:
        return str(value)
    if t is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if t is float:
        return _float(value)
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if isinstance(k, str):
                key = k
            elif isinstance(k, bool) or k is None:
                key = dumps(k)
            elif isinstance(k, int):
                key = str(int(k))
            elif isinstance(k, float):
                key = _float(k)
            else:
                raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
            parts.append(_encode_str(key) + ":" + dumps(v))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float(float(value))
    if isinstance(value, str):
        return _encode_str(str(value))
    raise TypeError(f"Object of type {t.__name__} is not JSON serializable")


def dumpb(value: Any) -> bytes:
    """``dumps(value)`` as UTF-8 bytes."""
    t = type(value)
    if t is int:
        return str(value).encode()
    return dumps(value).encode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parses JSON text or UTF-8 bytes."""
    if isinstance(data, memoryview):
        data = bytes(data)
    return json.loads(data)

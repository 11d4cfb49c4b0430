"""Field-level map over typed records (the same plugin as the Rust one), the
conformance plugin of record formats: a deployment with ``formats.value =
"avro"`` hands it each order as JSON, and encodes what it emits with the
output schema.

In: ``{"id": long, "item": string, "qty": int}``. Out, with the same key:
the item upper-cased, the quantity doubled and the writer's schema id (the
``weir.value.schema-id`` header; -1 without one) as ``schema_id``. An item
named ``unfit`` gets its quantity as text, which no output schema of this
shape accepts: the conformance tests' bad output. A value that is not such
an order is rejected.

The value is read as serde_json reads it into the Rust plugin's struct:
integers must be written as integers (``1.0`` and ``-0`` are floats) within
i64, a field may not repeat, other fields are ignored."""

import json

import weir

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
FIELDS = ("id", "item", "qty")


class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its (name, value) pairs, repeats included."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int | float:
    # serde_json reads `-0` as a float, which no i64 field takes.
    return -0.0 if text == "-0" else int(text)


def _describe(value: object) -> str:
    """A parsed JSON value, for messages (at most 40 characters of it)."""
    if type(value) is _Object:
        return "an object"
    text = "an array" if type(value) is list else json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _i64(name: str, value: object) -> int:
    if type(value) is not int or not I64_MIN <= value <= I64_MAX:
        raise weir.Reject(f"field `{name}`: expected an i64 integer, got {_describe(value)}")
    return value


def _order(record: weir.Record) -> tuple[int, str, int]:
    """The record's value as an order, or a rejection saying why not."""
    if record.value is None:
        raise weir.Reject("record has no value")
    text = record.value_text
    if text is None:
        raise weir.Reject("value is not UTF-8 text")
    try:
        parsed = json.loads(text, object_pairs_hook=_Object, parse_int=_integer, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise weir.Reject(f"value is not JSON: {e}") from None
    if type(parsed) is not _Object:
        raise weir.Reject(f"value is not a JSON object: {_describe(parsed)}")
    fields: dict[str, object] = {}
    for name, value in parsed:
        if name in FIELDS:
            if name in fields:
                raise weir.Reject(f"duplicate field `{name}`")
            fields[name] = value
    for name in FIELDS:
        if name not in fields:
            raise weir.Reject(f"missing field `{name}`")
    item = fields["item"]
    if type(item) is not str:
        raise weir.Reject(f"field `item`: expected a string, got {_describe(item)}")
    try:
        item.encode()
    except UnicodeEncodeError:
        raise weir.Reject("field `item`: a lone surrogate is not text") from None
    return _i64("id", fields["id"]), item, _i64("qty", fields["qty"])


def _schema_id(record: weir.Record) -> int:
    """The writer's schema id: the header as an i64 (Rust's `str::parse`:
    an optional sign and ASCII digits), else -1."""
    value = record.header("weir.value.schema-id")
    if value is None:
        return -1
    digits = value[1:] if value[:1] in (b"+", b"-") else value
    if not digits or not digits.isdigit():  # bytes.isdigit: ASCII digits only
        return -1
    significant = digits.lstrip(b"0")
    if len(significant) > 19:  # beyond i64 (and int()'s limit on digits)
        return -1
    n = int(significant or b"0") * (-1 if value[:1] == b"-" else 1)
    return n if I64_MIN <= n <= I64_MAX else -1


def _wrapping_double(n: int) -> int:
    """``n * 2`` wrapping like i64 arithmetic in Rust's release build."""
    return (n * 2 - I64_MIN) % 2**64 + I64_MIN


@weir.transform
def reshape(record: weir.Record, out: weir.Emitter) -> None:
    order_id, item, qty = _order(record)
    doubled = _wrapping_double(qty)
    value = {
        "id": order_id,
        "item": item.upper(),
        "qty": str(doubled) if item == "unfit" else doubled,
        "schema_id": _schema_id(record),
    }
    out.emit(record.key, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())

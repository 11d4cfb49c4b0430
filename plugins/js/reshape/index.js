// Field-level map over typed records (the same plugin as the Rust one), the
// conformance plugin of record formats: a deployment with `formats.value =
// "avro"` hands it each order as JSON, and encodes what it emits with the
// output schema.
//
// In: `{"id": long, "item": string, "qty": int}`. Out, with the same key:
// the item upper-cased, the quantity doubled and the writer's schema id (the
// `weir.value.schema-id` header; -1 without one) as `schema_id`. An item
// named `unfit` gets its quantity as text, which no output schema of this
// shape accepts: the conformance tests' bad output. A value that is not such
// an order is rejected.
//
// The value is read as serde_json reads it into the Rust plugin's struct:
// integers must be written as integers (`1.0` and `-0` are floats) within
// i64, and are read exactly (as BigInt: a long may exceed 2^53); other
// fields are ignored. (JSON.parse keeps the last of a repeated field, where
// serde_json refuses it.)

import { Reject, errorMessage } from 'weir';

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
/** A JSON integer as serde_json reads one into an i64 (`-0` is a float). */
const INTEGER = /^(?:0|-?[1-9][0-9]*)$/;
/** What Rust's `str::parse::<i64>` accepts, range aside. */
const DECIMAL = /^[+-]?[0-9]+$/;

/** JSON.parse reviver: integers as BigInt, from their source text. */
function exactIntegers(_key, value, context) {
  return typeof value === 'number' && INTEGER.test(context.source) ? BigInt(context.source) : value;
}

/** A parsed JSON value, for messages (at most 40 characters of it). */
function describe(v) {
  let text;
  if (typeof v === 'bigint') text = `${v}`;
  else if (typeof v === 'number') text = `floating point ${v}`;
  else text = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? Number(x) : x));
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

/** Field `name` of `order` as an i64 (a BigInt). */
function i64(order, name) {
  const v = order[name];
  if (typeof v !== 'bigint' || v < I64_MIN || v > I64_MAX) {
    throw new Reject(`field \`${name}\`: expected an i64 integer, got ${describe(v)}`);
  }
  return v;
}

/** The record's value as an order, or a rejection saying why not. */
function parseOrder(record) {
  const bytes = record.value;
  if (bytes === null) throw new Reject('record has no value');
  const text = record.valueText;
  if (text === null) throw new Reject('value is not UTF-8 text');
  // valueText drops a leading byte order mark (TextDecoder does), which
  // JSON does not allow.
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) throw new Reject('value starts with a byte order mark');
  let order;
  try {
    order = JSON.parse(text, exactIntegers);
  } catch (e) {
    throw new Reject(`value is not JSON: ${errorMessage(e)}`);
  }
  if (typeof order !== 'object' || order === null || Array.isArray(order)) {
    throw new Reject(`value is not a JSON object: ${describe(order)}`);
  }
  for (const name of ['id', 'item', 'qty']) {
    if (!Object.hasOwn(order, name)) throw new Reject(`missing field \`${name}\``);
  }
  const item = order.item;
  if (typeof item !== 'string') {
    throw new Reject(`field \`item\`: expected a string, got ${describe(item)}`);
  }
  if (!item.isWellFormed()) throw new Reject('field `item`: a lone surrogate is not text');
  return { id: i64(order, 'id'), item, qty: i64(order, 'qty') };
}

/** The writer's schema id: the header as an i64, else -1. */
function schemaId(record) {
  const text = record.headerText('weir.value.schema-id');
  if (text === null || !DECIMAL.test(text)) return -1n;
  const n = BigInt(text);
  return n < I64_MIN || n > I64_MAX ? -1n : n;
}

export default function reshape(record, out) {
  const { id, item, qty } = parseOrder(record);
  // Wrapping like i64 arithmetic in Rust's release build.
  const doubled = BigInt.asIntN(64, qty * 2n);
  const qtyJson = item === 'unfit' ? `"${doubled}"` : `${doubled}`;
  // Written by hand: JSON.stringify has no BigInt. Its strings escape as
  // serde_json's do (the item is well-formed UTF-16).
  const value = `{"id":${id},"item":${JSON.stringify(item.toUpperCase())},"qty":${qtyJson},"schema_id":${schemaId(record)}}`;
  out.emit({ key: record.key, value });
}

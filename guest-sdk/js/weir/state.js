// State (see ../weir.js).

import * as witState from 'weir:transform/state@0.2.1';
import { encoder, lossyDecoder } from './_layout.js';
import { toBytes } from './bytes.js';

/** @param {string | Uint8Array} key */
export function keyBytes(key) {
  return typeof key === 'string' ? encoder.encode(key) : toBytes(key);
}

/**
 * The value stored under `key`, or `null`.
 * @param {string | Uint8Array} key
 * @returns {Uint8Array | null}
 */
function stateGet(key) {
  return witState.get(keyBytes(key)) ?? null;
}

/**
 * Stores `value` under `key`. With `ttlMs`, the entry expires once the
 * partition's stream time passes the stream time of this write plus
 * `ttlMs`.
 * @param {string | Uint8Array} key
 * @param {string | Uint8Array} value
 * @param {{ ttlMs?: number | bigint }} [options]
 */
function stateSet(key, value, options) {
  const ttl = options?.ttlMs;
  witState.set(keyBytes(key), toBytes(value), ttl == null ? undefined : BigInt(ttl));
}

/** @param {string | Uint8Array} key */
function stateDelete(key) {
  witState.delete(keyBytes(key));
}

/**
 * Up to `limit` entries with `start <= key < end` (no `end`: to the last
 * key), in key order.
 * @param {string | Uint8Array} start
 * @param {string | Uint8Array | null | undefined} end
 * @param {number} limit
 * @returns {Array<[Uint8Array, Uint8Array]>}
 */
function stateRange(start, end, limit) {
  return witState.range(keyBytes(start), end == null ? undefined : keyBytes(end), limit).map((e) => [e.key, e.value]);
}

/**
 * Every entry whose key starts with `prefix`, in key order, fetched from the
 * host a page at a time.
 * @param {string | Uint8Array} prefix
 * @returns {Generator<[Uint8Array, Uint8Array]>}
 */
function* stateScanPrefix(prefix) {
  const PAGE = 256;
  const p = keyBytes(prefix);
  let after;
  for (;;) {
    const page = witState.prefix(p, after, PAGE);
    for (const e of page) yield [e.key, e.value];
    if (page.length < PAGE) return;
    after = page[page.length - 1].key;
  }
}

/**
 * A named collection of JSON values, stored under the name, a 0 byte and
 * the key. Values are encoded with `JSON.stringify`, which for numbers,
 * strings, booleans, arrays and objects writes exactly what Rust's
 * `serde_json` writes, so a `Map` shares its data with the Rust SDK's
 * `state::Map` of the same name (integers up to 2^53; a Rust `f64` such as
 * `3.0` reads back as `3` and is written back as `3`).
 *
 * @template [V=any]
 */
export class StateMap {
  /** @param {string} name */
  constructor(name) {
    this.name = name;
    /** @internal */
    this._prefix = encoder.encode(name + '\0');
  }

  /** @internal */
  _key(key) {
    if (typeof key === 'string') return encoder.encode(this.name + '\0' + key);
    const k = toBytes(key);
    const full = new Uint8Array(this._prefix.length + k.length);
    full.set(this._prefix);
    full.set(k, this._prefix.length);
    return full;
  }

  /**
   * The value under `key`, or `undefined`. Stored bytes that are not JSON
   * throw (which rejects the record).
   * @param {string | Uint8Array} key
   * @returns {V | undefined}
   */
  get(key) {
    const bytes = witState.get(this._key(key));
    return bytes == null ? undefined : JSON.parse(lossyDecoder.decode(bytes));
  }

  /**
   * @param {string | Uint8Array} key
   * @param {V} value
   * @param {{ ttlMs?: number | bigint }} [options]
   */
  set(key, value, options) {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError(`state map \`${this.name}\`: value is not JSON`);
    const ttl = options?.ttlMs;
    witState.set(this._key(key), encoder.encode(json), ttl == null ? undefined : BigInt(ttl));
  }

  /** @param {string | Uint8Array} key */
  delete(key) {
    witState.delete(this._key(key));
  }

  /**
   * Replaces the value under `key` with `f(old)` (`undefined` when absent);
   * `f` returning `undefined` or `null` deletes it. Returns the new value.
   * @param {string | Uint8Array} key
   * @param {(old: V | undefined) => V | undefined | null} f
   * @returns {V | undefined}
   */
  update(key, f) {
    const k = this._key(key);
    const bytes = witState.get(k);
    const next = f(bytes == null ? undefined : JSON.parse(lossyDecoder.decode(bytes)));
    if (next == null) {
      witState.delete(k);
      return undefined;
    }
    const json = JSON.stringify(next);
    if (json === undefined) throw new TypeError(`state map \`${this.name}\`: value is not JSON`);
    witState.set(k, encoder.encode(json), undefined);
    return next;
  }

  /**
   * Every `[key, value]` in key order (keys as bytes).
   * @returns {Generator<[Uint8Array, V]>}
   */
  *entries() {
    const n = this._prefix.length;
    for (const [k, v] of stateScanPrefix(this._prefix)) yield [k.subarray(n), JSON.parse(lossyDecoder.decode(v))];
  }

  [Symbol.iterator]() {
    return this.entries();
  }
}

/**
 * Keyed state of this deployment on the current partition: raw bytes with
 * `get`/`set`/`delete`/`range`/`scanPrefix`, or JSON values in a named
 * {@link StateMap} (`new state.Map('counts')`). Changes made while handling
 * a record are visible at once, discarded if the record is rejected, and
 * made durable before its offset is committed.
 */
export const state = Object.freeze({
  get: stateGet,
  set: stateSet,
  delete: stateDelete,
  range: stateRange,
  scanPrefix: stateScanPrefix,
  Map: StateMap,
});

/**
 * Write Weir stream transforms in JavaScript.
 *
 * A plugin is a directory with an `index.js` (or `index.mjs`, `index.ts`)
 * whose default export is the transform:
 *
 * ```js
 * import { Reject } from 'weir';
 *
 * // A stateless transform can be a function of (record, out) ...
 * export default function upper(record, out) {
 *   const text = record.valueText;
 *   if (text === null) throw new Reject('value is not UTF-8 text');
 *   out.forward(record, { value: text.toUpperCase() });
 * }
 *
 * // ... or a class: one instance per sandbox, built from the config.
 * export default class Router {
 *   constructor(config) { this.topic = config.require('topic'); }
 *   process(record, out) { out.forward(record, { topic: this.topic }); }
 * }
 * ```
 *
 * (Or named exports: `export function process(record, out)` with optional
 * `init(config)`, `onWindow`, `onTimer`, `reduce`, `merge`.)
 *
 * `guest-sdk/js/build PLUGIN_DIR OUT.wasm` bundles the plugin with this
 * module and turns it into a component of the WIT world
 * `weir:transform/plugin@0.2.1` (without its `tables` import when the
 * plugin does not use {@link tables}).
 *
 * The SDK hides the world's columnar batches: a {@link Record} is a view of
 * one record of the input batch (its fields are read from the batch's
 * packed metadata with a `DataView`, its key and value are `subarray` views
 * of the batch's single `data` buffer, made on demand), and an
 * {@link Emitter} packs outputs into growing buffers returned to the host. An
 * exception thrown while handling a record rejects that record (its outputs,
 * window additions and state changes are discarded and the deployment's
 * failure policy applies); {@link Fatal} stops the deployment instead.
 *
 * Timestamps and offsets are JavaScript numbers (exact up to 2^53 ms, some
 * 285,000 years). The engine (StarlingMonkey) has no ICU: regular
 * expressions cannot use `\p{...}` classes and `toLowerCase` ignores the
 * final sigma.
 *
 * @module weir
 */

import { log as witLog } from 'weir:transform/log@0.2.1';
import * as witState from 'weir:transform/state@0.2.1';
import * as witTimers from 'weir:transform/timers@0.2.1';
import { define as witDefine } from 'weir:transform/windows@0.2.1';
// New in 0.2.1. The build marks this import free of side effects, so a
// plugin that never uses `tables` or `Table` is bundled without it and its
// component does not import `weir:transform/tables` (it also runs on a
// host of 0.2.0).
import * as witTables from 'weir:transform/tables@0.2.1';

/** `forward` without changes. */
const NO_CHANGES = Object.freeze({});

// The packed lists of wit/0.2/types.wit, read and written as 32-bit words
// (wasm is little-endian, as the layout; indexing a Uint32Array costs the
// interpreter far less than DataView calls): entry sizes in words, the
// packed `none`, and the high word of "keep the source's timestamp" (-2^63).
const RECORD = 10;
const HEADER = 4;
const NONE = 0xffffffff;
const KEEP_HIGH = 0x80000000;

/** The 64-bit signed integer in words `at`, `at + 1` as a number (exact to 2^53). */
function i64At(words, at) {
  return (words[at + 1] | 0) * 4294967296 + words[at];
}

/** `bytes` as 32-bit words, copied first if they are not 4-byte aligned. */
function wordsOf(bytes) {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
}

function asBytes(words, n) {
  return new Uint8Array(words.buffer, words.byteOffset, n * 4);
}

const encoder = new TextEncoder();
const lossyDecoder = new TextDecoder('utf-8');
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------
// Bytes and text

/**
 * `value` as bytes: strings are UTF-8 encoded, a `Uint8Array` is returned
 * as is, other typed arrays and `ArrayBuffer`s are viewed as bytes.
 *
 * @param {string | Uint8Array | ArrayBufferView | ArrayBuffer} value
 * @returns {Uint8Array}
 */
export function toBytes(value) {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`expected a string or bytes, got ${value === null ? 'null' : typeof value}`);
}

/**
 * `bytes` decoded as UTF-8, or `null` when they are not valid UTF-8.
 *
 * @param {Uint8Array} bytes
 * @returns {string | null}
 */
export function utf8(bytes) {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * `bytes` decoded as UTF-8, invalid sequences replaced by U+FFFD (like
 * Rust's `String::from_utf8_lossy`).
 *
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function utf8Lossy(bytes) {
  return lossyDecoder.decode(bytes);
}

/** ASCII case mapping of bytes; natively where the bytes are UTF-8. */
function asciiCase(value, upper) {
  const bytes = toBytes(value);
  // Through the engine's native decoder and case mapping wherever the bytes
  // are UTF-8: even for a 10-byte value that beats a loop the interpreter
  // runs byte by byte (measured: 151 k against 113 k records/s upper-casing).
  const text = utf8(bytes);
  if (text !== null) {
    // As many UTF-16 units as UTF-8 bytes: every character is ASCII.
    if (text.length === bytes.length) return encoder.encode(upper ? text.toUpperCase() : text.toLowerCase());
    return encoder.encode(upper ? text.replace(/[a-z]+/g, (m) => m.toUpperCase()) : text.replace(/[A-Z]+/g, (m) => m.toLowerCase()));
  }
  const result = new Uint8Array(bytes.length);
  const from = upper ? 0x61 : 0x41;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    result[i] = c >= from && c <= from + 25 ? c ^ 0x20 : c;
  }
  return result;
}

/**
 * Rust's `<[u8]>::to_ascii_uppercase`: a copy of `value` with `a`..`z`
 * replaced by `A`..`Z` and every other byte kept.
 *
 * @param {string | Uint8Array} value
 * @returns {Uint8Array}
 */
export function asciiUpperCase(value) {
  return asciiCase(value, true);
}

/**
 * Rust's `<[u8]>::to_ascii_lowercase`.
 *
 * @param {string | Uint8Array} value
 * @returns {Uint8Array}
 */
export function asciiLowerCase(value) {
  return asciiCase(value, false);
}

// ---------------------------------------------------------------------------
// Errors

/**
 * Thrown from `process` or `onWindow`: rejects the current record with this
 * message (the deployment's failure policy applies: dead-letter, skip or
 * stop). Any other exception rejects the record too; this class only makes
 * the intent explicit and keeps the message free of an error-type prefix.
 */
export class Reject extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Reject';
  }
}

/**
 * Thrown from `process` or `onWindow`: stops the deployment on this
 * partition with this message, without consuming further. For problems no
 * record can fix.
 */
export class Fatal extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'Fatal';
  }
}

/**
 * The message reported for a thrown value: the message of `Reject`,
 * `Fatal` and plain `Error`s; `Name: message` for other error classes
 * (`TypeError: x is undefined`); `String(value)` for anything else.
 *
 * @param {unknown} e
 * @returns {string}
 */
export function errorMessage(e) {
  try {
    if (e instanceof Error) {
      if (e instanceof Reject || e instanceof Fatal || e.name === 'Error' || !e.name) return String(e.message);
      return `${e.name}: ${e.message}`;
    }
    return String(e);
  } catch {
    return 'unprintable exception';
  }
}

// ---------------------------------------------------------------------------
// Logging

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

function inspect(value) {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack ? `${errorMessage(value)}\n${value.stack}` : errorMessage(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return `Uint8Array(${value.length}) [${value.slice(0, 64).join(', ')}${value.length > 64 ? ', ...' : ''}]`;
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v));
    } catch {
      return String(value);
    }
  }
  return String(value);
}

function logAt(level) {
  return (...args) => witLog(level, args.length === 1 ? inspect(args[0]) : args.map(inspect).join(' '));
}

/**
 * Log lines, recorded by the host with the deployment's name (and rate
 * limited). Arguments are joined with spaces; non-strings are shown as
 * JSON. `console.log/info/debug/warn/error/trace` write here too.
 *
 * @type {{ trace(...args: unknown[]): void, debug(...args: unknown[]): void, info(...args: unknown[]): void, warn(...args: unknown[]): void, error(...args: unknown[]): void }}
 */
export const log = /** @type {any} */ (Object.freeze(Object.fromEntries(LEVELS.map((l) => [l, logAt(l)]))));

// With the `stdio` feature disabled, console output would go nowhere.
for (const [method, level] of [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['trace', 'trace'], ['warn', 'warn'], ['error', 'error']]) {
  try {
    globalThis.console[method] = log[level];
  } catch {
    // a read-only console keeps its own methods
  }
}

// ---------------------------------------------------------------------------
// Config

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Rust's integer `from_str`, with its error messages. */
function parseInteger(text, signed, min, max) {
  if (text === '') throw new Error('cannot parse integer from empty string');
  let digits = text;
  let negative = false;
  if (text === '+' || text === '-') throw new Error('invalid digit found in string');
  if (text[0] === '+') digits = text.slice(1);
  else if (text[0] === '-' && signed) {
    digits = text.slice(1);
    negative = true;
  }
  if (!/^[0-9]+$/.test(digits)) throw new Error('invalid digit found in string');
  const n = negative ? -BigInt(digits) : BigInt(digits);
  if (n > max) throw new Error('number too large to fit in target type');
  if (n < min) throw new Error('number too small to fit in target type');
  return Number(n);
}

/**
 * Parsers for {@link Config#parse}, with Rust's `FromStr` behaviour and
 * error messages (so validation messages match the Rust SDK's).
 */
export const parsers = Object.freeze({
  /** @param {string} s */
  u64: (s) => parseInteger(s, false, 0n, U64_MAX),
  /** @param {string} s */
  i64: (s) => parseInteger(s, true, I64_MIN, I64_MAX),
  /** @param {string} s */
  u32: (s) => parseInteger(s, false, 0n, 0xffffffffn),
  /** @param {string} s */
  f64: (s) => {
    const m = /^([+-]?)(?:(inf|infinity)|(nan)|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))$/i.exec(s);
    if (!m) throw new Error('invalid float literal');
    if (m[3]) return NaN;
    const v = m[2] ? Infinity : Number(m[4]);
    return m[1] === '-' ? -v : v;
  },
  /** @param {string} s */
  bool: (s) => {
    if (s === 'true') return true;
    if (s === 'false') return false;
    throw new Error('provided string was not `true` or `false`');
  },
  /** @param {string} s */
  string: (s) => s,
});

/**
 * The deployment's configuration: the key/value strings of its spec (or of
 * `weir test -c KEY=VALUE`). When a key is given twice the last value wins.
 */
export class Config {
  /** @param {Array<[string, string]>} entries */
  constructor(entries) {
    /** @internal */
    this._entries = entries;
  }

  /**
   * The value of `key`, or `undefined`.
   * @param {string} key
   * @returns {string | undefined}
   */
  get(key) {
    const e = this._entries;
    for (let i = e.length - 1; i >= 0; i--) if (e[i][0] === key) return e[i][1];
    return undefined;
  }

  /** @param {string} key */
  has(key) {
    return this.get(key) !== undefined;
  }

  /**
   * The value of `key`; throws ``config `key` is required`` when unset.
   * @param {string} key
   * @returns {string}
   */
  require(key) {
    const v = this.get(key);
    if (v === undefined) throw new Error(`config \`${key}\` is required`);
    return v;
  }

  /**
   * The value of `key` (trimmed) passed through `parser`; `undefined` when
   * unset. A parser error becomes ``config `key` = `value`: message``.
   *
   * @template T
   * @param {string} key
   * @param {(text: string) => T} parser e.g. one of {@link parsers}
   * @returns {T | undefined}
   */
  parse(key, parser) {
    const v = this.get(key);
    if (v === undefined) return undefined;
    try {
      return parser(v.trim());
    } catch (e) {
      throw new Error(`config \`${key}\` = \`${v}\`: ${errorMessage(e)}`);
    }
  }

  /**
   * Like {@link Config#parse}, with `fallback` for an unset key.
   * @template T
   * @param {string} key
   * @param {(text: string) => T} parser
   * @param {T} fallback
   * @returns {T}
   */
  parseOr(key, parser, fallback) {
    const v = this.parse(key, parser);
    return v === undefined ? fallback : v;
  }

  /**
   * An unsigned integer (Rust `u64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  u64(key, fallback) {
    return this.parseOr(key, parsers.u64, fallback);
  }

  /**
   * A signed integer (Rust `i64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  i64(key, fallback) {
    return this.parseOr(key, parsers.i64, fallback);
  }

  /**
   * A number (Rust `f64` syntax), or `fallback` when unset.
   * @param {string} key
   * @param {number} [fallback]
   */
  number(key, fallback) {
    return this.parseOr(key, parsers.f64, fallback);
  }

  /**
   * `true` or `false`, or `fallback` when unset.
   * @param {string} key
   * @param {boolean} [fallback]
   */
  bool(key, fallback) {
    return this.parseOr(key, parsers.bool, fallback);
  }

  /**
   * Every entry in spec order, duplicates included.
   * @returns {IterableIterator<[string, string]>}
   */
  [Symbol.iterator]() {
    return this._entries[Symbol.iterator]();
  }

  /** Every entry whose key starts with `prefix`, as `[rest of key, value]`. */
  withPrefix(prefix) {
    const result = [];
    for (const [k, v] of this._entries) if (k.startsWith(prefix)) result.push([k.slice(prefix.length), v]);
    return result;
  }
}

// ---------------------------------------------------------------------------
// Records

/**
 * One input record: a view of the batch the host passed in. Key, value and
 * header values are `Uint8Array` views of the batch buffer: valid during the
 * call and read-only (copy them with `.slice()` to keep or change them);
 * `null` stands for a Kafka null.
 */
export class Record {
  /** @param {any} batch the call's batch, with `records` and `headers` as words @param {number} index */
  constructor(batch, index) {
    /** @internal */
    this._batch = batch;
    /** Word offset of the record's packed entry. @internal */
    this._at = index * RECORD;
    /** Position of the record in its batch. */
    this.index = index;
  }

  /** @internal */
  _bytes(at) {
    const words = this._batch.records;
    const len = words[at + 1];
    if (len === NONE) return null;
    const start = words[at];
    return this._batch.data.subarray(start, start + len);
  }

  /** The key bytes; `null` for a null key. @returns {Uint8Array | null} */
  get key() {
    return this._bytes(this._at + 4);
  }

  /** The value bytes; `null` for a null value (a tombstone). @returns {Uint8Array | null} */
  get value() {
    return this._bytes(this._at + 6);
  }

  /** The key as UTF-8 text; `null` when absent or not valid UTF-8. @returns {string | null} */
  get keyText() {
    const k = this.key;
    return k === null ? null : utf8(k);
  }

  /** The value as UTF-8 text; `null` when absent or not valid UTF-8. @returns {string | null} */
  get valueText() {
    const v = this.value;
    return v === null ? null : utf8(v);
  }

  /**
   * The value parsed as JSON; a missing value or invalid JSON throws
   * {@link Reject}.
   * @returns {any}
   */
  valueJson() {
    const value = this.value;
    if (value === null) throw new Reject('record has no value');
    const text = utf8(value);
    if (text === null) throw new Reject('value is not UTF-8 text');
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Reject(errorMessage(e));
    }
  }

  /** Event time, ms since the Unix epoch. */
  get timestamp() {
    return i64At(this._batch.records, this._at + 2);
  }

  /** Offset in the partition. */
  get offset() {
    return i64At(this._batch.records, this._at);
  }

  /** @returns {string} */
  get topic() {
    return this._batch.topic;
  }

  /** @returns {number} */
  get partition() {
    return this._batch.partition;
  }

  /** Number of headers. */
  get headerCount() {
    return this._batch.records[this._at + 9];
  }

  /**
   * The headers in order as `[name, value]` (`null` for a null value).
   * Pass them to `emit({headers})` unchanged.
   * @returns {Array<[string, Uint8Array | null]>}
   */
  get headers() {
    const words = this._batch.records;
    const first = words[this._at + 8];
    const len = words[this._at + 9];
    const data = this._batch.data;
    const h = this._batch.headers;
    const result = new Array(len);
    for (let i = 0; i < len; i++) {
      const at = (first + i) * HEADER;
      const ns = h[at];
      const vs = h[at + 2];
      const vl = h[at + 3];
      result[i] = [utf8(data.subarray(ns, ns + h[at + 1])) ?? '', vl === NONE ? null : data.subarray(vs, vs + vl)];
    }
    return result;
  }

  /**
   * The value of the first header called `name`: `undefined` when there is
   * none, `null` for a null value.
   * @param {string} name
   * @returns {Uint8Array | null | undefined}
   */
  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return undefined;
  }

  /**
   * The first header called `name` as UTF-8 text (`null`: absent, null or
   * not UTF-8).
   * @param {string} name
   */
  headerText(name) {
    const v = this.header(name);
    return v == null ? null : utf8(v);
  }
}

// ---------------------------------------------------------------------------
// Output

/**
 * One record to produce; every field is optional.
 *
 * @typedef {object} Output
 * @property {string | Uint8Array | null} [key] `null`/absent: a null key
 * @property {string | Uint8Array | null} [value] `null`/absent: a null value
 * @property {string} [topic] absent: the deployment's default output topic
 * @property {Array<[string, string | Uint8Array | null]> | {[name: string]: string | Uint8Array | null}} [headers]
 * @property {number | bigint} [timestamp] event time in ms; absent: the
 *   input record's timestamp (for window results: the window's last
 *   instant; for timers: the timer's time)
 */

/**
 * Where a transform puts the outputs and window additions of the record (or
 * window result) being handled. All outputs of a call go into one growing
 * byte buffer referred to by spans, which is what crosses to the host.
 *
 * Bytes that are views of the call's input (`record.key`, `record.value`,
 * header values, `result.key`, and `forward`) are not copied one by one:
 * the first such reference appends the whole input buffer once (or it is
 * there from the start when the previous call forwarded), and outputs refer
 * into it. So treat record bytes as read-only: copy (`.slice()`) before
 * changing them.
 */
export class Emitter {
  /**
   * @param {Uint8Array} input the call's input buffer
   * @param {number} extra initial capacity beyond the input, bytes
   * @param {boolean} preload start the buffer with a copy of `input`
   */
  constructor(input, extra, preload) {
    const capacity = input.length + extra;
    /** @internal */ this._data = new Uint8Array(capacity < 256 ? 256 : capacity);
    /** @internal */ this._len = 0;
    /** @internal */ this._input = input;
    /** @internal */ this._inBuffer = input.buffer;
    /** @internal */ this._inOffset = input.byteOffset;
    /** Where the copy of `input` starts in `_data`; -1 while there is none. @internal */
    this._base = -1;
    /** Packed output records, in words. @internal */ this._recs = new Uint32Array(extra < 256 ? 256 : extra);
    /** @internal */ this._recLen = 0;
    /** Packed output headers, in words. @internal */ this._hdrs = new Uint32Array(64);
    /** @internal */ this._hdrLen = 0;
    /** Start and length of the bytes `_push` last placed. @internal */
    this._ps = 0;
    /** @internal */ this._pl = 0;
    /** @internal */ this._topics = [];
    /** @internal */ this._topicIndex = new Map();
    /** @internal */ this._rejects = [];
    /** @internal */ this._adds = [];
    /** @internal */ this._source = 0;
    /** @internal */ this._timestamp = 0;
    /** @internal */ this._mark = [0, 0, 0, 0];
    if (preload && input.length > 0) {
      this._data.set(input);
      this._len = input.length;
      this._base = 0;
    }
  }

  /** @internal */
  _begin(source, timestamp) {
    this._source = source;
    this._timestamp = timestamp;
    const m = this._mark;
    m[0] = this._len;
    m[1] = this._recLen;
    m[2] = this._hdrLen;
    m[3] = this._adds.length;
  }

  /** Undoes what the current record emitted and records its rejection. @internal */
  _reject(message) {
    const m = this._mark;
    this._len = m[0];
    if (this._base >= m[0]) this._base = -1;
    this._recLen = m[1];
    this._hdrLen = m[2];
    this._adds.length = m[3];
    this._rejects.push({ source: this._source, message });
  }

  /** @internal */
  _finish() {
    return {
      data: this._data.subarray(0, this._len),
      records: asBytes(this._recs, this._recLen),
      headers: asBytes(this._hdrs, this._hdrLen),
      topics: this._topics,
      rejects: this._rejects,
      windowAdds: this._adds,
    };
  }

  /** @internal */
  _reserve(n) {
    const need = this._len + n;
    if (need <= this._data.length) return;
    let size = this._data.length * 2;
    while (size < need) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this._data.subarray(0, this._len));
    this._data = grown;
  }

  /** The offset of the input's copy in the buffer, copying it if needed. @internal */
  _inputBase() {
    if (this._base < 0) {
      const input = this._input;
      this._reserve(input.length);
      this._data.set(input, this._len);
      this._base = this._len;
      this._len += input.length;
    }
    return this._base;
  }

  /** Room for `n` more packed headers; returns the first one's word. @internal */
  _hdrAt(n) {
    const at = this._hdrLen;
    const need = at + n * HEADER;
    if (need > this._hdrs.length) {
      let size = this._hdrs.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint32Array(size);
      grown.set(this._hdrs.subarray(0, at));
      this._hdrs = grown;
    }
    this._hdrLen = need;
    return at;
  }

  /** Packs one output record. @internal */
  _record(topic, ks, kl, vs, vl, first, count, timestamp) {
    const at = this._recLen;
    if (at + RECORD > this._recs.length) {
      const grown = new Uint32Array(this._recs.length * 2);
      grown.set(this._recs.subarray(0, at));
      this._recs = grown;
    }
    this._recLen = at + RECORD;
    const w = this._recs;
    w[at] = this._source;
    w[at + 1] = topic;
    w[at + 2] = ks;
    w[at + 3] = kl;
    w[at + 4] = vs;
    w[at + 5] = vl;
    w[at + 6] = first;
    w[at + 7] = count;
    if (timestamp == null) {
      w[at + 8] = 0;
      w[at + 9] = KEEP_HIGH;
    } else {
      const t = BigInt.asUintN(64, BigInt(timestamp));
      w[at + 8] = Number(t & 0xffffffffn);
      w[at + 9] = Number(t >> 32n);
    }
  }

  /**
   * Appends bytes (or UTF-8 of a string) to the buffer, or finds them in
   * the input's copy when they are a view of the input; `_ps` and `_pl`
   * tell where. @internal
   */
  _push(value) {
    const start = this._len;
    if (typeof value === 'string') {
      const n = value.length;
      this._reserve(n * 3);
      const data = this._data;
      let i = 0;
      // Short ASCII strings without a call into the engine; the rest via
      // encodeInto.
      if (n <= 32) {
        for (; i < n; i++) {
          const c = value.charCodeAt(i);
          if (c >= 0x80) break;
          data[start + i] = c;
        }
      }
      this._len = start + i;
      if (i < n) this._len += encoder.encodeInto(i === 0 ? value : value.slice(i), data.subarray(this._len)).written;
      this._ps = start;
      this._pl = this._len - start;
      return;
    }
    const bytes = value instanceof Uint8Array ? value : toBytes(value);
    if (bytes.buffer === this._inBuffer) {
      // A view of the input: refer to the input's copy.
      this._ps = this._inputBase() + bytes.byteOffset - this._inOffset;
      this._pl = bytes.length;
      return;
    }
    if (start + bytes.length > this._data.length) this._reserve(bytes.length);
    this._data.set(bytes, start);
    this._len = start + bytes.length;
    this._ps = start;
    this._pl = bytes.length;
  }

  /** @internal */
  _topic(topic) {
    let i = this._topicIndex.get(topic);
    if (i === undefined) {
      i = this._topics.length;
      this._topics.push(topic);
      this._topicIndex.set(topic, i);
    }
    return i;
  }

  /** Packs `headers` (pairs or an object); returns the first's index. @internal */
  _pushHeaders(headers) {
    const pairs = Array.isArray(headers) ? headers : Object.keys(headers).map((name) => [name, headers[name]]);
    const first = this._hdrLen / HEADER;
    for (const [name, value] of pairs) {
      this._push(name);
      const ns = this._ps;
      const nl = this._pl;
      let vs = 0;
      let vl = NONE;
      if (value != null) {
        this._push(value);
        vs = this._ps;
        vl = this._pl;
      }
      const at = this._hdrAt(1);
      const w = this._hdrs;
      w[at] = ns;
      w[at + 1] = nl;
      w[at + 2] = vs;
      w[at + 3] = vl;
    }
    return first;
  }

  /**
   * Queues one output record. Every field is optional: `key` and `value`
   * (string or bytes; absent or `null` produce a Kafka null), `topic` (the
   * deployment's default output topic when absent), `headers` (an array of
   * `[name, value]` pairs, e.g. `record.headers`, or an object), and
   * `timestamp` (ms; defaults to the input record's, a window's last instant or a
   * timer's time).
   *
   * @param {Output} output
   */
  emit(output) {
    let ks = 0;
    let kl = NONE;
    let vs = 0;
    let vl = NONE;
    if (output.key != null) {
      this._push(output.key);
      ks = this._ps;
      kl = this._pl;
    }
    if (output.value != null) {
      this._push(output.value);
      vs = this._ps;
      vl = this._pl;
    }
    const topic = output.topic == null ? NONE : this._topic(output.topic);
    let first = 0;
    let count = 0;
    if (output.headers != null) {
      first = this._pushHeaders(output.headers);
      count = this._hdrLen / HEADER - first;
    }
    this._record(topic, ks, kl, vs, vl, first, count, output.timestamp);
  }

  /**
   * Emits `record` (key, value, headers; its timestamp) to the default
   * output topic, with the fields of `changes` replacing the record's:
   * `out.forward(record, { value: 'x', topic: 'audit' })`. The record's
   * bytes are copied without decoding.
   *
   * @param {Record} record
   * @param {Output} [changes]
   */
  forward(record, changes) {
    const words = record._batch.records;
    const at = record._at;
    const c = changes === undefined ? NO_CHANGES : changes;
    // Written out rather than through helpers: each call costs the
    // interpreter more than the work it does here.
    const base = this._base >= 0 ? this._base : this._inputBase();
    let ks = 0;
    let kl = NONE;
    if ('key' in c) {
      if (c.key != null) {
        this._push(c.key);
        ks = this._ps;
        kl = this._pl;
      }
    } else if (words[at + 5] !== NONE) {
      ks = base + words[at + 4];
      kl = words[at + 5];
    }
    let vs = 0;
    let vl = NONE;
    if ('value' in c) {
      if (c.value != null) {
        this._push(c.value);
        vs = this._ps;
        vl = this._pl;
      }
    } else if (words[at + 7] !== NONE) {
      vs = base + words[at + 6];
      vl = words[at + 7];
    }
    const topic = c.topic == null ? NONE : this._topic(c.topic);
    let first = 0;
    let count = 0;
    if ('headers' in c) {
      if (c.headers != null) {
        first = this._pushHeaders(c.headers);
        count = this._hdrLen / HEADER - first;
      }
    } else {
      count = words[at + 9];
      if (count > 0) {
        // The input's packed headers, moved to the input's copy in the buffer.
        const from = words[at + 8] * HEADER;
        const h = record._batch.headers;
        const to = this._hdrAt(count);
        const w = this._hdrs;
        first = to / HEADER;
        for (let i = 0; i < count * HEADER; i += HEADER) {
          const vlen = h[from + i + 3];
          w[to + i] = base + h[from + i];
          w[to + i + 1] = h[from + i + 1];
          w[to + i + 2] = vlen === NONE ? 0 : base + h[from + i + 2];
          w[to + i + 3] = vlen;
        }
      }
    }
    this._record(topic, ks, kl, vs, vl, first, count, c.timestamp);
  }

  /**
   * Adds `number` under `key` to `window` at the record's timestamp.
   * @param {Window} window
   * @param {string | Uint8Array} key
   * @param {number} number
   */
  addToWindow(window, key, number) {
    this._adds.push({ window: window.id, source: this._source, key: this._span(key ?? ''), timestamp: BigInt(this._timestamp), number: +number, custom: undefined });
  }

  /** `value` placed in the buffer, as a span. @internal */
  _span(value) {
    this._push(value);
    return { start: this._ps, len: this._pl };
  }

  /**
   * Adds `number` under `key` to `window` at event time `timestamp` (ms).
   * @param {Window} window
   * @param {string | Uint8Array} key
   * @param {number | bigint} timestamp
   * @param {number} number
   */
  addToWindowAt(window, key, timestamp, number) {
    this._adds.push({ window: window.id, source: this._source, key: this._span(key ?? ''), timestamp: BigInt(timestamp), number: +number, custom: undefined });
  }

  /**
   * Adds `value` under `key` to a window with a custom aggregation, at the
   * record's timestamp; the host folds it with the transform's `reduce`.
   * @param {Window} window
   * @param {string | Uint8Array} key
   * @param {string | Uint8Array} value
   */
  addCustomToWindow(window, key, value) {
    this.addCustomToWindowAt(window, key, this._timestamp, value);
  }

  /**
   * Like {@link Emitter#addCustomToWindow} at event time `timestamp` (ms).
   * @param {Window} window
   * @param {string | Uint8Array} key
   * @param {number | bigint} timestamp
   * @param {string | Uint8Array} value
   */
  addCustomToWindowAt(window, key, timestamp, value) {
    const k = this._span(key ?? '');
    this._adds.push({ window: window.id, source: this._source, key: k, timestamp: BigInt(timestamp), number: 0, custom: this._span(value) });
  }

  /** The timestamp of the record (window result, timer) being handled, ms. */
  get timestamp() {
    return this._timestamp;
  }
}

// ---------------------------------------------------------------------------
// State

/** @param {string | Uint8Array} key */
function keyBytes(key) {
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

// ---------------------------------------------------------------------------
// Tables

/**
 * A read-only table the deployment declares (world 0.2.1): for each key of
 * a compacted topic, its latest value, kept up to date by the host; every
 * partition sees the whole table. Open it by name in the constructor
 * (`init`) and read it in `process`, `onWindow` and `onTimer`:
 *
 * ```js
 * export default class Enrich {
 *   constructor(config) { this.customers = tables.open('customers'); }
 *   process(record, out) {
 *     const customer = record.key === null ? null : this.customers.get(record.key);
 *     if (customer !== null) out.forward(record, { value: `${record.valueText};${utf8Lossy(customer)}` });
 *   }
 * }
 * ```
 *
 * Keys are bytes or strings (UTF-8), as in {@link state}; values are
 * `Uint8Array`s. A record sees the table as the host has loaded it when
 * the record is processed (as Kafka Streams' `GlobalKTable`), not as of
 * the record's timestamp.
 */
export class Table {
  /** @param {string} name @param {number} id @internal */
  constructor(name, id) {
    /** The name the deployment declares the table as. */
    this.name = name;
    /** The host's id of the table, valid for the life of the instance. */
    this.id = id;
  }

  /**
   * The table the deployment declares as `name`. An unknown name throws an
   * `Error` with the host's message (which names the declared tables):
   * thrown from the constructor, it stops the deployment with that message.
   * @param {string} name
   * @returns {Table}
   */
  static open(name) {
    let id;
    try {
      id = witTables.open(name);
    } catch (e) {
      // componentize-js throws an Error whose `payload` is the `err` string.
      throw new Error(e !== null && typeof e === 'object' && 'payload' in e ? String(e.payload) : errorMessage(e));
    }
    return new Table(name, id);
  }

  /**
   * The value of `key` in the table, or `null`.
   * @param {string | Uint8Array} key
   * @returns {Uint8Array | null}
   */
  get(key) {
    return witTables.get(this.id, keyBytes(key)) ?? null;
  }

  /**
   * Up to `limit` entries with `start <= key < end` (no `end`: to the last
   * key), in key order. For the next page call again with `start` = the
   * last key returned followed by a 0 byte.
   * @param {string | Uint8Array} start
   * @param {string | Uint8Array | null | undefined} end
   * @param {number} limit
   * @returns {Array<[Uint8Array, Uint8Array]>}
   */
  range(start, end, limit) {
    return witTables.range(this.id, keyBytes(start), end == null ? undefined : keyBytes(end), limit).map((e) => [e.key, e.value]);
  }

  /**
   * Every entry whose key starts with `prefix`, in key order, fetched from
   * the host a page at a time.
   * @param {string | Uint8Array} prefix
   * @returns {Generator<[Uint8Array, Uint8Array]>}
   */
  *scanPrefix(prefix) {
    const PAGE = 256;
    const p = keyBytes(prefix);
    const id = this.id;
    let after;
    for (;;) {
      const page = witTables.prefix(id, p, after, PAGE);
      for (const e of page) yield [e.key, e.value];
      if (page.length < PAGE) return;
      after = page[page.length - 1].key;
    }
  }
}

/**
 * Tables the deployment declares: `tables.open(name)` returns a
 * {@link Table} (`get`, `range`, `scanPrefix`), or throws the host's message.
 */
export const tables = /* @__PURE__ */ Object.freeze({
  /**
   * The table the deployment declares as `name` ({@link Table.open}).
   * @param {string} name
   * @returns {Table}
   */
  open: (name) => Table.open(name),
  Table,
});

// ---------------------------------------------------------------------------
// Windows

/** @type {Map<number, Window>} */
const windowsById = new Map();

/** A declared windowed aggregation. The same object is handed back to `reduce`, `merge` and `onWindow`, so compare with `===`. */
export class Window {
  /** @param {number} id @param {string} [name] */
  constructor(id, name) {
    /** The id the host assigned. */
    this.id = id;
    /** The name given to `define`. */
    this.name = name;
  }
}

function windowFromId(id) {
  let w = windowsById.get(id);
  if (w === undefined) {
    w = new Window(id, undefined);
    windowsById.set(id, w);
  }
  return w;
}

function u64(value, what) {
  let n;
  try {
    n = BigInt(value);
  } catch {
    throw new RangeError(`${what} must be a non-negative integer, got ${value}`);
  }
  if (n < 0n || n > U64_MAX) throw new RangeError(`${what} must be a non-negative integer, got ${value}`);
  return n;
}

/**
 * How a window aggregation is shaped: start with a kind, refine, then
 * {@link WindowSpec#define} it in the transform's constructor (init):
 *
 * ```js
 * this.clicks = WindowSpec.tumbling(60_000).graceMs(5_000).count().emitOnClose().define('clicks');
 * ```
 *
 * Defaults: grace 0, count, emit on close, no idle close. Each method
 * returns a new spec. Semantics are those of Kafka Streams (see the WIT
 * interface `weir:transform/windows`).
 */
export class WindowSpec {
  /** @internal */
  constructor(spec) {
    /** @internal */
    this._spec = spec;
  }

  /** @internal */
  static _of(kind) {
    return new WindowSpec({ kind, graceMs: 0n, aggregation: 'count', emit: 'on-close', idleCloseMs: undefined });
  }

  /** @internal */
  _with(changes) {
    return new WindowSpec({ ...this._spec, ...changes });
  }

  /** Epoch-aligned windows of `sizeMs`, back to back. @param {number | bigint} sizeMs */
  static tumbling(sizeMs) {
    return WindowSpec._of({ tag: 'tumbling', val: u64(sizeMs, 'size') });
  }

  /** Epoch-aligned windows of `sizeMs` starting every `advanceMs`. @param {number | bigint} sizeMs @param {number | bigint} advanceMs */
  static hopping(sizeMs, advanceMs) {
    return WindowSpec._of({ tag: 'hopping', val: { sizeMs: u64(sizeMs, 'size'), advanceMs: u64(advanceMs, 'advance') } });
  }

  /** Kafka Streams sliding windows of at most `maxDifferenceMs`. @param {number | bigint} maxDifferenceMs */
  static sliding(maxDifferenceMs) {
    return WindowSpec._of({ tag: 'sliding', val: u64(maxDifferenceMs, 'size') });
  }

  /** Per-key sessions of values at most `gapMs` apart. @param {number | bigint} gapMs */
  static session(gapMs) {
    return WindowSpec._of({ tag: 'session', val: u64(gapMs, 'gap') });
  }

  /**
   * Per key, windows of `count` values, back to back; a result's start and
   * end are its first and last values' timestamps.
   * @param {number | bigint} count
   */
  static countTumbling(count) {
    return WindowSpec._of({ tag: 'count-tumbling', val: u64(count, 'count') });
  }

  /** Per key, windows of `count` values starting every `step` values. @param {number | bigint} count @param {number | bigint} step */
  static countHopping(count, step) {
    return WindowSpec._of({ tag: 'count-hopping', val: { size: u64(count, 'count'), step: u64(step, 'step') } });
  }

  /** How long after its end a window accepts late values (default 0). @param {number | bigint} ms */
  graceMs(ms) {
    return this._with({ graceMs: u64(ms, 'grace') });
  }

  /** @param {'count' | 'sum' | 'min' | 'max' | 'mean' | 'custom'} aggregation */
  aggregation(aggregation) {
    return this._with({ aggregation });
  }

  count() {
    return this.aggregation('count');
  }

  sum() {
    return this.aggregation('sum');
  }

  min() {
    return this.aggregation('min');
  }

  max() {
    return this.aggregation('max');
  }

  mean() {
    return this.aggregation('mean');
  }

  /** Folded by the transform's `reduce` (and `merge` for sessions). */
  custom() {
    return this.aggregation('custom');
  }

  /** One result per window, when it closes (the default). */
  emitOnClose() {
    return this._with({ emit: 'on-close' });
  }

  /** A result each time a window changes. */
  emitOnUpdate() {
    return this._with({ emit: 'on-update' });
  }

  /** Close a partition's windows after `ms` of wall-clock time without records. @param {number | bigint} ms */
  idleCloseMs(ms) {
    return this._with({ idleCloseMs: u64(ms, 'idle close') });
  }

  /**
   * Declares the aggregation under `name` (stable across restarts and
   * upgrades). Call it while the transform is built; throws the host's
   * message when the spec is refused.
   * @param {string} name
   * @returns {Window}
   */
  define(name) {
    let id;
    try {
      id = witDefine(name, this._spec);
    } catch (e) {
      throw new Error(e && typeof e === 'object' && 'payload' in e ? String(e.payload) : errorMessage(e));
    }
    const w = windowFromId(id);
    w.name = name;
    return w;
  }
}

/** The aggregate of one window, handed to `onWindow`. */
export class WindowResult {
  /** @param {Uint8Array} data @param {any} raw */
  constructor(data, raw) {
    /** @type {Window} */
    this.window = windowFromId(raw.window);
    /** The aggregation key. @type {Uint8Array} */
    this.key = data.subarray(raw.key.start, raw.key.start + raw.key.len);
    /** First instant in the window, ms. */
    this.start = Number(raw.start);
    /** Exclusive end for tumbling and hopping windows; the inclusive last instant for sliding and session windows. */
    this.end = Number(raw.end);
    /** Number of values in the window. */
    this.count = Number(raw.count);
    /** The count, sum, min, max or mean (0 for custom aggregations). */
    this.value = raw.value;
    /** A custom aggregation's accumulator. @type {Uint8Array | null} */
    this.custom = raw.custom == null ? null : data.subarray(raw.custom.start, raw.custom.start + raw.custom.len);
    /** Whether this is the window's final result. */
    this.closed = raw.closed;
  }

  /** The key as UTF-8 text (`null` when not UTF-8). */
  get keyText() {
    return utf8(this.key);
  }
}

// ---------------------------------------------------------------------------
// Timers

/** A timer that fired, handed to `onTimer`. */
export class Timer {
  /** @param {Uint8Array} key @param {bigint} at @param {'event-time' | 'wall-clock'} clock */
  constructor(key, at, clock) {
    /** The timer's key. */
    this.key = key;
    /** The time it was set for, ms since the Unix epoch. */
    this.at = Number(at);
    /** `'event-time'` or `'wall-clock'`. */
    this.clock = clock;
  }

  /** The key as UTF-8 text (`null`: not UTF-8). */
  get keyText() {
    return utf8(this.key);
  }
}

/**
 * Timers: act when time passes, not only when records arrive. Each key of
 * the partition has at most one timer; setting it again replaces it. When
 * it fires, the host calls the transform's `onTimer` with state at hand.
 * Timers live in the partition's state: they survive restarts and
 * rebalances and are undone with a rejected record.
 *
 * ```js
 * export default class Silence {
 *   process(record, out) { timers.set(record.key, record.timestamp + 60000); }
 *   onTimer(timer, out) { out.emit({ key: timer.key, value: 'silent' }); }
 * }
 * ```
 *
 * `'event-time'` timers fire when the partition's stream time (its largest
 * record timestamp) reaches them, before the record that takes it there;
 * `'wall-clock'` timers when the host's clock does.
 */
export const timers = {
  /**
   * Sets the timer of `key` to fire at `at` (ms since the epoch) on `clock`
   * (default `'event-time'`), replacing the one it had.
   * @param {string | Uint8Array} key @param {number | bigint} at @param {'event-time' | 'wall-clock'} [clock]
   */
  set(key, at, clock = 'event-time') {
    witTimers.set(toBytes(key), BigInt(at), clock);
  },

  /** Removes the timer of `key`, if any. @param {string | Uint8Array} key */
  cancel(key) {
    witTimers.cancel(toBytes(key));
  },

  /**
   * The time and clock of the timer of `key`, or `null`.
   * @param {string | Uint8Array} key
   * @returns {{at: number, clock: 'event-time' | 'wall-clock'} | null}
   */
  get(key) {
    const t = witTimers.get(toBytes(key));
    return t == null ? null : { at: Number(t[0]), clock: t[1] };
  },

  /**
   * The current time of `clock` (default `'event-time'`), ms: the
   * partition's stream time, or the host's wall clock (the only wall clock
   * a plugin has).
   * @param {'event-time' | 'wall-clock'} [clock]
   */
  now(clock = 'event-time') {
    return Number(witTimers.now(clock));
  },
};

// ---------------------------------------------------------------------------
// The transform and its export

/**
 * Optional base class for transforms: extend it and override `process`
 * (and `onWindow`, `reduce`, `merge` for windowed transforms, `onTimer`
 * for timers). The
 * constructor receives the {@link Config}.
 */
export class Transform {
  /** @param {Config} config */
  // eslint-disable-next-line no-unused-vars
  constructor(config) {}

  /**
   * Handles one record: emit outputs, read and write state, add to windows.
   * Throwing rejects the record; throwing {@link Fatal} stops the
   * deployment.
   * @param {Record} record
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  process(record, out) {
    throw new Fatal(`${this.constructor.name} does not implement process`);
  }

  /**
   * Turns a window result into outputs. The default emits nothing.
   * @param {WindowResult} result
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  onWindow(result, out) {}

  /**
   * Handles a timer set with {@link timers.set} that fired: emit outputs,
   * read and write state, set timers. Throwing drops the timer and counts
   * a failure. The default emits nothing.
   * @param {Timer} timer
   * @param {Emitter} out
   * @returns {void}
   */
  // eslint-disable-next-line no-unused-vars
  onTimer(timer, out) {}
}

function isTransformClass(f) {
  return typeof f === 'function' && f.prototype != null && typeof f.prototype.process === 'function';
}

function emptyBatch() {
  return { data: new Uint8Array(0), records: new Uint8Array(0), headers: new Uint8Array(0), topics: [], rejects: [], windowAdds: [] };
}

/**
 * Builds the `weir:transform/handler` export from a plugin module; the
 * build calls it, plugins do not.
 *
 * @param {any} module the plugin module's namespace. Its default export (or
 *   else the module itself) is a Transform class (constructed with the
 *   config), a function `(record, out)`, or an object with `process` (and
 *   optionally `init(config)`, `onWindow`, `onTimer`, `reduce`, `merge`).
 * @internal
 */
export function createHandler(module) {
  const plugin = module !== null && typeof module === 'object' && module.default !== undefined ? module.default : module;
  let instance = null;
  // Whether the last `process` call's outputs referred to its input: then
  // the next call's output buffer starts with a copy of its input.
  let referencedInput = false;

  function current() {
    if (instance === null) throw 'weir: the host called the transform before init';
    return instance;
  }

  function folded(name, f) {
    try {
      return toBytes(f());
    } catch (e) {
      log.error(`${name} failed: ${errorMessage(e)}`);
      throw e;
    }
  }

  return {
    init(config) {
      try {
        const cfg = new Config(config);
        let t;
        if (isTransformClass(plugin)) t = new plugin(cfg);
        else if (typeof plugin === 'function') t = { process: plugin };
        else if (plugin !== null && typeof plugin === 'object' && typeof plugin.process === 'function') {
          if (typeof plugin.init === 'function') plugin.init(cfg);
          t = plugin;
        } else {
          throw new Error('the plugin must `export default` a class or object with a `process(record, out)` method, or a function `(record, out)`');
        }
        instance = t;
      } catch (e) {
        throw errorMessage(e);
      }
    },

    process(batch) {
      const t = current();
      const words = wordsOf(batch.records);
      const n = words.length / RECORD;
      const ctx = { data: batch.data, records: words, headers: wordsOf(batch.headers), topic: batch.topic, partition: batch.partition };
      const out = new Emitter(batch.data, n * RECORD, referencedInput);
      for (let i = 0; i < n; i++) {
        const record = new Record(ctx, i);
        out._begin(i, i64At(words, i * RECORD + 2));
        try {
          t.process(record, out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      referencedInput = out._base >= 0;
      return out._finish();
    },

    onWindow(batch) {
      const t = current();
      if (typeof t.onWindow !== 'function') return emptyBatch();
      const results = batch.results;
      const out = new Emitter(batch.data, results.length << 5, false);
      for (let i = 0; i < results.length; i++) {
        const raw = results[i];
        out._begin(i, Number(raw.end));
        try {
          t.onWindow(new WindowResult(batch.data, raw), out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      return out._finish();
    },

    onTimer(batch) {
      const t = current();
      if (typeof t.onTimer !== 'function') return emptyBatch();
      const fired = batch.timers;
      const out = new Emitter(batch.data, fired.length * RECORD, false);
      for (let i = 0; i < fired.length; i++) {
        const f = fired[i];
        out._begin(i, Number(f.at));
        try {
          t.onTimer(new Timer(batch.data.subarray(f.key.start, f.key.start + f.key.len), f.at, f.clock), out);
        } catch (e) {
          if (e instanceof Fatal) throw e.message;
          out._reject(errorMessage(e));
        }
      }
      if (out._adds.length > 0) throw 'onTimer may not add to windows';
      return out._finish();
    },

    reduce(window, key, acc, values) {
      const t = current();
      return folded('reduce', () => {
        if (typeof t.reduce !== 'function') throw new Error(`window ${window} uses a custom aggregation but the transform does not implement \`reduce\``);
        return t.reduce(windowFromId(window), key, acc ?? null, values);
      });
    },

    merge(window, key, a, b) {
      const t = current();
      return folded('merge', () => {
        if (typeof t.merge !== 'function') throw new Error(`window ${window} uses a custom session aggregation but the transform does not implement \`merge\``);
        return t.merge(windowFromId(window), key, a, b);
      });
    },
  };
}

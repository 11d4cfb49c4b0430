// Records (see ../weir.js).

import { HEADER, NONE, RECORD, i64At } from './_layout.js';
import { utf8 } from './bytes.js';
import { Reject, errorMessage } from './errors.js';

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

// Output (see ../weir.js). (Over 400 lines: the emitter packs every output,
// forwarded or new, and every window addition into one set of buffers.)

import { HEADER, KEEP_HIGH, NONE, NO_CHANGES, RECORD, asBytes, encoder } from './_layout.js';
import { toBytes } from './bytes.js';

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

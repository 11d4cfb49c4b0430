// Windows (see ../weir.js).

import { define as witDefine } from 'weir:transform/windows@0.2.1';
import { utf8 } from './bytes.js';
import { U64_MAX } from './config.js';
import { errorMessage } from './errors.js';

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

export function windowFromId(id) {
  let w = windowsById.get(id);
  if (w === undefined) {
    w = new Window(id, undefined);
    windowsById.set(id, w);
  }
  return w;
}

export function u64(value, what) {
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

// Stream-stream windowed join, built from state and timers (the same plugin
// as the Rust one): matches records of two input topics that share a key and
// lie at most `window_ms` apart in event time (orders with their payments).
//
// Config: `left` and `right`, the two topics (default `orders` and
// `payments`); `window_ms` (default 60000); `join`: `inner` (default),
// `left` or `outer`.
//
// A record with no match waits in state (one per key and side: a later one
// replaces it) under its side (`l` or `r`) and key, as its timestamp (8
// bytes, little-endian) followed by its value, with an event-time timer at
// its timestamp + `window_ms` + 1. A record of the other side within the
// window joins it: the output has the key, the value `LEFT;RIGHT` and the
// later timestamp, and the waiting record and its timer go. When the timer
// fires, the record expires: a left record is emitted as `LEFT;` under
// `left` and `outer` joins, a right one as `;RIGHT` under `outer`, with its
// own timestamp. Records of another topic, and records without a key, are
// rejected.

import { Reject, errorMessage, parsers, state, timers } from 'weir';

const EMPTY = new Uint8Array(0);
const SEMICOLON = 0x3b;
const L = 0x6c; // 'l'
const R = 0x72; // 'r'

/** The state key (and timer key) of a waiting record: its side, then its key. */
function waiting(side, key) {
  const k = new Uint8Array(1 + key.length);
  k[0] = side;
  k.set(key, 1);
  return k;
}

/** A waiting record as stored: its timestamp (8 bytes, little-endian), then its value. */
function encode(ts, value) {
  const stored = new Uint8Array(8 + value.length);
  new DataView(stored.buffer).setBigInt64(0, BigInt(ts), true);
  stored.set(value, 8);
  return stored;
}

/** The timestamp and value of a waiting record. */
function decode(stored) {
  const ts = new DataView(stored.buffer, stored.byteOffset, 8).getBigInt64(0, true);
  return [Number(ts), stored.subarray(8)];
}

/** `a`, `;` and `b` in one new buffer. */
function joined(a, b) {
  const v = new Uint8Array(a.length + 1 + b.length);
  v.set(a);
  v[a.length] = SEMICOLON;
  v.set(b, a.length + 1);
  return v;
}

export default class JoinWindow {
  constructor(config) {
    this.left = config.get('left') ?? 'orders';
    this.right = config.get('right') ?? 'payments';
    if (this.left === this.right) {
      throw new Error(`left and right must be different topics, both are \`${this.left}\``);
    }
    const text = config.get('window_ms');
    let windowMs = 60000;
    if (text !== undefined) {
      // Rust's `i64` parsing and messages (the value is not trimmed).
      try {
        windowMs = parsers.i64(text);
      } catch (e) {
        throw new Error(`window_ms: ${errorMessage(e)}`);
      }
      if (windowMs < 0) throw new Error(`window_ms must not be negative, not ${BigInt(text)}`);
    }
    this.windowMs = windowMs;
    const join = config.get('join') ?? 'inner';
    if (join !== 'inner' && join !== 'left' && join !== 'outer') {
      throw new Error(`join must be \`inner\`, \`left\` or \`outer\`, not \`${join}\``);
    }
    // Whether an expired left (right) record is emitted alone.
    this.emitLeft = join !== 'inner';
    this.emitRight = join === 'outer';
  }

  process(record, out) {
    const topic = record.topic;
    let side, other;
    if (topic === this.left) [side, other] = [L, R];
    else if (topic === this.right) [side, other] = [R, L];
    else throw new Reject(`topic \`${topic}\` is neither left (\`${this.left}\`) nor right (\`${this.right}\`)`);
    const key = record.key;
    if (key === null) throw new Reject('record has no key');
    const value = record.value ?? EMPTY;
    const ts = record.timestamp;
    const otherKey = waiting(other, key);
    const stored = state.get(otherKey);
    if (stored !== null) {
      const [otherTs, otherValue] = decode(stored);
      if (Math.abs(ts - otherTs) <= this.windowMs) {
        const value2 = side === L ? joined(value, otherValue) : joined(otherValue, value);
        out.emit({ key, value: value2, timestamp: Math.max(ts, otherTs) });
        state.delete(otherKey);
        timers.cancel(otherKey);
        return;
      }
    }
    const own = waiting(side, key);
    state.set(own, encode(ts, value));
    timers.set(own, ts + this.windowMs + 1, 'event-time');
  }

  onTimer(timer, out) {
    const stored = state.get(timer.key);
    if (stored === null) return;
    state.delete(timer.key);
    const [ts, value] = decode(stored);
    const side = timer.key[0];
    const key = timer.key.subarray(1);
    let expired;
    if (side === L && this.emitLeft) expired = joined(value, EMPTY);
    else if (side === R && this.emitRight) expired = joined(EMPTY, value);
    else return;
    out.emit({ key, value: expired, timestamp: ts });
  }
}

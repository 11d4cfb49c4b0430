// Timers (see ../weir.js).

import * as witTimers from 'weir:transform/timers@0.2.1';
import { toBytes, utf8 } from './bytes.js';

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

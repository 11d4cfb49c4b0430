// Inactivity alert with timers (the same plugin as the Rust one): after each
// record of a key, (re)sets the key's timer `gap_ms` later, so it fires only
// once the key has been silent that long. Config `clock`: `event-time`
// (default) or `wall-clock`. An alert's value is
// {"records":N,"last":T,"alerts":A}: the key's records since its last alert,
// its last record's timestamp and its alerts so far.

import { Reject, state, timers } from 'weir';

const enc = new TextEncoder();
const dec = new TextDecoder();

function prefixed(prefix, key) {
  const k = new Uint8Array(prefix.length + key.length);
  k.set(enc.encode(prefix));
  k.set(key, prefix.length);
  return k;
}

function read(key) {
  const v = state.get(key);
  return v === null ? 0 : Number(dec.decode(v));
}

export default class Inactivity {
  constructor(config) {
    this.gapMs = Number(config.get('gap_ms') ?? '60000');
    this.clock = config.get('clock') ?? 'event-time';
    if (this.clock !== 'event-time' && this.clock !== 'wall-clock') {
      throw new Error(`clock must be \`event-time\` or \`wall-clock\`, not \`${this.clock}\``);
    }
  }

  process(record, out) {
    const key = record.key;
    if (key === null) throw new Reject('record has no key');
    const n = prefixed('n:', key);
    state.set(n, String(read(n) + 1));
    state.set(prefixed('t:', key), String(record.timestamp));
    const base = this.clock === 'event-time' ? record.timestamp : timers.now('wall-clock');
    timers.set(key, base + this.gapMs, this.clock);
  }

  onTimer(timer, out) {
    const n = read(prefixed('n:', timer.key));
    const a = read(prefixed('a:', timer.key)) + 1;
    const last = read(prefixed('t:', timer.key));
    state.delete(prefixed('n:', timer.key));
    state.set(prefixed('a:', timer.key), String(a));
    out.emit({ key: timer.key, value: `{"records":${n},"last":${last},"alerts":${a}}` });
  }
}

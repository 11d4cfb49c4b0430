// Router: fans each record out to every topic whose pattern its value
// contains. Routes are config entries `route.<topic>` = `<substring>`;
// a record matching no route goes to the default output topic.

import { toBytes } from 'weir';

/** Whether `pattern` (non-empty) occurs in `bytes`. */
function contains(bytes, pattern) {
  const first = pattern[0];
  const last = bytes.length - pattern.length;
  for (let i = bytes.indexOf(first); i >= 0 && i <= last; i = bytes.indexOf(first, i + 1)) {
    let j = 1;
    while (j < pattern.length && bytes[i + j] === pattern[j]) j++;
    if (j === pattern.length) return true;
  }
  return false;
}

export default class Router {
  constructor(config) {
    this.routes = config.withPrefix('route.').map(([topic, pattern]) => [topic, toBytes(pattern)]);
    if (this.routes.some(([topic, pattern]) => topic === '' || pattern.length === 0)) {
      throw new Error('every `route.<topic>` needs a topic name and a non-empty pattern');
    }
  }

  process(record, out) {
    const value = record.value ?? new Uint8Array(0);
    let routed = false;
    for (const [topic, pattern] of this.routes) {
      if (contains(value, pattern)) {
        out.forward(record, { topic, value });
        routed = true;
      }
    }
    if (!routed) out.forward(record);
  }
}

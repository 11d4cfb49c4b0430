// Stream-table join (the same plugin as the Rust one): enriches each record
// with the value its key has in a table (orders with their customers).
// Config `table` names the table (default `customers`); `join` is `inner`
// (default: records whose key is not in the table, or that have no key, are
// dropped) or `left` (they pass with nothing appended).
//
// An output keeps the record's key and timestamp; its value is the record's
// value, `;`, and the table's value (an empty one for a left join's miss; a
// null value counts as empty).

import { tables } from 'weir';

const EMPTY = new Uint8Array(0);
const SEMICOLON = 0x3b;

/** `a`, `;` and `b` in one new buffer. */
function joined(a, b) {
  const v = new Uint8Array(a.length + 1 + b.length);
  v.set(a);
  v[a.length] = SEMICOLON;
  v.set(b, a.length + 1);
  return v;
}

export default class Enrich {
  constructor(config) {
    // Opened here, in init: an unknown table stops the deployment with the
    // host's message, which names the declared tables.
    this.table = tables.open(config.get('table') ?? 'customers');
    const join = config.get('join') ?? 'inner';
    if (join === 'inner') this.left = false;
    else if (join === 'left') this.left = true;
    else throw new Error(`join must be \`inner\` or \`left\`, not \`${join}\``);
  }

  process(record, out) {
    const key = record.key;
    const found = key === null ? null : this.table.get(key);
    if (found === null && !this.left) return;
    out.emit({ key, value: joined(record.value ?? EMPTY, found ?? EMPTY), timestamp: record.timestamp });
  }
}

// Tables (see ../weir.js).

// New in 0.2.1. The build marks this import free of side effects, so a
// plugin that never uses `tables` or `Table` is bundled without it and its
// component does not import `weir:transform/tables` (it also runs on a
// host of 0.2.0).
import * as witTables from 'weir:transform/tables@0.2.1';
import { errorMessage } from './errors.js';
import { keyBytes } from './state.js';

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

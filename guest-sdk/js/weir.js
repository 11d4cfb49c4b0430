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

export { toBytes, utf8, utf8Lossy, asciiUpperCase, asciiLowerCase } from './weir/bytes.js';
export { Reject, Fatal, errorMessage } from './weir/errors.js';
export { log } from './weir/log.js';
export { parsers, Config } from './weir/config.js';
export { Record } from './weir/record.js';
export { Emitter } from './weir/emit.js';
export { StateMap, state } from './weir/state.js';
export { Table, tables } from './weir/tables.js';
export { Window, WindowSpec, WindowResult } from './weir/windows.js';
export { Timer, timers } from './weir/timers.js';
export { Transform, createHandler } from './weir/transform.js';

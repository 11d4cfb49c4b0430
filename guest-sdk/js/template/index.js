// {{name}}: a Weir stream transform in JavaScript.
//
// Build:  ./build   (runs {{sdk}}/js/build . {{name}}.wasm)
// Try:    weir test {{name}}.wasm -i sample.jsonl
// Types:  jsconfig.json points editors at the SDK's weir.d.ts.
//
// The default export handles one record at a time: emit any number of
// outputs with out.emit({ key, value, topic, headers, timestamp }) or
// out.forward(record, changes). Throwing rejects the record (dead-letter,
// skip or stop, per the deployment); throwing Fatal stops the deployment.
// For configuration, state or windows export a class instead:
//   export default class { constructor(config) { ... } process(record, out) { ... } }

import { Reject } from 'weir';

/**
 * @param {import('weir').Record} record
 * @param {import('weir').Emitter} out
 */
export default function transform(record, out) {
  if (record.value === null) {
    out.forward(record); // pass tombstones through
    return;
  }
  const text = record.valueText;
  if (text === null) throw new Reject('value is not UTF-8 text');
  out.forward(record, { value: text.toUpperCase() });
}

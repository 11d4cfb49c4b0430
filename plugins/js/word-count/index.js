// Word count with keyed state: splits each value into lower-cased words
// (runs of letters and digits) and, per word, emits the word as key and its
// running count (decimal text) as value.

import { Reject, state, toLowerCase, words } from 'weir';

const counts = new state.Map('count');

export default function wordCount(record, out) {
  const text = record.valueText;
  if (text === null) throw new Reject('value is not UTF-8 text');
  for (const w of words(text)) {
    const word = toLowerCase(w);
    const n = counts.update(word, (n) => (n ?? 0) + 1);
    out.emit({ key: word, value: String(n) });
  }
}

// Word count with keyed state: splits each value into words and, per word,
// emits the word as key and its running count (decimal text) as value.
//
// A word is a maximal run of ASCII letters, ASCII digits and non-ASCII
// characters; ASCII letters are lower-cased, every other character is kept
// as it is (the definition every language's plugin shares; see the Rust one).

import { Reject, state } from 'weir';

const WORD = /[0-9A-Za-z\u0080-\u{10ffff}]+/gu;
const counts = new state.Map('count');

export default function wordCount(record, out) {
  const text = record.valueText;
  if (text === null) throw new Reject('value is not UTF-8 text');
  for (const [w] of text.matchAll(WORD)) {
    const word = w.replace(/[A-Z]+/g, (m) => m.toLowerCase());
    const n = counts.update(word, (n) => (n ?? 0) + 1);
    out.emit({ key: word, value: String(n) });
  }
}

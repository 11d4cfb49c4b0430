"""Word count with keyed state: splits each value into lower-cased words
(runs of letters and digits) and, per word, emits the word as key and its
running count (decimal text) as value."""

import re

import weir
from unicode_tables import ALPHANUMERIC, LOWERCASE

# A word is a maximal run of chars that Rust's `char::is_alphanumeric` accepts
# (Unicode Alphabetic or Numeric), from a table generated with Rust, so that the
# Python and Rust plugins split text identically whatever Unicode version each
# runtime has. Python's str.isalnum() is narrower (no combining marks).
WORD = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ALPHANUMERIC) + "]+")
# Rust's lower-case mappings of chars this Python's Unicode data does not know;
# str.lower() does the rest (including the final sigma, as Rust does).
NEWER_LOWERCASE = {c: s for c, s in LOWERCASE.items() if chr(c).lower() == chr(c)}

counts = weir.state.Map("count")


def increment(n: int | None) -> int:
    return (n or 0) + 1


@weir.transform
def word_count(record: weir.Record, out: weir.Emitter) -> None:
    text = record.value_text
    if text is None:
        raise weir.Reject("value is not UTF-8 text")
    for word in WORD.findall(text):
        word = word.lower() if word.isascii() else word.translate(NEWER_LOWERCASE).lower()
        out.emit(word, str(counts.update(word, increment)))

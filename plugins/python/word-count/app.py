"""Word count with keyed state: splits each value into words and, per word,
emits the word as key and its running count (decimal text) as value.

A word is a maximal run of ASCII letters, ASCII digits and non-ASCII
characters; ASCII letters are lower-cased, every other character is kept as
it is (the definition every language's plugin shares; see the Rust one)."""

import re
import string

import weir

WORD = re.compile("[0-9A-Za-z\u0080-\U0010ffff]+")
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

counts = weir.state.Map("count")


def increment(n: int | None) -> int:
    return (n or 0) + 1


@weir.transform
def word_count(record: weir.Record, out: weir.Emitter) -> None:
    text = record.value_text
    if text is None:
        raise weir.Reject("value is not UTF-8 text")
    for word in WORD.findall(text):
        word = word.translate(ASCII_LOWER)
        out.emit(word, str(counts.update(word, increment)))

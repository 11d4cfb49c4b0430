//! Word count with keyed state: splits each value into words and, per word,
//! emits the word as key and its running count (decimal text) as value.
//!
//! A word is a maximal run of ASCII letters, ASCII digits and non-ASCII
//! characters; ASCII letters are lower-cased, every other character is kept
//! as it is. Defined on ASCII so that the plugins of every language split and
//! fold text identically with nothing but their standard library (Unicode
//! case rules differ between runtimes and Unicode versions).

use weir_sdk::{Emitter, Error, Output, Record, state};

fn word_count(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let text = record
        .value_str()
        .ok_or_else(|| Error::reject("value is not UTF-8 text"))?;
    let counts = state::Map::<u64>::new("count");
    for word in text
        .split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let n = counts
            .update(&word, |n| Some(n.unwrap_or(0) + 1))?
            .unwrap_or(0);
        out.emit(Output::new().key(&word).value(&n.to_string()));
    }
    Ok(())
}

weir_sdk::export!(fn word_count);

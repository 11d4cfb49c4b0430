//! Word count with keyed state: splits each value into lower-cased words
//! (runs of letters and digits) and, per word, emits the word as key and its
//! running count (decimal text) as value.

use weir_sdk::{Emitter, Error, Output, Record, state};

fn word_count(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let text = record.value_str().ok_or_else(|| Error::reject("value is not UTF-8 text"))?;
    let counts = state::Map::<u64>::new("count");
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        let n = counts.update(&word, |n| Some(n.unwrap_or(0) + 1))?.unwrap_or(0);
        out.emit(Output::new().key(&word).value(&n.to_string()));
    }
    Ok(())
}

weir_sdk::export!(fn word_count);

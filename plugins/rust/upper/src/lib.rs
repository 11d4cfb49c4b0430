//! Stateless map: forwards every record with its value upper-cased (ASCII),
//! keeping key, headers and timestamp.

use weir_sdk::{Emitter, Error, Output, Record};

fn upper(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let value = record.value().map(<[u8]>::to_ascii_uppercase);
    let mut output = Output::new()
        .key_opt(record.key())
        .value_opt(value.as_deref());
    for (name, value) in record.headers() {
        output = output.header_opt(name, value);
    }
    out.emit(output);
    Ok(())
}

weir_sdk::export!(fn upper);

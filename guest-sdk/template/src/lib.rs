//! {{name}}: a Weir transform. Forwards every record with its value
//! upper-cased; change `process` to make it yours.
//!
//! Build: `./build` (writes {{name}}.wasm); try it: `weir test {{name}}.wasm -i sample.jsonl`.

use weir_sdk::{Emitter, Error, Output, Record};

fn process(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
    let value = record.value_str().ok_or_else(|| Error::reject("value is not UTF-8 text"))?.to_uppercase();
    let mut output = Output::new().key_opt(record.key()).value(&value);
    for (name, value) in record.headers() {
        output = output.header_opt(name, value);
    }
    out.emit(output);
    Ok(())
}

weir_sdk::export!(fn process);

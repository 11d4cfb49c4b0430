//! Hostile: panics (a wasm trap) on records whose value contains `trigger`
//! (every record when unset) and forwards the others.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Trap(Option<String>);

impl Transform for Trap {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Trap(config.get("trigger").map(str::to_owned)))
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        if self.0.as_deref().is_none_or(|t| value.contains(t)) {
            panic!(
                "hostile-trap: refusing record at offset {}",
                record.offset()
            );
        }
        out.forward(record);
        Ok(())
    }
}

weir_sdk::export!(Trap);

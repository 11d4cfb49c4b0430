//! Hostile: spins forever on records whose value contains `trigger` (every
//! record when unset) and forwards the others.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Spin(Option<String>);

impl Transform for Spin {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Spin(config.get("trigger").map(str::to_owned)))
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        if self.0.as_deref().is_none_or(|t| value.contains(t)) {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        out.forward(record);
        Ok(())
    }
}

weir_sdk::export!(Spin);

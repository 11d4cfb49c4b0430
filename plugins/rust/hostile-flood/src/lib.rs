//! Hostile: emits `count` copies (default 1,000,000) of records whose value
//! contains `trigger` (every record when unset); forwards the others once.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Flood {
    trigger: Option<String>,
    count: u64,
}

impl Transform for Flood {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Flood {
            trigger: config.get("trigger").map(str::to_owned),
            count: config.parse_or("count", 1_000_000)?,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        let copies = if self.trigger.as_deref().is_none_or(|t| value.contains(t)) {
            self.count
        } else {
            1
        };
        for _ in 0..copies {
            out.forward(record);
        }
        Ok(())
    }
}

weir_sdk::export!(Flood);

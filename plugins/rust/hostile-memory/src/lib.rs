//! Hostile: allocates (and touches) memory without bound on records whose
//! value contains `trigger` (every record when unset); forwards the others.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Hog {
    trigger: Option<String>,
    hoard: Vec<Vec<u8>>,
}

impl Transform for Hog {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Hog {
            trigger: config.get("trigger").map(str::to_owned),
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        if self.trigger.as_deref().is_none_or(|t| value.contains(t)) {
            loop {
                self.hoard.push(vec![0xAB; 1 << 20]);
            }
        }
        out.forward(record);
        Ok(())
    }
}

weir_sdk::export!(Hog);

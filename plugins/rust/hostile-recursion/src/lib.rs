//! Hostile: recurses without bound on records whose value contains
//! `trigger` (every record when unset); forwards the others.

use weir_sdk::{Config, Emitter, Error, Record, Transform};

struct Deep(Option<String>);

/// Never returns in practice: each frame needs the next one's result, so
/// the recursion is neither a loop nor a tail call, and it keeps only
/// scalars, so it exhausts the wasm stack rather than linear memory.
#[inline(never)]
fn descend(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    descend(n + 1).wrapping_mul(31).wrapping_add(n)
}

impl Transform for Deep {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Deep(config.get("trigger").map(str::to_owned)))
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        if self.0.as_deref().is_none_or(|t| value.contains(t)) {
            std::hint::black_box(descend(record.offset() as u64));
        }
        out.forward(record);
        Ok(())
    }
}

weir_sdk::export!(Deep);

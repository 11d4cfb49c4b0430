//! Hostile: waits outside wasm. Built for `wasm32-wasip2` (the test
//! support does), `std::thread::sleep` becomes WASI's
//! `monotonic-clock.subscribe-duration` and `poll`, where no CPU time is
//! spent for a CPU limit to count. With `mode = forever` it sleeps 1 ms at
//! a time, forever; otherwise it sleeps an hour and then forwards the
//! record. Records whose value lacks `trigger` (when set) are forwarded at
//! once.

use std::time::{Duration, Instant};

use weir_sdk::{Config, Emitter, Error, Record, Transform, log};

struct Sleep {
    trigger: Option<String>,
    forever: bool,
}

impl Transform for Sleep {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Sleep {
            trigger: config.get("trigger").map(str::to_owned),
            forever: config.get("mode") == Some("forever"),
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let value = record.value_str().unwrap_or_default();
        if self.trigger.as_deref().is_none_or(|t| value.contains(t)) {
            let started = Instant::now();
            if self.forever {
                loop {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            std::thread::sleep(Duration::from_secs(3600));
            log::info(&format!(
                "slept; the clock says {:?} passed",
                started.elapsed()
            ));
        }
        out.forward(record);
        Ok(())
    }
}

weir_sdk::export!(Sleep);

//! Inactivity alert with timers: after each record of a key, (re)sets the
//! key's timer `gap_ms` later (config, default 60000), so the timer fires
//! only once the key has been silent that long. Config `clock` picks the
//! time: `event-time` (default; record timestamps, deterministic) or
//! `wall-clock` (the host's clock).
//!
//! Records are counted per key in state. When a timer fires, the alert's
//! key is the silent key and its value is JSON: `{"records":N,"last":T,
//! "alerts":A}`, where `N` counts the key's records since its last alert,
//! `T` is the last record's timestamp and `A` counts the key's alerts so
//! far, this one included. `A` is read and written in the same state
//! transaction as the timer's removal, so a timer that fired twice against
//! state would show as an alert count that skips or repeats.

use weir_sdk::{Clock, Config, Emitter, Error, Output, Record, Timer, Transform, state, timers};

struct Inactivity {
    gap_ms: i64,
    clock: Clock,
}

fn count_key(prefix: &str, key: &[u8]) -> Vec<u8> {
    [prefix.as_bytes(), key].concat()
}

fn read_u64(key: &[u8]) -> u64 {
    state::get(key)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Transform for Inactivity {
    fn init(config: &Config) -> Result<Self, String> {
        let gap_ms = config.get("gap_ms").map_or(Ok(60_000), |v| {
            v.parse::<i64>().map_err(|e| format!("gap_ms: {e}"))
        })?;
        let clock = match config.get("clock").unwrap_or("event-time") {
            "event-time" => Clock::EventTime,
            "wall-clock" => Clock::WallClock,
            other => {
                return Err(format!(
                    "clock must be `event-time` or `wall-clock`, not `{other}`"
                ));
            }
        };
        Ok(Inactivity { gap_ms, clock })
    }

    fn process(&mut self, record: &Record<'_>, _out: &mut Emitter) -> Result<(), Error> {
        let key = record
            .key()
            .ok_or_else(|| Error::reject("record has no key"))?;
        let records = count_key("n:", key);
        state::set(&records, (read_u64(&records) + 1).to_string());
        state::set(count_key("t:", key), record.timestamp().to_string());
        let base = match self.clock {
            Clock::EventTime => record.timestamp(),
            Clock::WallClock => timers::now(Clock::WallClock),
        };
        timers::set(key, base + self.gap_ms, self.clock);
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter) -> Result<(), Error> {
        let records = count_key("n:", timer.key);
        let alerts = count_key("a:", timer.key);
        let n = read_u64(&records);
        let a = read_u64(&alerts) + 1;
        let last = read_u64(&count_key("t:", timer.key));
        state::delete(&records);
        state::set(&alerts, a.to_string());
        let value = format!(r#"{{"records":{n},"last":{last},"alerts":{a}}}"#);
        out.emit(Output::new().key(timer.key).value(&value));
        Ok(())
    }
}

weir_sdk::export!(Inactivity);

//! Stream-stream windowed join, built from state and timers: matches
//! records of two input topics that share a key and lie at most
//! `window_ms` apart in event time (orders with their payments).
//!
//! Config: `left` and `right`, the two topics (default `orders` and
//! `payments`); `window_ms` (default 60000); `join`: `inner` (default),
//! `left` or `outer`.
//!
//! A record with no match waits in state (one per key and side: a later
//! one replaces it) under its side (`l` or `r`) and key, as its timestamp
//! (8 bytes, little-endian) followed by its value, with an event-time timer
//! at its timestamp + `window_ms` + 1. A record of the other side within
//! the window joins it: the output has the key, the value `LEFT;RIGHT`
//! and the later timestamp, and the waiting record and its timer go. When
//! the timer fires, the record expires: a left record is emitted as
//! `LEFT;` under `left` and `outer` joins, a right one as `;RIGHT` under
//! `outer`, with its own timestamp. Records of another topic, and records
//! without a key, are rejected.

use weir_sdk::{Clock, Config, Emitter, Error, Output, Record, Timer, Transform, state, timers};

struct JoinWindow {
    left: String,
    right: String,
    window_ms: i64,
    emit_left: bool,
    emit_right: bool,
}

fn waiting(side: u8, key: &[u8]) -> Vec<u8> {
    [&[side], key].concat()
}

/// The timestamp and value of a waiting record.
fn decode(stored: &[u8]) -> (i64, &[u8]) {
    let (ts, value) = stored.split_at(8);
    (i64::from_le_bytes(ts.try_into().expect("8 bytes")), value)
}

impl Transform for JoinWindow {
    fn init(config: &Config) -> Result<Self, String> {
        let left = config.get("left").unwrap_or("orders").to_owned();
        let right = config.get("right").unwrap_or("payments").to_owned();
        if left == right {
            return Err(format!(
                "left and right must be different topics, both are `{left}`"
            ));
        }
        let window_ms = config.get("window_ms").map_or(Ok(60_000), |v| {
            v.parse::<i64>().map_err(|e| format!("window_ms: {e}"))
        })?;
        if window_ms < 0 {
            return Err(format!("window_ms must not be negative, not {window_ms}"));
        }
        let (emit_left, emit_right) = match config.get("join").unwrap_or("inner") {
            "inner" => (false, false),
            "left" => (true, false),
            "outer" => (true, true),
            other => {
                return Err(format!(
                    "join must be `inner`, `left` or `outer`, not `{other}`"
                ));
            }
        };
        Ok(JoinWindow {
            left,
            right,
            window_ms,
            emit_left,
            emit_right,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
        let topic = record.topic();
        let (side, other) = if topic == self.left {
            (b'l', b'r')
        } else if topic == self.right {
            (b'r', b'l')
        } else {
            return Err(Error::reject(format!(
                "topic `{topic}` is neither left (`{}`) nor right (`{}`)",
                self.left, self.right
            )));
        };
        let key = record
            .key()
            .ok_or_else(|| Error::reject("record has no key"))?;
        let value = record.value().unwrap_or_default();
        let ts = record.timestamp();
        let other_key = waiting(other, key);
        if let Some(stored) = state::get(&other_key) {
            let (other_ts, other_value) = decode(&stored);
            if (ts - other_ts).abs() <= self.window_ms {
                let joined = if side == b'l' {
                    [value, b";", other_value].concat()
                } else {
                    [other_value, b";", value].concat()
                };
                out.emit(
                    Output::new()
                        .key(key)
                        .value(&joined)
                        .timestamp(ts.max(other_ts)),
                );
                state::delete(&other_key);
                timers::cancel(&other_key);
                return Ok(());
            }
        }
        let own = waiting(side, key);
        state::set(&own, [&ts.to_le_bytes()[..], value].concat());
        timers::set(&own, ts + self.window_ms + 1, Clock::EventTime);
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter) -> Result<(), Error> {
        let Some(stored) = state::get(timer.key) else {
            return Ok(());
        };
        state::delete(timer.key);
        let (ts, value) = decode(&stored);
        let (side, key) = timer
            .key
            .split_first()
            .expect("a waiting record's key has its side");
        let joined = match side {
            b'l' if self.emit_left => [value, b";"].concat(),
            b'r' if self.emit_right => [b";", value].concat(),
            _ => return Ok(()),
        };
        out.emit(Output::new().key(key).value(&joined).timestamp(ts));
        Ok(())
    }
}

weir_sdk::export!(JoinWindow);

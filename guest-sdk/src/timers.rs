//! Timers: act when time passes, not only when records arrive.
//!
//! Each key has at most one timer; setting it again replaces it. When it
//! fires, the host calls [`Transform::on_timer`](crate::Transform::on_timer)
//! with state at hand. Timers are kept in the partition's state, so they
//! survive restarts and rebalances and are undone with a rejected record:
//!
//! ```no_run
//! use weir_sdk::{timers, Clock, Config, Emitter, Error, Output, Record, Timer, Transform};
//!
//! /// Alerts when a key has sent nothing for a minute of event time.
//! struct Silence;
//!
//! impl Transform for Silence {
//!     fn init(_: &Config) -> Result<Self, String> {
//!         Ok(Silence)
//!     }
//!     fn process(&mut self, record: &Record<'_>, _out: &mut Emitter) -> Result<(), Error> {
//!         timers::set(record.key().unwrap_or_default(), record.timestamp() + 60_000, Clock::EventTime);
//!         Ok(())
//!     }
//!     fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         out.emit(Output::new().key(timer.key).value("silent"));
//!         Ok(())
//!     }
//! }
//! # weir_sdk::export!(Silence);
//! ```
//!
//! See the `weir:transform/timers` interface in the WIT package for the
//! exact rules.

use crate::bindings::weir::transform::timers as wit;
pub use wit::Clock;

/// A timer that fired.
#[derive(Clone, Copy, Debug)]
pub struct Timer<'a> {
    pub key: &'a [u8],
    /// The time it was set for, ms since the Unix epoch.
    pub at: i64,
    pub clock: Clock,
}

/// Sets the timer of `key` to fire at `at` (ms since the Unix epoch) on
/// `clock`, replacing the one it had.
pub fn set(key: impl AsRef<[u8]>, at: i64, clock: Clock) {
    wit::set(key.as_ref(), at, clock);
}

/// Removes the timer of `key`, if any.
pub fn cancel(key: impl AsRef<[u8]>) {
    wit::cancel(key.as_ref());
}

/// The current time of `clock` (ms since the epoch): the partition's
/// stream time, or the host's wall clock. Set wall-clock timers relative to
/// it; the WASI clocks a language runtime sees stay at the epoch.
pub fn now(clock: Clock) -> i64 {
    wit::now(clock)
}

/// The time and clock of the timer of `key`, if it has one.
pub fn get(key: impl AsRef<[u8]>) -> Option<(i64, Clock)> {
    wit::get(key.as_ref())
}

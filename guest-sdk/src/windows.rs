//! Windowed aggregations computed by the host.
//!
//! Declare windows in [`Transform::init`](crate::Transform::init), feed them
//! from `process` with [`Emitter::add_to_window`](crate::Emitter::add_to_window),
//! and turn results into outputs in
//! [`Transform::on_window`](crate::Transform::on_window):
//!
//! ```no_run
//! use weir_sdk::{Config, Emitter, Error, Output, Record, Transform, Window, WindowResult, WindowSpec};
//!
//! struct ClicksPerMinute { window: Window }
//!
//! impl Transform for ClicksPerMinute {
//!     fn init(_: &Config) -> Result<Self, String> {
//!         let window = WindowSpec::tumbling(60_000).grace_ms(5_000).count().emit_on_close().define("clicks")?;
//!         Ok(ClicksPerMinute { window })
//!     }
//!     fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         out.add_to_window(self.window, record.key().unwrap_or_default(), 1.0);
//!         Ok(())
//!     }
//!     fn on_window(&mut self, w: &WindowResult<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         let value = format!(r#"{{"start":{},"end":{},"count":{}}}"#, w.start, w.end, w.count);
//!         out.emit(Output::new().key(w.key).value(&value));
//!         Ok(())
//!     }
//! }
//! # weir_sdk::export!(ClicksPerMinute);
//! ```
//!
//! Semantics are those of Kafka Streams; see the `weir:transform/windows`
//! interface in the WIT package for the exact rules.

use crate::bindings::weir::transform::windows as wit;
pub use wit::{Aggregation, EmitMode};

/// A declared windowed aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window(u32);

impl Window {
    pub(crate) fn from_id(id: u32) -> Self {
        Window(id)
    }

    /// The id the host assigned.
    pub fn id(self) -> u32 {
        self.0
    }
}

/// How a window aggregation is shaped; build with a kind constructor, then
/// refine and [`define`](WindowSpec::define) it.
#[derive(Clone, Copy, Debug)]
pub struct WindowSpec {
    spec: wit::WindowSpec,
}

impl WindowSpec {
    fn of(kind: wit::WindowKind) -> Self {
        WindowSpec {
            spec: wit::WindowSpec {
                kind,
                grace_ms: 0,
                aggregation: Aggregation::Count,
                emit: EmitMode::OnClose,
                idle_close_ms: None,
            },
        }
    }

    /// Epoch-aligned windows of `size_ms`, back to back.
    pub fn tumbling(size_ms: u64) -> Self {
        Self::of(wit::WindowKind::Tumbling(size_ms))
    }

    /// Epoch-aligned windows of `size_ms` starting every `advance_ms`.
    pub fn hopping(size_ms: u64, advance_ms: u64) -> Self {
        Self::of(wit::WindowKind::Hopping(wit::Hopping {
            size_ms,
            advance_ms,
        }))
    }

    /// Windows covering every `max_difference_ms` span between values.
    pub fn sliding(max_difference_ms: u64) -> Self {
        Self::of(wit::WindowKind::Sliding(max_difference_ms))
    }

    /// Per-key sessions of values less than `gap_ms` apart.
    pub fn session(gap_ms: u64) -> Self {
        Self::of(wit::WindowKind::Session(gap_ms))
    }

    /// Per key, windows of `count` values, back to back (Quix Streams'
    /// tumbling count windows); a result's start and end are its first and
    /// last values' timestamps.
    pub fn count_tumbling(count: u64) -> Self {
        Self::of(wit::WindowKind::CountTumbling(count))
    }

    /// Per key, windows of `count` values starting every `step` values.
    pub fn count_hopping(count: u64, step: u64) -> Self {
        Self::of(wit::WindowKind::CountHopping(wit::CountHopping {
            size: count,
            step,
        }))
    }

    /// How long after its end a window accepts late values (default 0).
    pub fn grace_ms(mut self, grace_ms: u64) -> Self {
        self.spec.grace_ms = grace_ms;
        self
    }

    pub fn aggregation(mut self, aggregation: Aggregation) -> Self {
        self.spec.aggregation = aggregation;
        self
    }

    pub fn count(self) -> Self {
        self.aggregation(Aggregation::Count)
    }

    pub fn sum(self) -> Self {
        self.aggregation(Aggregation::Sum)
    }

    pub fn min(self) -> Self {
        self.aggregation(Aggregation::Min)
    }

    pub fn max(self) -> Self {
        self.aggregation(Aggregation::Max)
    }

    pub fn mean(self) -> Self {
        self.aggregation(Aggregation::Mean)
    }

    /// Folded by [`Transform::reduce`](crate::Transform::reduce).
    pub fn custom(self) -> Self {
        self.aggregation(Aggregation::Custom)
    }

    /// One result per window, when it closes (the default).
    pub fn emit_on_close(mut self) -> Self {
        self.spec.emit = EmitMode::OnClose;
        self
    }

    /// A result every time a window changes.
    pub fn emit_on_update(mut self) -> Self {
        self.spec.emit = EmitMode::OnUpdate;
        self
    }

    /// Close a partition's windows after `ms` of wall-clock time without
    /// records.
    pub fn idle_close_ms(mut self, ms: u64) -> Self {
        self.spec.idle_close_ms = Some(ms);
        self
    }

    /// Declares the aggregation under `name` (stable across restarts and
    /// upgrades); call from `init`.
    pub fn define(self, name: &str) -> Result<Window, String> {
        wit::define(name, self.spec).map(Window)
    }
}

/// The aggregate of one window.
#[derive(Clone, Copy, Debug)]
pub struct WindowResult<'a> {
    pub window: Window,
    pub key: &'a [u8],
    /// First instant in the window, ms.
    pub start: i64,
    /// Exclusive end for tumbling and hopping windows; the inclusive last
    /// instant for sliding and session windows.
    pub end: i64,
    pub count: u64,
    /// The count, sum, min, max or mean (0 for custom aggregations).
    pub value: f64,
    /// The accumulator of a custom aggregation.
    pub custom: Option<&'a [u8]>,
    /// Whether this is the window's final result.
    pub closed: bool,
}

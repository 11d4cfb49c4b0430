//! Window definitions a transform declares, and the window results the host
//! hands back to it. Semantics are Kafka Streams' (see the `windows`
//! interface of the WIT world).

use crate::batch::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hopping {
    pub size_ms: u64,
    pub advance_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows of this many ms.
    Tumbling(u64),
    Hopping(Hopping),
    /// Windows of this many ms around each record (Kafka Streams' sliding
    /// windows).
    Sliding(u64),
    /// Per-key activity windows closed by this gap of inactivity, in ms.
    Session(u64),
    /// Per key, windows of `size` values starting every `step` values
    /// (Quix Streams' count windows; tumbling when `step == size`).
    Count {
        size: u64,
        step: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    /// The transform's own `reduce` and `merge`.
    Custom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitMode {
    /// A result every time a window changes.
    OnUpdate,
    /// One final result when a window closes.
    OnClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// How long after a window's end records are still accepted, in ms.
    pub grace_ms: u64,
    pub aggregation: Aggregation,
    pub emit: EmitMode,
    /// Close windows after this much wall-clock time without records.
    pub idle_close_ms: Option<u64>,
}

/// One window's current or final result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowResult {
    pub window: u32,
    pub key: Span,
    pub start: i64,
    pub end: i64,
    pub count: u64,
    pub value: f64,
    pub custom: Option<Span>,
    pub closed: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowBatch {
    pub data: Vec<u8>,
    pub results: Vec<WindowResult>,
}

//! The data that crosses Weir's sandbox boundary, in the host's own types.
//!
//! Every world version's bindings (in `weir-engine`) convert to and from
//! these, so the rest of the host (state, windows, the pipeline) never sees
//! generated types and a new world version touches one module. The shapes
//! follow world 0.1: columnar batches whose records refer to one data
//! buffer by [`Span`].
//!
//! No wasmtime and no Kafka here: [`Limits`] and [`FailureKind`] are what
//! a deployment is configured with and what its failures are called.

#![forbid(unsafe_code)]

mod batch;
pub mod codec;
mod failure;
mod limits;
mod window;

pub use batch::{
    BatchBuilder, Header, InputBatch, InputRecord, MAX_MESSAGE_BYTES, OutputBatch, OutputRecord,
    Reject, Span, WindowAdd, truncate,
};
pub use failure::{CallFailure, FailureKind, RecordFailure, Stopped};
pub use limits::{LimitExceeded, Limits, record_size};
pub use window::{
    Aggregation, EmitMode, Hopping, WindowBatch, WindowKind, WindowResult, WindowSpec,
};

/// The wall clock as Kafka counts time: ms since the Unix epoch.
#[inline]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

//! Running a deployment's transform over batches: instances, dispatch with
//! failure isolation, and what a batch produced.

use std::sync::Arc;

use serde::Serialize;

pub mod batch;
pub mod budget;
mod dispatch;
pub mod instance;
pub mod log;

pub use batch::{BatchBuilder, OutRecord, Produced};
pub use batch::{MAX_MESSAGE_BYTES, truncate};
pub use dispatch::Transform;

use crate::engine::Limits;
use log::GuestLog;

/// Whether outputs may go to a topic, and why not.
pub type TopicPolicy = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How one deployment's instances are set up.
pub struct TransformSpec {
    /// Deployment name, used in every error and log line.
    pub name: String,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pub log: Arc<GuestLog>,
    /// Decides whether outputs may go to a topic (`None`: any topic).
    pub topic_policy: Option<TopicPolicy>,
    /// Stop at the first failed record (the `stop` failure policy) instead
    /// of isolating it and processing the rest of the batch.
    pub stop_at_failure: bool,
}

impl TransformSpec {
    pub fn new(name: &str, config: Vec<(String, String)>, limits: Limits) -> Self {
        TransformSpec { name: name.to_owned(), config, limits, log: GuestLog::new(name), topic_policy: None, stop_at_failure: false }
    }
}

/// Why a record (or a call) failed; also the `weir.error.kind` header of
/// dead-lettered records and a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The transform rejected the record.
    Rejected,
    /// The guest trapped: a panic, an exception, an invalid operation.
    Trap,
    /// The call exceeded its CPU time.
    Timeout,
    /// Linear memory (or table) limit.
    Memory,
    /// Wasm stack limit (unbounded recursion).
    Stack,
    /// Too many outputs, or too many output bytes, for one record.
    OutputLimit,
    /// An output to a topic the deployment may not write.
    TopicDenied,
    /// The transform returned a malformed batch.
    InvalidOutput,
    /// State quota.
    StateLimit,
    /// The transform declared a fatal error (or failed `init`).
    Fatal,
    /// The host failed (storage); not the record's fault.
    Host,
    /// The record cannot be given to a transform (a header name that is
    /// not UTF-8, an event time far in the future).
    InvalidInput,
    /// Its output could never be produced (too large for the topic, the
    /// topic gone or denied).
    Produce,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Stack => "stack",
            FailureKind::OutputLimit => "output-limit",
            FailureKind::TopicDenied => "topic-denied",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::StateLimit => "state-limit",
            FailureKind::Fatal => "fatal",
            FailureKind::Host => "host",
            FailureKind::InvalidInput => "invalid-input",
            FailureKind::Produce => "produce",
        }
    }

    /// Failures that stop the partition instead of condemning a record.
    pub fn stops_partition(self) -> bool {
        matches!(self, FailureKind::Fatal | FailureKind::Host)
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call into a transform.
#[derive(Clone, Debug, PartialEq)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl CallFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        CallFailure { kind, message: message.into() }
    }

    pub fn host(error: anyhow::Error) -> Self {
        CallFailure::new(FailureKind::Host, format!("{error:#}"))
    }
}

/// A record that could not be processed; the failure policy decides what
/// happens to it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordFailure {
    /// Index of the record in the dispatched batch.
    pub index: u32,
    pub kind: FailureKind,
    pub message: String,
}

/// Processing stopped at a record: the transform declared a fatal error, or
/// the host failed. Records from `index` on were not processed.
#[derive(Clone, Debug, PartialEq)]
pub struct Stopped {
    pub index: u32,
    pub kind: FailureKind,
    pub message: String,
}

/// Everything one dispatch produced.
#[derive(Default)]
pub struct BatchResult {
    /// Outputs in production order.
    pub produced: Vec<Produced>,
    /// Failed records, in index order.
    pub failures: Vec<RecordFailure>,
    /// Records whose window values arrived after their windows closed.
    pub late: Vec<u32>,
    pub stopped: Option<Stopped>,
}

impl BatchResult {
    /// Every output record, in production order.
    pub fn records(&self) -> impl Iterator<Item = OutRecord<'_>> {
        self.produced.iter().flat_map(Produced::records)
    }

    /// Number of input records processed (failed ones included) before any
    /// stop.
    pub fn processed(&self, batch_len: u32) -> u32 {
        self.stopped.as_ref().map_or(batch_len, |s| s.index)
    }
}

/// A failure with everything an operator needs to find the record.
pub fn describe_failure(deployment: &str, batch: &crate::bindings::InputBatch, f: &RecordFailure) -> String {
    let offset = batch.records.get(f.index as usize).map_or(-1, |r| r.offset);
    format!("deployment `{deployment}`, topic `{}` partition {} offset {offset}: {}: {}", batch.topic, batch.partition, f.kind, f.message)
}

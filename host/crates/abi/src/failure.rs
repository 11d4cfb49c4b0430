//! What a failed call or record is called: the kinds name dead letters'
//! `weir.error.kind` header and metrics labels, so they are part of the
//! user-visible contract.

use serde::Serialize;

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
    /// Its key or value does not decode in the deployment's input format
    /// (not in the registry's wire format, an unknown schema id, bytes
    /// that do not match their schema).
    Decode,
    /// An output does not fit the deployment's output format (a field its
    /// schema lacks or types otherwise).
    Encode,
    /// Its output could never be produced (too large for the topic, the
    /// topic gone or denied).
    Produce,
    /// The host had no room to run the transform (its instance pool, or the
    /// tenant's share of it, was full): not the record's doing, so its batch
    /// waits and runs again.
    Unavailable,
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
            FailureKind::Decode => "decode",
            FailureKind::Encode => "encode",
            FailureKind::Produce => "produce",
            FailureKind::Unavailable => "unavailable",
        }
    }

    /// Failures that stop the partition instead of condemning a record.
    pub fn stops_partition(self) -> bool {
        matches!(
            self,
            FailureKind::Fatal | FailureKind::Host | FailureKind::Unavailable
        )
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call into a transform.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl CallFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        CallFailure {
            kind,
            message: message.into(),
        }
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

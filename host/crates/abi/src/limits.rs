//! Per-deployment sandbox limits and the errors raised when one is breached.

use serde::{Deserialize, Serialize};

/// Hard limits for one deployment's instances.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory of one instance, all memories together (MiB).
    pub memory_mb: u64,
    /// CPU time of one call into the transform (one batch), in ms.
    pub cpu_ms_per_batch: u64,
    /// Outputs one input record may produce.
    pub max_outputs_per_record: u32,
    /// Bytes (keys, values, headers) one input record may produce.
    pub max_output_bytes_per_record: u64,
    /// Size of one output record as Kafka counts it (see [`record_size`]);
    /// none: the most the deployment's topics and producer accept, read
    /// from the cluster when it starts. A larger setting is refused then.
    pub max_output_record_bytes: Option<u64>,
    /// Bytes of keys and values one input partition's state may hold (user
    /// keys and window state); none: unlimited.
    pub max_state_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            cpu_ms_per_batch: 1_000,
            max_outputs_per_record: 1_000,
            max_output_bytes_per_record: 8 << 20,
            max_output_record_bytes: None,
            max_state_bytes: None,
        }
    }
}

/// Bytes Kafka adds around one record alone in a batch (batch header and
/// record framing at their largest) and around each header.
const RECORD_FRAMING_BYTES: u64 = 100;
const HEADER_FRAMING_BYTES: u64 = 10;

/// Size of a record alone in a batch, as brokers compare it with a topic's
/// `max.message.bytes`: key, value, header names and values, and framing.
pub fn record_size(key: usize, value: usize, headers: impl Iterator<Item = usize>) -> u64 {
    headers.fold(RECORD_FRAMING_BYTES + key as u64 + value as u64, |n, h| {
        n + h as u64 + HEADER_FRAMING_BYTES
    })
}

impl Limits {
    #[inline]
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mb << 20
    }

    /// What one call may make the host hold on the guest's behalf (see
    /// `weir-engine`'s host budget): as much as the guest may hold itself, and at
    /// least 16 MiB.
    #[inline]
    pub fn host_bytes_per_call(&self) -> u64 {
        self.memory_bytes().max(16 << 20)
    }
}

/// A limit an instance or record ran into.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "memory limit: the instance asked for {requested} bytes of linear memory, more than its {limit}-byte limit"
    )]
    Memory { requested: u64, limit: u64 },
    #[error("table limit: the instance asked for {requested} table elements, more than {limit}")]
    Table { requested: u64, limit: u64 },
    #[error("CPU time limit: the call ran for more than {limit_ms} ms of CPU time")]
    Cpu { limit_ms: u64 },
    #[error(
        "output limit: the record produced {count} outputs, more than max_outputs_per_record = {limit}"
    )]
    Outputs { count: u64, limit: u32 },
    #[error(
        "output limit: the record produced {bytes} bytes of output, more than max_output_bytes_per_record = {limit}"
    )]
    OutputBytes { bytes: u64, limit: u64 },
    #[error(
        "output limit: an output record of {bytes} bytes is larger than the {limit} bytes its topics accept (max_output_record_bytes)"
    )]
    RecordBytes { bytes: u64, limit: u64 },
    #[error(
        "host memory limit: the call made the host hold or read more than {limit} bytes on its behalf ({what}); memory_mb bounds it"
    )]
    HostMemory { what: String, limit: u64 },
    #[error(
        "state limit: a state entry of {bytes} bytes is larger than the {limit} bytes the changelog topic accepts"
    )]
    StateEntry { bytes: u64, limit: u64 },
    #[error(
        "state limit: the partition's state would hold {bytes} bytes of keys and values, more than max_state_bytes = {limit}"
    )]
    State { bytes: u64, limit: u64 },
}

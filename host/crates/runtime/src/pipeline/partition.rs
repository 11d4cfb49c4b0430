//! One input partition (number) of a deployment while this host owns it:
//! buffered records, the batch in flight, and its commit ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::ledger::{AtLeastOnce, CommitLedger, Positions};
use crate::kafka::producer::Acks;
use weir_abi::BatchBuilder;
use weir_state::PartitionState;
use weir_state::timers::Clock;

/// Records of one topic-partition waiting for their batches: whole
/// batches (within `batch_max_records` and `batch_max_bytes`) and the one
/// filling, oldest first.
pub struct Buffer {
    topic: String,
    partition: i32,
    chunks: VecDeque<Chunk>,
    records: usize,
    bytes: usize,
    pub paused: bool,
}

struct Chunk {
    builder: BatchBuilder,
    /// When its first record arrived.
    since: Instant,
}

/// How big a batch may grow.
#[derive(Clone, Copy)]
pub struct BatchLimits {
    pub records: usize,
    pub bytes: usize,
}

impl Buffer {
    pub fn new(topic: &str, partition: i32) -> Self {
        Buffer { topic: topic.to_owned(), partition, chunks: VecDeque::new(), records: 0, bytes: 0, paused: false }
    }

    /// Appends a consumed record (see [`BatchBuilder::push_bytes`]); one
    /// with `invalid` set goes to the failure policy, not the transform.
    #[allow(clippy::too_many_arguments)]
    pub fn push<'h>(
        &mut self,
        limits: BatchLimits,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        invalid: Option<String>,
    ) {
        let size = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + size_of::<weir_abi::InputRecord>();
        let full = |c: &Chunk| c.builder.len() >= limits.records || (!c.builder.is_empty() && c.builder.held_bytes() + size > limits.bytes);
        if self.chunks.back().is_none_or(full) {
            self.chunks.push_back(Chunk { builder: BatchBuilder::new(&self.topic, self.partition), since: Instant::now() });
        }
        let chunk = &mut self.chunks.back_mut().expect("a chunk to fill").builder;
        let before = chunk.held_bytes();
        chunk.push_bytes(offset, timestamp, key, value, headers);
        if let Some(why) = invalid {
            chunk.mark_invalid(chunk.len() as u32 - 1, why);
        }
        self.records += 1;
        self.bytes += chunk.held_bytes() - before;
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes buffered (see [`BatchBuilder::held_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest buffered record arrived.
    pub fn since(&self) -> Option<Instant> {
        self.chunks.front().map(|c| c.since)
    }

    /// A whole batch is buffered, or the oldest record waited `linger`.
    pub fn ready(&self, limits: BatchLimits, linger: std::time::Duration) -> bool {
        match self.chunks.front() {
            None => false,
            Some(c) => self.chunks.len() > 1 || c.builder.len() >= limits.records || c.builder.held_bytes() >= limits.bytes || c.since.elapsed() >= linger,
        }
    }

    /// The oldest batch.
    pub fn take(&mut self) -> Option<BatchBuilder> {
        let c = self.chunks.pop_front()?;
        self.records -= c.builder.len();
        self.bytes -= c.builder.held_bytes();
        Some(c.builder)
    }
}

pub struct Partition {
    pub number: i32,
    pub buffers: BTreeMap<String, Buffer>,
    /// Home between batches; with a worker while one is in flight.
    pub state: Option<Box<PartitionState>>,
    pub in_flight: bool,
    pub ledger: Box<dyn CommitLedger<Arc<Acks>> + Send>,
    /// A commit is due: no new batch starts until the one in flight is back
    /// (and, when state changed, every delivery is acknowledged), then the
    /// commit happens.
    pub commit_due: bool,
    /// Why processing stopped (failure policy `stop`, a fatal error).
    pub stopped: Option<String>,
    pub last_record: Instant,
    /// Windows have been force-closed since the last record.
    pub idle_closed: bool,
    /// When the earliest wall-clock timer of the partition is due (ms since
    /// the epoch), read from its state whenever the state comes home.
    pub next_wall_timer: Option<i64>,
    /// Next changelog offset not reflected in the store.
    pub changelog_next: i64,
    /// Transient delivery failures in a row (each rewinds the partition).
    pub failed_deliveries: u32,
    /// Consumption waits until then after a failed delivery (backoff).
    pub hold_until: Option<Instant>,
}

impl Partition {
    pub fn new(number: i32, mut state: Box<PartitionState>, committed: Positions, changelog_next: i64) -> Self {
        let next_wall_timer = state.next_timer(Clock::WallClock).unwrap_or(Some(i64::MIN));
        Partition {
            number,
            buffers: BTreeMap::new(),
            state: Some(state),
            in_flight: false,
            ledger: Box::new(AtLeastOnce::new(committed)),
            commit_due: false,
            stopped: None,
            last_record: Instant::now(),
            idle_closed: true,
            next_wall_timer,
            changelog_next,
            failed_deliveries: 0,
            hold_until: None,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffers.values().map(Buffer::records).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header without name or value is 2 bytes on the wire and an entry
    /// of 20 in the batch: records full of them count for what they hold.
    #[test]
    fn buffered_bytes_count_what_headers_hold() {
        let mut b = Buffer::new("in", 0);
        let limits = BatchLimits { records: 1000, bytes: 1 << 20 };
        let empty: &[u8] = &[];
        b.push(limits, 0, 0, None, None, std::iter::repeat_n((empty, None), 100_000), None);
        assert!(b.bytes() >= 100_000 * size_of::<weir_abi::Header>(), "{} bytes", b.bytes());
        b.push(limits, 1, 0, None, Some(b"x"), [], None);
        assert_eq!(b.take().map(|c| c.len()), Some(1), "the batch was full");
    }
}

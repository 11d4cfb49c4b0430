//! One input partition (number) of a deployment while this host owns it:
//! buffered records of each input, the batch in flight, and its commit
//! ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::budget::Budgets;
use crate::ledger::{AtLeastOnce, CommitLedger, Positions};
use crate::order::Bound;
use weir_abi::BatchBuilder;
use weir_kafka::producer::Acks;
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
    /// The offset of the next record to arrive: after the last one, or
    /// where consumption was sent; `None` where the group's reset policy
    /// decides (no commit yet).
    next_offset: Option<i64>,
    /// The host's and the tenant's budgets its bytes count against.
    budgets: Budgets,
}

struct Chunk {
    builder: BatchBuilder,
    /// Records at its front already taken into batches (a batch cut short
    /// by another input's earlier record; see `order`).
    taken: usize,
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
    pub fn new(topic: &str, partition: i32, next_offset: Option<i64>, budgets: Budgets) -> Self {
        Buffer {
            topic: topic.to_owned(),
            partition,
            chunks: VecDeque::new(),
            records: 0,
            bytes: 0,
            paused: false,
            next_offset,
            budgets,
        }
    }

    /// Whether it should pause consumption: past its own limits, holding
    /// anything while its tenant's buffer budget is spent (by the tenant's
    /// own buffers), or at least a batch while the host's is (a buffer
    /// holding less may fill, so other tenants cannot starve it).
    pub fn full(&self, max_records: usize, max_bytes: usize, batch: BatchLimits) -> bool {
        self.records >= max_records
            || self.bytes >= max_bytes
            || (self.records > 0 && self.budgets.tenant_spent())
            || (self.holds_batch(batch) && self.budgets.host_spent())
    }

    fn holds_batch(&self, batch: BatchLimits) -> bool {
        self.records >= batch.records || self.bytes >= batch.bytes
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Drops what is buffered; the next record to arrive is at
    /// `next_offset`. Consumption goes on (or stays paused) by the
    /// caller's decision, not for a full buffer.
    pub fn clear(&mut self, next_offset: Option<i64>) {
        self.chunks.clear();
        self.records = 0;
        self.budgets.remove(self.bytes);
        self.bytes = 0;
        self.paused = false;
        self.next_offset = next_offset;
    }

    /// Puts a batch taken from this buffer back in front, ready at once
    /// (a job that ran out of time before it).
    pub fn put_back(&mut self, batch: BatchBuilder) {
        self.records += batch.len();
        self.bytes += batch.held_bytes();
        self.budgets.add(batch.held_bytes());
        // It waited its linger the first time.
        let since = Instant::now()
            .checked_sub(std::time::Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        self.chunks.push_front(Chunk {
            builder: batch,
            taken: 0,
            since,
        });
    }

    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
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
        let size = key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + size_of::<weir_abi::InputRecord>();
        let full = |c: &Chunk| {
            c.builder.len() >= limits.records
                || (!c.builder.is_empty() && c.builder.held_bytes() + size > limits.bytes)
        };
        if self.chunks.back().is_none_or(full) {
            // Behind a full chunk, the next likely fills too: it starts
            // with that one's room, so it does not grow (each growth
            // copies). The room is at most what the buffer already holds
            // and counts; a chunk after none starts empty.
            let (records, bytes) = self
                .chunks
                .back()
                .map_or((0, 0), |c| (c.builder.len(), c.builder.data_bytes()));
            self.chunks.push_back(Chunk {
                builder: BatchBuilder::with_capacity(&self.topic, self.partition, records, bytes),
                taken: 0,
                since: Instant::now(),
            });
        }
        let chunk = &mut self.chunks.back_mut().expect("a chunk to fill").builder;
        let before = chunk.held_bytes();
        chunk.push_bytes(offset, timestamp, key, value, headers);
        if let Some(why) = invalid {
            chunk.mark_invalid(chunk.len() as u32 - 1, why);
        }
        self.records += 1;
        self.bytes += chunk.held_bytes() - before;
        self.budgets.add(chunk.held_bytes() - before);
        self.next_offset = Some(offset + 1);
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes buffered (see [`BatchBuilder::held_bytes`]).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A whole batch is buffered, or the oldest record waited `linger`.
    pub fn ready(&self, limits: BatchLimits, linger: std::time::Duration) -> bool {
        match self.chunks.front() {
            None => false,
            Some(c) => {
                self.chunks.len() > 1
                    || c.builder.len() >= limits.records
                    || c.builder.held_bytes() >= limits.bytes
                    || c.since.elapsed() >= linger
            }
        }
    }

    /// The timestamp the next record is ordered by among the partition's
    /// inputs: its own, or, for a record no transform will see (it goes to
    /// the failure policy and moves no stream time), the earliest possible.
    pub fn head(&self) -> Option<i64> {
        let c = self.chunks.front()?;
        Some(if c.builder.is_invalid(c.taken) {
            i64::MIN
        } else {
            c.builder.timestamp(c.taken)
        })
    }

    /// The oldest batch, ending before the first record `bound` does not
    /// admit (its records are copied out then; a whole batch is not).
    pub fn take(&mut self, bound: Option<Bound>) -> Option<BatchBuilder> {
        let c = self.chunks.front_mut()?;
        let len = c.builder.len();
        let end = match bound {
            None => len,
            Some(b) => (c.taken..len)
                .find(|&i| !c.builder.is_invalid(i) && !b.admits(c.builder.timestamp(i)))
                .unwrap_or(len),
        };
        let batch = if c.taken == 0 && end == len {
            self.chunks.pop_front().expect("a chunk").builder
        } else {
            let part = c.builder.copy_range(c.taken..end);
            c.taken = end;
            if end == len {
                self.chunks.pop_front();
            }
            part
        };
        self.records -= batch.len();
        self.bytes -= batch.held_bytes();
        self.budgets.remove(batch.held_bytes());
        Some(batch)
    }
}

/// A partition waiting for one of its inputs.
pub struct Waiting {
    pub input: String,
    pub since: Instant,
    /// The wait shows in the deployment's status.
    pub shown: bool,
    /// Waited past `host.max_input_wait_ms`: the partition goes on without
    /// the input until it catches up.
    pub enforced: bool,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.budgets.remove(self.bytes);
    }
}

pub struct Partition {
    pub number: i32,
    /// One per input topic, sorted by name (the order ties go in).
    pub inputs: BTreeMap<String, Buffer>,
    /// An input with nothing here but records on the broker (see `order`).
    pub waiting: Option<Waiting>,
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
    /// Late records dropped since the last log line about them, and when
    /// that was (such lines are rate-limited).
    pub late_unlogged: u64,
    pub late_logged: Option<Instant>,
    /// Its transform last found no room to run (shown in the status until
    /// a batch runs).
    pub unavailable: bool,
}

impl Partition {
    pub fn new(
        number: i32,
        inputs: &[String],
        budgets: &Budgets,
        mut state: Box<PartitionState>,
        committed: Positions,
        changelog_next: i64,
    ) -> Self {
        let next_wall_timer = state.next_timer(Clock::WallClock).unwrap_or(Some(i64::MIN));
        Partition {
            number,
            inputs: inputs
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        Buffer::new(t, number, committed.get(t).copied(), budgets.clone()),
                    )
                })
                .collect(),
            waiting: None,
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
            late_unlogged: 0,
            late_logged: None,
            unavailable: false,
        }
    }

    pub fn buffered(&self) -> usize {
        self.inputs.values().map(Buffer::records).sum()
    }

    /// Drops every buffered record and any wait for an input; each input's
    /// next record is at `positions` (or where the group's reset policy
    /// says). Returns whether a wait shown in the status ended.
    pub fn clear_buffers(&mut self, positions: &Positions) -> bool {
        for (t, b) in &mut self.inputs {
            b.clear(positions.get(t).copied());
        }
        self.waiting.take().is_some_and(|w| w.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header without name or value is 2 bytes on the wire and an entry
    /// of 20 in the batch: records full of them count for what they hold.
    #[test]
    fn buffered_bytes_count_what_headers_hold() {
        let mut b = Buffer::new("in", 0, None, Budgets::none());
        let limits = BatchLimits {
            records: 1000,
            bytes: 1 << 20,
        };
        let empty: &[u8] = &[];
        b.push(
            limits,
            0,
            0,
            None,
            None,
            std::iter::repeat_n((empty, None), 100_000),
            None,
        );
        assert!(
            b.bytes() >= 100_000 * size_of::<weir_abi::Header>(),
            "{} bytes",
            b.bytes()
        );
        b.push(limits, 1, 0, None, Some(b"x"), [], None);
        assert_eq!(b.take(None).map(|c| c.len()), Some(1), "the batch was full");
    }

    /// A batch cut short by another input's earlier record leaves the rest
    /// for later, counted, in order; records no transform sees go first.
    #[test]
    fn a_bounded_take_cuts_the_batch_and_keeps_the_rest() {
        let mut b = Buffer::new("in", 0, Some(7), Budgets::none());
        let limits = BatchLimits {
            records: 1000,
            bytes: 1 << 20,
        };
        for (offset, ts) in [(7, 10), (8, 20), (9, 30), (10, 40)] {
            let invalid = (offset == 9).then(|| "too far ahead".to_owned());
            b.push(limits, offset, ts, None, Some(b"v"), [], invalid);
        }
        assert_eq!(
            (b.records(), b.next_offset(), b.head()),
            (4, Some(11), Some(10))
        );
        let bytes = b.bytes();
        let first = b
            .take(Some(Bound {
                timestamp: 20,
                inclusive: false,
            }))
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((b.records(), b.head()), (3, Some(20)));
        assert_eq!(b.bytes(), bytes - first.held_bytes());
        // The invalid record at 30 never stops a batch: it moves no time.
        let (second, invalid) = b
            .take(Some(Bound {
                timestamp: 25,
                inclusive: false,
            }))
            .unwrap()
            .finish_checked();
        assert_eq!(
            second.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [8, 9]
        );
        assert_eq!(invalid.iter().map(|f| f.index).collect::<Vec<_>>(), [1]);
        assert_eq!(b.take(None).map(|c| c.finish().records[0].offset), Some(10));
        assert_eq!((b.records(), b.bytes(), b.head()), (0, 0, None));
        // Put back (its job ran out of time), it comes first again, at once.
        b.put_back(BatchBuilder::from_parts(second, invalid));
        assert_eq!((b.records(), b.head()), (2, Some(20)));
        assert!(
            b.ready(limits, std::time::Duration::from_secs(60)),
            "it waited its linger before"
        );
        assert_eq!(b.take(None).map(|c| c.len()), Some(2));
        assert_eq!((b.records(), b.bytes()), (0, 0));
        // An invalid record at the head goes first among the inputs.
        b.push(
            limits,
            11,
            50,
            None,
            Some(b"v"),
            [],
            Some("too far ahead".to_owned()),
        );
        assert_eq!(b.head(), Some(i64::MIN));
    }
}

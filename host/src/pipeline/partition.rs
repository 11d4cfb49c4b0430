//! One input partition (number) of a deployment while this host owns it:
//! buffered records, the batch in flight, deliveries not yet acknowledged,
//! and the offsets that may be committed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::kafka::producer::Acks;
use crate::state::PartitionState;
use crate::transform::BatchBuilder;

/// Records of one topic-partition waiting for their batch.
pub struct Buffer {
    pub builder: BatchBuilder,
    /// When the oldest buffered record arrived.
    pub since: Option<Instant>,
    pub paused: bool,
}

/// Outputs of a processed batch, and the positions committable once they
/// (and every earlier group) are acknowledged.
pub struct Pending {
    pub acks: Arc<Acks>,
    pub positions: BTreeMap<String, i64>,
}

/// A commit that must wait for the partition's state to reach the
/// changelog first.
pub enum Barrier {
    /// Waiting for the batch in flight to come back.
    AwaitIdle,
    /// Changelog records produced; waiting for them and all outputs.
    AwaitAcks { changelog: Arc<Acks>, positions: BTreeMap<String, i64> },
}

pub struct Partition {
    pub number: i32,
    pub buffers: BTreeMap<String, Buffer>,
    /// Home between batches; with a worker while one is in flight.
    pub state: Option<Box<PartitionState>>,
    pub in_flight: bool,
    /// Next offset to process per topic (after the last processed batch).
    pub processed: BTreeMap<String, i64>,
    pub pending: VecDeque<Pending>,
    /// Positions whose outputs are all acknowledged.
    pub committable: BTreeMap<String, i64>,
    pub committed: BTreeMap<String, i64>,
    pub barrier: Option<Barrier>,
    /// Why processing stopped (failure policy `stop`, a fatal error).
    pub stopped: Option<String>,
    pub last_record: Instant,
    /// Windows have been force-closed since the last record.
    pub idle_closed: bool,
    /// Next changelog offset not reflected in the store.
    pub changelog_next: i64,
}

impl Partition {
    pub fn new(number: i32, state: Box<PartitionState>, committed: BTreeMap<String, i64>, changelog_next: i64) -> Self {
        Partition {
            number,
            buffers: BTreeMap::new(),
            state: Some(state),
            in_flight: false,
            processed: committed.clone(),
            pending: VecDeque::new(),
            committable: committed.clone(),
            committed,
            barrier: None,
            stopped: None,
            last_record: Instant::now(),
            idle_closed: true,
            changelog_next,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buffers.values().map(|b| b.builder.len()).sum()
    }

    /// Moves `committable` past every fully acknowledged group; returns the
    /// first delivery failure, if a group failed.
    pub fn settle(&mut self) -> Option<String> {
        while let Some(p) = self.pending.front() {
            if !p.acks.settled() {
                break;
            }
            if let Some(error) = p.acks.failure() {
                return Some(error);
            }
            let p = self.pending.pop_front().expect("front exists");
            self.committable = p.positions;
        }
        None
    }
}

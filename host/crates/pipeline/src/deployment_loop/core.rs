//! The loop's own state ([`DeploymentLoop`]), its limits and its small
//! helpers. Each step's methods live in the file named after it:
//! `batching`, `outputs`, `delivery`, `commit`, `rebalance`, `events`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::io::Sink;
use super::transaction::Transaction;
use crate::Shared;
use crate::config::Delivery;
use crate::deployment::Deployment;
use crate::partition::{BatchLimits, Partition};
use crate::restore::Takeover;
use crate::workers::Done;

pub(super) struct DeploymentLoop {
    pub(super) deployment: Arc<Deployment>,
    pub(super) shared: Arc<Shared>,
    /// Where outputs go outside a transaction (the host's producer).
    pub(super) sink: Arc<dyn Sink>,
    pub(super) parts: BTreeMap<i32, Partition>,
    pub(super) done_tx: Sender<Done>,
    pub(super) done_rx: Receiver<Done>,
    pub(super) next_commit: Instant,
    pub(super) retry_commit_at: Instant,
    pub(super) stopping: bool,
    /// Partitions the group gave this host (processing or being restored).
    pub(super) assigned: BTreeSet<i32>,
    /// Partitions being restored, with the epoch of their restore.
    pub(super) restoring: BTreeMap<i32, u64>,
    /// Failed restores and when to try again.
    pub(super) retry_restore: BTreeMap<i32, Instant>,
    pub(super) epoch: u64,
    pub(super) restore_tx: Sender<(i32, u64, Result<Takeover>)>,
    pub(super) restore_rx: Receiver<(i32, u64, Result<Takeover>)>,
    /// This deployment's transactional producer on this host: the changelog
    /// at-least-once, everything under exactly-once.
    pub(super) transaction: Transaction,
    /// Exactly-once: the open transaction holds work that must not commit
    /// (a partition stopped): abort it before the next commit.
    pub(super) abort_due: bool,
    /// Exactly-once: input records (topic, partition, offset) some of whose
    /// sends the broker refused in an aborted transaction; forgotten once
    /// committed past.
    pub(super) refused: BTreeMap<(String, i32, i64), Refused>,
    /// What the host holds in memory cannot be trusted (a transaction's
    /// outcome is unknown): the run ends, and the deployment starts again
    /// from the group's offsets and the changelog.
    pub(super) fatal: Option<String>,
    /// A commit was refused as coming from a member the group no longer
    /// has: what is being released is lost, not released.
    pub(super) fenced: bool,
    /// Inputs (topic, partition) held back by an open transaction, since
    /// when (ms), as the client's statistics tell.
    pub(super) held_since: BTreeMap<(String, i32), i64>,
    /// The consumer's last error, and when.
    pub(super) consumer_error: Option<(String, Instant)>,
    /// When each recent error was logged: one that repeats is logged once
    /// a minute.
    pub(super) consumer_errors_logged: BTreeMap<String, Instant>,
    /// Inputs (topic, partition) by the offset they fetch at, and since
    /// when (ms), as the client's statistics tell.
    pub(super) fetching_since: BTreeMap<(String, i32), (i64, i64)>,
}

/// Bytes of uncommitted state changes that make a partition commit before
/// its interval is up.
pub(super) const PENDING_COMMIT_BYTES: u64 = 64 << 20;
/// What the broker refused of one input record's sends (exactly-once), to
/// be dealt with as at-least-once would when the record comes again.
#[derive(Clone, Default)]
pub(super) struct Refused {
    /// Its outputs, and why: they go to the failure policy instead.
    pub(super) outputs: Option<String>,
    /// Its dead letter: it is sent without the value instead.
    pub(super) dead_letter: bool,
    /// Its late copy: it is dropped.
    pub(super) late: bool,
}

/// Input records with refused sends remembered at most.
pub(super) const MAX_REFUSED: usize = 10_000;
/// Transient delivery failures in a row before a partition stops.
pub(super) const MAX_FAILED_DELIVERIES: u32 = 5;

/// How much of a record a dead letter carries.
#[derive(Clone, Copy)]
pub(super) enum DeadLetter {
    Whole,
    /// Key and headers: the whole record could not be delivered.
    WithoutValue,
}
/// How long a failed takeover waits before it is tried again.
pub(super) const RESTORE_RETRY: Duration = Duration::from_secs(5);
/// How long releasing partitions waits for in-flight work and deliveries.
pub(super) const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

impl DeploymentLoop {
    pub(super) fn new(
        deployment: Arc<Deployment>,
        shared: Arc<Shared>,
        sink: Arc<dyn Sink>,
    ) -> DeploymentLoop {
        let (done_tx, done_rx) = channel();
        let (restore_tx, restore_rx) = channel();
        DeploymentLoop {
            deployment,
            shared,
            sink,
            parts: BTreeMap::new(),
            done_tx,
            done_rx,
            next_commit: Instant::now(),
            retry_commit_at: Instant::now(),
            stopping: false,
            assigned: BTreeSet::new(),
            restoring: BTreeMap::new(),
            retry_restore: BTreeMap::new(),
            epoch: 0,
            restore_tx,
            restore_rx,
            transaction: Transaction::default(),
            abort_due: false,
            refused: BTreeMap::new(),
            fatal: None,
            fenced: false,
            held_since: BTreeMap::new(),
            consumer_error: None,
            consumer_errors_logged: BTreeMap::new(),
            fetching_since: BTreeMap::new(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.deployment.name
    }

    pub(super) fn linger(&self) -> Duration {
        Duration::from_millis(self.shared.host.batch_linger_ms)
    }

    pub(super) fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            records: self.shared.host.batch_max_records,
            bytes: self.shared.host.batch_max_bytes,
        }
    }

    pub(super) fn poll_timeout(&self) -> Duration {
        // A partition waiting for an input is woken by its records, which
        // end the poll: no need to spin meanwhile.
        let ready = |p: &Partition| {
            p.buffered() > 0
                && p.hold_until.is_none()
                && p.waiting.as_ref().is_none_or(|w| w.enforced)
        };
        let busy = self
            .parts
            .values()
            .any(|p| p.in_flight || p.ledger.is_open() || p.commit_due || ready(p))
            || !self.restoring.is_empty();
        if busy {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        }
    }

    pub(super) fn exactly_once(&self) -> bool {
        self.deployment.config.delivery == Delivery::ExactlyOnce
    }

    pub(super) fn set_error(&self, message: String) {
        self.deployment.status.lock().last_error = Some(message);
    }
}

//! One deployment on one host: its consumer (a thread polling Kafka), its
//! partitions, and the delivery bookkeeping between them.
//!
//! At-least-once (the default), precisely: an input offset is committed
//! only after every output, dead letter and late record of every record
//! before it has been acknowledged by the broker, and, when the transform
//! keeps state, after the state changes of those records have been
//! acknowledged on the changelog. The local store is flushed (with a
//! checkpoint naming the committed offsets) right after the commit. After a
//! crash, records after the last commit are processed again: their outputs
//! may appear twice, their state changes never count twice (restore skips
//! changelog records beyond the committed offsets, and the store is rebuilt
//! when it is ahead).
//!
//! Exactly-once: everything sent between two commits (outputs, dead
//! letters, late records) goes into one transaction of the deployment's
//! producer on this host, and a commit adds every partition's state changes
//! and input offsets (with the group's metadata, so a host that lost the
//! partitions is fenced, KIP-447) and commits it. Since one transaction
//! spans the host's partitions, they commit together, once none has a
//! batch in flight; anything that fails aborts it, and every partition
//! goes back to its last commit, state included.
//!
//! This module holds the deployment and its polling loop (`run`); the
//! loop's steps live beside it: `batching` (fetch, backpressure, batches to
//! the workers), `outputs` (what a batch sends), `delivery` (settling
//! acknowledgements into the partitions' commit ledgers), `commit`,
//! `rebalance` (restore, release) and `consumer` (Kafka's callbacks).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::Shared;
use crate::config::{Delivery, FailurePolicy};
use crate::deployment::Deployment;
use crate::ledger::{Blocked, Group};
use crate::order::{self, Bound, InputView, Next};
use crate::partition::{BatchLimits, Buffer, Partition, Waiting};
use crate::restore::Takeover;
use crate::status::{HeldInput, LateRecord, UnreadableInput};
use crate::workers::{Done, Job, Outcome, Slice, Work};
use weir_abi::FailureKind;
use weir_abi::InputBatch;
use weir_engine::transform::{BatchResult, Produced, TimerFailure, describe_failure};
use weir_kafka::changelog::{self, Flush};
use weir_kafka::producer::{Acks, Out, Producer, Role, Undeliverable, headers};
use weir_state::Checkpoint;
use weir_state::timers::Clock;

mod batching;
mod commit;
mod consumer;
mod delivery;
mod outputs;
mod rebalance;

use commit::Transaction;
use consumer::{KafkaContext, partition_numbers};

/// Runs `deployment` until `stop` is set, then commits and leaves the group.
pub fn run(deployment: Arc<Deployment>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<()> {
    // Before joining the group: a member that does not consume would hold
    // its partitions back from the other hosts.
    if !deployment.wait_for_tables(&shared, &stop)? {
        return Ok(());
    }
    let (done_tx, done_rx) = channel();
    let (restore_tx, restore_rx) = channel();
    let (events_tx, events) = channel();
    let consumer: BaseConsumer<KafkaContext> =
        weir_kafka::consumer_config(&shared.kafka, &deployment.group)
            .set(
                "client.id",
                weir_kafka::group::client_id(
                    &shared.host_id,
                    shared.api_url.get().map(String::as_str),
                ),
            )
            .create_with_context(KafkaContext {
                events: events_tx,
                name: deployment.name.clone(),
            })
            .context("creating the consumer")?;
    // Declared after the consumer, so that a failing loop drops it first and
    // the consumer, closing, finishes its rebalances itself.
    let events = events;
    let mut rt = Runtime {
        deployment: deployment.clone(),
        shared: shared.clone(),
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
    };
    if rt.exactly_once() {
        // A broker that refuses transactions fails this deployment at once,
        // with that said; the others keep running.
        rt.begin()
            .context("exactly-once delivery needs Kafka transactions")?;
    }
    let topics: Vec<&str> = deployment
        .config
        .inputs
        .iter()
        .map(String::as_str)
        .collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    deployment.status.lock().down = None;
    tracing::info!(deployment = %deployment.name, group = %deployment.group, inputs = ?topics, "deployment started");
    while !stop.load(Ordering::Relaxed) {
        if let Some(why) = rt.fatal.take() {
            // No commit on the way out: the consumer, closing, lets go.
            drop(events);
            drop(consumer);
            anyhow::bail!(why);
        }
        if let Some(m) = consumer.poll(rt.poll_timeout()) {
            rt.on_message(&consumer, m);
            // Take what is already fetched without waiting.
            for _ in 0..1_000 {
                match consumer.poll(Duration::ZERO) {
                    Some(m) => rt.on_message(&consumer, m),
                    None => break,
                }
            }
        }
        rt.handle_events(&consumer, &events);
        rt.pump(&consumer);
    }
    rt.stopping = true;
    let owned: Vec<i32> = rt.parts.keys().copied().collect();
    rt.release(&consumer, &owned);
    // Rebalances that came in meanwhile have nothing left to release or
    // restore: finish them, and let the closing consumer finish any later.
    for event in events.try_iter() {
        rt.finish(&consumer, &event);
    }
    drop(events);
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(deployment = %deployment.name, "deployment stopped");
    Ok(())
}

struct Runtime {
    deployment: Arc<Deployment>,
    shared: Arc<Shared>,
    parts: BTreeMap<i32, Partition>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    next_commit: Instant,
    retry_commit_at: Instant,
    stopping: bool,
    /// Partitions the group gave this host (processing or being restored).
    assigned: BTreeSet<i32>,
    /// Partitions being restored, with the epoch of their restore.
    restoring: BTreeMap<i32, u64>,
    /// Failed restores and when to try again.
    retry_restore: BTreeMap<i32, Instant>,
    epoch: u64,
    restore_tx: Sender<(i32, u64, Result<Takeover>)>,
    restore_rx: Receiver<(i32, u64, Result<Takeover>)>,
    /// This deployment's transactional producer on this host: the changelog
    /// at-least-once, everything under exactly-once.
    transaction: Transaction,
    /// Exactly-once: the open transaction holds work that must not commit
    /// (a partition stopped): abort it before the next commit.
    abort_due: bool,
    /// Exactly-once: input records (topic, partition, offset) some of whose
    /// sends the broker refused in an aborted transaction; forgotten once
    /// committed past.
    refused: BTreeMap<(String, i32, i64), Refused>,
    /// What the host holds in memory cannot be trusted (a transaction's
    /// outcome is unknown): the run ends, and the deployment starts again
    /// from the group's offsets and the changelog.
    fatal: Option<String>,
    /// A commit was refused as coming from a member the group no longer
    /// has: what is being released is lost, not released.
    fenced: bool,
    /// Inputs (topic, partition) held back by an open transaction, since
    /// when (ms), as the client's statistics tell.
    held_since: BTreeMap<(String, i32), i64>,
    /// The consumer's last error, and when.
    consumer_error: Option<(String, Instant)>,
    /// When each recent error was logged: one that repeats is logged once
    /// a minute.
    consumer_errors_logged: BTreeMap<String, Instant>,
    /// Inputs (topic, partition) by the offset they fetch at, and since
    /// when (ms), as the client's statistics tell.
    fetching_since: BTreeMap<(String, i32), (i64, i64)>,
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of uncommitted state changes that make a partition commit before
/// its interval is up.
const PENDING_COMMIT_BYTES: u64 = 64 << 20;
/// What the broker refused of one input record's sends (exactly-once), to
/// be dealt with as at-least-once would when the record comes again.
#[derive(Clone, Default)]
struct Refused {
    /// Its outputs, and why: they go to the failure policy instead.
    outputs: Option<String>,
    /// Its dead letter: it is sent without the value instead.
    dead_letter: bool,
    /// Its late copy: it is dropped.
    late: bool,
}

/// Input records with refused sends remembered at most.
const MAX_REFUSED: usize = 10_000;
/// Transient delivery failures in a row before a partition stops.
const MAX_FAILED_DELIVERIES: u32 = 5;

/// How much of a record a dead letter carries.
#[derive(Clone, Copy)]
enum DeadLetter {
    Whole,
    /// Key and headers: the whole record could not be delivered.
    WithoutValue,
}
/// How long a failed takeover waits before it is tried again.
const RESTORE_RETRY: Duration = Duration::from_secs(5);
/// How long releasing partitions waits for in-flight work and deliveries.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

impl Runtime {
    fn name(&self) -> &str {
        &self.deployment.name
    }

    fn linger(&self) -> Duration {
        Duration::from_millis(self.shared.host.batch_linger_ms)
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            records: self.shared.host.batch_max_records,
            bytes: self.shared.host.batch_max_bytes,
        }
    }

    fn poll_timeout(&self) -> Duration {
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

    fn exactly_once(&self) -> bool {
        self.deployment.config.delivery == Delivery::ExactlyOnce
    }

    fn set_error(&self, message: String) {
        self.deployment.status.lock().last_error = Some(message);
    }
}

fn tpl_of(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

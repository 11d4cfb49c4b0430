//! One deployment on one host: its consumer (a thread polling Kafka), its
//! partitions, and the at-least-once bookkeeping between them.
//!
//! The guarantee, precisely: an input offset is committed only after every
//! output, dead letter and late record of every record before it has been
//! acknowledged by the broker, and, when the transform keeps state, after
//! the state changes of those records have been acknowledged on the
//! changelog. The local store is flushed (with a checkpoint naming the
//! committed offsets) right after the commit. After a crash, records after
//! the last commit are processed again: their outputs may appear twice,
//! their state changes never count twice (restore skips changelog records
//! beyond the committed offsets, and the store is rebuilt when it is ahead).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::ledger::{Blocked, Group};
use super::partition::{BatchLimits, Buffer, Partition};
use super::restore::Takeover;
use super::workers::{Done, Job, Outcome, Runnable, Work};
use super::{DeploymentStatus, Shared, lock};
use crate::changelog::{self, Flush};
use crate::config::{DeploymentConfig, FailurePolicy};
use crate::kafka::producer::{Acks, Out, Producer, Role, Undeliverable, headers};
use weir_abi::FailureKind;
use weir_abi::InputBatch;
use weir_engine::transform::{BatchResult, Produced, describe_failure};
use weir_state::Checkpoint;

/// What a deployment is; only its transform changes while it runs (an
/// upgrade swaps it between batches).
pub struct Deployment {
    /// The id (`tenant.name` for deployments of tenants).
    pub name: String,
    /// Tenant label of metrics (empty for the operator's deployments).
    pub tenant: String,
    /// Names the state directory (the changelog and group are named after
    /// it too).
    pub storage: String,
    pub config: DeploymentConfig,
    runnable: RwLock<Arc<Runnable>>,
    pub group: String,
    pub changelog_topic: String,
    /// Largest state entry the changelog topic accepts.
    pub changelog_entry_limit: u64,
    pub status: Arc<Mutex<DeploymentStatus>>,
}

impl Deployment {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        tenant: String,
        storage: String,
        config: DeploymentConfig,
        runnable: Arc<Runnable>,
        group: String,
        changelog_topic: String,
        changelog_entry_limit: u64,
    ) -> Deployment {
        Deployment {
            name,
            tenant,
            storage,
            config,
            runnable: RwLock::new(runnable),
            group,
            changelog_topic,
            changelog_entry_limit,
            status: Arc::new(Mutex::new(DeploymentStatus::default())),
        }
    }

    /// The status, with what the running transform says now.
    pub fn status_now(&self) -> DeploymentStatus {
        let mut status = lock(&self.status).clone();
        let runnable = self.runnable();
        status.module = runnable.module.digest.clone();
        status.on_trial = runnable.on_trial();
        status
    }

    /// The transform new batches run.
    pub fn runnable(&self) -> Arc<Runnable> {
        self.runnable.read().unwrap().clone()
    }

    /// Runs the next batches with `next`; batches in flight finish with the
    /// transform they started with.
    pub fn swap(&self, next: Arc<Runnable>) {
        *self.runnable.write().unwrap() = next;
    }

    /// A batch of `candidate` (on trial) failed where the module before it
    /// did not: go back to that module, once.
    fn roll_back(&self, candidate: &Arc<Runnable>, why: &str) -> bool {
        let Some(fallback) = candidate.fallback() else { return false };
        if !Arc::ptr_eq(&self.runnable(), candidate) {
            return false;
        }
        tracing::error!(deployment = %self.name, module = %candidate.module.digest, "upgrade rolled back: {why}");
        self.swap(fallback);
        let mut status = lock(&self.status);
        status.rolled_back = Some(format!("upgrade to module {} rolled back: {why}", candidate.module.digest));
        status.last_error = status.rolled_back.clone();
        true
    }
}

/// Runs `deployment` until `stop` is set, then commits and leaves the group.
pub fn run(deployment: Arc<Deployment>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<()> {
    let (done_tx, done_rx) = channel();
    let (restore_tx, restore_rx) = channel();
    let runtime = Arc::new(Mutex::new(Runtime {
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
        changelog: None,
    }));
    let consumer: BaseConsumer<KafkaContext> = crate::kafka::consumer_config(&shared.kafka, &deployment.group)
        .create_with_context(KafkaContext { runtime: runtime.clone(), name: deployment.name.clone() })
        .context("creating the consumer")?;
    let topics: Vec<&str> = deployment.config.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing to the input topics")?;
    lock(&deployment.status).down = None;
    tracing::info!(deployment = %deployment.name, group = %deployment.group, inputs = ?topics, "deployment started");
    while !stop.load(Ordering::Relaxed) {
        let timeout = lock(&runtime).poll_timeout();
        // Rebalance and statistics callbacks run inside poll and lock the
        // runtime, so the lock is never held across a poll (not even one
        // that does not wait).
        if let Some(m) = consumer.poll(timeout) {
            lock(&runtime).on_message(&consumer, m);
            // Take what is already fetched without waiting.
            for _ in 0..1_000 {
                match consumer.poll(Duration::ZERO) {
                    Some(m) => lock(&runtime).on_message(&consumer, m),
                    None => break,
                }
            }
        }
        lock(&runtime).pump(&consumer);
    }
    {
        let mut rt = lock(&runtime);
        rt.stopping = true;
        let owned: Vec<i32> = rt.parts.keys().copied().collect();
        rt.release(&consumer, &owned);
    }
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(deployment = %deployment.name, "deployment stopped");
    Ok(())
}

struct KafkaContext {
    runtime: Arc<Mutex<Runtime>>,
    name: String,
}

/// Runs a callback's work; a panic in it (a bug) would unwind into
/// librdkafka's C code and abort the process, so it is caught and the
/// deployment marked down instead.
fn guarded(runtime: &Mutex<Runtime>, what: &str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let why = format!("the host failed in {what} (a bug in Weir, please report it): {}", super::workers::panic_message(&*panic));
        tracing::error!("{why}");
        let rt = lock(runtime);
        lock(&rt.deployment.status).down = Some(why);
    }
}

impl ClientContext for KafkaContext {
    fn stats(&self, stats: Statistics) {
        guarded(&self.runtime, "reading client statistics", || self.record_lag(stats));
    }
}

impl KafkaContext {
    fn record_lag(&self, stats: Statistics) {
        let rt = lock(&self.runtime);
        let mut lag: BTreeMap<i32, i64> = BTreeMap::new();
        for t in stats.topics.values().filter(|t| rt.deployment.config.inputs.contains(&t.topic)) {
            for (&p, s) in &t.partitions {
                if p >= 0 && s.consumer_lag >= 0 && rt.parts.contains_key(&p) {
                    *lag.entry(p).or_default() += s.consumer_lag;
                }
            }
        }
        lock(&rt.deployment.status).lag = lag.clone();
        for (p, l) in lag {
            rt.shared.metrics.consumer_lag.with_label_values(&[&rt.deployment.tenant, &rt.deployment.name, &p.to_string()]).set(l);
        }
    }
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        guarded(&self.runtime, "letting partitions go", || self.revoke(consumer, rebalance));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        guarded(&self.runtime, "taking partitions over", || self.assigned(consumer, rebalance));
    }

    /// Asynchronous offset commits report here (inside the loop's poll, so
    /// without its lock); the next commit covers a failed one.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(deployment = %self.name, error = %e, "an offset commit failed; the next one covers it");
        }
    }
}

impl KafkaContext {
    fn revoke(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut rt = lock(&self.runtime);
            let numbers = partition_numbers(tpl);
            tracing::info!(deployment = %rt.deployment.name, partitions = ?numbers, "partitions revoked");
            for n in &numbers {
                rt.assigned.remove(n);
                rt.retry_restore.remove(n);
            }
            rt.release(consumer, &numbers);
        }
    }

    fn assigned(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut rt = lock(&self.runtime);
            let numbers = partition_numbers(tpl);
            tracing::info!(deployment = %rt.deployment.name, partitions = ?numbers, "partitions assigned");
            rt.assigned.extend(&numbers);
            rt.assign(consumer, tpl);
        }
    }
}

fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut n: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    n.sort_unstable();
    n.dedup();
    n
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
    /// The transactional producer of the changelog, made at the first
    /// commit with state changes.
    changelog: Option<Producer>,
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of uncommitted state changes that make a partition commit before
/// its interval is up.
const PENDING_COMMIT_BYTES: u64 = 64 << 20;
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
        BatchLimits { records: self.shared.host.batch_max_records, bytes: self.shared.host.batch_max_bytes }
    }

    fn poll_timeout(&self) -> Duration {
        let busy = self.parts.values().any(|p| p.in_flight || p.ledger.is_open() || p.commit_due || p.buffered() > 0) || !self.restoring.is_empty();
        if busy { Duration::from_millis(1) } else { Duration::from_millis(50) }
    }

    fn set_error(&self, message: String) {
        lock(&self.deployment.status).last_error = Some(message);
    }

    fn on_message(&mut self, consumer: &BaseConsumer<KafkaContext>, m: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                // Transient (broker restarts, rebalances); librdkafka retries.
                tracing::warn!(deployment = %self.name(), error = %e, "consumer error");
                return;
            }
        };
        let host = &self.shared.host;
        let limits = self.batch_limits();
        let (max_records, max_bytes, max_future_ms) = (host.max_buffered_records, host.max_buffered_bytes, host.max_future_ms);
        let Some(p) = self.parts.get_mut(&m.partition()) else { return };
        if p.stopped.is_some() {
            return;
        }
        let topic = m.topic();
        let buffer = p.buffers.entry(topic.to_owned()).or_insert_with(|| Buffer::new(topic, m.partition()));
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        // A time far ahead of the clock would move the partition's stream
        // time (TTLs, windows) past every real record for good.
        let now_ms = weir_abi::now_ms() as i64;
        let invalid = (timestamp > now_ms.saturating_add(max_future_ms as i64))
            .then(|| format!("its timestamp {timestamp} is more than host.max_future_ms = {max_future_ms} ms ahead of this host's clock ({now_ms})"));
        buffer.push(limits, m.offset(), timestamp, m.key(), m.payload(), crate::kafka::headers_of(&m), invalid);
        p.last_record = Instant::now();
        p.idle_closed = false;
        if (buffer.records() >= max_records || buffer.bytes() >= max_bytes) && !buffer.paused {
            // Backpressure: stop fetching until the transform catches up.
            buffer.paused = true;
            let _ = consumer.pause(&tpl_of(topic, m.partition()));
        }
    }

    fn pump(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(consumer, done);
        }
        self.took_over(consumer);
        self.settle(consumer);
        self.release_holds(consumer);
        if Instant::now() >= self.next_commit {
            self.next_commit = Instant::now() + Duration::from_millis(self.shared.host.commit_interval_ms);
            for p in self.parts.values_mut() {
                p.commit_due = true;
            }
        }
        self.commit(consumer);
        if !self.stopping {
            self.dispatch(consumer);
            self.close_idle_windows();
        }
    }

    /// Starts a batch on every idle partition with a ready buffer.
    fn dispatch(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        let (limits, linger) = (self.batch_limits(), self.linger());
        let (resume_records, resume_bytes) = (self.shared.host.max_buffered_records / 2, self.shared.host.max_buffered_bytes / 2);
        for p in self.parts.values_mut() {
            if p.in_flight || p.stopped.is_some() || p.commit_due || p.state.is_none() {
                continue;
            }
            let ready = p.buffers.iter().filter(|(_, b)| b.ready(limits, linger)).min_by_key(|(_, b)| b.since()).map(|(t, _)| t.clone());
            let Some(topic) = ready else { continue };
            let Some(buffer) = p.buffers.get_mut(&topic) else { continue };
            let Some(chunk) = buffer.take() else { continue };
            let Some(state) = p.state.take() else { continue };
            let (batch, invalid) = chunk.finish_checked();
            if buffer.paused && buffer.records() < resume_records && buffer.bytes() < resume_bytes {
                buffer.paused = false;
                let _ = consumer.resume(&tpl_of(&topic, p.number));
            }
            p.in_flight = true;
            let job =
                Job { runnable: self.deployment.runnable(), partition: p.number, work: Work::Batch { batch, invalid }, state, reply: self.done_tx.clone() };
            self.shared.workers.submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    /// Asks the transform to close windows of partitions idle for a while
    /// (only transforms that asked for idle closing act on it).
    fn close_idle_windows(&mut self) {
        for p in self.parts.values_mut() {
            let idle = p.last_record.elapsed();
            if p.in_flight || p.idle_closed || p.stopped.is_some() || p.commit_due || p.buffered() > 0 || idle < Duration::from_secs(1) {
                continue;
            }
            let Some(state) = p.state.take() else { continue };
            p.idle_closed = true;
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::CloseIdle { idle_ms: idle.as_millis() as u64 },
                state,
                reply: self.done_tx.clone(),
            };
            self.shared.workers.submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    fn on_done(&mut self, consumer: &BaseConsumer<KafkaContext>, done: Done) {
        let (tenant, name) = (self.deployment.tenant.clone(), self.deployment.name.clone());
        if let Some(why) = &done.rolled_back
            && self.deployment.roll_back(&done.runnable, why)
        {
            self.shared.metrics.rollbacks.with_label_values(&[&tenant, &name]).inc();
        }
        let Some(p) = self.parts.get_mut(&done.partition) else { return };
        p.in_flight = false;
        p.state = done.state;
        // State changes wait in memory for the next commit: commit early
        // rather than let them pile up.
        if p.state.as_ref().is_some_and(|s| s.pending_held() > PENDING_COMMIT_BYTES) {
            p.commit_due = true;
        }
        let metrics = &self.shared.metrics;
        let label = done.partition.to_string();
        metrics.batch_seconds.with_label_values(&[&tenant, &name]).observe(done.elapsed.as_secs_f64());
        metrics.wasm_cpu_seconds.with_label_values(&[&tenant, &name]).inc_by(done.cpu.as_secs_f64());
        let acks = Acks::new();
        match (done.work, done.outcome) {
            (Work::Batch { batch, .. }, Outcome::Batch(result)) => {
                let processed = result.processed(batch.records.len() as u32);
                metrics.records_in.with_label_values(&[&tenant, &name, &label]).inc_by(u64::from(processed));
                let out = self.produce_outputs(&result.produced, &acks);
                self.shared.metrics.records_out.with_label_values(&[&tenant, &name, &label]).inc_by(out);
                self.handle_failures(&batch, &result, &acks);
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                match &result.stopped {
                    None => {
                        let last = batch.records.last().map_or(-1, |r| r.offset);
                        p.ledger.advance(&batch.topic, last + 1);
                    }
                    Some(stop) => {
                        let at = batch.records[stop.index as usize].offset;
                        let why =
                            describe_failure(&name, &batch, &weir_abi::RecordFailure { index: stop.index, kind: stop.kind, message: stop.message.clone() });
                        p.ledger.advance(&batch.topic, at);
                        self.stop_partition(consumer, done.partition, why);
                    }
                }
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                p.ledger.push(acks, Some(Arc::new(batch)));
            }
            (_, Outcome::Closed(Ok(produced))) => {
                let out = self.produce_outputs(&produced, &acks);
                self.shared.metrics.records_out.with_label_values(&[&tenant, &name, &label]).inc_by(out);
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                p.ledger.push(acks, None);
            }
            (_, Outcome::Closed(Err(f))) => {
                tracing::warn!(deployment = %name, partition = done.partition, "closing idle windows failed: {}: {}", f.kind, f.message);
            }
            (_, Outcome::Panicked(message)) => {
                let why = format!(
                    "deployment `{name}`, partition {}: the host failed (a bug in Weir, please report it): {message}; the partition stops until the deployment restarts",
                    done.partition
                );
                self.stop_partition(consumer, done.partition, why);
            }
            (Work::CloseIdle { .. }, Outcome::Batch(_)) => tracing::error!(deployment = %name, "a window-close job returned a batch result"),
        }
    }

    /// Stops processing partition `n` (failure policy `stop`, a failure
    /// nothing else can handle): its consumption pauses, its buffered records
    /// are dropped (they are consumed again from its last processed
    /// position when it restarts), and `/health` reports why.
    fn stop_partition(&mut self, consumer: &BaseConsumer<KafkaContext>, n: i32, why: String) {
        let Some(p) = self.parts.get_mut(&n) else { return };
        tracing::error!(deployment = %self.deployment.name, partition = n, "partition stopped: {why}");
        p.stopped = Some(why.clone());
        p.buffers.clear();
        for t in &self.deployment.config.inputs {
            let _ = consumer.pause(&tpl_of(t, n));
        }
        self.shared.metrics.stopped.with_label_values(&[&self.deployment.tenant, &self.deployment.name, &n.to_string()]).set(1);
        let mut status = lock(&self.deployment.status);
        status.stopped.insert(n, why.clone());
        status.last_error = Some(why);
    }

    fn give_up(&self) -> impl Fn() -> bool + '_ {
        let stop = &self.shared.shutdown;
        move || stop.load(Ordering::Relaxed)
    }

    fn produce_outputs(&self, produced: &[Produced], acks: &Arc<Acks>) -> u64 {
        let give_up = self.give_up();
        let mut n = 0;
        for r in produced.iter().flat_map(Produced::records) {
            let out = Out {
                topic: r.topic.unwrap_or(&self.deployment.config.output),
                key: r.key,
                value: r.value,
                headers: headers(r.headers()),
                timestamp: Some(r.timestamp),
                partition: None,
            };
            // A refusal is recorded in `acks` and dealt with when it settles.
            let _ = self.shared.producer.send(out, Role::Output(r.input), acks, &give_up);
            n += 1;
        }
        n
    }

    /// Applies the failure policy to failed records and routes late ones.
    fn handle_failures(&self, batch: &InputBatch, result: &BatchResult, acks: &Arc<Acks>) {
        let (tenant, name) = (self.deployment.tenant.as_str(), self.name());
        let label = batch.partition.to_string();
        let metrics = &self.shared.metrics;
        let give_up = self.give_up();
        for f in &result.failures {
            metrics.failures.with_label_values(&[tenant, name, &label, f.kind.as_str()]).inc();
            let why = describe_failure(name, batch, f);
            match self.deployment.config.failure_policy {
                FailurePolicy::Skip => tracing::warn!(deployment = %name, "skipped: {why}"),
                FailurePolicy::DeadLetter | FailurePolicy::Stop => {
                    tracing::warn!(deployment = %name, "dead-lettered: {why}");
                    self.dead_letter(batch, f.index, f.kind, &f.message, DeadLetter::Whole, acks);
                }
            }
        }
        for &i in &result.late {
            metrics.late.with_label_values(&[tenant, name, &label]).inc();
            if let Some(topic) = &self.deployment.config.late_topic {
                let i = i as usize;
                let out = Out {
                    topic,
                    key: batch.key(i),
                    value: batch.value(i),
                    headers: headers(batch.headers(i)),
                    timestamp: Some(batch.records[i].timestamp),
                    partition: None,
                };
                let _ = self.shared.producer.send(out, Role::Late(i as u32), acks, &give_up);
            }
        }
    }

    /// Produces the dead letter of record `i` of `batch`: the record with
    /// its headers and Weir's (`weir.error.*`, `weir.source.*`), or, when the
    /// whole record could not be delivered, only its key and headers with
    /// `weir.value.dropped` giving the value's size. A dead letter keeps the
    /// record's timestamp unless that timestamp is what is wrong with it (or
    /// it could not be delivered): brokers refuse times far from theirs, so
    /// it is then stamped now, the original in `weir.source.timestamp`.
    fn dead_letter(&self, batch: &InputBatch, i: u32, kind: FailureKind, message: &str, what: DeadLetter, acks: &Arc<Acks>) {
        let name = self.name();
        let i = i as usize;
        let r = &batch.records[i];
        let now_ms = weir_abi::now_ms();
        let (partition, offset, now, original) = (batch.partition.to_string(), r.offset.to_string(), now_ms.to_string(), r.timestamp.to_string());
        let value_len = batch.value(i).map_or(0, <[u8]>::len).to_string();
        let message = weir_abi::truncate(message, weir_abi::MAX_MESSAGE_BYTES);
        let mut weir_headers = vec![
            ("weir.deployment", name.as_bytes()),
            ("weir.error.kind", kind.as_str().as_bytes()),
            ("weir.error.message", message.as_bytes()),
            ("weir.source.topic", batch.topic.as_bytes()),
            ("weir.source.partition", partition.as_bytes()),
            ("weir.source.offset", offset.as_bytes()),
            ("weir.failed.at", now.as_bytes()),
            ("weir.source.timestamp", original.as_bytes()),
        ];
        let restamp = kind == FailureKind::InvalidInput || matches!(what, DeadLetter::WithoutValue);
        let timestamp = if restamp { now_ms as i64 } else { r.timestamp };
        let value = match what {
            DeadLetter::Whole => batch.value(i),
            DeadLetter::WithoutValue => {
                weir_headers.push(("weir.value.dropped", value_len.as_bytes()));
                None
            }
        };
        let all = batch.headers(i).chain(weir_headers.iter().map(|(k, v)| (*k, Some(*v))));
        let dlq = self.deployment.config.dead_letter_topic(name);
        let out = Out { topic: &dlq, key: batch.key(i), value, headers: headers(all), timestamp: Some(timestamp), partition: None };
        let role = match what {
            DeadLetter::Whole => Role::DeadLetter(i as u32),
            DeadLetter::WithoutValue => Role::BareDeadLetter(i as u32),
        };
        let _ = self.shared.producer.send(out, role, acks, &self.give_up());
        self.shared.metrics.dead_lettered.with_label_values(&[&self.deployment.tenant, name, &batch.partition.to_string()]).inc();
    }

    /// Advances committable offsets. Records that can never be delivered go
    /// to the failure policy of the input record they came from; other
    /// failed deliveries rewind the partition (with backoff, and a stop
    /// after several in a row).
    fn settle(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        let blocked: Vec<(i32, Blocked<Arc<Acks>>)> = self.parts.iter_mut().filter_map(|(&n, p)| p.ledger.settle().map(|b| (n, b))).collect();
        for (n, b) in blocked {
            match b {
                Blocked::Transient(error) => self.retry_delivery(consumer, n, error),
                Blocked::Permanent { group, failures } => self.undeliverable(consumer, n, group, failures),
            }
        }
    }

    /// Deals with records of `group` that can never be delivered, and puts
    /// the group back in front of the queue with what that produced.
    fn undeliverable(&mut self, consumer: &BaseConsumer<KafkaContext>, n: i32, group: Group<Arc<Acks>>, failures: Vec<Undeliverable>) {
        let name = self.deployment.name.clone();
        let acks = Acks::new();
        // The earliest record that stops the partition, and why.
        let mut stop_at: Option<(u32, String)> = None;
        let mut stop = |i: u32, why: String| {
            if stop_at.as_ref().is_none_or(|(j, _)| i < *j) {
                stop_at = Some((i, why));
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        for u in &failures {
            let why = format!("producing to topic `{}` failed for good: {}", u.topic, u.error);
            self.shared.metrics.failures.with_label_values(&[&self.deployment.tenant, &name, &n.to_string(), FailureKind::Produce.as_str()]).inc();
            let batch = group.batch.as_deref();
            match (u.role, batch) {
                (Role::Output(Some(i)), Some(batch)) if seen.insert(i) => match self.deployment.config.failure_policy {
                    FailurePolicy::DeadLetter => {
                        tracing::warn!(deployment = %name, "dead-lettered: {}", describe_failure(&name, batch, &weir_abi::RecordFailure { index: i, kind: FailureKind::Produce, message: why.clone() }));
                        self.dead_letter(batch, i, FailureKind::Produce, &why, DeadLetter::Whole, &acks);
                    }
                    FailurePolicy::Skip => tracing::warn!(deployment = %name, partition = n, "skipped an output: {why}"),
                    FailurePolicy::Stop => stop(i, why.clone()),
                },
                (Role::Output(_), _) => tracing::warn!(deployment = %name, partition = n, "dropped a window result: {why}"),
                (Role::DeadLetter(i), Some(batch)) if seen.insert(i) => {
                    // Too large for the dead-letter topic, perhaps: once more
                    // without the value. If even that fails, nothing can take
                    // the record and the partition stops.
                    self.dead_letter(batch, i, FailureKind::Produce, &why, DeadLetter::WithoutValue, &acks);
                }
                (Role::DeadLetter(i) | Role::BareDeadLetter(i), _) => stop(i, format!("the dead-letter topic refuses the record: {why}")),
                (Role::Late(_), _) => tracing::warn!(deployment = %name, partition = n, "dropped a late record: {why}"),
                (Role::Changelog, _) => {}
            }
        }
        if let (Some((i, why)), Some(batch)) = (stop_at, group.batch.as_deref()) {
            // Nothing after the last commit is committed (the state holds
            // the changes of the records after this one): the partition
            // consumes again from there, this record included, when it
            // restarts.
            let why = describe_failure(&name, batch, &weir_abi::RecordFailure { index: i, kind: FailureKind::Produce, message: why });
            self.rewind(consumer, n);
            self.stop_partition(consumer, n, why);
            return;
        }
        if let Some(p) = self.parts.get_mut(&n) {
            p.ledger.push_front(Group { deliveries: acks, positions: group.positions, batch: group.batch });
        }
    }

    /// A delivery failed in a way that may pass later: reprocess the
    /// partition from its last commit after a pause that doubles each time
    /// (1 s to a minute); after [`MAX_FAILED_DELIVERIES`] in a row, stop it.
    fn retry_delivery(&mut self, consumer: &BaseConsumer<KafkaContext>, n: i32, error: String) {
        let Some(p) = self.parts.get_mut(&n) else { return };
        p.failed_deliveries += 1;
        let tries = p.failed_deliveries;
        if tries > MAX_FAILED_DELIVERIES {
            let why = format!("deployment `{}`, partition {n}: deliveries failed {tries} times in a row, the last time: {error}", self.deployment.name);
            self.rewind(consumer, n);
            self.stop_partition(consumer, n, why);
            return;
        }
        let backoff = Duration::from_secs(1 << (tries - 1).min(6)).min(Duration::from_secs(60));
        tracing::error!(deployment = %self.name(), partition = n, error = %error, "a delivery failed; reprocessing the partition from its last commit in {} s", backoff.as_secs());
        self.set_error(format!("partition {n}: delivery failed: {error}"));
        self.rewind(consumer, n);
        if let Some(p) = self.parts.get_mut(&n) {
            p.hold_until = Some(Instant::now() + backoff);
            for t in &self.deployment.config.inputs {
                let _ = consumer.pause(&tpl_of(t, n));
            }
        }
    }

    /// Forgets everything since the partition's last commit and consumes
    /// again from there. Waits for the batch in flight.
    fn rewind(&mut self, consumer: &BaseConsumer<KafkaContext>, n: i32) {
        self.wait_idle(consumer, &[n], RELEASE_TIMEOUT);
        let Some(p) = self.parts.get_mut(&n) else { return };
        if let Some(state) = p.state.as_mut()
            && let Err(e) = state.discard_pending()
        {
            tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "reopening state failed");
        }
        p.commit_due = false;
        let committed = p.ledger.rewind().clone();
        p.buffers.clear();
        for t in &self.deployment.config.inputs {
            let offset = committed.get(t).map_or(Offset::Beginning, |&o| Offset::Offset(o));
            if let Err(e) = consumer.seek(t, n, offset, SEEK_TIMEOUT) {
                tracing::error!(deployment = %self.deployment.name, topic = %t, partition = n, error = %e, "seek failed");
            }
            let _ = consumer.resume(&tpl_of(t, n));
        }
    }

    /// Resumes partitions whose delivery backoff has passed.
    fn release_holds(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        for p in self.parts.values_mut() {
            if p.hold_until.is_some_and(|t| Instant::now() >= t) {
                p.hold_until = None;
                if p.stopped.is_none() {
                    for t in &self.deployment.config.inputs {
                        let _ = consumer.resume(&tpl_of(t, p.number));
                    }
                }
            }
        }
    }

    /// Processes completions until none of `numbers` has work in flight.
    fn wait_idle(&mut self, consumer: &BaseConsumer<KafkaContext>, numbers: &[i32], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while numbers.iter().any(|n| self.parts.get(n).is_some_and(|p| p.in_flight)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(done) = self.done_rx.recv_timeout(left.min(Duration::from_millis(100))) {
                self.on_done(consumer, done);
            }
        }
        true
    }

    /// Commits every partition whose commit is due and whose batch in
    /// flight is back. A partition whose state changed since its last
    /// commit waits until everything it processed is delivered, then
    /// commits state and offsets in one changelog transaction; the others
    /// commit what their deliveries allow so far, without waiting for the
    /// rest, asynchronously except while partitions are let go. Then each
    /// store is flushed with a checkpoint of what was committed.
    fn commit(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        if Instant::now() < self.retry_commit_at {
            return;
        }
        let (mut with_state, mut offsets_only) = (Vec::new(), Vec::new());
        for (&n, p) in &self.parts {
            if !p.commit_due || p.in_flight {
                continue;
            }
            // State lost with a job that panicked: nothing more is committed.
            let Some(state) = p.state.as_deref() else { continue };
            if !state.has_durable_changes() {
                offsets_only.push(n);
            } else if p.ledger.to_commit(true).is_some() {
                with_state.push(n);
            }
        }
        if !offsets_only.is_empty() {
            let mode = if self.stopping { CommitMode::Sync } else { CommitMode::Async };
            if let Err(e) = self.commit_offsets(consumer, &offsets_only, mode) {
                tracing::error!(deployment = %self.deployment.name, partitions = ?offsets_only, error = %format!("{e:#}"), "commit failed");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
            }
        }
        if with_state.is_empty() {
            return;
        }
        match self.commit_with_changelog(consumer, &with_state) {
            Ok(ends) => {
                for n in with_state {
                    let Some(p) = self.parts.get_mut(&n) else { continue };
                    let positions = p.ledger.processed().clone();
                    p.ledger.committed_at(positions);
                    if let Some(end) = ends.get(&n).filter(|&&e| e >= 0) {
                        p.changelog_next = p.changelog_next.max(end + 1);
                    }
                    self.committed(n);
                }
            }
            Err(e) => {
                // Nothing of the commit is visible: the partitions go back
                // to their last commit and process again from there.
                let error = format!("{e:#}");
                tracing::error!(deployment = %self.deployment.name, partitions = ?with_state, error = %error, "commit failed");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
                for n in with_state {
                    self.retry_delivery(consumer, n, format!("committing state: {error}"));
                }
            }
        }
    }

    /// Partition `n` committed: its store is flushed with a checkpoint of
    /// the committed offsets.
    fn committed(&mut self, n: i32) {
        let Some(p) = self.parts.get_mut(&n) else { return };
        p.commit_due = false;
        p.failed_deliveries = 0;
        if let Some(state) = p.state.as_mut() {
            let checkpoint = Checkpoint { offsets: p.ledger.committed().clone(), changelog_next: p.changelog_next };
            if let Err(e) = state.flush_with_checkpoint(&checkpoint) {
                tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "flushing state failed");
            }
        }
    }

    /// Commits the offsets the ledgers of partitions `numbers` allow. An
    /// asynchronous commit that fails is reported by the client; the next
    /// one covers its offsets.
    fn commit_offsets(&mut self, consumer: &BaseConsumer<KafkaContext>, numbers: &[i32], mode: CommitMode) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for n in numbers {
            let p = &self.parts[n];
            if let Some(positions) = p.ledger.to_commit(false) {
                for (t, &o) in positions {
                    tpl.add_partition_offset(t, *n, Offset::Offset(o))?;
                }
                moved.push((*n, positions.clone()));
            }
        }
        if tpl.count() > 0 {
            consumer.commit(&tpl, mode).context("committing offsets")?;
        }
        for n in numbers {
            if let Some(p) = self.parts.get_mut(n) {
                p.commit_due = false;
            }
        }
        for (n, positions) in moved {
            if let Some(p) = self.parts.get_mut(&n) {
                p.ledger.committed_at(positions);
            }
            self.committed(n);
        }
        Ok(())
    }

    /// The ready partitions' state changes, positions and offsets in one
    /// transaction of this deployment's changelog producer.
    fn commit_with_changelog(&mut self, consumer: &BaseConsumer<KafkaContext>, ready: &[i32]) -> Result<BTreeMap<i32, i64>> {
        if self.changelog.is_none() {
            let id = format!("{}.{}", self.deployment.group, self.shared.host_id);
            self.changelog = Some(Producer::transactional(&self.shared.kafka, &id)?);
        }
        let producer = self.changelog.as_ref().expect("just made");
        let group = consumer.group_metadata().context("the consumer has no group metadata yet")?;
        let flushes: Vec<Flush<'_>> = ready
            .iter()
            .filter_map(|n| {
                let p = &self.parts[n];
                Some(Flush { partition: *n, state: p.state.as_deref()?, positions: p.ledger.processed() })
            })
            .collect();
        let timeout = Duration::from_millis(self.shared.kafka.connect_timeout_ms.max(10_000));
        let committed = changelog::commit(producer, &self.deployment.changelog_topic, &flushes, &group, timeout);
        if committed.is_err() {
            // A fenced or failed producer is not used again.
            self.changelog = None;
        }
        committed
    }

    /// Finishes in-flight work of `numbers`, commits them and lets them go.
    fn release(&mut self, consumer: &BaseConsumer<KafkaContext>, numbers: &[i32]) {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let was_stopping = self.stopping;
        // No new batches for released partitions; buffered records are
        // consumed again by the next owner.
        self.stopping = true;
        for n in numbers {
            self.restoring.remove(n);
            if let Some(p) = self.parts.get_mut(n) {
                p.buffers.clear();
                p.commit_due = true;
            }
        }
        loop {
            if let Ok(done) = self.done_rx.recv_timeout(Duration::from_millis(5)) {
                self.on_done(consumer, done);
            }
            self.settle(consumer);
            self.retry_commit_at = Instant::now();
            for n in numbers {
                // Offsets-only commits take what is delivered so far: again
                // until everything processed is committed.
                if let Some(p) = self.parts.get_mut(n).filter(|p| !p.ledger.is_done()) {
                    p.commit_due = true;
                }
            }
            self.commit(consumer);
            let open = numbers
                .iter()
                .filter(|n| self.parts.get(n).is_some_and(|p| p.in_flight || (p.state.is_some() && (p.commit_due || !p.ledger.is_done()))))
                .count();
            if open == 0 {
                break;
            }
            if Instant::now() > deadline {
                tracing::error!(deployment = %self.deployment.name, "gave up committing released partitions after {} s; their records will be processed again", RELEASE_TIMEOUT.as_secs());
                break;
            }
        }
        for n in numbers {
            if self.parts.remove(n).is_some() {
                let label = n.to_string();
                let _ = self.shared.metrics.stopped.remove_label_values(&[&self.deployment.tenant, &self.deployment.name, &label]);
                let _ = self.shared.metrics.consumer_lag.remove_label_values(&[&self.deployment.tenant, &self.deployment.name, &label]);
            }
            let mut status = lock(&self.deployment.status);
            status.partitions.retain(|p| p != n);
            status.stopped.remove(n);
            status.failed.remove(n);
        }
        self.stopping = was_stopping;
    }

    /// Starts taking over newly assigned partitions: each is paused and
    /// restored on a thread of its own; [`Runtime::took_over`] resumes it.
    fn assign(&mut self, consumer: &BaseConsumer<KafkaContext>, tpl: &TopicPartitionList) {
        for n in partition_numbers(tpl) {
            if self.parts.contains_key(&n) || self.restoring.contains_key(&n) {
                continue;
            }
            for t in &self.deployment.config.inputs {
                let _ = consumer.pause(&tpl_of(t, n));
            }
            self.start_restore(n);
        }
    }

    fn start_restore(&mut self, n: i32) {
        self.epoch += 1;
        self.restoring.insert(n, self.epoch);
        super::restore::spawn(self.shared.clone(), self.deployment.clone(), n, self.epoch, self.restore_tx.clone());
    }

    /// Handles finished restores: a partition taken over starts consuming
    /// from its positions; one that failed is reported and tried again.
    fn took_over(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        while let Ok((n, epoch, result)) = self.restore_rx.try_recv() {
            if self.restoring.get(&n) != Some(&epoch) {
                continue; // revoked meanwhile
            }
            self.restoring.remove(&n);
            let mut status = lock(&self.deployment.status);
            match result {
                Ok(t) => {
                    status.failed.remove(&n);
                    status.partitions.push(n);
                    status.partitions.sort_unstable();
                    drop(status);
                    for topic in &self.deployment.config.inputs {
                        if let Some(&o) = t.positions.get(topic)
                            && let Err(e) = consumer.seek(topic, n, Offset::Offset(o), SEEK_TIMEOUT)
                        {
                            tracing::error!(deployment = %self.deployment.name, topic = %topic, partition = n, error = %e, "seek failed");
                        }
                        let _ = consumer.resume(&tpl_of(topic, n));
                    }
                    self.parts.insert(n, Partition::new(n, t.state, t.positions, t.changelog_next));
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::error!(deployment = %self.deployment.name, partition = n, error = %why, "could not take over the partition; trying again in {} s", RESTORE_RETRY.as_secs());
                    status.failed.insert(n, why);
                    self.retry_restore.insert(n, Instant::now() + RESTORE_RETRY);
                }
            }
        }
        let due: Vec<i32> = self.retry_restore.iter().filter(|(_, at)| Instant::now() >= **at).map(|(&n, _)| n).collect();
        for n in due {
            self.retry_restore.remove(&n);
            if self.assigned.contains(&n) {
                self.start_restore(n);
            }
        }
    }
}

fn tpl_of(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::partition::{Barrier, Buffer, Partition, Pending};
use super::workers::{Done, Job, Outcome, Runnable, Work};
use super::{DeploymentStatus, Shared};
use crate::config::{DeploymentConfig, FailurePolicy};
use crate::kafka::producer::{Acks, Out, headers};
use crate::state::rocks::RocksBackend;
use crate::state::{Checkpoint, PartitionState, changelog};
use crate::transform::{BatchBuilder, BatchResult, Produced, describe_failure};

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
    pub status: Arc<Mutex<DeploymentStatus>>,
}

impl Deployment {
    pub fn new(name: String, tenant: String, storage: String, config: DeploymentConfig, runnable: Arc<Runnable>, group: String, changelog_topic: String) -> Deployment {
        Deployment { name, tenant, storage, config, runnable: RwLock::new(runnable), group, changelog_topic, status: Arc::new(Mutex::new(DeploymentStatus::default())) }
    }

    /// The status, with what the running transform says now.
    pub fn status_now(&self) -> DeploymentStatus {
        let mut status = self.status.lock().unwrap().clone();
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
        let mut status = self.status.lock().unwrap();
        status.rolled_back = Some(format!("upgrade to module {} rolled back: {why}", candidate.module.digest));
        status.last_error = status.rolled_back.clone();
        true
    }
}

/// Runs `deployment` until `stop` is set, then commits and leaves the group.
pub fn run(deployment: Arc<Deployment>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<()> {
    let (done_tx, done_rx) = channel();
    let runtime = Arc::new(Mutex::new(Runtime {
        deployment: deployment.clone(),
        shared: shared.clone(),
        parts: BTreeMap::new(),
        done_tx,
        done_rx,
        next_commit: Instant::now(),
        retry_commit_at: Instant::now(),
        stopping: false,
    }));
    let consumer: BaseConsumer<KafkaContext> = crate::kafka::consumer_config(&shared.kafka, &deployment.group)
        .create_with_context(KafkaContext { runtime: runtime.clone() })
        .context("creating the consumer")?;
    let topics: Vec<&str> = deployment.config.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing to the input topics")?;
    tracing::info!(deployment = %deployment.name, group = %deployment.group, inputs = ?topics, "deployment started");
    while !stop.load(Ordering::Relaxed) {
        let timeout = runtime.lock().unwrap().poll_timeout();
        // Rebalance and statistics callbacks run inside poll and lock the
        // runtime, so the lock is never held across a poll (not even one
        // that does not wait).
        if let Some(m) = consumer.poll(timeout) {
            runtime.lock().unwrap().on_message(&consumer, m);
            // Take what is already fetched without waiting.
            for _ in 0..1_000 {
                match consumer.poll(Duration::ZERO) {
                    Some(m) => runtime.lock().unwrap().on_message(&consumer, m),
                    None => break,
                }
            }
        }
        runtime.lock().unwrap().pump(&consumer);
    }
    {
        let mut rt = runtime.lock().unwrap();
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
}

impl ClientContext for KafkaContext {
    fn stats(&self, stats: Statistics) {
        let rt = self.runtime.lock().unwrap();
        let mut lag: BTreeMap<i32, i64> = BTreeMap::new();
        for t in stats.topics.values().filter(|t| rt.deployment.config.inputs.contains(&t.topic)) {
            for (&p, s) in &t.partitions {
                if p >= 0 && s.consumer_lag >= 0 && rt.parts.contains_key(&p) {
                    *lag.entry(p).or_default() += s.consumer_lag;
                }
            }
        }
        rt.deployment.status.lock().unwrap().lag = lag.clone();
        for (p, l) in lag {
            rt.shared.metrics.consumer_lag.with_label_values(&[&rt.deployment.tenant, &rt.deployment.name, &p.to_string()]).set(l);
        }
    }
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut rt = self.runtime.lock().unwrap();
            let numbers = partition_numbers(tpl);
            tracing::info!(deployment = %rt.deployment.name, partitions = ?numbers, "partitions revoked");
            rt.release(consumer, &numbers);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut rt = self.runtime.lock().unwrap();
            let numbers = partition_numbers(tpl);
            tracing::info!(deployment = %rt.deployment.name, partitions = ?numbers, "partitions assigned");
            if let Err(e) = rt.assign(consumer, tpl) {
                // Without its state a partition cannot be processed; leave
                // it unowned (its records stay unconsumed) and say why.
                tracing::error!(deployment = %rt.deployment.name, error = %format!("{e:#}"), "could not take over partitions");
                rt.set_error(format!("taking over partitions {numbers:?}: {e:#}"));
            }
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
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long releasing partitions waits for in-flight work and deliveries.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

impl Runtime {
    fn name(&self) -> &str {
        &self.deployment.name
    }

    fn linger(&self) -> Duration {
        Duration::from_millis(self.shared.host.batch_linger_ms)
    }

    fn poll_timeout(&self) -> Duration {
        let busy = self.parts.values().any(|p| p.in_flight || !p.pending.is_empty() || p.barrier.is_some() || p.buffered() > 0);
        if busy { Duration::from_millis(1) } else { Duration::from_millis(50) }
    }

    fn set_error(&self, message: String) {
        self.deployment.status.lock().unwrap().last_error = Some(message);
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
        let max_buffered = self.shared.host.max_buffered_records;
        let Some(p) = self.parts.get_mut(&m.partition()) else { return };
        if p.stopped.is_some() {
            return;
        }
        let topic = m.topic();
        let buffer = p.buffers.entry(topic.to_owned()).or_insert_with(|| Buffer { builder: BatchBuilder::new(topic, m.partition()), since: None, paused: false });
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        let hs = m.headers();
        buffer.builder.push(m.offset(), timestamp, m.key(), m.payload(), hs.iter().flat_map(|h| h.iter()).map(|h| (h.key, h.value)));
        let now = Instant::now();
        buffer.since.get_or_insert(now);
        p.last_record = now;
        p.idle_closed = false;
        if buffer.builder.len() >= max_buffered && !buffer.paused {
            // Backpressure: stop fetching until the transform catches up.
            buffer.paused = true;
            let _ = consumer.pause(&tpl_of(topic, m.partition()));
        }
    }

    fn pump(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(consumer, done);
        }
        self.settle(consumer);
        if Instant::now() >= self.next_commit {
            self.next_commit = Instant::now() + Duration::from_millis(self.shared.host.commit_interval_ms);
            for p in self.parts.values_mut() {
                if p.barrier.is_none() {
                    p.barrier = Some(Barrier::AwaitIdle);
                }
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
        let (max_records, max_bytes, linger) = (self.shared.host.batch_max_records, self.shared.host.batch_max_bytes, self.linger());
        let resume_below = self.shared.host.max_buffered_records / 2;
        for p in self.parts.values_mut() {
            if p.in_flight || p.stopped.is_some() || matches!(p.barrier, Some(Barrier::AwaitAcks { .. })) || p.state.is_none() {
                continue;
            }
            let ready = p
                .buffers
                .iter()
                .filter(|(_, b)| {
                    !b.builder.is_empty() && (b.builder.len() >= max_records || b.builder.data_bytes() >= max_bytes || b.since.is_some_and(|s| s.elapsed() >= linger))
                })
                .min_by_key(|(_, b)| b.since)
                .map(|(t, _)| t.clone());
            let Some(topic) = ready else { continue };
            let buffer = p.buffers.get_mut(&topic).expect("ready buffer exists");
            let builder = std::mem::replace(&mut buffer.builder, BatchBuilder::new(&topic, p.number));
            buffer.since = None;
            if buffer.paused && buffer.builder.len() < resume_below {
                buffer.paused = false;
                let _ = consumer.resume(&tpl_of(&topic, p.number));
            }
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::Batch(builder.finish()),
                state: p.state.take().expect("state is home"),
                reply: self.done_tx.clone(),
            };
            self.shared.workers.submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    /// Asks the transform to close windows of partitions idle for a while
    /// (only transforms that asked for idle closing act on it).
    fn close_idle_windows(&mut self) {
        for p in self.parts.values_mut() {
            let idle = p.last_record.elapsed();
            if p.in_flight || p.idle_closed || p.stopped.is_some() || p.barrier.is_some() || p.buffered() > 0 || idle < Duration::from_secs(1) {
                continue;
            }
            p.idle_closed = true;
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::CloseIdle { idle_ms: idle.as_millis() as u64 },
                state: p.state.take().expect("state is home"),
                reply: self.done_tx.clone(),
            };
            self.shared.workers.submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    fn on_done(&mut self, consumer: &BaseConsumer<KafkaContext>, done: Done) {
        let (tenant, name) = (self.deployment.tenant.clone(), self.deployment.name.clone());
        if let Some(why) = &done.rolled_back {
            if self.deployment.roll_back(&done.runnable, why) {
                self.shared.metrics.rollbacks.with_label_values(&[&tenant, &name]).inc();
            }
        }
        let Some(p) = self.parts.get_mut(&done.partition) else { return };
        p.in_flight = false;
        p.state = Some(done.state);
        let metrics = &self.shared.metrics;
        let label = done.partition.to_string();
        metrics.batch_seconds.with_label_values(&[&tenant, &name]).observe(done.elapsed.as_secs_f64());
        metrics.wasm_cpu_seconds.with_label_values(&[&tenant, &name]).inc_by(done.cpu.as_secs_f64());
        let acks = Acks::new();
        match (done.work, done.outcome) {
            (Work::Batch(batch), Outcome::Batch(result)) => {
                let processed = result.processed(batch.records.len() as u32);
                metrics.records_in.with_label_values(&[&tenant, &name, &label]).inc_by(u64::from(processed));
                let out = self.produce_outputs(&result.produced, &acks);
                self.shared.metrics.records_out.with_label_values(&[&tenant, &name, &label]).inc_by(out);
                self.handle_failures(&batch, &result, &acks);
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                match &result.stopped {
                    None => {
                        let last = batch.records.last().map_or(-1, |r| r.offset);
                        p.processed.insert(batch.topic.clone(), last + 1);
                    }
                    Some(stop) => {
                        let at = batch.records[stop.index as usize].offset;
                        let why = describe_failure(&name, &batch, &crate::transform::RecordFailure { index: stop.index, kind: stop.kind, message: stop.message.clone() });
                        tracing::error!(deployment = %name, partition = done.partition, "partition stopped: {why}");
                        p.processed.insert(batch.topic.clone(), at);
                        p.stopped = Some(why.clone());
                        // Records after the stop are dropped from the buffers
                        // and consumed again from `at` when resumed.
                        let topics: Vec<String> = p.buffers.keys().cloned().collect();
                        p.buffers.clear();
                        for t in topics.iter().chain(std::iter::once(&batch.topic)) {
                            let _ = consumer.pause(&tpl_of(t, done.partition));
                        }
                        self.shared.metrics.stopped.with_label_values(&[&tenant, &name, &label]).set(1);
                        let mut status = self.deployment.status.lock().unwrap();
                        status.stopped.insert(done.partition, why.clone());
                        status.last_error = Some(why);
                    }
                }
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                p.pending.push_back(Pending { acks, positions: p.processed.clone() });
            }
            (_, Outcome::Closed(Ok(produced))) => {
                let out = self.produce_outputs(&produced, &acks);
                self.shared.metrics.records_out.with_label_values(&[&tenant, &name, &label]).inc_by(out);
                let p = self.parts.get_mut(&done.partition).expect("partition present");
                p.pending.push_back(Pending { acks, positions: p.processed.clone() });
            }
            (_, Outcome::Closed(Err(f))) => {
                tracing::warn!(deployment = %name, partition = done.partition, "closing idle windows failed: {}: {}", f.kind, f.message);
            }
            (Work::CloseIdle { .. }, Outcome::Batch(_)) => unreachable!("a close job returns a close outcome"),
        }
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
            if let Err(e) = self.shared.producer.send(out, acks, &give_up) {
                tracing::error!(deployment = %self.name(), error = %e, "producing an output failed");
            }
            n += 1;
        }
        n
    }

    /// Applies the failure policy to failed records and routes late ones.
    fn handle_failures(&self, batch: &crate::bindings::InputBatch, result: &BatchResult, acks: &Arc<Acks>) {
        let (tenant, name) = (self.deployment.tenant.as_str(), self.name());
        let label = batch.partition.to_string();
        let metrics = &self.shared.metrics;
        let give_up = self.give_up();
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis().to_string();
        for f in &result.failures {
            metrics.failures.with_label_values(&[tenant, name, &label, f.kind.as_str()]).inc();
            let why = describe_failure(name, batch, f);
            let i = f.index as usize;
            match self.deployment.config.failure_policy {
                FailurePolicy::Skip => tracing::warn!(deployment = %name, "skipped: {why}"),
                FailurePolicy::DeadLetter | FailurePolicy::Stop => {
                    tracing::warn!(deployment = %name, "dead-lettered: {why}");
                    let r = &batch.records[i];
                    let (partition, offset) = (batch.partition.to_string(), r.offset.to_string());
                    let weir_headers = [
                        ("weir.deployment", name.as_bytes()),
                        ("weir.error.kind", f.kind.as_str().as_bytes()),
                        ("weir.error.message", f.message.as_bytes()),
                        ("weir.source.topic", batch.topic.as_bytes()),
                        ("weir.source.partition", partition.as_bytes()),
                        ("weir.source.offset", offset.as_bytes()),
                        ("weir.failed.at", now_ms.as_bytes()),
                    ];
                    let all = batch.headers(i).chain(weir_headers.iter().map(|(k, v)| (*k, Some(*v))));
                    let dlq = self.deployment.config.dead_letter_topic(name);
                    let out = Out { topic: &dlq, key: batch.key(i), value: batch.value(i), headers: headers(all), timestamp: Some(r.timestamp), partition: None };
                    if let Err(e) = self.shared.producer.send(out, acks, &give_up) {
                        tracing::error!(deployment = %name, error = %e, "producing a dead letter failed");
                    }
                    metrics.dead_lettered.with_label_values(&[tenant, name, &label]).inc();
                }
            }
        }
        for &i in &result.late {
            metrics.late.with_label_values(&[tenant, name, &label]).inc();
            if let Some(topic) = &self.deployment.config.late_topic {
                let i = i as usize;
                let out = Out { topic, key: batch.key(i), value: batch.value(i), headers: headers(batch.headers(i)), timestamp: Some(batch.records[i].timestamp), partition: None };
                if let Err(e) = self.shared.producer.send(out, acks, &give_up) {
                    tracing::error!(deployment = %name, error = %e, "producing a late record failed");
                }
            }
        }
    }

    /// Advances committable offsets; a failed delivery rewinds its partition.
    fn settle(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        let failed: Vec<(i32, String)> = self.parts.iter_mut().filter_map(|(&n, p)| p.settle().map(|e| (n, e))).collect();
        for (n, error) in failed {
            tracing::error!(deployment = %self.name(), partition = n, error = %error, "a delivery failed; reprocessing the partition from its last commit");
            self.set_error(format!("partition {n}: delivery failed: {error}"));
            self.rewind(consumer, n);
        }
    }

    /// Forgets everything since the partition's last commit and consumes
    /// again from there. Waits for the batch in flight.
    fn rewind(&mut self, consumer: &BaseConsumer<KafkaContext>, n: i32) {
        self.wait_idle(consumer, &[n], RELEASE_TIMEOUT);
        let Some(p) = self.parts.get_mut(&n) else { return };
        if let Some(state) = p.state.as_mut() {
            if let Err(e) = state.discard_pending() {
                tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "reopening state failed");
            }
        }
        p.pending.clear();
        p.barrier = None;
        p.processed = p.committed.clone();
        p.committable = p.committed.clone();
        let topics: Vec<String> = self.deployment.config.inputs.clone();
        p.buffers.clear();
        for t in &topics {
            let offset = p.committed.get(t).map_or(Offset::Beginning, |&o| Offset::Offset(o));
            if let Err(e) = consumer.seek(t, n, offset, SEEK_TIMEOUT) {
                tracing::error!(deployment = %self.deployment.name, topic = %t, partition = n, error = %e, "seek failed");
            }
            let _ = consumer.resume(&tpl_of(t, n));
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

    /// Produces changelogs and commits the partitions whose barrier allows
    /// it (and, at commit time, those with nothing to write).
    fn commit(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        let mut ready: Vec<(i32, BTreeMap<String, i64>, Option<i64>)> = Vec::new();
        let changelog_topic = self.deployment.changelog_topic.clone();
        for (&n, p) in self.parts.iter_mut() {
            match &p.barrier {
                None => {}
                Some(Barrier::AwaitIdle) if p.in_flight => {}
                Some(Barrier::AwaitIdle) => {
                    let state = p.state.as_ref().expect("state is home when idle");
                    if state.has_durable_changes() {
                        let acks = Acks::new();
                        match changelog::produce(&self.shared.producer, &changelog_topic, n, state, &p.processed, &acks) {
                            Ok(_) => p.barrier = Some(Barrier::AwaitAcks { changelog: acks, positions: p.processed.clone() }),
                            Err(e) => tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "producing the changelog failed"),
                        }
                    } else {
                        // Nothing to make durable: commit what is acknowledged.
                        p.barrier = None;
                        if p.committable != p.committed {
                            ready.push((n, p.committable.clone(), None));
                        }
                    }
                }
                Some(Barrier::AwaitAcks { changelog, positions }) => {
                    if let Some(error) = changelog.failure() {
                        tracing::error!(deployment = %self.deployment.name, partition = n, error = %error, "changelog delivery failed; retrying at the next commit");
                        p.barrier = None;
                    } else if changelog.settled() && p.pending.is_empty() {
                        ready.push((n, positions.clone(), Some(changelog.max_offset())));
                    }
                }
            }
        }
        if ready.is_empty() || Instant::now() < self.retry_commit_at {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (n, positions, _) in &ready {
            for (t, &o) in positions {
                let _ = tpl.add_partition_offset(t, *n, Offset::Offset(o));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(deployment = %self.deployment.name, error = %e, "offset commit failed; retrying");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
                return;
            }
        }
        for (n, positions, changelog_max) in ready {
            let p = self.parts.get_mut(&n).expect("ready partition present");
            p.committed = positions.clone();
            if let Some(max) = changelog_max {
                p.changelog_next = p.changelog_next.max(max + 1);
                p.barrier = None;
            }
            // The store follows the commit; when it cannot (a batch is in
            // flight) its checkpoint stays behind and a restart replays the
            // changelog from there.
            if let Some(state) = p.state.as_mut() {
                let checkpoint = Checkpoint { offsets: positions, changelog_next: p.changelog_next };
                if let Err(e) = state.flush_with_checkpoint(&checkpoint) {
                    tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "flushing state failed");
                }
            }
        }
    }

    /// Finishes in-flight work of `numbers`, commits them and lets them go.
    fn release(&mut self, consumer: &BaseConsumer<KafkaContext>, numbers: &[i32]) {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let was_stopping = self.stopping;
        // No new batches for released partitions; buffered records are
        // consumed again by the next owner.
        self.stopping = true;
        for n in numbers {
            if let Some(p) = self.parts.get_mut(n) {
                p.buffers.clear();
                if p.barrier.is_none() {
                    p.barrier = Some(Barrier::AwaitIdle);
                }
            }
        }
        loop {
            if let Ok(done) = self.done_rx.recv_timeout(Duration::from_millis(5)) {
                self.on_done(consumer, done);
            }
            self.settle(consumer);
            self.retry_commit_at = Instant::now();
            self.commit(consumer);
            let open = numbers.iter().filter(|n| self.parts.get(n).is_some_and(|p| p.in_flight || p.barrier.is_some() || !p.pending.is_empty() || p.committable != p.committed)).count();
            if open == 0 {
                break;
            }
            if Instant::now() > deadline {
                tracing::error!(deployment = %self.deployment.name, "gave up committing released partitions after {} s; their records will be processed again", RELEASE_TIMEOUT.as_secs());
                break;
            }
            for n in numbers {
                if let Some(p) = self.parts.get_mut(n) {
                    if p.barrier.is_none() && !p.in_flight {
                        p.barrier = Some(Barrier::AwaitIdle);
                    }
                }
            }
        }
        for n in numbers {
            if self.parts.remove(n).is_some() {
                let label = n.to_string();
                let _ = self.shared.metrics.stopped.remove_label_values(&[&self.deployment.tenant, &self.deployment.name, &label]);
                let _ = self.shared.metrics.consumer_lag.remove_label_values(&[&self.deployment.tenant, &self.deployment.name, &label]);
                let mut status = self.deployment.status.lock().unwrap();
                status.partitions.retain(|p| p != n);
                status.stopped.remove(n);
            }
        }
        self.stopping = was_stopping;
    }

    /// Takes over newly assigned partitions: opens each one's store,
    /// restores it from the changelog unless it matches the committed
    /// offsets, and starts from those offsets.
    fn assign(&mut self, consumer: &BaseConsumer<KafkaContext>, tpl: &TopicPartitionList) -> Result<()> {
        let timeout = Duration::from_millis(self.shared.kafka.connect_timeout_ms.max(10_000));
        let committed = consumer.committed_offsets(tpl.clone(), timeout).context("reading committed offsets")?;
        for n in partition_numbers(tpl) {
            if self.parts.contains_key(&n) {
                continue;
            }
            let offsets: BTreeMap<String, i64> = committed
                .elements()
                .iter()
                .filter(|e| e.partition() == n)
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.topic().to_owned(), o)),
                    _ => None,
                })
                .collect();
            let (state, changelog_next) = self.open_state(n, &offsets).with_context(|| format!("partition {n}"))?;
            self.parts.insert(n, Partition::new(n, state, offsets, changelog_next));
            self.deployment.status.lock().unwrap().partitions.push(n);
        }
        self.deployment.status.lock().unwrap().partitions.sort_unstable();
        Ok(())
    }

    fn open_state(&self, n: i32, committed: &BTreeMap<String, i64>) -> Result<(Box<PartitionState>, i64)> {
        let dir = self.shared.host.state_dir.join(&self.deployment.storage).join(n.to_string());
        let mut state = PartitionState::open(Box::new(RocksBackend::open(&dir, &self.shared.rocks)?))?;
        let checkpoint = state.checkpoint()?;
        if let Some(cp) = &checkpoint {
            if &cp.offsets == committed {
                return Ok((Box::new(state), cp.changelog_next));
            }
        }
        // Behind the committed offsets: replay the changelog from where the
        // store ends. Missing, or ahead (offsets were reset): rebuild.
        let behind = checkpoint.as_ref().filter(|cp| cp.offsets.iter().all(|(t, o)| committed.get(t).is_some_and(|c| o <= c)));
        let from = match behind {
            Some(cp) => cp.changelog_next,
            None => {
                drop(state);
                RocksBackend::destroy(&dir)?;
                state = PartitionState::open(Box::new(RocksBackend::open(&dir, &self.shared.rocks)?))?;
                0
            }
        };
        let (tenant, name, label) = (self.deployment.tenant.clone(), self.deployment.name.clone(), n.to_string());
        let metrics = self.shared.metrics.clone();
        metrics.restoring.with_label_values(&[&tenant, &name, &label]).set(1);
        let started = Instant::now();
        let reported = std::cell::Cell::new(0u64);
        let progress = |applied: u64| {
            metrics.restored_keys.with_label_values(&[&tenant, &name, &label]).inc_by(applied - reported.get());
            if applied > reported.get() {
                tracing::info!(deployment = %name, partition = n, applied, "restoring state from the changelog");
            }
            reported.set(applied);
        };
        let restored = changelog::restore(&self.shared.kafka, &self.deployment.changelog_topic, n, from, committed, &mut state, &progress);
        metrics.restoring.with_label_values(&[&tenant, &name, &label]).set(0);
        let restored = restored?;
        if restored.applied + restored.skipped > 0 {
            tracing::info!(deployment = %name, partition = n, applied = restored.applied, skipped = restored.skipped, seconds = started.elapsed().as_secs_f64(), "state restored");
        }
        let next = state.checkpoint()?.map_or(0, |cp| cp.changelog_next);
        Ok((Box::new(state), next))
    }
}

fn tpl_of(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

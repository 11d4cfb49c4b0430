//! What a processed batch sends: outputs, dead letters and late copies,
//! all under one acknowledgement group recorded in the partition's ledger.
//!
//! (Over 400 lines: everything a finished batch sends (outputs, dead letters, late copies, refused
//! sends) under one acknowledgement group.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir_abi::{FailureKind, InputBatch};
use weir_engine::transform::{BatchResult, Produced, TimerFailure, describe_failure};
use weir_kafka::producer::{Acks, Out, Role, headers};
use weir_state::timers::Clock;

use super::core::{DeadLetter, DeploymentLoop, PENDING_COMMIT_BYTES, Refused};
use super::io::{Sink, Source};
use crate::config::FailurePolicy;
use crate::status::LateRecord;
use crate::workers::{Done, Outcome, Slice, Work};

/// How long a partition whose wall-clock timers are still due after a
/// firing waits before the next one, in ms.
const WALL_CLOCK_RETRY_MS: i64 = 200;
/// How often a partition's late records are logged, at most.
const LATE_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a partition waits when its transform found no room to run (the
/// instance pool, or its tenant's share, full) before it tries again.
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(1);

impl DeploymentLoop {
    pub(super) fn on_done(&mut self, source: &dyn Source, done: Done) {
        if let Outcome::Flushed(flushed) = done.outcome {
            return self.on_flushed(done.partition, done.state, flushed);
        }
        let (tenant, name) = (self.deployment.tenant.clone(), self.deployment.name.clone());
        if let Some(why) = &done.rolled_back
            && self.deployment.roll_back(&done.runnable, why)
        {
            self.shared
                .metrics
                .rollbacks
                .with_label_values(&[&tenant, &name])
                .inc();
        }
        if self.exactly_once()
            && let Err(e) = self.begin()
        {
            // What the batch sends is refused, and the partition goes back.
            tracing::error!(deployment = %name, error = %format!("{e:#}"), "beginning a transaction failed");
        }
        let Some(p) = self.parts.get_mut(&done.partition) else {
            return;
        };
        p.in_flight = false;
        p.state = done.state;
        // A store that cannot be read fires at once, to report the error.
        p.next_wall_timer = p
            .state
            .as_mut()
            .and_then(|s| s.next_timer(Clock::WallClock).unwrap_or(Some(i64::MIN)));
        if matches!(done.outcome, Outcome::Fired(_)) {
            // Timers still due after a firing used up its allowance (they
            // keep setting themselves due, say): wait a little before the
            // next, so they cost the tenant a share, not a worker.
            let now = weir_abi::now_ms() as i64;
            p.next_wall_timer = p.next_wall_timer.map(|t| {
                if t <= now {
                    now + WALL_CLOCK_RETRY_MS
                } else {
                    t
                }
            });
        }
        // State changes wait in memory for the next commit: commit early
        // rather than let them pile up.
        if p.state
            .as_ref()
            .is_some_and(|s| s.pending_held() > PENDING_COMMIT_BYTES)
        {
            p.commit_due = true;
        }
        // At-least-once, state changes commit in a transaction too: its
        // producer is made meanwhile, not by the commit.
        let changed = self.transaction.unprepared()
            && p.state.as_ref().is_some_and(|s| s.has_durable_changes());
        if changed && !self.exactly_once() {
            self.prepare_producer();
        }
        let metrics = self.shared.metrics.clone();
        let label = done.partition.to_string();
        metrics
            .batch_seconds
            .with_label_values(&[&tenant, &name])
            .observe(done.elapsed.as_secs_f64());
        metrics
            .wasm_cpu_seconds
            .with_label_values(&[&tenant, &name])
            .inc_by(done.cpu.as_secs_f64());
        let acks = Acks::new();
        match (done.work, done.outcome) {
            (Work::Batch(slices), Outcome::Batch(results)) => {
                let (mut records_in, mut records_out) = (0, 0);
                let mut slices = slices.into_iter();
                let mut left = Vec::new();
                // Results first: zip then takes no slice past the last result.
                for (result, Slice { batch, invalid }) in results.into_iter().zip(slices.by_ref()) {
                    records_in += u64::from(result.processed(batch.records.len() as u32));
                    let (out, rest) =
                        self.on_slice(source, done.partition, batch, &invalid, &result);
                    records_out += out;
                    left.extend(rest);
                    if self
                        .parts
                        .get(&done.partition)
                        .is_none_or(|p| p.stopped.is_some())
                    {
                        // What the job ran after the stop is not this partition's now.
                        break;
                    }
                }
                // Not run (the job's time was up, or no instance could be
                // had): next, as they were.
                if let Some(p) = self
                    .parts
                    .get_mut(&done.partition)
                    .filter(|p| p.stopped.is_none())
                {
                    left.extend(slices.map(|Slice { batch, invalid }| {
                        weir_abi::BatchBuilder::from_parts(batch, invalid)
                    }));
                    for batch in left.into_iter().rev() {
                        if let Some(buffer) = p.inputs.get_mut(batch.topic()) {
                            buffer.put_back(batch);
                        }
                    }
                }
                metrics
                    .records_in
                    .with_label_values(&[&tenant, &name, &label])
                    .inc_by(records_in);
                metrics
                    .records_out
                    .with_label_values(&[&tenant, &name, &label])
                    .inc_by(records_out);
            }
            (_, Outcome::Fired(fired)) => {
                let out = self.produce_outputs(&fired.produced, &acks, &[]);
                self.shared
                    .metrics
                    .records_out
                    .with_label_values(&[&tenant, &name, &label])
                    .inc_by(out);
                self.timer_failures(done.partition, &fired.failures);
                let p = self
                    .parts
                    .get_mut(&done.partition)
                    .expect("partition present");
                p.ledger.push(acks, None);
                if let Some(f) = &fired.host_failure {
                    let why = format!(
                        "deployment `{name}`, partition {}: firing timers failed: {}: {}",
                        done.partition, f.kind, f.message
                    );
                    self.stop_partition(source, done.partition, why);
                }
            }
            (_, Outcome::Closed(Ok(produced))) => {
                let out = self.produce_outputs(&produced, &acks, &[]);
                self.shared
                    .metrics
                    .records_out
                    .with_label_values(&[&tenant, &name, &label])
                    .inc_by(out);
                let p = self
                    .parts
                    .get_mut(&done.partition)
                    .expect("partition present");
                p.ledger.push(acks, None);
            }
            (_, Outcome::Closed(Err(f))) if f.kind == FailureKind::Unavailable => {
                // Tried again a moment later.
                if let Some(p) = self.parts.get_mut(&done.partition) {
                    p.idle_closed = false;
                    p.hold_until = Some(Instant::now() + UNAVAILABLE_WAIT);
                }
            }
            (_, Outcome::Closed(Err(f))) => {
                tracing::warn!(deployment = %name, partition = done.partition, "closing idle windows failed: {}: {}", f.kind, f.message);
            }
            (_, Outcome::Panicked(message)) => {
                let why = format!(
                    "deployment `{name}`, partition {}: the host failed (a bug in Weir, please report it): {message}; the partition stops until the deployment restarts",
                    done.partition
                );
                self.stop_partition(source, done.partition, why);
            }
            (
                Work::CloseIdle { .. } | Work::FireTimers { .. } | Work::Flush(_),
                Outcome::Batch(_),
            ) => {
                tracing::error!(deployment = %name, "a window-close, timer or flush job returned a batch result")
            }
            // Handled first (`on_flushed`).
            (_, Outcome::Flushed(_)) => {}
        }
    }

    /// Partition `n`'s committed state is written to its store (or
    /// failed to be): the partition takes its state back, and nothing of
    /// a batch's follow-up applies (no transaction to begin, no timers
    /// moved).
    fn on_flushed(
        &mut self,
        n: i32,
        state: Option<Box<weir_state::PartitionState>>,
        flushed: Result<(), String>,
    ) {
        if let Some(p) = self.parts.get_mut(&n) {
            p.in_flight = false;
            p.state = state;
        }
        if let Err(e) = flushed {
            self.flush_failed(n, &e);
        }
    }

    /// What one input's batch of a job did: its outputs, failures and late
    /// records sent under one acknowledgement group, and its records
    /// processed in the partition's ledger. Returns the outputs sent, and
    /// the records to run again when the transform found no room to run
    /// (`unavailable`: the partition waits a moment meanwhile).
    fn on_slice(
        &mut self,
        source: &dyn Source,
        n: i32,
        batch: InputBatch,
        invalid: &[weir_abi::RecordFailure],
        result: &BatchResult,
    ) -> (u64, Option<weir_abi::BatchBuilder>) {
        let name = self.deployment.name.clone();
        let acks = Acks::new();
        let refused = self.refused_in(&batch);
        let out = self.produce_outputs(&result.produced, &acks, &refused);
        self.handle_failures(&batch, result, &acks);
        self.report_disorder(n, &batch, result);
        let mut stop_at = None;
        for (i, why) in refused {
            match self.deployment.config.failure_policy {
                FailurePolicy::DeadLetter => self.dead_letter(
                    &batch,
                    i,
                    FailureKind::Produce,
                    &why,
                    DeadLetter::Whole,
                    &acks,
                ),
                FailurePolicy::Skip => {
                    tracing::warn!(deployment = %name, partition = n, "skipped an output: {why}")
                }
                FailurePolicy::Stop => {
                    stop_at.get_or_insert((i, why));
                }
            }
        }
        if let Some((i, why)) = stop_at {
            let why = describe_failure(
                &name,
                &batch,
                &weir_abi::RecordFailure {
                    index: i,
                    kind: FailureKind::Produce,
                    message: why,
                },
            );
            self.stop_partition(source, n, why);
        }
        let Some(p) = self.parts.get_mut(&n) else {
            return (out, None);
        };
        let mut rest = None;
        match &result.stopped {
            None => {
                let last = batch.records.last().map_or(-1, |r| r.offset);
                p.ledger.advance(&batch.topic, last + 1);
                if std::mem::take(&mut p.unavailable) {
                    self.deployment.status.lock().waiting.remove(&n);
                }
            }
            Some(stop) if stop.kind == FailureKind::Unavailable => {
                p.ledger
                    .advance(&batch.topic, batch.records[stop.index as usize].offset);
                let whole = weir_abi::BatchBuilder::from_parts(batch.clone(), invalid.to_vec());
                rest = Some(whole.copy_range(stop.index as usize..batch.records.len()));
                p.hold_until = Some(Instant::now() + UNAVAILABLE_WAIT);
                p.unavailable = true;
                tracing::warn!(deployment = %name, partition = n, "waiting, trying again in {} s: {}", UNAVAILABLE_WAIT.as_secs(), stop.message);
                let mut status = self.deployment.status.lock();
                status.waiting.insert(n, stop.message.clone());
                status.last_error = Some(stop.message.clone());
            }
            Some(stop) => {
                let at = batch.records[stop.index as usize].offset;
                let why = describe_failure(
                    &name,
                    &batch,
                    &weir_abi::RecordFailure {
                        index: stop.index,
                        kind: stop.kind,
                        message: stop.message.clone(),
                    },
                );
                p.ledger.advance(&batch.topic, at);
                self.stop_partition(source, n, why);
            }
        }
        self.timer_failures(n, &result.timer_failures);
        let Some(p) = self.parts.get_mut(&n) else {
            return (out, rest);
        };
        p.ledger.push(acks, Some(Arc::new(batch)));
        if let Some(f) = &result.timer_host_failure {
            let why = format!(
                "deployment `{name}`, partition {n}: firing timers failed: {}: {}",
                f.kind, f.message
            );
            self.stop_partition(source, n, why);
        }
        (out, rest)
    }

    /// Counts records that came out of order, and makes those dropped as
    /// late visible: in the status (how many, and the latest) and in the
    /// log, at most once per [`LATE_LOG_EVERY`] and partition.
    fn report_disorder(&mut self, n: i32, batch: &InputBatch, result: &BatchResult) {
        let (tenant, name, label) = (
            self.deployment.tenant.as_str(),
            self.deployment.name.as_str(),
            n.to_string(),
        );
        if !result.out_of_order.is_empty() {
            self.shared
                .metrics
                .out_of_order
                .with_label_values(&[tenant, name, &label])
                .inc_by(result.out_of_order.len() as u64);
        }
        let (Some(&last), Some(p)) = (result.late.last(), self.parts.get_mut(&n)) else {
            return;
        };
        let r = &batch.records[last as usize];
        let stream_time = p.state.as_deref().map_or(i64::MIN, |s| s.stream_time());
        let latest = LateRecord {
            topic: batch.topic.clone(),
            offset: r.offset,
            timestamp: r.timestamp,
            stream_time,
        };
        let mut status = self.deployment.status.lock();
        let entry = status.late.entry(n).or_default();
        entry.count += result.late.len() as u64;
        entry.last = latest;
        drop(status);
        p.late_unlogged += result.late.len() as u64;
        if p.late_logged
            .is_some_and(|at| at.elapsed() < LATE_LOG_EVERY)
        {
            return;
        }
        let fate = match &self.deployment.config.late_topic {
            Some(topic) => format!("sent to late_topic `{topic}`"),
            None => "dropped (`late_topic` would keep them)".to_owned(),
        };
        tracing::warn!(
            deployment = %name,
            partition = n,
            "{} late records {fate}: every window of their values had closed. The latest: {}[{n}] offset {}, timestamp {}, {} ms behind the partition's stream time. Records come this late when their input has them out of order by more than the windows' grace (`grace_ms`; a producer without `enable.idempotence` reorders records when it retries), or after windows closed on idleness or a wait for another input ran out",
            p.late_unlogged,
            batch.topic,
            r.offset,
            r.timestamp,
            stream_time.saturating_sub(r.timestamp),
        );
        p.late_unlogged = 0;
        p.late_logged = Some(Instant::now());
    }

    /// Counts and reports timers dropped because their call failed.
    fn timer_failures(&self, partition: i32, failures: &[TimerFailure]) {
        let (tenant, name) = (self.deployment.tenant.as_str(), self.name());
        for f in failures {
            let why = f.describe(name, partition);
            tracing::warn!(deployment = %name, partition, "{why}");
            self.shared
                .metrics
                .failures
                .with_label_values(&[
                    tenant,
                    name,
                    &partition.to_string(),
                    f.failure.kind.as_str(),
                ])
                .inc();
            self.deployment.status.lock().last_error = Some(why);
        }
    }

    /// Stops processing partition `n` (failure policy `stop`, a failure
    /// nothing else can handle): its consumption pauses, its buffered records
    /// are dropped (they are consumed again from its last processed
    /// position when it restarts), and `/health` reports why.
    pub(super) fn stop_partition(&mut self, source: &dyn Source, n: i32, why: String) {
        // Exactly-once: nothing of the open transaction becomes visible
        // (what the partition sent before the failure included).
        self.abort_due |= self.exactly_once() && self.transaction.is_open();
        let Some(p) = self.parts.get_mut(&n) else {
            return;
        };
        tracing::error!(deployment = %self.deployment.name, partition = n, "partition stopped: {why}");
        p.stopped = Some(why.clone());
        let waited = p.clear_buffers(&Default::default());
        for t in &self.deployment.config.inputs {
            source.pause(t, n);
        }
        self.shared
            .metrics
            .stopped
            .with_label_values(&[
                &self.deployment.tenant,
                &self.deployment.name,
                &n.to_string(),
            ])
            .set(1);
        let mut status = self.deployment.status.lock();
        if waited {
            status.waiting.remove(&n);
        }
        status.stopped.insert(n, why.clone());
        status.last_error = Some(why);
    }

    pub(super) fn give_up(&self) -> impl Fn() -> bool + '_ {
        let stop = &self.shared.shutdown;
        move || stop.load(Ordering::Relaxed)
    }

    /// Sends `out` with the deployment's producer: the host's, or under
    /// exactly-once the open transaction's. A refusal is recorded in `acks`
    /// and dealt with when it settles.
    fn send(&self, out: Out<'_>, role: Role, acks: &Arc<Acks>) {
        let sink: &dyn Sink = match self.exactly_once() {
            false => self.sink.as_ref(),
            true => match self.transaction.sending() {
                Some(p) => p,
                None => return acks.refuse("no transaction is open (beginning one failed)"),
            },
        };
        let _ = sink.send(out, role, acks, &self.give_up());
    }

    /// Sends what a batch produced, except the outputs of the input records
    /// in `refused`.
    pub(super) fn produce_outputs(
        &self,
        produced: &[Produced],
        acks: &Arc<Acks>,
        refused: &[(u32, String)],
    ) -> u64 {
        let mut n = 0;
        for r in produced.iter().flat_map(Produced::records) {
            if r.input
                .is_some_and(|i| refused.iter().any(|(j, _)| *j == i))
            {
                continue;
            }
            let out = Out {
                topic: r.topic.unwrap_or(&self.deployment.config.output),
                key: r.key,
                value: r.value,
                headers: headers(r.headers()),
                timestamp: Some(r.timestamp),
                partition: None,
            };
            self.send(out, Role::Output(r.input), acks);
            n += 1;
        }
        n
    }

    /// Records of `batch` whose outputs the broker refused in an aborted
    /// transaction (exactly-once), with why: their outputs go to the
    /// failure policy instead of failing the transaction again.
    fn refused_in(&self, batch: &InputBatch) -> Vec<(u32, String)> {
        (0..batch.records.len() as u32)
            .filter_map(|i| self.refused_of(batch, i)?.outputs.map(|why| (i, why)))
            .collect()
    }

    /// What the broker refused of record `i`'s sends (exactly-once).
    fn refused_of(&self, batch: &InputBatch, i: u32) -> Option<Refused> {
        if self.refused.is_empty() {
            return None;
        }
        self.refused
            .get(&(
                batch.topic.clone(),
                batch.partition,
                batch.records[i as usize].offset,
            ))
            .cloned()
    }

    /// Applies the failure policy to failed records and routes late ones.
    pub(super) fn handle_failures(
        &self,
        batch: &InputBatch,
        result: &BatchResult,
        acks: &Arc<Acks>,
    ) {
        let (tenant, name) = (self.deployment.tenant.as_str(), self.name());
        let label = batch.partition.to_string();
        let metrics = &self.shared.metrics;
        for f in &result.failures {
            metrics
                .failures
                .with_label_values(&[tenant, name, &label, f.kind.as_str()])
                .inc();
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
            metrics
                .late
                .with_label_values(&[tenant, name, &label])
                .inc();
            if self.refused_of(batch, i).is_some_and(|r| r.late) {
                tracing::warn!(deployment = %name, partition = batch.partition, "dropped a late record its topic refuses");
                continue;
            }
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
                self.send(out, Role::Late(i as u32), acks);
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
    pub(super) fn dead_letter(
        &self,
        batch: &InputBatch,
        i: u32,
        kind: FailureKind,
        message: &str,
        what: DeadLetter,
        acks: &Arc<Acks>,
    ) {
        let name = self.name();
        // Too large for the dead-letter topic, found in an aborted
        // transaction: without its value, as at-least-once does.
        let what = if self.refused_of(batch, i).is_some_and(|r| r.dead_letter) {
            DeadLetter::WithoutValue
        } else {
            what
        };
        let i = i as usize;
        let r = &batch.records[i];
        let now_ms = weir_abi::now_ms();
        let (partition, offset, now, original) = (
            batch.partition.to_string(),
            r.offset.to_string(),
            now_ms.to_string(),
            r.timestamp.to_string(),
        );
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
        let all = batch
            .headers(i)
            .chain(weir_headers.iter().map(|(k, v)| (*k, Some(*v))));
        let dlq = self.deployment.config.dead_letter_topic(name);
        let out = Out {
            topic: &dlq,
            key: batch.key(i),
            value,
            headers: headers(all),
            timestamp: Some(timestamp),
            partition: None,
        };
        let role = match what {
            DeadLetter::Whole => Role::DeadLetter(i as u32),
            DeadLetter::WithoutValue => Role::BareDeadLetter(i as u32),
        };
        self.send(out, role, acks);
        self.shared
            .metrics
            .dead_lettered
            .with_label_values(&[&self.deployment.tenant, name, &batch.partition.to_string()])
            .inc();
    }
}

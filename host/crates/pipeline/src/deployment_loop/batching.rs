//! Fetching into per-partition buffers (pausing partitions past their
//! limits) and handing ready batches to the workers, in timestamp order
//! across a partition's inputs (`order`).
//!
//! (Over 400 lines: fetching and dispatch share the buffers' pause and resume rules.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use super::core::DeploymentLoop;
use super::io::Source;
use crate::deployment::Deployment;
use crate::order;
use crate::order::{Bound, InputView, Next};
use crate::partition::{BatchLimits, Buffer, Partition, Waiting};
use crate::workers::{Job, Slice, Work};

/// One consumed record, as the loop buffers it.
pub(super) struct Consumed<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// ms since the epoch; -1 when the record has none.
    pub(super) timestamp: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: Option<&'a [u8]>,
    pub(super) headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    pub(super) arrived: Arrival,
}

/// When a burst of polled records arrived: the clock read once a burst,
/// not twice a record.
#[derive(Clone, Copy)]
pub(super) struct Arrival {
    pub(super) at: Instant,
    /// ms since the epoch.
    pub(super) epoch_ms: i64,
}

impl Arrival {
    pub(super) fn now() -> Self {
        Arrival {
            at: Instant::now(),
            epoch_ms: weir_abi::now_ms() as i64,
        }
    }
}

impl DeploymentLoop {
    /// Asks the brokers what their ACLs refuse the consumer (its error
    /// says only that something was), off this thread and again every
    /// 10 s, showing it in `status.denied` until they allow it all again.
    /// One such thread per deployment; it outlives this run (a restart
    /// must not leave `denied` behind) but not the deployment.
    fn check_denial(&self) {
        if self.deployment.checking_denial.swap(true, Ordering::AcqRel) {
            return;
        }
        use weir_kafka::acl::{Denied, Operation::Read, Permission, Resource};
        let mut wanted: Vec<Permission> = self
            .deployment
            .config
            .inputs
            .iter()
            .map(|t| Permission::new(Read, Resource::Topic, t))
            .collect();
        wanted.push(Permission::new(
            Read,
            Resource::Group,
            &self.deployment.group,
        ));
        let (deployment, kafka, shutdown) = (
            Arc::downgrade(&self.deployment),
            self.shared.kafka.clone(),
            self.shared.shutdown.clone(),
        );
        let spawned = std::thread::Builder::new().name(format!("weir-acl-{}", self.name())).spawn(move || {
            let (mut said, mut cluster) = (false, None);
            loop {
                // One connection for every check, made when it can be.
                if cluster.is_none() {
                    cluster = weir_kafka::Cluster::connect(&kafka).ok();
                }
                let missing = cluster.as_ref().map(|c| c.missing(&wanted));
                let Some(d) = deployment.upgrade() else { return };
                match missing {
                    Some(missing) if missing.is_empty() => {
                        if d.status.lock().denied.take().is_some() {
                            tracing::info!(deployment = %d.name, "the Kafka ACLs allow the consumer again");
                        }
                        d.checking_denial.store(false, Ordering::Release);
                        return;
                    }
                    Some(missing) => {
                        let named = Denied(missing).to_string();
                        if !said {
                            tracing::warn!(deployment = %d.name, error = %named, "the consumer is refused");
                            said = true;
                        }
                        let mut status = d.status.lock();
                        status.last_error = Some(named.clone());
                        status.denied = Some(named);
                    }
                    // Unreachable now: the consumer says so itself.
                    None => {}
                }
                drop(d);
                for _ in 0..100 {
                    if shutdown.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        if spawned.is_err() {
            self.deployment
                .checking_denial
                .store(false, Ordering::Release);
        }
    }

    pub(super) fn on_message(
        &mut self,
        source: &dyn Source,
        m: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        arrived: Arrival,
    ) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                // Mostly transient (broker restarts, rebalances), and
                // librdkafka retries; one that keeps a partition from
                // getting anywhere shows as `unreadable` (`record_lag`).
                let why = e.to_string();
                self.shared
                    .metrics
                    .consumer_errors
                    .with_label_values(&[self.deployment.tenant.as_str(), self.name()])
                    .inc();
                // Each error once a minute, however they alternate (a
                // bounded memory of them: forgotten all at once when full).
                let logged = &mut self.consumer_errors_logged;
                logged.retain(|_, at| at.elapsed() < Duration::from_secs(60));
                if logged.len() >= 32 {
                    logged.clear();
                }
                if !logged.contains_key(&why) {
                    logged.insert(why.clone(), Instant::now());
                    tracing::warn!(deployment = %self.name(), error = %why, "consumer error");
                }
                if e.rdkafka_error_code()
                    .is_some_and(weir_kafka::acl::is_denial)
                {
                    self.check_denial();
                }
                if matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_))
                    && self.fatal.is_none()
                {
                    self.fatal = Some(source.fatal_error().unwrap_or_else(|| why.clone()));
                }
                self.consumer_error = Some((why, Instant::now()));
                return;
            }
        };
        let headers = weir_kafka::headers_of(&m);
        let record = Consumed {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            key: m.key(),
            value: m.payload(),
            headers,
            arrived,
        };
        self.on_record(source, record);
    }

    /// Buffers a consumed record in its partition, pausing the input once
    /// the buffer is full.
    pub(super) fn on_record(&mut self, source: &dyn Source, m: Consumed<'_>) {
        let host = &self.shared.host;
        let limits = self.batch_limits();
        let (max_records, max_bytes, max_future_ms) = (
            host.max_buffered_records,
            host.max_buffered_bytes,
            host.max_future_ms,
        );
        let Some(p) = self.parts.get_mut(&m.partition) else {
            return;
        };
        if p.stopped.is_some() {
            return;
        }
        let topic = m.topic;
        let Some(buffer) = p.inputs.get_mut(topic) else {
            return;
        };
        let timestamp = m.timestamp;
        // A time far ahead of the clock would move the partition's stream
        // time (TTLs, windows) past every real record for good.
        let now_ms = m.arrived.epoch_ms;
        let invalid = (timestamp > now_ms.saturating_add(max_future_ms as i64))
            .then(|| format!("its timestamp {timestamp} is more than host.max_future_ms = {max_future_ms} ms ahead of this host's clock ({now_ms})"));
        buffer.push(
            limits, m.offset, timestamp, m.key, m.value, m.headers, invalid,
        );
        p.last_record = m.arrived.at;
        p.idle_closed = false;
        if !buffer.paused && buffer.full(max_records, max_bytes, limits) {
            // Backpressure: stop fetching until the transform catches up.
            buffer.paused = true;
            source.pause(topic, m.partition);
        }
    }

    pub(super) fn pump(&mut self, source: &dyn Source) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(source, done);
        }
        self.took_over(source);
        self.settle(source);
        self.release_holds(source);
        if Instant::now() >= self.next_commit {
            let interval = self
                .deployment
                .config
                .commit_interval_ms(self.shared.host.commit_interval_ms);
            self.next_commit = Instant::now() + Duration::from_millis(interval);
            for p in self.parts.values_mut() {
                p.commit_due = true;
            }
        }
        self.commit(source);
        if !self.stopping {
            self.dispatch(source);
            self.close_idle_windows(source);
            self.fire_wall_clock_timers();
        }
    }

    /// Starts a batch on every idle partition with a ready buffer.
    pub(super) fn dispatch(&mut self, source: &dyn Source) {
        let (limits, linger) = (self.batch_limits(), self.linger());
        let (resume_records, resume_bytes) = (
            self.shared.host.max_buffered_records / 2,
            self.shared.host.max_buffered_bytes / 2,
        );
        let max_wait = Duration::from_millis(self.shared.host.max_input_wait_ms);
        let caught_up = |b: &Buffer, n: i32| source.caught_up(b.topic(), n, b.next_offset());
        for p in self.parts.values_mut() {
            if p.in_flight
                || p.stopped.is_some()
                || p.commit_due
                || p.hold_until.is_some()
                || p.state.is_none()
            {
                continue;
            }
            // One job takes batches of the inputs in timestamp order, so
            // interleaved inputs cost a call each, not a job each.
            let (mut slices, mut records, mut bytes) = (Vec::new(), 0, 0);
            while records < limits.records && bytes < limits.bytes {
                let Some((topic, bound)) =
                    next_input(&caught_up, p, limits, linger, max_wait, &self.deployment)
                else {
                    break;
                };
                let Some(buffer) = p.inputs.get_mut(&topic) else {
                    break;
                };
                let Some(chunk) = buffer.take(bound).filter(|c| !c.is_empty()) else {
                    break;
                };
                if buffer.paused && !buffer.full(resume_records, resume_bytes, limits) {
                    buffer.paused = false;
                    source.resume(&topic, p.number);
                }
                (records, bytes) = (records + chunk.len(), bytes + chunk.held_bytes());
                let (batch, invalid) = chunk.finish_checked();
                slices.push(Slice { batch, invalid });
            }
            if slices.is_empty() {
                continue;
            }
            let Some(state) = p.state.take() else {
                continue;
            };
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::Batch(slices),
                state,
                reply: self.done_tx.clone(),
            };
            self.shared
                .workers
                .submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    /// Asks the transform to close windows of partitions idle for a while
    /// (only transforms that asked for idle closing act on it).
    pub(super) fn close_idle_windows(&mut self, source: &dyn Source) {
        let max_wait = Duration::from_millis(self.shared.host.max_input_wait_ms);
        for p in self.parts.values_mut() {
            let idle = p.last_record.elapsed();
            if p.in_flight
                || p.idle_closed
                || p.stopped.is_some()
                || p.commit_due
                || p.hold_until.is_some()
                || p.buffered() > 0
                || idle < Duration::from_secs(1)
            {
                continue;
            }
            // Quiet because its records are late in coming (a backlog, a
            // slow fetch, records behind an open transaction), not because
            // there are none: closing now would make them late. For as long
            // as a partition waits for an input, at most.
            let behind = p
                .inputs
                .values()
                .any(|b| !source.caught_up(b.topic(), p.number, b.next_offset()));
            if behind && idle < Duration::from_secs(1) + max_wait {
                continue;
            }
            let Some(state) = p.state.take() else {
                continue;
            };
            p.idle_closed = true;
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::CloseIdle {
                    idle_ms: idle.as_millis() as u64,
                },
                state,
                reply: self.done_tx.clone(),
            };
            self.shared
                .workers
                .submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }

    /// Fires due wall-clock timers of partitions between batches.
    pub(super) fn fire_wall_clock_timers(&mut self) {
        let now = weir_abi::now_ms() as i64;
        for p in self.parts.values_mut() {
            if p.in_flight
                || p.stopped.is_some()
                || p.commit_due
                || p.hold_until.is_some()
                || p.next_wall_timer.is_none_or(|t| t > now)
            {
                continue;
            }
            let Some(state) = p.state.take() else {
                continue;
            };
            p.in_flight = true;
            let job = Job {
                runnable: self.deployment.runnable(),
                partition: p.number,
                work: Work::FireTimers { now },
                state,
                reply: self.done_tx.clone(),
            };
            self.shared
                .workers
                .submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }
}

/// How long a partition waits for an input before the wait shows in its
/// status.
const WAIT_SHOWN_AFTER: Duration = Duration::from_secs(1);

/// The input partition `p` takes its next batch from, and where that batch
/// ends; none while nothing is ready or it waits for an input (see
/// `order`). A wait longer than a second shows in the deployment's status;
/// past `max_wait` the partition goes on without the input, and says so.
fn next_input(
    caught_up: &dyn Fn(&Buffer, i32) -> bool,
    p: &mut Partition,
    limits: BatchLimits,
    linger: Duration,
    max_wait: Duration,
    deployment: &Deployment,
) -> Option<(String, Option<Bound>)> {
    let single = p.inputs.len() == 1;
    let views: Vec<InputView> = p
        .inputs
        .values()
        .map(|b| {
            let head = b.head();
            // Only an empty input of several is ever waited for.
            let caught_up = single || head.is_some() || caught_up(b, p.number);
            InputView {
                head,
                ready: b.ready(limits, linger),
                caught_up,
            }
        })
        .collect();
    if views.iter().all(|v| v.caught_up)
        && let Some(w) = p.waiting.take()
    {
        if w.enforced {
            tracing::info!(deployment = %deployment.name, partition = p.number, "input `{}` caught up: its records are in timestamp order with the others' again", w.input);
        }
        if w.shown {
            deployment.status.lock().waiting.remove(&p.number);
        }
    }
    let enforce = p.waiting.as_ref().is_some_and(|w| w.enforced);
    let topic_at = |i: usize| {
        p.inputs
            .keys()
            .nth(i)
            .cloned()
            .expect("an input of the view")
    };
    let next = order::next(&views, enforce);
    if let Next::WaitFor { input } = next {
        let input = topic_at(input);
        let w = p.waiting.get_or_insert_with(|| Waiting {
            input: input.clone(),
            since: Instant::now(),
            shown: false,
            enforced: false,
        });
        w.input = input;
        let waited = w.since.elapsed();
        if waited >= max_wait {
            w.enforced = true;
            let why = format!(
                "processing without input `{}`: it has records on the broker that did not arrive within {} s (an open transaction, or a fetch that fails); those that arrive later may be late for windows its partners' records closed",
                w.input,
                max_wait.as_secs()
            );
            tracing::warn!(deployment = %deployment.name, partition = p.number, "{why}");
            deployment.status.lock().waiting.insert(p.number, why);
            w.shown = true;
        } else if waited >= WAIT_SHOWN_AFTER && !w.shown {
            w.shown = true;
            let why = format!(
                "waiting for input `{}`: it has records on the broker not fetched yet",
                w.input
            );
            deployment.status.lock().waiting.insert(p.number, why);
        }
    }
    match next {
        Next::Take { input, bound } => Some((topic_at(input), bound)),
        Next::WaitFor { .. } | Next::Nothing => None,
    }
}

//! Settling deliveries: moving ledgers past acknowledged groups, and what
//! happens when a delivery fails (retry from the last commit, or the
//! failure policy for records that can never be delivered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_abi::FailureKind;
use weir_engine::transform::describe_failure;
use weir_kafka::producer::{Acks, Role, Undeliverable};

use super::core::{
    DeadLetter, DeploymentLoop, MAX_FAILED_DELIVERIES, MAX_REFUSED, RELEASE_TIMEOUT,
};
use super::io::Source;
use crate::config::FailurePolicy;
use crate::ledger::{Blocked, Group};

impl DeploymentLoop {
    /// Advances committable offsets. Records that can never be delivered go
    /// to the failure policy of the input record they came from; other
    /// failed deliveries rewind the partition (with backoff, and a stop
    /// after several in a row).
    pub(super) fn settle(&mut self, source: &dyn Source) {
        let blocked: Vec<(i32, Blocked<Arc<Acks>>)> = self
            .parts
            .iter_mut()
            .filter_map(|(&n, p)| p.ledger.settle().map(|b| (n, b)))
            .collect();
        if self.exactly_once() {
            // The transaction failed: what was refused is remembered, then
            // everything goes back once (one failed try, however many
            // partitions saw it).
            let Some(&(first, _)) = blocked.first() else {
                return;
            };
            let mut why = String::new();
            for (n, b) in blocked {
                why = match b {
                    Blocked::Transient(error) => error,
                    Blocked::Permanent { group, failures } => {
                        self.remember_refused(n, &group, &failures)
                    }
                };
            }
            return self.retry_delivery(source, first, why);
        }
        for (n, b) in blocked {
            match b {
                Blocked::Transient(error) => self.retry_delivery(source, n, error),
                Blocked::Permanent { group, failures } => {
                    self.undeliverable(source, n, group, failures)
                }
            }
        }
    }

    /// Deals with records of `group` that can never be delivered, and puts
    /// the group back in front of the queue with what that produced.
    pub(super) fn undeliverable(
        &mut self,
        source: &dyn Source,
        n: i32,
        group: Group<Arc<Acks>>,
        failures: Vec<Undeliverable>,
    ) {
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
            let why = format!(
                "producing to topic `{}` failed for good: {}",
                u.topic, u.error
            );
            self.shared
                .metrics
                .failures
                .with_label_values(&[
                    &self.deployment.tenant,
                    &name,
                    &n.to_string(),
                    FailureKind::Produce.as_str(),
                ])
                .inc();
            let batch = group.batch.as_deref();
            match (u.role, batch) {
                (Role::Output(Some(i)), Some(batch)) if seen.insert(i) => {
                    match self.deployment.config.failure_policy {
                        FailurePolicy::DeadLetter => {
                            tracing::warn!(deployment = %name, "dead-lettered: {}", describe_failure(&name, batch, &weir_abi::RecordFailure { index: i, kind: FailureKind::Produce, message: why.clone() }));
                            self.dead_letter(
                                batch,
                                i,
                                FailureKind::Produce,
                                &why,
                                DeadLetter::Whole,
                                &acks,
                            );
                        }
                        FailurePolicy::Skip => {
                            tracing::warn!(deployment = %name, partition = n, "skipped an output: {why}")
                        }
                        FailurePolicy::Stop => stop(i, why.clone()),
                    }
                }
                (Role::Output(_), _) => {
                    tracing::warn!(deployment = %name, partition = n, "dropped a window result: {why}")
                }
                (Role::DeadLetter(i), Some(batch)) if seen.insert(i) => {
                    // Too large for the dead-letter topic, perhaps: once more
                    // without the value. If even that fails, nothing can take
                    // the record and the partition stops.
                    self.dead_letter(
                        batch,
                        i,
                        FailureKind::Produce,
                        &why,
                        DeadLetter::WithoutValue,
                        &acks,
                    );
                }
                (Role::DeadLetter(i) | Role::BareDeadLetter(i), _) => stop(
                    i,
                    format!("the dead-letter topic refuses the record: {why}"),
                ),
                (Role::Late(_), _) => {
                    tracing::warn!(deployment = %name, partition = n, "dropped a late record: {why}")
                }
                (Role::Changelog, _) => {}
            }
        }
        if let (Some((i, why)), Some(batch)) = (stop_at, group.batch.as_deref()) {
            // Nothing after the last commit is committed (the state holds
            // the changes of the records after this one): the partition
            // consumes again from there, this record included, when it
            // restarts.
            let why = describe_failure(
                &name,
                batch,
                &weir_abi::RecordFailure {
                    index: i,
                    kind: FailureKind::Produce,
                    message: why,
                },
            );
            self.rewind(source, n);
            self.stop_partition(source, n, why);
            return;
        }
        if let Some(p) = self.parts.get_mut(&n) {
            p.ledger.push_front(Group {
                deliveries: acks,
                positions: group.positions,
                batch: group.batch,
            });
        }
    }

    /// Exactly-once: remembers by input record what of `group` the broker
    /// refused (the transaction is aborted, and the record processed again
    /// then deals with it); returns why.
    fn remember_refused(
        &mut self,
        n: i32,
        group: &Group<Arc<Acks>>,
        failures: &[Undeliverable],
    ) -> String {
        let mut why = String::new();
        for u in failures {
            why = format!(
                "producing to topic `{}` failed for good: {}",
                u.topic, u.error
            );
            let Some(batch) = group.batch.as_deref() else {
                continue;
            };
            let i = match u.role {
                Role::Output(Some(i)) | Role::DeadLetter(i) | Role::Late(i) => i,
                // Nothing to fall back on: tried again, and the partition
                // stops if it keeps failing.
                Role::Output(None) | Role::BareDeadLetter(_) | Role::Changelog => continue,
            };
            let key = (batch.topic.clone(), n, batch.records[i as usize].offset);
            if self.refused.len() >= MAX_REFUSED && !self.refused.contains_key(&key) {
                continue;
            }
            let r = self.refused.entry(key).or_default();
            match u.role {
                Role::Output(_) => r.outputs = Some(why.clone()),
                Role::DeadLetter(_) => r.dead_letter = true,
                _ => r.late = true,
            }
        }
        why
    }

    /// A delivery failed in a way that may pass later: reprocess the
    /// partition from its last commit after a pause that doubles each time
    /// (1 s to a minute); after [`MAX_FAILED_DELIVERIES`] in a row, stop it.
    pub(super) fn retry_delivery(&mut self, source: &dyn Source, n: i32, error: String) {
        if self.exactly_once() {
            // One transaction holds every partition's work: all of it goes.
            self.abort_all(source);
            for m in self.parts.keys().copied().collect::<Vec<_>>() {
                self.retry_partition(source, m, error.clone());
            }
            return;
        }
        self.retry_partition(source, n, error);
    }

    pub(super) fn retry_partition(&mut self, source: &dyn Source, n: i32, error: String) {
        let Some(p) = self.parts.get_mut(&n) else {
            return;
        };
        p.failed_deliveries += 1;
        let tries = p.failed_deliveries;
        if tries > MAX_FAILED_DELIVERIES {
            let why = format!(
                "deployment `{}`, partition {n}: deliveries failed {tries} times in a row, the last time: {error}",
                self.deployment.name
            );
            self.rewind(source, n);
            self.stop_partition(source, n, why);
            return;
        }
        let backoff = Duration::from_secs(1 << (tries - 1).min(6)).min(Duration::from_secs(60));
        tracing::error!(deployment = %self.name(), partition = n, error = %error, "a delivery failed; reprocessing the partition from its last commit in {} s", backoff.as_secs());
        self.set_error(format!("partition {n}: delivery failed: {error}"));
        self.rewind(source, n);
        if let Some(p) = self.parts.get_mut(&n) {
            p.hold_until = Some(Instant::now() + backoff);
            for t in &self.deployment.config.inputs {
                source.pause(t, n);
            }
        }
    }

    /// Forgets everything since the partition's last commit and consumes
    /// again from there. Waits for the batch in flight.
    pub(super) fn rewind(&mut self, source: &dyn Source, n: i32) {
        self.wait_idle(source, &[n], RELEASE_TIMEOUT);
        let Some(p) = self.parts.get_mut(&n) else {
            return;
        };
        if let Some(state) = p.state.as_mut()
            && let Err(e) = state.discard_pending()
        {
            tracing::error!(deployment = %self.deployment.name, partition = n, error = %format!("{e:#}"), "reopening state failed");
        }
        p.commit_due = false;
        // Timers fired and windows closed since the commit are back: look
        // for them again.
        p.next_wall_timer = Some(i64::MIN);
        p.idle_closed = false;
        let committed = p.ledger.rewind().clone();
        if p.clear_buffers(&committed) {
            self.deployment.status.lock().waiting.remove(&n);
        }
        for t in &self.deployment.config.inputs {
            if let Err(e) = source.seek(t, n, committed.get(t).copied()) {
                tracing::error!(deployment = %self.deployment.name, topic = %t, partition = n, error = %e, "seek failed");
            }
            if p.stopped.is_none() && p.hold_until.is_none() {
                source.resume(t, n);
            }
        }
    }

    /// Resumes partitions whose delivery backoff has passed.
    pub(super) fn release_holds(&mut self, source: &dyn Source) {
        for p in self.parts.values_mut() {
            if p.hold_until.is_some_and(|t| Instant::now() >= t) {
                p.hold_until = None;
                if p.stopped.is_none() {
                    // Not an input paused for its full buffer: it resumes
                    // once the buffer has room (`dispatch`).
                    for t in self
                        .deployment
                        .config
                        .inputs
                        .iter()
                        .filter(|t| !p.inputs.get(*t).is_some_and(|b| b.paused))
                    {
                        source.resume(t, p.number);
                    }
                }
            }
        }
    }

    /// Processes completions until none of `numbers` has work in flight.
    /// A batch still out then would land on what was rewound meanwhile:
    /// the run ends instead (see [`DeploymentLoop::fatal`]).
    pub(super) fn wait_idle(
        &mut self,
        source: &dyn Source,
        numbers: &[i32],
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while numbers
            .iter()
            .any(|n| self.parts.get(n).is_some_and(|p| p.in_flight))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.fatal.get_or_insert_with(|| {
                    format!(
                        "a batch did not finish within {} s; starting the deployment again",
                        timeout.as_secs()
                    )
                });
                return false;
            }
            if let Ok(done) = self
                .done_rx
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                self.on_done(source, done);
            }
        }
        true
    }
}

//! Committing: at-least-once, offsets of partitions without state changes
//! as their ledgers allow, and state changes with their offsets in one
//! changelog transaction; exactly-once, every partition's state changes and
//! offsets into the transaction that holds what they sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weir_kafka::changelog;
use weir_kafka::changelog::Flush;
use weir_kafka::producer::Producer;
use weir_state::Checkpoint;

use super::core::{DeploymentLoop, RELEASE_TIMEOUT};
use super::io::Source;
use super::transaction::MakeProducer;
use crate::Shared;
use crate::deployment::Deployment;
use crate::workers::{Job, Work};

impl DeploymentLoop {
    /// Opens a transaction unless one is open (making the producer first).
    pub(super) fn begin(&mut self) -> Result<&Producer> {
        let (deployment, shared) = (&self.deployment, &self.shared);
        self.transaction.begin(|| make_producer(deployment, shared))
    }

    /// Starts making the transactional producer off this thread, for a
    /// commit to come (see [`Transaction::prepare`]).
    ///
    /// [`Transaction::prepare`]: super::transaction::Transaction::prepare
    pub(super) fn prepare_producer(&mut self) {
        let make = make_producer(&self.deployment, &self.shared);
        self.transaction.prepare(make);
    }

    /// Exactly-once: aborts the open transaction (once no batch is in
    /// flight, so nothing more joins it) and takes every partition back to
    /// its last commit, state included.
    pub(super) fn abort_all(&mut self, source: &dyn Source) {
        let all: Vec<i32> = self.parts.keys().copied().collect();
        self.wait_idle(source, &all, RELEASE_TIMEOUT);
        self.abort_due = false;
        if let Some(p) = self.transaction.sending() {
            let timeout = Duration::from_millis(self.shared.kafka.connect_timeout_ms.max(10_000));
            let aborted = p.abort_transaction(timeout);
            if let Err(e) = &aborted {
                self.fatal = Some(format!(
                    "aborting a transaction failed: {e}; starting the deployment again from what Kafka holds"
                ));
            }
            self.transaction.ended(aborted.is_ok());
        }
        for n in all {
            self.rewind(source, n);
        }
    }

    /// Exactly-once: one transaction holds what every partition sent since
    /// the last commit, so all of them commit together, once none has a
    /// batch in flight (no new batches start meanwhile) and what they sent
    /// is acknowledged.
    fn commit_everything(&mut self, source: &dyn Source) {
        if !self.parts.values().any(|p| p.commit_due) {
            return;
        }
        for p in self.parts.values_mut() {
            p.commit_due = true;
        }
        if self
            .parts
            .values()
            .any(|p| p.in_flight || (p.state.is_some() && p.ledger.to_commit(true).is_none()))
        {
            return;
        }
        // Partitions whose state was lost with a job that panicked sent
        // nothing since (they are stopped) and commit nothing.
        let ready: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, p)| p.state.is_some())
            .map(|(&n, _)| n)
            .collect();
        let moved = self.transaction.is_open()
            || ready.iter().any(|n| {
                let p = &self.parts[n];
                p.ledger.processed() != p.ledger.committed()
                    || p.state.as_deref().is_some_and(|s| s.has_durable_changes())
            });
        if !moved {
            for p in self.parts.values_mut() {
                p.commit_due = false;
            }
            return;
        }
        match self.commit_with_changelog(source, &ready) {
            Err(e)
                if e.downcast_ref::<weir_kafka::producer::OutcomeUnknown>()
                    .is_some() =>
            {
                self.fatal = Some(format!("{e:#}"))
            }
            Ok(ends) => {
                self.committed_with_changelog(&ready, &ends);
                // Those without state (lost to a panic) wait no more.
                for p in self.parts.values_mut() {
                    p.commit_due = false;
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(deployment = %self.deployment.name, error = %error, "commit failed; the transaction is aborted");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
                if let Some(&n) = ready.first() {
                    self.retry_delivery(source, n, format!("committing the transaction: {error}"));
                }
            }
        }
    }

    /// Partitions `numbers` committed everything they processed, their
    /// changelogs ending at `ends`.
    fn committed_with_changelog(&mut self, numbers: &[i32], ends: &BTreeMap<i32, i64>) {
        for &n in numbers {
            let Some(p) = self.parts.get_mut(&n) else {
                continue;
            };
            let positions = p.ledger.processed().clone();
            let moved = positions != *p.ledger.committed();
            self.refused
                .retain(|(t, m, o), _| *m != n || positions.get(t).is_none_or(|c| o >= c));
            p.ledger.committed_at(positions);
            if let Some(end) = ends.get(&n).filter(|&&e| e >= 0) {
                p.changelog_next = p.changelog_next.max(end + 1);
            }
            // Failures in a row end with progress, not with a commit of
            // other partitions' work (exactly-once commits all together).
            let failed = p.failed_deliveries;
            self.committed(n);
            if !moved && let Some(p) = self.parts.get_mut(&n) {
                p.failed_deliveries = failed;
            }
        }
    }

    /// Commits every partition whose commit is due and whose batch in
    /// flight is back. A partition whose state changed since its last
    /// commit waits until everything it processed is delivered, then
    /// commits state and offsets in one changelog transaction; the others
    /// commit what their deliveries allow so far, without waiting for the
    /// rest, asynchronously except while partitions are let go. Then each
    /// store is flushed with a checkpoint of what was committed.
    pub(super) fn commit(&mut self, source: &dyn Source) {
        if self.abort_due {
            self.abort_all(source);
        }
        // Lost partitions are not this host's to commit: the revocation
        // that says so is on its way (`DeploymentLoop::lose`).
        if Instant::now() < self.retry_commit_at || source.assignment_lost() {
            return;
        }
        if self.exactly_once() {
            return self.commit_everything(source);
        }
        let (mut with_state, mut offsets_only) = (Vec::new(), Vec::new());
        for (&n, p) in &self.parts {
            if !p.commit_due || p.in_flight {
                continue;
            }
            // State lost with a job that panicked: nothing more is committed.
            let Some(state) = p.state.as_deref() else {
                continue;
            };
            if !state.has_durable_changes() {
                offsets_only.push(n);
            } else if p.ledger.to_commit(true).is_some() {
                with_state.push(n);
            }
        }
        if !offsets_only.is_empty() {
            // Synchronous while partitions are let go.
            let sync = self.stopping;
            if let Err(e) = self.commit_offsets(source, &offsets_only, sync) {
                tracing::error!(deployment = %self.deployment.name, partitions = ?offsets_only, error = %format!("{e:#}"), "commit failed");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
            }
        }
        if with_state.is_empty() {
            return;
        }
        match self.commit_with_changelog(source, &with_state) {
            Err(e)
                if e.downcast_ref::<weir_kafka::producer::OutcomeUnknown>()
                    .is_some() =>
            {
                self.fatal = Some(format!("{e:#}"))
            }
            Ok(ends) => self.committed_with_changelog(&with_state, &ends),
            Err(e) => {
                // Nothing of the commit is visible: the partitions go back
                // to their last commit and process again from there.
                let error = format!("{e:#}");
                tracing::error!(deployment = %self.deployment.name, partitions = ?with_state, error = %error, "commit failed");
                self.retry_commit_at = Instant::now() + Duration::from_millis(500);
                for n in with_state {
                    self.retry_delivery(source, n, format!("committing state: {error}"));
                }
            }
        }
    }

    /// Partition `n` committed: its store is flushed with a checkpoint of
    /// the committed offsets. State changes are written by a worker, the
    /// partition in flight meanwhile (a commit's can take a store a good
    /// part of a second to take, which this thread spends polling and
    /// dispatching the other partitions); a checkpoint alone is written
    /// here.
    pub(super) fn committed(&mut self, n: i32) {
        let Some(p) = self.parts.get_mut(&n) else {
            return;
        };
        p.commit_due = false;
        p.failed_deliveries = 0;
        let checkpoint = Checkpoint {
            offsets: p.ledger.committed().clone(),
            changelog_next: p.changelog_next,
        };
        match p.state.take() {
            Some(state) if state.has_durable_changes() => {
                p.in_flight = true;
                let job = Job {
                    runnable: self.deployment.runnable(),
                    partition: n,
                    work: Work::Flush(checkpoint),
                    state,
                    reply: self.done_tx.clone(),
                };
                self.shared
                    .workers
                    .submit(&self.deployment.tenant, &self.deployment.name, job);
            }
            Some(mut state) => {
                let flushed = state.flush_with_checkpoint(&checkpoint);
                p.state = Some(state);
                if let Err(e) = flushed {
                    self.flush_failed(n, &format!("{e:#}"));
                }
            }
            None => {}
        }
    }

    /// Writing partition `n`'s committed state to its store failed: the
    /// changelog holds it, and a restore finds it there.
    pub(super) fn flush_failed(&self, n: i32, error: &str) {
        tracing::error!(deployment = %self.deployment.name, partition = n, error = %error, "flushing state failed");
    }

    /// Commits the offsets the ledgers of partitions `numbers` allow. An
    /// asynchronous commit that fails is reported by the client; the next
    /// one covers its offsets.
    pub(super) fn commit_offsets(
        &mut self,
        source: &dyn Source,
        numbers: &[i32],
        sync: bool,
    ) -> Result<()> {
        let mut offsets = Vec::new();
        let mut moved = Vec::new();
        for n in numbers {
            let p = &self.parts[n];
            if let Some(positions) = p.ledger.to_commit(false) {
                offsets.extend(positions.iter().map(|(t, &o)| (t.clone(), *n, o)));
                moved.push((*n, positions.clone()));
            }
        }
        if !offsets.is_empty() {
            let done = source.commit(&offsets, sync);
            self.fenced |= done.as_ref().is_err_and(fenced);
            done.context("committing offsets")?;
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

    /// The ready partitions' state changes, positions and offsets into the
    /// transaction (opened now at-least-once), which then commits.
    pub(super) fn commit_with_changelog(
        &mut self,
        source: &dyn Source,
        ready: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        let group = source
            .group_metadata()
            .context("the consumer has no group metadata yet")?;
        // Metadata taken before the group went on without this host fences
        // the commit; taken after, it might not (KIP-447 lets a member
        // without an id commit transactional offsets), so check in between.
        anyhow::ensure!(
            !source.assignment_lost(),
            "this host lost its partitions to a rebalance"
        );
        self.begin()?;
        let producer = self.transaction.sending().expect("just begun");
        // A partition that never processed a record has nothing to say:
        // its commit would carry no offsets, which nothing fences.
        let flushes: Vec<Flush<'_>> = ready
            .iter()
            .filter_map(|n| {
                let p = &self.parts[n];
                let state = p.state.as_deref()?;
                (!p.ledger.processed().is_empty() || state.has_durable_changes()).then(|| Flush {
                    partition: *n,
                    state,
                    positions: p.ledger.processed(),
                })
            })
            .collect();
        let timeout = Duration::from_millis(self.shared.kafka.connect_timeout_ms.max(10_000));
        let committed = changelog::commit(
            producer,
            &self.deployment.changelog_topic,
            &flushes,
            &group,
            timeout,
        );
        self.transaction.ended(committed.is_ok());
        self.fenced |= committed
            .as_ref()
            .is_err_and(|e| e.chain().filter_map(|c| c.downcast_ref()).any(fenced));
        committed
    }
}

/// What makes `deployment`'s transactional producer on this host.
fn make_producer(deployment: &Deployment, shared: &Shared) -> MakeProducer {
    let id = format!("{}.{}", deployment.group, shared.host_id);
    let interval = Duration::from_millis(
        deployment
            .config
            .commit_interval_ms(shared.host.commit_interval_ms),
    );
    let kafka = shared.kafka.clone();
    Box::new(move || {
        Producer::transactional(
            &kafka,
            &id,
            weir_kafka::producer::transaction_timeout(interval),
        )
    })
}

/// The group refused a commit because this host is no longer the member
/// (or generation) it was: its partitions are someone else's now.
fn fenced(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{FencedInstanceId, IllegalGeneration, UnknownMemberId};
    matches!(
        e.rdkafka_error_code(),
        Some(UnknownMemberId | IllegalGeneration | FencedInstanceId)
    )
}

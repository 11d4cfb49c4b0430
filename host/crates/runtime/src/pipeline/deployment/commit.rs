//! Committing: offsets of partitions without state changes as their ledgers
//! allow, and state changes with their offsets in one changelog transaction.

use super::*;

impl Runtime {
    /// Commits every partition whose commit is due and whose batch in
    /// flight is back. A partition whose state changed since its last
    /// commit waits until everything it processed is delivered, then
    /// commits state and offsets in one changelog transaction; the others
    /// commit what their deliveries allow so far, without waiting for the
    /// rest, asynchronously except while partitions are let go. Then each
    /// store is flushed with a checkpoint of what was committed.
    pub(super) fn commit(&mut self, consumer: &BaseConsumer<KafkaContext>) {
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
    pub(super) fn committed(&mut self, n: i32) {
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
    pub(super) fn commit_offsets(&mut self, consumer: &BaseConsumer<KafkaContext>, numbers: &[i32], mode: CommitMode) -> Result<()> {
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
    pub(super) fn commit_with_changelog(&mut self, consumer: &BaseConsumer<KafkaContext>, ready: &[i32]) -> Result<BTreeMap<i32, i64>> {
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
}

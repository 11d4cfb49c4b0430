//! Partitions coming and going: restoring state before consuming, and
//! finishing, committing and letting go on revocation.

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;

use super::core::{DeploymentLoop, RELEASE_TIMEOUT, RESTORE_RETRY};
use super::io::{Source, partition_numbers};
use crate::partition::Partition;

impl DeploymentLoop {
    /// Finishes in-flight work of `numbers`, commits them and lets them go.
    pub(super) fn release(&mut self, source: &dyn Source, numbers: &[i32]) {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let was_stopping = self.stopping;
        self.fenced = false;
        // No new batches for released partitions; buffered records are
        // consumed again by the next owner.
        self.stopping = true;
        for n in numbers {
            self.restoring.remove(n);
            if let Some(p) = self.parts.get_mut(n) {
                p.clear_buffers(&Default::default());
                p.commit_due = true;
            }
        }
        loop {
            if let Ok(done) = self.done_rx.recv_timeout(Duration::from_millis(5)) {
                self.on_done(source, done);
            }
            if source.assignment_lost() || self.fenced {
                // Too late to commit: the group went on without this host.
                self.stopping = was_stopping;
                return self.lose(source, numbers);
            }
            self.settle(source);
            self.retry_commit_at = Instant::now();
            for n in numbers {
                // Offsets-only commits take what is delivered so far: again
                // until everything processed is committed.
                if let Some(p) = self.parts.get_mut(n).filter(|p| !p.ledger.is_done()) {
                    p.commit_due = true;
                }
            }
            self.commit(source);
            let open = numbers
                .iter()
                .filter(|n| {
                    self.parts.get(n).is_some_and(|p| {
                        p.in_flight || (p.state.is_some() && (p.commit_due || !p.ledger.is_done()))
                    })
                })
                .count();
            if open == 0 {
                break;
            }
            if Instant::now() > deadline {
                tracing::error!(deployment = %self.deployment.name, "gave up committing released partitions after {} s; their records will be processed again", RELEASE_TIMEOUT.as_secs());
                break;
            }
        }
        self.stopping = was_stopping;
        self.forget(numbers);
    }

    /// Lets go of `numbers` without committing: the group gave them to
    /// other hosts while this one was away (frozen, cut off), so what it
    /// did since its last commit is not its to commit. A commit now could
    /// slip past the group's fencing (one without offsets, or from a member
    /// without an id), and its changelog writes would land behind the new
    /// owner's: this host's store, checkpointed past them, would skip the
    /// new owner's changes when the partitions come back to it. Everything
    /// since the last commit is dropped; the new owners process it again.
    pub(super) fn lose(&mut self, source: &dyn Source, numbers: &[i32]) {
        tracing::warn!(deployment = %self.deployment.name, partitions = ?numbers, "partitions lost: this host was out of the group; what it did since its last commit is dropped, and the new owners process it again");
        for n in numbers {
            self.restoring.remove(n);
        }
        if self.exactly_once() {
            // The open transaction holds the lost partitions' work too.
            self.abort_all(source);
        } else {
            for &n in numbers {
                self.rewind(source, n);
            }
        }
        self.forget(numbers);
    }

    fn forget(&mut self, numbers: &[i32]) {
        for n in numbers {
            if self.parts.remove(n).is_some() {
                let label = n.to_string();
                let _ = self.shared.metrics.stopped.remove_label_values(&[
                    &self.deployment.tenant,
                    &self.deployment.name,
                    &label,
                ]);
                let labels = [
                    self.deployment.tenant.as_str(),
                    self.deployment.name.as_str(),
                    &label,
                ];
                for gauge in [
                    &self.shared.metrics.consumer_lag,
                    &self.shared.metrics.consumer_lag_end,
                    &self.shared.metrics.open_transaction_seconds,
                    &self.shared.metrics.unreadable,
                ] {
                    let _ = gauge.remove_label_values(&labels);
                }
            }
            let mut status = self.deployment.status.lock();
            status.partitions.retain(|p| p != n);
            status.stopped.remove(n);
            status.failed.remove(n);
            status.late.remove(n);
            status.waiting.remove(n);
            status.lag.remove(n);
            status.lag_to_end.remove(n);
            status.held.remove(n);
            status.unreadable.remove(n);
        }
    }

    /// Starts taking over newly assigned partitions: each is paused and
    /// restored on a thread of its own; [`DeploymentLoop::took_over`] resumes it.
    pub(super) fn assign(&mut self, source: &dyn Source, tpl: &TopicPartitionList) {
        for n in partition_numbers(tpl) {
            if self.parts.contains_key(&n) || self.restoring.contains_key(&n) {
                continue;
            }
            for t in &self.deployment.config.inputs {
                source.pause(t, n);
            }
            self.start_restore(n);
        }
    }

    pub(super) fn start_restore(&mut self, n: i32) {
        self.epoch += 1;
        self.restoring.insert(n, self.epoch);
        crate::restore::spawn(
            self.shared.clone(),
            self.deployment.clone(),
            n,
            self.epoch,
            self.restore_tx.clone(),
        );
    }

    /// Handles finished restores: a partition taken over starts consuming
    /// from its positions; one that failed is reported and tried again.
    pub(super) fn took_over(&mut self, source: &dyn Source) {
        while let Ok((n, epoch, result)) = self.restore_rx.try_recv() {
            if self.restoring.get(&n) != Some(&epoch) {
                continue; // revoked meanwhile
            }
            self.restoring.remove(&n);
            let mut status = self.deployment.status.lock();
            match result {
                Ok(t) => {
                    status.failed.remove(&n);
                    status.partitions.push(n);
                    status.partitions.sort_unstable();
                    drop(status);
                    for topic in &self.deployment.config.inputs {
                        if let Some(&o) = t.positions.get(topic)
                            && let Err(e) = source.seek(topic, n, Some(o))
                        {
                            tracing::error!(deployment = %self.deployment.name, topic = %topic, partition = n, error = %e, "seek failed");
                        }
                        source.resume(topic, n);
                    }
                    self.parts.insert(
                        n,
                        Partition::new(
                            n,
                            &self.deployment.config.inputs,
                            &self.deployment.buffers,
                            t.state,
                            t.positions,
                            t.changelog_next,
                        ),
                    );
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::error!(deployment = %self.deployment.name, partition = n, error = %why, "could not take over the partition; trying again in {} s", RESTORE_RETRY.as_secs());
                    status.failed.insert(n, why);
                    self.retry_restore.insert(n, Instant::now() + RESTORE_RETRY);
                }
            }
        }
        let due: Vec<i32> = self
            .retry_restore
            .iter()
            .filter(|(_, at)| Instant::now() >= **at)
            .map(|(&n, _)| n)
            .collect();
        for n in due {
            self.retry_restore.remove(&n);
            if self.assigned.contains(&n) {
                self.start_restore(n);
            }
        }
    }
}

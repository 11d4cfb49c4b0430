//! What the consumer's callbacks posted (see `io::KafkaContext`), handled
//! by the loop when `poll` returns: client statistics (lag, inputs held or
//! unreadable) and rebalances. A rebalance is finished by the loop too:
//! librdkafka waits for its assign or unassign call, made once the revoked
//! partitions are committed and released, or once the assigned ones are
//! taken.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rdkafka::statistics::Statistics;

use super::core::DeploymentLoop;
use super::io::{Event, Source, partition_numbers};
use crate::status::{HeldInput, UnreadableInput};

impl DeploymentLoop {
    /// Handles what the callbacks posted during the last polls.
    pub(super) fn handle_events(&mut self, source: &dyn Source, events: &Receiver<Event>) {
        while let Ok(event) = events.try_recv() {
            match &event {
                Event::Stats(stats) => self.record_lag(stats),
                Event::Revoke { partitions, lost } => {
                    let numbers = partition_numbers(partitions);
                    for n in &numbers {
                        self.assigned.remove(n);
                        self.retry_restore.remove(n);
                    }
                    if *lost {
                        self.lose(source, &numbers);
                    } else {
                        tracing::info!(deployment = %self.deployment.name, partitions = ?numbers, "partitions revoked");
                        self.release(source, &numbers);
                    }
                    self.finish(source, &event);
                }
                Event::Assign(tpl) => {
                    self.finish(source, &event);
                    let numbers = partition_numbers(tpl);
                    tracing::info!(deployment = %self.deployment.name, partitions = ?numbers, "partitions assigned");
                    self.assigned.extend(&numbers);
                    self.assign(source, tpl);
                }
            }
        }
    }

    pub(super) fn finish(&self, source: &dyn Source, event: &Event) {
        if let Err(e) = source.finish_rebalance(event) {
            tracing::warn!(deployment = %self.deployment.name, error = %e, "finishing a rebalance");
        }
    }

    /// Each partition's lag from the client's statistics: to the last
    /// stable offset (what it may read) and to the high watermark (what is
    /// written), and an input held back by a transaction left open (read
    /// to its last stable offset, with records beyond), since when.
    fn record_lag(&mut self, stats: &Statistics) {
        let now = weir_abi::now_ms() as i64;
        let (mut lag, mut to_end, mut held) = (
            BTreeMap::<i32, i64>::new(),
            BTreeMap::<i32, i64>::new(),
            BTreeMap::new(),
        );
        let mut unreadable = BTreeMap::new();
        let error = self
            .consumer_error
            .as_ref()
            .filter(|(_, at)| at.elapsed() < UNREADABLE_AFTER)
            .map(|(why, _)| why.clone());
        for t in stats
            .topics
            .values()
            .filter(|t| self.deployment.config.inputs.contains(&t.topic))
        {
            for (&p, s) in &t.partitions {
                // Nothing read or committed yet: where the fetcher is.
                let position = [s.app_offset, s.committed_offset, s.next_offset]
                    .into_iter()
                    .find(|&o| o >= 0)
                    .unwrap_or(-1);
                if p < 0
                    || position < 0
                    || s.ls_offset < 0
                    || s.hi_offset < 0
                    || !self.parts.contains_key(&p)
                {
                    continue;
                }
                *lag.entry(p).or_default() += (s.ls_offset - position).max(0);
                *to_end.entry(p).or_default() += (s.hi_offset - position).max(0);
                if position >= s.ls_offset && s.hi_offset > s.ls_offset {
                    let since = *self.held_since.entry((t.topic.clone(), p)).or_insert(now);
                    held.insert(
                        p,
                        HeldInput {
                            topic: t.topic.clone(),
                            offset: s.ls_offset,
                            since_ms: since,
                        },
                    );
                }
                // Fetching at one offset with records beyond it, nothing of
                // it queued (the application has all the fetcher got) and
                // not held back by us (a full buffer, a stop, a delivery
                // retry), while the consumer reports errors: it cannot
                // read past that offset. Time held back does not count.
                let key = (t.topic.clone(), p);
                let held_back = self.parts.get(&p).is_none_or(|part| {
                    part.stopped.is_some()
                        || part.hold_until.is_some()
                        || part.inputs.get(&t.topic).is_none_or(|b| b.paused)
                });
                let since = match self.fetching_since.get(&key) {
                    Some(&(at, since)) if at == s.next_offset && !held_back => since,
                    _ => {
                        self.fetching_since
                            .insert(key.clone(), (s.next_offset, now));
                        now
                    }
                };
                if let Some(why) = &error
                    && s.next_offset >= 0
                    && s.next_offset < s.ls_offset
                    && position >= s.next_offset
                    && !held_back
                    && now - since >= UNREADABLE_AFTER.as_millis() as i64
                {
                    unreadable.insert(
                        p,
                        UnreadableInput {
                            topic: t.topic.clone(),
                            offset: s.next_offset,
                            since_ms: since,
                            reason: why.clone(),
                        },
                    );
                }
            }
        }
        self.held_since
            .retain(|(topic, p), _| held.get(p).is_some_and(|h| &h.topic == topic));
        self.fetching_since
            .retain(|(_, p), _| self.parts.contains_key(p));
        let metrics = &self.shared.metrics;
        for &p in self.parts.keys() {
            let labels = [
                self.deployment.tenant.as_str(),
                self.deployment.name.as_str(),
                &p.to_string(),
            ];
            metrics
                .consumer_lag
                .with_label_values(&labels)
                .set(lag.get(&p).copied().unwrap_or(0));
            metrics
                .consumer_lag_end
                .with_label_values(&labels)
                .set(to_end.get(&p).copied().unwrap_or(0));
            let open_s = held.get(&p).map_or(0, |h| (now - h.since_ms) / 1000);
            metrics
                .open_transaction_seconds
                .with_label_values(&labels)
                .set(open_s);
            metrics
                .unreadable
                .with_label_values(&labels)
                .set(i64::from(unreadable.contains_key(&p)));
        }
        let mut status = self.deployment.status.lock();
        for (p, u) in unreadable
            .iter()
            .filter(|(p, _)| !status.unreadable.contains_key(p))
        {
            tracing::error!(deployment = %self.deployment.name, partition = p, topic = %u.topic, offset = u.offset, reason = %u.reason, "an input cannot be read past an offset");
        }
        status.lag = lag;
        status.lag_to_end = to_end;
        status.held = held;
        status.unreadable = unreadable;
    }
}

/// How long a partition fetches at one offset, with consumer errors, before
/// it shows as unreadable.
const UNREADABLE_AFTER: Duration = Duration::from_secs(15);

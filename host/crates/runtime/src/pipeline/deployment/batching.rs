//! Fetching into per-partition buffers (pausing partitions past their
//! limits) and handing ready batches to the workers.

use super::*;

impl Runtime {
    pub(super) fn on_message(&mut self, consumer: &BaseConsumer<KafkaContext>, m: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
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

    pub(super) fn pump(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(consumer, done);
        }
        self.took_over(consumer);
        self.settle(consumer);
        self.release_holds(consumer);
        if Instant::now() >= self.next_commit {
            let interval = self.deployment.config.commit_interval_ms(self.shared.host.commit_interval_ms);
            self.next_commit = Instant::now() + Duration::from_millis(interval);
            for p in self.parts.values_mut() {
                p.commit_due = true;
            }
        }
        self.commit(consumer);
        if !self.stopping {
            self.dispatch(consumer);
            self.close_idle_windows();
            self.fire_wall_clock_timers();
        }
    }

    /// Starts a batch on every idle partition with a ready buffer.
    pub(super) fn dispatch(&mut self, consumer: &BaseConsumer<KafkaContext>) {
        let (limits, linger) = (self.batch_limits(), self.linger());
        let (resume_records, resume_bytes) = (self.shared.host.max_buffered_records / 2, self.shared.host.max_buffered_bytes / 2);
        for p in self.parts.values_mut() {
            if p.in_flight || p.stopped.is_some() || p.commit_due || p.hold_until.is_some() || p.state.is_none() {
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
    pub(super) fn close_idle_windows(&mut self) {
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

    /// Fires due wall-clock timers of partitions between batches.
    pub(super) fn fire_wall_clock_timers(&mut self) {
        let now = weir_abi::now_ms() as i64;
        for p in self.parts.values_mut() {
            if p.in_flight || p.stopped.is_some() || p.commit_due || p.hold_until.is_some() || p.next_wall_timer.is_none_or(|t| t > now) {
                continue;
            }
            let Some(state) = p.state.take() else { continue };
            p.in_flight = true;
            let job = Job { runnable: self.deployment.runnable(), partition: p.number, work: Work::FireTimers { now }, state, reply: self.done_tx.clone() };
            self.shared.workers.submit(&self.deployment.tenant, &self.deployment.name, job);
        }
    }
}

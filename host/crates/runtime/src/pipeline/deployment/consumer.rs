//! The consumer's callbacks: client statistics (lag), rebalances and commit
//! results. Rebalance callbacks run on the polling thread inside `poll`, and
//! must finish or hand over partitions before they return, so they take the
//! loop's state for the moment they run.

use super::*;

pub(super) struct KafkaContext {
    pub(super) runtime: Arc<Mutex<Runtime>>,
    pub(super) name: String,
}

/// Runs a callback's work; a panic in it (a bug) would unwind into
/// librdkafka's C code and abort the process, so it is caught and the
/// deployment marked down instead.
pub(super) fn guarded(runtime: &Mutex<Runtime>, what: &str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let why = format!("the host failed in {what} (a bug in Weir, please report it): {}", crate::pipeline::workers::panic_message(&*panic));
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
    pub(super) fn record_lag(&self, stats: Statistics) {
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
    pub(super) fn revoke(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
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

    pub(super) fn assigned(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut rt = lock(&self.runtime);
            let numbers = partition_numbers(tpl);
            tracing::info!(deployment = %rt.deployment.name, partitions = ?numbers, "partitions assigned");
            rt.assigned.extend(&numbers);
            rt.assign(consumer, tpl);
        }
    }
}

pub(super) fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut n: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    n.sort_unstable();
    n.dedup();
    n
}

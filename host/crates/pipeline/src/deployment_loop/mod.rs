//! One deployment on one host: its consumer (a thread polling Kafka), its
//! partitions, and the delivery bookkeeping between them.
//!
//! At-least-once (the default), precisely: an input offset is committed
//! only after every output, dead letter and late record of every record
//! before it has been acknowledged by the broker, and, when the transform
//! keeps state, after the state changes of those records have been
//! acknowledged on the changelog. The local store is flushed (with a
//! checkpoint naming the committed offsets) right after the commit. After a
//! crash, records after the last commit are processed again: their outputs
//! may appear twice, their state changes never count twice (restore skips
//! changelog records beyond the committed offsets, and the store is rebuilt
//! when it is ahead).
//!
//! Exactly-once: everything sent between two commits (outputs, dead
//! letters, late records) goes into one transaction of the deployment's
//! producer on this host, and a commit adds every partition's state changes
//! and input offsets (with the group's metadata, so a host that lost the
//! partitions is fenced, KIP-447) and commits it. Since one transaction
//! spans the host's partitions, they commit together, once none has a
//! batch in flight; anything that fails aborts it, and every partition
//! goes back to its last commit, state included.
//!
//! `run` drives the loop: it polls the consumer and hands what comes to a
//! `DeploymentLoop` (`core`), whose steps live beside it: `batching`
//! (fetch, backpressure, batches to the workers), `outputs` (what a batch
//! sends), `delivery` (settling acknowledgements into the partitions'
//! commit ledgers), `commit` (with `transaction`), `rebalance` (restore,
//! release, loss) and `events` (what Kafka's callbacks posted). The loop
//! reaches Kafka only through `io`: a `io::Source` (the consumer) and a
//! `io::Sink` (a producer), so that its unit tests (`tests`) drive it
//! with stand-ins, real workers and a real transform.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::Shared;
use crate::deployment::Deployment;

mod batching;
mod commit;
mod core;
mod delivery;
mod events;
mod io;
mod outputs;
mod rebalance;
#[cfg(test)]
mod tests;
mod transaction;

use self::batching::Arrival;
use self::core::DeploymentLoop;
use io::{KafkaContext, KafkaSource};

/// How long a stopping deployment waits to have left its group.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `deployment` until `stop` is set, then commits and leaves the group.
pub fn run(deployment: Arc<Deployment>, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Result<()> {
    // Before joining the group: a member that does not consume would hold
    // its partitions back from the other hosts.
    if !deployment.wait_for_tables(&shared, &stop)? {
        return Ok(());
    }
    let (events_tx, events) = channel();
    let consumer: BaseConsumer<KafkaContext> =
        weir_kafka::consumer_config(&shared.kafka, &deployment.group)
            .set(
                "client.id",
                weir_kafka::group::client_id(
                    &shared.host_id,
                    shared.api_url.get().map(String::as_str),
                ),
            )
            // Static membership: a host restarted after a crash takes its
            // partitions back at once instead of after the session timeout
            // (a stop leaves the group on purpose, `group::leave`). The
            // host id is stable across restarts and unique per host, as
            // the transactional ids named after it need anyway.
            .set("group.instance.id", &shared.host_id)
            .create_with_context(KafkaContext {
                events: events_tx,
                name: deployment.name.clone(),
            })
            .context("creating the consumer")?;
    // Declared after the consumer, so that a failing loop drops it first and
    // the consumer, closing, finishes its rebalances itself.
    let events = events;
    let source = KafkaSource {
        consumer: &consumer,
        from_end: weir_kafka::starts_at_end(&shared.kafka),
    };
    let producer = shared.producers.of(&deployment.tenant)?;
    let mut rt = DeploymentLoop::new(deployment.clone(), shared.clone(), Arc::new(producer));
    if rt.exactly_once() {
        // A broker that refuses transactions fails this deployment at once,
        // with that said; the others keep running.
        rt.begin()
            .context("exactly-once delivery needs Kafka transactions")?;
    }
    let topics: Vec<&str> = deployment
        .config
        .inputs
        .iter()
        .map(String::as_str)
        .collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the input topics")?;
    deployment.status.lock().down = None;
    tracing::info!(deployment = %deployment.name, group = %deployment.group, inputs = ?topics, "deployment started");
    while !stop.load(Ordering::Relaxed) {
        if let Some(why) = rt.fatal.take() {
            drop(events);
            if weir_kafka::group::fenced(&consumer) {
                // Started again, it would fence the other host in turn,
                // back and forth: it stays out until the ids differ.
                tracing::error!(deployment = %deployment.name, error = %why, "deployment stopped on this host until it restarts");
                let mut status = deployment.status.lock();
                status.down = Some(why.clone());
                status.last_error = Some(why);
                return Ok(());
            }
            // No commit on the way out: let go of the partitions (a
            // deployment failing here may not come back soon).
            weir_kafka::group::leave(&consumer, LEAVE_TIMEOUT);
            drop(consumer);
            anyhow::bail!(why);
        }
        if let Some(m) = consumer.poll(rt.poll_timeout()) {
            let arrived = Arrival::now();
            rt.on_message(&source, m, arrived);
            // Take what is already fetched without waiting.
            for _ in 0..1_000 {
                match consumer.poll(Duration::ZERO) {
                    Some(m) => rt.on_message(&source, m, arrived),
                    None => break,
                }
            }
        }
        rt.handle_events(&source, &events);
        rt.pump(&source);
    }
    rt.stopping = true;
    let owned: Vec<i32> = rt.parts.keys().copied().collect();
    rt.release(&source, &owned);
    // Rebalances that came in meanwhile have nothing left to release or
    // restore: finish them, and let the closing consumer finish any later.
    for event in events.try_iter() {
        rt.finish(&source, &event);
    }
    drop(events);
    // Staying, the group keeps the partitions for this host's return (see
    // `HostConfig::leave_group_on_shutdown`).
    let leave = !shared.stopping.load(Ordering::Relaxed) || shared.host.leave_group_on_shutdown;
    if leave && !weir_kafka::group::leave(&consumer, LEAVE_TIMEOUT) {
        tracing::warn!(deployment = %deployment.name, "could not leave the group in time; the others take its partitions after the session timeout");
    }
    drop(consumer);
    tracing::info!(deployment = %deployment.name, "deployment stopped");
    Ok(())
}

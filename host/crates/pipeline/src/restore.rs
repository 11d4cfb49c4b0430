//! Taking over a partition: opening its store and bringing it up to date
//! with the changelog, on a thread of its own so the consumer keeps polling
//! (a restore can take minutes; a consumer that does not poll for
//! `max.poll.interval.ms` leaves its group).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::Shared;
use crate::deployment::Deployment;
use weir_kafka::changelog;
use weir_state::PartitionState;
use weir_state::rocks::{RocksBackend, StoreReader};

/// A partition ready to be processed.
pub struct Takeover {
    pub state: Box<PartitionState>,
    /// Where to consume from, per input topic (none: the group's reset
    /// policy, the earliest record).
    pub positions: BTreeMap<String, i64>,
    pub changelog_next: i64,
}

/// Opens partition `n`'s store and replays what the changelog holds beyond
/// it.
///
/// Where processing resumes, per input topic: the group's committed offset;
/// failing that (it expired, or the topic became an input in an upgrade),
/// the positions of the last commit in the changelog. State is kept in
/// every case; it is rebuilt from the start of the changelog only when the
/// store is missing or does not match it (ahead of its end, or behind its
/// start).
pub fn take_over(shared: &Shared, deployment: &Deployment, n: i32) -> Result<Takeover> {
    let kafka = &shared.kafka;
    let timeout = Duration::from_millis(kafka.connect_timeout_ms.max(10_000));
    let committed = committed_offsets(shared, deployment, n, timeout)?;
    let dir = shared
        .host
        .state_dir
        .join(&deployment.storage)
        .join(n.to_string());
    let open = || -> Result<(PartitionState, StoreReader)> {
        let backend = RocksBackend::open(&dir, &shared.rocks)?;
        let reader = backend.reader();
        Ok((PartitionState::open(Box::new(backend))?, reader))
    };
    let (mut state, mut reader) = open()?;
    let local = state.checkpoint()?;
    let (low, high) = changelog::extent(kafka, &deployment.changelog_topic, n, timeout)?;
    let from = match &local {
        Some(cp) if (low..=high).contains(&cp.changelog_next) => cp.changelog_next,
        _ => {
            drop(state);
            RocksBackend::destroy(&dir)?;
            (state, reader) = open()?;
            0
        }
    };
    state.set_max_entry_bytes(deployment.changelog_entry_limit);
    let (tenant, name, label) = (
        deployment.tenant.as_str(),
        deployment.name.as_str(),
        n.to_string(),
    );
    let metrics = &shared.metrics;
    metrics
        .restoring
        .with_label_values(&[tenant, name, &label])
        .set(1);
    let started = Instant::now();
    let reported = std::cell::Cell::new(0u64);
    let progress = |applied: u64| {
        metrics
            .restored_keys
            .with_label_values(&[tenant, name, &label])
            .inc_by(applied.saturating_sub(reported.get()));
        if applied > reported.get() {
            tracing::info!(deployment = %name, partition = n, applied, "restoring state from the changelog");
        }
        reported.set(applied);
    };
    let interval = Duration::from_millis(
        deployment
            .config
            .commit_interval_ms(shared.host.commit_interval_ms),
    );
    let open_for = weir_kafka::producer::transaction_timeout(interval);
    let restored = changelog::restore(
        kafka,
        &deployment.changelog_topic,
        n,
        from.max(low)..high,
        &committed,
        open_for,
        &mut state,
        &progress,
    );
    metrics
        .restoring
        .with_label_values(&[tenant, name, &label])
        .set(0);
    let restored = restored?;
    // Queries read it once it is whole.
    shared.state_readers.add(&deployment.storage, n, reader);
    if restored.applied + restored.skipped > 0 {
        tracing::info!(deployment = %name, partition = n, applied = restored.applied, skipped = restored.skipped, seconds = started.elapsed().as_secs_f64(), "state restored");
    }
    let checkpoint = state.checkpoint()?.unwrap_or_default();
    let positions = deployment
        .config
        .inputs
        .iter()
        .filter_map(|t| {
            committed
                .get(t)
                .or_else(|| checkpoint.offsets.get(t))
                .map(|&o| (t.clone(), o))
        })
        .collect();
    Ok(Takeover {
        state: Box::new(state),
        positions,
        changelog_next: checkpoint.changelog_next,
    })
}

/// The group's committed offsets of partition `n` of each input topic,
/// read by a client of the group that does not join it.
fn committed_offsets(
    shared: &Shared,
    deployment: &Deployment,
    n: i32,
    timeout: Duration,
) -> Result<BTreeMap<String, i64>> {
    let mut c = weir_kafka::client_config(&shared.kafka);
    c.set("group.id", &deployment.group);
    let client: BaseConsumer = c.create().context("creating a client of the group")?;
    let mut tpl = TopicPartitionList::new();
    for t in &deployment.config.inputs {
        tpl.add_partition(t, n);
    }
    let committed = client
        .committed_offsets(tpl, timeout)
        .context("reading committed offsets")?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_owned(), o)),
            _ => None,
        })
        .collect())
}

/// Runs [`take_over`] on a thread; the result goes to `reply` with the
/// partition and `epoch` (which assignment asked for it).
pub fn spawn(
    shared: Arc<Shared>,
    deployment: Arc<Deployment>,
    n: i32,
    epoch: u64,
    reply: std::sync::mpsc::Sender<(i32, u64, Result<Takeover>)>,
) {
    let name = format!("weir-restore-{n}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            take_over(&shared, &deployment, n)
        }))
        .unwrap_or_else(|p| {
            Err(anyhow::anyhow!(
                "restoring panicked: {}",
                crate::workers::panic_message(&*p)
            ))
        });
        let _ = reply.send((
            n,
            epoch,
            result.with_context(|| format!("taking over partition {n}")),
        ));
    });
    if let Err(e) = spawned {
        tracing::error!(partition = n, error = %e, "could not start a restore thread");
    }
}

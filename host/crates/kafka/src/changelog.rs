//! Changelog topics: every durable state change of a deployment is also
//! produced to the compacted topic `<group_prefix>.changelog.<deployment>`
//! (`weir.changelog.<deployment>` by default; partition = input partition),
//! so a host that lost its disk, or that takes over a partition, rebuilds
//! the state exactly.
//!
//! A commit writes, in one Kafka transaction, the pending changes of the
//! partitions it covers, their stream times (`STREAM_TIME_KEY`; a partition
//! without state changes commits offsets alone, so a restore may find a
//! stream time behind them, which the next records move on), one record
//! per partition under [`POSITIONS_KEY`] naming the input positions those
//! changes reflect, and the consumer group's offsets: all of it becomes visible to `read_committed` readers,
//! or none of it. A restore therefore applies every record it sees, and
//! resumes from the positions of the last commit it saw when the group's
//! offsets are gone (expired) or name other topics (the inputs changed). No
//! record is ever skipped, so compaction (which keeps the latest value of a
//! key) can never leave a restore without a committed value.
//!
//! Changelogs written by Weir before transactions carry a `weir.offsets`
//! header on each change instead; a restore skips those beyond the group's
//! committed offsets, as Weir did then.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::producer::{Acks, Out, Producer, Role};
use weir_state::{Checkpoint, PartitionState, STREAM_TIME_KEY};

/// The header older changelogs carry on every change.
pub const OFFSETS_HEADER: &str = "weir.offsets";
/// Key of a commit's positions record (the host's namespace: never a key of
/// user or window state).
pub const POSITIONS_KEY: &[u8] = b"mpositions";

/// The changelog of a deployment's storage, beside its consumer group
/// (`<group_prefix>.<storage>`), so hosts of different prefixes on one
/// cluster never share one.
pub fn topic(group_prefix: &str, storage: &str) -> String {
    format!("{group_prefix}.changelog.{storage}")
}

/// Settings of a changelog topic: compacted. (A minimum compaction lag
/// mattered when restores skipped records; they no longer do.)
pub const TOPIC_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("min.compaction.lag.ms", "3600000"),
];

pub fn encode_offsets(offsets: &BTreeMap<String, i64>) -> String {
    offsets
        .iter()
        .map(|(t, o)| format!("{t}={o}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_offsets(s: &str) -> Option<BTreeMap<String, i64>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (t, o) = p.rsplit_once('=')?;
            Some((t.to_owned(), o.parse().ok()?))
        })
        .collect()
}

/// One partition's share of a commit.
pub struct Flush<'a> {
    pub partition: i32,
    pub state: &'a PartitionState,
    /// The input positions its changes reflect.
    pub positions: &'a BTreeMap<String, i64>,
}

/// Adds `flushes` to changelog `topic` and the group's offsets to the open
/// transaction of `producer` and commits it; returns each partition's last
/// changelog offset. On failure the transaction is aborted: nothing of it
/// is visible.
pub fn commit(
    producer: &Producer,
    topic: &str,
    flushes: &[Flush<'_>],
    group: &ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>> {
    let mut groups = BTreeMap::new();
    let written = (|| -> Result<()> {
        let mut offsets = TopicPartitionList::new();
        for f in flushes {
            let acks = Acks::new();
            let positions = encode_offsets(f.positions);
            let time_bytes = f.state.stream_time().to_be_bytes();
            let stream_time = (f.state.stream_time() != i64::MIN)
                .then_some((STREAM_TIME_KEY, Some(time_bytes.as_slice())));
            let records = f
                .state
                .durable_changes()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .chain(stream_time)
                .chain([(POSITIONS_KEY, Some(positions.as_bytes()))]);
            for (key, value) in records {
                let out = Out {
                    topic,
                    key: Some(key),
                    value,
                    headers: None,
                    timestamp: None,
                    partition: Some(f.partition),
                };
                producer
                    .send(out, Role::Changelog, &acks, &|| false)
                    .with_context(|| format!("producing to changelog {topic}"))?;
            }
            for (t, &o) in f.positions {
                offsets.add_partition_offset(t, f.partition, Offset::Offset(o))?;
            }
            groups.insert(f.partition, acks);
        }
        producer
            .commit_transaction(&offsets, group, timeout)
            .context("committing the changelog transaction")?;
        Ok(())
    })();
    if let Err(e) = written {
        if producer.abort_transaction(timeout).is_err() {
            return Err(e.context(crate::producer::OutcomeUnknown));
        }
        return Err(e);
    }
    // The commit waited for every delivery; their reports follow shortly.
    let deadline = Instant::now() + Duration::from_secs(1);
    while groups.values().any(|a| !a.settled()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(groups
        .into_iter()
        .map(|(n, a)| (n, a.max_offset()))
        .collect())
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changes applied.
    pub applied: u64,
    /// Changes of older changelogs skipped as uncommitted.
    pub skipped: u64,
    /// The input positions of the last commit read, if any.
    pub positions: Option<BTreeMap<String, i64>>,
    /// The offset after the last record read.
    pub end: i64,
}

/// Reports a reader's errors except the ends of partitions it is told of
/// (`enable.partition.eof`), which it reads as events, not failures, and
/// what librdkafka reports while the reader closes (a connection dropped
/// half-made, a TLS and SASL handshake to the group coordinator on a
/// secured cluster), which is no failure either.
#[derive(Default)]
pub struct ReaderContext {
    closing: std::sync::atomic::AtomicBool,
}

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if self.closing.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!("librdkafka, closing a reader: {error}: {reason}");
        } else if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// A consumer of [`reader_config`] that closes quietly.
pub struct Reader(BaseConsumer<ReaderContext>);

impl Reader {
    fn new(config: &rdkafka::ClientConfig) -> Result<Reader> {
        Ok(Reader(
            config
                .create_with_context(ReaderContext::default())
                .context("creating a reader")?,
        ))
    }
}

impl std::ops::Deref for Reader {
    type Target = BaseConsumer<ReaderContext>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.0
            .context()
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A [`Reader`] of `kafka`.
pub fn reader(kafka: &KafkaConfig) -> Result<Reader> {
    Reader::new(&reader_config(kafka))
}

/// A consumer that reads one partition start to end as fast as the broker
/// serves it, committed transactions only. With librdkafka's defaults, the
/// fetcher pauses for `fetch.queue.backoff.ms` (1 s) whenever 100 000
/// records are queued, which caps a restore at ~100 k records/s however
/// fast it applies them.
pub fn reader_config(kafka: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = crate::client_config(kafka);
    // librdkafka assigns only in a group (never joined, nothing committed):
    // one under the prefix, which the ACLs allow the host already, and no
    // deployment's (their names have no `.`, their incarnations are hex).
    c.set(
        "group.id",
        format!("{}.readers.restore", kafka.group_prefix),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "true")
    .set("isolation.level", "read_committed")
    .set("fetch.max.bytes", "67108864")
    .set("max.partition.fetch.bytes", "33554432")
    .set("queued.min.messages", "1000000")
    .set("queued.max.messages.kbytes", "262144")
    .set("fetch.queue.backoff.ms", "10");
    c
}

/// The first and next offsets of changelog partition `partition`, open
/// transactions included (a reader of committed records would be told the
/// last stable offset for the end).
pub fn extent(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64)> {
    // No group: it assigns nothing, and needs no coordinator connection.
    let log = Reader::new(
        reader_config(kafka)
            .remove("group.id")
            .set("isolation.level", "read_uncommitted"),
    )?;
    log.fetch_watermarks(topic, partition, timeout)
        .with_context(|| format!("reading the extent of {topic} partition {partition}"))
}

/// Replays changelog partition `partition` of `topic` over `span` (from
/// where the store is, within [`extent`], to the extent's end) up to its
/// last committed record into `state`, and flushes it with a
/// checkpoint at `positions` (or the positions of the last commit read).
/// `legacy_committed` decides the records of older changelogs. A
/// transaction open on the changelog is waited for; `open_for` is how long
/// one may stay open before the broker aborts it.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    span: std::ops::Range<i64>,
    legacy_committed: &BTreeMap<String, i64>,
    open_for: Duration,
    state: &mut PartitionState,
    progress: &dyn Fn(u64),
) -> Result<Restored> {
    let timeout = Duration::from_millis(kafka.connect_timeout_ms.max(10_000));
    let high = span.end;
    let mut restored = Restored {
        end: span.start,
        ..Restored::default()
    };
    if restored.end < high {
        // Made only when there is something to read: each reader is a
        // connection (and a handshake) more.
        let consumer = reader(kafka).context("the changelog")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(restored.end))?;
        consumer.assign(&tpl)?;
        let mut last_progress = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut batch = Vec::with_capacity(10_000);
        // A transaction another host left open holds the end back until it
        // ends or times out (the broker looks for those every 10 s).
        let patience = timeout.max(open_for) + Duration::from_secs(15);
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                None => {
                    if idle_since.get_or_insert_with(Instant::now).elapsed() > patience {
                        bail!(
                            "restoring {topic} partition {partition}: no data for {} s at offset {} of {high}: a transaction still open (of a host that stopped mid-commit) holds the rest back until it ends or times out",
                            patience.as_secs(),
                            restored.end
                        );
                    }
                    continue;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    // Reading committed records only, the end is the last
                    // stable offset: before `high` while a transaction is
                    // open. The previous owner's last commit is one until its
                    // markers land, which may be after its offsets did (they
                    // are on another broker, say): read on until every
                    // transaction open at the start has ended.
                    let at = consumer
                        .position()?
                        .find_partition(topic, partition)
                        .map(|e| e.offset());
                    if matches!(at, Some(Offset::Offset(at)) if at >= high) {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Err(e)
                        .with_context(|| format!("reading {topic} partition {partition}"));
                }
                Some(Ok(m)) => {
                    idle_since = None;
                    restored.end = m.offset() + 1;
                    let Some(key) = m.key() else { continue };
                    if key == POSITIONS_KEY {
                        restored.positions = m
                            .payload()
                            .and_then(|v| decode_offsets(std::str::from_utf8(v).ok()?));
                        continue;
                    }
                    if !legacy_covered(&m, legacy_committed) {
                        restored.skipped += 1;
                        continue;
                    }
                    batch.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
                    restored.applied += 1;
                    if batch.len() == 10_000 {
                        state.write_restored(&batch)?;
                        batch.clear();
                    }
                    if restored.applied.is_multiple_of(4096)
                        && last_progress.elapsed() > Duration::from_secs(1)
                    {
                        progress(restored.applied);
                        last_progress = Instant::now();
                    }
                }
            }
        }
        state.write_restored(&batch)?;
    }
    let offsets = restored
        .positions
        .clone()
        .or_else(|| state.checkpoint().ok().flatten().map(|c| c.offsets))
        .unwrap_or_default();
    state.flush_with_checkpoint(&Checkpoint {
        offsets,
        changelog_next: restored.end,
    })?;
    progress(restored.applied);
    Ok(restored)
}

/// Whether a change of an older changelog (with the `weir.offsets` header)
/// belongs to committed processing; changes without it are committed by
/// their transaction.
fn legacy_covered(
    m: &rdkafka::message::BorrowedMessage<'_>,
    committed: &BTreeMap<String, i64>,
) -> bool {
    let headers = crate::headers_of(m);
    let Some((_, value)) = headers
        .iter()
        .find(|(k, _)| *k == OFFSETS_HEADER.as_bytes())
    else {
        return true;
    };
    value
        .and_then(|v| decode_offsets(std::str::from_utf8(v).ok()?))
        .is_some_and(|offsets| {
            offsets
                .iter()
                .all(|(t, o)| committed.get(t).is_some_and(|c| o <= c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_header_round_trips() {
        let o: BTreeMap<String, i64> = [("a.b".to_owned(), 5), ("c".to_owned(), 0)].into();
        assert_eq!(decode_offsets(&encode_offsets(&o)), Some(o));
        assert_eq!(decode_offsets("x=notanumber"), None);
    }
}

//! Changelog topics: every durable state change of a deployment is also
//! produced to the compacted topic `<group_prefix>.changelog.<deployment>`
//! (`weir.changelog.<deployment>` by default; partition
//! = input partition), so a host that lost its disk, or that takes over a
//! partition, rebuilds the state exactly.
//!
//! Each changelog record carries header `weir.offsets`: the input positions
//! (`topic=next-offset`, comma separated) the change reflects. Changes are
//! produced at commit time and acknowledged before those positions are
//! committed; on restore, a change whose positions are beyond the committed
//! ones belongs to processing that will be redone, and is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use super::{Checkpoint, PartitionState};
use crate::config::KafkaConfig;
use crate::kafka::producer::{Acks, Out, Producer};

pub const OFFSETS_HEADER: &str = "weir.offsets";

/// The changelog of a deployment's storage, beside its consumer group
/// (`<group_prefix>.<storage>`), so hosts of different prefixes on one
/// cluster never share one.
pub fn topic(group_prefix: &str, storage: &str) -> String {
    format!("{group_prefix}.changelog.{storage}")
}

/// Settings of a changelog topic: compacted, and compacted late enough that
/// a restore never finds a committed change replaced by an uncommitted one.
pub const TOPIC_CONFIG: &[(&str, &str)] = &[("cleanup.policy", "compact"), ("min.compaction.lag.ms", "3600000")];

pub fn encode_offsets(offsets: &BTreeMap<String, i64>) -> String {
    offsets.iter().map(|(t, o)| format!("{t}={o}")).collect::<Vec<_>>().join(",")
}

pub fn decode_offsets(s: &str) -> Option<BTreeMap<String, i64>> {
    s.split(',').filter(|p| !p.is_empty()).map(|p| {
        let (t, o) = p.rsplit_once('=')?;
        Some((t.to_owned(), o.parse().ok()?))
    }).collect()
}

/// Produces the partition's pending durable changes, tagged with the
/// positions they reflect; returns how many.
pub fn produce(producer: &Producer, topic: &str, partition: i32, state: &PartitionState, positions: &BTreeMap<String, i64>, acks: &Arc<Acks>) -> Result<usize> {
    let header = encode_offsets(positions);
    let mut n = 0;
    for (key, value) in state.durable_changes() {
        let headers = OwnedHeaders::new().insert(Header { key: OFFSETS_HEADER, value: Some(header.as_bytes()) });
        let out = Out { topic, key: Some(key), value: value.as_deref(), headers: Some(headers), timestamp: None, partition: Some(partition) };
        producer.send(out, crate::kafka::producer::Role::Changelog, acks, &|| false).with_context(|| format!("producing to changelog {topic}"))?;
        n += 1;
    }
    Ok(n)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changes applied.
    pub applied: u64,
    /// Changes skipped because they reflect uncommitted processing.
    pub skipped: u64,
}

/// A consumer that reads one partition start to end as fast as the broker
/// serves it. With librdkafka's defaults, the fetcher pauses for
/// `fetch.queue.backoff.ms` (1 s) whenever 100 000 records are queued,
/// which caps a restore at ~100 k records/s however fast it applies them.
pub fn reader_config(kafka: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = crate::kafka::client_config(kafka);
    c.set("group.id", "weir-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "33554432")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", "262144")
        .set("fetch.queue.backoff.ms", "10");
    c
}

/// Replays changelog partition `partition` of `topic` from offset `from` to
/// its current end into `state`, applying the changes covered by
/// `committed`; leaves the state flushed with a checkpoint at `committed`.
pub fn restore(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    from: i64,
    committed: &BTreeMap<String, i64>,
    state: &mut PartitionState,
    progress: &dyn Fn(u64),
) -> Result<Restored> {
    let consumer: BaseConsumer = reader_config(kafka).create().context("creating the changelog reader")?;
    let timeout = Duration::from_millis(kafka.connect_timeout_ms.max(10_000));
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).with_context(|| format!("reading the extent of {topic} partition {partition}"))?;
    let mut restored = Restored::default();
    let start = from.max(low);
    if start < high {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        consumer.assign(&tpl)?;
        let mut next = start;
        let mut last_progress = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut last_header: Option<(Vec<u8>, bool)> = None;
        let mut batch = Vec::with_capacity(10_000);
        while next < high {
            match consumer.poll(Duration::from_millis(200)) {
                None => {
                    if idle_since.get_or_insert_with(Instant::now).elapsed() > timeout {
                        bail!("restoring {topic} partition {partition}: no data for {} s at offset {next} of {high}", timeout.as_secs());
                    }
                    continue;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic} partition {partition}")),
                Some(Ok(m)) => {
                    idle_since = None;
                    next = m.offset() + 1;
                    // The changes of one commit share their header: decide once.
                    let header = m.headers().and_then(|h| h.iter().find(|h| h.key == OFFSETS_HEADER).and_then(|h| h.value));
                    let covered = match (&last_header, header) {
                        (Some((seen, covered)), Some(h)) if seen.as_slice() == h => *covered,
                        _ => {
                            let covered = header
                                .and_then(|v| decode_offsets(std::str::from_utf8(v).ok()?))
                                .is_some_and(|offsets| offsets.iter().all(|(t, o)| committed.get(t).is_some_and(|c| o <= c)));
                            last_header = header.map(|h| (h.to_vec(), covered));
                            covered
                        }
                    };
                    if !covered {
                        restored.skipped += 1;
                        continue;
                    }
                    let Some(key) = m.key() else { continue };
                    batch.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
                    restored.applied += 1;
                    if batch.len() == 10_000 {
                        state.write_restored(&batch)?;
                        batch.clear();
                    }
                    if restored.applied % 4096 == 0 && last_progress.elapsed() > Duration::from_secs(1) {
                        progress(restored.applied);
                        last_progress = Instant::now();
                    }
                }
            }
        }
        state.write_restored(&batch)?;
    }
    state.flush_with_checkpoint(&Checkpoint { offsets: committed.clone(), changelog_next: high })?;
    progress(restored.applied);
    Ok(restored)
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

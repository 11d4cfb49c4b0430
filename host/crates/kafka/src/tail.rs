//! The last records of a topic, for people to look at (the console's dead
//! letters): read from each partition's end backwards by a bounded count,
//! within a deadline, every field cut to a display size.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::KafkaConfig;

/// Bytes of a key, value or header value shown; the rest is cut.
pub const SHOWN_BYTES: usize = 1024;

#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// Lossy UTF-8, at most [`SHOWN_BYTES`].
    pub key: Option<String>,
    pub value: Option<String>,
    /// The value's full length, when it was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<usize>,
    /// The value is shown decoded from its format (Avro, Protobuf, JSON
    /// Schema in the registry's wire format) as JSON text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub decoded: bool,
    pub headers: Vec<(String, Option<String>)>,
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN_BYTES)]).into_owned()
}

/// The newest `limit` records of `topic` that `keep` accepts, newest
/// first, looking at no more than `scan` records per partition and for no
/// longer than `deadline`; values shown as `decode` reads them (given the
/// record's headers), if it can.
pub fn newest(
    kafka: &KafkaConfig,
    topic: &str,
    limit: usize,
    scan: i64,
    deadline: Duration,
    keep: impl Fn(&Shown) -> bool,
    decode: impl Fn(&[(String, Option<String>)], &[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<Shown>> {
    let started = Instant::now();
    let consumer: BaseConsumer = crate::client_config(kafka)
        // Assigned, never joined (see `changelog::reader_config`).
        .set(
            "group.id",
            format!("{}.readers.console", kafka.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // What is fetched ahead, bounded: dead letters may be large.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "8388608")
        .create()
        .context("creating a reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), deadline)
        .with_context(|| format!("reading the metadata of `{topic}`"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, deadline.saturating_sub(started.elapsed()))
            .with_context(|| format!("`{topic}` partition {p}"))?;
        if high > low {
            assignment.add_partition_offset(topic, p, Offset::Offset((high - scan).max(low)))?;
            ends.insert(p, high);
        }
    }
    let mut found = Vec::new();
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment)?;
    while !ends.is_empty() && started.elapsed() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = match m {
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                ends.remove(&p);
                continue;
            }
            m => m.with_context(|| format!("reading `{topic}`"))?,
        };
        let headers: Vec<(String, Option<String>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (shown(h.key.as_bytes()), h.value.map(shown)))
                    .collect()
            })
            .unwrap_or_default();
        let decoded = m.payload().and_then(|v| decode(&headers, v));
        let value = decoded.as_deref().or(m.payload());
        let record = Shown {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(shown),
            value: value.map(shown),
            value_bytes: value.filter(|v| v.len() > SHOWN_BYTES).map(<[u8]>::len),
            decoded: decoded.is_some(),
            headers,
        };
        if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(i64::MAX) {
            ends.remove(&m.partition());
        }
        if keep(&record) {
            found.push(record);
        }
    }
    found.sort_by_key(|r| std::cmp::Reverse((r.timestamp_ms, r.offset)));
    found.truncate(limit);
    Ok(found)
}

//! Moving a consumer group's offsets (`weir reset`): where to start from,
//! resolved per partition against the cluster, and the commit of an empty
//! group's offsets by a client that does not join it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::KafkaConfig;

/// Offsets by topic and partition.
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Where a reset starts each input partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "serde_json::Value")]
pub enum ResetTo {
    /// `earliest`, `latest`, or an RFC 3339 time (the first record at or
    /// after it).
    Named(String),
    /// Offsets of some partitions; the others stay where they are.
    Offsets(Offsets),
}

impl TryFrom<serde_json::Value> for ResetTo {
    type Error = String;

    // Serde's untagged enums cannot read JSON's string map keys as numbers.
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::String(s) => Ok(ResetTo::Named(s)),
            v => serde_json::from_value(v)
                .map(ResetTo::Offsets)
                .map_err(|e| format!("offsets must be {{TOPIC: {{PARTITION: OFFSET}}}}: {e}")),
        }
    }
}

enum Point {
    Earliest,
    Latest,
    Time(i64),
}

impl ResetTo {
    fn point(&self) -> Result<Option<Point>> {
        Ok(match self {
            ResetTo::Offsets(_) => None,
            ResetTo::Named(s) if s == "earliest" => Some(Point::Earliest),
            ResetTo::Named(s) if s == "latest" => Some(Point::Latest),
            ResetTo::Named(s) => {
                let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("`{s}` is not `earliest`, `latest` or an RFC 3339 time such as 2026-12-05T10:00:00Z"))?;
                // Kafka reads negative times as "latest" and "earliest".
                let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                    .ok()
                    .filter(|ms| *ms >= 0);
                Some(Point::Time(ms.with_context(|| {
                    format!("`{s}` is before 1970, when Kafka's record times start")
                })?))
            }
        })
    }

    /// Checks the starting point before anything is paused.
    pub fn check(&self) -> Result<()> {
        if let ResetTo::Offsets(o) = self
            && let Some((t, p, off)) = o
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, off)| (t, p, off)))
                .find(|(_, _, off)| **off < 0)
        {
            anyhow::bail!("offset {off} of {t}:{p} is negative");
        }
        self.point().map(drop)
    }
}

impl std::fmt::Display for ResetTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetTo::Named(s) => f.write_str(s),
            ResetTo::Offsets(o) => {
                let parts: Vec<String> = o
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |(p, off)| format!("{t}:{p}={off}")))
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

fn client(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer> {
    crate::client_config(kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .with_context(|| format!("creating a client of group `{group}`"))
}

/// The offsets `to` means for every partition of `topics`; partitions
/// named by neither `to` nor `group`'s committed offsets are left out.
pub fn resolve(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    to: &ResetTo,
) -> Result<Offsets> {
    let c = client(kafka, group)?;
    let point = to.point()?;
    let mut out = Offsets::new();
    for topic in topics {
        let metadata = c
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("reading the metadata of `{topic}`"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!("input topic `{topic}` has no partitions");
        }
        let mut chosen = BTreeMap::new();
        for &p in &partitions {
            let (low, high) = c
                .fetch_watermarks(topic, p, TIMEOUT)
                .with_context(|| format!("`{topic}` partition {p}"))?;
            let offset = match &point {
                Some(Point::Earliest) => Some(low),
                Some(Point::Latest) => Some(high),
                Some(Point::Time(ms)) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(topic, p, Offset::Offset(*ms))?;
                    let found = c
                        .offsets_for_times(tpl, TIMEOUT)
                        .with_context(|| format!("finding time {ms} in `{topic}` partition {p}"))?;
                    // No record at or after the time: the end.
                    Some(
                        found
                            .elements()
                            .first()
                            .and_then(|e| e.offset().to_raw())
                            .filter(|&o| o >= 0)
                            .unwrap_or(high),
                    )
                }
                None => match to {
                    ResetTo::Offsets(o) => o
                        .get(topic)
                        .and_then(|ps| ps.get(&p))
                        .copied()
                        .map(|o| o.clamp(low, high)),
                    ResetTo::Named(_) => unreachable!("a named point"),
                },
            };
            if let Some(o) = offset {
                chosen.insert(p, o);
            }
        }
        if let ResetTo::Offsets(o) = to
            && let Some(unknown) = o
                .get(topic)
                .and_then(|ps| ps.keys().find(|p| !partitions.contains(p)))
        {
            bail!("`{topic}` has no partition {unknown}");
        }
        out.insert(topic.clone(), chosen);
    }
    if let ResetTo::Offsets(o) = to
        && let Some(t) = o.keys().find(|t| !topics.contains(t))
    {
        bail!("`{t}` is not an input of the deployment");
    }
    Ok(out)
}

/// `group`'s committed offsets of every partition of `topics`.
pub fn committed(kafka: &KafkaConfig, group: &str, topics: &[String]) -> Result<Offsets> {
    let c = client(kafka, group)?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = c
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("reading the metadata of `{topic}`"))?;
        for p in metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        {
            tpl.add_partition(topic, p);
        }
    }
    let found = c
        .committed_offsets(tpl, TIMEOUT)
        .with_context(|| format!("reading the offsets of group `{group}`"))?;
    let mut out = Offsets::new();
    for e in found.elements() {
        if let Offset::Offset(o) = e.offset() {
            out.entry(e.topic().to_owned())
                .or_default()
                .insert(e.partition(), o);
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group`, which must have no members (Kafka
/// refuses commits from outside a live group).
pub fn commit(kafka: &KafkaConfig, group: &str, offsets: &Offsets) -> Result<()> {
    let c = client(kafka, group)?;
    let mut tpl = TopicPartitionList::new();
    for (topic, ps) in offsets {
        for (&p, &o) in ps {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        }
    }
    if tpl.count() > 0 {
        c.commit(&tpl, CommitMode::Sync)
            .with_context(|| format!("committing offsets of group `{group}`"))?;
    }
    Ok(())
}

/// Waits until `group` has no members, for `timeout` at most; whether it
/// emptied.
pub fn wait_empty(kafka: &KafkaConfig, group: &str, timeout: Duration) -> Result<bool> {
    let c = client(kafka, group)?;
    let deadline = Instant::now() + timeout;
    loop {
        let list = c
            .fetch_group_list(Some(group), TIMEOUT)
            .with_context(|| format!("describing consumer group `{group}`"))?;
        if list.groups().iter().all(|g| g.members().is_empty()) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_points_parse_or_say_what_is_wrong() {
        let to: ResetTo = serde_json::from_str(r#""2026-12-05T10:00:00Z""#).unwrap();
        assert!(matches!(
            to.point().unwrap(),
            Some(Point::Time(1_796_464_800_000))
        ));
        assert!(matches!(
            ResetTo::Named("earliest".into()).point().unwrap(),
            Some(Point::Earliest)
        ));
        let err = ResetTo::Named("yesterday".into()).check().unwrap_err();
        assert!(format!("{err:#}").contains("RFC 3339"), "{err:#}");
        let to: ResetTo = serde_json::from_str(r#"{"in": {"0": 5, "2": 7}}"#).unwrap();
        assert_eq!(to.to_string(), "in:0=5,in:2=7");
        // Negative times and offsets would mean "latest" or "earliest" to Kafka.
        assert!(
            ResetTo::Named("1969-12-31T23:59:59.999Z".into())
                .check()
                .is_err()
        );
        let to: ResetTo = serde_json::from_str(r#"{"in": {"0": -1}}"#).unwrap();
        assert!(to.check().is_err());
    }
}

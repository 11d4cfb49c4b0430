//! Kafka I/O: client settings, cluster checks and topic creation, and the
//! producer with delivery tracking.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub mod producer;

use crate::config::KafkaConfig;

/// Settings shared by every client.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// A consumer of a deployment's group: offsets are committed by Weir after
/// outputs are acknowledged, never automatically.
pub fn consumer_config(kafka: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("statistics.interval.ms", "5000")
        // librdkafka pauses fetching for this long whenever its queue holds
        // `queued.min.messages` (100 000): the 1 s default caps a consumer
        // near 100 k records/s.
        .set("fetch.queue.backoff.ms", "20");
    apply_user(c, kafka)
}

/// The producer of outputs, dead letters and changelogs: idempotent (no
/// duplicates or reordering from its own retries), retrying for five minutes
/// through broker outages, and partitioning keys as the Java client does so
/// keyed outputs land where Kafka Streams would put them.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "200000");
    apply_user(c, kafka)
}

/// User properties come last so they win.
fn apply_user(mut c: ClientConfig, kafka: &KafkaConfig) -> ClientConfig {
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Partition count of `topic` in `topics` (from [`Cluster::topics`]),
/// which must hold it.
pub fn partitions_of(topics: &BTreeMap<String, usize>, topic: &str) -> Result<usize> {
    match topics.get(topic) {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!("topic `{topic}` does not exist (Weir does not create input or output topics)"),
    }
}

/// What the cluster knows about topics.
pub struct Cluster {
    kafka: KafkaConfig,
    client: BaseConsumer,
    timeout: Duration,
}

impl Cluster {
    /// Connects and fetches metadata; an unreachable cluster is an error
    /// naming the brokers.
    pub fn connect(kafka: &KafkaConfig) -> Result<Cluster> {
        let mut c = client_config(kafka);
        c.set("allow.auto.create.topics", "false");
        let client: BaseConsumer = c.create().context("creating a Kafka client")?;
        let timeout = Duration::from_millis(kafka.connect_timeout_ms);
        client
            .fetch_metadata(None, timeout)
            .map_err(|e| anyhow!("cannot reach the Kafka brokers at {} within {} ms: {e}", kafka.brokers, kafka.connect_timeout_ms))?;
        Ok(Cluster { kafka: kafka.clone(), client, timeout })
    }

    /// Partition counts of every topic.
    pub fn topics(&self) -> Result<BTreeMap<String, usize>> {
        let md = self.client.fetch_metadata(None, self.timeout).context("fetching cluster metadata")?;
        Ok(md.topics().iter().filter(|t| t.error().is_none()).map(|t| (t.name().to_owned(), t.partitions().len())).collect())
    }

    /// Partition count of `topic`, which must exist.
    pub fn partitions(&self, topic: &str) -> Result<usize> {
        partitions_of(&self.topics()?, topic)
    }

    /// Creates `topic` unless it exists.
    pub fn ensure_topic(&self, topic: &str, partitions: usize, config: &[(&str, &str)]) -> Result<()> {
        if self.topics()?.contains_key(topic) {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = client_config(&self.kafka).create().context("creating a Kafka admin client")?;
        let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        for (k, v) in config {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let created = futures::executor::block_on(admin.create_topics([&new], &opts)).with_context(|| format!("creating topic `{topic}`"));
        let refused = match created {
            Ok(results) => results.into_iter().find_map(|r| match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((name, code)) => Some(anyhow!("creating topic `{name}`: {code}")),
            }),
            Err(e) => Some(e),
        };
        match refused {
            None => Ok(()),
            // Brokers without CreateTopics (the embedded cluster of `weir
            // dev`) create topics on first mention when allowed to.
            Some(e) => self.auto_create(topic).map_err(|_| e),
        }
    }

    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.kafka).create().context("creating a Kafka admin client")?;
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let results = futures::executor::block_on(admin.delete_topics(&[topic], &opts)).with_context(|| format!("deleting topic `{topic}`"))?;
        for r in results {
            if let Err((name, code)) = r {
                if code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                    bail!("deleting topic `{name}`: {code}");
                }
            }
        }
        Ok(())
    }

    fn auto_create(&self, topic: &str) -> Result<()> {
        let mut c = client_config(&self.kafka);
        c.set("allow.auto.create.topics", "true");
        let client: BaseConsumer = c.create()?;
        let md = client.fetch_metadata(Some(topic), self.timeout)?;
        match md.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            _ => bail!("topic `{topic}` was not created"),
        }
    }
}

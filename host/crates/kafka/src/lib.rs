//! Weir's Kafka I/O: the `[kafka]` configuration and security, every
//! client's settings, cluster checks and topic creation, ACL checks, the
//! producer with delivery tracking, committed offsets, consumer groups and
//! the changelog format.
//!
//! It knows Kafka and the state store's checkpoint format, and nothing of
//! deployments, tenants or the sandbox.
//!
//! (Over 400 lines: the one place every client is configured and every cluster check is made.)

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub mod acl;
pub mod changelog;
mod config;
pub mod group;
pub mod offsets;
pub mod producer;
pub mod security;
pub mod tail;

pub use config::KafkaConfig;

/// Settings shared by every client.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    apply_user(ClientConfig::new(), kafka)
}

/// A consumer of a deployment's group: offsets are committed by Weir after
/// outputs are acknowledged, never automatically.
pub fn consumer_config(kafka: &KafkaConfig, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Inputs another deployment writes exactly-once: never what its
        // aborted transactions left (librdkafka's default, said here).
        .set("isolation.level", "read_committed")
        .set("allow.auto.create.topics", "false")
        .set("statistics.interval.ms", "5000")
        // librdkafka pauses fetching for this long whenever its queue holds
        // `queued.min.messages` (100 000): the 1 s default caps a consumer
        // near 100 k records/s.
        .set("fetch.queue.backoff.ms", "20")
        // What a consumer prefetches is outside every buffer budget: keep
        // it to 16 MiB a deployment (librdkafka's default is 64).
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "16777216");
    apply_user(c, kafka)
}

/// The producer of outputs, dead letters and changelogs: idempotent (no
/// duplicates or reordering from its own retries), retrying for five minutes
/// through broker outages, and partitioning keys as the Java client does so
/// keyed outputs land where Kafka Streams would put them.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("enable.idempotence", "true")
        // librdkafka refuses records over 1 MB by default, less than
        // Kafka's own default: let the topics' `max.message.bytes` decide
        // (requests stay under the broker's 100 MiB request limit).
        .set("message.max.bytes", "100000000")
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "200000")
        // A host has a producer per tenant and per exactly-once or
        // stateful deployment: librdkafka's 1 GiB each, filled while a
        // broker is away, would add up past the host's memory. Past it,
        // sends wait.
        .set("queue.buffering.max.kbytes", "131072");
    let mut c = apply_user(c, kafka);
    // A record the queue cannot hold would wait for room forever.
    let number = |name: &str| c.get(name).and_then(|v| v.parse::<u64>().ok());
    if let (Some(largest), Some(queue)) = (
        number("message.max.bytes").map(|b| b.div_ceil(1024)),
        number("queue.buffering.max.kbytes"),
    ) && queue < largest
    {
        c.set("queue.buffering.max.kbytes", largest.to_string());
    }
    c
}

/// The headers of a consumed record, names as bytes. rdkafka's own header
/// accessors panic on a name that is not UTF-8, and anyone who may write to
/// a topic can send one.
pub fn headers_of<'a>(
    m: &'a rdkafka::message::BorrowedMessage<'a>,
) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
    use rdkafka::bindings as rd;
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is a live message for 'a; its headers belong to it
    // and live as long.
    let err = unsafe { rd::rd_kafka_message_headers(m.ptr(), &mut headers) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return Vec::new();
    }
    // SAFETY: `headers` is non-null and owned by the live message.
    let count = unsafe { rd::rd_kafka_header_cnt(headers) };
    (0..count)
        .filter_map(|i| {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: `i` is below the count; the out-pointers are valid.
            let err = unsafe {
                rd::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size)
            };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: librdkafka returns a NUL-terminated name and `size`
            // bytes of value (or null), owned by the message.
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
            let value = (!value.is_null()).then(|| {
                // SAFETY: as above: `size` bytes at a non-null `value`.
                unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
            });
            Some((name, value))
        })
        .collect()
}

/// Where a consumer of `kafka` starts a partition without a committed
/// offset: at its end (`auto.offset.reset` set to latest), or at its start
/// (Weir's default).
pub fn starts_at_end(kafka: &KafkaConfig) -> bool {
    matches!(
        kafka
            .properties
            .get("auto.offset.reset")
            .map(String::as_str),
        Some("latest" | "largest" | "end")
    )
}

/// Whether `consumer` has nothing left to read of `topic` partition
/// `partition` as far as the last fetch told: its position has reached the
/// end the broker reported with it (the high watermark, which librdkafka
/// caches without a request). Its position is where the last record or
/// transaction marker it consumed ends, or, before any since it was sent
/// somewhere, `sent_to` (where the log starts, if that is later: records
/// before it were deleted), or, with neither, where the reset policy starts
/// (`from_end`, or the log's start). Read committed, a position held back
/// by an open transaction is not caught up; nothing fetched yet is not
/// either.
pub fn caught_up<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
    sent_to: Option<i64>,
    from_end: bool,
) -> bool {
    use rdkafka::bindings as rd;
    use rdkafka::consumer::Consumer;
    let Ok(name) = std::ffi::CString::new(topic) else {
        return false;
    };
    let rk = consumer.client().native_ptr();
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client is live for the call; the topic is NUL-terminated
    // and the out-pointers are valid. It reads cached values, no request.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(rk, name.as_ptr(), partition, &mut low, &mut high)
    };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
        return false;
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    // SAFETY: as above; the list is ours and outlives the call, which fills
    // in its offsets from the consumer's positions without a request.
    unsafe { rd::rd_kafka_position(rk, tpl.ptr()) };
    let consumed = tpl
        .find_partition(topic, partition)
        .and_then(|e| e.offset().to_raw())
        .filter(|&o| o >= 0);
    // The log's start is known once client statistics have come (-1 before).
    let low = (low >= 0).then_some(low);
    match consumed.or(sent_to.map(|s| low.map_or(s, |l| s.max(l)))) {
        Some(position) => position >= high,
        None if from_end => true,
        None => high == 0 || low.is_some_and(|l| l >= high),
    }
}

/// Largest records and batches Weir's producer sends, after user
/// properties.
#[derive(Clone, Copy, Debug)]
pub struct ProducerLimits {
    pub message_max_bytes: u64,
    pub batch_size: u64,
}

impl ProducerLimits {
    pub fn of(kafka: &KafkaConfig) -> Result<ProducerLimits> {
        let c = producer_config(kafka);
        let read = |name: &str, default: u64| -> Result<u64> {
            c.get(name).map_or(Ok(default), |v| {
                v.parse()
                    .with_context(|| format!("kafka.properties: `{name}` = `{v}` is not a number"))
            })
        };
        // librdkafka's defaults where Weir sets nothing.
        Ok(ProducerLimits {
            message_max_bytes: read("message.max.bytes", 1_000_000)?,
            batch_size: read("batch.size", 1_000_000)?,
        })
    }
}

/// Kafka's default `message.max.bytes`, assumed for brokers that do not
/// describe their configuration.
pub const KAFKA_DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;

/// The brokers and the user's properties, last so that they win.
fn apply_user(mut c: ClientConfig, kafka: &KafkaConfig) -> ClientConfig {
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in kafka
        .resolved
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(kafka.properties.iter().map(|(k, v)| (k.as_str(), v)))
    {
        c.set(k, v);
    }
    c
}

/// Partition count of `topic` in `topics` (from [`Cluster::topics`]),
/// which must hold it.
pub fn partitions_of(topics: &BTreeMap<String, usize>, topic: &str) -> Result<usize> {
    match topics.get(topic) {
        Some(&n) if n > 0 => Ok(n),
        _ => bail!(
            "topic `{topic}` does not exist (Weir does not create input or output topics), or the host's principal may not describe it"
        ),
    }
}

/// Keeps what went wrong while connecting, and says which setting it is
/// about: librdkafka only logs why a broker refused it (a wrong password, a
/// certificate it cannot verify) and goes on trying.
#[derive(Default)]
struct ConnectContext {
    error: parking_lot::Mutex<Option<String>>,
}

impl ConnectContext {
    /// What went wrong, and which settings of `security` to check.
    fn why(&self, security: &security::Security) -> Option<String> {
        let error = self.error.lock().clone()?;
        let mechanism = security
            .mechanism
            .as_deref()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let sasl = error.contains("SASL") || error.contains("Authentication failed");
        let hint = if mechanism == "OAUTHBEARER" && (sasl || error.contains("OIDC")) {
            "; check kafka.security.oauth (token_endpoint, client_id and client_secret, and that the brokers accept the provider's tokens)"
        } else if mechanism == "GSSAPI" && sasl {
            "; check kafka.security.kerberos (principal and keytab) and the realm's krb5.conf (KRB5_CONFIG)"
        } else if sasl {
            "; check kafka.security.username and password (or mechanism)"
        } else if error.contains("certificate") || error.contains("SSL handshake") {
            "; check kafka.security.ca_file (the CA that signed the brokers' certificates) and the certificates' dates"
        } else {
            ""
        };
        Some(format!("{error}{hint}"))
    }
}

impl rdkafka::ClientContext for ConnectContext {
    /// Said once, by [`Cluster::connect`]'s error.
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}

    /// librdkafka says why a connection failed (a refused password, a
    /// certificate it cannot verify) in its log.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if !matches!(level, L::Emerg | L::Alert | L::Critical | L::Error) {
            return;
        }
        let mut first = self.error.lock();
        // The first cause is the telling one; "all brokers down" follows it.
        if first.is_none()
            || (fac == "FAIL"
                && !first
                    .as_deref()
                    .is_some_and(|f| f.contains("authentication") || f.contains("SSL")))
        {
            *first = Some(message.to_owned());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ConnectContext {}

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
        let client: BaseConsumer<ConnectContext> = c
            .create_with_context(ConnectContext::default())
            .context("creating a Kafka client")?;
        let timeout = Duration::from_millis(kafka.connect_timeout_ms);
        if let Err(e) = client.fetch_metadata(None, timeout) {
            // librdkafka's log lines (why it failed) reach the context as
            // the client polls.
            let until = std::time::Instant::now() + Duration::from_millis(500);
            while std::time::Instant::now() < until
                && client.context().why(&kafka.security).is_none()
            {
                let _ = client.poll(Duration::from_millis(50));
            }
            let why = client.context().why(&kafka.security);
            bail!(
                "cannot reach the Kafka brokers at {} within {} ms: {}",
                kafka.brokers,
                kafka.connect_timeout_ms,
                why.unwrap_or_else(|| e.to_string())
            );
        }
        drop(client);
        let client: BaseConsumer = c.create().context("creating a Kafka client")?;
        Ok(Cluster {
            kafka: kafka.clone(),
            client,
            timeout,
        })
    }

    /// The members of consumer group `group` and their partitions.
    pub fn group_members(&self, group: &str) -> Result<Vec<group::Member>> {
        group::members(&self.client, group, self.timeout)
    }

    /// Fails naming each of `wanted` that the brokers say the host's
    /// principal may not do (see [`acl::missing`]).
    pub fn require(&self, wanted: &[acl::Permission]) -> Result<()> {
        let missing = self.missing(wanted);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(acl::Denied(missing).into())
        }
    }

    /// Of `wanted`, what the brokers say the host's principal may not do.
    pub fn missing(&self, wanted: &[acl::Permission]) -> Vec<acl::Permission> {
        if self.kafka.embedded {
            return Vec::new();
        }
        acl::missing(self.client.client().native_ptr(), wanted, self.timeout)
    }

    /// Partition counts of every topic.
    pub fn topics(&self) -> Result<BTreeMap<String, usize>> {
        let md = self
            .client
            .fetch_metadata(None, self.timeout)
            .context("fetching cluster metadata")?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    }

    /// Partition count of `topic`, which must exist.
    pub fn partitions(&self, topic: &str) -> Result<usize> {
        partitions_of(&self.topics()?, topic)
    }

    /// `max.message.bytes` of each topic: the largest record batch the
    /// broker accepts on it. A topic that does not say (some brokers
    /// describe only settings made explicitly) has the broker's
    /// `message.max.bytes`; a broker that describes nothing, Kafka's
    /// default (with a warning).
    pub fn max_message_bytes(&self, topics: &[&str]) -> Result<BTreeMap<String, u64>> {
        use rdkafka::admin::ResourceSpecifier;
        let admin: AdminClient<DefaultClientContext> = client_config(&self.kafka)
            .create()
            .context("creating a Kafka admin client")?;
        let opts = AdminOptions::new().request_timeout(Some(self.timeout));
        let broker = self
            .client
            .fetch_metadata(None, self.timeout)
            .context("fetching cluster metadata")?
            .brokers()
            .first()
            .map(|b| b.id());
        let mut resources: Vec<ResourceSpecifier<'_>> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        resources.extend(broker.map(ResourceSpecifier::Broker));
        let described = futures::executor::block_on(admin.describe_configs(&resources, &opts));
        let value = |i: usize, name: &str| -> Option<u64> {
            let r = described.as_ref().ok()?.get(i)?.as_ref().ok()?;
            r.get(name)?.value.as_deref()?.parse().ok()
        };
        let broker_value = broker.and_then(|_| value(topics.len(), "message.max.bytes"));
        let mut out = BTreeMap::new();
        for (i, t) in topics.iter().enumerate() {
            let bytes = value(i, "max.message.bytes").or(broker_value).unwrap_or_else(|| {
                // The embedded cluster describes nothing, as expected.
                if !self.kafka.embedded {
                    tracing::warn!(
                        topic = %t,
                        "the brokers did not describe the topic's max.message.bytes (does the host's principal lack DESCRIBE_CONFIGS on it? README, \"Kafka ACLs\"); assuming Kafka's default of {KAFKA_DEFAULT_MAX_MESSAGE_BYTES}"
                    );
                }
                KAFKA_DEFAULT_MAX_MESSAGE_BYTES
            });
            out.insert((*t).to_owned(), bytes);
        }
        Ok(out)
    }

    /// Creates `topic` unless it exists.
    pub fn ensure_topic(
        &self,
        topic: &str,
        partitions: usize,
        config: &[(&str, &str)],
    ) -> Result<()> {
        if self.topics()?.contains_key(topic) {
            return Ok(());
        }
        if self.kafka.embedded {
            return self.auto_create(topic);
        }
        let admin: AdminClient<DefaultClientContext> = client_config(&self.kafka)
            .create()
            .context("creating a Kafka admin client")?;
        let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        for (k, v) in config {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));
        let results = futures::executor::block_on(admin.create_topics([&new], &opts))
            .with_context(|| format!("creating topic `{topic}`"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) if acl::is_denial(code) => {
                    return Err(acl::Denied(vec![acl::Permission::new(
                        acl::Operation::Create,
                        acl::Resource::Topic,
                        &name,
                    )])
                    .into());
                }
                Err((name, code)) => bail!("creating topic `{name}`: {code}"),
            }
        }
        self.wait_for(topic)
    }

    /// Waits until the cluster's metadata shows `topic` (a topic just
    /// created reaches every broker's metadata a moment later).
    fn wait_for(&self, topic: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            let md = self
                .client
                .fetch_metadata(Some(topic), self.timeout)
                .context("fetching cluster metadata")?;
            if md
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("topic `{topic}` was created but does not show in the cluster's metadata");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.kafka)
            .create()
            .context("creating a Kafka admin client")?;
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));
        let results = futures::executor::block_on(admin.delete_topics(&[topic], &opts))
            .with_context(|| format!("deleting topic `{topic}`"))?;
        for r in results {
            if let Err((name, code)) = r
                && code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
            {
                if acl::is_denial(code) {
                    return Err(acl::Denied(vec![acl::Permission::new(
                        acl::Operation::Delete,
                        acl::Resource::Topic,
                        &name,
                    )])
                    .into());
                }
                bail!("deleting topic `{name}`: {code}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_queue_holds_the_largest_record() {
        let queue = |properties: &[(&str, &str)]| {
            let kafka = KafkaConfig {
                properties: properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..KafkaConfig::default()
            };
            producer_config(&kafka)
                .get("queue.buffering.max.kbytes")
                .map(str::to_owned)
        };
        assert_eq!(queue(&[]).as_deref(), Some("131072"), "Weir's cap");
        assert_eq!(
            queue(&[("message.max.bytes", "500000000")]).as_deref(),
            Some("488282"),
            "raised to a record of message.max.bytes"
        );
        assert_eq!(
            queue(&[("queue.buffering.max.kbytes", "4096")]).as_deref(),
            Some("97657"),
            "never below Weir's message.max.bytes"
        );
    }
}

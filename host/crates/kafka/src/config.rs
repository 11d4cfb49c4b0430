//! `[kafka]` of the configuration: the cluster, and what every client of
//! it shares.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Deployment `D` consumes in consumer group `<group_prefix>.D`.
    pub group_prefix: String,
    /// librdkafka properties for every client (consumers and producer).
    pub properties: BTreeMap<String, String>,
    /// TLS and SASL, for every client.
    pub security: crate::security::Security,
    /// `security` as librdkafka settings, secrets read (see
    /// [`KafkaConfig::resolve`]).
    #[serde(skip)]
    pub resolved: Vec<(&'static str, String)>,
    /// How long to wait for the cluster at start-up, ms.
    pub connect_timeout_ms: u64,
    /// The in-process cluster of `weir dev`, which lacks CreateTopics:
    /// topics are created on first mention instead.
    #[serde(skip)]
    pub embedded: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_prefix: "weir".into(),
            properties: BTreeMap::new(),
            security: Default::default(),
            resolved: Vec::new(),
            connect_timeout_ms: 10_000,
            embedded: false,
        }
    }
}

impl KafkaConfig {
    /// Reads `security`'s secrets into the settings every client gets; a
    /// setting also in `properties` is refused (which would win is not
    /// obvious).
    pub fn resolve(&mut self) -> Result<()> {
        let settings = self.security.settings()?;
        if let Some((name, _)) = settings
            .iter()
            .find(|(name, _)| self.properties.contains_key(*name))
        {
            bail!("kafka.properties sets \"{name}\", which [kafka.security] sets too: keep one");
        }
        self.resolved = settings;
        Ok(())
    }
}

/// Secrets show as `<redacted>`, from `security` or `properties`.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::security::{REDACTED, is_secret};
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { REDACTED } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_prefix", &self.group_prefix)
            .field("properties", &properties)
            .field("security", &self.security)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("embedded", &self.embedded)
            .finish()
    }
}

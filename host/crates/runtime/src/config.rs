//! `weir run` configuration: a TOML file, overridden by `WEIR_*`
//! environment variables and command-line flags.
//!
//! An environment variable `WEIR_A__B__C=value` sets key `a.b.c` (double
//! underscores separate levels; names are matched case-insensitively, with
//! `_` standing for `-`); the value is read as TOML (`42`, `true`,
//! `["a", "b"]`) or else taken as a string. Variables without `__` (such as
//! `WEIR_LOG`) are not configuration.
//!
//! (Over 400 lines: the whole configuration format reads in one place; a fifth is its tests.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

use weir_abi::Limits;
use weir_engine::EngineConfig;

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub host: HostConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Static deployments, by name.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentConfig>,
    /// The admin API's operator: manages every tenant's deployments.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Tenants of the admin API, by name.
    #[serde(default)]
    pub tenants: BTreeMap<String, crate::tenants::TenantConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// sha256 of the admin token, hex (`weir token` makes a pair).
    pub token_sha256: String,
}

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
    pub security: crate::kafka::security::Security,
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
        use crate::kafka::security::{REDACTED, is_secret};
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

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// This host's name in the cluster; it names its transactional
    /// producers, so it must be stable across restarts and unique among
    /// hosts (default: the machine's hostname and a digest of `state_dir`).
    pub id: Option<String>,
    /// Threads running transforms (shared by all deployments).
    pub workers: usize,
    /// Where partition state (RocksDB) lives.
    pub state_dir: PathBuf,
    /// Address of the HTTP listener (`/metrics`, `/health`, admin API);
    /// none disables it.
    pub listen: Option<SocketAddr>,
    /// The URL other hosts reach this host's HTTP listener at (state
    /// queries go to the host that owns the key). Default: `http://` and
    /// the address `listen` bound; set it when that is not reachable from
    /// the other hosts (`0.0.0.0`, containers, proxies).
    pub advertise: Option<String>,
    /// How often offsets are committed, ms.
    pub commit_interval_ms: u64,
    /// Records per call into a transform, at most.
    pub batch_max_records: usize,
    /// Bytes per call, at most: keys, values, headers and the entries
    /// describing them.
    pub batch_max_bytes: usize,
    /// How long a record may wait for its batch to fill, ms.
    pub batch_linger_ms: u64,
    /// Records a partition may buffer before its consumption pauses
    /// (backpressure). Pausing discards what librdkafka has prefetched for
    /// the partition, which is fetched again on resume, so a bound that
    /// is hit often costs throughput: 10 000 halved it on a backlog.
    pub max_buffered_records: usize,
    /// Bytes of keys, values and headers a partition may buffer before its
    /// consumption pauses: bounds the host's memory whatever the record
    /// sizes (100 000 records of 100 KB would be 10 GB).
    pub max_buffered_bytes: usize,
    /// How far (ms) a record's timestamp may be ahead of this host's clock.
    /// Stream time (state TTLs, windows) only moves forward, so one record
    /// stamped years ahead would expire every TTL and close every window
    /// for good: later ones go to the failure policy (`invalid-input`).
    pub max_future_ms: u64,
    /// How long a graceful shutdown (SIGTERM, SIGINT) may take before the
    /// process exits anyway, ms: within Kubernetes' default grace period.
    pub shutdown_timeout_ms: u64,
    /// Bytes of input every deployment of the host may hold buffered
    /// together; past it, partitions that hold a batch pause (as each does
    /// past `max_buffered_bytes`).
    pub max_buffered_bytes_total: usize,
    /// How long a partition of several inputs waits for an input that has
    /// records on the broker but none here yet, ms. Records of co-partitioned
    /// inputs are processed in timestamp order, so a partition waits for the
    /// next records of each input before it moves stream time past them;
    /// past this wait it goes on without the input (shown in its status),
    /// and what the input sends later may be late.
    pub max_input_wait_ms: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            id: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            state_dir: PathBuf::from("weir-state"),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            advertise: None,
            commit_interval_ms: 1_000,
            batch_max_records: 1_000,
            batch_max_bytes: 1 << 20,
            batch_linger_ms: 5,
            max_buffered_records: 100_000,
            max_buffered_bytes: 64 << 20,
            max_future_ms: 24 * 3_600_000,
            max_input_wait_ms: 30_000,
            max_buffered_bytes_total: 512 << 20,
            shutdown_timeout_ms: 25_000,
        }
    }
}

impl HostConfig {
    /// [`HostConfig::id`], or its default.
    pub fn id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        let dir = std::fs::canonicalize(&self.state_dir).unwrap_or_else(|_| self.state_dir.clone());
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(dir.to_string_lossy().as_bytes()));
        format!("{hostname}-{}", &digest[..12])
    }
}

/// What happens to a record the transform cannot process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Produce the original record to the dead-letter topic, with headers
    /// saying why.
    #[default]
    DeadLetter,
    /// Log and count it.
    Skip,
    /// Pause the partition and report why; other partitions go on.
    Stop,
}

/// What a deployment promises about its outputs when hosts fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Offsets commit once everything their records sent is acknowledged:
    /// after a crash, records since the last commit are processed again and
    /// their outputs may appear twice (state never counts twice).
    #[default]
    AtLeastOnce,
    /// Everything a commit interval sends (outputs, dead letters, late
    /// records), its state changes and its input offsets go into one Kafka
    /// transaction: a `read_committed` reader sees each output once.
    ExactlyOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        }
    }
}

/// A commit interval under exactly-once, as Kafka Streams' default there:
/// outputs become visible to `read_committed` readers only at commits.
pub const EXACTLY_ONCE_COMMIT_INTERVAL_MS: u64 = 100;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The plugin component (static deployments; deployments made through
    /// the admin API name an uploaded module instead).
    #[serde(default, skip_serializing_if = "crate::config::is_empty_path")]
    pub plugin: PathBuf,
    /// Input topics; several must have the same partition count (their
    /// partitions with the same number share state).
    pub inputs: Vec<String>,
    /// Default output topic.
    pub output: String,
    /// Tables the transform may read (world 0.2.1): name to compacted
    /// topic; every partition of the deployment sees the whole table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, String>,
    /// Transform configuration handed to `init`.
    #[serde(default, deserialize_with = "string_map")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Dead-letter topic (default `<name>.dlq`).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Topic for records whose window values arrived too late (default:
    /// none, they are only counted).
    #[serde(default)]
    pub late_topic: Option<String>,
    /// Share of the host's transform threads relative to other
    /// deployments when they compete (weighted fair scheduling on CPU time).
    #[serde(default = "one")]
    pub cpu_share: f64,
    /// `at-least-once` (the default) or `exactly-once`.
    #[serde(default)]
    pub delivery: Delivery,
    /// How often its offsets (and state, and under exactly-once its
    /// transaction) commit, in ms: by default the host's
    /// `commit_interval_ms`, or 100 ms under exactly-once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_interval_ms: Option<u64>,
}

fn one() -> f64 {
    1.0
}

fn is_empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

impl DeploymentConfig {
    pub fn dead_letter_topic(&self, name: &str) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{name}.dlq"))
    }

    /// The commit interval on a host whose own is `host_ms`.
    pub fn commit_interval_ms(&self, host_ms: u64) -> u64 {
        self.commit_interval_ms.unwrap_or(match self.delivery {
            Delivery::AtLeastOnce => host_ms,
            Delivery::ExactlyOnce => EXACTLY_ONCE_COMMIT_INTERVAL_MS,
        })
    }
}

/// Transform config values may be written as TOML numbers or booleans;
/// transforms receive them as strings.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Ok((k, v.to_string()))
            }
            other => Err(serde::de::Error::custom(format!(
                "config `{k}`: expected a string, number or boolean, found {}",
                other.type_str()
            ))),
        })
        .collect()
}

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub group_prefix: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub workers: Option<usize>,
}

impl Config {
    /// Reads `path`, applies `env` (`WEIR_*` variables) and `flags`, and
    /// checks the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text, env, flags).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config> {
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        for (var, value) in env {
            apply_env(&mut tree, &var, &value)?;
        }
        let mut config: Config = Config::deserialize(tree)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let k = &mut config.kafka;
        k.brokers = flags
            .brokers
            .clone()
            .unwrap_or(std::mem::take(&mut k.brokers));
        k.group_prefix = flags
            .group_prefix
            .clone()
            .unwrap_or(std::mem::take(&mut k.group_prefix));
        if let Some(d) = &flags.state_dir {
            config.host.state_dir = d.clone();
        }
        if flags.listen.is_some() {
            config.host.listen = flags.listen;
        }
        if let Some(w) = flags.workers {
            config.host.workers = w;
        }
        config.check()?;
        config.kafka.resolve()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.kafka.brokers.trim().is_empty() {
            bail!("kafka.brokers is empty");
        }
        if self.host.workers == 0 {
            bail!("host.workers must be at least 1");
        }
        if self.host.batch_max_records == 0 || self.host.batch_max_bytes == 0 {
            bail!("host.batch_max_records and host.batch_max_bytes must be positive");
        }
        // A batch's spans are 32-bit: a batch stays far below 4 GiB.
        if self.host.batch_max_bytes > 1 << 30 {
            bail!(
                "host.batch_max_bytes must be at most 1 GiB, not {}",
                self.host.batch_max_bytes
            );
        }
        if self.host.max_buffered_records == 0 || self.host.max_buffered_bytes == 0 {
            bail!("host.max_buffered_records and host.max_buffered_bytes must be positive");
        }
        for (name, d) in &self.deployments {
            check_name(name)?;
            if is_empty_path(&d.plugin) {
                bail!("deployment `{name}`: `plugin` is missing");
            }
            d.check().with_context(|| format!("deployment `{name}`"))?;
        }
        for (name, t) in &self.tenants {
            check_name(name).with_context(|| format!("tenant `{name}`"))?;
            t.check(&format!("{}.", self.kafka.group_prefix))
                .with_context(|| format!("tenant `{name}`"))?;
        }
        crate::tenants::check_apart(&self.tenants)?;
        crate::tenants::instance_shares(
            &self.tenants,
            self.engine.max_instances as usize,
            self.host.workers,
        )?;
        if let Some(a) = &self.admin {
            crate::tenants::check_token_hash(&a.token_sha256).context("admin.token_sha256")?;
        }
        Ok(())
    }
}

impl DeploymentConfig {
    /// Checks what can be checked without the cluster.
    pub fn check(&self) -> Result<()> {
        {
            let d = self;
            if d.inputs.is_empty() {
                bail!("`inputs` is empty");
            }
            let topics = d
                .inputs
                .iter()
                .chain([&d.output])
                .chain(d.dead_letter_topic.iter())
                .chain(d.late_topic.iter());
            for t in topics {
                if t.trim().is_empty() {
                    bail!("a topic name is empty");
                }
            }
            if d.inputs.contains(&d.output) {
                bail!("output topic `{}` is also an input", d.output);
            }
            if d.tables.len() > crate::pipeline::tables::MAX_TABLES {
                bail!(
                    "{} tables declared; at most {} are allowed",
                    d.tables.len(),
                    crate::pipeline::tables::MAX_TABLES
                );
            }
            let mut topics = std::collections::BTreeSet::new();
            for (name, topic) in &d.tables {
                check_name(name).with_context(|| format!("table `{name}`"))?;
                if topic.trim().is_empty() {
                    bail!("table `{name}`: its topic name is empty");
                }
                if !topics.insert(topic) {
                    bail!("table `{name}`: topic `{topic}` is another table's too (read it once)");
                }
            }
            if !(d.cpu_share > 0.0 && d.cpu_share <= 1_000.0) {
                bail!("cpu_share must be in (0, 1000], not {}", d.cpu_share);
            }
            if let Some(ms) = d.commit_interval_ms
                && !(10..=300_000).contains(&ms)
            {
                bail!("commit_interval_ms must be 10 to 300000, not {ms}");
            }
        }
        Ok(())
    }
}

/// Deployment and tenant names become consumer group, topic and directory
/// names.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!("name `{name}` must be 1 to 100 letters, digits, `-` or `_`");
    }
    Ok(())
}

fn apply_env(tree: &mut toml::Table, var: &str, raw: &str) -> Result<()> {
    let Some(path) = var.strip_prefix("WEIR_") else {
        return Ok(());
    };
    if !path.contains("__") {
        return Ok(());
    }
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut table = tree;
    for (i, part) in parts.iter().enumerate() {
        // Match an existing key ignoring case and `-`/`_`, so that
        // WEIR_DEPLOYMENTS__WORD_COUNT__OUTPUT reaches [deployments.word-count].
        let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
        let key = table
            .keys()
            .find(|k| norm(k) == norm(part))
            .cloned()
            .unwrap_or_else(|| part.clone());
        if i + 1 == parts.len() {
            table.insert(key, value);
            return Ok(());
        }
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("{var}: `{key}` is not a table"),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [kafka]
        brokers = "b:9092"
        [deployments.word-count]
        plugin = "wc.wasm"
        inputs = ["text"]
        output = "counts"
        config = { lower = true, n = 3, name = "x" }
        limits = { memory_mb = 32 }
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_env_and_flags_layer_in_that_order() {
        let c = Config::parse(
            BASE,
            env(&[
                ("WEIR_KAFKA__BROKERS", "env:1"),
                ("WEIR_DEPLOYMENTS__WORD_COUNT__OUTPUT", "c2"),
                ("WEIR_HOST__WORKERS", "7"),
                ("WEIR_LOG", "debug"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "env:1");
        assert_eq!(c.host.workers, 7);
        let d = &c.deployments["word-count"];
        assert_eq!(d.output, "c2");
        assert_eq!(d.config["lower"], "true");
        assert_eq!(d.config["n"], "3");
        assert_eq!(d.limits.memory_mb, 32);
        assert_eq!(
            d.limits.cpu_ms_per_batch,
            Limits::default().cpu_ms_per_batch
        );
        assert_eq!(d.failure_policy, FailurePolicy::DeadLetter);
        assert_eq!(d.dead_letter_topic("word-count"), "word-count.dlq");
        let flags = Overrides {
            brokers: Some("flag:2".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::parse(BASE, env(&[("WEIR_KAFKA__BROKERS", "env:1")]), &flags)
                .unwrap()
                .kafka
                .brokers,
            "flag:2"
        );
    }

    /// A tenant whose prefixes would reach Weir's own topics (the registry,
    /// every changelog), or another tenant's topics, is refused.
    #[test]
    fn tenant_prefixes_cannot_reach_internal_topics() {
        let hash = "0".repeat(64);
        let tenant = |prefix: &str| {
            format!(
                "[kafka]\nbrokers = \"b:1\"\ngroup_prefix = \"weir\"\n[tenants.weir]\ntoken_sha256 = \"{hash}\"\ninput_prefixes = [\"{prefix}\"]\noutput_prefixes = [\"x.\"]\n"
            )
        };
        for (prefix, refused) in [
            ("weir.", "overlaps `weir.`"),
            ("weir.changelog.", "overlaps `weir.`"),
            ("we", "must end with"),
            ("acme", "must end with"),
        ] {
            let e = format!(
                "{:#}",
                Config::parse(&tenant(prefix), [], &Overrides::default()).unwrap_err()
            );
            assert!(e.contains(refused), "{prefix}: {e}");
        }
        Config::parse(&tenant("weird."), [], &Overrides::default())
            .expect("a prefix beside the internal one");
        let two = |a_in: &str, a_out: &str, b_in: &str, b_out: &str| {
            let t = |name: &str, i: &str, o: &str| {
                format!(
                    "[tenants.{name}]\ntoken_sha256 = \"{hash}\"\ninput_prefixes = [\"{i}\"]\noutput_prefixes = [\"{o}\"]\n"
                )
            };
            Config::parse(
                &format!(
                    "[kafka]\nbrokers = \"b:1\"\n{}{}",
                    t("acme", a_in, a_out),
                    t("beta", b_in, b_out)
                ),
                [],
                &Overrides::default(),
            )
        };
        for (a_in, a_out, b_in, b_out) in [
            ("acme.", "acme.", "acme.pay.", "beta."),
            ("acme.", "acme.", "beta.", "acme."),
            ("acme.", "x.", "beta.", "x."),
            ("acme.", "acme.", "beta.", "acme.pay."),
        ] {
            let e = format!("{:#}", two(a_in, a_out, b_in, b_out).unwrap_err());
            assert!(
                e.contains("tenants `acme` and `beta` overlap"),
                "{a_in} {a_out} {b_in} {b_out}: {e}"
            );
        }
        two("acme.", "shared.", "shared.", "beta.").expect("a hand-off spelled out on both sides");
        two("acme.", "acme.", "beta.", "beta.").expect("tenants apart");
    }

    #[test]
    fn mistakes_are_named() {
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("brokers", "brokerz"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `brokerz`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                BASE,
                env(&[("WEIR_KAFKA__BROKER", "x")]),
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `broker`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("\"counts\"", "\"text\""),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("is also an input"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("word-count]", "\"word count\"]"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("name `word count`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("memory_mb", "memory"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `memory`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &format!("{BASE}delivery = \"exactly-twice\""),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(
            e.contains(
                "unknown variant `exactly-twice`, expected `at-least-once` or `exactly-once`"
            ),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::parse(
                &format!("{BASE}commit_interval_ms = 0"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(
            e.contains("commit_interval_ms must be 10 to 300000, not 0"),
            "{e}"
        );
    }

    #[test]
    fn exactly_once_commits_every_100_ms_unless_told() {
        let d = |extra: &str| {
            Config::parse(&format!("{BASE}{extra}"), [], &Overrides::default())
                .unwrap()
                .deployments["word-count"]
                .clone()
        };
        assert_eq!(
            (d("").delivery, d("").commit_interval_ms(1_000)),
            (Delivery::AtLeastOnce, 1_000)
        );
        let eos = d("delivery = \"exactly-once\"");
        assert_eq!(
            (eos.delivery, eos.commit_interval_ms(1_000)),
            (Delivery::ExactlyOnce, 100)
        );
        assert_eq!(
            d("delivery = \"exactly-once\"\ncommit_interval_ms = 1000").commit_interval_ms(200),
            1_000
        );
    }
}

//! What the pipeline runs by: the host's settings (`[host]`) and each
//! deployment's (`[deployments.NAME]`, or a deployment of the admin API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

use weir_abi::Limits;
use weir_schema::Formats;

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
    /// Bytes of memory the host's tables may take for copies of their
    /// values, all together, so that lookups skip RocksDB (~4 µs each); a
    /// table that does not fit reads RocksDB. 0 keeps none.
    pub table_index_bytes: u64,
    /// Whether a host shutting down (SIGTERM) leaves its deployments'
    /// groups, so the other hosts take its partitions at once. Off, the
    /// group keeps them for the host for `session.timeout.ms`: a host
    /// restarted within it (a rolling restart with a stable `id`) takes
    /// them back without moving them, or their state, twice. A deployment
    /// stopped on its own (undeployed, failed) always leaves.
    pub leave_group_on_shutdown: bool,
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
            table_index_bytes: 256 << 20,
            leave_group_on_shutdown: true,
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
    #[serde(default, skip_serializing_if = "is_empty_path")]
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
    /// How keys and values are written, in and out (default: bytes as
    /// they are). Registry formats need the host's `[schema_registry]`.
    #[serde(default, skip_serializing_if = "Formats::is_default")]
    pub formats: Formats,
}

fn one() -> f64 {
    1.0
}

pub fn is_empty_path(p: &Path) -> bool {
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

/// Most tables a deployment may declare: each costs every host running it
/// a thread, a Kafka client and a RocksDB store holding the whole topic.
pub const MAX_TABLES: usize = 16;

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
            if d.tables.len() > MAX_TABLES {
                bail!(
                    "{} tables declared; at most {} are allowed",
                    d.tables.len(),
                    MAX_TABLES
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
            // Tenants are checked again with the deployment (`Host::transform_spec`).
            d.formats.check(false).map_err(anyhow::Error::msg)?;
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

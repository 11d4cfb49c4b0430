//! The registry every host of a cluster shares, kept in Kafka: what is
//! deployed, and the modules it runs.
//!
//! - `<group_prefix>.registry.deployments` (compacted, one partition): key =
//!   deployment id (`tenant.name`), value = its [`DeploymentSpec`] as JSON,
//!   a tombstone when it is undeployed with its state dropped.
//! - `<group_prefix>.registry.modules` (compacted, one partition): module
//!   bytes, content-addressed: key = `<sha256>/<chunk>`, chunks of at most
//!   [`CHUNK_BYTES`] (under the brokers' default message size limit), each
//!   with header `weir.chunks` = their count. Chunks are produced before
//!   the spec naming the module.
//!
//! Every host follows both topics from the beginning (no consumer group),
//! assembles modules into files named by their digest, and keeps the latest
//! spec of every deployment; the host's reconciler makes what runs match.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{DeploymentConfig, KafkaConfig};
use crate::kafka::Cluster;

/// Largest module chunk: Kafka's default `message.max.bytes` is 1 MiB.
pub const CHUNK_BYTES: usize = 512 << 10;
const CHUNKS_HEADER: &str = "weir.chunks";

/// The registry's topics: deployments, modules.
pub fn topics(group_prefix: &str) -> [String; 2] {
    [format!("{group_prefix}.registry.deployments"), format!("{group_prefix}.registry.modules")]
}

/// One deployment as the cluster should run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// `None` for deployments of the admin (no topic restrictions).
    pub tenant: Option<String>,
    pub name: String,
    /// Names the deployment's consumer group, changelog and state: new when
    /// a deployment is created, kept across upgrades, pauses and undeploys
    /// that keep state.
    pub incarnation: String,
    /// sha256 of the module, hex.
    pub module: String,
    /// Increases with every change.
    pub version: u64,
    pub paused: bool,
    /// Undeployed with its state and offsets kept for a later deploy.
    pub undeployed: bool,
    /// The module before the last upgrade (what a rollback returns to).
    pub previous_module: Option<String>,
    /// Why the last upgrade was rolled back.
    pub rolled_back: Option<String>,
    pub updated_at_ms: u64,
    pub deployment: DeploymentConfig,
}

impl DeploymentSpec {
    pub fn id(&self) -> String {
        id(self.tenant.as_deref(), &self.name)
    }

    /// The namespace of the deployment's group, changelog and state.
    pub fn storage(&self) -> String {
        format!("{}.{}", self.id(), self.incarnation)
    }

    pub fn running(&self) -> bool {
        !self.paused && !self.undeployed
    }
}

/// A deployment's id: tenant and name (neither may contain `.`).
pub fn id(tenant: Option<&str>, name: &str) -> String {
    match tenant {
        Some(t) => format!("{t}.{name}"),
        None => name.to_owned(),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Modules on this host's disk, by digest.
#[derive(Clone)]
pub struct ModuleStore {
    dir: PathBuf,
}

impl ModuleStore {
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating module directory {}", dir.display()))?;
        Ok(ModuleStore { dir: dir.to_owned() })
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(digest)).ok()
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).exists()
    }

    /// Stores `bytes` if they hash to `digest`.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if hex::encode(Sha256::digest(bytes)) != digest {
            bail!("module {digest}: the assembled bytes do not match their digest");
        }
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}

#[derive(Default)]
struct View {
    specs: BTreeMap<String, DeploymentSpec>,
    /// Bumped on every change, for waiters.
    generation: u64,
}

pub struct Registry {
    specs_topic: String,
    modules_topic: String,
    producer: FutureProducer,
    pub modules: ModuleStore,
    view: RwLock<View>,
    changed: (Mutex<()>, Condvar),
    timeout: Duration,
}

impl Registry {
    /// Creates the registry topics if needed and starts following them.
    pub fn open(kafka: &KafkaConfig, cluster: &Cluster, modules_dir: &Path, shutdown: Arc<AtomicBool>) -> Result<Arc<Registry>> {
        let [specs_topic, modules_topic] = topics(&kafka.group_prefix);
        for t in [&specs_topic, &modules_topic] {
            cluster.ensure_topic(t, 1, &[("cleanup.policy", "compact")]).with_context(|| format!("registry topic `{t}`"))?;
        }
        let producer: FutureProducer = crate::kafka::producer_config(kafka)
            .set("linger.ms", "0")
            .create()
            .context("creating the registry producer")?;
        let registry = Arc::new(Registry {
            specs_topic,
            modules_topic,
            producer,
            modules: ModuleStore::new(modules_dir)?,
            view: RwLock::new(View::default()),
            changed: (Mutex::new(()), Condvar::new()),
            timeout: Duration::from_millis(kafka.connect_timeout_ms.max(10_000)),
        });
        let follower = Follower::new(kafka, &registry)?;
        let weak = Arc::downgrade(&registry);
        std::thread::Builder::new()
            .name("weir-registry".into())
            .spawn(move || follower.run(weak, shutdown))
            .context("spawning the registry follower")?;
        Ok(registry)
    }

    pub fn specs(&self) -> BTreeMap<String, DeploymentSpec> {
        self.view.read().unwrap().specs.clone()
    }

    pub fn spec(&self, id: &str) -> Option<DeploymentSpec> {
        self.view.read().unwrap().specs.get(id).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.view.read().unwrap().generation
    }

    /// Waits until the view changes past `generation`, or `timeout`.
    pub fn wait_change(&self, generation: u64, timeout: Duration) {
        let (lock, cv) = &self.changed;
        let guard = lock.lock().unwrap();
        if self.generation() == generation {
            let _ = cv.wait_timeout(guard, timeout);
        }
    }

    fn notify(&self) {
        let (lock, cv) = &self.changed;
        let _guard = lock.lock().unwrap();
        cv.notify_all();
    }

    /// Stores a module on this host and in Kafka; returns once every chunk
    /// is acknowledged.
    pub async fn put_module(&self, bytes: &[u8]) -> Result<String> {
        let digest = hex::encode(Sha256::digest(bytes));
        self.modules.put(&digest, bytes)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let count = chunks.len().to_string();
        let mut deliveries = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{digest}/{i}");
            let headers = OwnedHeaders::new().insert(Header { key: CHUNKS_HEADER, value: Some(count.as_bytes()) });
            let record = FutureRecord::to(&self.modules_topic).partition(0).key(&key).payload(*chunk).headers(headers);
            deliveries.push(self.producer.send_result(record).map_err(|(e, _)| anyhow!("producing module chunk {i}: {e}"))?);
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            d.await.map_err(|_| anyhow!("module chunk {i}: the producer went away"))?.map_err(|(e, _)| anyhow!("module chunk {i}: {e}"))?;
        }
        Ok(digest)
    }

    /// Publishes a spec (or, with `None`, deletes `id`) and waits until this
    /// host's view has it, so a caller reads its own write.
    pub async fn publish(&self, id: &str, spec: Option<&DeploymentSpec>) -> Result<()> {
        let value = spec.map(serde_json::to_vec).transpose()?;
        let mut record = FutureRecord::<str, [u8]>::to(&self.specs_topic).partition(0).key(id);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let delivery = self.producer.send_result(record).map_err(|(e, _)| anyhow!("publishing deployment `{id}`: {e}"))?;
        delivery.await.map_err(|_| anyhow!("publishing deployment `{id}`: the producer went away"))?.map_err(|(e, _)| anyhow!("publishing deployment `{id}`: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let seen = self.spec(id);
            let arrived = match spec {
                Some(s) => seen.is_some_and(|x| x.version >= s.version),
                None => seen.is_none(),
            };
            if arrived {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("published deployment `{id}`, but the registry did not show it within {} s", self.timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `publish` for threads outside the async runtime.
    pub fn publish_blocking(&self, id: &str, spec: Option<&DeploymentSpec>) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        rt.block_on(self.publish(id, spec))
    }

    fn apply_spec(&self, id: &str, value: Option<&[u8]>) {
        let mut view = self.view.write().unwrap();
        match value {
            None => {
                view.specs.remove(id);
            }
            Some(v) => match serde_json::from_slice::<DeploymentSpec>(v) {
                Ok(spec) => {
                    view.specs.insert(id.to_owned(), spec);
                }
                // A spec written by a newer Weir, or damaged: keep what we had.
                Err(e) => tracing::error!(deployment = id, error = %e, "ignoring an unreadable registry record"),
            },
        }
        view.generation += 1;
    }
}

/// Reads both registry topics and applies them to the view.
struct Follower {
    consumer: BaseConsumer,
    specs_topic: String,
    modules_topic: String,
    assembly: Assembly,
}

/// Chunks of modules not yet complete, by digest.
#[derive(Default)]
struct Assembly {
    partial: HashMap<String, Vec<Option<Vec<u8>>>>,
}

impl Follower {
    fn new(kafka: &KafkaConfig, registry: &Registry) -> Result<Follower> {
        let mut c = crate::kafka::client_config(kafka);
        c.set("group.id", "weir-registry").set("enable.auto.commit", "false").set("fetch.queue.backoff.ms", "10");
        let consumer: BaseConsumer = c.create().context("creating the registry reader")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&registry.specs_topic, 0, Offset::Beginning)?;
        tpl.add_partition_offset(&registry.modules_topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl).context("reading the registry topics")?;
        Ok(Follower { consumer, specs_topic: registry.specs_topic.clone(), modules_topic: registry.modules_topic.clone(), assembly: Assembly::default() })
    }

    fn run(mut self, registry: std::sync::Weak<Registry>, shutdown: Arc<AtomicBool>) {
        while !shutdown.load(Ordering::Relaxed) {
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let Some(registry) = registry.upgrade() else { return };
            match m {
                Err(e) => tracing::warn!(error = %e, "reading the registry"),
                Ok(m) => {
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
                    if m.topic() == self.specs_topic {
                        registry.apply_spec(&key, m.payload());
                        registry.notify();
                    } else if m.topic() == self.modules_topic {
                        let chunks = m.headers().and_then(|h| h.iter().find(|h| h.key == CHUNKS_HEADER)?.value.map(|v| String::from_utf8_lossy(v).parse::<usize>().ok())).flatten();
                        if let (Some(count), Some(bytes)) = (chunks, m.payload()) {
                            if self.assembly.add(&registry.modules, &key, count, bytes) {
                                registry.view.write().unwrap().generation += 1;
                                registry.notify();
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Assembly {
    /// Adds a chunk; true when it completed a module.
    fn add(&mut self, store: &ModuleStore, key: &str, count: usize, bytes: &[u8]) -> bool {
        let Some((digest, index)) = key.split_once('/') else { return false };
        let Ok(index) = index.parse::<usize>() else { return false };
        if store.has(digest) || index >= count || count > 4096 {
            return false;
        }
        let parts = self.partial.entry(digest.to_owned()).or_insert_with(|| vec![None; count]);
        if parts.len() != count {
            return false;
        }
        parts[index] = Some(bytes.to_vec());
        if parts.iter().any(Option::is_none) {
            return false;
        }
        let parts = self.partial.remove(digest).expect("present");
        let whole: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        match store.put(digest, &whole) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(module = digest, error = %format!("{e:#}"), "discarding a registry module");
                false
            }
        }
    }
}

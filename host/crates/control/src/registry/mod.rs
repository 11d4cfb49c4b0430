//! The registry every host of a cluster shares, kept in Kafka: what is
//! deployed, and the modules it runs.
//!
//! - `<group_prefix>.registry.deployments` (compacted, one partition): key =
//!   deployment id (`tenant.name`), value = its [`DeploymentSpec`] as JSON,
//!   a tombstone when it is undeployed with its state dropped.
//! - `<group_prefix>.registry.modules` (compacted, one partition): module
//!   bytes, content-addressed: key = `<sha256>/<chunk>`, chunks of at most
//!   [`CHUNK_BYTES`] (under the brokers' default message size limit), each
//!   with header `weir.chunks` = their count; and `owner/<sha256>/<who>`
//!   for each tenant (or `-`, the admin) that uploaded it. Chunks are
//!   produced before the spec naming the module.
//!
//! Every host follows both topics from the beginning (no consumer group),
//! assembles modules into files named by their digest, and keeps the latest
//! spec of every deployment; the host's reconciler makes what runs match,
//! once the follower has read everything written before the host started.
//!
//! Writes are compare-and-set, decided the same way by every host because
//! they read one totally ordered log: a spec is applied only if its version
//! is one more than the current one's (or it is the first for its id), and
//! a tenant's new deployment only within its `max_deployments`. A writer
//! whose record was not applied gets [`Conflict`], and publishes the
//! current spec once more, so that the record compaction keeps for the id
//! is always the one every host applied.
//!
//! (Over 400 lines: deployments and modules share one compare-and-set protocol over their topics.)

use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{DeploymentConfig, KafkaConfig};
use weir_kafka::Cluster;

/// Largest module chunk: Kafka's default `message.max.bytes` is 1 MiB.
pub const CHUNK_BYTES: usize = 512 << 10;
const CHUNKS_HEADER: &str = "weir.chunks";

/// The registry's topics: deployments, modules.
pub fn topics(group_prefix: &str) -> [String; 2] {
    [
        format!("{group_prefix}.registry.deployments"),
        format!("{group_prefix}.registry.modules"),
    ]
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
    /// Names the write that produced this version, so its writer can tell
    /// its own write from a concurrent one.
    #[serde(default)]
    pub write: String,
    /// What happened to the deployment, oldest first: its last
    /// [`HISTORY`] changes (older specs have none).
    #[serde(default)]
    pub history: Vec<Change>,
}

/// Changes a deployment's history keeps.
pub const HISTORY: usize = 50;

/// One change of a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The version it made.
    pub version: u64,
    pub at_ms: u64,
    /// `deployed`, `upgraded`, `paused`, `resumed`, `undeployed`,
    /// `rolled back`, `reset`, `reset failed`.
    pub what: String,
    /// The module after the change.
    pub module: String,
    /// Why, or what exactly (an automatic rollback's failure, a reset's
    /// starting point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
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

    /// Makes the next version (now), recording `what` in its history.
    pub fn change(&mut self, what: &str, why: Option<String>) {
        self.version += 1;
        self.updated_at_ms = weir_abi::now_ms();
        self.record(what, why);
    }

    /// Records `what` in the history as the current version.
    pub fn record(&mut self, what: &str, why: Option<String>) {
        let change = Change {
            version: self.version,
            at_ms: self.updated_at_ms,
            what: what.to_owned(),
            module: self.module.clone(),
            why,
        };
        self.history.push(change);
        let over = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..over);
    }
}

/// A deployment's id: tenant and name (neither may contain `.`).
pub fn id(tenant: Option<&str>, name: &str) -> String {
    match tenant {
        Some(t) => format!("{t}.{name}"),
        None => name.to_owned(),
    }
}

/// A module name: a sha256, 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Called with a module's digest when it is deleted (its compiled copies go
/// with it).
pub type OnRemove = Arc<dyn Fn(&str) + Send + Sync>;

/// Modules on this host's disk, by digest.
#[derive(Clone)]
pub struct ModuleStore {
    dir: PathBuf,
    on_remove: OnRemove,
}

impl ModuleStore {
    pub fn new(dir: &Path, on_remove: OnRemove) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating module directory {}", dir.display()))?;
        Ok(ModuleStore {
            dir: dir.to_owned(),
            on_remove,
        })
    }

    /// Deletes module `digest` (and whatever was compiled of it).
    pub fn remove(&self, digest: &str) {
        if let Some(path) = self.path(digest) {
            let _ = std::fs::remove_file(path);
            (self.on_remove)(digest);
        }
    }

    /// Module `digest`'s size on this host, if it has it.
    pub fn size(&self, digest: &str) -> Option<u64> {
        std::fs::metadata(self.path(digest)?).ok().map(|m| m.len())
    }

    /// Where module `digest` lives; none for anything but a digest (a
    /// name from the network never becomes a path).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        is_digest(digest).then(|| self.dir.join(format!("{digest}.wasm")))
    }

    /// Module `digest`'s bytes, if this host has them (and they still hash
    /// to the digest).
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path(digest)?).ok()?;
        (hex::encode(Sha256::digest(&bytes)) == digest).then_some(bytes)
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|p| p.exists())
    }

    /// Stores `bytes` if they hash to `digest`.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let path = self
            .path(digest)
            .with_context(|| format!("`{digest}` is not a sha256 digest"))?;
        if hex::encode(Sha256::digest(bytes)) != digest {
            bail!("module {digest}: the assembled bytes do not match their digest");
        }
        weir_engine::private_file::write(&path, bytes)
    }
}

#[derive(Default)]
struct View {
    specs: BTreeMap<String, DeploymentSpec>,
    /// Writes not applied (a stale version, a quota), by id.
    refused: HashMap<String, (String, String)>,
    /// Who uploaded each module (tenant names; `-` for the admin).
    owners: HashMap<String, std::collections::BTreeSet<String>>,
    /// Modules' chunk counts and when their first chunk was written (ms).
    chunks: HashMap<String, (usize, i64)>,
    /// The follower has read what was in the topics when the host started.
    caught_up: bool,
    /// Bumped on every change, for waiters.
    generation: u64,
}

/// A write that lost to a concurrent one (or broke a quota); nothing
/// changed.
#[derive(Debug, thiserror::Error)]
#[error("deployment `{id}` was not changed: {why}; read it again and retry")]
pub struct Conflict {
    pub id: String,
    pub why: String,
}

/// Who uploaded a module, as recorded: a tenant, or `-` for the admin.
fn owner_name(tenant: Option<&str>) -> &str {
    tenant.unwrap_or("-")
}

pub struct Registry {
    specs_topic: String,
    modules_topic: String,
    producer: FutureProducer,
    pub modules: ModuleStore,
    view: RwLock<View>,
    changed: (Mutex<()>, Condvar),
    timeout: Duration,
    /// Each tenant's `max_deployments`, enforced when a spec is applied.
    max_deployments: BTreeMap<String, usize>,
}

impl Registry {
    /// Creates the registry topics if needed and starts following them.
    pub fn open(
        kafka: &KafkaConfig,
        cluster: &Cluster,
        modules_dir: &Path,
        max_deployments: BTreeMap<String, usize>,
        shutdown: Arc<AtomicBool>,
        on_remove: OnRemove,
    ) -> Result<Arc<Registry>> {
        let [specs_topic, modules_topic] = topics(&kafka.group_prefix);
        for t in [&specs_topic, &modules_topic] {
            cluster
                .ensure_topic(t, 1, &[("cleanup.policy", "compact")])
                .with_context(|| format!("registry topic `{t}`"))?;
        }
        {
            use weir_kafka::acl::{Operation::*, Permission, Resource::Topic};
            let [specs, modules] = [&specs_topic, &modules_topic]
                .map(|t| [Read, Write].map(|op| Permission::new(op, Topic, t)));
            cluster
                .require(&[specs, modules].concat())
                .context("the registry topics")?;
        }
        let producer: FutureProducer = weir_kafka::producer_config(kafka)
            .set("linger.ms", "0")
            .create()
            .context("creating the registry producer")?;
        let registry = Arc::new(Registry {
            specs_topic,
            modules_topic,
            producer,
            modules: ModuleStore::new(modules_dir, on_remove)?,
            view: RwLock::new(View::default()),
            changed: (Mutex::new(()), Condvar::new()),
            timeout: Duration::from_millis(kafka.connect_timeout_ms.max(10_000)),
            max_deployments,
        });
        let follower = Follower::new(kafka, &registry)?;
        let weak = Arc::downgrade(&registry);
        std::thread::Builder::new()
            .name("weir-registry".into())
            .spawn(move || follower.run(weak, shutdown))
            .context("spawning the registry follower")?;
        Ok(registry)
    }

    fn view(&self) -> parking_lot::RwLockReadGuard<'_, View> {
        self.view.read()
    }

    fn view_mut(&self) -> parking_lot::RwLockWriteGuard<'_, View> {
        self.view.write()
    }

    pub fn specs(&self) -> BTreeMap<String, DeploymentSpec> {
        self.view().specs.clone()
    }

    pub fn spec(&self, id: &str) -> Option<DeploymentSpec> {
        self.view().specs.get(id).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.view().generation
    }

    /// Whether everything written before this host started has been read:
    /// until then the view may show a deployment's old spec (running where
    /// it is paused, an old module) or miss it.
    pub fn caught_up(&self) -> bool {
        self.view().caught_up
    }

    /// The modules `tenant` (`None`: the admin) uploaded that the registry
    /// holds, and their bytes.
    pub fn stored_by(&self, tenant: Option<&str>) -> (usize, u64) {
        let view = self.view();
        let who = owner_name(tenant);
        let mine = view
            .owners
            .iter()
            .filter(|(d, o)| o.contains(who) && view.chunks.contains_key(*d));
        mine.fold((0, 0), |(n, bytes), (d, _)| {
            let size = self
                .modules
                .size(d)
                .unwrap_or_else(|| view.chunks[d].0 as u64 * CHUNK_BYTES as u64);
            (n + 1, bytes + size)
        })
    }

    /// Whether `tenant` (`None`: the admin) uploaded module `digest`.
    pub fn owns(&self, tenant: Option<&str>, digest: &str) -> bool {
        self.view()
            .owners
            .get(digest)
            .is_some_and(|o| o.contains(owner_name(tenant)))
    }

    /// Waits until the view changes past `generation`, or `timeout`.
    pub fn wait_change(&self, generation: u64, timeout: Duration) {
        let (lock, cv) = &self.changed;
        let mut guard = lock.lock();
        if self.generation() == generation {
            cv.wait_for(&mut guard, timeout);
        }
    }

    fn notify(&self) {
        let (lock, cv) = &self.changed;
        let _guard = lock.lock();
        cv.notify_all();
    }

    /// Stores a module on this host and in Kafka, recording `tenant` (none:
    /// the admin) as one of its owners; returns once every record is
    /// acknowledged.
    pub async fn put_module(&self, bytes: &[u8], tenant: Option<&str>) -> Result<String> {
        let digest = hex::encode(Sha256::digest(bytes));
        self.modules.put(&digest, bytes)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let count = chunks.len().to_string();
        let mut deliveries = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let key = format!("{digest}/{i}");
            let headers = OwnedHeaders::new().insert(Header {
                key: CHUNKS_HEADER,
                value: Some(count.as_bytes()),
            });
            let record = FutureRecord::to(&self.modules_topic)
                .partition(0)
                .key(&key)
                .payload(*chunk)
                .headers(headers);
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow!("producing module chunk {i}: {e}"))?,
            );
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            d.await
                .map_err(|_| anyhow!("module chunk {i}: the producer went away"))?
                .map_err(|(e, _)| anyhow!("module chunk {i}: {e}"))?;
        }
        let owner = format!("owner/{digest}/{}", owner_name(tenant));
        let record = FutureRecord::<str, [u8]>::to(&self.modules_topic)
            .partition(0)
            .key(&owner)
            .payload(&[]);
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| anyhow!("recording the module's owner: {e}"))?;
        delivery
            .await
            .map_err(|_| anyhow!("recording the module's owner: the producer went away"))?
            .map_err(|(e, _)| anyhow!("recording the module's owner: {e}"))?;
        // Read our own write, so a deploy right after finds the owner.
        let deadline = Instant::now() + self.timeout;
        while !self.owns(tenant, &digest) {
            if Instant::now() > deadline {
                bail!(
                    "uploaded module {digest}, but the registry did not show it within {} s",
                    self.timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(digest)
    }

    /// Publishes a spec (or, with `None`, deletes `id`) and waits until this
    /// host's view has it, so a caller reads its own write. A spec must have
    /// the version after the current one; if another write got there first
    /// the error is a [`Conflict`].
    pub async fn publish(&self, id: &str, spec: Option<&DeploymentSpec>) -> Result<()> {
        let spec = spec.map(|s| DeploymentSpec {
            write: format!("{:016x}", rand::random::<u64>()),
            ..s.clone()
        });
        self.send_spec(id, spec.as_ref()).await?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let (seen, refused) = {
                let view = self.view();
                (view.specs.get(id).cloned(), view.refused.get(id).cloned())
            };
            match &spec {
                None if seen.is_none() => return Ok(()),
                Some(s) if seen.as_ref().is_some_and(|x| x.write == s.write) => return Ok(()),
                Some(s) if refused.as_ref().is_some_and(|(w, _)| *w == s.write) => {
                    // The log's last record for the id is ours, which no host
                    // applied: write the applied spec after it once more.
                    if let Some(current) = &seen {
                        self.send_spec(id, Some(current)).await?;
                    }
                    let why = refused.map(|(_, why)| why).unwrap_or_default();
                    return Err(Conflict {
                        id: id.to_owned(),
                        why,
                    }
                    .into());
                }
                _ => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "published deployment `{id}`, but the registry did not show it within {} s",
                    self.timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn send_spec(&self, id: &str, spec: Option<&DeploymentSpec>) -> Result<()> {
        let value = spec.map(serde_json::to_vec).transpose()?;
        let mut record = FutureRecord::<str, [u8]>::to(&self.specs_topic)
            .partition(0)
            .key(id);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| anyhow!("publishing deployment `{id}`: {e}"))?;
        delivery
            .await
            .map_err(|_| anyhow!("publishing deployment `{id}`: the producer went away"))?
            .map_err(|(e, _)| anyhow!("publishing deployment `{id}`: {e}"))?;
        Ok(())
    }

    /// `publish` for threads outside the async runtime.
    pub fn publish_blocking(&self, id: &str, spec: Option<&DeploymentSpec>) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        rt.block_on(self.publish(id, spec))
    }

    fn apply_spec(&self, id: &str, value: Option<&[u8]>) {
        let mut view = self.view_mut();
        match value {
            None => {
                view.specs.remove(id);
            }
            Some(v) => match admit(&view.specs, &self.max_deployments, id, v) {
                Ok(spec) => {
                    view.specs.insert(id.to_owned(), spec);
                }
                Err((write, why)) => {
                    tracing::warn!(deployment = id, "ignoring a registry record: {why}");
                    view.refused.insert(id.to_owned(), (write, why));
                }
            },
        }
        view.generation += 1;
    }

    /// Deletes modules no deployment names (as its module or the one an
    /// upgrade replaced) and written more than `age` ago: this host's
    /// copies, and their records in the registry (tombstones, which
    /// compaction then removes; every host may write them).
    pub async fn collect_modules(&self, age: Duration) -> Result<usize> {
        let (unused, chunks) = {
            let view = self.view();
            if !view.caught_up {
                return Ok(0);
            }
            let used: std::collections::HashSet<&str> = view
                .specs
                .values()
                .flat_map(|s| [Some(s.module.as_str()), s.previous_module.as_deref()])
                .flatten()
                .collect();
            let cutoff = weir_abi::now_ms() as i64 - age.as_millis() as i64;
            let unused: Vec<String> = view
                .chunks
                .iter()
                .filter(|(d, (_, at))| !used.contains(d.as_str()) && *at < cutoff)
                .map(|(d, _)| d.clone())
                .collect();
            let chunks: Vec<(String, usize, Vec<String>)> = unused
                .iter()
                .map(|d| {
                    (
                        d.clone(),
                        view.chunks[d].0,
                        view.owners
                            .get(d)
                            .map(|o| o.iter().cloned().collect())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            (unused, chunks)
        };
        for (digest, count, owners) in &chunks {
            let keys = (0..*count)
                .map(|i| format!("{digest}/{i}"))
                .chain(owners.iter().map(|o| format!("owner/{digest}/{o}")));
            for key in keys {
                let record = FutureRecord::<str, [u8]>::to(&self.modules_topic)
                    .partition(0)
                    .key(&key);
                let delivery = self
                    .producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow!("deleting module {digest}: {e}"))?;
                delivery
                    .await
                    .map_err(|_| anyhow!("deleting module {digest}: the producer went away"))?
                    .map_err(|(e, _)| anyhow!("deleting module {digest}: {e}"))?;
            }
            self.modules.remove(digest);
            tracing::info!(module = %digest, "deleted a module no deployment uses");
        }
        Ok(unused.len())
    }
}

/// Decodes a spec record of `id` and decides whether it may follow what
/// `specs` holds, as every host decides it (see the module's comment);
/// otherwise its write and why not.
#[doc(hidden)]
pub fn admit(
    specs: &BTreeMap<String, DeploymentSpec>,
    max_deployments: &BTreeMap<String, usize>,
    id: &str,
    value: &[u8],
) -> Result<DeploymentSpec, (String, String)> {
    let spec: DeploymentSpec = serde_json::from_slice(value)
        .map_err(|e| (String::new(), format!("it cannot be read: {e}")))?;
    let refuse = |why: String| Err((spec.write.clone(), why));
    if spec.id() != id {
        return refuse(format!(
            "it names deployment `{}` under the key `{id}`",
            spec.id()
        ));
    }
    if !is_digest(&spec.module)
        || spec
            .previous_module
            .as_deref()
            .is_some_and(|m| !is_digest(m))
    {
        return refuse("its module is not a sha256 digest".into());
    }
    let current = specs.get(id);
    match current {
        // The first record read for the id (or all older ones were
        // compacted away).
        None => {}
        Some(c) if c.version == spec.version && c.write == spec.write => {}
        Some(c) if spec.version != c.version.saturating_add(1) => {
            return refuse(format!(
                "it is version {} but the current one is {}",
                spec.version, c.version
            ));
        }
        Some(_) => {}
    }
    let creates = current.is_none_or(|c| c.undeployed) && !spec.undeployed;
    if let (true, Some(tenant)) = (creates, &spec.tenant) {
        let max = max_deployments.get(tenant).copied().unwrap_or(0);
        let count = specs
            .values()
            .filter(|s| s.tenant.as_deref() == Some(tenant) && !s.undeployed)
            .count();
        if count >= max {
            return refuse(format!(
                "tenant `{tenant}` has {count} deployments, its quota is {max}"
            ));
        }
    }
    Ok(spec)
}

/// A record of the modules topic, decoded.
#[derive(Debug, PartialEq)]
#[doc(hidden)]
pub enum ModuleRecord<'a> {
    /// `who` uploaded module `digest` (or, a tombstone, no longer owns it).
    Owner {
        digest: &'a str,
        who: &'a str,
        owns: bool,
    },
    Chunk {
        digest: &'a str,
        index: usize,
        count: usize,
        bytes: &'a [u8],
    },
    /// A collected module's chunk.
    Gone { digest: &'a str },
    /// Anything else (not written by Weir): ignored.
    Other,
}

impl<'a> ModuleRecord<'a> {
    #[doc(hidden)]
    pub fn decode(
        key: &'a str,
        headers: &[(&[u8], Option<&[u8]>)],
        payload: Option<&'a [u8]>,
    ) -> ModuleRecord<'a> {
        if let Some(owner) = key.strip_prefix("owner/") {
            return match owner.split_once('/') {
                Some((digest, who)) if is_digest(digest) => ModuleRecord::Owner {
                    digest,
                    who,
                    owns: payload.is_some(),
                },
                _ => ModuleRecord::Other,
            };
        }
        let Some((digest, index)) = key.split_once('/').filter(|(d, _)| is_digest(d)) else {
            return ModuleRecord::Other;
        };
        let Some(bytes) = payload else {
            return ModuleRecord::Gone { digest };
        };
        let count = headers
            .iter()
            .find(|(k, _)| *k == CHUNKS_HEADER.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8((*v)?).ok()?.parse::<usize>().ok());
        match (index.parse::<usize>(), count) {
            (Ok(index), Some(count)) if index < count && count <= MAX_CHUNKS => {
                ModuleRecord::Chunk {
                    digest,
                    index,
                    count,
                    bytes,
                }
            }
            _ => ModuleRecord::Other,
        }
    }
}

/// Most chunks of one module: 2 GiB.
const MAX_CHUNKS: usize = 4096;

/// Reads both registry topics and applies them to the view.
struct Follower {
    consumer: BaseConsumer,
    specs_topic: String,
    modules_topic: String,
    assembly: Assembly,
    /// Offsets (per topic) to read up to before the view is caught up.
    catch_up: BTreeMap<String, i64>,
}

/// Chunks of modules not yet complete, by digest.
#[derive(Default)]
struct Assembly {
    partial: HashMap<String, Vec<Option<Vec<u8>>>>,
}

impl Follower {
    fn new(kafka: &KafkaConfig, registry: &Registry) -> Result<Follower> {
        let mut c = weir_kafka::client_config(kafka);
        // Assigned, never joined (see `changelog::reader_config`).
        c.set(
            "group.id",
            format!("{}.readers.registry", kafka.group_prefix),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10");
        let consumer: BaseConsumer = c.create().context("creating the registry reader")?;
        let mut tpl = TopicPartitionList::new();
        let mut catch_up = BTreeMap::new();
        for topic in [&registry.specs_topic, &registry.modules_topic] {
            tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
            let (low, high) = consumer
                .fetch_watermarks(topic, 0, registry.timeout)
                .with_context(|| format!("reading the end of registry topic `{topic}`"))?;
            if high > low {
                catch_up.insert(topic.clone(), high);
            }
        }
        consumer
            .assign(&tpl)
            .context("reading the registry topics")?;
        if catch_up.is_empty() {
            registry.view_mut().caught_up = true;
        }
        Ok(Follower {
            consumer,
            specs_topic: registry.specs_topic.clone(),
            modules_topic: registry.modules_topic.clone(),
            assembly: Assembly::default(),
            catch_up,
        })
    }

    fn run(mut self, registry: std::sync::Weak<Registry>, shutdown: Arc<AtomicBool>) {
        while !shutdown.load(Ordering::Relaxed) {
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let Some(registry) = registry.upgrade() else {
                return;
            };
            match m {
                Err(e) => tracing::warn!(error = %e, "reading the registry"),
                Ok(m) => {
                    let key = m
                        .key()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                        .into_owned();
                    if m.topic() == self.specs_topic {
                        registry.apply_spec(&key, m.payload());
                    } else if m.topic() == self.modules_topic {
                        let at = m.timestamp().to_millis().unwrap_or(0);
                        Self::module_record(
                            &mut self.assembly,
                            &registry,
                            &key,
                            weir_kafka::headers_of(&m),
                            m.payload(),
                            at,
                        );
                    }
                    if self
                        .catch_up
                        .get(m.topic())
                        .is_some_and(|&end| m.offset() + 1 >= end)
                    {
                        self.catch_up.remove(m.topic());
                        if self.catch_up.is_empty() {
                            registry.view_mut().caught_up = true;
                            tracing::info!("registry read: deployments start");
                        }
                    }
                    registry.view_mut().generation += 1;
                    registry.notify();
                }
            }
        }
    }

    /// A record of the modules topic: a chunk, an owner, or a tombstone of
    /// either.
    fn module_record(
        assembly: &mut Assembly,
        registry: &Registry,
        key: &str,
        headers: Vec<(&[u8], Option<&[u8]>)>,
        payload: Option<&[u8]>,
        at: i64,
    ) {
        match ModuleRecord::decode(key, &headers, payload) {
            ModuleRecord::Owner { digest, who, owns } => {
                let mut view = registry.view_mut();
                let owners = view.owners.entry(digest.to_owned()).or_default();
                match owns {
                    true => owners.insert(who.to_owned()),
                    false => owners.remove(who),
                };
            }
            ModuleRecord::Gone { digest } => {
                // A collected module: every host forgets it.
                registry.view_mut().chunks.remove(digest);
                assembly.partial.remove(digest);
                registry.modules.remove(digest);
            }
            ModuleRecord::Chunk {
                digest,
                index,
                count,
                bytes,
            } => {
                registry
                    .view_mut()
                    .chunks
                    .entry(digest.to_owned())
                    .or_insert((count, at));
                assembly.add(&registry.modules, digest, index, count, bytes);
            }
            ModuleRecord::Other => {}
        }
    }
}

impl Assembly {
    /// Adds a chunk; true when it completed a module.
    fn add(
        &mut self,
        store: &ModuleStore,
        digest: &str,
        index: usize,
        count: usize,
        bytes: &[u8],
    ) -> bool {
        if store.has(digest) {
            return false;
        }
        let parts = self
            .partial
            .entry(digest.to_owned())
            .or_insert_with(|| vec![None; count]);
        if parts.len() != count {
            return false;
        }
        parts[index] = Some(bytes.to_vec());
        if parts.iter().any(Option::is_none) {
            return false;
        }
        let Some(parts) = self.partial.remove(digest) else {
            return false;
        };
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

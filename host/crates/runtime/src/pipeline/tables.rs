//! A deployment's tables (world 0.2.1): one loader thread per table reads
//! every partition of its topic (read committed) into a RocksDB store
//! under the deployment's state directory, and keeps reading as the topic
//! changes. The store records, with each write, the offsets it has read
//! to, so a restarted host reads only what it missed. The deployment
//! consumes nothing until every table has caught up with the end its topic
//! had when loading began, as Kafka Streams bootstraps a `GlobalKTable`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::deployment::Deployment;
use super::{Shared, lock};
use crate::changelog::ReaderContext;
use weir_state::tables::RocksTable;

/// How a table's loading goes, for `weir status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStatus {
    pub topic: String,
    /// Records read from the topic since this host started loading it.
    pub records_read: u64,
    /// Roughly how many keys the table holds.
    pub keys: u64,
    /// Caught up with the end of the topic as it was when loading began.
    pub loaded: bool,
    /// How long that took, ms.
    pub load_ms: Option<u64>,
    /// The loader's latest error, if it is failing.
    pub error: Option<String>,
}

#[derive(Default)]
struct Progress {
    records: AtomicU64,
    loaded: AtomicBool,
    load_ms: AtomicU64,
    /// Fatal: the loader stopped.
    failed: Mutex<Option<String>>,
    /// Transient: the loader goes on.
    error: Mutex<Option<String>>,
}

/// One table's loader; dropping it stops the thread.
struct Loader {
    name: String,
    topic: String,
    store: Arc<RocksTable>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loaders of a deployment on this host, kept across restarts of its
/// consumer loop.
#[derive(Default)]
pub struct TableLoaders {
    loaders: Vec<Loader>,
}

impl TableLoaders {
    pub fn status(&self) -> BTreeMap<String, TableStatus> {
        self.loaders
            .iter()
            .map(|l| {
                let p = &l.progress;
                let loaded = p.loaded.load(Ordering::Relaxed);
                let status = TableStatus {
                    topic: l.topic.clone(),
                    records_read: p.records.load(Ordering::Relaxed),
                    keys: l.store.estimated_keys(),
                    loaded,
                    load_ms: loaded.then(|| p.load_ms.load(Ordering::Relaxed)),
                    error: lock(&p.failed).clone().or_else(|| lock(&p.error).clone()),
                };
                (l.name.clone(), status)
            })
            .collect()
    }
}

/// How often a waiting deployment looks at its loaders.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// How often a loaded table's new records are flushed to disk (writes skip
/// the write-ahead log; a crash loses at most this much, read again after).
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Messages and bytes applied to a store in one write at most.
const WRITE_RECORDS: usize = 10_000;
const WRITE_BYTES: usize = 32 << 20;

/// Starts the deployment's table loaders if they are not running, and
/// returns once every table has loaded (or `stop` is set).
pub fn wait_loaded(deployment: &Deployment, shared: &Shared, stop: &AtomicBool) -> Result<()> {
    if deployment.config.tables.is_empty() {
        return Ok(());
    }
    {
        let mut slot = lock(&deployment.table_loaders);
        match slot.as_mut() {
            None => *slot = Some(start(deployment, shared)?),
            // A loader that failed (the last attempt reported it) tries again.
            Some(loaders) => {
                for l in loaders.loaders.iter_mut().filter(|l| lock(&l.progress.failed).is_some()) {
                    l.spawn(shared, &deployment.name)?;
                }
            }
        }
    }
    let mut logged = false;
    while !stop.load(Ordering::Relaxed) {
        let guard = lock(&deployment.table_loaders);
        let loaders = &guard.as_ref().expect("started").loaders;
        if let Some((name, why)) = loaders.iter().find_map(|l| lock(&l.progress.failed).clone().map(|why| (l.name.clone(), why))) {
            bail!("table `{name}`: {why}");
        }
        if loaders.iter().all(|l| l.progress.loaded.load(Ordering::Relaxed)) {
            return Ok(());
        }
        if !logged {
            tracing::info!(deployment = %deployment.name, "waiting for its tables to load before consuming");
            logged = true;
        }
        drop(guard);
        std::thread::sleep(WAIT_STEP);
    }
    Ok(())
}

fn start(deployment: &Deployment, shared: &Shared) -> Result<TableLoaders> {
    let tables = &deployment.runnable().spec.tables;
    let mut loaders = Vec::new();
    for (name, topic) in &deployment.config.tables {
        let dir = shared.host.state_dir.join(&deployment.storage).join("tables").join(name);
        let store = Arc::new(RocksTable::open(&dir, topic, &shared.rocks).with_context(|| format!("table `{name}`"))?);
        loaders.push(Loader { name: name.clone(), topic: topic.clone(), store, progress: Arc::default(), stop: Arc::default(), thread: None });
    }
    // Attached only once every store opened: a failed start leaves the
    // transform's tables free for the next attempt.
    for l in &mut loaders {
        tables.attach(&l.name, l.store.clone())?;
        l.spawn(shared, &deployment.name)?;
    }
    Ok(TableLoaders { loaders })
}

impl Loader {
    /// Starts (or starts again) the thread reading the topic.
    fn spawn(&mut self, shared: &Shared, deployment: &str) -> Result<()> {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
        let name = &self.name;
        let consumer = crate::changelog::reader(&shared.kafka).with_context(|| format!("table `{name}`"))?;
        self.progress = Arc::default();
        self.stop = Arc::default();
        let (store, progress, stop, topic) = (self.store.clone(), self.progress.clone(), self.stop.clone(), self.topic.clone());
        let label = format!("{deployment}/{name}");
        let timeout = Duration::from_millis(shared.kafka.connect_timeout_ms.max(10_000));
        let thread = std::thread::Builder::new()
            .name(format!("weir-table-{name}"))
            .spawn(move || {
                if let Err(e) = load(&consumer, &topic, &store, &progress, &stop, timeout) {
                    tracing::error!(table = %label, error = %format!("{e:#}"), "table loader stopped");
                    *lock(&progress.failed) = Some(format!("{e:#}"));
                }
                let _ = store.flush();
            })
            .context("spawning a table loader")?;
        self.thread = Some(thread);
        Ok(())
    }
}

/// Reads `topic` into `store` until `stop`.
fn load(consumer: &BaseConsumer<ReaderContext>, topic: &str, store: &RocksTable, progress: &Progress, stop: &AtomicBool, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let metadata = consumer.fetch_metadata(Some(topic), timeout).with_context(|| format!("reading the metadata of topic `{topic}`"))?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        bail!("topic `{topic}` does not exist");
    }
    let mut offsets = store.offsets()?;
    let mut unread = BTreeSet::new();
    let mut tpl = TopicPartitionList::new();
    let mut extents = BTreeMap::new();
    for &p in &partitions {
        extents.insert(p, consumer.fetch_watermarks(topic, p, timeout).with_context(|| format!("reading the extent of `{topic}` partition {p}"))?);
    }
    // Records the store has not seen were deleted (retention, or the topic
    // was made again): what it holds may be stale, so read it all again.
    if offsets.iter().any(|(p, o)| extents.get(p).is_none_or(|&(low, high)| *o < low || *o > high)) {
        tracing::warn!(topic, "the table's store does not match its topic any more; reading the topic again");
        store.clear()?;
        offsets.clear();
    }
    for (&p, &(low, high)) in &extents {
        let from = offsets.get(&p).copied().unwrap_or(low);
        if from < high {
            unread.insert(p);
        }
        tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
    }
    consumer.assign(&tpl).context("assigning the table's partitions")?;
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut read: BTreeMap<i32, i64> = BTreeMap::new();
    let mut flushed = Instant::now();
    let mut dirty = false;
    let mut flush_loaded = |unread: &BTreeSet<i32>, dirty: &mut bool| -> Result<()> {
        let just_loaded = unread.is_empty() && !progress.loaded.swap(true, Ordering::Relaxed);
        if just_loaded {
            progress.load_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            tracing::info!(topic, records = progress.records.load(Ordering::Relaxed), ms = started.elapsed().as_millis() as u64, "table loaded");
        }
        if *dirty && (just_loaded || flushed.elapsed() >= FLUSH_EVERY) {
            store.flush()?;
            flushed = Instant::now();
            *dirty = false;
        }
        Ok(())
    };
    flush_loaded(&unread, &mut dirty)?;
    while !stop.load(Ordering::Relaxed) {
        let (mut bytes, mut messages) = (0, 0);
        let mut wait = Duration::from_millis(100);
        while batch.len() < WRITE_RECORDS && bytes < WRITE_BYTES {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    messages += 1;
                    read.insert(m.partition(), m.offset() + 1);
                    if let Some(key) = m.key() {
                        bytes += key.len() + m.payload().map_or(0, <[u8]>::len);
                        batch.push((key.to_vec(), m.payload().map(<[u8]>::to_vec)));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    unread.remove(&p);
                }
                Some(Err(e)) => {
                    tracing::warn!(topic, error = %e, "reading a table");
                    *lock(&progress.error) = Some(e.to_string());
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if !read.is_empty() {
            store.apply(batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())), &read)?;
            progress.records.fetch_add(messages, Ordering::Relaxed);
            batch.clear();
            read.clear();
            dirty = true;
            *lock(&progress.error) = None;
        }
        flush_loaded(&unread, &mut dirty)?;
    }
    Ok(())
}

//! A deployment's tables (world 0.2.1): one loader thread per table reads
//! every partition of its topic (read committed) into a RocksDB store
//! under the deployment's state directory, and keeps reading as the topic
//! changes. The store records, with each write, the offsets it has read
//! to, so a restarted host reads only what it missed. The deployment
//! consumes nothing until every table has caught up with the end its topic
//! had when loading began, as Kafka Streams bootstraps a `GlobalKTable`.
//!
//! (Over 400 lines: a table's loader, its store and its status move together.)

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::Shared;
use crate::status::TableStatus;
use weir_kafka::KafkaConfig;
use weir_kafka::changelog::Reader;
use weir_state::rocks::RocksConfig;
use weir_state::table_index::IndexBudget;
use weir_state::tables::RocksTable;
use weir_state::tables::Tables;

#[derive(Default)]
struct Progress {
    records: AtomicU64,
    loaded: AtomicBool,
    load_ms: AtomicU64,
    /// The loader's latest failure, cleared when it reads again.
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
                    indexed: l.store.indexed(),
                    loaded,
                    load_ms: loaded.then(|| p.load_ms.load(Ordering::Relaxed)),
                    error: p.error.lock().clone(),
                };
                (l.name.clone(), status)
            })
            .collect()
    }
}

/// Stores of tables open on this host, by path: a deployment started again
/// while transforms of its last run still hold its stores (workers drop
/// them at their next job) reopens the same stores instead of failing on
/// RocksDB's lock.
#[derive(Default)]
pub struct OpenStores(Mutex<BTreeMap<PathBuf, Weak<RocksTable>>>);

impl OpenStores {
    fn open(
        &self,
        path: &Path,
        topic: &str,
        rocks: &RocksConfig,
        index: &Arc<IndexBudget>,
    ) -> Result<Arc<RocksTable>> {
        let mut open = self.0.lock();
        open.retain(|_, s| s.strong_count() > 0);
        if let Some(store) = open.get(path).and_then(Weak::upgrade) {
            if store.topic() == topic {
                return Ok(store);
            }
            bail!(
                "its store is still open for topic `{}`; try again once its last batches end",
                store.topic()
            );
        }
        let store = Arc::new(RocksTable::open(path, topic, rocks, index)?);
        open.insert(path.to_owned(), Arc::downgrade(&store));
        Ok(store)
    }
}

/// How often a waiting deployment looks at its loaders.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// How long a failed loader waits before reading again.
const RETRY: Duration = Duration::from_secs(5);
/// How often a loaded table's new records are flushed to disk (writes skip
/// the write-ahead log; a crash loses at most this much, read again after).
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often the loader looks for partitions added to its topic.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Messages and bytes applied to a store in one write at most.
const WRITE_RECORDS: usize = 10_000;
const WRITE_BYTES: usize = 32 << 20;

/// The deployment whose tables are loaded.
pub struct Owner<'a> {
    pub name: &'a str,
    /// Names its state directory.
    pub storage: &'a str,
    /// Its tables' topics, by name.
    pub declared: &'a BTreeMap<String, String>,
    /// What its transform reads the tables through.
    pub tables: &'a Tables,
    /// Where its loaders are kept while it runs on this host.
    pub loaders: &'a Mutex<Option<TableLoaders>>,
}

/// Starts the deployment's table loaders if they are not running, and
/// waits until every table has loaded. False if `stop` came first.
pub fn wait_loaded(deployment: Owner<'_>, shared: &Shared, stop: &AtomicBool) -> Result<bool> {
    if deployment.declared.is_empty() {
        return Ok(true);
    }
    {
        let mut slot = deployment.loaders.lock();
        if slot.is_none() {
            *slot = Some(start(&deployment, shared)?);
        }
    }
    let mut logged = false;
    while !stop.load(Ordering::Relaxed) {
        {
            let guard = deployment.loaders.lock();
            let loaders = &guard.as_ref().expect("started").loaders;
            if loaders
                .iter()
                .all(|l| l.progress.loaded.load(Ordering::Relaxed))
            {
                return Ok(true);
            }
            // The loader keeps trying; the deployment is reported down meanwhile.
            let failing = loaders
                .iter()
                .filter(|l| !l.progress.loaded.load(Ordering::Relaxed))
                .find_map(|l| l.progress.error.lock().clone().map(|e| (l, e)));
            if let Some((l, why)) = failing {
                bail!("table `{}` cannot load: {why}", l.name);
            }
        }
        if !logged {
            tracing::info!(deployment = %deployment.name, "waiting for its tables to load before consuming");
            logged = true;
        }
        std::thread::sleep(WAIT_STEP);
    }
    Ok(false)
}

fn start(deployment: &Owner<'_>, shared: &Shared) -> Result<TableLoaders> {
    let tables = deployment.tables;
    forget_undeclared(
        &shared
            .host
            .state_dir
            .join(deployment.storage)
            .join("tables"),
        deployment.declared,
    );
    let mut loaders = Vec::new();
    for (name, topic) in deployment.declared {
        let dir = shared
            .host
            .state_dir
            .join(deployment.storage)
            .join("tables")
            .join(name);
        let store = shared
            .table_stores
            .open(&dir, topic, &shared.rocks, &shared.table_index)
            .with_context(|| format!("table `{name}`"))?;
        tables.attach(name, store.clone())?;
        let consumer = weir_kafka::changelog::reader(&table_reader(&shared.kafka))
            .with_context(|| format!("table `{name}`"))?;
        let (progress, stop) = (
            Arc::new(Progress::default()),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, p, st, t) = (store.clone(), progress.clone(), stop.clone(), topic.clone());
        let label = format!("{}/{name}", deployment.name);
        let timeout = Duration::from_millis(shared.kafka.connect_timeout_ms.max(10_000));
        let thread = std::thread::Builder::new()
            .name(format!("weir-table-{name}"))
            .spawn(move || {
                while let Err(e) = load(&consumer, &t, &s, &p, &st, timeout) {
                    tracing::error!(table = %label, error = %format!("{e:#}"), "reading a table failed; reading again in {} s", RETRY.as_secs());
                    *p.error.lock() = Some(format!("{e:#}"));
                    let at = Instant::now() + RETRY;
                    while Instant::now() < at && !st.load(Ordering::Relaxed) {
                        std::thread::sleep(WAIT_STEP);
                    }
                }
                let _ = s.flush();
            })
            .context("spawning a table loader")?;
        loaders.push(Loader {
            name: name.clone(),
            topic: topic.clone(),
            store,
            progress,
            stop,
            thread: Some(thread),
        });
    }
    Ok(TableLoaders { loaders })
}

/// Deletes the stores of tables the deployment no longer declares (its
/// tables changed, which restarted it).
fn forget_undeclared(dir: &Path, declared: &BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_str()
            .is_some_and(|n| declared.contains_key(n))
            && let Err(err) = std::fs::remove_dir_all(e.path())
        {
            tracing::warn!(dir = %e.path().display(), error = %err, "could not delete the store of a table no longer declared");
        }
    }
}

/// The reader settings of a table: a position out of the topic's range is
/// an error to handle (the table is read again), not a jump to its end;
/// and a loader, which runs as long as its deployment, queues little.
fn table_reader(kafka: &KafkaConfig) -> KafkaConfig {
    let mut kafka = kafka.clone();
    for (k, v) in [
        ("auto.offset.reset", "error"),
        ("queued.max.messages.kbytes", "16384"),
        ("fetch.max.bytes", "16777216"),
    ] {
        kafka
            .properties
            .entry(k.to_owned())
            .or_insert_with(|| v.to_owned());
    }
    kafka
}

/// Reads `topic` into `store` until `stop`. Fails when the topic cannot be
/// read (it is missing, the broker unreachable for long).
fn load(
    consumer: &Reader,
    topic: &str,
    store: &RocksTable,
    progress: &Progress,
    stop: &AtomicBool,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    // A retry starts over: what an earlier attempt assigned is assigned again.
    let _ = consumer.unassign();
    let mut ends = BTreeMap::new();
    let mut unread = BTreeSet::new();
    let mut assigned = BTreeSet::new();
    let mut refreshed: Option<Instant> = None;
    let mut flushed = Instant::now();
    let mut dirty = false;
    let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut read: BTreeMap<i32, i64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        if refreshed.is_none_or(|at| at.elapsed() >= REFRESH_EVERY) {
            refreshed = Some(Instant::now());
            let added = assign_new(
                consumer,
                topic,
                store,
                &mut assigned,
                &mut ends,
                stop,
                timeout,
            )?;
            if !progress.loaded.load(Ordering::Relaxed) {
                unread.extend(added);
            }
        }
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
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                    // Records the store had not read were deleted: what it
                    // holds may be stale. Read the whole topic again.
                    tracing::warn!(
                        topic,
                        "the table's position left its topic's range (records deleted); reading the topic again"
                    );
                    store.clear()?;
                    batch.clear();
                    read.clear();
                    assigned.clear();
                    consumer.unassign()?;
                    refreshed = None;
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(topic, error = %e, "reading a table");
                    *progress.error.lock() = Some(e.to_string());
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if !read.is_empty() {
            let indexed = store.indexed();
            store.apply(
                batch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                &read,
            )?;
            if indexed && !store.indexed() {
                tracing::warn!(
                    topic,
                    "the table outgrew the host's index budget (host.table_index_bytes): its lookups read RocksDB from now on"
                );
            }
            progress.records.fetch_add(messages, Ordering::Relaxed);
            batch.clear();
            read.clear();
            dirty = true;
            *progress.error.lock() = None;
        }
        // Caught up with a partition: told so, or past the end it had at
        // the start (a topic written faster than it is read has no end).
        if !unread.is_empty() {
            let position = consumer.position()?;
            unread.retain(
                |p| match position.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o < ends[p],
                    _ => true,
                },
            );
        }
        let just_loaded = unread.is_empty()
            && !assigned.is_empty()
            && !progress.loaded.swap(true, Ordering::Relaxed);
        if just_loaded {
            progress
                .load_ms
                .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            tracing::info!(
                topic,
                records = progress.records.load(Ordering::Relaxed),
                ms = started.elapsed().as_millis() as u64,
                "table loaded"
            );
        }
        if dirty && (just_loaded || flushed.elapsed() >= FLUSH_EVERY) {
            store.flush()?;
            flushed = Instant::now();
            dirty = false;
        }
    }
    Ok(())
}

/// Assigns the partitions of `topic` not assigned yet, from where the store
/// is (or the start), and returns those with records to read. The first
/// time, a store that does not match the topic (records it has not read
/// were deleted, or the topic was made again) is emptied.
fn assign_new(
    consumer: &Reader,
    topic: &str,
    store: &RocksTable,
    assigned: &mut BTreeSet<i32>,
    ends: &mut BTreeMap<i32, i64>,
    stop: &AtomicBool,
    timeout: Duration,
) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of topic `{topic}`"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| !assigned.contains(p))
        .collect();
    if partitions.is_empty() && assigned.is_empty() {
        bail!("topic `{topic}` does not exist");
    }
    let mut extents = BTreeMap::new();
    for &p in &partitions {
        if stop.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        extents.insert(
            p,
            consumer
                .fetch_watermarks(topic, p, timeout)
                .with_context(|| format!("reading the extent of `{topic}` partition {p}"))?,
        );
    }
    let mut offsets = store.offsets()?;
    if assigned.is_empty()
        && offsets.iter().any(|(p, o)| {
            extents
                .get(p)
                .is_none_or(|&(low, high)| *o < low || *o > high)
        })
    {
        tracing::warn!(
            topic,
            "the table's store does not match its topic any more; reading the topic again"
        );
        store.clear()?;
        offsets.clear();
    }
    let mut tpl = TopicPartitionList::new();
    let mut unread = Vec::new();
    for (&p, &(low, high)) in &extents {
        let from = offsets.get(&p).copied().unwrap_or(low);
        if from < high {
            unread.push(p);
        }
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
    }
    if !extents.is_empty() {
        consumer
            .incremental_assign(&tpl)
            .context("assigning the table's partitions")?;
        assigned.extend(extents.keys());
    }
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_of_tables_no_longer_declared_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["customers", "prices"] {
            std::fs::create_dir_all(dir.path().join(name).join("inner")).unwrap();
        }
        forget_undeclared(
            dir.path(),
            &BTreeMap::from([("customers".to_owned(), "topic".to_owned())]),
        );
        assert!(dir.path().join("customers/inner").exists());
        assert!(!dir.path().join("prices").exists());
        // No directory yet: nothing to do.
        forget_undeclared(&dir.path().join("missing"), &BTreeMap::new());
    }
}

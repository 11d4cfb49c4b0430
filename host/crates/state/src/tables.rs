//! Tables (world 0.2.1's `tables` interface): read-only copies of
//! compacted topics a deployment declares, each the latest value per key.
//! `weir run` loads them into [`RocksTable`]s (the loader, which reads
//! Kafka, is the runtime's); `weir test` fills [`MemTable`]s from its
//! input. Transforms read them through [`Tables`].
//!
//! (Over 400 lines: the read interface, both stores and the bounds their
//! scans share move together.)

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::rocks::RocksConfig;
use crate::table_index::{IndexBudget, MemIndex};

pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A value found, or how long it is when longer than the reader may take.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Value(Vec<u8>),
    TooLong(u64),
}

/// What a transform may read of a table.
pub trait TableRead: Send + Sync {
    /// The value of `key`, copied only when at most `max_len` bytes long:
    /// a guest with little budget left cannot make the host copy a large
    /// value first and refuse it after.
    fn get(&self, key: &[u8], max_len: u64) -> Result<Option<Found>>;

    /// Up to `limit` entries with `start <= key < end`, ascending, stopping
    /// after the entry that brings their keys and values to `max_bytes`.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Entries>;
}

/// A deployment's tables, by name; a table's id is its position (names in
/// ascending order, as the deployment spec's map keeps them). Stores are
/// attached once loaded, so the transform's setup can name its tables
/// before any is.
pub struct Tables {
    tables: Vec<(String, OnceLock<Arc<dyn TableRead>>)>,
}

impl Tables {
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Arc<Tables> {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        Arc::new(Tables {
            tables: names.into_iter().map(|n| (n, OnceLock::new())).collect(),
        })
    }

    pub fn none() -> Arc<Tables> {
        Tables::new(Vec::<String>::new())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|(n, _)| n.as_str())
    }

    /// The id of table `name`, or an error naming the declared tables.
    pub fn open(&self, name: &str) -> Result<u32, String> {
        match self.tables.iter().position(|(n, _)| n == name) {
            Some(id) => Ok(id as u32),
            None if self.tables.is_empty() => Err(format!(
                "no table `{name}`: the deployment declares no tables"
            )),
            None => Err(format!(
                "no table `{name}`: the deployment declares {}",
                self.names()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Gives table `name` its store; a table's store never changes (giving
    /// it the same one again does nothing).
    pub fn attach(&self, name: &str, store: Arc<dyn TableRead>) -> Result<()> {
        let (_, slot) = self
            .tables
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| anyhow!("no table `{name}` is declared"))?;
        let held = slot.get_or_init(|| store.clone());
        if Arc::ptr_eq(held, &store) {
            Ok(())
        } else {
            bail!("table `{name}` already has another store")
        }
    }

    /// The store of table `id`.
    pub fn store(&self, id: u32) -> Result<&dyn TableRead> {
        let (name, slot) = self
            .tables
            .get(id as usize)
            .ok_or_else(|| anyhow!("no table has id {id} (ids come from `tables.open`)"))?;
        slot.get()
            .map(|s| s.as_ref())
            .ok_or_else(|| anyhow!("table `{name}` is not loaded"))
    }
}

/// A table in memory (`weir test`).
#[derive(Default)]
pub struct MemTable {
    entries: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemTable {
    /// Sets `key` to `value`; `None` (a tombstone) removes it.
    pub fn apply(&self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut entries = self.entries.write();
        match value {
            Some(v) => entries.insert(key, v),
            None => entries.remove(&key),
        };
    }
}

impl TableRead for MemTable {
    fn get(&self, key: &[u8], max_len: u64) -> Result<Option<Found>> {
        Ok(self.entries.read().get(key).map(|v| found(v, max_len)))
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Entries> {
        // The guest chooses both bounds; ordered ranges panic on reversed ones.
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let entries = self.entries.read();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(bounded(
            entries
                .range::<[u8], _>((Bound::Included(start), upper))
                .map(|(k, v)| (k.clone(), v.clone())),
            limit,
            max_bytes,
        ))
    }
}

fn found(value: &[u8], max_len: u64) -> Found {
    if value.len() as u64 > max_len {
        Found::TooLong(value.len() as u64)
    } else {
        Found::Value(value.to_vec())
    }
}

fn bounded(
    entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    limit: usize,
    max_bytes: u64,
) -> Entries {
    let mut bytes = 0u64;
    entries
        .take(limit)
        .take_while(|(k, v)| {
            let more = bytes < max_bytes;
            bytes += (k.len() + v.len()) as u64;
            more
        })
        .collect()
}

/// A table in RocksDB, under the host's state directory: values under
/// `v` + key, and with them, in the same write, the next offset to read of
/// each partition of the topic (`o` + partition), so a restart resumes
/// where the store is instead of reading the topic again. Point lookups
/// are answered from a copy in memory while the host's budget allows
/// (`table_index`).
pub struct RocksTable {
    db: DB,
    path: PathBuf,
    topic: String,
    index: MemIndex,
}

const VALUE: u8 = b'v';
/// Deleted entries one scan may pass over.
const MAX_SKIPPED: u64 = 100_000;
const OFFSET: u8 = b'o';
const TOPIC: &[u8] = b"t";

impl RocksTable {
    /// Opens the store of a table of `topic`, emptied if it held another
    /// topic's, with its copy in memory if it fits `index`.
    pub fn open(
        path: &Path,
        topic: &str,
        config: &RocksConfig,
        index: &Arc<IndexBudget>,
    ) -> Result<RocksTable> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating table directory {}", path.display()))?;
        let db = DB::open(&config.options(), path)
            .with_context(|| format!("opening table store {}", path.display()))?;
        if db.get(TOPIC)?.is_some_and(|t| t != topic.as_bytes()) {
            clear(&db).with_context(|| format!("clearing {}", path.display()))?;
        }
        db.put(TOPIC, topic)?;
        let mut failed = None;
        let values = db
            .iterator_opt(IteratorMode::From(&[VALUE], Direction::Forward), {
                let mut opts = ReadOptions::default();
                opts.set_iterate_upper_bound([VALUE + 1]);
                opts
            })
            .map_while(|r| match r {
                Ok((k, v)) => Some((k[1..].into(), v)),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
        let index = MemIndex::build(index, values);
        if let Some(e) = failed {
            return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
        }
        Ok(RocksTable {
            db,
            path: path.to_owned(),
            topic: topic.to_owned(),
            index,
        })
    }

    /// Whether point lookups are answered from memory.
    pub fn indexed(&self) -> bool {
        self.index.kept()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next offset to read of each partition the store has read.
    pub fn offsets(&self) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        for entry in self
            .db
            .iterator(IteratorMode::From(&[OFFSET], Direction::Forward))
        {
            let (k, v) = entry.with_context(|| format!("reading {}", self.path.display()))?;
            if k.first() != Some(&OFFSET) {
                break;
            }
            let (Ok(p), Ok(o)) = (<[u8; 4]>::try_from(&k[1..]), <[u8; 8]>::try_from(&v[..])) else {
                bail!("{}: a malformed offset entry", self.path.display())
            };
            out.insert(i32::from_be_bytes(p), i64::from_be_bytes(o));
        }
        Ok(out)
    }

    /// Applies `changes` (a `None` value removes its key) and records the
    /// next offsets to read, in one write.
    pub fn apply<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<()> {
        let changes: Vec<_> = changes.into_iter().collect();
        let mut batch = WriteBatch::default();
        let mut key = Vec::new();
        for &(k, v) in &changes {
            key.clear();
            key.push(VALUE);
            key.extend_from_slice(k);
            match v {
                Some(v) => batch.put(&key, v),
                None => batch.delete(&key),
            }
        }
        for (p, o) in offsets {
            let mut k = vec![OFFSET];
            k.extend_from_slice(&p.to_be_bytes());
            batch.put(k, o.to_be_bytes());
        }
        // The topic, not the write-ahead log, is what a table is rebuilt
        // from: a crash loses at most the latest writes, offsets included.
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        self.db
            .write_opt(batch, &opts)
            .with_context(|| format!("writing {}", self.path.display()))?;
        // After the store: a copy dropped halfway falls back to a store
        // that already holds the whole write.
        for (k, v) in changes {
            self.index.put(k, v);
        }
        Ok(())
    }

    /// Removes every value and offset (the topic is read again).
    pub fn clear(&self) -> Result<()> {
        clear(&self.db).with_context(|| format!("clearing {}", self.path.display()))?;
        self.index.clear();
        Ok(())
    }

    /// Makes what was applied survive a crash.
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .with_context(|| format!("flushing {}", self.path.display()))
    }

    /// Roughly how many keys the table holds.
    pub fn estimated_keys(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

fn clear(db: &DB) -> Result<(), rocksdb::Error> {
    let mut batch = WriteBatch::default();
    batch.delete_range([OFFSET], [OFFSET + 1]);
    batch.delete_range([VALUE], [VALUE + 1]);
    db.write(batch)
}

impl Drop for RocksTable {
    fn drop(&mut self) {
        // Writes skip the write-ahead log: keep them for the next start.
        let _ = self.db.flush();
    }
}

impl TableRead for RocksTable {
    fn get(&self, key: &[u8], max_len: u64) -> Result<Option<Found>> {
        if let Some(hit) = self.index.get(key, |v| found(v, max_len)) {
            return Ok(hit);
        }
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(VALUE);
        k.extend_from_slice(key);
        let pinned = self
            .db
            .get_pinned(&k)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(pinned.map(|v| found(&v, max_len)))
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Entries> {
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let mut from = vec![VALUE];
        from.extend_from_slice(start);
        let mut opts = ReadOptions::default();
        // Keys deleted but not yet compacted away cost a scan without being
        // returned (or charged): a topic full of tombstones must not make
        // one call scan without end. A scan past them fails.
        opts.set_max_skippable_internal_keys(MAX_SKIPPED);
        opts.set_iterate_upper_bound(match end {
            Some(end) => [&[VALUE], end].concat(),
            None => vec![VALUE + 1],
        });
        let mut err = None;
        let entries = self
            .db
            .iterator_opt(IteratorMode::From(&from, Direction::Forward), opts)
            .map_while(|r| match r {
                Ok((k, v)) => Some((k[1..].to_vec(), v.into_vec())),
                Err(e) => {
                    err = Some(e);
                    None
                }
            });
        let out = bounded(entries, limit, max_bytes);
        match err {
            Some(e) => {
                Err(anyhow::Error::new(e).context(format!("scanning {}", self.path.display())))
            }
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rocks(dir: &Path, topic: &str) -> RocksTable {
        rocks_within(dir, topic, 1 << 20)
    }

    /// A store whose copy in memory may take `index_bytes`.
    fn rocks_within(dir: &Path, topic: &str, index_bytes: u64) -> RocksTable {
        RocksTable::open(
            &dir.join(format!("t{index_bytes}")),
            topic,
            &RocksConfig::new(1 << 20).unwrap(),
            &IndexBudget::new(index_bytes),
        )
        .unwrap()
    }

    /// Makes a table of either kind holding what `changes` leave.
    type Make = Box<dyn Fn(&[(&str, Option<&str>)]) -> Box<dyn TableRead>>;

    /// A `MemTable`, and a `RocksTable` with and without its copy in memory.
    fn every_kind(dir: &Path) -> Vec<Make> {
        let rocks_table = |index_bytes: u64| -> Make {
            let dir = dir.to_owned();
            Box::new(move |changes: &[(&str, Option<&str>)]| {
                let t = rocks_within(&dir, "topic", index_bytes);
                t.apply(
                    changes
                        .iter()
                        .map(|(k, v)| (k.as_bytes(), v.map(str::as_bytes))),
                    &BTreeMap::new(),
                )
                .unwrap();
                assert_eq!(t.indexed(), index_bytes > 0);
                Box::new(t)
            })
        };
        vec![
            Box::new(|changes| {
                let t = MemTable::default();
                for (k, v) in changes {
                    t.apply(k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
                }
                Box::new(t)
            }),
            rocks_table(1 << 20),
            rocks_table(0),
        ]
    }

    #[test]
    fn latest_value_wins_and_tombstones_remove() {
        let dir = tempfile::tempdir().unwrap();
        for make in every_kind(dir.path()) {
            let t = make(&[
                ("a", Some("1")),
                ("b", Some("2")),
                ("a", Some("3")),
                ("b", None),
                ("c", Some("4")),
            ]);
            assert_eq!(t.get(b"a", 10).unwrap(), Some(Found::Value(b"3".to_vec())));
            assert_eq!(
                t.get(b"a", 0).unwrap(),
                Some(Found::TooLong(1)),
                "not copied past the bound"
            );
            assert_eq!(t.get(b"b", 10).unwrap(), None);
            let all = t.scan(b"", None, 10, u64::MAX).unwrap();
            assert_eq!(
                all,
                vec![
                    (b"a".to_vec(), b"3".to_vec()),
                    (b"c".to_vec(), b"4".to_vec())
                ]
            );
            // Bounds: exclusive end, reversed bounds, limit, bytes.
            assert_eq!(t.scan(b"a", Some(b"c"), 10, u64::MAX).unwrap().len(), 1);
            assert!(t.scan(b"c", Some(b"a"), 10, u64::MAX).unwrap().is_empty());
            assert_eq!(t.scan(b"", None, 1, u64::MAX).unwrap().len(), 1);
            assert_eq!(
                t.scan(b"", None, 10, 1).unwrap().len(),
                1,
                "the entry that reaches max_bytes is the last"
            );
        }
    }

    #[test]
    fn offsets_persist_and_another_topic_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = rocks(dir.path(), "customers");
            t.apply(
                [(&b"k"[..], Some(&b"v"[..]))],
                &BTreeMap::from([(0, 5), (1, 7)]),
            )
            .unwrap();
        }
        let t = rocks(dir.path(), "customers");
        assert_eq!(t.offsets().unwrap(), BTreeMap::from([(0, 5), (1, 7)]));
        assert!(t.indexed(), "the copy in memory is built from the store");
        assert_eq!(t.get(b"k", 10).unwrap(), Some(Found::Value(b"v".to_vec())));
        drop(t);
        let t = rocks(dir.path(), "prices");
        assert!(t.offsets().unwrap().is_empty());
        assert_eq!(t.get(b"k", 10).unwrap(), None);
    }

    #[test]
    fn ids_follow_names_and_errors_name_the_tables() {
        let tables = Tables::new(["prices", "customers"]);
        assert_eq!(tables.open("customers"), Ok(0));
        assert_eq!(tables.open("prices"), Ok(1));
        assert_eq!(
            tables.open("users").unwrap_err(),
            "no table `users`: the deployment declares `customers`, `prices`"
        );
        assert!(
            tables
                .store(0)
                .err()
                .unwrap()
                .to_string()
                .contains("not loaded")
        );
        assert!(tables.store(7).is_err());
        tables
            .attach("customers", Arc::new(MemTable::default()))
            .unwrap();
        assert!(tables.store(0).is_ok());
        assert!(
            tables
                .attach("customers", Arc::new(MemTable::default()))
                .is_err()
        );
        let same: Arc<dyn TableRead> = Arc::new(MemTable::default());
        tables.attach("prices", same.clone()).unwrap();
        tables.attach("prices", same).unwrap();
    }
}

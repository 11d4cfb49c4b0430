//! The durable [`StateBackend`]: one RocksDB database per (deployment,
//! partition) under the host's state directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::{Context, Result};
use rocksdb::{
    BlockBasedOptions, Cache, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

use super::{PartitionState, StateBackend};

/// Settings shared by every store of a host (one block cache for all).
#[derive(Clone)]
pub struct RocksConfig {
    cache: Cache,
}

impl RocksConfig {
    pub fn new(cache_bytes: usize) -> Result<Self> {
        Ok(RocksConfig {
            cache: Cache::new_lru_cache(cache_bytes).context("creating the RocksDB block cache")?,
        })
    }

    pub(crate) fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Lookups of absent keys (a new window, a first word) are common:
        // bloom filters answer them without reading blocks or searching
        // the memtable.
        table.set_bloom_filter(10.0, false);
        let mut o = Options::default();
        o.set_memtable_prefix_bloom_ratio(0.1);
        o.set_memtable_whole_key_filtering(true);
        o.create_if_missing(true);
        o.set_block_based_table_factory(&table);
        // Many small stores per host: keep each one's memory modest.
        o.set_write_buffer_size(8 << 20);
        o.set_max_open_files(256);
        o
    }
}

pub struct RocksBackend {
    db: Arc<DB>,
    path: PathBuf,
}

/// Reads a store its owner has open, from another thread (state queries
/// of the admin API). It sees what the owner has flushed: the state as of
/// the partition's last commit. It keeps the store open only while a read
/// runs, so the owner can close (and reopen) it.
#[derive(Clone)]
pub struct StoreReader {
    db: Weak<DB>,
    path: PathBuf,
}

impl StoreReader {
    pub fn is_open(&self) -> bool {
        self.db.strong_count() > 0
    }

    /// The store as a read-only [`PartitionState`], unless its owner has
    /// closed it.
    pub fn open(&self) -> Option<Result<PartitionState>> {
        let db = self.db.upgrade()?;
        Some(PartitionState::open(Box::new(ReadOnly {
            db,
            path: self.path.clone(),
        })))
    }
}

struct ReadOnly {
    db: Arc<DB>,
    path: PathBuf,
}

impl StateBackend for ReadOnly {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        read(&self.db, &self.path, key)
    }

    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> super::Entries<'a> {
        scan(&self.db, start, end)
    }

    fn write(&mut self, _: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        anyhow::bail!("{} is open for reading only", self.path.display())
    }
}

fn read(db: &DB, path: &Path, key: &[u8]) -> Result<Option<Vec<u8>>> {
    db.get(key)
        .with_context(|| format!("reading {}", path.display()))
}

fn scan<'a>(db: &'a DB, start: &[u8], end: Option<&[u8]>) -> super::Entries<'a> {
    let mut opts = ReadOptions::default();
    if let Some(end) = end {
        opts.set_iterate_upper_bound(end.to_vec());
    }
    let it = db.iterator_opt(IteratorMode::From(start, Direction::Forward), opts);
    Box::new(it.map(|r| {
        r.map(|(k, v)| (k.into_vec(), v.into_vec()))
            .context("scanning state")
    }))
}

impl RocksBackend {
    pub fn open(path: &Path, config: &RocksConfig) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating state directory {}", path.display()))?;
        let db = while_locked(|| DB::open(&config.options(), path))
            .with_context(|| format!("opening state store {}", path.display()))?;
        Ok(RocksBackend {
            db: Arc::new(db),
            path: path.to_owned(),
        })
    }

    pub fn reader(&self) -> StoreReader {
        StoreReader {
            db: Arc::downgrade(&self.db),
            path: self.path.clone(),
        }
    }

    /// Deletes a store (its files) so it can be rebuilt from the changelog.
    pub fn destroy(path: &Path) -> Result<()> {
        if path.exists() {
            while_locked(|| DB::destroy(&Options::default(), path))
                .with_context(|| format!("deleting state store {}", path.display()))?;
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(())
    }
}

/// Runs `f` again while the store's lock is taken: a state query may hold
/// the store of a partition this host just gave up for a moment (see
/// [`StoreReader`]), and the lock is released when that read ends.
fn while_locked<T>(mut f: impl FnMut() -> Result<T, rocksdb::Error>) -> Result<T, rocksdb::Error> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if tries < 40 && e.to_string().contains("lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

impl StateBackend for RocksBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        read(&self.db, &self.path, key)
    }

    fn value_len(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self
            .db
            .get_pinned(key)
            .with_context(|| format!("reading {}", self.path.display()))?
            .map(|v| v.len()))
    }

    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> super::Entries<'a> {
        scan(&self.db, start, end)
    }

    fn write(&mut self, changes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        // The changelog, not fsync, is what survives a lost machine; the
        // write-ahead log survives a killed process.
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db
            .write_opt(batch, &opts)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

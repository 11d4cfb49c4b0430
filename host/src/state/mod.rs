//! Keyed state of one deployment on one input partition.
//!
//! [`PartitionState`] layers the writes not yet committed (`pending`) over a
//! durable [`StateBackend`] (RocksDB in production, a map in `weir test`).
//! Writes made during a call into the transform are recorded in an undo log
//! so a failed call can be rolled back exactly; commit hands the pending
//! writes to the backend (and, in the pipeline, to the changelog).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use anyhow::Result;

mod cache;
pub mod changelog;
mod pending;
pub mod memory;
pub mod rocks;

/// Namespaces inside a partition's key space.
pub mod ns {
    /// Keys written by the transform through the `state` interface.
    pub const USER: u8 = b'u';
    /// Window aggregates and their close index.
    pub const WINDOW: u8 = b'w';
    /// Host bookkeeping (stream time, checkpoints).
    pub const META: u8 = b'm';
}

const STREAM_TIME_KEY: &[u8] = b"mstream-time";
const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";

/// Read-cache budget per partition.
const CACHE_BYTES: usize = 8 << 20;

/// What the durable state of a partition corresponds to: the input
/// positions (next offset per topic) it includes, and how far the changelog
/// it was built from or written to extends.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub offsets: BTreeMap<String, i64>,
    /// Next changelog offset not reflected in the store.
    pub changelog_next: i64,
}

/// Durable storage under a [`PartitionState`].
pub trait StateBackend: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries with `start <= key < end`, ascending.
    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;
    /// Applies `changes` (a `None` value deletes) atomically.
    fn write(&mut self, changes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()>;
}

pub use pending::Pending;

pub struct PartitionState {
    backend: Box<dyn StateBackend>,
    pending: Pending,
    /// Values as of the last flush (interior: reads fill it).
    cache: RefCell<cache::ReadCache>,
    /// `(key, previous pending entry)` for every write of the open
    /// transaction; `None` when the key had no pending entry.
    undo: Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>,
    in_txn: bool,
    stream_time: i64,
}

impl PartitionState {
    pub fn open(backend: Box<dyn StateBackend>) -> Result<Self> {
        let stream_time = match backend.get(STREAM_TIME_KEY)? {
            Some(b) if b.len() == 8 => i64::from_be_bytes(b.try_into().unwrap()),
            _ => i64::MIN,
        };
        Ok(PartitionState { backend, pending: Pending::default(), cache: RefCell::new(cache::ReadCache::new(CACHE_BYTES)), undo: Vec::new(), in_txn: false, stream_time })
    }

    pub fn in_memory() -> Self {
        Self::open(Box::new(memory::MemoryBackend::default())).expect("memory backend cannot fail")
    }

    /// The largest record timestamp seen on the partition (`i64::MIN` before
    /// the first record). Drives state TTLs.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    pub fn observe_timestamp(&mut self, ts: i64) {
        if ts > self.stream_time {
            self.stream_time = ts;
            self.pending.insert(STREAM_TIME_KEY.to_vec(), Some(ts.to_be_bytes().to_vec()));
        }
    }

    // ---- transactions around one call into the transform ----

    pub fn begin(&mut self) {
        debug_assert!(!self.in_txn);
        self.in_txn = true;
        self.undo.clear();
    }

    /// Whether the open transaction wrote anything.
    pub fn touched(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn commit_txn(&mut self) {
        self.in_txn = false;
        self.undo.clear();
    }

    pub fn rollback(&mut self) {
        for (key, previous) in self.undo.drain(..).rev() {
            match previous {
                Some(v) => {
                    self.pending.insert(key, v);
                }
                None => self.pending.remove(&key),
            }
        }
        self.in_txn = false;
    }

    // ---- raw namespaced access ----

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        let mut cache = self.cache.borrow_mut();
        if let Some(v) = cache.get(key) {
            return Ok(v);
        }
        let v = self.backend.get(key)?;
        cache.insert(key.to_vec(), v.clone());
        Ok(v)
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.in_txn {
            let previous = self.pending.insert(key.clone(), value);
            self.undo.push((key, previous));
        } else {
            self.pending.insert(key, value);
        }
    }

    /// Up to `limit` live entries with `start <= key < end`, ascending.
    pub fn scan_raw(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pending = self.pending.range(start, upper).peekable();
        let mut backend = self.backend.scan(start, end).peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let take_pending = match (pending.peek(), backend.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((pk, _)), Some(Ok((bk, _)))) => {
                    if pk.as_slice() == bk.as_slice() {
                        backend.next(); // shadowed by the pending write
                        true
                    } else {
                        pk.as_slice() < bk.as_slice()
                    }
                }
                (Some(_), Some(Err(_))) => false,
            };
            if take_pending {
                let (k, v) = pending.next().unwrap();
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
            } else {
                out.push(backend.next().unwrap()?);
            }
        }
        Ok(out)
    }

    // ---- the `state` interface: user keys with optional expiry ----

    fn user_key(key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(ns::USER);
        k.extend_from_slice(key);
        k
    }

    /// Decodes a stored user value; `None` if it has expired.
    fn live(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        match stored.first() {
            Some(0) => Some(stored[1..].to_vec()),
            Some(1) if stored.len() >= 9 => {
                let expires = i64::from_be_bytes(stored[1..9].try_into().unwrap());
                (self.stream_time < expires).then(|| stored[9..].to_vec())
            }
            _ => None,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_raw(&Self::user_key(key))?.and_then(|v| self.live(v)))
    }

    pub fn set(&mut self, key: &[u8], value: &[u8], ttl_ms: Option<u64>) {
        let mut stored = Vec::with_capacity(value.len() + 9);
        match ttl_ms {
            None => stored.push(0),
            Some(ttl) => {
                let base = self.stream_time.max(0);
                stored.push(1);
                stored.extend_from_slice(&base.saturating_add(ttl.min(i64::MAX as u64) as i64).to_be_bytes());
            }
        }
        stored.extend_from_slice(value);
        self.put_raw(Self::user_key(key), Some(stored));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.put_raw(Self::user_key(key), None);
    }

    /// Live user entries with `start <= key < end`, at most `limit`.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = Self::user_key(start);
        let end = match end {
            Some(e) => Some(Self::user_key(e)),
            None => Some(vec![ns::USER + 1]),
        };
        let mut out = Vec::new();
        let mut from = start;
        // Expired entries are skipped, so a page may need several scans.
        while out.len() < limit as usize {
            let want = limit as usize - out.len();
            let page = self.scan_raw(&from, end.as_deref(), want)?;
            let exhausted = page.len() < want;
            if let Some((last, _)) = page.last() {
                from = last.clone();
                from.push(0);
            }
            out.extend(page.into_iter().filter_map(|(k, v)| Some((k[1..].to_vec(), self.live(v)?))));
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// Live user entries whose key starts with `prefix` and is greater than
    /// `after`, at most `limit`.
    pub fn prefix(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = match after {
            Some(a) if a >= prefix => {
                let mut s = a.to_vec();
                s.push(0);
                s
            }
            _ => prefix.to_vec(),
        };
        let end = prefix_end(prefix);
        let mut entries = self.range(&start, end.as_deref(), limit)?;
        entries.retain(|(k, _)| k.starts_with(prefix));
        Ok(entries)
    }

    // ---- commit ----

    /// Pending writes that belong in the changelog (user and window state,
    /// not host bookkeeping).
    pub fn durable_changes(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.pending.iter().filter(|(k, _)| k.first() != Some(&ns::META))
    }

    pub fn has_durable_changes(&self) -> bool {
        self.durable_changes().next().is_some()
    }

    /// Forgets every write since the last flush (the partition is rewound
    /// to its last commit).
    pub fn discard_pending(&mut self) -> Result<()> {
        self.pending.clear();
        self.undo.clear();
        self.in_txn = false;
        *self = Self::open(std::mem::replace(&mut self.backend, Box::new(memory::MemoryBackend::default())))?;
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match self.get_raw(CHECKPOINT_KEY)? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Records `checkpoint` and makes every pending write durable with it,
    /// atomically.
    pub fn flush_with_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        self.put_raw(CHECKPOINT_KEY.to_vec(), Some(serde_json::to_vec(checkpoint)?));
        self.flush()
    }

    /// Writes changes replayed from a changelog straight to the backend:
    /// no pending set, no undo log, no read cache to churn.
    pub fn write_restored(&mut self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        debug_assert!(!self.in_txn, "restore inside a transaction");
        self.cache.get_mut().clear();
        self.backend.write(&mut changes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    /// Makes the pending writes durable in the backend.
    pub fn flush(&mut self) -> Result<()> {
        debug_assert!(!self.in_txn, "flush inside a transaction");
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.backend.write(&mut self.pending.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))) {
            // The store may hold part of the batch or none of it.
            self.cache.get_mut().clear();
            return Err(e);
        }
        let cache = self.cache.get_mut();
        for (k, v) in self.pending.drain() {
            cache.insert(k, v);
        }
        Ok(())
    }
}

/// The smallest key greater than every key starting with `prefix`; `None`
/// when there is none (the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_exactly_the_state_before_the_transaction() {
        let mut s = PartitionState::in_memory();
        s.set(b"a", b"1", None);
        s.flush().unwrap();
        s.set(b"b", b"2", None);
        s.begin();
        s.set(b"a", b"changed", None);
        s.delete(b"b");
        s.set(b"c", b"3", None);
        assert!(s.touched());
        s.rollback();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(s.get(b"c").unwrap(), None);
    }

    #[test]
    fn scans_merge_pending_writes_over_the_backend() {
        let mut s = PartitionState::in_memory();
        for k in [b"k1", b"k2", b"k3", b"k4"] {
            s.set(k, b"old", None);
        }
        s.flush().unwrap();
        s.delete(b"k2");
        s.set(b"k3", b"new", None);
        s.set(b"k5", b"new", None);
        let got = s.prefix(b"k", None, 10).unwrap();
        let keys: Vec<_> = got.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())).collect();
        assert_eq!(keys, [("k1".into(), "old".into()), ("k3".into(), "new".into()), ("k4".into(), "old".into()), ("k5".into(), "new".into())]);
        let page = s.prefix(b"k", Some(b"k3"), 1).unwrap();
        assert_eq!(page[0].0, b"k4");
        assert_eq!(s.range(b"k2", Some(b"k4"), 10).unwrap().len(), 1);
    }

    #[test]
    fn entries_expire_by_stream_time() {
        let mut s = PartitionState::in_memory();
        s.observe_timestamp(1_000);
        s.set(b"session", b"x", Some(500));
        s.observe_timestamp(1_499);
        assert!(s.get(b"session").unwrap().is_some());
        s.observe_timestamp(1_500);
        assert!(s.get(b"session").unwrap().is_none());
        assert!(s.prefix(b"", None, 10).unwrap().is_empty());
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}

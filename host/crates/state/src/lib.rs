//! Keyed state of one deployment on one input partition.
//!
//! [`PartitionState`] layers the writes not yet committed (`pending`) over a
//! durable [`StateBackend`] (RocksDB in production, a map in `weir test`).
//! Writes made during a call into the transform are recorded in an undo log
//! so a failed call can be rolled back exactly; commit hands the pending
//! writes to the backend (and, in the pipeline, to the changelog). A
//! savepoint extends the undo log over many calls (a whole batch).
//!
//! The state also keeps its size (bytes of keys and values of the user, window
//! and timer namespaces) for the `max_state_bytes` limit: exact as of each
//! flush (persisted with it), plus the exact change of the pending writes.
//!
//! (Over 400 lines: transactions, savepoints, sizes and flushing share the pending map and its undo log.)

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;

use anyhow::Result;

mod cache;
pub mod memory;
mod pending;
pub mod rocks;
pub mod table_index;
pub mod tables;
pub mod timers;
mod user;

/// Namespaces inside a partition's key space.
pub mod ns {
    /// Keys written by the transform through the `state` interface.
    pub const USER: u8 = b'u';
    /// Window aggregates and their close index.
    pub const WINDOW: u8 = b'w';
    /// Host bookkeeping (stream time, checkpoints).
    pub const META: u8 = b'm';
    /// Timers set by the transform (see [`crate::timers`]).
    pub const TIMER: u8 = b't';
    /// The namespaces counted in the state size and changelogged; host
    /// bookkeeping is neither.
    pub const SIZED: [u8; 3] = [TIMER, USER, WINDOW];

    pub(crate) fn sized(key: &[u8]) -> bool {
        key.first().is_some_and(|b| SIZED.contains(b))
    }
}

/// Where the partition's stream time is kept. Host bookkeeping, but a
/// commit writes it to the changelog too, so a restore elsewhere resumes
/// from the same stream time (timers, TTLs).
pub const STREAM_TIME_KEY: &[u8] = b"mstream-time";
const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";
/// Bytes of the user, window and timer namespaces, written with every flush.
const STATE_BYTES_KEY: &[u8] = b"mstate-bytes";

/// Room for a host header on each changelog record (older changelogs carry
/// their positions in a `weir.offsets` header).
const CHANGELOG_HEADER_ROOM: usize = "weir.offsets".len() + 64;

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

/// Key-value entries read from a store, in key order.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + 'a>;

/// Durable storage under a [`PartitionState`].
pub trait StateBackend: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The length of the value under `key`.
    fn value_len(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.get(key)?.map(|v| v.len()))
    }
    /// Entries with `start <= key < end`, ascending.
    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> Entries<'a>;
    /// Applies `changes` (a `None` value deletes) atomically.
    fn write(&mut self, changes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()>;
}

pub use pending::Pending;

/// What [`PartitionState::rollback_to_savepoint`] returns to; the pending
/// writes themselves are restored through the undo log.
struct Savepoint {
    stream_time: i64,
    /// The pending stream-time entry (`observe_timestamp` bypasses the undo log).
    stream_time_entry: Option<pending::Value>,
    pending_bytes: i64,
}

pub struct PartitionState {
    backend: Box<dyn StateBackend>,
    pending: Pending,
    /// Values as of the last flush (interior: reads fill it).
    cache: RefCell<cache::ReadCache>,
    /// `(key, previous pending entry)` for the first write of every key in
    /// each transaction, since the open one began or, if one is active, since
    /// the savepoint; `None` when the key had no pending entry. Only first
    /// writes are kept: a transaction that sets one key a million times
    /// keeps one old value, not a million.
    undo: Vec<(Vec<u8>, Option<pending::Stamped>)>,
    /// Stamps the pending entries the open transaction writes.
    txn_stamp: u64,
    /// Bytes `pending` holds (what it costs in memory, unlike
    /// `pending_bytes`, the change in state size).
    pending_held: u64,
    /// Largest entry (key, value and changelog framing) that may be
    /// written, and the size of the first larger one written since asked.
    max_entry_bytes: Option<u64>,
    oversize: Option<u64>,
    /// Where the open transaction's entries start in `undo`.
    txn_start: usize,
    in_txn: bool,
    stream_time: i64,
    /// Bytes of the user, window and timer namespaces in the backend; `None` until
    /// counted (a store without the counter, or after a restore wrote to the
    /// backend directly): counted by a scan when first asked for.
    stored_bytes: Cell<Option<u64>>,
    /// What the pending writes change `stored_bytes` by.
    pending_bytes: i64,
    /// `pending_bytes` when the open transaction began.
    txn_bytes: i64,
    /// A size lookup failed, so `pending_bytes` may be too high: the next
    /// flush forgets the count instead of persisting it.
    pending_inexact: bool,
    savepoint: Option<Savepoint>,
    /// Per clock, no timer is due before this time (see `timers.rs`); reset
    /// by every rollback, which may restore timers taken below it.
    timer_floor: [i64; 2],
    /// Per clock, known to hold no timer at all (set by a scan that found
    /// none; cleared by setting one and by every rollback).
    no_timers: [bool; 2],
}

impl PartitionState {
    pub fn open(backend: Box<dyn StateBackend>) -> Result<Self> {
        let stream_time = match backend.get(STREAM_TIME_KEY)? {
            Some(b) if b.len() == 8 => i64::from_be_bytes(b.try_into().expect("8 bytes, checked")),
            _ => i64::MIN,
        };
        let stored_bytes = match backend.get(STATE_BYTES_KEY)? {
            Some(b) if b.len() == 8 => {
                Some(u64::from_be_bytes(b.try_into().expect("8 bytes, checked")))
            }
            // A new store holds nothing; an old one is counted if asked.
            _ => ns::SIZED
                .iter()
                .all(|&space| backend.scan(&[space], Some(&[space + 1])).next().is_none())
                .then_some(0),
        };
        Ok(PartitionState {
            backend,
            pending: Pending::default(),
            cache: RefCell::new(cache::ReadCache::new(CACHE_BYTES)),
            undo: Vec::new(),
            txn_stamp: 0,
            pending_held: 0,
            max_entry_bytes: None,
            oversize: None,
            txn_start: 0,
            in_txn: false,
            stream_time,
            stored_bytes: Cell::new(stored_bytes),
            pending_bytes: 0,
            txn_bytes: 0,
            pending_inexact: false,
            savepoint: None,
            timer_floor: [i64::MIN; 2],
            no_timers: [false; 2],
        })
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
            self.pending
                .insert(STREAM_TIME_KEY.to_vec(), Some(ts.to_be_bytes().to_vec()));
        }
    }

    // ---- transactions around one call into the transform ----

    pub fn begin(&mut self) {
        debug_assert!(!self.in_txn);
        self.in_txn = true;
        self.txn_stamp += 1;
        if self.savepoint.is_none() {
            self.undo.clear();
        }
        self.txn_start = self.undo.len();
        self.txn_bytes = self.pending_bytes;
    }

    /// Whether the open transaction wrote anything.
    pub fn touched(&self) -> bool {
        self.undo.len() > self.txn_start
    }

    pub fn commit_txn(&mut self) {
        self.in_txn = false;
        if self.savepoint.is_none() {
            self.undo.clear();
        }
    }

    pub fn rollback(&mut self) {
        self.undo_to(self.txn_start);
        self.pending_bytes = self.txn_bytes;
        self.in_txn = false;
    }

    fn undo_to(&mut self, len: usize) {
        self.timer_floor = [i64::MIN; 2];
        self.no_timers = [false; 2];
        for (key, previous) in self.undo.drain(len..).rev() {
            let held = |v: &pending::Value| entry_held(&key, v);
            let now = self.pending.get(&key).map_or(0, held);
            self.pending_held = self.pending_held.saturating_sub(now)
                + previous.as_ref().map_or(0, |(v, _)| held(v));
            match previous {
                Some(v) => {
                    self.pending.insert_stamped(key, v);
                }
                None => self.pending.remove(&key),
            }
        }
    }

    // ---- a savepoint around many transactions ----
    //
    // An upgraded module's first batches run on trial: if the new module
    // fails a batch, the host rolls the batch's state changes back to the
    // savepoint and runs the batch again with the old module.

    /// Starts recording every write (committed transactions included) and
    /// the stream time, until released or rolled back. No flush may happen
    /// while a savepoint is active.
    pub fn savepoint(&mut self) {
        debug_assert!(
            !self.in_txn && self.savepoint.is_none(),
            "savepoint inside a transaction or another savepoint"
        );
        self.undo.clear();
        self.txn_start = 0;
        self.savepoint = Some(Savepoint {
            stream_time: self.stream_time,
            stream_time_entry: self.pending.get(STREAM_TIME_KEY).cloned(),
            pending_bytes: self.pending_bytes,
        });
    }

    /// Restores the pending writes and stream time exactly as they were at
    /// [`savepoint`](Self::savepoint) (an open transaction is discarded too)
    /// and ends the savepoint.
    pub fn rollback_to_savepoint(&mut self) {
        let Some(sp) = self.savepoint.take() else {
            debug_assert!(false, "no savepoint");
            return;
        };
        self.undo_to(0);
        match sp.stream_time_entry {
            Some(v) => {
                self.pending.insert(STREAM_TIME_KEY.to_vec(), v);
            }
            None => self.pending.remove(STREAM_TIME_KEY),
        }
        self.stream_time = sp.stream_time;
        self.pending_bytes = sp.pending_bytes;
        self.in_txn = false;
        self.txn_start = 0;
    }

    /// Keeps every change since the savepoint and ends it.
    pub fn release_savepoint(&mut self) {
        debug_assert!(!self.in_txn, "release inside a transaction");
        self.savepoint = None;
        self.undo.clear();
        self.txn_start = 0;
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
        let added = entry_bytes(&key, value.as_ref());
        let held = entry_held(&key, &value);
        let previous = self
            .pending
            .insert_stamped(key.clone(), (value, self.txn_stamp));
        self.pending_held = self
            .pending_held
            .saturating_sub(previous.as_ref().map_or(0, |(v, _)| entry_held(&key, v)))
            + held;
        if ns::sized(&key) {
            let removed = match &previous {
                Some((p, _)) => entry_bytes(&key, p.as_ref()),
                None => self.stored_entry_bytes(&key),
            };
            self.pending_bytes += added - removed;
            if let Some(max) = self.max_entry_bytes {
                let framed = weir_abi::record_size(
                    key.len(),
                    added.max(0) as usize,
                    [CHANGELOG_HEADER_ROOM].into_iter(),
                );
                if framed > max && self.oversize.is_none() {
                    self.oversize = Some(framed);
                }
            }
        }
        let first_in_txn = !self.in_txn
            || previous
                .as_ref()
                .is_none_or(|(_, stamp)| *stamp != self.txn_stamp);
        if (self.in_txn || self.savepoint.is_some()) && first_in_txn {
            self.undo.push((key, previous));
        }
    }

    /// Sets the largest entry the changelog accepts (its topic's
    /// `max.message.bytes`); writes of larger entries are reported by
    /// [`take_oversize`](Self::take_oversize).
    pub fn set_max_entry_bytes(&mut self, max: u64) {
        self.max_entry_bytes = Some(max);
    }

    /// The framed size of the first entry written over the limit since the
    /// last call, if any.
    pub fn take_oversize(&mut self) -> Option<(u64, u64)> {
        self.oversize.take().zip(self.max_entry_bytes)
    }

    /// Bytes of keys and values the pending writes hold in memory.
    pub fn pending_held(&self) -> u64 {
        self.pending_held
    }

    /// Bytes of `key`'s entry in the backend. Usually the read cache knows
    /// (transforms read a key before writing it); blind writes cost a
    /// lookup.
    #[inline(never)] // first write of a key since the flush: off the hot path
    fn stored_entry_bytes(&mut self, key: &[u8]) -> i64 {
        let len = match self.cache.get_mut().peek_len(key) {
            Some(len) => len,
            None => self.backend.value_len(key).unwrap_or_else(|_| {
                // Counting the new value in full errs on the high side.
                self.pending_inexact = true;
                None
            }),
        };
        len.map_or(0, |l| (key.len() + l) as i64)
    }

    /// Bytes of keys and values of the user, window and timer namespaces, pending
    /// writes included (expired entries count until deleted). Never lower
    /// than the truth; `u64::MAX` if the store cannot be read to count it.
    pub fn state_bytes(&self) -> u64 {
        self.try_state_bytes().unwrap_or(u64::MAX)
    }

    /// [`state_bytes`](Self::state_bytes), with the error of a store that
    /// had to be counted and could not be read.
    pub fn try_state_bytes(&self) -> Result<u64> {
        let stored = match self.stored_bytes.get() {
            Some(b) => b,
            None => {
                let b = count_bytes(&*self.backend)?;
                self.stored_bytes.set(Some(b));
                b
            }
        };
        Ok((stored as i64).saturating_add(self.pending_bytes).max(0) as u64)
    }

    /// Up to `limit` live entries with `start <= key < end`, ascending,
    /// stopping after the entry that brings their keys and values to
    /// `max_bytes`.
    pub fn scan_raw(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        // The guest chooses both bounds; ordered ranges panic on reversed ones.
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut pending = self.pending.range(start, upper).peekable();
        let mut backend = self.backend.scan(start, end).peekable();
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut bytes = 0u64;
        while out.len() < limit && bytes < max_bytes {
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
                let (k, v) = pending.next().expect("peeked");
                if let Some(v) = v {
                    bytes += (k.len() + v.len()) as u64;
                    out.push((k.clone(), v.clone()));
                }
            } else {
                let (k, v) = backend.next().expect("peeked")?;
                bytes += (k.len() + v.len()) as u64;
                out.push((k, v));
            }
        }
        Ok(out)
    }

    // ---- commit ----

    /// Pending writes that belong in the changelog (user, window and timer state,
    /// not host bookkeeping).
    pub fn durable_changes(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.pending
            .iter()
            .filter(|(k, _)| k.first() != Some(&ns::META))
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
        self.savepoint = None;
        let max_entry_bytes = self.max_entry_bytes;
        *self = Self::open(std::mem::replace(
            &mut self.backend,
            Box::new(memory::MemoryBackend::default()),
        ))?;
        self.max_entry_bytes = max_entry_bytes;
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
        self.put_raw(
            CHECKPOINT_KEY.to_vec(),
            Some(serde_json::to_vec(checkpoint)?),
        );
        self.flush()
    }

    /// Writes changes replayed from a changelog straight to the backend:
    /// no pending set, no undo log, no read cache to churn.
    pub fn write_restored(&mut self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        debug_assert!(
            !self.in_txn && !self.has_durable_changes(),
            "restore over pending writes"
        );
        // The stream time of the commit replayed last (see `STREAM_TIME_KEY`).
        if let Some((_, Some(v))) = changes.iter().rfind(|(k, _)| k == STREAM_TIME_KEY)
            && let Ok(t) = <[u8; 8]>::try_from(v.as_slice())
        {
            self.stream_time = i64::from_be_bytes(t);
        }
        self.cache.get_mut().clear();
        // Counting as we go would cost a lookup per key: recount if asked.
        self.stored_bytes.set(None);
        self.backend
            .write(&mut changes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    /// Makes the pending writes durable in the backend.
    pub fn flush(&mut self) -> Result<()> {
        debug_assert!(!self.in_txn, "flush inside a transaction");
        debug_assert!(self.savepoint.is_none(), "flush inside a savepoint");
        let total = match self.stored_bytes.get() {
            Some(b) if !self.pending_inexact => {
                Some((b as i64).saturating_add(self.pending_bytes).max(0) as u64)
            }
            _ => None,
        };
        if self.pending.is_empty() && total.is_some() {
            return Ok(());
        }
        // The size goes with the changes it describes; an unknown one is
        // deleted, to be counted again.
        self.pending.insert(
            STATE_BYTES_KEY.to_vec(),
            total.map(|b| b.to_be_bytes().to_vec()),
        );
        if let Err(e) = self.backend.write(
            &mut self
                .pending
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref())),
        ) {
            // The store may hold part of the batch or none of it.
            self.cache.get_mut().clear();
            self.stored_bytes.set(None);
            return Err(e);
        }
        let cache = self.cache.get_mut();
        for (k, v) in self.pending.drain() {
            cache.insert(k, v);
        }
        self.stored_bytes.set(total);
        self.pending_bytes = 0;
        self.pending_held = 0;
        self.pending_inexact = false;
        Ok(())
    }
}

/// Bytes a pending entry holds in memory.
fn entry_held(key: &[u8], value: &pending::Value) -> u64 {
    // The key is held twice (the map and its order), with the entries'
    // own structures: tiny entries cost far more than their bytes.
    (2 * key.len() + value.as_ref().map_or(0, Vec::len)) as u64 + PENDING_ENTRY_OVERHEAD
}

/// Bytes a pending entry holds beyond its key and value.
const PENDING_ENTRY_OVERHEAD: u64 = 128;

/// Bytes an entry adds to the state size (a delete: none).
fn entry_bytes(key: &[u8], value: Option<&Vec<u8>>) -> i64 {
    value.map_or(0, |v| (key.len() + v.len()) as i64)
}

/// Bytes of the sized namespaces of `backend`, by a scan.
fn count_bytes(backend: &dyn StateBackend) -> Result<u64> {
    let mut total = 0;
    for space in ns::SIZED {
        for entry in backend.scan(&[space], Some(&[space + 1])) {
            let (k, v) = entry?;
            total += (k.len() + v.len()) as u64;
        }
    }
    Ok(total)
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
mod tests;

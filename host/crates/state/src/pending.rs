//! The writes of a partition since its last flush. Every record reads and
//! writes a few of them, so they are hashed; scans and flushes need key
//! order, so new keys are also kept in an ordered set. (A `BTreeMap` alone
//! costs a dozen key comparisons per access, most of the time of a window
//! update.)

use std::collections::BTreeSet;
use std::ops::Bound;

use rustc_hash::FxHashMap;

/// A pending value; `None` is a delete.
pub type Value = Option<Vec<u8>>;

/// A pending value and the transaction that wrote it (see
/// `PartitionState::put_raw`: a key's first write in a transaction is the
/// only one the undo log needs).
pub type Stamped = (Value, u64);

#[derive(Default)]
pub struct Pending {
    values: FxHashMap<Vec<u8>, Stamped>,
    order: BTreeSet<Vec<u8>>,
}

impl Pending {
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.values.get(key).map(|(v, _)| v)
    }

    /// Sets `key` outside any transaction.
    pub fn insert(&mut self, key: Vec<u8>, value: Value) -> Option<Value> {
        self.insert_stamped(key, (value, 0)).map(|(v, _)| v)
    }

    /// Sets `key`; returns its previous pending entry, if it had one.
    pub fn insert_stamped(&mut self, key: Vec<u8>, value: Stamped) -> Option<Stamped> {
        if let Some(slot) = self.values.get_mut(&key) {
            return Some(std::mem::replace(slot, value));
        }
        self.order.insert(key.clone());
        self.values.insert(key, value);
        None
    }

    pub fn remove(&mut self, key: &[u8]) {
        if self.values.remove(key).is_some() {
            self.order.remove(key);
        }
    }

    /// Entries with `start <= key` within `upper`, in key order.
    pub fn range<'a>(
        &'a self,
        start: &[u8],
        upper: Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Value)> + 'a {
        self.order
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|k| (k, &self.values[k].0))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Value)> {
        self.order.iter().map(|k| (k, &self.values[k].0))
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }

    /// Empties the set, yielding its entries in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Value)> + '_ {
        self.order.clear();
        self.values.drain().map(|(k, (v, _))| (k, v))
    }
}

//! Point lookups of a table answered from memory: a copy of its values in
//! a hash map beside the RocksDB store, kept while the host's index budget
//! has room for it. A lookup in RocksDB is a random read (bloom filter,
//! block cache, a block decoded on a miss) of ~4 µs; in the map it is a
//! hash and a copy. A table that outgrows the budget drops its copy and
//! reads RocksDB from then on (until the store is opened again): the
//! budget bounds the host's memory, whoever's tables fill it.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an entry costs beyond its key and value: two allocations'
/// headers and rounding, roughly.
const ENTRY_OVERHEAD: u64 = 32;
/// What a slot of the map costs, used or not: two boxed slices and a
/// control byte. The map's capacity is charged, not its length, so a
/// table that grew and shrank still pays for what it holds.
const SLOT: u64 = 33;

/// Bytes the tables of a host may keep in memory, all together.
pub struct IndexBudget {
    limit: u64,
    used: AtomicU64,
}

impl IndexBudget {
    pub fn new(limit: u64) -> Arc<IndexBudget> {
        Arc::new(IndexBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

struct Copy {
    // SipHash (std's default): keys come from a topic anyone may write.
    map: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Bytes of the entries (see [`cost`]).
    entries: u64,
    /// What the budget holds for this copy: its footprint when last
    /// changed.
    reserved: u64,
}

impl Copy {
    fn empty() -> Copy {
        Copy {
            map: HashMap::new(),
            entries: 0,
            reserved: 0,
        }
    }

    fn footprint(&self) -> u64 {
        self.entries + self.map.capacity() as u64 * SLOT
    }
}

fn cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

/// A table's copy in memory, or none (over the budget, or dropped).
pub(crate) struct MemIndex {
    budget: Arc<IndexBudget>,
    copy: RwLock<Option<Copy>>,
}

impl MemIndex {
    /// Builds the copy from `entries` (the store's), if they fit; none at
    /// all when the budget is 0.
    pub(crate) fn build(
        budget: &Arc<IndexBudget>,
        entries: impl Iterator<Item = (Box<[u8]>, Box<[u8]>)>,
    ) -> MemIndex {
        let index = MemIndex {
            budget: budget.clone(),
            copy: RwLock::new((budget.limit > 0).then(Copy::empty)),
        };
        for (k, v) in entries {
            if !index.put(&k, Some(&v)) {
                break;
            }
        }
        index
    }

    /// The value of `key` when the copy is kept: `Some(None)` when absent,
    /// `None` when there is no copy (ask the store).
    pub(crate) fn get<T>(&self, key: &[u8], found: impl FnOnce(&[u8]) -> T) -> Option<Option<T>> {
        let copy = self.copy.read();
        let copy = copy.as_ref()?;
        Some(copy.map.get(key).map(|v| found(v)))
    }

    pub(crate) fn kept(&self) -> bool {
        self.copy.read().is_some()
    }

    /// Sets (or with `None` removes) `key` in the copy; `false` when this
    /// dropped the copy for want of budget, or there was none.
    pub(crate) fn put(&self, key: &[u8], value: Option<&[u8]>) -> bool {
        let mut guard = self.copy.write();
        let Some(copy) = guard.as_mut() else {
            return false;
        };
        let old = match value {
            Some(v) => copy.map.insert(key.into(), v.into()),
            None => copy.map.remove(key),
        };
        copy.entries += value.map_or(0, |v| cost(key, v));
        copy.entries -= old.map_or(0, |v| cost(key, &v));
        // Deletes give memory back too: a topic that adds keys and
        // deletes them must not leave a map of empty slots behind.
        if copy.map.len() < copy.map.capacity() / 4 {
            copy.map.shrink_to(copy.map.len() * 2);
        }
        let footprint = copy.footprint();
        if footprint > copy.reserved && !self.budget.reserve(footprint - copy.reserved) {
            self.budget.release(copy.reserved);
            *guard = None;
            return false;
        }
        self.budget.release(copy.reserved.saturating_sub(footprint));
        copy.reserved = footprint;
        true
    }

    /// Empties the copy (kept, if it was).
    pub(crate) fn clear(&self) {
        if let Some(copy) = self.copy.write().as_mut() {
            self.budget.release(copy.reserved);
            *copy = Copy::empty();
        }
    }
}

impl Drop for MemIndex {
    fn drop(&mut self) {
        if let Some(copy) = self.copy.get_mut() {
            self.budget.release(copy.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> impl Iterator<Item = (Box<[u8]>, Box<[u8]>)> {
        (0..n).map(|i| (format!("k{i}").as_bytes().into(), vec![b'v'; 10].into()))
    }

    /// What the budget should hold for `index`: its entries and its map's
    /// slots.
    fn held(index: &MemIndex) -> u64 {
        let copy = index.copy.read();
        let copy = copy.as_ref().expect("a copy");
        let entries: u64 = copy.map.iter().map(|(k, v)| cost(k, v)).sum();
        entries + copy.map.capacity() as u64 * SLOT
    }

    #[test]
    fn the_copy_answers_and_counts_against_the_budget() {
        let budget = IndexBudget::new(1 << 20);
        let index = MemIndex::build(&budget, entries(100));
        assert_eq!(budget.used(), held(&index));
        assert_eq!(index.get(b"k7", <[u8]>::to_vec), Some(Some(vec![b'v'; 10])));
        assert_eq!(index.get(b"nope", <[u8]>::to_vec), Some(None));
        assert!(index.put(b"k7", Some(b"shorter")));
        assert_eq!(budget.used(), held(&index));
        assert!(index.put(b"k7", None));
        assert_eq!(index.get(b"k7", <[u8]>::to_vec), Some(None));
        assert_eq!(budget.used(), held(&index));
        index.clear();
        assert_eq!(budget.used(), 0);
        assert!(index.kept());
        assert!(index.put(b"a", Some(b"b")));
        drop(index);
        assert_eq!(budget.used(), 0, "a dropped copy gives its bytes back");
    }

    /// Keys added and deleted again leave no map of empty slots charged
    /// or held.
    #[test]
    fn deletes_give_the_slots_back() {
        let budget = IndexBudget::new(64 << 20);
        let index = MemIndex::build(&budget, entries(100_000));
        let full = budget.used();
        for i in 0..99_990 {
            assert!(index.put(format!("k{i}").as_bytes(), None));
        }
        assert_eq!(budget.used(), held(&index));
        assert!(budget.used() < full / 100, "{} of {full}", budget.used());
    }

    #[test]
    fn a_budget_of_zero_keeps_no_copy() {
        let budget = IndexBudget::new(0);
        let index = MemIndex::build(&budget, entries(0));
        assert!(!index.kept());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_table_over_the_budget_drops_its_copy_and_gives_everything_back() {
        let budget = IndexBudget::new(50 * (ENTRY_OVERHEAD + 12 + 2 * SLOT));
        let other = MemIndex::build(&budget, entries(10));
        let used_by_other = budget.used();
        let big = MemIndex::build(&budget, entries(100));
        assert!(!big.kept());
        assert_eq!(
            big.get(b"k1", <[u8]>::to_vec),
            None,
            "no copy: ask the store"
        );
        assert!(!big.put(b"k1", Some(b"v")), "it stays dropped");
        assert_eq!(
            budget.used(),
            used_by_other,
            "the dropped copy holds nothing"
        );
        assert!(other.kept());
        assert_eq!(other.get(b"k1", <[u8]>::to_vec), Some(Some(vec![b'v'; 10])));
    }
}

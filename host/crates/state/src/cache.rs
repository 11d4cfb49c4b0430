//! A bounded read cache over a partition's durable store, so a hot key
//! costs no RocksDB lookup after the write batch that held it was flushed
//! (the pending writes already serve reads within a commit).
//!
//! Two generations approximate LRU at the cost of a hash lookup: entries
//! go to the hot map; when it fills half the budget it becomes the cold
//! map (the old cold one is dropped), and a cold hit moves back to hot.

use rustc_hash::FxHashMap as HashMap;

type Entry = Option<Vec<u8>>;

pub struct ReadCache {
    hot: HashMap<Vec<u8>, Entry>,
    cold: HashMap<Vec<u8>, Entry>,
    hot_bytes: usize,
    budget: usize,
}

/// Per-entry bookkeeping beyond key and value bytes, roughly.
const OVERHEAD: usize = 64;

impl ReadCache {
    pub fn new(budget: usize) -> Self {
        ReadCache {
            hot: HashMap::default(),
            cold: HashMap::default(),
            hot_bytes: 0,
            budget,
        }
    }

    /// The cached value of `key` (`Some(None)`: known absent).
    pub fn get(&mut self, key: &[u8]) -> Option<Entry> {
        if let Some(v) = self.hot.get(key) {
            return Some(v.clone());
        }
        let (k, v) = self.cold.remove_entry(key)?;
        self.insert(k, v.clone());
        Some(v)
    }

    /// The length of the cached value of `key` (`Some(None)`: known
    /// absent), leaving recency alone.
    pub fn peek_len(&self, key: &[u8]) -> Option<Option<usize>> {
        self.hot
            .get(key)
            .or_else(|| self.cold.get(key))
            .map(|v| v.as_ref().map(Vec::len))
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Entry) {
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + OVERHEAD;
        if size > self.budget / 2 {
            self.hot.remove(&key);
            self.cold.remove(&key);
            return;
        }
        if self.hot_bytes + size > self.budget / 2 {
            self.cold = std::mem::take(&mut self.hot);
            self.hot_bytes = 0;
        }
        self.cold.remove(&key);
        self.hot_bytes += size;
        self.hot.insert(key, value);
    }

    pub fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
        self.hot_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_entries_within_budget() {
        let mut c = ReadCache::new(10 * (OVERHEAD + 2));
        for i in 0..100u8 {
            c.insert(vec![i], Some(vec![i]));
        }
        assert_eq!(c.get(&[99]), Some(Some(vec![99])));
        assert_eq!(c.get(&[0]), None, "old entries were dropped");
        assert!(c.hot.len() + c.cold.len() <= 10);
        c.insert(vec![7], None);
        assert_eq!(c.get(&[7]), Some(None), "absence is cached too");
    }
}

//! An in-memory [`StateBackend`], for `weir test` and unit tests.

use std::collections::BTreeMap;
use std::ops::Bound;

use anyhow::Result;

use super::StateBackend;

#[derive(Default)]
pub struct MemoryBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StateBackend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }

    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> super::Entries<'a> {
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        Box::new(
            self.map
                .range((Bound::Included(start.to_vec()), upper))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
    }

    fn write(&mut self, changes: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        for (k, v) in changes {
            match v {
                Some(v) => self.map.insert(k.to_vec(), v.to_vec()),
                None => self.map.remove(k),
            };
        }
        Ok(())
    }
}

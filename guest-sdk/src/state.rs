//! Keyed state of this deployment on the current partition.
//!
//! Raw bytes with [`get`]/[`set`]/[`delete`], or typed JSON values in a
//! named [`Map`]:
//!
//! ```no_run
//! let counts = weir_sdk::state::Map::<u64>::new("counts");
//! let n = counts.update(b"apple", |n| Some(n.unwrap_or(0) + 1)).unwrap();
//! # let _ = n;
//! ```
//!
//! Changes made while processing a record are visible immediately; they are
//! discarded if the record is rejected and made durable before its offset
//! is committed.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::weir::transform::state as wit;

pub fn get(key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    wit::get(key.as_ref())
}

pub fn set(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
    wit::set(key.as_ref(), value.as_ref(), None);
}

/// Sets a value that expires `ttl_ms` of stream time (event time) from now.
pub fn set_with_ttl(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, ttl_ms: u64) {
    wit::set(key.as_ref(), value.as_ref(), Some(ttl_ms));
}

pub fn delete(key: impl AsRef<[u8]>) {
    wit::delete(key.as_ref());
}

/// Up to `limit` entries with `start <= key < end` in key order.
pub fn range(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    wit::range(start, end, limit)
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

/// Every entry whose key starts with `prefix`, in key order, fetched from
/// the host a page at a time.
pub fn scan_prefix(prefix: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    paged(move |after, page| wit::prefix(prefix, after, page))
}

/// The entries of successive pages, each fetched with the last key of the
/// page before (`None` first), until a page comes back short.
pub(crate) fn paged(
    mut fetch: impl FnMut(Option<&[u8]>, u32) -> Vec<wit::Entry>,
) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    const PAGE: u32 = 256;
    let mut after: Option<Vec<u8>> = None;
    let mut page = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(entry) = page.next() {
                let wit::Entry { key, value } = entry;
                after = Some(key.clone());
                return Some((key, value));
            }
            if done {
                return None;
            }
            let entries = fetch(after.as_deref(), PAGE);
            done = entries.len() < PAGE as usize;
            page = entries.into_iter();
        }
    })
}

/// A named collection of JSON-encoded values of type `V`, stored under
/// `name` followed by a 0 byte and the key.
pub struct Map<V> {
    prefix: Vec<u8>,
    _values: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> Map<V> {
    pub fn new(name: &str) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        Map {
            prefix,
            _values: PhantomData,
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// The value under `key`; an error if the stored bytes are not a `V`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<V>, crate::Error> {
        match wit::get(&self.key(key.as_ref())) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn set(&self, key: impl AsRef<[u8]>, value: &V) -> Result<(), crate::Error> {
        wit::set(&self.key(key.as_ref()), &serde_json::to_vec(value)?, None);
        Ok(())
    }

    pub fn delete(&self, key: impl AsRef<[u8]>) {
        wit::delete(&self.key(key.as_ref()));
    }

    /// Replaces the value under `key` with `f(old)` (`None` deletes it) and
    /// returns the new value.
    pub fn update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, crate::Error> {
        let key = self.key(key.as_ref());
        let old = match wit::get(&key) {
            Some(bytes) => Some(serde_json::from_slice(&bytes)?),
            None => None,
        };
        let new = f(old);
        match &new {
            Some(v) => wit::set(&key, &serde_json::to_vec(v)?, None),
            None => wit::delete(&key),
        }
        Ok(new)
    }

    /// Every `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, V), crate::Error>> + '_ {
        scan_prefix(&self.prefix)
            .map(|(k, v)| Ok((k[self.prefix.len()..].to_vec(), serde_json::from_slice(&v)?)))
    }
}

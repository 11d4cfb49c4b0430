//! The `state` interface a transform sees: user keys in their namespace,
//! values with an optional time to live (in stream time), and scans that
//! skip expired entries and stop at the call's budget.
//!
//! A stored user value is a tag byte, 0 (no TTL) or 1 followed by its
//! expiry as big-endian ms of stream time, then the value.

use anyhow::Result;

use crate::{PartitionState, ns, prefix_end};

impl PartitionState {
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
                let expires = i64::from_be_bytes(stored[1..9].try_into().expect("an 8-byte slice"));
                (self.stream_time < expires).then(|| stored[9..].to_vec())
            }
            _ => None,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_raw(&Self::user_key(key))?
            .and_then(|v| self.live(v)))
    }

    pub fn set(&mut self, key: &[u8], value: &[u8], ttl_ms: Option<u64>) {
        let mut stored = Vec::with_capacity(value.len() + 9);
        match ttl_ms {
            None => stored.push(0),
            Some(ttl) => {
                let base = self.stream_time.max(0);
                stored.push(1);
                stored.extend_from_slice(
                    &base
                        .saturating_add(ttl.min(i64::MAX as u64) as i64)
                        .to_be_bytes(),
                );
            }
        }
        stored.extend_from_slice(value);
        self.put_raw(Self::user_key(key), Some(stored));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.put_raw(Self::user_key(key), None);
    }

    /// Live user entries with `start <= key < end`, at most `limit`, and no
    /// more once their keys and values reach `max_bytes`.
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = Self::user_key(start);
        let end = match end {
            Some(e) => Some(Self::user_key(e)),
            None => Some(vec![ns::USER + 1]),
        };
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut from = start;
        let mut bytes = 0u64;
        // Expired entries are skipped, so a page may need several scans.
        while out.len() < limit as usize && bytes < max_bytes {
            let want = limit as usize - out.len();
            let page = self.scan_raw(&from, end.as_deref(), want, max_bytes - bytes)?;
            bytes += page
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
            let exhausted = page.len() < want && bytes < max_bytes;
            if let Some((last, _)) = page.last() {
                from = last.clone();
                from.push(0);
            }
            out.extend(
                page.into_iter()
                    .filter_map(|(k, v)| Some((k[1..].to_vec(), self.live(v)?))),
            );
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// Live user entries whose key starts with `prefix` and is greater than
    /// `after`, at most `limit` (and `max_bytes`, as for `range`).
    pub fn prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = match after {
            Some(a) if a >= prefix => {
                let mut s = a.to_vec();
                s.push(0);
                s
            }
            _ => prefix.to_vec(),
        };
        let end = prefix_end(prefix);
        let mut entries = self.range(&start, end.as_deref(), limit, max_bytes)?;
        entries.retain(|(k, _)| k.starts_with(prefix));
        Ok(entries)
    }
}

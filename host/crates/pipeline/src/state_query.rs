//! Reading a deployment's state from outside its transform (`weir state`,
//! the console): the stores this host has open, and a bounded read of the
//! user keys of each, as of the partition's last commit.
//!
//! A query asks every partition this host holds: a transform may keep any
//! key on any partition (a word count keyed by word, fed by lines keyed by
//! file), and producers' partitioners differ (Java's murmur2, librdkafka's
//! crc32), so a key's partition cannot be computed in general. The admin
//! API asks every host that owns a partition and merges the answers.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use weir_state::rocks::StoreReader;

/// Entries one query returns at most.
pub const MAX_ENTRIES: usize = 1000;
/// Bytes of keys and values one host reads for a query (shared by its
/// partitions; each returns at least one entry).
pub const MAX_BYTES: u64 = 1 << 20;

/// The stores of the partitions this host processes, by deployment
/// storage and partition.
#[derive(Default)]
pub struct StateReaders(Mutex<HashMap<String, BTreeMap<i32, StoreReader>>>);

impl StateReaders {
    pub fn add(&self, storage: &str, partition: i32, reader: StoreReader) {
        self.0
            .lock()
            .entry(storage.to_owned())
            .or_default()
            .insert(partition, reader);
    }

    fn of(&self, storage: &str) -> Vec<(i32, StoreReader)> {
        let mut all = self.0.lock();
        let Some(open) = all.get_mut(storage) else {
            return Vec::new();
        };
        open.retain(|_, r| r.is_open());
        let found = open.iter().map(|(p, r)| (*p, r.clone())).collect();
        if open.is_empty() {
            all.remove(storage);
        }
        found
    }
}

/// What to read: one key, keys with a prefix, or a key range; keys are
/// text, or hex with `hex`; within one of the SDKs' typed maps with `map`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StateQuery {
    /// An SDK map's name (`state::Map::new(NAME)`): keys are within it, and
    /// shown without its prefix (the name and a 0 byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// First key of a range (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End of a range (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Continue after this key (the `next_after` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hex: bool,
}

/// A query with its keys decoded (and within its map).
struct Keys {
    map: Vec<u8>,
    key: Option<Vec<u8>>,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
}

impl StateQuery {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, MAX_ENTRIES)
    }

    fn keys(&self) -> Result<Keys> {
        let map = match &self.map {
            Some(m) => [m.as_bytes(), &[0]].concat(),
            None => Vec::new(),
        };
        let decode = |field: &str, s: &Option<String>| -> Result<Option<Vec<u8>>> {
            let bytes = match s {
                None => return Ok(None),
                Some(s) if self.hex => {
                    hex::decode(s).map_err(|e| anyhow::anyhow!("`{field}` is not hex: {e}"))?
                }
                Some(s) => s.as_bytes().to_vec(),
            };
            Ok(Some([map.as_slice(), &bytes].concat()))
        };
        let key = decode("key", &self.key)?;
        let prefix = decode("prefix", &self.prefix)?;
        let (from, to, after) = (
            decode("from", &self.from)?,
            decode("to", &self.to)?,
            decode("after", &self.after)?,
        );
        if key.is_some() && (prefix.is_some() || from.is_some() || to.is_some()) {
            bail!("ask for a `key`, or a scan by `prefix` or `from`/`to`, not both");
        }
        if prefix.is_some() && (from.is_some() || to.is_some()) {
            bail!("scan by `prefix` or by `from`/`to`, not both");
        }
        // A prefix (the map's, if none) is the range of keys starting with it.
        let (from, to) = match prefix
            .or_else(|| (from.is_none() && to.is_none() && !map.is_empty()).then(|| map.clone()))
        {
            Some(p) => (Some(p.clone()), weir_state::prefix_end(&p)),
            None => (
                from.or_else(|| Some(map.clone())),
                to.or_else(|| weir_state::prefix_end(&map).filter(|_| !map.is_empty())),
            ),
        };
        let mut from = from.unwrap_or_default();
        // Paging: the next key after the last one shown.
        if let Some(mut a) = after
            && a >= from
        {
            a.push(0);
            from = a;
        }
        Ok(Keys { map, key, from, to })
    }

    /// Checks the query before it is sent anywhere.
    pub fn check(&self) -> Result<()> {
        self.keys().map(drop)
    }
}

/// One entry of a deployment's state.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Entry {
    pub partition: i32,
    /// The key as text (lossy where it is not UTF-8, then see `key_hex`).
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hex: Option<String>,
    /// The value as JSON, where it is JSON (what the SDKs' typed maps
    /// write), passed on as written rather than parsed into a tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Box<RawValue>>,
    /// The value as text, where it is UTF-8 but not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
    /// The value in hex, where it is neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
}

impl Entry {
    fn new(partition: i32, key: Vec<u8>, value: Vec<u8>) -> Entry {
        let key_hex = std::str::from_utf8(&key)
            .is_err()
            .then(|| hex::encode(&key));
        let (mut value_json, mut value_text, mut value_hex) = (None, None, None);
        // JSON `null` would read back as no value: it is shown as text.
        let json = value != b"null" && serde_json::from_slice::<IgnoredAny>(&value).is_ok();
        match String::from_utf8(value) {
            Ok(t) if json => value_json = RawValue::from_string(t.trim().to_owned()).ok(),
            Ok(t) => value_text = Some(t),
            Err(e) => value_hex = Some(hex::encode(e.as_bytes())),
        }
        Entry {
            partition,
            key: String::from_utf8_lossy(&key).into_owned(),
            key_hex,
            value: value_json,
            value_text,
            value_hex,
        }
    }

    /// The key's bytes, for ordering and paging.
    pub fn key_bytes(&self) -> Vec<u8> {
        self.key_hex
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_else(|| self.key.as_bytes().to_vec())
    }
}

/// What this host holds of a deployment's state for a query.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct Local {
    /// In key order, then partition.
    pub entries: Vec<Entry>,
    /// The partitions read.
    pub partitions: Vec<i32>,
    /// When some partition holds more: the last key (in hex) of the page,
    /// which is complete up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_hex: Option<String>,
}

/// Reads `query` from the stores of `storage` this host holds.
pub fn read_local(readers: &StateReaders, storage: &str, query: &StateQuery) -> Result<Local> {
    let keys = query.keys()?;
    let limit = query.limit();
    let held: Vec<_> = readers
        .of(storage)
        .into_iter()
        .filter(|(p, _)| query.partition.is_none_or(|q| q == *p))
        .collect();
    let budget = MAX_BYTES / held.len().max(1) as u64;
    let (mut entries, mut partitions, mut cuts) = (Vec::new(), Vec::new(), Vec::new());
    for (partition, reader) in held {
        // Closed since it was listed: the partition moved to another host.
        let Some(state) = reader.open() else { continue };
        let state = state?;
        partitions.push(partition);
        let found = match &keys.key {
            Some(k) => state.get(k)?.map(|v| (k.clone(), v)).into_iter().collect(),
            None => state.range(&keys.from, keys.to.as_deref(), limit as u32, budget)?,
        };
        let bytes: u64 = found.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        if keys.key.is_none()
            && (found.len() >= limit || bytes >= budget)
            && let Some((k, _)) = found.last()
        {
            cuts.push(k[keys.map.len()..].to_vec());
        }
        entries.extend(
            found
                .into_iter()
                .map(|(k, v)| Entry::new(partition, k[keys.map.len()..].to_vec(), v)),
        );
    }
    let (entries, cut) = page(entries, cuts, limit);
    Ok(Local {
        entries,
        partitions,
        cut_hex: cut.map(hex::encode),
    })
}

/// One page of entries read from several partitions (or hosts), some of
/// which stopped early at the keys in `cuts`: the entries up to the first
/// cut, at most `limit` keys' worth (all partitions of the last key stay
/// together), in key order, then partition; and, when there is more, the
/// key the page ends at.
pub fn page(
    mut entries: Vec<Entry>,
    cuts: impl IntoIterator<Item = Vec<u8>>,
    limit: usize,
) -> (Vec<Entry>, Option<Vec<u8>>) {
    entries.sort_by_cached_key(|e| (e.key_bytes(), e.partition));
    let mut cut = cuts.into_iter().min();
    if let Some(c) = &cut {
        entries.retain(|e| e.key_bytes() <= *c);
    }
    if entries.len() > limit {
        let last = entries[limit - 1].key_bytes();
        entries.retain(|e| e.key_bytes() <= last);
        cut = Some(last);
    }
    (entries, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::rocks::{RocksBackend, RocksConfig};

    fn query_all(readers: &StateReaders, q: &StateQuery) -> Result<(Vec<Entry>, Vec<i32>)> {
        read_local(readers, "d.1", q).map(|l| (l.entries, l.partitions))
    }

    fn json(e: &Entry) -> Option<&str> {
        e.value.as_deref().map(RawValue::get)
    }

    fn query(f: impl FnOnce(&mut StateQuery)) -> StateQuery {
        let mut q = StateQuery::default();
        f(&mut q);
        q
    }

    #[test]
    fn reads_what_the_owner_committed_and_nothing_once_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let config = RocksConfig::new(1 << 20).unwrap();
        let readers = StateReaders::default();
        let mut states = Vec::new();
        for p in 0..2 {
            let backend = RocksBackend::open(&dir.path().join(p.to_string()), &config).unwrap();
            readers.add("d.1", p, backend.reader());
            let mut state = weir_state::PartitionState::open(Box::new(backend)).unwrap();
            state.set(
                format!("word-{p}").as_bytes(),
                format!("{{\"n\":{p}}}").as_bytes(),
                None,
            );
            state.set(b"shared", b"plain text", None);
            state.set(&[0xff, b'x'], &[0xfe, 0], None);
            if p == 1 {
                state.set(b"count\0the", b"4", None);
            }
            state.flush().unwrap();
            state.set(b"uncommitted", b"1", None);
            states.push(state);
        }
        let (all, read) = query_all(&readers, &StateQuery::default()).unwrap();
        assert_eq!(read, [0, 1]);
        let keys: Vec<_> = all.iter().map(|e| (e.key.as_str(), e.partition)).collect();
        assert_eq!(
            keys,
            [
                ("count\0the", 1),
                ("shared", 0),
                ("shared", 1),
                ("word-0", 0),
                ("word-1", 1),
                ("\u{fffd}x", 0),
                ("\u{fffd}x", 1)
            ]
        );
        assert_eq!(json(&all[3]), Some(r#"{"n":0}"#));
        assert_eq!(all[1].value_text.as_deref(), Some("plain text"));
        assert_eq!(
            (all[5].key_hex.as_deref(), all[5].value_hex.as_deref()),
            (Some("ff78"), Some("fe00"))
        );

        let (one, _) = query_all(&readers, &query(|q| q.key = Some("word-1".into()))).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].partition, 1);
        let (page, _) = query_all(
            &readers,
            &query(|q| {
                (q.prefix, q.after, q.limit) = (Some("word".into()), Some("word-0".into()), Some(5))
            }),
        )
        .unwrap();
        assert_eq!(
            page.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["word-1"]
        );
        let (hex, _) = query_all(
            &readers,
            &query(|q| (q.from, q.hex, q.partition) = (Some("ff".into()), true, Some(1))),
        )
        .unwrap();
        assert_eq!(hex.len(), 1);
        assert!(
            query_all(
                &readers,
                &query(|q| (q.key, q.prefix) = (Some("a".into()), Some("b".into())))
            )
            .is_err()
        );

        let (counts, _) = query_all(&readers, &query(|q| q.map = Some("count".into()))).unwrap();
        assert_eq!(
            counts
                .iter()
                .map(|e| (e.key.as_str(), json(e)))
                .collect::<Vec<_>>(),
            [("the", Some("4"))]
        );
        let (one, _) = query_all(
            &readers,
            &query(|q| (q.map, q.key) = (Some("count".into()), Some("the".into()))),
        )
        .unwrap();
        assert_eq!(one.len(), 1);

        drop(states);
        let (none, read) = query_all(&readers, &StateQuery::default()).unwrap();
        assert!(none.is_empty() && read.is_empty());
    }

    fn entry(partition: i32, key: &str) -> Entry {
        Entry::new(partition, key.as_bytes().to_vec(), b"null".to_vec())
    }

    #[test]
    fn a_page_ends_where_every_partition_is_complete_and_keeps_a_key_whole() {
        let keys = |es: &[Entry]| {
            es.iter()
                .map(|e| (e.partition, e.key.clone()))
                .collect::<Vec<_>>()
        };
        // Partition 0 stopped at "c" (it may hold "d"): partition 1's "e" waits for the next page.
        let (es, cut) = page(
            vec![entry(0, "a"), entry(0, "c"), entry(1, "b"), entry(1, "e")],
            [b"c".to_vec()],
            10,
        );
        assert_eq!(
            keys(&es),
            [(0, "a".into()), (1, "b".into()), (0, "c".into())]
        );
        assert_eq!(cut.as_deref(), Some(&b"c"[..]));
        // The limit falls inside key "b": both partitions' "b" stay on this page.
        let (es, cut) = page(
            vec![entry(0, "a"), entry(0, "b"), entry(1, "b"), entry(1, "c")],
            [],
            2,
        );
        assert_eq!(
            keys(&es),
            [(0, "a".into()), (0, "b".into()), (1, "b".into())]
        );
        assert_eq!(cut.as_deref(), Some(&b"b"[..]));
        let (es, cut) = page(vec![entry(1, "b"), entry(0, "a")], [], 2);
        assert_eq!((es.len(), cut), (2, None));
        // JSON null reads back as text, not as a missing value.
        assert_eq!(entry(0, "a").value_text.as_deref(), Some("null"));
    }
}

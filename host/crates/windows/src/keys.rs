//! Where window state lives in the partition's key space:
//!
//! ```text
//! w <name len:u16> <name> a <key len:u32> <key> <start>   -> <end> <agg>     a window
//! w <name len:u16> <name> c <close at> <key len:u32> <key> <start> -> ""     close index
//! w <name len:u16> <name> p <key len:u32> <key> <ts>      -> <agg>           sliding-window points
//! w <name len:u16> <name> f <key len:u32> <key> <start>   -> <first ts>      a count window's first value
//! w <name len:u16> <name> s <key len:u32> <key>           -> <values:u64>    values a key gave count windows
//! w <name len:u16> <name> t                                -> <stream time>
//! w <name len:u16> <name> n                                -> <earliest close>
//! ```
//!
//! The earliest close is a lower bound of every scheduled close, so most
//! values find nothing due without scanning the close index.
//!
//! Times are encoded big-endian with the sign bit flipped, so byte order is
//! numeric order and range scans walk windows in time order.

use anyhow::{Context, Result};

use super::Agg;
use weir_abi::WindowKind;
use weir_state::{PartitionState, ns, prefix_end};

pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`time_bytes`]; stored bytes that are too short are corrupt.
fn time_from(b: &[u8]) -> Result<i64> {
    let word: [u8; 8] = b
        .get(..8)
        .and_then(|w| w.try_into().ok())
        .context("corrupt window state: a time is shorter than 8 bytes")?;
    Ok((u64::from_be_bytes(word) ^ (1 << 63)) as i64)
}

pub fn base(name: &str, tag: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 32);
    k.push(ns::WINDOW);
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k.push(tag);
    k
}

fn push_key(k: &mut Vec<u8>, key: &[u8]) {
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
}

/// Prefix of every window (tag `a`) or point (tag `p`) of one key.
pub fn key_prefix(name: &str, tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = base(name, tag);
    push_key(&mut k, key);
    k
}

pub fn agg_key(name: &str, key: &[u8], start: i64) -> Vec<u8> {
    let mut k = key_prefix(name, b'a', key);
    k.extend_from_slice(&time_bytes(start));
    k
}

pub fn point_key(name: &str, key: &[u8], ts: i64) -> Vec<u8> {
    let mut k = key_prefix(name, b'p', key);
    k.extend_from_slice(&time_bytes(ts));
    k
}

fn index_key(name: &str, close_at: i64, key: &[u8], start: i64) -> Vec<u8> {
    let mut k = base(name, b'c');
    k.extend_from_slice(&time_bytes(close_at));
    push_key(&mut k, key);
    k.extend_from_slice(&time_bytes(start));
    k
}

/// Time (the trailing 8 bytes) of a window or point key.
pub fn trailing_time(k: &[u8]) -> Result<i64> {
    time_from(&k[k.len().saturating_sub(8)..])
}

pub fn stream_time(state: &PartitionState, name: &str) -> Result<i64> {
    state
        .get_raw(&base(name, b't'))?
        .map_or(Ok(i64::MIN), |b| time_from(&b))
}

/// Raises the stream time of `name` to `t` (never lowers it); returns the
/// new stream time.
pub fn advance_stream_time(state: &mut PartitionState, name: &str, t: i64) -> i64 {
    let current = stream_time(state, name).unwrap_or(i64::MIN);
    if t > current {
        state.put_raw(base(name, b't'), Some(time_bytes(t).to_vec()));
        t
    } else {
        current
    }
}

pub fn get_window(
    state: &PartitionState,
    name: &str,
    key: &[u8],
    start: i64,
    custom: bool,
) -> Result<Option<(i64, Agg)>> {
    match state.get_raw(&agg_key(name, key, start))? {
        Some(b) => Ok(Some(decode_window(&b, custom)?)),
        None => Ok(None),
    }
}

fn decode_window(b: &[u8], custom: bool) -> Result<(i64, Agg)> {
    let end = time_from(b)?;
    let agg =
        Agg::decode(&b[8..], custom).context("corrupt window state: an aggregate is too short")?;
    Ok((end, agg))
}

pub fn put_window(
    state: &mut PartitionState,
    name: &str,
    key: &[u8],
    start: i64,
    end: i64,
    agg: &Agg,
) {
    let mut v = time_bytes(end).to_vec();
    agg.encode(&mut v);
    state.put_raw(agg_key(name, key, start), Some(v));
}

/// Windows (`start`, `end`, aggregate) of `key` with `from <= start <= to`,
/// stopping once their entries reach `max_bytes`.
pub fn windows_of(
    state: &PartitionState,
    name: &str,
    key: &[u8],
    from: i64,
    to: i64,
    custom: bool,
    max_bytes: u64,
) -> Result<Vec<(i64, i64, Agg)>> {
    let lo = agg_key(name, key, from);
    let mut hi = agg_key(name, key, to);
    hi.push(0);
    state
        .scan_raw(&lo, Some(&hi), usize::MAX, max_bytes)?
        .into_iter()
        .map(|(k, v)| {
            let (end, agg) = decode_window(&v, custom)?;
            Ok((trailing_time(&k)?, end, agg))
        })
        .collect()
}

pub fn delete_window(state: &mut PartitionState, name: &str, key: &[u8], start: i64) {
    state.put_raw(agg_key(name, key, start), None);
}

/// Removes and returns a window.
pub fn take_window(
    state: &mut PartitionState,
    name: &str,
    key: &[u8],
    start: i64,
    custom: bool,
) -> Result<Option<(i64, Agg)>> {
    let found = get_window(state, name, key, start, custom)?;
    if found.is_some() {
        delete_window(state, name, key, start);
    }
    Ok(found)
}

/// Registers a window to be closed once stream time reaches `close_at`.
pub fn schedule_close(
    state: &mut PartitionState,
    name: &str,
    close_at: i64,
    key: &[u8],
    start: i64,
) -> Result<()> {
    state.put_raw(index_key(name, close_at, key, start), Some(Vec::new()));
    if close_at < earliest_close(state, name)? {
        set_earliest_close(state, name, close_at);
    }
    Ok(())
}

/// No close is scheduled before this time (`i64::MAX`: none at all).
pub fn earliest_close(state: &PartitionState, name: &str) -> Result<i64> {
    state
        .get_raw(&base(name, b'n'))?
        .map_or(Ok(i64::MAX), |b| time_from(&b))
}

pub fn set_earliest_close(state: &mut PartitionState, name: &str, t: i64) {
    state.put_raw(base(name, b'n'), Some(time_bytes(t).to_vec()));
}

/// After every close up to `until` was taken: finds the next one.
pub fn refresh_earliest_close(state: &mut PartitionState, name: &str, until: i64) -> Result<()> {
    let index = base(name, b'c');
    let lo = match until.checked_add(1) {
        Some(t) => [index.as_slice(), &time_bytes(t)].concat(),
        None => {
            return {
                set_earliest_close(state, name, i64::MAX);
                Ok(())
            };
        }
    };
    let next = match state
        .scan_raw(&lo, prefix_end(&index).as_deref(), 1, u64::MAX)?
        .first()
    {
        Some((k, _)) => time_from(&k[index.len()..])?,
        None => i64::MAX,
    };
    set_earliest_close(state, name, next);
    Ok(())
}

/// The first value's timestamp of a count window (tag `f`, keyed like the window).
pub fn first_key(name: &str, key: &[u8], start: i64) -> Vec<u8> {
    let mut k = key_prefix(name, b'f', key);
    k.extend_from_slice(&time_bytes(start));
    k
}

pub fn get_time(state: &PartitionState, k: &[u8]) -> Result<Option<i64>> {
    state.get_raw(k)?.map(|b| time_from(&b)).transpose()
}

pub fn put_time(state: &mut PartitionState, k: Vec<u8>, t: i64) {
    state.put_raw(k, Some(time_bytes(t).to_vec()));
}

pub fn unschedule_close(
    state: &mut PartitionState,
    name: &str,
    close_at: i64,
    key: &[u8],
    start: i64,
) {
    state.put_raw(index_key(name, close_at, key, start), None);
}

pub struct Due {
    pub close_at: i64,
    pub key: Vec<u8>,
    pub start: i64,
    pub index_key: Vec<u8>,
}

/// Scheduled closes with `from <= close_at <= until`, in close order, at
/// most `max`.
pub fn due(
    state: &PartitionState,
    name: &str,
    from: i64,
    until: i64,
    max: usize,
) -> Result<Vec<Due>> {
    let index = base(name, b'c');
    let lo = [index.as_slice(), &time_bytes(from)].concat();
    let hi = match until.checked_add(1) {
        Some(t) => [index.as_slice(), &time_bytes(t)].concat(),
        None => prefix_end(&index).expect("index prefix has a successor"),
    };
    let n = index.len();
    state
        .scan_raw(&lo, Some(&hi), max, u64::MAX)?
        .into_iter()
        .map(|(k, _)| decode_due(k, n))
        .collect()
}

/// Decodes a close-index key (its name prefix is `n` bytes long).
fn decode_due(k: Vec<u8>, n: usize) -> Result<Due> {
    let corrupt = || anyhow::anyhow!("corrupt window state: a close-index entry is malformed");
    let rest = k.get(n..).ok_or_else(corrupt)?;
    let close_at = time_from(rest)?;
    let len = u32::from_be_bytes(
        rest.get(8..12)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?,
    ) as usize;
    let key = rest
        .get(12..)
        .and_then(|r| r.get(..len))
        .ok_or_else(corrupt)?
        .to_vec();
    let start = time_from(rest.get(12 + len..).ok_or_else(corrupt)?)?;
    Ok(Due {
        close_at,
        key,
        start,
        index_key: k,
    })
}

/// The last instant inside a window, the default timestamp of its outputs:
/// time windows end exclusively, sliding and session windows inclusively.
pub fn last_instant(kind: &WindowKind, end: i64) -> i64 {
    match kind {
        WindowKind::Tumbling(_) | WindowKind::Hopping(_) => end - 1,
        WindowKind::Sliding(_) | WindowKind::Session(_) | WindowKind::Count { .. } => end,
    }
}

/// Points (per-timestamp values) of `key` with `from <= ts <= to`, in time
/// order, stopping once their entries reach `max_bytes`.
pub fn points_of(
    state: &PartitionState,
    name: &str,
    key: &[u8],
    from: i64,
    to: i64,
    max_bytes: u64,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let lo = point_key(name, key, from);
    let mut hi = point_key(name, key, to);
    hi.push(0);
    state
        .scan_raw(&lo, Some(&hi), usize::MAX, max_bytes)?
        .into_iter()
        .map(|(k, v)| Ok((trailing_time(&k)?, v)))
        .collect()
}

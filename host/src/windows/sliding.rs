//! Sliding windows (Kafka Streams `SlidingWindows`): windows of `size + 1`
//! ms, both ends inclusive, defined by the values themselves.
//!
//! For a value at `t` the windows are its *left* window `[t - size, t]`
//! (`[0, size]` while `t < size`: no window starts before 0) and its
//! *right* window `[t + 1, t + 1 + size]`, which exists once another value
//! falls into it. A window's aggregate is that of every value inside it.
//! Instead of copying aggregates between windows as Kafka Streams does, the
//! host keeps each key's values ("points") until every window containing
//! them has closed, and aggregates a window from its points; the windows
//! and results are the same.

use std::collections::BTreeSet;

use super::keys::Due;
use super::{Add, Agg, Ctx, Emitted, close_due, keys};
use crate::transform::CallFailure;

/// A point's stored value: an `Agg` for built-in aggregations, the raw
/// values (length-prefixed) for custom ones.
fn merge_point(ctx: &Ctx<'_>, stored: Option<Vec<u8>>, add: &Add<'_>) -> Vec<u8> {
    if ctx.custom() {
        let mut v = stored.unwrap_or_default();
        let value = add.custom.unwrap_or_default();
        v.extend_from_slice(&(value.len() as u32).to_be_bytes());
        v.extend_from_slice(value);
        v
    } else {
        let mut agg = stored.and_then(|b| Agg::decode(&b, false)).unwrap_or_default();
        agg.add(add.number);
        let mut v = Vec::new();
        agg.encode(&mut v);
        v
    }
}

fn custom_values(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        out.push(b[4..4 + n].to_vec());
        b = &b[4 + n..];
    }
    out
}

/// The aggregate of the points inside `[start, start + size]`; `None` when
/// no point is.
fn aggregate(ctx: &mut Ctx<'_>, key: &[u8], points: &[(i64, Vec<u8>)], start: i64, size: i64) -> Result<Option<Agg>, CallFailure> {
    let inside = points.iter().filter(|(t, _)| *t >= start && *t <= start + size);
    if ctx.custom() {
        let values: Vec<Vec<u8>> = inside.flat_map(|(_, v)| custom_values(v)).collect();
        if values.is_empty() {
            return Ok(None);
        }
        let acc = ctx.folder.reduce(ctx.id, key, None, &values)?;
        Ok(Some(Agg { count: values.len() as u64, custom: Some(acc), ..Agg::default() }))
    } else {
        let mut agg = Agg::default();
        for (_, v) in inside {
            agg.combine(&Agg::decode(v, false).unwrap_or_default());
        }
        Ok((agg.count > 0).then_some(agg))
    }
}

pub fn add(ctx: &mut Ctx<'_>, size: u64, add: &Add<'_>) -> Result<bool, CallFailure> {
    let (size, grace) = (size as i64, ctx.def.spec.grace_ms as i64);
    let ts = add.timestamp;
    let def = ctx.def;
    let name = &def.name;
    let stream_time = keys::advance_stream_time(ctx.state, name, ts);
    // Late: even the value's right window has closed.
    let late = ts < 0 || ts.saturating_add(1 + size).saturating_add(grace) <= stream_time;
    if !late {
        let pk = keys::point_key(name, add.key, ts);
        let stored = ctx.state.get_raw(&pk).map_err(CallFailure::host)?;
        let merged = merge_point(ctx, stored, add);
        ctx.state.put_raw(pk, Some(merged));

        let points = keys::points_of(ctx.state, name, add.key, ts.saturating_sub(size + 1), ts.saturating_add(size + 1)).map_err(CallFailure::host)?;
        // Windows that now contain the value, plus its own right window.
        let mut starts = BTreeSet::new();
        for &(t, _) in &points {
            if t >= ts && t <= ts + size {
                starts.insert((t - size).max(0));
            }
            if t < ts && t + 1 + size >= ts {
                starts.insert(t + 1);
            }
            if t > ts {
                starts.insert(ts + 1);
            }
        }
        for start in starts {
            let end = start + size;
            if end.saturating_add(grace) < stream_time {
                continue; // closed already
            }
            let Some(agg) = aggregate(ctx, add.key, &points, start, size)? else { continue };
            ctx.schedule_close(close_at(end, grace), add.key, start)?;
            if ctx.emit_updates() {
                ctx.out.push(Emitted { window: ctx.id, key: add.key.to_vec(), start, end, agg, closed: false, input: Some(add.input), timestamp: end });
            }
        }
    }
    close_due(ctx, stream_time, Some(add.input))?;
    Ok(!late)
}

/// A window closes once stream time exceeds `end + grace`.
fn close_at(end: i64, grace: i64) -> i64 {
    end.saturating_add(grace).saturating_add(1)
}

/// Computes a closing window's final aggregate and drops the points no
/// open window can contain any more.
pub fn close(ctx: &mut Ctx<'_>, size: u64, due: &Due) -> Result<Option<(i64, Agg)>, CallFailure> {
    let size = size as i64;
    let def = ctx.def;
    let name = &def.name;
    let points = keys::points_of(ctx.state, name, &due.key, i64::MIN, due.start.saturating_add(size)).map_err(CallFailure::host)?;
    let agg = aggregate(ctx, &due.key, &points, due.start, size)?;
    // Windows close in start order, so every window containing a point
    // before this start has closed.
    for (t, _) in points.iter().filter(|(t, _)| *t < due.start) {
        ctx.state.put_raw(keys::point_key(name, &due.key, *t), None);
    }
    Ok(agg.map(|a| (due.start + size, a)))
}

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
use weir_abi::CallFailure;

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
        let mut agg = stored
            .and_then(|b| Agg::decode(&b, false))
            .unwrap_or_default();
        agg.add(add.number);
        let mut v = Vec::new();
        agg.encode(&mut v);
        v
    }
}

/// The raw values of a custom point; stored bytes that do not parse end
/// the list (they are the host's own, but come back from a changelog).
fn custom_values(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((len, rest)) = b.split_first_chunk::<4>() {
        let Some(value) = rest.get(..u32::from_be_bytes(*len) as usize) else {
            break;
        };
        out.push(value.to_vec());
        b = &rest[value.len()..];
    }
    out
}

/// The aggregate of each window `[start, start + size]` of `starts`
/// (ascending) over `points` (ascending by time); `None` for a window
/// without points.
///
/// Built-in aggregates slide in linear time: both window ends only move
/// forward, and a two-stack queue keeps the combined aggregate of the
/// points between them (min and max cannot be subtracted, so a running
/// total would not do). Custom aggregates are reduced by the transform
/// from each window's values, charged to the call's budget.
fn aggregates(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    points: &[(i64, Vec<u8>)],
    starts: &[i64],
    size: i64,
) -> Result<Vec<Option<Agg>>, CallFailure> {
    let mut out = Vec::with_capacity(starts.len());
    let (mut lo, mut hi) = (0, 0);
    if ctx.custom() {
        for &start in starts {
            while lo < points.len() && points[lo].0 < start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < points.len() && points[hi].0 <= start + size {
                hi += 1;
            }
            let values: Vec<Vec<u8>> = points[lo..hi]
                .iter()
                .flat_map(|(_, v)| custom_values(v))
                .collect();
            ctx.folder.charge(
                values.iter().map(|v| v.len() as u64 + 16).sum(),
                "custom window values",
            )?;
            out.push(match values.is_empty() {
                true => None,
                false => {
                    let acc = ctx.folder.reduce(ctx.id, key, None, &values)?;
                    Some(Agg {
                        count: values.len() as u64,
                        custom: Some(acc),
                        ..Agg::default()
                    })
                }
            });
        }
        return Ok(out);
    }
    let decoded: Vec<Agg> = points
        .iter()
        .map(|(_, v)| Agg::decode(v, false).unwrap_or_default())
        .collect();
    let mut window = SlidingAgg::default();
    for &start in starts {
        while hi < points.len() && points[hi].0 <= start + size {
            window.push(&decoded[hi]);
            hi += 1;
        }
        while lo < hi && points[lo].0 < start {
            window.pop();
            lo += 1;
        }
        let agg = window.total();
        out.push((agg.count > 0).then_some(agg));
    }
    Ok(out)
}

/// A FIFO of aggregates whose combined aggregate is known in amortised
/// constant time: pushes go to the back stack (with its running total),
/// pops come from the front stack (which holds suffix totals), refilled
/// from the back when empty.
#[derive(Default)]
struct SlidingAgg {
    front: Vec<Agg>,
    back: Vec<Agg>,
    back_total: Agg,
}

impl SlidingAgg {
    fn push(&mut self, a: &Agg) {
        self.back.push(a.clone());
        self.back_total.combine(a);
    }

    fn pop(&mut self) {
        if self.front.is_empty() {
            let mut total = Agg::default();
            while let Some(a) = self.back.pop() {
                total.combine(&a);
                self.front.push(total.clone());
            }
            self.back_total = Agg::default();
        }
        self.front.pop();
    }

    fn total(&self) -> Agg {
        let mut t = self.front.last().cloned().unwrap_or_default();
        t.combine(&self.back_total);
        t
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

        let left = ctx.folder.budget_left();
        let points = keys::points_of(
            ctx.state,
            name,
            add.key,
            ts.saturating_sub(size + 1),
            ts.saturating_add(size + 1),
            left,
        )
        .map_err(CallFailure::host)?;
        ctx.check_read(&points, |(_, v)| v.len() + add.key.len())?;
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
        // Closed already: stream time passed end + grace.
        let starts: Vec<i64> = starts
            .into_iter()
            .filter(|start| (start + size).saturating_add(grace) >= stream_time)
            .collect();
        if ctx.emit_updates() {
            ctx.charge_windows(starts.len() as u64, add.key)?;
        }
        for (&start, agg) in starts
            .iter()
            .zip(aggregates(ctx, add.key, &points, &starts, size)?)
        {
            let end = start + size;
            let Some(agg) = agg else { continue };
            ctx.schedule_close(close_at(end, grace), add.key, start)?;
            if ctx.emit_updates() {
                ctx.out.push(Emitted {
                    window: ctx.id,
                    key: add.key.to_vec(),
                    start,
                    end,
                    agg,
                    closed: false,
                    input: Some(add.input),
                    timestamp: end,
                });
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
    let left = ctx.folder.budget_left();
    let points = keys::points_of(
        ctx.state,
        name,
        &due.key,
        i64::MIN,
        due.start.saturating_add(size),
        left,
    )
    .map_err(CallFailure::host)?;
    ctx.check_read(&points, |(_, v)| v.len() + due.key.len())?;
    let agg = aggregates(ctx, &due.key, &points, &[due.start], size)?
        .pop()
        .flatten();
    // Windows close in start order, so every window containing a point
    // before this start has closed.
    for (t, _) in points.iter().filter(|(t, _)| *t < due.start) {
        ctx.state.put_raw(keys::point_key(name, &due.key, *t), None);
    }
    Ok(agg.map(|a| (due.start + size, a)))
}

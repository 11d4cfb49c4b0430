//! Count windows (Quix Streams' tumbling and hopping count windows): per
//! key, the values a key gives are numbered 0, 1, 2...; value `n` belongs
//! to every window starting at a multiple of `step` with `start <= n <
//! start + size`. A window is final once it holds `size` values; its result
//! runs from its first value's timestamp to its last one's. Time plays no
//! part: nothing is late, and only a forced close (idle partitions, `weir
//! test --flush-windows`) ends a window short of its size.
//!
//! Windows are keyed by their first value's number; every open window is in
//! the close index at `i64::MAX`, which stream time never reaches but a
//! forced close does. A key's value count is its only lasting state: it is
//! deleted whenever the key has no open window (a tumbling window filled,
//! or a forced close), so numbering starts again from 0 and keys that come
//! once leave nothing behind.

use super::{Add, Agg, Ctx, Emitted, keys};
use weir_abi::CallFailure;

pub fn add(ctx: &mut Ctx<'_>, size: u64, step: u64, add: &Add<'_>) -> Result<bool, CallFailure> {
    let name = &ctx.def.name;
    let counter = keys::key_prefix(name, b's', add.key);
    let n = match ctx.state.get_raw(&counter).map_err(CallFailure::host)? {
        Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
            CallFailure::host(anyhow::anyhow!(
                "corrupt window state: a value count is not 8 bytes"
            ))
        })?),
        None => 0,
    };
    // A tumbling window filled by this value leaves the key nothing open.
    let restart = step == size && (n + 1) % size == 0;
    ctx.state.put_raw(
        counter,
        if restart {
            None
        } else {
            Some((n + 1).to_be_bytes().to_vec())
        },
    );
    let last = n - n % step;
    let first = (n + 1).saturating_sub(size).div_ceil(step) * step;
    ctx.charge_windows((last - first) / step + 1, add.key)?;
    let custom = ctx.custom();
    for start in (first..=last).step_by(step as usize) {
        let start = start as i64;
        let first_key = keys::first_key(name, add.key, start);
        let (first_ts, mut agg) = match keys::get_window(ctx.state, name, add.key, start, custom)
            .map_err(CallFailure::host)?
        {
            Some((_, agg)) => (
                keys::get_time(ctx.state, &first_key)
                    .map_err(CallFailure::host)?
                    .unwrap_or(add.timestamp),
                agg,
            ),
            None => {
                keys::put_time(ctx.state, first_key.clone(), add.timestamp);
                ctx.schedule_close(i64::MAX, add.key, start)?;
                (add.timestamp, Agg::default())
            }
        };
        ctx.fold(&mut agg, add)?;
        let full = agg.count >= size;
        if full {
            keys::delete_window(ctx.state, name, add.key, start);
            ctx.state.put_raw(first_key, None);
            keys::unschedule_close(ctx.state, name, i64::MAX, add.key, start);
        } else {
            keys::put_window(ctx.state, name, add.key, start, add.timestamp, &agg);
        }
        if full || ctx.emit_updates() {
            let (window, key) = (ctx.id, add.key.to_vec());
            ctx.out.push(Emitted {
                window,
                key,
                start: first_ts,
                end: add.timestamp,
                agg,
                closed: full,
                input: Some(add.input),
                timestamp: add.timestamp,
            });
        }
    }
    Ok(true)
}

/// Removes a window closed before it was full: (first, last timestamp, aggregate).
pub fn take(ctx: &mut Ctx<'_>, entry: &keys::Due) -> Result<Option<(i64, i64, Agg)>, CallFailure> {
    let name = &ctx.def.name;
    let Some((last, agg)) =
        keys::take_window(ctx.state, name, &entry.key, entry.start, ctx.custom())
            .map_err(CallFailure::host)?
    else {
        return Ok(None);
    };
    let first_key = keys::first_key(name, &entry.key, entry.start);
    let first = keys::get_time(ctx.state, &first_key)
        .map_err(CallFailure::host)?
        .unwrap_or(last);
    ctx.state.put_raw(first_key, None);
    // A forced close ends every window of the key: numbering starts again.
    ctx.state
        .put_raw(keys::key_prefix(name, b's', &entry.key), None);
    Ok(Some((first, last, agg)))
}

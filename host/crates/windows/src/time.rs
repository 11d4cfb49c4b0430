//! Tumbling and hopping windows: epoch-aligned, half-open `[start, end)`.

use super::{Add, Agg, Ctx, Emitted, close_due, keys};
use weir_abi::CallFailure;

pub fn add(ctx: &mut Ctx<'_>, size: u64, advance: u64, add: &Add<'_>) -> Result<bool, CallFailure> {
    let (size, advance, grace) = (size as i64, advance as i64, ctx.def.spec.grace_ms as i64);
    let ts = add.timestamp;
    let def = ctx.def;
    let name = &def.name;
    let stream_time = keys::advance_stream_time(ctx.state, name, ts);
    let mut accepted = false;
    if ts >= 0 {
        // Starts are multiples of `advance` with start <= ts < start + size,
        // and never negative.
        let last = ts - ts % advance;
        let lowest = (ts - size + 1).max(0);
        let first =
            lowest.div_euclid(advance) * advance + if lowest % advance == 0 { 0 } else { advance };
        let custom = ctx.custom();
        if first <= last {
            ctx.charge_windows(((last - first) / advance + 1) as u64, add.key)?;
        }
        let mut start = first;
        while start <= last {
            let end = start + size;
            // Late: the window closed when stream time reached end + grace.
            if end.saturating_add(grace) > stream_time {
                accepted = true;
                let existing = keys::get_window(ctx.state, name, add.key, start, custom)
                    .map_err(CallFailure::host)?;
                let is_new = existing.is_none();
                let mut agg = existing.map(|(_, a)| a).unwrap_or_default();
                ctx.fold(&mut agg, add)?;
                keys::put_window(ctx.state, name, add.key, start, end, &agg);
                if is_new {
                    ctx.schedule_close(end.saturating_add(grace), add.key, start)?;
                }
                if ctx.emit_updates() {
                    push(ctx.out, ctx.id, add, start, end, agg);
                }
            }
            start += advance;
        }
    }
    close_due(ctx, stream_time, Some(add.input))?;
    Ok(accepted)
}

fn push(out: &mut Vec<Emitted>, window: u32, add: &Add<'_>, start: i64, end: i64, agg: Agg) {
    out.push(Emitted {
        window,
        key: add.key.to_vec(),
        start,
        end,
        agg,
        closed: false,
        input: Some(add.input),
        timestamp: end - 1,
    });
}

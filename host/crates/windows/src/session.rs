//! Session windows (Kafka Streams `SessionWindows`): per key, values at
//! most `gap` apart form one session `[first, last]`; a value that reaches
//! two sessions merges them.

use super::{Add, Agg, Ctx, Emitted, close_due, keys};
use weir_abi::CallFailure;

pub fn add(ctx: &mut Ctx<'_>, gap: u64, add: &Add<'_>) -> Result<bool, CallFailure> {
    let (gap, grace) = (gap as i64, ctx.def.spec.grace_ms as i64);
    let ts = add.timestamp;
    let def = ctx.def;
    let name = &def.name;
    let custom = ctx.custom();
    let stream_time = keys::advance_stream_time(ctx.state, name, ts);
    let accepted = ts >= 0 && {
        // Sessions within `gap` of the value, in start order.
        let left = ctx.folder.budget_left();
        let sessions = keys::windows_of(
            ctx.state,
            name,
            add.key,
            i64::MIN,
            ts.saturating_add(gap),
            custom,
            left,
        )
        .map_err(CallFailure::host)?;
        ctx.check_read(&sessions, |(_, _, a)| {
            add.key.len() + 48 + a.custom.as_ref().map_or(0, Vec::len)
        })?;
        let near: Vec<(i64, i64, Agg)> = sessions
            .into_iter()
            .filter(|(_, end, _)| *end >= ts.saturating_sub(gap))
            .collect();
        let start = near.iter().map(|w| w.0).min().unwrap_or(ts).min(ts);
        let end = near.iter().map(|w| w.1).max().unwrap_or(ts).max(ts);
        // Late: the merged session closed when stream time passed end + gap + grace.
        let late = end.saturating_add(gap).saturating_add(grace) < stream_time;
        if !late {
            let mut agg: Option<Agg> = None;
            for (s, e, a) in &near {
                keys::delete_window(ctx.state, name, add.key, *s);
                keys::unschedule_close(ctx.state, name, close_at(*e, gap, grace), add.key, *s);
                if (start, end) != (ts, ts) && ctx.emit_updates() {
                    // Kafka Streams retracts every merged session (a
                    // tombstone); here a result with count 0.
                    let retraction = Agg {
                        custom: a.custom.as_ref().map(|_| Vec::new()),
                        ..Agg::default()
                    };
                    push(ctx.out, ctx.id, add, *s, *e, retraction);
                }
                agg = Some(match agg {
                    None => a.clone(),
                    Some(mut acc) => {
                        if custom {
                            let merged = ctx.folder.merge(
                                ctx.id,
                                add.key,
                                acc.custom.as_deref().unwrap_or_default(),
                                a.custom.as_deref().unwrap_or_default(),
                            )?;
                            acc.count += a.count;
                            acc.custom = Some(merged);
                        } else {
                            acc.combine(a);
                        }
                        acc
                    }
                });
            }
            let mut agg = agg.unwrap_or_default();
            ctx.charge_windows(1, add.key)?;
            ctx.fold(&mut agg, add)?;
            keys::put_window(ctx.state, name, add.key, start, end, &agg);
            ctx.schedule_close(close_at(end, gap, grace), add.key, start)?;
            if ctx.emit_updates() {
                push(ctx.out, ctx.id, add, start, end, agg);
            }
        }
        !late
    };
    close_due(ctx, stream_time, Some(add.input))?;
    Ok(accepted)
}

/// A session closes once stream time exceeds `end + gap + grace`.
fn close_at(end: i64, gap: i64, grace: i64) -> i64 {
    end.saturating_add(gap)
        .saturating_add(grace)
        .saturating_add(1)
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
        timestamp: end,
    });
}

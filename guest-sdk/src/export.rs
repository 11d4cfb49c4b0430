//! Glue between the generated `handler` export and a [`Transform`]; used by
//! the [`export!`](crate::export) macro.

use std::any::Any;
use std::cell::RefCell;

pub use crate::bindings::weir::transform::timers::TimerBatch;
pub use crate::bindings::weir::transform::types::{InputBatch, OutputBatch};
pub use crate::bindings::weir::transform::windows::WindowBatch;
use crate::record::RECORD;
use crate::{Config, Emitter, Record, Timer, Transform, Window, WindowResult};

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with<T: Transform, R>(f: impl FnOnce(&mut T) -> R) -> R {
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let t = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .expect("weir: the host called the transform before init");
        f(t)
    })
}

pub fn init<T: Transform>(config: Vec<(String, String)>) -> Result<(), String> {
    // A panic aborts the instance; log its message first so the host can
    // report it with the failed record.
    std::panic::set_hook(Box::new(|info| crate::log::error(info)));
    let t = T::init(&Config::new(config))?;
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(t)));
    Ok(())
}

/// Hands each of `items` (its timestamp and itself) to `handle` in order:
/// an error rejects that item alone (undoing what it emitted), a fatal one
/// ends the call.
fn each<T: Transform, X>(
    out: &mut Emitter,
    items: impl Iterator<Item = (i64, X)>,
    mut handle: impl FnMut(&mut T, X, &mut Emitter) -> Result<(), crate::Error>,
) -> Result<(), String> {
    with::<T, _>(|t| {
        for (i, (timestamp, item)) in items.enumerate() {
            out.begin(i as u32, timestamp);
            if let Err(e) = handle(t, item, out) {
                if e.fatal {
                    return Err(e.message);
                }
                out.reject(e.message);
            }
        }
        Ok(())
    })
}

pub fn process<T: Transform>(batch: InputBatch) -> Result<OutputBatch, String> {
    let n = batch.records.len() / RECORD;
    let mut out = Emitter::with_capacity(batch.data.len(), n);
    let records = (0..n)
        .map(|i| Record::new(&batch, i))
        .map(|r| (r.timestamp(), r));
    each::<T, _>(&mut out, records, |t, r, out| t.process(&r, out))?;
    Ok(out.finish())
}

pub fn on_window<T: Transform>(batch: WindowBatch) -> Result<OutputBatch, String> {
    let mut out = Emitter::with_capacity(batch.data.len(), batch.results.len());
    let results = batch.results.iter().map(|r| {
        let result = WindowResult {
            window: Window::from_id(r.window),
            key: crate::record::slice(&batch.data, r.key),
            start: r.start,
            end: r.end,
            count: r.count,
            value: r.value,
            custom: r.custom.map(|s| crate::record::slice(&batch.data, s)),
            closed: r.closed,
        };
        (r.end, result)
    });
    each::<T, _>(&mut out, results, |t, r, out| t.on_window(&r, out))?;
    Ok(out.finish())
}

pub fn on_timer<T: Transform>(batch: TimerBatch) -> Result<OutputBatch, String> {
    let mut out = Emitter::with_capacity(batch.data.len(), batch.timers.len());
    let timers = batch.timers.iter().map(|f| {
        (
            f.at,
            Timer {
                key: crate::record::slice(&batch.data, f.key),
                at: f.at,
                clock: f.clock,
            },
        )
    });
    each::<T, _>(&mut out, timers, |t, timer, out| t.on_timer(&timer, out))?;
    Ok(out.finish())
}

pub fn reduce<T: Transform>(
    window: u32,
    key: Vec<u8>,
    acc: Option<Vec<u8>>,
    values: Vec<Vec<u8>>,
) -> Vec<u8> {
    with::<T, _>(|t| t.reduce(Window::from_id(window), &key, acc, values))
}

pub fn merge<T: Transform>(window: u32, key: Vec<u8>, a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
    with::<T, _>(|t| t.merge(Window::from_id(window), &key, a, b))
}

//! Glue between the generated `handler` export and a [`Transform`]; used by
//! the [`export!`](crate::export) macro.

use std::any::Any;
use std::cell::RefCell;

pub use crate::bindings::weir::transform::types::{InputBatch, OutputBatch};
pub use crate::bindings::weir::transform::windows::WindowBatch;
use crate::{Config, Emitter, Record, Transform, Window, WindowResult};

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with<T: Transform, R>(f: impl FnOnce(&mut T) -> R) -> R {
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let t = slot.as_mut().and_then(|b| b.downcast_mut::<T>()).expect("weir: the host called the transform before init");
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

pub fn process<T: Transform>(batch: InputBatch) -> Result<OutputBatch, String> {
    let mut out = Emitter::with_capacity(batch.data.len(), batch.records.len());
    with::<T, _>(|t| {
        for (i, r) in batch.records.iter().enumerate() {
            out.begin(i as u32, r.timestamp);
            if let Err(e) = t.process(&Record::new(&batch, r), &mut out) {
                if e.fatal {
                    return Err(e.message);
                }
                out.reject(e.message);
            }
        }
        Ok(())
    })?;
    Ok(out.finish())
}

pub fn on_window<T: Transform>(batch: WindowBatch) -> Result<OutputBatch, String> {
    let mut out = Emitter::with_capacity(batch.data.len(), batch.results.len());
    with::<T, _>(|t| {
        for (i, r) in batch.results.iter().enumerate() {
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
            out.begin(i as u32, r.end);
            if let Err(e) = t.on_window(&result, &mut out) {
                if e.fatal {
                    return Err(e.message);
                }
                out.reject(e.message);
            }
        }
        Ok(())
    })?;
    Ok(out.finish())
}

pub fn reduce<T: Transform>(window: u32, key: Vec<u8>, acc: Option<Vec<u8>>, values: Vec<Vec<u8>>) -> Vec<u8> {
    with::<T, _>(|t| t.reduce(Window::from_id(window), &key, acc, values))
}

pub fn merge<T: Transform>(window: u32, key: Vec<u8>, a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
    with::<T, _>(|t| t.merge(Window::from_id(window), &key, a, b))
}

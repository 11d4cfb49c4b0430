//! `weir bench`: throughput measurements whose results go to
//! BENCHMARKS.md. Each compares Weir with a baseline measured in the same
//! run on the same machine, so the ratio means more than the raw figure.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::bindings::InputBatch;
use crate::engine::{Engine, EngineConfig, Limits};
use crate::state::PartitionState;
use crate::transform::{BatchBuilder, Transform, TransformSpec};

/// Records/s of `f` processing `records` records in batches, best of
/// `rounds` (the least disturbed by the rest of the machine).
fn best_rate(records: usize, rounds: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        let n = f();
        assert_eq!(n, records, "every record produced an output");
        best = best.min(started.elapsed());
    }
    records as f64 / best.as_secs_f64()
}

fn value_batch(n: usize, value_bytes: usize, offset: i64) -> InputBatch {
    let mut b = BatchBuilder::new("bench", 0);
    let value: Vec<u8> = (0..value_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    for i in 0..n {
        b.push(offset + i as i64, i as i64, None, Some(&value), []);
    }
    b.finish()
}

pub struct DispatchRow {
    pub batch: usize,
    pub wasm_per_sec: f64,
    pub native_per_sec: f64,
}

/// In-process dispatch through a stateless map plugin (an upper-casing
/// one, like `plugins/rust/upper`) against the same map as a native
/// closure, for batches of 1, 100 and 1000 records of `value_bytes`.
pub fn dispatch(plugin: &Path, records: usize, value_bytes: usize) -> Result<Vec<DispatchRow>> {
    let engine = Engine::new(EngineConfig::default())?;
    let module = Arc::new(engine.load_file(plugin)?);
    let mut transform = Transform::new(module, Arc::new(TransformSpec::new("bench", Vec::new(), Limits::default())));
    let mut rows = Vec::new();
    for batch_size in [1usize, 100, 1000] {
        let batches: Vec<InputBatch> = (0..records / batch_size).map(|i| value_batch(batch_size, value_bytes, (i * batch_size) as i64)).collect();
        let total = batches.len() * batch_size;
        let mut state = Some(Box::new(PartitionState::in_memory()));
        let mut wasm = || {
            let mut n = 0;
            for b in &batches {
                let (s, r) = transform.dispatch(b, state.take().unwrap());
                state = Some(s);
                if r.stopped.is_some() || !r.failures.is_empty() {
                    return 0;
                }
                for out in r.records() {
                    black_box(out.value);
                    n += 1;
                }
            }
            n
        };
        wasm(); // warm-up: instantiate, fault in memory
        let wasm_per_sec = best_rate(total, 5, wasm);
        let native_per_sec = best_rate(total, 5, || {
            let mut n = 0;
            for b in &batches {
                let outputs: Vec<Vec<u8>> = (0..b.records.len()).map(|i| b.value(i).unwrap_or_default().to_ascii_uppercase()).collect();
                for o in &outputs {
                    black_box(o);
                    n += 1;
                }
            }
            n
        });
        if wasm_per_sec == 0.0 {
            bail!("the plugin failed records during the benchmark");
        }
        rows.push(DispatchRow { batch: batch_size, wasm_per_sec, native_per_sec });
    }
    Ok(rows)
}

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

pub struct PipelineReport {
    pub records: usize,
    pub raw_per_sec: f64,
    pub weir_per_sec: f64,
}

/// End to end on a real broker: the same records through a raw rdkafka
/// consume→produce passthrough (no wasm) and through `weir run`'s pipeline
/// with a stateless plugin, each timed from its first consumed record until
/// its output topic holds every output.
pub fn pipeline(brokers: &str, plugin: &Path, records: usize, partitions: usize) -> Result<PipelineReport> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

    let mut kafka = crate::config::KafkaConfig::default();
    kafka.brokers = brokers.to_owned();
    let cluster = crate::kafka::Cluster::connect(&kafka)?;
    let run = std::process::id();
    let (input, raw_out, weir_out) = (format!("bench-in-{run}"), format!("bench-raw-{run}"), format!("bench-weir-{run}"));
    for t in [&input, &raw_out, &weir_out, &format!("bench-{run}.dlq")] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    // Fill the input.
    let producer: BaseProducer = crate::kafka::producer_config(&kafka).create()?;
    let value = vec![b'x'; 100];
    for i in 0..records {
        let key = format!("k{}", i % 1000);
        let mut r = BaseRecord::to(&input).key(key.as_bytes()).payload(&value);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;

    let watermark_sum = |topic: &str| -> Result<i64> {
        let mut sum = 0;
        for p in 0..partitions as i32 {
            sum += producer.client().fetch_watermarks(topic, p, Duration::from_secs(10))?.1;
        }
        Ok(sum)
    };
    let wait_full = |topic: &str| -> Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while watermark_sum(topic)? < records as i64 {
            if Instant::now() > deadline {
                bail!("{topic} did not fill within 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Instant::now())
    };

    // Raw passthrough: consume and produce on one thread, as a minimal
    // hand-written relay would.
    let consumer: BaseConsumer = crate::kafka::consumer_config(&kafka, &format!("bench-raw-{run}")).create()?;
    consumer.subscribe(&[&input])?;
    let relay: BaseProducer = crate::kafka::producer_config(&kafka).create()?;
    let mut first = None;
    let mut seen = 0;
    while seen < records {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            first.get_or_insert_with(Instant::now);
            let mut r = BaseRecord::<[u8], [u8]>::to(&raw_out);
            if let Some(k) = rdkafka::Message::key(&m) {
                r = r.key(k);
            }
            if let Some(v) = rdkafka::Message::payload(&m) {
                r = r.payload(v);
            }
            loop {
                match relay.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        r = back;
                        relay.poll(Duration::from_millis(1));
                    }
                }
            }
            relay.poll(Duration::ZERO);
            seen += 1;
        }
    }
    relay.flush(Duration::from_secs(120))?;
    let raw_done = wait_full(&raw_out)?;
    let raw_per_sec = records as f64 / raw_done.duration_since(first.expect("consumed")).as_secs_f64();
    drop(consumer);

    // Weir, in-process, with the production pipeline.
    let state = std::env::temp_dir().join(format!("weir-bench-{run}"));
    let mut config = crate::config::Config::default();
    config.kafka = kafka.clone();
    config.host.state_dir = state.clone();
    config.host.listen = None;
    config.deployments.insert(
        format!("bench-{run}"),
        crate::config::DeploymentConfig {
            plugin: plugin.to_owned(),
            inputs: vec![input.clone()],
            output: weir_out.clone(),
            config: Default::default(),
            limits: Limits::default(),
            failure_policy: Default::default(),
            dead_letter_topic: None,
            late_topic: None,
        },
    );
    let host = crate::pipeline::Host::start(&config)?;
    let d = host.prepare(&format!("bench-{run}"), &config.deployments[&format!("bench-{run}")])?;
    host.run(d);
    let started = loop {
        let text = host.metrics().render();
        if text.lines().any(|l| l.starts_with("weir_records_in_total") && !l.ends_with(" 0")) {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let weir_done = wait_full(&weir_out)?;
    let weir_per_sec = records as f64 / weir_done.duration_since(started).as_secs_f64();
    host.shutdown();
    let _ = std::fs::remove_dir_all(&state);
    Ok(PipelineReport { records, raw_per_sec, weir_per_sec })
}

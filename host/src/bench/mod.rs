//! `weir bench`: throughput measurements whose results go to
//! BENCHMARKS.md. Each compares Weir with a baseline measured in the same
//! run on the same machine, so the ratio means more than the raw figure.
//!
//! (Over 400 lines: benchmarks share their setup; the tenants and Kafka Streams ones have their own modules.)

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use weir_abi::BatchBuilder;
use weir_abi::InputBatch;
use weir_abi::Limits;
use weir_engine::transform::{Transform, TransformSpec};
use weir_engine::{Engine, EngineConfig};
use weir_state::PartitionState;

mod cpu;
pub mod delivery;
pub mod formats;
mod join;
mod order;
mod restart;
pub mod streams;
mod tenants;

pub use cpu::CpuUse;
pub use join::{JoinReport, join};
pub use order::{OrderReport, order};
pub use restart::{RestartReport, restart};
pub use tenants::{Latency, TenantsReport, tenants};

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

/// Queues `record`, serving delivery reports for `wait` at a time while
/// librdkafka's queue is full.
fn send_waiting<K, P>(
    producer: &rdkafka::producer::BaseProducer,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
    wait: Duration,
) where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    while let Err((_, back)) = producer.send(record) {
        record = back;
        producer.poll(wait);
    }
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
    let mut transform = Transform::new(
        module,
        Arc::new(TransformSpec::new("bench", Vec::new(), Limits::default())),
    );
    let mut rows = Vec::new();
    for batch_size in [1usize, 100, 1000] {
        let batches: Vec<InputBatch> = (0..records / batch_size)
            .map(|i| value_batch(batch_size, value_bytes, (i * batch_size) as i64))
            .collect();
        let total = batches.len() * batch_size;
        let mut state = Some(Box::new(PartitionState::in_memory()));
        let mut wasm = || {
            let mut n = 0;
            for b in &batches {
                let (s, r) = transform.dispatch(
                    b,
                    state
                        .take()
                        .expect("the state is given back after each batch"),
                );
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
                let outputs: Vec<Vec<u8>> = (0..b.records.len())
                    .map(|i| b.value(i).unwrap_or_default().to_ascii_uppercase())
                    .collect();
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
        rows.push(DispatchRow {
            batch: batch_size,
            wasm_per_sec,
            native_per_sec,
        });
    }
    Ok(rows)
}

pub struct PipelineReport {
    pub records: usize,
    pub raw_per_sec: f64,
    pub weir_per_sec: f64,
    pub raw_cpu: CpuUse,
    pub weir_cpu: CpuUse,
}

/// A rate measured end to end, with the CPU its phase used.
pub struct Rate {
    pub per_sec: f64,
    pub cpu: CpuUse,
}

/// End to end on a real broker: the same records through a raw rdkafka
/// consume→produce passthrough (no wasm) and through `weir run`'s pipeline
/// with a stateless plugin, each timed from its first consumed record until
/// its output topic holds every output.
pub fn pipeline(
    brokers: &str,
    plugin: &Path,
    records: usize,
    partitions: usize,
) -> Result<PipelineReport> {
    pipeline_on(&bench_kafka(brokers), plugin, records, partitions)
}

/// [`pipeline`] with every client configured by `kafka` (its security
/// included).
pub fn pipeline_on(
    kafka: &weir_control::config::KafkaConfig,
    plugin: &Path,
    records: usize,
    partitions: usize,
) -> Result<PipelineReport> {
    let kafka = kafka.clone();
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let run = run_id();
    let (input, raw_out, weir_out) = (
        format!("bench-in-{run}"),
        format!("bench-raw-{run}"),
        format!("bench-weir-{run}"),
    );
    for t in [&input, &raw_out, &weir_out, &format!("{weir_out}.dlq")] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    fill(&kafka, &input, records)?;
    let raw = raw_relay(&kafka, &input, &raw_out, partitions, records)?;
    let deployment = deployment(plugin, &input, &weir_out, &[]);
    let weir = weir_rate(
        &kafka,
        &format!("bench-{run}"),
        deployment,
        partitions,
        records,
    )?;
    Ok(PipelineReport {
        records,
        raw_per_sec: raw.per_sec,
        weir_per_sec: weir.per_sec,
        raw_cpu: raw.cpu,
        weir_cpu: weir.cpu,
    })
}

/// A name no other benchmark of this machine uses.
fn run_id() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Records/s of a raw consume→produce relay from `input` to `output` on one
/// thread, as a minimal hand-written one would be (Weir's client settings,
/// no wasm): from its first consumed record until `output` holds every
/// record.
fn raw_relay(
    kafka: &weir_control::config::KafkaConfig,
    input: &str,
    output: &str,
    partitions: usize,
    records: usize,
) -> Result<Rate> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let consumer: BaseConsumer =
        weir_kafka::consumer_config(kafka, &format!("{output}-relay")).create()?;
    consumer.subscribe(&[input])?;
    let relay: BaseProducer = weir_kafka::producer_config(kafka).create()?;
    let mut first = None;
    let mut seen = 0;
    while seen < records {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            first.get_or_insert_with(cpu::CpuMark::now);
            let mut r = BaseRecord::<[u8], [u8]>::to(output);
            if let Some(k) = rdkafka::Message::key(&m) {
                r = r.key(k);
            }
            if let Some(v) = rdkafka::Message::payload(&m) {
                r = r.payload(v);
            }
            send_waiting(&relay, r, Duration::from_millis(1));
            relay.poll(Duration::ZERO);
            seen += 1;
        }
    }
    relay.flush(Duration::from_secs(120))?;
    wait_filled(kafka, output, partitions, records)?;
    let cpu = first.expect("consumed").used();
    Ok(Rate {
        per_sec: records as f64 / cpu.wall_secs,
        cpu,
    })
}

/// A deployment of `plugin` from `input` to `output` with default limits.
fn deployment(
    plugin: &Path,
    input: &str,
    output: &str,
    config: &[(&str, &str)],
) -> weir_control::config::DeploymentConfig {
    weir_control::config::DeploymentConfig {
        plugin: plugin.to_owned(),
        tables: Default::default(),
        inputs: vec![input.to_owned()],
        output: output.to_owned(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits: Limits::default(),
        failure_policy: Default::default(),
        dead_letter_topic: Some(format!("{output}.dlq")),
        late_topic: None,
        cpu_share: 1.0,
        delivery: Default::default(),
        commit_interval_ms: None,
        formats: Default::default(),
    }
}

/// Records/s of `weir run`'s pipeline (in this process, default host
/// settings) running `deployment`: from its first consumed record until its
/// output holds `expected` records.
fn weir_rate(
    kafka: &weir_control::config::KafkaConfig,
    name: &str,
    deployment: weir_control::config::DeploymentConfig,
    partitions: usize,
    expected: usize,
) -> Result<Rate> {
    let state = tempfile::tempdir()?;
    Ok(weir_rate_in(
        kafka,
        &bench_host_config(state.path()),
        None,
        name,
        deployment,
        partitions,
        expected,
    )?
    .0)
}

/// [`weir_rate`] on a host of settings `host`; also returns the
/// deployment's status at the end.
fn weir_rate_in(
    kafka: &weir_control::config::KafkaConfig,
    host: &weir_pipeline::config::HostConfig,
    registry: Option<&weir_schema::RegistryConfig>,
    name: &str,
    deployment: weir_control::config::DeploymentConfig,
    partitions: usize,
    expected: usize,
) -> Result<(Rate, weir_pipeline::DeploymentStatus)> {
    let output = deployment.output.clone();
    let host = weir_pipeline::Host::start(kafka, host, &Default::default(), registry)?;
    host.run(host.prepare_static(name, &deployment)?);
    let started = loop {
        if host.metrics().sum("records_in_total", None) > 0.0 {
            break cpu::CpuMark::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    wait_filled(kafka, &output, partitions, expected)?;
    let cpu = started.used();
    let status = host
        .statuses()
        .remove(name)
        .context("the deployment's status")?;
    host.shutdown();
    let records = host.metrics().sum("records_in_total", None);
    let rate = Rate {
        per_sec: records / cpu.wall_secs,
        cpu,
    };
    Ok((rate, status))
}

/// A host of `weir run` in this process, default settings, no listener.
fn bench_host(
    kafka: &weir_control::config::KafkaConfig,
    state_dir: &Path,
) -> Result<weir_pipeline::Host> {
    weir_pipeline::Host::start(
        kafka,
        &bench_host_config(state_dir),
        &Default::default(),
        None,
    )
}

/// Default host settings, state in `state_dir`, no listener.
fn bench_host_config(state_dir: &Path) -> weir_pipeline::config::HostConfig {
    weir_pipeline::config::HostConfig {
        state_dir: state_dir.to_owned(),
        listen: None,
        ..Default::default()
    }
}

fn bench_kafka(brokers: &str) -> weir_control::config::KafkaConfig {
    weir_control::config::KafkaConfig {
        brokers: brokers.to_owned(),
        ..weir_control::config::KafkaConfig::default()
    }
}

/// Produces `records` records (100-byte values, 1000 keys) to `topic`.
fn fill(kafka: &weir_control::config::KafkaConfig, topic: &str, records: usize) -> Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = weir_kafka::producer_config(kafka).create()?;
    let value = vec![b'x'; 100];
    for i in 0..records {
        let key = format!("k{}", i % 1000);
        send_waiting(
            &producer,
            BaseRecord::to(topic).key(key.as_bytes()).payload(&value),
            Duration::from_millis(5),
        );
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Waits until `topic` holds `records` records; returns when it did.
fn wait_filled(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    partitions: usize,
    records: usize,
) -> Result<Instant> {
    wait_filled_while(kafka, topic, partitions, records, || Ok(()))
}

/// [`wait_filled`], failing when `alive` fails or `topic` stops growing for
/// two minutes.
fn wait_filled_while(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    partitions: usize,
    records: usize,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Instant> {
    use rdkafka::consumer::Consumer;
    let client: rdkafka::consumer::BaseConsumer = weir_kafka::client_config(kafka).create()?;
    let (mut last, mut since) = (-1, Instant::now());
    loop {
        let mut sum = 0;
        for p in 0..partitions as i32 {
            sum += client
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1;
        }
        if sum >= records as i64 {
            return Ok(Instant::now());
        }
        if sum > last {
            (last, since) = (sum, Instant::now());
        } else if since.elapsed() > Duration::from_secs(120) {
            bail!("{topic} stopped growing at {sum} of {records} records");
        }
        alive()?;
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When `topic` first holds `records` records visible to a
/// `read_committed` reader, counted by reading them (under exactly-once its
/// offsets include transaction markers, and aborted records): failing when
/// `alive` fails or nothing new comes for two minutes.
fn wait_visible(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    records: usize,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Instant> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = weir_kafka::consumer_config(kafka, &format!("{topic}-visible"))
        .set("isolation.level", "read_committed")
        .create()?;
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut all = rdkafka::TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        all.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
    }
    c.assign(&all)?;
    let (mut seen, mut since) = (0, Instant::now());
    while seen < records {
        match c.poll(Duration::from_millis(100)) {
            Some(m) => {
                m?;
                (seen, since) = (seen + 1, Instant::now());
            }
            None if since.elapsed() > Duration::from_secs(120) => {
                bail!("{topic} stopped growing at {seen} of {records} visible records")
            }
            None => alive()?,
        }
    }
    Ok(Instant::now())
}

pub struct StateRow {
    pub name: &'static str,
    pub per_sec: f64,
}

/// Records of `keys` distinct keys, each value the key itself (one word),
/// with event times advancing one ms every `per_ms` records.
fn keyed_batch(n: usize, keys: usize, per_ms: usize, offset: usize) -> InputBatch {
    let mut b = BatchBuilder::new("bench", 0);
    for i in offset..offset + n {
        let key = format!("w{}", i % keys);
        b.push(
            i as i64,
            1_000_000 + (i / per_ms) as i64,
            Some(key.as_bytes()),
            Some(key.as_bytes()),
            [],
        );
    }
    b.finish()
}

/// In-process stateful throughput on one thread with the production state
/// path (RocksDB store, a write batch and checkpoint every 100 000
/// records, as a commit would: at the default 1 s commit interval, that is
/// a commit per second at 100 k records/s, more often than at the rates
/// measured here): the stateless map as a baseline, the word count,
/// and a tumbling window count (1 min windows, event time advancing 1 ms
/// every 10 records: 60 records per key per window, a window closing every
/// 600 000 records), over `keys` keys.
pub fn state(plugins: &Path, records: usize, keys: usize) -> Result<Vec<StateRow>> {
    const BATCH: usize = 1000;
    let engine = Engine::new(EngineConfig::default())?;
    let dir = tempfile::tempdir()?;
    let rocks = weir_state::rocks::RocksConfig::new(64 << 20)?;
    type Case<'a> = (&'a str, &'a str, Vec<(String, String)>);
    let cases: [Case<'_>; 3] = [
        ("stateless map (upper)", "upper", vec![]),
        ("word count", "word_count", vec![]),
        (
            "tumbling window count",
            "window_count",
            vec![
                ("window".into(), "tumbling".into()),
                ("size_ms".into(), "60000".into()),
            ],
        ),
    ];
    let batches: Vec<InputBatch> = (0..records / BATCH)
        .map(|i| keyed_batch(BATCH, keys, 10, i * BATCH))
        .collect();
    let mut rows = Vec::new();
    for (name, file, config) in cases {
        let module = Arc::new(engine.load_file(&plugins.join(format!("{file}.wasm")))?);
        let mut transform = Transform::new(
            module,
            Arc::new(TransformSpec::new(name, config, Limits::default())),
        );
        let per_sec = stateful_rate(&mut transform, &batches, dir.path(), &rocks, 3)
            .with_context(|| name.to_owned())?;
        rows.push(StateRow { name, per_sec });
    }
    Ok(rows)
}

/// Records/s of `transform` over `batches` with a fresh RocksDB store per
/// round and a checkpoint every 100 batches, best of `rounds`.
fn stateful_rate(
    transform: &mut Transform,
    batches: &[InputBatch],
    dir: &Path,
    rocks: &weir_state::rocks::RocksConfig,
    rounds: usize,
) -> Result<f64> {
    let records: usize = batches.iter().map(|b| b.records.len()).sum();
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let path = tempfile::tempdir_in(dir)?;
        let mut state = Some(Box::new(PartitionState::open(Box::new(
            weir_state::rocks::RocksBackend::open(path.path(), rocks)?,
        ))?));
        let started = Instant::now();
        for (i, b) in batches.iter().enumerate() {
            let (s, r) = transform.dispatch(
                b,
                state
                    .take()
                    .expect("the state is given back after each batch"),
            );
            if let Some(s) = &r.stopped {
                bail!(
                    "the plugin stopped during the benchmark: {}: {}",
                    s.kind,
                    s.message
                );
            }
            if let Some(f) = r.failures.first() {
                bail!(
                    "the plugin failed records during the benchmark: {}: {}",
                    f.kind,
                    f.message
                );
            }
            black_box(r.records().count());
            state = Some(s);
            if (i + 1) % 100 == 0 {
                let offsets = [(
                    "bench".to_owned(),
                    b.records.last().map_or(0, |r| r.offset + 1),
                )]
                .into();
                state
                    .as_mut()
                    .expect("the state is given back after each batch")
                    .flush_with_checkpoint(&weir_state::Checkpoint {
                        offsets,
                        changelog_next: 0,
                    })?;
            }
        }
        best = best.min(started.elapsed());
    }
    Ok(records as f64 / best.as_secs_f64())
}

pub struct LanguageRow {
    pub lang: String,
    pub plugin: &'static str,
    pub size: usize,
    pub compile_cold: Duration,
    pub load_cached: Duration,
    pub per_sec: f64,
}

/// Per language (`plugins/<lang>/{upper,word-count}.wasm`, the output of
/// `scripts/build-plugins`): component size, compile time without and with
/// the precompiled-artifact cache (as a host restart sees it), and
/// stateful throughput on one thread over the same records as `state`.
pub fn languages(
    plugins: &Path,
    langs: &[String],
    records: usize,
    keys: usize,
) -> Result<Vec<LanguageRow>> {
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir()?;
    let rocks = weir_state::rocks::RocksConfig::new(64 << 20)?;
    let batches: Vec<InputBatch> = (0..records.div_ceil(BATCH))
        .map(|i| keyed_batch(BATCH, keys, 10, i * BATCH))
        .collect();
    let mut rows = Vec::new();
    for lang in langs {
        for plugin in ["upper", "word-count", "inactivity"] {
            let path = plugins.join(lang).join(format!("{plugin}.wasm"));
            // A timer per record; plugins built for world 0.1 have none.
            if plugin == "inactivity" && !path.exists() {
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            // A new cache directory per component: the first engine compiles,
            // the second (a restarted host) loads the artifact.
            let cache = tempfile::tempdir_in(dir.path())?;
            let config = || EngineConfig {
                cache_dir: Some(cache.path().to_owned()),
                ..EngineConfig::default()
            };
            let started = Instant::now();
            Engine::new(config())?
                .load(&bytes)
                .with_context(|| path.display().to_string())?;
            let compile_cold = started.elapsed();
            let engine = Engine::new(config())?;
            let started = Instant::now();
            let module = engine.load(&bytes)?;
            let load_cached = started.elapsed();
            if module.compiled_in.is_some() {
                bail!(
                    "{}: the second load compiled again instead of using the cache",
                    path.display()
                );
            }
            let mut transform = Transform::new(
                Arc::new(module),
                Arc::new(TransformSpec::new(plugin, Vec::new(), Limits::default())),
            );
            let per_sec = stateful_rate(&mut transform, &batches, dir.path(), &rocks, 3)
                .with_context(|| path.display().to_string())?;
            rows.push(LanguageRow {
                lang: lang.clone(),
                plugin,
                size: bytes.len(),
                compile_cold,
                load_cached,
                per_sec,
            });
        }
    }
    Ok(rows)
}

pub struct RestoreReport {
    pub keys: usize,
    pub read_per_sec: f64,
    pub restore_per_sec: f64,
}

/// Restore rate: `keys` changelog records (one per key) on `brokers`
/// (librdkafka's mock cluster stalls on a million-record fetch), read back
/// once by a
/// bare consumer with the same settings (the baseline) and once by Weir's
/// restore into RocksDB.
pub fn restore(brokers: &str, keys: usize) -> Result<RestoreReport> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

    let kafka = bench_kafka(brokers);
    let topic = format!("bench-changelog-{}", std::process::id());
    weir_kafka::Cluster::connect(&kafka)?.ensure_topic(
        &topic,
        1,
        weir_kafka::changelog::TOPIC_CONFIG,
    )?;
    let producer: BaseProducer = weir_kafka::producer_config(&kafka).create()?;
    let committed: std::collections::BTreeMap<String, i64> =
        [("input".to_owned(), keys as i64)].into();
    let header = weir_kafka::changelog::encode_offsets(&committed);
    let value = 42u64.to_be_bytes();
    for i in 0..keys {
        let key = format!("u{i:012}");
        let headers = OwnedHeaders::new().insert(Header {
            key: weir_kafka::changelog::OFFSETS_HEADER,
            value: Some(header.as_bytes()),
        });
        let r = BaseRecord::to(&topic)
            .partition(0)
            .key(key.as_bytes())
            .payload(&value[..])
            .headers(headers);
        send_waiting(&producer, r, Duration::from_millis(5));
    }
    producer.flush(Duration::from_secs(300))?;

    let consumer = weir_kafka::changelog::reader(&kafka)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut read = 0;
    let deadline = started + Duration::from_secs(600);
    while read < keys && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                black_box(rdkafka::Message::key(&m));
                read += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let read_per_sec = read as f64 / started.elapsed().as_secs_f64();
    drop(consumer);

    let dir = tempfile::tempdir()?;
    let rocks = weir_state::rocks::RocksConfig::new(64 << 20)?;
    let mut state = PartitionState::open(Box::new(weir_state::rocks::RocksBackend::open(
        dir.path(),
        &rocks,
    )?))?;
    let started = Instant::now();
    let (low, high) = weir_kafka::changelog::extent(&kafka, &topic, 0, Duration::from_secs(10))?;
    let restored = weir_kafka::changelog::restore(
        &kafka,
        &topic,
        0,
        low..high,
        &committed,
        Duration::ZERO,
        &mut state,
        &|_| {},
    )?;
    let restore_per_sec = restored.applied as f64 / started.elapsed().as_secs_f64();
    if restored.applied != keys as u64 {
        bail!("restored {} of {keys} keys", restored.applied);
    }
    Ok(RestoreReport {
        keys,
        read_per_sec,
        restore_per_sec,
    })
}

//! `weir bench tenants`: one tenant alone vs. beside a tenant running every
//! hostile plugin, on one host and a real broker.

use super::*;

/// Median and 99th percentile.
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

impl Latency {
    pub(super) fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Latency {
            p50: at(0.5),
            p99: at(0.99),
        }
    }
}

pub struct TenantsReport {
    pub records: usize,
    pub alone_per_sec: f64,
    pub shared_per_sec: f64,
    /// Records of the hostile tenant that failed (and were dead-lettered)
    /// while the good tenant ran.
    pub hostile_failures: u64,
    /// End-to-end latency (produced to read back) of the good tenant's
    /// steady stream, alone and beside the hostile tenant.
    pub latency_alone: Latency,
    pub latency_beside: Latency,
    /// Peak resident memory of this process (the host, the benchmark's
    /// clients), bytes.
    pub peak_rss: u64,
}

/// Tenant `good` runs the upper plugin over a backlog on a real broker,
/// first alone, then while tenant `hostile` runs every hostile plugin
/// (trap, endless loop, memory bomb, unbounded recursion, output flood,
/// state flood, a WASI sleeper, an undo-log bomb, a header-span bomb) on a
/// steady stream of records, on the same host; and a steady stream of the
/// good tenant's, timed record by record, alone and beside the same
/// hostile load.
/// `plugins` holds the Rust plugins' build output; the sleeper is its
/// `wasm32-wasip2` sibling.
pub fn tenants(
    brokers: &str,
    plugins: &Path,
    records: usize,
    partitions: usize,
) -> Result<TenantsReport> {
    use weir_control::Control;
    use weir_control::tenants::{Quota, TenantConfig, token_hash};
    use weir_pipeline::Identity;

    let kafka = bench_kafka(brokers);
    let run = std::process::id();
    let (good, evil) = (format!("good{run}"), format!("evil{run}"));
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let input = format!("{good}.in");
    for name in ["warm-up", "alone", "shared", "steady"] {
        for t in [format!("{good}.{name}"), format!("{good}.{name}.dlq")] {
            cluster.ensure_topic(&t, partitions, &[])?;
        }
    }
    cluster.ensure_topic(&input, partitions, &[])?;
    cluster.ensure_topic(&format!("{good}.steady-in"), partitions, &[])?;
    for t in [
        format!("{evil}.in"),
        format!("{evil}.out"),
        format!("{evil}.out.dlq"),
    ] {
        cluster.ensure_topic(&t, 1, &[])?;
    }
    fill(&kafka, &input, records)?;

    let tenant = |name: &str, quota: Quota| TenantConfig {
        token_sha256: token_hash(name),
        input_prefixes: vec![format!("{name}.")],
        output_prefixes: vec![format!("{name}.")],
        quota,
    };
    let hostile_quota = Quota {
        memory_mb: 32,
        cpu_ms_per_batch: 300,
        max_outputs_per_record: 100,
        max_state_bytes: Some(1 << 20),
        ..Quota::default()
    };
    let mut config = weir_control::config::Config {
        kafka: kafka.clone(),
        ..weir_control::config::Config::default()
    };
    let state = tempfile::tempdir()?;
    config.host.state_dir = state.path().to_owned();
    config.host.listen = None;
    config
        .tenants
        .insert(good.clone(), tenant(&good, Quota::default()));
    config
        .tenants
        .insert(evil.clone(), tenant(&evil, hostile_quota));
    let control = Control::start(&config)?;
    let host = control.host.clone();
    let engine = host.engine().clone();
    let deploy = |tenant: &str,
                  name: &str,
                  plugin: &Path,
                  input: &str,
                  output: &str,
                  settings: &[(&str, &str)]|
     -> Result<()> {
        let t = &config.tenants[tenant];
        let limits = t
            .quota
            .limits(&serde_json::Map::new())
            .map_err(anyhow::Error::msg)?;
        let d = weir_control::config::DeploymentConfig {
            tables: Default::default(),
            plugin: Default::default(),
            inputs: vec![input.to_owned()],
            output: output.to_owned(),
            config: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            limits,
            failure_policy: Default::default(),
            dead_letter_topic: Some(format!("{output}.dlq")),
            late_topic: None,
            cpu_share: 1.0,
            delivery: Default::default(),
            commit_interval_ms: None,
            formats: Default::default(),
        };
        let module = Arc::new(engine.load_file(plugin)?);
        let id = format!("{tenant}.{name}");
        let who = Identity {
            id: id.clone(),
            tenant: Some(tenant.to_owned()),
            storage: id,
        };
        host.run(control.prepare(&who, &d, module)?);
        Ok(())
    };
    let plugin = |name: &str| plugins.join(format!("{}.wasm", name.replace('-', "_")));
    let timed = |name: &str| -> Result<f64> {
        let output = format!("{good}.{name}");
        deploy(&good, name, &plugin("upper"), &input, &output, &[])?;
        // From the first output on (rendering the metrics to watch for the
        // first input would itself cost CPU).
        let started = wait_filled(&kafka, &output, partitions, 1)?;
        let done = wait_filled(&kafka, &output, partitions, records)?;
        host.stop(&format!("{good}.{name}"));
        Ok(records as f64 / done.duration_since(started).as_secs_f64())
    };

    // A first pass warms the broker's caches; it is not counted.
    timed("warm-up")?;
    let alone_per_sec = timed("alone")?;
    // The steady stream starts once its deployment owns every partition
    // (records waiting for the assignment would time the group join).
    let steady = format!("{good}.steady");
    deploy(
        &good,
        "steady",
        &plugin("upper"),
        &format!("{good}.steady-in"),
        &steady,
        &[],
    )?;
    let assigned = Instant::now() + Duration::from_secs(60);
    while host
        .statuses()
        .get(&steady)
        .is_none_or(|s| s.partitions.len() < partitions)
    {
        anyhow::ensure!(
            Instant::now() < assigned,
            "the steady stream's deployment got no partitions within a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let steady_period = Duration::from_secs(10);
    let latency_alone = Latency::of(steady_latencies(
        &kafka,
        &format!("{good}.steady-in"),
        &steady,
        2_000,
        steady_period,
    )?);

    // The hostile tenant, fed a steady stream, has its plugins busy failing
    // before the good tenant starts again.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (kafka, topic, stop) = (kafka.clone(), format!("{evil}.in"), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
            let producer: BaseProducer = weir_kafka::producer_config(&kafka).create()?;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..20 {
                    let key = format!("e{i}");
                    send_waiting(
                        &producer,
                        BaseRecord::to(&topic)
                            .key(key.as_bytes())
                            .payload("hostile".as_bytes()),
                        Duration::from_millis(5),
                    );
                    i += 1;
                }
                producer.poll(Duration::from_millis(100));
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(())
        })
    };
    let sleeper = plugins.join("../../wasm32-wasip2/release/hostile_sleep.wasm");
    type Hostile<'a> = (&'a str, PathBuf, &'a [(&'a str, &'a str)]);
    let hostile: [Hostile<'_>; 9] = [
        ("trap", plugin("hostile-trap"), &[]),
        ("loop", plugin("hostile-loop"), &[]),
        ("memory", plugin("hostile-memory"), &[]),
        ("recursion", plugin("hostile-recursion"), &[]),
        ("flood", plugin("hostile-flood"), &[("count", "1000")]),
        ("state", plugin("hostile-state"), &[]),
        ("sleep", sleeper, &[("mode", "forever")]),
        ("undo", plugin("hostile-host"), &[("attack", "undo")]),
        (
            "spans",
            plugin("hostile-host"),
            &[("attack", "header-span")],
        ),
    ];
    for (name, path, settings) in &hostile {
        deploy(
            &evil,
            name,
            path,
            &format!("{evil}.in"),
            &format!("{evil}.out"),
            settings,
        )?;
    }
    std::thread::sleep(Duration::from_secs(5));
    let failures_before = failures_of(&host, &evil);
    let shared = timed("shared");
    let hostile_failures = failures_of(&host, &evil) - failures_before;
    let latencies = steady_latencies(
        &kafka,
        &format!("{good}.steady-in"),
        &steady,
        2_000,
        steady_period,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    host.shutdown();
    Ok(TenantsReport {
        records,
        alone_per_sec,
        shared_per_sec: shared?,
        hostile_failures,
        latency_alone,
        latency_beside: Latency::of(latencies?),
        peak_rss: peak_rss(),
    })
}

/// Produces `rate` records a second to `input` for `period`, each stamped
/// with its send time, and reads `output` until each came back: the
/// latency of each.
pub(super) fn steady_latencies(
    kafka: &weir_control::config::KafkaConfig,
    input: &str,
    output: &str,
    rate: u64,
    period: Duration,
) -> Result<Vec<Duration>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    // Read from the output's current ends, fixed before the first record
    // goes out: a group's `latest` is resolved later and would skip the
    // first outputs of a deployment that is already running.
    let consumer: BaseConsumer =
        weir_kafka::consumer_config(kafka, &format!("{output}-reader")).create()?;
    let metadata = consumer.fetch_metadata(Some(output), Duration::from_secs(10))?;
    let mut ends = rdkafka::TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = consumer.fetch_watermarks(output, p.id(), Duration::from_secs(10))?;
        ends.add_partition_offset(output, p.id(), rdkafka::Offset::Offset(high))?;
    }
    anyhow::ensure!(ends.count() > 0, "topic `{output}` has no partitions");
    consumer.assign(&ends)?;
    let producer: BaseProducer = weir_kafka::producer_config(kafka)
        .set("linger.ms", "0")
        .create()?;
    // One record through the whole path before the clock starts: the
    // producer's connection and id and the reader's first fetch are not the
    // deployment's latency (they showed as a p99 of half a second).
    send_waiting(
        &producer,
        BaseRecord::to(input).key("warm-up").payload("steady"),
        Duration::from_millis(1),
    );
    producer.flush(Duration::from_secs(30))?;
    let warm = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            Instant::now() < warm,
            "the steady stream's warm-up record did not come back within a minute"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100))
            && m?.key() == Some(b"warm-up".as_slice())
        {
            break;
        }
    }
    let total = rate * period.as_secs();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut sent = 0;
    let deadline = started + period + Duration::from_secs(60);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due.min(total) {
            let now = weir_abi::now_ms() as i64;
            send_waiting(
                &producer,
                BaseRecord::to(input)
                    .key(&sent.to_string())
                    .payload("steady")
                    .timestamp(now),
                Duration::from_millis(1),
            );
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        while let Some(m) = consumer.poll(Duration::from_millis(1)) {
            let sent_at = m?.timestamp().to_millis().unwrap_or(0);
            latencies.push(Duration::from_millis(
                (weir_abi::now_ms() as i64 - sent_at).max(0) as u64,
            ));
        }
    }
    if (latencies.len() as u64) < total {
        bail!(
            "{} of {total} records of the steady stream came back",
            latencies.len()
        );
    }
    Ok(latencies)
}

/// This process's peak resident memory, bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap_or(0)
        << 10
}

/// Failed records of `tenant` so far, from the metrics.
fn failures_of(host: &weir_pipeline::Host, tenant: &str) -> u64 {
    host.metrics().sum("failures_total", Some(tenant)) as u64
}

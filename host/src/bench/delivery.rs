//! `weir bench delivery`: what exactly-once costs. Weir at-least-once and
//! exactly-once at commit intervals of 100 ms and 1 s, on a stateless map
//! and a tumbling window count (state, a changelog), beside Kafka Streams
//! under `exactly_once_v2` on the same input and broker: records/s until
//! every output is visible to a `read_committed` reader (counted by reading
//! them, for every side alike), and the end-to-end latency of a steady
//! stream through the map.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weir_control::config::{Delivery, DeploymentConfig};

use super::streams::{Guarantee, KafkaStreams, fill_json, windows_closed};
use super::tenants::steady_latencies;
use super::{Latency, bench_host, bench_kafka, deployment, run_id, wait_visible};

/// Records a second of the steady stream, and for how long.
const STEADY_RATE: u64 = 1_000;
const STEADY_PERIOD: Duration = Duration::from_secs(10);

pub struct DeliveryRow {
    pub workload: &'static str,
    pub delivery: Delivery,
    pub commit_ms: u64,
    pub weir_per_sec: f64,
    /// Kafka Streams under the same guarantee and interval (measured for
    /// exactly-once only).
    pub kafka_streams_per_sec: Option<f64>,
    /// The steady stream through the map (map rows only).
    pub weir_latency: Option<Latency>,
    pub kafka_streams_latency: Option<Latency>,
}

const SETTINGS: [(Delivery, u64); 4] = [
    (Delivery::AtLeastOnce, 100),
    (Delivery::AtLeastOnce, 1_000),
    (Delivery::ExactlyOnce, 100),
    (Delivery::ExactlyOnce, 1_000),
];

pub fn delivery(
    brokers: &str,
    plugins: &Path,
    kafka_streams: &Path,
    records: usize,
    keys: usize,
    partitions: usize,
) -> Result<Vec<DeliveryRow>> {
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let program = KafkaStreams::locate(kafka_streams)?;
    let mut rows = Vec::new();
    for workload in ["map", "count"] {
        let run = run_id();
        let input = format!("bench-{workload}-in-{run}");
        cluster.ensure_topic(&input, partitions, &[])?;
        let sent = fill_json(
            &kafka,
            &input,
            records,
            keys,
            partitions,
            workload == "count",
        )?;
        let expected = if workload == "map" {
            records
        } else {
            windows_closed(records, keys)
        };
        let (plugin, config): (&str, &[(&str, &str)]) = match workload {
            "map" => ("upper", &[]),
            _ => (
                "window_count",
                &[
                    ("window", "tumbling"),
                    ("size_ms", "1000"),
                    ("emit", "final"),
                ],
            ),
        };
        for (delivery, commit_ms) in SETTINGS {
            let side = format!("{}-{commit_ms}", delivery.as_str());
            let output = format!("bench-{workload}-{side}-{run}");
            for t in [&output, &format!("{output}.dlq")] {
                cluster.ensure_topic(t, partitions, &[])?;
            }
            let mut d = deployment(
                &plugins.join(format!("{plugin}.wasm")),
                &input,
                &output,
                config,
            );
            (d.delivery, d.commit_interval_ms) = (delivery, Some(commit_ms));
            let weir_per_sec = visible_rate(
                &kafka,
                &format!("bench-{workload}-{side}-{run}"),
                d.clone(),
                sent,
                expected,
            )?;
            let exactly_once = delivery == Delivery::ExactlyOnce;
            let guarantee = Guarantee {
                exactly_once,
                commit_ms,
            };
            let kafka_streams_per_sec = match exactly_once {
                false => None,
                true => {
                    let out = format!("bench-{workload}-kstreams-{side}-{run}");
                    cluster.ensure_topic(&out, partitions, &[])?;
                    Some(program.rate(
                        &kafka,
                        workload,
                        &input,
                        &out,
                        &format!("{side}-{run}"),
                        partitions,
                        sent,
                        expected,
                        guarantee,
                    )?)
                }
            };
            let (mut weir_latency, mut kafka_streams_latency) = (None, None);
            if workload == "map" {
                weir_latency = Some(weir_steady(
                    &kafka,
                    &cluster,
                    &format!("{side}-{run}"),
                    d,
                    partitions,
                )?);
                if exactly_once {
                    kafka_streams_latency = Some(kafka_streams_steady(
                        &kafka,
                        &cluster,
                        &program,
                        &format!("{side}-{run}"),
                        partitions,
                        Guarantee {
                            exactly_once,
                            commit_ms,
                        },
                    )?);
                }
            }
            rows.push(DeliveryRow {
                workload: if workload == "map" {
                    "stateless map"
                } else {
                    "tumbling 1 s count, final"
                },
                delivery,
                commit_ms,
                weir_per_sec,
                kafka_streams_per_sec,
                weir_latency,
                kafka_streams_latency,
            });
        }
    }
    Ok(rows)
}

/// Input records/s of `weir run`'s pipeline (in this process) running
/// `deployment`: from its first consumed record until `expected` outputs
/// are visible.
fn visible_rate(
    kafka: &weir_control::config::KafkaConfig,
    name: &str,
    deployment: DeploymentConfig,
    sent: usize,
    expected: usize,
) -> Result<f64> {
    let state = tempfile::tempdir()?;
    let host = bench_host(kafka, state.path())?;
    let output = deployment.output.clone();
    host.run(host.prepare_static(name, &deployment)?);
    let started = loop {
        if host.metrics().sum("records_in_total", None) > 0.0 {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let done = wait_visible(kafka, &output, expected, || Ok(()))?;
    host.shutdown();
    Ok(sent as f64 / done.duration_since(started).as_secs_f64())
}

/// The latency of a steady stream through `deployment` (re-pointed at
/// topics of its own), from send to visible.
fn weir_steady(
    kafka: &weir_control::config::KafkaConfig,
    cluster: &weir_kafka::Cluster,
    run: &str,
    mut deployment: DeploymentConfig,
    partitions: usize,
) -> Result<Latency> {
    let (input, output) = (
        format!("bench-steady-in-{run}"),
        format!("bench-steady-out-{run}"),
    );
    for t in [&input, &output, &format!("{output}.dlq")] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    (
        deployment.inputs,
        deployment.output,
        deployment.dead_letter_topic,
    ) = (
        vec![input.clone()],
        output.clone(),
        Some(format!("{output}.dlq")),
    );
    let state = tempfile::tempdir()?;
    let host = bench_host(kafka, state.path())?;
    let name = format!("bench-steady-{run}");
    host.run(host.prepare_static(&name, &deployment)?);
    // Records waiting for the assignment would time the group join.
    let assigned = Instant::now() + Duration::from_secs(60);
    while host
        .statuses()
        .get(&name)
        .is_none_or(|s| s.partitions.len() < partitions)
    {
        anyhow::ensure!(
            Instant::now() < assigned,
            "the steady stream's deployment got no partitions within a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let latencies = steady_latencies(kafka, &input, &output, STEADY_RATE, STEADY_PERIOD);
    host.shutdown();
    Ok(Latency::of(latencies?))
}

/// The same through Kafka Streams' map.
fn kafka_streams_steady(
    kafka: &weir_control::config::KafkaConfig,
    cluster: &weir_kafka::Cluster,
    program: &KafkaStreams,
    run: &str,
    partitions: usize,
    guarantee: Guarantee,
) -> Result<Latency> {
    let (input, output) = (
        format!("bench-ks-steady-in-{run}"),
        format!("bench-ks-steady-out-{run}"),
    );
    for t in [&input, &output] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    let state = tempfile::tempdir()?;
    let _program = program
        .start(
            kafka,
            "map",
            &input,
            &output,
            &format!("steady-{run}"),
            state.path(),
            &guarantee,
        )
        .context("Kafka Streams")?;
    // The warm-up record of the steady stream waits for the topology.
    Ok(Latency::of(steady_latencies(
        kafka,
        &input,
        &output,
        STEADY_RATE,
        STEADY_PERIOD,
    )?))
}

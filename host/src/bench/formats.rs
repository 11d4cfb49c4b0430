//! `weir bench formats`: what decoding and encoding cost. Avro orders
//! in, a field-level transform (`reshape`), Avro out, against the same
//! records as raw bytes through `upper`; and beside Quix Streams doing
//! the same with its own registry serializers, on one broker and
//! registry.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use weir_schema::format::{Format, Formats, PartFormat};
use weir_schema::registry::Parsed;
use weir_schema::{Registry, RegistryConfig, Schemas};

use super::{
    bench_host_config, bench_kafka, deployment, run_id, send_waiting, wait_filled, weir_rate_in,
};

/// What the orders are written with.
const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"}]}"#;

/// What `reshape` writes.
const SHIPPED: &str = r#"{"type":"record","name":"Shipped","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"},{"name":"schema_id","type":"int"}]}"#;

pub struct FormatsRow {
    pub round: usize,
    /// The Avro bytes, untouched, through `upper`.
    pub raw_per_sec: f64,
    /// Avro decoded, reshaped, encoded.
    pub avro_per_sec: f64,
    pub quix_per_sec: Option<f64>,
}

/// `rounds` rounds of the raw and the Avro pipeline (and Quix Streams, if
/// `quix_python` has it), each over a fresh topic of `records` orders.
pub fn formats(
    brokers: &str,
    registry_url: &str,
    plugins: &Path,
    quix_python: Option<&Path>,
    records: usize,
    partitions: usize,
    rounds: usize,
) -> Result<Vec<FormatsRow>> {
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let registry_config = RegistryConfig {
        url: registry_url.to_owned(),
        username: None,
        password: None,
        token: None,
        ca_file: None,
        timeout_ms: 5_000,
        cached_schemas: 1_000,
    };
    let registry = Registry::new(&registry_config)?;
    let order = weir_schema::avro::AvroSchema::parse(ORDER).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let run = run_id();
        let input = format!("bench-orders-{run}");
        let outputs = ["raw", "avro", "quix"].map(|o| format!("bench-{o}-{run}"));
        for t in [&input].into_iter().chain(&outputs) {
            cluster.ensure_topic(t, partitions, &[])?;
            cluster.ensure_topic(&format!("{t}.dlq"), 1, &[])?;
        }
        let parsed = Parsed::parse("AVRO", ORDER).map_err(anyhow::Error::msg)?;
        let id = registry.register(&format!("{input}-value"), &parsed, ORDER, true)?;
        fill_orders(&kafka, &input, id, &order, records)?;

        let raw = deployment(&plugins.join("upper.wasm"), &input, &outputs[0], &[]);
        let mut avro = deployment(&plugins.join("reshape.wasm"), &input, &outputs[1], &[]);
        avro.formats = Formats {
            value: PartFormat {
                format: Format::Avro,
                ..PartFormat::default()
            },
            output_value: PartFormat {
                format: Format::Avro,
                schema: Some(SHIPPED.to_owned()),
                register: true,
                ..PartFormat::default()
            },
            ..Formats::default()
        };
        // Every order must come out: a failed one stops the count short.
        let rate = |name: &str, d, registry| -> Result<f64> {
            let state = tempfile::tempdir()?;
            let host = bench_host_config(state.path());
            let name = format!("bench-{name}-{run}");
            Ok(
                weir_rate_in(&kafka, &host, registry, &name, d, partitions, records)?
                    .0
                    .per_sec,
            )
        };
        // Which goes first alternates: the second reads a warmer broker.
        let (raw, avro) = if round % 2 == 1 {
            let raw = rate("raw", raw, None)?;
            (raw, rate("avro", avro, Some(&registry_config))?)
        } else {
            let avro = rate("avro", avro, Some(&registry_config))?;
            (rate("raw", raw, None)?, avro)
        };
        let quix = quix_python
            .map(|python| {
                quix_rate(
                    python,
                    brokers,
                    registry_url,
                    &input,
                    &outputs[2],
                    &kafka,
                    partitions,
                    records,
                )
            })
            .transpose()?;
        rows.push(FormatsRow {
            round,
            raw_per_sec: raw,
            avro_per_sec: avro,
            quix_per_sec: quix,
        });
    }
    Ok(rows)
}

/// Produces `records` orders to `topic`, Avro with schema `id`, in the
/// registry's wire format.
fn fill_orders(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    id: u32,
    schema: &weir_schema::avro::AvroSchema,
    records: usize,
) -> Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = weir_kafka::producer_config(kafka).create()?;
    let mut value = Vec::new();
    for i in 0..records {
        let key = format!("k{}", i % 1000);
        let order = format!(r#"{{"id":{i},"item":"item-{i}","qty":{}}}"#, i % 7 + 2);
        value.clear();
        weir_schema::wire::frame(id, &mut value);
        schema
            .encode_json(order.as_bytes(), &mut value)
            .map_err(anyhow::Error::msg)?;
        send_waiting(
            &producer,
            BaseRecord::to(topic).key(key.as_bytes()).payload(&value),
            Duration::from_millis(5),
        );
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Records/s of `host/bench/quix/reshape.py` from its first processed
/// record until `output` holds every output.
#[allow(clippy::too_many_arguments)]
fn quix_rate(
    python: &Path,
    brokers: &str,
    registry: &str,
    input: &str,
    output: &str,
    kafka: &weir_control::config::KafkaConfig,
    partitions: usize,
    records: usize,
) -> Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/quix/reshape.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args([brokers, registry, input, output, &format!("{output}-quix")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    let stdout = child.stdout.take().context("Quix's output")?;
    let first = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("first ").and_then(|t| t.parse::<f64>().ok()))
    });
    let filled = wait_filled(kafka, output, partitions, records);
    let done = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    // Stopped by its pid, whatever happened.
    let _ = child.kill();
    let _ = child.wait();
    filled?;
    let first = first
        .join()
        .ok()
        .flatten()
        .context("Quix Streams never said when it processed its first record")?;
    Ok(records as f64 / (done - first))
}

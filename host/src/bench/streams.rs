//! `weir bench streams`: Weir beside Kafka Streams on the same input and
//! broker, for a stateless map and a tumbling window count, with the raw
//! consume→produce relay as the ceiling. The Kafka Streams program is
//! `host/bench/kafka-streams` (built by `scripts/setup --test`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    bench_kafka, deployment, raw_relay, run_id, send_waiting, wait_filled_while, wait_visible,
    weir_rate,
};

/// Input records per millisecond of event time: the input spans about 10 s
/// of event time whatever its size (1 M records of 10 k keys: about 10
/// records per key and 1 s window).
fn records_per_ms(records: usize) -> usize {
    (records / 10_000).max(1)
}

pub struct StreamsRow {
    pub workload: &'static str,
    pub records: usize,
    pub outputs: usize,
    pub raw_per_sec: f64,
    pub weir_per_sec: f64,
    pub kafka_streams_per_sec: f64,
}

/// Both workloads over `records` JSON records of `keys` keys in
/// `partitions` partitions; `plugins` holds upper.wasm and
/// window_count.wasm, `kafka_streams` the built Kafka Streams program.
pub fn streams(
    brokers: &str,
    plugins: &Path,
    kafka_streams: &Path,
    records: usize,
    keys: usize,
    partitions: usize,
) -> Result<Vec<StreamsRow>> {
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let program = KafkaStreams::locate(kafka_streams)?;
    let mut rows = Vec::new();
    for workload in ["map", "count"] {
        let run = run_id();
        let input = format!("bench-{workload}-in-{run}");
        let outputs =
            ["raw", "weir", "kstreams"].map(|side| format!("bench-{workload}-{side}-{run}"));
        for t in [&input, &format!("{}.dlq", outputs[1])]
            .into_iter()
            .chain(&outputs)
        {
            cluster.ensure_topic(t, partitions, &[])?;
        }
        let sent = fill_json(
            &kafka,
            &input,
            records,
            keys,
            partitions,
            workload == "count",
        )?;
        let expected = match workload {
            "map" => records,
            _ => windows_closed(records, keys),
        };
        let raw_per_sec = raw_relay(&kafka, &input, &outputs[0], partitions, sent)?.per_sec;
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
        let d = deployment(
            &plugins.join(format!("{plugin}.wasm")),
            &input,
            &outputs[1],
            config,
        );
        let weir_per_sec = weir_rate(
            &kafka,
            &format!("bench-{workload}-{run}"),
            d,
            partitions,
            expected,
        )?
        .per_sec;
        let kafka_streams_per_sec = program.rate(
            &kafka,
            workload,
            &input,
            &outputs[2],
            &run,
            partitions,
            sent,
            expected,
            Guarantee::default(),
        )?;
        // A comparison of different work would mean nothing.
        let (weir, kstreams) = (
            read_all(&kafka, &outputs[1], expected)?,
            read_all(&kafka, &outputs[2], expected)?,
        );
        if weir != kstreams {
            let differ = weir.iter().zip(&kstreams).find(|(a, b)| a != b);
            bail!(
                "{workload}: Weir and Kafka Streams produced different results ({} and {} records; first difference {differ:?})",
                weir.len(),
                kstreams.len()
            );
        }
        rows.push(StreamsRow {
            workload: if workload == "map" {
                "stateless map"
            } else {
                "tumbling 1 s count, final"
            },
            records,
            outputs: expected,
            raw_per_sec,
            weir_per_sec,
            kafka_streams_per_sec,
        });
    }
    Ok(rows)
}

/// Produces `records` JSON values (~100 bytes) under `keys` keys to every
/// partition, event time advancing one millisecond every
/// [`records_per_ms`] records. With `windows`, a last record per
/// partition a minute later closes every window of the data (stream time
/// is per partition). Returns how many records were sent.
pub(super) fn fill_json(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    records: usize,
    keys: usize,
    partitions: usize,
    windows: bool,
) -> Result<usize> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = weir_kafka::producer_config(kafka).create()?;
    let base = (weir_abi::now_ms() as i64 / 1000 - 3600) * 1000;
    for i in 0..records {
        let key = format!("user-{}", i % keys);
        let value = format!(
            r#"{{"user":"{key}","event":"page-view","seq":{i},"path":"/products/item-{:06}"}}"#,
            i % 997
        );
        let ts = base + (i / records_per_ms(records)) as i64;
        send_waiting(
            &producer,
            BaseRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .timestamp(ts),
            Duration::from_millis(5),
        );
    }
    let mut sent = records;
    if windows {
        let end = base + (records / records_per_ms(records)) as i64 + 60_000;
        for p in 0..partitions as i32 {
            send_waiting(
                &producer,
                BaseRecord::<str, str>::to(topic)
                    .partition(p)
                    .key("closer")
                    .payload("{}")
                    .timestamp(end),
                Duration::from_millis(5),
            );
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(sent)
}

/// Results of the count workload: one per (key, 1 s window) of the data.
pub(super) fn windows_closed(records: usize, keys: usize) -> usize {
    let mut seen = std::collections::HashSet::new();
    for i in 0..records {
        seen.insert((i % keys, i / records_per_ms(records) / 1000));
    }
    seen.len()
}

/// The first `n` records of `topic`, as sorted (key, value) pairs.
fn read_all(
    kafka: &weir_control::config::KafkaConfig,
    topic: &str,
    n: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        weir_kafka::consumer_config(kafka, &format!("{topic}-check")).create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if Instant::now() > deadline {
            bail!("read {} of {n} records of {topic}", out.len());
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Kafka Streams' `processing.guarantee` and `commit.interval.ms`.
pub(super) struct Guarantee {
    pub exactly_once: bool,
    pub commit_ms: u64,
}

impl Default for Guarantee {
    fn default() -> Self {
        Guarantee {
            exactly_once: false,
            commit_ms: 1_000,
        }
    }
}

/// The Kafka Streams program: its jar and dependencies.
pub(super) struct KafkaStreams {
    classpath: String,
}

impl KafkaStreams {
    pub(super) fn locate(dir: &Path) -> Result<KafkaStreams> {
        let jar = dir.join("kafka-streams-bench-1.jar");
        if !jar.exists() {
            bail!(
                "the Kafka Streams benchmark program is not built at {}: run scripts/setup --test",
                jar.display()
            );
        }
        Ok(KafkaStreams {
            classpath: format!("{}:{}/libs/*", jar.display(), dir.display()),
        })
    }

    /// Records/s of one run: from the first record the topology sees until
    /// `output` holds `expected` records (visible ones, under exactly-once:
    /// offsets there include transaction markers).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rate(
        &self,
        kafka: &weir_control::config::KafkaConfig,
        mode: &str,
        input: &str,
        output: &str,
        run: &str,
        partitions: usize,
        sent: usize,
        expected: usize,
        guarantee: Guarantee,
    ) -> Result<f64> {
        let state = tempfile::tempdir()?;
        let mut child = self.start(kafka, mode, input, output, run, state.path(), &guarantee)?;
        let stdout = child.0.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "first" {
            bail!("the Kafka Streams program ended before processing a record");
        }
        let started = Instant::now();
        let alive = || match child.0.try_wait()? {
            Some(status) => bail!("the Kafka Streams program exited ({status})"),
            None => Ok(()),
        };
        let done = match guarantee.exactly_once {
            true => wait_visible(kafka, output, expected, alive)?,
            false => wait_filled_while(kafka, output, partitions, expected, alive)?,
        };
        Ok(sent as f64 / done.duration_since(started).as_secs_f64())
    }

    /// Starts the program on `input`; it prints `first` on stdout when the
    /// first record reaches its topology.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        &self,
        kafka: &weir_control::config::KafkaConfig,
        mode: &str,
        input: &str,
        output: &str,
        run: &str,
        state: &Path,
        guarantee: &Guarantee,
    ) -> Result<Killed> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let java = std::env::var_os("JAVA_HOME").map_or_else(
            || PathBuf::from("java"),
            |h| PathBuf::from(h).join("bin/java"),
        );
        let processing = if guarantee.exactly_once {
            "exactly_once_v2"
        } else {
            "at_least_once"
        };
        Ok(Killed(
            Command::new(java)
                .args([
                    "-cp",
                    &self.classpath,
                    "dev.weir.bench.StreamsBench",
                    &kafka.brokers,
                    mode,
                    input,
                    output,
                    &format!("bench-kstreams-{run}"),
                ])
                .arg(state)
                .args([
                    threads.to_string(),
                    guarantee.commit_ms.to_string(),
                    processing.to_owned(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting java (Kafka Streams)")?,
        ))
    }
}

/// A child process killed (and reaped) when dropped.
pub(super) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

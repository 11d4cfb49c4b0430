//! `weir dev`: Weir's main job end to end with nothing installed: an
//! in-process Kafka (librdkafka's mock cluster), a deployment of an example
//! plugin, sample records produced into it and its outputs printed as they
//! arrive.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};

use weir_control::config::{Config, DeploymentConfig};
use weir_engine::offline::jsonl::{self, InputLine};

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";
pub const DEPLOYMENT: &str = "demo";

/// The embedded cluster; lives as long as this value.
pub struct Embedded {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl Embedded {
    /// Starts a one-broker in-process cluster with the demo topics.
    pub fn start(extra_topics: &[&str]) -> Result<Embedded> {
        let cluster = MockCluster::new(1).context("starting the embedded Kafka cluster")?;
        // The mock cluster does not implement CreateTopics: create the
        // changelog here too.
        let changelog = weir_kafka::changelog::topic(
            &weir_control::config::KafkaConfig::default().group_prefix,
            DEPLOYMENT,
        );
        for t in [
            INPUT,
            OUTPUT,
            &format!("{DEPLOYMENT}.dlq"),
            &format!("{OUTPUT}.dlq"),
            &changelog,
        ]
        .into_iter()
        .chain(extra_topics.iter().copied())
        {
            cluster
                .create_topic(t, 3, 1)
                .with_context(|| format!("creating topic {t}"))?;
        }
        // The registry keeps its order in one partition.
        for t in weir_control::registry::topics(
            &weir_control::config::KafkaConfig::default().group_prefix,
        ) {
            cluster
                .create_topic(&t, 1, 1)
                .with_context(|| format!("creating topic {t}"))?;
        }
        Ok(Embedded { cluster })
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// The example plugin `weir dev` runs when none is named: the word count
/// from `plugins/`, built by `scripts/dev` into the build directory, found
/// wherever `weir dev` is started: `$CARGO_TARGET_DIR`, the build
/// directory this binary sits in, `./target`, or Weir's cache.
pub fn default_plugin() -> Result<PathBuf> {
    let exe_target = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_owned()));
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")));
    let candidates: Vec<PathBuf> = [
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        exe_target,
        Some(PathBuf::from("target")),
        cache.map(|c| c.join("target")),
    ]
    .into_iter()
    .flatten()
    .map(|t| t.join("wasm32-unknown-unknown/release/word_count.wasm"))
    .collect();
    if let Some(p) = candidates.iter().find(|p| p.exists()) {
        return Ok(p.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no --plugin given and the example word count is not built (looked for {}): run `scripts/dev`, or `cd plugins && cargo build --release`",
        tried.join(", ")
    )
}

/// A host config for the embedded cluster with one deployment.
pub fn config(
    bootstrap: &str,
    plugin: PathBuf,
    plugin_config: Vec<(String, String)>,
    state_dir: PathBuf,
) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = bootstrap.to_owned();
    c.kafka.embedded = true;
    c.host.state_dir = state_dir;
    c.host.commit_interval_ms = 500;
    // The embedded cluster answers at once, but never answers DeleteTopics:
    // give up on it quickly.
    c.kafka.connect_timeout_ms = 2_000;
    c.deployments.insert(
        DEPLOYMENT.to_owned(),
        DeploymentConfig {
            tables: Default::default(),
            plugin,
            inputs: vec![INPUT.to_owned()],
            output: OUTPUT.to_owned(),
            config: plugin_config.into_iter().collect(),
            limits: Default::default(),
            failure_policy: Default::default(),
            dead_letter_topic: None,
            late_topic: None,
            cpu_share: 1.0,
            delivery: Default::default(),
            commit_interval_ms: None,
            formats: Default::default(),
        },
    );
    c
}

const TEXT: &[&str] = &[
    "the quick brown fox jumps over the lazy dog",
    "a stream is a river of records",
    "the weir lets the river through and shapes it",
    "sandboxed transforms cannot touch what they were not given",
];

/// Records to produce: `input`'s lines, or sample sentences.
pub fn sample(input: Option<&PathBuf>) -> Result<Vec<InputLine>> {
    match input {
        Some(path) => jsonl::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        ),
        None => Ok((0..TEXT.len())
            .map(|i| InputLine {
                line: i + 1,
                topic: None,
                partition: 0,
                offset: None,
                timestamp: 0,
                key: Some(format!("line-{i}").into_bytes()),
                value: Some(TEXT[i].as_bytes().to_vec()),
                headers: Vec::new(),
                wall_clock: None,
                is_record: true,
                table: None,
            })
            .collect()),
    }
}

/// Produces `lines` into the input topic, one every `every`, `rounds` times
/// over (0: until `stop`). Each round's timestamps are shifted to start
/// now, keeping their spacing: a sample's old event times would otherwise
/// fall behind the broker's retention and vanish, and each round's windows
/// would all be late.
pub fn produce_samples(
    bootstrap: String,
    lines: Vec<InputLine>,
    every: Duration,
    rounds: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: BaseProducer = match rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
        {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "sample producer"),
        };
        let now = || weir_abi::now_ms() as i64;
        let first = lines
            .iter()
            .map(|l| l.timestamp)
            .find(|&t| t > 0)
            .unwrap_or(0);
        let mut round = 0;
        // Rounds never overlap in event time.
        let mut round_start = now();
        while !stop.load(Ordering::Relaxed) && (rounds == 0 || round < rounds) {
            let mut last = round_start;
            for l in lines.iter().filter(|l| l.is_record) {
                let timestamp = if l.timestamp > 0 {
                    round_start + (l.timestamp - first)
                } else {
                    now()
                };
                last = last.max(timestamp);
                let mut r: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(l.topic.as_deref().unwrap_or(INPUT)).timestamp(timestamp);
                if let Some(k) = &l.key {
                    r = r.key(k);
                }
                if let Some(v) = &l.value {
                    r = r.payload(v);
                }
                if !l.headers.is_empty() {
                    let headers = l.headers.iter().fold(
                        rdkafka::message::OwnedHeaders::new(),
                        |h, (name, value)| {
                            h.insert(rdkafka::message::Header {
                                key: name.as_str(),
                                value: value.as_deref(),
                            })
                        },
                    );
                    r = r.headers(headers);
                }
                let _ = producer.send(r);
                producer.poll(Duration::ZERO);
                std::thread::sleep(every);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            round += 1;
            round_start = now().max(last + 1);
        }
        let _ = producer.flush(Duration::from_secs(5));
    })
}

/// Prints every record of `topic` as a JSON line as it arrives; calls
/// `done` after `max` records (0: never). Join the thread before the
/// cluster stops: its consumer leaves the group on the way out.
pub fn print_outputs(
    bootstrap: String,
    topics: Vec<String>,
    max: usize,
    stop: Arc<AtomicBool>,
    done: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = match rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "weir-dev-printer")
            .set("auto.offset.reset", "earliest")
            .create()
        {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "output printer"),
        };
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            return tracing::error!(error = %e, "output printer");
        }
        let mut printed = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
                    .unwrap_or_default();
                println!(
                    "{}",
                    jsonl::output_line(
                        m.topic(),
                        m.key(),
                        m.payload(),
                        m.timestamp().to_millis().unwrap_or(-1),
                        headers.into_iter()
                    )
                );
                printed += 1;
                if max > 0 && printed == max {
                    done();
                    return;
                }
            }
        }
    })
}

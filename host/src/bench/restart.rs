//! `weir bench restart`: how soon a host killed with SIGKILL and started
//! again outputs again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{bench_kafka, run_id, send_waiting};

pub struct RestartReport {
    /// From the first start to the first output.
    pub first_start: Duration,
    /// From each restart after a SIGKILL to the first output of a record
    /// produced after the kill.
    pub restarts: Vec<Duration>,
}

/// How long the host runs between kills, and how long a round may take.
const RUNNING: Duration = Duration::from_secs(10);
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `weir run` (this binary, as its own process) with a deployment of
/// `plugin` (an upper-casing map) on a `partitions`-partition input that a
/// producer writes about 500 records/s to. `rounds` times, after 10 s of
/// running, kills it with SIGKILL and starts it again at once, and times
/// from the restart to the first output of a record produced after the
/// kill, which only the new process can have made.
pub fn restart(
    brokers: &str,
    plugin: &Path,
    rounds: usize,
    partitions: usize,
) -> Result<RestartReport> {
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let run = run_id();
    let (input, output) = (format!("restart-in-{run}"), format!("restart-out-{run}"));
    for t in [&input, &output, &format!("{output}.dlq")] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = {brokers:?}\ngroup_prefix = \"bench-restart-{run}\"\n\
             [host]\nstate_dir = {state:?}\nlisten = \"{listen}\"\n\
             [deployments.up]\nplugin = {plugin:?}\ninputs = [{input:?}]\noutput = {output:?}\n\
             dead_letter_topic = \"{output}.dlq\"\n",
            state = dir.path().join("state"),
            // Free now; the same after each restart, as a real host's.
            listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        ),
    )?;
    let log = dir.path().join("weir.log");
    let start = || -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        Command::new(std::env::current_exe()?)
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `weir run`")
    };

    let reader: BaseConsumer = weir_kafka::client_config(&kafka)
        .set("group.id", format!("bench-restart-reader-{run}"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&output, i32::try_from(p)?, Offset::End)?;
    }
    reader.assign(&tpl)?;
    // The first output of an input numbered above `past`.
    let first_output = |past: u64| -> Option<Instant> {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(50)) {
                let n = m
                    .payload()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.strip_prefix('R'))
                    .and_then(|v| v.parse::<u64>().ok());
                if n.is_some_and(|n| n > past) {
                    return Some(Instant::now());
                }
            }
        }
        None
    };

    let produced = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer: BaseProducer = weir_kafka::client_config(&kafka)
        .set("linger.ms", "5")
        .create()?;
    let feeder = {
        let (produced, stop, input) = (produced.clone(), stop.clone(), input.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (key, value) = ((i % 100).to_string(), format!("r{i}"));
                send_waiting(
                    &producer,
                    BaseRecord::to(&input).key(&key).payload(&value),
                    Duration::from_millis(10),
                );
                produced.store(i, Ordering::Relaxed);
                if i.is_multiple_of(50) {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let _ = producer.flush(Duration::from_secs(30));
        })
    };

    let mut weir = start()?;
    let started = Instant::now();
    let measured = (|| -> Result<RestartReport> {
        let first = first_output(0).context("no output after the first start")?;
        let mut report = RestartReport {
            first_start: first - started,
            restarts: Vec::new(),
        };
        for round in 1..=rounds {
            std::thread::sleep(RUNNING);
            weir.kill()?;
            weir.wait()?;
            let past = produced.load(Ordering::Relaxed);
            let restarted = Instant::now();
            weir = start()?;
            let first = first_output(past)
                .with_context(|| format!("no output within 3 minutes of restart {round}"))?;
            report.restarts.push(first - restarted);
        }
        Ok(report)
    })();
    let _ = weir.kill();
    let _ = weir.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    measured.with_context(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let mut from = text.len().saturating_sub(3000);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        format!("the host's log ends:\n{}", &text[from..])
    })
}

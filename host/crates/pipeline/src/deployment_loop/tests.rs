//! The deployment loop without Kafka: a stand-in consumer and producer
//! (`FakeSource`, `FakeSink`) around the real loop, real workers and a real
//! transform (the `upper` fixture component, which upper-cases values).
//! The stand-ins record what the loop asked of Kafka, and the tests report
//! deliveries in the order each case needs.
//!
//! (Over 400 lines: the stand-ins and the rig are shared by every case,
//! and each case reads whole on the page.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use weir_engine::transform::TransformSpec;
use weir_engine::{Engine, EngineConfig};
use weir_kafka::KafkaConfig;
use weir_kafka::producer::{Acks, Out, Role};
use weir_state::PartitionState;
use weir_state::memory::MemoryBackend;
use weir_state::rocks::RocksConfig;

use super::batching::{Arrival, Consumed};
use super::core::{DeploymentLoop, MAX_FAILED_DELIVERIES};
use super::io::{Event, Sink, Source};
use crate::Shared;
use crate::budget::HostBudgets;
use crate::config::{DeploymentConfig, HostConfig};
use crate::deployment::Deployment;
use crate::metrics::Metrics;
use crate::producers::Producers;
use crate::restore::Takeover;
use crate::tables::OpenStores;
use crate::workers::{Runnable, Workers};

/// What the loop asked of its consumer.
#[derive(Default)]
struct FakeSource {
    /// Offsets committed, and whether the commit waited for its answer.
    commits: Mutex<Vec<(String, i32, i64, bool)>>,
    seeks: Mutex<Vec<(String, i32, Option<i64>)>>,
    paused: Mutex<BTreeSet<(String, i32)>>,
    lost: AtomicBool,
}

impl FakeSource {
    /// The last offset committed for `partition` of `in`.
    fn committed(&self, partition: i32) -> Option<i64> {
        let commits = self.commits.lock();
        commits.iter().rev().find(|c| c.1 == partition).map(|c| c.2)
    }
}

impl Source for FakeSource {
    fn pause(&self, topic: &str, partition: i32) {
        self.paused.lock().insert((topic.to_owned(), partition));
    }

    fn resume(&self, topic: &str, partition: i32) {
        self.paused.lock().remove(&(topic.to_owned(), partition));
    }

    fn seek(&self, topic: &str, partition: i32, offset: Option<i64>) -> KafkaResult<()> {
        self.seeks
            .lock()
            .push((topic.to_owned(), partition, offset));
        Ok(())
    }

    fn commit(&self, offsets: &[(String, i32, i64)], sync: bool) -> KafkaResult<()> {
        let mut commits = self.commits.lock();
        commits.extend(offsets.iter().map(|(t, p, o)| (t.clone(), *p, *o, sync)));
        Ok(())
    }

    fn assignment_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn caught_up(&self, _topic: &str, _partition: i32, _next: Option<i64>) -> bool {
        true
    }

    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        None
    }

    fn finish_rebalance(&self, _event: &Event) -> KafkaResult<()> {
        Ok(())
    }

    fn fatal_error(&self) -> Option<String> {
        None
    }
}

/// A record the loop sent, with the group its report settles.
struct Sent {
    topic: String,
    value: Vec<u8>,
    role: Role,
    acks: Arc<Acks>,
    reported: bool,
}

/// A producer whose deliveries the test reports.
#[derive(Default)]
struct FakeSink {
    sent: Mutex<Vec<Sent>>,
}

impl Sink for FakeSink {
    fn send(
        &self,
        out: Out<'_>,
        role: Role,
        acks: &Arc<Acks>,
        _give_up: &dyn Fn() -> bool,
    ) -> KafkaResult<()> {
        acks.sent();
        self.sent.lock().push(Sent {
            topic: out.topic.to_owned(),
            value: out.value.unwrap_or_default().to_vec(),
            role,
            acks: acks.clone(),
            reported: false,
        });
        Ok(())
    }
}

impl FakeSink {
    /// Reports the unreported records `which` picks: delivered, or failed
    /// with `error`. Returns how many.
    fn report(&self, which: impl Fn(&Sent) -> bool, error: Option<RDKafkaErrorCode>) -> usize {
        let mut n = 0;
        for s in self
            .sent
            .lock()
            .iter_mut()
            .filter(|s| !s.reported && which(s))
        {
            let failed = error.map(KafkaError::MessageProduction);
            let result = failed.as_ref().map_or(Ok(n as i64), Err);
            s.acks.reported(s.role, &s.topic, result);
            s.reported = true;
            n += 1;
        }
        n
    }

    fn deliver(&self, which: impl Fn(&Sent) -> bool) -> usize {
        self.report(which, None)
    }

    fn values(&self, topic: &str) -> Vec<String> {
        let sent = self.sent.lock();
        sent.iter()
            .filter(|s| s.topic == topic)
            .map(|s| String::from_utf8_lossy(&s.value).into_owned())
            .collect()
    }
}

/// A loop over partitions `partitions` of topic `in`, running `upper`.
struct Rig {
    rt: DeploymentLoop,
    source: FakeSource,
    sink: Arc<FakeSink>,
    _state_dir: tempfile::TempDir,
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../../tests/fixtures/0.2/{name}.wasm"))
}

fn rig(extra: &str, partitions: &[i32]) -> Rig {
    let state_dir = tempfile::tempdir().expect("a temporary directory");
    let host = HostConfig {
        workers: 1,
        state_dir: state_dir.path().to_owned(),
        listen: None,
        batch_max_records: 5,
        batch_linger_ms: 0,
        ..HostConfig::default()
    };
    // Nothing listens here: the host's producer, made but never used (the
    // loop sends through the stand-in), stays unconnected.
    let kafka = KafkaConfig {
        brokers: "127.0.0.1:9".into(),
        ..KafkaConfig::default()
    };
    let engine_config = EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    };
    let engine = Engine::new(engine_config.clone()).expect("an engine");
    let module = Arc::new(
        engine
            .load_file(&fixture("upper"))
            .expect("the upper fixture"),
    );
    let shared = Arc::new(Shared {
        producers: Producers::new(&kafka).expect("a producer"),
        kafka,
        workers: Workers::start(1, weir_engine::worker_stack_size(&engine_config)),
        metrics: Arc::new(Metrics::new()),
        rocks: RocksConfig::new(8 << 20).expect("rocksdb options"),
        shutdown: Arc::new(AtomicBool::new(false)),
        stopping: AtomicBool::new(false),
        host_id: "test".into(),
        table_stores: OpenStores::default(),
        table_index: weir_state::table_index::IndexBudget::new(0),
        state_readers: Default::default(),
        api_url: std::sync::OnceLock::new(),
        registry: None,
        buffer_budgets: HostBudgets::new(1 << 30),
        host,
    });
    let config: DeploymentConfig = toml::from_str(&format!(
        "inputs = [\"in\"]\noutput = \"out\"\ncommit_interval_ms = 10\n{extra}"
    ))
    .expect("a deployment config");
    let spec = Arc::new(TransformSpec::new("d", Vec::new(), config.limits));
    let deployment = Arc::new(Deployment::new(
        "d".into(),
        String::new(),
        "d".into(),
        config,
        Arc::new(Runnable::new(module, spec, 1.0)),
        "weir.d".into(),
        "weir.changelog.d".into(),
        1 << 20,
        shared.buffer_budgets.of(None),
    ));
    let sink = Arc::new(FakeSink::default());
    let mut rt = DeploymentLoop::new(deployment, shared, sink.clone());
    let source = FakeSource::default();
    // Each partition taken over as a restore would hand it: empty state,
    // nothing committed.
    for &n in partitions {
        rt.epoch += 1;
        rt.assigned.insert(n);
        rt.restoring.insert(n, rt.epoch);
        let state = PartitionState::open(Box::new(MemoryBackend::default())).expect("state");
        let takeover = Takeover {
            state: Box::new(state),
            positions: BTreeMap::new(),
            changelog_next: 0,
        };
        rt.restore_tx
            .send((n, rt.epoch, Ok(takeover)))
            .expect("the loop holds the receiver");
    }
    rt.took_over(&source);
    Rig {
        rt,
        source,
        sink,
        _state_dir: state_dir,
    }
}

impl Rig {
    /// Consumes records `offsets` of partition `n` (values `r<offset>`).
    fn consume(&mut self, n: i32, offsets: std::ops::Range<i64>) {
        for offset in offsets {
            let value = format!("r{offset}");
            let record = Consumed {
                topic: "in",
                partition: n,
                offset,
                timestamp: weir_abi::now_ms() as i64,
                key: None,
                value: Some(value.as_bytes()),
                headers: Vec::new(),
                arrived: Arrival::now(),
            };
            self.rt.on_record(&self.source, record);
        }
    }

    /// Runs the loop until `done` holds (false after 30 s).
    fn run_until(&mut self, done: impl Fn(&Rig) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.rt.pump(&self.source);
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Runs the loop for a while (for what must not happen).
    fn run_for(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.rt.pump(&self.source);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn outputs(&self) -> usize {
        self.sink.values("out").len()
    }
}

fn value_in(range: std::ops::Range<i64>) -> impl Fn(&Sent) -> bool {
    move |s| range.clone().any(|i| s.value == format!("R{i}").as_bytes())
}

#[test]
fn out_of_order_acknowledgements_commit_only_the_safe_prefix() {
    let mut r = rig("", &[0]);
    // Three batches of five (`batch_max_records`), one job at a time.
    r.consume(0, 0..15);
    assert!(r.run_until(|r| r.outputs() == 15), "the three batches ran");
    assert_eq!(r.sink.values("out")[..2], ["R0", "R1"], "the transform ran");
    let groups: BTreeSet<*const Acks> = r
        .sink
        .sent
        .lock()
        .iter()
        .map(|s| Arc::as_ptr(&s.acks))
        .collect();
    assert_eq!(groups.len(), 3, "one acknowledgement group per batch");
    // The second batch's outputs are acknowledged first: nothing of it may
    // be committed while the first batch's are outstanding.
    assert_eq!(r.sink.deliver(value_in(5..10)), 5);
    r.run_for(Duration::from_millis(100));
    assert_eq!(
        r.source.committed(0),
        None,
        "nothing committed past an unacknowledged batch"
    );
    // The first batch's come: the first two commit, not the third.
    assert_eq!(r.sink.deliver(value_in(0..5)), 5);
    assert!(
        r.run_until(|r| r.source.committed(0) == Some(10)),
        "the acknowledged prefix committed"
    );
    r.run_for(Duration::from_millis(100));
    assert_eq!(
        r.source.committed(0),
        Some(10),
        "not past the outstanding third batch"
    );
    assert_eq!(r.sink.deliver(value_in(10..15)), 5);
    assert!(
        r.run_until(|r| r.source.committed(0) == Some(15)),
        "all committed"
    );
}

#[test]
fn an_output_that_fails_for_good_goes_to_the_failure_policy() {
    for policy in ["dead-letter", "skip", "stop"] {
        let mut r = rig(&format!("failure_policy = \"{policy}\""), &[0]);
        r.consume(0, 0..5);
        assert!(r.run_until(|r| r.outputs() == 5), "{policy}: the batch ran");
        r.sink.deliver(|s| s.value != b"R2");
        r.sink.report(
            |s| s.value == b"R2",
            Some(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        match policy {
            "dead-letter" => {
                assert!(
                    r.run_until(|r| r.sink.values("d.dlq") == ["r2"]),
                    "dead-lettered"
                );
                r.sink.deliver(|s| s.topic == "d.dlq");
                assert!(
                    r.run_until(|r| r.source.committed(0) == Some(5)),
                    "committed past it"
                );
            }
            "skip" => {
                assert!(
                    r.run_until(|r| r.source.committed(0) == Some(5)),
                    "committed past it"
                );
                assert!(r.sink.values("d.dlq").is_empty(), "nothing dead-lettered");
            }
            _ => {
                let stopped = |r: &Rig| r.rt.deployment.status.lock().stopped.contains_key(&0);
                assert!(r.run_until(stopped), "the partition stops");
                let why = r.rt.deployment.status.lock().stopped[&0].clone();
                assert!(why.contains("failed for good"), "{why}");
                r.run_for(Duration::from_millis(100));
                assert_eq!(
                    r.source.committed(0),
                    None,
                    "nothing past the record committed"
                );
                assert!(
                    r.source.seeks.lock().contains(&("in".into(), 0, None)),
                    "rewound"
                );
                assert!(r.sink.values("d.dlq").is_empty());
            }
        }
    }
}

#[test]
fn revoked_partitions_commit_what_is_settled_and_lost_ones_nothing() {
    let mut r = rig("", &[0, 1]);
    r.consume(0, 0..5);
    r.consume(1, 100..105);
    assert!(r.run_until(|r| r.outputs() == 10));
    r.sink.deliver(value_in(100..105));
    assert!(
        r.run_until(|r| r.source.committed(1) == Some(105)),
        "partition 1 committed"
    );
    // Revoked with its batch's deliveries just acknowledged: they settle,
    // and it commits them on the way out, waiting for the answer.
    r.sink.deliver(value_in(0..5));
    r.rt.release(&r.source, &[0]);
    let last = r.source.commits.lock().last().cloned();
    assert_eq!(
        last,
        Some(("in".into(), 0, 5, true)),
        "a synchronous commit"
    );
    assert!(!r.rt.parts.contains_key(&0), "let go");
    // Lost: the group went on without this host, so the revocation commits
    // nothing, though all is delivered; it goes back to its last commit.
    r.consume(1, 105..110);
    assert!(r.run_until(|r| r.outputs() == 15));
    r.sink.deliver(|_| true);
    let commits = r.source.commits.lock().len();
    r.source.lost.store(true, Ordering::Relaxed);
    r.rt.release(&r.source, &[1]);
    assert_eq!(
        r.source.commits.lock().len(),
        commits,
        "a lost partition commits nothing"
    );
    let seeks = r.source.seeks.lock().clone();
    assert!(
        seeks.contains(&("in".into(), 1, Some(105))),
        "back to its last commit: {seeks:?}"
    );
    assert!(!r.rt.parts.contains_key(&1), "let go");
}

#[test]
fn an_exactly_once_failure_takes_every_partition_back() {
    // No transaction can open here (no broker): every send of the
    // transaction is refused, which fails it, and every partition goes
    // back to its last commit, held for a backoff, however few saw it.
    let mut r = rig("delivery = \"exactly-once\"", &[0, 1]);
    r.consume(0, 0..3);
    let held = |r: &Rig| r.rt.parts.values().all(|p| p.hold_until.is_some());
    assert!(r.run_until(held), "both partitions held back");
    let seeks = r.source.seeks.lock().clone();
    for n in [0, 1] {
        assert!(
            seeks.contains(&("in".into(), n, None)),
            "partition {n} rewound: {seeks:?}"
        );
        assert!(
            r.source.paused.lock().contains(&("in".into(), n)),
            "partition {n} paused"
        );
    }
    assert_eq!(r.source.committed(0), None);
    assert!(
        r.rt.parts[&0].buffered() == 0,
        "its records are fetched again"
    );
}

#[test]
fn failed_deliveries_back_off_doubling_then_stop() {
    let mut r = rig("", &[0]);
    let mut holds = Vec::new();
    for tries in 1..=MAX_FAILED_DELIVERIES + 1 {
        let before = Instant::now();
        r.rt.retry_partition(&r.source, 0, "broker away".into());
        let p = &r.rt.parts[&0];
        if tries <= MAX_FAILED_DELIVERIES {
            let hold = p.hold_until.expect("held") - before;
            holds.push(hold.as_secs_f64().round() as u64);
            assert!(r.source.paused.lock().contains(&("in".into(), 0)));
        } else {
            assert!(p.stopped.is_some(), "stopped after {tries} failures");
        }
    }
    assert_eq!(holds, [1, 2, 4, 8, 16]);
    // A passed backoff resumes the input.
    r.rt.parts.get_mut(&0).expect("partition").hold_until = Some(Instant::now());
    r.rt.parts.get_mut(&0).expect("partition").stopped = None;
    r.rt.release_holds(&r.source);
    assert!(
        !r.source.paused.lock().contains(&("in".into(), 0)),
        "resumed"
    );
}

#[test]
fn a_commit_writes_state_to_the_store_on_a_worker() {
    let mut r = rig("", &[0]);
    r.consume(0, 0..5);
    assert!(r.run_until(|r| r.outputs() == 5), "the batch ran");
    r.sink.deliver(|_| true);
    assert!(r.run_until(|r| r.source.committed(0) == Some(5)));
    // A state change, as a batch of a stateful transform leaves it.
    let p = r.rt.parts.get_mut(&0).expect("partition");
    let state = p.state.as_mut().expect("state");
    state.begin();
    state.put_raw(b"k".to_vec(), Some(b"v".to_vec()));
    state.commit_txn();
    assert!(state.has_durable_changes());
    r.rt.committed(0);
    let p = &r.rt.parts[&0];
    assert!(
        p.in_flight && p.state.is_none(),
        "the state went to a worker, and no batch starts meanwhile"
    );
    assert!(
        r.run_until(|r| !r.rt.parts[&0].in_flight),
        "the flush came back"
    );
    let state = r.rt.parts[&0].state.as_deref().expect("state back");
    assert!(!state.has_durable_changes(), "written to the store");
    assert_eq!(state.get_raw(b"k").expect("readable"), Some(b"v".to_vec()));
    let checkpoint = state.checkpoint().expect("readable").expect("a checkpoint");
    assert_eq!(
        checkpoint.offsets.get("in"),
        Some(&5),
        "of what was committed"
    );
}

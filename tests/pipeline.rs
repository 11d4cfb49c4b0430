//! `weir run` against Apache Kafka, as separate processes, with an
//! independent client producing and reading.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weir_tests::kafka::{
    Broker, Rec, Scope, Weir, by_key, deployment, host_config, now_ms, produce_slowly, records,
};

const MINUTE: Duration = Duration::from_secs(60);

/// The tests' broker is Apache Kafka, not a look-alike that refuses or
/// ignores transactions: an aborted transaction's records are written (a
/// `read_uncommitted` reader sees them) and hidden from a `read_committed`
/// one, which sees exactly the committed transaction's.
#[test]
fn the_broker_runs_real_transactions() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let k = Broker::shared().scope();
    k.create_topic("tx", 1);
    let p: BaseProducer = k
        .client()
        .set("transactional.id", k.name("tx-writer"))
        .create()
        .unwrap();
    p.init_transactions(MINUTE)
        .expect("InitProducerId with a transactional id");
    for (value, commit) in [
        ("committed-1", true),
        ("aborted", false),
        ("committed-2", true),
    ] {
        p.begin_transaction().unwrap();
        p.send(
            BaseRecord::<str, str>::to(&k.name("tx"))
                .key("k")
                .payload(value),
        )
        .unwrap();
        p.flush(MINUTE).unwrap();
        if commit {
            p.commit_transaction(MINUTE).unwrap()
        } else {
            p.abort_transaction(MINUTE).unwrap()
        }
    }
    let read = |isolation: &str, n: usize| {
        let mut c = k.client();
        c.set("isolation.level", isolation);
        k.read_with(c, "tx", Duration::from_secs(10), |o| o.len() >= n)
            .iter()
            .map(|r| r.value_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read("read_uncommitted", 3),
        ["committed-1", "aborted", "committed-2"]
    );
    assert_eq!(
        read("read_committed", 3),
        ["committed-1", "committed-2"],
        "the aborted record is hidden"
    );
}

#[test]
fn example_plugins_end_to_end() {
    let k = Broker::shared().scope();
    for (t, p) in [
        ("raw", 3),
        ("shout", 3),
        ("logs", 2),
        ("errors", 2),
        ("orders", 2),
        ("orders.payments", 1),
        ("orders.errors", 1),
        ("orders.other", 1),
        ("docs", 1),
        ("counts", 3),
    ] {
        k.create_topic(t, p);
    }
    for d in ["upper", "filter", "router", "wc"] {
        k.create_topic(&format!("{d}.dlq"), 1);
    }
    let config = host_config(
        &[
            deployment("upper", "upper", "raw", "shout", ""),
            deployment("filter", "filter", "logs", "errors", "config = { field = \"/level\", equals = \"error\" }"),
            deployment(
                "router",
                "router",
                "orders",
                "orders.other",
                "config = { \"route.{p}orders.payments\" = \"pay\", \"route.{p}orders.errors\" = \"ERROR\" }",
            ),
            deployment("wc", "word_count", "docs", "counts", ""),
        ]
        .concat(),
    );
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("upper", 3);
    weir.wait_partitions("wc", 1);

    let raw = records("hello", 3_000, 30);
    k.produce("raw", &raw);
    let logs: Vec<Rec> = (0..400)
        .map(|i| {
            Rec::new(
                &format!("svc{}", i % 4),
                &format!(
                    r#"{{"level":"{}","n":{i}}}"#,
                    if i % 3 == 0 { "error" } else { "info" }
                ),
            )
        })
        .collect();
    k.produce("logs", &logs);
    let orders = [
        ("o1", "pay ok"),
        ("o2", "pay ERROR"),
        ("o3", "ship ok"),
        ("o4", "ERROR ship"),
        ("o5", "refund"),
    ];
    k.produce(
        "orders",
        &orders
            .iter()
            .map(|(k, v)| Rec::new(k, v))
            .collect::<Vec<_>>(),
    );
    let docs: Vec<Rec> = (0..300)
        .map(|i| {
            Rec::new(
                &format!("d{i}"),
                ["the cat", "The dog and the cat", "a bird"][i % 3],
            )
        })
        .collect();
    k.produce("docs", &docs);

    // upper: every input once, key, headers, timestamp kept, order per key kept.
    let shout = k.read("shout", raw.len(), MINUTE);
    assert_eq!(shout.len(), raw.len(), "log:\n{}", weir.log_text());
    let expected: BTreeMap<String, Vec<String>> = by_key(&raw)
        .into_iter()
        .map(|(k, vs)| (k, vs.into_iter().map(|v| v.to_uppercase()).collect()))
        .collect();
    assert_eq!(by_key(&shout), expected, "same values, same order per key");
    let base = raw[0].timestamp.unwrap();
    for r in &shout {
        let seq: i64 = r.header("seq").unwrap().parse().unwrap();
        assert_eq!(r.value_str(), format!("HELLO-{seq}"));
        assert_eq!(r.timestamp, Some(base + seq));
        assert!(
            r.headers.iter().any(|(k, v)| k == "null" && v.is_none()),
            "null header value kept"
        );
    }

    let errors = k.read("errors", 134, MINUTE);
    assert_eq!(
        errors.len(),
        logs.iter()
            .filter(|r| r.value_str().contains("\"error\""))
            .count()
    );
    assert!(
        errors
            .iter()
            .all(|r| r.value_str().contains("\"level\":\"error\""))
    );

    let read_all = |t: &str, n: usize| {
        k.read(t, n, MINUTE)
            .iter()
            .map(|r| r.key_str().to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        read_all("orders.payments", 2),
        BTreeSet::from(["o1".to_owned(), "o2".to_owned()])
    );
    assert_eq!(
        read_all("orders.errors", 2),
        BTreeSet::from(["o2".to_owned(), "o4".to_owned()])
    );
    assert_eq!(
        read_all("orders.other", 2),
        BTreeSet::from(["o3".to_owned(), "o5".to_owned()])
    );

    // word count (state is per input partition; `docs` has one): each
    // word's counts go 1, 2, 3... up to its occurrences, in order.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for d in &docs {
        for w in d.value_str().split(' ') {
            *want.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    let total: u64 = want.values().sum();
    let counts = k.read("counts", total as usize, MINUTE);
    assert_eq!(counts.len() as u64, total);
    for (word, seq) in by_key(&counts) {
        let seq: Vec<u64> = seq.iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(
            seq,
            (1..=want[&word]).collect::<Vec<_>>(),
            "counts of `{word}`"
        );
    }
    let metrics = weir.metrics();
    assert!(
        metrics.contains("weir_records_in_total{deployment=\"upper\""),
        "{metrics}"
    );
}

#[test]
fn a_poison_record_is_dead_lettered_with_its_story_and_the_rest_goes_on() {
    let k = Broker::shared().scope();
    for (t, p) in [("logs", 1), ("errors", 1), ("filter.dlq", 1)] {
        k.create_topic(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("filter", "filter", "logs", "errors", "")),
    );
    weir.wait_partitions("filter", 1);
    let mut poison = Rec::new("k", "not json at all");
    poison.headers = vec![("trace".into(), Some(b"abc".to_vec()))];
    k.produce(
        "logs",
        &[
            Rec::new("k", r#"{"level":"error","n":1}"#),
            poison,
            Rec::new("k", r#"{"level":"error","n":2}"#),
        ],
    );
    let out = k.read("errors", 2, MINUTE);
    assert_eq!(
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        [r#"{"level":"error","n":1}"#, r#"{"level":"error","n":2}"#]
    );
    let dlq = k.read("filter.dlq", 1, MINUTE);
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(
        (d.key_str(), d.value_str()),
        ("k", "not json at all"),
        "the original record, unchanged"
    );
    assert_eq!(d.header("trace"), Some("abc"), "original headers kept");
    assert_eq!(d.header("weir.deployment"), Some("filter"));
    assert_eq!(d.header("weir.error.kind"), Some("rejected"));
    assert!(
        d.header("weir.error.message").unwrap().contains("expected"),
        "{:?}",
        d.header("weir.error.message")
    );
    assert_eq!(d.header("weir.source.topic"), Some(k.name("logs").as_str()));
    assert_eq!(d.header("weir.source.partition"), Some("0"));
    assert_eq!(d.header("weir.source.offset"), Some("1"));
    assert!(d.header("weir.failed.at").unwrap().parse::<u64>().unwrap() > 1_700_000_000_000);
    // The poison record is committed past, never retried.
    let deadline = Instant::now() + MINUTE;
    while k.committed("weir.filter", "logs", 1) != [3] {
        assert!(Instant::now() < deadline, "offset 3 committed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_stop_policy_stops_only_the_failing_partition() {
    let k = Broker::shared().scope();
    for (t, p) in [("logs", 2), ("errors", 2), ("filter.dlq", 1)] {
        k.create_topic(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment(
            "filter",
            "filter",
            "logs",
            "errors",
            "failure_policy = \"stop\"",
        )),
    );
    weir.wait_partitions("filter", 2);
    let rec = |p: i32, v: &str| Rec {
        partition: Some(p),
        ..Rec::new("k", v)
    };
    let ok = r#"{"level":"error"}"#;
    k.produce(
        "logs",
        &[
            rec(0, ok),
            rec(0, "poison"),
            rec(0, ok),
            rec(1, ok),
            rec(1, ok),
            rec(1, ok),
        ],
    );
    let out = k.read("errors", 4, MINUTE);
    assert_eq!(
        out.len(),
        4,
        "one record before the poison on partition 0, all three on partition 1"
    );
    let deadline = Instant::now() + MINUTE;
    loop {
        let h = weir.health().unwrap_or_default();
        if let Some(why) = h["deployments"]["filter"]["stopped"]["0"].as_str() {
            assert!(
                why.contains(&format!("topic `{}` partition 0 offset 1", k.name("logs"))),
                "{why}"
            );
            assert_eq!(h["status"], "degraded");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partition 0 reported stopped: {h}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        k.committed("weir.filter", "logs", 2),
        [1, 3],
        "partition 0 stays at the poison record"
    );
    assert!(
        k.read("filter.dlq", 1, Duration::from_secs(1)).is_empty(),
        "stop does not dead-letter"
    );
}

/// A batch the consumer cannot decode (its gzip data corrupted where the
/// broker stores it) holds back only its partition, which shows as
/// unreadable at its offset with the consumer's error, in health and in
/// the metrics; the other partition goes on.
#[test]
fn an_undecodable_batch_shows_as_unreadable_at_its_offset_and_the_rest_goes_on() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::os::unix::fs::FileExt;
    let broker = Broker::shared();
    let k = broker.scope();
    for (t, p) in [("raw", 2), ("shout", 2), ("upper.dlq", 1)] {
        k.create_topic(t, p);
    }
    let gzip: BaseProducer = k
        .client()
        .set("compression.type", "gzip")
        .set("linger.ms", "200")
        .create()
        .unwrap();
    for i in 0..20 {
        gzip.send(
            BaseRecord::<str, str>::to(&k.name("raw"))
                .partition(1)
                .key("k")
                .payload(&format!("record {i} of a gzip batch")),
        )
        .unwrap();
    }
    gzip.flush(MINUTE).unwrap();
    let segment = broker.segment(&k.name("raw"), 1);
    let bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == [0x1f, 0x8b, 0x08])
        .expect("a gzip stream in the segment");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .write_all_at(&[0xa5; 16], (at + 12) as u64)
        .unwrap();
    let good: Vec<Rec> = (0..10)
        .map(|i| Rec {
            partition: Some(0),
            ..Rec::new("k", &format!("fine {i}"))
        })
        .collect();
    k.produce("raw", &good);

    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("upper", "upper", "raw", "shout", "")),
    );
    assert_eq!(
        k.read("shout", 10, MINUTE).len(),
        10,
        "partition 0 goes on; log:\n{}",
        weir.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let unreadable = loop {
        let h = weir.health().unwrap_or_default();
        if let Some(u) = h["deployments"]["upper"]["unreadable"].get("1") {
            assert_eq!(h["status"], "degraded");
            break u.clone();
        }
        assert!(
            Instant::now() < deadline,
            "partition 1 not reported unreadable: {h}\nlog:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(unreadable["topic"], k.name("raw"));
    assert_eq!(unreadable["offset"], 0, "{unreadable}");
    assert!(
        unreadable["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("compress"),
        "{unreadable}"
    );
    assert!(
        weir.health().unwrap()["deployments"]["upper"]["unreadable"]
            .get("0")
            .is_none(),
        "partition 0 reads"
    );
    let metrics = weir.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_partition_unreadable{")
                && l.contains("partition=\"1\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_consumer_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Under exactly-once, a batch that fails under the `stop` policy aborts
/// the open transaction: the outputs of the records before the failing one
/// (visible at-least-once, see above) never become visible, and nothing of
/// the partition is committed; the other partition goes on.
#[test]
fn exactly_once_a_stopped_batch_leaves_nothing_partial() {
    let k = Broker::shared().scope();
    for (t, p) in [("logs", 2), ("errors", 2), ("filter.dlq", 1)] {
        k.create_topic(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = "failure_policy = \"stop\"\ndelivery = \"exactly-once\"";
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("filter", "filter", "logs", "errors", extra)),
    );
    weir.wait_partitions("filter", 2);
    let rec = |p: i32, v: &str| Rec {
        partition: Some(p),
        ..Rec::new("k", v)
    };
    let ok = |n: u32| format!(r#"{{"level":"error","n":{n}}}"#);
    k.produce(
        "logs",
        &[
            rec(0, &ok(1)),
            rec(0, &ok(2)),
            rec(0, "poison"),
            rec(0, &ok(3)),
            rec(1, &ok(4)),
            rec(1, &ok(5)),
        ],
    );
    let deadline = Instant::now() + MINUTE;
    while weir.health().unwrap_or_default()["deployments"]["filter"]["stopped"]["0"]
        .as_str()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "partition 0 reported stopped; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Outputs are partitioned by key: all of them share a partition.
    let values = |out: &[Rec]| {
        out.iter()
            .map(|r| r.value_str().to_owned())
            .collect::<Vec<_>>()
    };
    let visible = k.read("errors", 2, MINUTE);
    std::thread::sleep(Duration::from_secs(1));
    let visible_later = k.read("errors", 3, Duration::from_secs(2));
    assert_eq!(
        values(&visible_later),
        [ok(4), ok(5)],
        "nothing of partition 0 is visible"
    );
    assert_eq!(visible_later, visible);
    let committed = k.committed("weir.filter", "logs", 2);
    assert!(
        committed[0] <= 0 && committed[1] == 2,
        "partition 0 committed nothing: {committed:?}"
    );
}

/// Under exactly-once, an output the broker refuses (the output topic's
/// limit was lowered under a running deployment, so the host's own check
/// passed it) fails the transaction, which aborts: the record is then
/// dead-lettered, once, and the others go on, each output visible once.
#[test]
fn exactly_once_a_refused_output_is_dead_lettered_once() {
    let k = Broker::shared().scope();
    for t in ["raw", "shout", "upper.dlq"] {
        k.create_topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment(
            "upper",
            "upper",
            "raw",
            "shout",
            "delivery = \"exactly-once\"",
        )),
    );
    weir.wait_partitions("upper", 1);
    k.produce("raw", &[Rec::new("a", "before")]);
    assert_eq!(k.read("shout", 1, MINUTE).len(), 1);
    k.alter_topic("shout", &[("max.message.bytes", "2000")]);
    // One at a time: the broker refuses a whole batch, and the producer
    // would batch them together.
    k.produce("raw", &[Rec::new("b", "small one")]);
    assert_eq!(k.read("shout", 2, MINUTE).len(), 2);
    k.produce("raw", &[Rec::new("c", &"x".repeat(5_000))]);
    let dlq = k.read("upper.dlq", 1, MINUTE);
    assert_eq!(dlq.len(), 1, "log:\n{}", weir.log_text());
    assert_eq!(dlq[0].key_str(), "c");
    assert!(
        dlq[0]
            .header("weir.error.message")
            .unwrap()
            .contains("producing to topic"),
        "{:?}",
        dlq[0].header("weir.error.message")
    );
    k.produce("raw", &[Rec::new("d", "small too")]);
    let out = k.read("shout", 3, MINUTE);
    std::thread::sleep(Duration::from_secs(1));
    let out_later = k.read("shout", 4, Duration::from_secs(2));
    assert_eq!(
        out_later.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["BEFORE", "SMALL ONE", "SMALL TOO"],
        "log:\n{}",
        weir.log_text()
    );
    assert_eq!(out, out_later);
    assert_eq!(
        k.read("upper.dlq", 2, Duration::from_secs(2)).len(),
        1,
        "dead-lettered once"
    );
    assert!(
        weir.log_text()
            .contains("reprocessing the partition from its last commit"),
        "the transaction was aborted; log:\n{}",
        weir.log_text()
    );
}

/// Reads `shout` until it holds the upper-cased value of every input
/// (duplicates allowed, as at-least-once delivery does), or two minutes.
fn read_uppercased(k: &Scope, inputs: &[Rec]) -> Vec<Rec> {
    let mut missing: BTreeSet<String> = inputs
        .iter()
        .map(|r| r.value_str().to_uppercase())
        .collect();
    let mut counted = 0;
    k.read_until("shout", Duration::from_secs(120), |out| {
        for r in &out[counted..] {
            missing.remove(r.value_str());
        }
        counted = out.len();
        missing.is_empty()
    })
}

fn assert_all_present(inputs: &[Rec], outputs: &[Rec], weir: &Weir) {
    let seen: BTreeSet<&str> = outputs.iter().map(Rec::value_str).collect();
    let missing = inputs
        .iter()
        .filter(|r| !seen.contains(r.value_str().to_uppercase().as_str()))
        .count();
    if missing > 0 {
        let log = weir.log_text();
        panic!(
            "{missing} of {} inputs have no output ({} read); end of the log:\n{}",
            inputs.len(),
            outputs.len(),
            &log[log.len().saturating_sub(3000)..]
        );
    }
}

/// librdkafka hands statistics to a callback inside `poll`; the consumer
/// loop once held its lock across the polls that drain prefetched records,
/// and a statistics event arriving then deadlocked the deployment. With
/// statistics every 10 ms, a backlog is drained through many of them.
#[test]
fn client_statistics_during_a_backlog_never_stall_consumption() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 4);
    k.create_topic("shout", 4);
    k.create_topic("upper.dlq", 1);
    let inputs = records("s", 200_000, 1_000);
    k.produce("raw", &inputs);
    let dir = tempfile::tempdir().unwrap();
    let config = host_config(&deployment("upper", "upper", "raw", "shout", ""))
        + "\n[kafka.properties]\n\"statistics.interval.ms\" = \"10\"\n";
    let weir = Weir::start(dir.path(), &k, &config);
    let out = read_uppercased(&k, &inputs);
    assert_all_present(&inputs, &out, &weir);
}

/// A session timeout far longer than the waits of these tests: a host
/// that gets partitions back in time did so by static membership (a
/// restarted host rejoins as itself) or by leaving on purpose (a stopping
/// host hands them over), not because the group gave up on a member.
const LONG_SESSION: &str = "\n[kafka.properties]\n\"session.timeout.ms\" = \"300000\"\n";

/// Killed with SIGKILL and started again, a host takes its partitions back
/// at once, as the same static member, and loses nothing.
#[test]
fn kill_9_mid_stream_loses_nothing() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 4);
    k.create_topic("shout", 4);
    k.create_topic("upper.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(
        dir.path(),
        &k,
        &(host_config(&deployment("upper", "upper", "raw", "shout", "")) + LONG_SESSION),
    );
    weir.wait_partitions("upper", 4);
    let inputs = records("r", 100_000, 1_000);
    let producer = produce_slowly(&k, "raw", inputs.clone(), 6.0);
    std::thread::sleep(Duration::from_secs(3));
    weir.kill9();
    std::thread::sleep(Duration::from_millis(500));
    weir.restart();
    weir.wait_partitions("upper", 4);
    producer.join().unwrap();
    let out = read_uppercased(&k, &inputs);
    assert!(
        out.len() >= inputs.len(),
        "{} outputs for {} inputs; log:\n{}",
        out.len(),
        inputs.len(),
        weir.log_text()
    );
    assert_all_present(&inputs, &out, &weir);
    let dup = out.len() - inputs.len();
    eprintln!("duplicates after kill -9: {dup} of {}", inputs.len());
}

#[test]
fn a_broker_outage_is_ridden_out() {
    let mut broker = Broker::dedicated();
    let k = broker.scope();
    k.create_topic("raw", 2);
    k.create_topic("shout", 2);
    k.create_topic("upper.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("upper", "upper", "raw", "shout", "")),
    );
    weir.wait_partitions("upper", 2);
    let first = records("a", 5_000, 100);
    k.produce("raw", &first);
    assert_eq!(k.read("shout", first.len(), MINUTE).len(), first.len());
    broker.kill();
    std::thread::sleep(Duration::from_secs(5));
    broker.restart();
    let second = records("b", 5_000, 100);
    k.produce("raw", &second);
    let inputs = [first, second].concat();
    let out = read_uppercased(&k, &inputs);
    assert_all_present(&inputs, &out, &weir);
}

/// A host that stops on purpose leaves the group: the other takes its
/// partitions at once, though both are static members.
#[test]
fn two_hosts_share_partitions_and_take_over_without_loss() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 4);
    k.create_topic("shout", 4);
    k.create_topic("upper.dlq", 1);
    let config = host_config(&deployment("upper", "upper", "raw", "shout", "")) + LONG_SESSION;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("upper", 4);
    let mut b = Weir::start(db.path(), &k, &config);
    let deadline = Instant::now() + MINUTE;
    loop {
        let (pa, pb) = (a.partitions("upper"), b.partitions("upper"));
        if pa.len() + pb.len() == 4 && !pa.is_empty() && !pb.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions split between hosts: {pa:?} {pb:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let inputs = records("s", 40_000, 500);
    let producer = produce_slowly(&k, "raw", inputs.clone(), 4.0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        b.terminate().success(),
        "graceful exit; log:\n{}",
        b.log_text()
    );
    a.wait_partitions("upper", 4);
    producer.join().unwrap();
    let out = read_uppercased(&k, &inputs);
    assert_all_present(&inputs, &out, &a);
}

/// With `leave_group_on_shutdown = false`, a host stopped with SIGTERM
/// stays in the group: the other host does not take its partitions (the
/// session lasts 5 minutes), and the host, started again, takes them
/// back at once and processes what came meanwhile.
#[test]
fn a_host_that_stays_in_its_groups_gets_its_partitions_back() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 4);
    k.create_topic("shout", 4);
    k.create_topic("upper.dlq", 1);
    let base = host_config(&deployment("upper", "upper", "raw", "shout", "")) + LONG_SESSION;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Weir::start(
        da.path(),
        &k,
        &base.replace("[host]\n", "[host]\nleave_group_on_shutdown = false\n"),
    );
    a.wait_partitions("upper", 4);
    let b = Weir::start(db.path(), &k, &base);
    let deadline = Instant::now() + MINUTE;
    while a.partitions("upper").len() != 2 || b.partitions("upper").len() != 2 {
        assert!(
            Instant::now() < deadline,
            "the hosts never split the partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = a.partitions("upper");
    assert!(
        a.terminate().success(),
        "graceful exit; log:\n{}",
        a.log_text()
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        b.partitions("upper").len(),
        2,
        "B took the partitions of a host that stays in the group"
    );
    let inputs = records("m", 2_000, 100);
    k.produce("raw", &inputs);
    a.restart();
    let deadline = Instant::now() + MINUTE;
    while a.partitions("upper") != held {
        assert!(
            Instant::now() < deadline,
            "A did not get {held:?} back; log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = read_uppercased(&k, &inputs);
    assert_all_present(&inputs, &out, &a);
}

/// Two hosts given one `id` are one static member of the group twice: the
/// one that joins later fences the other, whose deployment stops there
/// saying why (started again, it would fence the other in turn), while
/// the other keeps the partitions.
#[test]
fn two_hosts_with_one_id_are_told_so() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 2);
    k.create_topic("shout", 2);
    k.create_topic("upper.dlq", 1);
    let config = host_config(&deployment("upper", "upper", "raw", "shout", ""))
        .replace("[host]\n", "[host]\nid = \"twin\"\n");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("upper", 2);
    let b = Weir::start(db.path(), &k, &config);
    let deadline = Instant::now() + MINUTE;
    let down = |w: &Weir| {
        w.health()
            .and_then(|h| {
                h["deployments"]["upper"]["down"]
                    .as_str()
                    .map(str::to_owned)
            })
            .filter(|d| d.contains("two hosts with one `id`?"))
    };
    while down(&a).is_none() {
        assert!(
            Instant::now() < deadline,
            "the fenced host did not say why; logs:\n{}\n---\n{}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.wait_partitions("upper", 2);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(b.partitions("upper").len(), 2, "A came back and fenced B");
    assert!(down(&a).is_some() && down(&b).is_none());
}

#[test]
fn bad_configuration_is_refused_before_consuming_anything() {
    let k = Broker::shared().scope();
    k.create_topic("raw", 1);
    k.create_topic("shout", 1);
    k.create_topic("upper.dlq", 1);
    k.produce("raw", &[Rec::new("k", "v")]);
    let good = host_config(&deployment("upper", "upper", "raw", "shout", ""));
    let unreachable = good.replace(
        "{brokers}",
        &format!("127.0.0.1:{}", weir_tests::kafka::free_port()),
    );
    let nowhere = format!("topic `{}` does not exist", k.name("nowhere"));
    let cases: [(&str, String, &str); 4] = [
        (
            "unknown key",
            good.replace("commit_interval_ms", "commit_intervall_ms"),
            "unknown field `commit_intervall_ms`",
        ),
        (
            "missing plugin",
            good.replace("upper.wasm", "nope.wasm"),
            "nope.wasm",
        ),
        (
            "unreachable broker",
            unreachable,
            "cannot reach the Kafka brokers",
        ),
        (
            "missing topic",
            good.replace("output = \"{p}shout\"", "output = \"{p}nowhere\""),
            &nowhere,
        ),
    ];
    for (what, config, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Weir::start(
            dir.path(),
            &k,
            &config.replace("[kafka]", "[kafka]\nconnect_timeout_ms = 3000"),
        );
        let status = w.wait_exit(Duration::from_secs(60));
        assert!(!status.success(), "{what}: must exit non-zero");
        let log = w.log_text();
        assert!(
            log.contains(message),
            "{what}: the error names the problem ({message}); log:\n{log}"
        );
    }
    assert_eq!(
        k.committed("weir.upper", "raw", 1),
        [-1],
        "nothing was consumed"
    );
}

/// `weir bench streams` at a small scale: Weir and Kafka Streams (the
/// program `scripts/setup --test` builds) produce the same results from the
/// same input on this broker, so the benchmark compares equal work.
#[test]
fn weir_and_kafka_streams_agree_on_the_benchmark_workloads() {
    let broker = Broker::shared();
    let plugins = weir_tests::plugin("upper").parent().unwrap().to_owned();
    let cache = std::env::var_os("WEIR_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir")
        });
    let rows = weir::bench::streams::streams(
        &broker.bootstrap,
        &plugins,
        &cache.join("kafka-streams-bench"),
        20_000,
        1_000,
        2,
    )
    .expect("both sides agree");
    assert_eq!(rows[0].outputs, 20_000, "a map output per record");
    assert!(
        rows[1].outputs > 5_000,
        "results of many windows and keys: {}",
        rows[1].outputs
    );
}

/// The topics' real `max.message.bytes` is read when a deployment starts:
/// an output topic that cannot take the producer's batches, or an explicit
/// record limit above what it accepts, is refused with a clear error; with
/// no explicit limit, an output too large for its topic fails its record
/// (dead-lettered with the reason) instead of failing in the producer.
#[test]
fn output_limits_follow_the_topics_max_message_bytes() {
    let k = Broker::shared().scope();
    k.create_topic("in", 1);
    k.create_topic_with("small", 1, &[("max.message.bytes", "20000")]);
    k.create_topic("up.dlq", 1);
    let small_batches = "\n[kafka.properties]\n\"batch.size\" = \"16384\"\n";
    let refused = [
        (
            host_config(&deployment("up", "upper", "in", "small", "")),
            "accepts record batches of at most 20000 bytes (its max.message.bytes), less than the producer's batch.size of 1000000".to_owned(),
        ),
        (
            host_config(&deployment("up", "upper", "in", "small", "limits = { max_output_record_bytes = 50000 }")) + small_batches,
            format!("limits.max_output_record_bytes = 50000 exceeds the 20000 bytes topic `{}` (max.message.bytes) accepts", k.name("small")),
        ),
    ];
    for (config, message) in refused {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Weir::start(dir.path(), &k, &config);
        assert!(!w.wait_exit(MINUTE).success(), "refused: {message}");
        assert!(
            w.log_text().contains(&message),
            "the error says why ({message}); log:\n{}",
            w.log_text()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &(host_config(&deployment("up", "upper", "in", "small", "")) + small_batches),
    );
    weir.wait_partitions("up", 1);
    k.produce(
        "in",
        &[
            Rec::new("a", "small one"),
            Rec::new("b", &"x".repeat(30_000)),
            Rec::new("c", "small too"),
        ],
    );
    let out = k.read("small", 2, MINUTE);
    assert_eq!(
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["SMALL ONE", "SMALL TOO"],
        "log:\n{}",
        weir.log_text()
    );
    let dlq = k.read("up.dlq", 1, MINUTE);
    assert_eq!(dlq.len(), 1, "log:\n{}", weir.log_text());
    assert_eq!(dlq[0].key_str(), "b");
    assert_eq!(dlq[0].header("weir.error.kind"), Some("output-limit"));
    let why = dlq[0].header("weir.error.message").unwrap();
    assert!(
        why.contains("larger than the 20000 bytes its topics accept"),
        "{why}"
    );
}

/// Records anyone may write that no transform should see: a header name
/// that is not UTF-8 (rdkafka's own header reader panics on it), a
/// timestamp at `i64::MAX` and one two days ahead (either would move
/// stream time past every real record for good). Each goes to the
/// dead-letter topic saying why, the records around them are processed,
/// and a second host that reads them all again (the group's offsets gone)
/// survives them too.
#[test]
fn poison_records_are_dead_lettered_and_every_host_survives_them() {
    let k = Broker::shared().scope();
    let anytime = [("message.timestamp.after.max.ms", "9223372036854775807")];
    k.create_topic_with("in", 1, &anytime);
    k.create_topic("out", 1);
    k.create_topic("up.dlq", 1);
    let config = host_config(&deployment("up", "upper", "in", "out", ""));
    let dir = tempfile::tempdir().unwrap();
    let mut a = Weir::start(&dir.path().join("a"), &k, &config);
    a.wait_partitions("up", 1);
    k.produce("in", &[Rec::new("k", "first")]);
    k.produce_with_header_name("in", "bad header", &[0xff, 0xfe]);
    let at = |ts: i64, v: &str| Rec {
        timestamp: Some(ts),
        ..Rec::new("k", v)
    };
    k.produce(
        "in",
        &[
            at(i64::MAX, "end of time"),
            at(now_ms() + 2 * 86_400_000, "day after tomorrow"),
            Rec::new("k", "last"),
        ],
    );

    let check = |host: &Weir, copies: usize| {
        let out = k.read_until("out", MINUTE, |o| o.len() >= 2 * copies);
        assert_eq!(
            out.iter().map(Rec::value_str).collect::<Vec<_>>(),
            ["FIRST", "LAST"].repeat(copies),
            "log:\n{}",
            host.log_text()
        );
        let dlq = k.read_until("up.dlq", MINUTE, |d| d.len() >= 3 * copies);
        assert_eq!(
            dlq.len(),
            3 * copies,
            "{:?}; log:\n{}",
            dlq.iter()
                .map(|d| d.header("weir.error.message"))
                .collect::<Vec<_>>(),
            host.log_text()
        );
        for d in &dlq[dlq.len() - 3..] {
            assert_eq!(
                d.header("weir.error.kind"),
                Some("invalid-input"),
                "{:?}",
                d.header("weir.error.message")
            );
        }
        let why: Vec<&str> = dlq[dlq.len() - 3..]
            .iter()
            .map(|d| d.header("weir.error.message").unwrap())
            .collect();
        assert!(
            why[0].contains("name is not UTF-8 (bytes fffe)"),
            "{}",
            why[0]
        );
        assert!(
            why[1].contains("timestamp 9223372036854775807 is more than host.max_future_ms"),
            "{}",
            why[1]
        );
        assert!(why[2].contains("ahead of this host's clock"), "{}", why[2]);
        assert_eq!(host.health().unwrap()["status"], "ok");
    };
    check(&a, 1);
    let deadline = Instant::now() + MINUTE;
    while k.committed("weir.up", "in", 1) != [5] {
        assert!(
            Instant::now() < deadline,
            "offsets committed past the poison"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.terminate().success());

    // Another host, offsets gone: it reads the poison again, and lives.
    k.delete_group("weir.up");
    let b = Weir::start(&dir.path().join("b"), &k, &config);
    b.wait_partitions("up", 1);
    check(&b, 2);
}

/// Outputs that can never be delivered (too large for the topic they are
/// routed to at run time, which no deploy-time check saw) go to the failure
/// policy of their input record, once, instead of reprocessing the batch
/// forever; a reject message of 10 MiB reaches the dead letter cut to 4 KiB.
/// Under the `stop` policy no commit passes the record.
#[test]
fn undeliverable_outputs_and_huge_messages_are_dead_lettered_once() {
    let k = Broker::shared().scope();
    for t in ["in", "out", "in2", "out2", "in3", "out3"] {
        k.create_topic(t, 1);
    }
    k.create_topic_with("small", 1, &[("max.message.bytes", "20000")]);
    k.create_topic("route.dlq", 1);
    k.create_topic("raise.dlq", 1);
    k.create_topic("halt.dlq", 1);
    let config = host_config(
        &[
            deployment(
                "route",
                "router",
                "in",
                "out",
                "config = { \"route.{p}small\" = \"big\" }",
            ),
            deployment(
                "raise",
                "hostile_host",
                "in2",
                "out2",
                "config = { attack = \"huge-reject\" }",
            ),
            deployment(
                "halt",
                "router",
                "in3",
                "out3",
                "failure_policy = \"stop\"\nconfig = { \"route.{p}small\" = \"big\" }",
            ),
        ]
        .concat(),
    ) + "\n[kafka.properties]\n\"batch.size\" = \"16384\"\n";
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("route", 1);
    weir.wait_partitions("raise", 1);
    weir.wait_partitions("halt", 1);
    let three = [
        Rec::new("a", "small one"),
        Rec::new("b", &format!("big {}", "x".repeat(30_000))),
        Rec::new("c", "another"),
    ];
    k.produce("in", &three);
    k.produce("in3", &three);
    let out = k.read("out", 2, MINUTE);
    assert_eq!(
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["small one", "another"],
        "log:\n{}",
        weir.log_text()
    );
    let dlq = k.read("route.dlq", 2, Duration::from_secs(20));
    assert_eq!(
        dlq.len(),
        1,
        "dead-lettered once; log:\n{}",
        weir.log_text()
    );
    assert_eq!(dlq[0].key_str(), "b");
    assert_eq!(dlq[0].header("weir.error.kind"), Some("produce"));
    assert!(
        dlq[0]
            .header("weir.error.message")
            .unwrap()
            .contains(&format!("topic `{}` failed for good", k.name("small"))),
        "{:?}",
        dlq[0].header("weir.error.message")
    );
    let deadline = Instant::now() + MINUTE;
    while k.committed("weir.route", "in", 1) != [3] {
        assert!(Instant::now() < deadline, "offsets committed past it");
        std::thread::sleep(Duration::from_millis(100));
    }

    k.produce("in2", &[Rec::new("r", "reject me")]);
    let dlq = k.read("raise.dlq", 1, MINUTE);
    assert_eq!(dlq.len(), 1, "log:\n{}", weir.log_text());
    assert_eq!(dlq[0].header("weir.error.kind"), Some("rejected"));
    assert_eq!(dlq[0].header("weir.error.message").unwrap().len(), 4096);

    let deadline = Instant::now() + MINUTE;
    while weir.health().unwrap_or_default()["deployments"]["halt"]["stopped"]["0"]
        .as_str()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the stop policy stopped the partition; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Several commit intervals later, the commit is still before the record.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        k.committed("weir.halt", "in3", 1)[0] <= 1,
        "committed past the undeliverable record: {:?}",
        k.committed("weir.halt", "in3", 1)
    );
}

/// Backpressure counts bytes as well as records: 4,000 records of 100 KB
/// (400 MB) behind a host whose partitions may buffer 8 MiB all come
/// through, while the host's memory stays far below the backlog.
#[test]
fn big_records_under_backpressure_keep_the_host_small() {
    let k = Broker::shared().scope();
    k.create_topic("in", 1);
    k.create_topic("out", 1);
    k.create_topic("up.dlq", 1);
    let value = "v".repeat(100_000);
    for chunk in 0..8 {
        let records: Vec<Rec> = (0..500)
            .map(|i| Rec::new(&format!("k{}", chunk * 500 + i), &value))
            .collect();
        k.produce("in", &records);
    }
    let config = host_config(&deployment("up", "upper", "in", "out", "")).replace(
        "commit_interval_ms = 200",
        "commit_interval_ms = 200\nmax_buffered_bytes = 8388608",
    );
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    let mut seen = 0;
    let out = k.read_until("out", Duration::from_secs(180), |o| {
        seen = o.len();
        o.len() >= 4_000
    });
    assert_eq!(out.len(), 4_000, "log:\n{}", weir.log_text());
    let peak = weir.peak_rss();
    eprintln!(
        "peak RSS of the host: {} MiB for a 400 MB backlog",
        peak >> 20
    );
    assert!(peak < 700 << 20, "the host held {} MiB", peak >> 20);
}

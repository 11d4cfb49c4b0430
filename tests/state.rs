//! Durable state under `weir run` on Apache Kafka: a stateful word count
//! survives `kill -9` (with and without its state directory) and moves
//! between hosts, with exact final counts.
//!
//! The guarantee checked: state changes of records whose offsets were
//! committed are applied exactly once; records after the last commit are
//! processed again, which may only repeat outputs already produced. So for
//! every word, the counts it was emitted with are exactly `1..=N`, where N
//! is its number of occurrences in the input; repeats of a count are the
//! at-least-once duplicates, a gap or an excess would be lost or
//! double-applied state.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use weir_tests::kafka::{
    Broker, Rec, Scope, Weir, deployment, host_config, now_ms, produce_slowly,
};

/// `n` records under keys `k0..k(keys-1)` whose words all start with their
/// key, so each word lives in one input partition (state is per partition).
fn documents(n: usize, keys: usize) -> Vec<Rec> {
    let base = now_ms();
    (0..n)
        .map(|i| {
            let k = format!("k{}", i % keys);
            let words: Vec<String> = (0..1 + i % 3)
                .map(|j| format!("{k}w{}", (i / keys + j) % 5))
                .collect();
            Rec {
                timestamp: Some(base + i as i64),
                ..Rec::new(&k, &words.join(" "))
            }
        })
        .collect()
}

fn occurrences(docs: &[Rec]) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for d in docs {
        for w in d.value_str().split(' ') {
            *n.entry(w.to_owned()).or_default() += 1;
        }
    }
    n
}

/// Reads `counts` until every word reached its final count (or two
/// minutes passed), then checks each word's emitted counts are exactly
/// `1..=N`. Returns the number of duplicate outputs.
fn assert_exact_counts(k: &Scope, want: &BTreeMap<String, u64>, hosts: &[&Weir]) -> usize {
    let mut max: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = 0;
    let mut complete = 0;
    // What a downstream consumer of a transactional producer reads.
    let mut committed_only = k.client();
    committed_only.set("isolation.level", "read_committed");
    let out = k.read_with(committed_only, "counts", Duration::from_secs(120), |out| {
        for r in &out[seen..] {
            let n: u64 = r.value_str().parse().unwrap();
            let m = max.entry(r.key_str().to_owned()).or_default();
            if n > *m {
                if *m < want.get(r.key_str()).copied().unwrap_or(0) && n >= want[r.key_str()] {
                    complete += 1;
                }
                *m = n;
            }
        }
        seen = out.len();
        complete == want.len()
    });
    let logs = || {
        hosts
            .iter()
            .map(|h| h.log_text())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let mut emitted: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for r in &out {
        emitted
            .entry(r.key_str())
            .or_default()
            .insert(r.value_str().parse().unwrap());
    }
    for (word, n) in want {
        let got = emitted.remove(word.as_str()).unwrap_or_default();
        if got != (1..=*n).collect::<BTreeSet<u64>>() {
            let missing: Vec<u64> = (1..=*n).filter(|c| !got.contains(c)).collect();
            let extra: Vec<u64> = got.iter().copied().filter(|c| *c > *n).collect();
            let log = logs();
            panic!(
                "`{word}` occurs {n} times; counts missing: {missing:?}, beyond {n}: {extra:?}; log tail:\n{}",
                &log[log.len().saturating_sub(4000)..]
            );
        }
    }
    assert!(
        emitted.is_empty(),
        "words never in the input: {:?}",
        emitted.keys().take(5).collect::<Vec<_>>()
    );
    let total: u64 = want.values().sum();
    out.len() - total as usize
}

/// A short session timeout lets a restarted host rejoin its group quickly
/// (the killed process's membership must expire first).
fn word_count_config() -> String {
    word_count_with("")
}

fn word_count_with(extra: &str) -> String {
    host_config(&deployment("wc", "word_count", "docs", "counts", extra))
        + "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
}

const EXACTLY_ONCE: &str = "delivery = \"exactly-once\"";

fn setup(partitions: i32) -> Scope {
    let k = Broker::shared().scope();
    k.create_topic("docs", partitions);
    k.create_topic("counts", partitions);
    k.create_topic("wc.dlq", 1);
    k
}

#[test]
fn word_count_survives_kill_9_twice_once_without_its_state_directory() {
    let dup = kill_9_twice(&word_count_config());
    eprintln!("duplicate outputs after two kill -9: {dup}");
}

/// The same under exactly-once: not one output twice.
#[test]
fn exactly_once_emits_every_count_once_through_two_kill_9() {
    assert_eq!(
        kill_9_twice(&word_count_with(EXACTLY_ONCE)),
        0,
        "duplicate outputs under exactly-once"
    );
}

/// Kills the host twice mid-stream (the second time with its state
/// directory gone) and checks the counts; returns the duplicate outputs.
fn kill_9_twice(config: &str) -> usize {
    let k = setup(4);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, config);
    weir.wait_partitions("wc", 4);
    let docs = documents(120_000, 400);
    let want = occurrences(&docs);
    let producer = produce_slowly(&k, "docs", docs, 30.0);

    std::thread::sleep(Duration::from_secs(3));
    weir.kill9();
    weir.restart();
    weir.wait_partitions("wc", 4);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !producer.is_finished(),
        "the second kill must come mid-stream"
    );
    weir.kill9();
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    weir.restart();
    producer.join().unwrap();

    let dup = assert_exact_counts(&k, &want, &[&weir]);
    let log = weir.log_text();
    assert!(
        log.contains("state restored"),
        "the second restart restored from the changelog; log:\n{log}"
    );
    assert!(
        weir.metrics()
            .contains("weir_restored_keys_total{deployment=\"wc\""),
        "restore progress is a metric"
    );
    dup
}

/// Exactly-once across a rebalance (a host leaves, the other takes over
/// its partitions and their state) and a broker restart.
#[test]
fn exactly_once_holds_across_a_rebalance_and_a_broker_restart() {
    let mut broker = Broker::dedicated();
    let k = broker.scope();
    for (t, p) in [("docs", 4), ("counts", 4), ("wc.dlq", 1)] {
        k.create_topic(t, p);
    }
    let config = word_count_with(EXACTLY_ONCE);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("wc", 4);
    let mut b = Weir::start(db.path(), &k, &config);
    wait_some_partitions(&b);
    let docs = documents(60_000, 400);
    let want = occurrences(&docs);
    let producer = produce_slowly(&k, "docs", docs, 20.0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        b.terminate().success(),
        "graceful exit; log:\n{}",
        b.log_text()
    );
    a.wait_partitions("wc", 4);
    std::thread::sleep(Duration::from_secs(2));
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    producer.join().unwrap();
    assert_eq!(
        assert_exact_counts(&k, &want, &[&a, &b]),
        0,
        "duplicate outputs under exactly-once"
    );
}

fn wait_some_partitions(w: &Weir) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while w.partitions("wc").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the host never got a partition; log:\n{}",
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A host that stalls past its session timeout (SIGSTOP) loses its
/// partitions to the other; woken up (SIGCONT), it still holds records and
/// an open transaction, and tries to go on. The group's metadata in its
/// commit fences it, and once it learns it lost the partitions it commits
/// nothing more: nothing it sends after losing them is ever visible to
/// `read_committed` readers, so every count appears once; and its changelog
/// writes never land behind the new owner's (which would leave its own
/// store, when the partitions come back to it, without the new owner's
/// changes: the last counts were missing in about half of the runs).
#[test]
fn a_zombie_host_is_fenced() {
    let k = setup(4);
    // Long commit intervals: the zombie holds seconds of sent, uncommitted
    // work (at-least-once, the same run shows those outputs twice).
    let config = word_count_with(&format!("{EXACTLY_ONCE}\ncommit_interval_ms = 5000"));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("wc", 4);
    let b = Weir::start(db.path(), &k, &config);
    wait_some_partitions(&b);
    let docs = documents(60_000, 400);
    let want = occurrences(&docs);
    let producer = produce_slowly(&k, "docs", docs, 24.0);
    std::thread::sleep(Duration::from_secs(3));
    a.freeze();
    // B notices A gone after the session timeout (6 s) and takes over.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while b.partitions("wc").len() != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "B never took over; log:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    a.thaw();
    producer.join().unwrap();
    assert_eq!(
        assert_exact_counts(&k, &want, &[&a, &b]),
        0,
        "duplicate outputs: the zombie was not fenced"
    );
    assert!(
        a.log_text().contains("partitions lost"),
        "the zombie learned it lost its partitions; log:\n{}",
        a.log_text()
    );
}

#[test]
fn a_surviving_host_restores_the_partitions_of_a_stopped_one() {
    let k = setup(4);
    let config = word_count_config();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("wc", 4);
    let mut b = Weir::start(db.path(), &k, &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while b.partitions("wc").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "host B never got a partition; log:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let docs = documents(60_000, 400);
    let want = occurrences(&docs);
    let producer = produce_slowly(&k, "docs", docs, 6.0);
    std::thread::sleep(Duration::from_secs(3));
    let moved = b.partitions("wc");
    assert!(
        b.terminate().success(),
        "graceful exit; log:\n{}",
        b.log_text()
    );
    a.wait_partitions("wc", 4);
    producer.join().unwrap();

    assert_exact_counts(&k, &want, &[&a, &b]);
    let log = a.log_text();
    for p in moved {
        assert!(
            log.contains(&format!("partition={p} applied=")),
            "A restored partition {p} from the changelog; log:\n{log}"
        );
    }
}

/// A restore reads every committed change and no aborted one, and waits
/// for a transaction still open: it may yet commit (the previous owner's
/// last commit is open until its markers land, which may be after its
/// offsets did), and a restore that stopped short of it would leave the
/// store without those changes for good.
#[test]
fn a_restore_reads_committed_changes_only() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use weir_kafka::changelog;
    use weir_state::PartitionState;
    let k = Broker::shared().scope();
    k.create_topic("log", 1);
    let topic = k.name("log");
    let producer = |id: &str| -> BaseProducer {
        let p: BaseProducer = k
            .client()
            .set("transactional.id", k.name(id))
            .set("transaction.timeout.ms", "60000")
            .create()
            .unwrap();
        p.init_transactions(Duration::from_secs(30)).unwrap();
        p
    };
    let send = |p: &BaseProducer, key: &str, value: &str| {
        p.send(
            BaseRecord::<str, str>::to(&topic)
                .partition(0)
                .key(key)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
    };
    let committed = producer("a");
    committed.begin_transaction().unwrap();
    send(&committed, "ucount\0x", "\0\"1\"");
    send(&committed, "mpositions", "in=7");
    committed
        .commit_transaction(Duration::from_secs(30))
        .unwrap();
    let aborted = producer("b");
    aborted.begin_transaction().unwrap();
    send(&aborted, "ucount\0y", "\0\"9\"");
    aborted.abort_transaction(Duration::from_secs(30)).unwrap();
    let open = producer("c");
    open.begin_transaction().unwrap();
    send(&open, "ucount\0z", "\0\"3\"");
    send(&open, "mpositions", "in=9");
    // A zombie's, which ends aborted (fenced, or timed out).
    let zombie = producer("d");
    zombie.begin_transaction().unwrap();
    send(&zombie, "ucount\0w", "\0\"5\"");

    let kafka = weir_control::config::KafkaConfig {
        brokers: k.bootstrap.clone(),
        ..Default::default()
    };
    let (restored, state) = std::thread::scope(|s| {
        let restore = s.spawn(|| {
            let mut state = PartitionState::in_memory();
            let (low, high) =
                changelog::extent(&kafka, &topic, 0, Duration::from_secs(10)).unwrap();
            (
                changelog::restore(
                    &kafka,
                    &topic,
                    0,
                    low..high,
                    &Default::default(),
                    Duration::from_secs(60),
                    &mut state,
                    &|_| {},
                )
                .unwrap(),
                state,
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            !restore.is_finished(),
            "the restore waits for the open transactions"
        );
        open.commit_transaction(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            !restore.is_finished(),
            "the restore waits for the zombie's transaction"
        );
        zombie.abort_transaction(Duration::from_secs(30)).unwrap();
        restore.join().unwrap()
    });
    assert_eq!(
        (restored.applied, restored.positions.clone()),
        (2, Some([("in".to_owned(), 9)].into())),
        "{restored:?}"
    );
    assert!(state.get(b"count\0x").unwrap().is_some() && state.get(b"count\0z").unwrap().is_some());
    for aborted in [b"count\0y", b"count\0w"] {
        assert!(
            state.get(aborted).unwrap().is_none(),
            "an aborted change was applied"
        );
    }
}

/// Committed offsets expire (`offsets.retention.minutes`) while a
/// deployment is stopped: restarted, it resumes from the positions of its
/// last commit in the changelog, with its state, instead of reprocessing
/// everything on top of it.
#[test]
fn state_and_positions_survive_expired_offsets() {
    let k = setup(2);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &word_count_config());
    weir.wait_partitions("wc", 2);
    let first = documents(2_000, 40);
    k.produce("docs", &first);
    let want_first = occurrences(&first);
    assert_eq!(assert_exact_counts(&k, &want_first, &[&weir]), 0);
    assert!(weir.terminate().success());
    k.delete_group("weir.wc");
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();

    let mut weir = Weir::start(dir.path(), &k, &word_count_config());
    weir.wait_partitions("wc", 2);
    let second = documents(2_000, 40);
    k.produce("docs", &second);
    let want = occurrences(&[first, second].concat());
    let duplicates = assert_exact_counts(&k, &want, &[&weir]);
    assert_eq!(
        duplicates,
        0,
        "nothing processed twice; log:\n{}",
        weir.log_text()
    );
    assert!(weir.terminate().success());
}

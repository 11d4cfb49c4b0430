//! Event time under uneven input, on Apache Kafka. Stream time, windows
//! and event-time timers belong to a partition (number), and the records
//! of co-partitioned inputs reach them in timestamp order, so records in
//! time order are not late however unevenly they arrive: a backlog of two
//! inputs, records held back by an open transaction, a partition that lags
//! the others, backpressure, a rebalance mid-stream. Those cases run three
//! deployments over the same inputs (a tumbling window count, a session
//! window count and an event-time inactivity timer) and compare every
//! result with `weir test` on the same records read back from Kafka. The
//! others check the limits of waiting, stream time across a restore, jobs
//! that run out of time, and partitions sharing one worker's instance.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_tests::kafka::{Broker, Rec, Scope, Weir, deployment, host_config, now_ms};
use weir_tests::{json_lines, plugin, weir_test};

/// (name, plugin, `weir test` flags, `weir run` config)
const DEPLOYMENTS: [(&str, &str, &[&str], &str); 3] = [
    (
        "tumbling",
        "window-count",
        &["-c", "window=tumbling", "-c", "size_ms=1000"],
        r#"window = "tumbling", size_ms = "1000""#,
    ),
    (
        "session",
        "window-count",
        &["-c", "window=session", "-c", "gap_ms=300"],
        r#"window = "session", gap_ms = "300""#,
    ),
    (
        "inactivity",
        "inactivity",
        &["-c", "gap_ms=300"],
        r#"gap_ms = "300""#,
    ),
];

/// `n` records of `keys` keys in turn, one millisecond apart with a pause
/// of 400 ms after every 500 (so sessions and inactivity timers close),
/// from `base`; on partition `key % partitions`.
fn events(tag: &str, n: usize, keys: usize, partitions: i32, base: i64) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            partition: Some((i % keys) as i32 % partitions),
            timestamp: Some(base + i as i64 + (i / 500) as i64 * 400),
            ..Rec::new(&format!("k{}", i % keys), &format!("{tag}-{i}"))
        })
        .collect()
}

/// An hour ago, on a second: windows are aligned and the broker keeps the
/// records.
fn base() -> i64 {
    (now_ms() - 3_600_000) / 1000 * 1000
}

/// The three deployments' configuration over `inputs`, with `host` settings.
fn config(inputs: &[&str], host: &str) -> String {
    let list = inputs
        .iter()
        .map(|t| format!("\"{{p}}{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let tables: String = DEPLOYMENTS
        .iter()
        .map(|(name, plugin, _, settings)| {
            deployment(
                name,
                &plugin.replace('-', "_"),
                inputs[0],
                &format!("{name}.out"),
                &format!("config = {{ {settings} }}"),
            )
            .replace(
                &format!("inputs = [\"{{p}}{}\"]", inputs[0]),
                &format!("inputs = [{list}]"),
            )
        })
        .collect();
    host_config(&format!("{host}\n{tables}"))
}

fn create_topics(k: &Scope, inputs: &[&str], partitions: i32) {
    for t in inputs {
        k.create_topic(t, partitions);
    }
    for (name, ..) in DEPLOYMENTS {
        k.create_topic(&format!("{name}.out"), partitions);
        k.create_topic(&format!("{name}.dlq"), 1);
    }
}

/// Every record of `inputs` as Kafka holds them, as `weir test` input.
fn read_back(k: &Scope, inputs: &[(&str, usize)]) -> String {
    let mut lines = String::new();
    for &(topic, n) in inputs {
        let records = k.read(topic, n, Duration::from_secs(60));
        assert_eq!(records.len(), n, "{topic} holds {n} records");
        for r in records {
            let line = serde_json::json!({
                "topic": k.name(topic),
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": r.key_str(),
                "value": r.value_str(),
            });
            lines += &format!("{line}\n");
        }
    }
    lines
}

type Outputs = Vec<(String, String, i64)>;

/// What `weir test` makes of `input` for each deployment, sorted.
fn offline(input: &str) -> BTreeMap<&'static str, Outputs> {
    DEPLOYMENTS
        .iter()
        .map(|(name, p, flags, _)| {
            let path = plugin(p);
            let mut args = vec![
                path.to_str().unwrap(),
                "--input",
                "-",
                "--batch-size",
                "1000",
            ];
            args.extend_from_slice(flags);
            let out = weir_test(&args, input);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("late"),
                "weir test {name}: {stderr}"
            );
            let mut got: Outputs = json_lines(&String::from_utf8_lossy(&out.stdout))
                .iter()
                .map(|l| {
                    (
                        l["key"].as_str().unwrap().to_owned(),
                        l["value"].as_str().unwrap().to_owned(),
                        l["timestamp"].as_i64().unwrap(),
                    )
                })
                .collect();
            got.sort();
            (*name, got)
        })
        .collect()
}

/// Reads `topic` until it holds `n` records, and a second longer (for any
/// extra).
fn read_settled(k: &Scope, topic: &str, n: usize) -> Vec<Rec> {
    let mut all_since: Option<Instant> = None;
    k.read_until(topic, Duration::from_secs(90), |out| {
        out.len() > n
            || (out.len() == n
                && all_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1))
    })
}

/// Reads each deployment's outputs until it holds as many as `weir test`
/// made, and a second longer (for any extra), and compares.
fn assert_same_as_offline(k: &Scope, want: &BTreeMap<&str, Outputs>, hosts: &[&Weir]) {
    for (name, want) in want {
        assert!(
            want.len() > 20,
            "{name}: the case must produce results, not {}",
            want.len()
        );
        let mut got: Outputs = read_settled(k, &format!("{name}.out"), want.len())
            .iter()
            .map(|r| {
                (
                    r.key_str().to_owned(),
                    r.value_str().to_owned(),
                    r.timestamp.unwrap(),
                )
            })
            .collect();
        got.sort();
        let logs: String = hosts.iter().map(|w| w.log_text()).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: {} results on Kafka, {} from weir test; log:\n{logs}",
            got.len(),
            want.len()
        );
        assert!(
            &got == want,
            "{name}: results differ from weir test's; first: {:?}",
            got.iter().zip(want).find(|(a, b)| a != b)
        );
    }
    for w in hosts {
        let metrics = w.metrics();
        for series in ["weir_late_records_total", "weir_out_of_order_records_total"] {
            let bad: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with(series) && !l.ends_with(" 0"))
                .collect();
            assert!(
                bad.is_empty(),
                "records in time order counted as {series}: {bad:?}"
            );
        }
    }
}

/// Whether a partition of the tumbling window count shows in `/health`
/// that it waits for an input.
fn waits(weir: &Weir) -> bool {
    weir.health().is_some_and(|h| {
        h["deployments"]["tumbling"]["waiting"]
            .as_object()
            .is_some_and(|w| !w.is_empty())
    })
}

/// Two co-partitioned inputs, both with a backlog when the host starts,
/// and a part of one held back by a transaction left open until the host
/// has run for a while: the partitions wait for it (showing so in their
/// status) and every result is as `weir test` gives it.
#[test]
fn co_partitioned_inputs_are_processed_in_timestamp_order_however_they_arrive() {
    let k = Broker::shared().scope();
    create_topics(&k, &["orders", "payments"], 2);
    let base = base();
    let orders = events("order", 6_000, 40, 2, base);
    let payments = events("payment", 6_000, 40, 2, base + 3);
    k.produce("orders", &orders);
    let (now, later) = payments.split_at(3_000);
    k.produce("payments", now);
    let held = k.begin_transaction("held");
    held.produce("payments", later);

    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config(&["orders", "payments"], ""));
    weir.wait_partitions("tumbling", 2);
    // Waiting for the held records shows (once the host's own transactional
    // producer has started, which a busy broker can take a while for).
    let deadline = Instant::now() + Duration::from_secs(90);
    while !waits(&weir) {
        assert!(
            Instant::now() < deadline,
            "no partition shows it waits for the held records; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    held.commit();

    let want = offline(&read_back(
        &k,
        &[("orders", orders.len()), ("payments", payments.len())],
    ));
    assert_same_as_offline(&k, &want, &[&weir]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while waits(&weir) {
        assert!(
            Instant::now() < deadline,
            "the wait still shows after it ended: {:?}",
            weir.health()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One input of four partitions progressing unevenly: three have a
/// backlog, the fourth gets its records only later; small buffers pause
/// and resume partitions all along; a second host joins mid-stream and
/// takes half of them over, restoring their state. Every result is as
/// `weir test` gives it.
#[test]
fn partitions_that_lag_pause_and_move_keep_their_own_stream_time() {
    let k = Broker::shared().scope();
    create_topics(&k, &["events"], 4);
    let all = events("e", 24_000, 64, 4, base());
    let (lagging, others): (Vec<Rec>, Vec<Rec>) =
        all.iter().cloned().partition(|r| r.partition == Some(3));
    k.produce("events", &others);

    let host = "max_buffered_records = 300\nbatch_max_records = 100";
    let config = config(&["events"], host);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Weir::start(da.path(), &k, &config);
    a.wait_partitions("tumbling", 4);
    // Partition 3 starts long after the others, in two parts around the
    // rebalance.
    std::thread::sleep(Duration::from_secs(2));
    let (first, second) = lagging.split_at(lagging.len() / 2);
    k.produce("events", first);
    let b = Weir::start(db.path(), &k, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.partitions("tumbling").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the second host never got a partition; log:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    k.produce("events", second);

    let want = offline(&read_back(&k, &[("events", all.len())]));
    assert_same_as_offline(&k, &want, &[&a, &b]);
}

/// Windows that close on idleness (`idle_close_ms`) close only once
/// nothing is left on the broker: records held back by an open
/// transaction keep their window open, and join it once committed.
#[test]
fn idle_windows_wait_for_records_still_on_the_broker() {
    let k = Broker::shared().scope();
    for t in ["in", "out", "dlq", "late"] {
        k.create_topic(t, 1);
    }
    let extra = "late_topic = \"{p}late\"\ndead_letter_topic = \"{p}dlq\"\nconfig = { window = \"tumbling\", size_ms = \"60000\", idle_close_ms = \"300\" }";
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("idle", "window_count", "in", "out", extra)),
    );
    weir.wait_partitions("idle", 1);
    let start = now_ms() / 60_000 * 60_000;
    let at = |t: i64| Rec {
        timestamp: Some(start + t),
        ..Rec::new("k", "x")
    };
    // Opened first: its producer takes a while to start on a fresh broker.
    let held = k.begin_transaction("held");
    k.produce("in", &[at(10), at(20)]);
    held.produce("in", &[at(30), at(40)]);
    // Idle for far longer than `idle_close_ms`, with records on the broker.
    std::thread::sleep(Duration::from_secs(3));
    held.commit();
    let out = k.read("out", 1, Duration::from_secs(30));
    let got: Vec<serde_json::Value> = out
        .iter()
        .map(|r| serde_json::from_str(r.value_str()).unwrap())
        .collect();
    assert_eq!(
        got,
        [serde_json::json!({ "start": start, "end": start + 60_000, "count": 4 })],
        "log:\n{}",
        weir.log_text()
    );
    assert!(
        k.read("late", 1, Duration::from_secs(2)).is_empty(),
        "no record is late"
    );
}

/// Each partition's results, as (key, value, timestamp) in the order made.
type ByPartition = BTreeMap<i32, Outputs>;

/// Runs `batches` (a partition and its next `n` records each) through one
/// transform instance, as a worker runs the batches of every partition of
/// a deployment, each partition with its own state.
fn run_batches(
    plugin: &std::path::Path,
    flags: &[&str],
    streams: &BTreeMap<i32, Vec<Rec>>,
    batches: &[(i32, usize)],
) -> ByPartition {
    use std::sync::Arc;
    use weir_engine::transform::{Transform, TransformSpec};
    use weir_engine::{Engine, EngineConfig};
    use weir_state::PartitionState;
    let config: Vec<(String, String)> = flags
        .chunks(2)
        .map(|c| {
            c[1].split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap()
        })
        .collect();
    let engine = Engine::new(EngineConfig {
        cache_dir: None,
        ..EngineConfig::default()
    })
    .unwrap();
    let module = Arc::new(engine.load_file(plugin).unwrap());
    let mut transform = Transform::new(
        module,
        Arc::new(TransformSpec::new(
            "sim",
            config,
            weir_abi::Limits::default(),
        )),
    );
    let mut states: BTreeMap<i32, Box<PartitionState>> = streams
        .keys()
        .map(|&p| (p, Box::new(PartitionState::in_memory())))
        .collect();
    let mut taken: BTreeMap<i32, usize> = BTreeMap::new();
    let mut out = ByPartition::new();
    for &(p, n) in batches {
        let at = taken.entry(p).or_default();
        let records = &streams[&p][*at..(*at + n).min(streams[&p].len())];
        let mut b = weir_abi::BatchBuilder::new("in", p);
        for (i, r) in records.iter().enumerate() {
            b.push(
                (*at + i) as i64,
                r.timestamp.unwrap(),
                r.key.as_deref(),
                r.value.as_deref(),
                [],
            );
        }
        *at += records.len();
        let (state, result) = transform.dispatch(&b.finish(), states.remove(&p).unwrap());
        assert!(
            result.failures.is_empty() && result.late.is_empty() && result.out_of_order.is_empty(),
            "partition {p}: {:?}",
            result.failures
        );
        states.insert(p, state);
        let made = out.entry(p).or_default();
        for r in result.records() {
            made.push((
                String::from_utf8_lossy(r.key.unwrap()).into_owned(),
                String::from_utf8_lossy(r.value.unwrap()).into_owned(),
                r.timestamp,
            ));
        }
    }
    out
}

/// Partitions whose event times are far apart (one an hour behind the
/// others), their batches interleaved at random and cut at random sizes on
/// one worker's instance: each partition's results are exactly those it
/// gets processed alone, for windows and event-time timers alike.
#[test]
fn partitions_interleaved_at_random_on_one_instance_get_what_each_gets_alone() {
    let base = base();
    let streams: BTreeMap<i32, Vec<Rec>> = (0..4)
        .map(|p| {
            let shift = if p == 2 {
                -3_600_000
            } else {
                i64::from(p) * 700
            };
            let records = events(&format!("p{p}"), 3_000, 12, 1, base + shift);
            (p, records)
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: usize| {
        // xorshift64*: enough to shuffle batches, and repeatable.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
    };
    std::thread::Builder::new()
        .stack_size(weir_engine::worker_stack_size(
            &weir_engine::EngineConfig::default(),
        ))
        .spawn(move || {
            for (name, p, flags, _) in DEPLOYMENTS {
                let path = plugin(p);
                let alone: ByPartition = streams
                    .keys()
                    .map(|&n| {
                        let one = BTreeMap::from([(n, streams[&n].clone())]);
                        let batches: Vec<(i32, usize)> = (0..30).map(|_| (n, 100)).collect();
                        (
                            n,
                            run_batches(&path, flags, &one, &batches)
                                .remove(&n)
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                assert!(
                    alone.values().all(|o| o.len() > 10),
                    "{name}: each partition makes results"
                );
                for round in 0..8 {
                    let mut left: BTreeMap<i32, usize> =
                        streams.iter().map(|(&n, r)| (n, r.len())).collect();
                    let mut batches = Vec::new();
                    while !left.is_empty() {
                        let &n = left.keys().nth(random(left.len())).unwrap();
                        let size = 1 + random(250);
                        let rest = left.get_mut(&n).unwrap();
                        let take = size.min(*rest);
                        *rest -= take;
                        if *rest == 0 {
                            left.remove(&n);
                        }
                        batches.push((n, take));
                    }
                    let mixed = run_batches(&path, flags, &streams, &batches);
                    assert!(
                        mixed == alone,
                        "{name}, round {round}: interleaving changed a partition's results"
                    );
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// One deployment of `plugin` over inputs `a` and `b` to `out`.
fn two_input_config(plugin: &str, extra: &str, host: &str) -> String {
    let d = deployment("two", plugin, "a", "out", extra)
        .replace("inputs = [\"{p}a\"]", "inputs = [\"{p}a\", \"{p}b\"]");
    host_config(&format!("{host}\n{d}"))
}

/// A partition waits for a co-partitioned input at most
/// `host.max_input_wait_ms`: then it goes on without it and says so, and
/// the records the input sends later are late (counted and shown); once
/// the input has caught up, the partition says so no more.
#[test]
fn a_wait_for_an_input_ends_at_its_limit_and_says_so() {
    let k = Broker::shared().scope();
    for t in ["a", "b", "out", "two.dlq"] {
        k.create_topic(t, 1);
    }
    let base = base();
    let at = |t: i64| Rec {
        timestamp: Some(base + t),
        ..Rec::new("k", "x")
    };
    let held = k.begin_transaction("held");
    held.produce("b", &[at(0), at(10)]);
    k.produce("a", &(0..30).map(|i| at(i * 100)).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let config = two_input_config(
        "window_count",
        r#"config = { window = "tumbling", size_ms = "1000" }"#,
        "max_input_wait_ms = 1500",
    );
    let weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("two", 1);
    let status = |w: &Weir| {
        w.health()
            .map(|h| h["deployments"]["two"].clone())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status(&weir)["waiting"]["0"]
        .as_str()
        .is_some_and(|w| w.contains("processing without input"))
    {
        assert!(
            Instant::now() < deadline,
            "the wait never ran out: {}; log:\n{}",
            status(&weir),
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without `b`, `a`'s windows close: [0,1000) and [1000,2000).
    let closed = k.read("out", 2, Duration::from_secs(30));
    assert_eq!(closed.len(), 2, "log:\n{}", weir.log_text());
    held.commit();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&weir);
        if s["late"]["0"]["count"] == 2 && s["waiting"].is_null() {
            assert_eq!(s["late"]["0"]["last"]["offset"], 1, "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held records are not shown as late, or the wait still shows: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        weir.log_text().contains("caught up"),
        "the end of the wait is logged"
    );
}

/// A commit writes the partition's stream time to the changelog: a host
/// that restores the partition elsewhere goes on from it, so a timer set
/// for a time the stream has passed fires at once, as it would have on the
/// first host.
#[test]
fn stream_time_survives_a_restore_elsewhere() {
    let k = Broker::shared().scope();
    for t in ["in", "out", "alerts.dlq"] {
        k.create_topic(t, 1);
    }
    let config = host_config(&deployment(
        "alerts",
        "inactivity",
        "in",
        "out",
        r#"config = { gap_ms = "300" }"#,
    ));
    let base = base();
    let at = |key: &str, t: i64| Rec {
        timestamp: Some(base + t),
        ..Rec::new(key, "x")
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = Weir::start(da.path(), &k, &config);
    first.wait_partitions("alerts", 1);
    // `b` at 10 s moves stream time past `a`'s timer, which fires.
    k.produce("in", &[at("a", 0), at("b", 10_000)]);
    assert_eq!(
        k.read("out", 1, Duration::from_secs(30)).len(),
        1,
        "log:\n{}",
        first.log_text()
    );
    assert!(first.terminate().success());
    // Another host, with no store of its own: it restores the changelog.
    let second = Weir::start(db.path(), &k, &config);
    second.wait_partitions("alerts", 1);
    // `c` at 1 s sets a timer at 1.3 s, which stream time (10 s) has passed.
    k.produce("in", &[at("c", 1_000)]);
    let out = k.read_until("out", Duration::from_secs(30), |o| {
        o.iter().any(|r| r.key_str() == "c")
    });
    assert!(
        out.iter().any(|r| r.key_str() == "c"),
        "the timer waited for stream time to come back; log:\n{}",
        second.log_text()
    );
}

/// A job of several inputs' batches gets one batch's CPU time: past it,
/// what it has not run goes back to the partition and runs next. A guest
/// that spins on some records (each up to the CPU limit) holds a worker no
/// longer than a batch would, and every record is still forwarded or
/// dead-lettered exactly once.
#[test]
fn a_job_out_of_time_puts_back_what_it_did_not_run() {
    let k = Broker::shared().scope();
    for t in ["a", "b", "out", "two.dlq"] {
        k.create_topic(t, 1);
    }
    let base = base();
    // Interleaved one by one: a batch of one record per input at a time.
    let value = |input: &str, i: i64| {
        if i % 10 == 3 {
            format!("{input}{i} spin")
        } else {
            format!("{input}{i}")
        }
    };
    for (input, offset) in [("a", 0), ("b", 1)] {
        let records: Vec<Rec> = (0..60)
            .map(|i| Rec {
                timestamp: Some(base + 2 * i + offset),
                ..Rec::new("k", &value(input, i))
            })
            .collect();
        k.produce(input, &records);
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &two_input_config(
            "hostile_loop",
            "config = { trigger = \"spin\" }\nlimits = { cpu_ms_per_batch = 100 }",
            "",
        ),
    );
    let want_out: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|t| (0..60).filter(|i| i % 10 != 3).map(|i| value(t, i)))
        .collect();
    let want_dead: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|t| (0..60).filter(|i| i % 10 == 3).map(|i| value(t, i)))
        .collect();
    let sorted = |records: Vec<Rec>| {
        let mut v: Vec<String> = records.iter().map(|r| r.value_str().to_owned()).collect();
        v.sort();
        v
    };
    let out = sorted(read_settled(&k, "out", want_out.len()));
    let dead = sorted(read_settled(&k, "two.dlq", want_dead.len()));
    let (mut want_out, mut want_dead) = (want_out, want_dead);
    want_out.sort();
    want_dead.sort();
    assert_eq!(out, want_out, "log:\n{}", weir.log_text());
    assert_eq!(dead, want_dead, "log:\n{}", weir.log_text());
}

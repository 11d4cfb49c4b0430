//! Timers (world 0.2): exact event-time firing whatever the batching, wall
//! clocks in `weir test`, guests that abuse timers, and timers that survive
//! `kill -9` on Apache Kafka, firing once with respect to state.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use weir_tests::kafka::{Broker, Rec, Weir, deployment, host_config, now_ms, produce_slowly};
use weir_tests::{json_lines, plugin, weir_test};

fn outputs(out: &Output) -> Vec<(String, i64, String)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_owned(),
                l["timestamp"].as_i64().unwrap(),
                l["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const HEARTBEATS: &str = r#"{"key":"a","value":"x","timestamp":1000}
{"key":"b","value":"x","timestamp":2000}
{"key":"a","value":"x","timestamp":30000}
{"key":"c","value":"x","timestamp":65000}
{"key":"b","value":"x","timestamp":70000}
{"key":"a","value":"x","timestamp":200000}
"#;

/// A timer fires before the first record that reaches it, even when the
/// record that set it and the one that reaches it share a call: `a`'s
/// alert at 90000 comes although `a` itself writes again at 200000 in the
/// same batch, and the outputs are the same for every batch size.
#[test]
fn event_time_timers_fire_before_the_record_that_reaches_them_whatever_the_batching() {
    let p = plugin("inactivity");
    let want = vec![
        (
            "b".to_owned(),
            62000,
            r#"{"records":1,"last":2000,"alerts":1}"#.to_owned(),
        ),
        (
            "a".to_owned(),
            90000,
            r#"{"records":2,"last":30000,"alerts":1}"#.to_owned(),
        ),
        (
            "c".to_owned(),
            125000,
            r#"{"records":1,"last":65000,"alerts":1}"#.to_owned(),
        ),
        (
            "b".to_owned(),
            130000,
            r#"{"records":1,"last":70000,"alerts":2}"#.to_owned(),
        ),
    ];
    for batch in ["1", "2", "3", "100"] {
        let got = outputs(&weir_test(
            &[p.to_str().unwrap(), "--input", "-", "--batch-size", batch],
            HEARTBEATS,
        ));
        assert_eq!(got, want, "batch size {batch}");
    }
}

#[test]
fn wall_clock_timers_fire_as_the_test_clock_moves() {
    let p = plugin("inactivity");
    let input = r#"{"wall_clock": 1000, "key":"a","value":"x","timestamp":5}
{"wall_clock": 2000, "key":"b","value":"x","timestamp":6}
{"wall_clock": 60999}
{"wall_clock": 61000}
{"wall_clock": 62500}
"#;
    let got = outputs(&weir_test(
        &[
            p.to_str().unwrap(),
            "--input",
            "-",
            "-c",
            "clock=wall-clock",
        ],
        input,
    ));
    assert_eq!(
        got,
        [
            (
                "a".to_owned(),
                61000,
                r#"{"records":1,"last":5,"alerts":1}"#.to_owned()
            ),
            (
                "b".to_owned(),
                62000,
                r#"{"records":1,"last":6,"alerts":1}"#.to_owned()
            )
        ]
    );
}

/// Timers that set themselves due again every time they fire get a bounded
/// number of calls per batch (a few per record, and a CPU allowance): the
/// records still come out, and the run ends.
#[test]
fn timers_that_keep_themselves_due_cannot_hold_the_host() {
    let input: String = (0..500)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":\"v{i}\",\"timestamp\":{i}}}\n"))
        .collect();
    let out = weir_test(
        &[
            plugin("hostile-host").to_str().unwrap(),
            "--input",
            "-",
            "-c",
            "attack=timer-storm",
        ],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    let forwarded = lines.iter().filter(|l| !l["value"].is_null()).count();
    let timer_calls = lines.len() - forwarded;
    assert_eq!(forwarded, 500);
    // Five batches of 100, each allowed 16 + 2 * 100 on-timer calls.
    assert!(
        (1..=5 * 216).contains(&timer_calls),
        "{timer_calls} on-timer calls"
    );
}

#[test]
fn packed_outputs_of_the_wrong_size_fail_as_invalid_output() {
    let out = weir_test(
        &[
            plugin("hostile-host").to_str().unwrap(),
            "--input",
            "-",
            "-c",
            "attack=ragged",
        ],
        "{\"value\":\"v\"}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid-output: packed output records are 39 bytes, not a multiple of 40"),
        "{err}"
    );
}

/// Heartbeats of 40 keys on 4 partitions, 10 ms of event time apart; key
/// `kJ` is silent for 2 s from record `J * 400`, so with a 1 s gap each key
/// but `k0` (silent from the start) raises one alert during its silence, and
/// each one after its last record (once a final heartbeat per partition
/// moves stream time past it).
fn heartbeats() -> (Vec<Rec>, BTreeSet<(String, String)>) {
    let (n, keys) = (24_000usize, 40usize);
    let base = now_ms() - 1_000_000;
    let mut records = Vec::new();
    // Per key: last timestamp, records since the last alert, alerts so far.
    let mut last: BTreeMap<usize, (i64, u64, u64)> = BTreeMap::new();
    let mut want = BTreeSet::new();
    for i in 0..n {
        let j = i % keys;
        let ts = base + 10 * i as i64;
        let silent = (j * 400..j * 400 + 200).contains(&i);
        if silent {
            continue;
        }
        let (prev, count, alerts) = last.get(&j).copied().unwrap_or((i64::MIN, 0, 0));
        if prev != i64::MIN && ts - prev >= 1000 {
            want.insert((
                format!("k{j}"),
                format!(
                    r#"{{"records":{count},"last":{prev},"alerts":{}}}"#,
                    alerts + 1
                ),
            ));
            last.insert(j, (ts, 1, alerts + 1));
        } else {
            last.insert(j, (ts, count + 1, alerts));
        }
        records.push(Rec {
            timestamp: Some(ts),
            ..Rec::new(&format!("k{j}"), "beat")
        });
    }
    for (j, (prev, count, alerts)) in last {
        want.insert((
            format!("k{j}"),
            format!(
                r#"{{"records":{count},"last":{prev},"alerts":{}}}"#,
                alerts + 1
            ),
        ));
    }
    let end = base + 10 * n as i64 + 60_000;
    for p in 0..4 {
        records.push(Rec {
            timestamp: Some(end),
            partition: Some(p),
            ..Rec::new(&format!("end{p}"), "beat")
        });
    }
    (records, want)
}

/// Timers are state: a host killed with SIGKILL in the middle of a stream
/// of pending timers loses none of them and fires none twice against state
/// (a timer fired twice would show as a repeated or skipped alert count).
/// Outputs may repeat after the kill, as at-least-once allows.
#[test]
fn pending_timers_survive_kill_9_and_fire_once_against_state() {
    let k = Broker::shared().scope();
    k.create_topic("beats", 4);
    k.create_topic("alerts", 4);
    k.create_topic("silence.dlq", 1);
    let config = host_config(&deployment(
        "silence",
        "inactivity",
        "beats",
        "alerts",
        "config = { gap_ms = \"1000\" }",
    )) + "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n";
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("silence", 4);
    let (records, want) = heartbeats();
    let producer = produce_slowly(&k, "beats", records, 12.0);
    std::thread::sleep(Duration::from_secs(4));
    assert!(!producer.is_finished(), "the kill must come mid-stream");
    weir.kill9();
    std::thread::sleep(Duration::from_millis(500));
    weir.restart();
    producer.join().unwrap();

    let keyed = |out: &[Rec]| {
        out.iter()
            .map(|r| (r.key_str().to_owned(), r.value_str().to_owned()))
            .collect::<BTreeSet<_>>()
    };
    let out = k.read_until("alerts", Duration::from_secs(120), |out| {
        keyed(out).is_superset(&want)
    });
    let got = keyed(&out);
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing alerts {missing:?}, unexpected alerts {extra:?}; log:\n{}",
        weir.log_text()
    );
    eprintln!("{} alerts, {} outputs after kill -9", want.len(), out.len());
}

/// Wall-clock timers fire on the real pipeline with no record to push them:
/// each key gets its alert about a second after its last record, from the
/// scheduler's timer jobs alone.
#[test]
fn wall_clock_timers_fire_without_further_records() {
    let k = Broker::shared().scope();
    k.create_topic("pings", 2);
    k.create_topic("silent", 2);
    k.create_topic("idle.dlq", 1);
    let config = host_config(&deployment(
        "idle",
        "inactivity",
        "pings",
        "silent",
        "config = { gap_ms = \"1000\", clock = \"wall-clock\" }",
    ));
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("idle", 2);
    let pings: Vec<Rec> = (0..20)
        .map(|i| Rec::new(&format!("device{}", i % 5), "ping"))
        .collect();
    k.produce("pings", &pings);
    let out = k.read("silent", 5, Duration::from_secs(30));
    let keys: BTreeSet<&str> = out.iter().map(Rec::key_str).collect();
    assert_eq!(
        keys.len(),
        5,
        "one alert per device; got {:?}; log:\n{}",
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        weir.log_text()
    );
    for r in &out {
        assert!(
            r.value_str().ends_with(r#""alerts":1}"#)
                && r.value_str().starts_with(r#"{"records":4,"#),
            "{}",
            r.value_str()
        );
    }
}

//! Window semantics, table-driven. Every expected result below was worked
//! out by hand from the rules (Kafka Streams' semantics, as written in the
//! `weir:transform/windows` WIT interface), not recorded from a run. Each
//! case runs through `weir test` (at two batch sizes, which must not change
//! anything) and through `weir run` on Apache Kafka.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::kafka::{Broker, Rec, Weir, deployment, host_config, now_ms};
use weir_tests::{json_lines, plugin, weir_bin};

struct Case {
    name: &'static str,
    config: &'static [(&'static str, &'static str)],
    /// Added to every time below (0 would be "no timestamp" to a Kafka
    /// producer); multiples of every size keep windows aligned.
    base: i64,
    /// (key, event time)
    input: &'static [(&'static str, i64)],
    /// (key, start, end, count), in emission order.
    expect: &'static [(&'static str, i64, i64, u64)],
    late: usize,
}

const CASES: &[Case] = &[
    Case {
        // [0,10) closes when a record at 10 arrives; same-time closes come
        // out in key order; 15 arrives after [10,20) closed at 25.
        name: "tumbling",
        config: &[("window", "tumbling"), ("size_ms", "10")],
        base: 100,
        input: &[
            ("k", 0),
            ("k", 5),
            ("k", 9),
            ("k", 10),
            ("k", 12),
            ("j", 13),
            ("k", 25),
            ("k", 15),
        ],
        expect: &[("k", 0, 10, 3), ("j", 10, 20, 1), ("k", 10, 20, 2)],
        late: 1,
    },
    Case {
        // Grace 5: 3 still joins [0,10) at stream time 12; [0,10) closes at
        // 15, after which 4 is late.
        name: "tumbling-grace",
        config: &[("window", "tumbling"), ("size_ms", "10"), ("grace_ms", "5")],
        base: 100,
        input: &[("k", 0), ("k", 9), ("k", 12), ("k", 3), ("k", 15), ("k", 4)],
        expect: &[("k", 0, 10, 3)],
        late: 1,
    },
    Case {
        name: "tumbling-update",
        config: &[
            ("window", "tumbling"),
            ("size_ms", "10"),
            ("emit", "update"),
        ],
        base: 100,
        input: &[("k", 1), ("k", 2), ("j", 3), ("k", 11)],
        expect: &[
            ("k", 0, 10, 1),
            ("k", 0, 10, 2),
            ("j", 0, 10, 1),
            ("k", 10, 20, 1),
        ],
        late: 0,
    },
    Case {
        // Windows of 10 every 5, aligned to the epoch (not to the first
        // record): 3 is in [-5,5) and [0,10), 12 in [5,15) and [10,20).
        // Stream time 20 closes every window ending at or before 20.
        name: "hopping",
        config: &[
            ("window", "hopping"),
            ("size_ms", "10"),
            ("advance_ms", "5"),
        ],
        base: 100,
        input: &[("k", 3), ("k", 7), ("k", 12), ("k", 20)],
        expect: &[
            ("k", -5, 5, 1),
            ("k", 0, 10, 2),
            ("k", 5, 15, 2),
            ("k", 10, 20, 1),
        ],
        late: 0,
    },
    Case {
        // An out-of-order record updates the open window it belongs to;
        // its other window [-5,5) closed at stream time 7. A record counts
        // as late only when every one of its windows has closed.
        name: "hopping-update",
        config: &[
            ("window", "hopping"),
            ("size_ms", "10"),
            ("advance_ms", "5"),
            ("emit", "update"),
        ],
        base: 100,
        input: &[("k", 7), ("k", 3)],
        expect: &[("k", 0, 10, 1), ("k", 5, 15, 1), ("k", 0, 10, 2)],
        late: 0,
    },
    Case {
        // Left windows [t-10, t], and [11, 21]: the right window of 10,
        // created when 15 falls into it. All close at stream time 30.
        name: "sliding",
        config: &[("window", "sliding"), ("size_ms", "10")],
        base: 100,
        input: &[("k", 10), ("k", 15), ("k", 30)],
        expect: &[("k", 0, 10, 1), ("k", 5, 15, 2), ("k", 11, 21, 1)],
        late: 0,
    },
    Case {
        // 18 is late (its right window [19,29] closed at 30); 20 is not:
        // it joins [20,30] and opens its right window [21,31] holding 30,
        // while its other windows ([10,20], [16,26]) had closed.
        name: "sliding-update",
        config: &[("window", "sliding"), ("size_ms", "10"), ("emit", "update")],
        base: 100,
        input: &[("k", 10), ("k", 15), ("k", 30), ("k", 18), ("k", 20)],
        expect: &[
            ("k", 0, 10, 1),
            ("k", 5, 15, 2),
            ("k", 11, 21, 1),
            ("k", 20, 30, 1),
            ("k", 20, 30, 2),
            ("k", 21, 31, 1),
        ],
        late: 1,
    },
    Case {
        // Records before the size land in the window [0, 10] (no window
        // starts before 0); 3's right window [4,14] takes 8.
        name: "sliding-early",
        config: &[("window", "sliding"), ("size_ms", "10"), ("emit", "update")],
        base: 0,
        input: &[("k", 3), ("k", 8)],
        expect: &[("k", 0, 10, 1), ("k", 0, 10, 2), ("k", 4, 14, 1)],
        late: 0,
    },
    Case {
        // Gap 5, no grace: 10 starts a new session and closes [0,3] (10 >
        // 3 + 5), so 6 cannot merge into it and joins [10,10] instead
        // ([6,10] closes at stream time 30); 20 is late at 30 (20 < 30 - 5).
        name: "session",
        config: &[("window", "session"), ("gap_ms", "5")],
        base: 100,
        input: &[
            ("k", 0),
            ("k", 3),
            ("k", 10),
            ("k", 6),
            ("k", 30),
            ("k", 20),
        ],
        expect: &[("k", 0, 3, 2), ("k", 6, 10, 2)],
        late: 1,
    },
    Case {
        // Grace 10 keeps [0,3] open, so 6 (within 5 of 3 and of 10) merges
        // both. Every merge retracts the merged sessions (count 0), in start
        // order, before the merged result.
        name: "session-update",
        config: &[
            ("window", "session"),
            ("gap_ms", "5"),
            ("grace_ms", "10"),
            ("emit", "update"),
        ],
        base: 100,
        input: &[("k", 0), ("k", 3), ("k", 10), ("k", 6), ("j", 1)],
        expect: &[
            ("k", 0, 0, 1),
            ("k", 0, 0, 0),
            ("k", 0, 3, 2),
            ("k", 10, 10, 1),
            ("k", 0, 3, 0),
            ("k", 10, 10, 0),
            ("k", 0, 10, 4),
            ("j", 1, 1, 1),
        ],
        late: 0,
    },
    Case {
        // Grace 10: 3 arrives at stream time 14 and still merges into [0,0].
        name: "session-grace",
        config: &[("window", "session"), ("gap_ms", "5"), ("grace_ms", "10")],
        base: 100,
        input: &[("k", 0), ("k", 14), ("k", 3), ("k", 40)],
        expect: &[("k", 0, 3, 2), ("k", 14, 14, 1)],
        late: 0,
    },
];

fn expected(c: &Case) -> Vec<(String, i64, i64, u64)> {
    c.expect
        .iter()
        .map(|&(k, s, e, n)| (k.to_owned(), s + c.base, e + c.base, n))
        .collect()
}

fn parse_result(key: &str, value: &str) -> (String, i64, i64, u64) {
    let v: serde_json::Value = serde_json::from_str(value).unwrap();
    (
        key.to_owned(),
        v["start"].as_i64().unwrap(),
        v["end"].as_i64().unwrap(),
        v["count"].as_u64().unwrap(),
    )
}

#[test]
fn window_semantics_under_weir_test() {
    let wasm = plugin("window-count");
    for c in CASES {
        let input: String = c
            .input
            .iter()
            .map(|(k, t)| {
                format!(
                    "{{\"key\":\"{k}\",\"value\":\"x\",\"timestamp\":{}}}\n",
                    t + c.base
                )
            })
            .collect();
        for batch in ["1", "100"] {
            let mut cmd = Command::new(weir_bin());
            cmd.args([
                "test",
                wasm.to_str().unwrap(),
                "--input",
                "-",
                "--batch-size",
                batch,
            ])
            .env("WEIR_LOG", "warn");
            for (k, v) in c.config {
                cmd.args(["-c", &format!("{k}={v}")]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {stderr}", c.name);
            let got: Vec<_> = json_lines(&String::from_utf8_lossy(&out.stdout))
                .iter()
                .map(|l| parse_result(l["key"].as_str().unwrap(), l["value"].as_str().unwrap()))
                .collect();
            assert_eq!(got, expected(c), "{} (batch size {batch})", c.name);
            assert_eq!(
                stderr.matches(": late:").count(),
                c.late,
                "{}: late records; stderr: {stderr}",
                c.name
            );
        }
    }
}

#[test]
fn window_semantics_under_weir_run() {
    let k = Broker::shared().scope();
    let mut deployments = String::new();
    for c in CASES {
        let name = c.name;
        for t in [
            format!("{name}.in"),
            format!("{name}.out"),
            format!("{name}.dlq"),
        ] {
            k.create_topic(&t, 1);
        }
        let settings: Vec<String> = c
            .config
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        deployments += &deployment(
            name,
            "window_count",
            &format!("{name}.in"),
            &format!("{name}.out"),
            &format!("config = {{ {} }}", settings.join(", ")),
        );
    }
    let config = host_config(&deployments);
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    for c in CASES {
        weir.wait_partitions(c.name, 1);
    }
    for c in CASES {
        let records: Vec<Rec> = c
            .input
            .iter()
            .map(|(k, t)| Rec {
                timestamp: Some(t + c.base),
                ..Rec::new(k, "x")
            })
            .collect();
        k.produce(&format!("{}.in", c.name), &records);
    }
    for c in CASES {
        let want = expected(c);
        let got: Vec<_> = k
            .read(
                &format!("{}.out", c.name),
                want.len(),
                Duration::from_secs(60),
            )
            .iter()
            .map(|r| parse_result(r.key_str(), r.value_str()))
            .collect();
        assert_eq!(got, want, "{}; log:\n{}", c.name, weir.log_text());
    }
    // Late records are counted per deployment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = weir.metrics();
        let late: BTreeMap<&str, usize> = CASES
            .iter()
            .map(|c| {
                let prefix = format!(
                    "weir_late_records_total{{deployment=\"{}\",partition=\"0\",tenant=\"\"}} ",
                    c.name
                );
                (
                    c.name,
                    metrics
                        .lines()
                        .find_map(|l| l.strip_prefix(&prefix))
                        .map_or(0, |n| n.parse().unwrap()),
                )
            })
            .collect();
        let want: BTreeMap<&str, usize> = CASES.iter().map(|c| (c.name, c.late)).collect();
        if late == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "late counts {late:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Under `weir run`: windows close on an idle partition after the
/// configured wall-clock time, a record late for a window closed that way
/// goes to the late-records topic, and a guest-defined reducer (with
/// session merges) produces the same results as offline.
#[test]
fn idle_close_late_topic_and_custom_reducer_under_weir_run() {
    let k = Broker::shared().scope();
    for t in [
        "idle.in",
        "idle.out",
        "idle.late",
        "idle.dlq",
        "collect.in",
        "collect.out",
        "collect.dlq",
    ] {
        k.create_topic(t, 1);
    }
    let config = host_config(
        &[
            deployment(
                "idle",
                "window_count",
                "idle.in",
                "idle.out",
                "late_topic = \"{p}idle.late\"\nconfig = { window = \"tumbling\", size_ms = \"60000\", idle_close_ms = \"300\" }",
            ),
            deployment("collect", "session_collect", "collect.in", "collect.out", "config = { gap_ms = \"5\", grace_ms = \"10\" }"),
        ]
        .concat(),
    );
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("idle", 1);
    weir.wait_partitions("collect", 1);

    // Two records in one minute-long window, then silence: the window
    // closes after 300 ms of idleness, long before stream time would.
    let base = now_ms() / 60_000 * 60_000;
    let at = |k: &str, v: &str, t: i64| Rec {
        timestamp: Some(base + t),
        ..Rec::new(k, v)
    };
    k.produce("idle.in", &[at("k", "x", 10), at("k", "x", 20)]);
    let closed = k.read("idle.out", 1, Duration::from_secs(30));
    let got: Vec<_> = closed
        .iter()
        .map(|r| parse_result(r.key_str(), r.value_str()))
        .collect();
    assert_eq!(
        got,
        [("k".to_owned(), base, base + 60_000, 2)],
        "log:\n{}",
        weir.log_text()
    );
    k.produce("idle.in", &[at("k", "late", 30)]);
    let late = k.read("idle.late", 1, Duration::from_secs(30));
    assert_eq!(
        late.len(),
        1,
        "the late record went to the late topic; log:\n{}",
        weir.log_text()
    );
    assert_eq!((late[0].key_str(), late[0].value_str()), ("k", "late"));

    // Sessions (gap 5, grace 10): u's [0,3] and [10,10] are merged by the
    // record at 6; v's session stays apart; 40 closes both.
    let base = now_ms();
    let input = [
        ("u", "a", 0),
        ("u", "b", 3),
        ("u", "c", 10),
        ("u", "a", 6),
        ("v", "z", 7),
        ("u", "d", 40),
    ];
    k.produce(
        "collect.in",
        &input
            .iter()
            .map(|&(k, v, t)| Rec {
                timestamp: Some(base + t),
                ..Rec::new(k, v)
            })
            .collect::<Vec<_>>(),
    );
    let out = k.read("collect.out", 2, Duration::from_secs(30));
    let got: Vec<(String, serde_json::Value)> = out
        .iter()
        .map(|r| {
            (
                r.key_str().to_owned(),
                serde_json::from_str(r.value_str()).unwrap(),
            )
        })
        .collect();
    let want = [
        (
            "v".to_owned(),
            serde_json::json!({ "start": base + 7, "end": base + 7, "values": ["z"] }),
        ),
        (
            "u".to_owned(),
            serde_json::json!({ "start": base, "end": base + 10, "values": ["a", "b", "c"] }),
        ),
    ];
    assert_eq!(got, want, "log:\n{}", weir.log_text());
}

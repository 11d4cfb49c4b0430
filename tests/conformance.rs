//! The conformance suite: every language's version of a plugin, run by
//! `weir test` over the same input vectors (`tests/conformance/*.jsonl`),
//! must print exactly the expected outputs and failures
//! (`tests/conformance/expected/<case>.{out,failures}`).
//!
//! The expected files were written from the Rust plugins and checked by
//! hand against the plugins' documented behaviour; `WEIR_BLESS=1` rewrites
//! them from the Rust plugins after a deliberate change. Non-Rust
//! components come from `scripts/build-plugins` (run by `scripts/test`).
//!
//! (Over 400 lines: the conformance runner and its cases for every language in one place.)

use std::path::PathBuf;
use std::process::Command;

use weir_tests::{component, repo, weir_bin};

const LANGS: [&str; 4] = ["rust", "python", "js", "c"];

struct Case {
    name: &'static str,
    /// The world version that introduced what the case tests; older
    /// compiled fixtures skip newer cases.
    since: &'static str,
    plugin: &'static str,
    input: &'static str,
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        since: "0.1",
        name: "upper",
        plugin: "upper",
        input: "maps",
        args: &[],
    },
    Case {
        since: "0.1",
        name: "router",
        plugin: "router",
        input: "maps",
        args: &[
            "-c",
            "route.errors=ERROR",
            "-c",
            "route.payments=payment",
            "-c",
            "route.shipping=ship",
        ],
    },
    Case {
        since: "0.1",
        name: "word-count",
        plugin: "word-count",
        input: "words",
        args: &["--output-topic", "counts"],
    },
    Case {
        since: "0.1",
        name: "tumbling-final",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=tumbling",
            "-c",
            "size_ms=10",
            "--flush-windows",
        ],
    },
    Case {
        since: "0.1",
        name: "hopping-update",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=hopping",
            "-c",
            "size_ms=10",
            "-c",
            "advance_ms=5",
            "-c",
            "grace_ms=5",
            "-c",
            "emit=update",
        ],
    },
    Case {
        since: "0.1",
        name: "sliding-final",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=sliding",
            "-c",
            "size_ms=5",
            "-c",
            "grace_ms=2",
            "--flush-windows",
        ],
    },
    Case {
        since: "0.1",
        name: "session-update",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=session",
            "-c",
            "gap_ms=5",
            "-c",
            "emit=update",
        ],
    },
    Case {
        since: "0.1",
        name: "session-final",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=session",
            "-c",
            "gap_ms=5",
            "-c",
            "grace_ms=3",
            "--flush-windows",
        ],
    },
    Case {
        since: "0.2",
        name: "count-tumbling-final",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=count-tumbling",
            "-c",
            "count=3",
            "--flush-windows",
        ],
    },
    Case {
        since: "0.2",
        name: "count-hopping-update",
        plugin: "window-count",
        input: "windows",
        args: &[
            "-c",
            "window=count-hopping",
            "-c",
            "count=3",
            "-c",
            "step=2",
            "-c",
            "emit=update",
        ],
    },
    // Timers (world 0.2): fired before the record that reaches them, on
    // each partition's own stream time, or as `wall_clock` lines move the
    // test's clock.
    Case {
        since: "0.2",
        name: "inactivity-event",
        plugin: "inactivity",
        input: "timers",
        args: &["-c", "gap_ms=1000"],
    },
    Case {
        since: "0.2",
        name: "inactivity-wall",
        plugin: "inactivity",
        input: "timers",
        args: &["-c", "gap_ms=1000", "-c", "clock=wall-clock"],
    },
    // Joins (world 0.2.1): a stream-table join whose table lines change the
    // table between records, and a stream-stream windowed join built from
    // state and timers over two topics sharing partitions' state.
    Case {
        since: "0.2.1",
        name: "enrich-inner",
        plugin: "enrich",
        input: "enrich",
        args: &[],
    },
    Case {
        since: "0.2.1",
        name: "enrich-left",
        plugin: "enrich",
        input: "enrich",
        args: &["-c", "join=left"],
    },
    Case {
        since: "0.2.1",
        name: "join-inner",
        plugin: "join-window",
        input: "join",
        args: &["-c", "window_ms=1000"],
    },
    Case {
        since: "0.2.1",
        name: "join-outer",
        plugin: "join-window",
        input: "join",
        args: &["-c", "window_ms=1000", "-c", "join=outer"],
    },
];

struct Run {
    /// Exit status 0 (every record passed) or 2 (some records failed).
    ok: bool,
    stdout: String,
    /// The per-record failure lines `weir test` prints (`line N (...): kind: message`).
    failures: Vec<String>,
    stderr: String,
}

fn weir_test(component: &PathBuf, input: &str, args: &[&str], batch_size: usize) -> Run {
    let input = repo()
        .join("tests/conformance")
        .join(format!("{input}.jsonl"));
    let out = Command::new(weir_bin())
        .arg("test")
        .arg(component)
        .arg("-i")
        .arg(&input)
        .args(["--batch-size", &batch_size.to_string()])
        .args(args)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Run {
        ok: matches!(out.status.code(), Some(0 | 2)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        failures: stderr
            .lines()
            .filter(|l| l.starts_with("line "))
            .map(str::to_owned)
            .collect(),
        stderr,
    }
}

fn expected(case: &str, ext: &str) -> PathBuf {
    repo()
        .join("tests/conformance/expected")
        .join(format!("{case}.{ext}"))
}

#[test]
fn every_language_matches_the_expected_outputs() {
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::create_dir_all(repo().join("tests/conformance/expected")).unwrap();
        for case in CASES {
            let run = weir_test(&component("rust", case.plugin), case.input, case.args, 100);
            assert!(run.ok, "{}: {}", case.name, run.stderr);
            std::fs::write(expected(case.name, "out"), &run.stdout).unwrap();
            std::fs::write(
                expected(case.name, "failures"),
                run.failures
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>(),
            )
            .unwrap();
        }
    }
    let mut mismatches = Vec::new();
    for case in CASES {
        let want_out = std::fs::read_to_string(expected(case.name, "out")).unwrap();
        let want_failures: Vec<String> = std::fs::read_to_string(expected(case.name, "failures"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(
            !want_out.is_empty(),
            "{}: the expected output is empty",
            case.name
        );
        for lang in LANGS {
            let wasm = component(lang, case.plugin);
            // Batch boundaries must not matter: one batch, and two records per call.
            for batch_size in [100, 2] {
                let run = weir_test(&wasm, case.input, case.args, batch_size);
                let what = format!("{lang} {} (batch size {batch_size})", case.name);
                if !run.ok {
                    mismatches.push(format!("{what}: weir test failed: {}", run.stderr));
                } else if run.stdout != want_out {
                    mismatches.push(format!(
                        "{what}: outputs differ\n--- expected\n{want_out}--- got\n{}",
                        run.stdout
                    ));
                } else if run.failures != want_failures {
                    mismatches.push(format!(
                        "{what}: failures differ\n--- expected\n{want_failures:#?}\n--- got\n{:#?}",
                        run.failures
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

/// Components compiled against older world versions and committed as
/// they were built (`tests/fixtures/<version>/`: the Rust plugins of
/// 2026-11-29 for 0.1, of 2026-12-05 for 0.2.0) still load and give the
/// expected outputs of the cases their version had: a host change that
/// breaks compiled plugins fails here, whatever the SDKs' sources say now.
#[test]
fn compiled_older_components_keep_running() {
    for (dir, versions, least) in [("0.1", &["0.1"][..], 7), ("0.2", &["0.1", "0.2"][..], 5)] {
        let mut ran = 0;
        for case in CASES.iter().filter(|c| versions.contains(&c.since)) {
            let fixture = repo()
                .join("tests/fixtures")
                .join(dir)
                .join(format!("{}.wasm", case.plugin));
            if !fixture.exists() {
                continue;
            }
            let run = weir_test(&fixture, case.input, case.args, 100);
            let what = format!("{} (compiled for {dir})", case.name);
            assert!(run.ok, "{what}: {}", run.stderr);
            assert_eq!(
                run.stdout,
                std::fs::read_to_string(expected(case.name, "out")).unwrap(),
                "{what}"
            );
            assert_eq!(
                run.failures.join("\n"),
                std::fs::read_to_string(expected(case.name, "failures"))
                    .unwrap()
                    .trim_end(),
                "{what}"
            );
            ran += 1;
        }
        assert!(ran >= least, "{dir}: only {ran} cases had a fixture");
    }
}

/// A configuration the plugin refuses stops `weir test` with the plugin's
/// message, in every language.
#[test]
fn init_errors_carry_the_plugins_message() {
    for lang in LANGS {
        let run = weir_test(
            &component(lang, "window-count"),
            "windows",
            &["-c", "window=weekly"],
            100,
        );
        assert!(!run.ok, "{lang}: a bad window kind was accepted");
        assert!(
            run.stderr.contains("config `window` = `weekly`: expected tumbling, hopping, sliding, session, count-tumbling or count-hopping"),
            "{lang}: {}",
            run.stderr
        );
        let run = weir_test(
            &component(lang, "router"),
            "maps",
            &["-c", "route.errors="],
            100,
        );
        assert!(
            !run.ok
                && run
                    .stderr
                    .contains("every `route.<topic>` needs a topic name and a non-empty pattern"),
            "{lang}: {}",
            run.stderr
        );
    }
}

/// An exception (Python), a throw (JavaScript) or an error return (C)
/// rejects the record it came from, with its message; the records around
/// it pass, and the instance is not lost.
#[test]
fn a_guest_error_rejects_only_its_record() {
    for lang in ["python", "js", "c"] {
        for batch_size in [100, 1] {
            let run = weir_test(&component(lang, "hostile-raise"), "raise", &[], batch_size);
            assert!(run.ok, "{lang}: {}", run.stderr);
            let values: Vec<String> = weir_tests::json_lines(&run.stdout)
                .iter()
                .map(|l| l["value"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(values, ["fine", "also fine", "last"], "{lang}");
            assert_eq!(run.failures.len(), 2, "{lang}: {:?}", run.failures);
            for (failure, (line, value)) in
                run.failures.iter().zip([(2, "boom one"), (4, "boom two")])
            {
                assert!(
                    failure.starts_with(&format!(
                        "line {line} (input partition 0 offset {}): rejected: ",
                        line - 1
                    )),
                    "{lang}: {failure}"
                );
                assert!(
                    failure.contains(value),
                    "{lang}: the message names the value: {failure}"
                );
            }
        }
    }
}

/// An endless loop and an allocation without bound inside an interpreter
/// (Python, JavaScript) end at the host's CPU and memory limits as for
/// compiled guests: the record is isolated with the limit's kind, and the
/// records around it pass.
#[test]
fn runaway_interpreters_are_stopped_by_the_host_limits() {
    for lang in ["python", "js"] {
        for (plugin, kind) in [("hostile-loop", "timeout"), ("hostile-memory", "memory")] {
            let run = weir_test(&component(lang, plugin), "raise", &["--cpu-ms", "200"], 100);
            assert!(run.ok, "{lang} {plugin}: {}", run.stderr);
            let values: Vec<String> = weir_tests::json_lines(&run.stdout)
                .iter()
                .map(|l| l["value"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(values, ["fine", "also fine", "last"], "{lang} {plugin}");
            let lines: Vec<&str> = run
                .failures
                .iter()
                .map(|f| f.split(" (").next().unwrap())
                .collect();
            assert_eq!(
                lines,
                ["line 2", "line 4"],
                "{lang} {plugin}: {:?}",
                run.failures
            );
            assert!(
                run.failures
                    .iter()
                    .all(|f| f.contains(&format!("): {kind}: "))),
                "{lang} {plugin}: {:?}",
                run.failures
            );
        }
    }
}

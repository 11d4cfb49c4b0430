//! `weir new`, tried as a new plugin author would for every language:
//! scaffold, build with the one documented command, `weir test` the bundled
//! sample, then run the plugin in `weir dev` (embedded Kafka).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{json_lines, weir_bin};

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `weir dev` with `plugin` (which replays `sample` round after round
/// into a topic of several partitions) until its printed outputs hold every
/// value in `want`, or a minute; returns the values it printed. Its stop
/// must be clean: no errors logged (a client outliving the embedded broker
/// logged `AllBrokersDown`).
fn dev_values(plugin: &Path, sample: &Path, want: &BTreeSet<String>) -> BTreeSet<String> {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(weir_bin())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "20",
            "--plugin",
        ])
        .arg(plugin)
        .arg("--input")
        .arg(sample)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    while !want.is_subset(&seen) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.insert(json_lines(&line)[0]["value"].to_string());
        }
    }
    // SIGTERM: a graceful stop, as Ctrl-C would.
    // SAFETY: kill(2) takes plain integers; the child is ours, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "weir dev: {status}\n{log}");
    assert!(!log.contains(" ERROR "), "weir dev logged errors:\n{log}");
    seen
}

#[test]
fn new_plugins_build_test_and_run_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js", "c"] {
        let name = format!("hello-{lang}");
        let plugin_dir = dir.path().join(&name);
        run(
            Command::new(weir_bin())
                .arg("new")
                .arg(&plugin_dir)
                .args(["--lang", lang]),
            &format!("weir new --lang {lang}"),
        );
        run(
            Command::new(plugin_dir.join("build")).stdout(Stdio::null()),
            &format!("{lang}: ./build"),
        );
        let wasm = plugin_dir.join(format!("{name}.wasm"));
        let sample = plugin_dir.join("sample.jsonl");
        let tested = json_lines(&run(
            Command::new(weir_bin())
                .arg("test")
                .arg(&wasm)
                .arg("-i")
                .arg(&sample),
            &format!("{lang}: weir test"),
        ));
        let inputs = json_lines(&std::fs::read_to_string(&sample).unwrap());
        assert_eq!(
            tested.len(),
            inputs.len(),
            "{lang}: one output per sample record"
        );
        let want: BTreeSet<String> = tested.iter().map(|l| l["value"].to_string()).collect();
        assert_eq!(
            dev_values(&wasm, &sample, &want),
            want,
            "{lang}: weir dev produced what weir test printed"
        );
    }
}

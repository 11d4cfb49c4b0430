//! `weir new`, tried as a new plugin author would for every language:
//! scaffold, build with the one documented command, `weir test` the bundled
//! sample, then run the plugin in `weir dev` (embedded Kafka).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{json_lines, weir_bin};

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weir dev` with `plugin` until it has printed `n` outputs, or a minute.
fn dev_outputs(plugin: &Path, sample: &Path, n: usize) -> Vec<serde_json::Value> {
    let mut child = Command::new(weir_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--interval-ms", "20", "--max-records", &n.to_string(), "--plugin"])
        .arg(plugin)
        .arg("--input")
        .arg(sample)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("weir dev printed fewer than {n} outputs in a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "weir dev: {status}\n{stderr}");
    json_lines(&stdout)
}

#[test]
fn new_plugins_build_test_and_run_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js", "c"] {
        let name = format!("hello-{lang}");
        let plugin_dir = dir.path().join(&name);
        run(Command::new(weir_bin()).arg("new").arg(&plugin_dir).args(["--lang", lang]), &format!("weir new --lang {lang}"));
        run(Command::new(plugin_dir.join("build")).stdout(Stdio::null()), &format!("{lang}: ./build"));
        let wasm = plugin_dir.join(format!("{name}.wasm"));
        let sample = plugin_dir.join("sample.jsonl");
        let tested = json_lines(&run(Command::new(weir_bin()).arg("test").arg(&wasm).arg("-i").arg(&sample), &format!("{lang}: weir test")));
        let inputs = json_lines(&std::fs::read_to_string(&sample).unwrap());
        assert_eq!(tested.len(), inputs.len(), "{lang}: one output per sample record");
        let outputs = dev_outputs(&wasm, &sample, inputs.len());
        // The embedded topic has several partitions: compare without order.
        let values = |lines: &[serde_json::Value]| {
            let mut v: Vec<String> = lines.iter().map(|l| l["value"].to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(values(&outputs), values(&tested), "{lang}: weir dev produced what weir test printed");
    }
}

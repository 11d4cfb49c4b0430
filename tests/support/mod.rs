//! Shared helpers of the end-to-end tests: building and locating the
//! plugins and the `weir` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The cargo target directory the workspace builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// Builds the Rust plugins (once per test process) and returns the path of
/// `name`'s component. Plugins build in their own workspace and target
/// triple, so this never waits on the build of the tests themselves.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // plugins/.cargo/config.toml (target and linker) applies only
            // when cargo runs from there.
            .current_dir(repo().join("plugins"))
            .args(["build", "--release", "--quiet", "--target-dir"])
            .arg(target_dir())
            .status()
            .expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed");
    });
    let path = target_dir()
        .join("wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "plugin {name} not found at {}",
        path.display()
    );
    path
}

/// A Rust plugin built for `wasm32-wasip2` (once per test process): Rust's
/// std then imports WASI, which a hostile plugin may use to wait outside
/// wasm.
pub fn wasip2_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(repo().join("plugins"))
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "-p",
                "hostile-sleep",
                "--target-dir",
            ])
            .arg(target_dir())
            .status()
            .expect("running cargo to build the wasip2 plugins");
        assert!(status.success(), "building the wasip2 plugins failed");
    });
    let path = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "plugin {name} not found at {}",
        path.display()
    );
    path
}

/// `lang`'s version of plugin `name` (`scripts/build-plugins` builds those
/// of other languages than Rust).
pub fn component(lang: &str, name: &str) -> PathBuf {
    if lang == "rust" {
        return plugin(name);
    }
    let path = target_dir()
        .join("plugins")
        .join(lang)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build it with `scripts/build-plugins {lang}`",
        path.display()
    );
    path
}

/// The `weir` binary, built by the test command before the tests run
/// (`scripts/test`, or `cargo build --release -p weir`).
/// `weir test ARGS`, as a user runs it, with `stdin` as its input.
pub fn weir_test(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(weir_bin())
        .arg("test")
        .args(args)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn weir_bin() -> PathBuf {
    let path = target_dir().join("release/weir");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p weir` (scripts/test does)",
        path.display()
    );
    path
}

/// The Python that `scripts/setup --test` installed with confluent-kafka,
/// an independent Kafka client.
pub fn python() -> PathBuf {
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir"));
    let p = cache.join("venv/bin/python");
    assert!(
        p.exists(),
        "no Python with confluent-kafka at {}: run scripts/setup --test",
        p.display()
    );
    p
}

/// Parses JSON Lines output.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect()
}

pub mod browser;
pub mod kafka;
pub mod kerberos;
pub mod oidc;
pub mod registry;
pub mod tenants;

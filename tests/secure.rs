//! Weir on a secured Apache Kafka: a SASL_SSL listener whose certificate a
//! CA of the test's own signs (host names checked), SCRAM-SHA-512, the
//! password read from a file private to its owner. A stateful word count
//! runs exactly-once through it (consumers, the changelog, transactions),
//! and the password shows nowhere; a wrong password, a CA that did not
//! sign the broker's certificate and a password file others may read are
//! each refused at start-up with one line that names the setting.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::kafka::{Broker, Rec, Secure, Weir, deployment, host_config};
use weir_tests::weir_bin;

/// A host config for `deployments` that reaches the broker through its
/// SASL_SSL listener, with `password` (a TOML value) and `ca`.
fn secure_config(sec: &Secure, deployments: &str, password: &str, ca: &Path) -> String {
    host_config(deployments).replace("{brokers}", &sec.bootstrap)
        + &format!(
            r#"
[kafka.security]
ca_file = "{}"
mechanism = "SCRAM-SHA-512"
username = "{}"
password = {password}
[kafka.properties]
"session.timeout.ms" = "6000"
"#,
            ca.display(),
            sec.user
        )
}

fn secret_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("kafka-password-{mode:o}"));
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_word_count_runs_exactly_once_over_sasl_ssl_and_the_password_shows_nowhere() {
    let (broker, sec) = Broker::secure_shared();
    let k = broker.scope();
    k.create_topic("docs", 2);
    k.create_topic("counts", 2);
    k.create_topic("wc.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), &sec.password, 0o600);
    let wc = deployment("wc", "word_count", "docs", "counts", "delivery = \"exactly-once\"");
    let config = secure_config(sec, &wc, &format!("{{ file = \"{}\" }}", password.display()), &sec.ca);
    let host = Weir::start(&dir.path().join("host"), &k, &config);
    host.wait_partitions("wc", 2);

    let words = ["alpha", "beta", "gamma", "delta"];
    // Keyed by their word: a word's count lives in one partition's state.
    let docs: Vec<Rec> = (0..400).map(|i| Rec::new(words[i % 4], &format!("{} {}", words[i % 4], words[i % 4]))).collect();
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &docs {
        for w in d.value_str().split(' ') {
            *want.entry(w).or_default() += 1;
        }
    }
    k.produce("docs", &docs);
    let mut committed_only = k.client();
    committed_only.set("isolation.level", "read_committed");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let out = k.read_with(committed_only, "counts", Duration::from_secs(120), |out| {
        for r in out {
            let n = r.value_str().parse().unwrap();
            let e = last.entry(r.key_str().to_owned()).or_default();
            *e = (*e).max(n);
        }
        want.iter().all(|(w, n)| last.get(*w) == Some(n))
    });
    assert!(want.iter().all(|(w, n)| last.get(*w) == Some(n)), "counts {last:?}, want {want:?}; log:\n{}", host.log_text());
    let total: u64 = want.values().sum();
    assert_eq!(out.len() as u64, total, "exactly once: every count emitted once");
    // The changelog went through the same listener.
    assert!(!k.read("weir.changelog.wc", 1, Duration::from_secs(10)).is_empty(), "the word count's changelog is empty");

    let health = host.health().map(|h| h.to_string()).unwrap_or_default();
    for (what, text) in [("log", host.log_text()), ("metrics", host.metrics()), ("/health", health)] {
        assert!(!text.contains(&sec.password), "the password is in the host's {what}");
    }
}

/// Runs `weir run` on `config` until it exits (60 s at most); its status
/// and what it wrote.
fn run_until_exit(dir: &Path, config: &str) -> (std::process::ExitStatus, String) {
    std::fs::create_dir_all(dir).unwrap();
    let text = config
        .replace("{p}", "refused.")
        .replace("{state}", &dir.join("state").display().to_string())
        .replace("{listen}", "127.0.0.1:0")
        .replace("\"session.timeout.ms\"", "\"socket.connection.setup.timeout.ms\" = \"5000\"\n\"session.timeout.ms\"");
    let path = dir.join("weir.toml");
    std::fs::write(&path, text + "\n").unwrap();
    let mut child =
        Command::new(weir_bin()).args(["run", "--config"]).arg(&path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir run went on with a configuration it should refuse");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (out.status, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_wrong_password_an_unknown_ca_and_an_open_password_file_are_refused_at_start_up() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), &sec.password, 0o600);
    let open = secret_file(dir.path(), &sec.password, 0o644);
    let cases = [
        ("wrong password", "{ env = \"KAFKA_TEST_WRONG_PASSWORD\" }".to_owned(), sec.ca.clone(), "kafka.security.username and password"),
        ("unknown CA", format!("{{ file = \"{}\" }}", good.display()), sec.other_ca.clone(), "kafka.security.ca_file"),
        ("open password file", format!("{{ file = \"{}\" }}", open.display()), sec.ca.clone(), "chmod 600"),
    ];
    // SAFETY: set before any thread of this test reads the environment;
    // the child inherits it.
    unsafe { std::env::set_var("KAFKA_TEST_WRONG_PASSWORD", "not-the-password") };
    for (i, (case, password, ca, names)) in cases.iter().enumerate() {
        let config = secure_config(sec, "", password, ca);
        let (status, said) = run_until_exit(&dir.path().join(i.to_string()), &config);
        assert!(!status.success(), "{case}: weir run succeeded");
        eprintln!("{case}: {}", said.trim());
        assert!(said.contains(names), "{case}: the error does not name {names}:\n{said}");
        assert!(!said.contains(&sec.password) && !said.contains("not-the-password"), "{case}: a password is in the error:\n{said}");
    }
}

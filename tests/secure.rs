//! Weir on a secured Apache Kafka, every client through the secured
//! listeners: TLS whose certificates a CA of the test's own signs (host
//! names checked), with SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) or with
//! client certificates (mutual TLS, PKCS#12 or PEM). A stateful word count
//! runs exactly-once through each (consumers, the changelog,
//! transactions), and no secret shows in the host's log, metrics or
//! health. A wrong password, a CA that did not sign the broker's
//! certificate, a password file others may read, an expired client
//! certificate and a keystore password that does not open the keystore
//! are each refused at start-up with one line that names the setting.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::kafka::{Broker, Rec, Secure, Weir, deployment, host_config};
use weir_tests::weir_bin;

/// A host config for `deployments` that reaches the broker at `bootstrap`
/// with `security` (the lines of `[kafka.security]`).
fn secure_config(bootstrap: &str, deployments: &str, security: &str) -> String {
    host_config(deployments).replace("{brokers}", bootstrap)
        + &format!(
            r#"
[kafka.security]
{security}
[kafka.properties]
"session.timeout.ms" = "6000"
"#
        )
}

/// `[kafka.security]` for SASL `mechanism` as `sec`'s user, trusting `ca`.
fn sasl(sec: &Secure, mechanism: &str, password: &str, ca: &Path) -> String {
    format!("ca_file = \"{}\"\nmechanism = \"{mechanism}\"\nusername = \"{}\"\npassword = {password}", ca.display(), sec.user)
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{name}-{mode:o}"));
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Runs a word count exactly-once through `bootstrap` with `security`,
/// checks every count comes once, the changelog was written, and none of
/// `secrets` shows in the host's log, metrics or health.
fn word_count_through(bootstrap: &str, security: &str, secrets: &[&str]) {
    let (broker, _) = Broker::secure_shared();
    let k = broker.scope();
    k.create_topic("docs", 2);
    k.create_topic("counts", 2);
    k.create_topic("wc.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let wc = deployment("wc", "word_count", "docs", "counts", "delivery = \"exactly-once\"");
    let host = Weir::start(&dir.path().join("host"), &k, &secure_config(bootstrap, &wc, security));
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
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is in the host's {what}");
        }
    }
}

#[test]
fn scram_sha_512_with_a_password_file() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "kafka-password", &sec.password, 0o600);
    word_count_through(&sec.bootstrap, &sasl(sec, "SCRAM-SHA-512", &format!("{{ file = \"{}\" }}", password.display()), &sec.ca), &[&sec.password]);
}

#[test]
fn scram_sha_256_with_a_password_from_the_environment() {
    let (_, sec) = Broker::secure_shared();
    // SAFETY: set before the host starts; no thread of this test reads the
    // environment meanwhile, and the other tests read other variables.
    unsafe { std::env::set_var("KAFKA_TEST_SCRAM_256_PASSWORD", &sec.password) };
    word_count_through(&sec.bootstrap, &sasl(sec, "SCRAM-SHA-256", "{ env = \"KAFKA_TEST_SCRAM_256_PASSWORD\" }", &sec.ca), &[&sec.password]);
}

#[test]
fn sasl_plain_over_tls() {
    let (_, sec) = Broker::secure_shared();
    word_count_through(&sec.bootstrap, &sasl(sec, "PLAIN", &format!("\"{}\"", sec.password), &sec.ca), &[&sec.password]);
}

#[test]
fn mutual_tls_with_a_pkcs12_keystore() {
    let (_, sec) = Broker::secure_shared();
    let security = format!(
        "ca_file = \"{}\"\nkeystore_file = \"{}\"\nkeystore_password = {{ env = \"KAFKA_TEST_KEYSTORE_PASSWORD\" }}",
        sec.ca.display(),
        sec.client_keystore.display()
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("KAFKA_TEST_KEYSTORE_PASSWORD", &sec.keystore_password) };
    word_count_through(&sec.mtls, &security, &[&sec.keystore_password]);
}

#[test]
fn mutual_tls_with_pem_files_and_an_encrypted_key() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "key-password", &sec.keystore_password, 0o600);
    let security = format!(
        "ca_file = \"{}\"\ncertificate_file = \"{}\"\nkey_file = \"{}\"\nkey_password = {{ file = \"{}\" }}",
        sec.ca.display(),
        sec.client_cert.display(),
        sec.client_key.display(),
        password.display()
    );
    word_count_through(&sec.mtls, &security, &[&sec.keystore_password]);
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
fn wrong_secrets_an_unknown_ca_and_an_expired_certificate_are_refused_at_start_up() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "kafka-password", &sec.password, 0o600);
    let open = secret_file(dir.path(), "kafka-password", &sec.password, 0o644);
    let good = format!("{{ file = \"{}\" }}", good.display());
    let keystore = |store: &Path, password: &str| {
        format!("ca_file = \"{}\"\nkeystore_file = \"{}\"\nkeystore_password = \"{password}\"", sec.ca.display(), store.display())
    };
    let wrong = "not-the-password";
    let cases = [
        ("wrong password", &sec.bootstrap, sasl(sec, "SCRAM-SHA-512", &format!("\"{wrong}\""), &sec.ca), "kafka.security.username and password"),
        ("unknown CA", &sec.bootstrap, sasl(sec, "SCRAM-SHA-512", &good, &sec.other_ca), "kafka.security.ca_file"),
        ("open password file", &sec.bootstrap, sasl(sec, "SCRAM-SHA-512", &format!("{{ file = \"{}\" }}", open.display()), &sec.ca), "chmod 600"),
        (
            "expired client certificate",
            &sec.mtls,
            keystore(&sec.expired_keystore, &sec.keystore_password),
            "kafka.security.keystore_file: the certificate `weir-expired`",
        ),
        ("wrong keystore password", &sec.mtls, keystore(&sec.client_keystore, wrong), "kafka.security.keystore_password does not open"),
    ];
    for (i, (case, bootstrap, security, names)) in cases.iter().enumerate() {
        let (status, said) = run_until_exit(&dir.path().join(i.to_string()), &secure_config(bootstrap, "", security));
        assert!(!status.success(), "{case}: weir run succeeded");
        eprintln!("{case}: {}", said.trim());
        assert!(said.contains(names), "{case}: the error does not name {names}:\n{said}");
        for secret in [sec.password.as_str(), sec.keystore_password.as_str(), wrong] {
            assert!(!said.contains(secret), "{case}: a secret is in the error:\n{said}");
        }
    }
}

//! Weir on a secured Apache Kafka, every client through the secured
//! listeners: TLS whose certificates a CA of the test's own signs (host
//! names checked), with SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN,
//! OAUTHBEARER from a loopback OIDC provider, GSSAPI from a loopback
//! Kerberos realm) or with client certificates (mutual TLS, PKCS#12 or
//! PEM). A stateful word count runs exactly-once through each (consumers,
//! the changelog, transactions), and no secret shows in the host's log,
//! metrics or health. Wrong secrets, a CA that did not sign the broker's
//! certificate, a password file others may read, an expired client
//! certificate, a keystore password that does not open the keystore, a
//! token the broker does not trust and a principal the keytab lacks are
//! each refused at start-up with one line that names the setting. Kafka's
//! standard authorizer checks every request: a user with exactly README's
//! ACLs runs everything, and each missing ACL is named.
//!
//! (Over 400 lines: one security mode or refusal per test, against the one secured broker the file
//! starts.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_control::tenants::token_hash;
use weir_tests::kafka::{Broker, Rec, Scope, Secure, Weir, deployment, host_config};
use weir_tests::tenants::{ROOT, call};
use weir_tests::{plugin, weir_bin};

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

/// `[kafka.security]` for SASL `mechanism` as `user`, trusting `ca`.
fn sasl(user: &str, mechanism: &str, password: &str, ca: &Path) -> String {
    format!(
        "ca_file = \"{}\"\nmechanism = \"{mechanism}\"\nusername = \"{user}\"\npassword = {password}",
        ca.display()
    )
}

/// `[kafka.security]` for OAUTHBEARER as OIDC client `client_id` of
/// `sec`'s provider, its secret `secret` (a TOML value).
fn oauth(sec: &Secure, client_id: &str, secret: &str) -> String {
    format!(
        "ca_file = \"{}\"\nmechanism = \"OAUTHBEARER\"\noauth = {{ token_endpoint = \"{}\", client_id = \"{client_id}\", client_secret = {secret}, scope = \"kafka\" }}",
        sec.ca.display(),
        sec.oidc.token_endpoint
    )
}

/// `[kafka.security]` for GSSAPI as `principal`, with the keytab of `sec`'s
/// realm.
fn kerberos(sec: &Secure, principal: &str) -> String {
    format!(
        "ca_file = \"{}\"\nmechanism = \"GSSAPI\"\nkerberos = {{ principal = \"{principal}\", keytab = \"{}\" }}",
        sec.ca.display(),
        sec.kerberos.client_keytab.display()
    )
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
    word_count_in(
        &Broker::secure_shared().0.scope(),
        &secure_config(bootstrap, "{wc}", security),
        None,
        &[],
        secrets,
    );
}

/// [`word_count_through`] in scope `k` with host config `config`, whose
/// `{wc}` stands for the word count's lines, asking the host with token
/// `admin` if it has one, its process with `env` added; returns the host
/// and its directory.
fn word_count_in(
    k: &Scope,
    config: &str,
    admin: Option<&str>,
    env: &[(&str, String)],
    secrets: &[&str],
) -> (tempfile::TempDir, Weir) {
    k.create_topic("docs", 2);
    k.create_topic("counts", 2);
    k.create_topic("wc.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let wc = deployment(
        "wc",
        "word_count",
        "docs",
        "counts",
        "delivery = \"exactly-once\"",
    );
    let mut host = Weir::start_with_env(
        &dir.path().join("host"),
        k,
        &config.replace("{wc}", &wc),
        env,
    );
    if let Some(token) = admin {
        host.authorize(token);
    }
    host.wait_partitions("wc", 2);

    let words = ["alpha", "beta", "gamma", "delta"];
    // Keyed by their word: a word's count lives in one partition's state.
    let docs: Vec<Rec> = (0..400)
        .map(|i| Rec::new(words[i % 4], &format!("{} {}", words[i % 4], words[i % 4])))
        .collect();
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
    assert!(
        want.iter().all(|(w, n)| last.get(*w) == Some(n)),
        "counts {last:?}, want {want:?}; log:\n{}",
        host.log_text()
    );
    let total: u64 = want.values().sum();
    assert_eq!(
        out.len() as u64,
        total,
        "exactly once: every count emitted once"
    );
    // The changelog went through the same listener.
    assert!(
        !k.read("weir.changelog.wc", 1, Duration::from_secs(10))
            .is_empty(),
        "the word count's changelog is empty"
    );

    let health = host.health().map(|h| h.to_string()).unwrap_or_default();
    for (what, text) in [
        ("log", host.log_text()),
        ("metrics", host.metrics()),
        ("/health", health),
    ] {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is in the host's {what}");
        }
    }
    (dir, host)
}

#[test]
fn scram_sha_512_with_a_password_file() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "kafka-password", &sec.password, 0o600);
    word_count_through(
        &sec.bootstrap,
        &sasl(
            &sec.user,
            "SCRAM-SHA-512",
            &format!("{{ file = \"{}\" }}", password.display()),
            &sec.ca,
        ),
        &[&sec.password],
    );
}

#[test]
fn scram_sha_256_with_a_password_from_the_environment() {
    let (_, sec) = Broker::secure_shared();
    // SAFETY: set before the host starts; no thread of this test reads the
    // environment meanwhile, and the other tests read other variables.
    unsafe { std::env::set_var("KAFKA_TEST_SCRAM_256_PASSWORD", &sec.password) };
    word_count_through(
        &sec.bootstrap,
        &sasl(
            &sec.user,
            "SCRAM-SHA-256",
            "{ env = \"KAFKA_TEST_SCRAM_256_PASSWORD\" }",
            &sec.ca,
        ),
        &[&sec.password],
    );
}

#[test]
fn sasl_plain_over_tls() {
    let (_, sec) = Broker::secure_shared();
    word_count_through(
        &sec.bootstrap,
        &sasl(
            &sec.user,
            "PLAIN",
            &format!("\"{}\"", sec.password),
            &sec.ca,
        ),
        &[&sec.password],
    );
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

#[test]
fn oauthbearer_with_oidc_client_credentials() {
    let (broker, sec) = Broker::secure_shared();
    let oidc = &sec.oidc;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "oidc-secret", &oidc.client_secret, 0o600);
    let security = oauth(
        sec,
        &oidc.client_id,
        &format!("{{ file = \"{}\" }}", secret.display()),
    );
    let before = oidc.issued().len();
    let (_dir, host) = word_count_in(
        &broker.scope(),
        &secure_config(&sec.oauth, "{wc}", &security),
        None,
        &[],
        &[&oidc.client_secret],
    );
    // librdkafka fetched tokens, and none of them shows either.
    let tokens = oidc.issued()[before..].to_vec();
    assert!(
        !tokens.is_empty(),
        "the host connected without a token of the provider"
    );
    let health = host.health().map(|h| h.to_string()).unwrap_or_default();
    for (what, text) in [
        ("log", host.log_text()),
        ("metrics", host.metrics()),
        ("/health", health),
    ] {
        // The signature is the part that must stay secret.
        for signature in tokens.iter().filter_map(|t| t.rsplit('.').next()) {
            assert!(
                !text.contains(signature),
                "an access token is in the host's {what}"
            );
        }
    }
}

#[test]
fn kerberos_with_a_keytab() {
    let (broker, sec) = Broker::secure_shared();
    let krb = &sec.kerberos;
    let tickets = tempfile::tempdir().unwrap();
    let security = kerberos(sec, &krb.client_principal);
    // `localhost` may resolve to ::1 first, where the broker does not listen.
    let config = secure_config(&sec.kerberos_bootstrap, "{wc}", &security)
        + "\"broker.address.family\" = \"v4\"\n";
    word_count_in(
        &broker.scope(),
        &config,
        None,
        &krb.env(&tickets.path().join("ccache")),
        &[],
    );
}

/// Runs `weir run` on `config` until it exits (60 s at most); its status
/// and what it wrote.
fn run_until_exit(dir: &Path, config: &str) -> (std::process::ExitStatus, String) {
    std::fs::create_dir_all(dir).unwrap();
    let text = config
        .replace("{p}", "refused.")
        .replace("{state}", &dir.join("state").display().to_string())
        .replace("{listen}", "127.0.0.1:0")
        .replace(
            "{plugins}",
            &weir_tests::plugin("word_count")
                .parent()
                .unwrap()
                .display()
                .to_string(),
        )
        .replace(
            "\"session.timeout.ms\"",
            "\"socket.connection.setup.timeout.ms\" = \"5000\"\n\"session.timeout.ms\"",
        );
    let path = dir.join("weir.toml");
    std::fs::write(&path, text + "\n").unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&path)
        // Kerberos tickets of its own: never another test's.
        .envs(Broker::secure_shared().1.kerberos.env(&dir.join("ccache")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "weir run went on with a configuration it should refuse:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn wrong_secrets_an_unknown_ca_and_an_expired_certificate_are_refused_at_start_up() {
    let (_, sec) = Broker::secure_shared();
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "kafka-password", &sec.password, 0o600);
    let open = secret_file(dir.path(), "kafka-password", &sec.password, 0o644);
    let good = format!("{{ file = \"{}\" }}", good.display());
    let keystore = |store: &Path, password: &str| {
        format!(
            "ca_file = \"{}\"\nkeystore_file = \"{}\"\nkeystore_password = \"{password}\"",
            sec.ca.display(),
            store.display()
        )
    };
    let wrong = "not-the-password";
    let cases = [
        (
            "wrong password",
            &sec.bootstrap,
            sasl(&sec.user, "SCRAM-SHA-512", &format!("\"{wrong}\""), &sec.ca),
            "kafka.security.username and password",
        ),
        (
            "unknown CA",
            &sec.bootstrap,
            sasl(&sec.user, "SCRAM-SHA-512", &good, &sec.other_ca),
            "kafka.security.ca_file",
        ),
        (
            "open password file",
            &sec.bootstrap,
            sasl(
                &sec.user,
                "SCRAM-SHA-512",
                &format!("{{ file = \"{}\" }}", open.display()),
                &sec.ca,
            ),
            "chmod 600",
        ),
        (
            "expired client certificate",
            &sec.mtls,
            keystore(&sec.expired_keystore, &sec.keystore_password),
            "kafka.security.keystore_file: the certificate `weir-expired`",
        ),
        (
            "wrong keystore password",
            &sec.mtls,
            keystore(&sec.client_keystore, wrong),
            "kafka.security.keystore_password does not open",
        ),
        (
            "wrong OIDC client secret",
            &sec.oauth,
            oauth(sec, &sec.oidc.client_id, &format!("\"{wrong}\"")),
            "kafka.security.oauth",
        ),
        (
            "OIDC token the brokers do not trust",
            &sec.oauth,
            oauth(sec, "rogue", &format!("\"{}\"", sec.oidc.client_secret)),
            "kafka.security.oauth",
        ),
        (
            "Kerberos principal not in the keytab",
            &sec.kerberos_bootstrap,
            kerberos(sec, "nobody@WEIR.TEST"),
            "kafka.security.kerberos",
        ),
    ];
    for (i, (case, bootstrap, security, names)) in cases.iter().enumerate() {
        let (status, said) = run_until_exit(
            &dir.path().join(i.to_string()),
            &secure_config(bootstrap, "", security),
        );
        assert!(!status.success(), "{case}: weir run succeeded");
        eprintln!("{case}: {}", said.trim());
        assert!(
            said.contains(names),
            "{case}: the error does not name {names}:\n{said}"
        );
        for secret in [
            sec.password.as_str(),
            sec.keystore_password.as_str(),
            sec.oidc.client_secret.as_str(),
            wrong,
        ] {
            assert!(
                !said.contains(secret),
                "{case}: a secret is in the error:\n{said}"
            );
        }
    }
}

/// What README's "ACLs" section lists for a host with group prefix
/// `{p}weir` running the word count (`docs` to `counts`, dead letters to
/// `wc.dlq`) exactly-once: `RESOURCE PATTERN NAME OPERATION` lines.
const WORD_COUNT_ACLS: &str = "
topic literal {p}docs read
topic literal {p}counts write
topic literal {p}counts describe_configs
topic literal {p}wc.dlq write
topic literal {p}wc.dlq describe_configs
topic literal {p}wc.dlq read
topic prefixed {p}weir. create
topic prefixed {p}weir. read
topic prefixed {p}weir. write
topic prefixed {p}weir. describe_configs
group prefixed {p}weir. read
transactional_id prefixed {p}weir. write
";

#[test]
fn the_acls_the_readme_lists_are_enough() {
    let (broker, sec) = Broker::secure_shared();
    let k = broker.scope();
    // The word count's, and those of `upper` from `raw` to `shout`, which
    // comes through the admin API (the registry topics, a group and a
    // changelog of its own).
    let upper = "topic literal {p}raw read\ntopic literal {p}shout write\ntopic literal {p}shout describe_configs\n\
                 topic literal {p}shout.dlq write\ntopic literal {p}shout.dlq describe_configs\ntopic literal {p}shout.dlq read\n";
    k.grant(
        &format!("User:{}", sec.limited_user),
        &format!("{WORD_COUNT_ACLS}{upper}"),
    );
    for (t, n) in [("raw", 2), ("shout", 2), ("shout.dlq", 1)] {
        k.create_topic(t, n);
    }
    let security = sasl(
        &sec.limited_user,
        "SCRAM-SHA-512",
        &format!("\"{}\"", sec.limited_password),
        &sec.ca,
    );
    let config = secure_config(&sec.bootstrap, "{wc}", &security)
        + &format!("[admin]\ntoken_sha256 = \"{}\"\n", token_hash(ROOT));
    let secret = sec.limited_password.as_str();
    let (_dir, host) = word_count_in(&k, &config, Some(ROOT), &[], &[secret]);

    let (code, up) = call(
        &host,
        Method::PUT,
        "/v1/modules",
        ROOT,
        Some(std::fs::read(plugin("upper")).unwrap()),
    );
    assert_eq!(code, StatusCode::CREATED, "{up}");
    let spec = json!({ "module": up["module"], "inputs": [k.name("raw")], "output": k.name("shout"), "dead_letter_topic": k.name("shout.dlq") });
    let (code, v) = call(
        &host,
        Method::POST,
        "/v1/deployments/upper",
        ROOT,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert!(code.is_success(), "{v}");
    host.wait_partitions("upper", 2);
    k.produce("raw", &[Rec::new("a", "quiet")]);
    let out = k.read("shout", 1, Duration::from_secs(60));
    assert_eq!(out[0].value_str(), "QUIET");

    let log = host.log_text();
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        let refused =
            line.to_lowercase().contains("authoriz") || line.contains("ACLs do not allow");
        assert!(!refused, "the host was refused something:\n{log}");
    }
    assert_eq!(host.health().unwrap()["status"], "ok");
    // What the admin API answers and the registry holds carries no secret.
    for path in [
        "/v1/deployments",
        "/v1/deployments/upper",
        "/v1/deployments/upper/logs",
        "/v1/deployments/upper/dead-letters",
        "/health",
        "/metrics",
    ] {
        let (code, answer) = call(&host, Method::GET, path, ROOT, None);
        assert!(code.is_success(), "{path}: {code}");
        assert!(
            !answer.to_string().contains(secret),
            "a secret is in {path}"
        );
    }
    for topic in ["weir.registry.deployments", "weir.registry.modules"] {
        for r in k.read(topic, 1, Duration::from_secs(10)) {
            let bytes = [r.key.unwrap_or_default(), r.value.unwrap_or_default()].concat();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret is in {topic}"
            );
        }
    }
}

#[test]
fn a_missing_acl_is_named_at_start_up() {
    let (broker, sec) = Broker::secure_shared();
    let k = broker.scope();
    let dir = tempfile::tempdir().unwrap();
    let security = sasl(
        &sec.limited_user,
        "SCRAM-SHA-512",
        &format!("\"{}\"", sec.limited_password),
        &sec.ca,
    );
    let cases = [
        ("topic literal {p}docs read", "READ on topic `{p}docs`"),
        (
            "topic literal {p}counts write",
            "WRITE on topic `{p}counts`",
        ),
        (
            "topic prefixed {p}weir. create",
            "CREATE on topic `{p}weir.changelog.wc`",
        ),
        ("group prefixed {p}weir. read", "READ on group `{p}weir.wc`"),
        (
            "transactional_id prefixed {p}weir. write",
            "WRITE on transactional id `{p}weir.probe.wc`",
        ),
    ];
    for (i, (missing, named)) in cases.into_iter().enumerate() {
        let k = k.within(&format!("c{i}"));
        for (t, n) in [("docs", 2), ("counts", 2), ("wc.dlq", 1)] {
            k.create_topic(t, n);
        }
        let acls: String = WORD_COUNT_ACLS
            .lines()
            .filter(|l| l.trim() != missing)
            .map(|l| format!("{l}\n"))
            .collect();
        k.grant(&format!("User:{}", sec.limited_user), &acls);
        let wc = deployment(
            "wc",
            "word_count",
            "docs",
            "counts",
            "delivery = \"exactly-once\"",
        );
        let config = secure_config(&sec.bootstrap, &wc, &security).replace("{p}", &k.prefix);
        let (status, said) = run_until_exit(&dir.path().join(i.to_string()), &config);
        let named = named.replace("{p}", &k.prefix);
        assert!(!status.success(), "without `{missing}`: weir run succeeded");
        assert!(
            said.contains(&format!(
                "the Kafka ACLs do not allow the host's principal {named}"
            )),
            "without `{missing}`, the error does not name {named}:\n{said}"
        );
    }
}

#[test]
fn a_permission_taken_away_while_running_shows_until_given_back() {
    let (broker, sec) = Broker::secure_shared();
    let k = broker.scope();
    let principal = format!("User:{}", sec.limited_user);
    // Without DESCRIBE_CONFIGS on an output the host runs, and says what
    // it assumes.
    let acls: String = WORD_COUNT_ACLS
        .lines()
        .filter(|l| *l != "topic literal {p}counts describe_configs")
        .map(|l| format!("{l}\n"))
        .collect();
    k.grant(&principal, &acls);
    for (t, n) in [("docs", 2), ("counts", 2), ("wc.dlq", 1)] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let security = sasl(
        &sec.limited_user,
        "SCRAM-SHA-512",
        &format!("\"{}\"", sec.limited_password),
        &sec.ca,
    );
    let wc = deployment("wc", "word_count", "docs", "counts", "");
    let host = Weir::start(
        &dir.path().join("host"),
        &k,
        &secure_config(&sec.bootstrap, &wc, &security),
    );
    host.wait_partitions("wc", 2);
    let assumed = host
        .log_text()
        .lines()
        .any(|l| l.contains("DESCRIBE_CONFIGS") && l.contains(&k.name("counts")));
    assert!(
        assumed,
        "the log does not say the limit of `counts` is assumed:\n{}",
        host.log_text()
    );
    k.produce("docs", &[Rec::new("a", "alpha")]);
    k.read("counts", 1, Duration::from_secs(60));

    // Taken away, a permission shows as `denied`, named, and the host as
    // degraded; given back, it clears with nothing consumed (an idle
    // input), and the deployment goes on by itself.
    let denied =
        |h: &serde_json::Value| h["deployments"]["wc"]["denied"].as_str().map(str::to_owned);
    let wait = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let h = host.health().unwrap_or_default();
            if done(&h) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within 90 s: {h}; log:\n{}",
                host.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let cases = [
        (
            "group prefixed {p}weir. read\n",
            format!("READ on group `{}`", k.name("weir.wc")),
        ),
        (
            "topic literal {p}docs read\n",
            format!("READ on topic `{}`", k.name("docs")),
        ),
    ];
    for (n, (acl, named)) in cases.iter().enumerate() {
        k.revoke(&principal, acl);
        let health = wait(&format!("{named} denied"), &|h| {
            denied(h).is_some_and(|d| d.contains(named.as_str()))
        });
        assert_eq!(health["status"], "degraded");
        assert!(host.log_text().contains(named.as_str()));
        k.grant(&principal, acl);
        wait(&format!("{named} allowed again"), &|h| {
            denied(h).is_none() && h["status"] == "ok"
        });
        k.produce("docs", &[Rec::new("b", &format!("beta{n}"))]);
        let out = k.read("counts", n + 2, Duration::from_secs(120));
        assert_eq!(out.len(), n + 2, "log:\n{}", host.log_text());
    }
}

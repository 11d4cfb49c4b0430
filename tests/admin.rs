//! The admin API and registry end to end on Apache Kafka: hosts that
//! share a registry in Kafka, deployments uploaded through one host and run
//! on all, upgrades that keep state, rollbacks, tenants kept apart.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client as Http;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weir_control::tenants::token_hash;
use weir_tests::kafka::{Broker, Rec, Scope, Weir, now_ms, produce_slowly};
use weir_tests::tenants::{self, ACME, EVIL, ROOT, call};
use weir_tests::{component, plugin, weir_bin};

/// A host config with the admin, tenant `acme` and tenant `evil` (tight
/// quotas).
fn config() -> String {
    tenants::config(
        "",
        "",
        "{ memory_mb = 32, cpu_ms_per_batch = 300, max_outputs_per_record = 100, max_state_bytes = 1048576, max_module_mb = 1 }",
    )
}

fn start_host(dir: &Path, k: &Scope) -> Weir {
    tenants::start_host(dir, k, &config())
}

/// Runs a `weir` admin verb against `host` as a user would.
fn weir(host: &Weir, token: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(weir_bin())
        .args(args)
        .env("WEIR_URL", format!("http://{}", host.listen))
        .env("WEIR_TOKEN", token)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn status(host: &Weir, token: &str, name: &str) -> Value {
    call(
        host,
        Method::GET,
        &format!("/v1/deployments/{name}"),
        token,
        None,
    )
    .1
}

/// Waits until `check` holds for the deployment's status on `host`.
fn wait_status(
    host: &Weir,
    token: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = status(host, token, name);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what} did not happen within 90 s; status {s:#}\nlog:\n{}",
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn partitions(s: &Value) -> Vec<i64> {
    s["host"]["partitions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// One word per record, `words` distinct words round robin.
fn words(from: usize, n: usize, words: usize) -> Vec<Rec> {
    let base = now_ms();
    // Keyed by the word, so each word's records share a partition (and its
    // state).
    (from..from + n)
        .map(|i| {
            let word = format!("w{}", i % words);
            Rec {
                key: Some(word.clone().into_bytes()),
                value: Some(word.into_bytes()),
                timestamp: Some(base + i as i64),
                ..Rec::default()
            }
        })
        .collect()
}

/// Each word's counts, in the order they were produced.
fn counts(out: &[Rec]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in out {
        m.entry(r.key_str().to_owned())
            .or_default()
            .push(r.value_str().parse().unwrap());
    }
    m
}

/// Every word counted 1, 2, ..., n in order: nothing lost, nothing counted
/// twice, no state forgotten.
fn assert_contiguous(out: &[Rec], words: usize, per_word: u64) {
    let c = counts(out);
    assert_eq!(c.len(), words, "words seen");
    for (word, seq) in &c {
        let expected: Vec<u64> = (1..=per_word).collect();
        assert_eq!(seq, &expected, "counts of `{word}`");
    }
}

#[test]
fn deployments_uploaded_through_one_host_run_on_all_and_upgrade_keeping_state() {
    let k = Broker::shared().scope();
    k.create_topic("acme.text", 4);
    k.create_topic("acme.counts", 2);
    k.create_topic("acme.counts.dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k);

    // Deploy through host A; host B starts later and picks it up.
    let wc = plugin("word-count");
    let wc = wc.to_str().unwrap();
    let (ok, text) = weir(
        &a,
        ACME,
        &[
            "deploy",
            "wc",
            "--plugin",
            wc,
            "--input",
            &k.name("acme.text"),
            "--output",
            &k.name("acme.counts"),
        ],
    );
    assert!(ok, "{text}\n{}", a.log_text());
    let b = start_host(&dir.path().join("b"), &k);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (sa, sb) = loop {
        let (sa, sb) = (status(&a, ACME, "wc"), status(&b, ACME, "wc"));
        let mut both = [partitions(&sa), partitions(&sb)].concat();
        both.sort_unstable();
        if both == [0, 1, 2, 3] && !partitions(&sa).is_empty() && !partitions(&sb).is_empty() {
            break (sa, sb);
        }
        assert!(
            Instant::now() < deadline,
            "the hosts did not share the partitions within 90 s: {sa:#} {sb:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let v1 = sa["module"].as_str().unwrap().to_owned();
    assert_eq!(sb["module"], sa["module"]);
    let (ok, listed) = weir(&b, ACME, &["list"]);
    assert!(
        ok && listed.contains("wc") && listed.contains("running"),
        "{listed}"
    );

    // Upgrade through host B while records flow: Rust to C, same state.
    let producer = produce_slowly(&k, "acme.text", words(0, 4_000, 20), 8.0);
    std::thread::sleep(Duration::from_secs(3));
    let c_wc = component("c", "word-count");
    let (ok, text) = weir(
        &b,
        ACME,
        &["upgrade", "wc", "--plugin", c_wc.to_str().unwrap()],
    );
    assert!(ok, "{text}\n{}", b.log_text());
    for host in [&a, &b] {
        let s = wait_status(host, ACME, "wc", "the upgrade passing its trial", |s| {
            s["host"]["module"] != v1 && s["host"]["on_trial"] == false
        });
        assert_eq!(s["version"], 2);
        assert!(s["rolled_back"].is_null(), "{s:#}");
    }
    producer.join().unwrap();
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 4_000);
    assert_eq!(
        out.len(),
        4_000,
        "every record processed once, by one version or the other"
    );
    assert_contiguous(&out, 20, 200);
    let v2 = status(&a, ACME, "wc")["module"]
        .as_str()
        .unwrap()
        .to_owned();

    // An upgrade whose first batch fails is rolled back on every host, and
    // the failed batch runs on the old module: counts go on without a gap.
    let trap = plugin("hostile-trap");
    let (ok, text) = weir(
        &a,
        ACME,
        &["upgrade", "wc", "--plugin", trap.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let trapping = status(&a, ACME, "wc")["module"]
        .as_str()
        .unwrap()
        .to_owned();
    for host in [&a, &b] {
        wait_status(host, ACME, "wc", "the upgrade reaching the host", |s| {
            s["host"]["module"] == trapping.as_str()
        });
    }
    k.produce("acme.text", &words(4_000, 400, 20));
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 4_400);
    assert_eq!(out.len(), 4_400);
    assert_contiguous(&out, 20, 220);
    for host in [&a, &b] {
        let s = wait_status(
            host,
            ACME,
            "wc",
            "the rollback reaching the registry",
            |s| s["module"] == v2.as_str() && s["version"] == 4,
        );
        assert!(
            s["rolled_back"].as_str().unwrap().contains("hostile-trap"),
            "{s:#}"
        );
        assert_eq!(s["host"]["module"], v2.as_str());
    }
    assert!(
        a.metrics().contains("weir_upgrade_rollbacks_total")
            || b.metrics().contains("weir_upgrade_rollbacks_total")
    );

    // Pause stops consumption everywhere; resume goes on where it stopped.
    let (ok, text) = weir(&a, ACME, &["pause", "wc"]);
    assert!(ok, "{text}");
    for host in [&a, &b] {
        wait_status(host, ACME, "wc", "pausing", |s| {
            s["status"] == "paused" && s["host"].is_null()
        });
    }
    k.produce("acme.text", &words(4_400, 100, 20));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        k.read("acme.counts", 4_401, Duration::from_secs(5)).len(),
        4_400,
        "a paused deployment consumes nothing"
    );
    let (ok, text) = weir(&b, ACME, &["resume", "wc"]);
    assert!(ok, "{text}");
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 4_500);
    assert_contiguous(&out, 20, 225);

    // Undeploy dropping state: gone from every host and from the registry.
    let (ok, text) = weir(&a, ACME, &["undeploy", "wc", "--drop-state"]);
    assert!(ok, "{text}");
    for host in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while host
            .health()
            .is_some_and(|h| h["deployments"].as_object().is_some_and(|d| !d.is_empty()))
        {
            assert!(
                Instant::now() < deadline,
                "still running after undeploy:\n{}",
                host.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            call(host, Method::GET, "/v1/deployments/wc", ACME, None).0,
            StatusCode::NOT_FOUND
        );
    }
    // Deployed again under the same name, it starts from nothing.
    let (ok, text) = weir(
        &b,
        ACME,
        &[
            "deploy",
            "wc",
            "--plugin",
            wc,
            "--input",
            &k.name("acme.text"),
            "--output",
            &k.name("acme.counts"),
        ],
    );
    assert!(ok, "{text}");
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 9_000);
    assert_eq!(
        out.len(),
        9_000,
        "the new incarnation reprocesses the topic from the start"
    );
    assert_contiguous(&out[4_500..], 20, 225);
}

/// Deploys `plugin` for `token`'s tenant through the HTTP API.
fn deploy(host: &Weir, token: &str, name: &str, plugin: &Path, spec: Value) -> (StatusCode, Value) {
    let (code, up) = call(
        host,
        Method::PUT,
        "/v1/modules",
        token,
        Some(std::fs::read(plugin).unwrap()),
    );
    assert_eq!(code, StatusCode::CREATED, "{up}");
    let mut spec = spec;
    spec["module"] = up["module"].clone();
    call(
        host,
        Method::POST,
        &format!("/v1/deployments/{name}"),
        token,
        Some(serde_json::to_vec(&spec).unwrap()),
    )
}

#[test]
fn a_hostile_tenant_hurts_nobody_else() {
    let k = Broker::shared().scope();
    for (t, n) in [
        ("acme.in", 2),
        ("acme.out", 1),
        ("acme.out.dlq", 1),
        ("evil.in", 1),
        ("evil.out", 1),
        ("evil.out.dlq", 1),
    ] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k);
    // (deployment, plugin, config, what each of its records runs into)
    let hostile = [
        ("trap", plugin("hostile-trap"), json!({}), "trap"),
        ("loop", plugin("hostile-loop"), json!({}), "timeout"),
        ("memory", plugin("hostile-memory"), json!({}), "memory"),
        ("recursion", plugin("hostile-recursion"), json!({}), "stack"),
        // A flood of 1,000 copies per record breaks the quota of 100.
        (
            "flood",
            plugin("hostile-flood"),
            json!({ "count": "1000" }),
            "output-limit",
        ),
        ("state", plugin("hostile-state"), json!({}), "state-limit"),
        (
            "sleep",
            weir_tests::wasip2_plugin("hostile-sleep"),
            json!({ "mode": "forever" }),
            "timeout",
        ),
        // 16 MiB values: larger than the changelog takes, before the budget
        // would stop the undo log.
        (
            "undo",
            plugin("hostile-host"),
            json!({ "attack": "undo" }),
            "state-limit",
        ),
        (
            "spans",
            plugin("hostile-host"),
            json!({ "attack": "header-span" }),
            "memory",
        ),
    ];
    for (name, plugin, config, _) in &hostile {
        let (code, v) = deploy(
            &host,
            EVIL,
            name,
            plugin,
            json!({ "inputs": [k.name("evil.in")], "output": k.name("evil.out"), "config": config }),
        );
        assert_eq!(code, StatusCode::CREATED, "{name}: {v}");
    }
    let (code, v) = deploy(
        &host,
        ACME,
        "upper",
        &plugin("upper"),
        json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");

    let evil_in: Vec<Rec> = (0..40)
        .map(|i| Rec::new(&format!("e{i}"), &format!("bad {i}")))
        .collect();
    k.produce("evil.in", &evil_in);
    let good: Vec<Rec> = (0..5_000)
        .map(|i| Rec::new(&format!("k{i}"), &format!("value {i}")))
        .collect();
    k.produce("acme.in", &good);

    // Every output, and nothing else (at-least-once may repeat some).
    let expected: BTreeSet<String> = good.iter().map(|r| r.value_str().to_uppercase()).collect();
    let out = k.read_until("acme.out", Duration::from_secs(120), |o| {
        o.iter()
            .map(|r| r.value_str())
            .collect::<BTreeSet<_>>()
            .len()
            >= expected.len()
    });
    let values: BTreeSet<String> = out.iter().map(|r| r.value_str().to_owned()).collect();
    assert!(
        values == expected,
        "the good tenant's outputs are complete and correct: {} of {} distinct, {} read",
        values.len(),
        expected.len(),
        out.len()
    );

    // Every hostile record is dead-lettered with what it ran into (the
    // state flood's first records fit its quota and pass).
    let expect: Vec<(&str, &str)> = hostile
        .iter()
        .map(|(name, _, _, kind)| (*name, *kind))
        .collect();
    let tally = |dlq: &[Rec]| {
        let mut kinds: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for r in dlq {
            *kinds
                .entry(r.header("weir.deployment").unwrap().to_owned())
                .or_default()
                .entry(r.header("weir.error.kind").unwrap().to_owned())
                .or_default() += 1;
        }
        kinds
    };
    let all_in = |kinds: &BTreeMap<String, BTreeMap<String, usize>>| {
        expect.iter().all(|(name, kind)| {
            kinds
                .get(&format!("evil.{name}"))
                .and_then(|k| k.get(*kind))
                .is_some_and(|&n| *name == "state" || n == 40)
        })
    };
    let dlq = k.read_until("evil.out.dlq", Duration::from_secs(240), |o| {
        all_in(&tally(o))
    });
    let kinds = tally(&dlq);
    assert!(
        all_in(&kinds),
        "{kinds:#?}
{}",
        host.log_text()
    );
    for (name, kind) in expect {
        let got = &kinds[&format!("evil.{name}")];
        assert_eq!(got.keys().collect::<Vec<_>>(), [kind], "{name}: {got:?}");
    }
    let metrics = host.metrics();
    assert!(
        metrics.contains("tenant=\"evil\""),
        "metrics are labelled by tenant"
    );
    assert!(
        host.health().is_some(),
        "the host is alive:\n{}",
        host.log_text()
    );
    let listed = call(&host, Method::GET, "/v1/deployments", EVIL, None).1;
    assert_eq!(
        listed.as_array().unwrap().len(),
        hostile.len(),
        "the evil tenant sees only its own: {listed:#}"
    );
}

#[test]
fn tokens_topics_and_uploads_are_checked() {
    let k = Broker::shared().scope();
    for (t, n) in [
        ("acme.in", 1),
        ("acme.out", 1),
        ("acme.out.dlq", 1),
        ("evil.in", 1),
        ("evil.out", 1),
    ] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k);
    let mut spec = json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") });
    spec["config"] = json!({ format!("route.{}", k.name("evil.out")): "steal" });
    let (code, v) = deploy(&host, ACME, "router", &plugin("router"), spec);
    assert_eq!(code, StatusCode::CREATED, "{v}");

    // Every endpoint refuses a missing token, a wrong one, and another
    // tenant's (which cannot even name acme's deployments).
    let endpoints = [
        (Method::PUT, "/v1/modules"),
        (Method::GET, "/v1/deployments"),
        (Method::GET, "/v1/deployments/router"),
        (Method::POST, "/v1/deployments/router"),
        (Method::PUT, "/v1/deployments/router"),
        (Method::DELETE, "/v1/deployments/router"),
        (Method::POST, "/v1/deployments/router/pause"),
        (Method::POST, "/v1/deployments/router/resume"),
        (Method::GET, "/v1/deployments/router/logs"),
    ];
    for (method, path) in &endpoints {
        for token in ["", "wrong", token_hash(ACME).as_str()] {
            let (code, v) = call(&host, method.clone(), path, token, Some(b"{}".to_vec()));
            assert_eq!(
                code,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {v}"
            );
        }
        let (code, v) = call(
            &host,
            method.clone(),
            &format!("{path}?tenant=acme"),
            EVIL,
            Some(b"{}".to_vec()),
        );
        assert_eq!(
            code,
            StatusCode::FORBIDDEN,
            "{method} {path} as evil for acme: {v}"
        );
    }
    for (method, path) in &endpoints[2..] {
        let (code, v) = call(&host, method.clone(), path, EVIL, Some(b"{}".to_vec()));
        assert!(
            code == StatusCode::NOT_FOUND || code == StatusCode::BAD_REQUEST,
            "{method} {path} as evil: {code} {v}"
        );
    }
    wait_status(&host, ACME, "router", "running, untouched", |s| {
        s["status"] == "running"
    });
    assert_eq!(
        call(
            &host,
            Method::GET,
            "/v1/deployments?tenant=acme",
            ROOT,
            None
        )
        .1
        .as_array()
        .unwrap()
        .len(),
        1,
        "the admin sees acme's"
    );

    // Topics of another tenant are refused at deploy time.
    for spec in [
        json!({ "inputs": [k.name("acme.in")], "output": k.name("evil.out") }),
        json!({ "inputs": [k.name("evil.in")], "output": k.name("acme.out") }),
    ] {
        let (code, v) = deploy(&host, EVIL, "thief", &plugin("upper"), spec);
        assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("outside the tenant's"),
            "{v}"
        );
    }
    // So are limits above the quota.
    let (code, v) = deploy(
        &host,
        EVIL,
        "greedy",
        &plugin("upper"),
        json!({ "inputs": [k.name("evil.in")], "output": k.name("evil.out"), "limits": { "memory_mb": 512 } }),
    );
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("memory_mb = 512 exceeds"),
        "{v}"
    );

    // An output routed at run time outside the tenant's prefixes is
    // dead-lettered, never produced.
    k.produce(
        "acme.in",
        &[
            Rec::new("a", "fine"),
            Rec::new("b", "steal this"),
            Rec::new("c", "fine too"),
        ],
    );
    let out = k.read_until("acme.out", Duration::from_secs(60), |o| o.len() >= 2);
    assert_eq!(
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["fine", "fine too"]
    );
    let dlq = k.read_until("acme.out.dlq", Duration::from_secs(60), |o| !o.is_empty());
    assert_eq!(dlq[0].header("weir.error.kind"), Some("topic-denied"));
    assert!(
        dlq[0]
            .header("weir.error.message")
            .unwrap()
            .contains(&format!("`{}`", k.name("evil.out")))
    );
    assert!(
        k.read("evil.out", 1, Duration::from_secs(3)).is_empty(),
        "nothing reached the other tenant's topic"
    );

    // Bad uploads get a clear 4xx and change nothing.
    // What the registry holds (the host's live figures, such as lag, move).
    let registry = || -> Vec<(Value, Value, Value)> {
        let all = call(&host, Method::GET, "/v1/deployments", ROOT, None).1;
        all.as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].clone(), d["version"].clone(), d["module"].clone()))
            .collect()
    };
    let before = registry();
    let modules_before = k
        .read("weir.registry.modules", usize::MAX, Duration::from_secs(3))
        .len();
    let core = wat::parse_str("(module)").unwrap();
    let other_world = wat::parse_str(
        r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m)) (func (export "run") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let uploads: [(&str, Vec<u8>, StatusCode, &str); 4] = [
        (
            "garbage",
            b"definitely not wasm".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a WebAssembly file",
        ),
        (
            "a core module",
            core,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a core WebAssembly module, not a component",
        ),
        (
            "another world",
            other_world,
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not implement the world",
        ),
        (
            "an oversize file",
            vec![0u8; 2 << 20],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the 1048576-byte module size limit",
        ),
    ];
    for (what, bytes, expected, message) in uploads {
        let (code, v) = call(&host, Method::PUT, "/v1/modules", EVIL, Some(bytes));
        assert_eq!(code, expected, "{what}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(message),
            "{what}: {v}"
        );
    }
    let (code, v) = call(
        &host,
        Method::POST,
        "/v1/deployments/ghost",
        EVIL,
        Some(serde_json::to_vec(&json!({ "module": "00ff", "inputs": [k.name("evil.in")], "output": k.name("evil.out") })).unwrap()),
    );
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(registry(), before);
    assert_eq!(
        k.read("weir.registry.modules", usize::MAX, Duration::from_secs(3))
            .len(),
        modules_before,
        "no module bytes were stored"
    );
}

/// The admin API faces whoever can reach the port: a body is never read
/// before its token is checked (a 50 MB upload without one is refused at
/// once), a client that sends nothing is dropped within the header
/// timeout, `module` is a digest, never a path, and a tenant's uploads
/// cannot queue up compiles.
#[test]
fn the_api_refuses_unauthenticated_bodies_slow_clients_and_paths() {
    use std::io::{Read, Write};
    let k = Broker::shared().scope();
    for (t, n) in [("acme.in", 1), ("acme.out", 1), ("acme.out.dlq", 1)] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k);

    // Headers announcing 50 MB, no token, no body: the answer comes without
    // the body being sent.
    let mut s = std::net::TcpStream::connect(host.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /v1/modules HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n"
    )
    .unwrap();
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).expect("an answer before the body");
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // A connection that never sends its request head is closed.
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(host.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metr").unwrap();
    let n = s.read(&mut answer).unwrap_or(0);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "dropped after the header timeout, not kept: {waited:?} ({n} bytes)"
    );

    // A path where a digest belongs: refused, nothing deployed.
    let spec = json!({ "module": "../../../../../tmp/x", "inputs": [k.name("acme.in")], "output": k.name("acme.out") });
    let (code, v) = call(
        &host,
        Method::POST,
        "/v1/deployments/trav",
        ACME,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sha256"), "{v}");

    // Compiles are admitted one at a time per caller: of four distinct
    // modules one tenant sends at once, those arriving while one of its
    // compiles runs are refused (429, to retry), not queued behind it.
    let wasm = std::fs::read(plugin("word-count")).unwrap();
    let codes: Vec<StatusCode> = std::thread::scope(|s| {
        let uploads: Vec<_> = (0..4u8)
            .map(|i| {
                // A custom section makes each module new to the compiler.
                let module = [wasm.as_slice(), &[0, 3, 1, b'x', i]].concat();
                let host = &host;
                s.spawn(move || call(host, Method::PUT, "/v1/modules", ACME, Some(module)))
            })
            .collect();
        uploads.into_iter().map(|u| u.join().unwrap().0).collect()
    });
    assert!(
        codes
            .iter()
            .all(|&c| c == StatusCode::CREATED || c == StatusCode::TOO_MANY_REQUESTS),
        "{codes:?}"
    );
    assert!(
        codes.contains(&StatusCode::CREATED) && codes.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{codes:?}"
    );

    // /health and /metrics show an unauthenticated caller no names.
    let anonymous: Value = Http::new()
        .get(format!("http://{}/health", host.listen))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        anonymous.get("deployments").is_none() && anonymous["status"] == "ok",
        "{anonymous}"
    );
    assert_eq!(
        Http::new()
            .get(format!("http://{}/metrics", host.listen))
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Registry writes are compare-and-set: of two upgrades of one deployment
/// made at once through two hosts, one wins, the other gets 409, and both
/// hosts end up with the winner. A module is deployable only by a tenant
/// that uploaded it. A host restarted while its deployment is paused
/// never runs it, even briefly. An upgrade that changes the inputs keeps
/// the state (counts go on, each exactly once).
#[test]
fn registry_writes_are_checked_and_state_survives_input_changes() {
    let k = Broker::shared().scope();
    for (t, n) in [
        ("acme.text", 2),
        ("acme.more", 2),
        ("acme.counts", 2),
        ("acme.counts.dlq", 1),
        ("evil.in", 1),
        ("evil.out", 1),
        ("evil.out.dlq", 1),
    ] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k);
    let mut b = start_host(&dir.path().join("b"), &k);
    let wc = plugin("word-count");
    let (code, v) = deploy(
        &a,
        ACME,
        "wc",
        &wc,
        json!({ "inputs": [k.name("acme.text")], "output": k.name("acme.counts") }),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let module = v["module"].as_str().unwrap().to_owned();
    k.produce("acme.text", &words(0, 200, 10));
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 200);
    assert_contiguous(&out, 10, 20);

    // Another tenant that learnt the digest cannot deploy it.
    let spec =
        json!({ "module": module, "inputs": [k.name("evil.in")], "output": k.name("evil.out") });
    let (code, v) = call(
        &a,
        Method::POST,
        "/v1/deployments/copycat",
        EVIL,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");

    // Two upgrades at once, one through each host.
    let upgrade = |host: &Weir, n: &str| {
        let spec = json!({ "module": module, "inputs": [k.name("acme.text")], "output": k.name("acme.counts"), "config": { "n": n } });
        call(
            host,
            Method::PUT,
            "/v1/deployments/wc",
            ACME,
            Some(serde_json::to_vec(&spec).unwrap()),
        )
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| upgrade(&a, "a"));
        let tb = s.spawn(|| upgrade(&b, "b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let mut codes = [ra.0, rb.0];
    codes.sort();
    assert!(
        codes == [StatusCode::OK, StatusCode::CONFLICT]
            || codes == [StatusCode::OK, StatusCode::OK],
        "{ra:?} {rb:?}"
    );
    let version = |h: &Weir| status(h, ACME, "wc")["version"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while version(&a) != version(&b)
        || status(&a, ACME, "wc")["spec"] != status(&b, ACME, "wc")["spec"]
    {
        assert!(
            Instant::now() < deadline,
            "the hosts converge: {:#} {:#}",
            status(&a, ACME, "wc"),
            status(&b, ACME, "wc")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Pause, restart host B, produce: B must not run the paused deployment.
    let (ok, text) = weir(&a, ACME, &["pause", "wc"]);
    assert!(ok, "{text}");
    for h in [&a, &b] {
        wait_status(h, ACME, "wc", "pausing", |s| {
            s["status"] == "paused" && s["host"].is_null()
        });
    }
    let before = b.log_text().len();
    b.restart_gracefully();
    b.wait_healthy();
    k.produce("acme.text", &words(200, 100, 10));
    std::thread::sleep(Duration::from_secs(5));
    let log = b.log_text()[before..].to_owned();
    assert_eq!(
        k.read("acme.counts", 201, Duration::from_secs(3)).len(),
        200,
        "a paused deployment never ran; log:\n{log}"
    );
    assert!(
        log.contains("registry read: deployments start") && !log.contains("deployment started"),
        "log:\n{log}"
    );

    // Resume with a second input: the counts go on from where they were.
    let spec = json!({ "module": module, "inputs": [k.name("acme.text"), k.name("acme.more")], "output": k.name("acme.counts") });
    let (code, v) = call(
        &a,
        Method::PUT,
        "/v1/deployments/wc",
        ACME,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::OK, "{v}");
    let (ok, text) = weir(&a, ACME, &["resume", "wc"]);
    assert!(ok, "{text}");
    k.produce("acme.more", &words(300, 100, 10));
    let out = k.read_until("acme.counts", Duration::from_secs(90), |o| o.len() >= 400);
    assert_eq!(out.len(), 400, "logs:\n{}\n{}", a.log_text(), b.log_text());
    assert_contiguous(&out, 10, 40);
}

/// A tenant's deployment with a table: the table's topic must be within the
/// tenant's input prefixes; a change that restarts the deployment inside a
/// running host (its output here) reopens the table's store, which the
/// transforms of the run before may still hold, and goes on joining.
#[test]
fn a_deployment_with_a_table_restarts_in_place() {
    let k = Broker::shared().scope();
    k.create_topic_with("acme.customers", 2, &[("cleanup.policy", "compact")]);
    for t in [
        "acme.orders",
        "acme.enriched",
        "acme.enriched2",
        "acme.enriched.dlq",
        "acme.enriched2.dlq",
        "evil.customers",
    ] {
        k.create_topic(t, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k);
    let enrich = plugin("enrich");
    let spec = |output: &str, table: &str| json!({ "inputs": [k.name("acme.orders")], "output": k.name(output), "tables": { "customers": k.name(table) } });
    let (code, v) = deploy(
        &a,
        ACME,
        "enrich",
        &enrich,
        spec("acme.enriched", "evil.customers"),
    );
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("table `customers`: topic"),
        "{v}"
    );

    k.produce(
        "acme.customers",
        &(0..100)
            .map(|i| Rec::new(&format!("c{i}"), &format!("customer-{i}")))
            .collect::<Vec<_>>(),
    );
    let (code, v) = deploy(
        &a,
        ACME,
        "enrich",
        &enrich,
        spec("acme.enriched", "acme.customers"),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let mut moved = spec("acme.enriched2", "acme.customers");
    moved["module"] = v["module"].clone();
    let orders = |from: usize| {
        (from..from + 50)
            .map(|i| Rec::new(&format!("c{}", i % 100), &format!("order-{i}")))
            .collect::<Vec<_>>()
    };
    k.produce("acme.orders", &orders(0));
    let out = k.read("acme.enriched", 50, Duration::from_secs(90));
    assert!(
        out.iter().all(|r| r
            .value_str()
            .ends_with(&format!(";customer-{}", &r.key_str()[1..]))),
        "{out:?}"
    );

    let (code, v) = call(
        &a,
        Method::PUT,
        "/v1/deployments/enrich",
        ACME,
        Some(serde_json::to_vec(&moved).unwrap()),
    );
    assert_eq!(code, StatusCode::OK, "{v}");
    k.produce("acme.orders", &orders(50));
    let out = k.read("acme.enriched2", 50, Duration::from_secs(90));
    assert_eq!(out.len(), 50, "log:\n{}", a.log_text());
    assert!(
        out.iter().all(|r| r
            .value_str()
            .ends_with(&format!(";customer-{}", &r.key_str()[1..]))),
        "{out:?}"
    );
    let s = status(&a, ACME, "enrich");
    assert_eq!(s["host"]["tables"]["customers"]["loaded"], true, "{s:#}");
}

/// A broker that refuses transactions (its transaction log cannot be made:
/// it asks for three replicas on one broker) refuses an exactly-once
/// deployment when it is deployed, saying why, and an at-least-once one
/// beside it deploys and runs.
#[test]
fn exactly_once_needs_transactions_and_says_so_at_deploy_time() {
    let broker = Broker::dedicated_with(&["transaction.state.log.replication.factor=3"]);
    let k = broker.scope();
    for t in ["acme.in", "acme.out", "acme.out.dlq"] {
        k.create_topic(t, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k);
    let spec = |delivery: &str| json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out"), "delivery": delivery });
    let (code, v) = deploy(&host, ACME, "once", &plugin("upper"), spec("exactly-once"));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let why = v.to_string();
    assert!(
        why.contains("exactly-once") && why.contains("needs Kafka transactions"),
        "{why}"
    );
    let (code, v) = deploy(
        &host,
        ACME,
        "plain",
        &plugin("upper"),
        spec("at-least-once"),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");
    k.produce("acme.in", &[Rec::new("k", "still running")]);
    let out = k.read("acme.out", 1, Duration::from_secs(60));
    assert_eq!(
        out.iter().map(Rec::value_str).collect::<Vec<_>>(),
        ["STILL RUNNING"],
        "log:\n{}",
        host.log_text()
    );
}

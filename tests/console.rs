//! The web console in real headless Chromium against a host on Apache
//! Kafka, and the API calls it reads (activity, dead letters, partition
//! owners, history, rollback) with their tenant scoping.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Client as Http;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weir_runtime::tenants::token_hash;
use weir_tests::browser::Browser;
use weir_tests::kafka::{Broker, Rec, Scope, Weir, produce_slowly};
use weir_tests::plugin;

const ROOT: &str = "root-token";
const ACME: &str = "acme-token";
const EVIL: &str = "evil-token";

fn config() -> String {
    format!(
        r#"
[kafka]
brokers = "{{brokers}}"
group_prefix = "{{p}}weir"
properties = {{ "session.timeout.ms" = "6000" }}
[host]
state_dir = "{{state}}"
listen = "{{listen}}"
commit_interval_ms = 200
[admin]
token_sha256 = "{root}"
[tenants.acme]
token_sha256 = "{acme}"
input_prefixes = ["{{p}}acme."]
output_prefixes = ["{{p}}acme."]
[tenants.evil]
token_sha256 = "{evil}"
input_prefixes = ["{{p}}evil."]
output_prefixes = ["{{p}}evil."]
"#,
        root = token_hash(ROOT),
        acme = token_hash(ACME),
        evil = token_hash(EVIL)
    )
}

fn start_host(dir: &Path, k: &Scope) -> Weir {
    let mut w = Weir::start(dir, k, &config());
    w.authorize(ROOT);
    w.wait_healthy();
    w
}

fn call(host: &Weir, method: Method, path: &str, token: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
    let mut r = Http::new().request(method, format!("http://{}{path}", host.listen)).timeout(Duration::from_secs(120)).bearer_auth(token);
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().unwrap();
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn upload(host: &Weir, token: &str, plugin: &Path) -> Value {
    let (code, up) = call(host, Method::PUT, "/v1/modules", token, Some(std::fs::read(plugin).unwrap()));
    assert_eq!(code, StatusCode::CREATED, "{up}");
    up["module"].clone()
}

fn deploy(host: &Weir, token: &str, name: &str, plugin: &Path, mut spec: Value) {
    spec["module"] = upload(host, token, plugin);
    let (code, v) = call(host, Method::POST, &format!("/v1/deployments/{name}"), token, Some(serde_json::to_vec(&spec).unwrap()));
    assert_eq!(code, StatusCode::CREATED, "{v}");
}

/// Polls `f` until it returns something, for 90 s at most.
fn eventually<T>(what: &str, host: &Weir, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within 90 s; log:\n{}", host.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A value the filter plugin cannot parse (so it is dead-lettered) that
/// would run script if the page ever put it in as HTML.
const HOSTILE: &str = r#"<img src=x onerror="document.title='pwned'"><b>not json</b>"#;

fn log_line(i: usize) -> Rec {
    Rec::new(&format!("k{i}"), &format!(r#"{{"level":"error","n":{i}}}"#))
}

#[test]
fn a_tenant_watches_and_steers_its_deployment_in_the_console() {
    let k = Broker::shared().scope();
    for (t, n) in [("acme.in", 2), ("acme.out", 1), ("acme.out.dlq", 1), ("evil.in", 1), ("evil.out", 1), ("evil.out.dlq", 1)] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k);
    deploy(&host, ACME, "errors", &plugin("filter"), json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }));
    deploy(&host, EVIL, "secret", &plugin("upper"), json!({ "inputs": [k.name("evil.in")], "output": k.name("evil.out") }));
    let url = format!("http://{}/", host.listen);
    let shots = std::env::var_os("WEIR_SCREENSHOTS").map(std::path::PathBuf::from);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let b = Browser::start().await;
        b.client.goto(&url).await.unwrap();
        assert_eq!(b.client.title().await.unwrap(), "Weir console");

        // A wrong token is refused and shows nothing.
        b.type_into("#token", "not-a-token").await;
        b.click("#login").await;
        b.wait_text("#login-error", "a wrong token", |t| t.contains("token was refused")).await;
        assert!(!b.shown("#list").await, "nothing is listed for a wrong token");

        // The tenant sees its deployment and not the other tenant's.
        b.type_into("#token", ACME).await;
        b.click("#login").await;
        b.wait_text("#deployments tbody", "acme's deployment listed", |t| t.contains("errors")).await;
        let listed = b.wait_text("#deployments tbody", "acme's deployment running", |t| t.contains("running")).await;
        assert!(!listed.contains("secret"), "another tenant's deployment is listed: {listed}");
        assert!(!b.shown("#login-form").await);
        b.click("#deployments tbody tr[data-name='errors']").await;
        b.wait_text("#name", "the detail", |t| t == "acme / errors").await;

        // Records in move while records are produced.
        let producing = produce_slowly(&k, "acme.in", (0..400).map(log_line).collect(), 20.0);
        let first: u64 = b.wait_text("#records-in-total", "records in", |t| t.parse::<u64>().is_ok_and(|n| n > 0)).await.parse().unwrap();
        b.wait_text("#records-in-total", "records in moving", |t| t.parse::<u64>().is_ok_and(|n| n > first)).await;
        b.wait_text("#chart-records text", "a point on the chart", |t| t.starts_with("max")).await;

        // A failing record appears among the dead letters, as text.
        k.produce("acme.in", &[Rec::new("bad", HOSTILE)]);
        let dead = b.wait_text("#dead-letters tbody", "the dead letter", |t| t.contains("not json")).await;
        assert!(dead.contains(HOSTILE), "the value is shown as it is: {dead}");
        let injected = b.client.find_all(fantoccini::Locator::Css("#dead-letters img, #dead-letters b")).await.unwrap();
        assert!(injected.is_empty(), "the record's markup became elements");
        assert_eq!(b.client.title().await.unwrap(), "Weir console", "the record's script ran");
        b.wait_text("#failures tbody", "the failure counted by kind", |t| !t.is_empty()).await;
        producing.join().unwrap();
        if let Some(dir) = &shots {
            std::fs::write(dir.join("console.png"), b.client.screenshot().await.unwrap()).unwrap();
        }

        // Pause and resume from the page, recorded in the history.
        b.click("#pause").await;
        b.wait_text("#status", "paused", |t| t == "paused").await;
        b.wait_text("#history tbody", "the pause in the history", |t| t.contains("paused")).await;
        b.click("#resume").await;
        b.wait_text("#status", "running again", |t| t == "running").await;
        b.wait_text("#history tbody", "the resume in the history", |t| t.contains("resumed")).await;
        b.close().await;
    });
    let (_, view) = call(&host, Method::GET, "/v1/deployments/errors", ACME, None);
    let what: Vec<&str> = view["history"].as_array().unwrap().iter().map(|c| c["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["deployed", "paused", "resumed"], "{view:#}");

    // After the resume, records flow again.
    k.produce("acme.in", &[log_line(1_000)]);
    k.read_until("acme.out", Duration::from_secs(60), |o| o.iter().any(|r| r.value_str().contains("1000")));
}

#[test]
fn the_consoles_api_is_scoped_and_sees_every_host() {
    let k = Broker::shared().scope();
    for (t, n) in [("acme.in", 4), ("acme.out", 1), ("acme.out.dlq", 1), ("evil.in", 1), ("evil.out", 1)] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k);
    let b = start_host(&dir.path().join("b"), &k);
    deploy(&a, ACME, "errors", &plugin("filter"), json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }));

    // Both hosts share the partitions; either answers who has which, with
    // where its API is.
    let owners = eventually("two owners", &a, || {
        let (code, owners) = call(&b, Method::GET, "/v1/deployments/errors/owners", ACME, None);
        assert_eq!(code, StatusCode::OK, "{owners}");
        (owners.as_array().unwrap().len() == 2).then_some(owners)
    });
    let urls: Vec<&str> = owners.as_array().unwrap().iter().map(|m| m["api_url"].as_str().unwrap()).collect();
    for host in [&a, &b] {
        assert!(urls.contains(&format!("http://{}", host.listen).as_str()), "{owners:#}");
    }
    let mut partitions: Vec<i64> =
        owners.as_array().unwrap().iter().flat_map(|m| m["partitions"][0][1].as_array().unwrap().iter().map(|p| p.as_i64().unwrap())).collect();
    partitions.sort();
    assert_eq!(partitions, [0, 1, 2, 3], "{owners:#}");

    // Activity and dead letters: records counted, failures by kind.
    k.produce("acme.in", &(0..200).map(log_line).chain([Rec::new("bad", "not json")]).collect::<Vec<_>>());
    let dead = eventually("a dead letter", &a, || {
        let (_, dead) = call(&a, Method::GET, "/v1/deployments/errors/dead-letters", ACME, None);
        dead.as_array().filter(|d| !d.is_empty()).cloned()
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], "not json");
    let processed = eventually("every record counted", &a, || {
        let n: u64 = [&a, &b].iter().map(|h| call(h, Method::GET, "/v1/deployments/errors/activity", ACME, None).1["records_in"].as_u64().unwrap()).sum();
        (n >= 201).then_some(n)
    });
    assert!(processed >= 201);
    let failures: u64 = [&a, &b]
        .iter()
        .map(|h| {
            call(h, Method::GET, "/v1/deployments/errors/activity", ACME, None).1["failures_by_kind"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(failures, 1);

    // Another tenant reaches none of it.
    for path in ["activity", "dead-letters", "owners"] {
        let (code, body) = call(&a, Method::GET, &format!("/v1/deployments/errors/{path}"), EVIL, None);
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}: {body}");
        let (code, body) = call(&a, Method::GET, &format!("/v1/deployments/errors/{path}?tenant=acme"), EVIL, None);
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {body}");
    }

    // A rollback returns to the module before the upgrade, on every host,
    // and the history says so.
    let (code, body) = call(&a, Method::POST, "/v1/deployments/errors/rollback", ACME, None);
    assert_eq!(code, StatusCode::CONFLICT, "nothing to roll back yet: {body}");
    let first = call(&a, Method::GET, "/v1/deployments/errors", ACME, None).1["module"].clone();
    let upper = upload(&a, ACME, &plugin("upper"));
    let spec = json!({ "module": upper, "inputs": [k.name("acme.in")], "output": k.name("acme.out") });
    let (code, body) = call(&a, Method::PUT, "/v1/deployments/errors", ACME, Some(serde_json::to_vec(&spec).unwrap()));
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = call(&b, Method::POST, "/v1/deployments/errors/rollback", ACME, None);
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["module"], first);
    for host in [&a, &b] {
        eventually("the old module running again", host, || {
            let v = call(host, Method::GET, "/v1/deployments/errors", ACME, None).1;
            (v["host"]["module"] == first).then_some(())
        });
    }
    let history = call(&a, Method::GET, "/v1/deployments/errors", ACME, None).1["history"].clone();
    let what: Vec<&str> = history.as_array().unwrap().iter().map(|c| c["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["deployed", "upgraded", "rolled back"], "{history:#}");
}

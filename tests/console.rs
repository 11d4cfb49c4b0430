//! The web console in real headless Chromium against a host on Apache
//! Kafka, and the API calls it reads (activity, dead letters, partition
//! owners, history, rollback, state queries, resets) with their tenant
//! scoping, on two hosts.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client as Http;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weir_tests::browser::Browser;
use weir_tests::kafka::{Broker, Rec, Scope, Weir, produce_slowly};
use weir_tests::tenants::{self, ACME, EVIL, call, start_host};
use weir_tests::{plugin, weir_bin};

fn config() -> String {
    tenants::config("", "", "")
}

fn upload(host: &Weir, token: &str, plugin: &Path) -> Value {
    let (code, up) = call(
        host,
        Method::PUT,
        "/v1/modules",
        token,
        Some(std::fs::read(plugin).unwrap()),
    );
    assert_eq!(code, StatusCode::CREATED, "{up}");
    up["module"].clone()
}

fn deploy(host: &Weir, token: &str, name: &str, plugin: &Path, mut spec: Value) {
    spec["module"] = upload(host, token, plugin);
    let (code, v) = call(
        host,
        Method::POST,
        &format!("/v1/deployments/{name}"),
        token,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");
}

/// Polls `f` until it returns something, for 90 s at most.
fn eventually<T>(what: &str, host: &Weir, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 90 s; log:\n{}",
            host.log_text()
        );
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
    for (t, n) in [
        ("acme.in", 2),
        ("acme.out", 1),
        ("acme.out.dlq", 1),
        ("acme.text", 1),
        ("acme.clicks", 1),
        ("evil.in", 1),
        ("evil.out", 1),
        ("evil.out.dlq", 1),
    ] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    deploy(
        &host,
        ACME,
        "errors",
        &plugin("filter"),
        json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }),
    );
    deploy(
        &host,
        ACME,
        "words",
        &plugin("word-count"),
        json!({ "inputs": [k.name("acme.text")], "output": k.name("acme.out") }),
    );
    k.produce("acme.text", &[Rec::new("", "hello <b>world</b> hello")]);
    let windows = json!({ "inputs": [k.name("acme.clicks")], "output": k.name("acme.out"), "config": { "window": "tumbling", "size_ms": "1000" } });
    deploy(&host, ACME, "clicks", &plugin("window-count"), windows);
    // The third record's window closed when the second came: it is late.
    let start = weir_tests::kafka::now_ms() / 1000 * 1000 - 60_000;
    let click = |t: i64| Rec {
        timestamp: Some(start + t),
        ..Rec::new("u", "click")
    };
    k.produce("acme.clicks", &[click(0), click(5_000), click(500)]);
    eventually("the late record in the status", &host, || {
        let (_, view) = call(&host, Method::GET, "/v1/deployments/clicks", ACME, None);
        (view["host"]["late"]["0"]["count"] == 1).then_some(())
    });
    deploy(
        &host,
        EVIL,
        "secret",
        &plugin("upper"),
        json!({ "inputs": [k.name("evil.in")], "output": k.name("evil.out") }),
    );
    let url = format!("http://{}/", host.listen);
    let shots = std::env::var_os("WEIR_SCREENSHOTS").map(std::path::PathBuf::from);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Browser::start().await;
        b.client.goto(&url).await.unwrap();
        assert_eq!(b.client.title().await.unwrap(), "Weir console");

        // A wrong token is refused and shows nothing.
        b.type_into("#token", "not-a-token").await;
        b.click("#login").await;
        b.wait_text("#login-error", "a wrong token", |t| {
            t.contains("token was refused")
        })
        .await;
        assert!(
            !b.shown("#list").await,
            "nothing is listed for a wrong token"
        );

        // The tenant sees its deployment and not the other tenant's.
        b.type_into("#token", ACME).await;
        b.click("#login").await;
        b.wait_text("#deployments tbody", "acme's deployment listed", |t| {
            t.contains("errors")
        })
        .await;
        let listed = b
            .wait_text("#deployments tbody", "acme's deployment running", |t| {
                t.contains("running")
            })
            .await;
        assert!(
            !listed.contains("secret"),
            "another tenant's deployment is listed: {listed}"
        );
        assert!(!b.shown("#login-form").await);
        b.click("#deployments tbody tr[data-name='errors']").await;
        b.wait_text("#name", "the detail", |t| t == "acme / errors")
            .await;

        // Records in move while records are produced.
        let producing = produce_slowly(&k, "acme.in", (0..400).map(log_line).collect(), 20.0);
        let first: u64 = b
            .wait_text("#records-in-total", "records in", |t| {
                t.parse::<u64>().is_ok_and(|n| n > 0)
            })
            .await
            .parse()
            .unwrap();
        b.wait_text("#records-in-total", "records in moving", |t| {
            t.parse::<u64>().is_ok_and(|n| n > first)
        })
        .await;
        b.wait_text("#chart-records text", "a point on the chart", |t| {
            t.starts_with("max")
        })
        .await;

        // A failing record appears among the dead letters, as text.
        k.produce("acme.in", &[Rec::new("bad", HOSTILE)]);
        let dead = b
            .wait_text("#dead-letters tbody", "the dead letter", |t| {
                t.contains("not json")
            })
            .await;
        assert!(
            dead.contains(HOSTILE),
            "the value is shown as it is: {dead}"
        );
        let injected = b
            .client
            .find_all(fantoccini::Locator::Css(
                "#dead-letters img, #dead-letters b",
            ))
            .await
            .unwrap();
        assert!(injected.is_empty(), "the record's markup became elements");
        assert_eq!(
            b.client.title().await.unwrap(),
            "Weir console",
            "the record's script ran"
        );
        b.wait_text("#failures tbody", "the failure counted by kind", |t| {
            !t.is_empty()
        })
        .await;
        producing.join().unwrap();
        if let Some(dir) = &shots {
            std::fs::write(
                dir.join("console.png"),
                b.client.screenshot().await.unwrap(),
            )
            .unwrap();
        }

        // Pause and resume from the page, recorded in the history.
        b.click("#pause").await;
        b.wait_text("#status", "paused", |t| t == "paused").await;
        b.wait_text("#history tbody", "the pause in the history", |t| {
            t.contains("paused")
        })
        .await;
        b.click("#resume").await;
        b.wait_text("#status", "running again", |t| t == "running")
            .await;
        b.wait_text("#history tbody", "the resume in the history", |t| {
            t.contains("resumed")
        })
        .await;

        // The state of another deployment, read by key and by map.
        b.click("#deployments tbody tr[data-name='words']").await;
        b.wait_text("#name", "the word count", |t| t == "acme / words")
            .await;
        b.type_into("#state-map", "count").await;
        b.type_into("#state-key", "hello").await;
        let mut found = String::new();
        for _ in 0..60 {
            b.click("#state-read").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            found = b
                .client
                .find(fantoccini::Locator::Css("#state tbody"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if found.contains("hello") {
                break;
            }
        }
        assert!(
            found.contains("hello") && found.contains('2'),
            "state shown: {found}"
        );
        b.type_into("#state-key", "").await;
        b.click("#state-read").await;
        b.wait_text("#state tbody", "the whole map", |t| {
            t.contains("world") && t.contains("hello")
        })
        .await;
        if let Some(dir) = &shots {
            std::fs::write(
                dir.join("console-state.png"),
                b.client.screenshot().await.unwrap(),
            )
            .unwrap();
        }

        // A late record shows on its partition: how many, which, how late.
        b.click("#deployments tbody tr[data-name='clicks']").await;
        b.wait_text("#name", "the window count", |t| t == "acme / clicks")
            .await;
        let late = b
            .wait_text("#lag tbody", "the late record", |t| t.contains("1 (latest"))
            .await;
        assert!(
            late.contains("4500 ms behind"),
            "late record shown as: {late}"
        );

        // A transaction left open on the input shows where it holds it.
        let open = k.begin_transaction("open");
        open.produce("acme.clicks", &[click(6_000)]);
        let held = b
            .wait_text("#lag tbody", "the held input", |t| {
                t.contains("held by an open transaction")
            })
            .await;
        assert!(
            held.contains(&format!("{}@3", k.name("acme.clicks"))),
            "held input shown as: {held}"
        );
        open.commit();
        b.wait_text("#lag tbody", "the held input let go", |t| {
            !t.contains("held by")
        })
        .await;
        b.close().await;
    });
    let (_, view) = call(&host, Method::GET, "/v1/deployments/errors", ACME, None);
    let what: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["deployed", "paused", "resumed"], "{view:#}");

    // After the resume, records flow again.
    k.produce("acme.in", &[log_line(1_000)]);
    k.read_until("acme.out", Duration::from_secs(60), |o| {
        o.iter().any(|r| r.value_str().contains("1000"))
    });
}

#[test]
fn the_consoles_api_is_scoped_and_sees_every_host() {
    let k = Broker::shared().scope();
    for (t, n) in [
        ("acme.in", 4),
        ("acme.out", 1),
        ("acme.out.dlq", 1),
        ("evil.in", 1),
        ("evil.out", 1),
    ] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k, &config());
    let b = start_host(&dir.path().join("b"), &k, &config());
    let spec = json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out"), "delivery": "exactly-once" });
    deploy(&a, ACME, "errors", &plugin("filter"), spec);
    // Host b learns of it from the registry topic, soon after.
    let view = eventually("host b sees the deployment", &b, || {
        let view = call(&b, Method::GET, "/v1/deployments/errors", ACME, None).1;
        (view["error"].is_null()).then_some(view)
    });
    assert_eq!(view["spec"]["delivery"], "exactly-once", "{view:#}");

    // Both hosts share the partitions; either answers who has which, with
    // where its API is.
    let owners = eventually("two owners with partitions", &a, || {
        let (code, owners) = call(&b, Method::GET, "/v1/deployments/errors/owners", ACME, None);
        assert_eq!(code, StatusCode::OK, "{owners}");
        let members = owners.as_array().unwrap();
        (members.len() == 2 && members.iter().all(|m| m["partitions"][0][1][0].is_i64()))
            .then_some(owners)
    });
    let urls: Vec<&str> = owners
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["api_url"].as_str().unwrap())
        .collect();
    for host in [&a, &b] {
        assert!(
            urls.contains(&format!("http://{}", host.listen).as_str()),
            "{owners:#}"
        );
    }
    let mut partitions: Vec<i64> = owners
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| {
            m["partitions"][0][1]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap())
        })
        .collect();
    partitions.sort();
    assert_eq!(partitions, [0, 1, 2, 3], "{owners:#}");

    // Activity and dead letters: records counted, failures by kind.
    k.produce(
        "acme.in",
        &(0..200)
            .map(log_line)
            .chain([Rec::new("bad", "not json")])
            .collect::<Vec<_>>(),
    );
    let dead = eventually("a dead letter", &a, || {
        let (_, dead) = call(
            &a,
            Method::GET,
            "/v1/deployments/errors/dead-letters",
            ACME,
            None,
        );
        dead.as_array().filter(|d| !d.is_empty()).cloned()
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], "not json");
    let processed = eventually("every record counted", &a, || {
        let n: u64 = [&a, &b]
            .iter()
            .map(|h| {
                call(
                    h,
                    Method::GET,
                    "/v1/deployments/errors/activity",
                    ACME,
                    None,
                )
                .1["records_in"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        (n >= 201).then_some(n)
    });
    assert!(processed >= 201);
    let failures: u64 = [&a, &b]
        .iter()
        .map(|h| {
            call(
                h,
                Method::GET,
                "/v1/deployments/errors/activity",
                ACME,
                None,
            )
            .1["failures_by_kind"]
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
        let (code, body) = call(
            &a,
            Method::GET,
            &format!("/v1/deployments/errors/{path}"),
            EVIL,
            None,
        );
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}: {body}");
        let (code, body) = call(
            &a,
            Method::GET,
            &format!("/v1/deployments/errors/{path}?tenant=acme"),
            EVIL,
            None,
        );
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}: {body}");
    }

    // A rollback returns to the module before the upgrade, on every host,
    // and the history says so.
    let (code, body) = call(
        &a,
        Method::POST,
        "/v1/deployments/errors/rollback",
        ACME,
        None,
    );
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "nothing to roll back yet: {body}"
    );
    let first = call(&a, Method::GET, "/v1/deployments/errors", ACME, None).1["module"].clone();
    let upper = upload(&a, ACME, &plugin("upper"));
    let spec = json!({ "module": upper, "inputs": [k.name("acme.in")], "output": k.name("acme.out"), "delivery": "exactly-once" });
    let (code, body) = call(
        &a,
        Method::PUT,
        "/v1/deployments/errors",
        ACME,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::OK, "{body}");
    // Host B reads the upgrade from the registry topic a moment later.
    eventually("host b seeing the upgrade", &b, || {
        (call(&b, Method::GET, "/v1/deployments/errors", ACME, None).1["module"] == upper)
            .then_some(())
    });
    let (code, body) = call(
        &b,
        Method::POST,
        "/v1/deployments/errors/rollback",
        ACME,
        None,
    );
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["module"], first);
    for host in [&a, &b] {
        eventually("the old module running again", host, || {
            let v = call(host, Method::GET, "/v1/deployments/errors", ACME, None).1;
            (v["host"]["module"] == first).then_some(())
        });
    }
    let history = call(&a, Method::GET, "/v1/deployments/errors", ACME, None).1["history"].clone();
    let what: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["deployed", "upgraded", "rolled back"], "{history:#}");
}

/// Two hosts sharing a word count over four partitions, with one word
/// per partition counted `n` times.
fn two_hosts_counting(k: &Scope, dir: &Path, n: usize) -> (Weir, Weir) {
    for (t, p) in [("acme.in", 4), ("acme.out", 1), ("acme.out.dlq", 1)] {
        k.create_topic(t, p);
    }
    let a = start_host(&dir.join("a"), k, &config());
    let b = start_host(&dir.join("b"), k, &config());
    deploy(
        &a,
        ACME,
        "wc",
        &plugin("word-count"),
        json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }),
    );
    owners(&a);
    produce_words(k, n, "w");
    (a, b)
}

/// The two hosts consuming `wc`, once each has partitions (the group may
/// be between assignments).
fn owners(via: &Weir) -> Vec<Value> {
    eventually("two owners with partitions", via, || {
        let owners = call(via, Method::GET, "/v1/deployments/wc/owners", ACME, None).1;
        let members = owners.as_array().unwrap().clone();
        (members.len() == 2 && members.iter().all(|m| m["partitions"][0][1][0].is_i64()))
            .then_some(members)
    })
}

/// `n` records of word `{word}{p}` into each partition `p`.
fn produce_words(k: &Scope, n: usize, word: &str) {
    let records: Vec<Rec> = (0..4)
        .flat_map(|p| {
            (0..n).map(move |_| Rec {
                partition: Some(p),
                ..Rec::new("", &format!("{word}{p}"))
            })
        })
        .collect();
    k.produce("acme.in", &records);
}

/// The counts in the deployment's state (as host `via` gathers them from
/// both), by word.
fn counts(via: &Weir) -> std::collections::BTreeMap<String, u64> {
    let (code, answer) = call(
        via,
        Method::GET,
        "/v1/deployments/wc/state?map=count&limit=1000",
        ACME,
        None,
    );
    assert_eq!(code, StatusCode::OK, "{answer}");
    let hosts = answer["hosts"].as_array().unwrap();
    assert!(hosts.iter().all(|h| h["error"].is_null()), "{answer:#}");
    answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["value"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn wait_counts(via: &Weir, want: &[(&str, u64)]) {
    let want: std::collections::BTreeMap<String, u64> =
        want.iter().map(|(w, n)| (w.to_string(), *n)).collect();
    let mut last = Default::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        last = counts(via);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("state is {last:?}, not {want:?}; log:\n{}", via.log_text());
}

#[test]
fn state_queries_reach_every_host_and_no_other_tenant() {
    let k = Broker::shared().scope();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts_counting(&k, dir.path(), 3);
    wait_counts(&a, &[("w0", 3), ("w1", 3), ("w2", 3), ("w3", 3)]);

    // A key on a partition the other host owns is answered, from either host.
    for member in owners(&a) {
        let p = member["partitions"][0][1][0].as_i64().unwrap();
        for via in [&a, &b] {
            let (code, answer) = call(
                via,
                Method::GET,
                &format!("/v1/deployments/wc/state?map=count&key=w{p}"),
                ACME,
                None,
            );
            assert_eq!(code, StatusCode::OK, "{answer}");
            let entries = answer["entries"].as_array().unwrap();
            assert_eq!(entries.len(), 1, "w{p} via {}: {answer:#}", via.listen);
            assert_eq!(
                (
                    entries[0]["partition"].as_i64(),
                    entries[0]["value"].as_u64()
                ),
                (Some(p), Some(3)),
                "{answer:#}"
            );
        }
    }
    // Raw keys, paging, and what is not there.
    let (_, page) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?map=count&limit=2",
        ACME,
        None,
    );
    assert_eq!(page["entries"].as_array().unwrap().len(), 2, "{page:#}");
    let after = page["next_after"].as_str().unwrap().to_owned();
    let (_, rest) = call(
        &a,
        Method::GET,
        &format!("/v1/deployments/wc/state?map=count&after={after}"),
        ACME,
        None,
    );
    let keys: Vec<&str> = rest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["w2", "w3"], "{rest:#}");
    let (_, raw) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?prefix=count%00w1",
        ACME,
        None,
    );
    assert_eq!(raw["entries"][0]["key"], "count\u{0}w1", "{raw:#}");
    let (_, none) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?map=count&key=nope",
        ACME,
        None,
    );
    assert_eq!(none["entries"], json!([]));
    let (code, _) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?key=a&prefix=b",
        ACME,
        None,
    );
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Another tenant reads none of it, and a host answers no unsigned or
    // forged request of a "peer".
    let (code, _) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?map=count",
        EVIL,
        None,
    );
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(
        &a,
        Method::GET,
        "/v1/deployments/wc/state?map=count&tenant=acme",
        EVIL,
        None,
    );
    assert_eq!(code, StatusCode::FORBIDDEN);
    let expires = weir_tests::kafka::now_ms() + 30_000;
    let peer = format!(
        "http://{}/v1/peer/state?storage=acme.wc&expires={expires}&map=count",
        b.listen
    );
    for signature in [None, Some("00".repeat(32))] {
        let mut r = Http::new().get(&peer);
        if let Some(s) = signature {
            r = r.header("x-weir-peer-signature", s);
        }
        assert_eq!(r.send().unwrap().status(), StatusCode::UNAUTHORIZED);
    }

    // The command line reads the same.
    let out = Command::new(weir_bin())
        .args(["state", "scan", "wc", "--map", "count"])
        .env("WEIR_URL", format!("http://{}", b.listen))
        .env("WEIR_TOKEN", ACME)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines.contains(&"2\tw2\t3"), "{text}");
}

fn reset(host: &Weir, body: Value) -> Value {
    let (code, done) = call(
        host,
        Method::POST,
        "/v1/deployments/wc/reset",
        ACME,
        Some(serde_json::to_vec(&body).unwrap()),
    );
    assert_eq!(code, StatusCode::OK, "{done}");
    done
}

#[test]
fn a_reset_reprocesses_from_the_chosen_point_with_state_dropped_or_kept() {
    let k = Broker::shared().scope();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts_counting(&k, dir.path(), 2);
    let all = |n| [("w0", n), ("w1", n), ("w2", n), ("w3", n)];
    wait_counts(&a, &all(2));
    let outputs = |n: usize| k.read("acme.out", n, Duration::from_secs(90));
    outputs(8);

    // From the start with state dropped: the same counts again, and every
    // output a second time.
    let done = reset(&b, json!({ "to": "earliest", "state": "drop" }));
    assert_ne!(done["deployment"]["status"], "paused", "{done:#}");
    assert_eq!(done["offsets"][k.name("acme.in")]["0"], 0, "{done:#}");
    wait_counts(&a, &all(2));
    assert_eq!(outputs(16).len(), 16);

    // From the start with state kept: the counts go on from it.
    reset(&a, json!({ "to": "earliest", "state": "keep" }));
    wait_counts(&b, &all(4));
    assert_eq!(outputs(24).len(), 24);

    // From a time: only what came after it, on fresh state, asked for on
    // the command line.
    std::thread::sleep(Duration::from_millis(50));
    let since = weir_tests::kafka::now_ms();
    std::thread::sleep(Duration::from_millis(50));
    produce_words(&k, 1, "later");
    wait_counts(
        &a,
        &[
            ("later0", 1),
            ("later1", 1),
            ("later2", 1),
            ("later3", 1),
            ("w0", 4),
            ("w1", 4),
            ("w2", 4),
            ("w3", 4),
        ],
    );
    let time = time_rfc3339(since);
    let out = Command::new(weir_bin())
        .args(["reset", "wc", "--to", &time, "--drop-state"])
        .env("WEIR_URL", format!("http://{}", a.listen))
        .env("WEIR_TOKEN", ACME)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_counts(
        &b,
        &[("later0", 1), ("later1", 1), ("later2", 1), ("later3", 1)],
    );

    // To the end with state kept: nothing is reprocessed, new records count on.
    reset(&b, json!({ "to": "latest", "state": "keep" }));
    produce_words(&k, 1, "later");
    wait_counts(
        &a,
        &[("later0", 2), ("later1", 2), ("later2", 2), ("later3", 2)],
    );

    // Bad requests change nothing.
    for body in [
        json!({ "to": "yesterday", "state": "keep" }),
        json!({ "to": "earliest" }),
        json!({ "to": { "nope": { "0": 1 } }, "state": "keep" }),
    ] {
        let (code, e) = call(
            &a,
            Method::POST,
            "/v1/deployments/wc/reset",
            ACME,
            Some(serde_json::to_vec(&body).unwrap()),
        );
        assert!(code.is_client_error(), "{body}: {code} {e}");
    }
    let (code, _) = call(
        &a,
        Method::POST,
        "/v1/deployments/wc/reset",
        EVIL,
        Some(serde_json::to_vec(&json!({ "to": "earliest", "state": "drop" })).unwrap()),
    );
    assert_eq!(code, StatusCode::NOT_FOUND);

    let history = call(&a, Method::GET, "/v1/deployments/wc", ACME, None).1["history"].clone();
    let resets: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["what"] == "reset")
        .map(|c| c["why"].as_str().unwrap())
        .collect();
    assert_eq!(
        resets,
        [
            "to earliest, state dropped",
            "to earliest, state kept",
            &format!("to {time}, state dropped"),
            "to latest, state kept"
        ],
        "{history:#}"
    );
}

/// `ms` since the epoch as an RFC 3339 UTC time with milliseconds.
fn time_rfc3339(ms: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}.{:03}", ms / 1000, ms % 1000),
            "+%Y-%m-%dT%H:%M:%S.%3NZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The console's cost to a host, for BENCHMARKS.md: the host's CPU while
/// it processes a steady stream, with no console open, then with one
/// (headless Chromium on a deployment's detail, refreshing every 2 and 5
/// s), then without again; and the page's weight.
#[test]
#[ignore = "a measurement for BENCHMARKS.md, not a check"]
fn measure_a_consoles_cost_to_the_host() {
    let k = Broker::shared().scope();
    for (t, n) in [("acme.in", 4), ("acme.out", 1), ("acme.out.dlq", 1)] {
        k.create_topic(t, n);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    deploy(
        &host,
        ACME,
        "errors",
        &plugin("filter"),
        json!({ "inputs": [k.name("acme.in")], "output": k.name("acme.out") }),
    );
    let base = format!("http://{}", host.listen);
    let weight: usize = ["/", "/console.js", "/console.css"]
        .iter()
        .map(|p| {
            Http::new()
                .get(format!("{base}{p}"))
                .send()
                .unwrap()
                .bytes()
                .unwrap()
                .len()
        })
        .sum();
    let phase = Duration::from_secs(40);
    let rate = 1000.0;
    let records = (phase.as_secs_f64() * rate * 3.2) as usize;
    let producing = produce_slowly(
        &k,
        "acme.in",
        (0..records).map(log_line).collect(),
        phase.as_secs_f64() * 3.2,
    );
    std::thread::sleep(Duration::from_secs(5));
    let measure = |what: &str| {
        let (cpu, at) = (host.cpu_seconds(), Instant::now());
        std::thread::sleep(phase);
        let share = (host.cpu_seconds() - cpu) / at.elapsed().as_secs_f64();
        println!("{what}: host CPU {:.1}% of a core", share * 100.0);
        share
    };
    let without = measure("no console");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(async {
        let b = Browser::start().await;
        b.client.goto(&format!("{base}/")).await.unwrap();
        b.type_into("#token", ACME).await;
        b.click("#login").await;
        b.click("#deployments tbody tr[data-name='errors']").await;
        b.wait_text("#name", "the detail", |t| t == "acme / errors")
            .await;
        b
    });
    let with = measure("console open");
    rt.block_on(b.close());
    let after = measure("no console again");
    producing.join().unwrap();
    println!("page weight: {weight} bytes (index.html, console.js, console.css, uncompressed)");
    println!(
        "console's cost: {:.1} percentage points of a core ({:.2}x the host's CPU without it)",
        (with - (without + after) / 2.0) * 100.0,
        with / ((without + after) / 2.0)
    );
}

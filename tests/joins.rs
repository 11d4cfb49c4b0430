//! Joins (world 0.2.1) on Apache Kafka: a stream-table join over a table
//! the host loads from a compacted topic and keeps up to date, and a
//! stream-stream windowed join built from state and timers, both across a
//! kill -9.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weir_tests::kafka::{
    Broker, Rec, Scope, Weir, deployment, host_config, now_ms, produce_slowly,
};
use weir_tests::weir_test;

fn customers(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec::new(&format!("c{i}"), &format!("customer-{i}")))
        .collect()
}

fn orders(n: usize, customers: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec::new(&format!("c{}", i % customers), &format!("order-{i}")))
        .collect()
}

/// The status of table `table` of `deployment`, from `/health`.
fn table_status(weir: &Weir, deployment: &str, table: &str) -> serde_json::Value {
    weir.health()
        .map(|h| h["deployments"][deployment]["tables"][table].clone())
        .unwrap_or_default()
}

fn wait_loaded(weir: &Weir, deployment: &str, table: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = table_status(weir, deployment, table);
        if s["loaded"] == true {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "table {table} did not load within 60 s: {s}; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn enrich_config() -> String {
    host_config(&deployment(
        "enrich",
        "enrich",
        "orders",
        "enriched",
        "tables = { customers = \"{p}customers\" }",
    )) + "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
}

fn compacted(k: &Scope, name: &str, partitions: i32) {
    k.create_topic_with(name, partitions, &[("cleanup.policy", "compact")]);
}

/// Orders are enriched with the latest value of their customer, the table
/// loaded before the first order is consumed; a customer changed or
/// deleted while the deployment runs is seen by later orders.
#[test]
fn a_stream_table_join_sees_the_table_and_its_changes() {
    let k = Broker::shared().scope();
    compacted(&k, "customers", 3);
    k.create_topic("orders", 4);
    k.create_topic("enriched", 4);
    k.create_topic("enrich.dlq", 1);
    let mut table = customers(500);
    table.push(Rec::new("c7", "customer-7-renamed"));
    table.push(Rec {
        value: None,
        ..Rec::new("c8", "")
    });
    k.produce("customers", &table);
    // Orders already waiting when the deployment starts must see the table.
    k.produce("orders", &orders(600, 600));
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &enrich_config());
    let status = wait_loaded(&weir, "enrich", "customers");
    assert_eq!(status["records_read"], 502, "{status}");
    assert_eq!(
        status["indexed"], true,
        "lookups are answered from memory: {status}"
    );

    // Inner join: orders of c500..c599 and of the deleted c8 have no match.
    let out = k.read("enriched", 498, Duration::from_secs(60));
    let got: BTreeMap<String, String> = out
        .iter()
        .map(|r| (r.key_str().to_owned(), r.value_str().to_owned()))
        .collect();
    assert_eq!(
        got.len(),
        498,
        "{:?}",
        out.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(got["c0"], "order-0;customer-0");
    assert_eq!(got["c7"], "order-7;customer-7-renamed");
    assert!(!got.contains_key("c8") && !got.contains_key("c500"));

    // Changes while running: a new customer and a rename.
    k.produce(
        "customers",
        &[
            Rec::new("c550", "customer-550-new"),
            Rec::new("c1", "customer-1-renamed"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while table_status(&weir, "enrich", "customers")["records_read"] != 504 {
        assert!(
            Instant::now() < deadline,
            "the table did not follow its topic; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    k.produce(
        "orders",
        &[
            Rec::new("c550", "order-late-550"),
            Rec::new("c1", "order-late-1"),
        ],
    );
    let out = k.read_until("enriched", Duration::from_secs(30), |out| {
        out.iter()
            .filter(|r| r.value_str().starts_with("order-late"))
            .count()
            == 2
    });
    let late: BTreeSet<&str> = out
        .iter()
        .map(Rec::value_str)
        .filter(|v| v.starts_with("order-late"))
        .collect();
    assert_eq!(
        late,
        BTreeSet::from([
            "order-late-550;customer-550-new",
            "order-late-1;customer-1-renamed"
        ])
    );
}

/// A host killed with SIGKILL mid-stream enriches every order after its
/// restart, and its table comes back from the local store (which records
/// the offsets it has read) instead of from the start of the topic.
#[test]
fn a_stream_table_join_survives_kill_9_and_restores_its_table_locally() {
    let k = Broker::shared().scope();
    compacted(&k, "customers", 2);
    k.create_topic("orders", 4);
    k.create_topic("enriched", 4);
    k.create_topic("enrich.dlq", 1);
    k.produce("customers", &customers(2000));
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &enrich_config());
    assert_eq!(
        wait_loaded(&weir, "enrich", "customers")["records_read"],
        2000
    );
    weir.wait_partitions("enrich", 4);
    let all = orders(4000, 2000);
    let producer = produce_slowly(&k, "orders", all.clone(), 8.0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!producer.is_finished(), "the kill must come mid-stream");
    weir.kill9();
    weir.restart();
    let restored = wait_loaded(&weir, "enrich", "customers");
    assert_eq!(
        restored["records_read"], 0,
        "the table was read again instead of restored: {restored}"
    );
    assert!(restored["keys"].as_u64().unwrap() >= 1900, "{restored}");
    assert_eq!(
        restored["indexed"], true,
        "the copy in memory is rebuilt from the store: {restored}"
    );
    producer.join().unwrap();

    let want: BTreeSet<(String, String)> = all
        .iter()
        .map(|r| {
            (
                r.key_str().to_owned(),
                format!("{};customer-{}", r.value_str(), &r.key_str()[1..]),
            )
        })
        .collect();
    let keyed = |out: &[Rec]| {
        out.iter()
            .map(|r| (r.key_str().to_owned(), r.value_str().to_owned()))
            .collect::<BTreeSet<_>>()
    };
    let out = k.read_until("enriched", Duration::from_secs(90), |out| {
        keyed(out).is_superset(&want)
    });
    let got = keyed(&out);
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}; log:\n{}",
        weir.log_text()
    );
}

/// Orders and payments joined within a window by state and timers, with a
/// kill -9 in the middle: every order that has a payment is joined with
/// it, and never also expired alone; every order without one expires once
/// stream time passes its window, its timer set before the kill and fired
/// after it. At-least-once may repeat an output, never change it.
#[test]
fn a_windowed_join_with_pending_timers_survives_kill_9() {
    let k = Broker::shared().scope();
    for t in ["orders", "payments", "joined"] {
        k.create_topic(t, 4);
    }
    k.create_topic("join.dlq", 1);
    let config = host_config(&deployment(
        "join",
        "join_window",
        "orders",
        "joined",
        "config = { left = \"{p}orders\", right = \"{p}payments\", window_ms = \"600000\", join = \"left\" }",
    ))
    .replace("inputs = [\"{p}orders\"]", "inputs = [\"{p}orders\", \"{p}payments\"]")
        + "\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n";
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &config);
    weir.wait_partitions("join", 4);

    // Every seventh order has no payment; payments follow their order by 50 ms.
    let n = 1500;
    let base = now_ms();
    let order = |i: usize| Rec {
        timestamp: Some(base + 10 * i as i64),
        ..Rec::new(&format!("o{i}"), &format!("order-{i}"))
    };
    let payment = |i: usize| Rec {
        timestamp: Some(base + 10 * i as i64 + 50),
        ..Rec::new(&format!("o{i}"), &format!("pay-{i}"))
    };
    let paid = |i: usize| !i.is_multiple_of(7);
    let orders = produce_slowly(&k, "orders", (0..n).map(order).collect(), 8.0);
    let payments = produce_slowly(
        &k,
        "payments",
        (0..n).filter(|&i| paid(i)).map(payment).collect(),
        8.0,
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(!orders.is_finished(), "the kill must come mid-stream");
    weir.kill9();
    std::thread::sleep(Duration::from_millis(500));
    weir.restart();
    orders.join().unwrap();
    payments.join().unwrap();

    let keyed = |out: &[Rec]| {
        out.iter()
            .map(|r| (r.key_str().to_owned(), r.value_str().to_owned()))
            .collect::<BTreeSet<_>>()
    };
    let joined: BTreeSet<(String, String)> = (0..n)
        .filter(|&i| paid(i))
        .map(|i| (format!("o{i}"), format!("order-{i};pay-{i}")))
        .collect();
    k.read_until("joined", Duration::from_secs(90), |out| {
        keyed(out).is_superset(&joined)
    });
    // Only now push stream time past every window, on every partition of
    // both topics: the unpaid orders expire.
    let end = base + 10 * n as i64 + 700_000;
    for topic in ["orders", "payments"] {
        let markers: Vec<Rec> = (0..4)
            .map(|p| Rec {
                timestamp: Some(end),
                partition: Some(p),
                ..Rec::new(&format!("end-{topic}-{p}"), "end")
            })
            .collect();
        k.produce(topic, &markers);
    }
    let expired: BTreeSet<(String, String)> = (0..n)
        .filter(|&i| !paid(i))
        .map(|i| (format!("o{i}"), format!("order-{i};")))
        .collect();
    let want: BTreeSet<_> = joined.union(&expired).cloned().collect();
    let out = k.read_until("joined", Duration::from_secs(90), |out| {
        keyed(out).is_superset(&want)
    });
    let got: BTreeSet<_> = keyed(&out)
        .into_iter()
        .filter(|(key, _)| !key.starts_with("end-"))
        .collect();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}; log:\n{}",
        weir.log_text()
    );
}

/// A deployment opening a table it does not declare fails at `init` with
/// the names it does declare; reading a table in `init` is refused.
#[test]
fn undeclared_tables_are_refused_with_the_declared_names() {
    let plugin = weir_tests::plugin("enrich");
    let out = weir_test(
        &[
            plugin.to_str().unwrap(),
            "-i",
            "-",
            "--table",
            "customers",
            "-c",
            "table=users",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no table `users`: the deployment declares `customers`"),
        "{err}"
    );
    let out = weir_test(&[plugin.to_str().unwrap(), "-i", "-"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no table `customers`: the deployment declares no tables"),
        "{err}"
    );
}

/// A table whose topic does not exist is named when the host checks its
/// deployments, before it consumes anything.
#[test]
fn a_missing_table_topic_is_named_before_anything_is_consumed() {
    let k = Broker::shared().scope();
    k.create_topic("orders", 1);
    k.create_topic("out", 1);
    k.create_topic("enrich.dlq", 1);
    let config = host_config(&deployment(
        "enrich",
        "enrich",
        "orders",
        "out",
        "tables = { customers = \"{p}nowhere\" }",
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &config);
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = weir.log_text();
    assert!(
        log.contains("deployment `enrich`")
            && log.contains(&format!("topic `{}` does not exist", k.name("nowhere"))),
        "{log}"
    );
}

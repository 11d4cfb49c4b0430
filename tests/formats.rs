//! Record formats through a real schema registry (Apicurio, with
//! Confluent's API) on Apache Kafka: Avro written by confluent-kafka's own
//! serializers goes through `weir run` to a plugin that reads fields by
//! name, and comes back as Avro that confluent-kafka's deserializer reads
//! field by field; Protobuf and JSON Schema likewise; bad records, bad
//! outputs, refused schemas and a registry that goes away.
//!
//! (Over 400 lines: one registry, one scenario per promise of the formats.)

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::kafka::{Broker, Scope, Weir, deployment, host_config};
use weir_tests::registry::{Registry, registry};
use weir_tests::{component, json_lines, python, repo};

/// What the plugin writes: the input's fields reshaped.
const OUT_SCHEMA: &str = r#"{"type":"record","name":"Shipped","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"},{"name":"schema_id","type":"int"}]}"#;

/// The reader schema inputs are projected onto: v2, whose `qty` v1 lacks.
const READER_SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int","default":1}]}"#;

/// Runs `tests/interop/avro_orders.py`; its standard output.
fn orders(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(repo().join("tests/interop/avro_orders.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "avro_orders.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The languages of the `reshape` plugin: Rust's, and its twins
/// (`plugins/<lang>/reshape`, built by `scripts/build-plugins`).
const LANGS: [&str; 4] = ["rust", "python", "js", "c"];

/// A deployment `name` of `lang`'s `reshape` from `input` to `output`, Avro
/// both ways.
fn reshape_deployment(name: &str, lang: &str, input: &str, output: &str, extra: &str) -> String {
    let formats = format!(
        "formats.value = {{ format = \"avro\", schema = '{READER_SCHEMA}' }}\n\
         formats.output_value = {{ format = \"avro\", schema = '{OUT_SCHEMA}', register = true }}\n{extra}"
    );
    let d = deployment(name, "reshape", input, output, &formats);
    if lang == "rust" {
        return d;
    }
    let path = component(lang, "reshape");
    d.replace("{plugins}/reshape.wasm", &path.display().to_string())
}

/// A `weir run` config of `deployments` with the registry at `registry`.
fn registry_config(registry: &str, deployments: &str) -> String {
    format!(
        "{}\n[schema_registry]\nurl = \"{registry}\"\ntimeout_ms = 2000\n",
        host_config(deployments)
    )
}

/// A deployment of `reshape` from `orders` to `shipped`, Avro both ways.
fn reshape_config(registry: &str, extra: &str) -> String {
    registry_config(
        registry,
        &reshape_deployment("reshape", "rust", "orders", "shipped", extra),
    )
}

fn topics(k: &Scope) {
    for (t, p) in [("orders", 2), ("shipped", 2), ("reshape.dlq", 1)] {
        k.create_topic(t, p);
    }
}

/// Reads `n` outputs with confluent-kafka's Avro deserializer, by key.
fn shipped(k: &Scope, url: &str, n: usize) -> BTreeMap<String, serde_json::Value> {
    let lines = json_lines(&orders(&[
        "consume",
        &k.bootstrap,
        url,
        &k.name("shipped"),
        &n.to_string(),
        "60",
    ]));
    lines
        .into_iter()
        .map(|l| (l["key"].as_str().unwrap().to_owned(), l))
        .collect()
}

/// Every language's `reshape`, each deployed in one `weir run` from topics
/// of its own (`<lang>.orders` to `<lang>.shipped`, so subjects of its
/// own), gets the fields of Avro orders of two schema versions and writes
/// Avro that confluent-kafka reads field by field.
#[test]
fn avro_of_two_schema_versions_goes_through_a_plugin_field_by_field() {
    let k = Broker::shared().scope();
    let url = registry().url();
    let mut deployments = String::new();
    for lang in LANGS {
        topics(&k.within(lang));
        deployments += &reshape_deployment(
            &format!("reshape-{lang}"),
            lang,
            &format!("{lang}.orders"),
            &format!("{lang}.shipped"),
            &format!("dead_letter_topic = \"{{p}}{lang}.reshape.dlq\"\n"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &registry_config(&url, &deployments));
    for lang in LANGS {
        weir.wait_partitions(&format!("reshape-{lang}"), 2);
    }
    // Each language's producer registers v1 and v2 under its own subject,
    // getting the ids the first one got: the host, which learned an id's
    // subjects from the first, asks for them again.
    for_each_lang(|lang| two_versions_through(lang, &k.within(lang), &url, &weir));
}

/// Runs `f` for every language at once, each on a thread of its own (each
/// waits mostly on Python clients); a panic of any is the caller's.
fn for_each_lang(f: impl Fn(&'static str) + Sync) {
    std::thread::scope(|s| {
        let runs: Vec<_> = LANGS
            .iter()
            .map(|&lang| {
                let f = &f;
                s.spawn(move || f(lang))
            })
            .collect();
        for run in runs {
            if let Err(panic) = run.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// Orders of schema v1 and v2 into `k`'s `orders`, through `lang`'s
/// deployment, read back from its `shipped` field by field.
fn two_versions_through(lang: &str, k: &Scope, url: &str, weir: &Weir) {
    let orders_topic = k.name("orders");
    let v1: u32 = orders(&["produce", &k.bootstrap, url, &orders_topic, "v1", "50"])
        .trim()
        .parse()
        .unwrap();
    let v2: u32 = orders(&["produce", &k.bootstrap, url, &orders_topic, "v2", "50"])
        .trim()
        .parse()
        .unwrap();
    assert_ne!(v1, v2, "{lang}: v2 is a new version of the subject");

    let out = shipped(k, url, 100);
    assert_eq!(
        out.len(),
        100,
        "{lang}: every order came out; log:\n{}",
        weir.log_text()
    );
    for (version, id) in [("v1", v1), ("v2", v2)] {
        for i in 0..50 {
            let l = &out[&format!("{version}-{i}")];
            let v = &l["value"];
            assert_eq!(v["id"], i, "{lang}: {l}");
            assert_eq!(v["item"], format!("ITEM-{i}"), "{lang}: {l}");
            // v1 has no qty: the reader schema's default (1), doubled.
            let qty = if version == "v1" { 1 } else { i % 7 + 2 };
            assert_eq!(v["qty"], 2 * qty, "{lang}: {l}");
            assert_eq!(
                v["schema_id"], id,
                "{lang}: the writer's schema id reached the plugin: {l}"
            );
        }
    }
    // Written with the output schema, registered under `shipped-value`.
    let out_ids: std::collections::BTreeSet<_> =
        out.values().map(|l| l["schema_id"].as_u64()).collect();
    assert_eq!(out_ids.len(), 1, "{lang}: {out_ids:?}");
    let dead = k.read_until("reshape.dlq", Duration::from_secs(3), |_| false);
    assert!(dead.is_empty(), "{lang}: {dead:?}");
}

#[test]
fn each_bad_record_is_dead_lettered_alone_and_its_neighbours_pass() {
    let k = Broker::shared().scope();
    let url = registry().url();
    topics(&k);
    let v1: u32 = orders(&[
        "register",
        &url,
        &format!("{}-value", k.name("orders")),
        "v1",
    ])
    .trim()
    .parse()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &reshape_config(&url, ""));
    weir.wait_partitions("reshape", 2);
    let orders_topic = k.name("orders");
    orders(&["produce-bad", &k.bootstrap, &orders_topic, &v1.to_string()]);
    // A schema of another topic's subject: not this deployment's to read.
    let foreign: u32 = orders(&[
        "register",
        &url,
        &format!("{}-value", k.name("secret")),
        "v2",
    ])
    .trim()
    .parse()
    .unwrap();
    orders(&[
        "produce-framed",
        &k.bootstrap,
        &orders_topic,
        &foreign.to_string(),
        "v2",
        "1",
        "foreign",
    ]);
    orders(&[
        "produce-framed",
        &k.bootstrap,
        &orders_topic,
        &v1.to_string(),
        "v1",
        "3",
        "fine",
    ]);

    let out = shipped(&k, &url, 5);
    let keys: Vec<_> = out.keys().cloned().collect();
    assert_eq!(
        keys,
        ["fine-0", "fine-1", "fine-2", "good-after", "good-before"],
        "log:\n{}",
        weir.log_text()
    );
    let dead = k.read("reshape.dlq", 4, Duration::from_secs(30));
    let by_key: BTreeMap<_, _> = dead.iter().map(|r| (r.key_str().to_owned(), r)).collect();
    assert_eq!(by_key.len(), 4, "{dead:?}; log:\n{}", weir.log_text());
    for (key, says) in [
        ("foreign-0", "is not registered under a subject of topic"),
        ("bad-magic", "first byte is 1"),
        (
            "bad-id",
            "schema 2147483647: the schema registry has no such schema",
        ),
        ("bad-truncated", "does not decode as Avro"),
    ] {
        let r = by_key[key];
        assert_eq!(r.header("weir.error.kind"), Some("decode"), "{key}");
        let message = r.header("weir.error.message").unwrap();
        assert!(message.contains(says), "{key}: {message}");
    }
}

#[test]
fn an_output_that_does_not_fit_its_schema_fails_that_record_naming_the_field() {
    let k = Broker::shared().scope();
    let url = registry().url();
    topics(&k);
    let v1: u32 = orders(&[
        "register",
        &url,
        &format!("{}-value", k.name("orders")),
        "v1",
    ])
    .trim()
    .parse()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &reshape_config(&url, ""));
    weir.wait_partitions("reshape", 2);
    let (topic, id) = (k.name("orders"), v1.to_string());
    orders(&["produce-framed", &k.bootstrap, &topic, &id, "v1", "2", "ok"]);
    // An item named "unfit" makes the plugin write `qty` as text.
    orders(&[
        "produce-framed",
        &k.bootstrap,
        &topic,
        &id,
        "v1",
        "1",
        "unfit",
        "unfit",
    ]);
    let out = shipped(&k, &url, 2);
    assert_eq!(out.len(), 2, "log:\n{}", weir.log_text());
    let dead = k.read("reshape.dlq", 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key_str(), "unfit-0");
    assert_eq!(dead[0].header("weir.error.kind"), Some("encode"));
    let message = dead[0].header("weir.error.message").unwrap();
    assert!(message.contains("field `qty`"), "{message}");
}

#[test]
fn an_incompatible_output_schema_is_refused_with_the_registrys_reason() {
    let k = Broker::shared().scope();
    let url = registry().url();
    topics(&k);
    // `shipped-value` holds a schema a required new field would break.
    let subject = format!("{}-value", k.name("shipped"));
    orders(&["register", &url, &subject, "v1"]);
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::start(dir.path(), &k, &reshape_config(&url, ""));
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = weir.log_text();
    assert!(
        log.contains("incompatible with subject") && log.contains(&subject),
        "log:\n{log}"
    );
}

#[test]
fn a_registry_away_mid_stream_holds_records_back_and_loses_none() {
    let k = Broker::shared().scope();
    let mut own = Registry::durable();
    let url = own.url();
    topics(&k);
    let orders_topic = k.name("orders");
    let subject = format!("{orders_topic}-value");
    let v1: u32 = orders(&["register", &url, &subject, "v1"])
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &reshape_config(&url, ""));
    weir.wait_partitions("reshape", 2);
    orders(&[
        "produce-framed",
        &k.bootstrap,
        &orders_topic,
        &v1.to_string(),
        "v1",
        "20",
        "before",
    ]);
    assert_eq!(shipped(&k, &url, 20).len(), 20, "log:\n{}", weir.log_text());

    // A schema Weir has not seen, then the registry goes away.
    let v2: u32 = orders(&["register", &url, &subject, "v2"])
        .trim()
        .parse()
        .unwrap();
    own.stop();
    orders(&[
        "produce-framed",
        &k.bootstrap,
        &orders_topic,
        &v2.to_string(),
        "v2",
        "20",
        "during",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = weir
            .health()
            .map(|h| h["deployments"]["reshape"]["waiting"].to_string())
            .unwrap_or_default();
        if waiting.contains(&format!("schema {v2}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no partition says it waits for the registry: {waiting}; log:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    own.restart();
    let out = shipped(&k, &url, 40);
    let during = out.keys().filter(|key| key.starts_with("during-")).count();
    assert_eq!((out.len(), during), (40, 20), "log:\n{}", weir.log_text());
    assert!(
        k.read_until("reshape.dlq", Duration::from_secs(3), |_| false)
            .is_empty(),
        "nothing was dead-lettered for the registry's absence"
    );
}

/// Protobuf and JSON Schema records, written by confluent-kafka's own
/// serializers (Protobuf's schema registered as a descriptor, as its
/// Python serializer does), go through the same plugin and come back
/// readable by its deserializers.
#[test]
fn protobuf_and_json_schema_records_go_through_the_same_plugin() {
    let k = Broker::shared().scope();
    let url = registry().url();
    let schemas = repo().join("tests/fixtures/schemas");
    let mut deployments = String::new();
    for (format, ext) in [("protobuf", "proto"), ("json-schema", "json")] {
        topics(&k.within(format));
        let schema = std::fs::read_to_string(schemas.join(format!("shipped.{ext}"))).unwrap();
        let formats = format!(
            "dead_letter_topic = \"{{p}}{format}.reshape.dlq\"\n\
             formats.value = \"{format}\"\n\
             formats.output_value = {{ format = \"{format}\", schema = '''{}''', register = true }}\n",
            schema.trim()
        );
        let (input, output) = (format!("{format}.orders"), format!("{format}.shipped"));
        deployments += &deployment(
            &format!("reshape-{format}"),
            "reshape",
            &input,
            &output,
            &formats,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), &k, &registry_config(&url, &deployments));
    for format in ["protobuf", "json-schema"] {
        weir.wait_partitions(&format!("reshape-{format}"), 2);
        let scope = k.within(format);
        orders(&[
            "produce-as",
            format,
            &k.bootstrap,
            &url,
            &scope.name("orders"),
            "20",
        ]);
        let read = [
            "consume-as",
            format,
            &k.bootstrap,
            &url,
            &scope.name("shipped"),
            "20",
            "60",
        ];
        let lines = json_lines(&orders(&read));
        assert_eq!(lines.len(), 20, "{format}: log:\n{}", weir.log_text());
        // Protobuf's JSON mapping writes 64-bit integers as text.
        let number = |v: &serde_json::Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
        for l in &lines {
            let key = l["key"].as_str().unwrap();
            let i: i64 = key.rsplit('-').next().unwrap().parse().unwrap();
            let v = &l["value"];
            assert_eq!(number(&v["id"]), Some(i), "{format}: {l}");
            assert_eq!(v["item"], format!("ITEM-{i}"), "{format}: {l}");
            assert_eq!(number(&v["qty"]), Some(2 * (i % 7 + 2)), "{format}: {l}");
            assert!(
                number(&v["schema_id"]).is_some_and(|id| id > 0),
                "{format}: {l}"
            );
        }
    }
}

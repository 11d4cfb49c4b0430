//! `weir test`, the plugin author's inner loop, run as a user runs it.

use weir_tests::{json_lines, plugin, repo, weir_test};

fn sample(name: &str) -> String {
    repo()
        .join("plugins/rust")
        .join(name)
        .join("sample.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn upper_sample_prints_transformed_records() {
    let p = plugin("upper");
    let out = weir_test(&[p.to_str().unwrap(), "--input", &sample("upper")], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&text(&out.stdout));
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        serde_json::json!({"topic": "output", "key": "user-1", "value": "HELLO WEIR", "timestamp": 1700000000000i64, "headers": {"source": "web"}})
    );
    assert_eq!(lines[2]["key"], serde_json::Value::Null);
}

#[test]
fn word_count_sample_counts_across_records() {
    let p = plugin("word-count");
    let out = weir_test(
        &[
            p.to_str().unwrap(),
            "--input",
            &sample("word-count"),
            "--output-topic",
            "counts",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Vec<String> = json_lines(&text(&out.stdout))
        .iter()
        .map(|l| {
            format!(
                "{}={}",
                l["key"].as_str().unwrap(),
                l["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "the=1", "quick=1", "brown=1", "fox=1", "the=2", "lazy=1", "dog=1", "the=3", "fox=2",
            "the=4", "dog=2"
        ]
    );
}

#[test]
fn router_sample_names_output_topics() {
    let p = plugin("router");
    let out = weir_test(
        &[
            p.to_str().unwrap(),
            "-i",
            &sample("router"),
            "-c",
            "route.errors=ERROR",
            "-c",
            "route.payments=payment",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let topics: Vec<_> = json_lines(&text(&out.stdout))
        .iter()
        .map(|l| l["topic"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(topics, ["errors", "payments", "payments", "output"]);
}

#[test]
fn stdin_input_and_binary_values() {
    let p = plugin("upper");
    let out = weir_test(
        &[p.to_str().unwrap(), "--input", "-"],
        "{\"value_b64\": \"YWL/\", \"partition\": 1, \"offset\": 41}\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json_lines(&text(&out.stdout))[0]["value_b64"], "QUL/");
}

#[test]
fn failed_records_are_reported_with_their_line_and_the_rest_goes_on() {
    let p = plugin("filter");
    let input = "{\"value\": \"{\\\"level\\\": \\\"error\\\"}\"}\n\n{\"value\": \"oops\"}\n{\"value\": \"{\\\"level\\\": \\\"error\\\"}\"}\n";
    let out = weir_test(&[p.to_str().unwrap(), "--input", "-"], input);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code 2 when records failed"
    );
    assert_eq!(json_lines(&text(&out.stdout)).len(), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3 (input partition 0 offset 1): rejected: expected value"),
        "{err}"
    );
}

#[test]
fn malformed_input_and_missing_plugins_fail_clearly() {
    let p = plugin("upper");
    let out = weir_test(
        &[p.to_str().unwrap(), "--input", "-"],
        "{\"value\": \"a\"}\n{\"value\": 1}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2: `value` must be a string, a JSON object or array"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is processed when the input is malformed"
    );

    let out = weir_test(&["/nonexistent/p.wasm", "--input", "-"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("reading plugin /nonexistent/p.wasm"),
        "{}",
        text(&out.stderr)
    );

    let out = weir_test(
        &[
            plugin("filter").to_str().unwrap(),
            "--input",
            "-",
            "-c",
            "field=level",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("init failed: config `field` = `level`"),
        "{}",
        text(&out.stderr)
    );
}

/// `weir test --schema`: the plugin reads typed records by field name and
/// writes outputs that must fit their schema, in each registry format, as
/// `weir run` would with a registry.
#[test]
fn typed_records_go_through_each_schema_format_offline() {
    let p = plugin("reshape");
    let input = "{\"key\": \"a\", \"value\": {\"id\": 1, \"item\": \"pen\", \"qty\": 3}}\n\
                 {\"key\": \"b\", \"value\": {\"id\": 2, \"item\": \"unfit\", \"qty\": 1}}\n";
    let schemas = repo().join("tests/fixtures/schemas");
    for ext in ["avsc", "proto", "json"] {
        let schema = |part: &str, name: &str| {
            format!("{part}={}", schemas.join(format!("{name}.{ext}")).display())
        };
        let (value, output) = (schema("value", "order"), schema("output_value", "shipped"));
        let out = weir_test(
            &[
                p.to_str().unwrap(),
                "-i",
                "-",
                "--schema",
                &value,
                "--schema",
                &output,
            ],
            input,
        );
        // Protobuf's JSON mapping reads the text "2" as the number 2, so
        // the `unfit` item fits there; Avro and JSON Schema refuse it.
        let fits = ext == "proto";
        assert_eq!(
            out.status.code(),
            Some(if fits { 0 } else { 2 }),
            "{ext}: {}",
            text(&out.stderr)
        );
        let lines = json_lines(&text(&out.stdout));
        assert_eq!(
            lines.len(),
            if fits { 2 } else { 1 },
            "{ext}: {}",
            text(&out.stdout)
        );
        let fields: serde_json::Value =
            serde_json::from_str(lines[0]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            fields,
            serde_json::json!({"id": 1, "item": "PEN", "qty": 6, "schema_id": 1}),
            "{ext}"
        );
        if !fits {
            let err = text(&out.stderr);
            assert!(
                err.contains("line 2") && err.contains("encode") && err.contains("qty"),
                "{ext}: {err}"
            );
        }
    }
    // An input that does not fit its schema is the test's mistake: named.
    let value = format!("value={}", schemas.join("order.avsc").display());
    let out = weir_test(
        &[p.to_str().unwrap(), "-i", "-", "--schema", &value],
        "{\"value\": {\"id\": \"x\", \"item\": \"pen\", \"qty\": 1}}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 1: its value does not fit its --schema: field `id`"),
        "{}",
        text(&out.stderr)
    );
}

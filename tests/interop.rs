//! Interoperability with an independent Kafka client: records produced by
//! the `confluent-kafka` Python package (installed by `scripts/setup
//! --test`) with each of Kafka's compression codecs pass through `weir run`
//! and are read back by it.

use std::collections::BTreeMap;
use std::process::Command;

use weir_tests::kafka::{Broker, Weir, deployment, host_config};
use weir_tests::{json_lines, python, repo};

#[test]
fn confluent_kafka_records_of_every_codec_round_trip() {
    let k = Broker::shared().scope();
    for (t, p) in [("raw", 3), ("shout", 3), ("upper.dlq", 1)] {
        k.create_topic(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        &k,
        &host_config(&deployment("upper", "upper", "raw", "shout", "")),
    );
    weir.wait_partitions("upper", 3);

    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let n = 2_000;
        let out = Command::new(python())
            .arg(repo().join("tests/interop/confluent_roundtrip.py"))
            .args([
                &k.bootstrap,
                &k.name("raw"),
                &k.name("shout"),
                &n.to_string(),
                codec,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            lines.len(),
            n,
            "{codec}: every record came back; weir log:\n{}",
            weir.log_text()
        );

        // Values upper-cased, keys and headers kept, order kept per key.
        let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for l in &lines {
            let seq: u64 = l["headers"]["seq"].as_str().unwrap().parse().unwrap();
            assert_eq!(l["value"], format!("PY-{}-{seq}", codec.to_uppercase()));
            assert_eq!(l["key"], format!("k{}", seq % 10));
            assert_eq!(l["headers"]["origin"], "python");
            per_key
                .entry(l["key"].as_str().unwrap().to_owned())
                .or_default()
                .push(seq);
        }
        for (key, seqs) in per_key {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{codec}: order of {key} kept: {seqs:?}"
            );
        }
    }
}

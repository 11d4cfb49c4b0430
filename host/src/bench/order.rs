//! `weir bench order`: what processing co-partitioned inputs in timestamp
//! order costs. The tumbling window count over records split between two
//! inputs alternately, ten a millisecond (near the worst case: every batch
//! ends after one millisecond's records of one input, a record or two per
//! partition) against the same records in one input.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{bench_kafka, deployment, run_id, send_waiting, weir_rate};

pub struct OrderReport {
    pub records: usize,
    pub one_input_per_sec: f64,
    pub two_inputs_per_sec: f64,
}

/// `records` JSON records of `keys` keys, ten per millisecond of event
/// time, in one input and, alternating record by record, in two.
pub fn order(
    brokers: &str,
    plugins: &Path,
    records: usize,
    keys: usize,
    partitions: usize,
) -> Result<OrderReport> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let run = run_id();
    let [one, left, right, one_out, two_out] =
        ["one", "left", "right", "one-out", "two-out"].map(|t| format!("bench-order-{t}-{run}"));
    for t in [
        &one,
        &left,
        &right,
        &one_out,
        &two_out,
        &format!("{one_out}.dlq"),
        &format!("{two_out}.dlq"),
    ] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    let producer: BaseProducer = weir_kafka::producer_config(&kafka).create()?;
    let base = (weir_abi::now_ms() as i64 / 1000 - 3600) * 1000;
    let mut windows = HashSet::new();
    for i in 0..records {
        let key = format!("user-{}", i % keys);
        let value = format!(r#"{{"user":"{key}","seq":{i}}}"#);
        let ts = base + (i / 10) as i64;
        windows.insert((i % keys, ts / 1000));
        for topic in [&one, if i % 2 == 0 { &left } else { &right }] {
            send_waiting(
                &producer,
                BaseRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes())
                    .timestamp(ts),
                Duration::from_millis(5),
            );
        }
    }
    // A record a minute later on each partition closes every window.
    let end = base + (records / 10) as i64 + 60_000;
    for topic in [&one, &left] {
        for p in 0..partitions as i32 {
            send_waiting(
                &producer,
                BaseRecord::<str, str>::to(topic)
                    .partition(p)
                    .key("closer")
                    .payload("{}")
                    .timestamp(end),
                Duration::from_millis(5),
            );
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let config = [("window", "tumbling"), ("size_ms", "1000")];
    let plugin = plugins.join("window_count.wasm");
    let one_input_per_sec = weir_rate(
        &kafka,
        &format!("bench-order-one-{run}"),
        deployment(&plugin, &one, &one_out, &config),
        partitions,
        windows.len(),
    )?
    .per_sec;
    let mut two = deployment(&plugin, &left, &two_out, &config);
    two.inputs.push(right);
    let two_inputs_per_sec = weir_rate(
        &kafka,
        &format!("bench-order-two-{run}"),
        two,
        partitions,
        windows.len(),
    )?
    .per_sec;
    Ok(OrderReport {
        records,
        one_input_per_sec,
        two_inputs_per_sec,
    })
}

//! The stream-table join benchmark: the `enrich` plugin joining orders
//! with a table of customers, against the `upper` map on the same input
//! (what the join adds), and the table's load: from its topic on a fresh
//! host, and from the host's own store after a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    bench_host, bench_host_config, bench_kafka, deployment, run_id, send_waiting, wait_filled,
    weir_rate, weir_rate_in,
};

pub struct JoinReport {
    pub table_keys: usize,
    pub records: usize,
    /// The `upper` map over the same orders, records/s.
    pub map_per_sec: f64,
    /// The join, records/s.
    pub join_per_sec: f64,
    /// The join with every lookup a RocksDB read (`table_index_bytes` 0).
    pub join_rocksdb_per_sec: f64,
    /// Loading the table from its topic on a fresh host.
    pub load: Duration,
    /// Loading it again on a restarted host, from its store.
    pub reload: Duration,
}

/// Joins `records` orders (100-byte values, keys spread over the table)
/// with a table of `table_keys` customers (60-byte values).
pub fn join(
    brokers: &str,
    plugins: &Path,
    table_keys: usize,
    records: usize,
    partitions: usize,
) -> Result<JoinReport> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let kafka = bench_kafka(brokers);
    let cluster = weir_kafka::Cluster::connect(&kafka)?;
    let run = run_id();
    let (table, input, map_out, join_out, rocks_out) = (
        format!("bench-customers-{run}"),
        format!("bench-orders-{run}"),
        format!("bench-map-{run}"),
        format!("bench-join-{run}"),
        format!("bench-join-rocksdb-{run}"),
    );
    cluster.ensure_topic(&table, partitions, &[("cleanup.policy", "compact")])?;
    for t in [
        &input,
        &map_out,
        &join_out,
        &rocks_out,
        &format!("{map_out}.dlq"),
        &format!("{join_out}.dlq"),
        &format!("{rocks_out}.dlq"),
    ] {
        cluster.ensure_topic(t, partitions, &[])?;
    }
    let producer: BaseProducer = weir_kafka::producer_config(&kafka).create()?;
    for i in 0..table_keys {
        let (key, value) = (
            format!("c{i}"),
            format!("{{\"name\":\"customer {i:08}\",\"tier\":\"gold\",\"since\":2019}}"),
        );
        send_waiting(
            &producer,
            BaseRecord::to(&table)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
            Duration::from_millis(5),
        );
    }
    let order = vec![b'o'; 100];
    for i in 0..records {
        // Keys spread over the whole table, not in its order.
        let key = format!("c{}", (i as u64 * 7_919) % table_keys as u64);
        send_waiting(
            &producer,
            BaseRecord::to(&input).key(key.as_bytes()).payload(&order),
            Duration::from_millis(5),
        );
    }
    producer.flush(Duration::from_secs(300))?;

    let map_per_sec = weir_rate(
        &kafka,
        &format!("bench-map-{run}"),
        deployment(&plugins.join("upper.wasm"), &input, &map_out, &[]),
        partitions,
        records,
    )?
    .per_sec;
    let joining = |output: &str| {
        let mut join = deployment(&plugins.join("enrich.wasm"), &input, output, &[]);
        join.tables.insert("customers".into(), table.clone());
        join
    };
    let rocksdb = tempfile::tempdir()?;
    let join_rocksdb_per_sec = weir_rate_in(
        &kafka,
        &weir_pipeline::config::HostConfig {
            table_index_bytes: 0,
            ..bench_host_config(rocksdb.path())
        },
        None,
        &format!("bench-join-rocksdb-{run}"),
        joining(&rocks_out),
        partitions,
        records,
    )?
    .0
    .per_sec;
    let state = tempfile::tempdir()?;
    let name = format!("bench-join-{run}");
    let join = joining(&join_out);
    let (joined, status) = weir_rate_in(
        &kafka,
        &bench_host_config(state.path()),
        None,
        &name,
        join.clone(),
        partitions,
        records,
    )?;
    let load = Duration::from_millis(
        status
            .tables
            .get("customers")
            .and_then(|t| t.load_ms)
            .context("the table's load time")?,
    );

    // A restarted host: the table comes from its store, not its topic.
    let host = bench_host(&kafka, state.path())?;
    host.run(host.prepare_static(&name, &join)?);
    let deadline = Instant::now() + Duration::from_secs(300);
    let reload = loop {
        let status = host
            .statuses()
            .remove(&name)
            .context("the deployment's status")?;
        if let Some(ms) = status.tables.get("customers").and_then(|t| t.load_ms) {
            break Duration::from_millis(ms);
        }
        if Instant::now() > deadline {
            bail!("the table did not load again within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    host.shutdown();
    wait_filled(&kafka, &join_out, partitions, records)?;
    Ok(JoinReport {
        table_keys,
        records,
        map_per_sec,
        join_per_sec: joined.per_sec,
        join_rocksdb_per_sec,
        load,
        reload,
    })
}

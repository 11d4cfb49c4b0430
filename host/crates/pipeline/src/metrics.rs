//! Prometheus metrics of a host, labelled by tenant (empty for the
//! operator's own deployments), deployment and partition.

use std::collections::BTreeMap;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub failures: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub late: IntCounterVec,
    pub out_of_order: IntCounterVec,
    pub batch_seconds: HistogramVec,
    pub wasm_cpu_seconds: prometheus::CounterVec,
    pub consumer_lag: IntGaugeVec,
    pub consumer_lag_end: IntGaugeVec,
    pub open_transaction_seconds: IntGaugeVec,
    pub stopped: IntGaugeVec,
    pub restored_keys: IntCounterVec,
    pub restoring: IntGaugeVec,
    pub rollbacks: IntCounterVec,
    pub consumer_errors: IntCounterVec,
    pub unreadable: IntGaugeVec,
    /// Buffered input of all deployments of the host.
    pub host_buffered_bytes: prometheus::IntGauge,
    /// Memory the tables' copies of their values take.
    pub host_table_index_bytes: prometheus::IntGauge,
    /// Buffered input and pool instances per tenant.
    pub tenant_buffered_bytes: IntGaugeVec,
    pub tenant_instances: IntGaugeVec,
}

const DEPLOYMENT: &[&str] = &["tenant", "deployment"];
const PARTITION: &[&str] = &["tenant", "deployment", "partition"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("weir".into()), None).expect("valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), PARTITION).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new(
                "batch_seconds",
                "Time to run one batch through the transform",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
            DEPLOYMENT,
        )
        .expect("valid metric");
        registry
            .register(Box::new(batch_seconds.clone()))
            .expect("unique metric");
        let wasm_cpu_seconds = prometheus::CounterVec::new(
            Opts::new("wasm_cpu_seconds_total", "CPU time spent in transforms"),
            DEPLOYMENT,
        )
        .expect("valid metric");
        registry
            .register(Box::new(wasm_cpu_seconds.clone()))
            .expect("unique metric");
        let tenant_gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["tenant"]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let host_gauge = |name: &str, help: &str| {
            let g = prometheus::IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        Metrics {
            host_buffered_bytes: host_gauge(
                "host_buffered_bytes",
                "Bytes of input buffered by every deployment of the host",
            ),
            host_table_index_bytes: host_gauge(
                "host_table_index_bytes",
                "Bytes the host's tables take for copies of their values in memory (host.table_index_bytes)",
            ),
            tenant_buffered_bytes: tenant_gauge(
                "tenant_buffered_bytes",
                "Bytes of input buffered by a tenant's deployments",
            ),
            tenant_instances: tenant_gauge(
                "tenant_instances",
                "Instances of the host's pool a tenant's deployments hold",
            ),
            records_in: counter(
                "records_in_total",
                "Records consumed and processed",
                PARTITION,
            ),
            records_out: counter(
                "records_out_total",
                "Records produced by transforms",
                PARTITION,
            ),
            failures: counter(
                "failures_total",
                "Records that failed, by kind",
                &["tenant", "deployment", "partition", "kind"],
            ),
            dead_lettered: counter(
                "dead_lettered_total",
                "Records sent to the dead-letter topic",
                PARTITION,
            ),
            late: counter(
                "late_records_total",
                "Records whose window values arrived after their windows closed",
                PARTITION,
            ),
            out_of_order: counter(
                "out_of_order_records_total",
                "Records whose timestamp was behind their partition's stream time (the input is out of order)",
                PARTITION,
            ),
            batch_seconds,
            wasm_cpu_seconds,
            consumer_lag: gauge(
                "consumer_lag",
                "Records between the consumed position and the last stable offset (what may be read)",
            ),
            consumer_lag_end: gauge(
                "consumer_lag_end",
                "Records between the consumed position and the high watermark (open transactions' records included)",
            ),
            open_transaction_seconds: gauge(
                "open_transaction_seconds",
                "How long an input of the partition has been held back by an open transaction, 0 if none",
            ),
            stopped: gauge(
                "partition_stopped",
                "1 while a partition is stopped by the failure policy",
            ),
            restored_keys: counter(
                "restored_keys_total",
                "State keys restored from changelogs",
                PARTITION,
            ),
            restoring: gauge("restoring", "1 while a partition's state is being restored"),
            rollbacks: counter(
                "upgrade_rollbacks_total",
                "Upgrades rolled back because the new module failed a batch the old one passed",
                DEPLOYMENT,
            ),
            consumer_errors: counter(
                "consumer_errors_total",
                "Errors the input consumer reported (an undecodable batch, a refused topic, a broker gone)",
                DEPLOYMENT,
            ),
            unreadable: gauge(
                "partition_unreadable",
                "1 while a partition's input cannot be read past an offset (see `unreadable` in status)",
            ),
            registry,
        }
    }

    /// The sum of counter `name` (without the `weir_` prefix) over all its
    /// series, or over those of `tenant`.
    pub fn sum(&self, name: &str, tenant: Option<&str>) -> f64 {
        let name = format!("weir_{name}");
        let of_tenant = |m: &prometheus::proto::Metric| {
            tenant.is_none_or(|t| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "tenant" && l.value() == t)
            })
        };
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| of_tenant(m))
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    /// Each deployment's counters summed over its partitions, and its
    /// failures by kind, as the console samples them.
    pub fn totals(&self) -> BTreeMap<String, Totals> {
        let mut all: BTreeMap<String, Totals> = BTreeMap::new();
        for family in self.registry.gather() {
            let name = family.name().strip_prefix("weir_").unwrap_or(family.name());
            for m in family.get_metric() {
                let label = |key: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == key)
                        .map(|l| l.value().to_owned())
                };
                let Some(deployment) = label("deployment") else {
                    continue;
                };
                let t = all.entry(deployment).or_default();
                let counter = m.get_counter().get_value();
                match name {
                    "records_in_total" => t.records_in += counter,
                    "records_out_total" => t.records_out += counter,
                    "dead_lettered_total" => t.dead_lettered += counter,
                    "failures_total" => {
                        t.failures += counter;
                        *t.failures_by_kind
                            .entry(label("kind").unwrap_or_default())
                            .or_default() += counter as u64;
                    }
                    "restored_keys_total" => t.restored_keys += counter as u64,
                    "restoring" => t.restoring += m.get_gauge().get_value() as u64,
                    "consumer_lag" => t.lag += m.get_gauge().get_value() as i64,
                    "batch_seconds" => {
                        let h = m.get_histogram();
                        t.batches = h.get_sample_count();
                        t.batch_seconds = h.get_sample_sum();
                        t.batch_buckets = h
                            .get_bucket()
                            .iter()
                            .map(|b| (b.upper_bound(), b.cumulative_count()))
                            .collect();
                    }
                    _ => {}
                }
            }
        }
        all
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding metrics");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }
}

/// One deployment's counters on this host (see [`Metrics::totals`]).
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub records_in: f64,
    pub records_out: f64,
    pub failures: f64,
    pub dead_lettered: f64,
    pub failures_by_kind: BTreeMap<String, u64>,
    pub restored_keys: u64,
    /// Partitions restoring now.
    pub restoring: u64,
    pub lag: i64,
    pub batches: u64,
    pub batch_seconds: f64,
    /// The batch-time histogram: (upper bound in seconds, cumulative count).
    pub batch_buckets: Vec<(f64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_counter_over_its_series_or_a_tenants() {
        let m = Metrics::new();
        m.failures
            .with_label_values(&["acme", "a", "0", "trap"])
            .inc_by(2);
        m.failures
            .with_label_values(&["acme", "b", "1", "timeout"])
            .inc_by(3);
        m.failures
            .with_label_values(&["evil", "c", "0", "trap"])
            .inc_by(5);
        m.records_in
            .with_label_values(&["acme", "a", "0"])
            .inc_by(7);
        assert_eq!(m.sum("failures_total", None), 10.0);
        assert_eq!(m.sum("failures_total", Some("acme")), 5.0);
        assert_eq!(m.sum("failures_total", Some("nobody")), 0.0);
        assert_eq!(m.sum("records_in_total", None), 7.0);
    }

    /// The Grafana dashboard in the repository reads metrics that exist.
    #[test]
    fn the_grafana_dashboard_names_real_metrics() {
        use prometheus::core::Collector;
        let m = Metrics::new();
        let collectors: [&dyn Collector; 13] = [
            &m.records_in,
            &m.records_out,
            &m.failures,
            &m.dead_lettered,
            &m.late,
            &m.out_of_order,
            &m.batch_seconds,
            &m.wasm_cpu_seconds,
            &m.consumer_lag,
            &m.stopped,
            &m.restored_keys,
            &m.restoring,
            &m.rollbacks,
        ];
        // The registry adds the `weir_` prefix.
        let known: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc())
            .map(|d| format!("weir_{}", d.fq_name))
            .collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../../deploy/grafana/weir.json")).unwrap();
        let mut used = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("weir_"))
                {
                    let base = name.strip_suffix("_bucket").unwrap_or(name);
                    assert!(
                        known.iter().any(|k| k == base),
                        "panel `{}` reads `{name}`, which Weir does not export",
                        panel["title"]
                    );
                    used += 1;
                }
            }
        }
        assert!(used >= 10);
    }
}

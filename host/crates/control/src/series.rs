//! The last 15 minutes of each deployment on this host, sampled from the
//! host's own counters every [`STEP`]: what the console charts. Rates, not
//! totals, so a chart needs no arithmetic; kept in memory (a restarted
//! host starts a new chart, as Prometheus would show a counter reset).

use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use weir_pipeline::metrics::{Metrics, Totals};

pub const STEP: Duration = Duration::from_secs(2);
/// 15 minutes of steps.
pub const POINTS: usize = 450;

/// One step of one deployment.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// End of the step, ms since the epoch.
    pub at_ms: u64,
    /// Records per second over the step.
    pub records_in: f64,
    pub records_out: f64,
    pub failures: f64,
    pub dead_lettered: f64,
    /// Mean time of the step's batches, ms (none when no batch ran).
    pub batch_ms: Option<f64>,
    /// The step's 99th percentile batch time, ms: the upper bound of the
    /// histogram bucket it falls in.
    pub batch_p99_ms: Option<f64>,
    /// Records behind the partitions' ends at the end of the step.
    pub lag: i64,
}

#[derive(Default)]
pub struct Series {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last: BTreeMap<String, (u64, Totals)>,
    points: BTreeMap<String, VecDeque<Point>>,
}

impl Series {
    /// Takes a step: a point for every deployment with counters.
    pub fn sample(&self, metrics: &Metrics, now_ms: u64) {
        let totals = metrics.totals();
        let mut inner = self.inner.lock();
        let Inner { last, points } = &mut *inner;
        for (deployment, now) in &totals {
            if let Some((then_ms, then)) = last.get(deployment) {
                let ring = points.entry(deployment.clone()).or_default();
                if ring.len() == POINTS {
                    ring.pop_front();
                }
                ring.push_back(point(then, now, now_ms.saturating_sub(*then_ms), now_ms));
            }
        }
        // Deployments gone from the host drop out with their counters.
        points.retain(|d, _| totals.contains_key(d));
        *last = totals.into_iter().map(|(d, t)| (d, (now_ms, t))).collect();
    }

    /// A deployment's points, oldest first.
    pub fn of(&self, deployment: &str) -> Vec<Point> {
        self.inner
            .lock()
            .points
            .get(deployment)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn point(then: &Totals, now: &Totals, elapsed_ms: u64, at_ms: u64) -> Point {
    let seconds = (elapsed_ms.max(1) as f64) / 1000.0;
    // A counter that went down was recreated (its deployment restarted).
    let rate = |a: f64, b: f64| (b - a).max(0.0) / seconds;
    let batches = now.batches.saturating_sub(then.batches);
    let (batch_ms, batch_p99_ms) = match batches {
        0 => (None, None),
        n => (
            Some((now.batch_seconds - then.batch_seconds).max(0.0) * 1000.0 / n as f64),
            p99(then, now, n),
        ),
    };
    Point {
        at_ms,
        records_in: rate(then.records_in, now.records_in),
        records_out: rate(then.records_out, now.records_out),
        failures: rate(then.failures, now.failures),
        dead_lettered: rate(then.dead_lettered, now.dead_lettered),
        batch_ms,
        batch_p99_ms,
        lag: now.lag,
    }
}

/// The bucket bound under which 99 % of the step's `n` batches fell, ms.
fn p99(then: &Totals, now: &Totals, n: u64) -> Option<f64> {
    let wanted = (n * 99).div_ceil(100);
    now.batch_buckets
        .iter()
        .enumerate()
        .find_map(|(i, &(bound, count))| {
            let before = then.batch_buckets.get(i).map_or(0, |b| b.1);
            (count.saturating_sub(before) >= wanted).then_some(bound * 1000.0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_counters_of_one_step() {
        let m = Metrics::new();
        let s = Series::default();
        m.records_in.with_label_values(&["", "a", "0"]).inc_by(100);
        s.sample(&m, 10_000);
        assert!(
            s.of("a").is_empty(),
            "a first sample only sets the baseline"
        );
        m.records_in.with_label_values(&["", "a", "0"]).inc_by(300);
        m.records_in.with_label_values(&["", "a", "1"]).inc_by(100);
        m.failures
            .with_label_values(&["", "a", "1", "trap"])
            .inc_by(2);
        for _ in 0..99 {
            m.batch_seconds
                .with_label_values(&["", "a"])
                .observe(0.0002);
        }
        m.batch_seconds.with_label_values(&["", "a"]).observe(0.5);
        m.consumer_lag.with_label_values(&["", "a", "0"]).set(7);
        s.sample(&m, 12_000);
        let p = &s.of("a")[0];
        assert_eq!(
            (p.at_ms, p.records_in, p.failures, p.lag),
            (12_000, 200.0, 1.0, 7)
        );
        assert!(
            (p.batch_ms.unwrap() - (99.0 * 0.2 + 500.0) / 100.0).abs() < 1e-6,
            "{p:?}"
        );
        assert_eq!(
            p.batch_p99_ms,
            Some(0.2),
            "99 of 100 batches fell in the bucket up to 0.2 ms"
        );
        // A step without batches has no batch time.
        s.sample(&m, 14_000);
        assert_eq!(
            (s.of("a")[1].records_in, s.of("a")[1].batch_ms),
            (0.0, None)
        );
    }

    #[test]
    fn keeps_fifteen_minutes() {
        let m = Metrics::new();
        let s = Series::default();
        m.records_in.with_label_values(&["", "a", "0"]).inc();
        for i in 0..(POINTS as u64 + 10) {
            s.sample(&m, i * 2000);
        }
        let points = s.of("a");
        assert_eq!(points.len(), POINTS);
        assert_eq!(points.last().unwrap().at_ms, (POINTS as u64 + 9) * 2000);
    }
}

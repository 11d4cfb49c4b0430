//! Running a deployment's transform over batches: instances, dispatch with
//! failure isolation, and what a batch produced.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

pub mod batch;
pub mod budget;
mod dispatch;
pub mod instance;
pub mod log;
pub mod quota;
mod timers;

pub use batch::{OutRecord, Produced};
pub use dispatch::Transform;
pub use timers::{Fired, TimerFailure};

use log::GuestLog;
use weir_abi::{CallFailure, Limits, RecordFailure, Stopped};
use weir_state::tables::Tables;

/// Whether outputs may go to a topic, and why not.
pub type TopicPolicy = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How one deployment's instances are set up.
#[derive(Clone)]
pub struct TransformSpec {
    /// Deployment name, used in every error and log line.
    pub name: String,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pub log: Arc<GuestLog>,
    /// Decides whether outputs may go to a topic (`None`: any topic).
    pub topic_policy: Option<TopicPolicy>,
    /// The output format of the default output topic (`None`: bytes as
    /// the transform wrote them).
    pub output_encoding: Option<Arc<dyn weir_abi::codec::RecordEncoding>>,
    /// The input format (`None`: records as they are); the pipeline
    /// decodes with it before dispatch.
    pub input_decoding: Option<Arc<dyn weir_abi::codec::RecordDecoding>>,
    /// Stop at the first failed record (the `stop` failure policy) instead
    /// of isolating it and processing the rest of the batch.
    pub stop_at_failure: bool,
    /// The wall clock timers see, in ms since the epoch; `None`: the
    /// system's. `weir test` sets it from its input.
    pub wall_clock: Option<Arc<AtomicI64>>,
    /// The tables the deployment declares (world 0.2.1).
    pub tables: Arc<Tables>,
    /// The share of the host's instance pool its tenant may hold (none:
    /// the operator's, bounded by the pool alone).
    pub instance_quota: Option<Arc<quota::InstanceQuota>>,
}

impl TransformSpec {
    pub fn new(name: &str, config: Vec<(String, String)>, limits: Limits) -> Self {
        TransformSpec {
            name: name.to_owned(),
            config,
            limits,
            log: GuestLog::new(name),
            topic_policy: None,
            output_encoding: None,
            input_decoding: None,
            stop_at_failure: false,
            wall_clock: None,
            tables: Tables::none(),
            instance_quota: None,
        }
    }
}

/// Everything one dispatch produced.
#[derive(Default)]
pub struct BatchResult {
    /// Outputs in production order.
    pub produced: Vec<Produced>,
    /// Failed records, in index order.
    pub failures: Vec<RecordFailure>,
    /// Records whose window values arrived after their windows closed.
    pub late: Vec<u32>,
    /// Records whose timestamp was behind the partition's stream time when
    /// they came: the input is out of order (within a window's grace they
    /// still count; past it they are late), by index.
    pub out_of_order: Vec<u32>,
    pub stopped: Option<Stopped>,
    /// Event-time timers that failed after the batch (and were dropped).
    pub timer_failures: Vec<TimerFailure>,
    /// The host failed while firing timers (they stay set): the partition
    /// must stop.
    pub timer_host_failure: Option<CallFailure>,
}

impl BatchResult {
    /// Every output record, in production order.
    #[inline]
    pub fn records(&self) -> impl Iterator<Item = OutRecord<'_>> {
        self.produced.iter().flat_map(Produced::records)
    }

    /// Number of input records processed (failed ones included) before any
    /// stop.
    #[inline]
    pub fn processed(&self, batch_len: u32) -> u32 {
        self.stopped.as_ref().map_or(batch_len, |s| s.index)
    }
}

/// A failure with everything an operator needs to find the record.
pub fn describe_failure(
    deployment: &str,
    batch: &weir_abi::InputBatch,
    f: &RecordFailure,
) -> String {
    let offset = batch.records.get(f.index as usize).map_or(-1, |r| r.offset);
    format!(
        "deployment `{deployment}`, topic `{}` partition {} offset {offset}: {}: {}",
        batch.topic, batch.partition, f.kind, f.message
    )
}

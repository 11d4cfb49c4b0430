//! What the host shows of each deployment it runs: `/health`, `weir
//! status` and the console read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A deployment's health as the host sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// sha256 of the module new batches run (filled in by `status_now`).
    pub module: String,
    /// The module is an upgrade still on trial (filled in by `status_now`).
    pub on_trial: bool,
    /// Input partitions this host processes.
    pub partitions: Vec<i32>,
    /// Records each partition may read but has not (to the last stable
    /// offset; from client statistics, every 5 s).
    pub lag: BTreeMap<i32, i64>,
    /// Records behind the end of each partition, those behind an open
    /// transaction included (to the high watermark).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lag_to_end: BTreeMap<i32, i64>,
    /// Partitions with an input held back by a transaction left open: read
    /// to the transaction's first record, which (and all after it) a
    /// `read_committed` reader sees only once it ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<i32, HeldInput>,
    /// Partitions with an input the consumer cannot read past an offset
    /// (a batch it cannot decode, a topic it may not read), and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<i32, UnreadableInput>,
    /// What the brokers' ACLs refuse the deployment's consumer (a
    /// permission taken away while it runs), named; until they allow it
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    /// Partitions stopped by the failure policy, and why.
    pub stopped: BTreeMap<i32, String>,
    /// Assigned partitions this host cannot take over (their state could
    /// not be opened or restored), and why; retried.
    pub failed: BTreeMap<i32, String>,
    /// Why the deployment is not running on this host (it failed and is
    /// being started again).
    pub down: Option<String>,
    pub rolled_back: Option<String>,
    pub last_error: Option<String>,
    /// The deployment's tables and their loading (filled in by `status_now`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TableStatus>,
    /// Records dropped as late on each partition since this host took it
    /// (records processed again after a failure count again).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub late: BTreeMap<i32, LateRecords>,
    /// Partitions waiting for one of their inputs, or going on without it
    /// (see `order`), and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub waiting: BTreeMap<i32, String>,
}

/// An input partition held back by an open transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldInput {
    pub topic: String,
    /// Its last stable offset: where the open transaction begins.
    pub offset: i64,
    /// Since when it is held, as seen (ms since the epoch).
    pub since_ms: i64,
}

/// An input partition the consumer fetches at one offset and gets nowhere:
/// no record comes, the consumer reports errors, and records wait beyond.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableInput {
    pub topic: String,
    /// Where fetching is stuck.
    pub offset: i64,
    /// Since when (ms since the epoch).
    pub since_ms: i64,
    /// The consumer's last error.
    pub reason: String,
}

/// Records of a partition dropped as late: every window their values fell
/// in had closed (stream time had passed the window's end and grace).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecords {
    pub count: u64,
    /// The latest of them.
    pub last: LateRecord,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecord {
    pub topic: String,
    pub offset: i64,
    pub timestamp: i64,
    /// The partition's stream time (the largest timestamp it had seen)
    /// after the job that dropped it.
    pub stream_time: i64,
}

/// How a table's loading goes, for `weir status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStatus {
    pub topic: String,
    /// Records read from the topic since this host started loading it.
    pub records_read: u64,
    /// Roughly how many keys the table holds.
    pub keys: u64,
    /// Whether lookups are answered from a copy in memory
    /// (`host.table_index_bytes`), not from RocksDB.
    #[serde(default)]
    pub indexed: bool,
    /// Caught up with the end of the topic as it was when loading began.
    pub loaded: bool,
    /// How long that took, ms.
    pub load_ms: Option<u64>,
    /// The loader's latest error, if it is failing.
    pub error: Option<String>,
}

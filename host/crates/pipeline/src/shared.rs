//! What every deployment of a host shares.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use weir_kafka::KafkaConfig;
use weir_kafka::producer::Producer;
use weir_state::rocks::RocksConfig;

use crate::budget::HostBudgets;
use crate::config::HostConfig;
use crate::metrics::Metrics;
use crate::state_query::StateReaders;
use crate::tables::OpenStores;
use crate::workers::Workers;

/// What every deployment of a host shares.
pub struct Shared {
    pub kafka: KafkaConfig,
    pub host: HostConfig,
    pub producer: Producer,
    pub workers: Workers,
    pub metrics: Arc<Metrics>,
    pub rocks: RocksConfig,
    /// Set when the host shuts down: blocked sends stop waiting.
    pub shutdown: Arc<AtomicBool>,
    /// Names this host's transactional producers (see `HostConfig::id`).
    pub host_id: String,
    pub table_stores: OpenStores,
    /// The partitions' stores, for state queries.
    pub state_readers: StateReaders,
    /// Where this host's HTTP listener answers (set once it is bound).
    pub api_url: std::sync::OnceLock<String>,
    /// Buffered input, the host's and each tenant's.
    pub buffer_budgets: HostBudgets,
    /// Why the shared producer looks stuck, while it does.
    pub producer_stalled: Mutex<Option<String>>,
}

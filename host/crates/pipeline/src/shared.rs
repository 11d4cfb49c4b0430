//! What every deployment of a host shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use weir_kafka::KafkaConfig;
use weir_state::rocks::RocksConfig;
use weir_state::table_index::IndexBudget;

use crate::budget::HostBudgets;
use crate::config::HostConfig;
use crate::metrics::Metrics;
use crate::producers::Producers;
use crate::state_query::StateReaders;
use crate::tables::OpenStores;
use crate::workers::Workers;

/// What every deployment of a host shares.
pub struct Shared {
    pub kafka: KafkaConfig,
    pub host: HostConfig,
    /// The at-least-once deployments' producers, one per tenant.
    pub producers: Producers,
    pub workers: Workers,
    pub metrics: Arc<Metrics>,
    pub rocks: RocksConfig,
    /// Set when the host shuts down, once its deployments have stopped:
    /// blocked sends stop waiting.
    pub shutdown: Arc<AtomicBool>,
    /// Set when the host starts shutting down: its deployments are
    /// stopping because it is.
    pub stopping: AtomicBool,
    /// Names this host's transactional producers (see `HostConfig::id`).
    pub host_id: String,
    pub table_stores: OpenStores,
    /// What the tables' copies in memory may take (`host.table_index_bytes`).
    pub table_index: Arc<IndexBudget>,
    /// The partitions' stores, for state queries.
    pub state_readers: StateReaders,
    /// Where this host's HTTP listener answers (set once it is bound).
    pub api_url: std::sync::OnceLock<String>,
    /// Buffered input, the host's and each tenant's.
    pub buffer_budgets: HostBudgets,
    /// The schema registry (`[schema_registry]`), if the host has one.
    pub registry: Option<Arc<dyn weir_schema::Schemas>>,
}

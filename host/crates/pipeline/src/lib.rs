//! Weir's record pipeline on one host: the [`Host`] with its engine,
//! producer and workers; each deployment's loop from fetch to commit
//! (batching, dispatch to workers, outputs, the ledger of acknowledgements,
//! commits and transactions, rebalances and restores); partitions' state
//! and tables; buffer budgets; metrics; and the local side of state queries.
//!
//! It runs deployments it is handed and knows nothing of where they come
//! from: the registry, tenants' tokens, the configuration file and the
//! HTTP API are `weir-control`'s. Kafka is reached through `weir-kafka`,
//! the sandbox through `weir-engine`.

mod budget;
pub mod config;
pub mod deployment;
mod deployment_loop;
mod host;
mod ledger;
pub mod metrics;
mod order;
mod partition;
mod producers;
mod restore;
mod shared;
pub mod state_query;
pub mod status;
pub mod tables;
mod turns;
pub mod workers;

pub use host::{Host, Identity, TenantScope};
pub use shared::Shared;
pub use status::DeploymentStatus;

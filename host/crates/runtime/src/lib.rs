//! Weir's runtime: everything of `weir run` around the sandbox. Kafka I/O
//! (clients, the shared producer, changelogs), the registry of deployments
//! and modules kept in Kafka topics, tenants and configuration, the
//! pipeline that moves records from fetch to commit, metrics, the HTTP
//! admin API with its client, and the web console over it.

pub mod admin;
pub mod changelog;
pub mod config;
pub mod console;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod series;
pub mod state_query;
pub mod tenants;

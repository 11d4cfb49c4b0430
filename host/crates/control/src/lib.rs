//! Weir's control plane: the configuration file, tenants and their
//! tokens, the registry of modules and deployments kept in Kafka topics,
//! the reconciler that makes each host's pipeline run what the registry
//! says, the HTTP admin API with its client, and the web console over it.
//!
//! It decides what runs and who may ask; running it is `weir-pipeline`'s,
//! and Kafka is reached through `weir-kafka`.

pub mod admin;
pub mod config;
pub mod console;
mod control;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod reconcile;
pub mod registry;
pub mod series;
pub mod tenants;

pub use control::{Control, Problem};

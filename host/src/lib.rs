//! Weir: sandboxed WebAssembly transforms on Kafka streams.
//!
//! One [`engine::Engine`] per process compiles and limits components that
//! implement the WIT world `weir:transform/plugin@0.1.0`; a
//! [`transform::Transform`] runs a deployment's records through them with
//! keyed [`state`] and host-computed [`windows`].

pub mod admin;
pub mod bench;
pub mod changelog;
pub mod config;
pub mod dev;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod scaffold;

pub mod tenants;

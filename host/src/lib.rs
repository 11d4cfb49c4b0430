//! Weir: sandboxed WebAssembly transforms on Kafka streams.
//!
//! One [`engine::Engine`] per process compiles and limits components that
//! implement the WIT world `weir:transform/plugin@0.1.0`; a
//! [`transform::Transform`] runs a deployment's records through them with
//! keyed [`state`] and host-computed [`windows`].

pub mod bindings;
pub mod engine;
pub mod state;
pub mod transform;
pub mod windows;
pub mod offline;
pub mod config;
pub mod bench;
pub mod kafka;
pub mod metrics;
pub mod http;
pub mod pipeline;
pub mod dev;
pub mod scaffold;
pub mod registry;
pub mod tenants;
pub mod admin;
pub mod private_file;
#[doc(hidden)]
pub mod fuzz;

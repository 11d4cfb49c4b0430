//! Record formats and the schema registry: a transform reads and writes
//! fields by name, in any language, and never holds a registry credential.
//!
//! - `format`: a deployment's formats (`bytes`, `string`, `json`, `avro`)
//!   for keys and values, in and out, and the subjects a deployment may
//!   reach;
//! - `registry`: the client of a Confluent-API registry, with a bounded
//!   cache and a fetch thread, so no worker waits on the network;
//! - `decode` and `encode`: a batch decoded before its transform runs,
//!   its outputs encoded after;
//! - `avro` and `wire`: the Avro encoding and the registry's framing.
//!
//! It knows records and schemas, and nothing of Kafka clients,
//! deployments' scheduling or the sandbox. Secrets are read as the
//! brokers' are (`weir_kafka::security::Secret`).

#![forbid(unsafe_code)]

pub mod avro;
mod avro_json;
pub mod decode;
pub mod encode;
pub mod files;
pub mod format;
pub mod json_schema;
pub mod protobuf;
pub mod registry;
pub mod wire;

pub use decode::InputCodec;
pub use encode::OutputCodec;
pub use format::{Format, Formats};
pub use registry::{Registry, RegistryConfig, Schemas};

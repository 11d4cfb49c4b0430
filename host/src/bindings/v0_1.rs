//! Bindings for `weir:transform/plugin@0.1.0`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "weir:transform/plugin@0.1.0",
    // State calls may fail on the host side (storage errors, quotas); they
    // trap the guest rather than hand it an error it could ignore.
    imports: { default: trappable },
    additional_derives: [PartialEq],
});

use self::weir::transform::{log, state, types, windows};

use crate::transform::instance::HostState;
use crate::transform::log::LogLevel;

/// State is reachable only while the host processes a partition's records.
#[derive(Debug, thiserror::Error)]
#[error("state is only available while processing records (in `process` or `on-window`), not in `init`, `reduce` or `merge`")]
struct NoPartition;

impl HostState {
    fn partition(&mut self) -> wasmtime::Result<&mut crate::state::PartitionState> {
        self.partition.as_deref_mut().ok_or_else(|| NoPartition.into())
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        if level == LogLevel::Error {
            self.last_error.set(&message);
        }
        self.log.write(level, &message);
        Ok(())
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.partition()?.get(&key).map_err(wasmtime::Error::from_anyhow)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        self.partition()?.set(&key, &value, ttl_ms);
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.partition()?.delete(&key);
        Ok(())
    }

    fn range(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
        let entries = self.partition()?.range(&start, end.as_deref(), limit).map_err(wasmtime::Error::from_anyhow)?;
        Ok(entries.into_iter().map(|(key, value)| state::Entry { key, value }).collect())
    }

    fn prefix(&mut self, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
        let entries = self.partition()?.prefix(&prefix, after.as_deref(), limit).map_err(wasmtime::Error::from_anyhow)?;
        Ok(entries.into_iter().map(|(key, value)| state::Entry { key, value }).collect())
    }
}

impl windows::Host for HostState {
    fn define(&mut self, name: String, spec: windows::WindowSpec) -> wasmtime::Result<Result<u32, String>> {
        Ok(self.windows.define(&name, spec))
    }
}

//! Host bindings of the WIT world, one module per world version so that
//! plugins compiled against an older version keep loading when the world
//! evolves (the layout Zed's extension host uses). Each module converts its
//! generated types to and from the host's own (`weir_abi`); the version of
//! a component is read from its exports when it is loaded, and [`Pre`] and
//! [`Exports`] have one variant per version.

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};
use weir_abi::{InputBatch, OutputBatch, WindowBatch};
use weir_state::timers::Timer;

use crate::host_state::HostState;

mod since_0_1;

pub mod v0_1;
pub mod v0_2;

/// A version of the world `weir:transform/plugin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorldVersion {
    V0_1,
    /// Adds timers and packs record metadata into bytes (0.2.0); adds
    /// tables (0.2.1).
    V0_2,
}

impl WorldVersion {
    /// What new plugins are built against (`weir new`, error messages).
    pub const NEWEST: WorldVersion = WorldVersion::V0_2;

    pub const fn world(self) -> &'static str {
        match self {
            WorldVersion::V0_1 => "weir:transform/plugin@0.1.0",
            WorldVersion::V0_2 => "weir:transform/plugin@0.2.1",
        }
    }

    /// The interface its transforms export.
    pub const fn handler_export(self) -> &'static str {
        match self {
            WorldVersion::V0_1 => "weir:transform/handler@0.1.0",
            WorldVersion::V0_2 => "weir:transform/handler@0.2.1",
        }
    }

    /// The version whose handler a component exports (any patch release of
    /// it), if any.
    pub fn exported_by<'a>(mut exports: impl Iterator<Item = &'a str>) -> Option<WorldVersion> {
        exports.find_map(|e| match e {
            _ if e.starts_with("weir:transform/handler@0.1.") => Some(WorldVersion::V0_1),
            _ if e.starts_with("weir:transform/handler@0.2.") => Some(WorldVersion::V0_2),
            _ => None,
        })
    }
}

/// Adds the host functions of every world version to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)
}

/// A component linked against its world version, ready to instantiate.
pub enum Pre {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
}

impl Pre {
    pub fn new(version: WorldVersion, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        Ok(match version {
            WorldVersion::V0_1 => Pre::V0_1(v0_1::PluginPre::new(pre)?),
            WorldVersion::V0_2 => Pre::V0_2(v0_2::PluginPre::new(pre)?),
        })
    }

    pub fn version(&self) -> WorldVersion {
        match self {
            Pre::V0_1(_) => WorldVersion::V0_1,
            Pre::V0_2(_) => WorldVersion::V0_2,
        }
    }

    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
        Ok(match self {
            Pre::V0_1(pre) => Exports::V0_1(pre.instantiate(store)?, v0_1::Scratch::default()),
            Pre::V0_2(pre) => Exports::V0_2(pre.instantiate(store)?, v0_2::Scratch::default()),
        })
    }
}

/// The handler of one instance, whichever version it implements. Calls
/// take and return the host's types.
pub enum Exports {
    V0_1(v0_1::Plugin, v0_1::Scratch),
    V0_2(v0_2::Plugin, v0_2::Scratch),
}

/// What `process` and `on-window` return: outputs, or the transform's
/// fatal error.
pub type Returned = Result<OutputBatch, String>;

impl Exports {
    pub fn init(
        &mut self,
        store: &mut Store<HostState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        let config: Vec<(&str, &str)> = config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self {
            Exports::V0_1(p, _) => p.weir_transform_handler().call_init(store, &config),
            Exports::V0_2(p, _) => p.weir_transform_handler().call_init(store, &config),
        }
    }

    pub fn process(
        &mut self,
        store: &mut Store<HostState>,
        batch: &InputBatch,
    ) -> wasmtime::Result<Returned> {
        match self {
            Exports::V0_1(p, scratch) => Ok(p
                .weir_transform_handler()
                .call_process(store, scratch.input(batch))?
                .map(v0_1::output)),
            Exports::V0_2(p, scratch) => p
                .weir_transform_handler()
                .call_process(store, scratch.input(batch))?
                .map_or_else(|m| Ok(Err(m)), |b| v0_2::output(b).map(Ok)),
        }
    }

    pub fn on_window(
        &mut self,
        store: &mut Store<HostState>,
        batch: &WindowBatch,
    ) -> wasmtime::Result<Returned> {
        match self {
            Exports::V0_1(p, scratch) => Ok(p
                .weir_transform_handler()
                .call_on_window(store, scratch.windows(batch))?
                .map(v0_1::output)),
            Exports::V0_2(p, scratch) => p
                .weir_transform_handler()
                .call_on_window(store, scratch.windows(batch))?
                .map_or_else(|m| Ok(Err(m)), |b| v0_2::output(b).map(Ok)),
        }
    }

    /// Hands fired timers to the transform. A 0.1 transform has no timers
    /// to fire: it cannot set any.
    pub fn on_timer(
        &mut self,
        store: &mut Store<HostState>,
        fired: &[Timer],
    ) -> wasmtime::Result<Returned> {
        match self {
            Exports::V0_1(..) => Ok(Ok(OutputBatch::default())),
            Exports::V0_2(p, scratch) => p
                .weir_transform_handler()
                .call_on_timer(store, scratch.timers(fired))?
                .map_or_else(|m| Ok(Err(m)), |b| v0_2::output(b).map(Ok)),
        }
    }

    pub fn reduce(
        &mut self,
        store: &mut Store<HostState>,
        window: u32,
        key: &[u8],
        acc: Option<&[u8]>,
        values: &[Vec<u8>],
    ) -> wasmtime::Result<Vec<u8>> {
        match self {
            Exports::V0_1(p, _) => {
                let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                p.weir_transform_handler()
                    .call_reduce(store, window, key, acc, &values)
            }
            Exports::V0_2(p, _) => {
                let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                p.weir_transform_handler()
                    .call_reduce(store, window, key, acc, &values)
            }
        }
    }

    pub fn merge(
        &mut self,
        store: &mut Store<HostState>,
        window: u32,
        key: &[u8],
        a: &[u8],
        b: &[u8],
    ) -> wasmtime::Result<Vec<u8>> {
        match self {
            Exports::V0_1(p, _) => p
                .weir_transform_handler()
                .call_merge(store, window, key, a, b),
            Exports::V0_2(p, _) => p
                .weir_transform_handler()
                .call_merge(store, window, key, a, b),
        }
    }
}

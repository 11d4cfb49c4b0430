//! The data of one instance's store, on which every host function of the
//! world runs. Its own module so that the world's bindings, capabilities
//! and WASI depend on it, and it on none of them.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::Limiter;
use crate::transform::TransformSpec;
use crate::transform::budget::HostBudget;
use crate::transform::log::{GuestLog, LastError};
use weir_state::PartitionState;
use weir_state::tables::Tables;
use weir_windows::WindowDefs;

/// Data of one instance's store; the host functions of the world run on it.
pub struct HostState {
    pub(crate) limiter: Limiter,
    pub(crate) cpu: CpuBudget,
    pub(crate) log: Arc<GuestLog>,
    pub(crate) last_error: LastError,
    /// The state of the partition being processed; present only during
    /// `process` and `on-window` calls.
    pub(crate) partition: Option<Box<PartitionState>>,
    pub(crate) windows: WindowDefs,
    /// What the current call may make the host hold on its behalf.
    pub(crate) budget: HostBudget,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    /// The instance's WASI monotonic clock, ns (see `engine::wasi`).
    pub(crate) wasi_now: u64,
    pub(crate) wall_clock: Option<Arc<AtomicI64>>,
    pub(crate) horizon: TimerHorizon,
    pub(crate) tables: Arc<Tables>,
}

/// For the `process` call under way: the stream time before it and its
/// latest record timestamp, and whether the call set an event-time timer
/// between the two, which a record of the call may reach (the call must
/// then be split: see `dispatch`).
pub struct TimerHorizon {
    pub between: Option<(i64, i64)>,
    pub crossed: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// CPU time allowed to the current call, checked at every epoch tick.
pub(crate) struct CpuBudget {
    pub(crate) deadline: Duration,
    pub(crate) limit_ms: u64,
    pub(crate) tripped: bool,
}

impl HostState {
    /// A fresh store's data for an instance of `spec`, whose WASI context
    /// (see `wasi::deny_all`) reports errors to `last_error`.
    pub(crate) fn new(spec: &TransformSpec, wasi: WasiCtx, last_error: LastError) -> HostState {
        HostState {
            limiter: Limiter::new(&spec.limits),
            cpu: CpuBudget {
                deadline: Duration::ZERO,
                limit_ms: spec.limits.cpu_ms_per_batch,
                tripped: false,
            },
            log: spec.log.clone(),
            last_error,
            partition: None,
            windows: WindowDefs::default(),
            budget: HostBudget::new(
                spec.limits.host_bytes_per_call(),
                spec.limits.cpu_ms_per_batch,
            ),
            wasi,
            table: ResourceTable::new(),
            wasi_now: 0,
            wall_clock: spec.wall_clock.clone(),
            horizon: TimerHorizon {
                between: None,
                crossed: false,
            },
            tables: spec.tables.clone(),
        }
    }
}

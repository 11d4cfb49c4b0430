//! One sandboxed instance of a transform: its store (limits, CPU budget,
//! the partition state it may touch during a call) and typed calls into it
//! that turn every way a call can fail into a [`CallFailure`].

use std::time::Duration;

use wasmtime::{Store, Trap, UpdateDeadline};

use super::TransformSpec;
use super::budget::HostBudget;
use super::log::{GuestLogStream, LastError};
use super::quota::QuotaSlot;
use crate::bindings::Exports;
use crate::host_state::{HostState, TimerHorizon};
use crate::limits::{LimitExceeded, thread_cpu_time};
use crate::{Module, wasi};
use weir_abi::{CallFailure, FailureKind};
use weir_abi::{InputBatch, OutputBatch, WindowBatch};
use weir_state::PartitionState;

use weir_state::timers::Timer;
use weir_windows::WindowDefs;

pub struct Instance {
    store: Store<HostState>,
    exports: Exports,
    max_wasm_stack: usize,
    /// The tenant's share of the pool this instance holds, if counted.
    _slot: Option<QuotaSlot>,
}

/// Marks wasmtime's refusal to copy more than the hostcall fuel allows.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

impl Instance {
    /// Instantiates the module and runs the transform's `init`.
    pub fn new(module: &Module, spec: &TransformSpec) -> Result<Instance, CallFailure> {
        let slot = spec.instance_quota.as_ref().map(|q| q.take()).transpose()?;
        let last_error = LastError::default();
        let wasi = wasi::deny_all(
            GuestLogStream::stdout(spec.log.clone()),
            GuestLogStream::stderr(spec.log.clone(), last_error.clone()),
        );
        let data = HostState::new(spec, wasi, last_error);
        let mut store = Store::new(module.engine.wasmtime(), data);
        store.limiter(|s| &mut s.limiter);
        // What one call may copy out of the guest (an output batch, a host
        // call's arguments): the elements of a `list<string>` may all point
        // at one large string, and each is copied.
        store.set_hostcall_fuel(
            usize::try_from(spec.limits.host_bytes_per_call()).unwrap_or(usize::MAX),
        );
        store.epoch_deadline_callback(|mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            if thread_cpu_time() >= cpu.deadline {
                cpu.tripped = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let max_wasm_stack = module.engine.config().max_wasm_stack_kb * 1024;
        arm(&mut store);
        let exports = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&mut store, e, max_wasm_stack))?;
        let mut instance = Instance {
            store,
            exports,
            max_wasm_stack,
            _slot: slot,
        };
        match instance.call(|p, s| p.init(s, &spec.config))? {
            Ok(()) => Ok(instance),
            Err(message) => Err(CallFailure::new(
                FailureKind::Fatal,
                format!(
                    "init failed: {}",
                    weir_abi::truncate(&message, weir_abi::MAX_MESSAGE_BYTES)
                ),
            )),
        }
    }

    /// Runs one call with a fresh CPU budget and classifies its failure.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Exports, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        arm(&mut self.store);
        let result = f(&mut self.exports, &mut self.store);
        result.map_err(|e| classify(&mut self.store, e, self.max_wasm_stack))
    }

    /// Starts the host budget of a call and the work that follows it.
    pub fn begin_budget(&mut self) {
        self.store.data_mut().budget.reset();
    }

    /// The host budget of the current call.
    pub fn budget(&mut self) -> &mut HostBudget {
        &mut self.store.data_mut().budget
    }

    /// `process`, with the partition's state reachable from the guest.
    pub fn process(
        &mut self,
        batch: &InputBatch,
        partition: &mut Option<Box<PartitionState>>,
    ) -> Result<Result<OutputBatch, String>, CallFailure> {
        self.store.data_mut().partition = partition.take();
        let result = self.call(|p, s| p.process(s, batch));
        *partition = self.store.data_mut().partition.take();
        self.taken(result)
    }

    pub fn on_window(
        &mut self,
        batch: &WindowBatch,
        partition: &mut Option<Box<PartitionState>>,
    ) -> Result<Result<OutputBatch, String>, CallFailure> {
        self.store.data_mut().partition = partition.take();
        let result = self.call(|p, s| p.on_window(s, batch));
        *partition = self.store.data_mut().partition.take();
        self.taken(result)
    }

    /// Charges the call's budget for the output batch the host now holds
    /// (its copy was bounded by the hostcall fuel) and cuts messages to
    /// what a dead letter carries.
    /// Arms the crossing check for a `process` call: timers after the
    /// first time and at most the second cross (`None`: no check).
    pub fn set_timer_horizon(&mut self, between: Option<(i64, i64)>) {
        self.store.data_mut().horizon = TimerHorizon {
            between,
            crossed: false,
        };
    }

    /// Whether the call set an event-time timer one of its records reaches.
    pub fn take_crossed(&mut self) -> bool {
        std::mem::replace(&mut self.store.data_mut().horizon.crossed, false)
    }

    pub fn on_timer(
        &mut self,
        fired: &[Timer],
        partition: &mut Option<Box<PartitionState>>,
    ) -> Result<Result<OutputBatch, String>, CallFailure> {
        self.set_timer_horizon(None);
        self.store.data_mut().partition = partition.take();
        let result = self.call(|p, s| p.on_timer(s, fired));
        *partition = self.store.data_mut().partition.take();
        self.taken(result)
    }

    fn taken(
        &mut self,
        result: Result<Result<OutputBatch, String>, CallFailure>,
    ) -> Result<Result<OutputBatch, String>, CallFailure> {
        match result? {
            Ok(out) => {
                super::batch::charge_taken(&out, &mut self.store.data_mut().budget)?;
                Ok(Ok(super::batch::cut_messages(out)))
            }
            Err(message) => Ok(Err(weir_abi::truncate(
                &message,
                weir_abi::MAX_MESSAGE_BYTES,
            )
            .to_owned())),
        }
    }

    pub fn reduce(
        &mut self,
        window: u32,
        key: &[u8],
        acc: Option<&[u8]>,
        values: &[Vec<u8>],
    ) -> Result<Vec<u8>, CallFailure> {
        self.call(|p, s| p.reduce(s, window, key, acc, values))
    }

    pub fn merge(
        &mut self,
        window: u32,
        key: &[u8],
        a: &[u8],
        b: &[u8],
    ) -> Result<Vec<u8>, CallFailure> {
        self.call(|p, s| p.merge(s, window, key, a, b))
    }

    pub fn windows(&self) -> &WindowDefs {
        &self.store.data().windows
    }

    /// Linear memory the instance holds; it never shrinks, so instances
    /// past a high-water mark are recycled.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.memory_used
    }
}

fn arm(store: &mut Store<HostState>) {
    let cpu = &mut store.data_mut().cpu;
    cpu.deadline = thread_cpu_time() + Duration::from_millis(cpu.limit_ms);
    cpu.tripped = false;
    store.data().last_error.take();
    store.set_epoch_deadline(1);
}

/// Names what went wrong in a failed call.
fn classify(
    store: &mut Store<HostState>,
    error: wasmtime::Error,
    max_wasm_stack: usize,
) -> CallFailure {
    if format!("{error:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
        let limit = store.hostcall_fuel() as u64;
        return CallFailure::new(
            FailureKind::Memory,
            LimitExceeded::HostMemory {
                what: "data copied out of the guest by one call".into(),
                limit,
            }
            .to_string(),
        );
    }
    let data = store.data_mut();
    if data.cpu.tripped {
        return CallFailure::new(
            FailureKind::Timeout,
            LimitExceeded::Cpu {
                limit_ms: data.cpu.limit_ms,
            }
            .to_string(),
        );
    }
    if let Some(breach) = data.limiter.breach.take() {
        return CallFailure::new(FailureKind::Memory, breach.to_string());
    }
    // The pool is a host resource, full for now: not the record's doing.
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallFailure::new(
            FailureKind::Unavailable,
            format!("no room to run the transform: the host's instance pool is full: {full}"),
        );
    }
    // A binding that judged the guest's result itself (a malformed packed batch).
    if let Some(failure) = error.downcast_ref::<CallFailure>() {
        return failure.clone();
    }
    if let Some(breach) = error.downcast_ref::<LimitExceeded>() {
        let kind = match breach {
            LimitExceeded::Cpu { .. } => FailureKind::Timeout,
            LimitExceeded::Outputs { .. }
            | LimitExceeded::OutputBytes { .. }
            | LimitExceeded::RecordBytes { .. } => FailureKind::OutputLimit,
            LimitExceeded::State { .. } | LimitExceeded::StateEntry { .. } => {
                FailureKind::StateLimit
            }
            LimitExceeded::Memory { .. }
            | LimitExceeded::Table { .. }
            | LimitExceeded::HostMemory { .. } => FailureKind::Memory,
        };
        return CallFailure::new(kind, breach.to_string());
    }
    let said = data
        .last_error
        .take()
        .map(|m| format!("; the transform said: {m}"))
        .unwrap_or_default();
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => CallFailure::new(
            FailureKind::Stack,
            format!(
                "stack overflow: the call used more than the {} KiB wasm stack limit",
                max_wasm_stack / 1024
            ),
        ),
        Some(trap) => CallFailure::new(FailureKind::Trap, format!("{trap}{said}")),
        None => CallFailure::new(FailureKind::Trap, format!("{error:#}{said}")),
    }
}

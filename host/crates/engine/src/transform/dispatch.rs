//! Dispatching a batch to a transform while isolating bad records.
//!
//! A batch goes to the guest in one call. If the call fails as a whole (a
//! trap, a limit, a malformed result) nobody knows which record caused it,
//! so the batch is split in halves and each half retried on a fresh
//! instance, down to the single culprit: one bad record costs about
//! 2·log2(batch) calls and every other record is processed exactly once.
//! State written by a failed call is rolled back first, so a retried record
//! never sees its own earlier, discarded writes.
//!
//! Rejections name their records. When the transform rejected some records
//! but also wrote state or window values in that call, the writes of the
//! rejected records cannot be told apart, so the call is rolled back and
//! repeated without them.
//!
//! Event-time timers fire before the first record whose timestamp reaches
//! them, whatever the batching: records go to the guest in runs that end
//! before such a record, and a call that sets a timer some of its own
//! records already reach is rolled back and split the same way.
//!
//! (Over 400 lines: failure isolation, bisection and its budget are one algorithm, kept together.)

use std::sync::Arc;

use super::batch::{self, Origin, SourceFailures};
use super::instance::Instance;
use super::timers::{Allowance, Fired};
use super::{BatchResult, Produced, TransformSpec};
use crate::Module;
use crate::limits::thread_cpu_time;
use weir_abi::LimitExceeded;
use weir_abi::{CallFailure, FailureKind, RecordFailure, Stopped};
use weir_abi::{InputBatch, OutputBatch, Span, WindowBatch, WindowResult};
use weir_state::PartitionState;
use weir_state::timers::Clock;
use weir_windows::{Emitted, Folder, ForceClose};

/// One worker's handle on a deployment's transform: the module, its
/// settings, and a lazily created instance.
pub struct Transform {
    module: Arc<Module>,
    spec: Arc<TransformSpec>,
    instance: Option<Instance>,
    instantiations: u64,
}

enum Attempt {
    Done,
    /// A timer set in the call is reached by a record of the call: repeat
    /// in halves.
    Crossed,
    /// Repeat without these sources (indexes into the attempted indices).
    Retry(SourceFailures),
    Failed(CallFailure),
}

/// The state of one dispatch.
struct Run {
    state: Option<Box<PartitionState>>,
    /// The earliest event-time timer, as of the last call; `None` too once
    /// the allowance ran out with timers still due (see `run_records`).
    next_timer: Option<i64>,
    /// Records no longer wait for due timers in this batch.
    timers_spent: bool,
    /// The `on-timer` calls and the CPU time the batch may still spend on
    /// timers and on splitting calls that cross them: a few calls per
    /// record, and twice a call's CPU limit, so timers that keep setting
    /// themselves due, or calls that keep crossing them, cannot hold a
    /// worker.
    timers: Allowance,
    /// The stream time as of the records run so far: timers a call sets at
    /// or before it fire after the call, not before one of its records.
    known_stream: i64,
    result: BatchResult,
    /// Set once the batch failed as a whole and is being bisected.
    isolation: Option<Isolation>,
}

/// The CPU time bisection may take. Finding one bad record among `n` costs
/// about `log2(n)` failing calls, each up to the CPU limit; a batch whose
/// every record loops would cost `2n` of them (half an hour for 1,000
/// records at 1 s each) while holding a worker, and a guest rejecting one
/// record per call would be called `n` times. So isolation starts with the
/// budget to find one culprit, gains as much again for each culprit found
/// (alone, or rejected), up to [`MAX_CULPRITS`]; past the budget, the
/// records not yet run fail with the failure that started it.
struct Isolation {
    cpu_at_start: std::time::Duration,
    per_culprit: std::time::Duration,
    budget: std::time::Duration,
    culprits: u32,
    cause: CallFailure,
}

/// Culprits one bisection may find before the rest of its batch fails
/// unrun: a few poison records are normal, a batch of them is a broken
/// transform.
const MAX_CULPRITS: u32 = 8;

impl Isolation {
    fn new(records: usize, cpu_ms_per_batch: u64, cause: CallFailure) -> Self {
        let calls = 2 + records.max(1).ilog2() as u64 + 1;
        let per_culprit = std::time::Duration::from_millis(calls * cpu_ms_per_batch);
        Isolation {
            cpu_at_start: thread_cpu_time(),
            per_culprit,
            budget: per_culprit,
            culprits: 0,
            cause,
        }
    }

    fn found_culprit(&mut self) {
        self.culprits += 1;
        if self.culprits < MAX_CULPRITS {
            self.budget += self.per_culprit;
        }
    }

    fn exhausted(&self) -> bool {
        thread_cpu_time().saturating_sub(self.cpu_at_start) > self.budget
    }
}

impl Run {
    fn state(&mut self) -> &mut PartitionState {
        self.state
            .as_mut()
            .expect("partition state is back from the instance")
    }

    /// Reads the earliest event-time timer; a store that cannot be read
    /// fires none and leaves the failure for the caller to stop on.
    fn refresh_next_timer(&mut self) {
        if self.timers_spent {
            return;
        }
        match self.state().next_timer(Clock::EventTime) {
            Ok(next) => self.next_timer = next,
            Err(e) => {
                self.next_timer = None;
                self.result
                    .timer_host_failure
                    .get_or_insert(CallFailure::host(e));
            }
        }
    }

    fn fail(&mut self, index: u32, kind: FailureKind, message: String) {
        self.result.failures.push(RecordFailure {
            index,
            kind,
            message,
        });
    }

    fn stop(&mut self, index: u32, failure: CallFailure) {
        // Records from `index` on will be processed again after the stop is
        // resolved, so nothing about them is final.
        self.result.failures.retain(|f| f.index < index);
        self.result.late.retain(|&i| i < index);
        self.result.out_of_order.retain(|&i| i < index);
        self.result.stopped = Some(Stopped {
            index,
            kind: failure.kind,
            message: failure.message,
        });
    }
}

impl Folder for Instance {
    fn reduce(
        &mut self,
        window: u32,
        key: &[u8],
        acc: Option<&[u8]>,
        values: &[Vec<u8>],
    ) -> Result<Vec<u8>, CallFailure> {
        Instance::reduce(self, window, key, acc, values)
    }

    fn merge(
        &mut self,
        window: u32,
        key: &[u8],
        a: &[u8],
        b: &[u8],
    ) -> Result<Vec<u8>, CallFailure> {
        Instance::merge(self, window, key, a, b)
    }

    fn charge(&mut self, bytes: u64, what: &str) -> Result<(), CallFailure> {
        self.budget().charge(bytes, what)
    }

    fn budget_left(&mut self) -> u64 {
        self.budget().left()
    }

    fn check_cpu(&mut self) -> Result<(), CallFailure> {
        self.budget().check_cpu()
    }
}

impl Transform {
    pub fn new(module: Arc<Module>, spec: Arc<TransformSpec>) -> Self {
        Transform {
            module,
            spec,
            instance: None,
            instantiations: 0,
        }
    }

    /// Instances created so far (the first, plus one after every failure).
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    /// Whether the transform's world has timers (0.2 on).
    pub(super) fn module_has_timers(&self) -> bool {
        self.module.world_version() != crate::bindings::WorldVersion::V0_1
    }

    pub(super) fn spec(&self) -> &Arc<TransformSpec> {
        &self.spec
    }

    /// Drops the instance (poisoned by a trap, or grown by a failure): the
    /// next call starts afresh.
    pub(super) fn discard_instance(&mut self) {
        self.instance = None;
    }

    /// Whether it holds an instance (of the pool, and of its tenant's share).
    pub fn has_instance(&self) -> bool {
        self.instance.is_some()
    }

    /// Gives its instance back (to make room for another transform of the
    /// tenant); the next call starts a fresh one.
    pub fn release_instance(&mut self) {
        self.instance = None;
    }

    pub(super) fn instance(&mut self) -> Result<&mut Instance, CallFailure> {
        if self.instance.is_none() {
            self.instance = Some(Instance::new(&self.module, &self.spec)?);
            self.instantiations += 1;
        }
        Ok(self.instance.as_mut().expect("just created"))
    }

    /// Instantiates the transform and runs its `init`, so configuration
    /// errors surface before any record is consumed.
    pub fn warm_up(&mut self) -> Result<(), CallFailure> {
        self.instance().map(|_| ())
    }

    /// Processes `batch` (records of one partition) against that
    /// partition's state.
    pub fn dispatch(
        &mut self,
        batch: &InputBatch,
        state: Box<PartitionState>,
    ) -> (Box<PartitionState>, BatchResult) {
        self.dispatch_checked(batch, &[], state)
    }

    /// [`dispatch`](Self::dispatch) of a batch some of whose records
    /// (`invalid`, in index order) no transform may see: they fail as they
    /// are, and neither their time nor their content reaches the state.
    pub fn dispatch_checked(
        &mut self,
        batch: &InputBatch,
        invalid: &[RecordFailure],
        state: Box<PartitionState>,
    ) -> (Box<PartitionState>, BatchResult) {
        // Under the stop policy the first invalid record stops the batch.
        let stop_at = invalid.first().filter(|_| self.spec.stop_at_failure);
        let end = stop_at.map_or(batch.records.len() as u32, |f| f.index);
        let valid: Vec<u32> = (0..end)
            .filter(|i| invalid.binary_search_by_key(i, |f| f.index).is_err())
            .collect();
        let failures = if stop_at.is_some() {
            Vec::new()
        } else {
            invalid.to_vec()
        };
        let state_stream_time = state.stream_time();
        let mut stream_time = state_stream_time;
        let out_of_order = valid
            .iter()
            .copied()
            .filter(|&i| {
                let ts = batch.records[i as usize].timestamp;
                let behind = ts < stream_time;
                stream_time = stream_time.max(ts);
                behind
            })
            .collect();
        let mut run = Run {
            state: Some(state),
            next_timer: None,
            timers_spent: false,
            timers: Allowance::new(16 + 2 * valid.len(), 2 * self.spec.limits.cpu_ms_per_batch),
            known_stream: state_stream_time,
            result: BatchResult {
                failures,
                out_of_order,
                ..BatchResult::default()
            },
            isolation: None,
        };
        run.refresh_next_timer();
        self.run_records(batch, &valid, &mut run);
        if let (Some(f), None) = (stop_at, &run.result.stopped) {
            run.stop(f.index, CallFailure::new(f.kind, f.message.clone()));
        }
        if run.result.stopped.is_none() {
            // Timers set for a time stream time had already reached, and the
            // wall clock's, which a partition busy with records would
            // otherwise never give a moment to.
            let now = run.state().stream_time();
            if self.fire_event_timers(now, &mut run) {
                let mut fired = Fired::default();
                self.fire_timers(
                    Clock::WallClock,
                    self.wall_now(),
                    &mut run.state,
                    &mut fired,
                    &mut run.timers,
                );
                run.result.produced.append(&mut fired.produced);
                run.result.timer_failures.append(&mut fired.failures);
                run.result.timer_host_failure = fired.host_failure;
            }
        }
        run.result.failures.sort_by_key(|f| f.index);
        run.result.late.sort_unstable();
        run.result.late.dedup();
        if let Some(at) = run.result.stopped.as_ref().map(|s| s.index) {
            // Records from the stop on were not processed: they come again,
            // and only then may they fail or count as late.
            run.result.failures.retain(|f| f.index < at);
            run.result.late.retain(|&i| i < at);
            run.result.out_of_order.retain(|&i| i < at);
        }
        self.recycle_if_bloated();
        (run.state.expect("partition state returned"), run.result)
    }

    /// Closes windows without waiting for stream time (idle partitions, or
    /// the end of a `weir test` run) and turns them into outputs.
    pub fn close_windows(
        &mut self,
        which: ForceClose,
        state: Box<PartitionState>,
    ) -> (Box<PartitionState>, Result<Vec<Produced>, CallFailure>) {
        let mut slot = Some(state);
        let result = self.try_close_windows(which, &mut slot);
        if result.is_err() {
            self.instance = None;
        }
        (slot.expect("partition state returned"), result)
    }

    fn try_close_windows(
        &mut self,
        which: ForceClose,
        slot: &mut Option<Box<PartitionState>>,
    ) -> Result<Vec<Produced>, CallFailure> {
        let spec = self.spec.clone();
        let inst = self.instance()?;
        if inst.windows().is_empty() {
            return Ok(Vec::new());
        }
        let defs = inst.windows().clone();
        inst.begin_budget();
        let state = slot.as_mut().expect("state present");
        state.begin();
        let mut emitted = Vec::new();
        let mut produced = Vec::new();
        let outcome =
            weir_windows::force_close(&defs, state, inst, which, &mut emitted).and_then(|()| {
                if let Some(p) = call_on_window(inst, &defs, &emitted, slot, &spec, &[])? {
                    produced.push(p);
                }
                Ok(())
            });
        let state = slot.as_mut().expect("state present");
        match outcome {
            Ok(()) => {
                state.commit_txn();
                Ok(produced)
            }
            Err(e) => {
                state.rollback();
                Err(e)
            }
        }
    }

    /// The wall clock timers see: the spec's (`weir test`), or the system's.
    fn wall_now(&self) -> i64 {
        self.spec
            .wall_clock
            .as_ref()
            .map_or(weir_abi::now_ms() as i64, |c| {
                c.load(std::sync::atomic::Ordering::Relaxed)
            })
    }

    /// Fires the wall-clock timers due at `now` (ms since the epoch).
    pub fn fire_wall_clock_timers(
        &mut self,
        now: i64,
        state: Box<PartitionState>,
    ) -> (Box<PartitionState>, Fired) {
        let mut slot = Some(state);
        let mut fired = Fired::default();
        let mut allowance = Allowance::new(16, 2 * self.spec.limits.cpu_ms_per_batch);
        self.fire_timers(Clock::WallClock, now, &mut slot, &mut fired, &mut allowance);
        self.recycle_if_bloated();
        (slot.expect("partition state returned"), fired)
    }

    fn recycle_if_bloated(&mut self) {
        // Linear memory never shrinks: an instance that once grew near its
        // limit is replaced rather than kept at that size.
        let limit = self.spec.limits.memory_bytes();
        if self
            .instance
            .as_ref()
            .is_some_and(|i| i.memory_bytes() > limit / 4 * 3)
        {
            self.instance = None;
        }
    }

    /// Runs `indices` (in order), firing event-time timers before each
    /// record that reaches them.
    fn run_records(&mut self, batch: &InputBatch, indices: &[u32], run: &mut Run) {
        let mut start = 0;
        for (k, &i) in indices.iter().enumerate() {
            let ts = batch.records[i as usize].timestamp;
            if run.next_timer.is_none_or(|next| ts < next) {
                continue;
            }
            if k > start {
                self.calls(batch, &indices[start..k], run);
                if run.result.stopped.is_some() {
                    return;
                }
            }
            run.state().observe_timestamp(ts);
            run.known_stream = run.known_stream.max(ts);
            if !self.fire_event_timers(ts, run) {
                let failure = run
                    .result
                    .timer_host_failure
                    .take()
                    .expect("a host failure");
                run.stop(i, failure);
                return;
            }
            if run.next_timer.is_some_and(|next| next <= ts) {
                // Still due: the allowance ran out. The rest of the batch
                // goes on without cutting at timers, which fire at the next
                // opportunity, rather than one call per record.
                run.timers_spent = true;
                run.next_timer = None;
            }
            start = k;
        }
        if start < indices.len() {
            self.calls(batch, &indices[start..], run);
        }
    }

    /// Runs `indices`, none of which reaches a timer set before them.
    fn calls(&mut self, batch: &InputBatch, indices: &[u32], run: &mut Run) {
        let max = indices
            .iter()
            .map(|&i| batch.records[i as usize].timestamp)
            .max()
            .unwrap_or(i64::MIN);
        run.state().observe_timestamp(max);
        self.group(batch, indices.to_vec(), run);
        run.known_stream = run.known_stream.max(max);
        run.refresh_next_timer();
    }

    /// Fires the event-time timers due at `now`; false if the host failed
    /// (left in `timer_host_failure`).
    fn fire_event_timers(&mut self, now: i64, run: &mut Run) -> bool {
        let mut fired = Fired::default();
        self.fire_timers(
            Clock::EventTime,
            now,
            &mut run.state,
            &mut fired,
            &mut run.timers,
        );
        run.result.produced.append(&mut fired.produced);
        run.result.timer_failures.append(&mut fired.failures);
        if let Some(f) = fired.host_failure {
            run.result.timer_host_failure = Some(f);
            return false;
        }
        run.refresh_next_timer();
        true
    }

    fn group(&mut self, batch: &InputBatch, mut indices: Vec<u32>, run: &mut Run) {
        // In stop-at-failure mode: the record to stop at, once the records
        // before it are processed.
        let mut stop_after: Option<(u32, CallFailure)> = None;
        loop {
            if run.result.stopped.is_some() {
                return;
            }
            if indices.is_empty() {
                if let Some((index, failure)) = stop_after {
                    run.stop(index, failure);
                }
                return;
            }
            if let Some(iso) = run.isolation.as_ref().filter(|i| i.exhausted()) {
                let message = format!(
                    "not run alone: isolating the failure of its batch used up the {} ms of CPU bisection may take; the batch failed with {}: {}",
                    iso.budget.as_millis(),
                    iso.cause.kind,
                    iso.cause.message
                );
                let (kind, first) = (iso.cause.kind, indices[0]);
                if self.spec.stop_at_failure {
                    run.stop(first, CallFailure::new(kind, message));
                    return;
                }
                for i in indices {
                    run.fail(i, kind, message.clone());
                }
                return;
            }
            let selected;
            let sub = if indices.len() == batch.records.len() {
                batch
            } else {
                selected = batch.select(&indices);
                &selected
            };
            match self.attempt(sub, &indices, run) {
                Attempt::Crossed => {
                    let right = indices.split_off(indices.len() / 2);
                    self.run_records(batch, &indices, run);
                    if run.result.stopped.is_none() {
                        self.run_records(batch, &right, run);
                    }
                    if let Some((index, failure)) =
                        stop_after.filter(|_| run.result.stopped.is_none())
                    {
                        run.stop(index, failure);
                    }
                    return;
                }
                Attempt::Done => {
                    if let Some((index, failure)) = stop_after {
                        run.stop(index, failure);
                    }
                    return;
                }
                Attempt::Retry(failed) if self.spec.stop_at_failure => {
                    let (&first, (kind, message)) =
                        failed.iter().next().expect("a retry names failures");
                    stop_after = Some((
                        indices[first as usize],
                        CallFailure::new(*kind, message.clone()),
                    ));
                    indices.truncate(first as usize);
                }
                Attempt::Retry(failed) => {
                    // A guest that rejects one record per call would
                    // otherwise be called once per record, unbudgeted.
                    let (kind, message) = failed.values().next().expect("a retry names failures");
                    let iso = run.isolation.get_or_insert_with(|| {
                        Isolation::new(
                            indices.len(),
                            self.spec.limits.cpu_ms_per_batch,
                            CallFailure::new(*kind, message.clone()),
                        )
                    });
                    for _ in 0..failed.len() {
                        iso.found_culprit();
                    }
                    for (&source, (kind, message)) in &failed {
                        run.fail(indices[source as usize], *kind, message.clone());
                    }
                    let mut i = 0u32;
                    indices.retain(|_| {
                        i += 1;
                        !failed.contains_key(&(i - 1))
                    });
                }
                Attempt::Failed(failure) => {
                    // The instance may be poisoned (a trap) or its memory
                    // grown by the failure: start the next try afresh.
                    self.instance = None;
                    if failure.kind.stops_partition()
                        || (indices.len() == 1 && self.spec.stop_at_failure)
                    {
                        run.stop(indices[0], failure);
                        return;
                    }
                    if indices.len() == 1 {
                        if let Some(iso) = run.isolation.as_mut() {
                            iso.found_culprit();
                        }
                        run.fail(indices[0], failure.kind, failure.message);
                        return;
                    }
                    if run.isolation.is_none() {
                        run.isolation = Some(Isolation::new(
                            indices.len(),
                            self.spec.limits.cpu_ms_per_batch,
                            failure.clone(),
                        ));
                    }
                    let right = indices.split_off(indices.len() / 2);
                    self.group(batch, indices, run);
                    self.group(batch, right, run);
                    return;
                }
            }
        }
    }

    fn attempt(&mut self, sub: &InputBatch, indices: &[u32], run: &mut Run) -> Attempt {
        let spec = self.spec.clone();
        let has_timers = self.module_has_timers();
        let inst = match self.instance() {
            Ok(i) => i,
            Err(f) => return Attempt::Failed(f),
        };
        run.state().begin();
        let state_before = spec
            .limits
            .max_state_bytes
            .map(|_| run.state().try_state_bytes().map_err(CallFailure::host));
        inst.begin_budget();
        // A single record cannot be split further: whatever it sets fires
        // after it. Nor can a call past the batch's allowance.
        let splittable = sub.records.len() > 1 && has_timers && run.timers.cpu_left();
        let horizon = splittable.then(|| {
            (
                run.known_stream,
                sub.records
                    .iter()
                    .map(|r| r.timestamp)
                    .max()
                    .unwrap_or(i64::MIN),
            )
        });
        inst.set_timer_horizon(horizon);
        let called = inst.process(sub, &mut run.state);
        let outcome = called
            .and_then(|r| r.map_err(|m| CallFailure::new(FailureKind::Fatal, m)))
            .and_then(|out| {
                let failed = batch::check(&out, sub.records.len(), &spec, inst.budget())?;
                let (out, failed) = batch::encode(out, failed, &spec, inst.budget())?;
                let wrote = run.state().touched() || !out.window_adds.is_empty();
                if !failed.is_empty() && (wrote || spec.stop_at_failure) {
                    return Ok(Err(failed));
                }
                let windowed = apply_windows(inst, &out, &failed, indices, run, &spec)?;
                if let Some((bytes, limit)) = run.state().take_oversize() {
                    return Err(CallFailure::new(
                        FailureKind::StateLimit,
                        LimitExceeded::StateEntry { bytes, limit }.to_string(),
                    ));
                }
                if let (Some(limit), Some(before)) = (spec.limits.max_state_bytes, state_before) {
                    check_state_size(run.state(), before?, limit)?;
                }
                Ok(Ok((out, failed, windowed)))
            });
        match outcome {
            Err(failure) => {
                run.state().rollback();
                Attempt::Failed(failure)
            }
            Ok(Err(failed)) => {
                run.state().rollback();
                Attempt::Retry(failed)
            }
            Ok(Ok(_)) if inst.take_crossed() => {
                run.state().rollback();
                Attempt::Crossed
            }
            Ok(Ok((out, failed, windowed))) => {
                run.state().commit_txn();
                let origins = sub
                    .records
                    .iter()
                    .zip(indices)
                    .map(|(r, &i)| Origin {
                        input: Some(i),
                        timestamp: r.timestamp,
                    })
                    .collect();
                let out = batch::without_sources(out, &failed);
                run.result.produced.push(Produced {
                    batch: out,
                    origins,
                });
                run.result.produced.extend(windowed);
                for (source, (kind, message)) in failed {
                    run.fail(indices[source as usize], kind, message);
                }
                Attempt::Done
            }
        }
    }
}

/// Fails a call that left the state over `limit` and larger than `before`:
/// bisection then finds the records that grow it, while records that only
/// read, overwrite or delete go on at a full store.
pub(super) fn check_state_size(
    state: &PartitionState,
    before: u64,
    limit: u64,
) -> Result<(), CallFailure> {
    let bytes = state.try_state_bytes().map_err(CallFailure::host)?;
    if bytes > limit && bytes > before {
        return Err(CallFailure::new(
            FailureKind::StateLimit,
            LimitExceeded::State { bytes, limit }.to_string(),
        ));
    }
    Ok(())
}

/// Applies the window values of a successful `process` call and turns the
/// results into outputs with `on-window`.
fn apply_windows(
    inst: &mut Instance,
    out: &OutputBatch,
    failed: &SourceFailures,
    indices: &[u32],
    run: &mut Run,
    spec: &TransformSpec,
) -> Result<Option<Produced>, CallFailure> {
    if out.window_adds.is_empty() {
        return Ok(None);
    }
    let defs = inst.windows().clone();
    let mut emitted = Vec::new();
    let invalid = |why: &str| CallFailure::new(FailureKind::InvalidOutput, why.to_owned());
    for a in &out.window_adds {
        if a.source as usize >= indices.len() {
            return Err(invalid("a window value names a source that does not exist"));
        }
        if failed.contains_key(&a.source) {
            continue;
        }
        let key = a
            .key
            .get(&out.data)
            .ok_or_else(|| invalid("a window key lies outside the data buffer"))?;
        let custom = match a.custom {
            Some(s) => Some(
                s.get(&out.data)
                    .ok_or_else(|| invalid("a custom window value lies outside the data buffer"))?,
            ),
            None => None,
        };
        let add = weir_windows::Add {
            window: a.window,
            key,
            timestamp: a.timestamp,
            number: a.number,
            custom,
            input: a.source,
        };
        if !weir_windows::add(&defs, run.state(), inst, &add, &mut emitted)? {
            run.result.late.push(indices[a.source as usize]);
        }
    }
    call_on_window(inst, &defs, &emitted, &mut run.state, spec, indices)
}

/// Hands window results to the transform's `on-window`. `indices` maps
/// result inputs (sources of the `process` call) to batch indexes.
fn call_on_window(
    inst: &mut Instance,
    defs: &weir_windows::WindowDefs,
    emitted: &[Emitted],
    state: &mut Option<Box<PartitionState>>,
    spec: &TransformSpec,
    indices: &[u32],
) -> Result<Option<Produced>, CallFailure> {
    if emitted.is_empty() {
        return Ok(None);
    }
    let mut wb = WindowBatch {
        data: Vec::new(),
        results: Vec::with_capacity(emitted.len()),
    };
    let span = |data: &mut Vec<u8>, bytes: &[u8]| {
        let start = data.len() as u32;
        data.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    };
    for e in emitted {
        let aggregation = defs
            .get(e.window)
            .expect("emitted by a defined window")
            .spec
            .aggregation;
        let key = span(&mut wb.data, &e.key);
        let custom = e.agg.custom.as_deref().map(|c| span(&mut wb.data, c));
        wb.results.push(WindowResult {
            window: e.window,
            key,
            start: e.start,
            end: e.end,
            count: e.agg.count,
            value: e.agg.value(aggregation),
            custom,
            closed: e.closed,
        });
    }
    inst.budget().charge(
        wb.data.len() as u64 + (wb.results.len() * size_of::<WindowResult>()) as u64,
        "window results",
    )?;
    let out = inst
        .on_window(&wb, state)?
        .map_err(|m| CallFailure::new(FailureKind::Fatal, m))?;
    let failed = batch::check(&out, emitted.len(), spec, inst.budget())?;
    let (out, failed) = batch::encode(out, failed, spec, inst.budget())?;
    if !out.window_adds.is_empty() {
        return Err(CallFailure::new(
            FailureKind::InvalidOutput,
            "on-window returned window values".to_owned(),
        ));
    }
    if let Some((_, (kind, message))) = failed.iter().next() {
        // A window result the transform cannot turn into outputs fails the
        // record that produced it (and so the call).
        return Err(CallFailure::new(*kind, format!("on-window: {message}")));
    }
    let origins = emitted
        .iter()
        .map(|e| Origin {
            input: e
                .input
                .map(|i| indices.get(i as usize).copied().unwrap_or(i)),
            timestamp: e.timestamp,
        })
        .collect();
    Ok(Some(Produced {
        batch: out,
        origins,
    }))
}

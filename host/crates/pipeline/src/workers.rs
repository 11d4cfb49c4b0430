//! The threads that run transforms, shared by every deployment of a host,
//! and the scheduler that shares them fairly.
//!
//! Each deployment has a queue of jobs (one per partition at most, since a
//! partition has one batch in flight). Workers are shared fairly on two
//! levels, by measured CPU time (weighted fair queuing): first between
//! tenants, then between a tenant's deployments (weighted by their
//! `cpu_share`). A free worker takes the next job of the tenant, then of
//! that tenant's deployment, that has used the least CPU time, and neither
//! may occupy more than its share of the workers, so a tenant whose
//! deployments burn their whole CPU budgets slows only itself, however
//! many deployments it has.
//!
//! Workers also run at a lower OS priority than the host's Kafka threads:
//! guest code, however busy, cannot take the CPU the host needs to move
//! everyone's records.
//!
//! (Over 400 lines: the scheduler and the threads it feeds are one piece: fair queuing, trials and
//! the instance sweep.)

use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use weir_abi::InputBatch;
use weir_abi::{CallFailure, FailureKind, RecordFailure, Stopped};
use weir_engine::Module;
use weir_engine::limits::thread_cpu_time;
use weir_engine::transform::{BatchResult, Fired, Produced, Transform, TransformSpec};
use weir_state::{Checkpoint, PartitionState};
use weir_windows::ForceClose;

/// A deployment's transform as workers run it; replaced as a whole when
/// the deployment is upgraded.
pub struct Runnable {
    pub module: Arc<Module>,
    pub spec: Arc<TransformSpec>,
    /// Share of CPU relative to other deployments (default 1).
    pub weight: f64,
    trial: Mutex<Option<Trial>>,
}

/// An upgraded transform's first batches run on trial: a batch it fails
/// (a record failure or a stop) is rolled back, state included, and run
/// with the transform it replaced; if that one does better, the upgrade is
/// rolled back.
struct Trial {
    fallback: Arc<Runnable>,
    batches_left: u32,
}

/// Batches an upgraded transform must pass before it is trusted.
pub const TRIAL_BATCHES: u32 = 10;

/// How often an idle worker lets go of the instances of deployments that
/// are gone.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

impl Runnable {
    pub fn new(module: Arc<Module>, spec: Arc<TransformSpec>, weight: f64) -> Runnable {
        Runnable {
            module,
            spec,
            weight,
            trial: Mutex::new(None),
        }
    }

    /// A transform that replaces `fallback` after `batches` good batches.
    pub fn upgrade_of(
        fallback: Arc<Runnable>,
        module: Arc<Module>,
        spec: Arc<TransformSpec>,
        weight: f64,
        batches: u32,
    ) -> Runnable {
        // Only the transform that ran before counts, not its own fallback.
        let fallback = fallback.fallback().unwrap_or(fallback);
        Runnable {
            module,
            spec,
            weight,
            trial: Mutex::new(Some(Trial {
                fallback,
                batches_left: batches,
            })),
        }
    }

    pub fn on_trial(&self) -> bool {
        self.trial.lock().is_some()
    }

    pub fn fallback(&self) -> Option<Arc<Runnable>> {
        self.trial.lock().as_ref().map(|t| t.fallback.clone())
    }

    fn passed_batch(&self) {
        let mut trial = self.trial.lock();
        if let Some(t) = trial.as_mut() {
            t.batches_left = t.batches_left.saturating_sub(1);
            if t.batches_left == 0 {
                tracing::info!(deployment = %self.spec.name, module = %self.module.digest, "upgrade passed its trial");
                *trial = None;
            }
        }
    }
}

pub enum Work {
    /// Batches of a partition's inputs, run in this order (their records'
    /// timestamp order: see `order`).
    Batch(Vec<Slice>),
    /// Close windows of an idle partition.
    CloseIdle { idle_ms: u64 },
    /// Fire the wall-clock timers due at `now` (ms since the epoch).
    FireTimers { now: i64 },
    /// Write the state changes a commit made durable in Kafka to the
    /// partition's store, with a checkpoint of what they cover: off the
    /// deployment's thread, which polls and dispatches meanwhile, and in
    /// parallel with the other partitions'.
    Flush(Checkpoint),
}

/// Records of one input, some of which (`invalid`) no transform may see:
/// a batch as the transform gets it.
pub struct Slice {
    pub batch: InputBatch,
    pub invalid: Vec<RecordFailure>,
}

pub enum Outcome {
    /// The results of the slices run, in order: all of them, unless one
    /// stopped the partition (the rest are not run) or the job used up a
    /// batch's CPU time (the rest go back to the partition's buffers).
    Batch(Vec<BatchResult>),
    Closed(Result<Vec<Produced>, CallFailure>),
    Fired(Fired),
    /// How writing the committed state to the store went.
    Flushed(Result<(), String>),
    /// The host panicked running the job (a bug in Weir, not the guest's
    /// doing): the partition's state went with it.
    Panicked(String),
}

pub struct Job {
    pub runnable: Arc<Runnable>,
    pub partition: i32,
    pub work: Work,
    pub state: Box<PartitionState>,
    pub reply: Sender<Done>,
}

pub struct Done {
    /// What ran the job.
    pub runnable: Arc<Runnable>,
    /// Set when a transform on trial failed a batch its fallback passed:
    /// the failure. The outcome is the fallback's.
    pub rolled_back: Option<String>,
    pub partition: i32,
    pub work: Work,
    /// `None` only after a panic.
    pub state: Option<Box<PartitionState>>,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub cpu: Duration,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    running: usize,
    /// CPU seconds used divided by weight.
    vtime: f64,
}

impl Queue {
    fn busy(&self) -> bool {
        !self.jobs.is_empty() || self.running > 0
    }
}

/// A tenant's deployments, by name.
struct Tenant {
    queues: HashMap<String, Queue>,
    running: usize,
    /// CPU seconds used by all its deployments.
    vtime: f64,
    last_active: Instant,
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant {
            queues: HashMap::new(),
            running: 0,
            vtime: 0.0,
            last_active: Instant::now(),
        }
    }
}

/// How long a tenant counts as busy after its last job: between two batches
/// a deployment has no job for a moment, and a worker taken by another
/// tenant then may stay taken for a whole batch (seconds, for a transform
/// that keeps failing and being bisected).
const ACTIVE_FOR: Duration = Duration::from_secs(1);

impl Tenant {
    fn busy(&self) -> bool {
        self.queues.values().any(Queue::busy) || self.last_active.elapsed() < ACTIVE_FOR
    }

    /// The deployment whose job runs next, within `cap` workers.
    fn next(&self, cap: usize) -> Option<&String> {
        let busy = self.queues.values().filter(|q| q.busy()).count().max(1);
        let each = cap.div_ceil(busy).max(1);
        self.queues
            .iter()
            .filter(|(_, q)| !q.jobs.is_empty() && q.running < each)
            .min_by(|a, b| a.1.vtime.total_cmp(&b.1.vtime))
            .map(|(n, _)| n)
    }
}

#[derive(Default)]
struct Sched {
    /// By tenant name (empty for the operator's deployments).
    tenants: HashMap<String, Tenant>,
    shutdown: bool,
}

/// Whose job a worker runs.
struct Slot {
    tenant: String,
    deployment: String,
}

impl Sched {
    fn next(&mut self, workers: usize) -> Option<(Slot, Job)> {
        let busy = self.tenants.values().filter(|t| t.busy()).count().max(1);
        let cap = workers.div_ceil(busy).max(1);
        let (tenant, deployment) = self
            .tenants
            .iter()
            .filter(|(_, t)| t.running < cap)
            .filter_map(|(name, t)| Some((name, t, t.next(cap)?)))
            .min_by(|a, b| a.1.vtime.total_cmp(&b.1.vtime))
            .map(|(name, _, d)| (name.clone(), d.clone()))?;
        let t = self.tenants.get_mut(&tenant).expect("chosen tenant exists");
        t.running += 1;
        let q = t.queues.get_mut(&deployment).expect("chosen queue exists");
        q.running += 1;
        let job = q.jobs.pop_front().expect("chosen queue has a job");
        Some((Slot { tenant, deployment }, job))
    }

    fn done(&mut self, slot: &Slot, cpu: f64, weight: f64) {
        if let Some(t) = self.tenants.get_mut(&slot.tenant) {
            t.running -= 1;
            t.last_active = Instant::now();
            t.vtime += cpu;
            if let Some(q) = t.queues.get_mut(&slot.deployment) {
                q.running -= 1;
                q.vtime += cpu / weight.max(0.001);
            }
        }
    }

    fn submit(&mut self, tenant: &str, deployment: &str, job: Job) {
        // Whoever was idle starts level with the others, neither owed a
        // backlog of CPU nor penalised for its past.
        let floor = self
            .tenants
            .values()
            .filter(|t| t.busy())
            .map(|t| t.vtime)
            .fold(f64::INFINITY, f64::min);
        let t = self.tenants.entry(tenant.to_owned()).or_default();
        if !t.busy() && floor.is_finite() {
            t.vtime = t.vtime.max(floor);
        }
        t.last_active = Instant::now();
        let floor = t
            .queues
            .values()
            .filter(|q| q.busy())
            .map(|q| q.vtime)
            .fold(f64::INFINITY, f64::min);
        let q = t.queues.entry(deployment.to_owned()).or_default();
        if !q.busy() && floor.is_finite() {
            q.vtime = q.vtime.max(floor);
        }
        q.jobs.push_back(job);
    }
}

#[derive(Clone)]
pub struct Workers {
    shared: Arc<(Mutex<Sched>, Condvar)>,
    count: usize,
}

impl Workers {
    pub fn start(count: usize, stack_size: usize) -> Workers {
        let workers = Workers {
            shared: Arc::new((Mutex::new(Sched::default()), Condvar::new())),
            count,
        };
        for i in 0..count {
            let w = workers.clone();
            std::thread::Builder::new()
                .name(format!("weir-worker-{i}"))
                .stack_size(stack_size)
                .spawn(move || w.run())
                .expect("spawning a worker thread");
        }
        workers
    }

    pub fn submit(&self, tenant: &str, deployment: &str, job: Job) {
        let (sched, cv) = &*self.shared;
        sched.lock().submit(tenant, deployment, job);
        cv.notify_one();
    }

    pub fn shutdown(&self) {
        let (sched, cv) = &*self.shared;
        sched.lock().shutdown = true;
        cv.notify_all();
    }

    fn run(self) {
        weir_engine::limits::set_thread_nice(10);
        let mut transforms = Transforms::new();
        let mut swept = Instant::now();
        loop {
            let next = {
                let (sched, cv) = &*self.shared;
                let mut s = sched.lock();
                loop {
                    if s.shutdown {
                        return;
                    }
                    if let Some(next) = s.next(self.count) {
                        break Some(next);
                    }
                    // Woken for others' jobs or not, sweep at least this often.
                    let left = IDLE_SWEEP.saturating_sub(swept.elapsed());
                    if left.is_zero() {
                        break None;
                    }
                    cv.wait_for(&mut s, left);
                }
            };
            // Forget the transforms (and give their instances back to the
            // pool) of deployments that are gone or upgraded: also while no
            // job comes, or a worker idle since an undeploy would hold them.
            // (Each worker holds its own: only a deployment keeps it alive.)
            transforms.retain(|_, (r, _, _)| r.strong_count() > 0);
            swept = Instant::now();
            let Some((slot, job)) = next else { continue };
            let (started, cpu0) = (Instant::now(), thread_cpu_time());
            let Job {
                runnable,
                partition,
                work,
                state,
                reply,
            } = job;
            // A panic fails this job's partition, not the worker (which every
            // deployment shares) nor the process.
            // A store write needs no instance: it evicts none.
            if !matches!(work, Work::Flush(_)) {
                make_room(&mut transforms, &runnable);
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_job(&mut transforms, &runnable, &work, state)
            }));
            let (state, outcome, rolled_back) = match ran {
                Ok((state, outcome, rolled_back)) => (Some(state), outcome, rolled_back),
                Err(panic) => {
                    transforms.remove(&(Arc::as_ptr(&runnable) as usize));
                    let message = panic_message(&*panic);
                    tracing::error!(deployment = %runnable.spec.name, partition, "a worker panicked: {message}");
                    (None, Outcome::Panicked(message), None)
                }
            };
            let cpu = thread_cpu_time().saturating_sub(cpu0);
            {
                let (sched, cv) = &*self.shared;
                sched.lock().done(&slot, cpu.as_secs_f64(), runnable.weight);
                cv.notify_one();
            }
            // The deployment may be gone; its partition's result with it.
            let _ = reply.send(Done {
                runnable,
                rolled_back,
                partition,
                work,
                state,
                outcome,
                elapsed: started.elapsed(),
                cpu,
            });
        }
    }
}

/// Runs one job's work; returns the state, the outcome and, for a batch of a
/// transform on trial that was rolled back, why.
fn run_job(
    transforms: &mut Transforms,
    runnable: &Arc<Runnable>,
    work: &Work,
    state: Box<PartitionState>,
) -> (Box<PartitionState>, Outcome, Option<String>) {
    match work {
        Work::Batch(slices) => {
            let fallback = runnable.fallback();
            let (mut state, mut results, mut rolled_back, mut passed) =
                (state, Vec::with_capacity(slices.len()), None, true);
            // Each slice is a call under the CPU limit; together they get
            // one batch's time, as a job of one input's batch would.
            let (started, allowed) = (
                thread_cpu_time(),
                Duration::from_millis(runnable.spec.limits.cpu_ms_per_batch),
            );
            for Slice { batch, invalid } in slices {
                if !results.is_empty() && thread_cpu_time().saturating_sub(started) >= allowed {
                    break;
                }
                // The deployment's input format: the transform reads the
                // decoded records, with the indexes of the batch's.
                let decoded = runnable
                    .spec
                    .input_decoding
                    .as_ref()
                    .map(|d| d.decode(batch, invalid));
                let (batch, invalid, waiting) = match &decoded {
                    Some(d) => (&d.batch, d.invalid.as_slice(), d.waiting.clone()),
                    None => (batch, invalid.as_slice(), None),
                };
                if batch.records.is_empty()
                    && let Some((index, message)) = waiting
                {
                    results.push(BatchResult {
                        stopped: Some(Stopped {
                            index,
                            kind: FailureKind::Unavailable,
                            message,
                        }),
                        ..BatchResult::default()
                    });
                    break;
                }
                let mut result = match &fallback {
                    // Rolled back in this job: the rest runs what it fell back to.
                    Some(fallback) if rolled_back.is_some() => {
                        let (back, result) = transform_of(transforms, fallback)
                            .dispatch_checked(batch, invalid, state);
                        state = back;
                        result
                    }
                    None => {
                        let (back, result) = transform_of(transforms, runnable)
                            .dispatch_checked(batch, invalid, state);
                        state = back;
                        result
                    }
                    Some(fallback) => {
                        let (back, result, trial) =
                            try_on_trial(transforms, runnable, fallback, batch, invalid, state);
                        state = back;
                        passed &= matches!(trial, TrialOutcome::Passed);
                        if let TrialOutcome::Regressed(why) = trial {
                            rolled_back.get_or_insert(why);
                        }
                        result
                    }
                };
                // What waits for its schema runs again later.
                if let Some((index, message)) = waiting
                    && result.stopped.is_none()
                {
                    result.stopped = Some(Stopped {
                        index,
                        kind: FailureKind::Unavailable,
                        message,
                    });
                }
                // The partition stops there; what follows is not run.
                let stops = result.stopped.is_some() || result.timer_host_failure.is_some();
                results.push(result);
                if stops {
                    break;
                }
            }
            // A job is one batch of the trial, however many inputs it took.
            if fallback.is_some() && passed {
                runnable.passed_batch();
            }
            (state, Outcome::Batch(results), rolled_back)
        }
        Work::CloseIdle { idle_ms } => {
            let (state, result) = transform_of(transforms, runnable)
                .close_windows(ForceClose::Idle { idle_ms: *idle_ms }, state);
            (state, Outcome::Closed(result), None)
        }
        Work::FireTimers { now } => {
            let (state, fired) =
                transform_of(transforms, runnable).fire_wall_clock_timers(*now, state);
            (state, Outcome::Fired(fired), None)
        }
        Work::Flush(checkpoint) => {
            let mut state = state;
            let flushed = state
                .flush_with_checkpoint(checkpoint)
                .map_err(|e| format!("{e:#}"));
            (state, Outcome::Flushed(flushed), None)
        }
    }
}

/// What a panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A worker's transforms, by the address of what they run; weak, so that
/// a deployment that goes takes its transforms (and their instances of the
/// pool) with it.
type Transforms = HashMap<usize, (std::sync::Weak<Runnable>, Transform, Instant)>;

/// This worker's instance of `runnable`.
fn transform_of<'a>(transforms: &'a mut Transforms, runnable: &Arc<Runnable>) -> &'a mut Transform {
    let key = Arc::as_ptr(runnable) as usize;
    let fresh = || {
        (
            Arc::downgrade(runnable),
            Transform::new(runnable.module.clone(), runnable.spec.clone()),
            Instant::now(),
        )
    };
    let entry = transforms.entry(key).or_insert_with(fresh);
    // An entry left by a runnable gone since, at the same address.
    if !entry.0.upgrade().is_some_and(|r| Arc::ptr_eq(&r, runnable)) {
        *entry = fresh();
    }
    entry.2 = Instant::now();
    &mut entry.1
}

/// Makes room in its tenant's share of the pool for `runnable`'s job, if
/// the share is taken and the job would need a new instance: this worker
/// gives back the instance of the tenant's transform it ran least recently.
/// So a tenant with more deployments than its share runs each of them in
/// turn, rather than some of them never.
fn make_room(transforms: &mut Transforms, runnable: &Arc<Runnable>) {
    let Some(quota) = &runnable.spec.instance_quota else {
        return;
    };
    let key = Arc::as_ptr(runnable) as usize;
    if !quota.full()
        || transforms
            .get(&key)
            .is_some_and(|(_, t, _)| t.has_instance())
    {
        return;
    }
    let same_tenant = |r: &std::sync::Weak<Runnable>| {
        r.upgrade().is_some_and(|r| {
            r.spec
                .instance_quota
                .as_ref()
                .is_some_and(|q| Arc::ptr_eq(q, quota))
        })
    };
    let oldest = transforms
        .iter_mut()
        .filter(|(k, (r, t, _))| **k != key && t.has_instance() && same_tenant(r))
        .min_by_key(|(_, (_, _, used))| *used);
    if let Some((_, (_, t, _))) = oldest {
        t.release_instance();
    }
}

/// How a batch went for a transform on trial.
enum TrialOutcome {
    Passed,
    /// It failed records, as the transform before it did too, or found no
    /// room to run.
    Failed,
    /// It failed where the transform before it did not: why.
    Regressed(String),
}

/// Runs a batch with a transform on trial; see [`Trial`].
fn try_on_trial(
    transforms: &mut Transforms,
    candidate: &Arc<Runnable>,
    fallback: &Arc<Runnable>,
    batch: &InputBatch,
    invalid: &[RecordFailure],
    mut state: Box<PartitionState>,
) -> (Box<PartitionState>, BatchResult, TrialOutcome) {
    state.savepoint();
    let (mut state, result) =
        transform_of(transforms, candidate).dispatch_checked(batch, invalid, state);
    if result
        .stopped
        .as_ref()
        .is_some_and(|s| s.kind == FailureKind::Unavailable)
    {
        // No room to run it is no verdict on it: the rest of the batch waits.
        state.release_savepoint();
        return (state, result, TrialOutcome::Failed);
    }
    // Invalid records fail whatever runs; only the transform's own failures count.
    let own = |r: &BatchResult| {
        r.failures
            .iter()
            .filter(|f| f.kind != FailureKind::InvalidInput)
            .count()
    };
    let stopped_itself = |r: &BatchResult| {
        r.stopped
            .as_ref()
            .is_some_and(|s| s.kind != FailureKind::InvalidInput)
    };
    if own(&result) == 0 && !stopped_itself(&result) {
        state.release_savepoint();
        return (state, result, TrialOutcome::Passed);
    }
    state.rollback_to_savepoint();
    let (state, old) = transform_of(transforms, fallback).dispatch_checked(batch, invalid, state);
    let regressed = (stopped_itself(&result) && !stopped_itself(&old)) || own(&old) < own(&result);
    let why = regressed.then(|| {
        match (
            result.stopped.as_ref().filter(|_| stopped_itself(&result)),
            result
                .failures
                .iter()
                .find(|f| f.kind != FailureKind::InvalidInput),
        ) {
            (Some(s), _) => weir_engine::transform::describe_failure(
                &candidate.spec.name,
                batch,
                &RecordFailure {
                    index: s.index,
                    kind: s.kind,
                    message: s.message.clone(),
                },
            ),
            (None, Some(f)) => {
                weir_engine::transform::describe_failure(&candidate.spec.name, batch, f)
            }
            (None, None) => unreachable!("the candidate failed"),
        }
    });
    (
        state,
        old,
        why.map_or(TrialOutcome::Failed, TrialOutcome::Regressed),
    )
}

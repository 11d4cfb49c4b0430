//! The threads that run transforms, shared by every deployment of a host,
//! and the scheduler that shares them fairly.
//!
//! Each deployment has a queue of jobs (one per partition at most, since a
//! partition has one batch in flight). A free worker takes the next job of
//! the deployment that has used the least CPU time relative to its weight
//! (weighted fair queuing on measured CPU), and no deployment may occupy
//! more than its share of the workers, so a deployment whose batches burn
//! their whole CPU budget slows only itself.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::bindings::InputBatch;
use crate::engine::Module;
use crate::engine::limits::thread_cpu_time;
use crate::state::PartitionState;
use crate::transform::{BatchResult, CallFailure, Produced, Transform, TransformSpec};
use crate::windows::ForceClose;

/// A deployment's transform as workers run it; replaced as a whole when
/// the deployment is upgraded.
pub struct Runnable {
    pub module: Arc<Module>,
    pub spec: Arc<TransformSpec>,
    /// Share of CPU relative to other deployments (default 1).
    pub weight: f64,
}

pub enum Work {
    Batch(InputBatch),
    /// Close windows of an idle partition.
    CloseIdle { idle_ms: u64 },
}

pub enum Outcome {
    Batch(BatchResult),
    Closed(Result<Vec<Produced>, CallFailure>),
}

pub struct Job {
    pub runnable: Arc<Runnable>,
    pub partition: i32,
    pub work: Work,
    pub state: Box<PartitionState>,
    pub reply: Sender<Done>,
}

pub struct Done {
    pub partition: i32,
    pub work: Work,
    pub state: Box<PartitionState>,
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

#[derive(Default)]
struct Sched {
    /// By deployment name.
    queues: HashMap<String, Queue>,
    shutdown: bool,
}

impl Sched {
    fn next(&mut self, workers: usize) -> Option<(String, Job)> {
        let busy = self.queues.values().filter(|q| !q.jobs.is_empty() || q.running > 0).count().max(1);
        let cap = workers.div_ceil(busy).max(1);
        let name = self
            .queues
            .iter()
            .filter(|(_, q)| !q.jobs.is_empty() && q.running < cap)
            .min_by(|a, b| a.1.vtime.total_cmp(&b.1.vtime))
            .map(|(n, _)| n.clone())?;
        let q = self.queues.get_mut(&name).expect("chosen queue exists");
        q.running += 1;
        Some((name, q.jobs.pop_front().expect("chosen queue has a job")))
    }
}

#[derive(Clone)]
pub struct Workers {
    shared: Arc<(Mutex<Sched>, Condvar)>,
    count: usize,
}

impl Workers {
    pub fn start(count: usize, stack_size: usize) -> Workers {
        let workers = Workers { shared: Arc::new((Mutex::new(Sched::default()), Condvar::new())), count };
        for i in 0..count {
            let w = workers.clone();
            std::thread::Builder::new().name(format!("weir-worker-{i}")).stack_size(stack_size).spawn(move || w.run()).expect("spawning a worker thread");
        }
        workers
    }

    pub fn submit(&self, deployment: &str, job: Job) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap();
        // A deployment that was idle starts level with the others, neither
        // owed a backlog of CPU nor penalised for its past.
        let floor = s.queues.values().filter(|q| !q.jobs.is_empty() || q.running > 0).map(|q| q.vtime).fold(f64::INFINITY, f64::min);
        let q = s.queues.entry(deployment.to_owned()).or_default();
        if q.jobs.is_empty() && q.running == 0 && floor.is_finite() {
            q.vtime = q.vtime.max(floor);
        }
        q.jobs.push_back(job);
        cv.notify_one();
    }

    pub fn shutdown(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap().shutdown = true;
        cv.notify_all();
    }

    fn run(self) {
        let mut transforms: HashMap<usize, (Arc<Runnable>, Transform)> = HashMap::new();
        loop {
            let (name, job) = {
                let (lock, cv) = &*self.shared;
                let mut s = lock.lock().unwrap();
                loop {
                    if s.shutdown {
                        return;
                    }
                    if let Some(next) = s.next(self.count) {
                        break next;
                    }
                    s = cv.wait(s).unwrap();
                }
            };
            // Forget transforms of deployments that are gone or upgraded.
            transforms.retain(|_, (r, _)| Arc::strong_count(r) > 1);
            let key = Arc::as_ptr(&job.runnable) as usize;
            let (_, transform) = transforms
                .entry(key)
                .or_insert_with(|| (job.runnable.clone(), Transform::new(job.runnable.module.clone(), job.runnable.spec.clone())));
            let (started, cpu0) = (Instant::now(), thread_cpu_time());
            let Job { runnable, partition, work, state, reply } = job;
            let (state, outcome) = match &work {
                Work::Batch(batch) => {
                    let (state, result) = transform.dispatch(batch, state);
                    (state, Outcome::Batch(result))
                }
                Work::CloseIdle { idle_ms } => {
                    let (state, result) = transform.close_windows(ForceClose::Idle { idle_ms: *idle_ms }, state);
                    (state, Outcome::Closed(result))
                }
            };
            let cpu = thread_cpu_time().saturating_sub(cpu0);
            {
                let (lock, cv) = &*self.shared;
                let mut s = lock.lock().unwrap();
                if let Some(q) = s.queues.get_mut(&name) {
                    q.running -= 1;
                    q.vtime += cpu.as_secs_f64() / runnable.weight.max(0.001);
                }
                cv.notify_one();
            }
            // The deployment may be gone; its partition's result with it.
            let _ = reply.send(Done { partition, work, state, outcome, elapsed: started.elapsed(), cpu });
        }
    }
}

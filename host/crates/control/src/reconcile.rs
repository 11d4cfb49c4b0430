//! Makes what a host runs match the registry: starts deployments, pauses,
//! resumes and undeploys them, and upgrades them in place. Every host runs
//! one reconciler, so all hosts converge on the registry within moments of
//! a change (and a host that starts later picks up everything).
//!
//! Modules compile on threads of their own (`ModuleLoads`), one per tenant
//! and a few in all: a module that takes minutes to compile delays only
//! the deployments that run it, never another change.
//!
//! (Over 400 lines: every way a spec of the registry becomes what runs here (start, upgrade, pause,
//! undeploy, module loads) in one place, since they share what was applied.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::config::DeploymentConfig;
use crate::registry::{DeploymentSpec, Registry};
use crate::{Control, Problem};
use weir_pipeline::workers::{Runnable, TRIAL_BATCHES};
use weir_pipeline::{Host, Identity};

/// How long a spec that failed to start waits before another try (a topic
/// may appear meanwhile).
const RETRY: Duration = Duration::from_secs(10);

/// How often modules no deployment uses are deleted, and how old they must
/// be (an upload is followed by its deploy within that).
const MODULE_GC_EVERY: Duration = Duration::from_secs(600);
const MODULE_GC_AGE: Duration = Duration::from_secs(3600);

/// What this host applied of a deployment's spec.
struct Applied {
    version: u64,
    storage: String,
    config: DeploymentConfig,
}

struct Reconciler {
    control: Arc<Control>,
    host: Arc<Host>,
    registry: Arc<Registry>,
    applied: BTreeMap<String, Applied>,
    /// Specs that could not start here: their version and when it was tried.
    tried: BTreeMap<String, (u64, Instant)>,
    loads: ModuleLoads,
}

/// Compiles at once for the registry's deployments on a host, at most.
const MAX_LOADS: usize = 4;
/// How long a module that failed to compile waits before another try,
/// doubled after each failure up to [`LOAD_RETRY_MAX`]: a module that
/// reaches its compile limits here costs minutes of CPU each time.
const LOAD_RETRY: Duration = Duration::from_secs(60);
const LOAD_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Modules being compiled for the registry's deployments, and the results.
#[derive(Default)]
struct ModuleLoads {
    loads: BTreeMap<String, Load>,
}

enum Load {
    /// Compiling, for a deployment of `tenant` (`None`: the admin's).
    Running {
        tenant: Option<String>,
        thread: std::thread::JoinHandle<Result<weir_engine::Module>>,
        /// Earlier tries that failed.
        failures: u32,
    },
    Ready(Arc<weir_engine::Module>),
    Failed {
        why: String,
        /// When it may be tried again, and how many tries failed.
        retry_at: Instant,
        failures: u32,
    },
}

/// Where a module stands.
enum Loaded {
    Ready(Arc<weir_engine::Module>),
    Compiling,
    Failed(String),
}

impl ModuleLoads {
    /// Module `digest`, for a deployment of `tenant`: ready, compiling (a
    /// compile is started if the tenant has none running and there is
    /// room), or failed.
    fn get(
        &mut self,
        host: &Arc<Host>,
        registry: &Registry,
        digest: &str,
        tenant: Option<&str>,
    ) -> Loaded {
        self.collect();
        let failures = match self.loads.get(digest) {
            Some(Load::Ready(m)) => return Loaded::Ready(m.clone()),
            Some(Load::Running { .. }) => return Loaded::Compiling,
            Some(Load::Failed { why, retry_at, .. }) if Instant::now() < *retry_at => {
                return Loaded::Failed(why.clone());
            }
            Some(Load::Failed { failures, .. }) => *failures,
            None => 0,
        };
        let running: Vec<&Option<String>> = self
            .loads
            .values()
            .filter_map(|l| {
                if let Load::Running { tenant, .. } = l {
                    Some(tenant)
                } else {
                    None
                }
            })
            .collect();
        if running.len() >= MAX_LOADS || running.iter().any(|t| t.as_deref() == tenant) {
            return Loaded::Compiling;
        }
        let Some(bytes) = registry.modules.get(digest) else {
            return Loaded::Failed(format!(
                "module {digest} has not arrived from the registry yet"
            ));
        };
        let (engine, name) = (host.engine().clone(), digest.to_owned());
        let thread = std::thread::Builder::new()
            .name("weir-compile".into())
            .spawn(move || {
                engine
                    .load(&bytes)
                    .with_context(|| format!("module {name}"))
            });
        match thread {
            Ok(thread) => {
                self.loads.insert(
                    digest.to_owned(),
                    Load::Running {
                        tenant: tenant.map(str::to_owned),
                        thread,
                        failures,
                    },
                );
                Loaded::Compiling
            }
            Err(e) => Loaded::Failed(format!("starting a compile: {e}")),
        }
    }

    /// Takes the results of the compiles that finished.
    fn collect(&mut self) {
        let finished: Vec<String> = self
            .loads
            .iter()
            .filter(|(_, l)| matches!(l, Load::Running { thread, .. } if thread.is_finished()))
            .map(|(d, _)| d.clone())
            .collect();
        for digest in finished {
            let Some(Load::Running {
                thread, failures, ..
            }) = self.loads.remove(&digest)
            else {
                unreachable!("just seen")
            };
            let load = match thread
                .join()
                .unwrap_or_else(|_| Err(anyhow!("compiling panicked")))
            {
                Ok(module) => Load::Ready(Arc::new(module)),
                Err(e) => {
                    let wait = LOAD_RETRY
                        .saturating_mul(1 << failures.min(6))
                        .min(LOAD_RETRY_MAX);
                    Load::Failed {
                        why: format!("{e:#}"),
                        retry_at: Instant::now() + wait,
                        failures: failures + 1,
                    }
                }
            };
            self.loads.insert(digest, load);
        }
    }

    /// Forgets the modules no deployment in `wanted` runs (a compile under
    /// way finishes on its own, and is forgotten then).
    fn keep(&mut self, wanted: &std::collections::BTreeSet<&str>) {
        self.collect();
        self.loads.retain(|digest, load| {
            wanted.contains(digest.as_str()) || matches!(load, Load::Running { .. })
        });
    }
}

/// Follows the host's registry on a thread until the host shuts down.
pub fn spawn(control: Arc<Control>) -> Result<()> {
    let registry = control
        .registry
        .clone()
        .ok_or_else(|| anyhow!("the host has no registry"))?;
    let mut r = Reconciler {
        control: control.clone(),
        host: control.host.clone(),
        registry,
        applied: BTreeMap::new(),
        tried: BTreeMap::new(),
        loads: ModuleLoads::default(),
    };
    let thread = std::thread::Builder::new()
        .name("weir-reconcile".into())
        .spawn(move || {
            let mut collected = Instant::now();
            while !r.host.is_shutting_down() {
                let generation = r.registry.generation();
                // Acting on a partial read would run what was paused or
                // dropped, or an old module, until the rest arrived.
                if r.registry.caught_up() {
                    r.reconcile();
                }
                if collected.elapsed() > MODULE_GC_EVERY {
                    collected = Instant::now();
                    r.collect_modules();
                }
                r.registry.wait_change(generation, Duration::from_secs(1));
            }
        })
        .context("spawning the reconciler")?;
    *control.reconciler.lock() = Some(thread);
    Ok(())
}

impl Reconciler {
    fn reconcile(&mut self) {
        let specs = self.registry.specs();
        // Stop what no longer runs here (or runs under a new incarnation).
        let gone: Vec<String> = self
            .applied
            .iter()
            .filter(|(id, a)| {
                specs
                    .get(*id)
                    .is_none_or(|s| !s.running() || s.storage() != a.storage)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let applied = self.applied.remove(&id).expect("listed");
            self.host.stop(&id);
            let dropped = specs
                .get(&id)
                .is_none_or(|s| s.storage() != applied.storage);
            if dropped {
                self.host.drop_local_state(&applied.storage);
            }
            tracing::info!(deployment = %id, dropped_state = dropped, "deployment stopped on this host");
        }
        self.control
            .problems
            .lock()
            .retain(|id, _| specs.get(id).is_some_and(DeploymentSpec::running));
        for (id, spec) in specs.iter().filter(|(_, s)| s.running()) {
            if !self.registry.modules.has(&spec.module) {
                // Its chunks are still on their way; their arrival wakes us.
                self.control
                    .problems
                    .lock()
                    .insert(id.clone(), Problem::WaitingForModule(spec.module.clone()));
                continue;
            }
            let (applied, retry_later) = (
                self.applied.get(id),
                self.tried
                    .get(id)
                    .is_some_and(|(v, at)| *v == spec.version && at.elapsed() < RETRY),
            );
            if applied.is_some_and(|a| a.version == spec.version)
                || (applied.is_none() && retry_later)
            {
                continue;
            }
            // An upgrade that keeps the module compiles nothing.
            let running = self
                .host
                .deployment(id)
                .map(|d| d.runnable().module.clone())
                .filter(|m| m.digest == spec.module);
            let module = match running {
                Some(m) => m,
                None => match self.loads.get(
                    &self.host,
                    &self.registry,
                    &spec.module,
                    spec.tenant.as_deref(),
                ) {
                    Loaded::Ready(m) => m,
                    Loaded::Compiling => {
                        self.control
                            .problems
                            .lock()
                            .insert(id.clone(), Problem::CompilingModule(spec.module.clone()));
                        continue;
                    }
                    Loaded::Failed(why) => {
                        self.control
                            .problems
                            .lock()
                            .insert(id.clone(), Problem::Failed(why));
                        continue;
                    }
                },
            };
            let outcome = match self.applied.get(id) {
                Some(a) if restart_needed(&a.config, &spec.deployment) => {
                    self.host.stop(id);
                    self.applied.remove(id);
                    self.start(id, spec, module)
                }
                Some(_) => self.upgrade(id, spec, module),
                None => self.start(id, spec, module),
            };
            match outcome {
                Ok(()) => {
                    self.tried.remove(id);
                    self.control.problems.lock().remove(id);
                }
                // Room comes back as instances go: tried again at once.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<weir_abi::CallFailure>()
                            .is_some_and(|f| f.kind == weir_abi::FailureKind::Unavailable)
                    }) =>
                {
                    tracing::warn!(deployment = %id, error = %format!("{e:#}"), "no room to start the deployment on this host yet");
                    self.control
                        .problems
                        .lock()
                        .insert(id.clone(), Problem::WaitingForRoom(format!("{e:#}")));
                }
                Err(e) => {
                    tracing::error!(deployment = %id, error = %format!("{e:#}"), "cannot run the deployment on this host");
                    self.tried
                        .insert(id.clone(), (spec.version, Instant::now()));
                    self.control
                        .problems
                        .lock()
                        .insert(id.clone(), Problem::Failed(format!("{e:#}")));
                }
            }
        }
        self.loads.keep(
            &specs
                .values()
                .filter(|s| s.running())
                .map(|s| s.module.as_str())
                .collect(),
        );
        self.publish_rollbacks(&specs);
    }

    fn start(
        &mut self,
        id: &str,
        spec: &DeploymentSpec,
        module: Arc<weir_engine::Module>,
    ) -> Result<()> {
        let who = Identity {
            id: id.to_owned(),
            tenant: spec.tenant.clone(),
            storage: spec.storage(),
        };
        let deployment = self.control.prepare(&who, &spec.deployment, module)?;
        self.host.run(deployment);
        self.applied.insert(
            id.to_owned(),
            Applied {
                version: spec.version,
                storage: spec.storage(),
                config: spec.deployment.clone(),
            },
        );
        tracing::info!(deployment = %id, module = %spec.module, version = spec.version, "deployment started from the registry");
        Ok(())
    }

    /// Swaps the transform of a running deployment between batches; a new
    /// module runs on trial (see `workers::Trial`).
    fn upgrade(
        &mut self,
        id: &str,
        spec: &DeploymentSpec,
        module: Arc<weir_engine::Module>,
    ) -> Result<()> {
        let d = self
            .host
            .deployment(id)
            .ok_or_else(|| anyhow!("deployment `{id}` is not running"))?;
        let current = d.runnable();
        let tspec = self
            .control
            .transform_spec(id, &spec.deployment, spec.tenant.as_deref())?;
        self.host.warm_up(module.clone(), tspec.clone())?;
        let share = spec.deployment.cpu_share;
        let next = if module.digest != current.module.digest && spec.rolled_back.is_none() {
            Runnable::upgrade_of(current, module, tspec, share, TRIAL_BATCHES)
        } else {
            Runnable::new(module, tspec, share)
        };
        d.swap(Arc::new(next));
        self.applied.insert(
            id.to_owned(),
            Applied {
                version: spec.version,
                storage: spec.storage(),
                config: spec.deployment.clone(),
            },
        );
        tracing::info!(deployment = %id, module = %spec.module, version = spec.version, "deployment upgraded");
        Ok(())
    }

    /// A deployment that rolled an upgrade back here tells every host, by
    /// naming the old module in the registry again.
    fn publish_rollbacks(&self, specs: &BTreeMap<String, DeploymentSpec>) {
        for id in self.applied.keys() {
            let (Some(d), Some(spec)) = (self.host.deployment(id), specs.get(id)) else {
                continue;
            };
            let Some(why) = d.status.lock().rolled_back.clone() else {
                continue;
            };
            let running = d.runnable().module.digest.clone();
            if spec.module == running || spec.previous_module.as_deref() != Some(running.as_str()) {
                continue;
            }
            let mut back = spec.clone();
            back.previous_module = Some(spec.module.clone());
            back.module = running;
            back.rolled_back = Some(why.clone());
            back.change("rolled back", Some(why));
            if let Err(e) = self.registry.publish_blocking(id, Some(&back)) {
                tracing::error!(deployment = %id, error = %format!("{e:#}"), "could not publish a rollback");
            }
        }
    }

    fn collect_modules(&self) {
        let collected = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(self.registry.collect_modules(MODULE_GC_AGE)));
        if let Err(e) = collected {
            tracing::warn!(error = %format!("{e:#}"), "could not delete unused modules");
        }
    }
}

/// Changes a running consumer cannot take between batches.
fn restart_needed(a: &DeploymentConfig, b: &DeploymentConfig) -> bool {
    a.inputs != b.inputs
        || a.output != b.output
        || a.dead_letter_topic != b.dead_letter_topic
        || a.late_topic != b.late_topic
        || a.failure_policy != b.failure_policy
        || a.tables != b.tables
}

//! A host's control plane around its pipeline: the tenants it accepts,
//! the registry it follows (when the admin API is on), the reconciler
//! that makes the pipeline run what the registry says, and the history
//! the console shows.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use weir_engine::Module;
use weir_engine::transform::TransformSpec;
use weir_pipeline::config::DeploymentConfig;
use weir_pipeline::deployment::Deployment;
use weir_pipeline::{Host, Identity, TenantScope};

use crate::config::Config;
use crate::registry::{OnRemove, Registry};
use crate::series::{STEP, Series};
use crate::tenants::Tenants;

/// Why a deployment of the registry does not run on this host.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// Its module has not reached this host yet (the registry's module
    /// topic is still being read); not a failure.
    WaitingForModule(String),
    /// Its module is being compiled on this host; not a failure.
    CompilingModule(String),
    /// No room to run it here now (its tenant's share of the instance
    /// pool, or the pool, is full): tried again, not a failure.
    WaitingForRoom(String),
    /// It failed to start here; the reconciler retries.
    Failed(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::WaitingForModule(module) => {
                write!(f, "waiting for module {module} from the registry")
            }
            Problem::CompilingModule(module) => write!(f, "compiling module {module} on this host"),
            Problem::WaitingForRoom(why) => write!(f, "waiting for room to run: {why}"),
            Problem::Failed(why) => f.write_str(why),
        }
    }
}

pub struct Control {
    /// The pipeline this control plane runs deployments on.
    pub host: Arc<Host>,
    pub tenants: Tenants,
    /// Present when the admin API is on (tokens are configured).
    pub registry: Option<Arc<Registry>>,
    /// Registry deployments that cannot run on this host, and why.
    pub problems: Mutex<BTreeMap<String, Problem>>,
    /// The registry's reconciler, joined at shutdown.
    pub(crate) reconciler: Mutex<Option<JoinHandle<()>>>,
    /// The last 15 minutes of every deployment here, for the console.
    pub series: Arc<Series>,
}

impl Control {
    /// Starts the host's pipeline and, when tokens are configured, opens
    /// the registry; fails if the cluster cannot be reached.
    pub fn start(config: &Config) -> Result<Control> {
        let host = Arc::new(Host::start(
            &config.kafka,
            &config.host,
            &config.engine,
            config.schema_registry.as_ref(),
        )?);
        let tenants = Tenants::new(
            config.admin.as_ref(),
            &config.tenants,
            config.engine.max_instances as usize,
            config.host.workers,
        );
        let registry = match tenants.enabled() {
            true => {
                let max_deployments = config
                    .tenants
                    .iter()
                    .map(|(name, t)| (name.clone(), t.quota.max_deployments))
                    .collect();
                let compiled = host.engine().clone();
                let forget: OnRemove = Arc::new(move |digest| compiled.forget(digest));
                Some(Registry::open(
                    &config.kafka,
                    host.cluster(),
                    &config.host.state_dir.join("modules"),
                    max_deployments,
                    host.shared().shutdown.clone(),
                    forget,
                )?)
            }
            false => None,
        };
        let control = Control {
            host,
            tenants,
            registry,
            problems: Mutex::default(),
            reconciler: Mutex::new(None),
            series: Arc::default(),
        };
        control.sample_series_in_background();
        Ok(control)
    }

    /// [`Host::check_deployment`] for a deployment of `tenant`, whose
    /// topics must all be the tenant's.
    pub fn check_deployment(
        &self,
        id: &str,
        config: &DeploymentConfig,
        module: Arc<Module>,
        tenant: Option<&str>,
    ) -> Result<(usize, Arc<TransformSpec>)> {
        let scope = self.tenant_scope(id, config, tenant)?;
        self.host
            .check_deployment(id, config, module, scope.as_ref())
    }

    /// [`Host::prepare`] for a deployment of `who.tenant`.
    pub fn prepare(
        &self,
        who: &Identity,
        config: &DeploymentConfig,
        module: Arc<Module>,
    ) -> Result<Arc<Deployment>> {
        let scope = self.tenant_scope(&who.id, config, who.tenant.as_deref())?;
        self.host.prepare(who, config, module, scope.as_ref())
    }

    /// [`Host::transform_spec`] for a deployment of `tenant`.
    pub fn transform_spec(
        &self,
        id: &str,
        config: &DeploymentConfig,
        tenant: Option<&str>,
    ) -> Result<Arc<TransformSpec>> {
        let scope = self.tenant_scope(id, config, tenant)?;
        self.host.transform_spec(id, config, scope.as_ref())
    }

    /// What `tenant`'s deployment `id` is held to, once its topics are
    /// found to be the tenant's.
    fn tenant_scope(
        &self,
        id: &str,
        config: &DeploymentConfig,
        tenant: Option<&str>,
    ) -> Result<Option<TenantScope>> {
        let Some(name) = tenant else { return Ok(None) };
        let t = self
            .tenants
            .get(name)
            .ok_or_else(|| anyhow!("tenant `{name}` is not configured on this host"))?;
        t.check_topics(config, &config.dead_letter_topic(id))
            .map_err(anyhow::Error::msg)?;
        Ok(self.tenants.scope(name))
    }

    /// Graceful shutdown: the reconciler finishes what it is doing (it may
    /// be stopping a deployment, committing its partitions), then the
    /// pipeline stops.
    pub fn shutdown(&self) {
        self.host.close();
        if let Some(reconciler) = self.reconciler.lock().take() {
            let _ = reconciler.join();
        }
        self.host.shutdown();
    }

    fn sample_series_in_background(&self) {
        let (series, metrics, shutdown) = (
            Arc::downgrade(&self.series),
            self.host.metrics().clone(),
            self.host.shared().shutdown.clone(),
        );
        std::thread::Builder::new()
            .name("weir-series".into())
            .spawn(move || {
                while !shutdown.load(Ordering::Relaxed) {
                    let Some(series) = series.upgrade() else {
                        return;
                    };
                    series.sample(&metrics, weir_abi::now_ms());
                    drop(series);
                    std::thread::sleep(STEP);
                }
            })
            .expect("spawning the series sampler");
    }
}

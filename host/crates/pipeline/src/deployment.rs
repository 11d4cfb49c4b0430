//! A deployment as the host runs it: what it is, its status, and the
//! transform its next batches run (swapped by upgrades and rollbacks).

use parking_lot::{Mutex, RwLock};
use std::sync::Arc;

use anyhow::Result;
use std::sync::atomic::AtomicBool;

use crate::Shared;
use crate::budget::Budgets;
use crate::config::DeploymentConfig;
use crate::status::DeploymentStatus;
use crate::tables::{self, Owner, TableLoaders};
use crate::workers::Runnable;

/// What a deployment is; only its transform changes while it runs (an
/// upgrade swaps it between batches).
pub struct Deployment {
    /// The id (`tenant.name` for deployments of tenants).
    pub name: String,
    /// Tenant label of metrics (empty for the operator's deployments).
    pub tenant: String,
    /// Names the state directory (the changelog and group are named after
    /// it too).
    pub storage: String,
    pub config: DeploymentConfig,
    runnable: RwLock<Arc<Runnable>>,
    pub group: String,
    pub changelog_topic: String,
    /// Largest state entry the changelog topic accepts.
    pub changelog_entry_limit: u64,
    pub status: Arc<Mutex<DeploymentStatus>>,
    /// Loaders of the deployment's tables, started by its first run here.
    pub table_loaders: Mutex<Option<TableLoaders>>,
    /// The buffer budgets its partitions' buffers count against.
    pub buffers: Budgets,
    /// A thread is asking the brokers what their ACLs refuse it (see
    /// `DeploymentLoop::check_denial`).
    pub(crate) checking_denial: AtomicBool,
}

impl Deployment {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        tenant: String,
        storage: String,
        config: DeploymentConfig,
        runnable: Arc<Runnable>,
        group: String,
        changelog_topic: String,
        changelog_entry_limit: u64,
        buffers: Budgets,
    ) -> Deployment {
        Deployment {
            name,
            tenant,
            storage,
            config,
            runnable: RwLock::new(runnable),
            group,
            changelog_topic,
            changelog_entry_limit,
            status: Arc::new(Mutex::new(DeploymentStatus::default())),
            table_loaders: Mutex::new(None),
            buffers,
            checking_denial: AtomicBool::new(false),
        }
    }

    /// The status, with what the running transform says now.
    pub fn status_now(&self) -> DeploymentStatus {
        let mut status = self.status.lock().clone();
        let runnable = self.runnable();
        status.module = runnable.module.digest.clone();
        status.on_trial = runnable.on_trial();
        status.tables = self
            .table_loaders
            .lock()
            .as_ref()
            .map(|t| t.status())
            .unwrap_or_default();
        status
    }

    /// Starts the deployment's table loaders if they are not running, and
    /// waits until every table has loaded. False if `stop` came first.
    pub(crate) fn wait_for_tables(&self, shared: &Shared, stop: &AtomicBool) -> Result<bool> {
        let runnable = self.runnable();
        let owner = Owner {
            name: &self.name,
            storage: &self.storage,
            declared: &self.config.tables,
            tables: &runnable.spec.tables,
            loaders: &self.table_loaders,
        };
        tables::wait_loaded(owner, shared, stop)
    }

    /// The transform new batches run.
    pub fn runnable(&self) -> Arc<Runnable> {
        self.runnable.read().clone()
    }

    /// Runs the next batches with `next`; batches in flight finish with the
    /// transform they started with.
    pub fn swap(&self, next: Arc<Runnable>) {
        *self.runnable.write() = next;
    }

    /// A batch of `candidate` (on trial) failed where the module before it
    /// did not: go back to that module, once.
    pub(crate) fn roll_back(&self, candidate: &Arc<Runnable>, why: &str) -> bool {
        let Some(fallback) = candidate.fallback() else {
            return false;
        };
        if !Arc::ptr_eq(&self.runnable(), candidate) {
            return false;
        }
        tracing::error!(deployment = %self.name, module = %candidate.module.digest, "upgrade rolled back: {why}");
        self.swap(fallback);
        let mut status = self.status.lock();
        status.rolled_back = Some(format!(
            "upgrade to module {} rolled back: {why}",
            candidate.module.digest
        ));
        status.last_error = status.rolled_back.clone();
        true
    }
}

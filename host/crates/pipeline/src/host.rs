//! The host's pipeline: a [`Host`] owns what deployments share (engine,
//! producer, workers, metrics), checks and prepares deployments, and runs
//! each one's consumer on its own thread, restarted when it fails.
//!
//! (Over 400 lines: the host is the one place deployments are checked, started, stopped and supervised.)

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::budget::HostBudgets;
use crate::config::{Delivery, DeploymentConfig, FailurePolicy, HostConfig};
use crate::deployment::Deployment;
use crate::deployment_loop;
use crate::metrics::Metrics;
use crate::producers::Producers;
use crate::shared::Shared;
use crate::status::DeploymentStatus;
use crate::tables::OpenStores;
use crate::turns::Turns;
use crate::workers::{self, Runnable, Workers};
use weir_engine::transform::quota::InstanceQuota;
use weir_engine::transform::{Transform, TransformSpec};
use weir_engine::{Engine, EngineConfig, Module};
use weir_kafka::acl::{Operation, Permission, Resource};
use weir_kafka::{Cluster, KafkaConfig, ProducerLimits, changelog};
use weir_state::rocks::RocksConfig;
use weir_state::table_index::IndexBudget;

/// How often the producers' health is checked, and how long one may hold
/// records without delivering any before it counts as stuck.
const PRODUCER_CHECK: Duration = Duration::from_secs(5);
const PRODUCER_STALLED_AFTER: Duration = Duration::from_secs(30);

struct Running {
    deployment: Arc<Deployment>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Whose a deployment is and where it keeps its group, changelog and state.
pub struct Identity {
    /// `tenant.name`, or the name of an operator's deployment.
    pub id: String,
    pub tenant: Option<String>,
    pub storage: String,
}

impl Identity {
    /// A deployment of the configuration file.
    pub fn of_config(name: &str) -> Identity {
        Identity {
            id: name.to_owned(),
            tenant: None,
            storage: name.to_owned(),
        }
    }
}

/// What the pipeline holds a tenant's deployment to, beside its limits:
/// the topics it may route outputs to at run time, the input it may hold
/// buffered, and its share of the instance pool.
#[derive(Clone, Debug)]
pub struct TenantScope {
    pub name: String,
    /// Topic name prefixes its deployments may produce to.
    pub output_prefixes: Vec<String>,
    pub max_buffered_bytes: u64,
    /// Instances of the pool its deployments may hold at once.
    pub instance_share: usize,
}

impl TenantScope {
    pub fn may_write(&self, topic: &str) -> bool {
        self.output_prefixes
            .iter()
            .any(|p| topic.starts_with(p.as_str()))
    }
}

pub struct Host {
    engine: Engine,
    shared: Arc<Shared>,
    cluster: Cluster,
    /// Topics known to exist, for checking outputs routed at run time.
    known_topics: Arc<RwLock<HashSet<String>>>,
    producer_limits: ProducerLimits,
    running: Mutex<BTreeMap<String, Running>>,
    /// Set when shutdown begins: nothing new starts.
    closing: AtomicBool,
    /// Each tenant's share of the instance pool, made on first use.
    instance_quotas: Mutex<BTreeMap<String, Arc<InstanceQuota>>>,
    /// Whose warm-up runs; see [`Host::warm_up`].
    warm_ups: Turns,
}

impl Host {
    /// Connects to Kafka and starts the shared machinery; fails if the
    /// cluster cannot be reached.
    pub fn start(
        kafka: &KafkaConfig,
        host: &HostConfig,
        engine: &EngineConfig,
        registry: Option<&weir_schema::RegistryConfig>,
    ) -> Result<Host> {
        let engine = Engine::new(engine.clone())?;
        let registry = registry
            .map(weir_schema::Registry::new)
            .transpose()?
            .map(|r| Arc::new(r) as Arc<dyn weir_schema::Schemas>);
        let cluster = Cluster::connect(kafka)?;
        let producers = Producers::new(kafka)?;
        let workers = Workers::start(
            host.workers,
            weir_engine::worker_stack_size(engine.config()),
        );
        std::fs::create_dir_all(&host.state_dir)
            .with_context(|| format!("creating state directory {}", host.state_dir.display()))?;
        let shared = Arc::new(Shared {
            kafka: kafka.clone(),
            host: host.clone(),
            producers,
            workers,
            metrics: Arc::new(Metrics::new()),
            rocks: RocksConfig::new(64 << 20)?,
            shutdown: Arc::new(AtomicBool::new(false)),
            stopping: AtomicBool::new(false),
            host_id: host.id(),
            table_stores: OpenStores::default(),
            table_index: IndexBudget::new(host.table_index_bytes),
            state_readers: Default::default(),
            buffer_budgets: HostBudgets::new(host.max_buffered_bytes_total as u64),
            api_url: std::sync::OnceLock::new(),
            registry,
        });
        let known_topics = Arc::new(RwLock::new(cluster.topics()?.into_keys().collect()));
        let producer_limits = ProducerLimits::of(kafka)?;
        let host = Host {
            engine,
            shared,
            cluster,
            known_topics,
            producer_limits,
            running: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            instance_quotas: Mutex::default(),
            warm_ups: Turns::default(),
        };
        host.refresh_topics_in_background();
        host.watch_producer_in_background();
        Ok(host)
    }

    /// The cluster's admin client this host checks deployments with.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Tells the other hosts (through the consumer groups' client ids)
    /// where this host's API answers: `host.advertise`, or `bound`.
    pub fn advertise(&self, bound: std::net::SocketAddr) {
        let url = self
            .shared
            .host
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let _ = self.shared.api_url.set(url);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn refresh_topics_in_background(&self) {
        let (kafka, known, shutdown) = (
            self.shared.kafka.clone(),
            Arc::downgrade(&self.known_topics),
            self.shared.shutdown.clone(),
        );
        std::thread::Builder::new()
            .name("weir-topics".into())
            .spawn(move || {
                let Ok(cluster) = Cluster::connect(&kafka) else {
                    return;
                };
                while !shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(5));
                    let Some(known) = known.upgrade() else { return };
                    if let Ok(topics) = cluster.topics() {
                        *known.write() = topics.into_keys().collect();
                    }
                }
            })
            .expect("spawning the topic refresher");
    }

    /// Why the producers of the host (or of `tenant` only) look stuck, if
    /// any does.
    pub fn producer_stalled(&self, tenant: Option<&str>) -> Option<String> {
        self.shared.producers.stalled(tenant)
    }

    /// Sets the gauges read from the host's own counters: buffered bytes,
    /// the tables' copies in memory, and pool instances per tenant.
    pub fn refresh_gauges(&self) {
        let metrics = &self.shared.metrics;
        metrics
            .host_buffered_bytes
            .set(self.shared.buffer_budgets.host().used() as i64);
        metrics
            .host_table_index_bytes
            .set(self.shared.table_index.used() as i64);
        for (tenant, bytes) in self.shared.buffer_budgets.tenants() {
            metrics
                .tenant_buffered_bytes
                .with_label_values(&[&tenant])
                .set(bytes as i64);
        }
        for (tenant, quota) in self.instance_quotas.lock().iter() {
            metrics
                .tenant_instances
                .with_label_values(&[tenant])
                .set(quota.live() as i64);
        }
    }

    /// Checks every few seconds that each producer delivers while it has
    /// records waiting; one that does not (seen after a long broker
    /// outage) is reported in `/health` and replaced: what it held fails
    /// as a transient delivery failure, and its partitions send it again.
    fn watch_producer_in_background(&self) {
        let shared = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("weir-producer-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(PRODUCER_CHECK);
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    if shared.shutdown.load(Ordering::Relaxed) {
                        return;
                    }
                    shared.producers.check(PRODUCER_STALLED_AFTER);
                }
            })
            .expect("spawning the producer watch");
    }

    /// [`Host::prepare`] for a deployment of the configuration file.
    pub fn prepare_static(&self, name: &str, config: &DeploymentConfig) -> Result<Arc<Deployment>> {
        crate::config::check_name(name)?;
        let module = Arc::new(self.engine.load_file(&config.plugin)?);
        self.prepare(&Identity::of_config(name), config, module, None)
    }

    /// Checks a deployment against the cluster and instantiates its module,
    /// so that every problem surfaces before anything is consumed: `init`
    /// accepts the config, every topic exists (whether the topics are the
    /// tenant's is the caller's to check: `weir_control::Control` does),
    /// inputs are co-partitioned. Returns the inputs' partition count and
    /// the transform's setup.
    pub fn check_deployment(
        &self,
        id: &str,
        config: &DeploymentConfig,
        module: Arc<Module>,
        tenant: Option<&TenantScope>,
    ) -> Result<(usize, Arc<TransformSpec>)> {
        {
            use Operation::*;
            use Resource::Topic;
            let read = config
                .inputs
                .iter()
                .chain(config.tables.values())
                .map(|t| Permission::new(Read, Topic, t));
            let dead_letters = config.dead_letter_topic(id);
            let written = [
                Some(&config.output),
                Some(&dead_letters),
                config.late_topic.as_ref(),
            ]
            .into_iter()
            .flatten();
            self.cluster.require(
                &read
                    .chain(written.map(|t| Permission::new(Write, Topic, t)))
                    .collect::<Vec<_>>(),
            )?;
        }
        // One metadata request for every topic named.
        let topics = self.cluster.topics()?;
        let mut partitions = None;
        for input in &config.inputs {
            let n = weir_kafka::partitions_of(&topics, input)?;
            match partitions {
                Some(m) if m != n => bail!(
                    "input topics must have the same partition count (their partitions with the same number share state): `{input}` has {n}, `{}` has {m}",
                    config.inputs[0]
                ),
                _ => partitions = Some(n),
            }
        }
        let tables = config.tables.values();
        for topic in [
            Some(&config.output),
            Some(&config.dead_letter_topic(id)),
            config.late_topic.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(tables)
        {
            weir_kafka::partitions_of(&topics, topic)?;
        }
        if config.delivery == Delivery::ExactlyOnce {
            // A probe of its own id: the deployment's producers stay unfenced.
            let probe = format!("{}.probe.{id}", self.shared.kafka.group_prefix);
            weir_kafka::producer::Producer::transactional(
                &self.shared.kafka,
                &probe,
                Duration::from_secs(10),
            )
            .context("`delivery = \"exactly-once\"` needs Kafka transactions")?;
        }
        let spec = self.transform_spec(id, config, tenant)?;
        self.warm_up(module, spec.clone())?;
        Ok((partitions.expect("inputs are not empty"), spec))
    }

    /// [`Host::check_deployment`], then creates the changelog topic if
    /// missing.
    pub fn prepare(
        &self,
        who: &Identity,
        config: &DeploymentConfig,
        module: Arc<Module>,
        tenant: Option<&TenantScope>,
    ) -> Result<Arc<Deployment>> {
        let name = who.id.as_str();
        let (partitions, spec) = self.check_deployment(name, config, module.clone(), tenant)?;
        let changelog_topic = changelog::topic(&self.shared.kafka.group_prefix, &who.storage);
        self.cluster
            .ensure_topic(&changelog_topic, partitions, changelog::TOPIC_CONFIG)?;
        let group = format!("{}.{}", self.shared.kafka.group_prefix, who.storage);
        {
            use Operation::*;
            use Resource::*;
            let changelog = [Read, Write].map(|op| Permission::new(op, Topic, &changelog_topic));
            self.cluster
                .require(&[&changelog[..], &[Permission::new(Read, Group, &group)]].concat())?;
        }
        let cluster_partitions = self.cluster.partitions(&changelog_topic)?;
        if cluster_partitions < partitions {
            bail!(
                "changelog topic `{changelog_topic}` has {cluster_partitions} partitions, fewer than the inputs' {partitions}"
            );
        }
        let entry_limit = self
            .cluster
            .max_message_bytes(&[&changelog_topic])?
            .get(&changelog_topic)
            .copied()
            .unwrap_or(weir_kafka::KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
            .min(self.producer_limits.message_max_bytes);
        let runnable = Arc::new(Runnable::new(module, spec, config.cpu_share));
        Ok(Arc::new(Deployment::new(
            name.to_owned(),
            who.tenant.clone().unwrap_or_default(),
            who.storage.clone(),
            config.clone(),
            runnable,
            group,
            changelog_topic,
            entry_limit,
            self.shared
                .buffer_budgets
                .of(tenant.map(|t| (t.name.as_str(), t.max_buffered_bytes))),
        )))
    }

    /// How `config`'s instances are set up, with its output record limit
    /// resolved against the cluster.
    pub fn transform_spec(
        &self,
        name: &str,
        config: &DeploymentConfig,
        tenant: Option<&TenantScope>,
    ) -> Result<Arc<TransformSpec>> {
        let limits = self.output_limits(name, config)?;
        let mut spec = TransformSpec::new(
            name,
            config
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            limits,
        );
        // One guest log per deployment, and its tables, kept across upgrades
        // (a change of tables restarts the deployment).
        let running = self.deployment(name);
        if let Some(d) = &running {
            spec.log = d.runnable().spec.log.clone();
        }
        spec.tables = match running {
            Some(d) if d.config.tables == config.tables => d.runnable().spec.tables.clone(),
            _ => weir_state::tables::Tables::new(config.tables.keys().cloned()),
        };
        let known = self.known_topics.clone();
        let scope = tenant.cloned();
        spec.topic_policy = Some(Arc::new(move |topic: &str| {
            if scope.as_ref().is_some_and(|t| !t.may_write(topic)) {
                return Err(format!(
                    "output topic `{topic}` is outside the tenant's output prefixes"
                ));
            }
            if known.read().contains(topic) {
                Ok(())
            } else {
                Err(format!("output topic `{topic}` does not exist"))
            }
        }));
        spec.stop_at_failure = config.failure_policy == FailurePolicy::Stop;
        let formats = &config.formats;
        formats
            .check(tenant.is_some())
            .map_err(anyhow::Error::msg)?;
        let registry = self.shared.registry.as_ref();
        spec.input_decoding = weir_schema::InputCodec::new(formats, registry)?
            .map(|c| Arc::new(c) as Arc<dyn weir_abi::codec::RecordDecoding>);
        spec.output_encoding = weir_schema::OutputCodec::new(formats, &config.output, registry)
            .with_context(|| format!("output topic `{}`", config.output))?
            .map(|c| Arc::new(c) as Arc<dyn weir_abi::codec::RecordEncoding>);
        if let Some(t) = tenant {
            let quota = self
                .instance_quotas
                .lock()
                .entry(t.name.clone())
                .or_insert_with(|| InstanceQuota::new(&t.name, t.instance_share))
                .clone();
            spec.instance_quota = Some(quota);
        }
        Ok(Arc::new(spec))
    }

    /// `config.limits` with `max_output_record_bytes` resolved: every topic
    /// the deployment writes by name (output, dead letters, late records)
    /// must take the producer's batches and the largest record the limit
    /// allows, as the broker says now. Topics routed to at run time are
    /// bounded by their own setting when produced to.
    fn output_limits(&self, id: &str, config: &DeploymentConfig) -> Result<weir_abi::Limits> {
        let dlq = config.dead_letter_topic(id);
        let topics: Vec<&str> = [
            Some(config.output.as_str()),
            Some(dlq.as_str()),
            config.late_topic.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let accepted = self.cluster.max_message_bytes(&topics)?;
        let producer = self.producer_limits;
        let mut most = (
            producer.message_max_bytes,
            "Weir's producer (kafka.properties \"message.max.bytes\")".to_owned(),
        );
        for (topic, &max) in &accepted {
            if producer.batch_size > max {
                bail!(
                    "topic `{topic}` accepts record batches of at most {max} bytes (its max.message.bytes), less than the producer's batch.size of {}: raise the topic's max.message.bytes, or lower kafka.properties \"batch.size\"",
                    producer.batch_size
                );
            }
            if max < most.0 {
                most = (max, format!("topic `{topic}` (max.message.bytes)"));
            }
        }
        let mut limits = config.limits;
        match limits.max_output_record_bytes {
            Some(asked) if asked > most.0 => bail!(
                "limits.max_output_record_bytes = {asked} exceeds the {} bytes {} accepts",
                most.0,
                most.1
            ),
            Some(_) => {}
            None => limits.max_output_record_bytes = Some(most.0),
        }
        Ok(limits)
    }

    /// Instantiates a transform and runs its `init`, off the caller's
    /// thread (wasm needs a large stack).
    pub fn warm_up(&self, module: Arc<Module>, spec: Arc<TransformSpec>) -> Result<()> {
        // Outside the tenant's share, whose instances its running
        // deployments may all hold idle (nothing would ask them back for
        // a check): one warm-up at a time, in the place the pool keeps
        // for it (see `tenants::instance_shares`), in the order asked.
        let _turn = self.warm_ups.take();
        let spec = Arc::new(TransformSpec {
            instance_quota: None,
            ..(*spec).clone()
        });
        let name = spec.name.clone();
        let what = format!("deployment `{name}`: init");
        weir_engine::on_wasm_thread(self.engine.config(), "weir-warm-up", &what, move || {
            Transform::new(module, spec).warm_up()
        })?
        .map_err(|f| anyhow::Error::new(f).context(format!("deployment `{name}`")))
    }

    /// Which hosts consume deployment storage `storage`'s partitions.
    pub fn group_members(&self, storage: &str) -> Result<Vec<weir_kafka::group::Member>> {
        self.cluster
            .group_members(&format!("{}.{storage}", self.shared.kafka.group_prefix))
    }

    /// The running deployment `id`, if any.
    pub fn deployment(&self, id: &str) -> Option<Arc<Deployment>> {
        self.running.lock().get(id).map(|r| r.deployment.clone())
    }

    /// Starts consuming for a prepared deployment.
    pub fn run(&self, deployment: Arc<Deployment>) {
        let mut running = self.running.lock();
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (d, shared, s) = (deployment.clone(), self.shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("weir-{}", deployment.name))
            .spawn(move || supervise(&d, &shared, &s))
            .expect("spawning a deployment thread");
        running.insert(
            deployment.name.clone(),
            Running {
                deployment,
                stop,
                thread: Some(thread),
            },
        );
    }

    pub fn statuses(&self) -> BTreeMap<String, DeploymentStatus> {
        self.running
            .lock()
            .iter()
            .map(|(n, r)| (n.clone(), r.deployment.status_now()))
            .collect()
    }

    /// Stops one deployment: finishes its batches, commits, leaves the group.
    pub fn stop(&self, name: &str) -> bool {
        let running = self.running.lock().remove(name);
        match running {
            Some(mut r) => {
                r.stop.store(true, Ordering::Relaxed);
                if let Some(t) = r.thread.take() {
                    let _ = t.join();
                }
                true
            }
            None => false,
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Deletes this host's state of a deployment incarnation (its changelog
    /// is dropped by whoever undeployed it).
    pub fn drop_local_state(&self, storage: &str) {
        let dir = self.shared.host.state_dir.join(storage);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not delete dropped state");
        }
    }

    /// Deletes the changelog of a deployment incarnation once its consumer
    /// group is empty (every host has stopped it), waiting at most 30 s.
    /// Best effort: a later deploy starts a new incarnation anyway.
    pub fn drop_changelog(&self, storage: &str) -> Result<()> {
        let group = format!("{}.{storage}", self.shared.kafka.group_prefix);
        match weir_kafka::offsets::wait_empty(&self.shared.kafka, &group, Duration::from_secs(30)) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(group = %group, "the group still has members after 30 s; deleting its changelog anyway")
            }
            Err(e) => {
                tracing::warn!(group = %group, error = %format!("{e:#}"), "cannot list the group's members; deleting its changelog anyway")
            }
        }
        if let Err(e) = self
            .cluster
            .delete_topic(&changelog::topic(&self.shared.kafka.group_prefix, storage))
        {
            tracing::warn!(storage, error = %format!("{e:#}"), "could not delete a dropped changelog");
        }
        Ok(())
    }

    /// Starts no deployment from now on (those starting are stopped with
    /// the rest by [`Host::shutdown`]).
    pub fn close(&self) {
        let _running = self.running.lock();
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Graceful shutdown of everything.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.close();
        let names: Vec<String> = self.running.lock().keys().cloned().collect();
        for r in self.running.lock().values() {
            r.stop.store(true, Ordering::Relaxed);
        }
        for name in names {
            self.stop(&name);
        }
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.shared.producers.flush(Duration::from_secs(30));
        self.shared.workers.shutdown();
    }
}

/// Runs a deployment until `stop`, starting it again (after 1 s, doubling
/// to a minute) when it fails or the host panics in it: a bug that brings
/// down one deployment's consumer must not end it for good, nor silently.
fn supervise(d: &Arc<Deployment>, shared: &Arc<Shared>, stop: &Arc<AtomicBool>) {
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let started = std::time::Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deployment_loop::run(d.clone(), shared.clone(), stop.clone())
        }));
        let why = match ran {
            Ok(Ok(())) => break,
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!(
                "the host failed running it (a bug in Weir, please report it): {}",
                workers::panic_message(&*panic)
            ),
        };
        tracing::error!(deployment = %d.name, error = %why, "deployment failed; starting it again in {} s", backoff.as_secs());
        {
            let mut status = d.status.lock();
            status.down = Some(why.clone());
            status.last_error = Some(why);
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        let resume_at = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < resume_at && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
    // The tables' loaders live as long as the deployment runs here (joined
    // outside the lock, which status reads take).
    let loaders = d.table_loaders.lock().take();
    drop(loaders);
}

//! `weir run`: the host process that consumes, transforms and produces.
//!
//! A [`Host`] owns what deployments share (engine, producer, workers,
//! metrics) and runs each deployment's consumer on its own thread.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub mod deployment;
mod partition;
pub mod workers;

use crate::config::{Config, DeploymentConfig, HostConfig, KafkaConfig};
use crate::engine::Engine;
use crate::kafka::Cluster;
use crate::kafka::producer::Producer;
use crate::metrics::Metrics;
use crate::state::changelog;
use crate::state::rocks::RocksConfig;
use crate::transform::{Transform, TransformSpec};
use deployment::Deployment;
use workers::{Runnable, Workers};

/// What every deployment of a host shares.
pub struct Shared {
    pub kafka: KafkaConfig,
    pub host: HostConfig,
    pub producer: Producer,
    pub workers: Workers,
    pub metrics: Arc<Metrics>,
    pub rocks: RocksConfig,
    /// Set when the host shuts down: blocked sends stop waiting.
    pub shutdown: Arc<AtomicBool>,
}

/// A deployment's health as the host sees it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeploymentStatus {
    /// Input partitions this host processes.
    pub partitions: Vec<i32>,
    /// Partitions stopped by the failure policy, and why.
    pub stopped: BTreeMap<i32, String>,
    pub last_error: Option<String>,
}

struct Running {
    deployment: Arc<Deployment>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub struct Host {
    engine: Engine,
    shared: Arc<Shared>,
    cluster: Cluster,
    /// Topics known to exist, for checking outputs routed at run time.
    known_topics: Arc<RwLock<HashSet<String>>>,
    running: Mutex<BTreeMap<String, Running>>,
}

impl Host {
    /// Connects to Kafka and starts the shared machinery; fails if the
    /// cluster cannot be reached.
    pub fn start(config: &Config) -> Result<Host> {
        let engine = Engine::new(config.engine.clone())?;
        let cluster = Cluster::connect(&config.kafka)?;
        let producer = Producer::new(&config.kafka)?;
        let workers = Workers::start(config.host.workers, crate::engine::worker_stack_size(&config.engine));
        std::fs::create_dir_all(&config.host.state_dir).with_context(|| format!("creating state directory {}", config.host.state_dir.display()))?;
        let shared = Arc::new(Shared {
            kafka: config.kafka.clone(),
            host: config.host.clone(),
            producer,
            workers,
            metrics: Arc::new(Metrics::new()),
            rocks: RocksConfig::new(64 << 20)?,
            shutdown: Arc::new(AtomicBool::new(false)),
        });
        let known_topics = Arc::new(RwLock::new(cluster.topics()?.into_keys().collect()));
        let host = Host { engine, shared, cluster, known_topics, running: Mutex::new(BTreeMap::new()) };
        host.refresh_topics_in_background();
        Ok(host)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn refresh_topics_in_background(&self) {
        let (kafka, known, shutdown) = (self.shared.kafka.clone(), Arc::downgrade(&self.known_topics), self.shared.shutdown.clone());
        std::thread::Builder::new()
            .name("weir-topics".into())
            .spawn(move || {
                let Ok(cluster) = Cluster::connect(&kafka) else { return };
                while !shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(5));
                    let Some(known) = known.upgrade() else { return };
                    if let Ok(topics) = cluster.topics() {
                        *known.write().unwrap() = topics.into_keys().collect();
                    }
                }
            })
            .expect("spawning the topic refresher");
    }

    /// Checks a deployment against the cluster and loads its plugin, so
    /// that every problem surfaces before anything is consumed: the plugin
    /// loads and its `init` accepts the config, every topic exists, inputs
    /// are co-partitioned. Creates the changelog topic if missing.
    pub fn prepare(&self, name: &str, config: &DeploymentConfig) -> Result<Arc<Deployment>> {
        crate::config::check_name(name)?;
        let module = Arc::new(self.engine.load_file(&config.plugin)?);
        let mut partitions = None;
        for input in &config.inputs {
            let n = self.cluster.partitions(input)?;
            match partitions {
                Some(m) if m != n => bail!("input topics must have the same partition count (their partitions with the same number share state): `{input}` has {n}, `{}` has {m}", config.inputs[0]),
                _ => partitions = Some(n),
            }
        }
        let partitions = partitions.expect("inputs are not empty");
        for topic in [Some(&config.output), Some(&config.dead_letter_topic(name)), config.late_topic.as_ref()].into_iter().flatten() {
            self.cluster.partitions(topic)?;
        }
        let changelog_topic = changelog::topic(name);
        self.cluster.ensure_topic(&changelog_topic, partitions, changelog::TOPIC_CONFIG)?;
        let cluster_partitions = self.cluster.partitions(&changelog_topic)?;
        if cluster_partitions < partitions {
            bail!("changelog topic `{changelog_topic}` has {cluster_partitions} partitions, fewer than the inputs' {partitions}");
        }

        let mut spec = TransformSpec::new(name, config.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), config.limits);
        let known = self.known_topics.clone();
        spec.topic_policy = Some(Arc::new(move |topic: &str| {
            if known.read().unwrap().contains(topic) { Ok(()) } else { Err(format!("output topic `{topic}` does not exist")) }
        }));
        spec.stop_at_failure = config.failure_policy == crate::config::FailurePolicy::Stop;
        let spec = Arc::new(spec);
        let mut probe = Transform::new(module.clone(), spec.clone());
        probe.warm_up().map_err(|f| anyhow::anyhow!("deployment `{name}`: {}: {}", f.kind, f.message))?;

        Ok(Arc::new(Deployment {
            name: name.to_owned(),
            config: config.clone(),
            runnable: Arc::new(Runnable { module, spec, weight: 1.0 }),
            group: format!("{}.{name}", self.shared.kafka.group_prefix),
            changelog_topic,
            status: Arc::new(Mutex::new(DeploymentStatus::default())),
        }))
    }

    /// Starts consuming for a prepared deployment.
    pub fn run(&self, deployment: Arc<Deployment>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (d, shared, s) = (deployment.clone(), self.shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("weir-{}", deployment.name))
            .spawn(move || {
                if let Err(e) = deployment::run(d.clone(), shared, s) {
                    tracing::error!(deployment = %d.name, error = %format!("{e:#}"), "deployment failed");
                    d.status.lock().unwrap().last_error = Some(format!("{e:#}"));
                }
            })
            .expect("spawning a deployment thread");
        self.running.lock().unwrap().insert(deployment.name.clone(), Running { deployment, stop, thread: Some(thread) });
    }

    pub fn statuses(&self) -> BTreeMap<String, DeploymentStatus> {
        self.running.lock().unwrap().iter().map(|(n, r)| (n.clone(), r.deployment.status.lock().unwrap().clone())).collect()
    }

    /// Stops one deployment: finishes its batches, commits, leaves the group.
    pub fn stop(&self, name: &str) -> bool {
        let running = self.running.lock().unwrap().remove(name);
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

    /// Graceful shutdown of everything.
    pub fn shutdown(&self) {
        let names: Vec<String> = self.running.lock().unwrap().keys().cloned().collect();
        for r in self.running.lock().unwrap().values() {
            r.stop.store(true, Ordering::Relaxed);
        }
        for name in names {
            self.stop(&name);
        }
        self.shared.shutdown.store(true, Ordering::Relaxed);
        let _ = self.shared.producer.flush(Duration::from_secs(30));
        self.shared.workers.shutdown();
    }
}

//! The producers of at-least-once deployments' records, one per tenant
//! (the operator's deployments are tenant ""): a tenant whose outputs fill
//! librdkafka's queue, or whose topics the brokers refuse or answer
//! slowly, queues ahead of its own records only and stalls its own acks
//! only. Exactly-once deployments have transactional producers of their
//! own.
//!
//! A producer lives as long as the host: tenants are few and configured,
//! and a tenant that deploys again finds its producer warm.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parking_lot::Mutex;
use weir_kafka::KafkaConfig;
use weir_kafka::producer::Producer;

pub struct Producers {
    kafka: KafkaConfig,
    by_tenant: Mutex<BTreeMap<String, Producer>>,
    /// Why each stuck producer looks stuck, by tenant, while it does.
    stalled: Mutex<BTreeMap<String, String>>,
    /// When each tenant's producer was last replaced.
    renewed: Mutex<BTreeMap<String, Instant>>,
}

impl Producers {
    /// Makes the operator's producer, which checks the configuration.
    pub fn new(kafka: &KafkaConfig) -> Result<Producers> {
        let operator = Producer::new(kafka)?;
        Ok(Producers {
            kafka: kafka.clone(),
            by_tenant: Mutex::new(BTreeMap::from([(String::new(), operator)])),
            stalled: Mutex::default(),
            renewed: Mutex::default(),
        })
    }

    /// The producer of `tenant`'s deployments, made on first use.
    pub fn of(&self, tenant: &str) -> Result<Producer> {
        let mut by_tenant = self.by_tenant.lock();
        if let Some(p) = by_tenant.get(tenant) {
            return Ok(p.clone());
        }
        let p = Producer::new(&self.kafka)
            .with_context(|| format!("the producer of tenant `{tenant}`"))?;
        by_tenant.insert(tenant.to_owned(), p.clone());
        Ok(p)
    }

    fn all(&self) -> Vec<(String, Producer)> {
        self.by_tenant
            .lock()
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect()
    }

    /// Why the producers (or `tenant`'s only) look stuck, if any does.
    pub fn stalled(&self, tenant: Option<&str>) -> Option<String> {
        let stalled = self.stalled.lock();
        let why: Vec<String> = stalled
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|only| only == t.as_str()))
            .map(|(t, why)| {
                if t.is_empty() {
                    why.clone()
                } else {
                    format!("tenant `{t}`: {why}")
                }
            })
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Checks that each producer delivers while it has records waiting,
    /// and replaces one that has not for `after` (at most once per
    /// `after`); see [`Producer::renew`].
    pub fn check(&self, after: Duration) {
        let mut renewed = self.renewed.lock();
        for (tenant, producer) in self.all() {
            let stalled = producer.stalled(after);
            if let Some(why) = &stalled
                && renewed.get(&tenant).is_none_or(|at| at.elapsed() >= after)
            {
                tracing::error!(tenant = %tenant, "{why}: replacing it; what it held is sent again");
                if let Err(e) = producer.renew(&self.kafka) {
                    tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "could not replace the producer");
                }
                renewed.insert(tenant.clone(), Instant::now());
            }
            let mut all = self.stalled.lock();
            match stalled {
                Some(why) => all.insert(tenant, why),
                None => all.remove(&tenant),
            };
        }
    }

    /// Waits up to `timeout` in all for every producer to deliver what it
    /// holds.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (_, producer) in self.all() {
            let _ = producer.flush(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

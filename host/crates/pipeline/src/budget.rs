//! Bytes of buffered input a host, and each tenant on it, may hold: every
//! partition's buffer counts against both. A partition pauses its
//! consumption while it holds anything and its tenant's budget is spent,
//! or holds a batch and the host's is (so another tenant's buffers cannot
//! starve it). A limit per partition alone lets many deployments (of one
//! tenant) hold gigabytes.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffered bytes against one limit.
#[derive(Debug)]
pub struct BufferBudget {
    limit: u64,
    used: AtomicU64,
}

impl BufferBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BufferBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn spent(&self) -> bool {
        self.used() >= self.limit
    }
}

/// The budgets a buffer counts against: the host's, and its tenant's (in
/// that order).
#[derive(Clone, Debug)]
pub struct Budgets(Arc<[Arc<BufferBudget>]>);

impl Budgets {
    /// Counts nothing (tests).
    pub fn none() -> Self {
        Budgets(Arc::new([]))
    }

    pub fn add(&self, bytes: usize) {
        for b in self.0.iter() {
            b.used.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, bytes: usize) {
        for b in self.0.iter() {
            b.used.fetch_sub(bytes as u64, Ordering::Relaxed);
        }
    }

    /// The host's is spent.
    pub fn host_spent(&self) -> bool {
        self.0.first().is_some_and(|b| b.spent())
    }

    /// The tenant's is spent.
    pub fn tenant_spent(&self) -> bool {
        self.0.get(1).is_some_and(|b| b.spent())
    }
}

/// The host's budget and each tenant's, made on first use.
#[derive(Debug)]
pub struct HostBudgets {
    host: Arc<BufferBudget>,
    tenants: Mutex<BTreeMap<String, Arc<BufferBudget>>>,
}

impl HostBudgets {
    pub fn new(host_limit: u64) -> Self {
        HostBudgets {
            host: BufferBudget::new(host_limit),
            tenants: Mutex::default(),
        }
    }

    /// What a deployment of `tenant` (with its `limit`) counts against;
    /// the operator's count against the host's alone.
    pub fn of(&self, tenant: Option<(&str, u64)>) -> Budgets {
        match tenant {
            None => Budgets(Arc::new([self.host.clone()])),
            Some((name, limit)) => {
                let t = self
                    .tenants
                    .lock()
                    .entry(name.to_owned())
                    .or_insert_with(|| BufferBudget::new(limit))
                    .clone();
                Budgets(Arc::new([self.host.clone(), t]))
            }
        }
    }

    pub fn host(&self) -> &BufferBudget {
        &self.host
    }

    /// Each tenant's buffered bytes.
    pub fn tenants(&self) -> BTreeMap<String, u64> {
        self.tenants
            .lock()
            .iter()
            .map(|(t, b)| (t.clone(), b.used()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_buffers_count_against_its_budget_and_the_hosts() {
        let budgets = HostBudgets::new(1000);
        let (acme, evil, operator) = (
            budgets.of(Some(("acme", 300))),
            budgets.of(Some(("evil", 300))),
            budgets.of(None),
        );
        evil.add(300);
        assert!(
            evil.tenant_spent() && !acme.tenant_spent() && !operator.host_spent(),
            "evil's budget is its own"
        );
        acme.add(200);
        operator.add(500);
        assert!(
            acme.host_spent() && !acme.tenant_spent() && operator.host_spent(),
            "the host's is shared: {}",
            budgets.host().used()
        );
        operator.remove(500);
        evil.remove(300);
        assert!(!acme.host_spent() && !evil.tenant_spent());
        assert_eq!(
            budgets.tenants(),
            [("acme".to_owned(), 200), ("evil".to_owned(), 0)].into()
        );
    }
}

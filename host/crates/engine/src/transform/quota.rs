//! A tenant's share of the host's instance pool, counted per instance.

use std::sync::Arc;

use weir_abi::{CallFailure, FailureKind};

/// A tenant's share of the host's instance pool: how many instances its
/// deployments may hold at once. Each is bounded in what it takes of the
/// pool (see `MAX_*_PER_COMPONENT`), so shares bound the tenant's use.
pub struct InstanceQuota {
    tenant: String,
    limit: usize,
    live: std::sync::atomic::AtomicUsize,
}

impl InstanceQuota {
    pub fn new(tenant: &str, limit: usize) -> Arc<Self> {
        Arc::new(InstanceQuota {
            tenant: tenant.to_owned(),
            limit,
            live: Default::default(),
        })
    }

    /// Instances held now.
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether another instance would pass the share.
    pub fn full(&self) -> bool {
        self.live() >= self.limit
    }

    pub(crate) fn take(self: &Arc<Self>) -> Result<QuotaSlot, CallFailure> {
        use std::sync::atomic::Ordering;
        let taken = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(QuotaSlot(self.clone())),
            Err(_) => Err(CallFailure::new(
                FailureKind::Unavailable,
                format!(
                    "no room to run the transform: tenant `{}` holds its {} instances of the pool (quota `max_instances`)",
                    self.tenant, self.limit
                ),
            )),
        }
    }
}

/// One instance of a tenant's share, given back when the instance goes.
pub(crate) struct QuotaSlot(Arc<InstanceQuota>);

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        self.0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

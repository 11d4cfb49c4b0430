//! Tenants of a shared cluster of hosts: who may call the admin API, which
//! topics their deployments may touch, and the quotas their deployments run
//! under. Tenants are defined in the host configuration (the same on every
//! host); tokens are kept only as sha256 hashes.
//!
//! (Over 400 lines: a tenant's whole reach (tokens, topic prefixes, quotas, pool shares) in one
//! place, so a reviewer sees what a tenant can do.)

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use weir_abi::Limits;
use weir_pipeline::TenantScope;
use weir_pipeline::config::DeploymentConfig;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// sha256 of the tenant's API token, hex (`weir token` makes a pair).
    pub token_sha256: String,
    /// Topic name prefixes the tenant's deployments may consume.
    pub input_prefixes: Vec<String>,
    /// Topic name prefixes the tenant's deployments may produce to (outputs,
    /// dead letters, late records, and every topic routed at run time).
    pub output_prefixes: Vec<String>,
    #[serde(default)]
    pub quota: Quota,
}

/// Ceilings for a tenant's deployments. A deployment's limit left unset is
/// the quota's value; one set above it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quota {
    pub memory_mb: u64,
    pub cpu_ms_per_batch: u64,
    pub max_outputs_per_record: u32,
    pub max_output_bytes_per_record: u64,
    /// Bytes of state per input partition of one deployment.
    pub max_state_bytes: Option<u64>,
    /// Largest module the tenant may upload, MiB.
    pub max_module_mb: u64,
    /// Largest `cpu_share` of one deployment.
    pub max_cpu_share: f64,
    /// Deployments the tenant may have at once.
    pub max_deployments: usize,
    /// Instances of the host's pool the tenant's deployments may hold at
    /// once on a host (each worker that runs a deployment holds one);
    /// default: see [`instance_shares`].
    pub max_instances: Option<usize>,
    /// Input the tenant's deployments may hold buffered on a host, MiB.
    pub max_buffered_mb: u64,
    /// Modules the tenant may have in the registry, and their bytes (MiB).
    /// Modules no deployment runs are deleted an hour after their upload.
    pub max_modules: usize,
    pub max_module_storage_mb: u64,
}

impl Default for Quota {
    fn default() -> Self {
        let l = Limits::default();
        Quota {
            memory_mb: l.memory_mb,
            cpu_ms_per_batch: l.cpu_ms_per_batch,
            max_outputs_per_record: l.max_outputs_per_record,
            max_output_bytes_per_record: l.max_output_bytes_per_record,
            max_state_bytes: Some(1 << 30),
            max_module_mb: 32,
            max_cpu_share: 1.0,
            max_deployments: 20,
            max_instances: None,
            max_buffered_mb: 128,
            max_modules: 64,
            max_module_storage_mb: 512,
        }
    }
}

impl Quota {
    /// The limits of a deployment whose `limits` object set `given`
    /// (field names of [`Limits`]), or why they exceed the quota.
    pub fn limits(
        &self,
        given: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Limits, String> {
        let mut full = serde_json::to_value(self.as_limits()).expect("limits serialize");
        for (k, v) in given {
            full[k] = v.clone();
        }
        let limits: Limits = serde_json::from_value(full).map_err(|e| format!("limits: {e}"))?;
        // Every limit is a number, or null for unlimited.
        let (asked, max) = (
            serde_json::to_value(limits).expect("limits serialize"),
            serde_json::to_value(self.as_limits()).expect("limits serialize"),
        );
        for (name, max) in max.as_object().expect("limits are an object") {
            let asked = &asked[name];
            let over = match (asked.as_f64(), max.as_f64()) {
                (Some(a), Some(m)) => a > m,
                (None, Some(_)) => true,
                _ => false,
            };
            if over {
                let asked = if asked.is_null() {
                    "unlimited".to_owned()
                } else {
                    asked.to_string()
                };
                return Err(format!(
                    "limits.{name} = {asked} exceeds the tenant's quota of {max}"
                ));
            }
        }
        Ok(limits)
    }

    fn as_limits(&self) -> Limits {
        Limits {
            memory_mb: self.memory_mb,
            cpu_ms_per_batch: self.cpu_ms_per_batch,
            max_outputs_per_record: self.max_outputs_per_record,
            max_output_bytes_per_record: self.max_output_bytes_per_record,
            // Bounded by the topics, not by the tenant.
            max_output_record_bytes: None,
            max_state_bytes: self.max_state_bytes,
        }
    }
}

/// Instances of the pool kept for checking deployments, one at a time.
const WARM_UPS: usize = 1;

/// Instances of a host's pool (`engine.max_instances` of them) each
/// tenant's deployments may hold at once: its quota's `max_instances`, or
/// an even part of what those leave, no more than it can use
/// (`max_deployments` × `workers` + 4, a trial's second instance on a few
/// workers included). Shares that do not fit in the pool are refused, so
/// each tenant can always have its share. One instance of the pool is no
/// tenant's: a deployment's check runs its `init` there.
pub fn instance_shares(
    tenants: &BTreeMap<String, TenantConfig>,
    pool: usize,
    workers: usize,
) -> Result<BTreeMap<String, usize>> {
    let explicit: usize = tenants.values().filter_map(|t| t.quota.max_instances).sum();
    let Some(left) = pool.checked_sub(explicit + WARM_UPS) else {
        bail!(
            "the tenants' `max_instances` add up to {explicit}, more than the host's pool (`engine.max_instances` = {pool}) leaves them ({WARM_UPS} is kept for checking deployments)"
        )
    };
    let others = tenants
        .values()
        .filter(|t| t.quota.max_instances.is_none())
        .count();
    let each = left / others.max(1);
    if others > 0 && each == 0 {
        bail!(
            "the tenants' `max_instances` leave no room in the host's pool (`engine.max_instances` = {pool}) for the {others} tenants without one"
        )
    }
    let share = |t: &TenantConfig| {
        t.quota.max_instances.unwrap_or_else(|| {
            each.min(
                t.quota
                    .max_deployments
                    .saturating_mul(workers)
                    .saturating_add(4),
            )
        })
    };
    Ok(tenants
        .iter()
        .map(|(name, t)| (name.clone(), share(t)))
        .collect())
}

/// Checks that no tenant reaches another's topics: the prefixes of two
/// tenants may not overlap (`acme.` covers `acme.pay.`), except for one
/// tenant's output prefix written identically as another's input prefix,
/// a hand-off the operator spelled out on both sides.
pub fn check_apart(tenants: &std::collections::BTreeMap<String, TenantConfig>) -> Result<()> {
    for (i, (a, ta)) in tenants.iter().enumerate() {
        for (b, tb) in tenants.iter().skip(i + 1) {
            for (pa, out_a) in ta.prefixes() {
                for (pb, out_b) in tb.prefixes() {
                    let overlap = pa.starts_with(pb) || pb.starts_with(pa);
                    let hand_off = pa == pb && out_a != out_b;
                    if overlap && !hand_off {
                        bail!(
                            "tenants `{a}` and `{b}` overlap: prefix `{pa}` of `{a}` and `{pb}` of `{b}` cover the same topics (only one's output prefix written exactly as the other's input prefix may be shared)"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

impl TenantConfig {
    /// Checks the tenant's settings; `internal` is the prefix of Weir's own
    /// topics (`<group_prefix>.`: registry, changelogs), which no tenant may
    /// reach.
    pub fn check(&self, internal: &str) -> Result<()> {
        check_token_hash(&self.token_sha256)?;
        for p in self.input_prefixes.iter().chain(&self.output_prefixes) {
            if p.is_empty() {
                bail!(
                    "an empty topic prefix would allow every topic; list the prefixes the tenant owns"
                );
            }
            // `acme` would also cover `acmecorp.payments`.
            if !p.ends_with(['.', '-', '_']) {
                bail!(
                    "topic prefix `{p}` must end with `.`, `-` or `_`, so that it names the tenant's topics and no one else's"
                );
            }
            if p.starts_with(internal) || internal.starts_with(p.as_str()) {
                bail!(
                    "topic prefix `{p}` overlaps `{internal}`, the prefix of Weir's own topics (the registry and every deployment's changelog)"
                );
            }
        }
        Ok(())
    }

    /// The tenant's prefixes, each with whether it is an output prefix.
    fn prefixes(&self) -> impl Iterator<Item = (&str, bool)> {
        self.input_prefixes
            .iter()
            .map(|p| (p.as_str(), false))
            .chain(self.output_prefixes.iter().map(|p| (p.as_str(), true)))
    }

    pub fn may_read(&self, topic: &str) -> bool {
        self.input_prefixes
            .iter()
            .any(|p| topic.starts_with(p.as_str()))
    }

    pub fn may_write(&self, topic: &str) -> bool {
        self.output_prefixes
            .iter()
            .any(|p| topic.starts_with(p.as_str()))
    }

    /// Refuses a deployment naming a topic outside the tenant's prefixes.
    pub fn check_topics(
        &self,
        d: &DeploymentConfig,
        dead_letter_topic: &str,
    ) -> Result<(), String> {
        if let Some(t) = d.inputs.iter().find(|t| !self.may_read(t)) {
            return Err(format!(
                "input topic `{t}` is outside the tenant's input prefixes {:?}",
                self.input_prefixes
            ));
        }
        if let Some((name, t)) = d.tables.iter().find(|(_, t)| !self.may_read(t)) {
            return Err(format!(
                "table `{name}`: topic `{t}` is outside the tenant's input prefixes {:?}",
                self.input_prefixes
            ));
        }
        let outputs = [
            Some(d.output.as_str()),
            Some(dead_letter_topic),
            d.late_topic.as_deref(),
        ];
        if let Some(t) = outputs.into_iter().flatten().find(|t| !self.may_write(t)) {
            return Err(format!(
                "output topic `{t}` is outside the tenant's output prefixes {:?}",
                self.output_prefixes
            ));
        }
        Ok(())
    }
}

/// The admin API's operator: manages every tenant's deployments.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// sha256 of the admin token, hex (`weir token` makes a pair).
    pub token_sha256: String,
}

/// Who is calling the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

/// The tokens a host accepts.
#[derive(Clone, Default)]
pub struct Tenants {
    admin_hash: Option<[u8; 32]>,
    tenants: BTreeMap<String, TenantConfig>,
    /// See [`instance_shares`].
    instance_shares: BTreeMap<String, usize>,
}

impl Tenants {
    /// The admin's and `tenants`' tokens, with the tenants' shares of a
    /// pool of `pool` instances on `workers` workers.
    pub fn new(
        admin: Option<&AdminConfig>,
        tenants: &BTreeMap<String, TenantConfig>,
        pool: usize,
        workers: usize,
    ) -> Tenants {
        Tenants {
            admin_hash: admin.and_then(|a| decode_hash(&a.token_sha256)),
            tenants: tenants.clone(),
            // Checked with the configuration.
            instance_shares: instance_shares(tenants, pool, workers).unwrap_or_default(),
        }
    }

    /// What the pipeline holds `tenant`'s deployments to.
    pub fn scope(&self, tenant: &str) -> Option<TenantScope> {
        let t = self.tenants.get(tenant)?;
        Some(TenantScope {
            name: tenant.to_owned(),
            output_prefixes: t.output_prefixes.clone(),
            max_buffered_bytes: t.quota.max_buffered_mb << 20,
            instance_share: self.instance_share(tenant).unwrap_or(0),
        })
    }

    /// Instances of the pool `tenant`'s deployments may hold on this host.
    pub fn instance_share(&self, tenant: &str) -> Option<usize> {
        self.instance_shares.get(tenant).copied()
    }

    /// Whether any token is configured (the admin API is off otherwise).
    pub fn enabled(&self) -> bool {
        self.admin_hash.is_some() || !self.tenants.is_empty()
    }

    pub fn get(&self, tenant: &str) -> Option<&TenantConfig> {
        self.tenants.get(tenant)
    }

    /// The key hosts sign requests to each other with (state queries asked
    /// of the partition's owner): derived from every configured token hash,
    /// which no tenant knows but its own. None without an admin, when a
    /// sole tenant would know it all.
    pub fn peer_key(&self) -> Option<[u8; 32]> {
        let admin = self.admin_hash?;
        let mut h = Sha256::new();
        h.update(b"weir peer requests v1\0");
        h.update(admin);
        for (name, t) in &self.tenants {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(t.token_sha256.as_bytes());
        }
        Some(h.finalize().into())
    }

    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every candidate is compared in full, so timing says nothing about
        // which one (if any) matched.
        let mut found = None;
        if self.admin_hash.is_some_and(|h| equal(&h, &hash)) {
            found = Some(Principal::Admin);
        }
        for (name, t) in &self.tenants {
            if decode_hash(&t.token_sha256).is_some_and(|h| equal(&h, &hash)) && found.is_none() {
                found = Some(Principal::Tenant(name.clone()));
            }
        }
        found
    }
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash.trim()).ok()?.try_into().ok()
}

pub fn check_token_hash(hex_hash: &str) -> Result<()> {
    if decode_hash(hex_hash).is_none() {
        bail!(
            "token_sha256 must be 64 hex digits (the sha256 of the token; `weir token` prints a token and its hash)"
        );
    }
    Ok(())
}

/// sha256 of a token, hex: what the configuration stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex).
pub fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(token: &str) -> TenantConfig {
        TenantConfig {
            token_sha256: token_hash(token),
            input_prefixes: vec!["a.in.".into()],
            output_prefixes: vec!["a.out.".into()],
            quota: Quota::default(),
        }
    }

    #[test]
    fn tokens_map_to_their_principal_only() {
        let admin = AdminConfig {
            token_sha256: token_hash("root"),
        };
        let tenants = [("a".into(), tenant("ta")), ("b".into(), tenant("tb"))].into();
        let t = Tenants::new(Some(&admin), &tenants, 64, 2);
        assert_eq!(t.authenticate("root"), Some(Principal::Admin));
        assert_eq!(t.authenticate("ta"), Some(Principal::Tenant("a".into())));
        assert_eq!(t.authenticate("tb"), Some(Principal::Tenant("b".into())));
        assert_eq!(t.authenticate("tc"), None);
        assert_eq!(t.authenticate(""), None);
        assert_eq!(
            t.authenticate(&token_hash("ta")),
            None,
            "the hash is not the token"
        );
    }

    #[test]
    fn instance_shares_fit_in_the_pool() {
        let mut tenants = BTreeMap::new();
        for name in ["a", "b", "c"] {
            tenants.insert(name.to_owned(), tenant(name));
        }
        tenants.get_mut("a").unwrap().quota.max_instances = Some(600);
        let shares = instance_shares(&tenants, 1_000, 64).unwrap();
        // What `a` leaves, split between the others.
        assert_eq!(
            shares,
            [
                ("a".to_owned(), 600),
                ("b".to_owned(), 199),
                ("c".to_owned(), 199)
            ]
            .into()
        );
        // No more than a tenant can use: 20 deployments on 2 workers, and 4.
        assert_eq!(instance_shares(&tenants, 1_000, 2).unwrap()["b"], 44);
        tenants.get_mut("b").unwrap().quota.max_instances = Some(399);
        let refused = instance_shares(&tenants, 1_000, 2).unwrap_err().to_string();
        assert!(
            refused.contains("no room") && refused.contains("1 tenants without"),
            "{refused}"
        );
        tenants.get_mut("c").unwrap().quota.max_instances = Some(1);
        assert!(
            instance_shares(&tenants, 1_000, 2)
                .unwrap_err()
                .to_string()
                .contains("add up to 1000")
        );
    }

    #[test]
    fn quotas_fill_unset_limits_and_refuse_larger_ones() {
        let q = Quota {
            memory_mb: 32,
            max_state_bytes: Some(1000),
            ..Quota::default()
        };
        let l = q.limits(&serde_json::Map::new()).unwrap();
        assert_eq!((l.memory_mb, l.max_state_bytes), (32, Some(1000)));
        let given = serde_json::json!({ "memory_mb": 16 })
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(q.limits(&given).unwrap().memory_mb, 16);
        let given = serde_json::json!({ "memory_mb": 64 })
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            q.limits(&given).unwrap_err(),
            "limits.memory_mb = 64 exceeds the tenant's quota of 32"
        );
        let given = serde_json::json!({ "max_state_bytes": null })
            .as_object()
            .unwrap()
            .clone();
        assert!(
            q.limits(&given)
                .unwrap_err()
                .contains("max_state_bytes = unlimited")
        );
    }

    #[test]
    fn topics_outside_the_prefixes_are_refused() {
        let t = tenant("x");
        let mut d: DeploymentConfig = serde_json::from_value(
            serde_json::json!({ "inputs": ["a.in.x"], "output": "a.out.y" }),
        )
        .unwrap();
        assert!(t.check_topics(&d, "a.out.dlq").is_ok());
        assert!(
            t.check_topics(&d, "b.out.dlq")
                .unwrap_err()
                .contains("`b.out.dlq`")
        );
        // A table is read like an input: another tenant's topic is refused.
        d.tables.insert("users".into(), "a.in.users".into());
        assert!(t.check_topics(&d, "a.out.dlq").is_ok());
        d.tables.insert("prices".into(), "b.in.prices".into());
        assert!(
            t.check_topics(&d, "a.out.dlq")
                .unwrap_err()
                .contains("table `prices`: topic `b.in.prices` is outside")
        );
        d.tables.clear();
        d.inputs.push("b.in.x".into());
        assert!(
            t.check_topics(&d, "a.out.dlq")
                .unwrap_err()
                .contains("input topic `b.in.x`")
        );
    }
}

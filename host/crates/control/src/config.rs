//! `weir run` configuration: a TOML file, overridden by `WEIR_*`
//! environment variables and command-line flags.
//!
//! An environment variable `WEIR_A__B__C=value` sets key `a.b.c` (double
//! underscores separate levels; names are matched case-insensitively, with
//! `_` standing for `-`); the value is read as TOML (`42`, `true`,
//! `["a", "b"]`) or else taken as a string. Variables without `__` (such as
//! `WEIR_LOG`) are not configuration.
//!
//! (Over 400 lines: the whole configuration format reads in one place; a fifth is its tests.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::tenants::{check_apart, check_token_hash, instance_shares};
use weir_engine::EngineConfig;
// Each section's type is its owner's; the file is read here.
pub use crate::tenants::{AdminConfig, TenantConfig};
pub use weir_kafka::KafkaConfig;
pub use weir_pipeline::config::{
    Delivery, DeploymentConfig, FailurePolicy, HostConfig, check_name, is_empty_path,
};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub host: HostConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// The schema registry that registry formats (`avro`) decode and
    /// encode with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<weir_schema::RegistryConfig>,
    /// Static deployments, by name.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentConfig>,
    /// The admin API's operator: manages every tenant's deployments.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Tenants of the admin API, by name.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// Flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub group_prefix: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub workers: Option<usize>,
}

impl Config {
    /// Reads `path`, applies `env` (`WEIR_*` variables) and `flags`, and
    /// checks the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text, env, flags).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config> {
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        for (var, value) in env {
            apply_env(&mut tree, &var, &value)?;
        }
        let mut config: Config = Config::deserialize(tree)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        let k = &mut config.kafka;
        k.brokers = flags
            .brokers
            .clone()
            .unwrap_or(std::mem::take(&mut k.brokers));
        k.group_prefix = flags
            .group_prefix
            .clone()
            .unwrap_or(std::mem::take(&mut k.group_prefix));
        if let Some(d) = &flags.state_dir {
            config.host.state_dir = d.clone();
        }
        if flags.listen.is_some() {
            config.host.listen = flags.listen;
        }
        if let Some(w) = flags.workers {
            config.host.workers = w;
        }
        config.check()?;
        config.kafka.resolve()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.kafka.brokers.trim().is_empty() {
            bail!("kafka.brokers is empty");
        }
        if self.host.workers == 0 {
            bail!("host.workers must be at least 1");
        }
        if self.host.batch_max_records == 0 || self.host.batch_max_bytes == 0 {
            bail!("host.batch_max_records and host.batch_max_bytes must be positive");
        }
        // A batch's spans are 32-bit: a batch stays far below 4 GiB.
        if self.host.batch_max_bytes > 1 << 30 {
            bail!(
                "host.batch_max_bytes must be at most 1 GiB, not {}",
                self.host.batch_max_bytes
            );
        }
        if self.host.max_buffered_records == 0 || self.host.max_buffered_bytes == 0 {
            bail!("host.max_buffered_records and host.max_buffered_bytes must be positive");
        }
        for (name, d) in &self.deployments {
            check_name(name)?;
            if is_empty_path(&d.plugin) {
                bail!("deployment `{name}`: `plugin` is missing");
            }
            d.check().with_context(|| format!("deployment `{name}`"))?;
        }
        for (name, t) in &self.tenants {
            check_name(name).with_context(|| format!("tenant `{name}`"))?;
            t.check(&format!("{}.", self.kafka.group_prefix))
                .with_context(|| format!("tenant `{name}`"))?;
        }
        check_apart(&self.tenants)?;
        instance_shares(
            &self.tenants,
            self.engine.max_instances as usize,
            self.host.workers,
        )?;
        if let Some(a) = &self.admin {
            check_token_hash(&a.token_sha256).context("admin.token_sha256")?;
        }
        Ok(())
    }
}

fn apply_env(tree: &mut toml::Table, var: &str, raw: &str) -> Result<()> {
    let Some(path) = var.strip_prefix("WEIR_") else {
        return Ok(());
    };
    if !path.contains("__") {
        return Ok(());
    }
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut table = tree;
    for (i, part) in parts.iter().enumerate() {
        // Match an existing key ignoring case and `-`/`_`, so that
        // WEIR_DEPLOYMENTS__WORD_COUNT__OUTPUT reaches [deployments.word-count].
        let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
        let key = table
            .keys()
            .find(|k| norm(k) == norm(part))
            .cloned()
            .unwrap_or_else(|| part.clone());
        if i + 1 == parts.len() {
            table.insert(key, value);
            return Ok(());
        }
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("{var}: `{key}` is not a table"),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_abi::Limits;

    const BASE: &str = r#"
        [kafka]
        brokers = "b:9092"
        [deployments.word-count]
        plugin = "wc.wasm"
        inputs = ["text"]
        output = "counts"
        config = { lower = true, n = 3, name = "x" }
        limits = { memory_mb = 32 }
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_env_and_flags_layer_in_that_order() {
        let c = Config::parse(
            BASE,
            env(&[
                ("WEIR_KAFKA__BROKERS", "env:1"),
                ("WEIR_DEPLOYMENTS__WORD_COUNT__OUTPUT", "c2"),
                ("WEIR_HOST__WORKERS", "7"),
                ("WEIR_LOG", "debug"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "env:1");
        assert_eq!(c.host.workers, 7);
        let d = &c.deployments["word-count"];
        assert_eq!(d.output, "c2");
        assert_eq!(d.config["lower"], "true");
        assert_eq!(d.config["n"], "3");
        assert_eq!(d.limits.memory_mb, 32);
        assert_eq!(
            d.limits.cpu_ms_per_batch,
            Limits::default().cpu_ms_per_batch
        );
        assert_eq!(d.failure_policy, FailurePolicy::DeadLetter);
        assert_eq!(d.dead_letter_topic("word-count"), "word-count.dlq");
        let flags = Overrides {
            brokers: Some("flag:2".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::parse(BASE, env(&[("WEIR_KAFKA__BROKERS", "env:1")]), &flags)
                .unwrap()
                .kafka
                .brokers,
            "flag:2"
        );
    }

    /// A tenant whose prefixes would reach Weir's own topics (the registry,
    /// every changelog), or another tenant's topics, is refused.
    #[test]
    fn tenant_prefixes_cannot_reach_internal_topics() {
        let hash = "0".repeat(64);
        let tenant = |prefix: &str| {
            format!(
                "[kafka]\nbrokers = \"b:1\"\ngroup_prefix = \"weir\"\n[tenants.weir]\ntoken_sha256 = \"{hash}\"\ninput_prefixes = [\"{prefix}\"]\noutput_prefixes = [\"x.\"]\n"
            )
        };
        for (prefix, refused) in [
            ("weir.", "overlaps `weir.`"),
            ("weir.changelog.", "overlaps `weir.`"),
            ("we", "must end with"),
            ("acme", "must end with"),
        ] {
            let e = format!(
                "{:#}",
                Config::parse(&tenant(prefix), [], &Overrides::default()).unwrap_err()
            );
            assert!(e.contains(refused), "{prefix}: {e}");
        }
        Config::parse(&tenant("weird."), [], &Overrides::default())
            .expect("a prefix beside the internal one");
        let two = |a_in: &str, a_out: &str, b_in: &str, b_out: &str| {
            let t = |name: &str, i: &str, o: &str| {
                format!(
                    "[tenants.{name}]\ntoken_sha256 = \"{hash}\"\ninput_prefixes = [\"{i}\"]\noutput_prefixes = [\"{o}\"]\n"
                )
            };
            Config::parse(
                &format!(
                    "[kafka]\nbrokers = \"b:1\"\n{}{}",
                    t("acme", a_in, a_out),
                    t("beta", b_in, b_out)
                ),
                [],
                &Overrides::default(),
            )
        };
        for (a_in, a_out, b_in, b_out) in [
            ("acme.", "acme.", "acme.pay.", "beta."),
            ("acme.", "acme.", "beta.", "acme."),
            ("acme.", "x.", "beta.", "x."),
            ("acme.", "acme.", "beta.", "acme.pay."),
        ] {
            let e = format!("{:#}", two(a_in, a_out, b_in, b_out).unwrap_err());
            assert!(
                e.contains("tenants `acme` and `beta` overlap"),
                "{a_in} {a_out} {b_in} {b_out}: {e}"
            );
        }
        two("acme.", "shared.", "shared.", "beta.").expect("a hand-off spelled out on both sides");
        two("acme.", "acme.", "beta.", "beta.").expect("tenants apart");
    }

    #[test]
    fn mistakes_are_named() {
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("brokers", "brokerz"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `brokerz`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                BASE,
                env(&[("WEIR_KAFKA__BROKER", "x")]),
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `broker`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("\"counts\"", "\"text\""),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("is also an input"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("word-count]", "\"word count\"]"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("name `word count`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &BASE.replace("memory_mb", "memory"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(e.contains("unknown field `memory`"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse(
                &format!("{BASE}delivery = \"exactly-twice\""),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(
            e.contains(
                "unknown variant `exactly-twice`, expected `at-least-once` or `exactly-once`"
            ),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::parse(
                &format!("{BASE}commit_interval_ms = 0"),
                [],
                &Overrides::default()
            )
            .unwrap_err()
        );
        assert!(
            e.contains("commit_interval_ms must be 10 to 300000, not 0"),
            "{e}"
        );
    }

    #[test]
    fn exactly_once_commits_every_100_ms_unless_told() {
        let d = |extra: &str| {
            Config::parse(&format!("{BASE}{extra}"), [], &Overrides::default())
                .unwrap()
                .deployments["word-count"]
                .clone()
        };
        assert_eq!(
            (d("").delivery, d("").commit_interval_ms(1_000)),
            (Delivery::AtLeastOnce, 1_000)
        );
        let eos = d("delivery = \"exactly-once\"");
        assert_eq!(
            (eos.delivery, eos.commit_interval_ms(1_000)),
            (Delivery::ExactlyOnce, 100)
        );
        assert_eq!(
            d("delivery = \"exactly-once\"\ncommit_interval_ms = 1000").commit_interval_ms(200),
            1_000
        );
    }
}

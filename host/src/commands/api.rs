//! The admin API's verbs: `weir deploy`, `upgrade`, `rollback`, `list`,
//! `status`, `pause`, `resume`, `reset`, `undeploy`, `logs`, and `weir
//! token` (`weir state` is in `state.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use weir_control::admin::api::View;
use weir_control::admin::client::Client;
use weir_control::admin::reset::{KeepOrDrop, ResetRequest};
use weir_control::config::FailurePolicy;
use weir_kafka::offsets::ResetTo;

use super::parse_key_value;

#[derive(clap::Args)]
pub struct ApiArgs {
    /// A host's HTTP listener.
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Your token: the admin's, or a tenant's (`weir token` makes one).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// With the admin token: act for this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
}

impl ApiArgs {
    pub fn client(&self) -> Result<Client> {
        Client::new(&self.url, &self.token, self.tenant.clone())
    }
}

#[derive(clap::Args)]
pub struct NamedArgs {
    /// The deployment's name.
    pub name: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args)]
pub struct UndeployArgs {
    pub name: String,
    /// Delete its state, changelog and offsets too (default: keep them for a
    /// later deploy of the same name).
    #[arg(long)]
    pub drop_state: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("state").required(true).args(["drop_state", "keep_state"]))]
pub struct ResetArgs {
    pub name: String,
    /// Where to start again: `earliest`, `latest`, an RFC 3339 time (the
    /// first record at or after it), or offsets `TOPIC:PARTITION=OFFSET,...`
    /// (other partitions stay where they are).
    #[arg(long)]
    pub to: String,
    /// Start from empty state (rebuilt by reprocessing).
    #[arg(long)]
    pub drop_state: bool,
    /// Keep the state as it is.
    #[arg(long)]
    pub keep_state: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    pub name: String,
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    pub name: String,
    /// The plugin component (.wasm).
    #[arg(long)]
    pub plugin: PathBuf,
    /// Input topic (repeatable).
    #[arg(long = "input", required = true)]
    pub inputs: Vec<String>,
    #[arg(long)]
    pub output: String,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    pub name: String,
    /// The new plugin component (.wasm); default: keep the module.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Deployment settings; on `upgrade`, those given replace the current ones.
#[derive(clap::Args)]
pub struct Settings {
    /// Transform configuration, KEY=VALUE (repeatable; on upgrade, replaces
    /// the whole configuration).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// A limit, NAME=VALUE: memory_mb, cpu_ms_per_batch,
    /// max_outputs_per_record, max_output_bytes_per_record, max_output_record_bytes, max_state_bytes.
    #[arg(long = "limit", value_parser = parse_key_value)]
    pub limits: Vec<(String, String)>,
    /// dead-letter, skip or stop.
    #[arg(long, value_parser = parse_failure_policy)]
    pub failure_policy: Option<FailurePolicy>,
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    #[arg(long)]
    pub late_topic: Option<String>,
    #[arg(long)]
    pub cpu_share: Option<f64>,
}

impl Settings {
    /// Writes the given settings into a deployment request.
    fn apply(&self, spec: &mut serde_json::Value) -> Result<()> {
        if !self.config.is_empty() {
            spec["config"] = serde_json::json!(
                self.config
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeMap<_, _>>()
            );
        }
        if !spec["limits"].is_object() {
            spec["limits"] = serde_json::json!({});
        }
        for (k, v) in &self.limits {
            let value: serde_json::Value = serde_json::from_str(v)
                .with_context(|| format!("--limit {k}={v}: not a number"))?;
            spec["limits"][k] = value;
        }
        if let Some(policy) = self.failure_policy {
            spec["failure_policy"] = serde_json::json!(policy);
        }
        for (k, v) in [
            ("dead_letter_topic", &self.dead_letter_topic),
            ("late_topic", &self.late_topic),
        ] {
            if let Some(v) = v {
                spec[k] = serde_json::json!(v);
            }
        }
        if let Some(share) = self.cpu_share {
            spec["cpu_share"] = serde_json::json!(share);
        }
        Ok(())
    }
}

/// A failure policy as the configuration spells it.
fn parse_failure_policy(s: &str) -> Result<FailurePolicy, String> {
    serde_json::from_value(serde_json::json!(s))
        .map_err(|_| format!("`{s}`: expected dead-letter, skip or stop"))
}

pub fn status(a: NamedArgs) -> Result<ExitCode> {
    let view = a.api.client()?.status(&a.name)?;
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&view)?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn set_paused(a: NamedArgs, paused: bool) -> Result<ExitCode> {
    let v = a.api.client()?.pause(&a.name, paused)?;
    eprintln!("`{}`: {} (version {})", a.name, v.status, v.version);
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(a: NamedArgs) -> Result<ExitCode> {
    let v = a.api.client()?.rollback(&a.name)?;
    eprintln!(
        "`{}`: back to module {} (version {})",
        a.name, v.module, v.version
    );
    Ok(ExitCode::SUCCESS)
}

pub fn reset(a: ResetArgs) -> Result<ExitCode> {
    let request = ResetRequest {
        to: parse_reset_to(&a.to)?,
        state: if a.drop_state {
            KeepOrDrop::Drop
        } else {
            KeepOrDrop::Keep
        },
    };
    let done = a.api.client()?.reset(&a.name, &request)?;
    for (topic, partitions) in &done.offsets {
        for (p, o) in partitions {
            println!("{topic}\t{p}\t{o}");
        }
    }
    eprintln!(
        "`{}`: reset to {} (version {}, {})",
        a.name, request.to, done.deployment.version, done.deployment.status
    );
    Ok(ExitCode::SUCCESS)
}

/// `--to`: a named point, or `TOPIC:PARTITION=OFFSET,...`.
fn parse_reset_to(s: &str) -> Result<ResetTo> {
    if !s.contains('=') {
        return Ok(ResetTo::Named(s.to_owned()));
    }
    let mut offsets =
        std::collections::BTreeMap::<String, std::collections::BTreeMap<i32, i64>>::new();
    for part in s.split(',') {
        let parsed = part.rsplit_once('=').and_then(|(tp, o)| {
            let (t, p) = tp.rsplit_once(':')?;
            Some((t.to_owned(), p.parse().ok()?, o.parse().ok()?))
        });
        let (t, p, o) =
            parsed.with_context(|| format!("--to: `{part}` is not TOPIC:PARTITION=OFFSET"))?;
        offsets.entry(t).or_default().insert(p, o);
    }
    Ok(ResetTo::Offsets(offsets))
}

pub fn undeploy(a: UndeployArgs) -> Result<ExitCode> {
    a.api.client()?.undeploy(&a.name, a.drop_state)?;
    eprintln!(
        "undeployed `{}`{}",
        a.name,
        if a.drop_state {
            " and dropped its state"
        } else {
            " (state kept for a later deploy)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logs(a: LogsArgs) -> Result<ExitCode> {
    for line in a.api.client()?.logs(&a.name, a.lines)? {
        println!("{} {:5} {}", line.at_ms, line.level, line.message);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token() -> Result<ExitCode> {
    let token = weir_control::tenants::new_token()?;
    println!("token:        {token}");
    println!(
        "token_sha256: {}",
        weir_control::tenants::token_hash(&token)
    );
    Ok(ExitCode::SUCCESS)
}

fn read_plugin(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))
}

pub fn deploy(args: DeployArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let module = client.upload(read_plugin(&args.plugin)?)?.module;
    let mut spec =
        serde_json::json!({ "module": module, "inputs": args.inputs, "output": args.output });
    args.settings.apply(&mut spec)?;
    let v = client.deploy(&args.name, &spec)?;
    eprintln!(
        "deployed `{}`: module {module}, version {}",
        args.name, v.version
    );
    Ok(ExitCode::SUCCESS)
}

pub fn upgrade(args: UpgradeArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let current = client.status(&args.name)?;
    let mut spec = serde_json::to_value(&current.spec)?;
    spec["module"] = serde_json::json!(current.module);
    if let Some(p) = &args.plugin {
        spec["module"] = serde_json::json!(client.upload(read_plugin(p)?)?.module);
    }
    args.settings.apply(&mut spec)?;
    let v = client.upgrade(&args.name, &spec)?;
    eprintln!(
        "upgraded `{}` to module {}, version {}; it runs on trial for its first batches",
        args.name, v.module, v.version
    );
    Ok(ExitCode::SUCCESS)
}

pub fn list(args: ApiArgs) -> Result<ExitCode> {
    let all = args.client()?.list()?;
    let rows: Vec<[String; 8]> = all
        .iter()
        .map(|d| {
            [
                d.name.clone(),
                d.tenant.clone().unwrap_or_else(|| "-".into()),
                d.status.to_string(),
                d.version.to_string(),
                d.module[..d.module.len().min(12)].to_owned(),
                d.spec.delivery.as_str().to_owned(),
                partitions(d),
                d.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            [
                "NAME",
                "TENANT",
                "STATUS",
                "VERSION",
                "MODULE",
                "DELIVERY",
                "PARTITIONS",
                "ERROR"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// Rows under a header, each column as wide as its widest cell (the last
/// column, free text, unpadded).
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(header.map(str::to_owned)).chain(rows.iter().cloned()) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i + 1 == N {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The partitions a deployment runs on the host that answered.
fn partitions(d: &View) -> String {
    let list = d
        .host
        .as_ref()
        .map(|h| {
            h.partitions
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    if list.is_empty() { "-".into() } else { list }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            [
                "a-rather-long-deployment-name".to_owned(),
                "1".to_owned(),
                "x".to_owned(),
            ],
            ["b".to_owned(), "12345".to_owned(), String::new()],
        ];
        let text = super::table(["NAME", "VERSION", "ERROR"], &rows);
        assert_eq!(
            text,
            "NAME                           VERSION  ERROR\na-rather-long-deployment-name  1        x\nb                              12345\n"
        );
    }

    #[test]
    fn reset_points_parse() {
        use super::*;
        assert_eq!(
            parse_reset_to("earliest").unwrap(),
            ResetTo::Named("earliest".into())
        );
        assert_eq!(
            parse_reset_to("2026-12-05T10:00:00Z").unwrap(),
            ResetTo::Named("2026-12-05T10:00:00Z".into())
        );
        let ResetTo::Offsets(o) = parse_reset_to("a.b:0=5,a.b:3=9,c:1=0").unwrap() else {
            panic!()
        };
        assert_eq!(o["a.b"][&3], 9);
        assert_eq!(o["c"][&1], 0);
        assert!(parse_reset_to("a.b:x=5").is_err());
    }
}

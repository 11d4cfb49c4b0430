use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use weir_abi::Limits;
use weir_engine::offline::{self, TestOptions};
use weir_engine::{Engine, EngineConfig};

// State and window updates allocate small keys and values per record;
// mimalloc serves them markedly faster than glibc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sandboxed WebAssembly transforms on Kafka streams.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join Kafka and run the configured deployments until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Try Weir with nothing installed: an embedded Kafka, an example plugin,
    /// sample records in, outputs printed as they arrive.
    Dev(DevArgs),
    /// Run a plugin over records from a JSON Lines file, without Kafka.
    Test(TestArgs),
    /// Create a plugin directory: `./build` in it writes NAME.wasm, which
    /// passes `weir test NAME.wasm -i sample.jsonl`.
    New(NewArgs),
    /// Measure throughput (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Upload a plugin to running hosts and deploy it (admin API).
    Deploy(DeployArgs),
    /// Replace a deployment's plugin (and config) without losing state or
    /// records; rolled back if the new plugin fails its first batches.
    Upgrade(UpgradeArgs),
    /// List deployments with their status.
    List(ApiArgs),
    /// One deployment's status, as JSON.
    Status(NamedArgs),
    /// Stop consuming (state and offsets are kept).
    Pause(NamedArgs),
    Resume(NamedArgs),
    /// Remove a deployment from every host.
    Undeploy(UndeployArgs),
    /// A deployment's recent guest log lines.
    Logs(LogsArgs),
    /// Make an API token: prints the token and the sha256 the host config
    /// stores.
    Token,
}

#[derive(clap::Args)]
struct ApiArgs {
    /// A host's HTTP listener.
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:9464")]
    url: String,
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: String,
    /// With the admin token: act for this tenant.
    #[arg(long)]
    tenant: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> Result<weir_runtime::admin::client::Client> {
        weir_runtime::admin::client::Client::new(&self.url, &self.token, self.tenant.clone())
    }
}

#[derive(clap::Args)]
struct NamedArgs {
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
struct UndeployArgs {
    name: String,
    /// Delete its state, changelog and offsets too (default: keep them for a
    /// later deploy of the same name).
    #[arg(long)]
    drop_state: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
struct LogsArgs {
    name: String,
    #[arg(long, default_value_t = 100)]
    lines: usize,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
struct DeployArgs {
    name: String,
    /// The plugin component (.wasm).
    #[arg(long)]
    plugin: PathBuf,
    /// Input topic (repeatable).
    #[arg(long = "input", required = true)]
    inputs: Vec<String>,
    #[arg(long)]
    output: String,
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
struct UpgradeArgs {
    name: String,
    /// The new plugin component (.wasm); default: keep the module.
    #[arg(long)]
    plugin: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    api: ApiArgs,
}

/// Deployment settings; on `upgrade`, those given replace the current ones.
#[derive(clap::Args)]
struct Settings {
    /// Transform configuration, KEY=VALUE (repeatable; on upgrade, replaces
    /// the whole configuration).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// A limit, NAME=VALUE: memory_mb, cpu_ms_per_batch,
    /// max_outputs_per_record, max_output_bytes_per_record, max_output_record_bytes, max_state_bytes.
    #[arg(long = "limit", value_parser = parse_key_value)]
    limits: Vec<(String, String)>,
    /// dead-letter, skip or stop.
    #[arg(long, value_parser = parse_failure_policy)]
    failure_policy: Option<weir_runtime::config::FailurePolicy>,
    #[arg(long)]
    dead_letter_topic: Option<String>,
    #[arg(long)]
    late_topic: Option<String>,
    #[arg(long)]
    cpu_share: Option<f64>,
}

impl Settings {
    /// Writes the given settings into a deployment request.
    fn apply(&self, spec: &mut serde_json::Value) -> Result<()> {
        if !self.config.is_empty() {
            spec["config"] = serde_json::json!(self.config.iter().cloned().collect::<std::collections::BTreeMap<_, _>>());
        }
        if !spec["limits"].is_object() {
            spec["limits"] = serde_json::json!({});
        }
        for (k, v) in &self.limits {
            let value: serde_json::Value = serde_json::from_str(v).with_context(|| format!("--limit {k}={v}: not a number"))?;
            spec["limits"][k] = value;
        }
        if let Some(policy) = self.failure_policy {
            spec["failure_policy"] = serde_json::json!(policy);
        }
        for (k, v) in [("dead_letter_topic", &self.dead_letter_topic), ("late_topic", &self.late_topic)] {
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

#[derive(clap::Args)]
struct NewArgs {
    /// The plugin directory to create; its last component names the plugin.
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = weir::scaffold::Lang::Rust)]
    lang: weir::scaffold::Lang,
    /// The SDK directory (default: $WEIR_SDK, else the guest-sdk this weir was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// In-process dispatch through a stateless map plugin vs. a native closure.
    Dispatch {
        /// An upper-casing map plugin (plugins/rust/upper).
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
    },
    /// End to end on a broker: `weir run`'s pipeline with a stateless plugin
    /// vs. a raw consume→produce passthrough, same broker, same run.
    Pipeline {
        #[arg(long)]
        brokers: String,
        /// A stateless map plugin (plugins/rust/upper).
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// Weir vs. Kafka Streams on the same input and broker: a stateless map
    /// and a tumbling 1 s window count (final results), beside the raw
    /// consume→produce relay.
    Streams {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, window_count.wasm).
        #[arg(long)]
        plugins: PathBuf,
        /// The Kafka Streams program, as `scripts/setup --test` builds it
        /// (default: $WEIR_CACHE/kafka-streams-bench).
        #[arg(long)]
        kafka_streams: Option<PathBuf>,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// One tenant's throughput alone vs. beside a tenant running every
    /// hostile plugin, on one host and a real broker.
    Tenants {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, hostile_*.wasm).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 500_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// In-process stateful throughput (RocksDB state): stateless map vs.
    /// word count vs. tumbling window count over many keys.
    State {
        /// The directory holding upper.wasm, word_count.wasm and
        /// window_count.wasm (the plugins' build output).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 1_200_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
    /// Per-language cost: component size, compile time cold and from the
    /// artifact cache, stateful throughput of the map and the word count.
    Languages {
        /// Holds <lang>/upper.wasm and <lang>/word-count.wasm
        /// (`scripts/build-plugins` writes $CARGO_TARGET_DIR/plugins).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "rust,python,js,c")]
        langs: Vec<String>,
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
    /// State restore from a changelog into RocksDB vs. a bare consumer
    /// reading the same records.
    Restore {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The configuration file (TOML); `WEIR_A__B=value` overrides key `a.b`.
    #[arg(long, short, default_value = "weir.toml")]
    config: PathBuf,
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group prefix (overrides kafka.group_prefix).
    #[arg(long)]
    group_prefix: Option<String>,
    /// State directory (overrides host.state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// HTTP listener address (overrides host.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Worker threads (overrides host.workers).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(clap::Args)]
struct DevArgs {
    /// The plugin to deploy (default: the word-count example).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Transform configuration, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Records to produce, JSON Lines as for `weir test` (default: sample sentences).
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Exit after printing this many output records (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    max_records: usize,
    /// HTTP listener (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: std::net::SocketAddr,
    /// Milliseconds between sample records.
    #[arg(long, default_value_t = 300)]
    interval_ms: u64,
    /// The admin API's token (`weir deploy` and friends send it).
    #[arg(long, env = "WEIR_TOKEN", default_value = "dev")]
    token: String,
}

#[derive(clap::Args)]
struct TestArgs {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// JSON Lines input, `-` for stdin.
    #[arg(long, short)]
    input: PathBuf,
    /// Transform configuration, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Topic name printed for outputs to the default output topic.
    #[arg(long, default_value = "output")]
    output_topic: String,
    /// Topic of input records that name none.
    #[arg(long, default_value = "input")]
    input_topic: String,
    /// Records per call into the plugin.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Emit windows still open at the end of the input.
    #[arg(long)]
    flush_windows: bool,
    /// Linear memory limit per instance, MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// CPU time limit per call, ms.
    #[arg(long)]
    cpu_ms: Option<u64>,
    /// Do not read or write the compiled-module cache.
    #[arg(long)]
    no_cache: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// A failure policy as the configuration spells it.
fn parse_failure_policy(s: &str) -> Result<weir_runtime::config::FailurePolicy, String> {
    serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("`{s}`: expected dead-letter, skip or stop"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test(args),
        Command::Run(args) => run(args),
        Command::Dev(args) => dev(args),
        Command::New(args) => new_plugin(args),
        Command::Bench(b) => weir_engine::on_wasm_thread(&EngineConfig::default(), "bench-main", "the benchmark", move || bench(b)).and_then(|r| r),
        Command::Deploy(a) => deploy(a),
        Command::Upgrade(a) => upgrade(a),
        Command::List(a) => list(a),
        Command::Status(a) => a.api.client().and_then(|c| c.status(&a.name)).map(print_json),
        Command::Pause(a) => a.api.client().and_then(|c| c.pause(&a.name, true)).map(|v| print_state(&a.name, &v)),
        Command::Resume(a) => a.api.client().and_then(|c| c.pause(&a.name, false)).map(|v| print_state(&a.name, &v)),
        Command::Undeploy(a) => a.api.client().and_then(|c| c.undeploy(&a.name, a.drop_state)).map(|()| {
            eprintln!("undeployed `{}`{}", a.name, if a.drop_state { " and dropped its state" } else { " (state kept for a later deploy)" });
            ExitCode::SUCCESS
        }),
        Command::Logs(a) => a.api.client().and_then(|c| c.logs(&a.name, a.lines)).map(print_logs),
        Command::Token => token(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: serde_json::Value) -> ExitCode {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    ExitCode::SUCCESS
}

fn print_state(name: &str, v: &serde_json::Value) -> ExitCode {
    eprintln!("`{name}`: {} (version {})", v["status"].as_str().unwrap_or("?"), v["version"]);
    ExitCode::SUCCESS
}

fn print_logs(v: serde_json::Value) -> ExitCode {
    for line in v.as_array().into_iter().flatten() {
        println!("{} {:5} {}", line["at_ms"], line["level"].as_str().unwrap_or(""), line["message"].as_str().unwrap_or(""));
    }
    ExitCode::SUCCESS
}

fn token() -> Result<ExitCode> {
    let token = weir_runtime::tenants::new_token()?;
    println!("token:        {token}");
    println!("token_sha256: {}", weir_runtime::tenants::token_hash(&token));
    Ok(ExitCode::SUCCESS)
}

fn read_plugin(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))
}

fn deploy(args: DeployArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let module = client.upload(read_plugin(&args.plugin)?)?;
    let mut spec = serde_json::json!({ "module": module, "inputs": args.inputs, "output": args.output });
    args.settings.apply(&mut spec)?;
    let v = client.deploy(&args.name, &spec)?;
    eprintln!("deployed `{}`: module {module}, version {}", args.name, v["version"]);
    Ok(ExitCode::SUCCESS)
}

fn upgrade(args: UpgradeArgs) -> Result<ExitCode> {
    let client = args.api.client()?;
    let current = client.status(&args.name)?;
    let mut spec = current["spec"].clone();
    spec["module"] = current["module"].clone();
    if let Some(p) = &args.plugin {
        spec["module"] = serde_json::json!(client.upload(read_plugin(p)?)?);
    }
    args.settings.apply(&mut spec)?;
    let v = client.upgrade(&args.name, &spec)?;
    eprintln!("upgraded `{}` to module {}, version {}; it runs on trial for its first batches", args.name, v["module"].as_str().unwrap_or("?"), v["version"]);
    Ok(ExitCode::SUCCESS)
}

fn list(args: ApiArgs) -> Result<ExitCode> {
    let all = args.client()?.list()?;
    println!("{:<24} {:<12} {:<10} {:>7} {:<14} {:<12} ERROR", "NAME", "TENANT", "STATUS", "VERSION", "MODULE", "PARTITIONS");
    for d in all.as_array().into_iter().flatten() {
        let module = d["module"].as_str().unwrap_or("");
        let partitions = d["host"]["partitions"].as_array().map(|p| p.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")).unwrap_or_default();
        println!(
            "{:<24} {:<12} {:<10} {:>7} {:<14} {:<12} {}",
            d["name"].as_str().unwrap_or(""),
            d["tenant"].as_str().unwrap_or("-"),
            d["status"].as_str().unwrap_or(""),
            d["version"],
            &module[..module.len().min(12)],
            if partitions.is_empty() { "-".into() } else { partitions },
            d["error"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn new_plugin(args: NewArgs) -> Result<ExitCode> {
    let sdk = args.sdk.unwrap_or_else(weir::scaffold::default_sdk_dir);
    let files = weir::scaffold::create(&args.dir, args.lang, &sdk)?;
    for f in &files {
        eprintln!("created {}", f.display());
    }
    let name = args.dir.file_name().unwrap_or_default().to_string_lossy();
    eprintln!("next: cd {} && ./build && weir test {name}.wasm -i sample.jsonl", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let flags = weir_runtime::config::Overrides {
        brokers: args.brokers,
        group_prefix: args.group_prefix,
        state_dir: args.state_dir,
        listen: args.listen,
        workers: args.workers,
    };
    let config = weir_runtime::config::Config::load(&args.config, std::env::vars(), &flags)?;
    serve_until_signal(config, |_, _| Ok(()))
}

fn dev(args: DevArgs) -> Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let plugin = match args.plugin {
        Some(p) => p,
        None => weir::dev::default_plugin()?,
    };
    let samples = weir::dev::sample(args.input.as_ref())?;
    let embedded = weir::dev::Embedded::start(&[])?;
    let bootstrap = embedded.bootstrap();
    let state_dir = std::env::temp_dir().join(format!("weir-dev-{}", std::process::id()));
    let mut config = weir::dev::config(&bootstrap, plugin.clone(), args.config, state_dir.clone());
    config.host.listen = Some(args.listen);
    config.admin = Some(weir_runtime::config::AdminConfig { token_sha256: weir_runtime::tenants::token_hash(&args.token) });
    eprintln!("weir dev: embedded Kafka at {bootstrap} (any Kafka client can connect)");
    eprintln!("weir dev: deployment `{}` runs {} from topic `{}` to `{}`", weir::dev::DEPLOYMENT, plugin.display(), weir::dev::INPUT, weir::dev::OUTPUT);
    eprintln!("weir dev: metrics, health and the admin API on http://{}; Ctrl-C to stop", args.listen);
    eprintln!(
        "weir dev: deploy more with `WEIR_TOKEN={} weir deploy NAME --plugin FILE.wasm --input {} --output {}`",
        args.token,
        weir::dev::INPUT,
        weir::dev::OUTPUT
    );
    let stop = Arc::new(AtomicBool::new(false));
    let code = serve_until_signal(config, |_, shutdown| {
        weir::dev::print_outputs(bootstrap.clone(), vec![weir::dev::OUTPUT.into()], args.max_records, stop.clone(), move || shutdown.notify_one());
        weir::dev::produce_samples(bootstrap.clone(), samples, std::time::Duration::from_millis(args.interval_ms), 0, stop.clone());
        Ok(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::remove_dir_all(&state_dir);
    drop(embedded);
    code
}

/// Starts a host with `config`'s deployments, runs `then` once they are
/// consuming, and serves until SIGINT or SIGTERM (or `then`'s notifier
/// fires); then shuts down
/// gracefully (in-flight batches finish, outputs are flushed, offsets
/// committed).
fn serve_until_signal(
    config: weir_runtime::config::Config,
    then: impl FnOnce(&weir_runtime::pipeline::Host, std::sync::Arc<tokio::sync::Notify>) -> Result<()>,
) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let host = std::sync::Arc::new(weir_runtime::pipeline::Host::start(&config)?);
    // Check every deployment before consuming anything.
    let prepared =
        config.deployments.iter().map(|(name, d)| host.prepare_static(name, d).with_context(|| format!("deployment `{name}`"))).collect::<Result<Vec<_>>>()?;
    if let Some(addr) = config.host.listen {
        let router = weir_runtime::http::router(host.clone());
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "HTTP listener ready (/metrics, /health)");
        runtime.spawn(weir_runtime::http::serve(listener, router));
    }
    for d in prepared {
        host.run(d);
    }
    if host.registry.is_some() {
        weir_runtime::pipeline::reconcile::spawn(host.clone())?;
    }
    let shutdown = std::sync::Arc::new(tokio::sync::Notify::new());
    then(&host, shutdown.clone())?;
    runtime.block_on(async {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = shutdown.notified() => {}
        }
    });
    tracing::info!("shutting down: finishing batches and committing");
    host.shutdown();
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn bench(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Dispatch { plugin, records, value_bytes } => {
            let rows = weir::bench::dispatch(&plugin, records, value_bytes)?;
            println!("| batch | Weir (wasm) records/s | native closure records/s | wasm / native |");
            println!("|------:|----------------------:|-------------------------:|--------------:|");
            for r in rows {
                println!("| {} | {:.0} | {:.0} | {:.2} |", r.batch, r.wasm_per_sec, r.native_per_sec, r.wasm_per_sec / r.native_per_sec);
            }
        }
        BenchCommand::Pipeline { brokers, plugin, records, partitions } => {
            let r = weir::bench::pipeline(&brokers, &plugin, records, partitions)?;
            println!("| records | raw passthrough records/s | Weir (upper plugin) records/s | Weir / raw |");
            println!("|--------:|--------------------------:|------------------------------:|-----------:|");
            println!("| {} | {:.0} | {:.0} | {:.2} |", r.records, r.raw_per_sec, r.weir_per_sec, r.weir_per_sec / r.raw_per_sec);
        }
        BenchCommand::Streams { brokers, plugins, kafka_streams, records, keys, partitions } => {
            let dir = match kafka_streams {
                Some(d) => d,
                None => std::env::var_os("WEIR_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
                    .context("set WEIR_CACHE or pass --kafka-streams")?
                    .join("kafka-streams-bench"),
            };
            let rows = weir::bench::streams::streams(&brokers, &plugins, &dir, records, keys, partitions)?;
            println!("| workload | records | outputs | raw relay records/s | Weir records/s | Kafka Streams records/s | Weir / Kafka Streams | Weir / raw |");
            println!("|---|---:|---:|---:|---:|---:|---:|---:|");
            for r in rows {
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    r.workload,
                    r.records,
                    r.outputs,
                    r.raw_per_sec,
                    r.weir_per_sec,
                    r.kafka_streams_per_sec,
                    r.weir_per_sec / r.kafka_streams_per_sec,
                    r.weir_per_sec / r.raw_per_sec
                );
            }
        }
        BenchCommand::Tenants { brokers, plugins, records, partitions } => {
            let r = weir::bench::tenants(&brokers, &plugins, records, partitions)?;
            println!(
                "| records | good tenant alone records/s | beside the hostile tenant records/s | shared / alone | hostile records failed meanwhile | steady stream p50 / p99 alone | beside | peak RSS |"
            );
            println!(
                "|--------:|----------------------------:|------------------------------------:|---------------:|---------------------------------:|---:|---:|---:|"
            );
            let ms = |l: &weir::bench::Latency| format!("{} ms / {} ms", l.p50.as_millis(), l.p99.as_millis());
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} MiB |",
                r.records,
                r.alone_per_sec,
                r.shared_per_sec,
                r.shared_per_sec / r.alone_per_sec,
                r.hostile_failures,
                ms(&r.latency_alone),
                ms(&r.latency_beside),
                r.peak_rss >> 20
            );
        }
        BenchCommand::Languages { plugins, langs, records, keys } => {
            let rows = weir::bench::languages(&plugins, &langs, records, keys)?;
            println!("| language | plugin | component bytes | compile cold | load from cache | records/s (one thread, RocksDB state) |");
            println!("|----------|--------|----------------:|-------------:|----------------:|--------------------------------------:|");
            for r in rows {
                println!(
                    "| {} | {} | {} | {:.2} s | {:.1} ms | {:.0} |",
                    r.lang,
                    r.plugin,
                    r.size,
                    r.compile_cold.as_secs_f64(),
                    r.load_cached.as_secs_f64() * 1e3,
                    r.per_sec
                );
            }
        }
        BenchCommand::State { plugins, records, keys } => {
            let rows = weir::bench::state(&plugins, records, keys)?;
            let base = rows[0].per_sec;
            println!("| transform ({records} records, {keys} keys, one thread) | records/s | vs. stateless map |");
            println!("|---|---:|---:|");
            for r in rows {
                println!("| {} | {:.0} | {:.2} |", r.name, r.per_sec, r.per_sec / base);
            }
        }
        BenchCommand::Restore { brokers, keys } => {
            let r = weir::bench::restore(&brokers, keys)?;
            println!("| keys | bare consumer records/s | Weir restore keys/s | restore / read |");
            println!("|-----:|------------------------:|--------------------:|---------------:|");
            println!("| {} | {:.0} | {:.0} | {:.2} |", r.keys, r.read_per_sec, r.restore_per_sec, r.restore_per_sec / r.read_per_sec);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs) -> Result<ExitCode> {
    let text = if args.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input.display()))?
    };
    let lines = offline::jsonl::parse(&text)?;
    let mut config = EngineConfig::default();
    if args.no_cache {
        config.cache_dir = None;
    }
    let mut limits = Limits::default();
    limits.memory_mb = args.memory_mb.unwrap_or(limits.memory_mb);
    limits.cpu_ms_per_batch = args.cpu_ms.unwrap_or(limits.cpu_ms_per_batch);
    let name = args.plugin.file_stem().map_or("test".into(), |s| s.to_string_lossy().into_owned());
    let opts = TestOptions {
        name,
        config: args.config,
        limits,
        input_topic: args.input_topic,
        output_topic: args.output_topic,
        batch_size: args.batch_size,
        flush_windows: args.flush_windows,
    };
    let summary = weir_engine::on_wasm_thread(&config.clone(), "weir-test", "the test runner", move || {
        let engine = Engine::new(config)?;
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        offline::run(&engine, &args.plugin, &opts, &lines, &mut stdout.lock(), &mut stderr.lock())
    })??;
    Ok(if summary.failed > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

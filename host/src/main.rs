#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_engine::EngineConfig;

mod commands;

use commands::api::{
    ApiArgs, DeployArgs, LogsArgs, NamedArgs, ResetArgs, UndeployArgs, UpgradeArgs,
};
use commands::{api, bench, dev, new, run, state, test};

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
    Run(run::RunArgs),
    /// Try Weir with nothing installed: an embedded Kafka, an example plugin,
    /// sample records in, outputs printed as they arrive.
    Dev(dev::DevArgs),
    /// Run a plugin over records from a JSON Lines file, without Kafka.
    Test(test::TestArgs),
    /// Create a plugin directory: `./build` in it writes NAME.wasm, which
    /// passes `weir test NAME.wasm -i sample.jsonl`.
    New(new::NewArgs),
    /// Measure throughput (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Upload a plugin to running hosts and deploy it (admin API).
    Deploy(DeployArgs),
    /// Replace a deployment's plugin (and config) without losing state or
    /// records; rolled back if the new plugin fails its first batches.
    Upgrade(UpgradeArgs),
    /// Return a deployment to the module before its last upgrade.
    Rollback(NamedArgs),
    /// List deployments with their status.
    List(ApiArgs),
    /// One deployment's status, as JSON.
    Status(NamedArgs),
    /// Stop consuming (state and offsets are kept).
    Pause(NamedArgs),
    /// Consume again from where the deployment paused.
    Resume(NamedArgs),
    /// Reprocess: move a deployment's input offsets, with its state kept or
    /// dropped (it pauses meanwhile, on every host).
    Reset(ResetArgs),
    /// Read a deployment's state by key or range.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Remove a deployment from every host.
    Undeploy(UndeployArgs),
    /// A deployment's recent guest log lines.
    Logs(LogsArgs),
    /// Make an API token: prints the token and the sha256 the host config
    /// stores.
    Token,
    /// Compile a component read from stdin to stdout (a host runs this in a
    /// child process, under limits).
    #[command(name = "compile-module", hide = true)]
    CompileModule {
        /// The host's engine settings, JSON.
        engine: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::test(args),
        Command::Run(args) => run::run(args),
        Command::Dev(args) => dev::dev(args),
        Command::New(args) => new::new_plugin(args),
        Command::Bench(b) => weir_engine::on_wasm_thread(
            &EngineConfig::default(),
            "bench-main",
            "the benchmark",
            move || bench::bench(b),
        )
        .and_then(|r| r),
        Command::Deploy(a) => api::deploy(a),
        Command::Upgrade(a) => api::upgrade(a),
        Command::List(a) => api::list(a),
        Command::Status(a) => api::status(a),
        Command::Pause(a) => api::set_paused(a, true),
        Command::Resume(a) => api::set_paused(a, false),
        Command::Rollback(a) => api::rollback(a),
        Command::Reset(a) => api::reset(a),
        Command::State(c) => state::run(c),
        Command::Undeploy(a) => api::undeploy(a),
        Command::Logs(a) => api::logs(a),
        Command::Token => api::token(),
        Command::CompileModule { engine } => Ok(ExitCode::from(weir_engine::compile::child_main(
            &engine,
        ) as u8)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

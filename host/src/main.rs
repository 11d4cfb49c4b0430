use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use weir::engine::{Engine, EngineConfig, Limits};
use weir::offline::{self, TestOptions};

/// Sandboxed WebAssembly transforms on Kafka streams.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plugin over records from a JSON Lines file, without Kafka.
    Test(TestArgs),
    /// Measure throughput (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test(args),
        Command::Bench(b) => on_wasm_thread(move || bench(b)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `f` on a thread whose stack outsizes the wasm stack limit.
fn on_wasm_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    std::thread::Builder::new()
        .stack_size(weir::engine::worker_stack_size(&EngineConfig::default()))
        .spawn(f)?
        .join()
        .map_err(|_| anyhow!("the worker thread panicked"))?
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
    let stack = weir::engine::worker_stack_size(&config);
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
    // Wasm runs on a thread whose stack outsizes the wasm stack limit.
    let summary = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let engine = Engine::new(config)?;
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            offline::run(&engine, &args.plugin, &opts, &lines, &mut stdout.lock(), &mut stderr.lock())
        })?
        .join()
        .map_err(|_| anyhow!("the test runner panicked"))??;
    Ok(if summary.failed > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

//! `weir test`: a plugin over JSON Lines records, without Kafka.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use weir_abi::Limits;
use weir_engine::offline::{self, TestOptions};
use weir_engine::{Engine, EngineConfig};

use super::parse_key_value;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The plugin component (.wasm).
    pub plugin: PathBuf,
    /// JSON Lines input, `-` for stdin.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Transform configuration, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Topic name printed for outputs to the default output topic.
    #[arg(long, default_value = "output")]
    pub output_topic: String,
    /// Topic of input records that name none.
    #[arg(long, default_value = "input")]
    pub input_topic: String,
    /// Records per call into the plugin.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Emit windows still open at the end of the input.
    #[arg(long)]
    pub flush_windows: bool,
    /// A table the plugin may open, empty unless table lines (`{"table":
    /// NAME, "key": ..., "value": ...}`) fill it; tables those lines name
    /// need no flag (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Linear memory limit per instance, MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPU time limit per call, ms.
    #[arg(long)]
    pub cpu_ms: Option<u64>,
    /// Do not read or write the compiled-module cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn test(args: TestArgs) -> Result<ExitCode> {
    let text = if args.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?
    };
    let lines = offline::jsonl::parse(&text)?;
    let mut config = EngineConfig {
        compiler_exe: Some(std::env::current_exe().context("locating the weir binary")?),
        ..EngineConfig::default()
    };
    if args.no_cache {
        config.cache_dir = None;
    }
    let mut limits = Limits::default();
    limits.memory_mb = args.memory_mb.unwrap_or(limits.memory_mb);
    limits.cpu_ms_per_batch = args.cpu_ms.unwrap_or(limits.cpu_ms_per_batch);
    let name = args
        .plugin
        .file_stem()
        .map_or("test".into(), |s| s.to_string_lossy().into_owned());
    let opts = TestOptions {
        name,
        config: args.config,
        limits,
        input_topic: args.input_topic,
        output_topic: args.output_topic,
        batch_size: args.batch_size,
        flush_windows: args.flush_windows,
        tables: args.tables,
    };
    let summary =
        weir_engine::on_wasm_thread(&config.clone(), "weir-test", "the test runner", move || {
            let engine = Engine::new(config)?;
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            offline::run(
                &engine,
                &args.plugin,
                &opts,
                &lines,
                &mut stdout.lock(),
                &mut stderr.lock(),
            )
        })??;
    Ok(if summary.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

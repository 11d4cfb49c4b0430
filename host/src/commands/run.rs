//! `weir run`: a host until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The configuration file (TOML); `WEIR_A__B=value` overrides key `a.b`.
    #[arg(long, short, default_value = "weir.toml")]
    pub config: PathBuf,
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Consumer group prefix (overrides kafka.group_prefix).
    #[arg(long)]
    pub group_prefix: Option<String>,
    /// State directory (overrides host.state_dir).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// HTTP listener address (overrides host.listen).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Worker threads (overrides host.workers).
    #[arg(long)]
    pub workers: Option<usize>,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let flags = weir_control::config::Overrides {
        brokers: args.brokers,
        group_prefix: args.group_prefix,
        state_dir: args.state_dir,
        listen: args.listen,
        workers: args.workers,
    };
    let config = weir_control::config::Config::load(&args.config, std::env::vars(), &flags)?;
    serve_until_signal(config, |_, _| Ok(()))
}

/// Starts a host with `config`'s deployments, runs `then` once they are
/// consuming, and serves until SIGINT or SIGTERM (or `then`'s notifier
/// fires); then shuts down
/// gracefully (in-flight batches finish, outputs are flushed, offsets
/// committed).
pub fn serve_until_signal(
    config: weir_control::config::Config,
    then: impl FnOnce(&weir_pipeline::Host, std::sync::Arc<tokio::sync::Notify>) -> Result<()>,
) -> Result<ExitCode> {
    let mut config = config;
    // Modules compile in child processes of this binary, under limits.
    config.engine.compiler_exe = Some(
        std::env::current_exe()
            .context("locating the weir binary (modules compile in a child process of it)")?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let control = std::sync::Arc::new(weir_control::Control::start(&config)?);
    let host = control.host.clone();
    // Check every deployment before consuming anything.
    let prepared = config
        .deployments
        .iter()
        .map(|(name, d)| {
            host.prepare_static(name, d)
                .with_context(|| format!("deployment `{name}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(addr) = config.host.listen {
        let router = weir_control::http::router(control.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("listening on {addr}"))?;
        host.advertise(listener.local_addr()?);
        tracing::info!(%addr, "HTTP listener ready (/metrics, /health)");
        runtime.spawn(weir_control::http::serve(listener, router));
    }
    for d in prepared {
        host.run(d);
    }
    if control.registry.is_some() {
        weir_control::reconcile::spawn(control.clone())?;
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
    // Whatever Kafka does meanwhile (a broker away, a commit that hangs),
    // the process ends within the grace period an orchestrator gives it:
    // what was not committed is processed again after the restart.
    let grace = std::time::Duration::from_millis(config.host.shutdown_timeout_ms);
    std::thread::Builder::new()
        .name("weir-shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(grace);
            tracing::error!("shutdown did not finish within host.shutdown_timeout_ms ({} ms); exiting without it", grace.as_millis());
            std::process::exit(3);
        })
        .context("starting the shutdown deadline")?;
    control.shutdown();
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

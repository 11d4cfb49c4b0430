//! `weir dev`: a host on an embedded Kafka with an example deployment,
//! sample records in and outputs printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::parse_key_value;
use super::run::serve_until_signal;

#[derive(clap::Args)]
pub struct DevArgs {
    /// The plugin to deploy (default: the word-count example).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Transform configuration, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Records to produce, JSON Lines as for `weir test` (default: sample sentences).
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// Exit after printing this many output records (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub max_records: usize,
    /// HTTP listener (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// Milliseconds between sample records.
    #[arg(long, default_value_t = 300)]
    pub interval_ms: u64,
    /// The admin API's token (`weir deploy` and friends send it).
    #[arg(long, env = "WEIR_TOKEN", default_value = "dev")]
    pub token: String,
}

pub fn dev(args: DevArgs) -> Result<ExitCode> {
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
    config.admin = Some(weir_control::config::AdminConfig {
        token_sha256: weir_control::tenants::token_hash(&args.token),
    });
    eprintln!("weir dev: embedded Kafka at {bootstrap} (any Kafka client can connect)");
    eprintln!(
        "weir dev: deployment `{}` runs {} from topic `{}` to `{}`",
        weir::dev::DEPLOYMENT,
        plugin.display(),
        weir::dev::INPUT,
        weir::dev::OUTPUT
    );
    eprintln!(
        "weir dev: metrics, health and the admin API on http://{}; Ctrl-C to stop",
        args.listen
    );
    eprintln!(
        "weir dev: deploy more with `WEIR_TOKEN={} weir deploy NAME --plugin FILE.wasm --input {} --output {}`",
        args.token,
        weir::dev::INPUT,
        weir::dev::OUTPUT
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let code = serve_until_signal(config, |_, shutdown| {
        clients.push(weir::dev::print_outputs(
            bootstrap.clone(),
            vec![weir::dev::OUTPUT.into()],
            args.max_records,
            stop.clone(),
            move || shutdown.notify_one(),
        ));
        clients.push(weir::dev::produce_samples(
            bootstrap.clone(),
            samples,
            std::time::Duration::from_millis(args.interval_ms),
            0,
            stop.clone(),
        ));
        Ok(())
    });
    // Every client goes before the embedded broker does; one left behind
    // logs `AllBrokersDown` errors on a clean stop.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    drop(embedded);
    code
}

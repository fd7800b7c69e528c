//! `quarry-registry`: serve an OCI registry.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use quarry_registry::logging::{self, LogFormat};
use std::time::Duration;

use quarry_registry::config::LoadedConfig;
use quarry_registry::reload::{self, ConfigSource};
use quarry_registry::server;

/// Quarry's OCI registry. With no arguments it serves 127.0.0.1:5000 from
/// ./quarry-data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Registry config file (Quay-style config.yaml).
    #[arg(long, env = "QUARRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "QUARRY_LISTEN", default_value = "127.0.0.1:5000")]
    listen: String,
    /// Local storage directory; overrides DISTRIBUTED_STORAGE_CONFIG.
    #[arg(long, env = "QUARRY_STORAGE_PATH")]
    storage_path: Option<PathBuf>,
    /// How often the config file is checked for changes (SIGHUP reloads at once).
    #[arg(long, env = "QUARRY_RELOAD_INTERVAL_SECONDS", default_value_t = 5)]
    reload_interval_seconds: u64,
    /// Log format.
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quarry-registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource {
        path: cli.config.clone(),
        storage_path: cli.storage_path.clone(),
    };
    let LoadedConfig {
        config,
        unknown_keys,
    } = source.load()?;
    for key in &unknown_keys {
        tracing::warn!(key = %key, "config key is not a Quarry setting; ignored");
    }
    let storage_path = config.local_storage_path();
    let state = server::app_state(config)?;
    if source.path.is_some() {
        tokio::spawn(reload::watch(
            source,
            state.config.clone(),
            state.metrics.clone(),
            Duration::from_secs(cli.reload_interval_seconds.max(1)),
        ));
    }
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        address = %addr,
        storage = ?storage_path,
        "quarry-registry listening on http://{addr}"
    );
    server::serve(listener, state, server::shutdown_signal()).await
}

//! `quarry-registry`: serve an OCI registry.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use quarry_registry::config::LoadedConfig;
use quarry_registry::logging::{self, LogFormat};
use quarry_registry::reload::{self, ConfigSource};
use quarry_registry::tls::{self, TlsFiles};
use quarry_registry::{auth, gc, server};

/// Quarry's OCI registry. With no arguments it serves 127.0.0.1:5000 from
/// ./quarry-data.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Registry config file (Quay-style config.yaml).
    #[arg(long, env = "QUARRY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "QUARRY_LISTEN", default_value = "127.0.0.1:5000")]
    listen: String,
    /// Local storage directory; overrides DISTRIBUTED_STORAGE_CONFIG.
    #[arg(long, env = "QUARRY_STORAGE_PATH", global = true)]
    storage_path: Option<PathBuf>,
    /// How often the config, accounts and TLS files are checked for changes
    /// (SIGHUP reloads the config at once).
    #[arg(long, env = "QUARRY_RELOAD_INTERVAL_SECONDS", default_value_t = 5)]
    reload_interval_seconds: u64,
    /// Log format.
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// PEM certificate (with chain) to serve HTTPS with; needs --tls-key.
    #[arg(long, env = "QUARRY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "QUARRY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read a password from standard input (one line) and print its bcrypt
    /// hash, for the password_hash of an account in the accounts file.
    HashPassword,
    /// Garbage collection, once, on the storage the configuration names
    /// (--config / --storage-path), safe while registries serve it. A sweep
    /// condemns what it finds garbage and deletes what an earlier sweep,
    /// at least the grace period before, condemned and still is garbage.
    Gc {
        /// Only list what is garbage, and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// What was written less than this long ago is kept (seconds);
        /// default: PUSH_TEMP_TAG_EXPIRATION_SEC of the configuration.
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::Gc {
            dry_run,
            grace_seconds,
        }) => return collect_garbage(&cli, dry_run, grace_seconds.map(Duration::from_secs)).await,
        None => {}
    }
    logging::init(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quarry-registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("quarry-registry hash-password: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!(
            "quarry-registry hash-password: no password on standard input (try: printf '%s' \"$PASSWORD\" | quarry-registry hash-password)"
        );
        return ExitCode::FAILURE;
    }
    match auth::accounts::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry-registry hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `quarry-registry gc [--dry-run]`: one sweep, or the list of what is
/// garbage and why; then a summary.
async fn collect_garbage(cli: &Cli, dry_run: bool, grace: Option<Duration>) -> ExitCode {
    tls::install_crypto_provider();
    let source = ConfigSource {
        path: cli.config.clone(),
        storage_path: cli.storage_path.clone(),
    };
    let result = async {
        let loaded = source.load()?;
        let storage = server::open_storage(&loaded.config)?;
        let grace = grace
            .unwrap_or_else(|| Duration::from_secs(loaded.config.push_temp_tag_expiration_sec));
        if dry_run {
            let report = gc::find(storage.as_ref(), grace, std::time::SystemTime::now()).await?;
            for garbage in &report.garbage {
                println!("{garbage}");
            }
            return Ok::<_, anyhow::Error>(report.summary());
        }
        Ok(gc::sweep::sweep(storage.as_ref(), grace).await?.summary())
    }
    .await;
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry-registry gc: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tls::install_crypto_provider();
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
    let every = Duration::from_secs(cli.reload_interval_seconds.max(1));
    let storage_path = config.local_storage_path();
    let tls_files = match (cli.tls_cert, cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let tls_config = match &tls_files {
        Some(files) => Some(tls::load(files)?),
        None => None,
    };
    let state = server::app_state(config)?;
    if source.path.is_some() {
        tokio::spawn(reload::watch(
            source,
            state.config.clone(),
            state.metrics.clone(),
            every,
        ));
    }
    match &state.auth {
        Some(auth) => {
            tokio::spawn(auth::watch(auth.clone(), every));
        }
        None => tracing::warn!(
            "authentication is off (no AUTH_ACCOUNTS_FILE): anyone who reaches this port may pull, push and delete"
        ),
    }
    if let (Some(files), Some((config, loaded))) = (&tls_files, &tls_config) {
        tokio::spawn(tls::watch(
            files.clone(),
            config.clone(),
            *loaded,
            state.metrics.clone(),
            every,
        ));
    }
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        address = %addr,
        storage = ?storage_path,
        "quarry-registry listening on {scheme}://{addr}"
    );
    server::serve(
        listener,
        state,
        tls_config.map(|(config, _)| config),
        server::shutdown_signal(),
    )
    .await
}

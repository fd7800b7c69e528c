//! Running the registry: storage from config, the HTTP server with
//! graceful shutdown, the stale-upload sweeper, the tag retention sweep and
//! garbage collection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::extract::ConnectInfo;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::add_extension::AddExtensionLayer;

use crate::api::{AppState, router};
use crate::auth::Auth;
use crate::config::RegistryConfig;
use crate::gc;
use crate::metrics::{Metrics, ResultLabels};
use crate::retention;
use crate::storage::settings::StorageSettings;
use crate::storage::{FilesystemStorage, ObjectStorage, S3Credentials, Storage};
use crate::zero_copy::SendfileStream;

/// How often stale upload sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Open the storage the configuration prefers.
pub fn open_storage(config: &RegistryConfig) -> anyhow::Result<Arc<dyn Storage>> {
    match config.storage_settings().map_err(|e| anyhow::anyhow!(e))? {
        StorageSettings::Local(path) => {
            let storage = FilesystemStorage::open(&path)
                .with_context(|| format!("cannot open storage at {}", path.display()))?;
            Ok(Arc::new(storage))
        }
        StorageSettings::S3(settings) => {
            let storage = ObjectStorage::s3(&settings, S3Credentials::AlsoFromEnvironment)?;
            tracing::info!(storage = storage.describe(), "using S3-compatible storage");
            Ok(Arc::new(storage))
        }
    }
}

/// Build the application state for `config`: storage and, when the
/// config names an accounts file, authentication.
pub fn app_state(config: RegistryConfig) -> anyhow::Result<AppState> {
    let storage = open_storage(&config)?;
    let auth = match (&config.auth_accounts_file, &config.auth_token_key_file) {
        (Some(accounts), Some(key)) => Some(Arc::new(
            Auth::from_files(Path::new(accounts), Path::new(key))
                .map_err(|e| anyhow::anyhow!(e))?
                .with_password_checks(match config.auth_concurrent_password_checks {
                    0 => crate::auth::default_password_checks(),
                    n => n,
                }),
        )),
        // validate() refuses one without the other.
        _ => None,
    };
    Ok(AppState::new(storage, config, Arc::new(Metrics::new())).with_auth(auth))
}

/// Serve until `shutdown` resolves; requests in flight are finished first.
/// With `tls`, HTTPS (HTTP/2 and HTTP/1.1) with a reloadable certificate.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sweeper = tokio::spawn(sweep_stale_uploads(
        state.storage.clone(),
        Duration::from_secs(state.config().blob_upload_stale_seconds),
    ));
    let retention = tokio::spawn(sweep_tags(state.storage.clone(), state.config.clone()));
    let collector = tokio::spawn(collect_garbage(
        state.storage.clone(),
        state.config.clone(),
        state.metrics.clone(),
        state.gc_sweeps.clone(),
    ));
    let (proxy, config) = (state.proxy.clone(), state.config());
    tokio::task::spawn_blocking(move || proxy.prepare(&config));
    let mirrors = tokio::spawn(crate::mirror::run(
        state.storage.clone(),
        state.config.clone(),
        state.metrics.clone(),
    ));
    let result = match tls {
        Some(tls) => serve_tls(listener, state, tls, shutdown).await,
        None => serve_plain(listener, state, shutdown).await,
    };
    sweeper.abort();
    retention.abort();
    collector.abort();
    mirrors.abort();
    result
}

/// Expire and prune tags (retention.rs) every TAG_RETENTION_SWEEP_SECONDS,
/// with the configuration of the moment (it reloads).
async fn sweep_tags(storage: Arc<dyn Storage>, config: Arc<ArcSwap<RegistryConfig>>) {
    let labels = crate::image_labels::LabelCache::default();
    loop {
        let every = Duration::from_secs(config.load().tag_retention_sweep_seconds.max(1));
        tokio::time::sleep(every).await;
        let current = config.load_full();
        match retention::sweep(
            storage.as_ref(),
            &current,
            &labels,
            std::time::SystemTime::now(),
        )
        .await
        {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => tracing::info!(tags = removed.len(), "expired or pruned tags removed"),
            Err(e) => tracing::warn!(error = %e, "could not sweep tags for expiration and pruning"),
        }
    }
}

/// Garbage collection (gc/sweep.rs) every GARBAGE_COLLECTION_FREQUENCY
/// while FEATURE_GARBAGE_COLLECTION is on, with the configuration of the
/// moment. Every replica may sweep: sweeps are safe side by side.
async fn collect_garbage(
    storage: Arc<dyn Storage>,
    config: Arc<ArcSwap<RegistryConfig>>,
    metrics: Arc<Metrics>,
    journal: Arc<gc::journal::Journal>,
) {
    loop {
        let every = Duration::from_secs(config.load().garbage_collection_frequency.max(1));
        tokio::time::sleep(every).await;
        let current = config.load_full();
        if !current.feature_garbage_collection {
            continue;
        }
        let grace = Duration::from_secs(current.push_temp_tag_expiration_sec);
        match gc::sweep::sweep(storage.as_ref(), grace).await {
            Ok(outcome) => {
                metrics.record_sweep(&outcome);
                journal.record_outcome(&outcome);
                if outcome == gc::sweep::Outcome::default().with_duration(outcome.duration) {
                    tracing::debug!("garbage collection found nothing to do");
                } else {
                    tracing::info!(summary = outcome.summary(), "garbage collection sweep");
                }
            }
            Err(e) => {
                metrics
                    .gc_runs
                    .get_or_create(&ResultLabels { result: "failed" })
                    .inc();
                journal.record_failure(&format!("the sweep stopped: {e}"));
                tracing::warn!(error = %e, "garbage collection sweep failed; the next one retries");
            }
        }
    }
}

async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    tls: RustlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let header_timeout = Duration::from_secs(state.config().request_header_timeout_seconds);
    let app = router(state.with_tls(true));
    let handle = axum_server::Handle::new();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.graceful_shutdown(None);
    });
    let acceptor = RustlsAcceptor::new(tls)
        .handshake_timeout(Duration::from_secs(10))
        .acceptor(NoDelayAcceptor::new());
    let mut server = axum_server::from_tcp(listener.into_std().context("TLS listener")?)
        .acceptor(acceptor)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("HTTPS server failed")
}

/// Plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge). Our own accept
/// loop rather than `axum::serve`, which has no header read timeout.
async fn serve_plain(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let header_timeout = Duration::from_secs(state.config().request_header_timeout_seconds);
    let app = router(state.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait, do not spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Headers and a small body leave in separate writes; without NODELAY,
        // Nagle's algorithm and delayed ACKs add ~40 ms to such responses.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service =
            TowerToHyperService::new(app.clone().layer(AddExtensionLayer::new(ConnectInfo(peer))));
        // Blob bytes leave by sendfile where they can (zero_copy.rs).
        let tcp = SendfileStream::new(tcp, state.metrics.bytes_sent_zero_copy.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

async fn sweep_stale_uploads(storage: Arc<dyn Storage>, max_age: Duration) {
    let mut tick = tokio::time::interval(SWEEP_EVERY.min(max_age.max(Duration::from_secs(1))));
    loop {
        tick.tick().await;
        match storage.uploads_purge(max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "removed stale upload sessions"),
            Err(e) => tracing::warn!(error = %e, "could not sweep stale upload sessions"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

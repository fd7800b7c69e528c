//! `quarry-operator`: reconcile QuarryRegistry resources.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use quarry_operator::leader::LeaderElector;
use quarry_operator::metrics::OperatorMetrics;
use quarry_operator::reconcile::Context;
use quarry_registry::logging::{self, LogFormat};

/// Quarry's Kubernetes operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Watch only these namespaces, comma-separated (default: all).
    #[arg(long, env = "QUARRY_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of the health and metrics server.
    #[arg(long, env = "QUARRY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Registry image repository; the tag is the resource's version.
    #[arg(
        long,
        env = "QUARRY_REGISTRY_IMAGE",
        default_value = "ghcr.io/quarry-dev/quarry-registry"
    )]
    registry_image: String,
    /// Elect a leader on a Lease in this namespace (for more than one replica).
    #[arg(long, env = "QUARRY_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Identity in the leader election (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

async fn metrics(State(m): State<Arc<OperatorMetrics>>) -> String {
    m.encode()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // One TLS crypto provider for the process (the object-store probe's
    // HTTPS client uses the process default).
    quarry_registry::tls::install_crypto_provider();

    let client = kube::Client::try_default().await?;
    let metrics_state = Arc::new(OperatorMetrics::default());
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
        .with_state(metrics_state.clone());
    let listener = tokio::net::TcpListener::bind(cli.metrics_addr).await?;
    tracing::info!(address = %listener.local_addr()?, "health and metrics server");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    let identity = cli
        .identity
        .clone()
        .unwrap_or_else(|| format!("quarry-operator-{}", std::process::id()));
    let elector = cli
        .leader_election_namespace
        .as_ref()
        .map(|ns| LeaderElector::new(client.clone(), ns, "quarry-operator", &identity, 15));
    if let Some(e) = &elector {
        tracing::info!(identity = %identity, "waiting for leadership");
        e.acquire().await;
        tracing::info!("leading");
    }

    let started_at = k8s_openapi::jiff::Timestamp::now().as_second();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "quarry-operator".into(),
                instance: Some(identity),
            },
        ),
        metrics: metrics_state,
        image_repository: cli.registry_image.clone(),
        default_version: env!("CARGO_PKG_VERSION").to_string(),
        apis: Default::default(),
        gc_reports: quarry_operator::gc_report::Reporter::new(started_at),
        mirror_reports: quarry_operator::mirror_report::Reporter::new(started_at),
        pods: quarry_operator::registry_pods::PodReader::new().map_err(anyhow::Error::msg)?,
        probes: Default::default(),
    });
    // OLM passes "" (all namespaces) or "a,b" through olm.targetNamespaces.
    let namespaces: Vec<String> = cli
        .watch_namespace
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
        .collect();
    let controller = quarry_operator::controller::run_all(ctx, namespaces);
    match &elector {
        Some(e) => {
            tokio::select! {
                _ = controller => {}
                _ = e.hold() => {
                    tracing::error!("lost leadership; exiting so the new leader runs alone");
                    std::process::exit(1);
                }
            }
        }
        None => controller.await,
    }
    tracing::info!("stopped");
    Ok(())
}

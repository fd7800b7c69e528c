//! Health, readiness and metrics endpoints, the garbage-collection
//! journal (gc/journal.rs) and the mirrors' last syncs (mirror/status.rs).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when storage takes writes.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.storage.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "storage not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "storage is not writable").into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// This replica's last garbage-collection sweeps (JSON), for the operator.
pub async fn gc_sweeps(State(state): State<AppState>) -> Response {
    axum::Json(state.gc_sweeps.snapshot()).into_response()
}

/// The last sync of every configured mirror (JSON, mirror/status.rs),
/// for the operator. Shared storage makes every replica answer the same.
pub async fn mirror_status(State(state): State<AppState>) -> Response {
    let config = state.config();
    axum::Json(crate::mirror::status::load(state.storage.as_ref(), &config.repo_mirrors).await)
        .into_response()
}

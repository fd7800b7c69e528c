//! Namespace quotas at push time (quota.rs holds the settings and the
//! measuring): a manifest that would take its namespace past a Reject limit
//! is refused before it is stored, and a namespace already at its limit
//! cannot start uploads; past a Warning limit the push is accepted, logged
//! and counted.

use super::AppState;
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::manifest::ManifestFacts;
use crate::metrics::NamespaceLabels;
use crate::names::RepoName;
use crate::quota::{self, Limit, LimitKind, show_bytes};

fn labels(namespace: &str) -> NamespaceLabels {
    NamespaceLabels {
        namespace: namespace.to_string(),
    }
}

fn refusal(namespace: &str, what: &str, total: u64, limit: &Limit) -> String {
    format!(
        "namespace {namespace} is over its quota: {what} {}, over its reject limit of {}, {}% of limit_bytes {} in {} (FEATURE_QUOTA_MANAGEMENT is true); delete images in {namespace}, or ask an administrator to raise the limit",
        show_bytes(total),
        show_bytes(limit.bytes),
        limit.percent,
        limit.quota_bytes,
        limit.source
    )
}

/// Refuse a new upload session in a namespace already at its reject limit.
pub async fn check_upload_start(state: &AppState, repo: &RepoName) -> ApiResult<()> {
    let config = state.config();
    let namespace = quota::namespace_of(repo);
    let Some(reject) = Limit::of(&config, namespace, LimitKind::Reject) else {
        return Ok(());
    };
    let usage = quota::usage(state.storage.as_ref(), namespace).await?;
    state
        .metrics
        .namespace_usage_bytes
        .get_or_create(&labels(namespace))
        .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
    if usage.bytes >= reject.bytes {
        state
            .metrics
            .quota_refusals
            .get_or_create(&labels(namespace))
            .inc();
        let message = refusal(namespace, "it uses", usage.bytes, &reject);
        tracing::warn!(repository = %repo, "upload refused: {message}");
        return Err(RegistryError::Denied(message));
    }
    Ok(())
}

/// Refuse a manifest whose new blobs would take its namespace past the
/// reject limit; count one that passes the warning limit.
pub async fn check_manifest(
    state: &AppState,
    repo: &RepoName,
    facts: &ManifestFacts,
) -> ApiResult<()> {
    let config = state.config();
    let namespace = quota::namespace_of(repo);
    let reject = Limit::of(&config, namespace, LimitKind::Reject);
    let warning = Limit::of(&config, namespace, LimitKind::Warning);
    if reject.is_none() && warning.is_none() {
        return Ok(());
    }
    let usage = quota::usage(state.storage.as_ref(), namespace).await?;
    let new: Vec<&Digest> = facts
        .blobs
        .iter()
        .map(|b| &b.digest)
        .filter(|d| !usage.blobs.contains(*d))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut total = usage.bytes;
    for digest in new {
        total += state.storage.blob_size(digest).await?.unwrap_or(0);
    }
    if let Some(reject) = reject
        && total > reject.bytes
    {
        state
            .metrics
            .quota_refusals
            .get_or_create(&labels(namespace))
            .inc();
        let message = refusal(namespace, "this push would bring it to", total, &reject);
        tracing::warn!(repository = %repo, "push refused: {message}");
        return Err(RegistryError::Denied(message));
    }
    state
        .metrics
        .namespace_usage_bytes
        .get_or_create(&labels(namespace))
        .set(i64::try_from(total).unwrap_or(i64::MAX));
    if let Some(warning) = warning
        && total > warning.bytes
    {
        state
            .metrics
            .quota_warnings
            .get_or_create(&labels(namespace))
            .inc();
        tracing::warn!(
            repository = %repo,
            usage = total,
            limit = warning.bytes,
            "namespace {namespace} is past its warning limit: {} of {} ({}% of {} bytes, {})",
            show_bytes(total),
            show_bytes(warning.bytes),
            warning.percent,
            warning.quota_bytes,
            warning.source
        );
    }
    Ok(())
}

//! Namespace quotas at push time (quota.rs holds the settings and the
//! measuring): a manifest that would take its namespace past a Reject limit
//! is refused before it is stored (measured then, exactly), and a namespace
//! already at its limit cannot start uploads (measured at most a few
//! seconds before: an image's layers start many uploads in a row); past a
//! Warning limit the push is accepted, logged and counted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AppState;
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::manifest::ManifestFacts;
use crate::metrics::NamespaceLabels;
use crate::names::RepoName;
use crate::quota::{self, Limit, LimitKind, show_bytes};

/// How long a measured usage answers upload-start checks.
const USAGE_FRESH_FOR: Duration = Duration::from_secs(5);

/// Usage by namespace, with when it was measured.
#[derive(Default)]
pub struct UsageCache(Mutex<HashMap<String, (Instant, u64)>>);

impl UsageCache {
    fn fresh(&self, namespace: &str) -> Option<u64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(namespace)
            .filter(|(at, _)| at.elapsed() < USAGE_FRESH_FOR)
            .map(|(_, bytes)| *bytes)
    }

    /// Drop what is known of `repo`'s namespace (a delete freed some).
    pub fn forget(&self, repo: &RepoName) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(quota::namespace_of(repo));
    }

    fn remember(&self, namespace: &str, bytes: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(namespace.to_string(), (Instant::now(), bytes));
    }
}

fn labels(namespace: &str) -> NamespaceLabels {
    NamespaceLabels {
        namespace: namespace.to_string(),
    }
}

fn record_usage(state: &AppState, namespace: &str, bytes: u64) {
    state.quota_usage.remember(namespace, bytes);
    state
        .metrics
        .namespace_usage_bytes
        .get_or_create(&labels(namespace))
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

fn refuse(
    state: &AppState,
    repo: &RepoName,
    what: &str,
    total: u64,
    limit: &Limit,
) -> RegistryError {
    let namespace = quota::namespace_of(repo);
    state
        .metrics
        .quota_refusals
        .get_or_create(&labels(namespace))
        .inc();
    let message = format!(
        "namespace {namespace} is over its quota: {what} {}, over its reject limit of {}, {}% of limit_bytes {} in {} (FEATURE_QUOTA_MANAGEMENT is true); delete images in {namespace}, or ask an administrator to raise the limit",
        show_bytes(total),
        show_bytes(limit.bytes),
        limit.percent,
        limit.quota_bytes,
        limit.source
    );
    tracing::warn!(repository = %repo, "push refused: {message}");
    RegistryError::Denied(message)
}

/// Refuse a new upload session in a namespace already at its reject limit.
pub async fn check_upload_start(state: &AppState, repo: &RepoName) -> ApiResult<()> {
    let config = state.config();
    let namespace = quota::namespace_of(repo);
    let Some(reject) = Limit::of(&config, namespace, LimitKind::Reject) else {
        return Ok(());
    };
    let used = match state.quota_usage.fresh(namespace) {
        Some(bytes) => bytes,
        None => {
            let bytes = quota::usage(state.storage.as_ref(), namespace).await?.bytes;
            record_usage(state, namespace, bytes);
            bytes
        }
    };
    if used >= reject.bytes {
        return Err(refuse(state, repo, "it uses", used, &reject));
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
    let new: BTreeSet<&Digest> = facts
        .blobs
        .iter()
        .map(|b| &b.digest)
        .filter(|d| !usage.blobs.contains(*d))
        .collect();
    let mut total = usage.bytes;
    for digest in new {
        total += state.storage.blob_size(digest).await?.unwrap_or(0);
    }
    if let Some(reject) = reject
        && total > reject.bytes
    {
        record_usage(state, namespace, usage.bytes);
        return Err(refuse(
            state,
            repo,
            "this push would bring it to",
            total,
            &reject,
        ));
    }
    record_usage(state, namespace, total);
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
            "namespace {namespace} is past its warning limit: {} of {} ({}% of limit_bytes {} in {})",
            show_bytes(total),
            show_bytes(warning.bytes),
            warning.percent,
            warning.quota_bytes,
            warning.source
        );
    }
    Ok(())
}

//! The pull endpoints of a cache namespace: manifests, blobs and referrers
//! from storage when cached and fresh, else from the upstream.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::fetch::{Progress, Spool, Target, spool_stream};
use super::upstream::UpstreamError;
use super::{CachedRepo, ProxyCaches};
use crate::api::blobs::{parse_digest, parse_range};
use crate::api::{AppState, CONTENT_LENGTH, CONTENT_TYPE, Call, DOCKER_CONTENT_DIGEST, reply};
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::manifest::{self, OCI_INDEX};
use crate::metrics::{ReasonLabels, ResultLabels};
use crate::names::{Reference, RepoName, Tag};
use crate::policy;
use crate::storage::{Key, ReferrerDescriptor, StoredManifest};

const WARNING: HeaderName = header::WARNING;

/// When a cached tag was last found current at the upstream.
#[derive(Debug, Serialize, Deserialize)]
struct TagCheck {
    digest: Digest,
    checked_at_unix: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn count(state: &AppState, result: &'static str) {
    state
        .metrics
        .proxy_cache_requests
        .get_or_create(&ResultLabels { result })
        .inc();
}

fn upstream_failed(state: &AppState, e: &UpstreamError) {
    state
        .metrics
        .proxy_cache_upstream_errors
        .get_or_create(&ReasonLabels { reason: e.label() })
        .inc();
}

/// The answer to a client whose request the cache could not serve.
fn miss_error(e: &UpstreamError) -> RegistryError {
    match e {
        UpstreamError::Answered {
            status: 429,
            retry_after,
            ..
        } => RegistryError::UpstreamRateLimited {
            message: e.to_string(),
            retry_after: retry_after.unwrap_or(5),
        },
        _ => RegistryError::Upstream(e.to_string()),
    }
}

/// The answer to a client whose blob the upstream could not give.
fn blob_miss(e: &UpstreamError) -> RegistryError {
    match e {
        UpstreamError::NotFound { .. } => RegistryError::BlobUnknown(e.to_string()),
        e => miss_error(e),
    }
}

/// `Warning: 299` (RFC 7234's "miscellaneous persistent warning", which
/// the OCI distribution spec lets registries send) on a stale answer.
fn warn(response: &mut Response, why: &UpstreamError, age_seconds: Option<u64>) {
    let age = age_seconds.map_or_else(String::new, |a| format!(", checked {a} s ago"));
    let text = format!("{why}; serving the cached copy{age}")
        .replace(['"', '\\'], "'")
        .replace(|c: char| c.is_control(), " ");
    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
        response.headers_mut().insert(WARNING, v);
    }
}

// --- manifests ---------------------------------------------------------------

pub(crate) async fn manifest(
    state: &AppState,
    cache: CachedRepo,
    call: Call,
    raw: &str,
) -> ApiResult<Response> {
    let reference =
        Reference::parse(raw).ok_or_else(|| RegistryError::ManifestUnknown(raw.into()))?;
    let repo = call.repo.clone();
    match reference {
        Reference::Digest(digest) => {
            if state.storage.manifest_get(&repo, &digest).await?.is_some() {
                count(state, "hit");
                return crate::api::manifests::get(state, call, raw).await;
            }
            count(state, "miss");
            let fetched = cache
                .upstream
                .manifest_get(&cache.remote, raw, state.config().maximum_manifest_size)
                .await
                .map_err(|e| {
                    upstream_failed(state, &e);
                    match e {
                        UpstreamError::NotFound { .. } => {
                            RegistryError::ManifestUnknown(e.to_string())
                        }
                        e => miss_error(&e),
                    }
                })?;
            store_manifest(state, &cache, &repo, fetched, Some(&digest), None).await?;
            crate::api::manifests::get(state, call, raw).await
        }
        Reference::Tag(tag) => tag_manifest(state, cache, call, raw, tag).await,
    }
}

async fn tag_manifest(
    state: &AppState,
    cache: CachedRepo,
    call: Call,
    raw: &str,
    tag: Tag,
) -> ApiResult<Response> {
    let repo = call.repo.clone();
    let local = state.storage.tag_get(&repo, &tag).await?;
    let check_key = Key::proxy_tag_check(&repo, &tag);
    let checked = match state.storage.kv_get(&check_key).await? {
        Some(bytes) => serde_json::from_slice::<TagCheck>(&bytes).ok(),
        None => None,
    };
    let now = now_unix();
    let age = checked
        .as_ref()
        .filter(|c| Some(&c.digest) == local.as_ref())
        .map(|c| now.saturating_sub(c.checked_at_unix));
    if local.is_some() && age.is_some_and(|a| a < cache.upstream.settings.expiration_s) {
        count(state, "hit");
        return crate::api::manifests::get(state, call, raw).await;
    }
    let record = |digest: &Digest| {
        let check = TagCheck {
            digest: digest.clone(),
            checked_at_unix: now,
        };
        serde_json::to_vec(&check).map(Bytes::from)
    };
    // HEAD first where a copy is cached: an unchanged tag then costs no
    // pull (Docker Hub counts GETs). With nothing cached, GET at once.
    let head = if local.is_some() {
        cache
            .upstream
            .manifest_head(&cache.remote, tag.as_str())
            .await
    } else {
        Ok(super::upstream::ManifestHead { digest: None })
    };
    match head {
        Ok(head) if head.digest.is_some() && head.digest == local => {
            // Unchanged upstream: no manifest pulled.
            count(state, "revalidated");
            if let Some(digest) = &local
                && let Ok(value) = record(digest)
            {
                state.storage.kv_put(&check_key, value).await?;
            }
            crate::api::manifests::get(state, call, raw).await
        }
        Ok(head) => {
            count(state, "miss");
            // Fetch by the digest the HEAD named, so tag and content agree
            // even if the tag moves again meanwhile.
            let reference = head
                .digest
                .as_ref()
                .map_or_else(|| tag.to_string(), Digest::to_string);
            let fetched = cache
                .upstream
                .manifest_get(
                    &cache.remote,
                    &reference,
                    state.config().maximum_manifest_size,
                )
                .await
                .map_err(|e| {
                    upstream_failed(state, &e);
                    miss_error(&e)
                })?;
            let digest = store_manifest(
                state,
                &cache,
                &repo,
                fetched,
                head.digest.as_ref(),
                Some(&tag),
            )
            .await?;
            if let Ok(value) = record(&digest) {
                state.storage.kv_put(&check_key, value).await?;
            }
            crate::api::manifests::get(state, call, raw).await
        }
        Err(e) if e.is_not_found() => {
            count(state, "miss");
            Err(RegistryError::ManifestUnknown(e.to_string()))
        }
        Err(e) => {
            upstream_failed(state, &e);
            if local.is_none() {
                count(state, "miss");
                return Err(miss_error(&e));
            }
            count(state, "stale");
            tracing::warn!(repository = %repo, tag = %tag, error = %e, "serving a cached tag the upstream could not confirm");
            let mut response = crate::api::manifests::get(state, call, raw).await?;
            warn(&mut response, &e, age);
            Ok(response)
        }
    }
}

/// Check a manifest from the upstream (its digest, the artifact policy)
/// and store it, with its referrer link and `tag`. Returns its digest.
async fn store_manifest(
    state: &AppState,
    cache: &CachedRepo,
    repo: &RepoName,
    fetched: super::upstream::FetchedManifest,
    expected: Option<&Digest>,
    tag: Option<&Tag>,
) -> ApiResult<Digest> {
    // The digest asked for, else the one the upstream claims.
    let expected = expected.or(fetched.digest.as_ref());
    let algorithm = expected.map_or(crate::digest::Algorithm::Sha256, Digest::algorithm);
    let facts = manifest::inspect(fetched.media_type.as_deref(), &fetched.bytes, algorithm)
        .map_err(|e| {
            RegistryError::Upstream(format!(
                "upstream {} sent a manifest for {} that is not valid: {}",
                cache.upstream.name(),
                cache.remote,
                e.0
            ))
        })?;
    if let Some(expected) = expected
        && *expected != facts.digest
    {
        state.metrics.proxy_cache_corrupt.inc();
        return Err(RegistryError::Upstream(format!(
            "upstream {} sent a manifest for {expected} in {} that hashes to {}; nothing was cached",
            cache.upstream.name(),
            cache.remote,
            facts.digest
        )));
    }
    if let Err(refusal) = policy::check(&state.config(), &facts) {
        return Err(RegistryError::PolicyRefused(format!(
            "{} (pulled through from {})",
            refusal.message,
            cache.upstream.name()
        )));
    }
    let stored = StoredManifest {
        media_type: facts.media_type.clone(),
        bytes: fetched.bytes.clone(),
    };
    state
        .storage
        .manifest_put(repo, &facts.digest, &stored)
        .await?;
    if let Some(subject) = &facts.subject {
        let descriptor = ReferrerDescriptor {
            media_type: facts.media_type.clone(),
            digest: facts.digest.clone(),
            size: fetched.bytes.len() as u64,
            artifact_type: facts.referrer_artifact_type(),
            annotations: facts.annotations.clone(),
        };
        state
            .storage
            .referrer_add(repo, subject, &descriptor)
            .await?;
    }
    if let Some(tag) = tag {
        state.storage.tag_set(repo, tag, &facts.digest).await?;
    }
    Ok(facts.digest)
}

// --- blobs -------------------------------------------------------------------

pub(crate) async fn blob(
    state: &AppState,
    caches: &ProxyCaches,
    cache: CachedRepo,
    call: Call,
    raw: &str,
) -> ApiResult<Response> {
    let digest = parse_digest(raw)?;
    let repo = call.repo.clone();
    if state.storage.repo_blob_linked(&repo, &digest).await? {
        count(state, "hit");
        return crate::api::blobs::get(state, call, raw).await;
    }
    // HEAD of the blob at the upstream: its size, or the client's error.
    let upstream_size = || async {
        cache
            .upstream
            .blob_head(&cache.remote, &digest)
            .await
            .map_err(|e| {
                upstream_failed(state, &e);
                blob_miss(&e)
            })
    };
    if state.storage.blob_present(&digest).await? {
        // Stored for another repository: serve it here once the upstream
        // confirms this repository has it (a cache must not reveal what
        // other namespaces hold).
        upstream_size().await?;
        state.storage.repo_blob_link(&repo, &digest).await?;
        count(state, "hit");
        return crate::api::blobs::get(state, call, raw).await;
    }
    count(state, "miss");
    if call.method == Method::HEAD {
        let size = upstream_size().await?;
        return Ok(reply(
            StatusCode::OK,
            &blob_headers(&digest, size),
            Body::empty(),
        ));
    }
    let target = Target {
        storage: state.storage.clone(),
        metrics: state.metrics.clone(),
        repo,
        remote: cache.remote.clone(),
        digest: digest.clone(),
    };
    let mut progress = caches.downloads.join(cache.upstream.clone(), target);
    let (spool, size) = started(&mut progress).await.map_err(|e| blob_miss(&e))?;
    let range = match call
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(value) => parse_range(value, size)?,
        None => None,
    };
    let mut headers = blob_headers(&digest, size);
    let (status, start, end) = match range {
        Some(r) => {
            headers.retain(|(n, _)| *n != CONTENT_LENGTH);
            headers.push((CONTENT_LENGTH, r.len().to_string()));
            headers.push((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end_inclusive),
            ));
            (StatusCode::PARTIAL_CONTENT, r.start, r.end_inclusive + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    let counter = state.metrics.bytes_sent.clone();
    let stream = futures::StreamExt::inspect(
        spool_stream(spool, start, end, Some(progress)),
        move |chunk| {
            if let Ok(c) = chunk {
                counter.inc_by(c.len() as u64);
            }
        },
    );
    Ok(reply(status, &headers, Body::from_stream(stream)))
}

fn blob_headers(digest: &Digest, size: u64) -> Vec<(HeaderName, String)> {
    vec![
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (CONTENT_TYPE, "application/octet-stream".into()),
        (header::ACCEPT_RANGES, "bytes".into()),
        (header::ETAG, format!("\"{digest}\"")),
        (CONTENT_LENGTH, size.to_string()),
    ]
}

/// Wait until the download knows its size (or failed).
async fn started(
    progress: &mut watch::Receiver<Progress>,
) -> Result<(Arc<Spool>, u64), Arc<UpstreamError>> {
    loop {
        match &*progress.borrow_and_update() {
            Progress::Connecting => {}
            Progress::Streaming { spool, size, .. } | Progress::Verified { spool, size } => {
                return Ok((spool.clone(), *size));
            }
            Progress::Failed(e) => return Err(e.clone()),
        }
        if progress.changed().await.is_err() {
            return Err(Arc::new(UpstreamError::Unreachable {
                upstream: "?".into(),
                reason: "the download stopped unexpectedly".into(),
            }));
        }
    }
}

// --- referrers ---------------------------------------------------------------

pub(crate) async fn referrers(
    state: &AppState,
    cache: CachedRepo,
    call: Call,
    raw: &str,
) -> ApiResult<Response> {
    if !state.config().feature_referrers_api {
        return Err(RegistryError::NotFound);
    }
    let subject = parse_digest(raw)?;
    let artifact_type = call
        .param("artifactType")
        .filter(|t| !t.is_empty())
        .cloned();
    let limit = state.config().maximum_manifest_size;
    let answer = match cache
        .upstream
        .referrers(&cache.remote, &subject, artifact_type.as_deref(), limit)
        .await
    {
        Ok(Some(answer)) => Ok(answer),
        // No referrers API upstream: its clients keep the list in the
        // `sha256-<hex>` tag (OCI's fallback), an index as well.
        Ok(None) => {
            let tag = format!("{}-{}", subject.algorithm().name(), subject.hex());
            match cache
                .upstream
                .manifest_get(&cache.remote, &tag, limit)
                .await
            {
                Ok(m) => Ok((m.bytes, false)),
                Err(e) if e.is_not_found() => Ok((empty_index(), false)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok((bytes, filtered)) => {
            count(state, "miss");
            let index = remember_referrers(state, &call.repo, &subject, &bytes).await?;
            let mut manifests = index;
            let mut headers: Vec<(HeaderName, String)> = vec![(CONTENT_TYPE, OCI_INDEX.into())];
            if let Some(wanted) = &artifact_type {
                if !filtered {
                    manifests.retain(|r| r.artifact_type.as_deref() == Some(wanted.as_str()));
                }
                headers.push((crate::api::OCI_FILTERS_APPLIED, "artifactType".into()));
            }
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": manifests,
            });
            Ok(reply(
                StatusCode::OK,
                &headers,
                Body::from(body.to_string()),
            ))
        }
        Err(e) => {
            upstream_failed(state, &e);
            count(state, "stale");
            let mut response = crate::api::referrers::get(state, call, raw).await?;
            warn(&mut response, &e, None);
            Ok(response)
        }
    }
}

fn empty_index() -> Bytes {
    Bytes::from(
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            .to_string(),
    )
}

#[derive(Deserialize)]
struct IndexOf {
    #[serde(default)]
    manifests: Vec<ReferrerDescriptor>,
}

/// Keep the upstream's referrers of `subject`, so they are listed while it
/// is down; returns them.
async fn remember_referrers(
    state: &AppState,
    repo: &RepoName,
    subject: &Digest,
    bytes: &[u8],
) -> ApiResult<Vec<ReferrerDescriptor>> {
    let index: IndexOf = serde_json::from_slice(bytes).map_err(|e| {
        RegistryError::Upstream(format!(
            "the upstream's referrers of {subject} are not an index: {e}"
        ))
    })?;
    let known = state.storage.referrers(repo, subject).await?;
    for referrer in &index.manifests {
        if !known.contains(referrer) {
            state.storage.referrer_add(repo, subject, referrer).await?;
        }
    }
    Ok(index.manifests)
}

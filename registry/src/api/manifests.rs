//! `GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{
    AppState, CONTENT_LENGTH, CONTENT_TYPE, Call, DOCKER_CONTENT_DIGEST, LOCATION, OCI_SUBJECT,
    OCI_TAG, quota_guard, reply, tag_guard,
};
use crate::digest::{Algorithm, Digest};
use crate::error::{ApiResult, RegistryError};
use crate::gc;
use crate::manifest::{self, ManifestFacts};
use crate::metrics::ReasonLabels;
use crate::names::{Reference, RepoName, Tag};
use crate::policy;
use crate::storage::{ReferrerDescriptor, StoredManifest};

fn unknown(reference: &str) -> RegistryError {
    RegistryError::ManifestUnknown(reference.to_string())
}

/// Resolve a reference to a digest (tags through the tag store).
async fn resolve(state: &AppState, repo: &RepoName, raw: &str) -> ApiResult<Digest> {
    match Reference::parse(raw) {
        None => Err(unknown(raw)),
        Some(Reference::Digest(d)) => Ok(d),
        Some(Reference::Tag(t)) => state
            .storage
            .tag_get(repo, &t)
            .await?
            .ok_or_else(|| unknown(raw)),
    }
}

pub async fn get(state: &AppState, call: Call, raw: &str) -> ApiResult<Response> {
    let digest = resolve(state, &call.repo, raw).await?;
    let stored = state
        .storage
        .manifest_get(&call.repo, &digest)
        .await?
        .ok_or_else(|| unknown(raw))?;
    let headers = [
        (CONTENT_TYPE, stored.media_type.clone()),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (CONTENT_LENGTH, stored.bytes.len().to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    let body = if call.method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(stored.bytes)
    };
    Ok(reply(StatusCode::OK, &headers, body))
}

/// Read a manifest body, refusing it as soon as it passes the limit.
async fn read_limited(body: Body, limit: u64) -> ApiResult<Bytes> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::ManifestInvalid(format!("could not read the request body: {e}"))
        })?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > limit {
            return Err(RegistryError::ManifestTooLarge {
                size: buf.len() as u64,
                limit,
            });
        }
    }
    Ok(buf.freeze())
}

pub async fn put(state: &AppState, call: Call, raw: &str) -> ApiResult<Response> {
    let reference = Reference::parse(raw).ok_or_else(|| {
        RegistryError::ManifestInvalid(format!(
            "{raw:?} is neither a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}) nor a digest"
        ))
    })?;
    let limit = state.config().maximum_manifest_size;
    if let Some(len) = call
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(RegistryError::ManifestTooLarge { size: len, limit });
    }
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let repo = call.repo.clone();
    // `?tag=` (OCI 1.1+dev): tags to set when pushing by digest.
    let extra_tags = call
        .params("tag")
        .map(|t| {
            Tag::parse(t).ok_or_else(|| {
                RegistryError::ManifestInvalid(format!(
                    "tag parameter {t:?} is not a valid tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}})"
                ))
            })
        })
        .collect::<ApiResult<Vec<Tag>>>()?;
    let bytes = read_limited(call.body, limit).await?;
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let facts = manifest::inspect(content_type.as_deref(), &bytes, algorithm)?;
    if let Reference::Digest(d) = &reference
        && *d != facts.digest
    {
        return Err(RegistryError::DigestInvalid(format!(
            "manifest was pushed to {d} but its content hashes to {}",
            facts.digest
        )));
    }
    if let Err(refusal) = policy::check(&state.config(), &facts) {
        tracing::warn!(
            repository = %repo,
            reference = %reference,
            media_type = %refusal.media_type,
            reason = refusal.reason.label(),
            "manifest refused by the artifact policy"
        );
        state
            .metrics
            .policy_refusals
            .get_or_create(&ReasonLabels {
                reason: refusal.reason.label(),
            })
            .inc();
        return Err(RegistryError::PolicyRefused(refusal.message));
    }
    check_references(state, &repo, &facts).await?;
    let mut tags = extra_tags;
    if let Reference::Tag(tag) = &reference {
        tags.push(tag.clone());
    }
    let create_only = tag_guard::check_moves(state, &repo, &tags, &facts.digest).await?;
    quota_guard::check_manifest(state, &repo, &facts).await?;

    let stored = StoredManifest {
        media_type: facts.media_type.clone(),
        bytes: bytes.clone(),
    };
    state
        .storage
        .manifest_put(&repo, &facts.digest, &stored)
        .await?;
    // Written, not yet reachable by a tag: rescue what it names from
    // garbage collection, or refuse if a sweep is deleting part of it.
    if let Some(gone) = gc::touch::manifest_written(state.storage.as_ref(), &repo, &facts).await? {
        return Err(RegistryError::ManifestBlobUnknown(gone));
    }
    if let Some(subject) = &facts.subject {
        let descriptor = ReferrerDescriptor {
            media_type: facts.media_type.clone(),
            digest: facts.digest.clone(),
            size: bytes.len() as u64,
            artifact_type: facts.referrer_artifact_type(),
            annotations: facts.annotations.clone(),
        };
        state
            .storage
            .referrer_add(&repo, subject, &descriptor)
            .await?;
    }
    tag_guard::set_tags(state, &repo, &tags, &create_only, &facts.digest).await?;
    let mut headers: Vec<(HeaderName, String)> = vec![
        (LOCATION, format!("/v2/{repo}/manifests/{}", facts.digest)),
        (DOCKER_CONTENT_DIGEST, facts.digest.to_string()),
        (CONTENT_LENGTH, "0".into()),
    ];
    // OCI-Subject tells clients the registry indexed the subject; without
    // the referrers API they must maintain the sha256-<hex> tag themselves.
    if let Some(subject) = &facts.subject
        && state.config().feature_referrers_api
    {
        headers.push((OCI_SUBJECT, subject.to_string()));
    }
    if !tags.is_empty() {
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        headers.push((OCI_TAG, names.join(", ")));
    }
    Ok(reply(StatusCode::CREATED, &headers, Body::empty()))
}

/// Every blob and child manifest the manifest names must already be in the
/// repository (the subject need not be: referrers may come first).
async fn check_references(
    state: &AppState,
    repo: &RepoName,
    facts: &ManifestFacts,
) -> ApiResult<()> {
    for blob in &facts.blobs {
        if blob.may_be_absent {
            continue;
        }
        if !state.storage.repo_blob_linked(repo, &blob.digest).await? {
            return Err(RegistryError::ManifestBlobUnknown(format!(
                "{} ({}); push the blob before the manifest",
                blob.digest,
                if blob.media_type.is_empty() {
                    "layer"
                } else {
                    &blob.media_type
                }
            )));
        }
    }
    for child in &facts.children {
        if state
            .storage
            .manifest_get(repo, &child.digest)
            .await?
            .is_none()
        {
            return Err(RegistryError::ManifestBlobUnknown(format!(
                "{} (a manifest of this index); push it before the index",
                child.digest
            )));
        }
    }
    Ok(())
}

/// Delete a tag (not what it names), unless it is immutable. Shared by the
/// API and the UI.
pub(crate) async fn delete_tag(state: &AppState, repo: &RepoName, tag: &Tag) -> ApiResult<()> {
    let current = state
        .storage
        .tag_get(repo, tag)
        .await?
        .ok_or_else(|| unknown(tag.as_str()))?;
    tag_guard::check_tag_delete(state, repo, tag, &current).await?;
    if !state.storage.tag_delete(repo, tag).await? {
        return Err(unknown(tag.as_str()));
    }
    Ok(())
}

pub async fn delete(state: &AppState, call: Call, raw: &str) -> ApiResult<Response> {
    let repo = &call.repo;
    match Reference::parse(raw).ok_or_else(|| unknown(raw))? {
        Reference::Tag(tag) => delete_tag(state, repo, &tag).await?,
        Reference::Digest(digest) => {
            let stored = state
                .storage
                .manifest_get(repo, &digest)
                .await?
                .ok_or_else(|| unknown(raw))?;
            // The manifest was accepted once; if it no longer parses, there
            // is no referrer link to remove.
            let subject =
                manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
                    .ok()
                    .and_then(|f| f.subject);
            // Tags pointing at a deleted manifest go with it, unless one is
            // immutable: then nothing is deleted.
            let mut naming = Vec::new();
            for tag in state.storage.tags_list(repo).await?.unwrap_or_default() {
                let Some(tag) = Tag::parse(&tag) else {
                    continue;
                };
                if state.storage.tag_get(repo, &tag).await?.as_ref() == Some(&digest) {
                    naming.push(tag);
                }
            }
            tag_guard::check_manifest_delete(state, repo, &digest, &naming).await?;
            state.storage.manifest_delete(repo, &digest).await?;
            state.quota_usage.forget(repo);
            if let Some(subject) = subject {
                state
                    .storage
                    .referrer_remove(repo, &subject, &digest)
                    .await?;
            }
            for tag in &naming {
                state.storage.tag_delete(repo, tag).await?;
            }
        }
    }
    Ok(reply(
        StatusCode::ACCEPTED,
        &[(CONTENT_LENGTH, "0".into())],
        Body::empty(),
    ))
}

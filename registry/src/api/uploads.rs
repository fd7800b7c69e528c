//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic or
//! mount), `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;

use super::blobs::parse_digest;
use super::{
    AppState, CONTENT_LENGTH, Call, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, LOCATION, RANGE,
    quota_guard, reply, upload_limits,
};
use crate::auth::Caller;
use crate::auth::accounts::Action;
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError, upload_range};
use crate::gc;
use crate::names::RepoName;
use crate::storage::{ByteStream, StorageError};

fn session_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn session_reply(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> Response {
    reply(
        status,
        &[
            (LOCATION, session_location(repo, id)),
            (RANGE, upload_range(size)),
            (DOCKER_UPLOAD_UUID, id.to_string()),
            (CONTENT_LENGTH, "0".into()),
        ],
        Body::empty(),
    )
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    reply(
        StatusCode::CREATED,
        &[
            (LOCATION, format!("/v2/{repo}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (CONTENT_LENGTH, "0".into()),
        ],
        Body::empty(),
    )
}

/// A body that sent nothing for too long: carried inside the body
/// stream's `io::Error`, so the handler answers 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {seconds} s")]
pub(crate) struct BodyIdle {
    pub seconds: u64,
}

/// The body's chunks, each awaited at most `idle`: hyper bounds the wait
/// for headers, nothing bounds a body that stops sending.
fn idle_bounded(body: Body, idle: Duration) -> ByteStream {
    let chunks = body.into_data_stream();
    Box::pin(futures::stream::unfold(
        Some(chunks),
        move |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(idle, chunks.next()).await {
                Ok(Some(item)) => Some((item.map_err(std::io::Error::other), Some(chunks))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::other(BodyIdle {
                        seconds: idle.as_secs(),
                    })),
                    None,
                )),
            }
        },
    ))
}

/// The request body as a byte stream, each chunk charged to the session's
/// staged bytes as it arrives. With `exact_len`, a body of any other length
/// ends in an error, so storage rolls the chunk back.
fn body_stream(
    body: Body,
    exact_len: Option<u64>,
    idle: Duration,
    mut charge: impl FnMut(u64) -> Result<(), upload_limits::StagedBytesExceeded> + Send + 'static,
) -> ByteStream {
    let mut seen: u64 = 0;
    let mut finished = false;
    let checked = idle_bounded(body, idle)
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                _ if finished => None,
                Some(Ok(chunk)) => match charge(chunk.len() as u64) {
                    Ok(()) => {
                        seen += chunk.len() as u64;
                        Some(Ok(chunk))
                    }
                    Err(over) => {
                        finished = true;
                        Some(Err(std::io::Error::other(over)))
                    }
                },
                Some(Err(e)) => {
                    finished = true;
                    Some(Err(e))
                }
                None => {
                    finished = true;
                    match exact_len {
                        Some(n) if n != seen => Some(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "Content-Range announced {n} bytes but the body carried {seen}"
                            ),
                        ))),
                        _ => None,
                    }
                }
            };
            futures::future::ready(out)
        });
    Box::pin(checked)
}

/// `Content-Range: <start>-<end>` (also accepted with a `bytes ` prefix).
pub(crate) fn content_range(headers: &HeaderMap) -> ApiResult<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::BlobUploadInvalid(format!(
            "Content-Range {value:?} is not of the form <start>-<end>"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// The body's announced length, when the client sent one.
fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Append the request body to a session, enforcing `Content-Range` and
/// the upload limits. A chunk over a staged-bytes limit also closes its
/// session: clients do not resume after 413, and a session left open would
/// count against the client's session limit until it went stale.
async fn append(state: &AppState, call: Call, id: &str) -> ApiResult<u64> {
    let repo = call.repo.clone();
    match append_within_limits(state, call, id).await {
        Err(RegistryError::StagedBytesExceeded(message)) => {
            state.uploads.close(id);
            if let Err(e) = state.storage.upload_cancel(&repo, id).await {
                tracing::warn!(upload = id, error = %e, "could not close a refused upload session");
            }
            Err(RegistryError::StagedBytesExceeded(format!(
                "{message}; this upload session was closed"
            )))
        }
        other => other,
    }
}

async fn append_within_limits(state: &AppState, call: Call, id: &str) -> ApiResult<u64> {
    let range = content_range(&call.headers)?;
    let before = state.storage.upload_status(&call.repo, id).await?.size;
    let config = state.config();
    let limits = upload_limits::Limits::of(&config);
    state.uploads.adopt(id, &call.client, before);
    // A body announced too large is refused before a byte of it is read.
    if let Some(length) = announced_length(&call.headers) {
        state
            .uploads
            .check(&limits, id, length)
            .map_err(|over| RegistryError::StagedBytesExceeded(over.to_string()))?;
    }
    let stream = body_stream(
        call.body,
        range.map(|(s, e)| e - s + 1),
        Duration::from_secs(config.request_body_idle_timeout_seconds),
        upload_limits::charger(state.uploads.clone(), limits, id.to_string()),
    );
    let appended = state
        .storage
        .upload_append(&call.repo, id, range.map(|(s, _)| s), stream)
        .await;
    state
        .uploads
        .settle(id, appended.as_ref().map_or(before, |size| *size));
    match appended {
        Ok(size) => {
            state
                .metrics
                .bytes_received
                .inc_by(size.saturating_sub(before));
            Ok(size)
        }
        Err(StorageError::OffsetMismatch { current, claimed }) => {
            Err(RegistryError::RangeNotSatisfiable {
                location: session_location(&call.repo, id),
                current_size: current,
                claimed_start: claimed,
            })
        }
        Err(e) => Err(e.into()),
    }
}

async fn commit(state: &AppState, repo: &RepoName, id: &str, digest: &Digest) -> ApiResult<()> {
    let started = state.storage.upload_status(repo, id).await?.started_at_unix;
    if !gc::touch::before_commit(state.storage.as_ref(), repo, digest).await? {
        return Err(RegistryError::Unavailable(format!(
            "blob {digest} is being removed by garbage collection at this moment; retry in a few seconds"
        )));
    }
    state.storage.upload_commit(repo, id, digest).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(started);
    state
        .metrics
        .upload_seconds
        .observe(now.saturating_sub(started) as f64);
    Ok(())
}

pub async fn start(state: &AppState, call: Call) -> ApiResult<Response> {
    quota_guard::check_upload_start(state, &call.repo).await?;
    if let Some(mount) = call.param("mount") {
        let digest = parse_digest(mount)?;
        let from = call.param("from").cloned();
        if mountable(state, from.as_deref(), &call.caller, &digest).await? {
            state.storage.repo_blob_link(&call.repo, &digest).await?;
            // The target may have held a link garbage collection condemned.
            if gc::touch::blob_in_repo(state.storage.as_ref(), &call.repo, &digest).await? {
                return Ok(blob_created(&call.repo, &digest));
            }
        }
        // Not mountable: an ordinary session, as the spec asks.
    } else if let Some(raw) = call.param("digest") {
        let digest = parse_digest(raw)?;
        let repo = call.repo.clone();
        let id = open_session(state, &call.repo, &call.client).await?;
        let result = async {
            append(state, call, &id).await?;
            commit(state, &repo, &id, &digest).await
        }
        .await;
        state.uploads.close(&id);
        if let Err(e) = result {
            // A monolithic push that failed leaves no session behind.
            let _ = state.storage.upload_cancel(&repo, &id).await;
            return Err(e);
        }
        return Ok(blob_created(&repo, &digest));
    }
    let id = open_session(state, &call.repo, &call.client).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &call.repo, &id, 0))
}

/// A new upload session, within the session limits.
/// (Takes the parts of the call it needs: a `Call` holds the body, which
/// is not `Sync`.)
async fn open_session(state: &AppState, repo: &RepoName, client: &str) -> ApiResult<String> {
    let id = state.storage.upload_start(repo).await?;
    let limits = upload_limits::Limits::of(&state.config());
    if let Err(refused) = state.uploads.open(&limits, &id, client) {
        let _ = state.storage.upload_cancel(repo, &id).await;
        return Err(refused);
    }
    Ok(id)
}

/// A blob may be mounted from `from` when that repository has it and the
/// caller's account may pull from it, or from anywhere in the registry when automatic
/// cross-mount is on, no `from` is given and the caller may pull from every
/// namespace (else a mount would reveal other namespaces' blobs).
async fn mountable(
    state: &AppState,
    from: Option<&str>,
    caller: &Caller,
    digest: &Digest,
) -> ApiResult<bool> {
    let config = state.config();
    let anonymous = &config.anonymous_pull_namespaces;
    match from.map(RepoName::parse) {
        Some(Some(from)) => {
            // The account's rights decide, not the token's scopes: clients
            // such as the conformance suite ask for a token for the target
            // repository only, and reading what the account may read
            // anyway gives it nothing new.
            let may_pull = state.auth.as_ref().is_none_or(|auth| {
                auth.rights(caller.account(), from.as_str(), anonymous)
                    .contains(&Action::Pull)
            });
            Ok(may_pull && gc::touch::blob_in_repo(state.storage.as_ref(), &from, digest).await?)
        }
        Some(None) => Ok(false),
        None => {
            let may_pull = state
                .auth
                .as_ref()
                .is_none_or(|auth| auth.may_pull_everywhere(caller.account(), anonymous));
            Ok(config.feature_automatic_cross_mount
                && may_pull
                && gc::touch::blob_anywhere(state.storage.as_ref(), digest).await?)
        }
    }
}

pub async fn status(state: &AppState, call: Call, id: &str) -> ApiResult<Response> {
    let size = state.storage.upload_status(&call.repo, id).await?.size;
    Ok(session_reply(StatusCode::NO_CONTENT, &call.repo, id, size))
}

pub async fn patch(state: &AppState, call: Call, id: &str) -> ApiResult<Response> {
    let repo = call.repo.clone();
    let size = append(state, call, id).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &repo, id, size))
}

pub async fn finish(state: &AppState, call: Call, id: &str) -> ApiResult<Response> {
    let digest = match call.param("digest") {
        Some(raw) => parse_digest(raw)?,
        None => {
            return Err(RegistryError::DigestInvalid(
                "closing PUT needs a ?digest=<algorithm>:<hex> query parameter".into(),
            ));
        }
    };
    let repo = call.repo.clone();
    append(state, call, id).await?;
    match commit(state, &repo, id, &digest).await {
        Ok(()) => state.uploads.close(id),
        Err(e) => {
            // Storage may have dropped the session (a digest mismatch).
            if let Err(StorageError::UploadUnknown) = state.storage.upload_status(&repo, id).await {
                state.uploads.close(id);
            }
            return Err(e);
        }
    }
    Ok(blob_created(&repo, &digest))
}

pub async fn cancel(state: &AppState, call: Call, id: &str) -> ApiResult<Response> {
    state.uploads.close(id);
    state.storage.upload_cancel(&call.repo, id).await?;
    Ok(reply(
        StatusCode::NO_CONTENT,
        &[(CONTENT_LENGTH, "0".to_string())] as &[(HeaderName, String)],
        Body::empty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(content_range(&h).unwrap(), None);
        h.insert(header::CONTENT_RANGE, "0-99".parse().unwrap());
        assert_eq!(content_range(&h).unwrap(), Some((0, 99)));
        h.insert(header::CONTENT_RANGE, "bytes 100-199/*".parse().unwrap());
        assert_eq!(content_range(&h).unwrap(), Some((100, 199)));
        h.insert(header::CONTENT_RANGE, "9-1".parse().unwrap());
        assert!(content_range(&h).is_err());
        h.insert(header::CONTENT_RANGE, "abc".parse().unwrap());
        assert!(content_range(&h).is_err());
    }
}

//! `GET/HEAD/DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;

use super::{AppState, CONTENT_LENGTH, CONTENT_TYPE, Call, DOCKER_CONTENT_DIGEST, reply};
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::gc;
use crate::storage::ByteRange;

/// How long a presigned blob URL stays valid.
const REDIRECT_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) fn parse_digest(raw: &str) -> ApiResult<Digest> {
    raw.parse()
        .map_err(|e| RegistryError::DigestInvalid(format!("{e}")))
}

pub async fn get(state: &AppState, call: Call, raw_digest: &str) -> ApiResult<Response> {
    let digest = parse_digest(raw_digest)?;
    let unknown = || RegistryError::BlobUnknown(digest.to_string());
    // A HEAD that finds a blob tells a pushing client to skip its upload:
    // it rescues the blob from garbage collection, or answers 404 for one
    // a sweep is deleting (gc/touch.rs). A GET only reads.
    let servable = if call.method == Method::HEAD {
        gc::touch::blob_in_repo(state.storage.as_ref(), &call.repo, &digest).await?
    } else {
        state.storage.repo_blob_linked(&call.repo, &digest).await?
    };
    if !servable {
        return Err(unknown());
    }
    let size = state
        .storage
        .blob_size(&digest)
        .await?
        .ok_or_else(unknown)?;
    let range = match call
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(value) => parse_range(value, size)?,
        None => None,
    };
    let mut headers: Vec<(HeaderName, String)> = vec![
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (CONTENT_TYPE, "application/octet-stream".into()),
        (header::ACCEPT_RANGES, "bytes".into()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    let status = match range {
        Some(r) => {
            headers.push((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end_inclusive),
            ));
            headers.push((CONTENT_LENGTH, r.len().to_string()));
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            headers.push((CONTENT_LENGTH, size.to_string()));
            StatusCode::OK
        }
    };
    if call.method == Method::HEAD {
        return Ok(reply(status, &headers, Body::empty()));
    }
    // Object storage may hand the bytes out itself (FEATURE_PROXY_STORAGE:
    // false); ranges are always served here.
    if range.is_none()
        && !state.config().feature_proxy_storage
        && let Some(url) = state.storage.blob_url(&digest, REDIRECT_VALID_FOR).await?
    {
        return Ok(reply(
            StatusCode::TEMPORARY_REDIRECT,
            &[
                (header::LOCATION, url),
                (DOCKER_CONTENT_DIGEST, digest.to_string()),
                (CONTENT_LENGTH, "0".into()),
            ],
            Body::empty(),
        ));
    }
    let counter = state.metrics.bytes_sent.clone();
    let stream = state
        .storage
        .blob_read(&digest, range)
        .await?
        .inspect(move |chunk| {
            if let Ok(c) = chunk {
                counter.inc_by(c.len() as u64);
            }
        });
    Ok(reply(status, &headers, Body::from_stream(stream)))
}

pub async fn delete(state: &AppState, call: Call, raw_digest: &str) -> ApiResult<Response> {
    let digest = parse_digest(raw_digest)?;
    if !state.storage.repo_blob_unlink(&call.repo, &digest).await? {
        return Err(RegistryError::BlobUnknown(digest.to_string()));
    }
    Ok(reply(
        StatusCode::ACCEPTED,
        &[(DOCKER_CONTENT_DIGEST, digest.to_string())],
        Body::empty(),
    ))
}

/// Parse a single-range `Range` header against a blob of `size` bytes.
/// Syntax we do not serve (multiple ranges, other units) is ignored, as
/// RFC 9110 allows: the whole blob is sent. A range outside the blob, or
/// one that ends before it starts, is 416.
pub fn parse_range(value: &str, size: u64) -> ApiResult<Option<ByteRange>> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = RegistryError::BlobRangeNotSatisfiable { size };
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let Ok(n) = suffix.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            ByteRange {
                start: size.saturating_sub(n),
                end_inclusive: size - 1,
            }
        }
        (start, end) => {
            let Ok(start) = start.parse::<u64>() else {
                return Ok(None);
            };
            let end = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                match end.parse::<u64>() {
                    Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                    // RFC 9110 lets a server reject an invalid range; a
                    // 416 tells the client more than a silent full body.
                    Ok(_) => return Err(unsatisfiable),
                    Err(_) => return Ok(None),
                }
            };
            if start >= size {
                return Err(unsatisfiable);
            }
            ByteRange {
                start,
                end_inclusive: end,
            }
        }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s| {
            parse_range(s, 100)
                .unwrap()
                .map(|r| (r.start, r.end_inclusive))
        };
        assert_eq!(r("bytes=0-9"), Some((0, 9)));
        assert_eq!(r("bytes=90-"), Some((90, 99)));
        assert_eq!(r("bytes=-10"), Some((90, 99)));
        assert_eq!(r("bytes=95-200"), Some((95, 99)));
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
        assert!(parse_range("bytes=9-1", 100).is_err());
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
    }
}

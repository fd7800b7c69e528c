//! `GET /v2/<name>/referrers/<digest>?artifactType=`: an image index of the
//! manifests whose `subject` is the digest.

use axum::body::Body;
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::blobs::parse_digest;
use super::{AppState, CONTENT_TYPE, Call, LINK, OCI_FILTERS_APPLIED, reply};
use crate::error::{ApiResult, RegistryError};
use crate::manifest::OCI_INDEX;

pub async fn get(state: &AppState, call: Call, raw: &str) -> ApiResult<Response> {
    if !state.config().feature_referrers_api {
        // 404 makes oras and cosign fall back to the sha256-<hex> tag schema.
        return Err(RegistryError::NotFound);
    }
    let subject = parse_digest(raw)?;
    let mut referrers = state.storage.referrers(&call.repo, &subject).await?;
    let filter = call.param("artifactType").filter(|t| !t.is_empty());
    if let Some(wanted) = filter {
        referrers.retain(|r| r.artifact_type.as_deref() == Some(wanted.as_str()));
    }
    if let Some(last) = call.param("last") {
        referrers.retain(|r| r.digest.to_string().as_str() > last.as_str());
    }
    let page_size = state.config().referrers_page_size;
    let mut headers: Vec<(HeaderName, String)> = vec![(CONTENT_TYPE, OCI_INDEX.into())];
    if referrers.len() > page_size {
        referrers.truncate(page_size);
        if let Some(last) = referrers.last() {
            let mut next = format!("/v2/{}/referrers/{subject}?last={}", call.repo, last.digest);
            if let Some(t) = filter {
                next.push_str(&format!("&artifactType={}", encode_query(t)));
            }
            headers.push((LINK, format!("<{next}>; rel=\"next\"")));
        }
    }
    if filter.is_some() {
        headers.push((OCI_FILTERS_APPLIED, "artifactType".into()));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": referrers,
    });
    Ok(reply(
        StatusCode::OK,
        &headers,
        Body::from(index.to_string()),
    ))
}

/// Percent-encode a media type for a query string (`+` and `/` matter).
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

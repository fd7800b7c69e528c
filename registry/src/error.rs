//! The one error type of the HTTP API, mapped to the OCI error envelope
//! `{"errors":[{"code","message","detail"}]}`. Internal causes are logged
//! and replaced by a generic message: they never reach the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("{0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("{0}")]
    DigestInvalid(String),
    #[error("manifest references a blob this repository does not have: {0}")]
    ManifestBlobUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    NameInvalid(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Denied(String),
    /// A manifest the artifact policy refuses (403 DENIED: clients print
    /// the message, and skopeo/podman do not retry other formats as they do
    /// after MANIFEST_INVALID).
    #[error("{0}")]
    PolicyRefused(String),
    /// A chunk that does not start where the upload ends (416). The
    /// headers tell the client where to resume.
    #[error("chunk starts at byte {claimed_start}, but the upload holds {current_size} bytes")]
    RangeNotSatisfiable {
        location: String,
        current_size: u64,
        claimed_start: u64,
    },
    /// A `Range` on a blob GET outside the blob.
    #[error("requested range is outside the blob of {size} bytes")]
    BlobRangeNotSatisfiable { size: u64 },
    #[error("manifest of {size} bytes is over the limit of {limit} bytes")]
    ManifestTooLarge { size: u64, limit: u64 },
    /// 431: the request's headers are over MAXIMUM_REQUEST_HEADER_BYTES.
    #[error(
        "the request's headers take {size} bytes, over the limit of {limit} (MAXIMUM_REQUEST_HEADER_BYTES)"
    )]
    HeadersTooLarge { size: u64, limit: u64 },
    /// 401: credentials missing, wrong or expired. `challenge` is the
    /// `WWW-Authenticate` value telling the client where to get a token.
    #[error("{message}")]
    Unauthorized { message: String, challenge: String },
    /// 429: too many failed logins from this address.
    #[error("too many failed logins from this address; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: u64 },
    /// 429: every password check slot is busy (AUTH_CONCURRENT_PASSWORD_CHECKS).
    #[error("too many logins are being checked at once; try again in a second")]
    LoginsBusy,
    /// 503 with Retry-After: the request needs something a garbage
    /// collection sweep is deleting at this moment.
    #[error("{0}")]
    Unavailable(String),
    /// An upload session limit is reached.
    #[error("{0}")]
    UploadSessionsBusy(String),
    /// A chunk would pass a staged-bytes limit; it was rolled back.
    #[error("{0}")]
    StagedBytesExceeded(String),
    /// The request body sent nothing for too long.
    #[error(
        "the request body sent nothing for {seconds} s (REQUEST_BODY_IDLE_TIMEOUT_SECONDS); the upload is unchanged, resume from its current size"
    )]
    BodyIdle { seconds: u64 },
    /// 502: a cache namespace needed its upstream, which failed; the
    /// message names the upstream and what it answered.
    #[error("{0}")]
    Upstream(String),
    /// 429: a cache namespace needed its upstream, which is rate-limiting.
    #[error("{message}")]
    UpstreamRateLimited { message: String, retry_after: u64 },
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::Internal(e.into())
    }
}

impl RegistryError {
    /// The OCI error code and HTTP status for this error.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            BlobUploadInvalid(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            DigestInvalid(_) => ("DIGEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestBlobUnknown(_) => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            ManifestInvalid(_) => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestUnknown(_) => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            NameInvalid(_) => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            NameUnknown(_) => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            SizeInvalid(_) => ("SIZE_INVALID", StatusCode::BAD_REQUEST),
            Unsupported(_) => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            Denied(_) | PolicyRefused(_) => ("DENIED", StatusCode::FORBIDDEN),
            RangeNotSatisfiable { .. } => {
                ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE)
            }
            BlobRangeNotSatisfiable { .. } => ("BLOB_UNKNOWN", StatusCode::RANGE_NOT_SATISFIABLE),
            ManifestTooLarge { .. } => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            HeadersTooLarge { .. } => ("SIZE_INVALID", StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            Unauthorized { .. } => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            TooManyRequests { .. } | LoginsBusy => {
                ("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS)
            }
            Unavailable(_) => ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            UploadSessionsBusy(_) => ("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS),
            StagedBytesExceeded(_) => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            BodyIdle { .. } => ("BLOB_UPLOAD_INVALID", StatusCode::REQUEST_TIMEOUT),
            Upstream(_) => ("UNAVAILABLE", StatusCode::BAD_GATEWAY),
            UpstreamRateLimited { .. } => ("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS),
            NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            Internal(_) => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        let message = match &self {
            RegistryError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "internal server error; the registry log has the cause".to_string()
            }
            other => other.to_string(),
        };
        let body = json!({ "errors": [ { "code": code, "message": message, "detail": null } ] });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            RegistryError::RangeNotSatisfiable {
                location,
                current_size,
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&upload_range(*current_size)) {
                    headers.insert(header::RANGE, v);
                }
            }
            RegistryError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            RegistryError::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            RegistryError::UpstreamRateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            RegistryError::LoginsBusy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            RegistryError::Unavailable(_) | RegistryError::UploadSessionsBusy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5));
            }
            RegistryError::BlobRangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// The `Range` header value of an upload holding `size` bytes
/// (`0-<last byte>`; `0-0` for an empty upload, as distribution answers).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, RegistryError>;

impl From<crate::manifest::InvalidManifest> for RegistryError {
    fn from(e: crate::manifest::InvalidManifest) -> Self {
        RegistryError::ManifestInvalid(e.0)
    }
}

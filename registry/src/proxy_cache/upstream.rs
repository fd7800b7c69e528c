//! A client of one upstream registry: the OCI distribution API, logging in
//! as docker and skopeo do — a `Bearer` challenge sends it to the token
//! endpoint (with the configured account as Basic credentials, or
//! anonymously), a `Basic` challenge gets the account directly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};

use super::settings::{ProxyCacheNamespace, UpstreamAddress};
use crate::digest::Digest;

/// Every manifest media type the registry stores, for `Accept`.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/vnd.docker.distribution.manifest.v1+json;q=0.5";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence of an upstream in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A token the upstream did not give a lifetime lasts this long (the
/// distribution token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Basic credentials are sent up front for this long after an upstream
/// asked for them, saving the 401 round trip.
const BASIC_REUSE: Duration = Duration::from_secs(3600);

/// What went wrong talking to the upstream. Each message names it.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream} could not be reached: {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream {upstream} has no {what}")]
    NotFound { upstream: String, what: String },
    #[error("upstream {upstream} refused the credentials for {what} ({status}{detail})")]
    Unauthorized {
        upstream: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("upstream {upstream} answered {status} to {what}{detail}")]
    Answered {
        upstream: String,
        what: String,
        status: u16,
        detail: String,
        /// The upstream's `Retry-After`, for a 429 passed on.
        retry_after: Option<u64>,
    },
    #[error("upstream {upstream} sent {what} that is not what it claims: {reason}")]
    Invalid {
        upstream: String,
        what: String,
        reason: String,
    },
}

impl UpstreamError {
    /// Whether the upstream said the thing does not exist (as opposed to
    /// failing to answer).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::NotFound { .. })
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::NotFound { .. } => "not_found",
            UpstreamError::Unauthorized { .. } => "unauthorized",
            UpstreamError::Answered { status: 429, .. } => "rate_limited",
            UpstreamError::Answered { .. } => "error_status",
            UpstreamError::Invalid { .. } => "invalid_content",
        }
    }
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone)]
pub struct ManifestHead {
    pub digest: Option<Digest>,
}

/// A manifest as the upstream served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: Option<String>,
    /// The `Docker-Content-Digest` the upstream sent.
    pub digest: Option<Digest>,
    pub bytes: Bytes,
}

struct CachedToken {
    value: String,
    until: Instant,
}

/// One upstream, shared by every request of its cache namespace.
pub struct Upstream {
    pub settings: ProxyCacheNamespace,
    pub address: UpstreamAddress,
    /// `scheme://host[:port]`.
    base: String,
    http: reqwest::Client,
    /// Bearer tokens by scope, reused until they expire.
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl Upstream {
    /// A client for a validated cache namespace; the reason when its CA
    /// file cannot be read.
    pub fn new(settings: &ProxyCacheNamespace) -> Result<Upstream, String> {
        let address = UpstreamAddress::parse(&settings.upstream_registry)?;
        let scheme = if settings.insecure { "http" } else { "https" };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("quarry-registry/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.upstream_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(pem) = &settings.upstream_ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("upstream_ca: {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("HTTP client for {}: {e}", settings.upstream_registry))?;
        Ok(Upstream {
            base: format!("{scheme}://{}", address.host),
            settings: settings.clone(),
            address,
            http,
            tokens: Mutex::default(),
        })
    }

    /// How messages name the upstream.
    pub fn name(&self) -> &str {
        &self.settings.upstream_registry
    }

    /// `/v2/` with the configured account: whether the upstream answers
    /// and takes the credentials (the operator's and startup's check).
    pub async fn check(&self, remote: &str) -> Result<(), UpstreamError> {
        let what = format!("a login for repository {remote}");
        let url = format!("{}/v2/", self.base);
        let response = self.send(Method::GET, &url, remote, None, &what).await?;
        drop(response);
        Ok(())
    }

    /// HEAD of a manifest: its digest, without spending a pull where the
    /// upstream counts GETs only (Docker Hub).
    pub async fn manifest_head(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<ManifestHead, UpstreamError> {
        let what = format!("manifest {remote}:{reference}");
        let url = format!("{}/v2/{remote}/manifests/{reference}", self.base);
        let response = self
            .send(Method::HEAD, &url, remote, Some(MANIFEST_TYPES), &what)
            .await?;
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(ManifestHead { digest })
    }

    /// A manifest, refused past `limit` bytes.
    pub async fn manifest_get(
        &self,
        remote: &str,
        reference: &str,
        limit: u64,
    ) -> Result<FetchedManifest, UpstreamError> {
        let what = format!("manifest {remote}:{reference}");
        let url = format!("{}/v2/{remote}/manifests/{reference}", self.base);
        let response = self
            .send(Method::GET, &url, remote, Some(MANIFEST_TYPES), &what)
            .await?;
        let media_type = header_str(response.headers(), CONTENT_TYPE.as_str())
            .map(|t| t.split(';').next().unwrap_or(t).trim().to_string());
        let digest =
            header_str(response.headers(), "docker-content-digest").and_then(|v| v.parse().ok());
        let bytes = self.read_limited(response, limit, &what).await?;
        Ok(FetchedManifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// Every tag of a repository, following `Link` pages.
    pub async fn tags(&self, remote: &str) -> Result<Vec<String>, UpstreamError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("the tags of {remote}");
        let mut url = format!("{}/v2/{remote}/tags/list", self.base);
        let mut all = Vec::new();
        // A bound, so an upstream whose Link loops cannot keep us forever.
        for _ in 0..10_000 {
            let response = self.send(Method::GET, &url, remote, None, &what).await?;
            let next = header_str(response.headers(), "link").and_then(next_link);
            let body = self.read_limited(response, 64 << 20, &what).await?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| self.invalid(&what, &format!("a tag list that is not JSON ({e})")))?;
            all.extend(page.tags.unwrap_or_default());
            match next {
                Some(path) if path.starts_with('/') => url = format!("{}{path}", self.base),
                Some(absolute) => url = absolute,
                None => return Ok(all),
            }
        }
        Err(self.invalid(&what, "more than 10000 pages"))
    }

    /// A blob's size, by HEAD.
    pub async fn blob_head(&self, remote: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let what = format!("blob {digest} in {remote}");
        let url = format!("{}/v2/{remote}/blobs/{digest}", self.base);
        let response = self.send(Method::HEAD, &url, remote, None, &what).await?;
        content_length(response.headers()).ok_or_else(|| self.invalid(&what, "no Content-Length"))
    }

    /// Start a blob download; the caller reads the body with `chunk()`.
    pub async fn blob_get(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<(u64, reqwest::Response), UpstreamError> {
        let what = format!("blob {digest} in {remote}");
        let url = format!("{}/v2/{remote}/blobs/{digest}", self.base);
        let response = self.send(Method::GET, &url, remote, None, &what).await?;
        let size = content_length(response.headers())
            .ok_or_else(|| self.invalid(&what, "no Content-Length"))?;
        Ok((size, response))
    }

    /// The upstream's referrers index of `subject`, or `None` when it has
    /// no referrers API (clients then use the `sha256-<hex>` tag). The
    /// flag says whether it applied the `artifactType` filter.
    pub async fn referrers(
        &self,
        remote: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        limit: u64,
    ) -> Result<Option<(Bytes, bool)>, UpstreamError> {
        let what = format!("referrers of {subject} in {remote}");
        let mut url = format!("{}/v2/{remote}/referrers/{subject}", self.base);
        if let Some(t) = artifact_type {
            url.push_str("?artifactType=");
            url.extend(form_urlencoded::byte_serialize(t.as_bytes()));
        }
        let response = match self
            .send(
                Method::GET,
                &url,
                remote,
                Some("application/vnd.oci.image.index.v1+json"),
                &what,
            )
            .await
        {
            Err(UpstreamError::NotFound { .. }) => return Ok(None),
            other => other?,
        };
        let is_index = header_str(response.headers(), CONTENT_TYPE.as_str())
            .is_some_and(|t| t.starts_with("application/vnd.oci.image.index.v1+json"));
        if !is_index {
            return Ok(None);
        }
        let filtered = response.headers().contains_key("oci-filters-applied");
        let bytes = self.read_limited(response, limit, &what).await?;
        Ok(Some((bytes, filtered)))
    }

    async fn read_limited(
        &self,
        mut response: reqwest::Response,
        limit: u64,
        what: &str,
    ) -> Result<Bytes, UpstreamError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(what, &e))?
        {
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > limit {
                return Err(self.invalid(what, &format!("more than {limit} bytes")));
            }
        }
        Ok(buf.freeze())
    }

    /// Send a request, logging in when challenged, and turn failure
    /// statuses into errors.
    async fn send(
        &self,
        method: Method,
        url: &str,
        remote: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{remote}:pull");
        let cached = self.cached_token(&scope);
        let mut response = self
            .request(&method, url, accept, cached.as_deref())
            .await
            .map_err(|e| self.unreachable(what, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = header_str(response.headers(), "www-authenticate")
                .unwrap_or_default()
                .to_string();
            let authorization = self.log_in(&challenge, &scope, what).await?;
            response = self
                .request(&method, url, accept, Some(&authorization))
                .await
                .map_err(|e| self.unreachable(what, &e))?;
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after =
            header_str(response.headers(), "retry-after").and_then(|v| v.parse().ok());
        let detail = error_detail(response).await;
        let upstream = self.name().to_string();
        let what = what.to_string();
        Err(match status {
            StatusCode::NOT_FOUND => UpstreamError::NotFound { upstream, what },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::Unauthorized {
                upstream,
                what,
                status: status.as_u16(),
                detail,
            },
            _ => UpstreamError::Answered {
                upstream,
                what,
                status: status.as_u16(),
                detail,
                retry_after,
            },
        })
    }

    async fn request(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request.send().await
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(scope)
            .filter(|t| t.until > Instant::now())
            .map(|t| t.value.clone())
    }

    /// The `Authorization` value that answers `challenge`.
    async fn log_in(
        &self,
        challenge: &str,
        scope: &str,
        what: &str,
    ) -> Result<String, UpstreamError> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = self.basic();
        if scheme.eq_ignore_ascii_case("basic") {
            let basic = basic.ok_or_else(|| {
                self.refused(
                    what,
                    401,
                    ": it wants a login and upstream_registry_username is not set",
                )
            })?;
            self.remember(scope, &basic, BASIC_REUSE);
            return Ok(basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.refused(what, 401, &format!(": unsupported challenge {challenge:?}")));
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| self.invalid(what, "a Bearer challenge without realm"))?;
        let scope = params.get("scope").map_or(scope, String::as_str);
        let mut url = realm.clone();
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
            query.finish()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query);
        let token_what = format!("a token for {scope}");
        let mut request = self.http.get(&url);
        if let Some(basic) = &basic {
            request = request.header(AUTHORIZATION, basic);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(&token_what, &e))?;
        let status = response.status();
        if !status.is_success() {
            let detail = error_detail(response).await;
            return Err(self.refused(&token_what, status.as_u16(), &detail));
        }
        let body = self.read_limited(response, 1 << 20, &token_what).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            self.invalid(
                &token_what,
                &format!("a token answer that is not JSON ({e})"),
            )
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| self.invalid(&token_what, "a token answer without token"))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let value = format!("Bearer {token}");
        // Renew a little early: a token expiring in flight costs a second
        // round trip.
        self.remember(scope, &value, lifetime.mul_f32(0.9));
        Ok(value)
    }

    fn remember(&self, scope: &str, value: &str, lifetime: Duration) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, t| t.until > Instant::now());
            tokens.insert(
                scope.to_string(),
                CachedToken {
                    value: value.to_string(),
                    until: Instant::now() + lifetime,
                },
            );
        }
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        let user = self.settings.upstream_registry_username.as_ref()?;
        let password = self
            .settings
            .upstream_registry_password
            .as_deref()
            .unwrap_or("");
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    fn unreachable(&self, what: &str, e: &reqwest::Error) -> UpstreamError {
        use std::error::Error;
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        UpstreamError::Unreachable {
            upstream: self.name().to_string(),
            reason: format!("{what}: {reason}"),
        }
    }

    fn invalid(&self, what: &str, reason: &str) -> UpstreamError {
        UpstreamError::Invalid {
            upstream: self.name().to_string(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    fn refused(&self, what: &str, status: u16, detail: &str) -> UpstreamError {
        UpstreamError::Unauthorized {
            upstream: self.name().to_string(),
            what: what.to_string(),
            status,
            detail: detail.to_string(),
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The target of `Link: <…>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok())
}

/// The start of an error answer's body, for messages: `: <text>`.
async fn error_detail(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!(": {cut}")
}

/// Split `Bearer realm="…",service="…"` into its scheme and parameters
/// (values may be quoted and hold commas).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm=quarry"#);
        assert_eq!(scheme, "Basic");
        assert_eq!(p["realm"], "quarry");
        let (scheme, p) = parse_challenge("Bearer");
        assert_eq!(scheme, "Bearer");
        assert!(p.is_empty());
    }
}

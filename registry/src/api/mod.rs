//! The HTTP API: OCI Distribution v1.1 under `/v2/`, plus health and
//! metrics. `router(state)` is the whole application; tests drive it with
//! `oneshot`, the binary serves it.

pub(crate) mod access;
pub(crate) mod blobs;
mod listing;
pub(crate) mod manifests;
mod ops;
mod quota_guard;
pub(crate) mod referrers;
pub mod route;
mod tag_guard;
mod token;
mod upload_limits;
pub(crate) mod uploads;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::auth::{Auth, Caller, TOKEN_PATH};
use crate::config::RegistryConfig;
use crate::error::{ApiResult, RegistryError};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::names::RepoName;
use crate::storage::{Storage, StorageError};
use route::Endpoint;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn Storage>,
    /// Swapped whole when the config file is reloaded; a request works on
    /// the snapshot it loaded first.
    pub config: Arc<ArcSwap<RegistryConfig>>,
    pub metrics: Arc<Metrics>,
    /// Accounts and token keys; `None` when anyone may pull and push.
    pub auth: Option<Arc<Auth>>,
    /// Whether this server speaks TLS (for the token realm's scheme).
    pub tls: bool,
    /// Namespace usage measured recently, for the upload-start check.
    pub quota_usage: Arc<quota_guard::UsageCache>,
    /// This replica's last garbage-collection sweeps.
    pub gc_sweeps: Arc<crate::gc::journal::Journal>,
    /// Unfinished uploads and the bytes they hold, for the upload limits.
    pub uploads: Arc<upload_limits::UploadLedger>,
    /// Upstream clients and downloads of the pull-through cache namespaces.
    pub proxy: Arc<crate::proxy_cache::ProxyCaches>,
    /// Parsed manifests the web UI showed.
    pub ui_manifests: Arc<crate::ui::inspect::ManifestCache>,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>, config: RegistryConfig, metrics: Arc<Metrics>) -> Self {
        AppState {
            storage,
            config: Arc::new(ArcSwap::from_pointee(config)),
            metrics,
            auth: None,
            tls: false,
            quota_usage: Arc::default(),
            gc_sweeps: Arc::default(),
            uploads: Arc::default(),
            proxy: Arc::default(),
            ui_manifests: Arc::default(),
        }
    }

    /// The same state with authentication.
    pub fn with_auth(mut self, auth: Option<Arc<Auth>>) -> Self {
        self.auth = auth;
        self
    }

    /// The same state, marked as served over TLS.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<RegistryConfig> {
        self.config.load_full()
    }
}

/// The registry application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/_catalog", any(listing::catalog_route))
        .route("/v2/{*path}", any(dispatch))
        .route(TOKEN_PATH, any(token::token_route))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/gc/sweeps", get(ops::gc_sweeps))
        .route("/mirror/status", get(ops::mirror_status))
        .merge(crate::ui::routes(state.clone()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), measure))
        .fallback(|| async { RegistryError::NotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_headers,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The endpoint that answered under `/v2/{*path}`, where the axum route
/// does not say: set on the response by `dispatch`.
#[derive(Debug, Clone, Copy)]
struct EndpointLabel(&'static str);

/// The metrics label of a matched axum route; `None` for the health and
/// metrics endpoints, which are not counted.
fn route_label(matched: &str) -> Option<&'static str> {
    match matched {
        "/v2" | "/v2/" => Some("base"),
        "/v2/_catalog" => Some("catalog"),
        "/v2/{*path}" => Some("unknown"),
        TOKEN_PATH => Some("token"),
        _ => None,
    }
}

/// Refuse requests whose headers are over MAXIMUM_REQUEST_HEADER_BYTES
/// (hyper itself stops at 100 headers and ~400 KiB).
async fn limit_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config().maximum_request_header_bytes;
    let size: u64 = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum();
    if size > limit {
        return RegistryError::HeadersTooLarge { size, limit }.into_response();
    }
    next.run(request).await
}

/// One middleware counts and times every registry request, by route,
/// method and status.
async fn measure(
    State(state): State<AppState>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = route_label(matched.as_str());
    let response = next.run(request).await;
    if let Some(route) = route {
        let route = response
            .extensions()
            .get::<EndpointLabel>()
            .map_or(route, |e| e.0);
        record(&state, route, &method, &response, started);
    }
    response
}

/// One request, as the handlers under `/v2/<name>/` see it.
pub(crate) struct Call {
    pub method: Method,
    pub repo: RepoName,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Body,
    /// Who is calling (always `Anonymous` when authentication is off).
    pub caller: Caller,
    /// The caller for per-client limits: its account, else its address.
    pub client: String,
}

impl Call {
    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&String> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every value of a repeated query parameter, in order.
    pub fn params<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

async fn base(State(state): State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    let (parts, _body) = request.into_parts();
    match base_access(&state, &parts).await {
        Err(e) => e.into_response(),
        Ok(()) => match method {
            Method::GET | Method::HEAD => {
                let mut r = StatusCode::OK.into_response();
                r.headers_mut().insert(
                    HeaderName::from_static("docker-distribution-api-version"),
                    HeaderValue::from_static("registry/2.0"),
                );
                r
            }
            _ => RegistryError::MethodNotAllowed.into_response(),
        },
    }
}

/// `/v2/` with authentication on answers 200 only to a valid login or
/// token: `docker login` and friends take a 200 as "credentials accepted".
async fn base_access(state: &AppState, parts: &Parts) -> ApiResult<()> {
    let Some(auth) = &state.auth else {
        return Ok(());
    };
    let asker = access::Asker::of(parts);
    match access::authenticate(state, auth, &asker).await? {
        Caller::Anonymous => Err(asker.unauthorized(
            state,
            "authentication required: log in with an account of this registry".into(),
            None,
        )),
        _ => Ok(()),
    }
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let path = request
        .uri()
        .path()
        .strip_prefix("/v2/")
        .unwrap_or_default()
        .to_string();
    let (label, mut response) = match route::parse(&path) {
        None => ("unknown", RegistryError::NotFound.into_response()),
        Some((name, endpoint)) => {
            let label = endpoint.label();
            let response = match RepoName::parse(name) {
                None => RegistryError::NameInvalid(format!(
                    "invalid repository name {name:?}: use lowercase path segments of letters and digits separated by '.', '_', '__' or '-'"
                ))
                .into_response(),
                Some(repo) => {
                    let (parts, body) = request.into_parts();
                    match admit(&state, &parts, &repo, &endpoint).await {
                    Err(e) => e.into_response(),
                    Ok(caller) => {
                        let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                            .map(|q| q.0)
                            .unwrap_or_default();
                        let client = upload_limits::client_key(
                            caller.account(),
                            access::client_ip(&parts),
                        );
                        let call = Call {
                            client,
                            method: parts.method,
                            repo,
                            headers: parts.headers,
                            query,
                            body,
                            caller,
                        };
                        handle(&state, endpoint, call)
                            .await
                            .unwrap_or_else(IntoResponse::into_response)
                    }
                }
                }
            };
            (label, response)
        }
    };
    response.extensions_mut().insert(EndpointLabel(label));
    response
}

/// The caller, when authentication is off or they have the right the
/// endpoint needs.
async fn admit(
    state: &AppState,
    parts: &Parts,
    repo: &RepoName,
    endpoint: &Endpoint,
) -> ApiResult<Caller> {
    let Some(auth) = &state.auth else {
        return Ok(Caller::Anonymous);
    };
    let asker = access::Asker::of(parts);
    let action = access::action_of(&parts.method, endpoint);
    let challenge = access::challenge_action(&parts.method, endpoint);
    access::admit(state, auth, &asker, repo.as_str(), action, challenge).await
}

async fn handle(state: &AppState, endpoint: Endpoint, call: Call) -> ApiResult<Response> {
    use Endpoint::*;
    let config = state.config();
    if let Some(cache) = state
        .proxy
        .for_repo(&config, &call.repo)
        .map_err(|e| RegistryError::Internal(anyhow::anyhow!(e)))?
    {
        use crate::proxy_cache::serve;
        return match (&call.method, endpoint) {
            (&Method::GET | &Method::HEAD, Blob(d)) => {
                serve::blob(state, &state.proxy, cache, call, &d).await
            }
            (&Method::GET | &Method::HEAD, Manifest(r)) => {
                serve::manifest(state, cache, call, &r).await
            }
            (&Method::GET, Referrers(d)) => serve::referrers(state, cache, call, &d).await,
            (&Method::GET, Tags) => listing::tags(state, call).await,
            // Evicting what is cached is allowed; the next pull fetches it.
            (&Method::DELETE, Manifest(r)) => manifests::delete(state, call, &r).await,
            (&Method::DELETE, Blob(d)) => blobs::delete(state, call, &d).await,
            (&Method::POST | &Method::PUT | &Method::PATCH, _) => {
                Err(RegistryError::Denied(format!(
                    "{} is in namespace {:?}, a pull-through cache of {}: pushes are refused (push to another namespace)",
                    call.repo,
                    call.repo.as_str().split('/').next().unwrap_or_default(),
                    cache.upstream.name()
                )))
            }
            _ => Err(RegistryError::MethodNotAllowed),
        };
    }
    if let Some(namespace) =
        crate::proxy_cache::ProxyCaches::is_cache_namespace(&config, call.repo.as_str())
        && matches!(call.method, Method::POST | Method::PUT | Method::PATCH)
    {
        return Err(RegistryError::Denied(format!(
            "{:?} is a pull-through cache of {}: its repositories are named <namespace>/<path>, and pushes are refused",
            call.repo.as_str(),
            namespace.upstream_registry
        )));
    }
    match (&call.method, endpoint) {
        (&Method::GET | &Method::HEAD, Blob(d)) => blobs::get(state, call, &d).await,
        (&Method::DELETE, Blob(d)) => blobs::delete(state, call, &d).await,
        (&Method::POST, UploadStart) => uploads::start(state, call).await,
        (&Method::GET, Upload(id)) => uploads::status(state, call, &id).await,
        (&Method::PATCH, Upload(id)) => uploads::patch(state, call, &id).await,
        (&Method::PUT, Upload(id)) => uploads::finish(state, call, &id).await,
        (&Method::DELETE, Upload(id)) => uploads::cancel(state, call, &id).await,
        (&Method::GET | &Method::HEAD, Manifest(r)) => manifests::get(state, call, &r).await,
        (&Method::PUT, Manifest(r)) => manifests::put(state, call, &r).await,
        (&Method::DELETE, Manifest(r)) => manifests::delete(state, call, &r).await,
        (&Method::GET, Tags) => listing::tags(state, call).await,
        (&Method::GET, Referrers(d)) => referrers::get(state, call, &d).await,
        _ => Err(RegistryError::MethodNotAllowed),
    }
}

fn record(
    state: &AppState,
    route: &'static str,
    method: &Method,
    response: &Response,
    started: Instant,
) {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method: method.as_str().to_string(),
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
}

/// Build a response from a status, headers and a body.
pub(crate) fn reply(status: StatusCode, headers: &[(HeaderName, String)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let map = response.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            map.insert(name.clone(), v);
        }
    }
    response
}

pub(crate) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");
pub(crate) const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub(crate) const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub(crate) const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub(crate) const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
pub(crate) use header::{CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION, RANGE};

/// Map storage failures that are the client's doing; the rest are internal.
pub(crate) fn storage_error(e: StorageError) -> RegistryError {
    match e {
        StorageError::UploadUnknown => RegistryError::BlobUploadUnknown,
        StorageError::DigestMismatch { expected, actual } => RegistryError::DigestInvalid(format!(
            "uploaded content hashes to {actual}, not the digest {expected} given by the client; nothing was stored"
        )),
        StorageError::Body(e) => body_refusal(&e).unwrap_or_else(|| {
            RegistryError::BlobUploadInvalid(format!(
                "request body ended early or was malformed ({e}); the upload is unchanged, resume from its current size"
            ))
        }),
        StorageError::OffsetMismatch { .. } => {
            RegistryError::Internal(anyhow::anyhow!("unmapped offset mismatch: {e}"))
        }
        StorageError::Io(e) => RegistryError::Internal(e.into()),
    }
}

/// A body the registry itself cut off (idle, or over a staged-bytes
/// limit), as opposed to one the client broke.
fn body_refusal(e: &std::io::Error) -> Option<RegistryError> {
    let inner = e.get_ref()?;
    if let Some(over) = inner.downcast_ref::<upload_limits::StagedBytesExceeded>() {
        return Some(RegistryError::StagedBytesExceeded(over.to_string()));
    }
    inner
        .downcast_ref::<uploads::BodyIdle>()
        .map(|idle| RegistryError::BodyIdle {
            seconds: idle.seconds,
        })
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        storage_error(e)
    }
}

#[cfg(test)]
mod tests;

//! The web UI (docs/ui.md): server-rendered pages on the registry's own
//! port, with its accounts, rights and TLS. `/` redirects to `/ui/`;
//! `/v2/` is untouched. `FEATURE_UI: false` turns it off (404).
//!
//! - `session.rs`: who is looking (session cookie), CSRF;
//! - `inspect.rs`: what stored content is (kinds, configs, charts,
//!   referrer trees);
//! - `pages.rs`: the HTML.
//!
//! Pages show only repositories the viewer may pull; one they may not is
//! "not found", like one that does not exist.

pub mod inspect;
pub mod pages;
pub mod session;

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use maud::Markup;
use serde::Deserialize;

use crate::api::AppState;
use crate::api::access::{Asker, login};
use crate::auth::accounts::Action;
use crate::digest::Digest;
use crate::names::{RepoName, Tag};
use crate::storage::Key;
use inspect::Kind;
use pages::{RepoRow, Site, TagRow};
use session::Viewer;

/// Tag and manifest reads of a repository page in flight at once.
const TAG_READS_AT_ONCE: usize = 32;

/// Security headers of every page: no scripts at all, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes, merged into the registry's router.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(repositories))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_form).post(login_post))
        .route("/ui/logout", post(logout))
        .route("/ui/policy", get(policy))
        .route("/ui/repo/{*name}", get(repository))
        .route("/ui/manifest/{*reference}", get(manifest))
        .route("/ui/delete-tag", post(delete_tag))
        .route_layer(axum::middleware::from_fn_with_state(state, only_when_on))
}

/// The page, with the headers every page has.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn site(state: &AppState, headers: &HeaderMap) -> Site {
    Site {
        host: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| state.config().server_hostname.clone())
            .unwrap_or_else(|| "localhost".into()),
        viewer: session::viewer(state.auth.as_deref(), headers),
        accounts: state.auth.is_some(),
    }
}

/// Whether the viewer may do `action` in `repo`.
fn may(state: &AppState, viewer: &Viewer, repo: &str, action: Action) -> bool {
    match &state.auth {
        None => true,
        Some(auth) => auth
            .rights(
                viewer.account.as_deref(),
                repo,
                &state.config().anonymous_pull_namespaces,
            )
            .contains(&action),
    }
}

fn not_found(site: &Site) -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::message(
            site,
            "Not found",
            "There is no such repository or manifest, or you may not pull it.",
        ),
    )
}

fn failed(site: &Site, what: &str, error: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %error, "UI: {what}");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        pages::message(site, "Something failed", &format!("{what}: {error}")),
    )
}

/// 404 for every UI route while the UI is off.
/// Every UI route answers 404 while `FEATURE_UI` is false (a layer, so no
/// handler has to ask).
async fn only_when_on(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.config().feature_ui {
        true => next.run(request).await,
        false => crate::error::RegistryError::NotFound.into_response(),
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

async fn repositories(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Response {
    let site = site(&state, &headers);
    let mut all = match state.storage.repositories().await {
        Ok(all) => all,
        Err(e) => return failed(&site, "listing the repositories", e),
    };
    all.sort();
    let query = search.q.trim().to_ascii_lowercase();
    let mut rows = Vec::new();
    let mut hidden = false;
    for name in all {
        if !may(&state, &site.viewer, &name, Action::Pull) {
            hidden = true;
            continue;
        }
        if !query.is_empty() && !name.contains(&query) {
            continue;
        }
        let Some(repo) = RepoName::parse(&name) else {
            continue;
        };
        let (tags, blobs) = tagged_content(&state, &repo).await;
        rows.push(RepoRow {
            namespace: crate::quota::namespace_of(&repo).to_string(),
            name,
            tags,
            blobs,
        });
    }
    let hint = hidden && site.viewer.account.is_none();
    page(
        StatusCode::OK,
        pages::repositories(&site, &search.q, &rows, hint),
    )
}

/// How many tags `repo` has, and the blobs (digest, size) its tagged
/// manifests name, an index's platforms included.
async fn tagged_content(state: &AppState, repo: &RepoName) -> (usize, HashMap<String, u64>) {
    let storage = state.storage.as_ref();
    let tags: Vec<Tag> = storage
        .tags_list(repo)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| Tag::parse(t))
        .collect();
    let digests = storage.tag_get_many(repo, &tags).await.unwrap_or_default();
    let mut blobs = HashMap::new();
    let mut pending: Vec<Digest> = digests.into_iter().flatten().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(digest) = pending.pop() {
        if !seen.insert(digest.clone()) || seen.len() > MANIFESTS_SIZED {
            continue;
        }
        let Ok(Some(m)) = state.ui_manifests.get(storage, repo, &digest).await else {
            continue;
        };
        for d in m.layers().into_iter().chain(m.config()) {
            blobs.insert(d.digest, d.size);
        }
        pending.extend(m.entries().iter().filter_map(|e| e.digest.parse().ok()));
    }
    (tags.len(), blobs)
}

/// Manifests looked at per repository to size it.
const MANIFESTS_SIZED: usize = 10_000;

/// `YYYY-MM-DD HH:MM UTC`.
fn when(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

async fn repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let site = site(&state, &headers);
    let Some(repo) = RepoName::parse(&name) else {
        return not_found(&site);
    };
    if !may(&state, &site.viewer, &name, Action::Pull) {
        return not_found(&site);
    }
    let tags = match state.storage.tags_list(&repo).await {
        Ok(Some(tags)) => tags,
        Ok(None) => return not_found(&site),
        Err(e) => return failed(&site, "listing the tags", e),
    };
    let pushed: HashMap<String, String> = state
        .storage
        .kv_list(&Key::tags(&repo))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, when(e.modified)))
        .collect();
    // Referrer tags are folded under the tag of what they belong to.
    let mut rows: Vec<TagRow> = Vec::new();
    let mut supplements: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    // All tags in one read; each manifest from the cache or storage, many
    // at once, in order.
    let storage = state.storage.as_ref();
    let parsed: Vec<Tag> = tags.iter().filter_map(|t| Tag::parse(t)).collect();
    let digests = match storage.tag_get_many(&repo, &parsed).await {
        Ok(digests) => digests,
        Err(e) => return failed(&site, "reading the tags", e),
    };
    let cache = &state.ui_manifests;
    let read = |(tag, digest): (Tag, Option<Digest>)| {
        let repo = &repo;
        async move {
            let manifest = match &digest {
                Some(d) => cache.get(storage, repo, d).await.ok().flatten(),
                None => None,
            };
            (tag.as_str().to_string(), manifest)
        }
    };
    let read: Vec<(String, Option<std::sync::Arc<inspect::Manifest>>)> =
        futures::stream::iter(parsed.into_iter().zip(digests))
            .map(read)
            .buffered(TAG_READS_AT_ONCE)
            .collect()
            .await;
    for (tag, manifest) in read {
        let tag = &tag;
        if let Some(subject) = inspect::referrer_tag_subject(tag) {
            let kind = manifest
                .as_ref()
                .map_or_else(|| "referrers".to_string(), |m| m.kind.label());
            supplements
                .entry(subject)
                .or_default()
                .push((tag.clone(), kind));
            continue;
        }
        rows.push(TagRow {
            tag: tag.clone(),
            manifest,
            pushed: pushed.get(tag).cloned().unwrap_or_default(),
            supplements: Vec::new(),
        });
    }
    for row in &mut rows {
        if let Some(m) = &row.manifest
            && let Some(found) = supplements.get(&m.digest.to_string())
        {
            row.supplements = found.clone();
        }
    }
    let shown: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| r.manifest.as_ref().map(|m| m.digest.to_string()))
        .collect();
    let loose: Vec<(String, String)> = supplements
        .into_iter()
        .filter(|(subject, _)| !shown.contains(subject))
        .flat_map(|(_, tags)| tags)
        .collect();
    let may_delete = site.viewer.account.is_some() || state.auth.is_none();
    let may_delete = may_delete && may(&state, &site.viewer, &name, Action::Delete);
    page(
        StatusCode::OK,
        pages::repository(&site, &name, &rows, &loose, may_delete),
    )
}

async fn manifest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Response {
    let site = site(&state, &headers);
    let Some((name, raw_digest)) = reference.rsplit_once('@') else {
        return not_found(&site);
    };
    let (Some(repo), Ok(digest)) = (RepoName::parse(name), raw_digest.parse::<Digest>()) else {
        return not_found(&site);
    };
    if !may(&state, &site.viewer, name, Action::Pull) {
        return not_found(&site);
    }
    let storage = state.storage.as_ref();
    let m = match inspect::manifest(storage, &repo, &digest).await {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(&site),
        Err(e) => return failed(&site, "reading the manifest", e),
    };
    let all_tags = storage
        .tags_list(&repo)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let parsed: Vec<Tag> = all_tags.iter().filter_map(|t| Tag::parse(t)).collect();
    let tags: Vec<String> = match storage.tag_get_many(&repo, &parsed).await {
        Ok(digests) => parsed
            .iter()
            .zip(digests)
            .filter(|(_, d)| d.as_ref() == Some(&digest))
            .map(|(t, _)| t.as_str().to_string())
            .collect(),
        Err(e) => return failed(&site, "reading the tags", e),
    };
    let config = match m.kind {
        Kind::Image => inspect::image_config(storage, &m).await,
        _ => None,
    };
    let chart = match m.kind {
        Kind::HelmChart => inspect::chart(storage, &m).await,
        _ => None,
    };
    let referrers =
        inspect::referrer_tree(storage, &state.ui_manifests, &repo, &digest, &all_tags).await;
    let body = pages::manifest(
        &site,
        &pages::ManifestPage {
            repo: name,
            manifest: &m,
            tags,
            config,
            chart,
            referrers,
        },
    );
    page(StatusCode::OK, body)
}

async fn policy(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let site = site(&state, &headers);
    let c = state.config();
    let on = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut lines = vec![
        (
            "General OCI artifacts (FEATURE_GENERAL_OCI_SUPPORT)".to_string(),
            match c.feature_general_oci_support {
                true => "accepted, within the allowed types below".to_string(),
                false => "refused: only container images".to_string(),
            },
        ),
        (
            "Helm charts (FEATURE_HELM_OCI_SUPPORT)".into(),
            on(c.feature_helm_oci_support),
        ),
        (
            "Referrers API (FEATURE_REFERRERS_API)".into(),
            on(c.feature_referrers_api),
        ),
    ];
    lines.push((
        "Allowed artifact types (ALLOWED_OCI_ARTIFACT_TYPES)".into(),
        match &c.allowed_oci_artifact_types {
            None => "any".into(),
            Some(types) => types
                .iter()
                .map(|(config, layers)| format!("{config}: {}", layers.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        },
    ));
    let namespace = |n: &str| match n {
        "*" => "every namespace".to_string(),
        n => format!("namespace {n}"),
    };
    let pattern = |p: &str, matches: bool| match matches {
        true => format!("tags matching {p}"),
        false => format!("tags not matching {p}"),
    };
    if c.feature_immutable_tags {
        for p in &c.immutable_tags_policies {
            lines.push((
                "Immutable tags".into(),
                format!(
                    "{}: {} cannot be moved or deleted",
                    namespace(&p.namespace),
                    pattern(&p.tag_pattern, p.tag_pattern_matches)
                ),
            ));
        }
    }
    if c.feature_quota_management {
        for q in &c.namespace_quotas {
            let limits = q
                .limits
                .iter()
                .map(|l| format!("{:?} at {} %", l.kind, l.threshold_percent).to_lowercase())
                .collect::<Vec<_>>()
                .join(", ");
            lines.push((
                "Quota".into(),
                format!(
                    "{}: {} ({limits})",
                    namespace(&q.namespace),
                    crate::quota::short_bytes(q.limit_bytes)
                ),
            ));
        }
    }
    for p in &c.auto_prune_policies {
        let rule = match &p.method {
            crate::retention::PruneMethod::NumberOfTags(n) => {
                format!("the newest {n} tags are kept")
            }
            crate::retention::PruneMethod::CreationDate(age) => {
                format!("tags older than {age} are pruned")
            }
        };
        let scope = match &p.tag_pattern {
            Some(t) => format!(", among {}", pattern(t, p.tag_pattern_matches)),
            None => String::new(),
        };
        lines.push((
            "Retention (auto-prune)".into(),
            format!("{}: {rule}{scope}", namespace(&p.namespace)),
        ));
    }
    page(StatusCode::OK, pages::policy(&site, &lines))
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    login_page(&state, &headers, StatusCode::OK, None)
}

/// The login form with a fresh double-submit token in its cookie.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let mut site = site(state, headers);
    let token = session::random_token();
    site.viewer.csrf = token.clone();
    let mut response = page(status, pages::login(&site, error));
    let https = session::over_https(state.tls, headers);
    let cookie = format!(
        "{}={token}{}",
        session::LOGIN_COOKIE,
        session::cookie_attributes(https, 3600)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Default)]
struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

async fn login_post(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let Some(auth) = state.auth.clone() else {
        return Redirect::to("/ui/").into_response();
    };
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read."),
        );
    };
    let form = login_fields(&bytes);
    let viewer = session::viewer(None, &headers);
    if !session::same_site_post(&headers, &viewer, &form.csrf) {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The form expired or came from another site; sign in again."),
        );
    }
    let asker = Asker::of(&parts);
    let account = match login(&state, &auth, &asker, &form.username, &form.password).await {
        Ok(account) => account,
        Err(crate::error::RegistryError::TooManyRequests { retry_after }) => {
            return login_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many failed sign-ins; try again in {retry_after} s."
                )),
            );
        }
        Err(_) => {
            return login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("Invalid username or password."),
            );
        }
    };
    let token = match session::issue(&auth, &account) {
        Ok(token) => token,
        Err(e) => return failed(&site(&state, &headers), "starting the session", e),
    };
    let https = session::over_https(state.tls, &headers);
    let mut response = Redirect::to("/ui/").into_response();
    let cookies = [
        format!(
            "{}={token}{}",
            session::SESSION_COOKIE,
            session::cookie_attributes(https, session::SESSION_SECONDS)
        ),
        format!(
            "{}=gone{}",
            session::LOGIN_COOKIE,
            session::cookie_attributes(https, 0)
        ),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn login_fields(bytes: &[u8]) -> LoginForm {
    let mut form = LoginForm::default();
    for (k, v) in form_urlencoded::parse(bytes) {
        match k.as_ref() {
            "username" => form.username = v.into_owned(),
            "password" => form.password = v.into_owned(),
            "csrf" => form.csrf = v.into_owned(),
            _ => {}
        }
    }
    form
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let site = site(&state, &headers);
    if !session::same_site_post(&headers, &site.viewer, &form.csrf) {
        return page(
            StatusCode::FORBIDDEN,
            pages::message(
                &site,
                "Refused",
                "The form expired or came from another site.",
            ),
        );
    }
    let https = session::over_https(state.tls, &headers);
    let mut response = Redirect::to("/ui/").into_response();
    let clear = format!(
        "{}=gone{}",
        session::SESSION_COOKIE,
        session::cookie_attributes(https, 0)
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    csrf: String,
    repository: String,
    tag: String,
}

async fn delete_tag(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DeleteForm>,
) -> Response {
    let site = site(&state, &headers);
    let refused = |status, text: &str| page(status, pages::message(&site, "Refused", text));
    if !session::same_site_post(&headers, &site.viewer, &form.csrf) {
        return refused(
            StatusCode::FORBIDDEN,
            "The form expired or came from another site.",
        );
    }
    let (Some(repo), Some(tag)) = (RepoName::parse(&form.repository), Tag::parse(&form.tag)) else {
        return not_found(&site);
    };
    if !may(&state, &site.viewer, &form.repository, Action::Pull) {
        return not_found(&site);
    }
    if !may(&state, &site.viewer, &form.repository, Action::Delete) {
        return refused(
            StatusCode::FORBIDDEN,
            "Your account may not delete in this repository.",
        );
    }
    match crate::api::manifests::delete_tag(&state, &repo, &tag).await {
        Ok(()) => Redirect::to(&pages::repo_url(&form.repository)).into_response(),
        Err(e) => {
            let status = e.code_and_status().1;
            refused(status, &format!("The tag was not deleted: {e}"))
        }
    }
}

//! The gate in front of every `/v2/` route when authentication is on:
//! who is calling (Basic, Bearer or nobody), whether they may do what the
//! endpoint does, and the 401 challenge that sends clients to the token
//! endpoint.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;

use super::AppState;
use super::route::Endpoint;
use crate::auth::accounts::{Action, namespace_of};
use crate::auth::{Auth, Caller, SERVICE, TOKEN_PATH, Verdict};
use crate::error::{ApiResult, RegistryError};
use crate::metrics::ReasonLabels;

/// The client's address (unspecified when the server did not record it,
/// as in handler tests).
pub(crate) fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// What an endpoint does, for the rights check.
pub(crate) fn action_of(method: &Method, endpoint: &Endpoint) -> Action {
    use Endpoint::*;
    match (method, endpoint) {
        (&Method::DELETE, Manifest(_) | Blob(_)) => Action::Delete,
        (_, UploadStart | Upload(_)) => Action::Push,
        (&Method::PUT, Manifest(_)) => Action::Push,
        _ => Action::Pull,
    }
}

/// The action a challenge asks the client to get a token for: the
/// endpoint's, except for a blob `HEAD`. Clients `HEAD` a blob to skip
/// uploading it, which starts a push; one that got a pull-only token there
/// keeps using it for the upload and gives up on the next 401 (the Python
/// ORAS client). So that challenge asks for `pull,push`: the token endpoint
/// still grants only what the account has, so a pull-only account gets a
/// pull token as before.
pub(crate) fn challenge_action(method: &Method, endpoint: &Endpoint) -> Action {
    match (method, endpoint) {
        (&Method::HEAD, Endpoint::Blob(_)) => Action::Push,
        _ => action_of(method, endpoint),
    }
}

/// The token endpoint's URL as the client reached us: the request's host,
/// and https when we serve TLS or a proxy in front says so.
fn realm(state: &AppState, headers: &HeaderMap, uri_host: Option<&str>) -> String {
    let config = state.config();
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or(v).trim().to_string());
    let scheme = match forwarded {
        Some(proto) if proto == "https" || proto == "http" => proto,
        _ if state.tls => "https".to_string(),
        _ => config
            .preferred_url_scheme
            .clone()
            .unwrap_or_else(|| "http".to_string()),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(uri_host)
        .map(str::to_string)
        .or_else(|| config.server_hostname.clone())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{scheme}://{host}{TOKEN_PATH}")
}

/// A request's view needed to answer with a challenge.
pub(crate) struct Asker<'a> {
    pub headers: &'a HeaderMap,
    pub uri_host: Option<&'a str>,
    pub ip: IpAddr,
}

impl<'a> Asker<'a> {
    pub fn of(parts: &'a Parts) -> Asker<'a> {
        Asker {
            headers: &parts.headers,
            uri_host: parts.uri.authority().map(|a| a.as_str()),
            ip: client_ip(parts),
        }
    }

    /// `Bearer realm=…,service=…[,scope=…]`.
    pub fn challenge(&self, state: &AppState, scope: Option<&str>) -> String {
        let realm = realm(state, self.headers, self.uri_host);
        match scope {
            Some(scope) => {
                format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"{scope}\"")
            }
            None => format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\""),
        }
    }

    /// 401 with a challenge.
    pub fn unauthorized(
        &self,
        state: &AppState,
        message: String,
        scope: Option<&str>,
    ) -> RegistryError {
        RegistryError::Unauthorized {
            message,
            challenge: self.challenge(state, scope),
        }
    }
}

/// HTTP Basic credentials from an `Authorization` value.
pub(crate) fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn count(state: &AppState, reason: &'static str) {
    state
        .metrics
        .auth_failures
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// Check a name and password, with the failed-login limit of the address.
pub(crate) async fn login(
    state: &AppState,
    auth: &Auth,
    asker: &Asker<'_>,
    user: &str,
    password: &str,
) -> ApiResult<String> {
    let limit = state.config().auth_failed_logins_per_minute;
    if let Some(retry_after) = auth.failed_logins.blocked(asker.ip, limit, Instant::now()) {
        count(state, "rate_limited");
        return Err(RegistryError::TooManyRequests { retry_after });
    }
    match auth.check_password(user, password).await {
        Ok(Some(account)) => Ok(account),
        Err(crate::auth::PasswordChecksBusy) => {
            count(state, "busy");
            Err(RegistryError::LoginsBusy)
        }
        Ok(None) => {
            auth.failed_logins.record(asker.ip, Instant::now());
            count(state, "bad_credentials");
            // The account name is logged to help admins; never the password.
            tracing::warn!(account = %user, client = %asker.ip, "failed login");
            Err(asker.unauthorized(state, "invalid username or password".into(), None))
        }
    }
}

/// Who is calling, from the `Authorization` header.
pub(crate) async fn authenticate(
    state: &AppState,
    auth: &Auth,
    asker: &Asker<'_>,
) -> ApiResult<Caller> {
    let Some(value) = asker.headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return match auth.verify_token(token.trim()) {
            Ok(claims) => Ok(Caller::Token(claims)),
            Err(e) => {
                count(state, "bad_token");
                Err(asker.unauthorized(state, e.to_string(), None))
            }
        };
    }
    match basic_credentials(value) {
        Some((user, password)) => login(state, auth, asker, &user, &password)
            .await
            .map(Caller::Account),
        None => {
            count(state, "bad_header");
            Err(asker.unauthorized(
                state,
                "the Authorization header is neither Basic nor Bearer".into(),
                None,
            ))
        }
    }
}

/// The challenge scope of an action in a repository (clients ask for
/// `pull,push` when pushing, as docker does).
fn scope_for(repo: &str, action: Action) -> String {
    let actions = match action {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    };
    format!("repository:{repo}:{actions}")
}

/// Authenticate and check the right to `action` in `repo`; a challenge
/// asks for a token for `challenge` (see `challenge_action`).
pub(crate) async fn admit(
    state: &AppState,
    auth: &Auth,
    asker: &Asker<'_>,
    repo: &str,
    action: Action,
    challenge: Action,
) -> ApiResult<Caller> {
    let caller = authenticate(state, auth, asker).await?;
    let anonymous = &state.config().anonymous_pull_namespaces;
    match auth.decide(&caller, repo, action, anonymous) {
        Verdict::Allow => Ok(caller),
        Verdict::Challenge => {
            count(state, "challenge");
            let message = match caller.account() {
                None => format!(
                    "authentication required to {} repository {repo}",
                    action.as_str()
                ),
                Some(_) => format!(
                    "the token does not grant {} on repository {repo}; ask the token endpoint for that scope",
                    action.as_str()
                ),
            };
            Err(asker.unauthorized(state, message, Some(&scope_for(repo, challenge))))
        }
        Verdict::Deny => {
            count(state, "denied");
            let account = caller.account().unwrap_or_default();
            let rights = auth.rights(Some(account), repo, anonymous);
            let rights: Vec<&str> = rights.iter().map(|a| a.as_str()).collect();
            Err(RegistryError::Denied(format!(
                "account {account} may not {} in repository {repo}: its rights in namespace {} are [{}]",
                action.as_str(),
                namespace_of(repo),
                rights.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_credentials() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("robot+ci:pa:ss")
        );
        assert_eq!(
            basic_credentials(&value),
            Some(("robot+ci".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Digest abc"), None);
    }

    #[test]
    fn actions_follow_the_endpoint() {
        use Endpoint::*;
        assert_eq!(action_of(&Method::GET, &Manifest("x".into())), Action::Pull);
        assert_eq!(action_of(&Method::HEAD, &Blob("x".into())), Action::Pull);
        assert_eq!(action_of(&Method::PUT, &Manifest("x".into())), Action::Push);
        assert_eq!(action_of(&Method::GET, &Upload("x".into())), Action::Push);
        assert_eq!(action_of(&Method::POST, &UploadStart), Action::Push);
        // A blob HEAD needs pull, and its challenge asks for push too.
        let blob = Blob("sha256:0".into());
        assert_eq!(action_of(&Method::HEAD, &blob), Action::Pull);
        assert_eq!(challenge_action(&Method::HEAD, &blob), Action::Push);
        assert_eq!(challenge_action(&Method::GET, &blob), Action::Pull);
        assert_eq!(
            challenge_action(&Method::HEAD, &Manifest("x".into())),
            Action::Pull
        );
        assert_eq!(
            action_of(&Method::DELETE, &Manifest("x".into())),
            Action::Delete
        );
        assert_eq!(
            action_of(&Method::DELETE, &Blob("x".into())),
            Action::Delete
        );
        assert_eq!(
            action_of(&Method::DELETE, &Upload("x".into())),
            Action::Push
        );
        assert_eq!(action_of(&Method::GET, &Tags), Action::Pull);
        assert_eq!(
            action_of(&Method::GET, &Referrers("x".into())),
            Action::Pull
        );
    }
}

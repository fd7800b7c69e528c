//! `GET /auth/token` (Docker token flow, Basic credentials or none) and
//! `POST /auth/token` (OAuth2 password grant, as containerd uses): a
//! short-lived token granting the requested scopes the account has.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::access::{Asker, basic_credentials, login};
use crate::auth::Auth;
use crate::auth::accounts::Action;
use crate::auth::token::Scope;
use crate::error::{ApiResult, RegistryError};
use crate::names::RepoName;

/// Largest form body accepted on POST.
const MAX_FORM: usize = 64 * 1024;

pub async fn token_route(State(state): State<AppState>, request: Request) -> Response {
    match state.auth.clone() {
        None => RegistryError::NotFound.into_response(),
        Some(auth) => issue(&state, &auth, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

/// An OAuth2 error body (RFC 6749 section 5.2), for the POST form.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn issue(state: &AppState, auth: &Auth, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let asker = Asker::of(&parts);
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_pairs(q.as_bytes()))
        .unwrap_or_default();
    let (account, scopes, oauth) = match parts.method {
        Method::GET => {
            let account = match parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            {
                None => None,
                Some(value) => match basic_credentials(value) {
                    Some((user, password)) => {
                        Some(login(state, auth, &asker, &user, &password).await?)
                    }
                    None => {
                        return Err(asker.unauthorized(
                            state,
                            "the token endpoint takes HTTP Basic credentials".into(),
                            None,
                        ));
                    }
                },
            };
            let scopes = Scope::parse_all(
                query
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            );
            (account, scopes, false)
        }
        Method::POST => {
            let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM)
                .await
                .map_err(|e| RegistryError::Unsupported(format!("token request body: {e}")))?;
            let form: HashMap<String, String> = form_pairs(&bytes).into_iter().collect();
            match form.get("grant_type").map(String::as_str) {
                Some("password") => {}
                other => {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "unsupported_grant_type",
                        &format!(
                            "grant_type {other:?} is not supported: use password (or GET with Basic credentials)"
                        ),
                    ));
                }
            }
            let user = form.get("username").cloned().unwrap_or_default();
            let password = form.get("password").cloned().unwrap_or_default();
            let account = login(state, auth, &asker, &user, &password).await?;
            let scopes = Scope::parse_all(form.get("scope").map(String::as_str).into_iter());
            (Some(account), scopes, true)
        }
        _ => return Err(RegistryError::MethodNotAllowed),
    };

    let config = state.config();
    let anonymous = &config.anonymous_pull_namespaces;
    let granted: Vec<Scope> = scopes
        .into_iter()
        .filter_map(|scope| grant(auth, account.as_deref(), anonymous, scope))
        .collect();
    let lifetime = config.auth_token_lifetime_seconds;
    let (token, _) = auth
        .issue_token(account.as_deref(), granted, lifetime)
        .map_err(|e| RegistryError::Internal(anyhow::anyhow!(e)))?;
    state.metrics.tokens_issued.inc();
    let body = if oauth {
        json!({ "access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": "" })
    } else {
        json!({ "token": token, "access_token": token, "expires_in": lifetime })
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The part of a requested scope the caller may have; `None` for nothing.
fn grant(auth: &Auth, account: Option<&str>, anonymous: &[String], scope: Scope) -> Option<Scope> {
    match scope.kind.as_str() {
        "repository" => {
            let repo = RepoName::parse(&scope.name)?;
            let rights = auth.rights(account, repo.as_str(), anonymous);
            let mut actions: Vec<Action> = scope
                .actions
                .iter()
                .flat_map(|a| Action::parse_scope_action(a))
                .filter(|a| rights.contains(a))
                .collect();
            actions.sort();
            actions.dedup();
            (!actions.is_empty()).then(|| Scope {
                kind: scope.kind,
                name: scope.name,
                actions: actions.iter().map(|a| a.as_str().to_string()).collect(),
            })
        }
        "registry" if scope.name == "catalog" => {
            let may = account.is_some() || !anonymous.is_empty();
            may.then(|| Scope {
                kind: scope.kind,
                name: scope.name,
                actions: vec!["*".into()],
            })
        }
        _ => None,
    }
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(
            form_pairs(b"grant_type=password&scope=repository%3Aa%2Fb%3Apull+push&x"),
            vec![
                ("grant_type".into(), "password".into()),
                ("scope".into(), "repository:a/b:pull push".into()),
                ("x".into(), "".into())
            ]
        );
    }
}

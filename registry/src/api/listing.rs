//! Tag list and catalog, both paginated with `n`/`last` and a `Link`
//! header pointing at the next page.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::access::{Asker, authenticate};
use super::{AppState, CONTENT_TYPE, Call, LINK, reply};
use crate::auth::accounts::Action;
use crate::error::{ApiResult, RegistryError};
use axum::http::request::Parts;

/// One page of a sorted list: entries after `last`, at most `n`, and
/// whether more follow.
fn page<'a>(sorted: &'a [String], n: Option<usize>, last: Option<&str>) -> (&'a [String], bool) {
    let start = match last {
        Some(last) => sorted.partition_point(|s| s.as_str() <= last),
        None => 0,
    };
    let rest = &sorted[start..];
    match n {
        Some(n) if n < rest.len() => (&rest[..n], n > 0),
        _ => (rest, false),
    }
}

/// `n` and `last` of a listing request. `n` is at most `max` (also when
/// absent): the spec lets a registry return fewer entries than asked, with
/// a `Link` to the rest, and a listing of a large store must not be one
/// unbounded response.
fn page_params(
    query: &[(String, String)],
    max: usize,
) -> ApiResult<(Option<usize>, Option<String>)> {
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let n = match get("n") {
        None => max,
        Some(raw) => raw.parse::<usize>().map_err(|_| {
            RegistryError::SizeInvalid(format!("n={raw:?} is not a non-negative integer"))
        })?,
    };
    Ok((Some(n.min(max)), get("last").cloned()))
}

fn paged_reply(
    path: &str,
    body: serde_json::Value,
    n: Option<usize>,
    next_after: Option<&String>,
) -> Response {
    let mut headers: Vec<(HeaderName, String)> = vec![(CONTENT_TYPE, "application/json".into())];
    if let (Some(n), Some(last)) = (n, next_after) {
        headers.push((LINK, format!("<{path}?n={n}&last={last}>; rel=\"next\"")));
    }
    reply(StatusCode::OK, &headers, Body::from(body.to_string()))
}

pub async fn tags(state: &AppState, call: Call) -> ApiResult<Response> {
    let (n, last) = page_params(&call.query, state.config().maximum_list_entries)?;
    let all = state
        .storage
        .tags_list(&call.repo)
        .await?
        .ok_or_else(|| RegistryError::NameUnknown(call.repo.to_string()))?;
    let (entries, more) = page(&all, n, last.as_deref());
    let body = json!({ "name": call.repo.as_str(), "tags": entries });
    let next = more.then(|| entries.last()).flatten();
    Ok(paged_reply(
        &format!("/v2/{}/tags/list", call.repo),
        body,
        n,
        next,
    ))
}

pub async fn catalog_route(State(state): State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    let query = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let (parts, _body) = request.into_parts();
    match method {
        Method::GET => catalog(&state, &parts, &query)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        _ => RegistryError::MethodNotAllowed.into_response(),
    }
}

/// With authentication on, the catalog lists only what the caller may pull.
async fn visible_filter(
    state: &AppState,
    parts: &Parts,
) -> ApiResult<Option<Box<dyn Fn(&str) -> bool + Send>>> {
    let Some(auth) = state.auth.clone() else {
        return Ok(None);
    };
    let asker = Asker::of(parts);
    let caller = authenticate(state, &auth, &asker).await?;
    let anonymous = state.config().anonymous_pull_namespaces.clone();
    if caller.account().is_none() && anonymous.is_empty() {
        return Err(asker.unauthorized(
            state,
            "authentication required to list repositories".into(),
            Some("registry:catalog:*"),
        ));
    }
    let account = caller.account().map(str::to_string);
    Ok(Some(Box::new(move |repo: &str| {
        auth.rights(account.as_deref(), repo, &anonymous)
            .contains(&Action::Pull)
    })))
}

async fn catalog(
    state: &AppState,
    parts: &Parts,
    query: &[(String, String)],
) -> ApiResult<Response> {
    let visible = visible_filter(state, parts).await?;
    let (n, last) = page_params(query, state.config().maximum_list_entries)?;
    let mut all = state.storage.repositories().await?;
    if let Some(visible) = visible {
        all.retain(|repo| visible(repo));
    }
    let (entries, more) = page(&all, n, last.as_deref());
    let next = more.then(|| entries.last()).flatten();
    Ok(paged_reply(
        "/v2/_catalog",
        json!({ "repositories": entries }),
        n,
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(page(&all, None, None), (&all[..], false));
        assert_eq!(page(&all, Some(2), None), (&all[..2], true));
        assert_eq!(page(&all, Some(2), Some("b")), (&all[2..], false));
        assert_eq!(page(&all, Some(5), Some("a")), (&all[1..], false));
        assert_eq!(page(&all, Some(0), None), (&all[..0], false));
        assert_eq!(page(&all, None, Some("bb")), (&all[2..], false));
    }
}

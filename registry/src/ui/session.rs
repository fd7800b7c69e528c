//! Who is looking at the UI, and the cookies that say so.
//!
//! A login sets `quarry_session`: a token signed with the registry's token
//! key (the one `/v2/token` signs with, shared by the replicas), for the
//! account, carrying only the `ui:session` scope. It grants nothing at
//! `/v2/`, and a `/v2/` token is not a session: each is refused where the
//! other belongs. Rights are looked up live on every page, so a removed
//! right or account takes effect at once.
//!
//! Cookies are HttpOnly, SameSite=Strict, and Secure over HTTPS (also
//! behind a proxy that says `X-Forwarded-Proto: https`). Every form that
//! changes something carries a CSRF token: for a session, a hash of the
//! session token (which a page from elsewhere cannot read); for the login
//! form, the random value of the `quarry_login` cookie (double submit).
//! Posts whose `Origin` names another host are refused too.

use axum::http::{HeaderMap, header};
use sha2::{Digest as _, Sha256};

use crate::auth::Auth;
use crate::auth::token::Scope;

pub const SESSION_COOKIE: &str = "quarry_session";
pub const LOGIN_COOKIE: &str = "quarry_login";
/// How long a UI session lasts.
pub const SESSION_SECONDS: u64 = 8 * 3600;
const SESSION_SCOPE: &str = "ui";

/// The viewer of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The logged-in account; `None`: anonymous (or no authentication at
    /// all, when the registry has no accounts).
    pub account: Option<String>,
    /// The CSRF token of the forms this viewer may post.
    pub csrf: String,
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token that goes with a session token.
pub fn csrf_of(session: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"quarry-ui-csrf\0");
    hash.update(session.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// A session token for `account`.
pub fn issue(auth: &Auth, account: &str) -> Result<String, String> {
    let scope = Scope {
        kind: SESSION_SCOPE.into(),
        name: "session".into(),
        actions: Vec::new(),
    };
    auth.issue_token(Some(account), vec![scope], SESSION_SECONDS)
        .map(|(token, _)| token)
}

/// The viewer the request's cookies name. A session that is invalid,
/// expired, not a UI session, or of an account that is gone counts as
/// anonymous.
pub fn viewer(auth: Option<&Auth>, headers: &HeaderMap) -> Viewer {
    let login_csrf = || Viewer {
        account: None,
        csrf: cookie(headers, LOGIN_COOKIE)
            .unwrap_or_default()
            .to_string(),
    };
    let (Some(auth), Some(token)) = (auth, cookie(headers, SESSION_COOKIE)) else {
        return login_csrf();
    };
    match auth.verify_token(token) {
        Ok(claims)
            if !claims.sub.is_empty()
                && claims.access.iter().any(|s| s.kind == SESSION_SCOPE)
                && auth.has_account(&claims.sub) =>
        {
            Viewer {
                account: Some(claims.sub),
                csrf: csrf_of(token),
            }
        }
        _ => login_csrf(),
    }
}

/// Whether a state-changing request came from this site's own page: the
/// CSRF field matches, and the Origin (when sent) is this host.
pub fn same_site_post(headers: &HeaderMap, viewer: &Viewer, csrf_field: &str) -> bool {
    let token_ok = !viewer.csrf.is_empty()
        && subtle::ConstantTimeEq::ct_eq(viewer.csrf.as_bytes(), csrf_field.as_bytes()).into();
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        }
    };
    token_ok && origin_ok
}

/// The attributes every cookie of the UI has.
pub fn cookie_attributes(https: bool, max_age: u64) -> String {
    let secure = if https { "; Secure" } else { "" };
    format!("; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// Whether the client sees this server over HTTPS.
pub fn over_https(tls: bool, headers: &HeaderMap) -> bool {
    tls || headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A fresh random value for the login form's cookie.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; quarry_session=tok.en; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok.en"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn a_post_needs_the_token_and_this_origin() {
        let viewer = Viewer {
            account: Some("alice".into()),
            csrf: csrf_of("session"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("reg.example:5000"));
        assert!(same_site_post(&headers, &viewer, &csrf_of("session")));
        assert!(!same_site_post(&headers, &viewer, "forged"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_site_post(&headers, &viewer, &csrf_of("session")));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://reg.example:5000"),
        );
        assert!(same_site_post(&headers, &viewer, &csrf_of("session")));
        let nobody = Viewer {
            account: None,
            csrf: String::new(),
        };
        assert!(
            !same_site_post(&headers, &nobody, ""),
            "an empty token passed"
        );
    }
}

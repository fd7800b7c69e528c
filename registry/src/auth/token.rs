//! Bearer tokens of the Docker/OCI token flow: scopes as clients ask for
//! them (`repository:team/app:pull,push`), and short-lived JWTs signed
//! with HS256 by a secret every replica shares.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::accounts::Action;

/// Issuer named in every token.
pub const ISSUER: &str = "quarry-registry";

/// Shortest signing secret accepted (HS256 wants at least 256 bits).
pub const MIN_KEY_LEN: usize = 32;

/// One resource a client asks access to, as written in a `scope` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Actions as strings (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

impl Scope {
    /// Parse `type:name:action,action`. A repository name has no `:`, but
    /// a type may carry a `(class)` suffix, which is dropped.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Every scope in the `scope` parameters of a token request (one
    /// parameter may hold several, separated by spaces).
    pub fn parse_all<'a>(params: impl Iterator<Item = &'a str>) -> Vec<Scope> {
        params
            .flat_map(|p| p.split(' '))
            .filter_map(Scope::parse)
            .collect()
    }

    /// The challenge form `repository:name:pull,push`.
    pub fn challenge(kind: &str, name: &str, actions: &[Action]) -> String {
        let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        format!("{kind}:{name}:{}", actions.join(","))
    }

    /// Whether this grant allows `action` on repository `repo`.
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.kind == "repository"
            && self.name == repo
            && self
                .actions
                .iter()
                .any(|a| Action::parse_scope_action(a).contains(&action))
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Account name; empty for an anonymous token.
    pub sub: String,
    /// The service the token is for.
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    /// What the token grants.
    pub access: Vec<Scope>,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the bearer token has expired; log in again")]
    Expired,
    #[error("the bearer token is not valid here ({0})")]
    Invalid(String),
}

/// The shared signing secret.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from the secret's bytes (a trailing newline is ignored).
    pub fn from_secret(secret: &[u8]) -> Result<TokenKey, String> {
        let secret = secret.strip_suffix(b"\n").unwrap_or(secret);
        if secret.len() < MIN_KEY_LEN {
            return Err(format!(
                "the token signing secret has {} bytes; at least {MIN_KEY_LEN} are needed",
                secret.len()
            ));
        }
        Ok(TokenKey {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// Sign a token for `sub` granting `access`, valid for `lifetime_secs`.
    pub fn issue(
        &self,
        sub: &str,
        service: &str,
        access: Vec<Scope>,
        lifetime_secs: u64,
    ) -> Result<(String, Claims), String> {
        let now = now_secs();
        let claims = Claims {
            iss: ISSUER.to_string(),
            sub: sub.to_string(),
            aud: service.to_string(),
            exp: now + lifetime_secs,
            nbf: now.saturating_sub(10),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|token| (token, claims))
            .map_err(|e| format!("cannot sign token: {e}"))
    }

    /// Check signature, issuer, audience and lifetime.
    pub fn verify(&self, token: &str, service: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[service]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_secret(&[7u8; 32]).unwrap()
    }

    #[test]
    fn parses_scopes() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push"),
            Some(Scope {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()]
            })
        );
        assert_eq!(
            Scope::parse("repository(plugin):a:pull").map(|s| s.kind),
            Some("repository".into())
        );
        assert_eq!(
            Scope::parse("registry:catalog:*").map(|s| s.name),
            Some("catalog".into())
        );
        assert_eq!(Scope::parse("nonsense"), None);
        let all = Scope::parse_all(["repository:a:pull repository:b:push", "x"].into_iter());
        assert_eq!(all.len(), 2);
        assert!(all[1].allows("b", Action::Push));
        assert!(!all[1].allows("b", Action::Pull));
        assert!(!all[1].allows("a", Action::Push));
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_key_and_service() {
        let scope = Scope::parse("repository:a:pull").unwrap();
        let (token, claims) = key().issue("alice", "svc", vec![scope], 60).unwrap();
        assert_eq!(key().verify(&token, "svc").unwrap(), claims);
        assert!(matches!(
            key().verify(&token, "other"),
            Err(TokenError::Invalid(_))
        ));
        let other = TokenKey::from_secret(&[8u8; 32]).unwrap();
        assert!(matches!(
            other.verify(&token, "svc"),
            Err(TokenError::Invalid(_))
        ));
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert!(key().verify(&tampered, "svc").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let mut claims = key().issue("alice", "svc", vec![], 60).unwrap().1;
        claims.exp = now_secs() - 5;
        claims.nbf = claims.exp - 100;
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key().encoding).unwrap();
        assert_eq!(key().verify(&token, "svc"), Err(TokenError::Expired));
    }

    /// Tokens that must never pass: unsigned (`alg: none`), another HMAC
    /// algorithm with the same secret, another issuer, not yet valid, and
    /// an RSA-style header over an HMAC signature (algorithm confusion).
    #[test]
    fn forged_and_confused_tokens_are_refused() {
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let (token, claims) = key().issue("alice", "svc", vec![], 60).unwrap();
        let body = token.split('.').nth(1).unwrap().to_string();
        let signature = token.split('.').nth(2).unwrap().to_string();
        let claims_json = serde_json::to_value(&claims).unwrap();
        let unsigned = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims_json)
        );
        let relabelled = format!(
            "{}.{body}.{signature}",
            b64(&serde_json::json!({"alg": "RS256", "typ": "JWT"}))
        );
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key().encoding).unwrap();
        let mut foreign = claims.clone();
        foreign.iss = "someone-else".into();
        let foreign =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &foreign, &key().encoding)
                .unwrap();
        let mut early = claims.clone();
        early.nbf = now_secs() + 60;
        let early =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &early, &key().encoding).unwrap();
        for (what, forged) in [
            ("alg none", unsigned),
            ("RS256 header", relabelled),
            ("HS512", hs512),
            ("other issuer", foreign),
            ("not yet valid", early),
            ("empty", String::new()),
            ("garbage", "a.b.c".to_string()),
        ] {
            assert!(
                matches!(key().verify(&forged, "svc"), Err(TokenError::Invalid(_))),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKey::from_secret(b"short\n").is_err());
    }
}

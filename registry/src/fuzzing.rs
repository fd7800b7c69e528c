//! Entry points of the fuzz targets (`fuzz/`, `make fuzz`): each takes
//! arbitrary bytes, feeds them to a parser of untrusted input, and must
//! return without panicking, whatever the bytes. `make test` replays the
//! committed corpus and every input that once crashed (`fuzz/corpus/`,
//! `fuzz/regressions/`) through the same functions (tests below).

use axum::http::{HeaderMap, HeaderValue, header};

use crate::auth::accounts::AccountsFile;
use crate::auth::token::{Scope, TokenKey};
use crate::config::RegistryConfig;
use crate::digest::{Algorithm, Digest};
use crate::manifest::{
    self, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED, DOCKER_MANIFEST_V2,
    OCI_INDEX, OCI_MANIFEST,
};
use crate::names::{Reference, RepoName, Tag};

/// A fuzz target: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (a folder each under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("names", names),
    ("ranges", ranges),
    ("credentials", credentials),
    ("config", config),
];

/// Manifest inspection, every media type: the first byte picks the
/// Content-Type (or none), the second the digest algorithm.
pub fn manifest(data: &[u8]) {
    const TYPES: &[Option<&str>] = &[
        None,
        Some(OCI_MANIFEST),
        Some(OCI_INDEX),
        Some(DOCKER_MANIFEST_V2),
        Some(DOCKER_MANIFEST_LIST),
        Some(DOCKER_MANIFEST_V1),
        Some(DOCKER_MANIFEST_V1_SIGNED),
        Some("application/json"),
        Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    ];
    let (content_type, rest) = match data.split_first() {
        Some((first, rest)) => (TYPES[usize::from(*first) % TYPES.len()], rest),
        None => (None, data),
    };
    let (algorithm, body) = match rest.split_first() {
        Some((b, body)) if b % 2 == 1 => (Algorithm::Sha512, body),
        Some((_, body)) => (Algorithm::Sha256, body),
        None => (Algorithm::Sha256, rest),
    };
    let _ = manifest::inspect(content_type, body, algorithm);
}

/// Repository names, tags, references, digests, request paths, token
/// scopes and Quay durations.
pub fn names(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = RepoName::parse(&text);
    let _ = Tag::parse(&text);
    let _ = Reference::parse(&text);
    let _ = text.parse::<Digest>();
    let _ = crate::api::route::parse(&text);
    let _ = Scope::parse_all(std::iter::once(text.as_ref()));
    let _ = crate::retention::parse_duration(&text);
}

/// `Range` (against a blob size taken from the first 8 bytes) and
/// `Content-Range`.
pub fn ranges(data: &[u8]) {
    let (size, rest) = match data.split_first_chunk::<8>() {
        Some((size, rest)) => (u64::from_le_bytes(*size), rest),
        None => (0, data),
    };
    let text = String::from_utf8_lossy(rest);
    let _ = crate::api::blobs::parse_range(&text, size);
    if let Ok(value) = HeaderValue::from_bytes(rest) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_RANGE, value);
        let _ = crate::api::uploads::content_range(&headers);
    }
}

/// `Authorization` values: Basic credentials and bearer tokens.
pub fn credentials(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::api::access::basic_credentials(&text);
    if let Ok(key) = TokenKey::from_secret(&[7u8; 32]) {
        let token = text.strip_prefix("Bearer ").unwrap_or(&text);
        let _ = key.verify(token, "quarry-registry");
    }
}

/// `config.yaml` and the accounts file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = RegistryConfig::from_yaml(&text, None);
    let _ = AccountsFile::from_yaml(&text);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn inputs(target: &str) -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            if let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) {
                files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        }
        files.sort();
        files
    }

    /// Every committed input of every target runs through it; a target
    /// without inputs fails rather than passing on nothing.
    #[test]
    fn the_committed_corpus_and_regressions_replay_without_a_panic() {
        for (name, target) in TARGETS {
            let files = inputs(name);
            assert!(
                !files.is_empty(),
                "no corpus for fuzz target {name} under fuzz/corpus/{name}"
            );
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz target {name} panics on {}",
                    file.display()
                );
            }
        }
    }
}

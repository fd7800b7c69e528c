//! What the registry knows besides blob content — which blobs and manifests
//! a repository holds, its tags, the referrers of a subject — written once,
//! over a small key-value layer that each backend implements in a few lines
//! (a file per key on the filesystem, an object per key in a bucket).
//!
//! Keys, the same on every backend, relative to the storage root:
//! ```text
//! repositories/<name>/_layers/<alg>/<hex>                  blob link (empty)
//! repositories/<name>/_manifests/<alg>/<hex>               manifest link (media type)
//! repositories/<name>/_tags/<tag>                          tag -> digest
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>.json   referrer descriptor
//! repositories/<name>/_retention/<tag>                     a tag removal's mark (retention/removal.rs)
//! repositories/<name>/_proxy/<tag>                         a cached tag's last upstream check (proxy_cache)
//! _gc/condemned/<hex>                                      garbage collection's
//! _gc/deleting/<hex>                                         markers (gc/markers.rs)
//! _mirror/<name>/<period>                                  a mirror sync period's claim (mirror/mod.rs)
//! ```
//! Repository path segments never start with `_`, so the `_` folders cannot
//! collide with nested repositories. Blob content and upload sessions are
//! not here: how they are laid out and written is each backend's own.

use bytes::Bytes;

use super::{ReferrerDescriptor, StorageResult};
use crate::digest::{Algorithm, Digest};
use crate::names::{RepoName, Tag};

/// A metadata key. Built only from checked repository names, tags and
/// digests (below), so it never holds `..`, an empty segment or a leading
/// `/`: backends may join it to their root as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn in_repo(repo: &RepoName, rest: &str) -> Key {
        Key(format!("repositories/{repo}/{rest}"))
    }

    pub fn layer(repo: &RepoName, digest: &Digest) -> Key {
        Key::in_repo(repo, &format!("_layers/{}", digest_path(digest)))
    }

    pub fn layers(repo: &RepoName) -> Key {
        Key::in_repo(repo, "_layers")
    }

    pub fn manifest(repo: &RepoName, digest: &Digest) -> Key {
        Key::in_repo(repo, &format!("_manifests/{}", digest_path(digest)))
    }

    pub fn manifests(repo: &RepoName) -> Key {
        Key::in_repo(repo, "_manifests")
    }

    /// The manifest links of one digest algorithm (`.../_manifests/sha256`).
    pub fn manifests_of(repo: &RepoName, algorithm: Algorithm) -> Key {
        Key::in_repo(repo, &format!("_manifests/{}", algorithm.name()))
    }

    /// The blob links of one digest algorithm (`.../_layers/sha256`).
    pub fn layers_of(repo: &RepoName, algorithm: Algorithm) -> Key {
        Key::in_repo(repo, &format!("_layers/{}", algorithm.name()))
    }

    pub fn tag(repo: &RepoName, tag: &Tag) -> Key {
        Key::in_repo(repo, &format!("_tags/{tag}"))
    }

    pub fn retention_mark(repo: &RepoName, tag: &Tag) -> Key {
        Key::in_repo(repo, &format!("_retention/{tag}"))
    }

    pub fn retention_marks(repo: &RepoName) -> Key {
        Key::in_repo(repo, "_retention")
    }

    /// When a tag of a cache namespace was last found current upstream.
    pub fn proxy_tag_check(repo: &RepoName, tag: &Tag) -> Key {
        Key::in_repo(repo, &format!("_proxy/{tag}"))
    }

    pub fn tags(repo: &RepoName) -> Key {
        Key::in_repo(repo, "_tags")
    }

    pub fn referrers(repo: &RepoName, subject: &Digest) -> Key {
        Key::in_repo(repo, &format!("_referrers/{}", digest_path(subject)))
    }

    /// A garbage collection marker of one phase (`condemned`, `deleting`),
    /// named by the hash of what it marks.
    pub fn gc_marker(phase: &str, id: &Digest) -> Key {
        Key(format!("_gc/{phase}/{}", id.hex()))
    }

    /// The claim of one sync period of a mirror (mirror/mod.rs): whoever
    /// creates it first syncs that period.
    pub fn mirror_claim(repo: &RepoName, period: u64) -> Key {
        Key(format!("_mirror/{repo}/{period}"))
    }

    /// The last sync of a mirror (mirror/status.rs).
    pub fn mirror_last_sync(repo: &RepoName) -> Key {
        Key::in_repo(repo, "_mirror/last_sync")
    }

    /// Every sync-period claim of a mirror.
    pub fn mirror_claims(repo: &RepoName) -> Key {
        Key(format!("_mirror/{repo}"))
    }

    /// Every garbage collection marker of one phase.
    pub fn gc_markers(phase: &str) -> Key {
        Key(format!("_gc/{phase}"))
    }

    pub fn referrer(repo: &RepoName, subject: &Digest, referrer: &Digest) -> Key {
        Key(format!(
            "{}/{}-{}.json",
            Key::referrers(repo, subject).0,
            referrer.algorithm().name(),
            referrer.hex()
        ))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn digest_path(digest: &Digest) -> String {
    format!("{}/{}", digest.algorithm().name(), digest.hex())
}

/// A value found under a prefix: its last name segment, and when it was
/// last written (what garbage collection's grace period is measured from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub modified: std::time::SystemTime,
}

/// The key-value layer a backend provides. Every `kv_put` is atomic and
/// durable: a reader sees the old value or the whole new one, never a part,
/// and a crash after it returned loses nothing.
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync {
    async fn kv_get(&self, key: &Key) -> StorageResult<Option<Bytes>>;
    /// `kv_get` of each key, in order (a backend may read them in one go).
    async fn kv_get_many(&self, keys: &[Key]) -> StorageResult<Vec<Option<Bytes>>> {
        futures::future::try_join_all(keys.iter().map(|k| self.kv_get(k))).await
    }
    async fn kv_put(&self, key: &Key, value: Bytes) -> StorageResult<()>;
    /// Like `kv_put`, but only when nothing is at `key`, atomically against
    /// every other writer of the store (other replicas included). Returns
    /// false, writing nothing, when something was there.
    async fn kv_create(&self, key: &Key, value: Bytes) -> StorageResult<bool>;
    /// Returns false when there was nothing to delete.
    async fn kv_delete(&self, key: &Key) -> StorageResult<bool>;
    async fn kv_exists(&self, key: &Key) -> StorageResult<bool>;
    /// The values directly under `prefix` (not those of deeper folders),
    /// with when each was last written, in no particular order; empty when
    /// there is none.
    async fn kv_list(&self, prefix: &Key) -> StorageResult<Vec<Entry>>;
    /// Names of the values directly under `prefix`.
    async fn kv_names(&self, prefix: &Key) -> StorageResult<Vec<String>> {
        Ok(self
            .kv_list(prefix)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }
    /// Whether anything at all lies under `prefix`.
    async fn kv_any_under(&self, prefix: &Key) -> StorageResult<bool>;
}

fn corrupt(what: String) -> super::StorageError {
    super::StorageError::Io(std::io::Error::other(what))
}

/// The values of a repository's digest folders (`folder` is
/// `Key::manifests_of` or `Key::layers_of`), by digest, with when each was
/// written; names that are not digests are left out.
pub async fn digests_under<S: KeyValue + ?Sized>(
    s: &S,
    folder: fn(&RepoName, Algorithm) -> Key,
    repo: &RepoName,
) -> StorageResult<std::collections::BTreeMap<Digest, std::time::SystemTime>> {
    let mut out = std::collections::BTreeMap::new();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        for entry in s.kv_list(&folder(repo, algorithm)).await? {
            if let Ok(digest) = format!("{}:{}", algorithm.name(), entry.name).parse::<Digest>() {
                out.insert(digest, entry.modified);
            }
        }
    }
    Ok(out)
}

// The operations of the Storage trait that are metadata only. The trait's
// default methods call these, so both backends share one implementation.

pub(super) async fn blob_link<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<()> {
    let key = Key::layer(repo, digest);
    if !s.kv_exists(&key).await? {
        s.kv_put(&key, Bytes::new()).await?;
    }
    Ok(())
}

/// The media type a manifest was pushed with, if `repo` holds it.
pub(super) async fn manifest_media_type<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<Option<String>> {
    Ok(s.kv_get(&Key::manifest(repo, digest))
        .await?
        .map(|raw| String::from_utf8_lossy(&raw).into_owned()))
}

pub(super) async fn manifest_link<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    digest: &Digest,
    media_type: &str,
) -> StorageResult<()> {
    s.kv_put(
        &Key::manifest(repo, digest),
        Bytes::from(media_type.to_string()),
    )
    .await
}

pub(super) async fn tag_get<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    tag: &Tag,
) -> StorageResult<Option<Digest>> {
    let Some(raw) = s.kv_get(&Key::tag(repo, tag)).await? else {
        return Ok(None);
    };
    let digest = String::from_utf8_lossy(&raw)
        .trim()
        .parse()
        .map_err(|e| corrupt(format!("corrupt tag {repo}:{tag}: {e}")))?;
    Ok(Some(digest))
}

/// The digests `tags` of `repo` name, in order (`None`: no such tag).
pub(super) async fn tag_get_many<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    tags: &[Tag],
) -> StorageResult<Vec<Option<Digest>>> {
    let keys: Vec<Key> = tags.iter().map(|t| Key::tag(repo, t)).collect();
    s.kv_get_many(&keys)
        .await?
        .into_iter()
        .zip(tags)
        .map(|(raw, tag)| {
            raw.map(|raw| {
                String::from_utf8_lossy(&raw)
                    .trim()
                    .parse()
                    .map_err(|e| corrupt(format!("corrupt tag {repo}:{tag}: {e}")))
            })
            .transpose()
        })
        .collect()
}

pub(super) async fn tags_list<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
) -> StorageResult<Option<Vec<String>>> {
    if !repo_exists(s, repo).await? {
        return Ok(None);
    }
    let mut tags: Vec<String> = s
        .kv_names(&Key::tags(repo))
        .await?
        .into_iter()
        .filter(|name| Tag::parse(name).is_some())
        .collect();
    tags.sort();
    Ok(Some(tags))
}

pub(super) async fn referrer_add<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    subject: &Digest,
    referrer: &ReferrerDescriptor,
) -> StorageResult<()> {
    let json = serde_json::to_vec(referrer).map_err(std::io::Error::other)?;
    s.kv_put(
        &Key::referrer(repo, subject, &referrer.digest),
        Bytes::from(json),
    )
    .await
}

/// Referrers of `subject`, ordered by digest. One removed while listing is
/// left out rather than failing the whole list.
pub(super) async fn referrers<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
    subject: &Digest,
) -> StorageResult<Vec<ReferrerDescriptor>> {
    let prefix = Key::referrers(repo, subject);
    let keys: Vec<Key> = s
        .kv_names(&prefix)
        .await?
        .into_iter()
        .filter(|name| name.ends_with(".json"))
        .map(|name| Key(format!("{prefix}/{name}")))
        .collect();
    let mut out = Vec::new();
    for (key, raw) in keys.iter().zip(s.kv_get_many(&keys).await?) {
        let Some(raw) = raw else {
            continue; // removed meanwhile
        };
        let descriptor: ReferrerDescriptor = serde_json::from_slice(&raw)
            .map_err(|e| corrupt(format!("corrupt referrer {key}: {e}")))?;
        out.push(descriptor);
    }
    out.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(out)
}

/// A repository exists while it holds a blob link or a manifest.
pub(super) async fn repo_exists<S: KeyValue + ?Sized>(
    s: &S,
    repo: &RepoName,
) -> StorageResult<bool> {
    Ok(s.kv_any_under(&Key::layers(repo)).await? || s.kv_any_under(&Key::manifests(repo)).await?)
}

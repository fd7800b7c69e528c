//! Storage behind one trait. Everything the registry knows — blobs, upload
//! sessions, manifests, tags, referrer links — lives in the backend, never
//! only in process memory, so several replicas can share one backend (the
//! object store; the filesystem serves one process). The API layer sees
//! only this trait.
//!
//! A backend implements blob content and upload sessions its own way and
//! provides a small key-value layer (`metadata::KeyValue`); links, tags and
//! referrers are written once, over that layer, by the trait's default
//! methods.

#[cfg(test)]
mod contract;
mod filesystem;
pub mod metadata;
mod object;
pub mod settings;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

pub use filesystem::FilesystemStorage;
pub use metadata::{Key, KeyValue};
pub use object::{ObjectStorage, S3Credentials, probe_s3};

use crate::digest::Digest;
use crate::names::{RepoName, Tag};

/// A stream of body bytes, in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// Errors of a storage operation that callers can act on; anything else is
/// an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("upload session not found")]
    UploadUnknown,
    #[error("chunk starts at {claimed}, upload holds {current} bytes")]
    OffsetMismatch { current: u64, claimed: u64 },
    #[error("content does not match digest {expected}: it hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("body stream failed: {0}")]
    Body(std::io::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// An inclusive byte range of a blob, already checked against its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end_inclusive: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end_inclusive - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A manifest as stored: the exact pushed bytes and the media type it was
/// pushed with.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Bytes,
}

/// One entry of a referrers list: the descriptor the referrers API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What every backend stores about an upload session (as `info.json`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UploadInfo {
    pub repository: String,
    pub started_at_unix: u64,
}

impl UploadInfo {
    /// A new session of `repo`, started now; and a fresh session id (an
    /// opaque UUID, safe in a URL and a path).
    pub fn start(repo: &RepoName) -> (String, UploadInfo) {
        let started_at_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        (
            uuid::Uuid::new_v4().hyphenated().to_string(),
            UploadInfo {
                repository: repo.as_str().to_string(),
                started_at_unix,
            },
        )
    }

    pub fn to_json(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(std::io::Error::other)
    }
}

/// A committed blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// What an upload session looks like from outside.
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub size: u64,
    /// When the session started (seconds since the Unix epoch).
    pub started_at_unix: u64,
}

/// The storage contract. Implementations must make every write atomic: a
/// reader sees either the old state or the complete new one, and a crash at
/// any point leaves no partial blob, manifest or tag visible. The methods
/// with a body are metadata only (storage/metadata.rs); backends do not
/// override them.
#[async_trait::async_trait]
pub trait Storage: KeyValue + 'static {
    // --- blobs: content addressed, shared by all repositories -------------

    /// Size of a committed blob, if present anywhere in the registry.
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>>;
    /// Stream a committed blob, or a range of it.
    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StorageResult<ByteStream>;

    /// A URL where a client may download the blob directly for `valid_for`
    /// (a presigned object-store URL), if the backend offers one.
    async fn blob_url(
        &self,
        _digest: &Digest,
        _valid_for: Duration,
    ) -> StorageResult<Option<String>> {
        Ok(None)
    }

    /// Every committed blob with its size and when it was written, in no
    /// particular order (what garbage collection looks at).
    async fn blobs(&self) -> StorageResult<Vec<BlobEntry>>;

    /// Whether the blob is stored, asked of the store itself (never of a
    /// cache another replica's deletion could have made stale).
    async fn blob_present(&self, digest: &Digest) -> StorageResult<bool> {
        Ok(self.blob_size(digest).await?.is_some())
    }

    /// Remove a blob's content (garbage collection only, under the
    /// protocol of docs/gc.md); false when it was not there.
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool>;

    // --- which blobs a repository may serve --------------------------------

    async fn repo_blob_linked(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        self.kv_exists(&Key::layer(repo, digest)).await
    }
    async fn repo_blob_link(&self, repo: &RepoName, digest: &Digest) -> StorageResult<()> {
        metadata::blob_link(self, repo, digest).await
    }
    /// Returns false when the repository did not have the blob.
    async fn repo_blob_unlink(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        self.kv_delete(&Key::layer(repo, digest)).await
    }

    // --- upload sessions ----------------------------------------------------

    /// Start a session; the id is an opaque token safe to put in a URL.
    async fn upload_start(&self, repo: &RepoName) -> StorageResult<String>;
    async fn upload_status(&self, repo: &RepoName, id: &str) -> StorageResult<UploadStatus>;
    /// Append a body. With `expected_offset`, the chunk must start exactly
    /// where the upload ends and, with `expected_len`, carry exactly that
    /// many bytes; a short or failed body leaves the upload as it was.
    /// Returns the new size.
    async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        expected_offset: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64>;
    /// Verify the content against `digest`, make it a blob and link it into
    /// the repository. On a mismatch nothing becomes visible.
    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest)
    -> StorageResult<u64>;
    async fn upload_cancel(&self, repo: &RepoName, id: &str) -> StorageResult<()>;
    /// Remove sessions not touched for `max_age` (in a bucket, also abort
    /// the multipart uploads a dead replica left); returns how many.
    async fn uploads_purge(&self, max_age: Duration) -> StorageResult<usize>;

    // --- manifests ----------------------------------------------------------

    async fn manifest_put(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &StoredManifest,
    ) -> StorageResult<()>;
    async fn manifest_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> StorageResult<Option<StoredManifest>>;
    /// Returns false when the repository did not have the manifest.
    async fn manifest_delete(&self, repo: &RepoName, digest: &Digest) -> StorageResult<bool> {
        self.kv_delete(&Key::manifest(repo, digest)).await
    }

    // --- tags -----------------------------------------------------------------

    async fn tag_get(&self, repo: &RepoName, tag: &Tag) -> StorageResult<Option<Digest>> {
        metadata::tag_get(self, repo, tag).await
    }
    /// `tag_get` of many tags at once, in order.
    async fn tag_get_many(
        &self,
        repo: &RepoName,
        tags: &[Tag],
    ) -> StorageResult<Vec<Option<Digest>>> {
        metadata::tag_get_many(self, repo, tags).await
    }
    async fn tag_set(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<()> {
        self.kv_put(&Key::tag(repo, tag), Bytes::from(digest.to_string()))
            .await
    }
    /// Set a tag that does not exist yet; false, changing nothing, when it
    /// exists (another push created it first).
    async fn tag_create(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<bool> {
        self.kv_create(&Key::tag(repo, tag), Bytes::from(digest.to_string()))
            .await
    }
    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StorageResult<bool> {
        self.kv_delete(&Key::tag(repo, tag)).await
    }
    /// All tags in lexical order; `None` when the repository does not exist.
    async fn tags_list(&self, repo: &RepoName) -> StorageResult<Option<Vec<String>>> {
        metadata::tags_list(self, repo).await
    }

    // --- referrers ------------------------------------------------------------

    async fn referrer_add(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &ReferrerDescriptor,
    ) -> StorageResult<()> {
        metadata::referrer_add(self, repo, subject, referrer).await
    }
    async fn referrer_remove(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> StorageResult<()> {
        self.kv_delete(&Key::referrer(repo, subject, referrer))
            .await
            .map(drop)
    }
    /// Referrers of `subject`, ordered by digest.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> StorageResult<Vec<ReferrerDescriptor>> {
        metadata::referrers(self, repo, subject).await
    }

    // --- repositories ---------------------------------------------------------

    /// Every repository holding at least one blob or manifest, sorted.
    async fn repositories(&self) -> StorageResult<Vec<String>>;
    async fn repo_exists(&self, repo: &RepoName) -> StorageResult<bool> {
        metadata::repo_exists(self, repo).await
    }

    /// Whether the backend can take writes now (for `/readyz`).
    async fn ready(&self) -> StorageResult<()>;
}

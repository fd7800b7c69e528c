//! The object-store backend: S3, Ceph RGW, MinIO (and an in-memory store
//! for tests), shared by any number of registry replicas.
//!
//! Layout under the bucket's prefix (blobs are not fanned out by their
//! first two hex digits as on the filesystem, and an upload is one object
//! per chunk rather than one growing file):
//! ```text
//! blobs/<alg>/<hex>                                   committed blob content
//! uploads/<uuid>/info.json                            upload session
//! uploads/<uuid>/chunks/<start, 20 digits>            one object per chunk
//! _quarry/multipart/<uuid>                            a multipart upload in progress
//! repositories/<name>/...                             metadata, one object per key
//! ```
//!
//! Why it is safe with several replicas and crashes:
//! - Every object is written whole by one PUT or one completed multipart
//!   upload, which S3 makes visible atomically. A replica killed mid-write
//!   leaves an incomplete multipart upload, which is never visible, and a
//!   record of it that the stale-upload sweep uses to abort it
//!   (multipart.rs).
//! - Upload sessions live only in the bucket: each PATCH adds a chunk
//!   object named by its start offset, so any replica can continue a session
//!   (the size is the end of the last chunk) and chunks of any size work.
//! - A blob becomes visible only after its content was hashed and matched
//!   the digest: a single chunk is hashed and then copied server-side; more
//!   chunks are streamed through the hash into a multipart upload that is
//!   completed only on a match and aborted otherwise.
//! - A tag is one object: concurrent pushes of a tag end with one of the
//!   pushed digests (last writer wins), never a mix. Referrers are one
//!   object each, so concurrent pushes never lose one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::metadata::{self, Entry, Key, KeyValue};
use super::settings::S3Settings;
use super::{
    BlobEntry, ByteRange, ByteStream, Storage, StorageError, StorageResult, StoredManifest,
    UploadInfo, UploadStatus,
};
use crate::digest::{Digest, DigestHasher};
use crate::names::RepoName;

/// Part size of multipart uploads (S3 needs at least 5 MiB but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per multipart upload.
const PARTS_IN_FLIGHT: usize = 2;
/// Blob sizes remembered before the cache starts over (~100 bytes each).
const SIZE_CACHE_ENTRIES: usize = 100_000;
/// Largest object S3 copies in one request.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// What the backend needs of a bucket: objects, and multipart uploads by
/// id (so one a crash left can be aborted, multipart.rs).
pub trait Bucket: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Bucket for T {}

/// Storage in an object store, under a key prefix.
pub struct ObjectStorage {
    store: Arc<dyn Bucket>,
    prefix: String,
    /// Sizes of blobs seen to exist. Blob objects are immutable, so a size
    /// once read stays true while the blob exists; this saves a HEAD request
    /// on every blob GET and HEAD. Only garbage collection deletes blobs,
    /// and the paths that must see a deletion made by another replica ask
    /// the bucket (`blob_present`).
    sizes: std::sync::Mutex<std::collections::HashMap<Digest, u64>>,
    /// Names this backend in logs and errors (`s3://bucket/prefix`).
    describe: String,
    /// Signs download URLs (S3 only), for FEATURE_PROXY_STORAGE: false.
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// How often a multipart upload in progress rewrites its record
    /// (multipart.rs; shorter in tests).
    multipart_heartbeat: Duration,
}

fn io(e: object_store::Error) -> StorageError {
    StorageError::Io(std::io::Error::other(e))
}

fn found<T>(r: object_store::Result<T>) -> StorageResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io(e)),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn digest_key(digest: &Digest) -> String {
    format!("{}/{}", digest.algorithm().name(), digest.hex())
}

/// Where S3 credentials may come from besides the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Credentials {
    /// Also the process environment (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN,
    /// web identity, ...): the registry pods, which get their keys that way.
    AlsoFromEnvironment,
    /// Only the settings' keys: a probe of someone else's bucket.
    OnlyFromSettings,
}

impl ObjectStorage {
    /// A backend over any object store (tests use the in-memory one).
    pub fn new(store: Arc<dyn Bucket>, prefix: &str, describe: String) -> ObjectStorage {
        ObjectStorage {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            sizes: std::sync::Mutex::default(),
            describe,
            signer: None,
            multipart_heartbeat: multipart::HEARTBEAT,
        }
    }

    /// An S3-compatible bucket. Nothing is contacted yet: `ready()` checks.
    pub fn s3(settings: &S3Settings, credentials: S3Credentials) -> anyhow::Result<ObjectStorage> {
        let builder = match credentials {
            S3Credentials::AlsoFromEnvironment => object_store::aws::AmazonS3Builder::from_env(),
            S3Credentials::OnlyFromSettings => object_store::aws::AmazonS3Builder::new(),
        };
        let mut builder = builder
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(access), Some(secret)) = (&settings.access_key, &settings.secret_key) {
            builder = builder
                .with_access_key_id(access)
                .with_secret_access_key(secret);
        }
        let store = Arc::new(
            builder
                .build()
                .map_err(|e| anyhow::anyhow!("S3 storage for bucket {}: {e}", settings.bucket))?,
        );
        let describe = format!(
            "s3://{}/{} at {}",
            settings.bucket,
            settings.prefix,
            settings.endpoint.as_deref().unwrap_or("AWS")
        );
        let mut storage = ObjectStorage::new(store.clone(), &settings.prefix, describe);
        storage.signer = Some(store);
        Ok(storage)
    }

    /// Where this storage is, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    fn key(&self, rel: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn blob(&self, digest: &Digest) -> Path {
        self.key(&format!("blobs/{}", digest_key(digest)))
    }

    fn upload_prefix(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}"))
    }

    fn cached_size(&self, digest: &Digest) -> Option<u64> {
        let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.get(digest).copied()
    }

    fn forget_size(&self, digest: &Digest) {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.remove(digest);
    }

    fn remember_size(&self, digest: &Digest, size: u64) {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() >= SIZE_CACHE_ENTRIES {
            sizes.clear();
        }
        sizes.insert(digest.clone(), size);
    }

    async fn exists(&self, location: &Path) -> StorageResult<bool> {
        Ok(found(self.store.head(location).await)?.is_some())
    }

    async fn get_bytes(&self, location: &Path) -> StorageResult<Option<Bytes>> {
        match found(self.store.get(location).await)? {
            None => Ok(None),
            Some(result) => Ok(Some(result.bytes().await.map_err(io)?)),
        }
    }

    async fn put_bytes(&self, location: &Path, bytes: impl Into<Bytes>) -> StorageResult<()> {
        self.store
            .put(location, PutPayload::from_bytes(bytes.into()))
            .await
            .map_err(io)?;
        Ok(())
    }

    async fn delete_if_present(&self, location: &Path) -> StorageResult<bool> {
        if !self.exists(location).await? {
            return Ok(false);
        }
        match self.store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(io(e)),
        }
    }

    async fn list(&self, prefix: &Path) -> StorageResult<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(io)
    }

    /// Every object under `rel` (below the prefix), with its path segments
    /// after `rel`.
    async fn list_relative(&self, rel: &str) -> StorageResult<Vec<(Vec<String>, ObjectMeta)>> {
        let root = self.key(rel);
        let depth = root.parts().count();
        Ok(self
            .list(&root)
            .await?
            .into_iter()
            .map(|object| {
                let parts = object
                    .location
                    .parts()
                    .skip(depth)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                (parts, object)
            })
            .collect())
    }

    async fn any_under(&self, prefix: &Path) -> StorageResult<bool> {
        let mut listing = self.store.list(Some(prefix));
        match listing.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(io(e)),
        }
    }

    async fn delete_all_under(&self, prefix: &Path) -> StorageResult<usize> {
        let objects = self.list(prefix).await?;
        for object in &objects {
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(objects.len())
    }
}

/// Check that the bucket takes writes with these settings, within `within`:
/// what the operator runs before a rollout. The error says where and why.
pub async fn probe_s3(settings: &S3Settings, within: Duration) -> Result<(), String> {
    // The prober (the operator) checks a user's bucket with the user's keys
    // only: its own AWS_* environment must not stand in for them.
    let storage = ObjectStorage::s3(settings, S3Credentials::OnlyFromSettings)
        .map_err(|e| format!("{e:#}"))?;
    match tokio::time::timeout(within, storage.ready()).await {
        Err(_) => Err(format!(
            "{}: no answer within {} s",
            storage.describe(),
            within.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{}: {e}", storage.describe())),
        Ok(Ok(())) => Ok(()),
    }
}

#[async_trait::async_trait]
impl KeyValue for ObjectStorage {
    async fn kv_get(&self, key: &Key) -> StorageResult<Option<Bytes>> {
        self.get_bytes(&self.key(key.as_str())).await
    }

    async fn kv_put(&self, key: &Key, value: Bytes) -> StorageResult<()> {
        self.put_bytes(&self.key(key.as_str()), value).await
    }

    async fn kv_create(&self, key: &Key, value: Bytes) -> StorageResult<bool> {
        // If-None-Match: * on S3 and MinIO (object_store's default
        // conditional-put mode); atomic against every replica.
        let options = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(
                &self.key(key.as_str()),
                PutPayload::from_bytes(value),
                options,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    async fn kv_delete(&self, key: &Key) -> StorageResult<bool> {
        self.delete_if_present(&self.key(key.as_str())).await
    }

    async fn kv_exists(&self, key: &Key) -> StorageResult<bool> {
        self.exists(&self.key(key.as_str())).await
    }

    async fn kv_list(&self, prefix: &Key) -> StorageResult<Vec<Entry>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.key(prefix.as_str())))
            .await
            .map_err(io)?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                Some(Entry {
                    name,
                    modified: m.last_modified.into(),
                })
            })
            .collect())
    }

    async fn kv_any_under(&self, prefix: &Key) -> StorageResult<bool> {
        self.any_under(&self.key(prefix.as_str())).await
    }
}

#[async_trait::async_trait]
impl Storage for ObjectStorage {
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        if let Some(size) = self.cached_size(digest) {
            return Ok(Some(size));
        }
        let size = found(self.store.head(&self.blob(digest)).await)?.map(|m| m.size);
        if let Some(size) = size {
            self.remember_size(digest, size);
        }
        Ok(size)
    }

    async fn blob_present(&self, digest: &Digest) -> StorageResult<bool> {
        let size = found(self.store.head(&self.blob(digest)).await)?.map(|m| m.size);
        match size {
            Some(size) => self.remember_size(digest, size),
            None => self.forget_size(digest),
        }
        Ok(size.is_some())
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool> {
        self.forget_size(digest);
        self.delete_if_present(&self.blob(digest)).await
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StorageResult<ByteStream> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end_inclusive + 1)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.blob(digest), options)
            .await
            .map_err(io)?;
        Ok(Box::pin(
            result.into_stream().map_err(std::io::Error::other),
        ))
    }

    // Links are not cached: a DELETE through another replica must show at
    // once (the conformance suite reads right after deleting).
    async fn blob_url(
        &self,
        digest: &Digest,
        valid_for: Duration,
    ) -> StorageResult<Option<String>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(
                object_store::signer::Method::GET,
                &self.blob(digest),
                valid_for,
            )
            .await
            .map_err(io)?;
        Ok(Some(url.to_string()))
    }

    async fn blobs(&self) -> StorageResult<Vec<BlobEntry>> {
        let mut out = Vec::new();
        // blobs/<alg>/<hex>
        for (parts, object) in self.list_relative("blobs").await? {
            let [alg, hex] = parts.as_slice() else {
                continue;
            };
            let Ok(digest) = format!("{alg}:{hex}").parse::<Digest>() else {
                continue;
            };
            out.push(BlobEntry {
                digest,
                size: object.size,
                modified: object.last_modified.into(),
            });
        }
        Ok(out)
    }

    async fn upload_start(&self, repo: &RepoName) -> StorageResult<String> {
        let (id, info) = UploadInfo::start(repo);
        let info = info.to_json()?;
        self.put_bytes(&self.upload_prefix(&id).join("info.json"), info)
            .await?;
        Ok(id)
    }

    async fn upload_status(&self, repo: &RepoName, id: &str) -> StorageResult<UploadStatus> {
        let info = self.check_upload(repo, id).await?;
        let size = self.chunks(id).await?.iter().map(|c| c.size).sum();
        Ok(UploadStatus {
            size,
            started_at_unix: info.started_at_unix,
        })
    }

    async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        expected_offset: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64> {
        self.check_upload(repo, id).await?;
        let start: u64 = self.chunks(id).await?.iter().map(|c| c.size).sum();
        if let Some(claimed) = expected_offset
            && claimed != start
        {
            return Err(StorageError::OffsetMismatch {
                current: start,
                claimed,
            });
        }
        let location = self.chunk_key(id, start);
        let written = self.write_stream(&location, body).await?;
        if written == 0 {
            // An empty chunk adds nothing; do not keep an empty object.
            self.delete_if_present(&location).await?;
        }
        Ok(start + written)
    }

    async fn upload_commit(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
    ) -> StorageResult<u64> {
        self.check_upload(repo, id).await?;
        let chunks = self.chunks(id).await?;
        let size = self.commit_blob(&chunks, digest).await?;
        self.repo_blob_link(repo, digest).await?;
        self.delete_all_under(&self.upload_prefix(id)).await?;
        Ok(size)
    }

    async fn upload_cancel(&self, repo: &RepoName, id: &str) -> StorageResult<()> {
        self.check_upload(repo, id).await?;
        self.delete_all_under(&self.upload_prefix(id)).await?;
        Ok(())
    }

    async fn uploads_purge(&self, max_age: Duration) -> StorageResult<usize> {
        let objects = self.list(&self.key("uploads")).await?;
        let uploads_depth = self.key("uploads").parts().count();
        let mut touched: BTreeMap<String, u64> = BTreeMap::new();
        for object in &objects {
            let Some(id) = object
                .location
                .parts()
                .nth(uploads_depth)
                .map(|p| p.as_ref().to_string())
            else {
                continue;
            };
            let modified = u64::try_from(object.last_modified.timestamp()).unwrap_or_default();
            let entry = touched.entry(id).or_insert(modified);
            *entry = (*entry).max(modified);
        }
        let now = now_unix();
        let mut purged = 0;
        for (id, last) in touched {
            if now.saturating_sub(last) > max_age.as_secs() {
                self.delete_all_under(&self.upload_prefix(&id)).await?;
                purged += 1;
            }
        }
        purged += self
            .abort_abandoned_multiparts(max_age.max(multipart::ABANDONED_AFTER))
            .await?;
        Ok(purged)
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &StoredManifest,
    ) -> StorageResult<()> {
        let blob = self.blob(digest);
        if !self.exists(&blob).await? {
            self.put_bytes(&blob, manifest.bytes.clone()).await?;
        }
        metadata::manifest_link(self, repo, digest, &manifest.media_type).await
    }

    async fn manifest_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> StorageResult<Option<StoredManifest>> {
        let Some(media_type) = metadata::manifest_media_type(self, repo, digest).await? else {
            return Ok(None);
        };
        let bytes = self
            .get_bytes(&self.blob(digest))
            .await?
            .ok_or_else(|| std::io::Error::other(format!("manifest {digest} has no content")))?;
        Ok(Some(StoredManifest { media_type, bytes }))
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let mut repos = BTreeSet::new();
        for (parts, _) in self.list_relative("repositories").await? {
            if let Some(i) = parts.iter().position(|p| p.starts_with('_'))
                && i > 0
                && (parts[i] == "_layers" || parts[i] == "_manifests")
            {
                repos.insert(parts[..i].join("/"));
            }
        }
        Ok(repos.into_iter().collect())
    }

    async fn ready(&self) -> StorageResult<()> {
        let probe = self.key(&format!("_quarry/ready/{}", uuid::Uuid::new_v4()));
        self.put_bytes(&probe, Bytes::from_static(b"ok")).await?;
        self.store.delete(&probe).await.map_err(io)?;
        Ok(())
    }
}

mod multipart;
mod sessions;
#[cfg(test)]
mod tests;

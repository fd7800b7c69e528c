//! The filesystem backend, the embedded default.
//!
//! Layout under the root (the metadata keys of storage/metadata.rs are
//! files under the same names):
//! ```text
//! blobs/<alg>/<2 hex>/<hex>                         committed blob content
//! uploads/<uuid>/{data,info.json}                   upload sessions
//! repositories/<name>/...                           metadata, one file per key
//! tmp/                                              staging for atomic writes
//! ```
//! Every file becomes visible by `rename` after `fsync`, and the parent
//! directory is synced afterwards, so a crash leaves either nothing or the
//! complete file.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;

use super::metadata::{self, Entry, Key, KeyValue};
use super::{
    BlobEntry, ByteRange, ByteStream, Storage, StorageError, StorageResult, StoredManifest,
    UploadInfo, UploadStatus,
};
use crate::digest::{Algorithm, Digest, DigestHasher};
use crate::names::RepoName;

/// Read/write buffer for blob bodies: large enough to keep syscalls rare.
const IO_CHUNK: usize = 1024 * 1024;

/// Chunk size for streaming blobs out: larger chunks mean fewer copies
/// through the channel and fewer socket writes.
const READ_CHUNK: usize = 4 * 1024 * 1024;

mod catalog_cache;
mod files;
use catalog_cache::{CatalogCache, Lookup};
use files::{
    blocking, create_atomic, hash_file, not_found_is_none, read_in_background, remove_if_present,
    sync_dir, write_atomic, write_in_background,
};

/// Filesystem-backed storage rooted at one directory.
pub struct FilesystemStorage {
    root: PathBuf,
    /// Per-session state that only speeds things up (a running sha256 of
    /// what is on disk) and serialises requests on one session. Losing it
    /// (restart) costs a re-hash at commit, nothing else.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionCache>>>>,
    /// The repositories, between catalog requests.
    catalog: CatalogCache,
}

#[derive(Default)]
struct SessionCache {
    /// sha256 of the first `hashed_len` bytes of the data file.
    hasher: Option<(u64, DigestHasher)>,
}

impl FilesystemStorage {
    /// Open (creating if needed) a store at `root`. Leftover staging files
    /// from a crash are removed: they were never visible.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        for dir in ["blobs", "uploads", "repositories", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(FilesystemStorage {
            root,
            sessions: Mutex::new(HashMap::new()),
            catalog: CatalogCache::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The file that holds a metadata key.
    fn key_path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn upload_dir(&self, id: &str) -> StorageResult<PathBuf> {
        // Only canonical UUIDs name a session: nothing else reaches a path.
        match uuid::Uuid::parse_str(id) {
            Ok(u) if u.hyphenated().to_string() == id => Ok(self.root.join("uploads").join(id)),
            _ => Err(StorageError::UploadUnknown),
        }
    }

    fn session(&self, id: &str) -> Arc<tokio::sync::Mutex<SessionCache>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.entry(id.to_string()).or_default().clone()
    }

    fn forget_session(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(id);
    }

    /// Check that session `id` exists and belongs to `repo`.
    fn check_upload(&self, repo: &RepoName, id: &str) -> StorageResult<(PathBuf, UploadInfo)> {
        let dir = self.upload_dir(id)?;
        let raw = match fs::read(dir.join("info.json")) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::UploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        // Torn by a crash (the file is written without fsync, see
        // upload_start): the session is lost, as it would be in any crash.
        let info: UploadInfo = match serde_json::from_slice(&raw) {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(session = id, error = %e, "upload session info unreadable (torn by a crash?): treated as unknown");
                return Err(StorageError::UploadUnknown);
            }
        };
        if info.repository != repo.as_str() {
            return Err(StorageError::UploadUnknown);
        }
        Ok((dir, info))
    }

    /// Whether `path` (of a key) lies under `repositories/`.
    fn in_repositories(&self, path: &Path) -> bool {
        path.strip_prefix(&self.root)
            .is_ok_and(|rest| rest.starts_with("repositories"))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

/// Blobs up to this size are served from one read.
const SMALL_BLOB: u64 = 256 * 1024;

enum Opened {
    Small(Bytes),
    Large(fs::File, u64, u64),
}

/// Push onto `out` the repository `prefix` names, if `dir` is one (it has
/// `_manifests` or `_layers`), and every repository below it. One
/// directory listing per folder, and the entries' types come with it: a
/// catalog request costs no `stat` per repository.
fn collect_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let Some(entries) = not_found_is_none(fs::read_dir(dir))? else {
        return Ok(());
    };
    let mut is_repo = false;
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "_manifests" || name == "_layers" {
            is_repo = true;
        } else if !name.starts_with('_') {
            children.push(name);
        }
    }
    if is_repo && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    for name in children {
        let path = dir.join(&name);
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        collect_repos(&path, &full, out)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl KeyValue for FilesystemStorage {
    async fn kv_get(&self, key: &Key) -> StorageResult<Option<Bytes>> {
        Ok(not_found_is_none(tokio::fs::read(self.key_path(key)).await)?.map(Bytes::from))
    }

    /// One blocking task for all of them: small files read in a row cost
    /// far less than a thread hand-over each.
    async fn kv_get_many(&self, keys: &[Key]) -> StorageResult<Vec<Option<Bytes>>> {
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.key_path(k)).collect();
        blocking(move || {
            paths
                .iter()
                .map(|p| Ok(not_found_is_none(fs::read(p))?.map(Bytes::from)))
                .collect()
        })
        .await
    }

    async fn kv_put(&self, key: &Key, value: Bytes) -> StorageResult<()> {
        let path = self.key_path(key);
        let tmp = self.tmp_dir();
        let in_repository = self.in_repositories(&path);
        blocking(move || Ok(write_atomic(&tmp, &path, &value)?)).await?;
        if in_repository {
            self.catalog.changed();
        }
        Ok(())
    }

    async fn kv_create(&self, key: &Key, value: Bytes) -> StorageResult<bool> {
        let path = self.key_path(key);
        let tmp = self.tmp_dir();
        let in_repository = self.in_repositories(&path);
        let created = blocking(move || Ok(create_atomic(&tmp, &path, &value)?)).await?;
        if created && in_repository {
            self.catalog.changed();
        }
        Ok(created)
    }

    async fn kv_delete(&self, key: &Key) -> StorageResult<bool> {
        let path = self.key_path(key);
        blocking(move || Ok(remove_if_present(&path)?)).await
    }

    async fn kv_exists(&self, key: &Key) -> StorageResult<bool> {
        Ok(tokio::fs::try_exists(self.key_path(key)).await?)
    }

    async fn kv_list(&self, prefix: &Key) -> StorageResult<Vec<Entry>> {
        let dir = self.key_path(prefix);
        blocking(move || {
            let mut entries = Vec::new();
            if let Some(listing) = not_found_is_none(fs::read_dir(dir))? {
                for entry in listing {
                    let entry = entry?;
                    let Some(meta) = not_found_is_none(entry.metadata())? else {
                        continue; // removed meanwhile
                    };
                    if meta.is_file() {
                        entries.push(Entry {
                            name: entry.file_name().to_string_lossy().into_owned(),
                            modified: meta.modified()?,
                        });
                    }
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn kv_any_under(&self, prefix: &Key) -> StorageResult<bool> {
        let dir = self.key_path(prefix);
        blocking(move || {
            Ok(not_found_is_none(fs::read_dir(dir))?.is_some_and(|mut e| e.next().is_some()))
        })
        .await
    }
}

#[async_trait::async_trait]
impl Storage for FilesystemStorage {
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        let meta = not_found_is_none(tokio::fs::metadata(self.blob_path(digest)).await)?;
        Ok(meta.map(|m| m.len()))
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StorageResult<ByteStream> {
        let path = self.blob_path(digest);
        // Small blobs (configs, signatures) are read whole in one blocking
        // call; large ones stream from mapped windows.
        let opened = blocking(move || {
            let mut file = fs::File::open(path)?;
            let (start, len) = match range {
                Some(r) => (r.start, r.len()),
                None => (0, file.metadata()?.len()),
            };
            if len > SMALL_BLOB {
                return Ok(Opened::Large(file, start, len));
            }
            file.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file).take(len).read_to_end(&mut buf)?;
            Ok(Opened::Small(Bytes::from(buf)))
        })
        .await?;
        Ok(match opened {
            Opened::Small(bytes) => Box::pin(futures::stream::once(async move { Ok(bytes) })),
            Opened::Large(file, start, len) => read_in_background(file, start, len),
        })
    }

    async fn blobs(&self) -> StorageResult<Vec<BlobEntry>> {
        let root = self.root.join("blobs");
        blocking(move || {
            let mut out = Vec::new();
            // blobs/<alg>/<2 hex>/<hex>
            let Some(algorithms) = not_found_is_none(fs::read_dir(&root))? else {
                return Ok(out);
            };
            for algorithm in algorithms {
                let algorithm = algorithm?;
                let alg = algorithm.file_name().to_string_lossy().into_owned();
                for fan in fs::read_dir(algorithm.path())? {
                    for blob in fs::read_dir(fan?.path())? {
                        let blob = blob?;
                        let name = blob.file_name().to_string_lossy().into_owned();
                        let Ok(digest) = format!("{alg}:{name}").parse::<Digest>() else {
                            continue; // not a blob (a stray file)
                        };
                        let Some(meta) = not_found_is_none(blob.metadata())? else {
                            continue;
                        };
                        out.push(BlobEntry {
                            digest,
                            size: meta.len(),
                            modified: meta.modified()?,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn upload_start(&self, repo: &RepoName) -> StorageResult<String> {
        let (id, info) = UploadInfo::start(repo);
        let dir = self.upload_dir(&id)?;
        let info = info.to_json()?;
        blocking(move || {
            fs::create_dir_all(&dir)?;
            fs::File::create(dir.join("data"))?;
            // Not synced: a session is not data anyone was promised. A crash
            // may lose it or tear this file, and either reads as an unknown
            // session, which clients answer by starting again. Two fsyncs
            // fewer per push.
            fs::write(dir.join("info.json"), &info)?;
            Ok(())
        })
        .await?;
        Ok(id)
    }

    async fn upload_status(&self, repo: &RepoName, id: &str) -> StorageResult<UploadStatus> {
        let (dir, info) = self.check_upload(repo, id)?;
        let size = tokio::fs::metadata(dir.join("data")).await?.len();
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
        mut body: ByteStream,
    ) -> StorageResult<u64> {
        let session = self.session(id);
        let mut cache = session.lock().await;
        let (dir, _) = self.check_upload(repo, id)?;
        let file = fs::OpenOptions::new().write(true).open(dir.join("data"))?;
        let start = file.metadata()?.len();
        if let Some(claimed) = expected_offset
            && claimed != start
        {
            return Err(StorageError::OffsetMismatch {
                current: start,
                claimed,
            });
        }
        // Keep hashing only if the running hash covers everything so far.
        let hasher = match cache.hasher.take() {
            Some((len, h)) if len == start => Some(h),
            None if start == 0 => Some(DigestHasher::new(Algorithm::Sha256)),
            _ => None,
        };
        let before = hasher.clone();
        // Receiving happens here while a blocking thread hashes and writes,
        // so the network, the hash and the disk overlap.
        let (tx, writer) = write_in_background(file, start, hasher);
        let mut written: u64 = 0;
        let mut outcome: StorageResult<()> = Ok(());
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    outcome = Err(StorageError::Body(e));
                    break;
                }
            }
        }
        drop(tx);
        let write_result = writer
            .await
            .map_err(|e| std::io::Error::other(format!("writer thread: {e}")))
            .and_then(|r| r);
        let hasher = match write_result {
            Ok(hasher) => hasher,
            Err(e) => {
                outcome = outcome.and(Err(StorageError::Io(e)));
                None
            }
        };
        if let Err(e) = outcome {
            // Roll the session back to where this request found it.
            fs::OpenOptions::new()
                .write(true)
                .open(dir.join("data"))?
                .set_len(start)?;
            cache.hasher = before.map(|h| (start, h));
            return Err(e);
        }
        let end = start + written;
        cache.hasher = hasher.map(|h| (end, h));
        Ok(end)
    }

    async fn upload_commit(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
    ) -> StorageResult<u64> {
        let session = self.session(id);
        let mut cache = session.lock().await;
        let (dir, _) = self.check_upload(repo, id)?;
        let data_path = dir.join("data");
        let size = tokio::fs::metadata(&data_path).await?.len();
        let running = match cache.hasher.take() {
            Some((len, h)) if len == size && h.algorithm() == digest.algorithm() => Some(h),
            other => {
                cache.hasher = other;
                None
            }
        };
        let expected = digest.clone();
        let blob_path = self.blob_path(digest);
        let link = self.key_path(&Key::layer(repo, digest));
        let upload_dir = dir.clone();
        let result = blocking(move || {
            let data = fs::OpenOptions::new().write(true).open(&data_path)?;
            // fdatasync: the bytes and the size, not the timestamps.
            data.sync_data()?;
            drop(data);
            let actual = match running {
                Some(h) => h.finish(),
                None => hash_file(&data_path, expected.algorithm())?,
            };
            if actual != expected {
                return Err(StorageError::DigestMismatch { expected, actual });
            }
            let parent = blob_path
                .parent()
                .ok_or_else(|| std::io::Error::other("blob path without parent"))?;
            fs::create_dir_all(parent)?;
            // Identical content may already be there; renaming over it is
            // atomic and harmless.
            fs::rename(&data_path, &blob_path)?;
            let link_dir = link
                .parent()
                .ok_or_else(|| std::io::Error::other("layer link path without parent"))?;
            if !link.exists() {
                // Empty, so there is nothing to stage or tear: creating it in
                // place is atomic, and syncing its folder makes it durable.
                fs::create_dir_all(link_dir)?;
                fs::File::create(&link)?;
            }
            // Both folders are synced before the 201, so the blob and its
            // link are durable when the client hears of them; on a
            // journalling filesystem the first fsync commits both and the
            // second finds nothing left. A crash before then may keep the
            // link alone: nothing was acknowledged, and a link whose blob
            // is missing reads as an unknown blob (api/blobs.rs) until GC
            // removes it.
            sync_dir(parent)?;
            sync_dir(link_dir)?;
            fs::remove_dir_all(&upload_dir)?;
            Ok(size)
        })
        .await;
        if result.is_ok() {
            drop(cache);
            self.forget_session(id);
            self.catalog.changed(); // the layer link may start a repository
        }
        result
    }

    async fn upload_cancel(&self, repo: &RepoName, id: &str) -> StorageResult<()> {
        let session = self.session(id);
        let _guard = session.lock().await;
        let (dir, _) = self.check_upload(repo, id)?;
        tokio::fs::remove_dir_all(dir).await?;
        drop(_guard);
        self.forget_session(id);
        Ok(())
    }

    async fn uploads_purge(&self, max_age: Duration) -> StorageResult<usize> {
        let uploads = self.root.join("uploads");
        let purged = blocking(move || {
            let mut purged = Vec::new();
            let now = SystemTime::now();
            for entry in fs::read_dir(&uploads)? {
                let entry = entry?;
                let data = entry.path().join("data");
                let touched = fs::metadata(&data)
                    .and_then(|m| m.modified())
                    .or_else(|_| entry.metadata().and_then(|m| m.modified()))?;
                let age = now.duration_since(touched).unwrap_or_default();
                if age > max_age {
                    fs::remove_dir_all(entry.path())?;
                    purged.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(purged)
        })
        .await?;
        for id in &purged {
            self.forget_session(id);
        }
        Ok(purged.len())
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &StoredManifest,
    ) -> StorageResult<()> {
        let blob_path = self.blob_path(digest);
        let bytes = manifest.bytes.clone();
        let tmp = self.tmp_dir();
        blocking(move || {
            if !blob_path.exists() {
                write_atomic(&tmp, &blob_path, &bytes)?;
            }
            Ok(())
        })
        .await?;
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
        let bytes = tokio::fs::read(self.blob_path(digest)).await?;
        Ok(Some(StoredManifest {
            media_type,
            bytes: Bytes::from(bytes),
        }))
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let mark = match self.catalog.lookup() {
            Lookup::Kept(repositories) => return Ok(repositories.to_vec()),
            Lookup::Walk { mark } => mark,
        };
        let dir = self.root.join("repositories");
        let walked = blocking(move || {
            let mut out = Vec::new();
            collect_repos(&dir, "", &mut out)?;
            out.sort();
            Ok(out)
        })
        .await?;
        self.catalog.store(mark, Arc::new(walked.clone()));
        Ok(walked)
    }

    async fn ready(&self) -> StorageResult<()> {
        let probe = self.root.join("tmp").join(".ready-probe");
        blocking(move || {
            fs::write(&probe, b"ok")?;
            fs::remove_file(&probe)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::contract::{self, body, repo};

    /// The kept list of repositories: this process's pushes show at once,
    /// a folder another process made within the list's maximum age.
    #[tokio::test]
    async fn the_catalog_follows_pushes_at_once_and_other_writers_soon() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::open(dir.path()).unwrap();
        assert!(store.repositories().await.unwrap().is_empty());
        // A blob pushed to a new repository: its layer link starts it.
        let r = repo("team/app");
        let id = store.upload_start(&r).await.unwrap();
        store
            .upload_append(&r, &id, None, body(&[b"layer"]))
            .await
            .unwrap();
        let d = Digest::of_bytes(Algorithm::Sha256, b"layer");
        store.upload_commit(&r, &id, &d).await.unwrap();
        assert_eq!(store.repositories().await.unwrap(), ["team/app"]);
        // A manifest link written into another new repository.
        let key = Key::manifest(&repo("team/tool"), &d);
        store.kv_put(&key, Bytes::new()).await.unwrap();
        assert_eq!(
            store.repositories().await.unwrap(),
            ["team/app", "team/tool"]
        );
        // Another process's repository (folders only, as a link write makes).
        fs::create_dir_all(dir.path().join("repositories/other/_manifests")).unwrap();
        tokio::time::sleep(catalog_cache::MAX_AGE + Duration::from_millis(100)).await;
        let all = store.repositories().await.unwrap();
        assert_eq!(all, ["other", "team/app", "team/tool"]);
    }

    #[tokio::test]
    async fn sha512_and_rehash_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo("x");
        let id = {
            let store = FilesystemStorage::open(dir.path()).unwrap();
            let id = store.upload_start(&r).await.unwrap();
            store
                .upload_append(&r, &id, None, body(&[b"abc"]))
                .await
                .unwrap();
            id
        };
        // A new process has no running hash: commit must re-read the file.
        let store = FilesystemStorage::open(dir.path()).unwrap();
        let d = Digest::of_bytes(Algorithm::Sha512, b"abc");
        assert_eq!(store.upload_commit(&r, &id, &d).await.unwrap(), 3);
        assert_eq!(store.blob_size(&d).await.unwrap(), Some(3));
    }

    /// A blob several writeback steps long, sent in odd-sized chunks over
    /// two requests, commits whole (the early writeback only moves disk
    /// work earlier; what is stored is what was sent).
    #[tokio::test]
    async fn a_blob_of_several_writeback_steps_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::open(dir.path()).unwrap();
        let r = repo("big");
        let content: Vec<u8> = (0..(21 * 1024 * 1024 + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        let id = store.upload_start(&r).await.unwrap();
        let half = content.len() / 2;
        for (from, part) in [(0, &content[..half]), (half, &content[half..])] {
            let chunks: Vec<std::io::Result<Bytes>> = part
                .chunks(300_001)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            store
                .upload_append(
                    &r,
                    &id,
                    Some(from as u64),
                    Box::pin(futures::stream::iter(chunks)),
                )
                .await
                .unwrap();
        }
        let d = Digest::of_bytes(Algorithm::Sha256, &content);
        assert_eq!(
            store.upload_commit(&r, &id, &d).await.unwrap(),
            content.len() as u64
        );
        let stored = std::fs::read(store.blob_path(&d)).unwrap();
        assert!(
            stored == content,
            "the stored blob differs from what was sent"
        );
    }

    /// A session whose info a crash tore (it is written without fsync)
    /// is an unknown session, not a server error, and the purge of stale
    /// sessions still removes it.
    #[tokio::test]
    async fn a_torn_session_is_unknown_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::open(dir.path()).unwrap();
        let r = repo("torn");
        let id = store.upload_start(&r).await.unwrap();
        let info = dir.path().join("uploads").join(&id).join("info.json");
        std::fs::write(&info, b"{\"repos").unwrap();
        assert!(matches!(
            store.upload_status(&r, &id).await,
            Err(StorageError::UploadUnknown)
        ));
        assert_eq!(store.uploads_purge(Duration::ZERO).await.unwrap(), 1);
        assert!(!info.exists());
    }

    /// The contract every backend keeps (storage/contract.rs).
    #[tokio::test]
    async fn keeps_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemStorage::open(dir.path()).unwrap();
        contract::chunked_upload_commits_only_matching_content(&store).await;
        contract::failed_body_rolls_back(&store).await;
        contract::uploads_are_bound_to_their_repository_and_ids_are_checked(&store).await;
        contract::manifests_tags_referrers_and_catalog(&store).await;
        contract::key_value_layer(&store).await;
    }
}

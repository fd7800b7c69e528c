//! The markers that make deletion safe against concurrent requests
//! without a lock (docs/gc.md). What the sweep may delete — a blob's
//! content, a repository's blob link, a repository's manifest — is a
//! `Subject`; it goes through two markers, small objects of the metadata
//! layer named by the hash of the subject:
//!
//! - `_gc/condemned/<id>`: a sweep found the subject garbage;
//! - `_gc/deleting/<id>`: a later sweep is deleting it.
//!
//! A request that relies on a subject *touches* it: it removes the
//! condemned marker, then looks for the deleting marker, then for the
//! subject. The sweep deletes only after it wrote the deleting marker and
//! then saw the condemned marker it had listed before its mark still there
//! (each condemnation carries a random id, so a newer one does not count). Each side writes before it
//! reads what the other writes, so on a store where a read sees every
//! write that finished before it (the filesystem; S3 and MinIO), at least
//! one of them sees the other: either the sweep sees the rescue and stops,
//! or the request sees the deletion and treats the subject as gone.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest};
use crate::manifest;
use crate::names::RepoName;
use crate::storage::{Key, Storage, StorageResult};

pub const CONDEMNED: &str = "condemned";
pub const DELETING: &str = "deleting";

/// A deleting marker older than this belongs to a sweep that died: a live
/// sweep holds one for the few requests it takes to delete one subject.
pub const DELETING_ABANDONED_AFTER: Duration = Duration::from_secs(15 * 60);

/// Something the sweep may delete. Ordered as a sweep deletes: manifests
/// before the links and blobs they name, so an interrupted sweep never
/// leaves a manifest whose blobs are gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A repository's manifest, with its entry in its subject's referrers.
    Manifest(RepoName, Digest),
    /// A repository's link to a blob (what lets it serve the blob).
    Link(RepoName, Digest),
    /// A blob's content, shared by every repository.
    Blob(Digest),
}

/// A subject as its markers store it (so a later sweep can finish the
/// deletion a dead one began).
#[derive(Serialize, Deserialize)]
struct Stored {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo: Option<String>,
    digest: Digest,
    /// Which condemnation: a sweep deletes only if the condemned marker is
    /// still the one it listed before its mark, not a newer one another
    /// sweep wrote after a request had rescued the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    condemnation: Option<String>,
}

impl Subject {
    fn stored(&self) -> Stored {
        let (kind, repo, digest) = match self {
            Subject::Blob(d) => ("blob", None, d),
            Subject::Link(r, d) => ("link", Some(r.to_string()), d),
            Subject::Manifest(r, d) => ("manifest", Some(r.to_string()), d),
        };
        Stored {
            kind: kind.into(),
            repo,
            digest: digest.clone(),
            condemnation: None,
        }
    }

    /// A marker's content: the subject, and which condemnation.
    fn to_json(&self, condemnation: Option<&str>) -> Bytes {
        let mut stored = self.stored();
        stored.condemnation = condemnation.map(str::to_string);
        // A struct of strings always serializes.
        Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
    }

    /// The subject a marker names and its condemnation; `None` for content
    /// that is not one.
    fn from_json(raw: &[u8]) -> Option<(Subject, String)> {
        let stored: Stored = serde_json::from_slice(raw).ok()?;
        let repo = || stored.repo.as_deref().and_then(RepoName::parse);
        let subject = match stored.kind.as_str() {
            "blob" => Subject::Blob(stored.digest.clone()),
            "link" => Subject::Link(repo()?, stored.digest.clone()),
            "manifest" => Subject::Manifest(repo()?, stored.digest.clone()),
            _ => return None,
        };
        Some((subject, stored.condemnation.unwrap_or_default()))
    }

    /// The name of its markers: the hash of what it is.
    pub fn id(&self) -> Digest {
        Digest::of_bytes(Algorithm::Sha256, &self.to_json(None))
    }

    fn marker(&self, phase: &str) -> Key {
        Key::gc_marker(phase, &self.id())
    }

    /// Whether the subject itself is stored.
    pub async fn exists(&self, storage: &dyn Storage) -> StorageResult<bool> {
        match self {
            Subject::Blob(d) => storage.blob_present(d).await,
            Subject::Link(r, d) => storage.repo_blob_linked(r, d).await,
            Subject::Manifest(r, d) => storage.kv_exists(&Key::manifest(r, d)).await,
        }
    }

    /// Delete the subject itself; returns the bytes freed (blobs only).
    async fn remove(&self, storage: &dyn Storage, size: u64) -> StorageResult<u64> {
        match self {
            Subject::Blob(d) => Ok(if storage.blob_delete(d).await? {
                size
            } else {
                0
            }),
            Subject::Link(r, d) => storage.repo_blob_unlink(r, d).await.map(|_| 0),
            Subject::Manifest(r, d) => {
                // The referrer entry first: a crash between the two leaves
                // an unreachable manifest, which the next sweep takes.
                if let Some(stored) = storage.manifest_get(r, d).await?
                    && let Ok(facts) =
                        manifest::inspect(Some(&stored.media_type), &stored.bytes, d.algorithm())
                    && let Some(subject) = facts.subject
                {
                    storage.referrer_remove(r, &subject, d).await?;
                }
                storage.manifest_delete(r, d).await.map(|_| 0)
            }
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Blob(d) => write!(f, "blob {d}"),
            Subject::Link(r, d) => write!(f, "link {r} -> {d}"),
            Subject::Manifest(r, d) => write!(f, "manifest {r}@{d}"),
        }
    }
}

/// What a touch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    /// The subject is stored and no sweep is deleting it: a request may
    /// rely on it.
    pub present: bool,
    /// A condemned marker was removed.
    pub rescued: bool,
}

/// Rescue a subject a request relies on (module comment): remove its
/// condemned marker, then check that no sweep is deleting it and that it
/// is stored.
/// The two checks only need to come after the removal, not after each
/// other, so they run at once (one storage round trip less).
pub async fn touch(storage: &dyn Storage, subject: &Subject) -> StorageResult<Touched> {
    let rescued = storage.kv_delete(&subject.marker(CONDEMNED)).await?;
    let deleting_marker = subject.marker(DELETING);
    let (deleting, stored) =
        futures::try_join!(storage.kv_exists(&deleting_marker), subject.exists(storage))?;
    Ok(Touched {
        present: stored && !deleting,
        rescued,
    })
}

/// The first two steps of a touch: remove the condemned marker (true when
/// there was one), then look for the deleting marker (true when a sweep is
/// deleting the subject).
pub async fn rescue(storage: &dyn Storage, subject: &Subject) -> StorageResult<(bool, bool)> {
    let rescued = storage.kv_delete(&subject.marker(CONDEMNED)).await?;
    let deleting = storage.kv_exists(&subject.marker(DELETING)).await?;
    Ok((rescued, deleting))
}

/// Condemn a subject; false when it already was.
pub async fn condemn(storage: &dyn Storage, subject: &Subject) -> StorageResult<bool> {
    let condemnation = uuid::Uuid::new_v4().simple().to_string();
    storage
        .kv_create(
            &subject.marker(CONDEMNED),
            subject.to_json(Some(&condemnation)),
        )
        .await
}

/// The condemnation a subject's condemned marker holds now, if any.
async fn current_condemnation(
    storage: &dyn Storage,
    subject: &Subject,
) -> StorageResult<Option<String>> {
    Ok(storage
        .kv_get(&subject.marker(CONDEMNED))
        .await?
        .and_then(|raw| Subject::from_json(&raw))
        .map(|(_, condemnation)| condemnation))
}

/// Withdraw a condemnation (the subject is kept again).
pub async fn acquit(storage: &dyn Storage, subject: &Subject) -> StorageResult<()> {
    storage
        .kv_delete(&subject.marker(CONDEMNED))
        .await
        .map(drop)
}

/// How a deletion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted; the bytes it freed.
    Deleted(u64),
    /// A request rescued it first: it stays.
    Rescued,
    /// Another sweep is deleting it, or deleted it first.
    Busy,
}

/// The first step of deleting a subject under `condemnation`: announce
/// it. Split from `finish` so tests can run requests in between.
pub async fn begin(
    storage: &dyn Storage,
    subject: &Subject,
    condemnation: &str,
) -> StorageResult<bool> {
    storage
        .kv_create(
            &subject.marker(DELETING),
            subject.to_json(Some(condemnation)),
        )
        .await
}

/// The rest: delete only if the condemned marker is still the one of
/// `condemnation` (nothing rescued the subject since), then remove both
/// markers.
pub async fn finish(
    storage: &dyn Storage,
    subject: &Subject,
    condemnation: &str,
    size: u64,
) -> StorageResult<Deletion> {
    if current_condemnation(storage, subject).await?.as_deref() != Some(condemnation) {
        storage.kv_delete(&subject.marker(DELETING)).await?;
        // Gone already: another sweep deleted it first.
        return Ok(if subject.exists(storage).await? {
            Deletion::Rescued
        } else {
            Deletion::Busy
        });
    }
    let freed = subject.remove(storage, size).await?;
    storage.kv_delete(&subject.marker(CONDEMNED)).await?;
    storage.kv_delete(&subject.marker(DELETING)).await?;
    Ok(Deletion::Deleted(freed))
}

/// Delete a subject a sweep condemned earlier (under `condemnation`) and
/// found garbage again.
pub async fn delete(
    storage: &dyn Storage,
    subject: &Subject,
    condemnation: &str,
    size: u64,
) -> StorageResult<Deletion> {
    if !begin(storage, subject, condemnation).await? {
        return Ok(Deletion::Busy);
    }
    finish(storage, subject, condemnation, size).await
}

/// A marker as listed: what it marks, which condemnation, and when it was
/// written.
#[derive(Debug, Clone)]
pub struct Marker {
    pub subject: Subject,
    pub condemnation: String,
    pub written: SystemTime,
}

/// Every marker of one phase. Unreadable ones are left out (logged).
pub async fn list(storage: &dyn Storage, phase: &str) -> StorageResult<Vec<Marker>> {
    let folder = Key::gc_markers(phase);
    let mut out = Vec::new();
    for entry in storage.kv_list(&folder).await? {
        let Ok(id) = format!("sha256:{}", entry.name).parse::<Digest>() else {
            continue;
        };
        let Some(raw) = storage.kv_get(&Key::gc_marker(phase, &id)).await? else {
            continue; // removed while listing
        };
        match Subject::from_json(&raw) {
            Some((subject, condemnation)) => out.push(Marker {
                subject,
                condemnation,
                written: entry.modified,
            }),
            None => {
                tracing::warn!(marker = %entry.name, phase, "unreadable garbage collection marker ignored")
            }
        }
    }
    Ok(out)
}

/// Finish or undo what a dead sweep left: a deleting marker older than
/// `DELETING_ABANDONED_AFTER`. With the condemned marker of the same
/// condemnation there, nothing rescued the subject since the deletion
/// began, so it is deleted; otherwise the subject stays and only the
/// marker goes.
pub async fn recover(
    storage: &dyn Storage,
    marker: &Marker,
    now: SystemTime,
) -> StorageResult<Option<Deletion>> {
    let age = now.duration_since(marker.written).unwrap_or_default();
    if age < DELETING_ABANDONED_AFTER {
        return Ok(None);
    }
    tracing::warn!(subject = %marker.subject, "finishing a deletion an earlier sweep left unfinished");
    finish(storage, &marker.subject, &marker.condemnation, 0)
        .await
        .map(Some)
}

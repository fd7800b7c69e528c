//! The labels of a stored image (`config.Labels` of its config blob, as
//! docker, podman and buildah write them), which carry Quay's
//! `quay.immutable` and `quay.expires-after`. Indexes and artifacts have
//! none.

use futures::TryStreamExt;

use crate::digest::Digest;
use crate::manifest::{self, ManifestKind};
use crate::names::RepoName;
use crate::policy::{DOCKER_IMAGE_CONFIG, OCI_IMAGE_CONFIG};
use crate::storage::{Storage, StorageResult};

pub type Labels = serde_json::Map<String, serde_json::Value>;

/// Labels already read, by manifest digest and config size limit: a
/// manifest's bytes name its config's digest, so what it carries never
/// changes, and a sweep over every tag need not read every config again.
#[derive(Default)]
pub struct LabelCache(std::sync::Mutex<std::collections::HashMap<(Digest, u64), Labels>>);

/// Entries kept before the cache starts over (a few hundred bytes each).
const CACHED_LABELS: usize = 50_000;

impl LabelCache {
    /// `of_manifest`, remembered for manifests that exist.
    pub async fn of_manifest(
        &self,
        storage: &dyn Storage,
        repo: &RepoName,
        digest: &Digest,
        limit: u64,
    ) -> StorageResult<Labels> {
        let key = (digest.clone(), limit);
        if let Some(labels) = self.lock().get(&key) {
            return Ok(labels.clone());
        }
        let Some(labels) = read(storage, repo, digest, limit).await? else {
            return Ok(Labels::new());
        };
        let mut cache = self.lock();
        if cache.len() >= CACHED_LABELS {
            cache.clear();
        }
        cache.insert(key, labels.clone());
        Ok(labels)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(Digest, u64), Labels>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The labels of the image manifest `digest` of `repo`; empty when it is
/// not an image, has none, or its config is larger than `limit` bytes.
pub async fn of_manifest(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    limit: u64,
) -> StorageResult<Labels> {
    Ok(read(storage, repo, digest, limit)
        .await?
        .unwrap_or_default())
}

/// The labels, or `None` when `repo` does not hold the manifest.
async fn read(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    limit: u64,
) -> StorageResult<Option<Labels>> {
    let Some(stored) = storage.manifest_get(repo, digest).await? else {
        return Ok(None);
    };
    // It was accepted once; one that no longer parses carries no labels.
    let Ok(facts) = manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
    else {
        return Ok(Some(Labels::new()));
    };
    let is_image_config = matches!(
        facts.config_media_type.as_deref(),
        Some(OCI_IMAGE_CONFIG | DOCKER_IMAGE_CONFIG)
    );
    let (ManifestKind::Image, true, Some(config)) =
        (facts.kind, is_image_config, facts.blobs.first())
    else {
        return Ok(Some(Labels::new()));
    };
    match storage.blob_size(&config.digest).await? {
        Some(size) if size <= limit => {}
        _ => return Ok(Some(Labels::new())),
    }
    let bytes: Vec<u8> = storage
        .blob_read(&config.digest, None)
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    Ok(Some(from_config(&bytes)))
}

/// The labels in an image config's JSON.
pub fn from_config(config_json: &[u8]) -> Labels {
    serde_json::from_slice::<serde_json::Value>(config_json)
        .ok()
        .and_then(|v| v.pointer("/config/Labels").cloned())
        .and_then(|labels| match labels {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default()
}

/// A label's text value.
pub fn text<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.get(name).and_then(|v| v.as_str())
}

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

/// The labels of the image manifest `digest` of `repo`; empty when it is
/// not an image, has none, or its config is larger than `limit` bytes.
pub async fn of_manifest(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    limit: u64,
) -> StorageResult<Labels> {
    let Some(stored) = storage.manifest_get(repo, digest).await? else {
        return Ok(Labels::new());
    };
    // It was accepted once; one that no longer parses carries no labels.
    let Ok(facts) = manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
    else {
        return Ok(Labels::new());
    };
    let is_image_config = matches!(
        facts.config_media_type.as_deref(),
        Some(OCI_IMAGE_CONFIG | DOCKER_IMAGE_CONFIG)
    );
    let (ManifestKind::Image, true, Some(config)) =
        (facts.kind, is_image_config, facts.blobs.first())
    else {
        return Ok(Labels::new());
    };
    match storage.blob_size(&config.digest).await? {
        Some(size) if size <= limit => {}
        _ => return Ok(Labels::new()),
    }
    let bytes: Vec<u8> = storage
        .blob_read(&config.digest, None)
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    Ok(from_config(&bytes))
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

//! The immutable-tags checks of manifest pushes and deletes, against what
//! is stored (immutable_tags.rs decides; this finds the facts). Every check
//! runs before the request writes anything, so a refusal stores nothing.

use super::AppState;
use crate::config::RegistryConfig;
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::immutable_tags::{self, Immutable};
use crate::manifest::{self, ManifestKind};
use crate::names::{RepoName, Tag};
use crate::policy::{DOCKER_IMAGE_CONFIG, OCI_IMAGE_CONFIG};
use futures::TryStreamExt;

/// Why `tag`, which names `current`, is immutable; `None` when it is not.
async fn immutability(
    state: &AppState,
    config: &RegistryConfig,
    repo: &RepoName,
    tag: &Tag,
    current: &Digest,
) -> ApiResult<Option<Immutable>> {
    if !config.feature_immutable_tags {
        return Ok(None);
    }
    if let Some(policy) = immutable_tags::policy_for(&config.immutable_tags_policies, repo, tag) {
        return Ok(Some(Immutable::Policy(policy)));
    }
    Ok(labelled_immutable(state, config, repo, current)
        .await?
        .then_some(Immutable::Label))
}

/// Whether the image manifest `digest` has a config labelled
/// `quay.immutable=true`. Indexes and artifacts have no such label.
async fn labelled_immutable(
    state: &AppState,
    config: &RegistryConfig,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<bool> {
    let Some(stored) = state.storage.manifest_get(repo, digest).await? else {
        return Ok(false);
    };
    // It was accepted once; one that no longer parses carries no label.
    let Ok(facts) = manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
    else {
        return Ok(false);
    };
    let is_image_config = matches!(
        facts.config_media_type.as_deref(),
        Some(OCI_IMAGE_CONFIG | DOCKER_IMAGE_CONFIG)
    );
    let (ManifestKind::Image, true, Some(config_blob)) =
        (facts.kind, is_image_config, facts.blobs.first())
    else {
        return Ok(false);
    };
    // Image configs are small; one larger than a manifest may be is not
    // read (and is treated as unlabelled).
    let Some(size) = state.storage.blob_size(&config_blob.digest).await? else {
        return Ok(false);
    };
    if size > config.maximum_manifest_size {
        return Ok(false);
    }
    let bytes: Vec<u8> = state
        .storage
        .blob_read(&config_blob.digest, None)
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    Ok(immutable_tags::config_has_label(&bytes))
}

/// Refuse a push that would move an immutable tag to `new`.
pub async fn check_moves(
    state: &AppState,
    repo: &RepoName,
    tags: &[Tag],
    new: &Digest,
) -> ApiResult<()> {
    let config = state.config();
    if !config.feature_immutable_tags {
        return Ok(());
    }
    for tag in tags {
        let Some(current) = state.storage.tag_get(repo, tag).await? else {
            continue;
        };
        if current == *new {
            continue; // the same manifest again: nothing moves
        }
        if let Some(why) = immutability(state, &config, repo, tag, &current).await? {
            let message = why.refuse_move(repo, tag, &current.to_string(), &new.to_string());
            tracing::warn!(repository = %repo, tag = %tag, "push refused: {message}");
            return Err(RegistryError::Denied(message));
        }
    }
    Ok(())
}

/// Refuse deleting `tag` (which names `current`) when it is immutable.
pub async fn check_tag_delete(
    state: &AppState,
    repo: &RepoName,
    tag: &Tag,
    current: &Digest,
) -> ApiResult<()> {
    let config = state.config();
    if let Some(why) = immutability(state, &config, repo, tag, current).await? {
        let message = why.refuse_tag_delete(repo, tag);
        tracing::warn!(repository = %repo, tag = %tag, "delete refused: {message}");
        return Err(RegistryError::Denied(message));
    }
    Ok(())
}

/// Refuse deleting the manifest `digest` when an immutable tag of
/// `naming_tags` (the tags that name it) protects it.
pub async fn check_manifest_delete(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
    naming_tags: &[Tag],
) -> ApiResult<()> {
    let config = state.config();
    for tag in naming_tags {
        if let Some(why) = immutability(state, &config, repo, tag, digest).await? {
            let message = why.refuse_manifest_delete(repo, tag, &digest.to_string());
            tracing::warn!(repository = %repo, digest = %digest, "delete refused: {message}");
            return Err(RegistryError::Denied(message));
        }
    }
    Ok(())
}

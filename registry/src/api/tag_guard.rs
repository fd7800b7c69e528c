//! The immutable-tags checks of manifest pushes and deletes, against what
//! is stored (immutable_tags.rs decides; this finds the facts). Every check
//! runs before the request writes anything, so a refusal stores nothing.

use super::AppState;
use crate::config::RegistryConfig;
use crate::digest::Digest;
use crate::error::{ApiResult, RegistryError};
use crate::image_labels;
use crate::immutable_tags::{self, Immutable};
use crate::names::{RepoName, Tag};
use crate::retention;

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
/// `quay.immutable=true`.
async fn labelled_immutable(
    state: &AppState,
    config: &RegistryConfig,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<bool> {
    let labels = image_labels::of_manifest(
        state.storage.as_ref(),
        repo,
        digest,
        config.maximum_manifest_size,
    )
    .await?;
    Ok(immutable_tags::labelled_immutable(&labels))
}

/// Refuse a push that would move an immutable tag to `new`. Returns the
/// tags that do not exist yet but that a policy makes immutable: they must
/// be created, never overwritten, so that of two pushes racing to create
/// one, only one wins.
pub async fn check_moves(
    state: &AppState,
    repo: &RepoName,
    tags: &[Tag],
    new: &Digest,
) -> ApiResult<Vec<Tag>> {
    let config = state.config();
    let mut create_only = Vec::new();
    if !config.feature_immutable_tags {
        return Ok(create_only);
    }
    for tag in tags {
        let Some(current) = state.storage.tag_get(repo, tag).await? else {
            if immutable_tags::policy_for(&config.immutable_tags_policies, repo, tag).is_some() {
                create_only.push(tag.clone());
            }
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
    Ok(create_only)
}

/// Point `tags` at `digest`: those `create_only` names only if no other
/// push created them first (then the same rules as a move apply).
pub async fn set_tags(
    state: &AppState,
    repo: &RepoName,
    tags: &[Tag],
    create_only: &[Tag],
    digest: &Digest,
) -> ApiResult<()> {
    for tag in tags {
        if !create_only.contains(tag) {
            state.storage.tag_set(repo, tag, digest).await?;
        } else if !state.storage.tag_create(repo, tag, digest).await? {
            check_moves(state, repo, std::slice::from_ref(tag), digest).await?;
            continue;
        }
        // A retention sweep removing this tag right now must not take
        // this push's tag with it.
        retention::removal::after_tag_set(state.storage.as_ref(), repo, tag, digest).await?;
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

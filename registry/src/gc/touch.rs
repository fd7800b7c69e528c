//! The rescues request handlers perform before they rely on stored
//! content (markers.rs says why they are enough):
//! - a blob `HEAD` answers 200 only for a blob it rescued: clients skip
//!   uploading what a `HEAD` found;
//! - a mount rescues its source;
//! - an upload commit waits while a sweep deletes the same digest, so the
//!   content it writes is not deleted right after;
//! - a manifest `PUT`, after writing the manifest and before setting tags,
//!   rescues everything the manifest makes reachable; if something is
//!   being deleted, the push is refused with MANIFEST_BLOB_UNKNOWN and the
//!   client uploads it again.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::try_join_all;

use super::markers::{self, Subject, Touched};
use crate::digest::Digest;
use crate::manifest::{self, ManifestFacts};
use crate::names::RepoName;
use crate::storage::{Storage, StorageResult};

/// How long an upload commit waits for a sweep to finish deleting the
/// digest it is writing (a deletion takes a few storage requests).
const COMMIT_WAIT: Duration = Duration::from_secs(20);
const COMMIT_POLL: Duration = Duration::from_millis(100);

/// Rescue a blob of a repository; true when the repository may serve it.
pub async fn blob_in_repo(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<bool> {
    let link = Subject::Link(repo.clone(), digest.clone());
    let blob = Subject::Blob(digest.clone());
    let (link, blob) = futures::try_join!(
        markers::touch(storage, &link),
        markers::touch(storage, &blob)
    )?;
    Ok(link.present && blob.present)
}

/// Rescue a blob's content; true when it is stored.
pub async fn blob_anywhere(storage: &dyn Storage, digest: &Digest) -> StorageResult<bool> {
    Ok(markers::touch(storage, &Subject::Blob(digest.clone()))
        .await?
        .present)
}

/// Before an upload commits `digest` into `repo`: rescue the blob and its
/// link, and wait while a sweep deletes either. False when a deletion is
/// still under way after the wait (a sweep that died mid-deletion; the
/// next sweep finishes it).
pub async fn before_commit(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<bool> {
    let subjects = [
        Subject::Blob(digest.clone()),
        Subject::Link(repo.clone(), digest.clone()),
    ];
    let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
    loop {
        let mut deleting = false;
        for subject in &subjects {
            deleting |= markers::rescue(storage, subject).await?.1;
        }
        if !deleting {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(COMMIT_POLL).await;
    }
}

/// After a manifest was written to `repo` and before its tags are set:
/// rescue the manifest, what it names, its referrers, and — for anything a
/// sweep had condemned — what that reaches in turn. `Ok(Some(what))` when
/// something it names is being deleted: the push must be refused.
pub async fn manifest_written(
    storage: &dyn Storage,
    repo: &RepoName,
    facts: &ManifestFacts,
) -> StorageResult<Option<String>> {
    let mut named = vec![
        Subject::Manifest(repo.clone(), facts.digest.clone()),
        Subject::Blob(facts.digest.clone()),
    ];
    named.extend(blob_subjects(repo, facts));
    named.extend(child_subjects(repo, facts));
    let touched = touch_all(storage, &named).await?;
    let mut expand = Vec::new();
    for (subject, t) in named.iter().zip(&touched) {
        if !t.present {
            return Ok(Some(format!(
                "{subject} was being removed by garbage collection while this push ran; push it again"
            )));
        }
        if let Subject::Manifest(_, digest) = subject
            && t.rescued
            && *digest != facts.digest
        {
            expand.push(digest.clone());
        }
    }
    expand.extend(rescue_referrers(storage, repo, &facts.digest).await?);
    rescue_reachable(storage, repo, expand, &facts.digest).await?;
    Ok(None)
}

fn blob_subjects<'a>(
    repo: &'a RepoName,
    facts: &'a ManifestFacts,
) -> impl Iterator<Item = Subject> + 'a {
    facts
        .blobs
        .iter()
        .filter(|b| !b.may_be_absent)
        .flat_map(move |b| {
            [
                Subject::Link(repo.clone(), b.digest.clone()),
                Subject::Blob(b.digest.clone()),
            ]
        })
}

fn child_subjects<'a>(
    repo: &'a RepoName,
    facts: &'a ManifestFacts,
) -> impl Iterator<Item = Subject> + 'a {
    facts.children.iter().flat_map(move |c| {
        [
            Subject::Manifest(repo.clone(), c.digest.clone()),
            Subject::Blob(c.digest.clone()),
        ]
    })
}

async fn touch_all(storage: &dyn Storage, subjects: &[Subject]) -> StorageResult<Vec<Touched>> {
    try_join_all(subjects.iter().map(|s| markers::touch(storage, s))).await
}

/// Rescue the referrers of `subject`; returns those that were condemned
/// (their own blobs and referrers need rescuing too).
async fn rescue_referrers(
    storage: &dyn Storage,
    repo: &RepoName,
    subject: &Digest,
) -> StorageResult<Vec<Digest>> {
    let mut condemned = Vec::new();
    for referrer in storage.referrers(repo, subject).await? {
        let named = [
            Subject::Manifest(repo.clone(), referrer.digest.clone()),
            Subject::Blob(referrer.digest.clone()),
        ];
        let touched = touch_all(storage, &named).await?;
        if touched.iter().any(|t| t.rescued) {
            condemned.push(referrer.digest);
        }
    }
    Ok(condemned)
}

/// A manifest a sweep had condemned is reachable again: rescue what it
/// names and its referrers, and so on for what was condemned among them.
/// A part already being deleted cannot be saved; it is logged.
async fn rescue_reachable(
    storage: &dyn Storage,
    repo: &RepoName,
    mut queue: Vec<Digest>,
    root: &Digest,
) -> StorageResult<()> {
    let mut seen: BTreeSet<Digest> = BTreeSet::from([root.clone()]);
    while let Some(digest) = queue.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        let Some(stored) = storage.manifest_get(repo, &digest).await? else {
            continue;
        };
        let Ok(facts) =
            manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
        else {
            continue;
        };
        let named: Vec<Subject> = blob_subjects(repo, &facts)
            .chain(child_subjects(repo, &facts))
            .collect();
        let touched = touch_all(storage, &named).await?;
        for (subject, t) in named.iter().zip(&touched) {
            if !t.present {
                tracing::warn!(repository = %repo, manifest = %digest, part = %subject,
                    "a manifest made reachable again lost a part garbage collection was deleting");
            }
            if let Subject::Manifest(_, child) = subject
                && t.rescued
            {
                queue.push(child.clone());
            }
        }
        queue.extend(rescue_referrers(storage, repo, &digest).await?);
    }
    Ok(())
}

//! Removing a tag without losing a push that lands at the same moment.
//! A retention sweep decides from a listing, re-reads the tag and deletes
//! it; a push of the same tag between the re-read and the delete would be
//! deleted with it. Storage offers no delete-if-unchanged on every backend,
//! so the sweep and the push hand over through a mark,
//! `repositories/<name>/_retention/<tag>`:
//!
//! - the sweep writes the mark `removing <digest>`, re-reads the tag (left
//!   alone, mark withdrawn, if it moved), deletes it — only if that is less
//!   than `DELETE_WITHIN` after the mark — and rewrites the mark `removed`;
//! - a push, after setting the tag, reads the mark (one request; absent
//!   almost always). While it says `removing` the push waits (up to
//!   `PUSH_WAIT`, more than a delete request can take), then, if its tag is
//!   gone, sets it again.
//!
//! Why nothing is lost: a push whose tag write came before the re-read
//! makes the sweep leave the tag; one after the delete is not touched by
//! it; one in between finds the mark (written before the re-read), which
//! is `removing` until the delete is done and `removed` for
//! `MARK_KEPT` after, so the push sets its tag again once the delete is
//! done. Marks older than `MARK_KEPT` are removed by the next sweep.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::digest::Digest;
use crate::names::{RepoName, Tag};
use crate::storage::{Key, Storage, StorageResult};

/// The sweep deletes a tag only this soon after its mark.
const DELETE_WITHIN: Duration = Duration::from_secs(5);
/// How long a push waits for a removal in progress: `DELETE_WITHIN` plus
/// the longest a storage request may take (object_store's 30 s timeout).
const PUSH_WAIT: Duration = Duration::from_secs(40);
const PUSH_POLL: Duration = Duration::from_millis(100);
/// How long a `removed` mark stays (far longer than a push takes from its
/// tag write to its read of the mark).
const MARK_KEPT: Duration = Duration::from_secs(600);

const REMOVING: &str = "removing";
const REMOVED: &str = "removed";

fn mark(repo: &RepoName, tag: &Tag) -> Key {
    Key::retention_mark(repo, tag)
}

/// A removal begun: the mark is written and the tag still names `digest`.
pub struct Removal {
    repo: RepoName,
    tag: Tag,
    digest: Digest,
    marked: Instant,
}

/// Mark `tag` and re-read it; `None` (mark withdrawn) when it no longer
/// names `digest`.
pub async fn begin(
    storage: &dyn Storage,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
) -> StorageResult<Option<Removal>> {
    let key = mark(repo, tag);
    storage
        .kv_put(&key, Bytes::from(format!("{REMOVING} {digest}")))
        .await?;
    let marked = Instant::now();
    if storage.tag_get(repo, tag).await?.as_ref() != Some(digest) {
        storage.kv_delete(&key).await?;
        return Ok(None);
    }
    Ok(Some(Removal {
        repo: repo.clone(),
        tag: tag.clone(),
        digest: digest.clone(),
        marked,
    }))
}

impl Removal {
    /// Delete the tag and mark it removed; false when it was not deleted
    /// (gone already, or too late after the mark: the next sweep decides
    /// again).
    pub async fn finish(self, storage: &dyn Storage) -> StorageResult<bool> {
        let key = mark(&self.repo, &self.tag);
        if self.marked.elapsed() >= DELETE_WITHIN {
            storage.kv_delete(&key).await?;
            return Ok(false);
        }
        let deleted = storage.tag_delete(&self.repo, &self.tag).await?;
        storage
            .kv_put(&key, Bytes::from(format!("{REMOVED} {}", self.digest)))
            .await?;
        Ok(deleted)
    }
}

/// Remove `tag` if it still names `digest` (begin, then finish).
pub async fn remove(
    storage: &dyn Storage,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
) -> StorageResult<bool> {
    match begin(storage, repo, tag, digest).await? {
        Some(removal) => removal.finish(storage).await,
        None => Ok(false),
    }
}

/// After a push set `tag` to `digest`: if a sweep is removing the tag,
/// wait until it is done, and set the tag again if it went.
pub async fn after_tag_set(
    storage: &dyn Storage,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
) -> StorageResult<()> {
    let key = mark(repo, tag);
    let deadline = Instant::now() + PUSH_WAIT;
    loop {
        match storage.kv_get(&key).await? {
            None => break,
            Some(raw) if !raw.starts_with(REMOVING.as_bytes()) => break,
            Some(_) if Instant::now() >= deadline => {
                tracing::warn!(repository = %repo, %tag, "a tag removal stayed in progress for {}s; going on", PUSH_WAIT.as_secs());
                break;
            }
            Some(_) => tokio::time::sleep(PUSH_POLL).await,
        }
    }
    if storage.tag_get(repo, tag).await?.is_none() {
        tracing::info!(repository = %repo, %tag, %digest, "tag set again: a retention sweep removed it while this push set it");
        storage.tag_set(repo, tag, digest).await?;
    }
    Ok(())
}

/// Remove `removed` marks of `repo` older than `MARK_KEPT` (and `removing`
/// ones a dead sweep left, after as long).
pub async fn purge_marks(
    storage: &dyn Storage,
    repo: &RepoName,
    now: SystemTime,
) -> StorageResult<usize> {
    let mut purged = 0;
    for entry in storage.kv_list(&Key::retention_marks(repo)).await? {
        if now.duration_since(entry.modified).unwrap_or_default() < MARK_KEPT {
            continue;
        }
        let Some(tag) = Tag::parse(&entry.name) else {
            continue;
        };
        if storage.kv_delete(&mark(repo, &tag)).await? {
            purged += 1;
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::digest::Algorithm;
    use crate::storage::{FilesystemStorage, ObjectStorage};

    fn stores() -> (tempfile::TempDir, Vec<Arc<dyn Storage>>) {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Storage> = Arc::new(FilesystemStorage::open(dir.path()).unwrap());
        let bucket = Arc::new(object_store::memory::InMemory::new());
        let object: Arc<dyn Storage> =
            Arc::new(ObjectStorage::new(bucket, "registry", "memory".into()));
        (dir, vec![fs, object])
    }

    fn names() -> (RepoName, Tag, Digest, Digest) {
        (
            RepoName::parse("team/app").unwrap(),
            Tag::parse("nightly").unwrap(),
            Digest::of_bytes(Algorithm::Sha256, b"old image"),
            Digest::of_bytes(Algorithm::Sha256, b"new image"),
        )
    }

    /// A push of the tag in the window between the sweep's re-read and its
    /// delete: the push waits for the delete, then sets its tag again.
    #[tokio::test]
    async fn a_push_between_the_reread_and_the_delete_keeps_its_tag() {
        let (_dir, stores) = stores();
        for s in stores {
            let (repo, tag, old, new) = names();
            s.tag_set(&repo, &tag, &old).await.unwrap();
            let removal = begin(s.as_ref(), &repo, &tag, &old).await.unwrap();
            let removal = removal.expect("the tag still names the old image");
            // The push writes its tag, then looks for a removal.
            s.tag_set(&repo, &tag, &new).await.unwrap();
            let push = tokio::spawn({
                let (s, repo, tag, new) = (s.clone(), repo.clone(), tag.clone(), new.clone());
                async move { after_tag_set(s.as_ref(), &repo, &tag, &new).await }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!push.is_finished(), "the push did not wait for the removal");
            // The sweep deletes: the push's tag goes with it, for a moment.
            assert!(removal.finish(s.as_ref()).await.unwrap());
            push.await.unwrap().unwrap();
            assert_eq!(s.tag_get(&repo, &tag).await.unwrap(), Some(new));
        }
    }

    #[tokio::test]
    async fn a_push_before_the_reread_makes_the_sweep_leave_the_tag() {
        let (_dir, stores) = stores();
        for s in stores {
            let (repo, tag, old, new) = names();
            s.tag_set(&repo, &tag, &new).await.unwrap();
            // The sweep decided about `old`; the tag names `new` now.
            assert!(
                begin(s.as_ref(), &repo, &tag, &old)
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(!remove(s.as_ref(), &repo, &tag, &old).await.unwrap());
            assert_eq!(s.tag_get(&repo, &tag).await.unwrap(), Some(new.clone()));
            // No mark is left: later pushes pay one read and never wait.
            assert!(s.kv_get(&mark(&repo, &tag)).await.unwrap().is_none());
            let started = Instant::now();
            after_tag_set(s.as_ref(), &repo, &tag, &new).await.unwrap();
            assert!(started.elapsed() < PUSH_POLL);
        }
    }

    #[tokio::test]
    async fn a_removal_stays_removed_and_its_mark_goes_later() {
        let (_dir, stores) = stores();
        for s in stores {
            let (repo, tag, old, new) = names();
            s.tag_set(&repo, &tag, &old).await.unwrap();
            assert!(remove(s.as_ref(), &repo, &tag, &old).await.unwrap());
            assert_eq!(s.tag_get(&repo, &tag).await.unwrap(), None);
            // A push after the removal is untouched by it.
            s.tag_set(&repo, &tag, &new).await.unwrap();
            after_tag_set(s.as_ref(), &repo, &tag, &new).await.unwrap();
            assert_eq!(s.tag_get(&repo, &tag).await.unwrap(), Some(new.clone()));
            // Marks go once they are MARK_KEPT old.
            let soon = SystemTime::now();
            assert_eq!(purge_marks(s.as_ref(), &repo, soon).await.unwrap(), 0);
            let later = soon + MARK_KEPT + Duration::from_secs(1);
            assert_eq!(purge_marks(s.as_ref(), &repo, later).await.unwrap(), 1);
            assert!(s.kv_get(&mark(&repo, &tag)).await.unwrap().is_none());
            // The mark is not a tag.
            let tags = s.kv_names(&Key::tags(&repo)).await.unwrap();
            assert_eq!(tags, vec!["nightly".to_string()]);
        }
    }
}

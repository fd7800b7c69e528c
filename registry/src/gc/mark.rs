//! Finding garbage: the mark phase of garbage collection, over the storage
//! trait alone, so it is the same on the filesystem and in a bucket.
//! `quarry-registry gc --dry-run` prints what it finds. Nothing here
//! deletes: the sweep (sweep.rs) does, under the protocol of markers.rs.
//!
//! What is kept, per repository:
//! - every manifest a tag reaches, the children of every kept index, and
//!   every referrer (signature, SBOM, attestation) of a kept manifest, and
//!   theirs in turn;
//! - every manifest, blob link and blob written less than `grace` ago (a
//!   push in flight uploads its blobs before the manifest that names them);
//! - the blobs those manifests name (config, layers), the manifests' own
//!   content, and the blob links a kept manifest needs.
//!
//! A blob is garbage when no repository keeps it; a link when its
//! repository's kept manifests do not need it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::storage::{Key, Storage, StorageResult, metadata};

/// Why something is garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No tag reaches the manifest, through indexes or as a referrer of a
    /// reached manifest.
    Unreachable,
    /// A referrer whose subject is not kept (deleted or itself garbage).
    OrphanedReferrer { subject: Digest },
    /// No kept manifest of the repository names the blob.
    UnusedLink,
    /// No repository keeps the blob.
    Unreferenced,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Unreachable => {
                f.write_str("no tag reaches it (directly, through an index or as a referrer)")
            }
            Reason::OrphanedReferrer { subject } => {
                write!(f, "a referrer of {subject}, which is gone or garbage")
            }
            Reason::UnusedLink => f.write_str("no kept manifest of the repository names the blob"),
            Reason::Unreferenced => f.write_str("no repository keeps it"),
        }
    }
}

/// What is garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Manifest { repo: String, digest: Digest },
    Link { repo: String, digest: Digest },
    Blob { digest: Digest, size: u64 },
}

/// One finding: the item, why, and how long ago it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    pub item: Item,
    pub reason: Reason,
    pub age: Duration,
}

impl std::fmt::Display for Garbage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age = humantime_secs(self.age);
        match &self.item {
            Item::Manifest { repo, digest } => {
                write!(
                    f,
                    "manifest {repo}@{digest} (written {age} ago): {}",
                    self.reason
                )
            }
            Item::Link { repo, digest } => {
                write!(
                    f,
                    "link {repo} -> {digest} (written {age} ago): {}",
                    self.reason
                )
            }
            Item::Blob { digest, size } => write!(
                f,
                "blob {digest}, {size} bytes (written {age} ago): {}",
                self.reason
            ),
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Everything found, and the bytes the blobs would free.
#[derive(Debug, Default)]
pub struct Report {
    pub garbage: Vec<Garbage>,
    pub kept_manifests: usize,
    pub kept_blobs: usize,
}

impl Report {
    pub fn reclaimable_bytes(&self) -> u64 {
        self.garbage
            .iter()
            .map(|g| match g.item {
                Item::Blob { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    fn count(&self, pick: fn(&Item) -> bool) -> usize {
        self.garbage.iter().filter(|g| pick(&g.item)).count()
    }

    /// One line: what would go and what stays.
    pub fn summary(&self) -> String {
        format!(
            "{} manifests, {} links, {} blobs ({} bytes) are garbage; {} manifests and {} blobs are kept",
            self.count(|i| matches!(i, Item::Manifest { .. })),
            self.count(|i| matches!(i, Item::Link { .. })),
            self.count(|i| matches!(i, Item::Blob { .. })),
            self.reclaimable_bytes(),
            self.kept_manifests,
            self.kept_blobs
        )
    }
}

/// What one repository keeps.
#[derive(Default)]
struct Kept {
    manifests: BTreeSet<Digest>,
    blobs: BTreeSet<Digest>,
}

/// Find the garbage as of `now`: what the rules above do not keep and was
/// written at least `grace` before `now`.
pub async fn find(
    storage: &dyn Storage,
    grace: Duration,
    now: SystemTime,
) -> StorageResult<Report> {
    let old = |modified: SystemTime| {
        now.duration_since(modified)
            .ok()
            .filter(|age| *age >= grace)
    };
    let mut report = Report::default();
    let mut kept_blobs: BTreeSet<Digest> = BTreeSet::new();
    for name in storage.repositories().await? {
        let Some(repo) = RepoName::parse(&name) else {
            continue;
        };
        let kept = find_in_repository(storage, &repo, &old, &mut report).await?;
        report.kept_manifests += kept.manifests.len();
        kept_blobs.extend(kept.manifests);
        kept_blobs.extend(kept.blobs);
    }
    for blob in storage.blobs().await? {
        if kept_blobs.contains(&blob.digest) {
            report.kept_blobs += 1;
            continue;
        }
        match old(blob.modified) {
            Some(age) => report.garbage.push(Garbage {
                item: Item::Blob {
                    digest: blob.digest,
                    size: blob.size,
                },
                reason: Reason::Unreferenced,
                age,
            }),
            None => report.kept_blobs += 1,
        }
    }
    Ok(report)
}

async fn find_in_repository(
    storage: &dyn Storage,
    repo: &RepoName,
    old: &impl Fn(SystemTime) -> Option<Duration>,
    report: &mut Report,
) -> StorageResult<Kept> {
    let manifests = metadata::digests_under(storage, Key::manifests_of, repo).await?;
    let links = metadata::digests_under(storage, Key::layers_of, repo).await?;

    // Reachable from the tags, through index children and referrers.
    let mut reachable: BTreeSet<Digest> = BTreeSet::new();
    let mut queue: Vec<Digest> = Vec::new();
    for tag in storage.tags_list(repo).await?.unwrap_or_default() {
        if let Some(tag) = Tag::parse(&tag)
            && let Some(digest) = storage.tag_get(repo, &tag).await?
        {
            queue.push(digest);
        }
    }
    // Young manifests are kept, and so is what they reach.
    queue.extend(
        manifests
            .iter()
            .filter(|(_, modified)| old(**modified).is_none())
            .map(|(digest, _)| digest.clone()),
    );
    let mut kept = Kept::default();
    while let Some(digest) = queue.pop() {
        if !reachable.insert(digest.clone()) {
            continue;
        }
        let Some(stored) = storage.manifest_get(repo, &digest).await? else {
            continue; // a tag naming a deleted manifest
        };
        if let Ok(facts) =
            manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
        {
            kept.blobs.extend(facts.blobs.into_iter().map(|b| b.digest));
            queue.extend(facts.children.into_iter().map(|c| c.digest));
        }
        for referrer in storage.referrers(repo, &digest).await? {
            queue.push(referrer.digest);
        }
    }
    for (digest, modified) in &manifests {
        if reachable.contains(digest) {
            kept.manifests.insert(digest.clone());
            continue;
        }
        let Some(age) = old(*modified) else {
            kept.manifests.insert(digest.clone());
            continue;
        };
        let reason = match referrer_subject(storage, repo, digest).await? {
            Some(subject) => Reason::OrphanedReferrer { subject },
            None => Reason::Unreachable,
        };
        report.garbage.push(Garbage {
            item: Item::Manifest {
                repo: repo.to_string(),
                digest: digest.clone(),
            },
            reason,
            age,
        });
    }
    for (digest, modified) in &links {
        if kept.blobs.contains(digest) {
            continue;
        }
        match old(*modified) {
            // A young link keeps its blob: its manifest may be on the way.
            None => {
                kept.blobs.insert(digest.clone());
            }
            Some(age) => report.garbage.push(Garbage {
                item: Item::Link {
                    repo: repo.to_string(),
                    digest: digest.clone(),
                },
                reason: Reason::UnusedLink,
                age,
            }),
        }
    }
    Ok(kept)
}

/// The subject of a stored manifest, if it is a referrer.
async fn referrer_subject(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<Option<Digest>> {
    let Some(stored) = storage.manifest_get(repo, digest).await? else {
        return Ok(None);
    };
    Ok(
        manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
            .ok()
            .and_then(|f| f.subject),
    )
}

#[cfg(test)]
mod tests;

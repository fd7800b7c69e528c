//! One sweep: condemn what the mark finds garbage, delete what a previous
//! sweep condemned and this one finds garbage again, acquit what is kept
//! again, and finish deletions a dead sweep left. Safe with requests and
//! with other sweeps running at the same time (markers.rs, docs/gc.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::mark::{self, Item};
use super::markers::{self, CONDEMNED, DELETING, Deletion, Subject};
use crate::names::RepoName;
use crate::storage::{Storage, StorageResult};

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Newly condemned (deleted by a later sweep if still garbage then).
    pub condemned: usize,
    /// Condemned earlier, kept now (a tag or a push reaches them again).
    pub acquitted: usize,
    /// Rescued by a request between condemnation and deletion.
    pub rescued: usize,
    pub deleted_manifests: usize,
    pub deleted_links: usize,
    pub deleted_blobs: usize,
    pub deleted_bytes: u64,
    /// Subjects another sweep was deleting at the same time.
    pub busy: usize,
    /// Deletions of subjects that failed (logged; retried next sweep).
    pub errors: usize,
    pub duration: Duration,
}

impl Outcome {
    fn count(&mut self, subject: &Subject, deletion: Deletion) {
        match deletion {
            Deletion::Rescued => self.rescued += 1,
            Deletion::Busy => self.busy += 1,
            Deletion::Deleted(bytes) => {
                self.deleted_bytes += bytes;
                match subject {
                    Subject::Manifest(..) => self.deleted_manifests += 1,
                    Subject::Link(..) => self.deleted_links += 1,
                    Subject::Blob(_) => self.deleted_blobs += 1,
                }
            }
        }
    }

    /// The same outcome with another duration (to compare what was done).
    pub fn with_duration(mut self, duration: Duration) -> Outcome {
        self.duration = duration;
        self
    }

    /// One line for the log and the CLI.
    pub fn summary(&self) -> String {
        format!(
            "deleted {} manifests, {} links, {} blobs ({} bytes); condemned {}, acquitted {}, rescued {}, {} errors, in {:.1}s",
            self.deleted_manifests,
            self.deleted_links,
            self.deleted_blobs,
            self.deleted_bytes,
            self.condemned,
            self.acquitted,
            self.rescued,
            self.errors,
            self.duration.as_secs_f64()
        )
    }
}

/// The subject of a finding, with the bytes it frees.
fn subject_of(item: &Item) -> Option<(Subject, u64)> {
    let repo = |name: &str| RepoName::parse(name);
    Some(match item {
        Item::Manifest { repo: r, digest } => (Subject::Manifest(repo(r)?, digest.clone()), 0),
        Item::Link { repo: r, digest } => (Subject::Link(repo(r)?, digest.clone()), 0),
        Item::Blob { digest, size } => (Subject::Blob(digest.clone()), *size),
    })
}

/// Sweep once. What was written less than `grace` ago is kept, and a
/// condemned subject is deleted only once its condemnation is `grace` old,
/// so a client that found a blob with `HEAD` has that long to push the
/// manifest naming it.
pub async fn sweep(storage: &dyn Storage, grace: Duration) -> StorageResult<Outcome> {
    plan(storage, grace).await?.carry_out(storage).await
}

/// A sweep decided, not yet carried out (split so tests can run requests
/// between the mark and the deletions, the window that matters).
pub struct Plan {
    started: Instant,
    now: SystemTime,
    grace: Duration,
    condemned: BTreeMap<Subject, (String, SystemTime)>,
    garbage: BTreeMap<Subject, u64>,
    outcome: Outcome,
}

/// List the condemnations, finish abandoned deletions, and mark.
pub async fn plan(storage: &dyn Storage, grace: Duration) -> StorageResult<Plan> {
    let started = Instant::now();
    let now = SystemTime::now();
    let mut outcome = Outcome::default();
    // Listed before the mark begins: every condemnation here is older than
    // the mark, so the mark sees every manifest committed before it, and
    // every manifest committed after it rescues what it names.
    let condemned: BTreeMap<Subject, (String, SystemTime)> = markers::list(storage, CONDEMNED)
        .await?
        .into_iter()
        .map(|m| (m.subject, (m.condemnation, m.written)))
        .collect();
    for marker in markers::list(storage, DELETING).await? {
        match markers::recover(storage, &marker, now).await {
            Ok(Some(deletion)) => outcome.count(&marker.subject, deletion),
            Ok(None) => {}
            Err(e) => {
                outcome.errors += 1;
                tracing::warn!(subject = %marker.subject, error = %e, "could not finish an abandoned deletion");
            }
        }
    }
    let report = mark::find(storage, grace, now).await?;
    let garbage = report
        .garbage
        .iter()
        .filter_map(|g| subject_of(&g.item))
        .collect();
    Ok(Plan {
        started,
        now,
        grace,
        condemned,
        garbage,
        outcome,
    })
}

impl Plan {
    /// Condemn new garbage, delete what stayed condemned for `grace`,
    /// acquit what is kept again.
    pub async fn carry_out(self, storage: &dyn Storage) -> StorageResult<Outcome> {
        let Plan {
            started,
            now,
            grace,
            condemned,
            garbage,
            mut outcome,
        } = self;
        for (subject, size) in &garbage {
            let step = match condemned.get(subject) {
                None => markers::condemn(storage, subject).await.map(|new| {
                    if new {
                        outcome.condemned += 1;
                    }
                }),
                Some((condemnation, written))
                    if now.duration_since(*written).unwrap_or_default() >= grace =>
                {
                    markers::delete(storage, subject, condemnation, *size)
                        .await
                        .map(|deletion| outcome.count(subject, deletion))
                }
                Some(_) => Ok(()), // condemned less than `grace` ago
            };
            if let Err(e) = step {
                outcome.errors += 1;
                tracing::warn!(%subject, error = %e, "garbage collection could not handle it; next sweep retries");
            }
        }
        for subject in condemned.keys().filter(|s| !garbage.contains_key(*s)) {
            match markers::acquit(storage, subject).await {
                Ok(()) => outcome.acquitted += 1,
                Err(e) => {
                    outcome.errors += 1;
                    tracing::warn!(%subject, error = %e, "could not withdraw a condemnation");
                }
            }
        }
        outcome.duration = started.elapsed();
        Ok(outcome)
    }
}

//! The last sync of each mirror, kept in storage next to the repository
//! (so every replica sharing the bucket or volume tells the same story,
//! whichever of them ran the sync) and served as JSON at
//! `GET /mirror/status`. The operator reads it into the QuarryRegistry's
//! status and turns new syncs into Events (operator/src/mirror_report.rs).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::RepoMirror;
use super::sync::SyncReport;
use crate::names::RepoName;
use crate::storage::{Key, Storage};

/// Failures kept per sync (the log has them all).
const FAILURES_KEPT: usize = 10;

/// How one sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncResult {
    /// Every selected tag is in step.
    Succeeded,
    /// Some tags failed; the others were synced.
    Partial,
    /// Nothing was synced (the upstream could not be listed, storage
    /// failed).
    Failed,
}

impl SyncResult {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SyncResult::Succeeded => "ok",
            SyncResult::Partial => "partial",
            SyncResult::Failed => "failed",
        }
    }
}

/// One sync, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// When it finished, in seconds since the Unix epoch.
    pub finished_at: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    pub result: SyncResult,
    /// One line for people: what changed, or why it failed.
    pub summary: String,
    pub tags_selected: usize,
    pub tags_copied: usize,
    pub tags_unchanged: usize,
    pub tags_pruned: usize,
    /// Selected but left out for want of a signature (`signed_only`).
    #[serde(default)]
    pub tags_skipped_unsigned: usize,
    pub bytes_copied: u64,
    /// The first failures, "tag: why".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl SyncRecord {
    pub fn from_report(report: &SyncReport, finished_at: i64, duration_ms: u64) -> SyncRecord {
        let result = if report.failures.is_empty() {
            SyncResult::Succeeded
        } else {
            SyncResult::Partial
        };
        SyncRecord {
            finished_at,
            duration_ms,
            result,
            summary: report.summary(),
            tags_selected: report.tags_selected,
            tags_copied: report.tags_copied,
            tags_unchanged: report.tags_unchanged,
            tags_pruned: report.tags_pruned,
            tags_skipped_unsigned: report.tags_skipped_unsigned,
            bytes_copied: report.bytes_copied,
            failures: report
                .failures
                .iter()
                .take(FAILURES_KEPT)
                .cloned()
                .collect(),
        }
    }

    pub fn failed(error: &str, finished_at: i64, duration_ms: u64) -> SyncRecord {
        SyncRecord {
            finished_at,
            duration_ms,
            result: SyncResult::Failed,
            summary: format!("the sync failed: {error}"),
            tags_selected: 0,
            tags_copied: 0,
            tags_unchanged: 0,
            tags_pruned: 0,
            tags_skipped_unsigned: 0,
            bytes_copied: 0,
            failures: Vec::new(),
        }
    }

    /// Worth an Event: it changed something or did not fully succeed.
    pub fn is_notable(&self) -> bool {
        self.result != SyncResult::Succeeded || self.tags_copied > 0 || self.tags_pruned > 0
    }
}

/// One configured mirror and its last sync, if it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorState {
    pub repository: String,
    /// The upstream repository (`host[:port]/path`).
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncRecord>,
}

/// What `GET /mirror/status` answers: every configured mirror, in the
/// configuration's order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorStatus {
    pub mirrors: Vec<MirrorState>,
}

/// Store `record` as the last sync of `repo`.
pub async fn save(storage: &dyn Storage, repo: &RepoName, record: &SyncRecord) {
    let json = match serde_json::to_vec(record) {
        Ok(json) => json,
        Err(e) => {
            tracing::warn!(repository = %repo, error = %e, "mirror sync record not serialised");
            return;
        }
    };
    if let Err(e) = storage
        .kv_put(&Key::mirror_last_sync(repo), Bytes::from(json))
        .await
    {
        tracing::warn!(repository = %repo, error = %e, "mirror sync record not stored");
    }
}

/// The state of every mirror of `mirrors`. A record that cannot be read
/// counts as none (and is logged): the status is informational.
pub async fn load(storage: &dyn Storage, mirrors: &[RepoMirror]) -> MirrorStatus {
    let mut status = MirrorStatus::default();
    for mirror in mirrors {
        let last_sync = match RepoName::parse(&mirror.repository) {
            Some(repo) => read(storage, &repo).await,
            None => None,
        };
        status.mirrors.push(MirrorState {
            repository: mirror.repository.clone(),
            upstream: mirror.external_reference.clone(),
            last_sync,
        });
    }
    status
}

async fn read(storage: &dyn Storage, repo: &RepoName) -> Option<SyncRecord> {
    let bytes = match storage.kv_get(&Key::mirror_last_sync(repo)).await {
        Ok(bytes) => bytes?,
        Err(e) => {
            tracing::warn!(repository = %repo, error = %e, "mirror sync record not read");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(
            |e| tracing::warn!(repository = %repo, error = %e, "mirror sync record unreadable"),
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_failures_is_partial_and_keeps_the_first_ten() {
        let report = SyncReport {
            tags_selected: 12,
            tags_copied: 1,
            failures: (0..12).map(|i| format!("v{i}: refused")).collect(),
            ..SyncReport::default()
        };
        let record = SyncRecord::from_report(&report, 5, 7);
        assert_eq!(record.result, SyncResult::Partial);
        assert_eq!(record.failures.len(), FAILURES_KEPT);
        assert!(record.is_notable());
        let quiet = SyncRecord::from_report(
            &SyncReport {
                tags_selected: 3,
                tags_unchanged: 3,
                ..SyncReport::default()
            },
            5,
            7,
        );
        assert_eq!(quiet.result, SyncResult::Succeeded);
        assert!(!quiet.is_notable(), "an unchanged sync is not news");
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"result\":\"partial\""), "{json}");
        assert_eq!(serde_json::from_str::<SyncRecord>(&json).unwrap(), record);
    }
}

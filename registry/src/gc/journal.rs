//! The last sweeps of this replica, served as JSON at `GET /gc/sweeps`.
//! The operator reads every registry pod's journal and reports sweeps that
//! deleted something, or failed, as Events on the QuarryRegistry (and a
//! condition only when the health of the sweeps changes), so a cluster
//! admin sees them without a status write per sweep.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::sweep::Outcome;

/// Sweeps remembered (a poll every few intervals misses none).
const KEPT: usize = 32;

/// One sweep, as the journal tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRecord {
    /// 1 for this process's first sweep, then one more per sweep.
    pub sequence: u64,
    /// When it finished, in seconds since the Unix epoch.
    pub finished_at: i64,
    /// False when the sweep could not run to its end.
    pub succeeded: bool,
    /// What it did (`Outcome::summary`), or why it failed.
    pub summary: String,
    pub deleted_manifests: usize,
    pub deleted_blobs: usize,
    pub deleted_bytes: u64,
    /// Subjects it could not handle (retried by the next sweep).
    pub errors: usize,
}

impl SweepRecord {
    /// Whether it is worth telling an admin: it freed something or failed.
    pub fn is_notable(&self) -> bool {
        !self.succeeded
            || self.errors > 0
            || self.deleted_manifests > 0
            || self.deleted_blobs > 0
            || self.deleted_bytes > 0
    }
}

/// What `GET /gc/sweeps` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sweeps {
    /// Names this process: sequences start again when it changes.
    pub instance: String,
    /// Oldest first.
    pub sweeps: Vec<SweepRecord>,
}

/// The journal of one process.
pub struct Journal {
    instance: String,
    state: Mutex<(u64, VecDeque<SweepRecord>)>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            instance: uuid::Uuid::new_v4().to_string(),
            state: Mutex::default(),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Journal {
    /// A sweep that ran to its end.
    pub fn record_outcome(&self, outcome: &Outcome) {
        self.push(|sequence| SweepRecord {
            sequence,
            finished_at: now(),
            succeeded: true,
            summary: outcome.summary(),
            deleted_manifests: outcome.deleted_manifests,
            deleted_blobs: outcome.deleted_blobs,
            deleted_bytes: outcome.deleted_bytes,
            errors: outcome.errors,
        });
    }

    /// A sweep that stopped on `error`.
    pub fn record_failure(&self, error: &str) {
        self.push(|sequence| SweepRecord {
            sequence,
            finished_at: now(),
            succeeded: false,
            summary: error.to_string(),
            deleted_manifests: 0,
            deleted_blobs: 0,
            deleted_bytes: 0,
            errors: 1,
        });
    }

    fn push(&self, record: impl FnOnce(u64) -> SweepRecord) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        let entry = record(state.0);
        state.1.push_back(entry);
        while state.1.len() > KEPT {
            state.1.pop_front();
        }
    }

    pub fn snapshot(&self) -> Sweeps {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Sweeps {
            instance: self.instance.clone(),
            sweeps: state.1.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_sweeps_in_order_with_growing_sequences() {
        let journal = Journal::default();
        for _ in 0..KEPT + 3 {
            journal.record_outcome(&Outcome::default());
        }
        journal.record_failure("storage unavailable: connection refused");
        let Sweeps { instance, sweeps } = journal.snapshot();
        assert_eq!(instance, journal.instance);
        assert_eq!(sweeps.len(), KEPT);
        assert_eq!(sweeps.last().map(|s| s.sequence), Some(KEPT as u64 + 4));
        assert!(
            sweeps
                .windows(2)
                .all(|w| w[0].sequence + 1 == w[1].sequence)
        );
        let last = sweeps.last().unwrap();
        assert!(!last.succeeded && last.is_notable());
        assert!(
            !sweeps[0].is_notable(),
            "a sweep that did nothing is not news"
        );
    }
}

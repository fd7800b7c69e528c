//! Garbage-collection reports. Every registry replica keeps a journal of
//! its last sweeps (`GET /gc/sweeps`, quarry_registry::gc::journal); on
//! each reconcile the operator reads the journals of the ready registry
//! pods and
//! - publishes an Event for each new sweep that deleted something (Normal,
//!   `GarbageCollected`) or failed (Warning, `GarbageCollectionFailed`);
//! - derives the `GarbageCollection` condition from each replica's latest
//!   sweep (components/garbage_collection.rs), so status is written when the
//!   health of the sweeps changes, not on every sweep.
//!
//! Reading is best effort (registry_pods.rs).

use kube::runtime::events::{Event, EventType};
use quarry_registry::gc::journal::{SweepRecord, Sweeps};

use crate::crd::QuarryRegistry;
use crate::reconcile::Context;
use crate::registry_pods::{Health, Reported};
use crate::status;

/// Remembers which sweeps were reported: per registry process (its
/// journal's `instance`), the last sequence looked at.
pub struct Reporter {
    reported: Reported,
}

impl Reporter {
    pub fn new(started_at: i64) -> Reporter {
        Reporter {
            reported: Reported::new(started_at),
        }
    }

    /// Read every ready registry pod's journal, publish what is new, and
    /// say how the latest sweeps went (`None`: no pod told anything).
    pub async fn poll(
        &self,
        ctx: &Context,
        cr: &QuarryRegistry,
        ns: &str,
        https: bool,
    ) -> Option<Health> {
        let endpoints = ctx.pods.ready(ctx, cr, ns, https, "/gc/sweeps").await;
        let reads = endpoints.iter().map(|endpoint| async move {
            (
                endpoint.pod.clone(),
                ctx.pods.fetch::<Sweeps>(endpoint).await,
            )
        });
        let mut latest: Vec<(String, SweepRecord)> = Vec::new();
        for (pod, journal) in futures::future::join_all(reads).await {
            let Some(journal) = journal else { continue };
            for sweep in self.news(&journal) {
                status::publish(ctx, cr, event(&pod, &sweep)).await;
            }
            if let Some(last) = journal.sweeps.last() {
                latest.push((pod, last.clone()));
            }
        }
        health(&latest)
    }

    /// The sweeps of `journal` not looked at before that are worth an
    /// Event; remembers that they were.
    fn news(&self, journal: &Sweeps) -> Vec<SweepRecord> {
        self.reported
            .fresh(
                &journal.instance,
                &journal.sweeps,
                |s| i64::try_from(s.sequence).unwrap_or(i64::MAX),
                |s| s.finished_at,
            )
            .into_iter()
            .filter(|s| s.is_notable())
            .cloned()
            .collect()
    }
}

/// The Event of one sweep.
fn event(pod: &str, sweep: &SweepRecord) -> Event {
    let (type_, reason) = if sweep.succeeded && sweep.errors == 0 {
        (EventType::Normal, "GarbageCollected")
    } else {
        (EventType::Warning, "GarbageCollectionFailed")
    };
    Event {
        type_,
        reason: reason.into(),
        note: Some(status::truncate(
            &format!("pod {pod}: {}", sweep.summary),
            1000,
        )),
        action: "GarbageCollection".into(),
        secondary: None,
    }
}

/// The condition from each pod's latest sweep. Messages do not carry
/// times or counts, so a steady state writes nothing.
fn health(latest: &[(String, SweepRecord)]) -> Option<Health> {
    if latest.is_empty() {
        return None;
    }
    let failing = latest.iter().find(|(_, s)| !s.succeeded || s.errors > 0);
    Some(match failing {
        Some((pod, sweep)) if !sweep.succeeded => Health {
            ok: false,
            reason: "SweepFailed",
            message: format!("pod {pod}: {} (the next sweep retries)", sweep.summary),
        },
        Some((pod, _)) => Health {
            ok: false,
            reason: "SweepIncomplete",
            message: format!(
                "pod {pod}: the latest sweep could not delete some items (the next sweep retries; the pod's log names them)"
            ),
        },
        None => Health {
            ok: true,
            reason: "Sweeping",
            message: "the latest sweep of every ready registry pod succeeded; Events (GarbageCollected) tell what sweeps deleted".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(sequence: u64, finished_at: i64, deleted_blobs: usize) -> SweepRecord {
        SweepRecord {
            sequence,
            finished_at,
            succeeded: true,
            summary: format!("deleted {deleted_blobs} blobs"),
            deleted_manifests: 0,
            deleted_blobs,
            deleted_bytes: 0,
            errors: 0,
        }
    }

    #[test]
    fn each_notable_sweep_is_reported_once_and_none_from_before_the_start() {
        let reporter = Reporter::new(1000);
        let mut journal = Sweeps {
            instance: "a".into(),
            sweeps: vec![sweep(1, 900, 5), sweep(2, 1100, 0), sweep(3, 1200, 2)],
        };
        let first = reporter.news(&journal);
        assert_eq!(first.iter().map(|s| s.sequence).collect::<Vec<_>>(), [3]);
        assert!(reporter.news(&journal).is_empty(), "reported twice");
        journal.sweeps.push(sweep(4, 1300, 1));
        assert_eq!(reporter.news(&journal).len(), 1);
        // A restarted registry process starts its sequences again.
        let restarted = Sweeps {
            instance: "b".into(),
            sweeps: vec![sweep(1, 1400, 3)],
        };
        assert_eq!(reporter.news(&restarted).len(), 1);
    }

    #[test]
    fn the_condition_names_the_failing_pod_and_is_steady_otherwise() {
        assert_eq!(health(&[]), None);
        let good = health(&[("p1".into(), sweep(1, 1, 0)), ("p2".into(), sweep(7, 2, 3))]).unwrap();
        assert!(good.ok);
        assert_eq!(
            good,
            health(&[("p1".into(), sweep(9, 5, 1)), ("p2".into(), sweep(8, 6, 0))]).unwrap(),
            "the message changed with the counts"
        );
        let mut failed = sweep(2, 3, 0);
        failed.succeeded = false;
        failed.summary = "the sweep stopped: storage unavailable".into();
        let bad = health(&[("p1".into(), sweep(1, 1, 0)), ("p2".into(), failed)]).unwrap();
        assert!(!bad.ok);
        assert_eq!(bad.reason, "SweepFailed");
        assert!(
            bad.message
                .contains("pod p2: the sweep stopped: storage unavailable"),
            "{}",
            bad.message
        );
    }
}

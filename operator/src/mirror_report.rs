//! Mirror reports. The registry keeps each mirror's last sync in storage,
//! so every replica serves the same `GET /mirror/status`
//! (quarry_registry::mirror::status); on each reconcile with mirroring on
//! the operator reads it from one ready registry pod and
//! - publishes an Event for each new sync that copied or pruned tags
//!   (Normal, `MirrorSynced`) or did not fully succeed (Warning,
//!   `MirrorSyncFailed`);
//! - writes `status.mirrors` (each mirror's last sync time, result and
//!   summary) and the `Mirroring` condition (components/mirroring.rs).
//!
//! Reading is best effort (registry_pods.rs): when no pod answers, status
//! stays as it was.

use kube::ResourceExt;
use kube::runtime::events::{Event, EventType};
use quarry_registry::mirror::status::{MirrorState, MirrorStatus, SyncRecord, SyncResult};

use crate::crd::{MirrorSyncStatus, QuarryRegistry};
use crate::reconcile::Context;
use crate::registry_pods::{Health, Reported};
use crate::status;

/// What one read of the mirrors' status gave.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorReport {
    pub mirrors: Vec<MirrorSyncStatus>,
    /// `None` while no mirror failed and some have not synced yet.
    pub health: Option<Health>,
}

/// Remembers which syncs were reported: per resource and mirrored
/// repository, the finish time of the last sync looked at.
pub struct Reporter {
    reported: Reported,
}

impl Reporter {
    pub fn new(started_at: i64) -> Reporter {
        Reporter {
            reported: Reported::new(started_at),
        }
    }

    /// Read the mirrors' status from the first ready pod that answers,
    /// publish what is new, and report it (`None`: no pod told anything).
    pub async fn poll(
        &self,
        ctx: &Context,
        cr: &QuarryRegistry,
        ns: &str,
        https: bool,
    ) -> Option<MirrorReport> {
        let endpoints = ctx.pods.ready(ctx, cr, ns, https, "/mirror/status").await;
        for endpoint in &endpoints {
            let Some(status) = ctx.pods.fetch::<MirrorStatus>(endpoint).await else {
                continue;
            };
            let owner = format!("{ns}/{}", cr.name_any());
            for (mirror, sync) in self.news(&owner, &status) {
                status::publish(ctx, cr, event(mirror, sync)).await;
            }
            return Some(report(&status));
        }
        None
    }

    /// The last syncs of `status` not looked at before that are worth an
    /// Event; remembers that they were.
    fn news<'a>(
        &self,
        owner: &str,
        status: &'a MirrorStatus,
    ) -> Vec<(&'a MirrorState, &'a SyncRecord)> {
        let mut fresh = Vec::new();
        for mirror in &status.mirrors {
            let Some(sync) = &mirror.last_sync else {
                continue;
            };
            let key = format!("{owner}/{}", mirror.repository);
            let new = self.reported.fresh(
                &key,
                std::slice::from_ref(sync),
                |s| s.finished_at,
                |s| s.finished_at,
            );
            if !new.is_empty() && sync.is_notable() {
                fresh.push((mirror, sync));
            }
        }
        fresh
    }
}

fn result_name(result: SyncResult) -> &'static str {
    match result {
        SyncResult::Succeeded => "Succeeded",
        SyncResult::Partial => "Partial",
        SyncResult::Failed => "Failed",
    }
}

/// The Event of one sync.
fn event(mirror: &MirrorState, sync: &SyncRecord) -> Event {
    let (type_, reason) = match sync.result {
        SyncResult::Succeeded => (EventType::Normal, "MirrorSynced"),
        SyncResult::Partial | SyncResult::Failed => (EventType::Warning, "MirrorSyncFailed"),
    };
    Event {
        type_,
        reason: reason.into(),
        note: Some(status::truncate(
            &format!(
                "{} from {}: {}",
                mirror.repository, mirror.upstream, sync.summary
            ),
            1000,
        )),
        action: "Mirroring".into(),
        secondary: None,
    }
}

/// `status.mirrors` and the condition. The condition's messages carry no
/// times or counts, so a steady state writes only the sync times.
fn report(status: &MirrorStatus) -> MirrorReport {
    let mirrors = status
        .mirrors
        .iter()
        .map(|m| MirrorSyncStatus {
            repository: m.repository.clone(),
            upstream: m.upstream.clone(),
            last_sync_time: m
                .last_sync
                .as_ref()
                .map(|s| crate::pki::rfc3339(s.finished_at)),
            last_result: m
                .last_sync
                .as_ref()
                .map(|s| result_name(s.result).to_string()),
            message: m
                .last_sync
                .as_ref()
                .map(|s| status::truncate(&s.summary, 1000)),
        })
        .collect();
    let failing = status.mirrors.iter().find_map(|m| {
        let sync = m.last_sync.as_ref()?;
        (sync.result != SyncResult::Succeeded).then_some((m, sync))
    });
    let health = match failing {
        Some((m, sync)) if sync.result == SyncResult::Failed => Some(Health {
            ok: false,
            reason: "SyncFailed",
            message: format!(
                "{} from {}: {} (the next sync retries)",
                m.repository, m.upstream, sync.summary
            ),
        }),
        Some((m, _)) => Some(Health {
            ok: false,
            reason: "SyncIncomplete",
            message: format!(
                "{}: some tags failed to sync (the next sync retries; status.mirrors and the registry's log name them)",
                m.repository
            ),
        }),
        None if status.mirrors.iter().all(|m| m.last_sync.is_some()) => Some(Health {
            ok: true,
            reason: "Synced",
            message: "the last sync of every mirror succeeded; status.mirrors has their times and Events (MirrorSynced) what they copied".into(),
        }),
        None => None,
    };
    MirrorReport { mirrors, health }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(repository: &str, sync: Option<(i64, SyncResult, usize)>) -> MirrorState {
        MirrorState {
            repository: repository.into(),
            upstream: format!("up.example/{repository}"),
            last_sync: sync.map(|(finished_at, result, copied)| SyncRecord {
                finished_at,
                duration_ms: 3,
                result,
                summary: format!("{copied} tags copied"),
                tags_selected: copied,
                tags_copied: copied,
                tags_unchanged: 0,
                tags_pruned: 0,
                tags_skipped_unsigned: 0,
                bytes_copied: 0,
                failures: Vec::new(),
            }),
        }
    }

    #[test]
    fn each_notable_sync_is_reported_once_and_none_from_before_the_start() {
        let reporter = Reporter::new(1000);
        let mut status = MirrorStatus {
            mirrors: vec![
                state("m/old", Some((900, SyncResult::Succeeded, 2))),
                state("m/new", Some((1100, SyncResult::Succeeded, 1))),
                state("m/quiet", Some((1100, SyncResult::Succeeded, 0))),
                state("m/never", None),
            ],
        };
        let first: Vec<&str> = reporter
            .news("ns/r", &status)
            .iter()
            .map(|(m, _)| m.repository.as_str())
            .collect();
        assert_eq!(first, ["m/new"]);
        assert!(reporter.news("ns/r", &status).is_empty(), "reported twice");
        status.mirrors[0] = state("m/old", Some((1200, SyncResult::Failed, 0)));
        let next = reporter.news("ns/r", &status);
        assert_eq!(next.len(), 1);
        assert_eq!(event(next[0].0, next[0].1).reason, "MirrorSyncFailed");
        // Another resource's mirror of the same name is its own.
        assert_eq!(reporter.news("ns/other", &status).len(), 2);
    }

    #[test]
    fn the_condition_names_the_failing_mirror_and_waits_for_the_first_syncs() {
        let waiting = report(&MirrorStatus {
            mirrors: vec![
                state("m/a", Some((1, SyncResult::Succeeded, 1))),
                state("m/b", None),
            ],
        });
        assert_eq!(waiting.health, None);
        assert_eq!(waiting.mirrors[1].last_sync_time, None);
        assert_eq!(waiting.mirrors[0].last_result.as_deref(), Some("Succeeded"));
        let good = report(&MirrorStatus {
            mirrors: vec![state("m/a", Some((1, SyncResult::Succeeded, 1)))],
        });
        let later = report(&MirrorStatus {
            mirrors: vec![state("m/a", Some((99, SyncResult::Succeeded, 0)))],
        });
        assert!(good.health.as_ref().is_some_and(|h| h.ok));
        assert_eq!(
            good.health, later.health,
            "the condition moved with the counts"
        );
        let bad = report(&MirrorStatus {
            mirrors: vec![
                state("m/a", Some((1, SyncResult::Succeeded, 1))),
                state("m/b", Some((2, SyncResult::Failed, 0))),
            ],
        })
        .health
        .unwrap();
        assert!(!bad.ok);
        assert_eq!(bad.reason, "SyncFailed");
        assert!(
            bad.message.starts_with("m/b from up.example/m/b"),
            "{}",
            bad.message
        );
    }
}

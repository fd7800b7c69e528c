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
//! Reports are best effort: a pod that cannot be reached (a network policy,
//! a simulated node) is skipped with a debug log and never fails a
//! reconcile. HTTPS is read without verifying the serving certificate, as
//! the kubelet's probes read `/readyz`: the request carries no secret and
//! the journal is informational.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use quarry_registry::gc::journal::{SweepRecord, Sweeps};

use crate::crd::QuarryRegistry;
use crate::names::{REGISTRY_PORT, selector_labels};
use crate::reconcile::Context;
use crate::status;

/// How long one pod may take to answer, and to accept the connection
/// (a pod IP this process cannot route to must not hold a reconcile up).
const TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Registry processes remembered before the memory starts over.
const INSTANCES_KEPT: usize = 10_000;

/// What the replicas' latest sweeps say, for the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Reads the journals and remembers which sweeps were reported.
pub struct Reporter {
    http: reqwest::Client,
    /// Per registry process (its journal's `instance`): the last sequence
    /// already looked at.
    seen: Mutex<HashMap<String, u64>>,
    /// Unix seconds; sweeps of a process seen for the first time are
    /// reported only if they finished after this (no repeats on restart).
    started_at: i64,
}

impl Reporter {
    pub fn new(started_at: i64) -> Result<Reporter, String> {
        // The client needs the process's TLS provider (idempotent).
        quarry_registry::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| format!("the HTTP client for garbage-collection journals: {e}"))?;
        Ok(Reporter {
            http,
            seen: Mutex::default(),
            started_at,
        })
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
        let selector = selector_labels(cr)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(pods) => pods,
            Err(e) => {
                tracing::debug!(namespace = ns, error = %e, "cannot list registry pods for their garbage-collection journals");
                return None;
            }
        };
        let scheme = if https { "https" } else { "http" };
        let reads = pods.items.iter().filter(|p| is_ready(p)).filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            let url = format!("{scheme}://{host}:{REGISTRY_PORT}/gc/sweeps");
            Some(async move { (pod.name_any(), self.fetch(&url).await.map_err(|e| (url, e))) })
        });
        let mut latest: Vec<(String, SweepRecord)> = Vec::new();
        for (pod, journal) in futures::future::join_all(reads).await {
            let journal = match journal {
                Ok(journal) => journal,
                Err((url, e)) => {
                    tracing::debug!(%pod, %url, error = %e, "garbage-collection journal not read");
                    continue;
                }
            };
            for sweep in self.news(&journal) {
                status::publish(ctx, cr, event(&pod, &sweep)).await;
            }
            if let Some(last) = journal.sweeps.last() {
                latest.push((pod, last.clone()));
            }
        }
        health(&latest)
    }

    async fn fetch(&self, url: &str) -> Result<Sweeps, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("not a journal: {e}"))
    }

    /// The sweeps of `journal` not looked at before that are worth an
    /// Event; remembers that they were.
    fn news(&self, journal: &Sweeps) -> Vec<SweepRecord> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.get(&journal.instance).copied();
        let fresh = journal
            .sweeps
            .iter()
            .filter(|s| match last {
                Some(last) => s.sequence > last,
                None => s.finished_at >= self.started_at,
            })
            .filter(|s| s.is_notable())
            .cloned()
            .collect();
        if let Some(newest) = journal.sweeps.last() {
            if seen.len() >= INSTANCES_KEPT && last.is_none() {
                seen.clear();
            }
            seen.insert(journal.instance.clone(), newest.sequence);
        }
        fresh
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
        let reporter = Reporter::new(1000).unwrap();
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

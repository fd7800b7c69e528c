//! Repository mirroring (`FEATURE_REPO_MIRROR`, Quay's key): each mirror of
//! `REPO_MIRRORS` keeps a local repository in step with an upstream one,
//! every `REPO_MIRROR_INTERVAL` seconds, tags chosen by globs and a regex,
//! with their signatures, SBOMs and attestations (sync.rs).
//!
//! Several replicas may share one bucket; each sync period of a mirror is
//! run by one of them. Time is cut into periods of the interval; the
//! replica that creates the period's claim key first (an atomic
//! create-if-absent) syncs it, the others skip it. Nobody deletes a claim
//! another could still be racing for: old periods' claims are removed by
//! the winner of a later one.

mod settings;
pub mod status;
pub mod sync;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;

pub use settings::RepoMirror;

use crate::config::RegistryConfig;
use crate::metrics::{Metrics, ResultLabels};
use crate::names::RepoName;
use crate::proxy_cache::upstream::Upstream;
use crate::storage::{Key, Storage};

/// How often the loop looks whether a period began.
const TICK: Duration = Duration::from_secs(1);

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Run every mirror once per period, for as long as the process serves,
/// with the configuration of the moment (it reloads).
pub async fn run(
    storage: Arc<dyn Storage>,
    config: Arc<ArcSwap<RegistryConfig>>,
    metrics: Arc<Metrics>,
) {
    // Clients are kept per mirror while its settings stay the same.
    let mut upstreams: Vec<(RepoMirror, Arc<Upstream>)> = Vec::new();
    let mut last_period: std::collections::HashMap<String, u64> = Default::default();
    loop {
        let current = config.load_full();
        if current.feature_repo_mirror {
            let interval = current.repo_mirror_interval.max(1);
            let period = now_unix() / interval;
            for mirror in &current.repo_mirrors {
                if last_period.get(&mirror.repository) == Some(&period) {
                    continue;
                }
                last_period.insert(mirror.repository.clone(), period);
                let upstream = match upstreams.iter().find(|(m, _)| m == mirror) {
                    Some((_, u)) => u.clone(),
                    None => match Upstream::new(&mirror.upstream_settings()) {
                        Ok(u) => {
                            let u = Arc::new(u);
                            upstreams.retain(|(m, _)| m.repository != mirror.repository);
                            upstreams.push((mirror.clone(), u.clone()));
                            u
                        }
                        Err(e) => {
                            tracing::error!(repository = %mirror.repository, error = %e, "mirror has no usable upstream client");
                            continue;
                        }
                    },
                };
                run_period(
                    storage.as_ref(),
                    &current,
                    mirror,
                    &upstream,
                    period,
                    &metrics,
                )
                .await;
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Claim `period` of `mirror`; sync it if this replica got the claim.
async fn run_period(
    storage: &dyn Storage,
    config: &RegistryConfig,
    mirror: &RepoMirror,
    upstream: &Upstream,
    period: u64,
    metrics: &Metrics,
) {
    let Some(repo) = RepoName::parse(&mirror.repository) else {
        return;
    };
    let claim = Key::mirror_claim(&repo, period);
    let holder = Bytes::from(format!("{{\"claimed_at_unix\":{}}}", now_unix()));
    match storage.kv_create(&claim, holder).await {
        Ok(true) => {}
        Ok(false) => return, // another replica syncs this period
        Err(e) => {
            tracing::warn!(repository = %repo, error = %e, "could not claim a mirror period");
            return;
        }
    }
    forget_old_claims(storage, &repo, period).await;
    let started = std::time::Instant::now();
    let result = sync::sync(storage, config, mirror, upstream).await;
    let finished_at = i64::try_from(now_unix()).unwrap_or(i64::MAX);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = match &result {
        Ok(report) => {
            metrics.mirror_bytes.inc_by(report.bytes_copied);
            tracing::info!(
                repository = %repo,
                upstream = %mirror.external_reference,
                seconds = started.elapsed().as_secs_f64(),
                selected = report.tags_selected,
                copied = report.tags_copied,
                unchanged = report.tags_unchanged,
                unsigned_skipped = report.tags_skipped_unsigned,
                pruned = report.tags_pruned,
                kept_immutable = report.tags_kept_immutable,
                manifests = report.manifests_copied,
                blobs = report.blobs_copied,
                bytes = report.bytes_copied,
                failures = ?report.failures,
                "mirror synced"
            );
            status::SyncRecord::from_report(report, finished_at, duration_ms)
        }
        Err(e) => {
            tracing::warn!(repository = %repo, upstream = %mirror.external_reference, error = %e, "mirror sync failed");
            status::SyncRecord::failed(&e.to_string(), finished_at, duration_ms)
        }
    };
    metrics
        .mirror_runs
        .get_or_create(&ResultLabels {
            result: record.result.label(),
        })
        .inc();
    status::save(storage, &repo, &record).await;
}

/// Remove claims of periods before the previous one (nobody races for them
/// any more).
async fn forget_old_claims(storage: &dyn Storage, repo: &RepoName, period: u64) {
    let Ok(names) = storage.kv_names(&Key::mirror_claims(repo)).await else {
        return;
    };
    for name in names {
        if let Ok(p) = name.parse::<u64>()
            && p + 1 < period
        {
            let _ = storage.kv_delete(&Key::mirror_claim(repo, p)).await;
        }
    }
}

//! Repository mirroring (`spec.mirroring`), rendered as FEATURE_REPO_MIRROR,
//! REPO_MIRROR_INTERVAL and REPO_MIRRORS with each upstream's credentials
//! from its Secret and CA from its ConfigMap. Dereference logged in to
//! every upstream with them; a failed login is an issue under the entry.
//! Status: `status.mirrors` and the `Mirroring` condition, from the pods'
//! reports (mirror_report.rs), which also turns syncs into Events.

use quarry_registry::mirror::RepoMirror;
use quarry_registry::retention::parse_duration;

use super::{Component, RenderedKey, StatusInput};
use crate::crd::{MirroredRepository, QuarryRegistrySpec};
use crate::plan::{Issues, Plan, PlanInput, UpstreamAccess};
use crate::status::StatusDraft;

/// The condition this component reports.
pub const CONDITION: &str = "Mirroring";

pub struct Mirroring;

/// The registry's settings of one mirrored repository.
pub fn settings(entry: &MirroredRepository, access: UpstreamAccess) -> RepoMirror {
    let (user, password) = access.credentials.unzip();
    RepoMirror {
        repository: entry.repository.clone(),
        external_reference: entry.upstream.clone(),
        external_registry_username: user,
        external_registry_password: password,
        tags: if entry.tags.is_empty() {
            vec!["*".into()]
        } else {
            entry.tags.clone()
        },
        tag_regex: entry.tag_regex.clone(),
        semver: entry.semver.clone(),
        signed_only: entry.signed_only.unwrap_or(false),
        prune_vanished_tags: entry.prune_vanished_tags.unwrap_or(false),
        insecure: entry.insecure.unwrap_or(false),
        upstream_ca_file: None,
        upstream_ca: access.ca,
    }
}

impl Component for Mirroring {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(spec) = &input.spec.mirroring else {
            return;
        };
        let interval = match &spec.interval {
            None => None,
            Some(text) => match parse_duration(text).map(|d| d.as_secs()) {
                Some(s) if s > 0 => Some(s),
                _ => {
                    issues.error(
                        "spec.mirroring.interval",
                        format!("{text:?} is not a duration above 0 such as 5m or 1h"),
                    );
                    return;
                }
            },
        };
        let mut rendered = Vec::new();
        for (i, entry) in spec.repositories.iter().enumerate() {
            let checked = super::proxy_cache::accept_checked(
                &format!("spec.mirroring.repositories[{i}]"),
                input.inputs.mirrors.get(i),
                issues,
                |access| {
                    let mirror = settings(entry, access);
                    let problem = mirror.problem();
                    (mirror, problem)
                },
            );
            rendered.extend(checked);
        }
        if rendered.len() != spec.repositories.len() {
            return;
        }
        let config = &mut plan.registry_config;
        if plan.bundle_keys.contains("REPO_MIRRORS") && config.repo_mirrors != rendered {
            issues
                .warn("spec.mirroring.repositories overrides REPO_MIRRORS from the config bundle");
        }
        config.feature_repo_mirror = !rendered.is_empty();
        config.repo_mirrors = rendered;
        if let Some(seconds) = interval {
            config.repo_mirror_interval = seconds;
        }
    }

    /// status.mirrors and the condition follow what the pods report
    /// (mirror_report.rs); both go when mirroring is off, and stay as they
    /// were when no pod could be read.
    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        if !cx.plan.registry_config.feature_repo_mirror {
            draft.status.conditions.retain(|c| c.type_ != CONDITION);
            draft.status.mirrors.clear();
            return;
        }
        let Some(report) = cx.mirrors else {
            return;
        };
        draft.status.mirrors = report.mirrors.clone();
        if let Some(health) = &report.health {
            draft.set_condition(CONDITION, health.ok, health.reason, health.message.clone());
        }
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        if spec.mirroring.is_none() {
            return Vec::new();
        }
        vec![
            RenderedKey {
                key: "FEATURE_REPO_MIRROR",
                field: "spec.mirroring",
            },
            RenderedKey {
                key: "REPO_MIRROR_INTERVAL",
                field: "spec.mirroring.interval",
            },
            RenderedKey {
                key: "REPO_MIRRORS",
                field: "spec.mirroring.repositories",
            },
        ]
    }
}

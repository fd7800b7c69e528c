//! Auto-prune (`spec.autoPrune`): the switch and the policies, rendered as
//! FEATURE_AUTO_PRUNE and AUTO_PRUNE_POLICIES (Quay's method/value shape).
//! The registry prunes; its own check of the rendered config reports a bad
//! pattern under spec.autoPrune.policies[i].

use quarry_registry::retention::{PruneMethod, PrunePolicy};

use super::{Component, RenderedKey};
use crate::crd::QuarryRegistrySpec;
use crate::plan::{Issues, Plan, PlanInput};

pub struct AutoPrune;

impl Component for AutoPrune {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(spec) = &input.spec.auto_prune else {
            return;
        };
        let mut policies = Vec::new();
        let mut misshapen = false;
        for (i, p) in spec.policies.iter().enumerate() {
            let method = match (p.keep_newest, &p.older_than) {
                (Some(n), None) => PruneMethod::NumberOfTags(n),
                (None, Some(age)) => PruneMethod::CreationDate(age.clone()),
                _ => {
                    issues.error(
                        format!("spec.autoPrune.policies[{i}]"),
                        "set exactly one of keepNewest and olderThan",
                    );
                    misshapen = true;
                    continue;
                }
            };
            policies.push(PrunePolicy {
                namespace: p.namespace.clone(),
                method,
                tag_pattern: p.tag_pattern.clone(),
                tag_pattern_matches: p.tag_pattern_matches.unwrap_or(true),
            });
        }
        if misshapen {
            // Rendered indices would no longer be the resource's: the
            // registry checks the policies once they are all well-formed.
            return;
        }
        let enabled = spec.enabled.unwrap_or(true);
        if plan.bundle_keys.contains("AUTO_PRUNE_POLICIES")
            && plan.registry_config.auto_prune_policies != policies
        {
            issues.warn(
                "spec.autoPrune.policies overrides AUTO_PRUNE_POLICIES from the config bundle",
            );
        }
        if !enabled && !policies.is_empty() {
            issues.warn("spec.autoPrune.policies are not applied: spec.autoPrune.enabled is false");
        }
        plan.registry_config.feature_auto_prune = enabled;
        plan.registry_config.auto_prune_policies = policies;
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        if spec.auto_prune.is_none() {
            return Vec::new();
        }
        vec![
            RenderedKey {
                key: "FEATURE_AUTO_PRUNE",
                field: "spec.autoPrune.enabled",
            },
            RenderedKey {
                key: "AUTO_PRUNE_POLICIES",
                field: "spec.autoPrune.policies",
            },
        ]
    }
}

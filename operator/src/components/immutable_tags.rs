//! Immutable tags (`spec.immutableTags`): the switch and the policies,
//! rendered as FEATURE_IMMUTABLE_TAGS and IMMUTABLE_TAGS_POLICIES. The
//! registry enforces them (and checks the patterns: a bad one is reported
//! under spec.immutableTags.policies[i] by the rendered-config check).

use quarry_registry::immutable_tags::ImmutableTagPolicy;

use super::{Component, RenderedKey};
use crate::crd::QuarryRegistrySpec;
use crate::plan::{Issues, Plan, PlanInput};

pub struct ImmutableTags;

impl Component for ImmutableTags {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(spec) = &input.spec.immutable_tags else {
            return;
        };
        let enabled = spec.enabled.unwrap_or(true);
        let policies: Vec<ImmutableTagPolicy> = spec
            .policies
            .iter()
            .map(|p| ImmutableTagPolicy {
                namespace: p.namespace.clone(),
                tag_pattern: p.tag_pattern.clone(),
                tag_pattern_matches: p.tag_pattern_matches.unwrap_or(true),
            })
            .collect();
        let config = &mut plan.registry_config;
        if plan.bundle_keys.contains("FEATURE_IMMUTABLE_TAGS")
            && config.feature_immutable_tags != enabled
        {
            issues.warn(format!(
                "spec.immutableTags.enabled={enabled} overrides FEATURE_IMMUTABLE_TAGS from the config bundle"
            ));
        }
        if plan.bundle_keys.contains("IMMUTABLE_TAGS_POLICIES")
            && config.immutable_tags_policies != policies
        {
            issues.warn(
                "spec.immutableTags.policies overrides IMMUTABLE_TAGS_POLICIES from the config bundle",
            );
        }
        if !enabled && !policies.is_empty() {
            issues.warn(
                "spec.immutableTags.policies are not enforced: spec.immutableTags.enabled is false",
            );
        }
        config.feature_immutable_tags = enabled;
        config.immutable_tags_policies = policies;
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        if spec.immutable_tags.is_none() {
            return Vec::new();
        }
        vec![
            RenderedKey {
                key: "FEATURE_IMMUTABLE_TAGS",
                field: "spec.immutableTags.enabled",
            },
            RenderedKey {
                key: "IMMUTABLE_TAGS_POLICIES",
                field: "spec.immutableTags.policies",
            },
        ]
    }
}

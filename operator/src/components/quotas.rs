//! Quotas (`spec.quotas`): sizes as quantities, rendered as
//! FEATURE_QUOTA_MANAGEMENT, NAMESPACE_QUOTAS (Quay's limit_bytes and
//! Warning/Reject limits) and DEFAULT_SYSTEM_REJECT_QUOTA_BYTES. The
//! registry measures and refuses.

use quarry_registry::quota::{LimitKind, NamespaceQuota, QuotaLimit};

use super::{Component, RenderedKey};
use crate::crd::QuarryRegistrySpec;
use crate::plan::{Issues, Plan, PlanInput};
use crate::quantity;

pub struct Quotas;

impl Component for Quotas {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(spec) = &input.spec.quotas else {
            return;
        };
        let size = |field: String, text: &str, issues: &mut Issues| match quantity::bytes(text) {
            Some(0) | None => {
                issues.error(
                    field,
                    format!("{text:?} is not a size above 0 such as 10Gi"),
                );
                None
            }
            Some(bytes) => Some(bytes),
        };
        let mut quotas = Vec::new();
        for (i, q) in spec.namespaces.iter().enumerate() {
            let Some(limit_bytes) = size(
                format!("spec.quotas.namespaces[{i}].limit"),
                &q.limit,
                issues,
            ) else {
                continue;
            };
            let mut limits = vec![QuotaLimit {
                kind: LimitKind::Reject,
                threshold_percent: q.reject_percent.unwrap_or(100),
            }];
            if let Some(percent) = q.warning_percent {
                limits.insert(
                    0,
                    QuotaLimit {
                        kind: LimitKind::Warning,
                        threshold_percent: percent,
                    },
                );
            }
            quotas.push(NamespaceQuota {
                namespace: q.namespace.clone(),
                limit_bytes,
                limits,
            });
        }
        let default_reject = spec
            .default_reject_limit
            .as_ref()
            .and_then(|text| size("spec.quotas.defaultRejectLimit".into(), text, issues));
        if quotas.len() != spec.namespaces.len() {
            return; // rendered indices would no longer be the resource's
        }
        let config = &mut plan.registry_config;
        if plan.bundle_keys.contains("NAMESPACE_QUOTAS") && config.namespace_quotas != quotas {
            issues.warn("spec.quotas.namespaces overrides NAMESPACE_QUOTAS from the config bundle");
        }
        config.feature_quota_management = spec.enabled.unwrap_or(true);
        config.namespace_quotas = quotas;
        if spec.default_reject_limit.is_some() {
            config.default_system_reject_quota_bytes = default_reject;
        }
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        if spec.quotas.is_none() {
            return Vec::new();
        }
        vec![
            RenderedKey {
                key: "FEATURE_QUOTA_MANAGEMENT",
                field: "spec.quotas.enabled",
            },
            RenderedKey {
                key: "NAMESPACE_QUOTAS",
                field: "spec.quotas.namespaces",
            },
            RenderedKey {
                key: "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES",
                field: "spec.quotas.defaultRejectLimit",
            },
        ]
    }
}

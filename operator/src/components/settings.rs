//! The registry's settings: the config bundle (`spec.configBundleSecret`)
//! with the typed fields over it (`spec.features`,
//! `spec.allowedArtifactTypes`, `spec.serverHostname`), and the final
//! check of the rendered config.yaml with every problem reported under the
//! field that caused it.

use quarry_registry::config::RegistryConfig;

use super::{Component, RenderedKey};
use crate::crd::QuarryRegistrySpec;
use crate::plan::{Bundle, Issues, Plan, PlanInput};

/// Where the bundle's keys are reported.
const BUNDLE_PATH: &str = "spec.configBundleSecret[config.yaml]";

pub struct Settings;

impl Component for Settings {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        read_bundle(&input.inputs.bundle, plan, issues);
        let spec = input.spec;
        let features = spec.features.clone().unwrap_or_default();
        let config = &mut plan.registry_config;
        let mut typed = |key: &str, field: &str, value: Option<bool>, slot: &mut bool| {
            if let Some(v) = value {
                if plan.bundle_keys.contains(key) && *slot != v {
                    issues.warn(format!(
                        "{field}={v} overrides {key}={} from the config bundle",
                        *slot
                    ));
                }
                *slot = v;
            }
        };
        typed(
            "FEATURE_GENERAL_OCI_SUPPORT",
            "spec.features.ociArtifacts",
            features.oci_artifacts,
            &mut config.feature_general_oci_support,
        );
        typed(
            "FEATURE_HELM_OCI_SUPPORT",
            "spec.features.helm",
            features.helm,
            &mut config.feature_helm_oci_support,
        );
        typed(
            "FEATURE_REFERRERS_API",
            "spec.features.referrers",
            features.referrers,
            &mut config.feature_referrers_api,
        );
        typed(
            "FEATURE_UI",
            "spec.features.ui",
            features.ui,
            &mut config.feature_ui,
        );
        if let Some(types) = &spec.allowed_artifact_types {
            if plan.bundle_keys.contains("ALLOWED_OCI_ARTIFACT_TYPES")
                && config.allowed_oci_artifact_types.as_ref() != Some(types)
            {
                issues.warn(
                    "spec.allowedArtifactTypes overrides ALLOWED_OCI_ARTIFACT_TYPES from the config bundle",
                );
            }
            // Checked once, with the rest of the config (check_rendered).
            config.allowed_oci_artifact_types = Some(types.clone());
        }
        if let Some(host) = &spec.server_hostname {
            config.server_hostname = Some(host.clone());
        }
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        let mut keys = Vec::new();
        if spec.allowed_artifact_types.is_some() {
            keys.push(RenderedKey {
                key: "ALLOWED_OCI_ARTIFACT_TYPES",
                field: "spec.allowedArtifactTypes",
            });
        }
        if spec.server_hostname.is_some() {
            keys.push(RenderedKey {
                key: "SERVER_HOSTNAME",
                field: "spec.serverHostname",
            });
        }
        keys
    }
}

/// The bundle as the base config: its problems under the bundle's path,
/// its unknown keys as warnings.
fn read_bundle(bundle: &Bundle, plan: &mut Plan, issues: &mut Issues) {
    match bundle {
        Bundle::None => {}
        Bundle::Missing(why) => issues.error("spec.configBundleSecret", why.clone()),
        Bundle::Found(text) => match RegistryConfig::from_yaml(text, Some("config.yaml")) {
            Ok(loaded) => {
                for key in &loaded.unknown_keys {
                    issues.warn(format!("bundle key {key} is not a Quarry setting; ignored"));
                }
                if let Ok(serde_json::Value::Object(map)) =
                    serde_norway::from_str::<serde_json::Value>(text)
                {
                    plan.bundle_keys = map.keys().cloned().collect();
                }
                plan.registry_config = loaded.config;
            }
            Err(e) => {
                for issue in e.issues {
                    issues.error(format!("{BUNDLE_PATH}.{}", issue.key), issue.reason);
                }
            }
        },
    }
}

/// The registry's own check of the config it will run, each problem named
/// by the resource field that set the key (else the bundle's key).
pub fn check_rendered(input: &PlanInput<'_>, plan: &Plan, issues: &mut Issues) {
    for issue in plan.registry_config.validate() {
        issues.error(field_of(input, plan, &issue.key), issue.reason);
    }
}

/// The resource field a config key (with its `[i]` / `.sub` tail) came
/// from: the field of the component that rendered it, else the bundle.
fn field_of(input: &PlanInput<'_>, plan: &Plan, key: &str) -> String {
    let rendered = super::TABLE
        .iter()
        .flat_map(|row| row.component.renders(input.spec));
    for RenderedKey {
        key: config_key,
        field,
    } in rendered
    {
        let Some(tail) = key.strip_prefix(config_key) else {
            continue;
        };
        if !(tail.is_empty() || tail.starts_with(['.', '['])) {
            continue; // another key that starts the same
        }
        // `.type[i]` (a map key) reads `[type][i]` under the field.
        return match tail.strip_prefix('.') {
            Some(sub) => match sub.find('[') {
                Some(at) => format!("{field}[{}]{}", &sub[..at], &sub[at..]),
                None => format!("{field}[{sub}]"),
            },
            None => format!("{field}{tail}"),
        };
    }
    let top = key.split(['.', '[']).next().unwrap_or(key);
    if plan.from_bundle(top) {
        format!("{BUNDLE_PATH}.{key}")
    } else {
        format!("registry config {key}")
    }
}

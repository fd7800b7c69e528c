//! validate: the resource and the bundle it points at, turned into one
//! typed plan or a list of precise errors (field path + reason). Pure: no
//! API calls, so every rule is unit-tested from YAML fixtures.

use std::collections::BTreeMap;

use quarry_registry::config::{RegistryConfig, is_media_type};

use crate::capabilities::Offers;
use crate::crd::{ComponentKind, EffectiveComponent, Overrides, QuarryRegistrySpec};

/// Where registry data lives inside the pod.
pub const DATA_DIR: &str = "/var/lib/quarry";

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Everything `build` needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub registry_config: RegistryConfig,
    pub replicas: i32,
    pub registry_overrides: Overrides,
    /// `Some` when storage is managed (a PVC): its overrides.
    pub storage: Option<Overrides>,
    /// `Some` when an Ingress is managed: its overrides.
    pub ingress: Option<Overrides>,
    /// `Some` when a Route is managed.
    pub route: Option<Overrides>,
    /// `Some` when a ServiceMonitor is managed.
    pub monitoring: Option<Overrides>,
    pub components: Vec<EffectiveComponent>,
    pub warnings: Vec<String>,
    pub version: String,
}

/// The bundle Secret's `config.yaml`, as dereference found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bundle {
    /// No bundle referenced.
    None,
    /// Referenced and read.
    Found(String),
    /// Referenced, but the Secret or its key is missing.
    Missing(String),
}

/// Kinds this version of the operator can run.
const SUPPORTED: &[ComponentKind] = &[
    ComponentKind::Registry,
    ComponentKind::Storage,
    ComponentKind::Ingress,
    ComponentKind::Route,
    ComponentKind::Monitoring,
];

pub fn validate(
    spec: &QuarryRegistrySpec,
    bundle: &Bundle,
    default_version: &str,
    offers: Offers,
) -> Result<Plan, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut err = |path: &str, reason: String| {
        errors.push(FieldError {
            path: path.to_string(),
            reason,
        })
    };

    // Bundle first: typed fields are applied over it.
    let mut bundle_keys: Vec<String> = Vec::new();
    let mut config = match bundle {
        Bundle::None => RegistryConfig::default(),
        Bundle::Missing(why) => {
            err("spec.configBundleSecret", why.clone());
            RegistryConfig::default()
        }
        Bundle::Found(text) => match RegistryConfig::from_yaml(text, Some("config.yaml")) {
            Ok(loaded) => {
                for key in &loaded.unknown_keys {
                    warnings.push(format!("bundle key {key} is not a Quarry setting; ignored"));
                }
                if let Ok(serde_json::Value::Object(map)) =
                    serde_norway::from_str::<serde_json::Value>(text)
                {
                    bundle_keys = map.keys().cloned().collect();
                }
                loaded.config
            }
            Err(e) => {
                for issue in e.issues {
                    err(
                        &format!("spec.configBundleSecret[config.yaml].{}", issue.key),
                        issue.reason,
                    );
                }
                RegistryConfig::default()
            }
        },
    };
    let from_bundle = |key: &str| bundle_keys.iter().any(|k| k == key);
    if from_bundle("DISTRIBUTED_STORAGE_CONFIG") || from_bundle("DISTRIBUTED_STORAGE_PREFERENCE") {
        warnings.push(
            "bundle storage settings are ignored: storage comes from the storage component".into(),
        );
    }

    // Typed fields win; a differing bundle value is reported.
    let mut typed = |key: &str, field: &str, value: Option<bool>, slot: &mut bool| {
        if let Some(v) = value {
            if from_bundle(key) && *slot != v {
                warnings.push(format!(
                    "{field}={v} overrides {key}={} from the config bundle",
                    *slot
                ));
            }
            *slot = v;
        }
    };
    let features = spec.features.clone().unwrap_or_default();
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
    if let Some(types) = &spec.allowed_artifact_types {
        if from_bundle("ALLOWED_OCI_ARTIFACT_TYPES")
            && config.allowed_oci_artifact_types.as_ref() != Some(types)
        {
            warnings.push(
                "spec.allowedArtifactTypes overrides ALLOWED_OCI_ARTIFACT_TYPES from the config bundle"
                    .into(),
            );
        }
        for (artifact_type, layers) in types {
            let path = format!("spec.allowedArtifactTypes[{artifact_type}]");
            if !is_media_type(artifact_type) {
                err(
                    &path,
                    format!("{artifact_type:?} is not a media type (type/subtype)"),
                );
            }
            for (i, layer) in layers.iter().enumerate() {
                if !is_media_type(layer) {
                    err(
                        &format!("{path}[{i}]"),
                        format!("{layer:?} is not a media type (type/subtype)"),
                    );
                }
            }
        }
        config.allowed_oci_artifact_types = Some(types.clone());
    }
    if let Some(host) = &spec.server_hostname {
        config.server_hostname = Some(host.clone());
    }
    config.set_local_storage_path(std::path::Path::new(DATA_DIR));
    for issue in config.validate() {
        err(&format!("registry config {}", issue.key), issue.reason);
    }

    // Components.
    let mut listed: BTreeMap<ComponentKind, (bool, Overrides)> = BTreeMap::new();
    for (i, c) in spec.components.iter().enumerate() {
        let path = format!("spec.components[{i}]");
        if listed.contains_key(&c.kind) {
            err(
                &path,
                format!("component {} is listed twice", c.kind.name()),
            );
            continue;
        }
        if !SUPPORTED.contains(&c.kind) && c.managed {
            err(
                &format!("{path}.kind"),
                format!(
                    "managed component {} is not supported by this operator version (supported: registry, storage, ingress, route, monitoring)",
                    c.kind.name()
                ),
            );
        }
        let missing_api = match c.kind {
            ComponentKind::Route if !offers.routes => Some("route.openshift.io/v1 Route"),
            ComponentKind::Monitoring if !offers.service_monitors => {
                Some("monitoring.coreos.com/v1 ServiceMonitor")
            }
            _ => None,
        };
        if let Some(api) = missing_api
            && c.managed
        {
            err(
                &format!("{path}.kind"),
                format!(
                    "managed component {} needs the {api} API, which this cluster does not serve",
                    c.kind.name()
                ),
            );
        }
        if c.kind == ComponentKind::Registry && !c.managed {
            err(
                &format!("{path}.managed"),
                "the registry component is always managed".into(),
            );
        }
        let overrides = c.overrides.clone().unwrap_or_default();
        check_overrides(c.kind, &overrides, &format!("{path}.overrides"), &mut err);
        listed.insert(c.kind, (c.managed, overrides));
    }
    let mut components = Vec::new();
    for kind in [
        ComponentKind::Registry,
        ComponentKind::Storage,
        ComponentKind::Tls,
        ComponentKind::Route,
        ComponentKind::Ingress,
        ComponentKind::Hpa,
        ComponentKind::Monitoring,
    ] {
        let (managed, source) = match listed.get(&kind) {
            Some((m, _)) => (*m, "spec"),
            // Defaults: the registry and its storage; a Route and a
            // ServiceMonitor where the cluster serves those APIs.
            None => (
                match kind {
                    ComponentKind::Registry | ComponentKind::Storage => true,
                    ComponentKind::Route => offers.routes,
                    ComponentKind::Monitoring => offers.service_monitors,
                    _ => false,
                },
                "default",
            ),
        };
        components.push(EffectiveComponent {
            kind,
            managed,
            source: source.into(),
        });
    }
    let registry_overrides = listed
        .get(&ComponentKind::Registry)
        .map(|(_, o)| o.clone())
        .unwrap_or_default();
    let storage_managed = components
        .iter()
        .any(|c| c.kind == ComponentKind::Storage && c.managed);
    let storage = storage_managed.then(|| {
        listed
            .get(&ComponentKind::Storage)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    });
    let ingress = components
        .iter()
        .any(|c| c.kind == ComponentKind::Ingress && c.managed)
        .then(|| {
            listed
                .get(&ComponentKind::Ingress)
                .map(|(_, o)| o.clone())
                .unwrap_or_default()
        });
    let managed_overrides = |kind: ComponentKind| {
        components
            .iter()
            .any(|c| c.kind == kind && c.managed)
            .then(|| {
                listed
                    .get(&kind)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default()
            })
    };
    let route = managed_overrides(ComponentKind::Route);
    let monitoring = managed_overrides(ComponentKind::Monitoring);
    if ingress.is_some() && spec.server_hostname.is_none() {
        err(
            "spec.serverHostname",
            "a managed ingress needs the host name it serves: set spec.serverHostname".into(),
        );
    }
    let replicas = registry_overrides.replicas.unwrap_or(1);
    if replicas > 1 {
        err(
            "spec.components[registry].overrides.replicas",
            format!(
                "{replicas} replicas need shared (S3) storage, which this operator version does not offer yet; a ReadWriteOnce volume serves one replica"
            ),
        );
    }
    if errors.is_empty() {
        Ok(Plan {
            registry_config: config,
            replicas,
            registry_overrides,
            storage,
            ingress,
            route,
            monitoring,
            components,
            warnings,
            version: spec
                .version
                .clone()
                .unwrap_or_else(|| default_version.to_string()),
        })
    } else {
        Err(errors)
    }
}

fn check_overrides(
    kind: ComponentKind,
    o: &Overrides,
    path: &str,
    err: &mut impl FnMut(&str, String),
) {
    let registry_only = [
        ("replicas", o.replicas.is_some()),
        ("resources", o.resources.is_some()),
        ("env", !o.env.is_empty()),
        ("nodeSelector", o.node_selector.is_some()),
        ("tolerations", !o.tolerations.is_empty()),
    ];
    let storage_only = [
        ("volumeSize", o.volume_size.is_some()),
        ("storageClassName", o.storage_class_name.is_some()),
    ];
    let misplaced: Vec<&str> = match kind {
        ComponentKind::Registry => storage_only
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect(),
        ComponentKind::Storage => registry_only
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect(),
        _ => registry_only
            .iter()
            .chain(storage_only.iter())
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect(),
    };
    for field in misplaced {
        err(
            &format!("{path}.{field}"),
            format!("does not apply to the {} component", kind.name()),
        );
    }
    if let Some(size) = &o.volume_size
        && !is_quantity(size)
    {
        err(
            &format!("{path}.volumeSize"),
            format!("{size:?} is not a quantity such as 10Gi"),
        );
    }
}

/// Kubernetes quantity syntax (a number with an optional suffix).
fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> QuarryRegistrySpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let plan = validate(&spec("{}"), &Bundle::None, "0.1.0", Offers::default()).unwrap();
        assert!(plan.registry_config.feature_helm_oci_support);
        assert_eq!(plan.replicas, 1);
        assert!(plan.storage.is_some(), "storage is managed by default");
        assert_eq!(plan.version, "0.1.0");
        assert_eq!(
            plan.registry_config.local_storage_path().unwrap(),
            std::path::PathBuf::from(DATA_DIR)
        );
    }

    #[test]
    fn typed_fields_win_over_the_bundle_and_say_so() {
        let bundle = Bundle::Found(
            "FEATURE_HELM_OCI_SUPPORT: true\nFEATURE_REFERRERS_API: false\nDATABASE_SECRET_KEY: x\n".into(),
        );
        let s = spec(
            r#"
features: {helm: false}
serverHostname: registry.example.com
allowedArtifactTypes:
  application/vnd.sylabs.sif.config.v1+json: [application/vnd.sylabs.sif.layer.v1+tar]
"#,
        );
        let plan = validate(&s, &bundle, "v", Offers::default()).unwrap();
        let c = &plan.registry_config;
        assert!(!c.feature_helm_oci_support);
        assert!(
            !c.feature_referrers_api,
            "bundle value kept where the CR is silent"
        );
        assert_eq!(c.server_hostname.as_deref(), Some("registry.example.com"));
        assert!(
            c.allowed_oci_artifact_types
                .as_ref()
                .unwrap()
                .contains_key("application/vnd.sylabs.sif.config.v1+json")
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w
                    .contains("spec.features.helm=false overrides FEATURE_HELM_OCI_SUPPORT=true")),
            "{:?}",
            plan.warnings
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("DATABASE_SECRET_KEY")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn optional_apis_decide_defaults_and_are_required_when_listed() {
        let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
        assert!(plan.route.is_none() && plan.monitoring.is_none());
        let openshift = Offers {
            routes: true,
            service_monitors: true,
        };
        let plan = validate(&spec("{}"), &Bundle::None, "v", openshift).unwrap();
        assert!(plan.route.is_some() && plan.monitoring.is_some());
        assert!(
            plan.components
                .iter()
                .any(|c| c.kind == ComponentKind::Route && c.managed && c.source == "default")
        );
        let errors = validate(
            &spec("components: [{kind: route, managed: true}]"),
            &Bundle::None,
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert!(
            errors[0].reason.contains("route.openshift.io/v1 Route"),
            "{errors:?}"
        );
    }

    #[test]
    fn invalid_inputs_name_their_fields() {
        let s = spec(
            r#"
allowedArtifactTypes:
  not-a-type: [fine/type, bad]
components:
  - {kind: tls, managed: true}
  - {kind: registry, managed: true, overrides: {replicas: 3, volumeSize: 1Gi}}
  - {kind: storage, managed: true, overrides: {volumeSize: lots}}
"#,
        );
        let errors = validate(
            &s,
            &Bundle::Missing("Secret \"b\" not found".into()),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "spec.configBundleSecret",
            "spec.allowedArtifactTypes[not-a-type]",
            "spec.allowedArtifactTypes[not-a-type][1]",
            "spec.components[0].kind",
            "spec.components[1].overrides.volumeSize",
            "spec.components[2].overrides.volumeSize",
            "spec.components[registry].overrides.replicas",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let bad_bundle = Bundle::Found("FEATURE_HELM_OCI_SUPPORT: perhaps\n".into());
        let errors = validate(&spec("{}"), &bad_bundle, "v", Offers::default()).unwrap_err();
        assert_eq!(
            errors[0].path,
            "spec.configBundleSecret[config.yaml].FEATURE_HELM_OCI_SUPPORT"
        );
    }
}

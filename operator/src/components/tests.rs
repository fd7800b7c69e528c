//! The components' planning and build rules, from YAML fixtures.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use quarry_registry::config::RegistryConfig;

use crate::build::{Built, build, render_config};
use crate::capabilities::Offers;
use crate::components::auth::AuthPlan;
use crate::components::registry::CONFIG_HASH_ANNOTATION;
use crate::components::storage::{DATA_DIR, ObjectStoragePlan, StoragePlan, s3_settings};
use crate::components::tls::{TlsPlan, name_matches};
use crate::crd::{ComponentKind, QuarryRegistry, QuarryRegistrySpec};
use crate::generated::Generated;
use crate::plan::{
    Bundle, Inputs, ObjectStorageCheck, Plan, Referenced, plan as validate,
    plan_with as validate_with,
};
use crate::resources::ObjectKind;

mod auto_prune;
mod garbage_collection;
mod hpa_condition;
mod immutable_tags;
mod overrides;
mod quotas;

/// A build's objects by kind, typed, as the tests read them.
#[derive(Debug, PartialEq)]
struct View {
    deployment: Deployment,
    deployment_json: serde_json::Value,
    service: Service,
    pvc: Option<PersistentVolumeClaim>,
    hpa: Option<HorizontalPodAutoscaler>,
    pdb: Option<PodDisruptionBudget>,
    ingress: Option<Ingress>,
    route: Option<serde_json::Value>,
    service_monitor: Option<serde_json::Value>,
    config_secret: Secret,
    config_hash: String,
    image: String,
}

fn view(b: Built) -> View {
    let r = &b.resources;
    View {
        deployment: r.one(ObjectKind::Deployment).expect("a Deployment"),
        deployment_json: r
            .json(ObjectKind::Deployment)
            .cloned()
            .expect("a Deployment"),
        service: r.one(ObjectKind::Service).expect("a Service"),
        pvc: r.one(ObjectKind::PersistentVolumeClaim),
        hpa: r.one(ObjectKind::HorizontalPodAutoscaler),
        pdb: r.one(ObjectKind::PodDisruptionBudget),
        ingress: r.one(ObjectKind::Ingress),
        route: r.json(ObjectKind::Route).cloned(),
        service_monitor: r.json(ObjectKind::ServiceMonitor).cloned(),
        config_secret: r
            .all::<Secret>(ObjectKind::Secret)
            .into_iter()
            .find(|s| {
                s.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with("-config"))
            })
            .expect("the config Secret"),
        config_hash: b.config_hash,
        image: b.image,
    }
}

// --- planning -------------------------------------------------------------

fn spec(yaml: &str) -> QuarryRegistrySpec {
    serde_norway::from_str(yaml).unwrap()
}

#[test]
fn minimal_spec_gets_defaults() {
    let plan = validate(&spec("{}"), &Bundle::None, "0.1.0", Offers::default()).unwrap();
    assert!(plan.registry_config.feature_helm_oci_support);
    assert_eq!(plan.replicas, 1);
    assert_eq!(
        plan.storage,
        StoragePlan::Volume,
        "storage is managed by default"
    );
    assert_eq!(plan.version, "0.1.0");
    assert_eq!(
        plan.registry_config.local_storage_path().unwrap(),
        std::path::PathBuf::from(DATA_DIR)
    );
}

#[test]
fn typed_fields_win_over_the_bundle_and_say_so() {
    let bundle = Bundle::Found(
        "FEATURE_HELM_OCI_SUPPORT: true\nFEATURE_REFERRERS_API: false\nDATABASE_SECRET_KEY: x\n"
            .into(),
    );
    let s = spec(
        r#"
features: {helm: false, ui: false}
serverHostname: registry.example.com
allowedArtifactTypes:
  application/vnd.sylabs.sif.config.v1+json: [application/vnd.sylabs.sif.layer.v1+tar]
"#,
    );
    let plan = validate(&s, &bundle, "v", Offers::default()).unwrap();
    let c = &plan.registry_config;
    assert!(!c.feature_helm_oci_support);
    assert!(!c.feature_ui, "spec.features.ui: false not rendered");
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
    assert!(!plan.managed(ComponentKind::Route) && !plan.managed(ComponentKind::Monitoring));
    let openshift = Offers {
        routes: true,
        service_monitors: true,
    };
    let plan = validate(&spec("{}"), &Bundle::None, "v", openshift).unwrap();
    assert!(plan.managed(ComponentKind::Route) && plan.managed(ComponentKind::Monitoring));
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
  - {kind: hpa, managed: true}
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
        "spec.components[hpa].managed",
        "spec.components[registry].overrides.volumeSize",
        "spec.components[storage].overrides.volumeSize",
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

fn found(key: &str, value: &str) -> Referenced {
    Referenced::Found(BTreeMap::from([(
        key.to_string(),
        value.as_bytes().to_vec(),
    )]))
}

#[test]
fn secure_by_default() {
    let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
    assert_eq!(plan.auth, AuthPlan::Generated);
    assert_eq!(plan.tls, TlsPlan::Managed);
    let c = &plan.registry_config;
    assert_eq!(
        c.auth_accounts_file.as_deref(),
        Some("/etc/quarry/auth/accounts.yaml")
    );
    assert_eq!(
        c.auth_token_key_file.as_deref(),
        Some("/etc/quarry/auth/token.key")
    );
    assert_eq!(c.preferred_url_scheme.as_deref(), Some("https"));
    assert_eq!(plan.scheme(), "https");
    assert!(
        plan.components
            .iter()
            .any(|c| c.kind == ComponentKind::Tls && c.managed && c.source == "default")
    );
}

#[test]
fn auth_and_tls_inputs_are_checked_precisely() {
    let s = spec(
        "auth: {accountsSecret: acc, anonymousPull: [public, 'Bad/Name']}\ntls: {certificateSecret: cert}\ncomponents: [{kind: tls, managed: true}]\n",
    );
    let inputs = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        accounts: found(
            "accounts.yaml",
            "accounts:\n  alice: {password_hash: nope, access: {'*': [pull]}}\n",
        ),
        certificate: Referenced::Missing("Secret \"cert\" not found in namespace ns".into()),
        ..Inputs::bundle(Bundle::None)
    };
    let errors = validate_with(&s, &inputs, "v", Offers::default()).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|e| e.contains(needle));
    assert!(
        has(
            "spec.auth.accountsSecret[accounts.yaml]: accounts.alice.password_hash: not a bcrypt hash"
        ),
        "{text:?}"
    );
    assert!(has("spec.auth.anonymousPull[1]: \"Bad/Name\""), "{text:?}");
    assert!(
        has("spec.tls.certificateSecret: applies only with the tls component unmanaged"),
        "{text:?}"
    );
    // Unmanaged tls: a missing Secret, a Secret without a key, junk.
    let s = spec("tls: {certificateSecret: cert}");
    for (certificate, expected) in [
        (
            Referenced::Missing("Secret \"cert\" not found in namespace ns".into()),
            "spec.tls.certificateSecret: Secret \"cert\" not found",
        ),
        (found("tls.crt", "junk"), "has no key tls.key"),
        (found("tls.key", "x"), "has no key tls.crt"),
    ] {
        let inputs = Inputs {
            proxy_cache: Vec::new(),
            mirrors: Vec::new(),
            certificate,
            ..Inputs::bundle(Bundle::None)
        };
        let errors = validate_with(&s, &inputs, "v", Offers::default()).unwrap_err();
        assert!(
            errors.iter().any(|e| e.to_string().contains(expected)),
            "{expected}: {errors:?}"
        );
    }
    let missing_accounts = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        accounts: Referenced::Missing("Secret \"acc\" not found in namespace ns".into()),
        ..Inputs::bundle(Bundle::None)
    };
    let errors = validate_with(
        &spec("auth: {accountsSecret: acc}"),
        &missing_accounts,
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "spec.auth.accountsSecret");
}

#[test]
fn provided_certificate_and_switches() {
    let ca = crate::pki::new_ca("CA", 1_800_000_000).unwrap();
    let leaf =
        crate::pki::issue(&ca, "x", &["registry.example.com".into()], 1_800_000_000).unwrap();
    let inputs = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        certificate: Referenced::Found(BTreeMap::from([
            ("tls.crt".to_string(), leaf.cert_pem.into_bytes()),
            ("tls.key".to_string(), leaf.key_pem.into_bytes()),
        ])),
        now: 1_800_000_000,
        ..Inputs::bundle(Bundle::None)
    };
    let plan = validate_with(
        &spec("tls: {certificateSecret: cert}\nauth: {enabled: false}"),
        &inputs,
        "v",
        Offers::default(),
    )
    .unwrap();
    match &plan.tls {
        TlsPlan::Provided { secret, info } => {
            assert_eq!(secret, "cert");
            assert_eq!(info.sans, vec!["registry.example.com".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.auth, AuthPlan::Off);
    assert_eq!(plan.registry_config.auth_accounts_file, None);
    assert!(name_matches("*.example.com", "registry.example.com"));
    assert!(!name_matches("*.example.com", "a.b.example.com"));
    let elsewhere = validate_with(
        &spec("tls: {certificateSecret: cert}\nserverHostname: other.example.org:443"),
        &inputs,
        "v",
        Offers::default(),
    )
    .unwrap();
    assert!(
        elsewhere
            .warnings
            .iter()
            .any(|w| w.contains("does not name spec.serverHostname other.example.org")),
        "{:?}",
        elsewhere.warnings
    );
    // Off entirely: plain HTTP, and the bundle's auth paths are ignored.
    let bundle = Bundle::Found(
        "AUTH_ACCOUNTS_FILE: /x\nAUTH_TOKEN_KEY_FILE: /y\nANONYMOUS_PULL_NAMESPACES: [pub]\n"
            .into(),
    );
    let plan = validate(
        &spec("auth: {enabled: false}\ncomponents: [{kind: tls, managed: false}]"),
        &bundle,
        "v",
        Offers::default(),
    )
    .unwrap();
    assert_eq!(plan.tls, TlsPlan::Off);
    assert_eq!(plan.scheme(), "http");
    assert_eq!(plan.registry_config.auth_accounts_file, None);
    assert_eq!(plan.registry_config.preferred_url_scheme, None);
    assert_eq!(plan.registry_config.anonymous_pull_namespaces, vec!["pub"]);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("AUTH_ACCOUNTS_FILE")),
        "{:?}",
        plan.warnings
    );
    // Login over plain HTTP is allowed, with a warning.
    let plan = validate(
        &spec("components: [{kind: tls, managed: false}]"),
        &Bundle::None,
        "v",
        Offers::default(),
    )
    .unwrap();
    assert!(
        plan.warnings.iter().any(|w| w.contains("plain HTTP")),
        "{:?}",
        plan.warnings
    );
}

fn probed(result: Result<(), String>) -> Inputs {
    Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        object_storage: ObjectStorageCheck::Probed {
            result,
            credentials_hash: "abc".into(),
        },
        ..Inputs::bundle(Bundle::None)
    }
}

#[test]
fn object_storage_renders_s3_and_allows_replicas() {
    let s = spec(
        "objectStorage: {endpoint: 'http://minio.storage:9000/', bucket: quarry, credentialsSecret: s3}
components: [{kind: registry, managed: true, overrides: {replicas: 3}}]
",
    );
    let plan = validate_with(&s, &probed(Ok(())), "v", Offers::default()).unwrap();
    assert_eq!(plan.replicas, 3);
    assert_ne!(
        plan.storage,
        StoragePlan::Volume,
        "no volume with object storage"
    );
    assert_eq!(
        plan.storage,
        StoragePlan::Object(ObjectStoragePlan {
            credentials_secret: "s3".into(),
            credentials_hash: "abc".into()
        })
    );
    // The rendered config reads back as the S3 settings the probe used.
    let yaml = serde_norway::to_string(&plan.registry_config).unwrap();
    let loaded = RegistryConfig::from_yaml(&yaml, None).unwrap().config;
    let quarry_registry::storage::settings::StorageSettings::S3(settings) =
        loaded.storage_settings().unwrap()
    else {
        panic!("not S3: {yaml}")
    };
    let object = s.object_storage.as_ref().unwrap();
    assert_eq!(settings, s3_settings(object, None));
    assert_eq!(
        settings.endpoint.as_deref(),
        Some("http://minio.storage:9000")
    );
    assert_eq!(
        (settings.prefix.as_str(), settings.path_style),
        ("registry", true)
    );
    assert!(
        plan.components
            .iter()
            .any(|c| c.kind == ComponentKind::Storage && !c.managed && c.source == "default")
    );
}

#[test]
fn object_storage_problems_are_refused_precisely() {
    let s = spec(
        "objectStorage: {bucket: quarry, credentialsSecret: s3}
",
    );
    let errors = validate_with(
        &s,
        &probed(Err("access denied".into())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "spec.objectStorage");
    assert!(errors[0].reason.contains("access denied"), "{errors:?}");
    let missing = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        object_storage: ObjectStorageCheck::CredentialsUnusable("Secret \"s3\" not found".into()),
        ..Inputs::bundle(Bundle::None)
    };
    let errors = validate_with(&s, &missing, "v", Offers::default()).unwrap_err();
    assert_eq!(errors[0].path, "spec.objectStorage.credentialsSecret");
    // A volume and object storage at once.
    let both = spec(
        "objectStorage: {bucket: quarry, credentialsSecret: s3}
components: [{kind: storage, managed: true}]
",
    );
    let errors = validate_with(&both, &probed(Ok(())), "v", Offers::default()).unwrap_err();
    assert!(errors[0].reason.contains("managed"), "{errors:?}");
    // Several replicas on a ReadWriteOnce volume.
    let rwo = spec(
        "components: [{kind: registry, managed: true, overrides: {replicas: 2}}]
",
    );
    let errors = validate(&rwo, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(
        errors[0].path,
        "spec.components[registry].overrides.replicas"
    );
    assert!(
        errors[0].reason.contains("ReadWriteOnce")
            && errors[0].reason.contains("spec.objectStorage"),
        "{errors:?}"
    );
}

const S3: &str =
    "objectStorage: {endpoint: 'http://minio:9000', bucket: quarry, credentialsSecret: s3}\n";

#[test]
fn hpa_needs_object_storage() {
    let s = spec(
        "components: [{kind: hpa, managed: true, overrides: {minReplicas: 2, maxReplicas: 4}}]",
    );
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.components[hpa].managed");
    assert!(
        errors[0].reason.contains("set spec.objectStorage")
            && errors[0]
                .reason
                .contains("a ReadWriteOnce volume serves one pod"),
        "{errors:?}"
    );
    // On an emptyDir too.
    let s = spec("components: [{kind: storage, managed: false}, {kind: hpa, managed: true}]");
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert!(
        errors[0].reason.contains("an emptyDir serves one pod"),
        "{errors:?}"
    );
    // Unmanaged (the default): nothing to refuse, no HPA.
    let plan = validate(
        &spec("components: [{kind: hpa, managed: false}]"),
        &Bundle::None,
        "v",
        Offers::default(),
    )
    .unwrap();
    assert_eq!(plan.hpa, None);
    assert!(!plan.several_pods());
}

#[test]
fn hpa_bounds_come_from_overrides_with_defaults() {
    let hpa = |components: &str| {
        let plan = validate_with(
            &spec(&format!("{S3}components: {components}\n")),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap();
        assert!(plan.several_pods());
        let h = plan.hpa.expect("a managed hpa");
        (
            h.min_replicas,
            h.max_replicas,
            h.target_cpu_utilization_percentage,
        )
    };
    assert_eq!(hpa("[{kind: hpa, managed: true}]"), (2, 5, 75));
    assert_eq!(
        hpa(
            "[{kind: hpa, managed: true}, {kind: registry, managed: true, overrides: {replicas: 3}}]"
        ),
        (3, 5, 75)
    );
    assert_eq!(
        hpa(
            "[{kind: hpa, managed: true}, {kind: registry, managed: true, overrides: {replicas: 8}}]"
        ),
        (8, 8, 75)
    );
    assert_eq!(
        hpa(
            "[{kind: hpa, managed: true, overrides: {minReplicas: 3, maxReplicas: 10, targetCPUUtilizationPercentage: 60}}]"
        ),
        (3, 10, 60)
    );
    // minReplicas wins over the registry's replicas, with a warning.
    let plan = validate_with(
        &spec(&format!(
            "{S3}components: [{{kind: hpa, managed: true, overrides: {{minReplicas: 4}}}}, {{kind: registry, managed: true, overrides: {{replicas: 2}}}}]\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap();
    assert_eq!(plan.hpa.as_ref().map(|h| h.min_replicas), Some(4));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("spec.components[registry].overrides.replicas is not applied")),
        "{:?}",
        plan.warnings
    );
    // CPU requests the HPA cannot compute a percentage of.
    let plan = validate_with(
        &spec(&format!(
            "{S3}components: [{{kind: hpa, managed: true}}, {{kind: registry, managed: true, overrides: {{resources: {{limits: {{memory: 1Gi}}}}}}}}]\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap();
    assert!(
        plan.warnings.iter().any(|w| w.contains("requests no cpu")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn hpa_overrides_are_checked_and_kept_to_their_component() {
    let errors = validate_with(
        &spec(&format!(
            "{S3}components: [{{kind: hpa, managed: true, overrides: {{minReplicas: 6, maxReplicas: 3}}}}]\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "spec.components[hpa].overrides.maxReplicas");
    assert!(
        errors[0].reason.contains("3 is below minReplicas 6"),
        "{errors:?}"
    );
    let errors = validate_with(
        &spec(&format!(
            "{S3}components: [{{kind: registry, managed: true, overrides: {{replicas: 0}}}}, {{kind: hpa, managed: true}}]\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(
        errors[0].path,
        "spec.components[registry].overrides.replicas"
    );
    let errors = validate_with(
        &spec(&format!(
            "{S3}components:\n- {{kind: registry, managed: true, overrides: {{maxReplicas: 4}}}}\n- {{kind: hpa, managed: true, overrides: {{replicas: 3, volumeSize: 1Gi}}}}\n- {{kind: ingress, managed: false, overrides: {{targetCPUUtilizationPercentage: 50}}}}\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for expected in [
        "spec.components[registry].overrides.maxReplicas: does not apply to the registry component",
        "spec.components[hpa].overrides.replicas: does not apply to the hpa component",
        "spec.components[hpa].overrides.volumeSize: does not apply to the hpa component",
        "spec.components[ingress].overrides.targetCPUUtilizationPercentage: does not apply to the ingress component",
    ] {
        assert!(text.iter().any(|e| e == expected), "{expected}: {text:?}");
    }
}

#[test]
fn several_pods_with_replicas_or_hpa_only() {
    let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
    assert!(!plan.several_pods());
    let plan = validate_with(
        &spec(&format!(
            "{S3}components: [{{kind: registry, managed: true, overrides: {{replicas: 2}}}}]\n"
        )),
        &probed(Ok(())),
        "v",
        Offers::default(),
    )
    .unwrap();
    assert!(plan.several_pods() && plan.hpa.is_none());
    let plan = validate_with(&spec(S3), &probed(Ok(())), "v", Offers::default()).unwrap();
    assert!(!plan.several_pods(), "one replica on object storage");
}

// --- building -------------------------------------------------------------

fn cr(yaml: &str) -> QuarryRegistry {
    let mut cr: QuarryRegistry = serde_norway::from_str(yaml).unwrap();
    cr.metadata.uid = Some("uid-1".into());
    cr
}

const MINIMAL: &str = "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec: {}\n";

#[test]
fn renders_the_objects_with_labels_owner_and_hash() {
    let cr = cr(MINIMAL);
    let plan = validate(&cr.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
    let d = view(build(&cr, &plan, "quay.io/quarry/registry", &Generated::default()).unwrap());
    assert_eq!(d.deployment.metadata.name.as_deref(), Some("demo-registry"));
    assert_eq!(d.image, "quay.io/quarry/registry:0.1.0");
    let owner = &d.deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "QuarryRegistry");
    assert_eq!(owner.controller, Some(true));
    let template = d.deployment.spec.template.metadata.as_ref().unwrap();
    assert_eq!(
        template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
        d.config_hash
    );
    let config = String::from_utf8(
        d.config_secret.data.as_ref().unwrap()["config.yaml"]
            .0
            .clone(),
    )
    .unwrap();
    assert!(
        config.contains("FEATURE_HELM_OCI_SUPPORT: true"),
        "{config}"
    );
    assert!(config.contains(DATA_DIR), "{config}");
    assert!(d.pvc.is_some());
    assert!(d.ingress.is_none());
    assert_eq!(plan.endpoint(&cr), "demo-registry.ns.svc:5000");
}

#[test]
fn managed_ingress_routes_the_host_to_the_service() {
    let cr = cr(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec:\n  serverHostname: registry.example.com:443\n  components: [{kind: ingress, managed: true, overrides: {annotations: {a: b}}}]\n",
    );
    let plan = validate(&cr.spec, &Bundle::None, "v", Default::default()).unwrap();
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    let ingress = d.ingress.unwrap();
    assert_eq!(ingress.metadata.annotations.unwrap()["a"], "b");
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("registry.example.com"));
    let mut no_host = cr.clone();
    no_host.spec.server_hostname = None;
    let errors = validate(&no_host.spec, &Bundle::None, "v", Default::default()).unwrap_err();
    assert_eq!(errors[0].path, "spec.serverHostname");
}

#[test]
fn deterministic_and_hash_follows_config_only() {
    let a = cr(MINIMAL);
    let plan = validate(&a.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
    let first = view(build(&a, &plan, "img", &Generated::default()).unwrap());
    assert_eq!(
        first,
        view(build(&a, &plan, "img", &Generated::default()).unwrap())
    );
    let mut b = a.clone();
    b.spec.features = Some(crate::crd::Features {
        helm: Some(false),
        ..Default::default()
    });
    let plan_b = validate(&b.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
    let second = view(build(&b, &plan_b, "img", &Generated::default()).unwrap());
    assert_ne!(first.config_hash, second.config_hash);
    // The rendered config drives the real registry: it parses back.
    let yaml = render_config(&plan_b).unwrap();
    let loaded = quarry_registry::config::RegistryConfig::from_yaml(&yaml, None).unwrap();
    assert!(!loaded.config.feature_helm_oci_support);
    assert!(loaded.unknown_keys.is_empty());
}

#[test]
fn volumes_are_writable_for_the_image_group_except_where_openshift_assigns_one() {
    let cr = cr(MINIMAL);
    for (routes, want) in [(false, Some(65532)), (true, None)] {
        let offers = crate::capabilities::Offers {
            routes,
            service_monitors: false,
        };
        let plan = validate(&cr.spec, &Bundle::None, "v", offers).unwrap();
        let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
        let pod = d.deployment.spec.template.spec.unwrap();
        let security = pod.security_context.unwrap();
        assert_eq!(security.fs_group, want, "routes offered: {routes}");
        assert_eq!(
            security.fs_group_change_policy.is_some(),
            want.is_some(),
            "routes offered: {routes}"
        );
    }
}

#[test]
fn tls_and_auth_mount_their_secrets_outside_the_config_hash() {
    let cr = cr(MINIMAL);
    let offers = crate::capabilities::Offers {
        routes: true,
        service_monitors: true,
    };
    let plan = validate(&cr.spec, &Bundle::None, "v", offers).unwrap();
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    let pod = d.deployment.spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    let args = container.args.as_ref().unwrap().join(" ");
    assert!(
        args.contains("--config /etc/quarry/config/config.yaml")
            && args
                .contains("--tls-cert /etc/quarry/tls/tls.crt --tls-key /etc/quarry/tls/tls.key"),
        "{args}"
    );
    let volumes: Vec<(String, String)> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| {
            v.secret
                .as_ref()
                .map(|s| (v.name.clone(), s.secret_name.clone().unwrap()))
        })
        .collect();
    assert_eq!(
        volumes,
        [
            ("config".to_string(), "demo-config".to_string()),
            ("auth".to_string(), "demo-registry-auth".to_string()),
            ("tls".to_string(), "demo-registry-tls".to_string()),
        ]
    );
    let probe = container.readiness_probe.as_ref().unwrap();
    assert_eq!(
        probe.http_get.as_ref().unwrap().scheme.as_deref(),
        Some("HTTPS")
    );
    assert_eq!(
        d.service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
            .name
            .as_deref(),
        Some("https")
    );
    let route = d.route.unwrap();
    assert_eq!(route["spec"]["tls"]["termination"], "passthrough");
    assert_eq!(route["spec"]["port"]["targetPort"], "https");
    let monitor = d.service_monitor.unwrap();
    assert_eq!(
        monitor["spec"]["endpoints"][0]["tlsConfig"]["ca"]["configMap"]["name"],
        "demo-registry-ca"
    );
    // Plain HTTP: edge Route, no tls volume.
    let mut plain = cr.clone();
    plain.spec.components = vec![crate::crd::Component {
        kind: crate::crd::ComponentKind::Tls,
        managed: false,
        overrides: None,
    }];
    let plan = validate(&plain.spec, &Bundle::None, "v", offers).unwrap();
    let d = view(build(&plain, &plan, "img", &Generated::default()).unwrap());
    assert_eq!(d.route.unwrap()["spec"]["tls"]["termination"], "edge");
    let args = d.deployment.spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(!args.contains(&"--tls-cert".to_string()));
}

fn on_object_storage(components: &str) -> (QuarryRegistry, Plan) {
    let cr = cr(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: demo, namespace: ns}}\nspec:\n  objectStorage: {{bucket: quarry, credentialsSecret: s3}}\n  components: {components}\n"
    ));
    let inputs = crate::plan::Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        object_storage: crate::plan::ObjectStorageCheck::Probed {
            result: Ok(()),
            credentials_hash: "abc".into(),
        },
        ..crate::plan::Inputs::bundle(Bundle::None)
    };
    let plan = crate::plan::plan_with(&cr.spec, &inputs, "v", Default::default()).unwrap();
    (cr, plan)
}

#[test]
fn managed_hpa_scales_the_deployment_which_leaves_replicas_to_it() {
    let (cr, plan) = on_object_storage(
        "[{kind: hpa, managed: true, overrides: {minReplicas: 3, maxReplicas: 7, targetCPUUtilizationPercentage: 60, labels: {team: a}}}]",
    );
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    assert_eq!(d.deployment.spec.replicas, None);
    let json = d.deployment_json.clone();
    assert!(
        json["spec"].get("replicas").is_none(),
        "replicas applied: {}",
        json["spec"]
    );
    let hpa = d.hpa.expect("an HPA");
    assert_eq!(hpa.metadata.name.as_deref(), Some("demo-registry"));
    let labels = hpa.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/component"], "hpa");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "quarry-operator");
    assert_eq!(labels["team"], "a");
    let owner = &hpa.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("QuarryRegistry", Some(true))
    );
    let target = &hpa.spec.scale_target_ref;
    assert_eq!(
        (
            target.api_version.as_deref(),
            target.kind.as_str(),
            target.name.as_str()
        ),
        (Some("apps/v1"), "Deployment", "demo-registry")
    );
    assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(3), 7));
    let metric = &hpa.spec.metrics.as_ref().unwrap()[0];
    let resource = metric.resource.as_ref().unwrap();
    assert_eq!(
        (metric.type_.as_str(), resource.name.as_str()),
        ("Resource", "cpu")
    );
    assert_eq!(resource.target.type_, "Utilization");
    assert_eq!(resource.target.average_utilization, Some(60));
    let pdb = d.pdb.expect("a PodDisruptionBudget");
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    assert_eq!(
        spec.selector.unwrap().match_labels,
        d.deployment.spec.selector.match_labels
    );
    assert_eq!(pdb.metadata.name.as_deref(), Some("demo-registry"));
    assert!(pdb.metadata.owner_references.is_some());
}

#[test]
fn disruption_budget_only_when_several_pods_can_run() {
    let (cr, plan) =
        on_object_storage("[{kind: registry, managed: true, overrides: {replicas: 3}}]");
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    assert_eq!(d.deployment.spec.replicas, Some(3));
    assert!(d.hpa.is_none());
    assert!(d.pdb.is_some(), "three replicas, no budget");
    let (cr, plan) = on_object_storage("[]");
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    assert_eq!(d.deployment.spec.replicas, Some(1));
    assert!(d.pdb.is_none() && d.hpa.is_none());
    let cr = cr_min();
    let plan = validate(&cr.spec, &Bundle::None, "v", Default::default()).unwrap();
    let d = view(build(&cr, &plan, "img", &Generated::default()).unwrap());
    assert!(d.pdb.is_none() && d.hpa.is_none());
    assert_eq!(d.deployment.spec.replicas, Some(1));
}

fn cr_min() -> QuarryRegistry {
    cr(MINIMAL)
}

fn upstream_checked(result: Result<(), String>) -> Inputs {
    Inputs {
        proxy_cache: vec![crate::plan::UpstreamCheck {
            access: crate::plan::UpstreamAccess {
                credentials: Some(("robot".into(), "s3cret".into())),
                ca: None,
            },
            reference_problem: None,
            result,
        }],
        ..Inputs::bundle(Bundle::None)
    }
}

#[test]
fn proxy_cache_renders_the_login_and_refuses_a_failed_one() {
    let s = spec(
        "proxyCache: [{namespace: hub, upstream: docker.io, credentialsSecret: hub-login, expiration: 2h}]
",
    );
    let plan = validate_with(&s, &upstream_checked(Ok(())), "v", Offers::default()).unwrap();
    let config = &plan.registry_config;
    assert!(config.feature_proxy_cache);
    let cache = &config.proxy_cache_namespaces[0];
    assert_eq!(
        (
            cache.namespace.as_str(),
            cache.upstream_registry.as_str(),
            cache.expiration_s
        ),
        ("hub", "docker.io", 7200)
    );
    assert_eq!(cache.upstream_registry_username.as_deref(), Some("robot"));
    assert_eq!(cache.upstream_registry_password.as_deref(), Some("s3cret"));

    let errors = validate_with(
        &s,
        &upstream_checked(Err("upstream docker.io refused the credentials".into())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "spec.proxyCache[0].upstream");
    assert!(
        errors[0].reason.contains("refused the credentials"),
        "{errors:?}"
    );

    let bad = spec("proxyCache: [{namespace: hub, upstream: 'https://quay.io'}]\n");
    let errors =
        validate_with(&bad, &upstream_checked(Ok(())), "v", Offers::default()).unwrap_err();
    assert_eq!(errors[0].path, "spec.proxyCache[0]");
    assert!(errors[0].reason.contains("has a scheme"), "{errors:?}");
}

#[test]
fn mirroring_renders_the_repositories_and_refuses_a_failed_login() {
    let s = spec(
        "mirroring:
  interval: 10m
  repositories:
  - {repository: mirrors/app, upstream: 'quay.io/team/app', credentialsSecret: login, tagRegex: 'v1\\..*', semver: '>=1.2'}
",
    );
    let inputs = |result: Result<(), String>| Inputs {
        mirrors: vec![crate::plan::UpstreamCheck {
            access: crate::plan::UpstreamAccess {
                credentials: Some(("robot".into(), "pw".into())),
                ca: None,
            },
            reference_problem: None,
            result,
        }],
        ..Inputs::bundle(Bundle::None)
    };
    let plan = validate_with(&s, &inputs(Ok(())), "v", Offers::default()).unwrap();
    let config = &plan.registry_config;
    assert!(config.feature_repo_mirror);
    assert_eq!(config.repo_mirror_interval, 600);
    let m = &config.repo_mirrors[0];
    assert_eq!(
        (
            m.repository.as_str(),
            m.external_reference.as_str(),
            m.tags.clone()
        ),
        ("mirrors/app", "quay.io/team/app", vec!["*".to_string()])
    );
    assert_eq!(m.external_registry_password.as_deref(), Some("pw"));
    assert_eq!(m.semver.as_deref(), Some(">=1.2"));

    let errors = validate_with(
        &s,
        &inputs(Err("upstream quay.io refused the credentials".into())),
        "v",
        Offers::default(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "spec.mirroring.repositories[0].upstream");

    // The CA ConfigMap's certificates are rendered inline; a problem with
    // the ConfigMap is reported under its field.
    let with_ca = Inputs {
        mirrors: vec![crate::plan::UpstreamCheck {
            access: crate::plan::UpstreamAccess {
                credentials: None,
                ca: Some(
                    rcgen::generate_simple_self_signed(vec!["quay.io".into()])
                        .unwrap()
                        .cert
                        .pem(),
                ),
            },
            reference_problem: None,
            result: Ok(()),
        }],
        ..Inputs::bundle(Bundle::None)
    };
    let plan = validate_with(&s, &with_ca, "v", Offers::default()).unwrap();
    let ca = plan.registry_config.repo_mirrors[0].upstream_ca.as_deref();
    assert!(
        ca.is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")),
        "{ca:?}"
    );
    let missing = Inputs {
        mirrors: vec![crate::plan::UpstreamCheck {
            access: Default::default(),
            reference_problem: Some(("caConfigMap", "ConfigMap \"corp-ca\" not found".into())),
            result: Ok(()),
        }],
        ..Inputs::bundle(Bundle::None)
    };
    let errors = validate_with(&s, &missing, "v", Offers::default()).unwrap_err();
    assert_eq!(errors[0].path, "spec.mirroring.repositories[0].caConfigMap");

    let bad = spec("mirroring: {repositories: [{repository: mirrors/app, upstream: quay.io}]}\n");
    let errors = validate_with(&bad, &inputs(Ok(())), "v", Offers::default()).unwrap_err();
    assert!(
        errors[0]
            .reason
            .contains("names a registry, not a repository"),
        "{errors:?}"
    );
}

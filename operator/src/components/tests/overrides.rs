//! The component table against the code: every kind has a row, every
//! override a component accepts changes what it builds (so accepted and
//! used cannot drift), and every error names its component the same way.

use super::*;
use crate::components::{OverrideField, TABLE, kind_row};
use crate::generated::{Existing, as_existing, generate};

const NOW: i64 = 1_800_000_000;

/// Every kind of the CRD. The match makes a new variant fail to compile
/// here until it is listed.
fn all_kinds() -> Vec<ComponentKind> {
    use ComponentKind::*;
    let kinds = vec![Registry, Storage, Tls, Route, Ingress, Hpa, Monitoring];
    for k in &kinds {
        match k {
            Registry | Storage | Tls | Route | Ingress | Hpa | Monitoring => {}
        }
    }
    kinds
}

#[test]
fn every_kind_has_exactly_one_row() {
    for kind in all_kinds() {
        let rows = TABLE
            .iter()
            .filter(|r| r.kind.as_ref().is_some_and(|k| k.kind == kind))
            .count();
        assert_eq!(rows, 1, "{kind:?} has {rows} rows in components::TABLE");
    }
}

/// A sample value of each override field, as YAML.
fn sample(field: OverrideField) -> &'static str {
    match field {
        OverrideField::Replicas => "replicas: 3",
        OverrideField::MinReplicas => "minReplicas: 3",
        OverrideField::MaxReplicas => "maxReplicas: 9",
        OverrideField::TargetCpuUtilizationPercentage => "targetCPUUtilizationPercentage: 42",
        OverrideField::Resources => "resources: {requests: {cpu: '1'}}",
        OverrideField::Env => "env: [{name: X, value: y}]",
        OverrideField::NodeSelector => "nodeSelector: {disk: ssd}",
        OverrideField::Tolerations => "tolerations: [{key: k, operator: Exists}]",
        OverrideField::Labels => "labels: {team: a}",
        OverrideField::Annotations => "annotations: {example.com/note: b}",
        OverrideField::VolumeSize => "volumeSize: 20Gi",
        OverrideField::StorageClassName => "storageClassName: fast",
    }
}

const ALL_APIS: Offers = Offers {
    routes: true,
    service_monitors: true,
};

/// A resource with `kind` managed (with `overrides`), in a setting where
/// every override of it can take effect, planned and built with its
/// generated objects (kept from `keep` so only the overrides differ).
fn built_with(kind: ComponentKind, overrides: &str, keep: &Existing) -> (Built, Generated) {
    let storage = if kind == ComponentKind::Storage {
        ""
    } else {
        "  objectStorage: {bucket: quarry, credentialsSecret: s3}\n"
    };
    let cr = cr(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: demo, namespace: ns}}\nspec:\n  serverHostname: registry.example.com\n{storage}  components: [{{kind: {}, managed: true, overrides: {{{overrides}}}}}]\n",
        kind.name()
    ));
    let inputs = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        object_storage: ObjectStorageCheck::Probed {
            result: Ok(()),
            credentials_hash: "abc".into(),
        },
        ..Inputs::bundle(Bundle::None)
    };
    let plan = validate_with(&cr.spec, &inputs, "v", ALL_APIS)
        .unwrap_or_else(|e| panic!("{kind:?} with {overrides:?}: {e:?}"));
    let made = generate(&cr, &plan, keep, None, NOW).unwrap();
    (build(&cr, &plan, "img", &made).unwrap(), made)
}

#[test]
fn every_accepted_override_changes_what_its_component_builds() {
    for kind in all_kinds() {
        let row = kind_row(kind).unwrap();
        let (_, first) = built_with(kind, "", &Existing::default());
        let cr_keep = cr(MINIMAL);
        let keep = as_existing(&first, &cr_keep);
        let (base, _) = built_with(kind, "", &keep);
        for field in row.overrides {
            let (changed, _) = built_with(kind, sample(*field), &keep);
            assert_ne!(
                base.resources,
                changed.resources,
                "spec.components[{}].overrides.{} is accepted but changes nothing",
                kind.name(),
                field.name()
            );
        }
    }
}

/// The `app.kubernetes.io/component` values of the objects a kind makes.
fn parts_of(kind: ComponentKind) -> &'static [&'static str] {
    match kind {
        ComponentKind::Registry => &["registry", "config", "auth"],
        ComponentKind::Storage => &["storage"],
        ComponentKind::Tls => &["tls"],
        ComponentKind::Route => &["route"],
        ComponentKind::Ingress => &["ingress"],
        ComponentKind::Hpa => &["hpa"],
        ComponentKind::Monitoring => &["monitoring"],
    }
}

#[test]
fn override_labels_reach_every_object_of_their_component_and_no_other() {
    for kind in all_kinds() {
        let (built, _) = built_with(kind, "labels: {team: a}", &Existing::default());
        let mut seen = 0;
        for entry in built.resources.in_order() {
            let labels = &entry.body["metadata"]["labels"];
            let part = labels["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or_default();
            let mine = parts_of(kind).contains(&part);
            assert_eq!(
                labels["team"].as_str() == Some("a"),
                mine,
                "{kind:?} labels on {:?} {} (component {part})",
                entry.kind,
                entry.name
            );
            seen += usize::from(mine);
        }
        assert!(seen > 0, "{kind:?} built nothing to label");
    }
}

#[test]
fn one_mistake_is_reported_once_under_its_field() {
    let errors = validate(
        &spec("allowedArtifactTypes: {not-a-type: [fine/type, bad]}"),
        &Bundle::None,
        "v",
        Offers::default(),
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.allowedArtifactTypes[not-a-type]",
            "spec.allowedArtifactTypes[not-a-type][1]"
        ],
        "{errors:?}"
    );
    // From the bundle, the same mistake is named by the bundle's key.
    let bundle = Bundle::Found("ALLOWED_OCI_ARTIFACT_TYPES: {not-a-type: []}\n".into());
    let errors = validate(&spec("{}"), &bundle, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].path,
        "spec.configBundleSecret[config.yaml].ALLOWED_OCI_ARTIFACT_TYPES.not-a-type"
    );
}

#[test]
fn component_errors_name_the_kind_never_an_index() {
    let s = spec(
        r#"
components:
  - {kind: storage, managed: true, overrides: {replicas: 2, volumeSize: lots}}
  - {kind: registry, managed: false}
  - {kind: route, managed: true}
  - {kind: storage, managed: false}
  - {kind: hpa, managed: true, overrides: {minReplicas: 0}}
"#,
    );
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for expected in [
        "spec.components[storage].overrides.replicas: does not apply to the storage component",
        "spec.components[storage].overrides.volumeSize: \"lots\" is not a quantity such as 10Gi",
        "spec.components[registry].managed: the registry component is always managed",
        "spec.components[route].managed: managed component route needs the route.openshift.io/v1 Route API",
        "spec.components[storage]: is listed twice (entries 0 and 3 of spec.components)",
        "spec.components[hpa].overrides.minReplicas: 0 cannot be the hpa's minReplicas",
    ] {
        assert!(
            text.iter().any(|e| e.starts_with(expected)),
            "{expected}: {text:?}"
        );
    }
    for e in &errors {
        assert!(
            !e.path.starts_with("spec.components[")
                || !e.path["spec.components[".len()..].starts_with(|c: char| c.is_ascii_digit()),
            "index-style path: {e}"
        );
    }
}

#[test]
fn overrides_of_an_unmanaged_component_are_reported_as_not_applied() {
    let plan = validate(
        &spec("components: [{kind: ingress, managed: false, overrides: {annotations: {a: b}}}]"),
        &Bundle::None,
        "v",
        Offers::default(),
    )
    .unwrap();
    assert!(
        plan.warnings.iter().any(|w| w
            == "spec.components[ingress].overrides (annotations) are not applied: the ingress component is unmanaged"),
        "{:?}",
        plan.warnings
    );
}

//! The OLM bundle under deploy/olm: the fields OLM requires, checked here
//! (the Operator SDK's `bundle validate` is not buildable from the module
//! proxy this machine reaches), and kept in step with the CRD, the RBAC of
//! deploy/rbac.yaml and the resource types.

use kube::CustomResourceExt;
use quarry_operator::crd::QuarryRegistry;
use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn csv() -> Value {
    yaml("deploy/olm/manifests/quarry-operator.clusterserviceversion.yaml")
}

#[test]
fn csv_has_what_olm_requires() {
    let csv = csv();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(csv["kind"], "ClusterServiceVersion");
    assert_eq!(
        csv["metadata"]["name"],
        format!("quarry-operator.v{version}")
    );
    let spec = &csv["spec"];
    assert_eq!(spec["version"], version);
    for field in ["displayName", "description", "maturity", "minKubeVersion"] {
        assert!(
            spec[field].as_str().is_some_and(|s| !s.is_empty()),
            "spec.{field} missing"
        );
    }
    assert!(spec["provider"]["name"].is_string());
    assert!(!spec["maintainers"].as_array().unwrap().is_empty());
    let modes: Vec<&str> = spec["installModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    for mode in [
        "OwnNamespace",
        "SingleNamespace",
        "MultiNamespace",
        "AllNamespaces",
    ] {
        assert!(modes.contains(&mode), "installModes lacks {mode}");
    }
    assert_eq!(spec["install"]["strategy"], "deployment");
    let deployments = spec["install"]["spec"]["deployments"].as_array().unwrap();
    let pod = &deployments[0]["spec"]["template"]["spec"];
    let sa = pod["serviceAccountName"].as_str().unwrap();
    assert_eq!(
        spec["install"]["spec"]["clusterPermissions"][0]["serviceAccountName"],
        sa
    );
    assert_eq!(
        spec["install"]["spec"]["permissions"][0]["serviceAccountName"],
        sa
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // Images: the container, containerImage and relatedImages agree.
    let image = container["image"].as_str().unwrap();
    assert_eq!(csv["metadata"]["annotations"]["containerImage"], image);
    let related: Vec<&str> = spec["relatedImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert!(related.contains(&image));
    assert!(
        related
            .iter()
            .any(|i| i.contains("quarry-registry") && i.ends_with(version))
    );
}

#[test]
fn owned_crd_matches_the_generated_one() {
    let crd = serde_json::to_value(QuarryRegistry::crd()).unwrap();
    let owned = &csv()["spec"]["customresourcedefinitions"]["owned"][0];
    assert_eq!(owned["name"], crd["metadata"]["name"]);
    assert_eq!(owned["kind"], crd["spec"]["names"]["kind"]);
    assert_eq!(owned["version"], crd["spec"]["versions"][0]["name"]);
    for field in ["displayName", "description"] {
        assert!(owned[field].is_string(), "owned CRD needs {field}");
    }
}

#[test]
fn permissions_match_deploy_rbac() {
    let rbac = yaml_documents("deploy/rbac.yaml");
    let rules_of = |kind: &str| {
        rbac.iter()
            .find(|d| d["kind"] == kind)
            .map(|d| d["rules"].clone())
            .unwrap_or_else(|| panic!("deploy/rbac.yaml has no {kind}"))
    };
    let install = &csv()["spec"]["install"]["spec"];
    assert_eq!(
        install["clusterPermissions"][0]["rules"],
        rules_of("ClusterRole"),
        "CSV cluster rules differ from deploy/rbac.yaml"
    );
    assert_eq!(
        install["permissions"][0]["rules"],
        rules_of("Role"),
        "CSV namespace rules differ from deploy/rbac.yaml"
    );
}

#[test]
fn examples_are_valid_resources() {
    let csv = csv();
    let examples: Vec<QuarryRegistry> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .expect("alm-examples is a JSON array of QuarryRegistry");
    assert!(!examples.is_empty());
    for example in examples {
        quarry_operator::plan::plan(
            &example.spec,
            &quarry_operator::plan::Bundle::None,
            "v",
            Default::default(),
        )
        .unwrap_or_else(|e| panic!("alm-example {:?} is invalid: {e:?}", example.metadata.name));
    }
}

#[test]
fn bundle_metadata_and_image_labels_agree() {
    let annotations = yaml("deploy/olm/metadata/annotations.yaml");
    let map = annotations["annotations"].as_object().unwrap();
    let containerfile =
        std::fs::read_to_string(root().join("deploy/olm/bundle.Containerfile")).unwrap();
    for key in [
        "operators.operatorframework.io.bundle.mediatype.v1",
        "operators.operatorframework.io.bundle.manifests.v1",
        "operators.operatorframework.io.bundle.metadata.v1",
        "operators.operatorframework.io.bundle.package.v1",
        "operators.operatorframework.io.bundle.channels.v1",
    ] {
        let value = map
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("annotations.yaml lacks {key}"));
        assert!(
            containerfile.contains(&format!("{key}={value}")),
            "bundle.Containerfile label {key} differs"
        );
    }
    assert_eq!(
        map["operators.operatorframework.io.bundle.mediatype.v1"],
        "registry+v1"
    );
}

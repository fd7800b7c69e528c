//! The checked-in CRD, and each copy `make crds` writes, must be what the
//! Rust types generate.

use kube::CustomResourceExt;

/// Every file `make crds` writes.
const COPIES: [&str; 4] = [
    "crds/quarryregistries.quarry.dev.yaml",
    "deploy/crd/quarryregistries.quarry.dev.yaml",
    "charts/quarry-operator/crds/quarryregistries.quarry.dev.yaml",
    "deploy/olm/manifests/quarryregistries.quarry.dev.yaml",
];

#[test]
fn checked_in_crds_match_the_types() {
    let generated = serde_norway::to_string(&quarry_operator::crd::QuarryRegistry::crd()).unwrap();
    for copy in COPIES {
        let path = format!("{}/../{copy}", env!("CARGO_MANIFEST_DIR"));
        let checked_in =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(
            generated == checked_in,
            "{copy} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn every_spec_field_has_a_description() {
    let crd = serde_json::to_value(quarry_operator::crd::QuarryRegistry::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for (field, schema) in spec.as_object().unwrap() {
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "spec.{field} has no description for kubectl explain"
        );
    }
}

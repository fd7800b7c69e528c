//! The checked-in CRD must be what the Rust types generate (`make crds`).

use kube::CustomResourceExt;

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = serde_norway::to_string(&quarry_operator::crd::QuarryRegistry::crd()).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/quarryregistries.quarry.dev.yaml"
    );
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "crds/quarryregistries.quarry.dev.yaml is stale: run `make crds` and commit the result"
    );
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

//! spec.immutableTags, spec.autoPrune and spec.quotas on a real control
//! plane: the API server refuses what the schema can check, the operator
//! renders Quay's keys, a bad pattern is reported under its field with
//! nothing running changed, and the rendered config drives a real registry
//! that refuses to move an immutable tag (helm sees why).

use std::time::Duration;

use quarry_e2e::clients::{helm, helm_login, helm_push_chart};
use quarry_e2e::kube::{Cluster, REGISTRY_IMAGE};
use quarry_e2e::{free_port, run};

const SPEC: &str = r#"
apiVersion: quarry.dev/v1alpha1
kind: QuarryRegistry
metadata: {name: registry, namespace: alpha}
spec:
  immutableTags:
    policies:
      - {namespace: charts, tagPattern: '.*'}
  autoPrune:
    policies:
      - {namespace: ci, keepNewest: 20}
      - {namespace: '*', olderThan: 2w, tagPattern: 'pr-[0-9]+'}
  quotas:
    defaultRejectLimit: 100Gi
    namespaces:
      - {namespace: team, limit: 10Gi, warningPercent: 80}
"#;

fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    c.cp.create_volume("pv-0").unwrap();
    c.start_operator_with(
        "operator",
        free_port(),
        &[
            "--registry-image",
            REGISTRY_IMAGE,
            "--leader-election-namespace",
            "default",
        ],
    );
    c.create_namespace("alpha");
    c
}

#[test]
fn lifecycle_fields_are_checked_rendered_and_enforced() {
    let c = cluster();

    // --- what the schema can check, the API server refuses ---------------------
    for (spec, message) in [
        (
            "autoPrune: {policies: [{namespace: ci, keepNewest: 2, olderThan: 2w}]}",
            "set exactly one of keepNewest and olderThan",
        ),
        (
            "autoPrune: {policies: [{namespace: ci}]}",
            "set exactly one of keepNewest and olderThan",
        ),
        (
            "autoPrune: {policies: [{namespace: ci, olderThan: 2weeks}]}",
            "should match",
        ),
        (
            "quotas: {namespaces: [{namespace: team, limit: ten}]}",
            "should match",
        ),
        (
            "quotas: {namespaces: [{namespace: team, limit: 1Gi, warningPercent: 150}]}",
            "should be less than or equal to 100",
        ),
        (
            "immutableTags: {policies: [{namespace: prod}]}",
            "tagPattern: Required value",
        ),
    ] {
        let yaml = format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: refused, namespace: alpha}}\nspec:\n  {spec}\n"
        );
        let err = c.cp.apply_yaml(&yaml).expect_err(spec).to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }

    // --- rendered as Quay's keys -------------------------------------------------
    c.apply(SPEC);
    c.wait_ready("alpha", "registry");
    let config = c.config_yaml("alpha", "registry");
    for part in [
        "FEATURE_IMMUTABLE_TAGS: true",
        "tagPattern: .*",
        "FEATURE_AUTO_PRUNE: true",
        "method: number_of_tags",
        "value: 20",
        "method: creation_date",
        "FEATURE_QUOTA_MANAGEMENT: true",
        "limit_bytes: 10737418240",
        "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES: 107374182400",
    ] {
        assert!(
            config.contains(part),
            "{part:?} missing from the rendered config:\n{config}"
        );
    }

    // --- a bad pattern: ConfigValid names the field, nothing running changes -----
    let running = c.resource_versions(
        "alpha",
        &["deployment/registry-registry", "secret/registry-config"],
    );
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"immutableTags":{"policies":[{"namespace":"charts","tagPattern":"v("}]}}}"#,
    );
    c.wait("ConfigValid False", Duration::from_secs(60), || {
        c.condition("alpha", "registry", "ConfigValid").status == "False"
    });
    let condition = c.condition("alpha", "registry", "ConfigValid");
    assert!(
        condition.message.contains(
            "spec.immutableTags.policies[0]: tagPattern \"v(\" is not a regular expression"
        ),
        "{condition:?}"
    );
    assert_eq!(
        c.resource_versions(
            "alpha",
            &["deployment/registry-registry", "secret/registry-config"]
        ),
        running
    );
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"immutableTags":{"policies":[{"namespace":"charts","tagPattern":".*"}]}}}"#,
    );
    c.wait_ready("alpha", "registry");

    // --- the rendered config drives a real registry -------------------------------
    let pod = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files("alpha", "registry", pod.path()).unwrap();
    let registry = files.start_registry();
    let ca = files.ca_file.clone().expect("the CA ConfigMap");
    let (user, password) = files.admin.clone().expect("generated admin account");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    run(&mut helm_login(
        dir,
        &registry.host(),
        &user,
        &password,
        &ca,
    ));
    run(helm(dir).args(["create", "demo"]));
    let push = || {
        run(helm(dir).args(["package", "demo"]));
        helm_push_chart(dir, "demo-0.1.0.tgz", &registry.host(), &ca)
            .output()
            .unwrap()
    };
    let first = push();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    std::fs::write(dir.join("demo/values.yaml"), "replicaCount: 3\n").unwrap();
    let second = push();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && stderr.contains("tag charts/demo:0.1.0 is immutable"),
        "republishing chart 0.1.0 with other content was not refused: {stderr}"
    );
}

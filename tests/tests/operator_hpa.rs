//! The hpa component and the PodDisruptionBudget on a real control plane
//! with a real MinIO, the operator running with exactly the rights of
//! deploy/rbac.yaml: a managed hpa without spec.objectStorage is refused
//! and nothing is created; with it, an autoscaling/v2 HPA and a policy/v1
//! PodDisruptionBudget owned by the resource, a Deployment whose replicas
//! the operator does not apply (a scale by hand, as the HPA would do,
//! survives reconciles), ComponentHpaReady from what the HPA controller
//! reports; switched off, the HPA is deleted and the operator's replicas
//! return; one replica, the budget goes.

use std::time::Duration;

use quarry_e2e::kube::{Cluster, Condition, REGISTRY_IMAGE, secret_yaml};
use quarry_e2e::scale::{MINIO_PASSWORD, MINIO_USER, Minio};
use quarry_e2e::workspace_root;

const NS: &str = "autoscaled";

/// The fields of the Deployment the operator's server-side apply owns.
fn operator_fields(c: &Cluster, deployment: &str) -> serde_json::Value {
    let json = c.kubectl(&[
        "get",
        "-n",
        NS,
        deployment,
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let object: serde_json::Value = serde_json::from_str(&json).unwrap();
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "quarry-operator" && m["operation"] == "Apply")
        .map(|m| m["fieldsV1"].clone())
        .unwrap_or_else(|| panic!("no apply of quarry-operator: {json}"))
}

#[test]
fn hpa_and_disruption_budget_follow_the_components() {
    let minio = Minio::start("autoscaled");
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    c.create_namespace("quarry-system");
    let rbac = workspace_root().join("deploy/rbac.yaml");
    c.kubectl(&["apply", "-n", "quarry-system", "-f", rbac.to_str().unwrap()]);
    c.start_operator_as(
        "quarry-system",
        "quarry-operator",
        &["--registry-image", REGISTRY_IMAGE],
    );
    c.create_namespace(NS);
    c.apply(&secret_yaml(
        NS,
        "s3-credentials",
        &[
            ("AWS_ACCESS_KEY_ID", MINIO_USER),
            ("AWS_SECRET_ACCESS_KEY", MINIO_PASSWORD),
        ],
    ));

    // --- a managed hpa without shared storage: refused, nothing created -------
    c.apply(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: volume, namespace: {NS}}}\nspec:\n  components:\n  - {{kind: hpa, managed: true}}\n"
    ));
    c.wait("ConfigValid=False", Duration::from_secs(60), || {
        c.condition(NS, "volume", "ConfigValid").status == "False"
    });
    let message = c.condition(NS, "volume", "ConfigValid").message;
    assert!(
        message.contains("spec.components[hpa].managed")
            && message.contains("set spec.objectStorage")
            && message.contains("ReadWriteOnce"),
        "{message}"
    );

    // --- with spec.objectStorage: HPA, budget, replicas left to the HPA -------
    let endpoint = minio.endpoint();
    c.apply(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: scaled, namespace: {NS}}}\nspec:\n  objectStorage: {{endpoint: '{endpoint}', bucket: autoscaled, credentialsSecret: s3-credentials}}\n  components:\n  - {{kind: hpa, managed: true, overrides: {{minReplicas: 2, maxReplicas: 4, targetCPUUtilizationPercentage: 60}}}}\n"
    ));
    c.wait_ready(NS, "scaled");
    let hpa = "hpa/scaled-registry";
    let pdb = "pdb/scaled-registry";
    let deployment = "deployment/scaled-registry";
    for (path, expected) in [
        ("{.spec.scaleTargetRef.apiVersion}", "apps/v1"),
        ("{.spec.scaleTargetRef.kind}", "Deployment"),
        ("{.spec.scaleTargetRef.name}", "scaled-registry"),
        ("{.spec.minReplicas}", "2"),
        ("{.spec.maxReplicas}", "4"),
        ("{.spec.metrics[0].resource.name}", "cpu"),
        ("{.spec.metrics[0].resource.target.type}", "Utilization"),
        (
            "{.spec.metrics[0].resource.target.averageUtilization}",
            "60",
        ),
        ("{.metadata.ownerReferences[0].kind}", "QuarryRegistry"),
        ("{.metadata.ownerReferences[0].name}", "scaled"),
        ("{.metadata.ownerReferences[0].controller}", "true"),
        (
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by}",
            "quarry-operator",
        ),
        ("{.metadata.labels.app\\.kubernetes\\.io/component}", "hpa"),
    ] {
        assert_eq!(c.jsonpath(NS, hpa, path), expected, "{hpa} {path}");
    }
    for (path, expected) in [
        ("{.spec.maxUnavailable}", "1"),
        (
            "{.spec.selector.matchLabels}",
            r#"{"app.kubernetes.io/instance":"scaled","app.kubernetes.io/name":"quarry-registry"}"#,
        ),
        ("{.metadata.ownerReferences[0].kind}", "QuarryRegistry"),
        ("{.metadata.ownerReferences[0].controller}", "true"),
    ] {
        assert_eq!(c.jsonpath(NS, pdb, path), expected, "{pdb} {path}");
    }
    // The budget covers the registry's pods: the disruption controller
    // counts them.
    c.wait("the budget sees 2 pods", Duration::from_secs(60), || {
        c.jsonpath(NS, pdb, "{.status.expectedPods}") == "2"
    });
    // A new Deployment starts at the HPA's minimum, and the operator's
    // apply does not own its replicas.
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "2");
    let owned = operator_fields(&c, deployment);
    assert!(
        owned["f:spec"].get("f:template").is_some() && owned["f:spec"].get("f:replicas").is_none(),
        "the operator applies spec.replicas: {owned}"
    );
    // ComponentHpaReady says what the HPA controller reports. This control
    // plane serves no metrics API: the HPA cannot compute CPU use.
    c.wait(
        "the HPA controller's report in ComponentHpaReady",
        Duration::from_secs(90),
        || {
            let reason = c.condition(NS, "scaled", "ComponentHpaReady").reason;
            !reason.is_empty()
                && reason != "NotReported"
                && reason != "HorizontalPodAutoscalerMissing"
        },
    );
    let Condition {
        status,
        reason,
        message,
    } = c.condition(NS, "scaled", "ComponentHpaReady");
    assert_eq!(status, "False", "{reason}: {message}");
    assert!(
        message.contains("between 2 and 4 pods at 60% average CPU")
            && message.contains("ScalingActive=False"),
        "{reason}: {message}"
    );
    assert_eq!(
        c.jsonpath(
            NS,
            hpa,
            "{.status.conditions[?(@.type==\"ScalingActive\")].reason}"
        ),
        reason
    );

    // --- scaled by hand, as the HPA does: reconciles leave the count alone ----
    c.kubectl(&["scale", "-n", NS, deployment, "--replicas=3"]);
    c.wait("3 ready pods", Duration::from_secs(60), || {
        c.jsonpath(NS, deployment, "{.status.readyReplicas}") == "3"
    });
    // A spec change: a reconcile that applies everything.
    c.patch(
        NS,
        "scaled",
        r#"{"spec":{"components":[{"kind":"hpa","managed":true,"overrides":{"minReplicas":2,"maxReplicas":5,"targetCPUUtilizationPercentage":60}}]}}"#,
    );
    c.wait("maxReplicas 5 applied", Duration::from_secs(60), || {
        c.jsonpath(NS, hpa, "{.spec.maxReplicas}") == "5" && c.reconciled_and_ready(NS, "scaled")
    });
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "3");
    assert!(
        c.jsonpath(
            NS,
            "qreg/scaled",
            "{.status.conditions[?(@.type==\"Progressing\")].message}"
        )
        .starts_with("3/3 replicas updated"),
        "Ready counts the HPA's replicas"
    );
    // A reconcile with nothing to change writes nothing to the Deployment
    // or the budget (the handover happened once).
    let versions = || c.resource_versions(NS, &[deployment, pdb]);
    let before = versions();
    c.patch(
        NS,
        "scaled",
        r#"{"metadata":{"annotations":{"touch":"1"}}}"#,
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(before, versions(), "a no-op reconcile wrote");
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "3");

    // --- switched off: the HPA goes, the operator sets the replicas again -------
    c.patch(
        NS,
        "scaled",
        r#"{"spec":{"components":[{"kind":"hpa","managed":false},{"kind":"registry","managed":true,"overrides":{"replicas":2}}]}}"#,
    );
    c.wait("the HPA deleted", Duration::from_secs(60), || {
        !c.exists(NS, hpa)
    });
    c.wait("2 replicas applied", Duration::from_secs(60), || {
        c.jsonpath(NS, deployment, "{.spec.replicas}") == "2"
            && c.reconciled_and_ready(NS, "scaled")
    });
    assert!(
        operator_fields(&c, deployment)["f:spec"]
            .get("f:replicas")
            .is_some(),
        "the operator does not own replicas again"
    );
    assert!(c.exists(NS, pdb), "two replicas keep their budget");
    let Condition { status, reason, .. } = c.condition(NS, "scaled", "ComponentHpaReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ComponentNotManaged")
    );

    // --- switched on over replicas the operator set: no dip, the count stays ----
    c.patch(
        NS,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":3}}]}}"#,
    );
    c.wait("3 replicas applied", Duration::from_secs(60), || {
        c.jsonpath(NS, deployment, "{.spec.replicas}") == "3"
            && c.reconciled_and_ready(NS, "scaled")
    });
    let generation = c.jsonpath(NS, deployment, "{.metadata.generation}");
    // minReplicas 1: were the count dropped to the API default of one, the
    // HPA would leave it there.
    c.patch(
        NS,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":3}},{"kind":"hpa","managed":true,"overrides":{"minReplicas":1,"maxReplicas":4}}]}}"#,
    );
    c.wait("the HPA again", Duration::from_secs(60), || {
        c.jsonpath(NS, hpa, "{.spec.minReplicas}") == "1" && c.reconciled_and_ready(NS, "scaled")
    });
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "3");
    assert_eq!(
        c.jsonpath(NS, deployment, "{.metadata.generation}"),
        generation,
        "the Deployment's spec changed in the handover"
    );
    assert!(
        operator_fields(&c, deployment)["f:spec"]
            .get("f:replicas")
            .is_none(),
        "the operator still applies replicas"
    );
    assert!(
        c.jsonpath(NS, "qreg/scaled", "{.status.warnings}")
            .contains("spec.components[registry].overrides.replicas is not applied"),
        "{}",
        c.jsonpath(NS, "qreg/scaled", "{.status.warnings}")
    );

    // --- one replica, no hpa: no budget -------------------------------------------
    c.patch(
        NS,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":1}}]}}"#,
    );
    c.wait(
        "the HPA and the budget deleted",
        Duration::from_secs(60),
        || !c.exists(NS, pdb) && !c.exists(NS, hpa),
    );
    c.wait("1 replica", Duration::from_secs(60), || {
        c.jsonpath(NS, deployment, "{.spec.replicas}") == "1"
            && c.reconciled_and_ready(NS, "scaled")
    });

    // --- the refused resource never got anything ---------------------------------------
    assert_eq!(c.condition(NS, "volume", "ConfigValid").status, "False");
    for object in [
        "deployment/volume-registry",
        "hpa/volume-registry",
        "pdb/volume-registry",
        "secret/volume-config",
        "pvc/volume-data",
    ] {
        assert!(!c.exists(NS, object), "{object} was created");
    }
}

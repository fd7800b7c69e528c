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

use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::scale::{MINIO_PASSWORD, MINIO_USER, Minio};
use quarry_e2e::workspace_root;

const NS: &str = "autoscaled";

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    cp.kubectl_out(args)
        .unwrap_or_else(|e| panic!("{e}\n{}", cp.logs("operator")))
}

fn get(cp: &ControlPlane, what: &str, path: &str) -> String {
    cp.jsonpath(NS, what, path)
}

fn exists(cp: &ControlPlane, what: &str) -> bool {
    cp.kubectl_out(&["get", "-n", NS, what]).is_ok()
}

/// (status, reason, message) of a condition of QuarryRegistry `cr`.
fn condition(cp: &ControlPlane, cr: &str, type_: &str) -> (String, String, String) {
    cp.qreg_condition(NS, cr, type_)
}

fn wait(cp: &ControlPlane, what: &str, timeout: Duration, holds: impl FnMut() -> bool) {
    cp.wait_for(what, timeout, holds);
}

fn reconciled_and_ready(cp: &ControlPlane, cr: &str) -> bool {
    let qreg = format!("qreg/{cr}");
    condition(cp, cr, "Ready").0 == "True"
        && get(cp, &qreg, "{.status.observedGeneration}")
            == get(cp, &qreg, "{.metadata.generation}")
}

fn patch(cp: &ControlPlane, cr: &str, body: &str) {
    kubectl(
        cp,
        &[
            "patch",
            "-n",
            NS,
            &format!("qreg/{cr}"),
            "--type",
            "merge",
            "-p",
            body,
        ],
    );
}

/// The fields of the Deployment the operator's server-side apply owns.
fn operator_fields(cp: &ControlPlane, deployment: &str) -> serde_json::Value {
    let json = kubectl(
        cp,
        &[
            "get",
            "-n",
            NS,
            deployment,
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
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
    let mut cp = ControlPlane::start().expect("control plane starts");
    cp.install_crd().expect("CRD installed");
    kubectl(&cp, &["create", "namespace", "quarry-system"]);
    let rbac = workspace_root().join("deploy/rbac.yaml");
    kubectl(
        &cp,
        &["apply", "-n", "quarry-system", "-f", rbac.to_str().unwrap()],
    );
    cp.run_operator_as(
        "quarry-system",
        "quarry-operator",
        &["--registry-image", "example.invalid/quarry-registry"],
    )
    .unwrap();
    kubectl(&cp, &["create", "namespace", NS]);
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3-credentials, namespace: {NS}}}\nstringData:\n  AWS_ACCESS_KEY_ID: {MINIO_USER}\n  AWS_SECRET_ACCESS_KEY: {MINIO_PASSWORD}\n"
    ))
    .unwrap();

    // --- a managed hpa without shared storage: refused, nothing created -------
    cp.apply_yaml(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: volume, namespace: {NS}}}\nspec:\n  components:\n  - {{kind: hpa, managed: true}}\n"
    ))
    .unwrap();
    wait(&cp, "ConfigValid=False", Duration::from_secs(60), || {
        condition(&cp, "volume", "ConfigValid").0 == "False"
    });
    let (_, _, message) = condition(&cp, "volume", "ConfigValid");
    assert!(
        message.contains("spec.components[hpa].managed")
            && message.contains("set spec.objectStorage")
            && message.contains("ReadWriteOnce"),
        "{message}"
    );

    // --- with spec.objectStorage: HPA, budget, replicas left to the HPA -------
    let endpoint = minio.endpoint();
    cp.apply_yaml(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: scaled, namespace: {NS}}}\nspec:\n  objectStorage: {{endpoint: '{endpoint}', bucket: autoscaled, credentialsSecret: s3-credentials}}\n  components:\n  - {{kind: hpa, managed: true, overrides: {{minReplicas: 2, maxReplicas: 4, targetCPUUtilizationPercentage: 60}}}}\n"
    ))
    .unwrap();
    wait(&cp, "scaled Ready", Duration::from_secs(120), || {
        reconciled_and_ready(&cp, "scaled")
    });
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
        assert_eq!(get(&cp, hpa, path), expected, "{hpa} {path}");
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
        assert_eq!(get(&cp, pdb, path), expected, "{pdb} {path}");
    }
    // The budget covers the registry's pods: the disruption controller
    // counts them.
    wait(
        &cp,
        "the budget sees 2 pods",
        Duration::from_secs(60),
        || get(&cp, pdb, "{.status.expectedPods}") == "2",
    );
    // A new Deployment starts at the HPA's minimum, and the operator's
    // apply does not own its replicas.
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "2");
    let owned = operator_fields(&cp, deployment);
    assert!(
        owned["f:spec"].get("f:template").is_some() && owned["f:spec"].get("f:replicas").is_none(),
        "the operator applies spec.replicas: {owned}"
    );
    // ComponentHpaReady says what the HPA controller reports. This control
    // plane serves no metrics API: the HPA cannot compute CPU use.
    wait(
        &cp,
        "the HPA controller's report in ComponentHpaReady",
        Duration::from_secs(90),
        || {
            let (_, reason, _) = condition(&cp, "scaled", "ComponentHpaReady");
            !reason.is_empty()
                && reason != "NotReported"
                && reason != "HorizontalPodAutoscalerMissing"
        },
    );
    let (status, reason, message) = condition(&cp, "scaled", "ComponentHpaReady");
    assert_eq!(status, "False", "{reason}: {message}");
    assert!(
        message.contains("between 2 and 4 pods at 60% average CPU")
            && message.contains("ScalingActive=False"),
        "{reason}: {message}"
    );
    assert_eq!(
        get(
            &cp,
            hpa,
            "{.status.conditions[?(@.type==\"ScalingActive\")].reason}"
        ),
        reason
    );

    // --- scaled by hand, as the HPA does: reconciles leave the count alone ----
    kubectl(&cp, &["scale", "-n", NS, deployment, "--replicas=3"]);
    wait(&cp, "3 ready pods", Duration::from_secs(60), || {
        get(&cp, deployment, "{.status.readyReplicas}") == "3"
    });
    // A spec change: a reconcile that applies everything.
    patch(
        &cp,
        "scaled",
        r#"{"spec":{"components":[{"kind":"hpa","managed":true,"overrides":{"minReplicas":2,"maxReplicas":5,"targetCPUUtilizationPercentage":60}}]}}"#,
    );
    wait(
        &cp,
        "maxReplicas 5 applied",
        Duration::from_secs(60),
        || get(&cp, hpa, "{.spec.maxReplicas}") == "5" && reconciled_and_ready(&cp, "scaled"),
    );
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "3");
    assert!(
        get(
            &cp,
            "qreg/scaled",
            "{.status.conditions[?(@.type==\"Progressing\")].message}"
        )
        .starts_with("3/3 replicas updated"),
        "Ready counts the HPA's replicas"
    );
    // A reconcile with nothing to change writes nothing to the Deployment
    // or the budget (the handover happened once).
    let versions = || [deployment, pdb].map(|o| get(&cp, o, "{.metadata.resourceVersion}"));
    let before = versions();
    patch(
        &cp,
        "scaled",
        r#"{"metadata":{"annotations":{"touch":"1"}}}"#,
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(before, versions(), "a no-op reconcile wrote");
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "3");

    // --- switched off: the HPA goes, the operator sets the replicas again -------
    patch(
        &cp,
        "scaled",
        r#"{"spec":{"components":[{"kind":"hpa","managed":false},{"kind":"registry","managed":true,"overrides":{"replicas":2}}]}}"#,
    );
    wait(&cp, "the HPA deleted", Duration::from_secs(60), || {
        !exists(&cp, hpa)
    });
    wait(&cp, "2 replicas applied", Duration::from_secs(60), || {
        get(&cp, deployment, "{.spec.replicas}") == "2" && reconciled_and_ready(&cp, "scaled")
    });
    assert!(
        operator_fields(&cp, deployment)["f:spec"]
            .get("f:replicas")
            .is_some(),
        "the operator does not own replicas again"
    );
    assert!(exists(&cp, pdb), "two replicas keep their budget");
    let (status, reason, _) = condition(&cp, "scaled", "ComponentHpaReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ComponentNotManaged")
    );

    // --- switched on over replicas the operator set: no dip, the count stays ----
    patch(
        &cp,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":3}}]}}"#,
    );
    wait(&cp, "3 replicas applied", Duration::from_secs(60), || {
        get(&cp, deployment, "{.spec.replicas}") == "3" && reconciled_and_ready(&cp, "scaled")
    });
    let generation = get(&cp, deployment, "{.metadata.generation}");
    // minReplicas 1: were the count dropped to the API default of one, the
    // HPA would leave it there.
    patch(
        &cp,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":3}},{"kind":"hpa","managed":true,"overrides":{"minReplicas":1,"maxReplicas":4}}]}}"#,
    );
    wait(&cp, "the HPA again", Duration::from_secs(60), || {
        get(&cp, hpa, "{.spec.minReplicas}") == "1" && reconciled_and_ready(&cp, "scaled")
    });
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "3");
    assert_eq!(
        get(&cp, deployment, "{.metadata.generation}"),
        generation,
        "the Deployment's spec changed in the handover"
    );
    assert!(
        operator_fields(&cp, deployment)["f:spec"]
            .get("f:replicas")
            .is_none(),
        "the operator still applies replicas"
    );
    assert!(
        get(&cp, "qreg/scaled", "{.status.warnings}")
            .contains("spec.components[registry].overrides.replicas is not applied"),
        "{}",
        get(&cp, "qreg/scaled", "{.status.warnings}")
    );

    // --- one replica, no hpa: no budget -------------------------------------------
    patch(
        &cp,
        "scaled",
        r#"{"spec":{"components":[{"kind":"registry","managed":true,"overrides":{"replicas":1}}]}}"#,
    );
    wait(
        &cp,
        "the HPA and the budget deleted",
        Duration::from_secs(60),
        || !exists(&cp, pdb) && !exists(&cp, hpa),
    );
    wait(&cp, "1 replica", Duration::from_secs(60), || {
        get(&cp, deployment, "{.spec.replicas}") == "1" && reconciled_and_ready(&cp, "scaled")
    });

    // --- the refused resource never got anything ---------------------------------------
    assert_eq!(condition(&cp, "volume", "ConfigValid").0, "False");
    for object in [
        "deployment/volume-registry",
        "hpa/volume-registry",
        "pdb/volume-registry",
        "secret/volume-config",
        "pvc/volume-data",
    ] {
        assert!(!exists(&cp, object), "{object} was created");
    }
}

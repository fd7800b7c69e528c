//! Installing the operator the way cluster admins do, against the real
//! control plane: `kubectl apply -k deploy/`, then the operator running
//! with exactly the installed ServiceAccount's rights reconciles a
//! QuarryRegistry to Ready in a namespace that enforces the restricted Pod
//! Security Standard.

use std::process::Command;
use std::time::Duration;

use quarry_e2e::kube::{Cluster, READY_TIMEOUT};
use quarry_e2e::{run_text, run_with_stdin, workspace_root};

#[test]
fn kustomize_install_least_privilege_and_restricted_pods() {
    let mut c = Cluster::start();
    let root = workspace_root();
    let deploy = root.join("deploy");
    c.kubectl(&["apply", "-k", &deploy.display().to_string()]);
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/quarryregistries.quarry.dev",
        "--timeout=30s",
    ]);
    // The operator pod passes the restricted Pod Security admission of its
    // namespace and runs (on the kwok node).
    c.cp.kubectl_out(&[
        "rollout",
        "status",
        "-n",
        "quarry-system",
        "deployment/quarry-operator",
        "--timeout=60s",
    ])
    .expect("operator Deployment available");

    // The ServiceAccount is not an admin.
    let sa = "system:serviceaccount:quarry-system:quarry-operator";
    for (verb, resource) in [
        ("list", "nodes"),
        ("delete", "namespaces"),
        ("create", "clusterroles"),
    ] {
        let answer =
            c.cp.kubectl()
                .args(["auth", "can-i", verb, resource, "--as", sa])
                .output()
                .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer.stdout).trim(),
            "no",
            "the operator may {verb} {resource}"
        );
    }

    // The kwok pod does not run our binary: run it here, as the SA.
    c.start_operator_as("quarry-system", "quarry-operator", &[]);

    // Every example passes the API server's validation.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels: {pod-security.kubernetes.io/enforce: restricted}\n");
    for entry in std::fs::read_dir(root.join("deploy/examples")).unwrap() {
        let path = entry.unwrap().path();
        c.cp.kubectl_out(&[
            "apply",
            "--dry-run=server",
            "-n",
            "apps",
            "-f",
            &path.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    c.cp.create_volume("apps-pv").unwrap();
    c.kubectl(&[
        "apply",
        "-n",
        "apps",
        "-f",
        &root
            .join("deploy/examples/minimal.yaml")
            .display()
            .to_string(),
    ]);
    c.wait("minimal example Ready", READY_TIMEOUT, || {
        c.ready("apps", "registry")
    });
    // Its pod was admitted under "restricted" and is running.
    let phase = c.kubectl(&[
        "get",
        "pods",
        "-n",
        "apps",
        "-l",
        "app.kubernetes.io/instance=registry",
        "-o",
        "jsonpath={.items[0].status.phase}",
    ]);
    assert_eq!(phase, "Running");
    let holder = c.lease_holder("quarry-system", "quarry-operator");
    assert!(
        !holder.is_empty(),
        "leader election did not use the operator namespace"
    );
}

/// helm against the control plane, working in `dir`.
fn helm_cmd(c: &Cluster, dir: &std::path::Path) -> Command {
    let mut cmd = quarry_e2e::clients::helm(dir);
    cmd.env("KUBECONFIG", &c.cp.kubeconfig);
    cmd
}

/// The API server validates `manifests` (nothing is created).
fn server_dry_run(c: &Cluster, manifests: &str) {
    run_with_stdin(
        c.cp.kubectl()
            .args(["apply", "--dry-run=server", "-f", "-"]),
        manifests,
    );
}

fn instance_objects(c: &Cluster, release: &str) -> Vec<String> {
    let mut all: Vec<String> = c
        .kubectl(&["get", "deployments,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings", "-A", "-l", &format!("app.kubernetes.io/instance={release}"), "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    all
}

#[test]
fn helm_chart_lint_template_install_upgrade_uninstall() {
    let mut c = Cluster::start();
    let root = workspace_root();
    let chart = root.join("charts/quarry-operator");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    run_text(helm_cmd(&c, dir).args(["lint", "--strict"]).arg(&chart));
    c.cp.install_stand_in_crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors")
        .unwrap();
    c.cp.install_crd().unwrap();
    c.create_namespace("quarry");
    c.create_namespace("apps");
    for values in [
        vec![],
        vec![
            "--set",
            "watchNamespaces={apps},serviceMonitor.enabled=true,networkPolicy.enabled=true,replicas=2,extraLabels.team=registry",
        ],
    ] {
        let rendered = run_text(
            helm_cmd(&c, dir)
                .args([
                    "template",
                    "quarry-operator",
                    "--namespace",
                    "quarry",
                    "--kube-version",
                    "1.37.2",
                ])
                .arg(&chart)
                .args(&values),
        );
        server_dry_run(&c, &rendered);
    }
    // Bad values fail at install with a clear message.
    let refused = helm_cmd(&c, dir)
        .args(["install", "bad", "-n", "quarry", "--set", "replicas=0"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("/replicas"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    run_text(
        helm_cmd(&c, dir)
            .args([
                "install",
                "quarry-operator",
                "-n",
                "quarry",
                "--wait",
                "--timeout",
                "90s",
            ])
            .arg(&chart),
    );
    let installed = instance_objects(&c, "quarry-operator");
    assert!(
        installed
            .iter()
            .any(|o| o.contains("deployment.apps/quarry-operator")),
        "{installed:?}"
    );

    // The operator, with the chart's ServiceAccount rights, reconciles.
    c.start_operator_as("quarry", "quarry-operator", &[]);
    c.apply("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: registry, namespace: apps}\nspec:\n  components: [{kind: storage, managed: false}]\n");
    c.wait(
        "QuarryRegistry Ready under the chart's RBAC",
        READY_TIMEOUT,
        || c.ready("apps", "registry"),
    );

    run_text(
        helm_cmd(&c, dir)
            .args([
                "upgrade",
                "quarry-operator",
                "-n",
                "quarry",
                "--wait",
                "--timeout",
                "90s",
                "--set",
                "replicas=2,extraLabels.team=registry",
            ])
            .arg(&chart),
    );
    assert_eq!(
        instance_objects(&c, "quarry-operator"),
        installed,
        "upgrade left orphans or lost objects"
    );

    // Scoped to one namespace: Roles there instead of the ClusterRole, and
    // the operator (watching only that namespace) still reconciles.
    run_text(
        helm_cmd(&c, dir)
            .args([
                "upgrade",
                "quarry-operator",
                "-n",
                "quarry",
                "--wait",
                "--timeout",
                "90s",
                "--set",
                "watchNamespaces={apps}",
            ])
            .arg(&chart),
    );
    let scoped = instance_objects(&c, "quarry-operator");
    assert!(
        scoped
            .iter()
            .any(|o| o == "role.rbac.authorization.k8s.io/quarry-operator"),
        "{scoped:?}"
    );
    assert!(
        !scoped.iter().any(|o| o.starts_with("clusterrole")),
        "{scoped:?}"
    );
    c.cp.stop_process("operator");
    c.start_operator_as("quarry", "quarry-operator", &["--watch-namespace", "apps"]);
    c.patch(
        "apps",
        "registry",
        r#"{"spec":{"features":{"helm":false}}}"#,
    );
    c.wait(
        "scoped operator reconciles",
        Duration::from_secs(60),
        || {
            c.jsonpath("apps", "qreg/registry", "{.status.observedGeneration}") == "2"
                && c.ready("apps", "registry")
        },
    );

    run_text(helm_cmd(&c, dir).args(["uninstall", "quarry-operator", "-n", "quarry", "--wait"]));
    assert!(
        instance_objects(&c, "quarry-operator").is_empty(),
        "uninstall left objects behind"
    );
    c.cp.kubectl_out(&["get", "crd", "quarryregistries.quarry.dev"])
        .expect("the CRD stays");
    c.cp.kubectl_out(&["get", "-n", "apps", "qreg/registry"])
        .expect("the user's resources stay");
}

/// `make e2e`: the kind-e2e scenario (hack/kind-e2e.sh) on the local
/// control plane; the registry process stands in for the registry pod and
/// runs the configuration the operator rendered.
#[test]
fn scenario_helm_install_example_push_pull_refuse() {
    let mut c = Cluster::start();
    let root = workspace_root();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    c.create_namespace("quarry");
    run_text(
        helm_cmd(&c, dir)
            .args([
                "install",
                "quarry-operator",
                "-n",
                "quarry",
                "--wait",
                "--timeout",
                "90s",
            ])
            .arg(root.join("charts/quarry-operator")),
    );
    c.start_operator_as("quarry", "quarry-operator", &[]);
    c.cp.create_volume("e2e-pv").unwrap();
    c.create_namespace("apps");
    c.kubectl(&[
        "apply",
        "-n",
        "apps",
        "-f",
        &root
            .join("deploy/examples/minimal.yaml")
            .display()
            .to_string(),
    ]);
    let ready = || c.ready("apps", "registry");
    c.wait("example Ready", READY_TIMEOUT, ready);
    // The registry process stands in for the pod: the Secrets it mounts
    // (config, accounts and token key, serving certificate), the generated
    // admin account and the published CA.
    let pod = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files("apps", "registry", pod.path()).unwrap();
    let registry = files.start_registry();
    let host = registry.host();
    let ca = files.ca_file.clone().expect("the CA ConfigMap");
    let cert_dir = files.cert_dir.clone().expect("the CA ConfigMap");
    let (user, password) = files.admin.clone().expect("the generated admin account");

    // An image in and out with skopeo, a chart with helm, logged in.
    let auth_file = dir.join("auth.json");
    run_text(
        quarry_e2e::clients::skopeo()
            .args(["login", "-u", &user, "-p", &password, "--cert-dir"])
            .arg(&cert_dir)
            .arg("--authfile")
            .arg(&auth_file)
            .arg(&host),
    );
    let image = quarry_e2e::oci::write_image_layout(&dir.join("layout"), "v1", 2, 64 * 1024);
    run_text(
        quarry_e2e::clients::skopeo()
            .args(["copy", "--dest-cert-dir"])
            .arg(&cert_dir)
            .arg("--authfile")
            .arg(&auth_file)
            .arg(format!("oci:{}:v1", dir.join("layout").display()))
            .arg(format!("docker://{host}/e2e/app:1")),
    );
    run_text(
        quarry_e2e::clients::skopeo()
            .args(["copy", "--src-cert-dir"])
            .arg(&cert_dir)
            .arg("--authfile")
            .arg(&auth_file)
            .arg(format!("docker://{host}/e2e/app:1"))
            .arg(format!("oci:{}:v1", dir.join("out").display())),
    );
    let index = std::fs::read_to_string(dir.join("out/index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
    run_text(
        helm_cmd(&c, dir)
            .args([
                "registry",
                "login",
                &host,
                "-u",
                &user,
                "-p",
                &password,
                "--ca-file",
            ])
            .arg(&ca),
    );
    run_text(helm_cmd(&c, dir).args(["create", "demo"]));
    run_text(helm_cmd(&c, dir).args(["package", "demo"]));
    run_text(
        helm_cmd(&c, dir)
            .args(["push", "demo-0.1.0.tgz", "--ca-file"])
            .arg(&ca)
            .arg(format!("oci://{host}/charts")),
    );
    std::fs::create_dir_all(dir.join("pulled")).unwrap();
    run_text(
        helm_cmd(&c, dir)
            .args(["pull", "--version", "0.1.0", "-d", "pulled", "--ca-file"])
            .arg(&ca)
            .arg(format!("oci://{host}/charts/demo")),
    );

    // A refused artifact after the resource changes.
    c.patch(
        "apps",
        "registry",
        r#"{"spec":{"features":{"helm":false}}}"#,
    );
    c.sync_config(
        "apps",
        "registry",
        &files,
        &registry,
        "FEATURE_HELM_OCI_SUPPORT: false",
    );
    let refused = helm_cmd(&c, dir)
        .args(["push", "demo-0.1.0.tgz", "--ca-file"])
        .arg(&ca)
        .arg(format!("oci://{host}/refused"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a Helm chart was accepted with features.helm=false"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("FEATURE_HELM_OCI_SUPPORT"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    c.wait("Ready after the change", READY_TIMEOUT, ready);
}

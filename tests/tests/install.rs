//! Installing the operator the way cluster admins do, against the real
//! control plane: `kubectl apply -k deploy/`, then the operator running
//! with exactly the installed ServiceAccount's rights reconciles a
//! QuarryRegistry to Ready in a namespace that enforces the restricted Pod
//! Security Standard.

use std::process::Command;
use std::time::Duration;

use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::workspace_root;

fn wait(cp: &ControlPlane, what: &str, timeout: Duration, holds: impl FnMut() -> bool) {
    cp.wait_for(what, timeout, holds);
}

#[test]
fn kustomize_install_least_privilege_and_restricted_pods() {
    let mut cp = ControlPlane::start().expect("control plane");
    let root = workspace_root();
    let deploy = root.join("deploy");
    cp.kubectl_out(&["apply", "-k", &deploy.display().to_string()])
        .expect("kubectl apply -k deploy/");
    cp.kubectl_out(&[
        "wait",
        "--for=condition=Established",
        "crd/quarryregistries.quarry.dev",
        "--timeout=30s",
    ])
    .unwrap();
    // The operator pod passes the restricted Pod Security admission of its
    // namespace and runs (on the kwok node).
    cp.kubectl_out(&[
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
        let answer = cp
            .kubectl()
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
    cp.run_operator_as("quarry-system", "quarry-operator", &[])
        .unwrap();

    // Every example passes the API server's validation.
    cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n  labels: {pod-security.kubernetes.io/enforce: restricted}\n").unwrap();
    for entry in std::fs::read_dir(root.join("deploy/examples")).unwrap() {
        let path = entry.unwrap().path();
        cp.kubectl_out(&[
            "apply",
            "--dry-run=server",
            "-n",
            "apps",
            "-f",
            &path.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    cp.create_volume("apps-pv").unwrap();
    cp.kubectl_out(&[
        "apply",
        "-n",
        "apps",
        "-f",
        &root
            .join("deploy/examples/minimal.yaml")
            .display()
            .to_string(),
    ])
    .unwrap();
    wait(
        &cp,
        "minimal example Ready",
        Duration::from_secs(120),
        || cp.registry_ready("apps", "registry"),
    );
    // Its pod was admitted under "restricted" and is running.
    let phase = cp
        .kubectl_out(&[
            "get",
            "pods",
            "-n",
            "apps",
            "-l",
            "app.kubernetes.io/instance=registry",
            "-o",
            "jsonpath={.items[0].status.phase}",
        ])
        .unwrap();
    assert_eq!(phase, "Running");
    let holder = cp
        .kubectl_out(&[
            "get",
            "lease",
            "-n",
            "quarry-system",
            "quarry-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .unwrap();
    assert!(
        !holder.is_empty(),
        "leader election did not use the operator namespace"
    );
}

fn helm_cmd(cp: &ControlPlane, dir: &std::path::Path) -> Command {
    let mut c = quarry_e2e::clients::helm(dir);
    c.env("KUBECONFIG", &cp.kubeconfig);
    c
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn server_dry_run(cp: &ControlPlane, manifests: &str) {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "server-side validation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn instance_objects(cp: &ControlPlane, release: &str) -> Vec<String> {
    let mut all: Vec<String> = cp
        .kubectl_out(&["get", "deployments,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings", "-A", "-l", &format!("app.kubernetes.io/instance={release}"), "-o", "name"])
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    all.sort();
    all
}

#[test]
fn helm_chart_lint_template_install_upgrade_uninstall() {
    let mut cp = ControlPlane::start().expect("control plane");
    let root = workspace_root();
    let chart = root.join("charts/quarry-operator");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    ok(helm_cmd(&cp, dir).args(["lint", "--strict"]).arg(&chart));
    cp.install_stand_in_crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors")
        .unwrap();
    cp.install_crd().unwrap();
    cp.kubectl_out(&["create", "namespace", "quarry"]).unwrap();
    cp.kubectl_out(&["create", "namespace", "apps"]).unwrap();
    for values in [
        vec![],
        vec![
            "--set",
            "watchNamespaces={apps},serviceMonitor.enabled=true,networkPolicy.enabled=true,replicas=2,extraLabels.team=registry",
        ],
    ] {
        let rendered = ok(helm_cmd(&cp, dir)
            .args([
                "template",
                "quarry-operator",
                "--namespace",
                "quarry",
                "--kube-version",
                "1.37.2",
            ])
            .arg(&chart)
            .args(&values));
        server_dry_run(&cp, &rendered);
    }
    // Bad values fail at install with a clear message.
    let refused = helm_cmd(&cp, dir)
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

    ok(helm_cmd(&cp, dir)
        .args([
            "install",
            "quarry-operator",
            "-n",
            "quarry",
            "--wait",
            "--timeout",
            "90s",
        ])
        .arg(&chart));
    let installed = instance_objects(&cp, "quarry-operator");
    assert!(
        installed
            .iter()
            .any(|o| o.contains("deployment.apps/quarry-operator")),
        "{installed:?}"
    );

    // The operator, with the chart's ServiceAccount rights, reconciles.
    cp.run_operator_as("quarry", "quarry-operator", &[])
        .unwrap();
    cp.apply_yaml("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: registry, namespace: apps}\nspec:\n  components: [{kind: storage, managed: false}]\n").unwrap();
    wait(
        &cp,
        "QuarryRegistry Ready under the chart's RBAC",
        Duration::from_secs(120),
        || cp.registry_ready("apps", "registry"),
    );

    ok(helm_cmd(&cp, dir)
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
        .arg(&chart));
    assert_eq!(
        instance_objects(&cp, "quarry-operator"),
        installed,
        "upgrade left orphans or lost objects"
    );

    // Scoped to one namespace: Roles there instead of the ClusterRole, and
    // the operator (watching only that namespace) still reconciles.
    ok(helm_cmd(&cp, dir)
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
        .arg(&chart));
    let scoped = instance_objects(&cp, "quarry-operator");
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
    cp.stop_process("operator");
    cp.run_operator_as("quarry", "quarry-operator", &["--watch-namespace", "apps"])
        .unwrap();
    cp.kubectl_out(&[
        "patch",
        "-n",
        "apps",
        "qreg/registry",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"features":{"helm":false}}}"#,
    ])
    .unwrap();
    wait(
        &cp,
        "scoped operator reconciles",
        Duration::from_secs(60),
        || {
            cp.kubectl_out(&[
                "get",
                "-n",
                "apps",
                "qreg/registry",
                "-o",
                "jsonpath={.status.observedGeneration}",
            ])
            .map(|g| g == "2")
            .unwrap_or(false)
                && cp.registry_ready("apps", "registry")
        },
    );

    ok(helm_cmd(&cp, dir).args(["uninstall", "quarry-operator", "-n", "quarry", "--wait"]));
    assert!(
        instance_objects(&cp, "quarry-operator").is_empty(),
        "uninstall left objects behind"
    );
    cp.kubectl_out(&["get", "crd", "quarryregistries.quarry.dev"])
        .expect("the CRD stays");
    cp.kubectl_out(&["get", "-n", "apps", "qreg/registry"])
        .expect("the user's resources stay");
}

/// `make e2e`: the kind-e2e scenario (hack/kind-e2e.sh) on the local
/// control plane; the registry process stands in for the registry pod and
/// runs the configuration the operator rendered.
#[test]
fn scenario_helm_install_example_push_pull_refuse() {
    let mut cp = ControlPlane::start().expect("control plane");
    let root = workspace_root();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    cp.kubectl_out(&["create", "namespace", "quarry"]).unwrap();
    ok(helm_cmd(&cp, dir)
        .args([
            "install",
            "quarry-operator",
            "-n",
            "quarry",
            "--wait",
            "--timeout",
            "90s",
        ])
        .arg(root.join("charts/quarry-operator")));
    cp.run_operator_as("quarry", "quarry-operator", &[])
        .unwrap();
    cp.create_volume("e2e-pv").unwrap();
    cp.kubectl_out(&["create", "namespace", "apps"]).unwrap();
    cp.kubectl_out(&[
        "apply",
        "-n",
        "apps",
        "-f",
        &root
            .join("deploy/examples/minimal.yaml")
            .display()
            .to_string(),
    ])
    .unwrap();
    let ready = || cp.registry_ready("apps", "registry");
    wait(&cp, "example Ready", Duration::from_secs(120), ready);
    let rendered = || {
        let b64 = cp
            .kubectl_out(&[
                "get",
                "-n",
                "apps",
                "secret/registry-config",
                "-o",
                "jsonpath={.data.config\\.yaml}",
            ])
            .unwrap();
        use base64_decode::decode;
        decode(&b64)
    };
    // The registry process stands in for the pod: the Secrets it mounts
    // (config, accounts and token key, serving certificate), the generated
    // admin account and the published CA.
    let pod = tempfile::tempdir().unwrap();
    let files = cp.pod_files("apps", "registry", pod.path()).unwrap();
    let mut env = files.registry_env();
    env.push(("QUARRY_RELOAD_INTERVAL_SECONDS".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let registry = quarry_e2e::Registry::start_with(Some(&files.config), &env);
    let host = registry.host();
    let ca = files.ca_file.clone().expect("the CA ConfigMap");
    let cert_dir = files.cert_dir.clone().expect("the CA ConfigMap");
    let (user, password) = files.admin.clone().expect("the generated admin account");

    // An image in and out with skopeo, a chart with helm, logged in.
    let auth_file = dir.join("auth.json");
    ok(quarry_e2e::clients::skopeo()
        .args(["login", "-u", &user, "-p", &password, "--cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(&host));
    let image = quarry_e2e::oci::write_image_layout(&dir.join("layout"), "v1", 2, 64 * 1024);
    ok(quarry_e2e::clients::skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(format!("oci:{}:v1", dir.join("layout").display()))
        .arg(format!("docker://{host}/e2e/app:1")));
    ok(quarry_e2e::clients::skopeo()
        .args(["copy", "--src-cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(format!("docker://{host}/e2e/app:1"))
        .arg(format!("oci:{}:v1", dir.join("out").display())));
    let index = std::fs::read_to_string(dir.join("out/index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
    ok(helm_cmd(&cp, dir)
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
        .arg(&ca));
    ok(helm_cmd(&cp, dir).args(["create", "demo"]));
    ok(helm_cmd(&cp, dir).args(["package", "demo"]));
    ok(helm_cmd(&cp, dir)
        .args(["push", "demo-0.1.0.tgz", "--ca-file"])
        .arg(&ca)
        .arg(format!("oci://{host}/charts")));
    std::fs::create_dir_all(dir.join("pulled")).unwrap();
    ok(helm_cmd(&cp, dir)
        .args(["pull", "--version", "0.1.0", "-d", "pulled", "--ca-file"])
        .arg(&ca)
        .arg(format!("oci://{host}/charts/demo")));

    // A refused artifact after the resource changes.
    cp.kubectl_out(&[
        "patch",
        "-n",
        "apps",
        "qreg/registry",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"features":{"helm":false}}}"#,
    ])
    .unwrap();
    wait(&cp, "config with Helm off", Duration::from_secs(30), || {
        rendered().contains("FEATURE_HELM_OCI_SUPPORT: false")
    });
    registry.write_config(&files.rewrite(&rendered()));
    std::thread::sleep(Duration::from_millis(2500));
    let refused = helm_cmd(&cp, dir)
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
    wait(
        &cp,
        "Ready after the change",
        Duration::from_secs(120),
        ready,
    );
}

mod base64_decode {
    pub fn decode(b64: &str) -> String {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap(),
        )
        .unwrap()
    }
}

//! Installing the operator the way cluster admins do, against the real
//! control plane: `kubectl apply -k deploy/`, then the operator running
//! with exactly the installed ServiceAccount's rights reconciles a
//! QuarryRegistry to Ready in a namespace that enforces the restricted Pod
//! Security Standard.

use std::process::Command;
use std::time::{Duration, Instant};

use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::{free_port, workspace_root};

fn wait(cp: &ControlPlane, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not after {timeout:?}\n{}", cp.logs("operator"));
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
    let kubeconfig = cp
        .service_account_kubeconfig("quarry-system", "quarry-operator")
        .unwrap();
    let mut operator = Command::new(root.join("target/debug/quarry-operator"));
    operator
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--leader-election-namespace", "quarry-system"])
        .env("RUST_LOG", "info,kube=warn");
    cp.start_process_with("operator", operator, &kubeconfig)
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
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: apps-pv}}\nspec:\n  capacity: {{storage: 20Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  hostPath: {{path: {}}}\n",
        cp.dir().join("pv").display()
    ))
    .unwrap();
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
        || {
            cp.kubectl_out(&[
                "get",
                "-n",
                "apps",
                "qreg/registry",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .map(|s| s == "True")
            .unwrap_or(false)
        },
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
            "watchNamespace=apps,serviceMonitor.enabled=true,networkPolicy.enabled=true,replicas=2,extraLabels.team=registry",
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
    let kubeconfig = cp
        .service_account_kubeconfig("quarry", "quarry-operator")
        .unwrap();
    let mut operator = Command::new(root.join("target/debug/quarry-operator"));
    operator
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--leader-election-namespace", "quarry"])
        .env("RUST_LOG", "info,kube=warn");
    cp.start_process_with("operator", operator, &kubeconfig)
        .unwrap();
    cp.apply_yaml("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: registry, namespace: apps}\nspec:\n  components: [{kind: storage, managed: false}]\n").unwrap();
    wait(
        &cp,
        "QuarryRegistry Ready under the chart's RBAC",
        Duration::from_secs(120),
        || {
            cp.kubectl_out(&[
                "get",
                "-n",
                "apps",
                "qreg/registry",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .map(|s| s == "True")
            .unwrap_or(false)
        },
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

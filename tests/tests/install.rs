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

//! The operator tests' fixture: a [`ControlPlane`] with what every test of
//! the operator does with it — kubectl that fails with the operator's log,
//! reading objects and QuarryRegistry conditions, merge and JSON patches,
//! Secrets decoded, Secret manifests built, the operator binary started —
//! and one way to wait: every wait goes through [`ControlPlane::wait_for`],
//! which fails naming what did not happen, with the operator's log.
//!
//! Every namespaced call takes the namespace first, as `kubectl -n` does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine;

use crate::cluster::{ControlPlane, PodFiles};
use crate::{Registry, free_port, workspace_root};

/// The image the tests' operator puts in Deployments: kwok runs no
/// containers, so it is never pulled.
pub const REGISTRY_IMAGE: &str = "example.invalid/quarry-registry";

/// How long [`Cluster::wait_ready`] waits for a QuarryRegistry.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A condition of a QuarryRegistry; empty strings when it is not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// A running control plane and the operator's tests' view of it.
pub struct Cluster {
    pub cp: ControlPlane,
}

impl Cluster {
    /// Start a control plane (a few seconds); it stops when the `Cluster`
    /// is dropped or the calling thread ends.
    pub fn start() -> Cluster {
        Cluster {
            cp: ControlPlane::start().expect("control plane starts"),
        }
    }

    /// The tail of the operator's log (process `operator`).
    pub fn operator_log(&self) -> String {
        self.cp.logs("operator")
    }

    /// Run kubectl and return its stdout; fail with its stderr and the
    /// operator's log when it does not succeed.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.cp
            .kubectl_out(args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.operator_log()))
    }

    /// Run kubectl; its stdout, or `None` when it does not succeed.
    pub fn kubectl_ok(&self, args: &[&str]) -> Option<String> {
        self.cp.kubectl_out(args).ok()
    }

    /// `kubectl apply -f -` with `yaml`; fail with kubectl's error and the
    /// operator's log. (`cp.apply_yaml` returns the error, for refusals.)
    pub fn apply(&self, yaml: &str) -> String {
        self.cp
            .apply_yaml(yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- applied\n{yaml}\n{}", self.operator_log()))
    }

    /// `kubectl create namespace`.
    pub fn create_namespace(&self, ns: &str) {
        self.kubectl(&["create", "namespace", ns]);
    }

    /// A JSONPath of object `what` (`kind/name`) in `ns`; `""` when the
    /// object or the field is missing.
    pub fn jsonpath(&self, ns: &str, what: &str, path: &str) -> String {
        self.kubectl_ok(&["get", "-n", ns, what, "-o", &format!("jsonpath={path}")])
            .unwrap_or_default()
    }

    /// Whether object `what` exists in `ns`.
    pub fn exists(&self, ns: &str, what: &str) -> bool {
        self.kubectl_ok(&["get", "-n", ns, what]).is_some()
    }

    /// `object=resourceVersion` for each of `objects` in `ns`, to compare
    /// before and after something that must not write.
    pub fn resource_versions(&self, ns: &str, objects: &[&str]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                format!(
                    "{o}={}",
                    self.jsonpath(ns, o, "{.metadata.resourceVersion}")
                )
            })
            .collect()
    }

    /// QuarryRegistry `cr` as JSON, read in one request (so its fields
    /// agree with each other); `Null` when it is missing.
    pub fn qreg(&self, ns: &str, cr: &str) -> serde_json::Value {
        self.kubectl_ok(&["get", "-n", ns, &format!("qreg/{cr}"), "-o", "json"])
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    /// Condition `type_` of QuarryRegistry `cr`.
    pub fn condition(&self, ns: &str, cr: &str, type_: &str) -> Condition {
        condition_of(&self.qreg(ns, cr), type_)
    }

    /// Whether QuarryRegistry `cr` reports Ready=True.
    pub fn ready(&self, ns: &str, cr: &str) -> bool {
        condition_of(&self.qreg(ns, cr), "Ready").status == "True"
    }

    /// Whether QuarryRegistry `cr` reports Ready=True for its current spec
    /// (status.observedGeneration == metadata.generation).
    pub fn reconciled_and_ready(&self, ns: &str, cr: &str) -> bool {
        let qreg = self.qreg(ns, cr);
        condition_of(&qreg, "Ready").status == "True"
            && qreg["status"]["observedGeneration"] == qreg["metadata"]["generation"]
    }

    /// Poll `holds` until it is true and return how long that took; fail
    /// after `timeout`, naming `what`, with the operator's log.
    pub fn wait(&self, what: &str, timeout: Duration, holds: impl FnMut() -> bool) -> Duration {
        self.cp.wait_for(what, timeout, holds)
    }

    /// Wait (up to [`READY_TIMEOUT`]) until QuarryRegistry `cr` is
    /// reconciled and Ready.
    pub fn wait_ready(&self, ns: &str, cr: &str) -> Duration {
        self.wait(&format!("{ns}/{cr} Ready"), READY_TIMEOUT, || {
            self.reconciled_and_ready(ns, cr)
        })
    }

    /// A JSON merge patch of QuarryRegistry `cr`.
    pub fn patch(&self, ns: &str, cr: &str, body: &str) {
        self.merge_patch(ns, &format!("qreg/{cr}"), body);
    }

    /// A JSON merge patch of object `what`.
    pub fn merge_patch(&self, ns: &str, what: &str, body: &str) {
        self.kubectl(&["patch", "-n", ns, what, "--type", "merge", "-p", body]);
    }

    /// A JSON patch (RFC 6902) of object `what`.
    pub fn json_patch(&self, ns: &str, what: &str, body: &str) {
        self.kubectl(&["patch", "-n", ns, what, "--type", "json", "-p", body]);
    }

    /// Secret `name`'s data, decoded; empty when the Secret is missing.
    pub fn secret_data(&self, ns: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        self.cp.secret_data(ns, name).unwrap_or_default()
    }

    /// One key of Secret `name`, decoded, as text; `""` when the Secret or
    /// the key is missing.
    pub fn secret(&self, ns: &str, name: &str, key: &str) -> String {
        self.secret_data(ns, name)
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    /// The config the operator rendered for QuarryRegistry `cr` (its
    /// `<cr>-config` Secret); `""` when there is none yet.
    pub fn config_yaml(&self, ns: &str, cr: &str) -> String {
        self.secret(ns, &format!("{cr}-config"), "config.yaml")
    }

    /// Wait until the rendered config of `cr` contains `needle`, hand it to
    /// `registry` (the process standing in for the pod, started from
    /// `files` with a 1 s reload interval) and give it time to reload.
    pub fn sync_config(
        &self,
        ns: &str,
        cr: &str,
        files: &PodFiles,
        registry: &Registry,
        needle: &str,
    ) {
        self.wait(
            &format!("config secret with {needle}"),
            Duration::from_secs(30),
            || self.config_yaml(ns, cr).contains(needle),
        );
        registry.write_config(&files.rewrite(&self.config_yaml(ns, cr)));
        std::thread::sleep(Duration::from_millis(2500));
    }

    /// The holder of Lease `name` in `ns` (`""` when there is none).
    pub fn lease_holder(&self, ns: &str, name: &str) -> String {
        self.jsonpath(ns, &format!("lease/{name}"), "{.spec.holderIdentity}")
    }

    /// Start the operator as process `operator`, with the admin's rights,
    /// putting [`REGISTRY_IMAGE`] in Deployments.
    pub fn start_operator(&mut self) {
        self.start_operator_with(
            "operator",
            free_port(),
            &["--registry-image", REGISTRY_IMAGE],
        );
    }

    /// Start the operator as process `process` with the admin's rights,
    /// serving metrics on `metrics_port`, with `args`.
    pub fn start_operator_with(&mut self, process: &str, metrics_port: u16, args: &[&str]) {
        let mut cmd = operator_command(metrics_port);
        cmd.args(args);
        self.cp
            .start_process(process, cmd)
            .unwrap_or_else(|e| panic!("{process} starts: {e:#}"));
    }

    /// Start the operator as process `operator` with exactly the rights
    /// RBAC grants ServiceAccount `ns/service_account`, electing its leader
    /// in `ns`.
    pub fn start_operator_as(&mut self, ns: &str, service_account: &str, extra_args: &[&str]) {
        let kubeconfig = self
            .cp
            .service_account_kubeconfig(ns, service_account)
            .unwrap_or_else(|e| panic!("a kubeconfig for {ns}/{service_account}: {e:#}"));
        let mut cmd = operator_command(free_port());
        cmd.args(["--leader-election-namespace", ns])
            .args(extra_args);
        self.cp
            .start_process_with("operator", cmd, &kubeconfig)
            .unwrap_or_else(|e| panic!("the operator starts: {e:#}"));
    }
}

fn condition_of(qreg: &serde_json::Value, type_: &str) -> Condition {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    qreg["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .map(|c| Condition {
            status: text(&c["status"]),
            reason: text(&c["reason"]),
            message: text(&c["message"]),
        })
        .unwrap_or_default()
}

/// The operator binary under test (built by `make test-e2e`).
pub fn operator_binary() -> PathBuf {
    let path = workspace_root().join("target/debug/quarry-operator");
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build -p quarry-operator` first (make test-e2e does)",
        path.display()
    );
    path
}

/// The operator binary with its metrics on `metrics_port` and info logs.
fn operator_command(metrics_port: u16) -> Command {
    let mut cmd = Command::new(operator_binary());
    cmd.args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("RUST_LOG", "info,kube=warn");
    cmd
}

/// Standard base64 (a Secret's `data`).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An Opaque Secret manifest holding `data` (keys and text values).
pub fn secret_yaml(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    secret_manifest(ns, name, "Opaque", data)
}

/// A `kubernetes.io/tls` Secret manifest with a certificate and key (PEM).
pub fn tls_secret_yaml(ns: &str, name: &str, cert: &str, key: &str) -> String {
    secret_manifest(
        ns,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", cert), ("tls.key", key)],
    )
}

fn secret_manifest(ns: &str, name: &str, type_: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: {type_}\ndata:\n"
    );
    for (key, value) in data {
        yaml.push_str(&format!("  {key}: {}\n", b64(value.as_bytes())));
    }
    yaml
}

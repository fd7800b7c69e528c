//! The operator against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok). One control plane serves
//! the whole scenario, which runs step by step in one test so that its
//! processes are stopped when it ends, pass or fail.

use std::process::Command;
use std::time::{Duration, Instant};

use quarry_e2e::clients::{helm, oras};
use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::{Registry, free_port, run, workspace_root};

struct Scenario {
    cp: ControlPlane,
    operator_metrics: u16,
    operator2_metrics: u16,
}

impl Scenario {
    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.cp.kubectl().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.cp.logs("operator")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl_ok(&self, args: &[&str]) -> Option<String> {
        let out = self.cp.kubectl().args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn jsonpath(&self, ns: &str, what: &str, path: &str) -> String {
        self.kubectl_ok(&["get", "-n", ns, what, "-o", &format!("jsonpath={path}")])
            .unwrap_or_default()
    }

    fn condition(&self, ns: &str, name: &str, type_: &str) -> (String, String) {
        let base = format!("{{.status.conditions[?(@.type==\"{type_}\")]");
        (
            self.jsonpath(ns, &format!("qreg/{name}"), &format!("{base}.status}}")),
            self.jsonpath(ns, &format!("qreg/{name}"), &format!("{base}.message}}")),
        )
    }

    fn wait(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Duration {
        self.cp.wait_for(what, timeout, f)
    }

    fn wait_ready(&self, ns: &str, name: &str) -> Duration {
        self.wait(
            &format!("{ns}/{name} Ready"),
            Duration::from_secs(120),
            || {
                self.condition(ns, name, "Ready").0 == "True"
                    && self.jsonpath(ns, &format!("qreg/{name}"), "{.status.observedGeneration}")
                        == self.jsonpath(ns, &format!("qreg/{name}"), "{.metadata.generation}")
            },
        )
    }

    fn config_yaml(&self, ns: &str, name: &str) -> String {
        let b64 = self.jsonpath(
            ns,
            &format!("secret/{name}-config"),
            "{.data.config\\.yaml}",
        );
        let out = Command::new("base64").arg("-d").stdin_bytes(b64.as_bytes());
        String::from_utf8(out).unwrap()
    }

    fn start_operator(&mut self) {
        self.start_operator_as("operator", "operator-1", self.operator_metrics);
    }

    fn start_operator_as(&mut self, process: &str, identity: &str, metrics_port: u16) {
        let mut cmd = Command::new(workspace_root().join("target/debug/quarry-operator"));
        cmd.args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--registry-image", "example.invalid/quarry-registry"])
            .args(["--leader-election-namespace", "default"])
            .args(["--identity", identity])
            .env("RUST_LOG", "info,kube=warn");
        self.cp.start_process(process, cmd).unwrap();
    }

    fn lease_holder(&self) -> String {
        self.jsonpath("default", "lease/quarry-operator", "{.spec.holderIdentity}")
    }

    fn resource_versions(&self, ns: &str, objects: &[&str]) -> Vec<String> {
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

    fn patch(&self, ns: &str, name: &str, patch: &str) {
        self.kubectl(&[
            "patch",
            "-n",
            ns,
            &format!("qreg/{name}"),
            "--type",
            "merge",
            "-p",
            patch,
        ]);
    }
}

trait StdinBytes {
    fn stdin_bytes(&mut self, input: &[u8]) -> Vec<u8>;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap().stdout
    }
}

fn pv(name: &str, dir: &std::path::Path) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: 20Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Delete\n  storageClassName: \"\"\n  hostPath: {{path: {}}}\n",
        dir.join(name).display()
    )
}

#[test]
fn operator_end_to_end() {
    let cp = ControlPlane::start().expect("control plane starts");
    let mut s = Scenario {
        cp,
        operator_metrics: free_port(),
        operator2_metrics: free_port(),
    };
    s.cp.install_crd().expect("CRD installed");
    for i in 0..3 {
        s.cp.apply_yaml(&pv(&format!("pv-{i}"), s.cp.dir()))
            .unwrap();
    }
    s.start_operator();
    for ns in ["alpha", "beta"] {
        s.kubectl(&["create", "namespace", ns]);
    }

    // --- create: every object, the mapped config, Ready through kwok ----------
    let minimal = workspace_root().join("deploy/examples/minimal.yaml");
    let created = Instant::now();
    s.kubectl(&["apply", "-n", "alpha", "-f", minimal.to_str().unwrap()]);
    s.wait_ready("alpha", "registry");
    eprintln!("create -> Ready: {:?}", created.elapsed());
    for object in [
        "serviceaccount/registry-registry",
        "secret/registry-config",
        "deployment/registry-registry",
        "service/registry-registry",
        "pvc/registry-data",
        "secret/registry-registry-credentials",
        "secret/registry-registry-pull",
        "secret/registry-registry-auth",
        "secret/registry-registry-ca-key",
        "secret/registry-registry-tls",
        "configmap/registry-registry-ca",
    ] {
        let owner = s.jsonpath("alpha", object, "{.metadata.ownerReferences[0].kind}");
        assert_eq!(
            owner, "QuarryRegistry",
            "{object} is not owned by the resource"
        );
    }
    assert_eq!(
        s.jsonpath("alpha", "pvc/registry-data", "{.status.phase}"),
        "Bound"
    );
    let config = s.config_yaml("alpha", "registry");
    assert!(
        config.contains("FEATURE_HELM_OCI_SUPPORT: true"),
        "{config}"
    );
    assert_eq!(
        s.jsonpath("alpha", "qreg/registry", "{.status.registryEndpoint}"),
        "registry-registry.alpha.svc:5000"
    );

    // --- no writes when nothing changed: across resyncs and a restart ---------
    let watched = [
        "qreg/registry",
        "deployment/registry-registry",
        "secret/registry-config",
        "service/registry-registry",
        "serviceaccount/registry-registry",
        "pvc/registry-data",
        "secret/registry-registry-credentials",
        "secret/registry-registry-pull",
        "secret/registry-registry-auth",
        "secret/registry-registry-ca-key",
        "secret/registry-registry-tls",
        "configmap/registry-registry-ca",
    ];
    let before = s.resource_versions("alpha", &watched);
    std::thread::sleep(Duration::from_secs(3));
    s.cp.stop_process("operator");
    s.start_operator();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        before,
        s.resource_versions("alpha", &watched),
        "an unchanged resource caused writes"
    );

    // --- toggle Helm: config and pod-template hash change, a rollout, Ready ----
    let hash_before = s.jsonpath(
        "alpha",
        "deployment/registry-registry",
        "{.spec.template.metadata.annotations.quarry\\.dev/config-hash}",
    );
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"helm":false}}}"#,
    );
    s.wait(
        "config secret with Helm off",
        Duration::from_secs(30),
        || {
            s.config_yaml("alpha", "registry")
                .contains("FEATURE_HELM_OCI_SUPPORT: false")
        },
    );
    let hash_after = s.jsonpath(
        "alpha",
        "deployment/registry-registry",
        "{.spec.template.metadata.annotations.quarry\\.dev/config-hash}",
    );
    assert_ne!(
        hash_before, hash_after,
        "config change did not change the pod template"
    );
    s.wait("a second ReplicaSet", Duration::from_secs(30), || {
        s.kubectl(&[
            "get",
            "rs",
            "-n",
            "alpha",
            "-l",
            "app.kubernetes.io/instance=registry",
            "-o",
            "name",
        ])
        .lines()
        .count()
            == 2
    });
    s.wait_ready("alpha", "registry");

    // --- the rendered config drives the real registry ---------------------------
    // A local registry process stands in for the pod: the Secrets the
    // Deployment mounts, the generated admin account and the CA.
    let pod = tempfile::tempdir().unwrap();
    let files = s.cp.pod_files("alpha", "registry", pod.path()).unwrap();
    let mut env = files.registry_env();
    env.push(("QUARRY_RELOAD_INTERVAL_SECONDS".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let registry = Registry::start_with(Some(&files.config), &env);
    let ca = files.ca_file.clone().expect("the CA ConfigMap");
    let (user, password) = files.admin.clone().expect("generated admin account");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    run(helm(dir)
        .args([
            "registry",
            "login",
            &registry.host(),
            "-u",
            &user,
            "-p",
            &password,
        ])
        .arg("--ca-file")
        .arg(&ca));
    run(oras(dir)
        .args(["login", &registry.host(), "-u", &user, "-p", &password])
        .arg("--ca-file")
        .arg(&ca));
    run(helm(dir).args(["create", "demo"]));
    run(helm(dir).args(["package", "demo"]));
    std::fs::write(dir.join("sif.json"), "{}").unwrap();
    std::fs::write(dir.join("image.sif"), "sif").unwrap();
    std::fs::write(dir.join("notes.txt"), "notes").unwrap();
    let helm_push = || {
        helm(dir)
            .args(["push", "demo-0.1.0.tgz"])
            .arg(format!("oci://{}/charts", registry.host()))
            .arg("--ca-file")
            .arg(&ca)
            .output()
            .unwrap()
    };
    let refused = helm_push();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("FEATURE_HELM_OCI_SUPPORT"),
        "Helm chart not refused by policy with features.helm=false: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let sync_config = |s: &Scenario, needle: &str| {
        s.wait(
            &format!("config secret with {needle}"),
            Duration::from_secs(30),
            || s.config_yaml("alpha", "registry").contains(needle),
        );
        registry.write_config(&files.rewrite(&s.config_yaml("alpha", "registry")));
        std::thread::sleep(Duration::from_millis(2500));
    };
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"helm":true}}}"#,
    );
    sync_config(&s, "FEATURE_HELM_OCI_SUPPORT: true");
    let pushed = helm_push();
    assert!(
        pushed.status.success(),
        "Helm chart refused with features.helm=true: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"allowedArtifactTypes":{"application/vnd.sylabs.sif.config.v1+json":["application/vnd.sylabs.sif.layer.v1+tar"]}}}"#,
    );
    sync_config(&s, "application/vnd.sylabs.sif.layer.v1+tar");
    let sif = oras(dir)
        .args(["push", "--ca-file"])
        .arg(&ca)
        .args([
            "--config",
            "sif.json:application/vnd.sylabs.sif.config.v1+json",
        ])
        .arg(format!("{}/sif/app:v1", registry.host()))
        .arg("image.sif:application/vnd.sylabs.sif.layer.v1+tar")
        .output()
        .unwrap();
    assert!(
        sif.status.success(),
        "Singularity refused: {}",
        String::from_utf8_lossy(&sif.stderr)
    );
    let custom = oras(dir)
        .args(["push", "--ca-file"])
        .arg(&ca)
        .args(["--artifact-type", "application/x-custom"])
        .arg(format!("{}/custom/app:v1", registry.host()))
        .arg("notes.txt:text/plain")
        .output()
        .unwrap();
    assert!(
        !custom.status.success()
            && String::from_utf8_lossy(&custom.stderr).contains("ALLOWED_OCI_ARTIFACT_TYPES"),
        "an artifact outside allowedArtifactTypes was not refused by policy: {}",
        String::from_utf8_lossy(&custom.stderr)
    );
    drop(registry);

    // --- the bundle Secret is watched ------------------------------------------
    s.cp.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: bundle, namespace: alpha}\nstringData:\n  config.yaml: \"FEATURE_REFERRERS_API: false\\n\"\n").unwrap();
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"bundle"}}"#,
    );
    s.wait("bundle applied", Duration::from_secs(30), || {
        s.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: false")
    });
    s.cp.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: bundle, namespace: alpha}\nstringData:\n  config.yaml: \"FEATURE_REFERRERS_API: true\\nDATABASE_SECRET_KEY: x\\n\"\n").unwrap();
    let took = s.wait("bundle edit reconciled", Duration::from_secs(30), || {
        s.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: true")
    });
    assert!(took < Duration::from_secs(5), "bundle edit took {took:?}");
    s.wait(
        "unknown bundle key reported",
        Duration::from_secs(10),
        || {
            s.jsonpath("alpha", "qreg/registry", "{.status.warnings}")
                .contains("DATABASE_SECRET_KEY")
        },
    );

    // --- a deleted owned object comes back ---------------------------------------
    let uid = s.jsonpath("alpha", "service/registry-registry", "{.metadata.uid}");
    s.kubectl(&["delete", "-n", "alpha", "service/registry-registry"]);
    s.wait("service recreated", Duration::from_secs(30), || {
        let now = s.jsonpath("alpha", "service/registry-registry", "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    s.wait_ready("alpha", "registry");

    // --- a managed Ingress follows the component switch --------------------------
    s.patch("alpha", "registry", r#"{"spec":{"serverHostname":"registry.example.com","components":[{"kind":"ingress","managed":true,"overrides":{"annotations":{"example.com/class":"public"}}}]}}"#);
    s.wait("ingress created", Duration::from_secs(30), || {
        s.jsonpath(
            "alpha",
            "ingress/registry-registry",
            "{.spec.rules[0].host}",
        ) == "registry.example.com"
    });
    assert_eq!(
        s.jsonpath("alpha", "qreg/registry", "{.status.registryEndpoint}"),
        "registry.example.com"
    );
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"components":[{"kind":"ingress","managed":false}]}}"#,
    );
    s.wait("ingress removed", Duration::from_secs(30), || {
        s.kubectl_ok(&["get", "-n", "alpha", "ingress/registry-registry"])
            .is_none()
    });
    s.wait_ready("alpha", "registry");

    // --- what the schema can check, the API server refuses up front ------------
    for (spec, message) in [
        (
            "components: [{kind: registry, managed: false}]",
            "the registry component is always managed",
        ),
        (
            "components: [{kind: storage, managed: true}, {kind: storage, managed: false}]",
            "each component kind may be listed once",
        ),
        (
            "components: [{kind: telemetry, managed: true}]",
            "Unsupported value",
        ),
        ("serverHostname: 'not a host'", "should match"),
    ] {
        let yaml = format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: refused, namespace: alpha}}\nspec:\n  {spec}\n"
        );
        let err = s.cp.apply_yaml(&yaml).expect_err(spec).to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }

    // --- invalid input: precise condition, nothing running changes, others go on
    let running = s.resource_versions(
        "alpha",
        &["deployment/registry-registry", "secret/registry-config"],
    );
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"allowedArtifactTypes":{"not-a-media-type":["text/plain"]}}}"#,
    );
    s.wait("ConfigValid=False", Duration::from_secs(30), || {
        let (status, message) = s.condition("alpha", "registry", "ConfigValid");
        status == "False" && message.contains("spec.allowedArtifactTypes[not-a-media-type]")
    });
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"missing"}}"#,
    );
    s.wait("missing bundle reported", Duration::from_secs(30), || {
        s.condition("alpha", "registry", "ConfigValid")
            .1
            .contains("Secret \"missing\" not found")
    });
    let beta = "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: other, namespace: beta}\nspec:\n  components:\n  - {kind: storage, managed: false}\n";
    s.cp.apply_yaml(beta).unwrap();
    s.wait_ready("beta", "other");
    assert_eq!(
        running,
        s.resource_versions(
            "alpha",
            &["deployment/registry-registry", "secret/registry-config"]
        ),
        "an invalid resource changed what runs"
    );
    s.kubectl(&["patch", "-n", "alpha", "qreg/registry", "--type", "json", "-p", r#"[{"op":"remove","path":"/spec/allowedArtifactTypes"},{"op":"remove","path":"/spec/configBundleSecret"}]"#]);
    s.wait_ready("alpha", "registry");
    assert_eq!(s.condition("alpha", "registry", "ConfigValid").0, "True");

    // --- optional APIs: Route and ServiceMonitor where the cluster serves them ----
    for (group, kind, plural) in [
        ("route.openshift.io", "Route", "routes"),
        ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ] {
        s.cp.install_stand_in_crd(group, kind, plural).unwrap();
    }
    s.kubectl(&["create", "namespace", "gamma"]);
    s.cp.apply_yaml("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: os, namespace: gamma}\nspec:\n  serverHostname: registry.apps.example.com\n  components:\n  - {kind: storage, managed: false}\n").unwrap();
    s.wait(
        "Route and ServiceMonitor by default",
        Duration::from_secs(60),
        || {
            s.jsonpath(
                "gamma",
                "routes.route.openshift.io/os-registry",
                "{.spec.host}",
            ) == "registry.apps.example.com"
                && s.jsonpath(
                    "gamma",
                    "servicemonitors.monitoring.coreos.com/os-registry",
                    "{.spec.endpoints[0].path}",
                ) == "/metrics"
        },
    );
    s.wait_ready("gamma", "os");
    let components = s.jsonpath("gamma", "qreg/os", "{.status.components}");
    assert!(
        components.contains(r#"{"kind":"route","managed":true,"source":"default"}"#),
        "{components}"
    );
    // Without serverHostname the endpoint is the Route's host (here set by
    // hand, as an OpenShift router would admit a generated one).
    s.patch("gamma", "os", r#"{"spec":{"serverHostname":null}}"#);
    s.kubectl(&[
        "patch",
        "-n",
        "gamma",
        "routes.route.openshift.io/os-registry",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"ingress":[{"host":"os-registry-gamma.apps.example.com"}]}}"#,
    ]);
    s.patch(
        "gamma",
        "os",
        r#"{"metadata":{"annotations":{"touch":"1"}}}"#,
    );
    s.wait(
        "endpoint from the Route host",
        Duration::from_secs(30),
        || {
            s.jsonpath("gamma", "qreg/os", "{.status.registryEndpoint}")
                == "os-registry-gamma.apps.example.com"
        },
    );
    // The registry serves HTTPS itself: the Route passes TLS through, and
    // the serving certificate is reissued to name the Route's host.
    assert_eq!(
        s.jsonpath(
            "gamma",
            "routes.route.openshift.io/os-registry",
            "{.spec.tls.termination}"
        ),
        "passthrough"
    );
    assert_eq!(
        s.jsonpath("gamma", "qreg/os", "{.status.registryUrl}"),
        "https://os-registry-gamma.apps.example.com"
    );
    s.wait(
        "the Route host in the serving certificate",
        Duration::from_secs(30),
        || {
            s.jsonpath(
                "gamma",
                "qreg/os",
                "{.status.conditions[?(@.type==\"ComponentTlsReady\")].message}",
            )
            .contains("os-registry-gamma.apps.example.com")
        },
    );
    let cert =
        s.cp.secret_data("gamma", "os-registry-tls")
            .unwrap()
            .remove("tls.crt")
            .unwrap();
    let sans = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin_bytes(&cert);
    assert!(
        String::from_utf8_lossy(&sans).contains("DNS:os-registry-gamma.apps.example.com"),
        "{}",
        String::from_utf8_lossy(&sans)
    );
    s.patch("gamma", "os", r#"{"spec":{"components":[{"kind":"storage","managed":false},{"kind":"route","managed":false}]}}"#);
    s.wait(
        "Route removed when switched off",
        Duration::from_secs(30),
        || {
            s.kubectl_ok(&[
                "get",
                "-n",
                "gamma",
                "routes.route.openshift.io/os-registry",
            ])
            .is_none()
        },
    );

    // --- an unparsable bundle is named, and nothing running changes ------------------
    let running = s.resource_versions(
        "alpha",
        &["deployment/registry-registry", "secret/registry-config"],
    );
    s.cp.apply_yaml("apiVersion: v1\nkind: Secret\nmetadata: {name: broken, namespace: alpha}\nstringData:\n  config.yaml: \"FEATURE_HELM_OCI_SUPPORT: [yes\\n\"\n").unwrap();
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"broken"}}"#,
    );
    s.wait(
        "unparsable bundle reported",
        Duration::from_secs(30),
        || {
            let (status, message) = s.condition("alpha", "registry", "ConfigValid");
            status == "False" && message.contains("not valid YAML")
        },
    );
    assert_eq!(
        running,
        s.resource_versions(
            "alpha",
            &["deployment/registry-registry", "secret/registry-config"]
        )
    );
    s.kubectl(&[
        "patch",
        "-n",
        "alpha",
        "qreg/registry",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/configBundleSecret"}]"#,
    ]);
    s.wait_ready("alpha", "registry");

    // --- two operator replicas: one leads, the other takes over when it dies ----
    s.wait("operator-1 leads", Duration::from_secs(30), || {
        s.lease_holder() == "operator-1"
    });
    let port = s.operator2_metrics;
    s.start_operator_as("operator-2", "operator-2", port);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.lease_holder(),
        "operator-1",
        "the standby took the lease from a live leader"
    );
    s.cp.stop_process("operator");
    s.wait("operator-2 takes over", Duration::from_secs(40), || {
        s.lease_holder() == "operator-2"
    });
    s.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"referrers":false}}}"#,
    );
    s.wait("the new leader reconciles", Duration::from_secs(30), || {
        s.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: false")
    });

    // --- events and metrics --------------------------------------------------------
    let events = s.kubectl(&[
        "get",
        "events",
        "-n",
        "alpha",
        "--field-selector",
        "involvedObject.name=registry",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        events.contains("ConfigInvalid") && events.contains("RegistryAvailable"),
        "{events}"
    );
    let metrics = reqwest_get(&format!("http://127.0.0.1:{}/metrics", s.operator2_metrics));
    assert!(
        metrics.contains("quarry_operator_reconciles_total"),
        "{metrics}"
    );

    // --- delete: owned objects are garbage-collected -------------------------------
    s.kubectl(&["delete", "-n", "alpha", "qreg/registry"]);
    s.wait("owned objects collected", Duration::from_secs(60), || {
        s.kubectl_ok(&["get", "-n", "alpha", "deployment/registry-registry"])
            .is_none()
            && s.kubectl_ok(&["get", "-n", "alpha", "secret/registry-config"])
                .is_none()
    });
}

fn reqwest_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        quarry_e2e::http::client()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

//! The operator against a real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok). Each test starts its own
//! control plane (a few seconds) and sets up what it needs — the CRD,
//! volumes, the operator, namespaces, the QuarryRegistry — so that one
//! failing group of steps does not hide the others, and its processes stop
//! when the test ends, pass or fail.

use std::process::Command;
use std::time::{Duration, Instant};

use quarry_e2e::clients::{helm, helm_login, helm_push_chart, oras};
use quarry_e2e::kube::{Cluster, REGISTRY_IMAGE, secret_yaml};
use quarry_e2e::{free_port, run, run_with_stdin, workspace_root};

/// The objects a QuarryRegistry made from the minimal example owns.
const OWNED: [&str; 11] = [
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
];

/// What a change to a refused spec must leave alone.
const RUNNING: [&str; 2] = ["deployment/registry-registry", "secret/registry-config"];

/// Start the operator as `process`, electing its leader in `default` under
/// `identity`; the port of its metrics.
fn start_operator(c: &mut Cluster, process: &str, identity: &str) -> u16 {
    let metrics = free_port();
    c.start_operator_with(
        process,
        metrics,
        &[
            "--registry-image",
            REGISTRY_IMAGE,
            "--leader-election-namespace",
            "default",
            "--identity",
            identity,
        ],
    );
    metrics
}

/// A control plane with the CRD, three volumes, the operator (`operator`,
/// identity `operator-1`) and the namespaces `alpha` and `beta`.
fn scenario() -> Cluster {
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    for i in 0..3 {
        c.cp.create_volume(&format!("pv-{i}")).unwrap();
    }
    start_operator(&mut c, "operator", "operator-1");
    for ns in ["alpha", "beta"] {
        c.create_namespace(ns);
    }
    c
}

/// `alpha/registry` from deploy/examples/minimal.yaml, reconciled and Ready.
fn create_registry(c: &Cluster) {
    let minimal = workspace_root().join("deploy/examples/minimal.yaml");
    let created = Instant::now();
    c.kubectl(&["apply", "-n", "alpha", "-f", minimal.to_str().unwrap()]);
    c.wait_ready("alpha", "registry");
    eprintln!("create -> Ready: {:?}", created.elapsed());
}

#[test]
fn create_owns_every_object_resyncs_write_nothing_delete_collects() {
    let mut c = scenario();

    // --- create: every object, the mapped config, Ready through kwok ----------
    create_registry(&c);
    for object in OWNED {
        let owner = c.jsonpath("alpha", object, "{.metadata.ownerReferences[0].kind}");
        assert_eq!(
            owner, "QuarryRegistry",
            "{object} is not owned by the resource"
        );
    }
    assert_eq!(
        c.jsonpath("alpha", "pvc/registry-data", "{.status.phase}"),
        "Bound"
    );
    let config = c.config_yaml("alpha", "registry");
    assert!(
        config.contains("FEATURE_HELM_OCI_SUPPORT: true"),
        "{config}"
    );
    assert_eq!(
        c.jsonpath("alpha", "qreg/registry", "{.status.registryEndpoint}"),
        "registry-registry.alpha.svc:5000"
    );

    // --- no writes when nothing changed: across resyncs and a restart ---------
    let mut watched = vec!["qreg/registry"];
    watched.extend(OWNED);
    let before = c.resource_versions("alpha", &watched);
    std::thread::sleep(Duration::from_secs(3));
    c.cp.stop_process("operator");
    start_operator(&mut c, "operator", "operator-1");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        before,
        c.resource_versions("alpha", &watched),
        "an unchanged resource caused writes"
    );

    // --- delete: owned objects are garbage-collected -------------------------------
    // (The garbage collector finds a new CRD's objects on its next
    // discovery, every 30 s: this waits for it in a fresh control plane.)
    c.kubectl(&["delete", "-n", "alpha", "qreg/registry"]);
    c.wait("owned objects collected", Duration::from_secs(60), || {
        !c.exists("alpha", "deployment/registry-registry")
            && !c.exists("alpha", "secret/registry-config")
    });
}

#[test]
fn config_changes_roll_out_and_drive_the_real_registry() {
    let c = scenario();
    create_registry(&c);

    // --- toggle Helm: config and pod-template hash change, a rollout, Ready ----
    let hash_before = c.jsonpath(
        "alpha",
        "deployment/registry-registry",
        "{.spec.template.metadata.annotations.quarry\\.dev/config-hash}",
    );
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"helm":false}}}"#,
    );
    c.wait(
        "config secret with Helm off",
        Duration::from_secs(30),
        || {
            c.config_yaml("alpha", "registry")
                .contains("FEATURE_HELM_OCI_SUPPORT: false")
        },
    );
    let hash_after = c.jsonpath(
        "alpha",
        "deployment/registry-registry",
        "{.spec.template.metadata.annotations.quarry\\.dev/config-hash}",
    );
    assert_ne!(
        hash_before, hash_after,
        "config change did not change the pod template"
    );
    c.wait("a second ReplicaSet", Duration::from_secs(30), || {
        c.kubectl(&[
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
    c.wait_ready("alpha", "registry");

    // --- the rendered config drives the real registry ---------------------------
    // A local registry process stands in for the pod: the Secrets the
    // Deployment mounts, the generated admin account and the CA.
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
        helm_push_chart(dir, "demo-0.1.0.tgz", &registry.host(), &ca)
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
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"helm":true}}}"#,
    );
    c.sync_config(
        "alpha",
        "registry",
        &files,
        &registry,
        "FEATURE_HELM_OCI_SUPPORT: true",
    );
    let pushed = helm_push();
    assert!(
        pushed.status.success(),
        "Helm chart refused with features.helm=true: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"allowedArtifactTypes":{"application/vnd.sylabs.sif.config.v1+json":["application/vnd.sylabs.sif.layer.v1+tar"]}}}"#,
    );
    c.sync_config(
        "alpha",
        "registry",
        &files,
        &registry,
        "application/vnd.sylabs.sif.layer.v1+tar",
    );
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
    c.apply(&secret_yaml(
        "alpha",
        "bundle",
        &[("config.yaml", "FEATURE_REFERRERS_API: false\n")],
    ));
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"bundle"}}"#,
    );
    c.wait("bundle applied", Duration::from_secs(30), || {
        c.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: false")
    });
    c.apply(&secret_yaml(
        "alpha",
        "bundle",
        &[(
            "config.yaml",
            "FEATURE_REFERRERS_API: true\nDATABASE_SECRET_KEY: x\n",
        )],
    ));
    let took = c.wait("bundle edit reconciled", Duration::from_secs(30), || {
        c.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: true")
    });
    assert!(took < Duration::from_secs(5), "bundle edit took {took:?}");
    c.wait(
        "unknown bundle key reported",
        Duration::from_secs(10),
        || {
            c.jsonpath("alpha", "qreg/registry", "{.status.warnings}")
                .contains("DATABASE_SECRET_KEY")
        },
    );
}

#[test]
fn repairs_ingress_refusals_and_events() {
    let c = scenario();
    create_registry(&c);

    // --- a deleted owned object comes back ---------------------------------------
    let uid = c.jsonpath("alpha", "service/registry-registry", "{.metadata.uid}");
    c.kubectl(&["delete", "-n", "alpha", "service/registry-registry"]);
    c.wait("service recreated", Duration::from_secs(30), || {
        let now = c.jsonpath("alpha", "service/registry-registry", "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    c.wait_ready("alpha", "registry");

    // --- a managed Ingress follows the component switch --------------------------
    c.patch("alpha", "registry", r#"{"spec":{"serverHostname":"registry.example.com","components":[{"kind":"ingress","managed":true,"overrides":{"annotations":{"example.com/class":"public"}}}]}}"#);
    c.wait("ingress created", Duration::from_secs(30), || {
        c.jsonpath(
            "alpha",
            "ingress/registry-registry",
            "{.spec.rules[0].host}",
        ) == "registry.example.com"
    });
    assert_eq!(
        c.jsonpath("alpha", "qreg/registry", "{.status.registryEndpoint}"),
        "registry.example.com"
    );
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"components":[{"kind":"ingress","managed":false}]}}"#,
    );
    c.wait("ingress removed", Duration::from_secs(30), || {
        !c.exists("alpha", "ingress/registry-registry")
    });
    c.wait_ready("alpha", "registry");

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
        let err = c.cp.apply_yaml(&yaml).expect_err(spec).to_string();
        assert!(err.contains(message), "{spec}: {err}");
    }

    // --- invalid input: precise condition, nothing running changes, others go on
    let running = c.resource_versions("alpha", &RUNNING);
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"allowedArtifactTypes":{"not-a-media-type":["text/plain"]}}}"#,
    );
    c.wait("ConfigValid=False", Duration::from_secs(30), || {
        let valid = c.condition("alpha", "registry", "ConfigValid");
        valid.status == "False"
            && valid
                .message
                .contains("spec.allowedArtifactTypes[not-a-media-type]")
    });
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"missing"}}"#,
    );
    c.wait("missing bundle reported", Duration::from_secs(30), || {
        c.condition("alpha", "registry", "ConfigValid")
            .message
            .contains("Secret \"missing\" not found")
    });
    c.apply("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: other, namespace: beta}\nspec:\n  components:\n  - {kind: storage, managed: false}\n");
    c.wait_ready("beta", "other");
    assert_eq!(
        running,
        c.resource_versions("alpha", &RUNNING),
        "an invalid resource changed what runs"
    );
    c.json_patch(
        "alpha",
        "qreg/registry",
        r#"[{"op":"remove","path":"/spec/allowedArtifactTypes"},{"op":"remove","path":"/spec/configBundleSecret"}]"#,
    );
    c.wait_ready("alpha", "registry");
    assert_eq!(
        c.condition("alpha", "registry", "ConfigValid").status,
        "True"
    );

    // --- an unparsable bundle is named, and nothing running changes ------------------
    let running = c.resource_versions("alpha", &RUNNING);
    c.apply(&secret_yaml(
        "alpha",
        "broken",
        &[("config.yaml", "FEATURE_HELM_OCI_SUPPORT: [yes\n")],
    ));
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"configBundleSecret":"broken"}}"#,
    );
    c.wait(
        "unparsable bundle reported",
        Duration::from_secs(30),
        || {
            let valid = c.condition("alpha", "registry", "ConfigValid");
            valid.status == "False" && valid.message.contains("not valid YAML")
        },
    );
    assert_eq!(running, c.resource_versions("alpha", &RUNNING));
    c.json_patch(
        "alpha",
        "qreg/registry",
        r#"[{"op":"remove","path":"/spec/configBundleSecret"}]"#,
    );
    c.wait_ready("alpha", "registry");

    // --- events ------------------------------------------------------------------
    let events = c.kubectl(&[
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
}

#[test]
fn optional_apis_route_and_service_monitor() {
    let c = scenario();

    // --- optional APIs: Route and ServiceMonitor where the cluster serves them ----
    for (group, kind, plural) in [
        ("route.openshift.io", "Route", "routes"),
        ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
    ] {
        c.cp.install_stand_in_crd(group, kind, plural).unwrap();
    }
    c.create_namespace("gamma");
    c.apply("apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: os, namespace: gamma}\nspec:\n  serverHostname: registry.apps.example.com\n  components:\n  - {kind: storage, managed: false}\n");
    c.wait(
        "Route and ServiceMonitor by default",
        Duration::from_secs(60),
        || {
            c.jsonpath(
                "gamma",
                "routes.route.openshift.io/os-registry",
                "{.spec.host}",
            ) == "registry.apps.example.com"
                && c.jsonpath(
                    "gamma",
                    "servicemonitors.monitoring.coreos.com/os-registry",
                    "{.spec.endpoints[0].path}",
                ) == "/metrics"
        },
    );
    c.wait_ready("gamma", "os");
    let components = c.jsonpath("gamma", "qreg/os", "{.status.components}");
    assert!(
        components.contains(r#"{"kind":"route","managed":true,"source":"default"}"#),
        "{components}"
    );
    // Without serverHostname the endpoint is the Route's host (here set by
    // hand, as an OpenShift router would admit a generated one).
    c.patch("gamma", "os", r#"{"spec":{"serverHostname":null}}"#);
    c.merge_patch(
        "gamma",
        "routes.route.openshift.io/os-registry",
        r#"{"status":{"ingress":[{"host":"os-registry-gamma.apps.example.com"}]}}"#,
    );
    c.patch(
        "gamma",
        "os",
        r#"{"metadata":{"annotations":{"touch":"1"}}}"#,
    );
    c.wait(
        "endpoint from the Route host",
        Duration::from_secs(30),
        || {
            c.jsonpath("gamma", "qreg/os", "{.status.registryEndpoint}")
                == "os-registry-gamma.apps.example.com"
        },
    );
    // The registry serves HTTPS itself: the Route passes TLS through, and
    // the serving certificate is reissued to name the Route's host.
    assert_eq!(
        c.jsonpath(
            "gamma",
            "routes.route.openshift.io/os-registry",
            "{.spec.tls.termination}"
        ),
        "passthrough"
    );
    assert_eq!(
        c.jsonpath("gamma", "qreg/os", "{.status.registryUrl}"),
        "https://os-registry-gamma.apps.example.com"
    );
    c.wait(
        "the Route host in the serving certificate",
        Duration::from_secs(30),
        || {
            c.condition("gamma", "os", "ComponentTlsReady")
                .message
                .contains("os-registry-gamma.apps.example.com")
        },
    );
    let cert = c.secret("gamma", "os-registry-tls", "tls.crt");
    let sans = run_with_stdin(
        Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName"]),
        &cert,
    );
    let sans = String::from_utf8_lossy(&sans.stdout);
    assert!(
        sans.contains("DNS:os-registry-gamma.apps.example.com"),
        "{sans}"
    );
    c.patch("gamma", "os", r#"{"spec":{"components":[{"kind":"storage","managed":false},{"kind":"route","managed":false}]}}"#);
    c.wait(
        "Route removed when switched off",
        Duration::from_secs(30),
        || !c.exists("gamma", "routes.route.openshift.io/os-registry"),
    );
}

#[test]
fn standby_operator_takes_over_when_the_leader_dies() {
    let mut c = scenario();
    create_registry(&c);

    // --- two operator replicas: one leads, the other takes over when it dies ----
    c.wait("operator-1 leads", Duration::from_secs(30), || {
        c.lease_holder("default", "quarry-operator") == "operator-1"
    });
    let operator2_metrics = start_operator(&mut c, "operator-2", "operator-2");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.lease_holder("default", "quarry-operator"),
        "operator-1",
        "the standby took the lease from a live leader"
    );
    c.cp.stop_process("operator");
    c.wait("operator-2 takes over", Duration::from_secs(40), || {
        c.lease_holder("default", "quarry-operator") == "operator-2"
    });
    // What the new leader is to change is not there yet.
    let config = c.config_yaml("alpha", "registry");
    assert!(config.contains("FEATURE_REFERRERS_API: true"), "{config}");
    c.patch(
        "alpha",
        "registry",
        r#"{"spec":{"features":{"referrers":false}}}"#,
    );
    c.wait("the new leader reconciles", Duration::from_secs(30), || {
        c.config_yaml("alpha", "registry")
            .contains("FEATURE_REFERRERS_API: false")
    });

    // --- metrics -------------------------------------------------------------------
    let metrics = quarry_e2e::http::blocking()
        .get(format!("http://127.0.0.1:{operator2_metrics}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("quarry_operator_reconciles_total"),
        "{metrics}"
    );
}

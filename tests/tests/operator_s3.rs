//! The operator with spec.objectStorage on a real control plane and a real
//! MinIO: three replicas on one bucket render the S3 config, credentials
//! from the user's Secret and a rolling Deployment without a volume; the
//! rendered config really serves from the bucket through two registry
//! processes; a bucket the credentials cannot use, or an endpoint nobody
//! answers, is refused in ConfigValid while what runs stays; several
//! replicas on a ReadWriteOnce volume are refused.

use std::process::Command;
use std::time::Duration;

use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::scale::{MINIO_PASSWORD, MINIO_USER, Minio};
use quarry_e2e::secure::client_trusting;
use quarry_e2e::{Registry, free_port, sha256, workspace_root};

const NS: &str = "s3";

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    cp.kubectl_out(args)
        .unwrap_or_else(|e| panic!("{e}\n{}", cp.logs("operator")))
}

fn get(cp: &ControlPlane, what: &str, path: &str) -> String {
    cp.jsonpath(NS, what, path)
}

fn condition(cp: &ControlPlane, cr: &str, type_: &str) -> (String, String) {
    let (status, _, message) = cp.qreg_condition(NS, cr, type_);
    (status, message)
}

fn wait(cp: &ControlPlane, what: &str, timeout: Duration, holds: impl FnMut() -> bool) {
    cp.wait_for(what, timeout, holds);
}

fn credentials_yaml(secret: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3-credentials, namespace: {NS}}}\nstringData:\n  AWS_ACCESS_KEY_ID: {MINIO_USER}\n  AWS_SECRET_ACCESS_KEY: {secret}\n"
    )
}

#[test]
fn object_storage_replicas_render_probe_and_refuse() {
    let minio = Minio::start("operator");
    let mut cp = ControlPlane::start().expect("control plane starts");
    cp.install_crd().expect("CRD installed");
    let mut operator = Command::new(workspace_root().join("target/debug/quarry-operator"));
    operator
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--registry-image", "example.invalid/quarry-registry"])
        .env("RUST_LOG", "info,kube=warn");
    cp.start_process("operator", operator).unwrap();
    kubectl(&cp, &["create", "namespace", NS]);
    cp.apply_yaml(&credentials_yaml(MINIO_PASSWORD)).unwrap();
    let endpoint = minio.endpoint();
    cp.apply_yaml(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: shared, namespace: {NS}}}\nspec:\n  objectStorage: {{endpoint: '{endpoint}', bucket: operator, prefix: team-registry, credentialsSecret: s3-credentials}}\n  components:\n  - {{kind: registry, managed: true, overrides: {{replicas: 3}}}}\n"
    ))
    .unwrap();
    wait(&cp, "Ready", Duration::from_secs(120), || {
        condition(&cp, "shared", "Ready").0 == "True"
    });

    // --- what was rendered ------------------------------------------------------
    let deployment = "deployment/shared-registry";
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "3");
    assert_eq!(
        get(&cp, deployment, "{.spec.strategy.type}"),
        "RollingUpdate"
    );
    wait(&cp, "3 ready replicas", Duration::from_secs(60), || {
        get(&cp, deployment, "{.status.readyReplicas}") == "3"
    });
    let env = get(&cp, deployment, "{.spec.template.spec.containers[0].env}");
    assert!(
        env.contains("AWS_ACCESS_KEY_ID") && env.contains("s3-credentials"),
        "{env}"
    );
    let template = get(&cp, deployment, "{.spec.template.metadata.annotations}");
    assert!(
        template.contains("quarry.dev/storage-credentials-hash"),
        "{template}"
    );
    let volumes = get(&cp, deployment, "{.spec.template.spec.volumes}");
    assert!(!volumes.contains("persistentVolumeClaim"), "{volumes}");
    assert_eq!(get(&cp, "pvc", "{.items[*].metadata.name}"), "");
    let storage = get(
        &cp,
        "qreg/shared",
        "{.status.components[?(@.kind==\"storage\")].managed}",
    );
    assert_eq!(storage, "false");

    // --- the rendered config serves from the bucket, through two processes ---
    let work = tempfile::tempdir().unwrap();
    let files = cp.pod_files(NS, "shared", work.path()).unwrap();
    assert!(files.config.contains("S3Storage"), "{}", files.config);
    assert!(files.config.contains("team-registry"), "{}", files.config);
    let mut env = files.registry_env();
    env.push(("AWS_ACCESS_KEY_ID".into(), MINIO_USER.into()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), MINIO_PASSWORD.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let one = Registry::start_shared(&files.config, &env);
    let two = Registry::start_shared(&files.config, &env);
    let ca = files.ca_file.clone().expect("the managed CA");
    let http = client_trusting(&ca);
    let (user, password) = files.admin.clone().expect("the generated admin");
    let content = b"a layer in the bucket".to_vec();
    let digest = sha256(&content);
    let pushed = http
        .post(format!(
            "https://{}/v2/team/app/blobs/uploads/?digest={digest}",
            one.host()
        ))
        .basic_auth(&user, Some(&password))
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(pushed.status(), 201, "{}", one.log_text());
    let pulled = http
        .get(format!("https://{}/v2/team/app/blobs/{digest}", two.host()))
        .basic_auth(&user, Some(&password))
        .send()
        .unwrap();
    assert_eq!(pulled.status(), 200, "{}", two.log_text());
    assert_eq!(pulled.bytes().unwrap().as_ref(), content.as_slice());
    assert!(
        minio
            .list("team-registry/blobs/")
            .iter()
            .any(|k| k.ends_with(digest.trim_start_matches("sha256:"))),
        "the blob is not in the bucket"
    );

    // --- credentials the bucket refuses: reported, nothing touched --------------
    let before = get(&cp, deployment, "{.metadata.resourceVersion}");
    cp.apply_yaml(&credentials_yaml("not-the-secret")).unwrap();
    wait(&cp, "ConfigValid=False", Duration::from_secs(60), || {
        condition(&cp, "shared", "ConfigValid").0 == "False"
    });
    let (_, message) = condition(&cp, "shared", "ConfigValid");
    assert!(
        message.contains("spec.objectStorage") && message.contains("cannot be used"),
        "{message}"
    );
    assert_eq!(get(&cp, deployment, "{.metadata.resourceVersion}"), before);
    assert_eq!(get(&cp, deployment, "{.spec.replicas}"), "3");

    // --- an endpoint nobody answers: the same ---------------------------------------
    cp.apply_yaml(&credentials_yaml(MINIO_PASSWORD)).unwrap();
    wait(&cp, "Ready again", Duration::from_secs(60), || {
        condition(&cp, "shared", "ConfigValid").0 == "True"
    });
    let before = get(&cp, deployment, "{.metadata.resourceVersion}");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    kubectl(
        &cp,
        &[
            "patch",
            "-n",
            NS,
            "qreg/shared",
            "--type",
            "merge",
            "-p",
            &format!("{{\"spec\":{{\"objectStorage\":{{\"endpoint\":\"{nowhere}\"}}}}}}"),
        ],
    );
    wait(&cp, "ConfigValid=False", Duration::from_secs(90), || {
        condition(&cp, "shared", "ConfigValid").0 == "False"
    });
    let (_, message) = condition(&cp, "shared", "ConfigValid");
    assert!(message.contains(&nowhere), "{message}");
    assert_eq!(get(&cp, deployment, "{.metadata.resourceVersion}"), before);

    // --- several replicas on a ReadWriteOnce volume -----------------------------------
    cp.apply_yaml(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: single, namespace: {NS}}}\nspec:\n  components:\n  - {{kind: registry, managed: true, overrides: {{replicas: 2}}}}\n"
    ))
    .unwrap();
    wait(&cp, "ConfigValid=False", Duration::from_secs(60), || {
        condition(&cp, "single", "ConfigValid").0 == "False"
    });
    let (_, message) = condition(&cp, "single", "ConfigValid");
    assert!(
        message.contains("ReadWriteOnce") && message.contains("spec.objectStorage"),
        "{message}"
    );
    assert_eq!(
        get(&cp, "deployment/single-registry", "{.metadata.name}"),
        ""
    );
}

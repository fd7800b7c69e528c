//! The operator with spec.objectStorage on a real control plane and a real
//! MinIO: three replicas on one bucket render the S3 config, credentials
//! from the user's Secret and a rolling Deployment without a volume; the
//! rendered config really serves from the bucket through two registry
//! processes; a bucket the credentials cannot use, or an endpoint nobody
//! answers, is refused in ConfigValid while what runs stays; several
//! replicas on a ReadWriteOnce volume are refused.

use std::time::Duration;

use quarry_e2e::kube::{Cluster, secret_yaml};
use quarry_e2e::scale::{MINIO_PASSWORD, MINIO_USER, Minio};
use quarry_e2e::secure::client_trusting;
use quarry_e2e::{Registry, free_port, sha256};

const NS: &str = "s3";

/// The Secret `s3-credentials` with MinIO's user and `secret`.
fn credentials_yaml(secret: &str) -> String {
    secret_yaml(
        NS,
        "s3-credentials",
        &[
            ("AWS_ACCESS_KEY_ID", MINIO_USER),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    )
}

#[test]
fn object_storage_replicas_render_probe_and_refuse() {
    let minio = Minio::start("operator");
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    c.start_operator();
    c.create_namespace(NS);
    c.apply(&credentials_yaml(MINIO_PASSWORD));
    let endpoint = minio.endpoint();
    c.apply(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: shared, namespace: {NS}}}\nspec:\n  objectStorage: {{endpoint: '{endpoint}', bucket: operator, prefix: team-registry, credentialsSecret: s3-credentials}}\n  components:\n  - {{kind: registry, managed: true, overrides: {{replicas: 3}}}}\n"
    ));
    c.wait("Ready", Duration::from_secs(120), || c.ready(NS, "shared"));

    // --- what was rendered ------------------------------------------------------
    let deployment = "deployment/shared-registry";
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "3");
    assert_eq!(
        c.jsonpath(NS, deployment, "{.spec.strategy.type}"),
        "RollingUpdate"
    );
    c.wait("3 ready replicas", Duration::from_secs(60), || {
        c.jsonpath(NS, deployment, "{.status.readyReplicas}") == "3"
    });
    let env = c.jsonpath(NS, deployment, "{.spec.template.spec.containers[0].env}");
    assert!(
        env.contains("AWS_ACCESS_KEY_ID") && env.contains("s3-credentials"),
        "{env}"
    );
    let template = c.jsonpath(NS, deployment, "{.spec.template.metadata.annotations}");
    assert!(
        template.contains("quarry.dev/storage-credentials-hash"),
        "{template}"
    );
    let volumes = c.jsonpath(NS, deployment, "{.spec.template.spec.volumes}");
    assert!(!volumes.contains("persistentVolumeClaim"), "{volumes}");
    assert_eq!(c.jsonpath(NS, "pvc", "{.items[*].metadata.name}"), "");
    let storage = c.jsonpath(
        NS,
        "qreg/shared",
        "{.status.components[?(@.kind==\"storage\")].managed}",
    );
    assert_eq!(storage, "false");

    // --- the rendered config serves from the bucket, through two processes ---
    let work = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files(NS, "shared", work.path()).unwrap();
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
    let before = c.jsonpath(NS, deployment, "{.metadata.resourceVersion}");
    c.apply(&credentials_yaml("not-the-secret"));
    c.wait("ConfigValid=False", Duration::from_secs(60), || {
        c.condition(NS, "shared", "ConfigValid").status == "False"
    });
    let message = c.condition(NS, "shared", "ConfigValid").message;
    assert!(
        message.contains("spec.objectStorage") && message.contains("cannot be used"),
        "{message}"
    );
    assert_eq!(
        c.jsonpath(NS, deployment, "{.metadata.resourceVersion}"),
        before
    );
    assert_eq!(c.jsonpath(NS, deployment, "{.spec.replicas}"), "3");

    // --- an endpoint nobody answers: the same ---------------------------------------
    c.apply(&credentials_yaml(MINIO_PASSWORD));
    c.wait("Ready again", Duration::from_secs(60), || {
        c.condition(NS, "shared", "ConfigValid").status == "True"
    });
    let before = c.jsonpath(NS, deployment, "{.metadata.resourceVersion}");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    c.patch(
        NS,
        "shared",
        &format!("{{\"spec\":{{\"objectStorage\":{{\"endpoint\":\"{nowhere}\"}}}}}}"),
    );
    c.wait("ConfigValid=False", Duration::from_secs(90), || {
        c.condition(NS, "shared", "ConfigValid").status == "False"
    });
    let message = c.condition(NS, "shared", "ConfigValid").message;
    assert!(message.contains(&nowhere), "{message}");
    assert_eq!(
        c.jsonpath(NS, deployment, "{.metadata.resourceVersion}"),
        before
    );

    // --- several replicas on a ReadWriteOnce volume -----------------------------------
    c.apply(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: single, namespace: {NS}}}\nspec:\n  components:\n  - {{kind: registry, managed: true, overrides: {{replicas: 2}}}}\n"
    ));
    c.wait("ConfigValid=False", Duration::from_secs(60), || {
        c.condition(NS, "single", "ConfigValid").status == "False"
    });
    let message = c.condition(NS, "single", "ConfigValid").message;
    assert!(
        message.contains("ReadWriteOnce") && message.contains("spec.objectStorage"),
        "{message}"
    );
    assert_eq!(
        c.jsonpath(NS, "deployment/single-registry", "{.metadata.name}"),
        ""
    );
}

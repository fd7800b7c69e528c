//! Immutable tags with real clients: skopeo, crane, oras and helm see the
//! refusal with the tag, the policy and the setting named; nothing of a
//! refused push changes what the tag names; the quay.immutable label.

use std::path::Path;

use quarry_e2e::clients::{crane, helm, oras, skopeo_copy_layout};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_refused, run_text};

const CONFIG: &str = r#"
FEATURE_IMMUTABLE_TAGS: true
IMMUTABLE_TAGS_POLICIES:
  - {namespace: prod, tagPattern: 'v[0-9]+(\.[0-9]+)*'}
  - {namespace: charts, tagPattern: '.*'}
"#;

fn assert_names(output: &str, parts: &[&str]) {
    for part in parts {
        assert!(output.contains(part), "{part:?} missing from:\n{output}");
    }
}

fn digest_of(dir: &Path, reference: &str) -> String {
    run_text(crane(dir).args(["digest", "--insecure", reference]))
        .trim()
        .to_string()
}

#[test]
fn immutable_tags_refuse_moves_and_deletes_for_every_client() {
    let registry = Registry::start_with_config(Some(CONFIG));
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = write_image_layout(&root.join("first"), "v1", 1, 4096);
    write_image_layout(&root.join("second"), "v1", 1, 4096);

    // skopeo: the first push and the same push again are accepted; another
    // image under the tag is refused and the tag still names the first.
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{host}/prod/app:v1.0"),
    ));
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{host}/prod/app:v1.0"),
    ));
    let output = run_refused(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{host}/prod/app:v1.0"),
    ));
    assert_names(
        &output,
        &[
            "tag prod/app:v1.0 is immutable",
            "IMMUTABLE_TAGS_POLICIES: namespace",
            "FEATURE_IMMUTABLE_TAGS is true",
        ],
    );
    let v1 = format!("{host}/prod/app:v1.0");
    assert_eq!(digest_of(root, &v1), first.manifest_digest);

    // crane: moving the tag by copy, and deleting the manifest it names.
    run(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{host}/prod/app:candidate"),
    ));
    let output = run_refused(crane(root).args([
        "copy",
        "--insecure",
        &format!("{host}/prod/app:candidate"),
        &v1,
    ]));
    assert_names(&output, &["tag prod/app:v1.0 is immutable"]);
    let output = run_refused(crane(root).args([
        "delete",
        "--insecure",
        &format!("{host}/prod/app@{}", first.manifest_digest),
    ]));
    assert_names(
        &output,
        &[&format!(
            "manifest {} is named by the immutable tag prod/app:v1.0",
            first.manifest_digest
        )],
    );
    assert_eq!(digest_of(root, &v1), first.manifest_digest);
    // A tag the policy does not match moves and goes as usual.
    run(crane(root).args([
        "copy",
        "--insecure",
        &format!("{host}/prod/app:candidate"),
        &format!("{host}/prod/app:latest"),
    ]));
    run(crane(root).args([
        "copy",
        "--insecure",
        &v1,
        &format!("{host}/prod/app:latest"),
    ]));

    // The tag itself cannot be deleted either (the API crane has no verb for).
    let response = quarry_e2e::http::blocking()
        .delete(format!("{}/v2/prod/app/manifests/v1.0", registry.url()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = response.text().unwrap();
    assert_names(&body, &["DENIED", "cannot be deleted"]);

    // oras: an artifact under a release tag, then other content under it.
    std::fs::write(root.join("notes.txt"), "first\n").unwrap();
    run(oras(root).args([
        "push",
        "--plain-http",
        &format!("{host}/prod/notes:v2"),
        "notes.txt:text/plain",
    ]));
    std::fs::write(root.join("notes.txt"), "second\n").unwrap();
    let output = run_refused(oras(root).args([
        "push",
        "--plain-http",
        &format!("{host}/prod/notes:v2"),
        "notes.txt:text/plain",
    ]));
    assert_names(&output, &["tag prod/notes:v2 is immutable"]);

    // helm: a chart version is a tag; republishing it with other content is
    // refused where every tag is immutable.
    run(helm(root).args(["create", "demo"]));
    run(helm(root).args(["package", "demo"]));
    run(helm(root).args([
        "push",
        "demo-0.1.0.tgz",
        &format!("oci://{host}/charts"),
        "--plain-http",
    ]));
    std::fs::write(root.join("demo/values.yaml"), "replicaCount: 2\n").unwrap();
    run(helm(root).args(["package", "demo"]));
    let output = run_refused(helm(root).args([
        "push",
        "demo-0.1.0.tgz",
        &format!("oci://{host}/charts"),
        "--plain-http",
    ]));
    assert_names(&output, &["tag charts/demo:0.1.0 is immutable"]);

    // Other namespaces are not covered by the policies.
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{host}/dev/app:v1.0"),
    ));
    run(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{host}/dev/app:v1.0"),
    ));
}

#[test]
fn the_quay_immutable_label_makes_the_tags_of_an_image_immutable() {
    let registry = Registry::start_with_config(Some("FEATURE_IMMUTABLE_TAGS: true\n"));
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_image_layout(&root.join("plain"), "v1", 1, 4096);
    run(&mut skopeo_copy_layout(
        &root.join("plain"),
        &format!("{host}/team/app:base"),
    ));
    // crane writes the label into the image config, as a Containerfile
    // LABEL would, and pushes the new image under "release".
    run(crane(root).args([
        "mutate",
        "--insecure",
        "--label",
        "quay.immutable=true",
        &format!("{host}/team/app:base"),
        "-t",
        &format!("{host}/team/app:release"),
    ]));
    let output = run_refused(&mut skopeo_copy_layout(
        &root.join("plain"),
        &format!("{host}/team/app:release"),
    ));
    assert_names(
        &output,
        &[
            "tag team/app:release is immutable",
            "has the label quay.immutable=true",
        ],
    );
    // The unlabelled image's tag moves freely.
    run(crane(root).args([
        "copy",
        "--insecure",
        &format!("{host}/team/app:release"),
        &format!("{host}/team/app:base"),
    ]));
}

/// On a bucket the tag is created with a conditional put (If-None-Match),
/// which MinIO honours: of two replicas, the second push is refused.
#[test]
fn on_a_bucket_shared_by_two_replicas_an_immutable_tag_is_created_once() {
    let minio = quarry_e2e::scale::Minio::start("immutable");
    let config = minio.registry_config(CONFIG);
    let (a, b) = (
        Registry::start_shared(&config, &[]),
        Registry::start_shared(&config, &[]),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = write_image_layout(&root.join("first"), "v1", 1, 4096);
    write_image_layout(&root.join("second"), "v1", 1, 4096);
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{}/prod/app:v2.0", a.host()),
    ));
    let output = run_refused(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{}/prod/app:v2.0", b.host()),
    ));
    assert_names(&output, &["tag prod/app:v2.0 is immutable"]);
    assert_eq!(
        digest_of(root, &format!("{}/prod/app:v2.0", b.host())),
        first.manifest_digest
    );
}

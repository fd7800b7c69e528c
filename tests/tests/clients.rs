//! Real clients against the real binary: skopeo, oras, crane and helm,
//! built at pinned versions by `make tools-test`.

use std::path::Path;

use quarry_e2e::clients::{crane, helm, oras, oras_attach_plain_http, skopeo};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_text, sha256};

fn raw_manifest(registry: &Registry, reference: &str) -> Vec<u8> {
    run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{reference}", registry.host())))
    .stdout
}

fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn skopeo_copies_oci_and_docker_images_in_and_out_unchanged() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let image = write_image_layout(&src, "v1", 3, 256 * 1024);
    let host = registry.host();

    // OCI image in: the manifest arrives byte-exact.
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{host}/skopeo/oci:v1")));
    let raw = raw_manifest(&registry, "skopeo/oci:v1");
    assert_eq!(raw, image.manifest, "manifest changed on the way in");

    // And back out: same manifest digest in the OCI layout.
    let out = work.path().join("out");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/skopeo/oci:v1"))
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(layout_manifest_digest(&out), image.manifest_digest);

    // Docker v2s2: converted on the way in, layers keep their digests.
    run(skopeo()
        .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{host}/skopeo/docker:v1")));
    let raw = raw_manifest(&registry, "skopeo/docker:v1");
    let docker: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let layers: Vec<String> = docker["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, image.layer_digests);
    let dir_out = work.path().join("docker-out");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/skopeo/docker:v1"))
        .arg(format!("dir:{}", dir_out.display())));
    assert_eq!(std::fs::read(dir_out.join("manifest.json")).unwrap(), raw);

    // Registry to registry: the digest survives.
    let other = Registry::start();
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{host}/skopeo/docker:v1"))
        .arg(format!("docker://{}/copied/app:v1", other.host())));
    assert_eq!(sha256(&raw_manifest(&other, "copied/app:v1")), sha256(&raw));
}

#[test]
fn skopeo_pushes_and_pulls_docker_schema1() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_image_layout(&src, "v1", 2, 64 * 1024);
    let host = registry.host();
    run(skopeo()
        .args(["copy", "--format", "v2s1", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{host}/legacy/s1:v1")));
    let raw = raw_manifest(&registry, "legacy/s1:v1");
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["schemaVersion"], 1);
    // The registry identifies it by the digest skopeo computes too.
    let inspected: serde_json::Value = serde_json::from_str(&run_text(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{host}/legacy/s1:v1")),
    ))
    .unwrap();
    let digest = inspected["Digest"].as_str().unwrap().to_string();
    let by_digest = raw_manifest(&registry, &format!("legacy/s1@{digest}"));
    assert_eq!(by_digest, raw);
    let out = work.path().join("out");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/legacy/s1:v1"))
        .arg(format!("dir:{}", out.display())));
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), raw);
}

#[test]
fn oras_pushes_pulls_attaches_and_discovers_through_the_referrers_api() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("notes.txt"), "hello from oras\n").unwrap();
    std::fs::write(dir.join("data.json"), r#"{"k":"v"}"#).unwrap();
    std::fs::write(dir.join("sig.txt"), "signature").unwrap();
    std::fs::write(dir.join("sbom.json"), r#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    let reference = format!("{}/oras/artifact:v1", registry.host());
    run(oras(dir)
        .args([
            "push",
            "--plain-http",
            "--artifact-type",
            "application/vnd.quarry.test",
        ])
        .arg(&reference)
        .args(["notes.txt:text/plain", "data.json:application/json"]));
    let out = dir.join("pulled");
    run(oras(dir)
        .args(["pull", "--plain-http", "-o"])
        .arg(&out)
        .arg(&reference));
    for f in ["notes.txt", "data.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(dir.join(f)).unwrap(),
            "{f} differs after pull"
        );
    }
    run(&mut oras_attach_plain_http(
        dir,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        &reference,
        "sig.txt:text/plain",
    ));
    run(&mut oras_attach_plain_http(
        dir,
        "application/spdx+json",
        &reference,
        "sbom.json:application/spdx+json",
    ));
    let tree = run_text(
        oras(dir)
            .args(["discover", "--plain-http", "--format", "tree"])
            .arg(&reference),
    );
    assert!(
        tree.contains("application/vnd.dev.cosign.artifact.sig.v1+json"),
        "{tree}"
    );
    assert!(tree.contains("application/spdx+json"), "{tree}");

    // They went through the referrers API, not the tag fallback.
    let subject = run_text(oras(dir).args(["resolve", "--plain-http"]).arg(&reference));
    let subject = subject.trim();
    let index: serde_json::Value = reqwest::blocking_get_json(&format!(
        "{}/v2/oras/artifact/referrers/{subject}",
        registry.url()
    ));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let tags: serde_json::Value =
        reqwest::blocking_get_json(&format!("{}/v2/oras/artifact/tags/list", registry.url()));
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}

#[test]
fn crane_push_pull_copy_ls_digest_delete() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let src = dir.join("layout");
    let image = write_image_layout(&src, "v1", 2, 128 * 1024);
    let host = registry.host();
    let app = format!("{host}/crane/app:v1");
    run(crane(dir).args(["push", "--insecure"]).arg(&src).arg(&app));
    let digest = run_text(crane(dir).args(["digest", "--insecure"]).arg(&app));
    assert_eq!(digest.trim(), image.manifest_digest);
    let manifest = run(crane(dir).args(["manifest", "--insecure"]).arg(&app)).stdout;
    assert_eq!(manifest, image.manifest);

    let copy = format!("{host}/crane/copy:v2");
    run(crane(dir).args(["copy", "--insecure"]).arg(&app).arg(&copy));
    assert_eq!(
        run_text(crane(dir).args(["digest", "--insecure"]).arg(&copy)).trim(),
        image.manifest_digest
    );
    let tags = run_text(
        crane(dir)
            .args(["ls", "--insecure"])
            .arg(format!("{host}/crane/copy")),
    );
    assert_eq!(tags.trim(), "v2");
    let catalog = run_text(crane(dir).args(["catalog", "--insecure"]).arg(&host));
    assert_eq!(
        catalog.lines().collect::<Vec<_>>(),
        vec!["crane/app", "crane/copy"]
    );

    let tarball = dir.join("pulled.tar");
    run(crane(dir)
        .args(["pull", "--insecure"])
        .arg(&app)
        .arg(&tarball));
    assert!(std::fs::metadata(&tarball).unwrap().len() > 2 * 128 * 1024);

    run(crane(dir)
        .args(["delete", "--insecure"])
        .arg(format!("{host}/crane/copy@{}", image.manifest_digest)));
    let gone = crane(dir)
        .args(["digest", "--insecure"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!gone.status.success(), "deleted manifest still resolves");
    // The original repository is untouched.
    assert_eq!(
        run_text(crane(dir).args(["digest", "--insecure"]).arg(&app)).trim(),
        image.manifest_digest
    );
}

#[test]
fn helm_create_package_push_pull_show() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    run(helm(dir).args(["create", "demo"]));
    run(helm(dir).args(["package", "demo"]));
    let chart = dir.join("demo-0.1.0.tgz");
    let base = format!("oci://{}/charts", registry.host());
    let pushed = run(helm(dir)
        .args(["push", "--plain-http"])
        .arg(&chart)
        .arg(&base));
    let text = String::from_utf8_lossy(&pushed.stderr).to_string()
        + &String::from_utf8_lossy(&pushed.stdout);
    assert!(text.contains("Digest: sha256:"), "{text}");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(helm(dir)
        .args(["pull", "--plain-http", "--version", "0.1.0", "-d"])
        .arg(&out)
        .arg(format!("{base}/demo")));
    assert_eq!(
        std::fs::read(out.join("demo-0.1.0.tgz")).unwrap(),
        std::fs::read(&chart).unwrap(),
        "pulled chart differs"
    );
    let shown = run_text(
        helm(dir)
            .args(["show", "chart", "--plain-http", "--version", "0.1.0"])
            .arg(format!("{base}/demo")),
    );
    assert!(shown.contains("name: demo"), "{shown}");
}

/// Tiny blocking JSON GET for assertions (reqwest's async client on a
/// throwaway runtime keeps the dependency list short).
mod reqwest {
    pub fn blocking_get_json(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let r = quarry_e2e::http::client().get(url).send().await.unwrap();
            assert!(r.status().is_success(), "GET {url}: {}", r.status());
            r.json().await.unwrap()
        })
    }
}

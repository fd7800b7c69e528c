//! The artifact policy with real clients: every kind of content against
//! every policy, refusals that name the type, and live reloads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use quarry_e2e::clients::{cosign, crane, helm, oras, skopeo};
use quarry_e2e::oci::{Compression, write_image_layout_with};
use quarry_e2e::{Registry, run, run_text};

const SIF_CONFIG: &str = "application/vnd.sylabs.sif.config.v1+json";
const SIF_LAYER: &str = "application/vnd.sylabs.sif.layer.v1+tar";
const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const CUSTOM_TYPE: &str = "application/vnd.quarry.custom.v1";

/// Files every push draws on, made once per test.
struct Fixture {
    dir: tempfile::TempDir,
    oci_layout: PathBuf,
    zstd_layout: PathBuf,
    chart: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let oci_layout = root.join("oci");
        write_image_layout_with(&oci_layout, "v1", 2, 32 * 1024, Compression::Gzip);
        let zstd_layout = root.join("zstd");
        write_image_layout_with(&zstd_layout, "v1", 2, 32 * 1024, Compression::Zstd);
        run(helm(root).args(["create", "demo"]));
        run(helm(root).args(["package", "demo"]));
        std::fs::write(root.join("sif-config.json"), r#"{"sif":"config"}"#).unwrap();
        std::fs::write(root.join("image.sif"), b"SIF_MAGIC fake singularity image").unwrap();
        std::fs::write(root.join("notes.txt"), "custom artifact\n").unwrap();
        run(cosign(root).args(["generate-key-pair"]));
        Fixture {
            oci_layout,
            zstd_layout,
            chart: root.join("demo-0.1.0.tgz"),
            dir,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn output_of(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The kinds of content the matrix pushes.
#[derive(Debug, Clone, Copy)]
enum Content {
    OciImage,
    ZstdImage,
    DockerImage,
    HelmChart,
    CosignSignature,
    Singularity,
    SingularityWrongLayer,
    CustomArtifact,
}

const CONTENTS: [Content; 8] = [
    Content::OciImage,
    Content::ZstdImage,
    Content::DockerImage,
    Content::HelmChart,
    Content::CosignSignature,
    Content::Singularity,
    Content::SingularityWrongLayer,
    Content::CustomArtifact,
];

/// Push `content` to `registry`; returns the client's output and the
/// `repo:tag` whose presence proves it was stored.
fn push(content: Content, registry: &Registry, fx: &Fixture) -> (Output, String) {
    let host = registry.host();
    let root = fx.root();
    match content {
        Content::OciImage => (
            output_of(
                crane(root)
                    .args(["push", "--insecure"])
                    .arg(&fx.oci_layout)
                    .arg(format!("{host}/m/oci:v1")),
            ),
            "m/oci:v1".into(),
        ),
        Content::ZstdImage => (
            output_of(
                crane(root)
                    .args(["push", "--insecure"])
                    .arg(&fx.zstd_layout)
                    .arg(format!("{host}/m/zstd:v1")),
            ),
            "m/zstd:v1".into(),
        ),
        Content::DockerImage => (
            output_of(
                skopeo()
                    .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
                    .arg(format!("oci:{}:v1", fx.oci_layout.display()))
                    .arg(format!("docker://{host}/m/docker:v1")),
            ),
            "m/docker:v1".into(),
        ),
        Content::HelmChart => (
            output_of(
                helm(root)
                    .args(["push", "--plain-http"])
                    .arg(&fx.chart)
                    .arg(format!("oci://{host}/m/charts")),
            ),
            "m/charts/demo:0.1.0".into(),
        ),
        Content::CosignSignature => {
            // The signed image itself is always accepted.
            let image = format!("{host}/m/signed:v1");
            run(crane(root)
                .args(["push", "--insecure"])
                .arg(&fx.oci_layout)
                .arg(&image));
            let digest = run_text(crane(root).args(["digest", "--insecure"]).arg(&image));
            let digest = digest.trim().to_string();
            let out = output_of(
                cosign(root)
                    .args([
                        "sign",
                        "--key",
                        "cosign.key",
                        "--tlog-upload=false",
                        "--allow-http-registry",
                        "--allow-insecure-registry",
                    ])
                    .arg(format!("{host}/m/signed@{digest}")),
            );
            (out, format!("m/signed:{}.sig", digest.replace(':', "-")))
        }
        Content::Singularity | Content::SingularityWrongLayer => {
            let (repo, layer_type) = match content {
                Content::Singularity => ("m/sif:v1", SIF_LAYER),
                _ => ("m/sif-wrong:v1", "application/octet-stream"),
            };
            (
                output_of(
                    oras(root)
                        .args(["push", "--plain-http", "--config"])
                        .arg(format!("sif-config.json:{SIF_CONFIG}"))
                        .arg(format!("{host}/{repo}"))
                        .arg(format!("image.sif:{layer_type}")),
                ),
                repo.into(),
            )
        }
        Content::CustomArtifact => (
            output_of(
                oras(root)
                    .args(["push", "--plain-http", "--artifact-type", CUSTOM_TYPE])
                    .arg(format!("{host}/m/custom:v1"))
                    .arg("notes.txt:text/plain"),
            ),
            "m/custom:v1".into(),
        ),
    }
}

fn stored(registry: &Registry, repo_tag: &str) -> bool {
    let (repo, tag) = repo_tag.rsplit_once(':').unwrap();
    let url = format!("{}/v2/{repo}/manifests/{tag}", registry.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        quarry_e2e::http::client()
            .head(url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
            == 200
    })
}

/// `None`: accepted. `Some(t)`: refused, and the client output names `t`.
type Expect = Option<&'static str>;

fn policy_matrix() -> Vec<(&'static str, String, [Expect; 8])> {
    let sif_only = format!("ALLOWED_OCI_ARTIFACT_TYPES:\n  {SIF_CONFIG}:\n    - {SIF_LAYER}\n");
    let cosign_only = format!(
        "ALLOWED_OCI_ARTIFACT_TYPES:\n  application/vnd.oci.image.config.v1+json:\n    - {COSIGN_LAYER}\n    - application/vnd.dsse.envelope.v1+json\n"
    );
    let ok = None;
    vec![
        //  oci, zstd, docker, helm, cosign, sif, sif-wrong, custom
        ("defaults", String::new(), [ok, ok, ok, ok, ok, ok, ok, ok]),
        (
            "general off",
            "FEATURE_GENERAL_OCI_SUPPORT: false\n".into(),
            [
                ok,
                ok,
                ok,
                ok,
                Some(COSIGN_LAYER),
                Some(SIF_CONFIG),
                Some(SIF_CONFIG),
                Some(CUSTOM_TYPE),
            ],
        ),
        (
            "general and helm off",
            "FEATURE_GENERAL_OCI_SUPPORT: false\nFEATURE_HELM_OCI_SUPPORT: false\n".into(),
            [
                ok,
                ok,
                ok,
                Some(HELM_CONFIG),
                Some(COSIGN_LAYER),
                Some(SIF_CONFIG),
                Some(SIF_CONFIG),
                Some(CUSTOM_TYPE),
            ],
        ),
        (
            "helm off",
            "FEATURE_HELM_OCI_SUPPORT: false\n".into(),
            [ok, ok, ok, Some(HELM_CONFIG), ok, ok, ok, ok],
        ),
        (
            "allowlist: Singularity only",
            sif_only,
            [
                ok,
                ok,
                ok,
                ok,
                Some(COSIGN_LAYER),
                ok,
                Some("application/octet-stream"),
                Some(CUSTOM_TYPE),
            ],
        ),
        (
            "allowlist: cosign only",
            cosign_only,
            [
                ok,
                ok,
                ok,
                ok,
                ok,
                Some(SIF_CONFIG),
                Some(SIF_CONFIG),
                Some(CUSTOM_TYPE),
            ],
        ),
    ]
}

#[test]
fn every_content_against_every_policy() {
    let fx = Fixture::new();
    let mut failures = Vec::new();
    for (policy, yaml, expectations) in policy_matrix() {
        let registry = Registry::start_with_config(Some(&yaml));
        for (content, expect) in CONTENTS.iter().zip(expectations) {
            let (out, repo_tag) = push(*content, &registry, &fx);
            let is_stored = stored(&registry, &repo_tag);
            let output = text(&out);
            match expect {
                None if !out.status.success() || !is_stored => failures.push(format!(
                    "[{policy}] {content:?} should be accepted; client said:\n{output}"
                )),
                Some(t) if out.status.success() || is_stored => failures.push(format!(
                    "[{policy}] {content:?} should be refused naming {t}; exit {}, stored {is_stored}:\n{output}",
                    out.status
                )),
                Some(t) if !output.contains(t) => failures.push(format!(
                    "[{policy}] {content:?} refused, but the client output does not name {t}:\n{output}"
                )),
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn custom_push_accepted(registry: &Registry, fx: &Fixture, tag: &str) -> bool {
    output_of(
        oras(fx.root())
            .args(["push", "--plain-http", "--artifact-type", CUSTOM_TYPE])
            .arg(format!("{}/reload/custom:{tag}", registry.host()))
            .arg("notes.txt:text/plain"),
    )
    .status
    .success()
}

fn until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn policy_follows_the_file_without_a_restart() {
    let fx = Fixture::new();
    let registry = Registry::start_with(
        Some("FEATURE_GENERAL_OCI_SUPPORT: true\n"),
        &[("QUARRY_RELOAD_INTERVAL_SECONDS", "1")],
    );
    assert!(custom_push_accepted(&registry, &fx, "before"));
    registry.write_config("FEATURE_GENERAL_OCI_SUPPORT: false\n");
    let mut n = 0;
    assert!(
        until(Duration::from_secs(15), || {
            n += 1;
            !custom_push_accepted(&registry, &fx, &format!("after{n}"))
        }),
        "the new policy was not applied; log:\n{}",
        registry.log_text()
    );
    // A broken file keeps the policy in force.
    registry.write_config("FEATURE_GENERAL_OCI_SUPPORT: [not, a, bool]\n");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!custom_push_accepted(&registry, &fx, "still-refused"));
    assert!(
        registry.log_text().contains("FEATURE_GENERAL_OCI_SUPPORT"),
        "{}",
        registry.log_text()
    );
}

#[test]
fn sighup_reloads_at_once() {
    let fx = Fixture::new();
    let registry = Registry::start_with(
        Some("FEATURE_GENERAL_OCI_SUPPORT: false\n"),
        &[("QUARRY_RELOAD_INTERVAL_SECONDS", "3600")],
    );
    assert!(!custom_push_accepted(&registry, &fx, "before"));
    registry.write_config("FEATURE_GENERAL_OCI_SUPPORT: true\n");
    registry.signal("HUP");
    let mut n = 0;
    assert!(
        until(Duration::from_secs(5), || {
            n += 1;
            custom_push_accepted(&registry, &fx, &format!("after{n}"))
        }),
        "SIGHUP did not reload; log:\n{}",
        registry.log_text()
    );
}

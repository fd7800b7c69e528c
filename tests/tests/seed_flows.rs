//! The flows of the product documents, with real clients: Helm charts,
//! cosign signatures and oras artifacts with referrers, with the referrers
//! API on and off (clients then fall back to the sha256-<hex> tag schema).

use quarry_e2e::clients::{cosign, cosign_verify_plain_http, crane, helm, oras};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_text};

fn registries() -> Vec<(&'static str, Registry)> {
    vec![
        ("referrers API on", Registry::start()),
        (
            "referrers API off",
            Registry::start_with_config(Some("FEATURE_REFERRERS_API: false\n")),
        ),
    ]
}

#[test]
fn helm_package_push_pull_template() {
    for (mode, registry) in registries() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        run(helm(dir).args(["create", "seedchart"]));
        run(helm(dir).args(["package", "seedchart"]));
        let base = format!("oci://{}/helm-charts", registry.host());
        run(helm(dir)
            .args(["push", "--plain-http", "seedchart-0.1.0.tgz"])
            .arg(&base));
        std::fs::create_dir_all(dir.join("pulled")).unwrap();
        run(helm(dir)
            .args(["pull", "--plain-http", "--version", "0.1.0", "-d", "pulled"])
            .arg(format!("{base}/seedchart")));
        assert!(dir.join("pulled/seedchart-0.1.0.tgz").exists(), "{mode}");
        let rendered = run_text(
            helm(dir)
                .args(["template", "demo", "--plain-http", "--version", "0.1.0"])
                .arg(format!("{base}/seedchart")),
        );
        assert!(rendered.contains("kind: Deployment"), "[{mode}] {rendered}");
    }
}

#[test]
fn cosign_sign_verify_triangulate() {
    for (mode, registry) in registries() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let image = write_image_layout(&dir.join("layout"), "v1", 1, 16 * 1024);
        run(crane(dir)
            .args(["push", "--insecure"])
            .arg(dir.join("layout"))
            .arg(format!("{}/signed/app:v1", registry.host())));
        let reference = format!("{}/signed/app@{}", registry.host(), image.manifest_digest);
        run(cosign(dir).arg("generate-key-pair"));
        run(cosign(dir)
            .args([
                "sign",
                "--key",
                "cosign.key",
                "--tlog-upload=false",
                "--allow-http-registry",
                "--allow-insecure-registry",
            ])
            .arg(&reference));
        let verified = run(&mut cosign_verify_plain_http(dir, &reference));
        let out = String::from_utf8_lossy(&verified.stdout);
        assert!(out.contains(&image.manifest_digest), "[{mode}] {out}");
        let triangulated = run_text(
            cosign(dir)
                .args([
                    "triangulate",
                    "--allow-http-registry",
                    "--allow-insecure-registry",
                ])
                .arg(&reference),
        );
        let sig_tag = format!("{}.sig", image.manifest_digest.replace(':', "-"));
        assert!(
            triangulated.trim().ends_with(&sig_tag),
            "[{mode}] {triangulated}"
        );
    }
}

#[test]
fn oras_artifact_with_signature_sbom_and_signed_sbom_tree() {
    for (mode, registry) in registries() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        std::fs::write(dir.join("artifact.txt"), "the artifact\n").unwrap();
        std::fs::write(dir.join("sig.txt"), "signature\n").unwrap();
        std::fs::write(dir.join("sbom.spdx.json"), r#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
        std::fs::write(dir.join("sbom-sig.txt"), "sbom signature\n").unwrap();
        let reference = format!("{}/seed/artifact:v1", registry.host());
        run(oras(dir)
            .args([
                "push",
                "--plain-http",
                "--artifact-type",
                "application/vnd.example.artifact",
            ])
            .arg(&reference)
            .arg("artifact.txt:text/plain"));
        run(oras(dir)
            .args([
                "attach",
                "--plain-http",
                "--artifact-type",
                "application/vnd.example.signature",
            ])
            .arg(&reference)
            .arg("sig.txt:text/plain"));
        let sbom = run_text(
            oras(dir)
                .args([
                    "attach",
                    "--plain-http",
                    "--format",
                    "json",
                    "--artifact-type",
                    "application/spdx+json",
                ])
                .arg(&reference)
                .arg("sbom.spdx.json:application/spdx+json"),
        );
        let sbom: serde_json::Value =
            serde_json::from_str(&sbom).unwrap_or_else(|e| panic!("{e}: {sbom}"));
        let sbom_digest = sbom["digest"].as_str().unwrap().to_string();
        run(oras(dir)
            .args([
                "attach",
                "--plain-http",
                "--artifact-type",
                "application/vnd.example.sbom.signature",
            ])
            .arg(format!("{}/seed/artifact@{sbom_digest}", registry.host()))
            .arg("sbom-sig.txt:text/plain"));
        let tree = run_text(
            oras(dir)
                .args(["discover", "--plain-http", "--format", "tree"])
                .arg(&reference),
        );
        // Three levels: artifact -> {signature, sbom -> sbom signature}.
        let line_of = |needle: &str| {
            tree.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("[{mode}] {needle} missing from:\n{tree}"))
                .to_string()
        };
        let indent = |l: &str| l.chars().take_while(|c| !c.is_alphanumeric()).count();
        let sig = line_of("application/vnd.example.signature");
        let sbom_line = line_of("application/spdx+json");
        let sbom_sig = line_of("application/vnd.example.sbom.signature");
        assert_eq!(indent(&sig), indent(&sbom_line), "[{mode}]\n{tree}");
        assert!(
            indent(&sbom_sig) > indent(&sbom_line),
            "[{mode}] the SBOM's signature is not below the SBOM:\n{tree}"
        );

        let tags = run_text(
            oras(dir)
                .args(["repo", "tags", "--plain-http"])
                .arg(format!("{}/seed/artifact", registry.host())),
        );
        let fallback_tags = tags.lines().filter(|t| t.starts_with("sha256-")).count();
        if mode.ends_with("off") {
            assert_eq!(
                fallback_tags, 2,
                "[{mode}] expected the tag fallback for two subjects:\n{tags}"
            );
        } else {
            assert_eq!(
                fallback_tags, 0,
                "[{mode}] the referrers API should make fallback tags unnecessary:\n{tags}"
            );
        }
    }
}

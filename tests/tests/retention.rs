//! Tags that go by themselves, seen by real clients: an auto-prune policy
//! keeps the newest tags (never cosign's signature tags), and an image
//! labelled quay.expires-after loses its tag once that time has passed.

use std::path::Path;
use std::time::{Duration, Instant};

use quarry_e2e::clients::{cosign, cosign_sign_plain_http, crane, skopeo_copy_layout};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_text};

const CONFIG: &str = r#"
TAG_RETENTION_SWEEP_SECONDS: 1
FEATURE_AUTO_PRUNE: true
AUTO_PRUNE_POLICIES:
  - {namespace: ci, method: number_of_tags, value: 2}
"#;

fn tags(dir: &Path, repository: &str) -> Vec<String> {
    let mut tags: Vec<String> = run_text(crane(dir).args(["ls", "--insecure", repository]))
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// Poll `repository`'s tags until they are `expected` (the sweep runs every
/// second), or fail showing what they were.
fn wait_for_tags(dir: &Path, repository: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = tags(dir, repository);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{repository} has tags {now:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prune_keeps_the_newest_tags_and_signatures_and_labels_expire_tags() {
    let registry = Registry::start_with_config(Some(CONFIG));
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_image_layout(&root.join("image"), "v1", 1, 4096);
    let repository = format!("{host}/ci/app");
    for tag in ["build-1", "build-2", "build-3", "build-4"] {
        run(&mut skopeo_copy_layout(
            &root.join("image"),
            &format!("{repository}:{tag}"),
        ));
        // Push times must differ for "newest" to mean something.
        std::thread::sleep(Duration::from_millis(1100));
    }
    run(cosign(root).args(["generate-key-pair"]));
    run(&mut cosign_sign_plain_http(
        root,
        &format!("{repository}:build-4"),
    ));
    let digest =
        run_text(crane(root).args(["digest", "--insecure", &format!("{repository}:build-4")]));
    let signature_tag = format!("{}.sig", digest.trim().replace(':', "-"));
    wait_for_tags(root, &repository, &["build-3", "build-4", &signature_tag]);
    assert!(
        registry.log_text().contains("tag removed"),
        "{}",
        registry.log_text()
    );

    // quay.expires-after: the tag goes once 2 s have passed since its push,
    // in a namespace no prune policy covers.
    run(&mut skopeo_copy_layout(
        &root.join("image"),
        &format!("{host}/team/app:base"),
    ));
    run(crane(root).args([
        "mutate",
        "--insecure",
        "--label",
        "quay.expires-after=2s",
        &format!("{host}/team/app:base"),
        "-t",
        &format!("{host}/team/app:preview"),
    ]));
    wait_for_tags(root, &format!("{host}/team/app"), &["base"]);
    assert!(
        registry
            .log_text()
            .contains("its image has quay.expires-after=2s"),
        "{}",
        registry.log_text()
    );
}

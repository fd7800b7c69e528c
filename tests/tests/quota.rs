//! Namespace quotas with real clients: the push that would pass the
//! reject limit is refused with the numbers, the clients print them, and
//! deleting an image makes room.

use quarry_e2e::clients::{crane, oras, skopeo_copy_layout};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_refused};

const CONFIG: &str = r#"
FEATURE_QUOTA_MANAGEMENT: true
NAMESPACE_QUOTAS:
  - namespace: team
    limit_bytes: 100000
    limits: [{type: Warning, threshold_percent: 50}, {type: Reject, threshold_percent: 100}]
"#;

#[test]
fn a_push_past_the_reject_limit_is_refused_and_deleting_makes_room() {
    let registry = Registry::start_with_config(Some(CONFIG));
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Random layers do not compress: each image is a little over 60 kB.
    let first = write_image_layout(&root.join("first"), "v1", 2, 30_000);
    write_image_layout(&root.join("second"), "v1", 2, 30_000);
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{host}/team/app:v1"),
    ));
    assert!(
        registry.log_text().contains("past its warning limit"),
        "{}",
        registry.log_text()
    );

    let output = run_refused(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{host}/team/app:v2"),
    ));
    for part in [
        "namespace team is over its quota: this push would bring it to",
        "over its reject limit of 97.7 KiB (100000 bytes), 100% of limit_bytes 100000 in NAMESPACE_QUOTAS[0]",
    ] {
        assert!(output.contains(part), "{part:?} missing from:\n{output}");
    }
    std::fs::write(root.join("big.bin"), vec![7u8; 120_000]).unwrap();
    let output = run_refused(oras(root).args([
        "push",
        "--plain-http",
        &format!("{host}/team/files:v1"),
        "big.bin:application/octet-stream",
    ]));
    assert!(
        output.contains("namespace team is over its quota"),
        "{output}"
    );

    // Deleting the first image frees its share at once (the bytes go with
    // garbage collection); the second fits now.
    run(crane(root).args([
        "delete",
        "--insecure",
        &format!("{host}/team/app@{}", first.manifest_digest),
    ]));
    run(&mut skopeo_copy_layout(
        &root.join("second"),
        &format!("{host}/team/app:v2"),
    ));
    // Another namespace has no quota.
    run(&mut skopeo_copy_layout(
        &root.join("first"),
        &format!("{host}/other/app:v1"),
    ));
}

//! `quarry-registry gc` on a store real clients filled: a tag moved by
//! skopeo leaves the old image garbage, a cosign signature of the tagged
//! image is kept; `--dry-run` deletes nothing, two sweeps delete the old
//! image while the registry serves.

use std::process::Command;

use quarry_e2e::clients::{
    cosign, cosign_sign_plain_http, cosign_verify_plain_http, crane, skopeo_copy_layout,
};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, registry_binary, run, run_text};

/// `gc --dry-run` on the storage `storage_args` name.
fn dry_run(storage_args: &[&std::ffi::OsStr], grace_seconds: &str) -> String {
    run_text(Command::new(registry_binary()).args(storage_args).args([
        "gc",
        "--dry-run",
        "--grace-seconds",
        grace_seconds,
    ]))
}

/// A moved tag's old image is listed, whole; on a bucket as on a folder.
#[test]
fn dry_run_on_a_bucket_lists_the_same() {
    let minio = quarry_e2e::scale::Minio::start("gc-dry-run");
    let config = minio.registry_config("");
    let registry = Registry::start_shared(&config, &[]);
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = write_image_layout(&root.join("old"), "v1", 2, 4096);
    write_image_layout(&root.join("new"), "v1", 1, 4096);
    for layout in ["old", "new"] {
        run(&mut skopeo_copy_layout(
            &root.join(layout),
            &format!("{host}/team/app:v1"),
        ));
    }
    let config_file = root.join("config.yaml");
    std::fs::write(&config_file, &config).unwrap();
    let args = [std::ffi::OsStr::new("--config"), config_file.as_os_str()];
    let report = dry_run(&args, "0");
    assert!(
        report.contains(&format!("manifest team/app@{}", old.manifest_digest)),
        "{report}"
    );
    assert!(report.contains("1 manifests, 3 links, 4 blobs"), "{report}");
    assert!(dry_run(&args, "3600").contains("0 manifests, 0 links, 0 blobs"));
}

#[test]
fn dry_run_lists_the_image_a_moved_tag_left_and_keeps_signatures() {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = write_image_layout(&root.join("old"), "v1", 2, 4096);
    let new = write_image_layout(&root.join("new"), "v1", 1, 4096);
    for (layout, _) in [("old", &old), ("new", &new)] {
        run(&mut skopeo_copy_layout(
            &root.join(layout),
            &format!("{host}/team/app:v1"),
        ));
    }
    // A signature of what the tag names now (cosign's .sig tag).
    run(cosign(root).args(["generate-key-pair"]));
    run(&mut cosign_sign_plain_http(
        root,
        &format!("{host}/team/app@{}", new.manifest_digest),
    ));

    // Inside the grace period nothing is garbage.
    let args = [
        std::ffi::OsStr::new("--storage-path"),
        registry.data.as_os_str(),
    ];
    let report = dry_run(&args, "3600");
    assert!(
        report.contains("0 manifests, 0 links, 0 blobs (0 bytes) are garbage"),
        "{report}"
    );

    let report = dry_run(&args, "0");
    assert!(
        report.contains(&format!(
            "manifest team/app@{} (written",
            old.manifest_digest
        )),
        "{report}"
    );
    assert!(report.contains("no tag reaches it"), "{report}");
    for layer in &old.layer_digests {
        assert!(report.contains(&format!("blob {layer}")), "{report}");
        assert!(
            report.contains(&format!("link team/app -> {layer}")),
            "{report}"
        );
    }
    for layer in &new.layer_digests {
        assert!(
            !report.contains(layer.as_str()),
            "{layer} is kept: {report}"
        );
    }
    assert!(!report.contains(&new.manifest_digest), "{report}");
    // Only the old image goes: its manifest, the links of its config and
    // two layers, and those three blobs plus the manifest's own bytes. The
    // signature cosign stored for the tagged image is kept.
    assert!(report.contains("1 manifests, 3 links, 4 blobs"), "{report}");

    // Looking deleted nothing: the old image still pulls by digest.
    run(crane(root).args([
        "pull",
        "--insecure",
        &format!("{host}/team/app@{}", old.manifest_digest),
        "old.tar",
    ]));

    // Without --dry-run, while the registry serves: the first sweep
    // condemns, the second deletes the old image; the tagged image and its
    // signature stay and pull.
    let sweep = || {
        run_text(
            Command::new(registry_binary())
                .args(args)
                .args(["gc", "--grace-seconds", "0"]),
        )
    };
    let first = sweep();
    assert!(
        first.contains("deleted 0 manifests") && first.contains("condemned 8"),
        "{first}"
    );
    let second = sweep();
    assert!(
        second.contains("deleted 1 manifests, 3 links, 4 blobs"),
        "{second}"
    );
    let gone = crane(root)
        .args([
            "pull",
            "--insecure",
            &format!("{host}/team/app@{}", old.manifest_digest),
            "gone.tar",
        ])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the old image was collected");
    run(crane(root).args([
        "pull",
        "--insecure",
        &format!("{host}/team/app:v1"),
        "new.tar",
    ]));
    run(&mut cosign_verify_plain_http(
        root,
        &format!("{host}/team/app@{}", new.manifest_digest),
    ));
    assert!(dry_run(&args, "0").contains("0 manifests, 0 links, 0 blobs"));
}

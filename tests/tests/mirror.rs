//! Repository mirroring from CNCF distribution: a tag regex selects exactly
//! the right tags, cosign signatures and an SBOM come along (`cosign verify`
//! and `oras discover` against the mirror), a tag moved upstream is
//! followed on the next sync; a semver range with `signed_only` copies
//! only the signed versions in range, and `prune_vanished_tags` removes a
//! tag deleted upstream while a mirror without it keeps the tag; two
//! replicas sharing a bucket sync each period once, not twice.

use std::time::{Duration, Instant};

use quarry_e2e::clients::{
    cosign, cosign_sign_plain_http, cosign_verify_plain_http, oras, oras_attach_plain_http,
    skopeo_copy_layout,
};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::scale::{Minio, replicas};
use quarry_e2e::upstreams::Distribution;
use quarry_e2e::{Registry, http, run, run_text};

fn mirror_config(upstream: &str, interval: u64) -> String {
    format!(
        "FEATURE_REPO_MIRROR: true\nREPO_MIRROR_INTERVAL: {interval}\nREPO_MIRRORS:\n  - repository: mirrors/app\n    external_reference: \"{upstream}/tools/app\"\n    insecure: true\n    tag_regex: 'v1\\.[0-9]+'\n"
    )
}

fn tags(registry: &Registry) -> Vec<String> {
    tags_of(registry, "mirrors/app")
}

/// The tags of `repository`, cosign's and the fallback's `sha256-` tags
/// left out.
fn plain_tags(registry: &Registry, repository: &str) -> Vec<String> {
    let mut tags = tags_of(registry, repository);
    tags.retain(|t| !t.starts_with("sha256-"));
    tags
}

fn tags_of(registry: &Registry, repository: &str) -> Vec<String> {
    let list: serde_json::Value = http::blocking()
        .get(format!("{}/v2/{repository}/tags/list", registry.url()))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_default();
    list["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /mirror/status`: each mirror's last sync.
fn mirror_status(registry: &Registry) -> serde_json::Value {
    http::blocking()
        .get(format!("{}/mirror/status", registry.url()))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("GET /mirror/status")
}

fn wait_for(what: &str, timeout: Duration, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !holds() {
        assert!(Instant::now() < deadline, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn mirrors_selected_tags_with_signatures_and_sboms() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let upstream = Distribution::start();
    let mut digests = std::collections::BTreeMap::new();
    for tag in ["v1.0", "v1.1", "v2.0", "latest", "v1.1-rc1"] {
        let layout = dir.join(tag);
        let image = write_image_layout(&layout, "v1", 1, 32 * 1024);
        run(&mut skopeo_copy_layout(
            &layout,
            &format!("{}/tools/app:{tag}", upstream.host()),
        ));
        digests.insert(tag, image.manifest_digest);
    }
    run(cosign(dir).arg("generate-key-pair"));
    run(&mut cosign_sign_plain_http(
        dir,
        &format!("{}/tools/app@{}", upstream.host(), digests["v1.0"]),
    ));
    std::fs::write(
        dir.join("sbom.json"),
        br#"{"spdxVersion":"SPDX-2.3","packages":[]}"#,
    )
    .unwrap();
    run(&mut oras_attach_plain_http(
        dir,
        "application/spdx+json",
        &format!("{}/tools/app:v1.1", upstream.host()),
        "sbom.json",
    ));

    // v1.1 is immutable here: the mirror must not move it.
    let immutable = "FEATURE_IMMUTABLE_TAGS: true\nIMMUTABLE_TAGS_POLICIES: [{namespace: mirrors, tagPattern: 'v1\\.1'}]\n";
    // A second mirror whose upstream does not answer: its status says so.
    let unreachable = "  - repository: mirrors/gone\n    external_reference: \"127.0.0.1:1/tools/gone\"\n    insecure: true\n";
    let mirror = Registry::start_with_config(Some(&format!(
        "{}{unreachable}{immutable}",
        mirror_config(&upstream.host(), 2)
    )));
    wait_for("a first sync", Duration::from_secs(60), || {
        mirror.metric("quarry_mirror_runs_total{result=\"ok\"}") >= 1.0
    });
    wait_for("the failed sync recorded", Duration::from_secs(30), || {
        !mirror_status(&mirror)["mirrors"][1]["lastSync"].is_null()
    });
    let status = mirror_status(&mirror);
    let (app, gone) = (&status["mirrors"][0], &status["mirrors"][1]);
    assert_eq!(app["repository"], "mirrors/app", "{status}");
    assert_eq!(app["lastSync"]["result"], "succeeded", "{status}");
    assert_eq!(app["lastSync"]["tagsSelected"], 2, "{status}");
    assert_eq!(app["lastSync"]["tagsCopied"], 2, "{status}");
    assert!(
        app["lastSync"]["bytesCopied"].as_u64() > Some(64 * 1024),
        "{status}"
    );
    assert_eq!(gone["lastSync"]["result"], "failed", "{status}");
    let why = gone["lastSync"]["summary"].as_str().unwrap_or_default();
    assert!(
        why.contains("127.0.0.1:1"),
        "the failure names the upstream: {why}"
    );
    assert!(
        mirror.metric("quarry_mirror_runs_total{result=\"failed\"}") >= 1.0,
        "a failed sync is counted"
    );
    let got = tags(&mirror);
    let plain: Vec<&String> = got.iter().filter(|t| !t.starts_with("sha256-")).collect();
    assert_eq!(
        plain,
        ["v1.0", "v1.1"],
        "exactly the tags the regex selects: {got:?}"
    );
    let sig_tag = format!("{}.sig", digests["v1.0"].replace(':', "-"));
    assert!(
        got.contains(&sig_tag),
        "cosign's signature tag came along: {got:?}"
    );

    let reference = format!("{}/mirrors/app@{}", mirror.host(), digests["v1.0"]);
    let verified = run_text(&mut cosign_verify_plain_http(dir, &reference));
    assert!(verified.contains(&digests["v1.0"]), "{verified}");
    let tree = run_text(
        oras(dir)
            .args(["discover", "--plain-http", "--format", "tree"])
            .arg(format!("{}/mirrors/app:v1.1", mirror.host())),
    );
    assert!(tree.contains("application/spdx+json"), "{tree}");

    // A tag moved upstream is followed on a later sync; an immutable one
    // is not.
    let moved = write_image_layout(&dir.join("moved"), "v1", 1, 16 * 1024);
    for tag in ["v1.1", "v1.0"] {
        run(&mut skopeo_copy_layout(
            &dir.join("moved"),
            &format!("{}/tools/app:{tag}", upstream.host()),
        ));
    }
    let digest_of = |tag: &str| {
        http::blocking()
            .head(format!("{}/v2/mirrors/app/manifests/{tag}", mirror.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .ok()
            .and_then(|r| {
                r.headers()
                    .get("docker-content-digest")?
                    .to_str()
                    .ok()
                    .map(str::to_string)
            })
    };
    wait_for("the moved tag followed", Duration::from_secs(30), || {
        digest_of("v1.0").as_deref() == Some(moved.manifest_digest.as_str())
    });
    // A whole sync after the one that moved v1.0 has seen v1.1 too.
    let ok_runs = || mirror.metric("quarry_mirror_runs_total{result=\"ok\"}");
    let runs = ok_runs();
    wait_for("one more sync", Duration::from_secs(30), || {
        ok_runs() > runs
    });
    assert_eq!(
        digest_of("v1.1").as_deref(),
        Some(digests["v1.1"].as_str()),
        "an immutable tag moved"
    );
    // The image the tag left is still there by digest.
    assert!(
        http::blocking()
            .get(format!(
                "{}/v2/mirrors/app/manifests/{}",
                mirror.url(),
                digests["v1.0"]
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .status()
            .is_success()
    );
}

#[test]
fn semver_range_signed_only_and_pruning_of_vanished_tags() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let upstream = Distribution::start();
    let push = |tag: &str| {
        let layout = dir.join(tag);
        let image = write_image_layout(&layout, "v1", 1, 16 * 1024);
        run(&mut skopeo_copy_layout(
            &layout,
            &format!("{}/tools/app:{tag}", upstream.host()),
        ));
        image.manifest_digest
    };
    let mut digests = std::collections::BTreeMap::new();
    for tag in [
        "v1.2.0",
        "v1.3.0",
        "v1.4.0-rc.1",
        "v2.0.0",
        "1.1.9",
        "latest",
    ] {
        digests.insert(tag, push(tag));
    }
    run(cosign(dir).arg("generate-key-pair"));
    let sign = |tag: &str| {
        run(&mut cosign_sign_plain_http(
            dir,
            &format!("{}/tools/app@{}", upstream.host(), digests[tag]),
        ))
    };
    // In the range: v1.2.0 and v1.3.0 (a pre-release is not, nor 1.1.9);
    // signed: v1.3.0, and v2.0.0 which is out of range.
    sign("v1.3.0");
    sign("v2.0.0");
    let mirrors = |name: &str, extra: &str| {
        format!(
            "  - repository: mirrors/{name}\n    external_reference: \"{}/tools/app\"\n    insecure: true\n    semver: '>=1.2, <2'\n{extra}",
            upstream.host()
        )
    };
    let config = format!(
        "FEATURE_REPO_MIRROR: true\nREPO_MIRROR_INTERVAL: 2\nREPO_MIRRORS:\n{}{}",
        mirrors(
            "signed",
            "    signed_only: true\n    prune_vanished_tags: true\n"
        ),
        mirrors("kept", "")
    );
    let mirror = Registry::start_with_config(Some(&config));
    let ok_runs = || mirror.metric("quarry_mirror_runs_total{result=\"ok\"}");
    wait_for("a first sync of both", Duration::from_secs(60), || {
        ok_runs() >= 2.0
    });
    let status = mirror_status(&mirror);
    let (signed, kept) = (
        &status["mirrors"][0]["lastSync"],
        &status["mirrors"][1]["lastSync"],
    );
    assert_eq!(signed["tagsSelected"], 2, "{status}");
    assert_eq!(signed["tagsCopied"], 1, "{status}");
    assert_eq!(signed["tagsSkippedUnsigned"], 1, "{status}");
    assert_eq!(plain_tags(&mirror, "mirrors/signed"), ["v1.3.0"]);
    assert_eq!(kept["tagsCopied"], 2, "{status}");
    assert_eq!(plain_tags(&mirror, "mirrors/kept"), ["v1.2.0", "v1.3.0"]);
    let signature = format!("{}.sig", digests["v1.3.0"].replace(':', "-"));
    assert!(
        tags_of(&mirror, "mirrors/signed").contains(&signature),
        "the signature came along"
    );

    // Signed later: copied on a later sync.
    sign("v1.2.0");
    wait_for(
        "v1.2.0 mirrored once signed",
        Duration::from_secs(30),
        || plain_tags(&mirror, "mirrors/signed") == ["v1.2.0", "v1.3.0"],
    );

    // v1.3.0 deleted upstream: pruned by the mirror told to, kept by the
    // other.
    let deleted = http::blocking()
        .delete(format!(
            "http://{}/v2/tools/app/manifests/{}",
            upstream.host(),
            digests["v1.3.0"]
        ))
        .send()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 202, "deleting v1.3.0 upstream");
    wait_for("v1.3.0 pruned", Duration::from_secs(30), || {
        plain_tags(&mirror, "mirrors/signed") == ["v1.2.0"]
    });
    let runs = ok_runs();
    wait_for("one more sync of both", Duration::from_secs(30), || {
        ok_runs() >= runs + 2.0
    });
    assert_eq!(
        plain_tags(&mirror, "mirrors/kept"),
        ["v1.2.0", "v1.3.0"],
        "a vanished tag is kept unless told otherwise"
    );
}

#[test]
fn two_replicas_on_one_bucket_sync_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let upstream = Distribution::start();
    let layout = dir.join("v1.0");
    write_image_layout(&layout, "v1", 1, 32 * 1024);
    run(&mut skopeo_copy_layout(
        &layout,
        &format!("{}/tools/app:v1.0", upstream.host()),
    ));
    let minio = Minio::start("mirror");
    // One period of an hour: both replicas reach for the same claim.
    let config = mirror_config(&upstream.host(), 3600);
    let pair = replicas(&minio, 2, &config);
    let runs = || -> f64 {
        pair.iter()
            .map(|r| r.metric("quarry_mirror_runs_total"))
            .sum()
    };
    wait_for("a sync by one of them", Duration::from_secs(60), || {
        runs() >= 1.0
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        runs(),
        1.0,
        "the two replicas synced the period {} times",
        runs()
    );
    // Both tell the same last sync, whichever of them ran it.
    let told: Vec<serde_json::Value> = pair
        .iter()
        .map(|r| mirror_status(r)["mirrors"][0]["lastSync"].clone())
        .collect();
    assert_eq!(told[0]["tagsCopied"], 1, "{told:?}");
    assert_eq!(
        told[0], told[1],
        "the replicas disagree about the last sync"
    );
    for r in &pair {
        assert_eq!(tags(r), ["v1.0"]);
    }
}

//! The mark rules on both backends: a store with a tagged image, an index
//! and its children, signatures of kept and of garbage manifests, a blob
//! shared across repositories, and young content inside the grace period.

use std::sync::Arc;

use super::*;
use crate::gc::fixture::{IMAGE, INDEX, blob, image, put, repo};
use crate::storage::{FilesystemStorage, ObjectStorage};

fn manifests(report: &Report) -> BTreeSet<(String, Digest)> {
    report
        .garbage
        .iter()
        .filter_map(|g| match &g.item {
            Item::Manifest { repo, digest } => Some((repo.clone(), digest.clone())),
            _ => None,
        })
        .collect()
}

fn blobs(report: &Report) -> BTreeSet<Digest> {
    report
        .garbage
        .iter()
        .filter_map(|g| match &g.item {
            Item::Blob { digest, .. } => Some(digest.clone()),
            _ => None,
        })
        .collect()
}

fn links(report: &Report) -> BTreeSet<(String, Digest)> {
    report
        .garbage
        .iter()
        .filter_map(|g| match &g.item {
            Item::Link { repo, digest } => Some((repo.clone(), digest.clone())),
            _ => None,
        })
        .collect()
}

async fn marks_what_no_tag_keeps(s: &dyn Storage) {
    let (app, other) = (repo("team/app"), repo("team/other"));
    let t = |tag: &str| Tag::parse(tag).unwrap();

    // --- written before the cut-off -----------------------------------
    let (tagged, _, tagged_layer) = image(s, &app, "tagged layer", None).await;
    s.tag_set(&app, &t("v1"), &tagged).await.unwrap();
    let (signature, _, signature_layer) = image(s, &app, "signature", Some(&tagged)).await;
    let (untagged, _, untagged_layer) = image(s, &app, "untagged layer", None).await;
    let (orphan_sig, _, orphan_sig_layer) = image(s, &app, "orphan sig", Some(&untagged)).await;
    // An index reaches its children.
    let (child, _, child_layer) = image(s, &app, "child layer", None).await;
    let index = put(
        s,
        &app,
        INDEX,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{IMAGE}","digest":"{child}","size":1}}]}}"#
        ),
    )
    .await;
    s.tag_set(&app, &t("multi"), &index).await.unwrap();
    // A layer shared with another repository's tagged image stays, though
    // the manifest naming it here is garbage.
    let (shared_untagged, _, _) = image(s, &app, "shared layer", None).await;
    let (other_tagged, _, shared_layer) = image(s, &other, "shared layer", None).await;
    s.tag_set(&other, &t("latest"), &other_tagged)
        .await
        .unwrap();
    // A blob uploaded long ago that no manifest ever named.
    let stray = blob(s, &app, "stray upload").await;

    tokio::time::sleep(Duration::from_millis(50)).await;
    let cutoff = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // --- written after the cut-off: inside the grace period --------------
    let (young, _, young_layer) = image(s, &app, "young layer", None).await;
    let young_upload = blob(s, &app, "young upload, manifest on the way").await;

    let grace = Duration::from_secs(3600);
    let report = find(s, grace, cutoff + grace).await.unwrap();

    let app_name = app.to_string();
    assert_eq!(
        manifests(&report),
        BTreeSet::from([
            (app_name.clone(), untagged.clone()),
            (app_name.clone(), orphan_sig.clone()),
            (app_name.clone(), shared_untagged.clone()),
        ]),
        "{report:#?}"
    );
    let reasons: Vec<_> = report
        .garbage
        .iter()
        .filter(|g| matches!(&g.item, Item::Manifest { digest, .. } if *digest == orphan_sig))
        .map(|g| g.reason.clone())
        .collect();
    assert_eq!(
        reasons,
        vec![Reason::OrphanedReferrer {
            subject: untagged.clone()
        }]
    );

    let garbage_blobs = blobs(&report);
    // (shared_untagged has the same content as other_tagged, so its
    // manifest link in team/app is garbage but its bytes stay.)
    assert_eq!(shared_untagged, other_tagged);
    for digest in [
        &untagged_layer,
        &orphan_sig_layer,
        &stray,
        &untagged,
        &orphan_sig,
    ] {
        assert!(
            garbage_blobs.contains(digest),
            "{digest} should be garbage: {report:#?}"
        );
    }
    for digest in [
        &tagged,
        &tagged_layer,
        &signature,
        &signature_layer,
        &index,
        &child,
        &child_layer,
        &shared_layer,
        &other_tagged,
        &young,
        &young_layer,
        &young_upload,
    ] {
        assert!(
            !garbage_blobs.contains(digest),
            "{digest} must be kept: {report:#?}"
        );
    }
    // The links of the garbage manifests go; the shared layer's link in
    // team/app is unused there (its manifest is garbage) though the blob
    // stays for team/other.
    let garbage_links = links(&report);
    assert!(garbage_links.contains(&(app_name.clone(), untagged_layer.clone())));
    assert!(garbage_links.contains(&(app_name.clone(), shared_layer.clone())));
    assert!(garbage_links.contains(&(app_name.clone(), stray.clone())));
    assert!(!garbage_links.contains(&(app_name.clone(), young_upload.clone())));
    assert!(!garbage_links.contains(&(app_name.clone(), tagged_layer.clone())));
    assert!(
        report.summary().contains("3 manifests"),
        "{}",
        report.summary()
    );

    // With no grace at all and the clock past everything, only what tags
    // keep stays: the young untagged image goes too.
    let report = find(
        s,
        Duration::ZERO,
        SystemTime::now() + Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(manifests(&report).contains(&(app_name.clone(), young.clone())));
    assert!(!blobs(&report).contains(&tagged_layer));
}

#[tokio::test]
async fn marks_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let store = FilesystemStorage::open(dir.path()).unwrap();
    marks_what_no_tag_keeps(&store).await;
}

#[tokio::test]
async fn marks_in_a_bucket() {
    let bucket = Arc::new(object_store::memory::InMemory::new());
    let store = ObjectStorage::new(bucket, "registry", "memory".into());
    marks_what_no_tag_keeps(&store).await;
}

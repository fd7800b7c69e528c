//! The sweep and its protocol with requests, on both backends, with the
//! dangerous interleavings forced: each test stops a sweep between its
//! mark and its deletions (`plan` / `carry_out`) or inside one deletion
//! (`markers::begin` / `markers::finish`) and runs requests there, the way
//! the handlers make them (gc/touch.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::fixture::{IMAGE, INDEX, blob, image, put, repo};
use super::markers::{self, CONDEMNED, DELETING, Deletion, Subject};
use super::sweep::{self, Outcome};
use super::touch;
use crate::digest::Digest;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::storage::{FilesystemStorage, ObjectStorage, Storage};

const NO_GRACE: Duration = Duration::ZERO;

fn tag(t: &str) -> Tag {
    Tag::parse(t).unwrap()
}

/// A manifest push as the handler makes it: write, rescue, then tag.
/// `Err` is the MANIFEST_BLOB_UNKNOWN message.
async fn push_tag(
    s: &dyn Storage,
    r: &RepoName,
    digest: &Digest,
    name: &str,
) -> Result<(), String> {
    let stored = s.manifest_get(r, digest).await.unwrap().unwrap();
    let facts =
        manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm()).unwrap();
    s.manifest_put(r, digest, &stored).await.unwrap();
    if let Some(gone) = touch::manifest_written(s, r, &facts).await.unwrap() {
        return Err(gone);
    }
    s.tag_set(r, &tag(name), digest).await.unwrap();
    Ok(())
}

async fn markers_left(s: &dyn Storage) -> usize {
    markers::list(s, CONDEMNED).await.unwrap().len()
        + markers::list(s, DELETING).await.unwrap().len()
}

/// The condemnation a subject's condemned marker holds.
async fn condemnation(s: &dyn Storage, subject: &Subject) -> String {
    markers::list(s, CONDEMNED)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.subject == *subject)
        .map(|m| m.condemnation)
        .unwrap_or_else(|| panic!("{subject} is not condemned"))
}

/// A blob nothing names, condemned by one sweep and with a later sweep's
/// deletion begun: the blob, its subject and the condemnation.
async fn blob_being_deleted(
    s: &dyn Storage,
    r: &RepoName,
    content: &str,
) -> (Digest, Subject, String) {
    let layer = blob(s, r, content).await;
    sweep_now(s).await;
    let subject = Subject::Blob(layer.clone());
    let id = condemnation(s, &subject).await;
    assert!(markers::begin(s, &subject, &id).await.unwrap());
    (layer, subject, id)
}

async fn sweep_now(s: &dyn Storage) -> Outcome {
    sweep::sweep(s, NO_GRACE).await.unwrap()
}

/// Garbage is condemned by one sweep and deleted by the next; what a tag
/// keeps, and a blob shared with a kept image, stay.
async fn deletes_in_two_sweeps(s: &dyn Storage) {
    let app = repo("team/app");
    let (kept, kept_config, kept_layer) = image(s, &app, "kept layer", None).await;
    s.tag_set(&app, &tag("v1"), &kept).await.unwrap();
    let (gone, _, gone_layer) = image(s, &app, "garbage layer", None).await;

    let first = sweep_now(s).await;
    assert_eq!(first.deleted_blobs, 0, "{first:?}");
    assert!(
        first.condemned >= 3,
        "manifest, its layer's link and blob: {first:?}"
    );
    assert!(s.manifest_get(&app, &gone).await.unwrap().is_some());

    let second = sweep_now(s).await;
    assert_eq!(second.deleted_manifests, 1, "{second:?}");
    assert_eq!(
        second.deleted_blobs, 2,
        "the manifest's bytes and its layer: {second:?}"
    );
    assert!(second.deleted_bytes > 0);
    assert!(s.manifest_get(&app, &gone).await.unwrap().is_none());
    assert!(!s.blob_present(&gone_layer).await.unwrap());
    assert!(!s.repo_blob_linked(&app, &gone_layer).await.unwrap());
    // The config blob is shared with the kept image.
    for d in [&kept, &kept_config, &kept_layer] {
        assert!(s.blob_present(d).await.unwrap(), "{d} must stay");
    }
    assert!(s.repo_blob_linked(&app, &kept_config).await.unwrap());
    assert_eq!(markers_left(s).await, 0);
    assert_eq!(
        sweep_now(s).await.with_duration(Duration::ZERO),
        Outcome::default()
    );
}

/// skopeo's way: HEAD finds a condemned blob, skips the upload, pushes a
/// manifest naming it. The HEAD rescued it; the next sweep keeps it.
async fn head_then_manifest(s: &dyn Storage) {
    let app = repo("team/app");
    let (old, _, layer) = image(s, &app, "layer", None).await;
    s.manifest_delete(&app, &old).await.unwrap();
    sweep_now(s).await; // condemns the layer's link and blob
    let plan = sweep::plan(s, NO_GRACE).await.unwrap(); // ... and marks them garbage again
    assert!(
        touch::blob_in_repo(s, &app, &layer).await.unwrap(),
        "HEAD answers 200"
    );
    let outcome = plan.carry_out(s).await.unwrap();
    assert!(outcome.rescued >= 2, "{outcome:?}");
    let (new, _, _) = image(s, &app, "layer", Some(&old)).await;
    push_tag(s, &app, &new, "v2").await.unwrap();
    sweep_now(s).await;
    sweep_now(s).await;
    assert!(s.blob_present(&layer).await.unwrap());
    assert!(s.repo_blob_linked(&app, &layer).await.unwrap());
}

/// A manifest pushed after its blob's deletion began is refused; a HEAD in
/// that window answers 404, so the client uploads again.
async fn manifest_during_deletion(s: &dyn Storage) {
    let app = repo("team/app");
    let (layer, subject, id) = blob_being_deleted(s, &app, "lonely layer").await;
    assert!(
        !touch::blob_in_repo(s, &app, &layer).await.unwrap(),
        "HEAD answers 404"
    );
    let config = blob(s, &app, "{}").await;
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":12}}]}}"#
    );
    let manifest = put(s, &app, IMAGE, json).await;
    let refused = push_tag(s, &app, &manifest, "v1").await.unwrap_err();
    assert!(
        refused.contains(&layer.to_string()) && refused.contains("garbage collection"),
        "{refused}"
    );
    assert!(
        s.tag_get(&app, &tag("v1")).await.unwrap().is_none(),
        "no tag for a refused push"
    );
    // The HEAD deleted the condemned marker, so this deletion is called off;
    // had nothing touched the blob, it would have gone.
    assert_eq!(
        markers::finish(s, &subject, &id, 12).await.unwrap(),
        Deletion::Rescued
    );
    assert!(s.blob_present(&layer).await.unwrap());
}

/// A deletion that began with nothing in the way goes through, and what
/// came after the decision sees it gone.
async fn deletion_goes_through(s: &dyn Storage) {
    let app = repo("team/app");
    let (layer, subject, id) = blob_being_deleted(s, &app, "lonely layer").await;
    assert!(
        !markers::begin(s, &subject, &id).await.unwrap(),
        "a second sweep backs off"
    );
    assert_eq!(
        markers::finish(s, &subject, &id, 12).await.unwrap(),
        Deletion::Deleted(12)
    );
    assert!(!s.blob_present(&layer).await.unwrap());
    assert!(!touch::blob_anywhere(s, &layer).await.unwrap());
}

/// A mount from a repository whose link is condemned rescues it.
async fn mount_then_manifest(s: &dyn Storage) {
    let (app, other) = (repo("team/app"), repo("team/other"));
    let layer = blob(s, &app, "mounted layer").await;
    sweep_now(s).await;
    let plan = sweep::plan(s, NO_GRACE).await.unwrap();
    // The mount, as the handler does it: rescue the source, link the target.
    assert!(touch::blob_in_repo(s, &app, &layer).await.unwrap());
    s.repo_blob_link(&other, &layer).await.unwrap();
    plan.carry_out(s).await.unwrap();
    let (image_digest, _, image_layer) = image(s, &other, "mounted layer", None).await;
    assert_eq!(image_layer, layer);
    push_tag(s, &other, &image_digest, "v1").await.unwrap();
    for _ in 0..3 {
        sweep_now(s).await;
    }
    assert!(s.blob_present(&layer).await.unwrap());
    assert!(s.repo_blob_linked(&other, &layer).await.unwrap());
    // team/app's link was never used by a manifest: it goes.
    assert!(!s.repo_blob_linked(&app, &layer).await.unwrap());
}

/// A tag moved back onto a condemned image while a sweep that marked it
/// garbage is about to delete: the image, its blobs and its signature (a
/// referrer, condemned with it) all stay.
async fn tag_moved_back_during_sweep(s: &dyn Storage) {
    let app = repo("team/app");
    let (old, old_config, old_layer) = image(s, &app, "old layer", None).await;
    let (signature, _, signature_layer) = image(s, &app, "signature", Some(&old)).await;
    sweep_now(s).await; // untagged: everything condemned
    let plan = sweep::plan(s, NO_GRACE).await.unwrap();
    push_tag(s, &app, &old, "v1").await.unwrap();
    let outcome = plan.carry_out(s).await.unwrap();
    assert_eq!(outcome.deleted_blobs, 0, "{outcome:?}");
    for d in [&old, &old_config, &old_layer, &signature, &signature_layer] {
        assert!(s.blob_present(d).await.unwrap(), "{d} must stay");
    }
    assert!(s.manifest_get(&app, &signature).await.unwrap().is_some());
    assert_eq!(s.referrers(&app, &old).await.unwrap().len(), 1);
    for _ in 0..2 {
        assert_eq!(sweep_now(s).await.deleted_blobs, 0);
    }
    assert_eq!(markers_left(s).await, 0);
}

/// An index pushed over condemned children (pushed by digest long ago)
/// rescues the children and their blobs.
async fn index_over_condemned_children(s: &dyn Storage) {
    let app = repo("team/app");
    let (amd, _, amd_layer) = image(s, &app, "amd64 layer", None).await;
    let (arm, _, arm_layer) = image(s, &app, "arm64 layer", None).await;
    sweep_now(s).await;
    let plan = sweep::plan(s, NO_GRACE).await.unwrap();
    let index = put(
        s,
        &app,
        INDEX,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{IMAGE}","digest":"{amd}","size":1}},{{"mediaType":"{IMAGE}","digest":"{arm}","size":1}}]}}"#
        ),
    )
    .await;
    push_tag(s, &app, &index, "multi").await.unwrap();
    plan.carry_out(s).await.unwrap();
    for _ in 0..2 {
        sweep_now(s).await;
    }
    for d in [&index, &amd, &arm, &amd_layer, &arm_layer] {
        assert!(s.blob_present(d).await.unwrap(), "{d} must stay");
    }
    assert!(s.repo_blob_linked(&app, &arm_layer).await.unwrap());
}

/// Two sweeps at once (two replicas on one bucket): each item goes once,
/// nothing fails, what is kept stays.
async fn two_sweeps_at_once(s: &dyn Storage) {
    let app = repo("team/app");
    let (kept, _, kept_layer) = image(s, &app, "kept", None).await;
    s.tag_set(&app, &tag("v1"), &kept).await.unwrap();
    for i in 0..5 {
        image(s, &app, &format!("garbage {i}"), None).await;
    }
    let (a, b) = futures::join!(sweep::sweep(s, NO_GRACE), sweep::sweep(s, NO_GRACE));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.errors + b.errors, 0);
    let (a2, b2) = futures::join!(sweep::sweep(s, NO_GRACE), sweep::sweep(s, NO_GRACE));
    let (a2, b2) = (a2.unwrap(), b2.unwrap());
    assert_eq!(a2.errors + b2.errors, 0, "{a2:?} {b2:?}");
    let deleted =
        a.deleted_manifests + b.deleted_manifests + a2.deleted_manifests + b2.deleted_manifests;
    assert_eq!(deleted, 5, "{a:?} {b:?} {a2:?} {b2:?}");
    assert!(s.blob_present(&kept_layer).await.unwrap());
    sweep_now(s).await;
    assert_eq!(markers_left(s).await, 0);
}

/// A request rescues a subject after a sweep listed its condemnation, and
/// a second sweep, whose mark predates the request, condemns it again
/// before the first deletes: the first sees a condemnation that is not the
/// one it listed, and keeps the subject.
async fn condemned_again_after_a_rescue(s: &dyn Storage) {
    let app = repo("team/app");
    let layer = blob(s, &app, "rescued, then condemned by a stale sweep").await;
    sweep_now(s).await;
    let first = sweep::plan(s, NO_GRACE).await.unwrap();
    let stale = sweep::plan(s, NO_GRACE).await.unwrap();
    assert!(touch::blob_in_repo(s, &app, &layer).await.unwrap());
    // The stale sweep sees no marker now and condemns anew.
    assert!(
        markers::condemn(s, &Subject::Blob(layer.clone()))
            .await
            .unwrap()
    );
    drop(stale);
    let outcome = first.carry_out(s).await.unwrap();
    assert_eq!(outcome.deleted_blobs, 0, "{outcome:?}");
    assert!(s.blob_present(&layer).await.unwrap());
}

/// A sweep that died inside a deletion: the next one finishes it once the
/// marker is old, or only removes the marker if a request rescued the blob.
async fn abandoned_deletions(s: &dyn Storage) {
    let app = repo("team/app");
    let dead = blob(s, &app, "the sweep died deleting me").await;
    let saved = blob(s, &app, "a HEAD saved me").await;
    sweep_now(s).await;
    for d in [&dead, &saved] {
        let subject = Subject::Blob(d.clone());
        let id = condemnation(s, &subject).await;
        assert!(markers::begin(s, &subject, &id).await.unwrap());
    }
    touch::blob_in_repo(s, &app, &saved).await.unwrap();
    let later = SystemTime::now() + markers::DELETING_ABANDONED_AFTER + Duration::from_secs(1);
    for marker in markers::list(s, DELETING).await.unwrap() {
        assert!(
            markers::recover(s, &marker, SystemTime::now())
                .await
                .unwrap()
                .is_none(),
            "too young"
        );
        markers::recover(s, &marker, later).await.unwrap();
    }
    assert!(!s.blob_present(&dead).await.unwrap());
    assert!(s.blob_present(&saved).await.unwrap());
    assert!(markers::list(s, DELETING).await.unwrap().is_empty());
}

/// An upload of a digest a sweep is deleting waits until the deletion is
/// done, so what it writes is not deleted after it.
async fn upload_waits_for_deletion(s: Arc<dyn Storage>) {
    let app = repo("team/app");
    let (layer, subject, id) = blob_being_deleted(s.as_ref(), &app, "uploaded again").await;
    let finished = Arc::new(AtomicBool::new(false));
    let (store, done) = (s.clone(), finished.clone());
    let sweeper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        done.store(true, Ordering::SeqCst);
        markers::finish(store.as_ref(), &subject, &id, 0)
            .await
            .unwrap()
    });
    assert!(
        touch::before_commit(s.as_ref(), &app, &layer)
            .await
            .unwrap()
    );
    assert!(
        finished.load(Ordering::SeqCst),
        "the commit went ahead during the deletion"
    );
    // The commit's rescue came after `begin`: the sweep sees it and stops.
    assert_eq!(sweeper.await.unwrap(), Deletion::Rescued);
    blob(s.as_ref(), &app, "uploaded again").await;
    assert!(s.blob_present(&layer).await.unwrap());
}

fn filesystem() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let store = FilesystemStorage::open(dir.path()).unwrap();
    (dir, Arc::new(store))
}

fn bucket() -> Arc<dyn Storage> {
    let bucket = Arc::new(object_store::memory::InMemory::new());
    Arc::new(ObjectStorage::new(bucket, "registry", "memory".into()))
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_the_filesystem {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, s) = super::filesystem();
                super::$name(s.as_ref()).await;
            })*
        }
        mod in_a_bucket {
            $(#[tokio::test]
            async fn $name() {
                let s = super::bucket();
                super::$name(s.as_ref()).await;
            })*
        }
    };
}

on_both_backends!(
    deletes_in_two_sweeps,
    head_then_manifest,
    manifest_during_deletion,
    deletion_goes_through,
    mount_then_manifest,
    tag_moved_back_during_sweep,
    index_over_condemned_children,
    two_sweeps_at_once,
    condemned_again_after_a_rescue,
    abandoned_deletions,
);

#[tokio::test]
async fn upload_waits_for_deletion_on_the_filesystem() {
    let (_dir, s) = filesystem();
    upload_waits_for_deletion(s).await;
}

#[tokio::test]
async fn upload_waits_for_deletion_in_a_bucket() {
    upload_waits_for_deletion(bucket()).await;
}

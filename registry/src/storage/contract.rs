//! The storage contract as tests every backend runs (the filesystem one
//! and the object-store one call these from their own test modules).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{ByteRange, ByteStream, ReferrerDescriptor, Storage, StorageError, StoredManifest};
use crate::digest::{Algorithm, Digest};
use crate::names::{RepoName, Tag};

pub fn repo(s: &str) -> RepoName {
    RepoName::parse(s).expect("valid repository name")
}

pub fn body(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures::stream::iter(items))
}

pub async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("stream chunk"));
    }
    out
}

/// Chunks append in order, a wrong offset is refused, a wrong digest
/// leaves nothing visible, the right one makes a linked blob.
pub async fn chunked_upload_commits_only_matching_content(store: &dyn Storage) {
    let r = repo("a/b");
    let id = store.upload_start(&r).await.unwrap();
    assert_eq!(
        store
            .upload_append(&r, &id, Some(0), body(&[b"hello "]))
            .await
            .unwrap(),
        6
    );
    let err = store
        .upload_append(&r, &id, Some(3), body(&[b"x"]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetMismatch {
            current: 6,
            claimed: 3
        }
    ));
    assert_eq!(
        store
            .upload_append(&r, &id, None, body(&[b"wor", b"ld"]))
            .await
            .unwrap(),
        11
    );
    let wrong = Digest::of_bytes(Algorithm::Sha256, b"something else");
    assert!(matches!(
        store.upload_commit(&r, &id, &wrong).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
    let right = Digest::of_bytes(Algorithm::Sha256, b"hello world");
    assert_eq!(store.upload_commit(&r, &id, &right).await.unwrap(), 11);
    assert!(store.repo_blob_linked(&r, &right).await.unwrap());
    assert!(
        !store
            .repo_blob_linked(&repo("other"), &right)
            .await
            .unwrap()
    );
    let range = ByteRange {
        start: 6,
        end_inclusive: 10,
    };
    assert_eq!(
        read_all(store.blob_read(&right, Some(range)).await.unwrap()).await,
        b"world"
    );
    assert!(matches!(
        store.upload_status(&r, &id).await,
        Err(StorageError::UploadUnknown)
    ));
}

/// A body that fails half-way leaves the session as it was.
pub async fn failed_body_rolls_back(store: &dyn Storage) {
    let r = repo("x");
    let id = store.upload_start(&r).await.unwrap();
    store
        .upload_append(&r, &id, None, body(&[b"keep"]))
        .await
        .unwrap();
    let broken: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"lost")),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        store.upload_append(&r, &id, Some(4), broken).await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(store.upload_status(&r, &id).await.unwrap().size, 4);
    let d = Digest::of_bytes(Algorithm::Sha256, b"keep");
    store.upload_commit(&r, &id, &d).await.unwrap();
}

/// Sessions belong to their repository, odd ids are unknown, stale
/// sessions are purged.
pub async fn uploads_are_bound_to_their_repository_and_ids_are_checked(store: &dyn Storage) {
    let id = store.upload_start(&repo("a")).await.unwrap();
    assert!(matches!(
        store.upload_status(&repo("b"), &id).await,
        Err(StorageError::UploadUnknown)
    ));
    assert!(matches!(
        store.upload_status(&repo("a"), "../../etc").await,
        Err(StorageError::UploadUnknown)
    ));
    assert_eq!(
        store
            .uploads_purge(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // Timestamps have one-second resolution in some backends.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.uploads_purge(Duration::ZERO).await.unwrap(), 1);
}

/// Manifests byte-exact with their media type, tags sorted, referrers
/// added and removed, the catalog from blob and manifest links.
pub async fn manifests_tags_referrers_and_catalog(store: &dyn Storage) {
    // Other contract checks may have run on this store before.
    let team_repos = || async {
        let all = store.repositories().await.unwrap();
        all.into_iter()
            .filter(|r| r.starts_with("team"))
            .collect::<Vec<_>>()
    };
    let r = repo("team/app");
    let bytes = Bytes::from_static(b"{\"schemaVersion\":2}");
    let d = Digest::of_bytes(Algorithm::Sha256, &bytes);
    let m = StoredManifest {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes: bytes.clone(),
    };
    assert!(store.tags_list(&r).await.unwrap().is_none());
    store.manifest_put(&r, &d, &m).await.unwrap();
    for t in ["b", "a", "c"] {
        store
            .tag_set(&r, &Tag::parse(t).unwrap(), &d)
            .await
            .unwrap();
    }
    assert_eq!(
        store.tags_list(&r).await.unwrap().unwrap(),
        vec!["a", "b", "c"]
    );
    let got = store.manifest_get(&r, &d).await.unwrap().unwrap();
    assert_eq!((got.media_type, got.bytes), (m.media_type.clone(), bytes));
    store.blob_size(&d).await.unwrap().unwrap();
    let tag = Tag::parse("b").unwrap();
    assert_eq!(store.tag_get(&r, &tag).await.unwrap(), Some(d.clone()));
    assert!(store.tag_delete(&r, &tag).await.unwrap());
    assert!(!store.tag_delete(&r, &tag).await.unwrap());

    let referrer = ReferrerDescriptor {
        media_type: m.media_type.clone(),
        digest: Digest::of_bytes(Algorithm::Sha256, b"sig"),
        size: 3,
        artifact_type: Some("application/example".into()),
        annotations: None,
    };
    store.referrer_add(&r, &d, &referrer).await.unwrap();
    assert_eq!(
        store.referrers(&r, &d).await.unwrap(),
        vec![referrer.clone()]
    );
    store
        .referrer_remove(&r, &d, &referrer.digest)
        .await
        .unwrap();
    assert!(store.referrers(&r, &d).await.unwrap().is_empty());

    store.repo_blob_link(&repo("team"), &d).await.unwrap();
    assert_eq!(team_repos().await, vec!["team", "team/app"]);
    assert!(store.manifest_delete(&r, &d).await.unwrap());
    assert!(store.manifest_get(&r, &d).await.unwrap().is_none());
    store.ready().await.unwrap();
}

/// The key-value layer under links, tags and referrers: values replace
/// each other whole, `kv_names` lists only what lies directly under a
/// prefix, and deleting says whether there was something to delete.
pub async fn key_value_layer(store: &dyn Storage) {
    use super::metadata::Key;
    let r = repo("kv/app");
    let subject = Digest::of_bytes(Algorithm::Sha256, b"subject");
    let referrer = Digest::of_bytes(Algorithm::Sha256, b"referrer");
    let tag = Tag::parse("v1").expect("tag");

    assert_eq!(store.kv_get(&Key::tag(&r, &tag)).await.unwrap(), None);
    assert!(!store.kv_any_under(&Key::tags(&r)).await.unwrap());
    store
        .kv_put(&Key::tag(&r, &tag), Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .kv_put(&Key::tag(&r, &tag), Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(
        store.kv_get(&Key::tag(&r, &tag)).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert!(store.kv_exists(&Key::tag(&r, &tag)).await.unwrap());
    assert!(store.kv_any_under(&Key::tags(&r)).await.unwrap());
    // Many at once, in order, absent ones as None.
    let absent = Tag::parse("absent").expect("tag");
    assert_eq!(
        store
            .kv_get_many(&[Key::tag(&r, &absent), Key::tag(&r, &tag)])
            .await
            .unwrap(),
        vec![None, Some(Bytes::from_static(b"second"))]
    );

    // A value deeper down is not a name of the level above.
    store
        .kv_put(
            &Key::referrer(&r, &subject, &referrer),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.kv_names(&Key::referrers(&r, &subject)).await.unwrap(),
        vec![format!("sha256-{}.json", referrer.hex())]
    );
    assert_eq!(store.kv_names(&Key::tags(&r)).await.unwrap(), vec!["v1"]);
    assert!(
        store
            .kv_names(&Key::referrers(&r, &referrer))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.kv_delete(&Key::tag(&r, &tag)).await.unwrap());
    assert!(!store.kv_delete(&Key::tag(&r, &tag)).await.unwrap());
    assert!(!store.kv_exists(&Key::tag(&r, &tag)).await.unwrap());

    // Create only where nothing is: the second create changes nothing.
    assert!(
        store
            .kv_create(&Key::tag(&r, &tag), Bytes::from_static(b"one"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .kv_create(&Key::tag(&r, &tag), Bytes::from_static(b"two"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.kv_get(&Key::tag(&r, &tag)).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    // Of many racing creates, exactly one wins.
    let racing = Tag::parse("race").expect("tag");
    let attempts = (0..8u8).map(|i| {
        let key = Key::tag(&r, &racing);
        async move { store.kv_create(&key, Bytes::from(vec![i])).await.unwrap() }
    });
    let won = futures::future::join_all(attempts).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

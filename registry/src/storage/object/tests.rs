//! The object-store backend on the in-memory store: the same contract as
//! the filesystem backend, plus what several replicas need.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;

use super::*;
use crate::digest::Algorithm;
use crate::storage::contract;

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn body(parts: Vec<Vec<u8>>) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.into_iter().map(|p| Ok(Bytes::from(p))).collect();
    Box::pin(futures::stream::iter(items))
}

fn failing_body(first: &'static [u8]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(first)),
        Err(std::io::Error::other("client went away")),
    ];
    Box::pin(futures::stream::iter(items))
}

async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Two "replicas" over one bucket.
fn replicas() -> (ObjectStorage, ObjectStorage, Arc<InMemory>) {
    let bucket = Arc::new(InMemory::new());
    let a = ObjectStorage::new(bucket.clone(), "/registry/", "memory".into());
    let b = ObjectStorage::new(bucket.clone(), "registry", "memory".into());
    (a, b, bucket)
}

#[tokio::test]
async fn a_session_started_on_one_replica_finishes_on_another() {
    let (a, b, _) = replicas();
    let r = repo("team/app");
    let id = a.upload_start(&r).await.unwrap();
    assert_eq!(
        a.upload_append(&r, &id, Some(0), body(vec![b"hello ".to_vec()]))
            .await
            .unwrap(),
        6
    );
    // A chunk of one byte: far below S3's minimum part size.
    assert_eq!(
        b.upload_append(&r, &id, Some(6), body(vec![b"w".to_vec()]))
            .await
            .unwrap(),
        7
    );
    let err = a
        .upload_append(&r, &id, Some(3), body(vec![b"x".to_vec()]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::OffsetMismatch {
            current: 7,
            claimed: 3
        }
    ));
    assert_eq!(b.upload_status(&r, &id).await.unwrap().size, 7);
    assert_eq!(
        a.upload_append(&r, &id, None, body(vec![b"orld".to_vec()]))
            .await
            .unwrap(),
        11
    );
    // Wrong digest: nothing visible, session intact.
    let wrong = Digest::of_bytes(Algorithm::Sha256, b"something else");
    assert!(matches!(
        b.upload_commit(&r, &id, &wrong).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert_eq!(a.blob_size(&wrong).await.unwrap(), None);
    let digest = Digest::of_bytes(Algorithm::Sha256, b"hello world");
    assert_eq!(b.upload_commit(&r, &id, &digest).await.unwrap(), 11);
    assert_eq!(a.blob_size(&digest).await.unwrap(), Some(11));
    assert!(a.repo_blob_linked(&r, &digest).await.unwrap());
    assert_eq!(
        read_all(a.blob_read(&digest, None).await.unwrap()).await,
        b"hello world"
    );
    let range = ByteRange {
        start: 6,
        end_inclusive: 9,
    };
    assert_eq!(
        read_all(b.blob_read(&digest, Some(range)).await.unwrap()).await,
        b"worl"
    );
    assert!(matches!(
        a.upload_status(&r, &id).await,
        Err(StorageError::UploadUnknown)
    ));
}

#[tokio::test]
async fn large_multi_chunk_uploads_stream_through_multipart() {
    let (a, b, _) = replicas();
    let r = repo("big");
    let id = a.upload_start(&r).await.unwrap();
    let part: Vec<u8> = (0..PART_SIZE + 12345).map(|i| (i % 251) as u8).collect();
    let mut all = Vec::new();
    for i in 0..2u8 {
        let mut chunk = part.clone();
        chunk[0] = i;
        all.extend_from_slice(&chunk);
        // Each chunk arrives in pieces, as a network body does.
        let pieces: Vec<Vec<u8>> = chunk.chunks(1 << 20).map(|c| c.to_vec()).collect();
        let store = if i == 0 { &a } else { &b };
        store
            .upload_append(&r, &id, None, body(pieces))
            .await
            .unwrap();
    }
    let digest = Digest::of_bytes(Algorithm::Sha256, &all);
    assert_eq!(
        a.upload_commit(&r, &id, &digest).await.unwrap(),
        all.len() as u64
    );
    assert_eq!(
        read_all(b.blob_read(&digest, None).await.unwrap()).await,
        all
    );
}

#[tokio::test]
async fn a_failed_body_leaves_the_session_as_it_was() {
    let (a, _, bucket) = replicas();
    let r = repo("x");
    let id = a.upload_start(&r).await.unwrap();
    a.upload_append(&r, &id, None, body(vec![b"abc".to_vec()]))
        .await
        .unwrap();
    assert!(matches!(
        a.upload_append(&r, &id, Some(3), failing_body(b"def"))
            .await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(a.upload_status(&r, &id).await.unwrap().size, 3);
    // Bound to its repository; unknown ids are unknown.
    assert!(matches!(
        a.upload_status(&repo("y"), &id).await,
        Err(StorageError::UploadUnknown)
    ));
    assert!(matches!(
        a.upload_status(&r, "../etc").await,
        Err(StorageError::UploadUnknown)
    ));
    // Cancel removes every object of the session.
    a.upload_cancel(&r, &id).await.unwrap();
    let left: Vec<_> = bucket.list(None).collect().await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn empty_blobs_and_purge_of_stale_sessions() {
    let (a, _, _) = replicas();
    let r = repo("e");
    let id = a.upload_start(&r).await.unwrap();
    let empty = Digest::of_bytes(Algorithm::Sha256, b"");
    assert_eq!(a.upload_commit(&r, &id, &empty).await.unwrap(), 0);
    assert_eq!(a.blob_size(&empty).await.unwrap(), Some(0));
    let stale = a.upload_start(&r).await.unwrap();
    assert_eq!(a.uploads_purge(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.uploads_purge(Duration::from_secs(0)).await.unwrap(), 1);
    assert!(matches!(
        a.upload_status(&r, &stale).await,
        Err(StorageError::UploadUnknown)
    ));
}

/// The contract every backend keeps (storage/contract.rs).
#[tokio::test]
async fn keeps_the_storage_contract() {
    let (store, _, _) = replicas();
    contract::chunked_upload_commits_only_matching_content(&store).await;
    contract::failed_body_rolls_back(&store).await;
    contract::uploads_are_bound_to_their_repository_and_ids_are_checked(&store).await;
    contract::manifests_tags_referrers_and_catalog(&store).await;
    contract::key_value_layer(&store).await;
}

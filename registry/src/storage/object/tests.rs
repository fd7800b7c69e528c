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
    let (a, b, bucket) = replicas();
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
    // Both multipart uploads (a chunk, then the blob) left no record.
    assert!(multipart_records(&bucket).await.is_empty());
}

async fn multipart_records(bucket: &InMemory) -> Vec<Path> {
    let prefix = Path::from("registry/_quarry/multipart");
    let listed: Vec<_> = bucket.list(Some(&prefix)).collect().await;
    listed.into_iter().map(|m| m.unwrap().location).collect()
}

/// The upload id a record names.
async fn recorded_upload(bucket: &InMemory, record: &Path) -> (Path, String) {
    let raw = bucket.get(record).await.unwrap().bytes().await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    (
        Path::from(value["location"].as_str().unwrap()),
        value["upload_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_multipart_upload_refused_for_its_digest_is_aborted() {
    let (a, _, bucket) = replicas();
    let r = repo("big");
    let id = a.upload_start(&r).await.unwrap();
    let chunk = vec![7u8; PART_SIZE + 1];
    for _ in 0..2 {
        a.upload_append(&r, &id, None, body(vec![chunk.clone()]))
            .await
            .unwrap();
    }
    let wrong = Digest::of_bytes(Algorithm::Sha256, b"something else");
    assert!(matches!(
        a.upload_commit(&r, &id, &wrong).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    assert!(multipart_records(&bucket).await.is_empty());
    assert_eq!(a.blob_size(&wrong).await.unwrap(), None);
}

#[tokio::test]
async fn a_multipart_upload_its_replica_abandoned_is_aborted_by_the_sweep() {
    let (mut a, b, bucket) = replicas();
    a.multipart_heartbeat = Duration::from_millis(100);
    let target = Path::from("registry/blobs/sha256/abandoned");
    let mut dying = a.start_multipart(&target).await.unwrap();
    dying.put(Bytes::from(vec![1u8; PART_SIZE])).await.unwrap();
    let live_target = Path::from("registry/blobs/sha256/live");
    let mut live = a.start_multipart(&live_target).await.unwrap();
    live.put(Bytes::from_static(b"first bytes")).await.unwrap();
    let records = multipart_records(&bucket).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let dying_upload = recorded_upload(&bucket, &records[0]).await;
    let dying_upload = if dying_upload.0 == target {
        dying_upload
    } else {
        recorded_upload(&bucket, &records[1]).await
    };
    // Young records are left alone by every replica's sweep.
    assert_eq!(b.uploads_purge(Duration::ZERO).await.unwrap(), 0);
    // The replica dies mid-upload: nothing completes or aborts it, and
    // its record stops being rewritten. The live upload stalls (a slow
    // client) but its heartbeat keeps its record young.
    drop(dying);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let older_than = Duration::from_millis(500);
    assert_eq!(b.abort_abandoned_multiparts(older_than).await.unwrap(), 1);
    let left = multipart_records(&bucket).await;
    assert_eq!(left.len(), 1, "{left:?}");
    let (location, upload) = dying_upload;
    let part = bucket
        .put_part(&location, &upload, 1, PutPayload::from_static(b"x"))
        .await;
    assert!(part.is_err(), "upload {upload} to {location} still open");
    assert!(
        bucket.head(&target).await.is_err(),
        "an abandoned upload became visible"
    );
    // The live one finishes whole and removes its record.
    assert_eq!(b.abort_abandoned_multiparts(older_than).await.unwrap(), 0);
    live.finish().await.unwrap();
    assert!(multipart_records(&bucket).await.is_empty());
    let content = bucket
        .get(&live_target)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&content[..], b"first bytes");
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

//! The key-value layer's create-only write against a real MinIO: MinIO
//! honours If-None-Match, so of racing creates exactly one wins (what
//! immutable tags rely on across replicas).

use bytes::Bytes;
mod minio_settings;

use minio_settings::s3_settings;
use quarry_e2e::scale::Minio;
use quarry_registry::names::{RepoName, Tag};
use quarry_registry::storage::{Key, KeyValue, ObjectStorage, S3Credentials};

#[test]
fn of_racing_creates_on_minio_exactly_one_wins() {
    let minio = Minio::start("conditional");
    quarry_registry::tls::install_crypto_provider();
    let settings = s3_settings(&minio);
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            // Two replicas: two clients of the same bucket.
            let a = ObjectStorage::s3(&settings, S3Credentials::OnlyFromSettings).unwrap();
            let b = ObjectStorage::s3(&settings, S3Credentials::OnlyFromSettings).unwrap();
            let key = Key::tag(
                &RepoName::parse("prod/app").unwrap(),
                &Tag::parse("v1").unwrap(),
            );
            assert!(
                a.kv_create(&key, Bytes::from_static(b"first"))
                    .await
                    .unwrap()
            );
            assert!(
                !b.kv_create(&key, Bytes::from_static(b"second"))
                    .await
                    .unwrap()
            );
            assert_eq!(
                a.kv_get(&key).await.unwrap().as_deref(),
                Some(&b"first"[..])
            );
            let racing = Key::tag(
                &RepoName::parse("prod/app").unwrap(),
                &Tag::parse("race").unwrap(),
            );
            let attempts = (0..8u8).map(|i| {
                let store = if i % 2 == 0 { &a } else { &b };
                let key = racing.clone();
                async move { store.kv_create(&key, Bytes::from(vec![i])).await.unwrap() }
            });
            let won = futures::future::join_all(attempts).await;
            assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        });
}

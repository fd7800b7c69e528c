//! The registry's S3 settings for a test MinIO, for the tests that call the
//! registry library directly (the library is only a dev-dependency, so this
//! cannot live in tests/src).

use quarry_e2e::scale::{MINIO_PASSWORD, MINIO_USER, Minio};
use quarry_registry::storage::settings::S3Settings;

/// Path-style access to `minio`'s bucket under the prefix `registry`, with
/// MinIO's keys.
pub fn s3_settings(minio: &Minio) -> S3Settings {
    S3Settings {
        endpoint: Some(minio.endpoint()),
        bucket: minio.bucket.clone(),
        region: "us-east-1".into(),
        prefix: "registry".into(),
        access_key: Some(MINIO_USER.into()),
        secret_key: Some(MINIO_PASSWORD.into()),
        path_style: true,
    }
}

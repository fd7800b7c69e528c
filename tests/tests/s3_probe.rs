//! The operator probes a user's bucket with the user's keys only: the
//! operator pod's own AWS_* environment (here a session token) must not
//! reach the probe, while the registry pods, which get their keys from the
//! environment, still read it. Against a real MinIO. One test in its own
//! binary: it sets a process environment variable.

mod minio_settings;

use minio_settings::s3_settings;
use quarry_e2e::scale::Minio;
use quarry_registry::storage::{ObjectStorage, S3Credentials, Storage, probe_s3};

#[test]
fn the_probe_ignores_the_operators_own_aws_environment() {
    // MinIO is started (with blocking HTTP) outside the runtime.
    let minio = Minio::start("probed");
    // As both binaries do at start: the process-wide TLS provider.
    quarry_registry::tls::install_crypto_provider();
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(probe_with_a_foreign_token(&minio));
}

async fn probe_with_a_foreign_token(minio: &Minio) {
    let settings = s3_settings(minio);
    let timeout = std::time::Duration::from_secs(10);
    probe_s3(&settings, timeout)
        .await
        .expect("the bucket is usable with these keys");
    // SAFETY: this test binary runs this one test; no other thread reads
    // the environment while it is changed.
    unsafe { std::env::set_var("AWS_SESSION_TOKEN", "the-operator-pods-own-token") };
    probe_s3(&settings, timeout)
        .await
        .expect("the operator's own session token changed the probe's answer");
    // The environment does reach a registry pod's storage: the same keys
    // with the foreign token are refused by MinIO, so the check above is
    // not vacuous.
    let pod_storage = ObjectStorage::s3(&settings, S3Credentials::AlsoFromEnvironment).unwrap();
    let refused = pod_storage.ready().await;
    assert!(
        refused.is_err(),
        "MinIO accepted a bogus session token: the test proves nothing"
    );
}

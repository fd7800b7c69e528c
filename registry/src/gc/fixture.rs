//! Stores for the garbage collection tests: blobs, images and referrers
//! written through the storage trait, as the request handlers write them.

use bytes::Bytes;

use crate::digest::{Algorithm, Digest};
use crate::names::RepoName;
use crate::storage::{ByteStream, ReferrerDescriptor, Storage, StoredManifest};

pub const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

pub async fn blob(s: &dyn Storage, r: &RepoName, content: &str) -> Digest {
    let digest = Digest::of_bytes(Algorithm::Sha256, content.as_bytes());
    let id = s.upload_start(r).await.unwrap();
    let body: ByteStream = Box::pin(futures::stream::once({
        let bytes = Bytes::from(content.to_string());
        async move { Ok(bytes) }
    }));
    s.upload_append(r, &id, None, body).await.unwrap();
    s.upload_commit(r, &id, &digest).await.unwrap();
    digest
}

pub async fn put(s: &dyn Storage, r: &RepoName, media_type: &str, json: String) -> Digest {
    let digest = Digest::of_bytes(Algorithm::Sha256, json.as_bytes());
    let stored = StoredManifest {
        media_type: media_type.into(),
        bytes: Bytes::from(json),
    };
    s.manifest_put(r, &digest, &stored).await.unwrap();
    digest
}

/// An image of one config and one layer blob, with an optional subject.
pub async fn image(
    s: &dyn Storage,
    r: &RepoName,
    layer: &str,
    subject: Option<&Digest>,
) -> (Digest, Digest, Digest) {
    let config = blob(s, r, "{}").await;
    let layer = blob(s, r, layer).await;
    let subject_field = subject
        .map(|d| format!(r#","subject":{{"mediaType":"{IMAGE}","digest":"{d}","size":1}}"#))
        .unwrap_or_default();
    let digest = put(
        s,
        r,
        IMAGE,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{IMAGE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1}}]{subject_field}}}"#
        ),
    )
    .await;
    if let Some(subject) = subject {
        let descriptor = ReferrerDescriptor {
            media_type: IMAGE.into(),
            digest: digest.clone(),
            size: 1,
            artifact_type: None,
            annotations: None,
        };
        s.referrer_add(r, subject, &descriptor).await.unwrap();
    }
    (digest, config, layer)
}

//! One sync of one mirror: list the upstream's tags, copy each selected tag
//! that moved (its manifest, an index's platform manifests, every blob),
//! then its signatures, SBOMs and attestations (the referrers API, and
//! cosign's `sha256-<hex>.sig|.att|.sbom` tags), and set the tag last, so a
//! tag never names something incomplete.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::settings::RepoMirror;
use crate::config::RegistryConfig;
use crate::digest::Digest;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::policy;
use crate::proxy_cache::upstream::{Upstream, UpstreamError};
use crate::storage::{ByteStream, ReferrerDescriptor, Storage, StorageError, StoredManifest};

/// Referrers of referrers are followed this deep (signatures of SBOMs).
const REFERRER_DEPTH: usize = 3;

/// Artifact types that count as signatures for `signed_only`.
const SIGNATURE_TYPES: &[&str] = &[
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.cncf.notary.signature",
];

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Refused(String),
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub tags_selected: usize,
    pub tags_copied: usize,
    pub tags_unchanged: usize,
    pub tags_skipped_unsigned: usize,
    pub tags_pruned: usize,
    /// Tags the upstream moved that are immutable here: left as they are.
    pub tags_kept_immutable: usize,
    pub manifests_copied: usize,
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    /// Tags that failed, with why; the others were still synced.
    pub failures: Vec<String>,
}

impl SyncReport {
    /// One line: what the sync changed.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} of {} selected tags copied, {} unchanged",
            self.tags_copied, self.tags_selected, self.tags_unchanged
        )];
        if self.tags_pruned > 0 {
            parts.push(format!("{} pruned", self.tags_pruned));
        }
        if self.tags_kept_immutable > 0 {
            parts.push(format!(
                "{} immutable tags kept though moved upstream",
                self.tags_kept_immutable
            ));
        }
        if self.tags_skipped_unsigned > 0 {
            parts.push(format!("{} unsigned skipped", self.tags_skipped_unsigned));
        }
        if self.bytes_copied > 0 {
            parts.push(format!(
                "{} manifests and {} blobs ({} bytes) copied",
                self.manifests_copied, self.blobs_copied, self.bytes_copied
            ));
        }
        if let Some(first) = self.failures.first() {
            parts.push(format!(
                "{} tags failed, first {first}",
                self.failures.len()
            ));
        }
        parts.join("; ")
    }
}

struct Sync<'a> {
    storage: &'a dyn Storage,
    config: &'a RegistryConfig,
    upstream: &'a Upstream,
    remote: String,
    repo: RepoName,
    report: SyncReport,
}

/// Sync `mirror` once.
pub async fn sync(
    storage: &dyn Storage,
    config: &RegistryConfig,
    mirror: &RepoMirror,
    upstream: &Upstream,
) -> Result<SyncReport, SyncError> {
    let repo = RepoName::parse(&mirror.repository).ok_or_else(|| {
        SyncError::Refused(format!("{:?} is not a repository name", mirror.repository))
    })?;
    let mut run = Sync {
        storage,
        config,
        upstream,
        remote: mirror.remote(),
        repo,
        report: SyncReport::default(),
    };
    let upstream_tags = upstream.tags(&run.remote).await?;
    let all: BTreeSet<&str> = upstream_tags.iter().map(String::as_str).collect();
    let selected: Vec<&str> = upstream_tags
        .iter()
        .map(String::as_str)
        .filter(|t| !is_referrer_tag(t) && mirror.selects(t))
        .collect();
    run.report.tags_selected = selected.len();
    for tag in &selected {
        if let Err(e) = run.tag(tag, &all, mirror.signed_only).await {
            tracing::warn!(repository = %run.repo, tag, error = %e, "mirror could not copy a tag");
            run.report.failures.push(format!("{tag}: {e}"));
        }
    }
    if mirror.prune_vanished_tags {
        for local in storage.tags_list(&run.repo).await?.unwrap_or_default() {
            if !all.contains(local.as_str())
                && mirror.selects(&local)
                && let Some(tag) = Tag::parse(&local)
                && !run.immutable(&tag)
                && storage.tag_delete(&run.repo, &tag).await?
            {
                run.report.tags_pruned += 1;
            }
        }
    }
    Ok(run.report)
}

/// cosign's and the OCI fallback's tags: `sha256-<hex>` and `.sig` etc.
fn is_referrer_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split('.').next().unwrap_or_default();
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Sync<'_> {
    async fn tag(
        &mut self,
        tag: &str,
        all: &BTreeSet<&str>,
        signed_only: bool,
    ) -> Result<(), SyncError> {
        let local_tag =
            Tag::parse(tag).ok_or_else(|| SyncError::Refused(format!("{tag:?} is not a tag")))?;
        let head = self.upstream.manifest_head(&self.remote, tag).await?;
        let digest = match head.digest {
            Some(d) => d,
            // No digest in the HEAD answer: the manifest says.
            None => {
                let m = self
                    .upstream
                    .manifest_get(&self.remote, tag, self.config.maximum_manifest_size)
                    .await?;
                manifest::inspect(
                    m.media_type.as_deref(),
                    &m.bytes,
                    crate::digest::Algorithm::Sha256,
                )
                .map_err(|e| SyncError::Refused(e.0))?
                .digest
            }
        };
        let cosign_tags: Vec<String> = ["sig", "att", "sbom"]
            .iter()
            .map(|suffix| format!("{}-{}.{suffix}", digest.algorithm().name(), digest.hex()))
            .filter(|t| all.contains(t.as_str()))
            .collect();
        let referrers = self.referrers_of(&digest).await?;
        if signed_only {
            let signed = cosign_tags.iter().any(|t| t.ends_with(".sig"))
                || referrers.iter().any(|r| {
                    r.artifact_type
                        .as_deref()
                        .is_some_and(|t| SIGNATURE_TYPES.contains(&t))
                });
            if !signed {
                self.report.tags_skipped_unsigned += 1;
                return Ok(());
            }
        }
        let current = self.storage.tag_get(&self.repo, &local_tag).await?;
        let unchanged = current.as_ref() == Some(&digest);
        let immutable = self.immutable(&local_tag);
        if let Some(current) = &current
            && !unchanged
            && immutable
        {
            // An immutable tag never moves, not even for a mirror.
            tracing::warn!(repository = %self.repo, tag, %current, upstream = %digest, "mirror keeps an immutable tag the upstream moved");
            self.report.tags_kept_immutable += 1;
            return Ok(());
        }
        self.manifest(&digest).await?;
        // Signatures may come after the image: looked for on every sync.
        self.referrers(referrers, REFERRER_DEPTH).await?;
        for cosign_tag in cosign_tags {
            self.copy_tag(&cosign_tag).await?;
        }
        let fallback = format!("{}-{}", digest.algorithm().name(), digest.hex());
        if all.contains(fallback.as_str()) {
            self.copy_tag(&fallback).await?;
        }
        if unchanged {
            self.report.tags_unchanged += 1;
        } else if immutable {
            // Created, never overwritten: a push may have won meanwhile.
            if self
                .storage
                .tag_create(&self.repo, &local_tag, &digest)
                .await?
            {
                self.report.tags_copied += 1;
            } else {
                self.report.tags_kept_immutable += 1;
            }
        } else {
            self.storage
                .tag_set(&self.repo, &local_tag, &digest)
                .await?;
            self.report.tags_copied += 1;
        }
        Ok(())
    }

    /// Whether an IMMUTABLE_TAGS_POLICIES policy covers `tag` here (the
    /// `quay.immutable` label is not looked at by mirrors).
    fn immutable(&self, tag: &Tag) -> bool {
        self.config.feature_immutable_tags
            && crate::immutable_tags::policy_for(
                &self.config.immutable_tags_policies,
                &self.repo,
                tag,
            )
            .is_some()
    }

    /// The upstream's referrers of `digest` (empty without a referrers API:
    /// the `sha256-<hex>` tag then carries them).
    async fn referrers_of(&self, digest: &Digest) -> Result<Vec<ReferrerDescriptor>, SyncError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<ReferrerDescriptor>,
        }
        match self
            .upstream
            .referrers(
                &self.remote,
                digest,
                None,
                self.config.maximum_manifest_size,
            )
            .await?
        {
            None => Ok(Vec::new()),
            Some((bytes, _)) => Ok(serde_json::from_slice::<Index>(&bytes)
                .map(|i| i.manifests)
                .unwrap_or_default()),
        }
    }

    async fn referrers(
        &mut self,
        referrers: Vec<ReferrerDescriptor>,
        depth: usize,
    ) -> Result<(), SyncError> {
        for referrer in referrers {
            self.manifest(&referrer.digest).await?;
            if depth > 1 {
                let next = self.referrers_of(&referrer.digest).await?;
                Box::pin(self.referrers(next, depth - 1)).await?;
            }
        }
        Ok(())
    }

    /// Copy a tag as it is upstream (cosign's signature tags).
    async fn copy_tag(&mut self, tag: &str) -> Result<(), SyncError> {
        let Some(local) = Tag::parse(tag) else {
            return Ok(());
        };
        let head = self.upstream.manifest_head(&self.remote, tag).await?;
        let Some(digest) = head.digest else {
            return Ok(());
        };
        if self.storage.tag_get(&self.repo, &local).await?.as_ref() == Some(&digest) {
            return Ok(());
        }
        self.manifest(&digest).await?;
        self.storage.tag_set(&self.repo, &local, &digest).await?;
        Ok(())
    }

    /// Copy a manifest with everything it needs, unless it is here.
    async fn manifest(&mut self, digest: &Digest) -> Result<(), SyncError> {
        if self
            .storage
            .manifest_get(&self.repo, digest)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let fetched = self
            .upstream
            .manifest_get(
                &self.remote,
                &digest.to_string(),
                self.config.maximum_manifest_size,
            )
            .await?;
        let facts = manifest::inspect(
            fetched.media_type.as_deref(),
            &fetched.bytes,
            digest.algorithm(),
        )
        .map_err(|e| SyncError::Refused(format!("manifest {digest}: {}", e.0)))?;
        if facts.digest != *digest {
            return Err(SyncError::Refused(format!(
                "upstream {} sent a manifest for {digest} that hashes to {}",
                self.upstream.name(),
                facts.digest
            )));
        }
        if let Err(refusal) = policy::check(self.config, &facts) {
            return Err(SyncError::Refused(refusal.message));
        }
        for child in &facts.children {
            Box::pin(self.manifest(&child.digest)).await?;
        }
        for blob in facts.blobs.iter().filter(|b| !b.may_be_absent) {
            self.blob(&blob.digest).await?;
        }
        let stored = StoredManifest {
            media_type: facts.media_type.clone(),
            bytes: fetched.bytes.clone(),
        };
        self.storage
            .manifest_put(&self.repo, digest, &stored)
            .await?;
        if let Some(subject) = &facts.subject {
            let descriptor = ReferrerDescriptor {
                media_type: facts.media_type.clone(),
                digest: digest.clone(),
                size: fetched.bytes.len() as u64,
                artifact_type: facts.referrer_artifact_type(),
                annotations: facts.annotations.clone(),
            };
            self.storage
                .referrer_add(&self.repo, subject, &descriptor)
                .await?;
        }
        self.report.manifests_copied += 1;
        Ok(())
    }

    /// Copy a blob, streamed into an upload session that verifies it.
    async fn blob(&mut self, digest: &Digest) -> Result<(), SyncError> {
        if self.storage.repo_blob_linked(&self.repo, digest).await? {
            return Ok(());
        }
        if self.storage.blob_present(digest).await? {
            // The upstream's manifest names it in this repository.
            self.storage.repo_blob_link(&self.repo, digest).await?;
            return Ok(());
        }
        let (size, response) = self.upstream.blob_get(&self.remote, digest).await?;
        let id = self.storage.upload_start(&self.repo).await?;
        let result = async {
            self.storage
                .upload_append(&self.repo, &id, Some(0), response_stream(response))
                .await?;
            self.storage.upload_commit(&self.repo, &id, digest).await
        }
        .await;
        if result.is_err() {
            let _ = self.storage.upload_cancel(&self.repo, &id).await;
        }
        result?;
        self.report.blobs_copied += 1;
        self.report.bytes_copied += size;
        Ok(())
    }
}

/// A response body as a storage byte stream.
fn response_stream(response: reqwest::Response) -> ByteStream {
    Box::pin(futures::stream::unfold(
        Some(response),
        |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(bytes)) => Some((Ok::<Bytes, std::io::Error>(bytes), Some(response))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn referrer_tags() {
        let hex = "a".repeat(64);
        assert!(super::is_referrer_tag(&format!("sha256-{hex}")));
        assert!(super::is_referrer_tag(&format!("sha256-{hex}.sig")));
        assert!(!super::is_referrer_tag("sha256-short.sig"));
        assert!(!super::is_referrer_tag("v1"));
    }
}

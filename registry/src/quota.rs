//! Namespace quotas (`FEATURE_QUOTA_MANAGEMENT`, Quay's key): a namespace's
//! usage is the bytes of the unique blobs its manifests name (config and
//! layers, each counted once however many images share it); a quota has a
//! size and limits at percentages of it, of two kinds (Quay's): `Warning`
//! logs and counts, `Reject` refuses the push that would pass it.
//! `DEFAULT_SYSTEM_REJECT_QUOTA_BYTES` gives every other namespace a
//! reject limit.
//!
//! This module holds the settings and the arithmetic; `api/quota_guard.rs`
//! measures and refuses.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest;
use crate::names::{RepoName, valid_namespace};
use crate::storage::{Key, Storage, StorageResult, metadata};

/// The two kinds of limit (Quay's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    Warning,
    Reject,
}

/// A limit at a percentage of the quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    #[serde(rename = "type")]
    pub kind: LimitKind,
    pub threshold_percent: u32,
}

/// One namespace's quota (Quay's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceQuota {
    pub namespace: String,
    pub limit_bytes: u64,
    /// Default: one Reject limit at 100 %.
    #[serde(default = "reject_at_the_limit")]
    pub limits: Vec<QuotaLimit>,
}

fn reject_at_the_limit() -> Vec<QuotaLimit> {
    vec![QuotaLimit {
        kind: LimitKind::Reject,
        threshold_percent: 100,
    }]
}

impl NamespaceQuota {
    /// What is wrong with it, if anything (for config validation).
    pub fn problem(&self) -> Option<String> {
        if !valid_namespace(&self.namespace) || self.namespace == crate::names::ALL_NAMESPACES {
            return Some(format!(
                "namespace {:?} is not a repository namespace (for every namespace, set DEFAULT_SYSTEM_REJECT_QUOTA_BYTES)",
                self.namespace
            ));
        }
        if self.limit_bytes == 0 {
            return Some("limit_bytes must be more than 0".into());
        }
        if let Some(l) = self
            .limits
            .iter()
            .find(|l| l.threshold_percent == 0 || l.threshold_percent > 100)
        {
            return Some(format!(
                "threshold_percent {} is outside 1..100",
                l.threshold_percent
            ));
        }
        None
    }
}

/// The limit a namespace has of one kind, in bytes, and where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub percent: u32,
    pub quota_bytes: u64,
    /// `NAMESPACE_QUOTAS[i]` or `DEFAULT_SYSTEM_REJECT_QUOTA_BYTES`.
    pub source: String,
}

impl Limit {
    /// The lowest limit of `kind` for `namespace`, if it has one.
    pub fn of(
        config: &crate::config::RegistryConfig,
        namespace: &str,
        kind: LimitKind,
    ) -> Option<Limit> {
        if !config.feature_quota_management {
            return None;
        }
        let own = config
            .namespace_quotas
            .iter()
            .enumerate()
            .find(|(_, q)| q.namespace == namespace);
        match own {
            Some((i, quota)) => quota
                .limits
                .iter()
                .filter(|l| l.kind == kind)
                .map(|l| Limit {
                    bytes: quota.limit_bytes / 100 * u64::from(l.threshold_percent)
                        + quota.limit_bytes % 100 * u64::from(l.threshold_percent) / 100,
                    percent: l.threshold_percent,
                    quota_bytes: quota.limit_bytes,
                    source: format!("NAMESPACE_QUOTAS[{i}]"),
                })
                .min_by_key(|l| l.bytes),
            None if kind == LimitKind::Reject => {
                config.default_system_reject_quota_bytes.map(|bytes| Limit {
                    bytes,
                    percent: 100,
                    quota_bytes: bytes,
                    source: "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES".into(),
                })
            }
            None => None,
        }
    }
}

/// A namespace's usage: the unique blobs its manifests name, and their
/// total size.
#[derive(Debug, Default, Clone)]
pub struct Usage {
    pub blobs: BTreeSet<Digest>,
    pub bytes: u64,
}

/// The namespace of a repository (its first path segment).
pub fn namespace_of(repo: &RepoName) -> &str {
    repo.as_str().split('/').next().unwrap_or_default()
}

/// Measure `namespace` now: every manifest of its repositories, read from
/// storage (metadata and manifests only; blob sizes from the store).
pub async fn usage(storage: &dyn Storage, namespace: &str) -> StorageResult<Usage> {
    let mut usage = Usage::default();
    for name in storage.repositories().await? {
        let Some(repo) = RepoName::parse(&name) else {
            continue;
        };
        if namespace_of(&repo) != namespace {
            continue;
        }
        for digest in metadata::digests_under(storage, Key::manifests_of, &repo)
            .await?
            .into_keys()
        {
            let Some(stored) = storage.manifest_get(&repo, &digest).await? else {
                continue; // deleted meanwhile
            };
            if let Ok(facts) =
                manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
            {
                usage
                    .blobs
                    .extend(facts.blobs.into_iter().map(|b| b.digest));
            }
        }
    }
    for blob in &usage.blobs {
        usage.bytes += storage.blob_size(blob).await?.unwrap_or(0);
    }
    Ok(usage)
}

/// Bytes as people read them (binary units), with the exact count.
pub fn show_bytes(bytes: u64) -> String {
    let short = short_bytes(bytes);
    if bytes < 1024 {
        short
    } else {
        format!("{short} ({bytes} bytes)")
    }
}

/// Bytes in binary units, one decimal: `1.5 MiB`.
pub fn short_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegistryConfig;

    fn config(yaml: &str) -> RegistryConfig {
        RegistryConfig::from_yaml(yaml, None).unwrap().config
    }

    #[test]
    fn the_lowest_limit_of_a_kind_applies_and_the_default_covers_the_rest() {
        let c = config(
            "FEATURE_QUOTA_MANAGEMENT: true\nDEFAULT_SYSTEM_REJECT_QUOTA_BYTES: 5000\nNAMESPACE_QUOTAS:\n  - namespace: team\n    limit_bytes: 1000\n    limits: [{type: Warning, threshold_percent: 80}, {type: Reject, threshold_percent: 100}, {type: Warning, threshold_percent: 50}]\n",
        );
        let warning = Limit::of(&c, "team", LimitKind::Warning).unwrap();
        assert_eq!((warning.bytes, warning.percent), (500, 50));
        let reject = Limit::of(&c, "team", LimitKind::Reject).unwrap();
        assert_eq!(reject.bytes, 1000);
        assert_eq!(reject.source, "NAMESPACE_QUOTAS[0]");
        let other = Limit::of(&c, "other", LimitKind::Reject).unwrap();
        assert_eq!(
            (other.bytes, other.source.as_str()),
            (5000, "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES")
        );
        assert_eq!(Limit::of(&c, "other", LimitKind::Warning), None);
        let off = RegistryConfig {
            feature_quota_management: false,
            ..c
        };
        assert_eq!(Limit::of(&off, "team", LimitKind::Reject), None);
    }

    #[test]
    fn percentages_of_huge_quotas_do_not_overflow() {
        let c = config(&format!(
            "FEATURE_QUOTA_MANAGEMENT: true\nNAMESPACE_QUOTAS:\n  - {{namespace: big, limit_bytes: {}, limits: [{{type: Reject, threshold_percent: 90}}]}}\n",
            u64::MAX
        ));
        let limit = Limit::of(&c, "big", LimitKind::Reject).unwrap();
        assert_eq!(limit.bytes, u64::MAX / 100 * 90 + u64::MAX % 100 * 90 / 100);
    }

    #[test]
    fn problems_are_named() {
        let err = RegistryConfig::from_yaml(
            "NAMESPACE_QUOTAS:\n  - {namespace: '*', limit_bytes: 10}\n  - {namespace: ok, limit_bytes: 0}\n  - {namespace: ok2, limit_bytes: 10, limits: [{type: Reject, threshold_percent: 150}]}\n",
            None,
        )
        .unwrap_err();
        let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "NAMESPACE_QUOTAS[0]",
                "NAMESPACE_QUOTAS[1]",
                "NAMESPACE_QUOTAS[2]"
            ],
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("DEFAULT_SYSTEM_REJECT_QUOTA_BYTES"),
            "{err}"
        );
        assert!(err.to_string().contains("outside 1..100"), "{err}");
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(show_bytes(512), "512 B");
        assert_eq!(show_bytes(10 * 1024 * 1024), "10.0 MiB (10485760 bytes)");
    }
}

//! Which tags go by themselves: tags naming an image labelled
//! `quay.expires-after` (Quay's label, e.g. `2w`) once that long has passed
//! since the tag was pushed, and — with `FEATURE_AUTO_PRUNE` — the tags
//! `AUTO_PRUNE_POLICIES` drop: all but the newest `number_of_tags`, or those
//! older than `creation_date` (Quay's auto-prune methods), optionally only
//! among the tags a pattern matches.
//!
//! Never removed: cosign's `sha256-<hex>.sig/.att/.sbom` tags (they belong
//! to the image they sign, not to the namespace's release history) and
//! immutable tags. Only tags are removed here; what they leave behind is
//! garbage for gc.rs.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::config::RegistryConfig;
use crate::digest::Digest;
use crate::image_labels;
use crate::immutable_tags;
use crate::names::{ALL_NAMESPACES, RepoName, Tag, valid_namespace};
use crate::storage::{Key, Storage, StorageResult};

/// Quay's label: the tags naming this image expire this long after their
/// push.
pub const EXPIRES_AFTER_LABEL: &str = "quay.expires-after";

/// Tags cosign writes next to an image (signatures, attestations, SBOMs).
static COSIGN_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^sha256-[0-9a-f]{64}(\.[a-z]+)?$").expect("static regex"));

/// Quay's auto-prune methods with their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "value", rename_all = "snake_case")]
pub enum PruneMethod {
    /// Keep the newest N tags.
    NumberOfTags(u64),
    /// Drop tags pushed longer ago than this (`30m`, `24h`, `7d`, `2w`).
    CreationDate(String),
}

/// One auto-prune policy of a namespace (Quay's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunePolicy {
    /// A namespace (the first segment of repository names), or `*`.
    pub namespace: String,
    #[serde(flatten)]
    pub method: PruneMethod,
    /// Only tags whose whole name matches (or, with `tagPatternMatches:
    /// false`, does not match) this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_pattern: Option<String>,
    #[serde(default = "yes")]
    pub tag_pattern_matches: bool,
}

fn yes() -> bool {
    true
}

/// A Quay duration: a whole number and a unit of s, m, h, d or w.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

impl PrunePolicy {
    fn pattern(&self) -> Option<Result<Regex, regex::Error>> {
        self.tag_pattern
            .as_ref()
            .map(|p| Regex::new(&format!("^(?:{p})$")))
    }

    /// What is wrong with the policy, if anything (for config validation).
    pub fn problem(&self) -> Option<String> {
        if self.namespace != ALL_NAMESPACES && !valid_namespace(&self.namespace) {
            return Some(format!(
                "namespace {:?} is neither a repository namespace nor {ALL_NAMESPACES:?}",
                self.namespace
            ));
        }
        match &self.method {
            PruneMethod::NumberOfTags(0) => {
                return Some("number_of_tags 0 would delete every tag; keep at least 1".into());
            }
            PruneMethod::CreationDate(age) if parse_duration(age).is_none() => {
                return Some(format!(
                    "creation_date {age:?} is not a duration (a number and s, m, h, d or w, e.g. 2w)"
                ));
            }
            _ => {}
        }
        match self.pattern() {
            Some(Err(e)) => Some(format!(
                "tagPattern {:?} is not a regular expression: {e}",
                self.tag_pattern.as_deref().unwrap_or_default()
            )),
            _ => None,
        }
    }

    fn covers(&self, repo: &RepoName) -> bool {
        let namespace = repo.as_str().split('/').next().unwrap_or_default();
        self.namespace == ALL_NAMESPACES || self.namespace == namespace
    }

    fn selects(&self, tag: &str) -> bool {
        match self.pattern() {
            None => true,
            Some(Ok(re)) => re.is_match(tag) == self.tag_pattern_matches,
            Some(Err(_)) => false, // refused at load
        }
    }
}

/// Why a tag goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Its image's `quay.expires-after` passed.
    Expired { after: String },
    /// An auto-prune policy of its namespace.
    Pruned { policy: usize },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Expired { after } => write!(f, "its image has {EXPIRES_AFTER_LABEL}={after}"),
            Why::Pruned { policy } => write!(f, "AUTO_PRUNE_POLICIES[{policy}]"),
        }
    }
}

/// A tag as retention sees it.
#[derive(Debug, Clone)]
pub struct TagFacts {
    pub tag: Tag,
    pub digest: Digest,
    /// When it was last pushed (moved).
    pub pushed: SystemTime,
    pub expires_after: Option<String>,
    pub immutable: bool,
}

/// The tags of one repository that go as of `now`, and why. Pure: the
/// sweep gathers the facts and deletes.
pub fn decide(
    config: &RegistryConfig,
    repo: &RepoName,
    tags: &[TagFacts],
    now: SystemTime,
) -> Vec<(Tag, Why)> {
    let age = |t: &TagFacts| now.duration_since(t.pushed).unwrap_or_default();
    let removable: Vec<&TagFacts> = tags
        .iter()
        .filter(|t| !t.immutable && !COSIGN_TAG.is_match(t.tag.as_str()))
        .collect();
    let mut out: Vec<(Tag, Why)> = Vec::new();
    let mut add = |tag: &Tag, why: Why| {
        if !out.iter().any(|(t, _)| t == tag) {
            out.push((tag.clone(), why));
        }
    };
    for t in &removable {
        if let Some(after) = &t.expires_after
            && parse_duration(after).is_some_and(|d| age(t) >= d)
        {
            add(
                &t.tag,
                Why::Expired {
                    after: after.clone(),
                },
            );
        }
    }
    if !config.feature_auto_prune {
        return out;
    }
    for (i, policy) in config.auto_prune_policies.iter().enumerate() {
        if !policy.covers(repo) {
            continue;
        }
        let mut selected: Vec<&&TagFacts> = removable
            .iter()
            .filter(|t| policy.selects(t.tag.as_str()))
            .collect();
        match &policy.method {
            PruneMethod::NumberOfTags(keep) => {
                // Newest first; ties by name, so the choice is stable.
                selected.sort_by(|a, b| {
                    b.pushed
                        .cmp(&a.pushed)
                        .then(a.tag.as_str().cmp(b.tag.as_str()))
                });
                for t in selected
                    .iter()
                    .skip(usize::try_from(*keep).unwrap_or(usize::MAX))
                {
                    add(&t.tag, Why::Pruned { policy: i });
                }
            }
            PruneMethod::CreationDate(limit) => {
                let Some(limit) = parse_duration(limit) else {
                    continue;
                };
                for t in selected.iter().filter(|t| age(t) > limit) {
                    add(&t.tag, Why::Pruned { policy: i });
                }
            }
        }
    }
    out
}

/// One tag removed by a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub repo: String,
    pub tag: String,
    pub digest: Digest,
    pub why: String,
}

/// Gather the facts of every repository's tags, decide, and delete what
/// goes. A tag pushed again after it was looked at is left alone.
pub async fn sweep(
    storage: &dyn Storage,
    config: &RegistryConfig,
    labels: &image_labels::LabelCache,
    now: SystemTime,
) -> StorageResult<Vec<Removed>> {
    let mut removed = Vec::new();
    for name in storage.repositories().await? {
        let Some(repo) = RepoName::parse(&name) else {
            continue;
        };
        let facts = tag_facts(storage, config, labels, &repo).await?;
        for (tag, why) in decide(config, &repo, &facts, now) {
            let Some(seen) = facts.iter().find(|f| f.tag == tag) else {
                continue;
            };
            // Left alone when moved since (the decision was about another
            // push), and never racing a push of it (removal.rs).
            if removal::remove(storage, &repo, &tag, &seen.digest).await? {
                tracing::info!(repository = %repo, tag = %tag, digest = %seen.digest, reason = %why, "tag removed");
                removed.push(Removed {
                    repo: repo.to_string(),
                    tag: tag.to_string(),
                    digest: seen.digest.clone(),
                    why: why.to_string(),
                });
            }
        }
        removal::purge_marks(storage, &repo, now).await?;
    }
    Ok(removed)
}

async fn tag_facts(
    storage: &dyn Storage,
    config: &RegistryConfig,
    cache: &image_labels::LabelCache,
    repo: &RepoName,
) -> StorageResult<Vec<TagFacts>> {
    let mut out = Vec::new();
    for entry in storage.kv_list(&Key::tags(repo)).await? {
        let Some(tag) = Tag::parse(&entry.name) else {
            continue;
        };
        let Some(digest) = storage.tag_get(repo, &tag).await? else {
            continue;
        };
        let labels = cache
            .of_manifest(storage, repo, &digest, config.maximum_manifest_size)
            .await?;
        let immutable = config.feature_immutable_tags
            && (immutable_tags::policy_for(&config.immutable_tags_policies, repo, &tag).is_some()
                || immutable_tags::labelled_immutable(&labels));
        out.push(TagFacts {
            expires_after: image_labels::text(&labels, EXPIRES_AFTER_LABEL).map(str::to_string),
            tag,
            digest,
            pushed: entry.modified,
            immutable,
        });
    }
    Ok(out)
}

pub mod removal;
#[cfg(test)]
mod tests;

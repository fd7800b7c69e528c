//! Immutable tags (`FEATURE_IMMUTABLE_TAGS`, Quay's key). A tag is immutable
//! when a policy of `IMMUTABLE_TAGS_POLICIES` matches it, or when the image
//! it names carries Quay's label `quay.immutable=true` in its config. An
//! immutable tag is never moved to another manifest, never deleted, and the
//! manifest it names is never deleted; pushing the same manifest again is
//! allowed (clients re-push, and nothing changes).
//!
//! This module decides; `api/manifests.rs` asks it before anything is
//! written, so a refused request stores nothing.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::image_labels::{self, Labels};
use crate::names::{ALL_NAMESPACES, RepoName, Tag, valid_namespace};

/// Quay's label on an image config that makes the tags naming it immutable.
pub const IMMUTABLE_LABEL: &str = "quay.immutable";

/// One policy: the tags of a namespace whose whole name matches (or, with
/// `tagPatternMatches: false`, does not match) a regular expression. The
/// field names are Quay's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImmutableTagPolicy {
    /// A namespace (the first segment of repository names), or `*` for all.
    pub namespace: String,
    /// A regular expression the whole tag is matched against.
    pub tag_pattern: String,
    /// true: tags that match are immutable; false: tags that do not match.
    #[serde(default = "matches_by_default")]
    pub tag_pattern_matches: bool,
}

fn matches_by_default() -> bool {
    true
}

impl ImmutableTagPolicy {
    /// The pattern, anchored so it must match the whole tag.
    fn regex(&self) -> Result<Regex, regex::Error> {
        Regex::new(&format!("^(?:{})$", self.tag_pattern))
    }

    /// What is wrong with the policy, if anything (for config validation).
    pub fn problem(&self) -> Option<String> {
        if self.namespace != ALL_NAMESPACES && !valid_namespace(&self.namespace) {
            return Some(format!(
                "namespace {:?} is neither a repository namespace nor {ALL_NAMESPACES:?}",
                self.namespace
            ));
        }
        if self.tag_pattern.is_empty() {
            return Some("tagPattern is empty".into());
        }
        self.regex().err().map(|e| {
            format!(
                "tagPattern {:?} is not a regular expression: {e}",
                self.tag_pattern
            )
        })
    }

    fn applies_to(&self, repo: &RepoName, tag: &Tag) -> bool {
        let namespace = repo.as_str().split('/').next().unwrap_or_default();
        if self.namespace != ALL_NAMESPACES && self.namespace != namespace {
            return false;
        }
        // Validated at load; an uncompilable pattern protects nothing.
        self.regex()
            .is_ok_and(|re| re.is_match(tag.as_str()) == self.tag_pattern_matches)
    }

    fn describe(&self) -> String {
        format!(
            "IMMUTABLE_TAGS_POLICIES: namespace {:?}, tagPattern {:?}{}",
            self.namespace,
            self.tag_pattern,
            if self.tag_pattern_matches {
                ""
            } else {
                ", tagPatternMatches false"
            }
        )
    }
}

/// Why a tag is immutable: what the refusal message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Immutable {
    Policy(ImmutableTagPolicy),
    /// The image the tag names has `quay.immutable=true`.
    Label,
}

impl Immutable {
    fn describe(&self) -> String {
        match self {
            Immutable::Policy(p) => format!("{}; FEATURE_IMMUTABLE_TAGS is true", p.describe()),
            Immutable::Label => format!(
                "the image it names has the label {IMMUTABLE_LABEL}=true; FEATURE_IMMUTABLE_TAGS is true"
            ),
        }
    }

    fn remedy(&self) -> &'static str {
        match self {
            Immutable::Policy(_) => {
                "an administrator can change IMMUTABLE_TAGS_POLICIES or FEATURE_IMMUTABLE_TAGS"
            }
            Immutable::Label => "an administrator can set FEATURE_IMMUTABLE_TAGS to false",
        }
    }

    /// The refusal of moving `tag` from `current` to `new`.
    pub fn refuse_move(&self, repo: &RepoName, tag: &Tag, current: &str, new: &str) -> String {
        format!(
            "tag {repo}:{tag} is immutable ({}): it names {current}, and this push of {new} would move it; push under a new tag, or {}",
            self.describe(),
            self.remedy()
        )
    }

    /// The refusal of deleting `tag`.
    pub fn refuse_tag_delete(&self, repo: &RepoName, tag: &Tag) -> String {
        format!(
            "tag {repo}:{tag} is immutable ({}): it cannot be deleted; {}",
            self.describe(),
            self.remedy()
        )
    }

    /// The refusal of deleting the manifest `digest`, which `tag` names.
    pub fn refuse_manifest_delete(&self, repo: &RepoName, tag: &Tag, digest: &str) -> String {
        format!(
            "manifest {digest} is named by the immutable tag {repo}:{tag} ({}): it cannot be deleted; {}",
            self.describe(),
            self.remedy()
        )
    }
}

/// The first policy that makes `tag` of `repo` immutable.
pub fn policy_for(
    policies: &[ImmutableTagPolicy],
    repo: &RepoName,
    tag: &Tag,
) -> Option<ImmutableTagPolicy> {
    policies.iter().find(|p| p.applies_to(repo, tag)).cloned()
}

/// Whether an image's labels have `quay.immutable=true`.
pub fn labelled_immutable(labels: &Labels) -> bool {
    image_labels::text(labels, IMMUTABLE_LABEL).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(namespace: &str, pattern: &str, matches: bool) -> ImmutableTagPolicy {
        ImmutableTagPolicy {
            namespace: namespace.into(),
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
        }
    }

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[test]
    fn the_whole_tag_must_match_in_the_policy_namespace() {
        let policies = [policy("prod", r"v[0-9]+\.[0-9]+", true)];
        assert!(policy_for(&policies, &repo("prod/app"), &tag("v1.2")).is_some());
        assert!(policy_for(&policies, &repo("prod/team/app"), &tag("v1.2")).is_some());
        // Anchored: a tag that only contains the pattern is not matched.
        assert!(policy_for(&policies, &repo("prod/app"), &tag("v1.2-rc1")).is_none());
        assert!(policy_for(&policies, &repo("prod/app"), &tag("latest")).is_none());
        assert!(policy_for(&policies, &repo("dev/app"), &tag("v1.2")).is_none());
        assert!(policy_for(&policies, &repo("production/app"), &tag("v1.2")).is_none());
    }

    #[test]
    fn inverted_and_all_namespace_policies() {
        let policies = [policy("*", "latest|dev-.*", false)];
        assert!(policy_for(&policies, &repo("any/app"), &tag("v1")).is_some());
        assert!(policy_for(&policies, &repo("other"), &tag("v1")).is_some());
        assert!(policy_for(&policies, &repo("any/app"), &tag("latest")).is_none());
        assert!(policy_for(&policies, &repo("any/app"), &tag("dev-42")).is_none());
    }

    #[test]
    fn problems_name_the_field() {
        assert_eq!(policy("prod", "v.*", true).problem(), None);
        assert!(
            policy("prod", "v(", true)
                .problem()
                .unwrap()
                .contains("tagPattern \"v(\" is not a regular expression")
        );
        assert!(
            policy("Prod!", "v.*", true)
                .problem()
                .unwrap()
                .contains("namespace \"Prod!\"")
        );
        assert_eq!(
            policy("prod", "", true).problem().as_deref(),
            Some("tagPattern is empty")
        );
    }

    #[test]
    fn the_label_is_read_from_the_image_config() {
        let labelled = |json: &[u8]| labelled_immutable(&image_labels::from_config(json));
        assert!(labelled(
            br#"{"config":{"Labels":{"quay.immutable":"true"}}}"#
        ));
        assert!(labelled(
            br#"{"config":{"Labels":{"quay.immutable":"True"}}}"#
        ));
        assert!(!labelled(
            br#"{"config":{"Labels":{"quay.immutable":"false"}}}"#
        ));
        assert!(!labelled(br#"{"config":{}}"#));
        assert!(!labelled(b"not json"));
    }

    #[test]
    fn refusals_name_the_tag_the_setting_and_the_way_out() {
        let why = Immutable::Policy(policy("prod", "v.*", true));
        let message = why.refuse_move(&repo("prod/app"), &tag("v1"), "sha256:aa", "sha256:bb");
        for part in [
            "tag prod/app:v1 is immutable",
            "IMMUTABLE_TAGS_POLICIES: namespace \"prod\", tagPattern \"v.*\"",
            "FEATURE_IMMUTABLE_TAGS is true",
            "it names sha256:aa",
            "sha256:bb would move it",
            "push under a new tag",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message:?}");
        }
        let message = Immutable::Label.refuse_tag_delete(&repo("prod/app"), &tag("v1"));
        assert!(message.contains("quay.immutable=true"), "{message}");
        assert!(message.contains("cannot be deleted"), "{message}");
    }
}

//! The configuration of one repository mirror (`REPO_MIRRORS`), with
//! Quay's field names where Quay has them.

use std::path::PathBuf;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::names::RepoName;
use crate::proxy_cache::{ProxyCacheNamespace, UpstreamAddress};

/// One repository kept in step with a repository of another registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoMirror {
    /// The local repository the tags are copied into.
    pub repository: String,
    /// The upstream repository: `host[:port]/path` (Quay's field), e.g.
    /// `quay.io/prometheus/node-exporter`; `docker.io/alpine` is Docker
    /// Hub's `library/alpine`.
    pub external_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_registry_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_registry_password: Option<String>,
    /// Which tags: shell globs (`*`, `?`), Quay's `tag_glob_csv` rule.
    /// Default: every tag.
    #[serde(default = "every_tag")]
    pub tags: Vec<String>,
    /// And, when set, only tags this regular expression matches whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_regex: Option<String>,
    /// And, when set, only tags that are versions in this semver range,
    /// e.g. `>=1.2, <2` (a leading `v` is allowed in tags: `v1.4.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Copy only images with a signature upstream (a cosign `.sig` tag or
    /// a signature among the referrers).
    #[serde(default)]
    pub signed_only: bool,
    /// Remove local tags the upstream no longer has (only those the rules
    /// select). Default: keep them.
    #[serde(default)]
    pub prune_vanished_tags: bool,
    /// Plain HTTP to the upstream.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of CAs trusted for the upstream, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca_file: Option<PathBuf>,
    /// The same, inline (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
}

fn every_tag() -> Vec<String> {
    vec!["*".into()]
}

impl std::fmt::Debug for RepoMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoMirror")
            .field("repository", &self.repository)
            .field("external_reference", &self.external_reference)
            .field(
                "external_registry_username",
                &self.external_registry_username,
            )
            .field(
                "external_registry_password",
                &self
                    .external_registry_password
                    .as_ref()
                    .map(|_| "<redacted>"),
            )
            .field("tags", &self.tags)
            .field("tag_regex", &self.tag_regex)
            .field("semver", &self.semver)
            .field("signed_only", &self.signed_only)
            .field("prune_vanished_tags", &self.prune_vanished_tags)
            .field("insecure", &self.insecure)
            .field("upstream_ca_file", &self.upstream_ca_file)
            .field("upstream_ca", &self.upstream_ca.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

impl RepoMirror {
    /// What is wrong with it, if anything (for config validation).
    pub fn problem(&self) -> Option<String> {
        if RepoName::parse(&self.repository).is_none() {
            return Some(format!(
                "repository {:?} is not a repository name",
                self.repository
            ));
        }
        match UpstreamAddress::parse(&self.external_reference) {
            Err(reason) => return Some(format!("external_reference: {reason}")),
            Ok(a) if a.prefix.is_none() => {
                return Some(format!(
                    "external_reference {:?} names a registry, not a repository (host/path)",
                    self.external_reference
                ));
            }
            Ok(_) => {}
        }
        if self.external_registry_username.is_some() != self.external_registry_password.is_some() {
            return Some(
                "set external_registry_username and external_registry_password together".into(),
            );
        }
        if self.tags.is_empty() {
            return Some(
                "tags is empty: nothing would be mirrored (use [\"*\"] for every tag)".into(),
            );
        }
        if let Some(re) = &self.tag_regex
            && let Err(e) = Regex::new(re)
        {
            return Some(format!("tag_regex {re:?} is not a regular expression: {e}"));
        }
        if let Some(range) = &self.semver
            && let Err(e) = semver::VersionReq::parse(range)
        {
            return Some(format!(
                "semver {range:?} is not a version range such as \">=1.2, <2\": {e}"
            ));
        }
        crate::proxy_cache::ca_problem(
            self.insecure,
            self.upstream_ca_file.as_deref(),
            self.upstream_ca.as_deref(),
        )
    }

    /// The upstream client's settings.
    pub fn upstream_settings(&self) -> ProxyCacheNamespace {
        let host = self
            .external_reference
            .split_once('/')
            .map_or(self.external_reference.as_str(), |(h, _)| h);
        ProxyCacheNamespace {
            namespace: String::new(),
            upstream_registry: host.to_string(),
            upstream_registry_username: self.external_registry_username.clone(),
            upstream_registry_password: self.external_registry_password.clone(),
            expiration_s: 0,
            insecure: self.insecure,
            upstream_ca_file: self.upstream_ca_file.clone(),
            upstream_ca: self.upstream_ca.clone(),
        }
    }

    /// The upstream repository's name.
    pub fn remote(&self) -> String {
        match UpstreamAddress::parse(&self.external_reference) {
            Ok(address) => {
                let path = address.prefix.clone().unwrap_or_default();
                if address.docker_hub && !path.contains('/') {
                    format!("library/{path}")
                } else {
                    path
                }
            }
            Err(_) => String::new(),
        }
    }

    /// Whether the rules select `tag`.
    pub fn selects(&self, tag: &str) -> bool {
        let globbed = self.tags.iter().any(|g| glob_matches(g, tag));
        let matched = self
            .tag_regex
            .as_ref()
            .is_none_or(|re| Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(tag)));
        let in_range = self.semver.as_ref().is_none_or(|range| {
            let version = tag.strip_prefix('v').unwrap_or(tag);
            match (
                semver::VersionReq::parse(range),
                semver::Version::parse(version),
            ) {
                (Ok(range), Ok(version)) => range.matches(&version),
                _ => false,
            }
        });
        globbed && matched && in_range
    }
}

/// A shell glob with `*` (any run) and `?` (one character).
fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some(gi);
            mark = ti;
            gi += 1;
        } else if let Some(s) = star {
            gi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(tags: &[&str], regex: Option<&str>) -> RepoMirror {
        RepoMirror {
            repository: "mirrors/app".into(),
            external_reference: "docker.io/alpine".into(),
            external_registry_username: None,
            external_registry_password: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tag_regex: regex.map(str::to_string),
            semver: None,
            signed_only: false,
            prune_vanished_tags: false,
            insecure: false,
            upstream_ca_file: None,
            upstream_ca: None,
        }
    }

    #[test]
    fn rules_select_tags() {
        let m = mirror(&["v1.*", "latest"], None);
        assert!(m.selects("v1.2") && m.selects("latest"));
        assert!(!m.selects("v2.0") && !m.selects("xlatest"));
        let m = mirror(&["*"], Some(r"v1\.[0-9]+"));
        assert!(m.selects("v1.10"));
        assert!(!m.selects("v1.10-rc1"), "the regex matches whole tags");
        assert!(glob_matches("a?c*", "abcdef"));
        assert!(!glob_matches("a?c", "ac"));
        assert_eq!(m.remote(), "library/alpine");
        assert_eq!(m.upstream_settings().upstream_registry, "docker.io");
        assert!(mirror(&[], None).problem().is_some());
        assert!(mirror(&["*"], Some("(")).problem().is_some());
        let ranged = RepoMirror {
            semver: Some(">=1.2, <2".into()),
            ..mirror(&["*"], None)
        };
        assert!(ranged.selects("v1.2.0") && ranged.selects("1.9.3"));
        assert!(!ranged.selects("v2.0.0") && !ranged.selects("1.1.9") && !ranged.selects("latest"));
        assert!(
            !ranged.selects("v1.3.0-rc.1"),
            "pre-releases only when the range names one"
        );
        assert!(
            RepoMirror {
                semver: Some("not a range".into()),
                ..mirror(&["*"], None)
            }
            .problem()
            .is_some()
        );
    }
}

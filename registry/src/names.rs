//! Repository names, tags and references, validated by the grammar of the
//! OCI Distribution spec before they ever reach storage (they become paths).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::Digest;

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("static regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("static regex"));

/// Longest repository name accepted (distribution uses the same bound).
pub const MAX_NAME_LEN: usize = 255;

/// Namespace pattern that stands for every namespace.
pub const ALL_NAMESPACES: &str = "*";

/// Namespace patterns (accounts' access, anonymous pull): `*` or a valid
/// first segment of a repository name.
pub fn valid_namespace(ns: &str) -> bool {
    ns == ALL_NAMESPACES || RepoName::parse(ns).is_some_and(|n| !n.as_str().contains('/'))
}

/// A valid repository name, e.g. `team/app/api`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Option<RepoName> {
        (s.len() <= MAX_NAME_LEN && NAME_RE.is_match(s)).then(|| RepoName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid tag, e.g. `v1.2.3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Option<Tag> {
        TAG_RE.is_match(s).then(|| Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `manifests/<reference>` names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// `None` when the string is neither a valid tag nor a digest we accept.
    pub fn parse(s: &str) -> Option<Reference> {
        if s.contains(':') {
            s.parse().ok().map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d/e",
            "my-app",
            "my__app",
            "a.b_c--d/x9",
        ] {
            assert!(RepoName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a/../b", "-a", "a_", "_a", "a___b", ".", "a/.b",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_none());
    }

    #[test]
    fn tags_and_references() {
        assert!(Tag::parse("v1.0_rc-1").is_some());
        assert!(Tag::parse(".INVALID_MANIFEST_NAME").is_none());
        assert!(Tag::parse(&"a".repeat(129)).is_none());
        assert!(matches!(
            Reference::parse("latest"),
            Some(Reference::Tag(_))
        ));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(Reference::parse(&d), Some(Reference::Digest(_))));
        assert!(Reference::parse("sha256:zz").is_none());
    }
}

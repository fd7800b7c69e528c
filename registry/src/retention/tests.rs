//! The retention rules, on facts made up here, and one sweep on a real
//! store.

use super::*;

fn tag(name: &str, pushed_secs_ago: u64, now: SystemTime) -> TagFacts {
    TagFacts {
        tag: Tag::parse(name).unwrap(),
        digest: Digest::of_bytes(crate::digest::Algorithm::Sha256, name.as_bytes()),
        pushed: now - Duration::from_secs(pushed_secs_ago),
        expires_after: None,
        immutable: false,
    }
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).unwrap()
}

fn names(out: &[(Tag, Why)]) -> Vec<&str> {
    let mut v: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
    v.sort();
    v
}

fn pruning(policies: &str) -> RegistryConfig {
    RegistryConfig {
        feature_auto_prune: true,
        auto_prune_policies: serde_json::from_str(policies).unwrap(),
        ..RegistryConfig::default()
    }
}

#[test]
fn durations_are_quays() {
    assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
    assert_eq!(parse_duration("36h"), Some(Duration::from_secs(36 * 3600)));
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    for bad in ["", "w", "2", "2y", "-1d", "1.5h"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn number_of_tags_keeps_the_newest_and_never_signatures_or_immutable_tags() {
    let now = SystemTime::now();
    let sig = format!("sha256-{}.sig", "a".repeat(64));
    let mut tags = vec![
        tag("v1", 500, now),
        tag("v2", 400, now),
        tag("v3", 300, now),
        tag("v4", 200, now),
        tag(&sig, 900, now),
        tag("pinned", 1000, now),
    ];
    tags[5].immutable = true;
    let config = pruning(r#"[{"namespace":"prod","method":"number_of_tags","value":2}]"#);
    let out = decide(&config, &repo("prod/app"), &tags, now);
    assert_eq!(names(&out), vec!["v1", "v2"]);
    assert!(out.iter().all(|(_, why)| *why == Why::Pruned { policy: 0 }));
    // Another namespace: untouched; feature off: untouched.
    assert!(decide(&config, &repo("dev/app"), &tags, now).is_empty());
    let off = RegistryConfig {
        feature_auto_prune: false,
        ..config.clone()
    };
    assert!(decide(&off, &repo("prod/app"), &tags, now).is_empty());
}

#[test]
fn creation_date_with_a_pattern() {
    let now = SystemTime::now();
    let tags = vec![
        tag("pr-1", 3 * 86_400, now),
        tag("pr-2", 3600, now),
        tag("v1", 30 * 86_400, now),
    ];
    let config = pruning(
        r#"[{"namespace":"*","method":"creation_date","value":"2d","tagPattern":"pr-.*"}]"#,
    );
    assert_eq!(
        names(&decide(&config, &repo("ci/app"), &tags, now)),
        vec!["pr-1"]
    );
    // Inverted: everything but pr-* older than 2d.
    let config = pruning(
        r#"[{"namespace":"*","method":"creation_date","value":"2d","tagPattern":"pr-.*","tagPatternMatches":false}]"#,
    );
    assert_eq!(
        names(&decide(&config, &repo("ci/app"), &tags, now)),
        vec!["v1"]
    );
}

#[test]
fn the_expires_after_label_expires_tags_without_any_policy() {
    let now = SystemTime::now();
    let mut tags = vec![
        tag("old", 3 * 3600, now),
        tag("fresh", 60, now),
        tag("bad", 9 * 3600, now),
    ];
    tags[0].expires_after = Some("2h".into());
    tags[1].expires_after = Some("2h".into());
    tags[2].expires_after = Some("soon".into()); // not a duration: kept
    let out = decide(&RegistryConfig::default(), &repo("x"), &tags, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.as_str(), "old");
    assert_eq!(out[0].1.to_string(), "its image has quay.expires-after=2h");
}

#[test]
fn policy_problems_are_precise() {
    let policy = |json: &str| -> PrunePolicy { serde_json::from_str(json).unwrap() };
    assert_eq!(
        policy(r#"{"namespace":"a","method":"number_of_tags","value":0}"#)
            .problem()
            .as_deref(),
        Some("number_of_tags 0 would delete every tag; keep at least 1")
    );
    assert!(
        policy(r#"{"namespace":"a","method":"creation_date","value":"2 weeks"}"#)
            .problem()
            .unwrap()
            .contains("\"2 weeks\" is not a duration")
    );
    assert!(
        policy(r#"{"namespace":"a","method":"creation_date","value":"2w","tagPattern":"("}"#)
            .problem()
            .unwrap()
            .contains("not a regular expression")
    );
    assert_eq!(
        policy(r#"{"namespace":"*","method":"creation_date","value":"2w"}"#).problem(),
        None
    );
}

/// A sweep on a filesystem store: the oldest tag pruned, its neighbours
/// kept, and a second sweep finds nothing more.
#[tokio::test]
async fn a_sweep_deletes_only_what_was_decided() {
    use crate::storage::{FilesystemStorage, StoredManifest};
    let dir = tempfile::tempdir().unwrap();
    let store = FilesystemStorage::open(dir.path()).unwrap();
    let r = repo("prod/app");
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let digest = Digest::of_bytes(crate::digest::Algorithm::Sha256, manifest);
    store
        .manifest_put(
            &r,
            &digest,
            &StoredManifest {
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                bytes: bytes::Bytes::from_static(manifest),
            },
        )
        .await
        .unwrap();
    for t in ["a", "b", "c"] {
        store
            .tag_set(&r, &Tag::parse(t).unwrap(), &digest)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = pruning(r#"[{"namespace":"prod","method":"number_of_tags","value":2}]"#);
    let removed = sweep(&store, &config, &Default::default(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].tag, "a");
    assert_eq!(removed[0].why, "AUTO_PRUNE_POLICIES[0]");
    assert_eq!(store.tags_list(&r).await.unwrap().unwrap(), vec!["b", "c"]);
    // Nothing more to do: a second sweep removes nothing.
    assert!(
        sweep(&store, &config, &Default::default(), SystemTime::now())
            .await
            .unwrap()
            .is_empty()
    );
}

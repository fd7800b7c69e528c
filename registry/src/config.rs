//! `RegistryConfig`: the schema of the registry's `config.yaml`.
//!
//! Keys keep Red Hat Quay's names where Quay has the setting, so a Quay
//! admin's file reads the same. The operator renders this type too: one
//! type, two users, no drift. Unknown keys are reported by name; invalid
//! values refuse to start, naming the key and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::storage::settings::StorageSettings;

/// The manifest size every registry must accept (OCI distribution spec).
pub const MIN_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Smallest header limit accepted: what real clients send fits many times
/// (a bearer token is a few KiB).
pub const MIN_REQUEST_HEADER_BYTES: u64 = 8 * 1024;
const GIB: u64 = 1024 * 1024 * 1024;

/// Default name of the storage location in `DISTRIBUTED_STORAGE_CONFIG`.
pub const DEFAULT_STORAGE_LOCATION: &str = "default";

/// The registry's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Host (and optional port) clients use to reach the registry.
    #[serde(rename = "SERVER_HOSTNAME", skip_serializing_if = "Option::is_none")]
    pub server_hostname: Option<String>,

    /// Storage locations, Quay's shape: `name: [Driver, {parameters}]`.
    #[serde(rename = "DISTRIBUTED_STORAGE_CONFIG")]
    pub distributed_storage_config: BTreeMap<String, StorageLocation>,

    /// Which location to use, first entry wins (Quay's key).
    #[serde(rename = "DISTRIBUTED_STORAGE_PREFERENCE")]
    pub distributed_storage_preference: Vec<String>,

    /// Accept OCI artifacts beyond container images.
    #[serde(rename = "FEATURE_GENERAL_OCI_SUPPORT")]
    pub feature_general_oci_support: bool,

    /// Accept Helm charts.
    #[serde(rename = "FEATURE_HELM_OCI_SUPPORT")]
    pub feature_helm_oci_support: bool,

    /// Serve `GET /v2/<name>/referrers/<digest>`.
    #[serde(rename = "FEATURE_REFERRERS_API")]
    pub feature_referrers_api: bool,

    /// Config media type -> allowed layer media types. Unset: any artifact.
    #[serde(
        rename = "ALLOWED_OCI_ARTIFACT_TYPES",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_oci_artifact_types: Option<BTreeMap<String, Vec<String>>>,

    /// Largest manifest accepted, in bytes (at least 4 MiB).
    #[serde(rename = "MAXIMUM_MANIFEST_SIZE")]
    pub maximum_manifest_size: u64,

    /// Largest total of a request's header names and values, in bytes;
    /// larger requests get 431 before any handler runs.
    #[serde(rename = "MAXIMUM_REQUEST_HEADER_BYTES")]
    pub maximum_request_header_bytes: u64,

    /// A connection must send a request's headers within this many seconds
    /// (also while idle between requests), else it is closed: a client
    /// trickling headers (slowloris) cannot hold connections open.
    #[serde(rename = "REQUEST_HEADER_TIMEOUT_SECONDS")]
    pub request_header_timeout_seconds: u64,

    /// A request body that sends nothing for this many seconds is cut off
    /// with 408 (an upload chunk so cut is rolled back, the session kept).
    #[serde(rename = "REQUEST_BODY_IDLE_TIMEOUT_SECONDS")]
    pub request_body_idle_timeout_seconds: u64,

    /// Upload sessions open at once on this replica; one more gets 429.
    #[serde(rename = "MAXIMUM_UPLOAD_SESSIONS")]
    pub maximum_upload_sessions: usize,

    /// Upload sessions one client (account, or address when anonymous)
    /// may hold open at once on this replica; one more gets 429.
    #[serde(rename = "MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT")]
    pub maximum_upload_sessions_per_client: usize,

    /// Bytes all unfinished uploads on this replica may hold; a chunk that
    /// would pass it gets 413 and is rolled back.
    #[serde(rename = "MAXIMUM_STAGED_UPLOAD_BYTES")]
    pub maximum_staged_upload_bytes: u64,

    /// Bytes one client's unfinished uploads may hold on this replica.
    #[serde(rename = "MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT")]
    pub maximum_staged_upload_bytes_per_client: u64,

    /// Largest page of the tag list and the catalog; a larger `n`, or
    /// none, gets this many entries and a `Link` to the next page.
    #[serde(rename = "MAXIMUM_LIST_ENTRIES")]
    pub maximum_list_entries: usize,

    /// bcrypt password checks run at once (0: one per core); more logins
    /// wait up to 2 s, then get 429. Read at start.
    #[serde(rename = "AUTH_CONCURRENT_PASSWORD_CHECKS")]
    pub auth_concurrent_password_checks: usize,

    /// Mount a blob the registry already has when a client asks to mount it
    /// without naming a `from` repository that holds it.
    #[serde(rename = "FEATURE_AUTOMATIC_CROSS_MOUNT")]
    pub feature_automatic_cross_mount: bool,

    /// Upload sessions idle for longer than this are deleted.
    #[serde(rename = "BLOB_UPLOAD_STALE_SECONDS")]
    pub blob_upload_stale_seconds: u64,

    /// Page size of the referrers API (a `Link` header points to the next).
    #[serde(rename = "REFERRERS_PAGE_SIZE")]
    pub referrers_page_size: usize,

    /// Scheme clients use (`http` or `https`, Quay's key); with
    /// SERVER_HOSTNAME it makes the token realm URL. Unset: from the request.
    #[serde(
        rename = "PREFERRED_URL_SCHEME",
        skip_serializing_if = "Option::is_none"
    )]
    pub preferred_url_scheme: Option<String>,

    /// Accounts file (users and robots, bcrypt hashes, rights per
    /// namespace). Set: every request is authenticated. Unset: anyone who
    /// reaches the port may pull and push.
    #[serde(rename = "AUTH_ACCOUNTS_FILE", skip_serializing_if = "Option::is_none")]
    pub auth_accounts_file: Option<String>,

    /// File holding the secret that signs bearer tokens (at least 32
    /// bytes). Every replica must read the same secret.
    #[serde(
        rename = "AUTH_TOKEN_KEY_FILE",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_token_key_file: Option<String>,

    /// Lifetime of issued bearer tokens.
    #[serde(rename = "AUTH_TOKEN_LIFETIME_SECONDS")]
    pub auth_token_lifetime_seconds: u64,

    /// Failed logins a client address may make per minute before it is
    /// answered 429 TOOMANYREQUESTS.
    #[serde(rename = "AUTH_FAILED_LOGINS_PER_MINUTE")]
    pub auth_failed_logins_per_minute: u32,

    /// Namespaces (first path segments) anyone may pull from without
    /// logging in: public repositories.
    #[serde(
        rename = "ANONYMOUS_PULL_NAMESPACES",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub anonymous_pull_namespaces: Vec<String>,

    /// Quay's key: true (our default) sends blob bytes through the
    /// registry; false answers blob GETs on object storage with a redirect
    /// to a presigned URL, valid for five minutes, so the bytes flow from
    /// the bucket to the client directly.
    #[serde(rename = "FEATURE_PROXY_STORAGE")]
    pub feature_proxy_storage: bool,

    /// Quay's key: enforce immutable tags, those IMMUTABLE_TAGS_POLICIES
    /// match and those naming an image labelled `quay.immutable=true`.
    #[serde(rename = "FEATURE_IMMUTABLE_TAGS")]
    pub feature_immutable_tags: bool,

    /// Which tags are immutable, per namespace (Quay keeps these policies
    /// in its database; here they are configuration).
    #[serde(
        rename = "IMMUTABLE_TAGS_POLICIES",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub immutable_tags_policies: Vec<crate::immutable_tags::ImmutableTagPolicy>,

    /// Quay's key: apply AUTO_PRUNE_POLICIES.
    #[serde(rename = "FEATURE_AUTO_PRUNE")]
    pub feature_auto_prune: bool,

    /// Which tags are dropped by themselves, per namespace: Quay's methods
    /// `number_of_tags` (keep the newest N) and `creation_date` (drop those
    /// older than an age), optionally limited by a tag pattern.
    #[serde(rename = "AUTO_PRUNE_POLICIES", skip_serializing_if = "Vec::is_empty")]
    pub auto_prune_policies: Vec<crate::retention::PrunePolicy>,

    /// How often tags are checked for `quay.expires-after` and the prune
    /// policies (seconds).
    #[serde(rename = "TAG_RETENTION_SWEEP_SECONDS")]
    pub tag_retention_sweep_seconds: u64,

    /// Quay's key: delete what no tag keeps (docs/gc.md), online.
    #[serde(rename = "FEATURE_GARBAGE_COLLECTION")]
    pub feature_garbage_collection: bool,

    /// Quay's key: seconds between garbage collection sweeps. Quay's
    /// default is 30 for a per-repository worker on a database; a sweep
    /// here walks the store's metadata, so the default is 600.
    #[serde(rename = "GARBAGE_COLLECTION_FREQUENCY")]
    pub garbage_collection_frequency: u64,

    /// Quay's key for how long a pushed blob is protected (seconds): what
    /// was written less than this long ago is never garbage, and a
    /// condemned item is deleted no sooner than this after it was condemned.
    #[serde(rename = "PUSH_TEMP_TAG_EXPIRATION_SEC")]
    pub push_temp_tag_expiration_sec: u64,

    /// Quay's key: enforce NAMESPACE_QUOTAS and
    /// DEFAULT_SYSTEM_REJECT_QUOTA_BYTES.
    #[serde(rename = "FEATURE_QUOTA_MANAGEMENT")]
    pub feature_quota_management: bool,

    /// Quotas per namespace: `limit_bytes` and Warning/Reject limits at
    /// percentages of it (Quay's fields; Quay keeps them in its database).
    #[serde(rename = "NAMESPACE_QUOTAS", skip_serializing_if = "Vec::is_empty")]
    pub namespace_quotas: Vec<crate::quota::NamespaceQuota>,

    /// Quay's key: the reject limit of every namespace without a quota of
    /// its own. Unset: none.
    #[serde(
        rename = "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_system_reject_quota_bytes: Option<u64>,

    /// Quay's key: serve the namespaces of PROXY_CACHE_NAMESPACES as
    /// pull-through caches of their upstreams.
    #[serde(rename = "FEATURE_PROXY_CACHE")]
    pub feature_proxy_cache: bool,

    /// Namespaces that are caches of an upstream registry, with Quay's
    /// fields of a proxy-cache organization (docs/proxy-cache.md).
    #[serde(
        rename = "PROXY_CACHE_NAMESPACES",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub proxy_cache_namespaces: Vec<crate::proxy_cache::ProxyCacheNamespace>,

    /// Quay's key: keep the repositories of REPO_MIRRORS in step with their
    /// upstreams (docs/mirroring.md).
    #[serde(rename = "FEATURE_REPO_MIRROR")]
    pub feature_repo_mirror: bool,

    /// Seconds between two syncs of a mirror (one replica syncs each).
    #[serde(rename = "REPO_MIRROR_INTERVAL")]
    pub repo_mirror_interval: u64,

    /// Repositories mirrored from another registry, with Quay's fields
    /// where Quay has them.
    #[serde(rename = "REPO_MIRRORS", skip_serializing_if = "Vec::is_empty")]
    pub repo_mirrors: Vec<crate::mirror::RepoMirror>,

    /// The web UI at /ui/ (docs/ui.md), on by default.
    #[serde(rename = "FEATURE_UI")]
    pub feature_ui: bool,
}

/// One storage location: `[Driver, {parameters}]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageLocation(pub String, pub BTreeMap<String, serde_json::Value>);

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            server_hostname: None,
            distributed_storage_config: BTreeMap::from([(
                DEFAULT_STORAGE_LOCATION.to_string(),
                StorageLocation(
                    "LocalStorage".to_string(),
                    BTreeMap::from([(
                        "storage_path".to_string(),
                        serde_json::Value::String("./quarry-data".to_string()),
                    )]),
                ),
            )]),
            distributed_storage_preference: vec![DEFAULT_STORAGE_LOCATION.to_string()],
            feature_general_oci_support: true,
            feature_helm_oci_support: true,
            feature_referrers_api: true,
            allowed_oci_artifact_types: None,
            maximum_manifest_size: MIN_MANIFEST_SIZE,
            maximum_request_header_bytes: 64 * 1024,
            request_header_timeout_seconds: 60,
            auth_concurrent_password_checks: 0,
            request_body_idle_timeout_seconds: 60,
            maximum_upload_sessions: 1024,
            maximum_upload_sessions_per_client: 128,
            maximum_staged_upload_bytes: 512 * GIB,
            maximum_staged_upload_bytes_per_client: 128 * GIB,
            maximum_list_entries: 10_000,
            feature_automatic_cross_mount: true,
            blob_upload_stale_seconds: 24 * 3600,
            referrers_page_size: 1000,
            preferred_url_scheme: None,
            auth_accounts_file: None,
            auth_token_key_file: None,
            auth_token_lifetime_seconds: 300,
            auth_failed_logins_per_minute: 10,
            anonymous_pull_namespaces: Vec::new(),
            feature_proxy_storage: true,
            feature_immutable_tags: false,
            immutable_tags_policies: Vec::new(),
            feature_auto_prune: false,
            auto_prune_policies: Vec::new(),
            tag_retention_sweep_seconds: 600,
            feature_garbage_collection: true,
            garbage_collection_frequency: 600,
            push_temp_tag_expiration_sec: 3600,
            feature_quota_management: false,
            namespace_quotas: Vec::new(),
            default_system_reject_quota_bytes: None,
            feature_proxy_cache: false,
            proxy_cache_namespaces: Vec::new(),
            feature_repo_mirror: false,
            repo_mirror_interval: 300,
            repo_mirrors: Vec::new(),
            feature_ui: true,
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Why a configuration was refused: every invalid key, at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid registry configuration{}:\n{}", source_hint(.source_name), list(.issues))]
pub struct ConfigError {
    pub source_name: Option<String>,
    pub issues: Vec<ConfigIssue>,
}

fn source_hint(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" in {n}"))
        .unwrap_or_default()
}

fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A configuration that passed validation, with the warnings it produced.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: RegistryConfig,
    /// Keys that were present but are not Quarry settings.
    pub unknown_keys: Vec<String>,
}

static MEDIA_TYPE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
        .expect("static regex")
});

static HOSTNAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?$")
        .expect("static regex")
});

/// Whether `s` is a host name with an optional `:port`.
pub fn is_host_name(s: &str) -> bool {
    HOSTNAME_RE.is_match(s)
}

/// Whether `s` is a syntactically valid media type (RFC 6838 names).
pub fn is_media_type(s: &str) -> bool {
    MEDIA_TYPE_RE.is_match(s)
}

impl RegistryConfig {
    /// Parse and validate YAML text. `source_name` names the file in errors.
    pub fn from_yaml(text: &str, source_name: Option<&str>) -> Result<LoadedConfig, ConfigError> {
        let fail = |issues: Vec<ConfigIssue>| ConfigError {
            source_name: source_name.map(str::to_string),
            issues,
        };
        let raw: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_norway::from_str(text).map_err(|e| {
                fail(vec![ConfigIssue {
                    key: "(file)".into(),
                    reason: format!("not valid YAML: {e}"),
                }])
            })?
        };
        let serde_json::Value::Object(map) = raw else {
            return Err(fail(vec![ConfigIssue {
                key: "(file)".into(),
                reason: "the top level must be a mapping of KEY: value".into(),
            }]));
        };

        let mut unknown_keys = Vec::new();
        let mut issues = Vec::new();
        let mut config = RegistryConfig::default();
        let mut known = serde_json::Map::new();
        for (key, value) in map {
            // Decode key by key so an error names exactly one key; a key
            // the struct does not have is reported by serde_ignored (a
            // pasted Quay file yields warnings, not errors).
            let single = serde_json::json!({ key.clone(): value.clone() });
            let mut ignored = Vec::new();
            let decoded: Result<RegistryConfig, _> =
                serde_ignored::deserialize(single, |path| ignored.push(path.to_string()));
            if ignored.iter().any(|p| p == &key) {
                unknown_keys.push(key);
                continue;
            }
            // Unknown keys inside a known one (say a storage parameter).
            unknown_keys.extend(ignored);
            match decoded {
                Ok(_) => {
                    known.insert(key, value);
                }
                Err(e) => issues.push(ConfigIssue {
                    key: key.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        // Check the keys that decoded too, so one run reports every problem.
        match serde_json::from_value::<RegistryConfig>(serde_json::Value::Object(known)) {
            Ok(c) => {
                config = c;
                issues.extend(config.validate());
            }
            Err(e) => issues.push(ConfigIssue {
                key: "(file)".into(),
                reason: e.to_string(),
            }),
        }
        if issues.is_empty() {
            Ok(LoadedConfig {
                config,
                unknown_keys,
            })
        } else {
            Err(fail(issues))
        }
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: Some(name.clone()),
            issues: vec![ConfigIssue {
                key: "(file)".into(),
                reason: format!("cannot read: {e}"),
            }],
        })?;
        Self::from_yaml(&text, Some(&name))
    }

    /// Semantic checks the types cannot express. Returns every problem.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, reason: String| {
            issues.push(ConfigIssue {
                key: key.to_string(),
                reason,
            })
        };
        if let Some(host) = &self.server_hostname
            && !HOSTNAME_RE.is_match(host)
        {
            issue(
                "SERVER_HOSTNAME",
                format!("{host:?} is not a host name with an optional :port"),
            );
        }
        if self.maximum_manifest_size < MIN_MANIFEST_SIZE {
            issue(
                "MAXIMUM_MANIFEST_SIZE",
                format!(
                    "{} bytes is below the {MIN_MANIFEST_SIZE} bytes (4 MiB) the OCI distribution spec requires registries to accept",
                    self.maximum_manifest_size
                ),
            );
        }
        if self.maximum_request_header_bytes < MIN_REQUEST_HEADER_BYTES {
            issue(
                "MAXIMUM_REQUEST_HEADER_BYTES",
                format!(
                    "{} bytes is below the minimum of {MIN_REQUEST_HEADER_BYTES} (clients' bearer tokens alone take a few KiB)",
                    self.maximum_request_header_bytes
                ),
            );
        }
        if self.request_header_timeout_seconds == 0 {
            issue(
                "REQUEST_HEADER_TIMEOUT_SECONDS",
                "must be at least 1 (0 would let a client hold a connection for ever)".into(),
            );
        }
        if self.request_body_idle_timeout_seconds == 0 {
            issue(
                "REQUEST_BODY_IDLE_TIMEOUT_SECONDS",
                "must be at least 1 (0 would let a client stall an upload for ever)".into(),
            );
        }
        for (key, value) in [
            (
                "MAXIMUM_UPLOAD_SESSIONS",
                self.maximum_upload_sessions as u64,
            ),
            (
                "MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT",
                self.maximum_upload_sessions_per_client as u64,
            ),
            (
                "MAXIMUM_STAGED_UPLOAD_BYTES",
                self.maximum_staged_upload_bytes,
            ),
            (
                "MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT",
                self.maximum_staged_upload_bytes_per_client,
            ),
            ("MAXIMUM_LIST_ENTRIES", self.maximum_list_entries as u64),
        ] {
            if value == 0 {
                issue(
                    key,
                    "must be at least 1 (0 would refuse every request it bounds)".into(),
                );
            }
        }
        if self.referrers_page_size == 0 {
            issue("REFERRERS_PAGE_SIZE", "must be at least 1".into());
        }
        match self.distributed_storage_preference.first() {
            None => issue(
                "DISTRIBUTED_STORAGE_PREFERENCE",
                "must name at least one location of DISTRIBUTED_STORAGE_CONFIG".into(),
            ),
            Some(name) => match self.distributed_storage_config.get(name) {
                None => issue(
                    "DISTRIBUTED_STORAGE_PREFERENCE",
                    format!("{name:?} is not a location in DISTRIBUTED_STORAGE_CONFIG"),
                ),
                Some(StorageLocation(driver, params)) => {
                    if let Err(problems) = crate::storage::settings::parse(driver, params) {
                        for problem in problems {
                            issue(&format!("DISTRIBUTED_STORAGE_CONFIG.{name}"), problem);
                        }
                    }
                }
            },
        }
        if let Some(scheme) = &self.preferred_url_scheme
            && scheme != "http"
            && scheme != "https"
        {
            issue(
                "PREFERRED_URL_SCHEME",
                format!("{scheme:?} is neither http nor https"),
            );
        }
        match (&self.auth_accounts_file, &self.auth_token_key_file) {
            (Some(_), None) => issue(
                "AUTH_TOKEN_KEY_FILE",
                "must be set when AUTH_ACCOUNTS_FILE is: bearer tokens are signed with it".into(),
            ),
            (None, Some(_)) => issue(
                "AUTH_ACCOUNTS_FILE",
                "must be set when AUTH_TOKEN_KEY_FILE is (without accounts there is nobody to issue tokens to)".into(),
            ),
            _ => {}
        }
        if !(5..=86_400).contains(&self.auth_token_lifetime_seconds) {
            issue(
                "AUTH_TOKEN_LIFETIME_SECONDS",
                format!(
                    "{} is outside 5..86400 seconds",
                    self.auth_token_lifetime_seconds
                ),
            );
        }
        if self.auth_failed_logins_per_minute == 0 {
            issue("AUTH_FAILED_LOGINS_PER_MINUTE", "must be at least 1".into());
        }
        for (i, ns) in self.anonymous_pull_namespaces.iter().enumerate() {
            if !crate::names::valid_namespace(ns) {
                issue(
                    &format!("ANONYMOUS_PULL_NAMESPACES[{i}]"),
                    format!(
                        "{ns:?} is not a namespace (the first segment of a repository name) or \"*\""
                    ),
                );
            }
        }
        for (i, policy) in self.auto_prune_policies.iter().enumerate() {
            if let Some(problem) = policy.problem() {
                issue(&format!("AUTO_PRUNE_POLICIES[{i}]"), problem);
            }
        }
        let mut quota_namespaces = std::collections::BTreeSet::new();
        for (i, quota) in self.namespace_quotas.iter().enumerate() {
            if let Some(problem) = quota.problem() {
                issue(&format!("NAMESPACE_QUOTAS[{i}]"), problem);
            } else if !quota_namespaces.insert(quota.namespace.as_str()) {
                issue(
                    &format!("NAMESPACE_QUOTAS[{i}]"),
                    format!("namespace {:?} has a quota already", quota.namespace),
                );
            }
        }
        let mut cache_namespaces = std::collections::BTreeSet::new();
        for (i, cache) in self.proxy_cache_namespaces.iter().enumerate() {
            if let Some(problem) = cache.problem() {
                issue(&format!("PROXY_CACHE_NAMESPACES[{i}]"), problem);
            } else if !cache_namespaces.insert(cache.namespace.as_str()) {
                issue(
                    &format!("PROXY_CACHE_NAMESPACES[{i}]"),
                    format!("namespace {:?} is listed twice", cache.namespace),
                );
            }
        }
        if self.repo_mirror_interval == 0 {
            issue("REPO_MIRROR_INTERVAL", "must be at least 1".into());
        }
        let mut mirrored = std::collections::BTreeSet::new();
        for (i, mirror) in self.repo_mirrors.iter().enumerate() {
            let key = format!("REPO_MIRRORS[{i}]");
            if let Some(problem) = mirror.problem() {
                issue(&key, problem);
            } else if !mirrored.insert(mirror.repository.as_str()) {
                issue(
                    &key,
                    format!("repository {:?} is mirrored twice", mirror.repository),
                );
            } else if let Some(namespace) = mirror.repository.split('/').next()
                && cache_namespaces.contains(namespace)
            {
                issue(
                    &key,
                    format!(
                        "repository {:?} is in the pull-through cache namespace {namespace:?}",
                        mirror.repository
                    ),
                );
            }
        }
        if self.default_system_reject_quota_bytes == Some(0) {
            issue(
                "DEFAULT_SYSTEM_REJECT_QUOTA_BYTES",
                "must be more than 0 (leave it unset for no default quota)".into(),
            );
        }
        if self.tag_retention_sweep_seconds == 0 {
            issue("TAG_RETENTION_SWEEP_SECONDS", "must be at least 1".into());
        }
        if self.garbage_collection_frequency == 0 {
            issue(
                "GARBAGE_COLLECTION_FREQUENCY",
                "must be at least 1 (set FEATURE_GARBAGE_COLLECTION: false to stop collecting)"
                    .into(),
            );
        }
        for (i, policy) in self.immutable_tags_policies.iter().enumerate() {
            if let Some(problem) = policy.problem() {
                issue(&format!("IMMUTABLE_TAGS_POLICIES[{i}]"), problem);
            }
        }
        if let Some(types) = &self.allowed_oci_artifact_types {
            for (config_type, layer_types) in types {
                let key = format!("ALLOWED_OCI_ARTIFACT_TYPES.{config_type}");
                if !is_media_type(config_type) {
                    issue(
                        &key,
                        format!("{config_type:?} is not a media type (type/subtype)"),
                    );
                }
                for (i, layer) in layer_types.iter().enumerate() {
                    if !is_media_type(layer) {
                        issue(
                            &format!("{key}[{i}]"),
                            format!("{layer:?} is not a media type (type/subtype)"),
                        );
                    }
                }
            }
        }
        issues
    }

    /// The preferred storage location, ready to open (the config was
    /// validated, so problems here are reported the same way).
    pub fn storage_settings(&self) -> Result<StorageSettings, String> {
        let name = self
            .distributed_storage_preference
            .first()
            .ok_or("DISTRIBUTED_STORAGE_PREFERENCE is empty")?;
        let StorageLocation(driver, params) = self
            .distributed_storage_config
            .get(name)
            .ok_or_else(|| format!("{name:?} is not a location in DISTRIBUTED_STORAGE_CONFIG"))?;
        crate::storage::settings::parse(driver, params).map_err(|problems| {
            format!("DISTRIBUTED_STORAGE_CONFIG.{name}: {}", problems.join("; "))
        })
    }

    /// The local storage path, when the preferred location is LocalStorage.
    pub fn local_storage_path(&self) -> Option<PathBuf> {
        let name = self.distributed_storage_preference.first()?;
        match self.distributed_storage_config.get(name)? {
            StorageLocation(driver, params) if driver == "LocalStorage" => params
                .get("storage_path")
                .and_then(|v| v.as_str())
                .map(PathBuf::from),
            _ => None,
        }
    }

    /// Point the preferred location at a local directory (the CLI flag).
    pub fn set_local_storage_path(&mut self, path: &Path) {
        self.distributed_storage_config.insert(
            DEFAULT_STORAGE_LOCATION.to_string(),
            StorageLocation(
                "LocalStorage".to_string(),
                BTreeMap::from([(
                    "storage_path".to_string(),
                    serde_json::Value::String(path.display().to_string()),
                )]),
            ),
        );
        self.distributed_storage_preference = vec![DEFAULT_STORAGE_LOCATION.to_string()];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let loaded = RegistryConfig::from_yaml("", None).unwrap();
        assert_eq!(loaded.config, RegistryConfig::default());
        assert_eq!(
            loaded.config.local_storage_path(),
            Some(PathBuf::from("./quarry-data"))
        );
    }

    #[test]
    fn quay_style_file_is_read_and_unknown_keys_reported() {
        let yaml = r#"
SERVER_HOSTNAME: registry.example.com:8443
FEATURE_REFERRERS_API: false
DATABASE_SECRET_KEY: abc
DISTRIBUTED_STORAGE_CONFIG:
  local_us:
    - LocalStorage
    - storage_path: /datastorage/registry
DISTRIBUTED_STORAGE_PREFERENCE: [local_us]
ALLOWED_OCI_ARTIFACT_TYPES:
  application/vnd.sylabs.sif.config.v1+json:
    - application/vnd.sylabs.sif.layer.v1+tar
"#;
        let loaded = RegistryConfig::from_yaml(yaml, Some("c.yaml")).unwrap();
        assert_eq!(loaded.unknown_keys, vec!["DATABASE_SECRET_KEY"]);
        assert!(!loaded.config.feature_referrers_api);
        assert_eq!(
            loaded.config.local_storage_path(),
            Some(PathBuf::from("/datastorage/registry"))
        );
    }

    #[test]
    fn invalid_values_name_their_keys() {
        let yaml = r#"
FEATURE_HELM_OCI_SUPPORT: "sometimes"
MAXIMUM_MANIFEST_SIZE: 1024
"#;
        let err = RegistryConfig::from_yaml(yaml, Some("c.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("FEATURE_HELM_OCI_SUPPORT"), "{text}");
        assert!(text.contains("c.yaml"), "{text}");

        let yaml = r#"
MAXIMUM_MANIFEST_SIZE: 1024
SERVER_HOSTNAME: "not a host"
ALLOWED_OCI_ARTIFACT_TYPES:
  not-a-media-type: ["text/plain", "bad"]
DISTRIBUTED_STORAGE_PREFERENCE: [nowhere]
"#;
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "SERVER_HOSTNAME",
                "MAXIMUM_MANIFEST_SIZE",
                "DISTRIBUTED_STORAGE_PREFERENCE",
                "ALLOWED_OCI_ARTIFACT_TYPES.not-a-media-type",
                "ALLOWED_OCI_ARTIFACT_TYPES.not-a-media-type[1]",
            ]
        );
    }

    #[test]
    fn storage_drivers_are_checked() {
        let yaml = "DISTRIBUTED_STORAGE_CONFIG:\n  default: [SwiftStorage, {}]\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert!(err.to_string().contains("SwiftStorage"), "{err}");
        let yaml = "DISTRIBUTED_STORAGE_CONFIG:\n  default: [S3Storage, {host: minio}]\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert!(err.to_string().contains("s3_bucket"), "{err}");
        let yaml = "DISTRIBUTED_STORAGE_CONFIG:\n  default: [S3Storage, {s3_bucket: b, host: minio, port: 9000, is_secure: false}]\n";
        let loaded = RegistryConfig::from_yaml(yaml, None).unwrap();
        assert!(matches!(
            loaded.config.storage_settings(),
            Ok(StorageSettings::S3(_))
        ));
    }

    #[test]
    fn immutable_tag_policies_are_read_and_checked_by_index() {
        let yaml = "FEATURE_IMMUTABLE_TAGS: true\nIMMUTABLE_TAGS_POLICIES:\n  - {namespace: prod, tagPattern: 'v.*'}\n  - {namespace: dev, tagPattern: 'v(', tagPatternMatches: false}\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        assert_eq!(err.issues[0].key, "IMMUTABLE_TAGS_POLICIES[1]");
        assert!(
            err.issues[0].reason.contains("not a regular expression"),
            "{err}"
        );
        let yaml = "FEATURE_IMMUTABLE_TAGS: true\nIMMUTABLE_TAGS_POLICIES:\n  - {namespace: prod, tagPattern: 'v.*'}\n";
        let loaded = RegistryConfig::from_yaml(yaml, None).unwrap();
        assert!(loaded.config.feature_immutable_tags);
        assert!(loaded.config.immutable_tags_policies[0].tag_pattern_matches);
        // A misspelt policy field is an error, not a silently ignored key.
        let yaml = "IMMUTABLE_TAGS_POLICIES:\n  - {namespace: prod, tagPatern: 'v.*'}\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert_eq!(err.issues[0].key, "IMMUTABLE_TAGS_POLICIES", "{err}");
    }

    #[test]
    fn auto_prune_policies_read_quays_shape() {
        let yaml = "FEATURE_AUTO_PRUNE: true\nAUTO_PRUNE_POLICIES:\n  - {namespace: ci, method: number_of_tags, value: 10}\n  - {namespace: '*', method: creation_date, value: 2w, tagPattern: 'pr-.*'}\n";
        let loaded = RegistryConfig::from_yaml(yaml, None).unwrap();
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
        assert_eq!(loaded.config.auto_prune_policies.len(), 2);
        assert_eq!(
            loaded.config.auto_prune_policies[0].method,
            crate::retention::PruneMethod::NumberOfTags(10)
        );
        let yaml =
            "AUTO_PRUNE_POLICIES:\n  - {namespace: ci, method: creation_date, value: soon}\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert_eq!(err.issues[0].key, "AUTO_PRUNE_POLICIES[0]", "{err}");
        let yaml = "AUTO_PRUNE_POLICIES:\n  - {namespace: ci, method: keep_some, value: 3}\n";
        let err = RegistryConfig::from_yaml(yaml, None).unwrap_err();
        assert_eq!(err.issues[0].key, "AUTO_PRUNE_POLICIES", "{err}");
    }
}

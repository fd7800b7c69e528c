//! The `QuarryRegistry` custom resource (`quarry.dev/v1alpha1`). Doc
//! comments here become the descriptions `kubectl explain` shows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Quarry OCI registry: what it accepts, how it runs, and which optional
/// components the operator manages for it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "quarry.dev",
    version = "v1alpha1",
    kind = "QuarryRegistry",
    namespaced,
    shortname = "qreg",
    status = "QuarryRegistryStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.registryEndpoint"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QuarryRegistrySpec {
    /// Which kinds of OCI content the registry accepts. Each field maps to
    /// one of Red Hat Quay's FEATURE_* keys; unset fields keep the bundle's
    /// value, else the default (true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,

    /// Artifacts the registry accepts, by artifact type (the manifest's
    /// artifactType, else its config media type) -> allowed layer media
    /// types. Maps to ALLOWED_OCI_ARTIFACT_TYPES. When set, every other
    /// artifact is refused (container images and Helm charts are not
    /// artifacts here: they follow their own switches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_artifact_types: Option<BTreeMap<String, Vec<String>>>,

    /// Host name (and optional :port) clients use to reach the registry.
    /// Maps to SERVER_HOSTNAME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"))]
    pub server_hostname: Option<String>,

    /// Name of a Secret in this namespace whose key config.yaml holds a
    /// Quay-style registry configuration. Typed fields of this resource win
    /// over the bundle; conflicts and unknown keys are reported in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_bundle_secret: Option<String>,

    /// Components the operator manages, as in QuayRegistry. Kinds not listed
    /// get their defaults (reported in status.components).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(c, c.kind != 'registry' || c.managed)", "message": "the registry component is always managed"},
        {"rule": "self.all(x, self.filter(y, y.kind == x.kind).size() == 1)", "message": "each component kind may be listed once"}
    ]))]
    pub components: Vec<Component>,

    /// Registry version (image tag) to run. Defaults to the operator's own
    /// version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Who may use the registry. Unset: authentication on, with an admin
    /// and a pull-only robot account the operator generates (their
    /// passwords in the Secret named by status.credentialsSecret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// The certificate the registry serves HTTPS with. With the tls
    /// component managed (the default) the operator runs its own CA and
    /// needs nothing here; set certificateSecret to serve your own
    /// certificate (e.g. one cert-manager keeps renewed) instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,

    /// S3-compatible object storage (AWS S3, Ceph RGW, MinIO) that every
    /// registry pod shares instead of a volume: needed for more than one
    /// replica. The operator writes and deletes a probe object with these
    /// settings before it rolls anything out; a bucket it cannot use is
    /// reported in ConfigValid and leaves the running registry as it is.
    /// Setting it makes the storage component unmanaged (no volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ObjectStorage>,

    /// Tags that are never moved to another manifest or deleted, nor the
    /// manifests they name deleted (Quay's immutable tags). Maps to
    /// FEATURE_IMMUTABLE_TAGS and IMMUTABLE_TAGS_POLICIES. Unset: the
    /// bundle's keys, else off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_tags: Option<ImmutableTags>,

    /// Tags the registry drops by itself, namespace by namespace (Quay's
    /// auto-prune). Maps to FEATURE_AUTO_PRUNE and AUTO_PRUNE_POLICIES.
    /// Cosign's signature tags and immutable tags are never pruned. What a
    /// pruned tag leaves behind is garbage for garbage collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_prune: Option<AutoPrune>,

    /// Storage quotas per namespace (Quay's quota management): a push that
    /// would take a namespace past its reject limit is refused, naming the
    /// usage and the limit. Usage is the bytes of the unique blobs the
    /// namespace's manifests name. Maps to FEATURE_QUOTA_MANAGEMENT,
    /// NAMESPACE_QUOTAS and DEFAULT_SYSTEM_REJECT_QUOTA_BYTES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Quotas>,

    /// Online garbage collection (docs/gc.md): manifests no tag reaches,
    /// their referrers, and blobs no kept manifest names are deleted while
    /// the registry serves, safely with pushes in flight and with every
    /// replica sweeping. Maps to FEATURE_GARBAGE_COLLECTION,
    /// GARBAGE_COLLECTION_FREQUENCY and PUSH_TEMP_TAG_EXPIRATION_SEC.
    /// Unset: the bundle's keys, else on, every 10m, grace 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garbage_collection: Option<GarbageCollection>,

    /// Namespaces that are pull-through caches of upstream registries
    /// (docs/proxy-cache.md): a pull of <namespace>/<path> is answered from
    /// storage, or fetched from the upstream and kept; while the upstream
    /// is down or rate-limiting, what is cached is served. Pushes into them
    /// are refused. Maps to FEATURE_PROXY_CACHE and PROXY_CACHE_NAMESPACES.
    /// The operator logs in to each upstream before anything rolls out: a
    /// wrong password or an upstream nobody answers sets ConfigValid=False
    /// naming it, and what runs stays as it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub proxy_cache: Vec<ProxyCache>,

    /// Repositories kept in step with repositories of other registries
    /// (docs/mirroring.md): every interval, the selected tags that are new
    /// or moved upstream are copied with their signatures, SBOMs and
    /// attestations; one replica syncs each period. Maps to
    /// FEATURE_REPO_MIRROR, REPO_MIRROR_INTERVAL and REPO_MIRRORS. Each
    /// upstream is logged in to before anything rolls out, as for
    /// proxyCache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<Mirroring>,
}

/// Mirroring: how often, and which repositories.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mirroring {
    /// Time between two syncs of each mirror: a number and s, m, h or d
    /// (REPO_MIRROR_INTERVAL). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]$"))]
    pub interval: Option<String>,
    /// The mirrored repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub repositories: Vec<MirroredRepository>,
}

/// One local repository and the upstream repository it follows.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirroredRepository {
    /// The local repository, e.g. mirrors/node-exporter.
    #[schemars(length(min = 1, max = 255))]
    pub repository: String,
    /// The upstream repository: host[:port]/path, e.g.
    /// quay.io/prometheus/node-exporter (Quay's external_reference).
    #[schemars(length(min = 1, max = 512))]
    pub upstream: String,
    /// A Secret in this namespace with the keys `username` and `password`
    /// of an account at the upstream. Unset: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Shell globs of the tags to copy. Default: every tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// And only tags this regular expression matches whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_regex: Option<String>,
    /// And only tags that are versions in this semver range, e.g.
    /// ">=1.2, <2" (a leading v is allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Copy only images signed upstream. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_only: Option<bool>,
    /// Delete local tags the upstream no longer has. Default false (kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_vanished_tags: Option<bool>,
    /// Talk plain HTTP to the upstream. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// A ConfigMap in this namespace whose key ca.crt holds the PEM
    /// certificates of the CA that signs the upstream's serving
    /// certificate, trusted besides the system's (upstream_ca). Unset: the
    /// system's CAs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<String>,
}

/// One cache namespace and its upstream.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyCache {
    /// The namespace that caches (the first segment of repository names).
    #[schemars(length(min = 1, max = 255))]
    pub namespace: String,
    /// The upstream registry: host[:port] with an optional path prefix,
    /// e.g. quay.io/prometheus (then <namespace>/node-exporter is
    /// quay.io/prometheus/node-exporter). docker.io means Docker Hub, with
    /// one-segment names under library/.
    #[schemars(length(min = 1, max = 512))]
    pub upstream: String,
    /// A Secret in this namespace with the keys `username` and `password`
    /// of an account at the upstream. Unset: anonymous pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// How long a cached tag is served before the upstream is asked again
    /// whether it moved: a number and s, m, h or d (expiration_s). Default
    /// 24h; 0s asks on every pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]$"))]
    pub expiration: Option<String>,
    /// Talk plain HTTP to the upstream (Quay's insecure). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// A ConfigMap in this namespace whose key ca.crt holds the PEM
    /// certificates of the CA that signs the upstream's serving
    /// certificate, trusted besides the system's (upstream_ca). Unset: the
    /// system's CAs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<String>,
}

/// Garbage collection: the switch, how often it sweeps, and how long new
/// content is safe.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GarbageCollection {
    /// Collect garbage (FEATURE_GARBAGE_COLLECTION). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Time between sweeps: a number and s, m, h or d, e.g. 10m
    /// (GARBAGE_COLLECTION_FREQUENCY). Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]$"))]
    pub interval: Option<String>,
    /// What was pushed less than this long ago is never garbage, and
    /// garbage is deleted no sooner than this after a sweep found it, e.g.
    /// 1h (PUSH_TEMP_TAG_EXPIRATION_SEC). Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub grace_period: Option<String>,
}

/// Quotas: the switch, the default for every namespace, and the quotas of
/// named namespaces.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    /// Enforce the quotas (FEATURE_QUOTA_MANAGEMENT). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The reject limit of every namespace not listed in namespaces, as a
    /// quantity such as 100Gi (DEFAULT_SYSTEM_REJECT_QUOTA_BYTES). Unset:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub default_reject_limit: Option<String>,
    /// Quotas of named namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub namespaces: Vec<NamespaceQuota>,
}

/// One namespace's quota.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceQuota {
    /// The namespace (the first segment of repository names).
    #[schemars(length(min = 1, max = 255))]
    pub namespace: String,
    /// The quota, as a quantity such as 10Gi.
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub limit: String,
    /// Past this percentage of the limit a push is accepted but logged and
    /// counted (quarry_quota_warnings_total). Unset: no warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub warning_percent: Option<u32>,
    /// Past this percentage of the limit a push is refused. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub reject_percent: Option<u32>,
}

/// Auto-prune: the policies, and the switch.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoPrune {
    /// Apply the policies (FEATURE_AUTO_PRUNE). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The policies; a tag goes when any of them drops it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub policies: Vec<PrunePolicy>,
}

/// Which tags of a namespace go: all but the newest keepNewest, or those
/// pushed longer ago than olderThan (set exactly one).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.keepNewest) != has(self.olderThan)", "message": "set exactly one of keepNewest and olderThan"}
]))]
pub struct PrunePolicy {
    /// A namespace (the first segment of repository names), or "*" for
    /// every namespace.
    #[schemars(length(min = 1, max = 255))]
    pub namespace: String,
    /// Keep the newest this many tags, drop the rest (Quay's
    /// number_of_tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_newest: Option<u64>,
    /// Drop tags pushed longer ago than this: a number and s, m, h, d or w,
    /// e.g. 2w (Quay's creation_date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhdw]$"))]
    pub older_than: Option<String>,
    /// Only the tags whose whole name matches this regular expression, e.g.
    /// pr-[0-9]+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub tag_pattern: Option<String>,
    /// false: only the tags that do not match tagPattern. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_pattern_matches: Option<bool>,
}

/// Immutable tags: the policies, and the switch.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableTags {
    /// Enforce immutable tags (FEATURE_IMMUTABLE_TAGS). Default true. When
    /// on, the tags the policies match are immutable, and so are the tags
    /// naming an image whose config has the label quay.immutable=true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which tags are immutable, namespace by namespace. A tag is immutable
    /// when any policy matches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub policies: Vec<ImmutableTagPolicy>,
}

/// The tags of one namespace whose names match a pattern.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableTagPolicy {
    /// A namespace (the first segment of repository names, e.g. "prod" for
    /// prod/app), or "*" for every namespace.
    #[schemars(length(min = 1, max = 255))]
    pub namespace: String,
    /// A regular expression the whole tag must match, e.g.
    /// v[0-9]+\.[0-9]+\.[0-9]+ for release tags.
    #[schemars(length(min = 1, max = 256))]
    pub tag_pattern: String,
    /// false: the tags that do not match tagPattern are immutable instead.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_pattern_matches: Option<bool>,
}

/// Where the registry keeps its data in object storage.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorage {
    /// Endpoint URL, e.g. http://minio.storage.svc:9000 or
    /// https://rgw.example.com. Unset: AWS S3 in `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/\s]+/?$"))]
    pub endpoint: Option<String>,
    /// Bucket name; the bucket must exist.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Region (default us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Key prefix inside the bucket (default "registry"), so one bucket
    /// can hold several registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Address the bucket in the path (MinIO, Ceph RGW) rather than the
    /// host name (AWS). Default: true with an endpoint, false without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Name of a Secret in this namespace with the keys AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY. The registry pods get them as
    /// environment variables; changing the Secret rolls the pods.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub credentials_secret: String,
}

/// Authentication and access.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Require a login (default true). false: anyone who can reach the
    /// registry may pull, push and delete; use it only behind another
    /// gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,

    /// Name of a Secret in this namespace whose key accounts.yaml lists
    /// the accounts (`accounts: {name: {password_hash: <bcrypt>, access:
    /// {namespace-or-*: [pull, push, delete]}}}`; make hashes with
    /// `quarry-registry hash-password`). The operator checks it and hands
    /// a copy to the registry, which reloads it without a restart; an
    /// invalid edit is reported in ConfigValid and never reaches the
    /// registry. Unset: the operator generates an `admin` account (pull,
    /// push, delete everywhere) and a `robot` account (pull everywhere)
    /// and keeps their passwords in status.credentialsSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub accounts_secret: Option<String>,

    /// Namespaces (the first path segment of repository names, e.g.
    /// `public` for `public/app`) anyone may pull from without logging
    /// in; "*" makes every repository public to read. Pushing always
    /// needs an account. Maps to ANONYMOUS_PULL_NAMESPACES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub anonymous_pull: Option<Vec<String>>,
}

/// TLS of the registry's own port.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Name of a kubernetes.io/tls Secret in this namespace (keys tls.crt
    /// and tls.key, e.g. written by cert-manager) that the registry serves
    /// HTTPS with. It is mounted as it is: renewing it (updating the
    /// Secret) is picked up by the running registry without a restart.
    /// Only with the tls component unmanaged, which setting this field
    /// makes the default. With the tls component unmanaged and no Secret
    /// the registry serves plain HTTP (TLS terminated in front of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub certificate_secret: Option<String>,
}

/// Switches for kinds of OCI content.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// Accept OCI artifacts beyond container images and Helm charts
    /// (FEATURE_GENERAL_OCI_SUPPORT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_artifacts: Option<bool>,
    /// Accept Helm charts (FEATURE_HELM_OCI_SUPPORT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<bool>,
    /// Serve the OCI referrers API (FEATURE_REFERRERS_API). When false,
    /// clients fall back to sha256-<hex> tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrers: Option<bool>,
    /// Serve the web UI at /ui/ on the registry's port (FEATURE_UI).
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<bool>,
}

/// A component of the registry deployment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Which component.
    pub kind: ComponentKind,
    /// Whether the operator creates and owns it.
    pub managed: bool,
    /// Adjustments of the managed component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,
}

/// Component kinds.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// The registry Deployment (always managed).
    Registry,
    /// Storage: managed = a PersistentVolumeClaim (one replica);
    /// unmanaged = spec.objectStorage when set, else an emptyDir (data is
    /// lost with the pod; for trials only).
    Storage,
    /// HTTPS on the registry's port. Managed (the default unless
    /// spec.tls.certificateSecret is set): the operator keeps a CA (its
    /// certificate published in the ConfigMap status.caConfigMap names)
    /// and a serving certificate it signs for the Service names,
    /// spec.serverHostname and the Route host, renewed 30 days before it
    /// expires without restarting the registry. Unmanaged: the Secret of
    /// spec.tls.certificateSecret, else plain HTTP.
    Tls,
    /// OpenShift Route to the registry Service, for spec.serverHostname or
    /// a generated host: passthrough when the registry serves HTTPS itself
    /// (the tls component), else edge TLS at the router. Managed by default
    /// where the route.openshift.io API exists.
    Route,
    /// Kubernetes Ingress for spec.serverHostname, routed to the registry
    /// Service. Overrides: labels, annotations (e.g. the ingress class or
    /// TLS settings of your controller).
    Ingress,
    /// An autoscaling/v2 HorizontalPodAutoscaler `<name>-registry` that
    /// scales the registry Deployment on CPU use between the overrides
    /// minReplicas and maxReplicas (targetCPUUtilizationPercentage). Only
    /// with spec.objectStorage (several pods need shared storage). While it
    /// is managed the operator leaves the Deployment's replica count to
    /// it. Switched off: the HorizontalPodAutoscaler is deleted and the
    /// registry runs the registry override's replicas again.
    Hpa,
    /// A Prometheus Operator ServiceMonitor scraping the registry's
    /// /metrics. Managed by default where the monitoring.coreos.com API
    /// exists.
    Monitoring,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Registry => "registry",
            ComponentKind::Storage => "storage",
            ComponentKind::Tls => "tls",
            ComponentKind::Route => "route",
            ComponentKind::Ingress => "ingress",
            ComponentKind::Hpa => "hpa",
            ComponentKind::Monitoring => "monitoring",
        }
    }
}

/// Overrides of a managed component. Fields that do not apply to a
/// component are refused with a ConfigValid=False condition.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    /// Registry pods to run (registry). More than one needs shared storage
    /// (spec.objectStorage). With the hpa component managed it is the
    /// default minReplicas, and the HorizontalPodAutoscaler sets the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Fewest registry pods the HorizontalPodAutoscaler keeps (hpa).
    /// Default: the registry component's replicas override, else 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: Option<i32>,
    /// Most registry pods the HorizontalPodAutoscaler may run (hpa); at
    /// least minReplicas. Default: 5, or minReplicas when that is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: Option<i32>,
    /// Average CPU use the HorizontalPodAutoscaler aims for, in percent of
    /// the registry container's CPU request (hpa). Default 75.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Compute resources of the registry container (registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the registry container (registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node selector of the registry pods (registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the registry pods (registry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra labels on the objects the component makes (registry: its
    /// Deployment and pods, Service, ServiceAccount, budget, config and
    /// auth Secrets; storage: the claim; tls: the CA and certificate
    /// Secrets and the CA ConfigMap; route, ingress, hpa, monitoring: their
    /// object). The operator's own app.kubernetes.io labels win a clash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations on the objects the component makes (registry: also
    /// the pod template, so a change rolls the pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Size of the volume (storage), e.g. 50Gi. Default 10Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<String>,
    /// StorageClass of the volume (storage). Default: the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// What the operator observed and decided. Never written into spec.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarryRegistryStatus {
    /// Ready, Progressing, ConfigValid, and Component<Kind>Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where clients reach the registry (host:port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_endpoint: Option<String>,
    /// Registry version running with the current configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// The components in effect, defaults included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<EffectiveComponent>,
    /// Non-fatal findings: unknown bundle keys, bundle values overridden by
    /// typed fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Hash of the rendered registry configuration in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The registry's base URL, scheme included (https when it serves
    /// TLS itself or behind an edge Route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_url: Option<String>,
    /// The web UI's URL (registryUrl + /ui/), while spec.features.ui is
    /// not false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
    /// ConfigMap (key ca.crt) with the CA certificate that signs the
    /// registry's serving certificate, for clients to trust (managed tls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map: Option<String>,
    /// Secret with the generated accounts' names and passwords (keys
    /// admin-username, admin-password, robot-username, robot-password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// kubernetes.io/dockerconfigjson Secret of the generated robot
    /// account, to use as an imagePullSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
    /// When the serving certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
    /// The last sync of each mirrored repository (spec.mirroring), as the
    /// registry pods report it; Events tell each sync that changed
    /// something (MirrorSynced) or failed (MirrorSyncFailed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorSyncStatus>,
}

/// The last sync of one mirrored repository, as the registry reports it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSyncStatus {
    /// The local repository.
    pub repository: String,
    /// The upstream repository it follows.
    pub upstream: String,
    /// When the last sync finished (RFC 3339). Unset: none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// How the last sync ended: Succeeded, Partial (some tags failed) or
    /// Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// What the last sync copied, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A component as the operator runs it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveComponent {
    pub kind: ComponentKind,
    pub managed: bool,
    /// "spec" when the resource says so, "default" otherwise.
    pub source: String,
}

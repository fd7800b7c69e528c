//! Prometheus metrics served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// All metrics of one registry process.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// Of `bytes_sent`, those the kernel sent from the blob file itself
    /// (plain HTTP; zero_copy.rs).
    pub bytes_sent_zero_copy: Counter,
    pub upload_seconds: Histogram,
    pub policy_refusals: Family<ReasonLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub tls_reloads: Family<ResultLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub tokens_issued: Counter,
    /// Usage of namespaces with a quota, as last measured by a push.
    pub namespace_usage_bytes: Family<NamespaceLabels, Gauge>,
    pub quota_warnings: Family<NamespaceLabels, Counter>,
    pub quota_refusals: Family<NamespaceLabels, Counter>,
    /// Garbage collection sweeps by result (ok, failed).
    pub gc_runs: Family<ResultLabels, Counter>,
    pub gc_seconds: Histogram,
    /// What sweeps deleted, by kind (manifest, link, blob).
    pub gc_deleted: Family<KindLabels, Counter>,
    pub gc_deleted_bytes: Counter,
    pub gc_condemned: Counter,
    /// Condemned items a request needed again before the sweep deleted them.
    pub gc_rescued: Counter,
    pub gc_errors: Counter,
    pub gc_last_success: Gauge,
    /// Pulls of cache namespaces by result: hit (fresh in storage),
    /// revalidated (the upstream confirmed a tag by HEAD), miss (fetched
    /// from the upstream), stale (cached, served while the upstream failed).
    pub proxy_cache_requests: Family<ResultLabels, Counter>,
    /// Failed upstream requests of cache namespaces, by reason.
    pub proxy_cache_upstream_errors: Family<ReasonLabels, Counter>,
    /// Blob bytes downloaded from upstreams.
    pub proxy_cache_upstream_bytes: Counter,
    /// Blob downloads started, and requests that joined one running.
    pub proxy_cache_downloads: Counter,
    pub proxy_cache_joined: Counter,
    /// Upstream content whose digest did not match (nothing was cached).
    pub proxy_cache_corrupt: Counter,
    /// Mirror syncs by result (ok, partial, failed), and the bytes copied.
    pub mirror_runs: Family<ResultLabels, Counter>,
    pub mirror_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quarry");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let bytes_sent_zero_copy = Counter::default();
        let upload_seconds = Histogram::new(exponential_buckets(0.01, 4.0, 10));
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response, by route (bodies stream after)",
            request_seconds.clone(),
        );
        registry.register(
            "blob_bytes_received",
            "Blob bytes written into upload sessions",
            bytes_received.clone(),
        );
        registry.register(
            "blob_bytes_sent",
            "Blob bytes streamed to clients",
            bytes_sent.clone(),
        );
        registry.register(
            "blob_bytes_sent_zero_copy",
            "Of the blob bytes sent, those sent from the file by sendfile (plain HTTP)",
            bytes_sent_zero_copy.clone(),
        );
        registry.register(
            "blob_upload_duration_seconds",
            "Time from the start of an upload session to its commit",
            upload_seconds.clone(),
        );
        let policy_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "policy_refusals",
            "Manifests refused by the artifact policy, by reason",
            policy_refusals.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config file reloads by result (applied, rejected)",
            config_reloads.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "TLS certificate reloads by result (success, failure)",
            tls_reloads.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        let tokens_issued = Counter::default();
        registry.register(
            "auth_tokens_issued",
            "Bearer tokens issued by the token endpoint",
            tokens_issued.clone(),
        );
        let namespace_usage_bytes = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "namespace_usage_bytes",
            "Bytes of the unique blobs a namespace with a quota references, as last measured",
            namespace_usage_bytes.clone(),
        );
        let quota_warnings = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "quota_warnings",
            "Pushes accepted over a namespace's Warning limit",
            quota_warnings.clone(),
        );
        let quota_refusals = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "quota_refusals",
            "Pushes refused by a namespace's Reject limit",
            quota_refusals.clone(),
        );
        let gc_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "gc_runs",
            "Garbage collection sweeps by result (ok, failed)",
            gc_runs.clone(),
        );
        let gc_seconds = Histogram::new(exponential_buckets(0.01, 4.0, 10));
        registry.register(
            "gc_duration_seconds",
            "Time one garbage collection sweep took",
            gc_seconds.clone(),
        );
        let gc_deleted = Family::<KindLabels, Counter>::default();
        registry.register(
            "gc_deleted",
            "Items garbage collection deleted, by kind (manifest, link, blob)",
            gc_deleted.clone(),
        );
        let gc_deleted_bytes = Counter::default();
        registry.register(
            "gc_deleted_bytes",
            "Bytes of blob content garbage collection deleted",
            gc_deleted_bytes.clone(),
        );
        let gc_condemned = Counter::default();
        registry.register(
            "gc_condemned",
            "Items a sweep found garbage and condemned (a later sweep deletes them)",
            gc_condemned.clone(),
        );
        let gc_rescued = Counter::default();
        registry.register(
            "gc_rescued",
            "Condemned items a request needed again before a sweep could delete them",
            gc_rescued.clone(),
        );
        let gc_errors = Counter::default();
        registry.register(
            "gc_errors",
            "Items a sweep could not delete or condemn (retried by the next sweep)",
            gc_errors.clone(),
        );
        let gc_last_success = Gauge::default();
        registry.register(
            "gc_last_success_timestamp_seconds",
            "When the last successful garbage collection sweep ended (Unix time)",
            gc_last_success.clone(),
        );
        let proxy_cache_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "proxy_cache_requests",
            "Pulls of cache namespaces by result (hit, revalidated, miss, stale)",
            proxy_cache_requests.clone(),
        );
        let proxy_cache_upstream_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "proxy_cache_upstream_errors",
            "Failed upstream requests of cache namespaces, by reason",
            proxy_cache_upstream_errors.clone(),
        );
        let proxy_cache_upstream_bytes = Counter::default();
        registry.register(
            "proxy_cache_upstream_bytes",
            "Blob bytes downloaded from upstream registries",
            proxy_cache_upstream_bytes.clone(),
        );
        let proxy_cache_downloads = Counter::default();
        registry.register(
            "proxy_cache_downloads",
            "Blob downloads from upstream registries started",
            proxy_cache_downloads.clone(),
        );
        let proxy_cache_joined = Counter::default();
        registry.register(
            "proxy_cache_joined_downloads",
            "Blob requests that joined a download already running",
            proxy_cache_joined.clone(),
        );
        let mirror_runs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "mirror_runs",
            "Mirror syncs run by this replica, by result (ok, partial, failed)",
            mirror_runs.clone(),
        );
        let mirror_bytes = Counter::default();
        registry.register(
            "mirror_bytes",
            "Blob bytes copied by mirror syncs",
            mirror_bytes.clone(),
        );
        let proxy_cache_corrupt = Counter::default();
        registry.register(
            "proxy_cache_corrupt",
            "Upstream content whose digest did not match; nothing was cached",
            proxy_cache_corrupt.clone(),
        );
        Metrics {
            registry,
            gc_runs,
            gc_seconds,
            gc_deleted,
            gc_deleted_bytes,
            gc_condemned,
            gc_rescued,
            gc_errors,
            gc_last_success,
            namespace_usage_bytes,
            quota_warnings,
            quota_refusals,
            tls_reloads,
            auth_failures,
            tokens_issued,
            policy_refusals,
            config_reloads,
            requests,
            request_seconds,
            bytes_received,
            bytes_sent,
            bytes_sent_zero_copy,
            upload_seconds,
            proxy_cache_requests,
            proxy_cache_upstream_errors,
            proxy_cache_upstream_bytes,
            proxy_cache_downloads,
            proxy_cache_joined,
            proxy_cache_corrupt,
            mirror_runs,
            mirror_bytes,
        }
    }

    /// Count what one garbage collection sweep did.
    pub fn record_sweep(&self, outcome: &crate::gc::sweep::Outcome) {
        self.gc_runs
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        self.gc_seconds.observe(outcome.duration.as_secs_f64());
        for (kind, n) in [
            ("manifest", outcome.deleted_manifests),
            ("link", outcome.deleted_links),
            ("blob", outcome.deleted_blobs),
        ] {
            self.gc_deleted
                .get_or_create(&KindLabels { kind })
                .inc_by(n as u64);
        }
        self.gc_deleted_bytes.inc_by(outcome.deleted_bytes);
        self.gc_condemned.inc_by(outcome.condemned as u64);
        self.gc_rescued.inc_by(outcome.rescued as u64);
        self.gc_errors.inc_by(outcome.errors as u64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        self.gc_last_success.set(now);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

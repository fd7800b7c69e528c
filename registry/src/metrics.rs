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
        Metrics {
            registry,
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
            upload_seconds,
        }
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

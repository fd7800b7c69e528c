//! The operator's own metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

pub struct OperatorMetrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub errors: Counter,
    pub applies: Counter,
    /// Objects deleted because the build no longer makes them.
    pub deletes: Counter,
    pub status_writes: Counter,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("quarry_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let errors = Counter::default();
        let applies = Counter::default();
        let deletes = Counter::default();
        let status_writes = Counter::default();
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile durations",
            reconcile_seconds.clone(),
        );
        registry.register("reconcile_errors", "Failed reconciles", errors.clone());
        registry.register(
            "server_side_applies",
            "Server-side apply requests sent",
            applies.clone(),
        );
        registry.register(
            "orphan_deletes",
            "Objects deleted because the resource no longer needs them",
            deletes.clone(),
        );
        registry.register(
            "status_writes",
            "Status updates written",
            status_writes.clone(),
        );
        OperatorMetrics {
            registry,
            reconciles,
            reconcile_seconds,
            errors,
            applies,
            deletes,
            status_writes,
        }
    }
}

impl OperatorMetrics {
    pub fn observe_reconcile(&self, took: Duration, ok: bool) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

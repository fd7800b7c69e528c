//! Which optional APIs the cluster serves (OpenShift Routes, Prometheus
//! Operator ServiceMonitors). Component defaults depend on them; the answer
//! is cached briefly so reconciles do not query discovery every time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};

/// How long a discovery answer is trusted.
const TTL: Duration = Duration::from_secs(10);

/// Optional APIs found in the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterApis {
    pub route: Option<ApiResource>,
    pub service_monitor: Option<ApiResource>,
}

impl ClusterApis {
    pub fn offers(&self) -> Offers {
        Offers {
            routes: self.route.is_some(),
            service_monitors: self.service_monitor.is_some(),
        }
    }
}

/// What validate needs to know about the cluster (pure data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    pub routes: bool,
    pub service_monitors: bool,
}

#[derive(Default)]
pub struct ApiCache {
    cached: Mutex<Option<(Instant, ClusterApis)>>,
}

impl ApiCache {
    /// Only a complete answer (every optional API present) is served from
    /// the cache: a missing API is asked for again, so a CRD installed a
    /// moment ago counts at the next reconcile. Resources already reconciled
    /// notice new APIs at their periodic requeue.
    pub async fn get(&self, client: &Client) -> ClusterApis {
        if let Ok(guard) = self.cached.lock()
            && let Some((at, apis)) = guard.as_ref()
            && at.elapsed() < TTL
            && apis.route.is_some()
            && apis.service_monitor.is_some()
        {
            return apis.clone();
        }
        let apis = ClusterApis {
            route: probe(client, "route.openshift.io", "v1", "Route").await,
            service_monitor: probe(client, "monitoring.coreos.com", "v1", "ServiceMonitor").await,
        };
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((Instant::now(), apis.clone()));
        }
        apis
    }
}

async fn probe(client: &Client, group: &str, version: &str, kind: &str) -> Option<ApiResource> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Some(resource),
        Err(e) => {
            tracing::debug!(group, kind, error = %e, "API not served");
            None
        }
    }
}

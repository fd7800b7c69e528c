//! Reading what the ready registry pods publish for the operator: their
//! garbage-collection journals (gc_report.rs) and the mirrors' last syncs
//! (mirror_report.rs).
//!
//! Reads are best effort: a pod that cannot be reached (a network policy,
//! a simulated node) is skipped with a debug log and never fails a
//! reconcile. HTTPS is read without verifying the serving certificate, as
//! the kubelet's probes read `/readyz`: the requests carry no secret and
//! the answers are informational.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::QuarryRegistry;
use crate::names::{REGISTRY_PORT, selector_labels};
use crate::reconcile::Context;

/// How long one pod may take to answer, and to accept the connection
/// (a pod IP this process cannot route to must not hold a reconcile up).
const TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What the pods' reports say, for a condition of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One ready registry pod and the URL of what it was asked for.
pub struct PodEndpoint {
    pub pod: String,
    pub url: String,
}

pub struct PodReader {
    http: reqwest::Client,
}

impl PodReader {
    pub fn new() -> Result<PodReader, String> {
        // The client needs the process's TLS provider (idempotent).
        quarry_registry::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| format!("the HTTP client for the registry pods' reports: {e}"))?;
        Ok(PodReader { http })
    }

    /// `path` at every ready registry pod of `cr` (none when the pods
    /// cannot be listed).
    pub async fn ready(
        &self,
        ctx: &Context,
        cr: &QuarryRegistry,
        ns: &str,
        https: bool,
        path: &str,
    ) -> Vec<PodEndpoint> {
        let selector = selector_labels(cr)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(pods) => pods,
            Err(e) => {
                tracing::debug!(namespace = ns, error = %e, path, "cannot list the registry pods");
                return Vec::new();
            }
        };
        let scheme = if https { "https" } else { "http" };
        pods.items
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|pod| {
                let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                Some(PodEndpoint {
                    pod: pod.name_any(),
                    url: format!("{scheme}://{host}:{REGISTRY_PORT}{path}"),
                })
            })
            .collect()
    }

    /// The JSON document at `endpoint`; failures are logged at debug level.
    pub async fn fetch<T: DeserializeOwned>(&self, endpoint: &PodEndpoint) -> Option<T> {
        match self.get(&endpoint.url).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::debug!(pod = %endpoint.pod, url = %endpoint.url, error = %e, "registry pod report not read");
                None
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("not the expected JSON: {e}"))
    }
}

/// Keys remembered by `Reported` before its memory starts over.
const KEYS_KEPT: usize = 10_000;

/// Which reports (sweeps, syncs) were already looked at, per key (a
/// registry process, a mirror): the mark (a sequence or a time) of the
/// newest one.
pub struct Reported {
    marks: Mutex<HashMap<String, i64>>,
    /// Unix seconds; for a key seen for the first time, only reports
    /// finished after this are new (no repeats after an operator restart).
    started_at: i64,
}

impl Reported {
    pub fn new(started_at: i64) -> Reported {
        Reported {
            marks: Mutex::default(),
            started_at,
        }
    }

    /// The items of `key` not looked at before; remembers the highest mark.
    pub fn fresh<'a, T>(
        &self,
        key: &str,
        items: &'a [T],
        mark: impl Fn(&T) -> i64,
        finished_at: impl Fn(&T) -> i64,
    ) -> Vec<&'a T> {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let last = marks.get(key).copied();
        let fresh = items
            .iter()
            .filter(|item| match last {
                Some(last) => mark(item) > last,
                None => finished_at(item) >= self.started_at,
            })
            .collect();
        if let Some(newest) = items.iter().map(&mark).max() {
            if last.is_none() && marks.len() >= KEYS_KEPT {
                marks.clear();
            }
            marks.insert(key.to_string(), newest.max(last.unwrap_or(i64::MIN)));
        }
        fresh
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

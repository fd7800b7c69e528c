//! The monitoring component: a Prometheus Operator ServiceMonitor scraping
//! the registry's /metrics, over HTTPS checked against the managed CA when
//! the operator runs one. Managed by default where the
//! monitoring.coreos.com API exists.

use super::registry::port_name;
use super::tls::TlsPlan;
use super::{BuildContext, BuildError, Component, METADATA_OVERRIDES, OverrideField, PodParts};
use crate::crd::ComponentKind;
use crate::names::{ca_config_map_name, meta, registry_name, selector_labels};
use crate::resources::{ObjectKind, Resources};

pub const OVERRIDES: &[OverrideField] = METADATA_OVERRIDES;

pub struct Monitoring;

impl Component for Monitoring {
    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        let cr = cx.cr;
        let Some(overrides) = cx.plan.overrides(ComponentKind::Monitoring) else {
            return Ok(());
        };
        out.add_json(
            ObjectKind::ServiceMonitor,
            serde_json::json!({
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": meta(cr, registry_name(cr), "monitoring", Some(overrides)),
                "spec": {
                    "selector": {"matchLabels": selector_labels(cr)},
                    "endpoints": [endpoint(cx)],
                },
            }),
        );
        Ok(())
    }
}

/// The scrape endpoint: HTTPS checked against the managed CA, or against
/// the system roots for a certificate of your own.
fn endpoint(cx: &BuildContext<'_>) -> serde_json::Value {
    let (cr, plan) = (cx.cr, cx.plan);
    let port = port_name(plan);
    let server_name = format!(
        "{}.{}.svc",
        registry_name(cr),
        cr.metadata.namespace.clone().unwrap_or_default()
    );
    match &plan.tls {
        TlsPlan::Off => serde_json::json!({"port": port, "path": "/metrics"}),
        TlsPlan::Managed => serde_json::json!({
            "port": port,
            "path": "/metrics",
            "scheme": "https",
            "tlsConfig": {
                "ca": {"configMap": {"name": ca_config_map_name(cr), "key": "ca.crt"}},
                "serverName": server_name,
            },
        }),
        TlsPlan::Provided { .. } => serde_json::json!({
            "port": port,
            "path": "/metrics",
            "scheme": "https",
            "tlsConfig": {"serverName": server_name},
        }),
    }
}

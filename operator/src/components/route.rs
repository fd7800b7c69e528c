//! The route component: an OpenShift Route to the registry Service, for
//! spec.serverHostname or a host the router generates. Passthrough when the
//! registry serves HTTPS itself, else edge TLS at the router. Managed by
//! default where the route.openshift.io API exists.

use super::registry::port_name;
use super::{BuildContext, BuildError, Component, METADATA_OVERRIDES, OverrideField, PodParts};
use crate::crd::ComponentKind;
use crate::names::{meta, registry_name};
use crate::resources::{ObjectKind, Resources};

pub const OVERRIDES: &[OverrideField] = METADATA_OVERRIDES;

pub struct Route;

impl Component for Route {
    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        let (cr, plan) = (cx.cr, cx.plan);
        let Some(overrides) = plan.overrides(ComponentKind::Route) else {
            return Ok(());
        };
        // The registry's own HTTPS passes through the router untouched (the
        // serving certificate names the Route host); else the router
        // terminates TLS.
        let termination = if plan.tls.serves_https() {
            "passthrough"
        } else {
            "edge"
        };
        let mut spec = serde_json::json!({
            "to": {"kind": "Service", "name": registry_name(cr), "weight": 100},
            "port": {"targetPort": port_name(plan)},
            "tls": {"termination": termination, "insecureEdgeTerminationPolicy": "Redirect"},
        });
        if let Some(host) = &plan.registry_config.server_hostname {
            spec["host"] =
                serde_json::Value::String(host.split(':').next().unwrap_or(host).to_string());
        }
        out.add_json(
            ObjectKind::Route,
            serde_json::json!({
                "apiVersion": "route.openshift.io/v1",
                "kind": "Route",
                "metadata": meta(cr, registry_name(cr), "route", Some(overrides)),
                "spec": spec,
            }),
        );
        Ok(())
    }
}

/// The host a Route serves: the router's admitted host, else spec.host.
pub fn route_host(route: &kube::core::DynamicObject) -> Option<String> {
    let admitted = route.data["status"]["ingress"][0]["host"].as_str();
    let spec = route.data["spec"]["host"].as_str();
    admitted
        .or(spec)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

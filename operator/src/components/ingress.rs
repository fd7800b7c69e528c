//! The ingress component: a Kubernetes Ingress for spec.serverHostname,
//! routed to the registry Service. Overrides: labels and annotations (the
//! ingress class or TLS settings of your controller).

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress as IngressObject, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};

use super::registry::port_name;
use super::{BuildContext, BuildError, Component, METADATA_OVERRIDES, OverrideField, PodParts};
use crate::crd::ComponentKind;
use crate::names::{meta, registry_name};
use crate::plan::{Issues, Plan, PlanInput};
use crate::resources::Resources;

pub const OVERRIDES: &[OverrideField] = METADATA_OVERRIDES;

pub struct Ingress;

impl Component for Ingress {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        if plan.managed(ComponentKind::Ingress) && input.spec.server_hostname.is_none() {
            issues.error(
                "spec.serverHostname",
                "a managed ingress needs the host name it serves: set spec.serverHostname",
            );
        }
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        let (cr, plan) = (cx.cr, cx.plan);
        let (Some(overrides), Some(host)) = (
            plan.overrides(ComponentKind::Ingress),
            &plan.registry_config.server_hostname,
        ) else {
            return Ok(());
        };
        let backend = IngressBackend {
            service: Some(IngressServiceBackend {
                name: registry_name(cr),
                port: Some(ServiceBackendPort {
                    name: Some(port_name(plan).into()),
                    number: None,
                }),
            }),
            resource: None,
        };
        out.add(&IngressObject {
            metadata: meta(cr, registry_name(cr), "ingress", Some(overrides)),
            spec: Some(IngressSpec {
                rules: Some(vec![IngressRule {
                    // The Ingress host has no port.
                    host: Some(host.split(':').next().unwrap_or(host).to_string()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".into()),
                            path_type: "Prefix".into(),
                            backend,
                        }],
                    }),
                }]),
                ..IngressSpec::default()
            }),
            ..IngressObject::default()
        })
    }
}

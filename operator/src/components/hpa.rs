//! The hpa component: an autoscaling/v2 HorizontalPodAutoscaler that
//! scales the registry Deployment on CPU use. Only with shared storage;
//! while it is managed the operator leaves the Deployment's replica count
//! to it (see `resources::ApplyMode::ReplicasToAutoscaler`).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::{BuildContext, BuildError, Component, OverrideField, PodParts, StatusInput};
use crate::crd::{ComponentKind, Overrides};
use crate::names::{meta, registry_name};
use crate::plan::{Issues, Plan, PlanInput, component_path};
use crate::resources::Resources;
use crate::status::StatusDraft;

/// The HorizontalPodAutoscaler's CPU target when none is given.
pub const DEFAULT_TARGET_CPU_UTILIZATION: i32 = 75;
/// minReplicas when neither it nor the registry's replicas is given.
pub const DEFAULT_HPA_MIN_REPLICAS: i32 = 2;
/// maxReplicas when none is given (or minReplicas, when larger).
pub const DEFAULT_HPA_MAX_REPLICAS: i32 = 5;

pub const OVERRIDES: &[OverrideField] = &[
    OverrideField::MinReplicas,
    OverrideField::MaxReplicas,
    OverrideField::TargetCpuUtilizationPercentage,
    OverrideField::Labels,
    OverrideField::Annotations,
];

/// The HorizontalPodAutoscaler of the registry Deployment, bounds checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaPlan {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_cpu_utilization_percentage: i32,
}

pub struct Hpa;

impl Component for Hpa {
    fn plan(&self, _input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(o) = plan.overrides(ComponentKind::Hpa).cloned() else {
            return;
        };
        let hpa = component_path(ComponentKind::Hpa);
        let registry = component_path(ComponentKind::Registry);
        if let Some(one_pod) = plan.storage.single_pod_kind() {
            issues.error(
                format!("{hpa}.managed"),
                format!(
                    "a managed hpa scales the registry to several pods, which need shared storage: set spec.objectStorage (S3, Ceph RGW, MinIO); {one_pod} serves one pod"
                ),
            );
        }
        let registry_overrides = plan
            .overrides(ComponentKind::Registry)
            .cloned()
            .unwrap_or_default();
        let (min, min_path) = match (o.min_replicas, registry_overrides.replicas) {
            (Some(min), registry_replicas) => {
                if registry_replicas.is_some() {
                    issues.warn(format!(
                        "{registry}.overrides.replicas is not applied: the hpa component scales the registry between minReplicas {min} and maxReplicas"
                    ));
                }
                (min, format!("{hpa}.overrides.minReplicas"))
            }
            (None, Some(r)) => (r, format!("{registry}.overrides.replicas")),
            (None, None) => (
                DEFAULT_HPA_MIN_REPLICAS,
                format!("{hpa}.overrides.minReplicas"),
            ),
        };
        if min < 1 {
            issues.error(
                min_path.clone(),
                format!("{min} cannot be the hpa's minReplicas: it keeps at least one pod"),
            );
        }
        let max = o.max_replicas.unwrap_or(min.max(DEFAULT_HPA_MAX_REPLICAS));
        if max < min {
            issues.error(
                format!("{hpa}.overrides.maxReplicas"),
                format!("{max} is below minReplicas {min} (from {min_path})"),
            );
        }
        warn_without_cpu_request(&registry_overrides, &registry, issues);
        plan.hpa = Some(HpaPlan {
            min_replicas: min,
            max_replicas: max,
            target_cpu_utilization_percentage: o
                .target_cpu_utilization_percentage
                .unwrap_or(DEFAULT_TARGET_CPU_UTILIZATION),
        });
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        let Some(h) = &cx.plan.hpa else {
            return Ok(());
        };
        let name = registry_name(cx.cr);
        out.add(&HorizontalPodAutoscaler {
            metadata: meta(
                cx.cr,
                name.clone(),
                "hpa",
                cx.plan.overrides(ComponentKind::Hpa),
            ),
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name,
                },
                min_replicas: Some(h.min_replicas),
                max_replicas: h.max_replicas,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(h.target_cpu_utilization_percentage),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                }]),
                ..HorizontalPodAutoscalerSpec::default()
            },
            ..HorizontalPodAutoscaler::default()
        })
    }

    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        let (ok, reason, message) = condition(cx.cr, cx.plan, cx.hpa);
        draft.set_condition("ComponentHpaReady", ok, &reason, message);
    }
}

/// The HPA computes a percentage of the CPU request: without one it
/// cannot scale.
fn warn_without_cpu_request(registry: &Overrides, registry_path: &str, issues: &mut Issues) {
    let requests_cpu = registry
        .resources
        .as_ref()
        .is_none_or(|r| r.requests.as_ref().is_some_and(|q| q.contains_key("cpu")));
    if !requests_cpu {
        issues.warn(format!(
            "the hpa scales on CPU use in percent of the CPU request, and {registry_path}.overrides.resources requests no cpu: the HorizontalPodAutoscaler cannot compute it"
        ));
    }
}

/// ComponentHpaReady: what the HorizontalPodAutoscaler controller says
/// about the HPA (True only when it can scale and computes a count from
/// the CPU metric), or that the operator sets the replicas itself.
pub fn condition(
    cr: &crate::crd::QuarryRegistry,
    plan: &Plan,
    hpa: Option<&HorizontalPodAutoscaler>,
) -> (bool, String, String) {
    let name = registry_name(cr);
    let Some(h) = &plan.hpa else {
        return (
            true,
            "ComponentNotManaged".into(),
            format!(
                "the hpa component is unmanaged: the operator runs {} replica(s) of Deployment {name} ({}.overrides.replicas)",
                plan.replicas,
                component_path(ComponentKind::Registry)
            ),
        );
    };
    let bounds = format!(
        "between {} and {} pods at {}% average CPU",
        h.min_replicas, h.max_replicas, h.target_cpu_utilization_percentage
    );
    let Some(hpa) = hpa else {
        return (
            false,
            "HorizontalPodAutoscalerMissing".into(),
            format!("HorizontalPodAutoscaler {name} not found"),
        );
    };
    let conditions = hpa
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
    match (find("AbleToScale"), find("ScalingActive")) {
        (Some(able), Some(active)) if able.status == "True" && active.status == "True" => (
            true,
            "Scaling".into(),
            format!("HorizontalPodAutoscaler {name} scales Deployment {name} {bounds}"),
        ),
        (None, _) | (_, None) => (
            false,
            "NotReported".into(),
            format!(
                "HorizontalPodAutoscaler {name} ({bounds}): the HorizontalPodAutoscaler controller has not reported on it yet"
            ),
        ),
        (Some(able), Some(active)) => {
            let failing = if able.status != "True" { able } else { active };
            (
                false,
                failing
                    .reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "NotScaling".into()),
                format!(
                    "HorizontalPodAutoscaler {name} ({bounds}) does not autoscale: {}={} {}: {} (it still keeps the pod count within its bounds)",
                    failing.type_,
                    failing.status,
                    failing.reason.clone().unwrap_or_default(),
                    failing.message.clone().unwrap_or_default()
                ),
            )
        }
    }
}

//! The registry component (always managed): its config Secret,
//! ServiceAccount, Deployment — the pod every other component adds to —
//! Service and PodDisruptionBudget, and the Ready condition, which follows
//! its rollout.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::storage::StoragePlan;
use super::{BuildContext, BuildError, Component, OverrideField, PodParts, StatusInput};
use crate::crd::{ComponentKind, Overrides};
use crate::names::{
    REGISTRY_PORT, config_secret_name, labels_with, meta, registry_name, selector_labels,
};
use crate::plan::{Issues, Plan, PlanInput, component_path};
use crate::resources::{ApplyMode, Resources};
use crate::status::StatusDraft;

/// Where the config Secret is mounted.
pub const CONFIG_DIR: &str = "/etc/quarry/config";
/// Pod-template annotation that changes exactly when the config does.
pub const CONFIG_HASH_ANNOTATION: &str = "quarry.dev/config-hash";
/// The user and group of the registry image (Containerfile `USER`).
pub const IMAGE_GROUP: i64 = 65532;

pub const OVERRIDES: &[OverrideField] = &[
    OverrideField::Replicas,
    OverrideField::Resources,
    OverrideField::Env,
    OverrideField::NodeSelector,
    OverrideField::Tolerations,
    OverrideField::Labels,
    OverrideField::Annotations,
];

pub struct Registry;

impl Component for Registry {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let replicas = plan
            .overrides(ComponentKind::Registry)
            .and_then(|o| o.replicas)
            .unwrap_or(1);
        plan.replicas = replicas;
        plan.volume_group = (!input.offers.routes).then_some(IMAGE_GROUP);
        if replicas > 1
            && let Some(one_pod) = plan.storage.single_pod_kind()
        {
            issues.error(
                format!("{}.overrides.replicas", component_path(ComponentKind::Registry)),
                format!(
                    "{replicas} replicas need shared storage: set spec.objectStorage (S3, Ceph RGW, MinIO); {one_pod} serves one replica"
                ),
            );
        }
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        let (cr, plan) = (cx.cr, cx.plan);
        let overrides = plan.overrides(ComponentKind::Registry);
        let name = registry_name(cr);
        out.add(&ServiceAccount {
            metadata: meta(cr, name.clone(), "registry", overrides),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        })?;
        out.add(&Secret {
            metadata: meta(cr, config_secret_name(cr), "config", overrides),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "config.yaml".to_string(),
                ByteString(cx.config_yaml.clone().into_bytes()),
            )])),
            ..Secret::default()
        })?;
        let mode = match &plan.hpa {
            Some(h) => ApplyMode::ReplicasToAutoscaler {
                min: h.min_replicas,
            },
            None => ApplyMode::Plain,
        };
        out.add_with(&deployment(cx, pod), mode)?;
        out.add(&Service {
            metadata: meta(cr, name.clone(), "registry", overrides),
            spec: Some(ServiceSpec {
                selector: Some(selector_labels(cr)),
                ports: Some(vec![ServicePort {
                    name: Some(port_name(plan).into()),
                    port: REGISTRY_PORT,
                    target_port: Some(IntOrString::String(port_name(plan).into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })?;
        // Voluntary evictions (node drains) take one registry pod at a time.
        if plan.several_pods() {
            out.add(&PodDisruptionBudget {
                metadata: meta(cr, name, "registry", overrides),
                spec: Some(PodDisruptionBudgetSpec {
                    max_unavailable: Some(IntOrString::Int(1)),
                    selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(cr)),
                        ..LabelSelector::default()
                    }),
                    ..PodDisruptionBudgetSpec::default()
                }),
                ..PodDisruptionBudget::default()
            })?;
        }
        Ok(())
    }

    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        let plan = cx.plan;
        // With a Route and no serverHostname, clients reach the Route's host.
        let endpoint = match (&plan.registry_config.server_hostname, cx.route_host) {
            (None, Some(host)) => host.to_string(),
            _ => plan.endpoint(cx.cr),
        };
        let url = format!("{}://{endpoint}", plan.scheme());
        draft.status.ui_url = plan
            .registry_config
            .feature_ui
            .then(|| format!("{url}/ui/"));
        draft.status.registry_url = Some(url);
        draft.status.registry_endpoint = Some(endpoint);
        let (ready, detail) = rollout(cx);
        if ready {
            draft.status.current_version = Some(plan.version.clone());
        }
        draft.set_condition(
            "Progressing",
            !ready,
            if ready {
                "RolloutComplete"
            } else {
                "RollingOut"
            },
            detail.clone(),
        );
        draft.set_condition(
            "ComponentRegistryReady",
            ready,
            if ready { "Available" } else { "NotAvailable" },
            detail.clone(),
        );
        draft.set_condition(
            "Ready",
            ready,
            if ready {
                "RegistryAvailable"
            } else {
                "RegistryNotAvailable"
            },
            if ready {
                format!("registry {} serves the current configuration", plan.version)
            } else {
                detail
            },
        );
    }
}

/// Rolled out and available = the Deployment controller has seen our
/// latest template and every replica runs it and is available.
fn rollout(cx: &StatusInput<'_>) -> (bool, String) {
    let Some(d) = cx.deployment else {
        return (false, "Deployment not found".to_string());
    };
    // With a HorizontalPodAutoscaler the count it set is the goal.
    let want = match &cx.plan.hpa {
        Some(_) => d.spec.replicas.unwrap_or(1),
        None => cx.plan.replicas,
    };
    let s = d.status.clone().unwrap_or_default();
    let seen = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let updated = s.updated_replicas.unwrap_or(0);
    let avail = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    let rolled = seen && updated == want && total == want;
    (
        rolled && avail >= want,
        format!("{updated}/{want} replicas updated, {avail} available"),
    )
}

/// The name of the registry's port: what it speaks.
pub fn port_name(plan: &Plan) -> &'static str {
    if plan.tls.serves_https() {
        "https"
    } else {
        "http"
    }
}

/// The Deployment: the registry container with what every component added.
fn deployment(cx: &BuildContext<'_>, pod: &PodParts) -> Deployment {
    let (cr, plan) = (cx.cr, cx.plan);
    let overrides = plan.overrides(ComponentKind::Registry);
    let mut annotations = overrides
        .and_then(|o| o.annotations.clone())
        .unwrap_or_default();
    annotations.extend(pod.annotations.clone());
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), cx.config_hash.clone());
    let mut volumes = vec![Volume {
        name: "config".into(),
        secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
            secret_name: Some(config_secret_name(cr)),
            ..Default::default()
        }),
        ..Volume::default()
    }];
    volumes.extend(pod.volumes.clone());
    Deployment {
        metadata: meta(cr, registry_name(cr), "registry", overrides),
        spec: DeploymentSpec {
            // A managed HorizontalPodAutoscaler owns the count: applying one
            // here would undo its scaling on every reconcile.
            replicas: plan.hpa.is_none().then_some(plan.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cr)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(&plan.storage)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels_with(cr, "registry", overrides)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(registry_name(cr)),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security(plan)),
                    containers: vec![container(cx, pod, overrides)],
                    node_selector: overrides.and_then(|o| o.node_selector.clone()),
                    tolerations: overrides
                        .map(|o| o.tolerations.clone())
                        .filter(|t| !t.is_empty()),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// One writer per ReadWriteOnce volume: stop the old pod first. Shared
/// object storage: roll one pod at a time, none down.
fn strategy(storage: &StoragePlan) -> DeploymentStrategy {
    match storage {
        StoragePlan::Object(_) => DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        },
        StoragePlan::Volume | StoragePlan::EmptyDir => DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        },
    }
}

fn pod_security(plan: &Plan) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        // A new volume is root's: without a group the non-root registry
        // cannot write its data.
        fs_group: plan.volume_group,
        fs_group_change_policy: plan.volume_group.map(|_| "OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn container(cx: &BuildContext<'_>, pod: &PodParts, overrides: Option<&Overrides>) -> Container {
    let plan = cx.plan;
    let port = port_name(plan);
    let probe = |path: &str, delay: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: Some(
                if plan.tls.serves_https() {
                    "HTTPS"
                } else {
                    "HTTP"
                }
                .into(),
            ),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let mut args = vec![
        "--config".to_string(),
        format!("{CONFIG_DIR}/config.yaml"),
        "--listen".into(),
        format!("0.0.0.0:{REGISTRY_PORT}"),
        "--log-format".into(),
        "json".into(),
    ];
    args.extend(pod.args.clone());
    let mut env = overrides.map(|o| o.env.clone()).unwrap_or_default();
    env.extend(pod.env.clone());
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    mounts.extend(pod.mounts.clone());
    Container {
        name: "registry".into(),
        image: Some(cx.image.clone()),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![ContainerPort {
            name: Some(port.into()),
            container_port: REGISTRY_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe("/readyz", 1)),
        liveness_probe: Some(probe("/healthz", 5)),
        resources: Some(
            overrides
                .and_then(|o| o.resources.clone())
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

//! build: a validated plan and its resource -> the objects that should
//! exist. Pure and deterministic: the same input renders the same bytes, so
//! an unchanged resource causes no writes and a config change rolls the
//! pods through the config hash in the pod template.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::QuarryRegistry;
use crate::validate::{
    ACCESS_KEY_ID, AUTH_DIR, AuthPlan, CONFIG_DIR, DATA_DIR, Plan, SECRET_ACCESS_KEY, TLS_DIR,
    TlsPlan,
};

/// The port the registry listens on inside the pod and the Service.
pub const REGISTRY_PORT: i32 = 5000;
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "quarry-operator";
/// Pod-template annotation that changes when the object-storage
/// credentials do (they reach the pods as environment variables).
pub const CREDENTIALS_HASH_ANNOTATION: &str = "quarry.dev/storage-credentials-hash";
/// Pod-template annotation that changes exactly when the config does.
pub const CONFIG_HASH_ANNOTATION: &str = "quarry.dev/config-hash";
pub const MANAGED_BY: &str = "quarry-operator";

/// Everything the operator applies for one resource, in dependency order.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub service_account: ServiceAccount,
    pub config_secret: Secret,
    pub pvc: Option<PersistentVolumeClaim>,
    /// Without `spec.replicas` when the HorizontalPodAutoscaler sets it.
    pub deployment: Deployment,
    pub service: Service,
    /// autoscaling/v2 HorizontalPodAutoscaler of the Deployment (hpa).
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// policy/v1 PodDisruptionBudget, when more than one pod can run.
    pub pdb: Option<PodDisruptionBudget>,
    pub ingress: Option<Ingress>,
    /// route.openshift.io/v1 Route, as JSON (the type is not in k8s-openapi).
    pub route: Option<serde_json::Value>,
    /// monitoring.coreos.com/v1 ServiceMonitor, as JSON.
    pub service_monitor: Option<serde_json::Value>,
    pub config_hash: String,
    pub image: String,
}

pub fn registry_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry", cr.name_any())
}

pub fn config_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-config", cr.name_any())
}

pub fn pvc_name(cr: &QuarryRegistry) -> String {
    format!("{}-data", cr.name_any())
}

/// Generated accounts' names and passwords, for users to read.
pub fn credentials_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-credentials", cr.name_any())
}

/// The robot's kubernetes.io/dockerconfigjson Secret.
pub fn pull_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-pull", cr.name_any())
}

/// What the registry pod mounts at AUTH_DIR: accounts file and token key.
pub fn auth_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-auth", cr.name_any())
}

/// The managed CA's certificate and private key.
pub fn ca_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-ca-key", cr.name_any())
}

/// The managed CA's certificate, public.
pub fn ca_config_map_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-ca", cr.name_any())
}

/// The managed serving certificate (kubernetes.io/tls).
pub fn tls_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry-tls", cr.name_any())
}

/// The name of the registry's port: what it speaks.
pub fn port_name(plan: &Plan) -> &'static str {
    if plan.tls.serves_https() {
        "https"
    } else {
        "http"
    }
}

/// Labels every object of this resource carries (and that orphan clean-up
/// and the Service selector use).
pub fn labels(cr: &QuarryRegistry, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "quarry-registry".into()),
        ("app.kubernetes.io/instance".into(), cr.name_any()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        ("app.kubernetes.io/part-of".into(), "quarry".into()),
    ])
}

fn selector_labels(cr: &QuarryRegistry) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "quarry-registry".into()),
        ("app.kubernetes.io/instance".into(), cr.name_any()),
    ])
}

fn owner(cr: &QuarryRegistry) -> Vec<OwnerReference> {
    cr.controller_owner_ref(&()).into_iter().collect()
}

pub(crate) fn meta(cr: &QuarryRegistry, name: String, component: &str, plan: &Plan) -> ObjectMeta {
    let mut labels = labels(cr, component);
    if let Some(extra) = &plan.registry_overrides.labels {
        for (k, v) in extra {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    ObjectMeta {
        name: Some(name),
        namespace: cr.namespace(),
        labels: Some(labels),
        owner_references: Some(owner(cr)),
        ..ObjectMeta::default()
    }
}

/// Render the registry's config.yaml from the plan.
pub fn render_config(plan: &Plan) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(&plan.registry_config)?)
}

pub fn build(cr: &QuarryRegistry, plan: &Plan, image_repository: &str) -> anyhow::Result<Desired> {
    let config_yaml = render_config(plan)?;
    let config_hash = hex::encode(Sha256::digest(config_yaml.as_bytes()));
    let image = format!("{image_repository}:{}", plan.version);
    let name = registry_name(cr);

    let service_account = ServiceAccount {
        metadata: meta(cr, name.clone(), "registry", plan),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    let config_secret = Secret {
        metadata: meta(cr, config_secret_name(cr), "config", plan),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "config.yaml".to_string(),
            ByteString(config_yaml.into_bytes()),
        )])),
        ..Secret::default()
    };
    let pvc = plan.storage.as_ref().map(|o| PersistentVolumeClaim {
        metadata: meta(cr, pvc_name(cr), "storage", plan),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: o.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(o.volume_size.clone().unwrap_or_else(|| "10Gi".into())),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    });

    let data_volume = match &pvc {
        Some(_) => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc_name(cr),
                read_only: None,
            }),
            ..Volume::default()
        },
        None => Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    };
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
    let overrides = &plan.registry_overrides;
    let mut pod_labels = labels(cr, "registry");
    if let Some(extra) = &overrides.labels {
        for (k, v) in extra {
            pod_labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut pod_annotations = overrides.annotations.clone().unwrap_or_default();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.clone());
    let mut args = vec![
        "--config".to_string(),
        format!("{CONFIG_DIR}/config.yaml"),
        "--listen".into(),
        format!("0.0.0.0:{REGISTRY_PORT}"),
        "--log-format".into(),
        "json".into(),
    ];
    // Sibling folders: a volume cannot be mounted inside a (read-only)
    // Secret volume.
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(config_secret_name(cr)),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        data_volume,
    ];
    let mut secret_volume = |name: &str, secret: String, dir: &str| {
        mounts.push(VolumeMount {
            name: name.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    };
    if !matches!(plan.auth, AuthPlan::Off) {
        secret_volume("auth", auth_secret_name(cr), AUTH_DIR);
    }
    let tls_secret = match &plan.tls {
        TlsPlan::Off => None,
        TlsPlan::Managed => Some(tls_secret_name(cr)),
        TlsPlan::Provided { secret, .. } => Some(secret.clone()),
    };
    if let Some(secret) = tls_secret {
        secret_volume("tls", secret, TLS_DIR);
        args.extend([
            "--tls-cert".to_string(),
            format!("{TLS_DIR}/tls.crt"),
            "--tls-key".to_string(),
            format!("{TLS_DIR}/tls.key"),
        ]);
    }
    let mut env = overrides.env.clone();
    if let Some(object) = &plan.object_storage {
        for key in [ACCESS_KEY_ID, SECRET_ACCESS_KEY] {
            env.push(EnvVar {
                name: key.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: object.credentials_secret.clone(),
                        key: key.into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
        // Environment variables are read at start: new credentials need
        // new pods.
        pod_annotations.insert(
            CREDENTIALS_HASH_ANNOTATION.into(),
            object.credentials_hash.clone(),
        );
    }
    let container = Container {
        name: "registry".into(),
        image: Some(image.clone()),
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
                .resources
                .clone()
                .unwrap_or_else(|| ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity("50m".into())),
                        ("memory".to_string(), Quantity("64Mi".into())),
                    ])),
                    limits: Some(BTreeMap::from([(
                        "memory".to_string(),
                        Quantity("512Mi".into()),
                    )])),
                    ..ResourceRequirements::default()
                }),
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
    };
    let deployment = Deployment {
        metadata: meta(cr, name.clone(), "registry", plan),
        spec: DeploymentSpec {
            // A managed HorizontalPodAutoscaler owns the count: applying one
            // here would undo its scaling on every reconcile.
            replicas: plan.hpa.is_none().then_some(plan.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cr)),
                ..LabelSelector::default()
            },
            // One writer per ReadWriteOnce volume: stop the old pod first.
            // Shared object storage: roll one pod at a time, none down.
            strategy: Some(match plan.object_storage {
                Some(_) => DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(1)),
                        max_unavailable: Some(IntOrString::Int(0)),
                    }),
                },
                None => DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                },
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        // A new volume is root's: without a group the
                        // non-root registry cannot write its data.
                        fs_group: plan.volume_group,
                        fs_group_change_policy: plan
                            .volume_group
                            .map(|_| "OnRootMismatch".to_string()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    node_selector: overrides.node_selector.clone(),
                    tolerations: (!overrides.tolerations.is_empty())
                        .then(|| overrides.tolerations.clone()),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let service = Service {
        metadata: meta(cr, name, "registry", plan),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cr)),
            ports: Some(vec![ServicePort {
                name: Some(port.into()),
                port: REGISTRY_PORT,
                target_port: Some(IntOrString::String(port.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let hpa = plan.hpa.as_ref().map(|h| {
        let mut metadata = meta(cr, registry_name(cr), "hpa", plan);
        if let Some(extra) = &h.overrides.labels {
            let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in extra {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        metadata.annotations = h.overrides.annotations.clone();
        HorizontalPodAutoscaler {
            metadata,
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: registry_name(cr),
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
        }
    });
    // Voluntary evictions (node drains) take one registry pod at a time.
    let pdb = plan.several_pods().then(|| PodDisruptionBudget {
        metadata: meta(cr, registry_name(cr), "registry", plan),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cr)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    });
    let ingress = match (&plan.ingress, &plan.registry_config.server_hostname) {
        (Some(o), Some(host)) => {
            let mut metadata = meta(cr, registry_name(cr), "ingress", plan);
            if let Some(extra) = &o.labels {
                let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in extra {
                    labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            metadata.annotations = o.annotations.clone();
            Some(Ingress {
                metadata,
                spec: Some(IngressSpec {
                    rules: Some(vec![IngressRule {
                        // The Ingress host has no port.
                        host: Some(host.split(':').next().unwrap_or(host).to_string()),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".into()),
                                path_type: "Prefix".into(),
                                backend: IngressBackend {
                                    service: Some(IngressServiceBackend {
                                        name: registry_name(cr),
                                        port: Some(ServiceBackendPort {
                                            name: Some(port.into()),
                                            number: None,
                                        }),
                                    }),
                                    resource: None,
                                },
                            }],
                        }),
                    }]),
                    ..IngressSpec::default()
                }),
                ..Ingress::default()
            })
        }
        _ => None,
    };
    let owner_json = serde_json::to_value(owner(cr))?;
    let route = plan.route.as_ref().map(|o| {
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
            "port": {"targetPort": port},
            "tls": {"termination": termination, "insecureEdgeTerminationPolicy": "Redirect"},
        });
        if let Some(host) = &plan.registry_config.server_hostname {
            spec["host"] =
                serde_json::Value::String(host.split(':').next().unwrap_or(host).to_string());
        }
        serde_json::json!({
            "apiVersion": "route.openshift.io/v1",
            "kind": "Route",
            "metadata": {
                "name": registry_name(cr),
                "namespace": cr.namespace(),
                "labels": labels(cr, "route"),
                "annotations": o.annotations.clone().unwrap_or_default(),
                "ownerReferences": owner_json,
            },
            "spec": spec,
        })
    });
    let service_monitor = plan.monitoring.as_ref().map(|_| {
        serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {
                "name": registry_name(cr),
                "namespace": cr.namespace(),
                "labels": labels(cr, "monitoring"),
                "ownerReferences": owner_json,
            },
            "spec": {
                "selector": {"matchLabels": selector_labels(cr)},
                "endpoints": [monitoring_endpoint(cr, plan)],
            },
        })
    });
    Ok(Desired {
        service_account,
        config_secret,
        pvc,
        deployment,
        service,
        hpa,
        pdb,
        ingress,
        route,
        service_monitor,
        config_hash,
        image,
    })
}

/// The ServiceMonitor's endpoint: HTTPS checked against the managed CA, or
/// against the system roots for a certificate of your own.
fn monitoring_endpoint(cr: &QuarryRegistry, plan: &Plan) -> serde_json::Value {
    let port = port_name(plan);
    let server_name = format!(
        "{}.{}.svc",
        registry_name(cr),
        cr.namespace().unwrap_or_default()
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

/// Where clients reach the registry inside the cluster.
pub fn endpoint(cr: &QuarryRegistry, plan: &Plan) -> String {
    match &plan.registry_config.server_hostname {
        Some(host) => host.clone(),
        None => format!(
            "{}.{}.svc:{REGISTRY_PORT}",
            registry_name(cr),
            cr.namespace().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Bundle, validate};

    fn cr(yaml: &str) -> QuarryRegistry {
        let mut cr: QuarryRegistry = serde_norway::from_str(yaml).unwrap();
        cr.metadata.uid = Some("uid-1".into());
        cr
    }

    const MINIMAL: &str = "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec: {}\n";

    #[test]
    fn renders_the_objects_with_labels_owner_and_hash() {
        let cr = cr(MINIMAL);
        let plan = validate(&cr.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
        let d = build(&cr, &plan, "quay.io/quarry/registry").unwrap();
        assert_eq!(d.deployment.metadata.name.as_deref(), Some("demo-registry"));
        assert_eq!(d.image, "quay.io/quarry/registry:0.1.0");
        let owner = &d.deployment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "QuarryRegistry");
        assert_eq!(owner.controller, Some(true));
        let template = d.deployment.spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            d.config_hash
        );
        let config = String::from_utf8(
            d.config_secret.data.as_ref().unwrap()["config.yaml"]
                .0
                .clone(),
        )
        .unwrap();
        assert!(
            config.contains("FEATURE_HELM_OCI_SUPPORT: true"),
            "{config}"
        );
        assert!(config.contains(DATA_DIR), "{config}");
        assert!(d.pvc.is_some());
        assert!(d.ingress.is_none());
        assert_eq!(endpoint(&cr, &plan), "demo-registry.ns.svc:5000");
    }

    #[test]
    fn managed_ingress_routes_the_host_to_the_service() {
        let cr = cr(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec:\n  serverHostname: registry.example.com:443\n  components: [{kind: ingress, managed: true, overrides: {annotations: {a: b}}}]\n",
        );
        let plan = validate(&cr.spec, &Bundle::None, "v", Default::default()).unwrap();
        let d = build(&cr, &plan, "img").unwrap();
        let ingress = d.ingress.unwrap();
        assert_eq!(ingress.metadata.annotations.unwrap()["a"], "b");
        let rule = &ingress.spec.unwrap().rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("registry.example.com"));
        let mut no_host = cr.clone();
        no_host.spec.server_hostname = None;
        let errors = validate(&no_host.spec, &Bundle::None, "v", Default::default()).unwrap_err();
        assert_eq!(errors[0].path, "spec.serverHostname");
    }

    #[test]
    fn deterministic_and_hash_follows_config_only() {
        let a = cr(MINIMAL);
        let plan = validate(&a.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
        let first = build(&a, &plan, "img").unwrap();
        assert_eq!(first, build(&a, &plan, "img").unwrap());
        let mut b = a.clone();
        b.spec.features = Some(crate::crd::Features {
            helm: Some(false),
            ..Default::default()
        });
        let plan_b = validate(&b.spec, &Bundle::None, "0.1.0", Default::default()).unwrap();
        let second = build(&b, &plan_b, "img").unwrap();
        assert_ne!(first.config_hash, second.config_hash);
        // The rendered config drives the real registry: it parses back.
        let yaml = render_config(&plan_b).unwrap();
        let loaded = quarry_registry::config::RegistryConfig::from_yaml(&yaml, None).unwrap();
        assert!(!loaded.config.feature_helm_oci_support);
        assert!(loaded.unknown_keys.is_empty());
    }

    #[test]
    fn volumes_are_writable_for_the_image_group_except_where_openshift_assigns_one() {
        let cr = cr(MINIMAL);
        for (routes, want) in [(false, Some(65532)), (true, None)] {
            let offers = crate::capabilities::Offers {
                routes,
                service_monitors: false,
            };
            let plan = validate(&cr.spec, &Bundle::None, "v", offers).unwrap();
            let d = build(&cr, &plan, "img").unwrap();
            let pod = d.deployment.spec.template.spec.unwrap();
            let security = pod.security_context.unwrap();
            assert_eq!(security.fs_group, want, "routes offered: {routes}");
            assert_eq!(
                security.fs_group_change_policy.is_some(),
                want.is_some(),
                "routes offered: {routes}"
            );
        }
    }

    #[test]
    fn tls_and_auth_mount_their_secrets_outside_the_config_hash() {
        let cr = cr(MINIMAL);
        let offers = crate::capabilities::Offers {
            routes: true,
            service_monitors: true,
        };
        let plan = validate(&cr.spec, &Bundle::None, "v", offers).unwrap();
        let d = build(&cr, &plan, "img").unwrap();
        let pod = d.deployment.spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let args = container.args.as_ref().unwrap().join(" ");
        assert!(
            args.contains("--config /etc/quarry/config/config.yaml")
                && args.contains(
                    "--tls-cert /etc/quarry/tls/tls.crt --tls-key /etc/quarry/tls/tls.key"
                ),
            "{args}"
        );
        let volumes: Vec<(String, String)> = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|v| {
                v.secret
                    .as_ref()
                    .map(|s| (v.name.clone(), s.secret_name.clone().unwrap()))
            })
            .collect();
        assert_eq!(
            volumes,
            [
                ("config".to_string(), "demo-config".to_string()),
                ("auth".to_string(), "demo-registry-auth".to_string()),
                ("tls".to_string(), "demo-registry-tls".to_string()),
            ]
        );
        let probe = container.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.http_get.as_ref().unwrap().scheme.as_deref(),
            Some("HTTPS")
        );
        assert_eq!(
            d.service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
                .name
                .as_deref(),
            Some("https")
        );
        let route = d.route.unwrap();
        assert_eq!(route["spec"]["tls"]["termination"], "passthrough");
        assert_eq!(route["spec"]["port"]["targetPort"], "https");
        let monitor = d.service_monitor.unwrap();
        assert_eq!(
            monitor["spec"]["endpoints"][0]["tlsConfig"]["ca"]["configMap"]["name"],
            "demo-registry-ca"
        );
        // Plain HTTP: edge Route, no tls volume.
        let mut plain = cr.clone();
        plain.spec.components = vec![crate::crd::Component {
            kind: crate::crd::ComponentKind::Tls,
            managed: false,
            overrides: None,
        }];
        let plan = validate(&plain.spec, &Bundle::None, "v", offers).unwrap();
        let d = build(&plain, &plan, "img").unwrap();
        assert_eq!(d.route.unwrap()["spec"]["tls"]["termination"], "edge");
        let args = d.deployment.spec.template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap();
        assert!(!args.contains(&"--tls-cert".to_string()));
    }

    fn on_object_storage(components: &str) -> (QuarryRegistry, Plan) {
        let cr = cr(&format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: demo, namespace: ns}}\nspec:\n  objectStorage: {{bucket: quarry, credentialsSecret: s3}}\n  components: {components}\n"
        ));
        let inputs = crate::validate::Inputs {
            object_storage: crate::validate::ObjectStorageCheck::Probed {
                result: Ok(()),
                credentials_hash: "abc".into(),
            },
            ..crate::validate::Inputs::bundle(Bundle::None)
        };
        let plan =
            crate::validate::validate_with(&cr.spec, &inputs, "v", Default::default()).unwrap();
        (cr, plan)
    }

    #[test]
    fn managed_hpa_scales_the_deployment_which_leaves_replicas_to_it() {
        let (cr, plan) = on_object_storage(
            "[{kind: hpa, managed: true, overrides: {minReplicas: 3, maxReplicas: 7, targetCPUUtilizationPercentage: 60, labels: {team: a}}}]",
        );
        let d = build(&cr, &plan, "img").unwrap();
        assert_eq!(d.deployment.spec.replicas, None);
        let json = serde_json::to_value(&d.deployment).unwrap();
        assert!(
            json["spec"].get("replicas").is_none(),
            "replicas applied: {}",
            json["spec"]
        );
        let hpa = d.hpa.expect("an HPA");
        assert_eq!(hpa.metadata.name.as_deref(), Some("demo-registry"));
        let labels = hpa.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "hpa");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "quarry-operator");
        assert_eq!(labels["team"], "a");
        let owner = &hpa.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("QuarryRegistry", Some(true))
        );
        let target = &hpa.spec.scale_target_ref;
        assert_eq!(
            (
                target.api_version.as_deref(),
                target.kind.as_str(),
                target.name.as_str()
            ),
            (Some("apps/v1"), "Deployment", "demo-registry")
        );
        assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(3), 7));
        let metric = &hpa.spec.metrics.as_ref().unwrap()[0];
        let resource = metric.resource.as_ref().unwrap();
        assert_eq!(
            (metric.type_.as_str(), resource.name.as_str()),
            ("Resource", "cpu")
        );
        assert_eq!(resource.target.type_, "Utilization");
        assert_eq!(resource.target.average_utilization, Some(60));
        let pdb = d.pdb.expect("a PodDisruptionBudget");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels,
            d.deployment.spec.selector.match_labels
        );
        assert_eq!(pdb.metadata.name.as_deref(), Some("demo-registry"));
        assert!(pdb.metadata.owner_references.is_some());
    }

    #[test]
    fn disruption_budget_only_when_several_pods_can_run() {
        let (cr, plan) =
            on_object_storage("[{kind: registry, managed: true, overrides: {replicas: 3}}]");
        let d = build(&cr, &plan, "img").unwrap();
        assert_eq!(d.deployment.spec.replicas, Some(3));
        assert!(d.hpa.is_none());
        assert!(d.pdb.is_some(), "three replicas, no budget");
        let (cr, plan) = on_object_storage("[]");
        let d = build(&cr, &plan, "img").unwrap();
        assert_eq!(d.deployment.spec.replicas, Some(1));
        assert!(d.pdb.is_none() && d.hpa.is_none());
        let cr = cr_min();
        let plan = validate(&cr.spec, &Bundle::None, "v", Default::default()).unwrap();
        let d = build(&cr, &plan, "img").unwrap();
        assert!(d.pdb.is_none() && d.hpa.is_none());
        assert_eq!(d.deployment.spec.replicas, Some(1));
    }

    fn cr_min() -> QuarryRegistry {
        cr(MINIMAL)
    }
}

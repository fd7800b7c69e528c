//! Names, labels and owner references of the objects the operator makes
//! for one `QuarryRegistry`. Every component names its objects here, so
//! the names users see in `kubectl get` are in one place.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{Overrides, QuarryRegistry};

/// The port the registry listens on inside the pod and the Service.
pub const REGISTRY_PORT: i32 = 5000;
/// Field manager of every server-side apply, status included.
pub const FIELD_MANAGER: &str = "quarry-operator";
/// The `app.kubernetes.io/managed-by` value of everything we make.
pub const MANAGED_BY: &str = "quarry-operator";

/// The registry Deployment, Service, ServiceAccount, HPA, PDB, Route,
/// Ingress and ServiceMonitor all share this name.
pub fn registry_name(cr: &QuarryRegistry) -> String {
    format!("{}-registry", cr.name_any())
}

/// The rendered config.yaml.
pub fn config_secret_name(cr: &QuarryRegistry) -> String {
    format!("{}-config", cr.name_any())
}

/// The managed volume.
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

/// What the registry pod mounts as its auth folder: accounts file and
/// token key.
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

/// The registry Service's in-cluster host and port.
pub fn service_host(cr: &QuarryRegistry) -> String {
    format!(
        "{}.{}.svc:{REGISTRY_PORT}",
        registry_name(cr),
        cr.namespace().unwrap_or_default()
    )
}

/// Labels every object of this resource carries. The Service selector and
/// orphan clean-up use them; `part` says which component made the object.
pub fn labels(cr: &QuarryRegistry, part: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cr);
    labels.extend([
        ("app.kubernetes.io/component".into(), part.into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        ("app.kubernetes.io/part-of".into(), "quarry".into()),
    ]);
    labels
}

/// The labels that pick this resource's registry pods.
pub fn selector_labels(cr: &QuarryRegistry) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "quarry-registry".into()),
        ("app.kubernetes.io/instance".into(), cr.name_any()),
    ])
}

/// A label selector for everything the operator made for this resource.
pub fn ours_selector(cr: &QuarryRegistry) -> String {
    format!(
        "app.kubernetes.io/name=quarry-registry,app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGED_BY}",
        cr.name_any()
    )
}

/// The resource as controlling owner: its objects go when it goes.
pub fn owner(cr: &QuarryRegistry) -> Vec<OwnerReference> {
    cr.controller_owner_ref(&()).into_iter().collect()
}

/// Our labels with the component's extra labels (ours win on a clash).
pub fn labels_with(
    cr: &QuarryRegistry,
    part: &str,
    overrides: Option<&Overrides>,
) -> BTreeMap<String, String> {
    let mut labels = labels(cr, part);
    if let Some(extra) = overrides.and_then(|o| o.labels.as_ref()) {
        for (k, v) in extra {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    labels
}

/// Metadata of an object a component makes: name, namespace, our labels
/// plus the component's override labels and annotations, and the owner.
pub fn meta(
    cr: &QuarryRegistry,
    name: String,
    part: &str,
    overrides: Option<&Overrides>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cr.namespace(),
        labels: Some(labels_with(cr, part, overrides)),
        annotations: overrides
            .and_then(|o| o.annotations.clone())
            .filter(|a| !a.is_empty()),
        owner_references: Some(owner(cr)),
        ..ObjectMeta::default()
    }
}

//! The resources collector: components add the objects they build; the
//! collector applies them in dependency order with one field manager and
//! deletes, by label, what the operator made for the resource earlier and
//! the build no longer produces.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::capabilities::ClusterApis;
use crate::components::BuildError;
use crate::crd::QuarryRegistry;
use crate::error::Error;
use crate::metrics::OperatorMetrics;
use crate::names::{FIELD_MANAGER, ours_selector};

/// The kinds the operator makes, in the order they are applied (what an
/// object refers to exists before it: the ServiceAccount and Secrets
/// before the Deployment, the Deployment before its autoscaler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    ServiceAccount,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    Service,
    Ingress,
    Route,
    ServiceMonitor,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 11] = [
        ObjectKind::ServiceAccount,
        ObjectKind::Secret,
        ObjectKind::ConfigMap,
        ObjectKind::PersistentVolumeClaim,
        ObjectKind::Deployment,
        ObjectKind::HorizontalPodAutoscaler,
        ObjectKind::PodDisruptionBudget,
        ObjectKind::Service,
        ObjectKind::Ingress,
        ObjectKind::Route,
        ObjectKind::ServiceMonitor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::ServiceAccount => "ServiceAccount",
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
            ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ObjectKind::Deployment => "Deployment",
            ObjectKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ObjectKind::PodDisruptionBudget => "PodDisruptionBudget",
            ObjectKind::Service => "Service",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::Route => "Route",
            ObjectKind::ServiceMonitor => "ServiceMonitor",
        }
    }

    fn of(kind: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// Whether an object of this kind the build no longer makes is
    /// deleted. Never a claim (the data), nor the Secrets and ConfigMaps,
    /// which hold what cannot be made again the same: passwords clients
    /// use, the CA nodes trust. Delete those yourself when you mean it.
    pub fn pruned(self) -> bool {
        !matches!(
            self,
            ObjectKind::PersistentVolumeClaim | ObjectKind::Secret | ObjectKind::ConfigMap
        )
    }

    /// The API of this kind; `None` when the cluster does not serve it.
    pub fn api_resource(self, apis: &ClusterApis) -> Option<ApiResource> {
        Some(match self {
            ObjectKind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            ObjectKind::Secret => ApiResource::erase::<Secret>(&()),
            ObjectKind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            ObjectKind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
            ObjectKind::Deployment => ApiResource::erase::<Deployment>(&()),
            ObjectKind::HorizontalPodAutoscaler => {
                ApiResource::erase::<HorizontalPodAutoscaler>(&())
            }
            ObjectKind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            ObjectKind::Service => ApiResource::erase::<Service>(&()),
            ObjectKind::Ingress => ApiResource::erase::<Ingress>(&()),
            ObjectKind::Route => apis.route.clone()?,
            ObjectKind::ServiceMonitor => apis.service_monitor.clone()?,
        })
    }
}

/// How an object is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// One server-side apply.
    Plain,
    /// A Deployment whose replicas a HorizontalPodAutoscaler sets: the
    /// count is handed over first (see `apply_handing_over_replicas`); a
    /// new Deployment starts at `min`.
    ReplicasToAutoscaler { min: i32 },
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: ObjectKind,
    pub name: String,
    pub body: serde_json::Value,
    pub mode: ApplyMode,
}

/// Everything the build made for one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    entries: Vec<Entry>,
}

impl Resources {
    /// Add a typed object.
    pub fn add<K>(&mut self, obj: &K) -> Result<(), BuildError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        self.add_with(obj, ApplyMode::Plain)
    }

    /// Add a typed object applied in a particular way.
    pub fn add_with<K>(&mut self, obj: &K, mode: ApplyMode) -> Result<(), BuildError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let kind_name = K::kind(&());
        let name = obj.meta().name.clone().unwrap_or_default();
        let fail = |reason: String| BuildError {
            object: format!("{kind_name} {name}"),
            reason,
        };
        let kind = ObjectKind::of(&kind_name)
            .ok_or_else(|| fail("not a kind the operator manages".into()))?;
        let body = serde_json::to_value(obj).map_err(|e| fail(e.to_string()))?;
        self.push(kind, name.clone(), body, mode);
        Ok(())
    }

    /// Add an object of a kind k8s-openapi has no type for (Route,
    /// ServiceMonitor), as JSON with apiVersion, kind and metadata.
    pub fn add_json(&mut self, kind: ObjectKind, body: serde_json::Value) {
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.push(kind, name, body, ApplyMode::Plain);
    }

    fn push(&mut self, kind: ObjectKind, name: String, body: serde_json::Value, mode: ApplyMode) {
        self.entries.retain(|e| !(e.kind == kind && e.name == name));
        self.entries.push(Entry {
            kind,
            name,
            body,
            mode,
        });
    }

    /// The objects in apply order (stable within a kind).
    pub fn in_order(&self) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by_key(|e| e.kind);
        entries
    }

    /// Whether an object of this kind and name was built.
    pub fn contains(&self, kind: ObjectKind, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == kind && e.name == name)
    }

    /// The first object of a kind, typed (tests and status read these).
    pub fn one<K: DeserializeOwned>(&self, kind: ObjectKind) -> Option<K> {
        self.all(kind).into_iter().next()
    }

    /// Every object of a kind, typed, in the order they were added.
    pub fn all<K: DeserializeOwned>(&self, kind: ObjectKind) -> Vec<K> {
        self.entries
            .iter()
            .filter(|e| e.kind == kind)
            .filter_map(|e| serde_json::from_value(e.body.clone()).ok())
            .collect()
    }

    /// The JSON of an object.
    pub fn json(&self, kind: ObjectKind) -> Option<&serde_json::Value> {
        self.entries
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| &e.body)
    }
}

/// What `apply` wrote, as the API server returned it.
pub struct Applied {
    pub objects: Vec<(ObjectKind, DynamicObject)>,
}

impl Applied {
    pub fn get(&self, kind: ObjectKind) -> Option<&DynamicObject> {
        self.objects
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, o)| o)
    }
}

/// Delete what the build no longer makes, then apply everything in order.
/// Removal comes first so an autoscaler switched off is gone before the
/// Deployment takes its replica count back.
pub async fn apply(
    client: &Client,
    cr: &QuarryRegistry,
    ns: &str,
    apis: &ClusterApis,
    resources: &Resources,
    metrics: &OperatorMetrics,
) -> Result<Applied, Error> {
    prune(client, cr, ns, apis, resources, metrics).await?;
    let mut objects = Vec::new();
    for entry in resources.in_order() {
        let Some(ar) = entry.kind.api_resource(apis) else {
            continue; // planning refused a component whose API is missing
        };
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        let applied = match entry.mode {
            ApplyMode::Plain => apply_one(&api, ns, entry, metrics).await?,
            ApplyMode::ReplicasToAutoscaler { min } => {
                apply_handing_over_replicas(&api, ns, entry, min, metrics).await?
            }
        };
        objects.push((entry.kind, applied));
    }
    Ok(Applied { objects })
}

fn object(kind: ObjectKind, ns: &str, name: &str) -> String {
    format!("{} {ns}/{name}", kind.name())
}

async fn apply_one(
    api: &Api<DynamicObject>,
    ns: &str,
    entry: &Entry,
    metrics: &OperatorMetrics,
) -> Result<DynamicObject, Error> {
    let applied = api
        .patch(
            &entry.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&entry.body),
        )
        .await
        .map_err(|source| Error::Apply {
            object: object(entry.kind, ns, &entry.name),
            source,
        })?;
    metrics.applies.inc();
    Ok(applied)
}

/// Field manager that holds the Deployment's replicas for the moment the
/// operator lets go of them to a HorizontalPodAutoscaler.
pub const HPA_HANDOVER_MANAGER: &str = "quarry-operator-hpa-handover";

/// Apply a Deployment without spec.replicas (a HorizontalPodAutoscaler
/// sets them). The count must survive the operator letting go of the
/// field: server-side apply removes a field its only owner stops applying,
/// which would drop the registry to one pod. So the count is first handed
/// to another field manager at its current value (the ownership transfer
/// Kubernetes documents for moving to an HPA), and a new Deployment starts
/// at the HPA's minimum.
async fn apply_handing_over_replicas(
    api: &Api<DynamicObject>,
    ns: &str,
    entry: &Entry,
    min: i32,
    metrics: &OperatorMetrics,
) -> Result<DynamicObject, Error> {
    let name = &entry.name;
    let live = api.get_opt(name).await.map_err(|source| Error::Read {
        object: object(entry.kind, ns, name),
        source,
    })?;
    // Only the metadata (who owns spec.replicas) and the count are needed.
    let live = match live {
        Some(live) => live,
        None => {
            let mut first = entry.clone();
            first.body["spec"]["replicas"] = serde_json::json!(min);
            apply_one(api, ns, &first, metrics).await?
        }
    };
    if owns_replicas(&live.metadata) {
        let handover = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": live.data["spec"]["replicas"].as_i64().unwrap_or(i64::from(min))},
        });
        api.patch(
            name,
            &PatchParams::apply(HPA_HANDOVER_MANAGER),
            &Patch::Apply(&handover),
        )
        .await
        .map_err(|source| Error::Apply {
            object: format!(
                "{} (replicas handed to the autoscaler)",
                object(entry.kind, ns, name)
            ),
            source,
        })?;
        metrics.applies.inc();
    }
    apply_one(api, ns, entry, metrics).await
}

/// Whether the operator's apply owns the Deployment's spec.replicas.
pub fn owns_replicas(deployment: &ObjectMeta) -> bool {
    deployment.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref().unwrap_or_default().is_empty()
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some())
    })
}

/// Delete every object of a pruned kind that carries this resource's
/// labels, is controlled by it, and was not built this time.
async fn prune(
    client: &Client,
    cr: &QuarryRegistry,
    ns: &str,
    apis: &ClusterApis,
    resources: &Resources,
    metrics: &OperatorMetrics,
) -> Result<(), Error> {
    let uid = cr.uid();
    let selector = ours_selector(cr);
    for kind in ObjectKind::ALL.into_iter().filter(|k| k.pruned()) {
        let Some(ar) = kind.api_resource(apis) else {
            continue;
        };
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        let found = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::List {
                kind: kind.name(),
                source,
            })?;
        let orphans: BTreeSet<String> = found
            .items
            .iter()
            .filter(|o| controlled_by(o.owner_references(), uid.as_deref()))
            .map(ResourceExt::name_any)
            .filter(|name| !resources.contains(kind, name))
            .collect();
        for name in orphans {
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(|source| Error::Delete {
                    object: object(kind, ns, &name),
                    source,
                })?;
            metrics.deletes.inc();
            tracing::info!(object = %object(kind, ns, &name), "deleted: no longer built");
        }
    }
    Ok(())
}

/// Whether the owner references name the resource as controller.
fn controlled_by(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    uid: Option<&str>,
) -> bool {
    uid.is_some_and(|uid| {
        owners
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == uid)
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod api_calls;

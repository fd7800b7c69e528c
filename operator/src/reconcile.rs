//! The reconcile pipeline: dereference -> validate -> build -> apply ->
//! status. Only dereference, apply and status talk to the API server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{self, Desired, FIELD_MANAGER};
use crate::crd::{QuarryRegistry, QuarryRegistryStatus};
use crate::generated::{self, Existing, Generated};
use crate::metrics::OperatorMetrics;
use crate::pki;
use crate::validate::{
    self, ACCESS_KEY_ID, Bundle, FieldError, Inputs, ObjectStorageCheck, Plan, Referenced,
    SECRET_ACCESS_KEY, TlsPlan,
};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<OperatorMetrics>,
    /// Image repository of the registry; the tag is the version.
    pub image_repository: String,
    /// Version run when the resource names none.
    pub default_version: String,
    /// Optional APIs of the cluster (Routes, ServiceMonitors).
    pub apis: crate::capabilities::ApiCache,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("resource has no namespace")]
    NoNamespace,
    #[error("rendering objects: {0:#}")]
    Build(anyhow::Error),
    #[error("generating credentials or certificates: {0}")]
    Generate(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Reconcile one resource.
pub async fn reconcile(cr: Arc<QuarryRegistry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cr, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(cr: &QuarryRegistry, ctx: &Context) -> Result<Action, Error> {
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let apis = ctx.apis.get(&ctx.client).await;
    let read = dereference(cr, &ctx.client, &ns, &apis).await?;
    let plan = match validate::validate_with(
        &cr.spec,
        &read.inputs,
        &ctx.default_version,
        apis.offers(),
    ) {
        Ok(plan) => plan,
        Err(errors) => {
            // Invalid input never touches what runs: only status changes.
            write_status(cr, ctx, &ns, invalid_status(cr, &errors)).await?;
            return Ok(Action::await_change());
        }
    };
    let now = Timestamp::now().as_second();
    let mut made = generate(cr, &plan, &read.existing, read.route_host.clone(), now).await?;
    let desired = build::build(cr, &plan, &ctx.image_repository).map_err(Error::Build)?;
    apply_all(&ctx.client, &ns, &desired, &made, &ctx.metrics).await?;
    let name = build::registry_name(cr);
    let mut route_endpoint = None;
    if let Some(ar) = &apis.route {
        route_endpoint = apply_or_remove_dynamic(
            &ctx.client,
            &ns,
            ar,
            &name,
            desired.route.as_ref(),
            &ctx.metrics,
        )
        .await?
        .as_ref()
        .and_then(route_host);
    }
    // A Route host seen for the first time joins the certificate's names
    // and the pull secret's hosts.
    if route_endpoint.is_some() && route_endpoint != read.route_host {
        let existing = generated::as_existing(&made, cr);
        made = generate(cr, &plan, &existing, route_endpoint.clone(), now).await?;
        apply_generated(&ctx.client, &ns, &made, &ctx.metrics).await?;
    }
    if let Some(ar) = &apis.service_monitor {
        apply_or_remove_dynamic(
            &ctx.client,
            &ns,
            ar,
            &name,
            desired.service_monitor.as_ref(),
            &ctx.metrics,
        )
        .await?;
    }
    announce_certificates(cr, ctx, &made).await;
    let deployment: Option<Deployment> = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&build::registry_name(cr))
        .await?;
    let hpa = match &desired.hpa {
        Some(_) => {
            Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?
        }
        None => None,
    };
    let mut status = valid_status(
        cr,
        &plan,
        &desired,
        &made,
        Observed {
            deployment: deployment.as_ref(),
            hpa: hpa.as_ref(),
        },
        now,
    );
    // With a Route and no serverHostname, clients reach the Route's host.
    if plan.registry_config.server_hostname.is_none()
        && let Some(host) = route_endpoint
    {
        status.registry_url = Some(format!("{}://{host}", plan.scheme()));
        status.registry_endpoint = Some(host);
    }
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    write_status(cr, ctx, &ns, status).await?;
    // Owned-object watches wake us on rollout progress; the periodic
    // requeue is a safety net only, and comes early for a certificate
    // renewal.
    let mut after = if ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(30)
    };
    if let Some(cert) = &made.certificate {
        let until_renewal = (pki::renew_at(cert.not_after) - now).max(1);
        after = after.min(Duration::from_secs(until_renewal.unsigned_abs()));
    }
    Ok(Action::requeue(after))
}

/// `generated::generate` on a blocking thread: bcrypt hashing and key
/// generation take tens of milliseconds, which must not stall the runtime
/// (leader-election renewals, other reconciles).
async fn generate(
    cr: &QuarryRegistry,
    plan: &Plan,
    existing: &Existing,
    route_host: Option<String>,
    now: i64,
) -> Result<Generated, Error> {
    let (cr, plan, existing) = (cr.clone(), plan.clone(), existing.clone());
    tokio::task::spawn_blocking(move || {
        generated::generate(&cr, &plan, &existing, route_host.as_deref(), now)
    })
    .await
    .map_err(|e| Error::Generate(format!("the generating task failed: {e}")))?
    .map_err(Error::Generate)
}

/// Publish an Event when a certificate was (re)issued or the CA replaced.
async fn announce_certificates(cr: &QuarryRegistry, ctx: &Context, made: &Generated) {
    let mut notes = Vec::new();
    if let Some(why) = &made.new_ca_because {
        notes.push((
            "CANewlyGenerated",
            format!("a new CA replaces the stored one: {why}"),
        ));
    }
    if let Some(why) = &made.issued_because {
        let until = made
            .certificate
            .as_ref()
            .map(|c| pki::rfc3339(c.not_after))
            .unwrap_or_default();
        notes.push((
            "CertificateIssued",
            format!("serving certificate issued, valid until {until}: {why}"),
        ));
    }
    for (reason, note) in notes {
        tracing::info!(name = %cr.name_any(), namespace = ?cr.namespace(), %note, "{reason}");
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(truncate(&note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }
}

/// What dereference read.
struct Read {
    inputs: Inputs,
    existing: Existing,
    /// The host of the Route we manage, as it is now.
    route_host: Option<String>,
}

/// A Secret the resource references, or why it cannot be used.
async fn referenced(
    api: &Api<Secret>,
    name: Option<&String>,
    ns: &str,
) -> Result<Referenced, Error> {
    let Some(name) = name else {
        return Ok(Referenced::None);
    };
    Ok(match api.get_opt(name).await? {
        None => Referenced::Missing(format!("Secret {name:?} not found in namespace {ns}")),
        Some(s) => Referenced::Found(generated::secret_data(&s)),
    })
}

/// How long the operator waits for the object store when it probes it.
const OBJECT_STORAGE_PROBE: std::time::Duration = std::time::Duration::from_secs(10);

/// Read spec.objectStorage's credentials and probe the bucket with them
/// (a write and a delete), so a bucket the registry could not use is
/// refused before anything rolls out.
async fn check_object_storage(
    cr: &QuarryRegistry,
    secrets: &Api<Secret>,
    ns: &str,
) -> Result<ObjectStorageCheck, Error> {
    let Some(object) = &cr.spec.object_storage else {
        return Ok(ObjectStorageCheck::NotSet);
    };
    let name = &object.credentials_secret;
    let data = match referenced(secrets, Some(name), ns).await? {
        Referenced::Found(data) => data,
        Referenced::Missing(why) => return Ok(ObjectStorageCheck::CredentialsUnusable(why)),
        Referenced::None => return Ok(ObjectStorageCheck::NotSet),
    };
    let key = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (Some(access), Some(secret)) = (key(ACCESS_KEY_ID), key(SECRET_ACCESS_KEY)) else {
        return Ok(ObjectStorageCheck::CredentialsUnusable(format!(
            "Secret {name:?} needs the keys {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}"
        )));
    };
    let credentials_hash = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(access.as_bytes());
        h.update([0]);
        h.update(secret.as_bytes());
        hex::encode(&h.finalize()[..8])
    };
    let settings = crate::validate::s3_settings(object, Some((access, secret)));
    let result = quarry_registry::storage::probe_s3(&settings, OBJECT_STORAGE_PROBE).await;
    Ok(ObjectStorageCheck::Probed {
        result,
        credentials_hash,
    })
}

/// Read what the resource points at, and the operator's own generated
/// Secrets (kept across reconciles).
async fn dereference(
    cr: &QuarryRegistry,
    client: &Client,
    ns: &str,
    apis: &crate::capabilities::ClusterApis,
) -> Result<Read, Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let bundle = match &cr.spec.config_bundle_secret {
        None => Bundle::None,
        Some(name) => match secrets.get_opt(name).await? {
            None => Bundle::Missing(format!("Secret {name:?} not found in namespace {ns}")),
            Some(s) => match generated::secret_data(&s).get("config.yaml") {
                Some(bytes) => Bundle::Found(String::from_utf8_lossy(bytes).into_owned()),
                None => Bundle::Missing(format!("Secret {name:?} has no key config.yaml")),
            },
        },
    };
    let auth = cr.spec.auth.as_ref();
    let accounts = referenced(&secrets, auth.and_then(|a| a.accounts_secret.as_ref()), ns).await?;
    let certificate = referenced(
        &secrets,
        cr.spec
            .tls
            .as_ref()
            .and_then(|t| t.certificate_secret.as_ref()),
        ns,
    )
    .await?;
    let object_storage = check_object_storage(cr, &secrets, ns).await?;
    let own = |name: String| {
        let secrets = secrets.clone();
        async move { secrets.get_opt(&name).await }
    };
    let credentials = own(build::credentials_secret_name(cr)).await?;
    let auth_secret = own(build::auth_secret_name(cr)).await?;
    let ca = own(build::ca_secret_name(cr)).await?;
    let tls = own(build::tls_secret_name(cr)).await?;
    let existing = Existing {
        credentials: credentials.as_ref().map(generated::secret_data),
        auth: auth_secret.as_ref().map(|s| {
            (
                generated::secret_data(s),
                s.metadata.annotations.clone().unwrap_or_default(),
            )
        }),
        ca: ca.as_ref().map(generated::secret_data),
        tls: tls.as_ref().map(generated::secret_data),
    };
    let mut route_host_now = None;
    if let Some(ar) = &apis.route {
        let api = Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), ns, ar);
        route_host_now = api
            .get_opt(&build::registry_name(cr))
            .await?
            .as_ref()
            .and_then(route_host);
    }
    Ok(Read {
        inputs: Inputs {
            bundle,
            accounts,
            certificate,
            object_storage,
            now: Timestamp::now().as_second(),
        },
        existing,
        route_host: route_host_now,
    })
}

async fn apply<K>(client: &Client, ns: &str, obj: &K, metrics: &OperatorMetrics) -> Result<K, Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?;
    metrics.applies.inc();
    Ok(applied)
}

/// Apply `desired` when its component is on; when it is off, delete the
/// object of that name if it carries our managed-by label (never one we
/// did not make).
async fn apply_or_remove<K>(
    client: &Client,
    ns: &str,
    name: &str,
    desired: Option<&K>,
    metrics: &OperatorMetrics,
) -> Result<(), Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match desired {
        Some(obj) => {
            apply(client, ns, obj, metrics).await?;
        }
        None => {
            delete_if_ours(&Api::<K>::namespaced(client.clone(), ns), name).await?;
        }
    }
    Ok(())
}

/// Field manager that holds the Deployment's replicas for the moment the
/// operator lets go of them to a HorizontalPodAutoscaler.
pub const HPA_HANDOVER_MANAGER: &str = "quarry-operator-hpa-handover";

/// Whether the operator's apply owns the Deployment's spec.replicas.
fn owns_replicas(deployment: &Deployment) -> bool {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref().unwrap_or_default().is_empty()
                && m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0["f:spec"].get("f:replicas").is_some())
        })
}

/// Apply the Deployment. Without spec.replicas (a HorizontalPodAutoscaler
/// sets them) the count must survive the operator letting go of the
/// field: server-side apply removes a field its only owner stops
/// applying, which would drop the registry to one pod. So the count is
/// first handed to another field manager at its current value (the
/// ownership transfer Kubernetes documents for moving to an HPA), and a
/// new Deployment starts at the HPA's minimum.
async fn apply_deployment(
    client: &Client,
    ns: &str,
    desired: &Deployment,
    hpa_min: Option<i32>,
    metrics: &OperatorMetrics,
) -> Result<(), Error> {
    let Some(min) = hpa_min.filter(|_| desired.spec.replicas.is_none()) else {
        apply(client, ns, desired, metrics).await?;
        return Ok(());
    };
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let name = desired.metadata.name.clone().unwrap_or_default();
    let live = match api.get_opt(&name).await? {
        Some(live) => live,
        None => {
            let mut first = desired.clone();
            first.spec.replicas = Some(min);
            apply(client, ns, &first, metrics).await?
        }
    };
    if owns_replicas(&live) {
        let replicas = live.spec.replicas.unwrap_or(min);
        let handover = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas},
        });
        api.patch(
            &name,
            &PatchParams::apply(HPA_HANDOVER_MANAGER),
            &Patch::Apply(&handover),
        )
        .await?;
        metrics.applies.inc();
    }
    apply(client, ns, desired, metrics).await?;
    Ok(())
}

/// Server-side apply in dependency order. A storage component switched off
/// does not delete its PersistentVolumeClaim: data is never removed by a
/// spec change (delete the claim yourself when you mean it).
async fn apply_all(
    client: &Client,
    ns: &str,
    d: &Desired,
    made: &Generated,
    metrics: &OperatorMetrics,
) -> Result<(), Error> {
    apply::<ServiceAccount>(client, ns, &d.service_account, metrics).await?;
    apply::<Secret>(client, ns, &d.config_secret, metrics).await?;
    apply_generated(client, ns, made, metrics).await?;
    if let Some(pvc) = &d.pvc {
        apply::<PersistentVolumeClaim>(client, ns, pvc, metrics).await?;
    }
    let name = d.service.metadata.name.clone().unwrap_or_default();
    // An HPA switched off goes before the Deployment takes its replicas
    // back, so it cannot rescale in between; a new one comes after its
    // target.
    if d.hpa.is_none() {
        apply_or_remove::<HorizontalPodAutoscaler>(client, ns, &name, None, metrics).await?;
    }
    let hpa_min = d.hpa.as_ref().and_then(|h| h.spec.min_replicas);
    apply_deployment(client, ns, &d.deployment, hpa_min, metrics).await?;
    if d.hpa.is_some() {
        apply_or_remove::<HorizontalPodAutoscaler>(client, ns, &name, d.hpa.as_ref(), metrics)
            .await?;
    }
    apply_or_remove::<PodDisruptionBudget>(client, ns, &name, d.pdb.as_ref(), metrics).await?;
    apply::<Service>(client, ns, &d.service, metrics).await?;
    // A component switched off: remove what we made, only if ours.
    apply_or_remove::<Ingress>(client, ns, &name, d.ingress.as_ref(), metrics).await?;
    Ok(())
}

/// The generated Secrets and the CA ConfigMap. Their content is what
/// already exists unless something had to change, so applying them again
/// is a no-op for the API server (no new resourceVersion).
async fn apply_generated(
    client: &Client,
    ns: &str,
    made: &Generated,
    metrics: &OperatorMetrics,
) -> Result<(), Error> {
    for secret in &made.secrets {
        apply::<Secret>(client, ns, secret, metrics).await?;
    }
    if let Some(cm) = &made.ca_config_map {
        apply::<ConfigMap>(client, ns, cm, metrics).await?;
    }
    Ok(())
}

/// Delete `name` if it exists and carries our managed-by label (an object
/// someone else made under that name is left alone).
async fn delete_if_ours<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if let Some(existing) = api.get_opt(name).await?
        && existing
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some(build::MANAGED_BY)
    {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}

/// Apply an object of a type k8s-openapi does not have, or remove ours
/// when its component is switched off.
async fn apply_or_remove_dynamic(
    client: &Client,
    ns: &str,
    ar: &kube::core::ApiResource,
    name: &str,
    desired: Option<&serde_json::Value>,
    metrics: &OperatorMetrics,
) -> Result<Option<kube::core::DynamicObject>, Error> {
    let api = Api::<kube::core::DynamicObject>::namespaced_with(client.clone(), ns, ar);
    match desired {
        Some(obj) => {
            let applied = api
                .patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(obj),
                )
                .await?;
            metrics.applies.inc();
            Ok(Some(applied))
        }
        None => {
            delete_if_ours(&api, name).await?;
            Ok(None)
        }
    }
}

/// The host a Route serves: the router's admitted host, else spec.host.
fn route_host(route: &kube::core::DynamicObject) -> Option<String> {
    let admitted = route.data["status"]["ingress"][0]["host"].as_str();
    let spec = route.data["spec"]["host"].as_str();
    admitted
        .or(spec)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

fn invalid_status(cr: &QuarryRegistry, errors: &[FieldError]) -> QuarryRegistryStatus {
    let g = cr.meta().generation;
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut status = cr.status.clone().unwrap_or_default();
    status.observed_generation = g;
    upsert(
        &mut status.conditions,
        condition("ConfigValid", false, "ConfigInvalid", message, g),
    );
    upsert(
        &mut status.conditions,
        condition(
            "Progressing",
            false,
            "RolloutBlocked",
            "the resource is invalid; the registry keeps running with its last valid configuration"
                .into(),
            g,
        ),
    );
    status
}

/// The applied objects status is derived from, as the API server reports
/// them.
struct Observed<'a> {
    deployment: Option<&'a Deployment>,
    hpa: Option<&'a HorizontalPodAutoscaler>,
}

/// ComponentHpaReady: what the HorizontalPodAutoscaler controller says
/// about the HPA (True only when it can scale and computes a count from
/// the CPU metric), or that the operator sets the replicas itself.
fn hpa_condition(
    cr: &QuarryRegistry,
    plan: &Plan,
    hpa: Option<&HorizontalPodAutoscaler>,
) -> (bool, String, String) {
    let name = build::registry_name(cr);
    let Some(h) = &plan.hpa else {
        return (
            true,
            "ComponentNotManaged".into(),
            format!(
                "the hpa component is unmanaged: the operator runs {} replica(s) of Deployment {name} (spec.components[registry].overrides.replicas)",
                plan.replicas
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

fn valid_status(
    cr: &QuarryRegistry,
    plan: &Plan,
    desired: &Desired,
    made: &Generated,
    observed: Observed<'_>,
    now: i64,
) -> QuarryRegistryStatus {
    let deployment = observed.deployment;
    let g = cr.meta().generation;
    let mut status = cr.status.clone().unwrap_or_default();
    status.observed_generation = g;
    let endpoint = build::endpoint(cr, plan);
    status.registry_url = Some(format!("{}://{endpoint}", plan.scheme()));
    status.registry_endpoint = Some(endpoint);
    status.ca_config_map = made.ca_config_map_name.clone();
    status.credentials_secret = made.credentials_secret.clone();
    status.pull_secret = made.pull_secret.clone();
    let (tls_ok, tls_reason, tls_message, not_after) = match &plan.tls {
        TlsPlan::Off => (
            true,
            "ComponentNotManaged",
            "the registry serves plain HTTP (tls component unmanaged, no spec.tls.certificateSecret); terminate TLS in front of it".to_string(),
            None,
        ),
        TlsPlan::Managed => match &made.certificate {
            Some(cert) => (
                true,
                "CertificateIssued",
                format!(
                    "serving certificate in Secret {} valid until {}, renewed from {}; CA certificate in ConfigMap {}; names: {}",
                    build::tls_secret_name(cr),
                    pki::rfc3339(cert.not_after),
                    pki::rfc3339(pki::renew_at(cert.not_after)),
                    build::ca_config_map_name(cr),
                    cert.sans.join(", ")
                ),
                Some(cert.not_after),
            ),
            None => (
                false,
                "CertificateMissing",
                "no serving certificate was issued".to_string(),
                None,
            ),
        },
        TlsPlan::Provided { secret, info } => {
            let valid = info.not_after > now;
            (
                valid,
                if valid {
                    "CertificateProvided"
                } else {
                    "CertificateExpired"
                },
                format!(
                    "serving the certificate of Secret {secret} (not managed by the operator), {} {}; names: {}",
                    if valid { "valid until" } else { "expired at" },
                    pki::rfc3339(info.not_after),
                    info.sans.join(", ")
                ),
                Some(info.not_after),
            )
        }
    };
    status.certificate_not_after = not_after.map(pki::rfc3339);
    upsert(
        &mut status.conditions,
        condition("ComponentTlsReady", tls_ok, tls_reason, tls_message, g),
    );
    let (hpa_ok, hpa_reason, hpa_message) = hpa_condition(cr, plan, observed.hpa);
    upsert(
        &mut status.conditions,
        condition("ComponentHpaReady", hpa_ok, &hpa_reason, hpa_message, g),
    );
    status.components = plan.components.clone();
    status.warnings = plan.warnings.clone();
    status.config_hash = Some(desired.config_hash.clone());

    // Rolled out = the Deployment controller has seen our latest template
    // and every replica runs it and is available.
    let (rolled_out, available, detail) = match deployment {
        None => (false, false, "Deployment not found".to_string()),
        Some(d) => {
            // With a HorizontalPodAutoscaler the count it set is the goal.
            let want = match &plan.hpa {
                Some(_) => d.spec.replicas.unwrap_or(1),
                None => plan.replicas,
            };
            let s = d.status.clone().unwrap_or_default();
            let seen = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
            let updated = s.updated_replicas.unwrap_or(0);
            let avail = s.available_replicas.unwrap_or(0);
            let total = s.replicas.unwrap_or(0);
            let rolled = seen && updated == want && total == want;
            (
                rolled,
                rolled && avail >= want,
                format!("{updated}/{want} replicas updated, {avail} available"),
            )
        }
    };
    let ready = rolled_out && available;
    if ready {
        status.current_version = Some(plan.version.clone());
    }
    upsert(
        &mut status.conditions,
        condition(
            "ConfigValid",
            true,
            "ConfigValid",
            "the resource and its config bundle are valid".into(),
            g,
        ),
    );
    upsert(
        &mut status.conditions,
        condition(
            "Progressing",
            !ready,
            if ready {
                "RolloutComplete"
            } else {
                "RollingOut"
            },
            detail.clone(),
            g,
        ),
    );
    upsert(
        &mut status.conditions,
        condition(
            "ComponentRegistryReady",
            ready,
            if ready { "Available" } else { "NotAvailable" },
            detail.clone(),
            g,
        ),
    );
    upsert(
        &mut status.conditions,
        condition(
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
            g,
        ),
    );
    status
}

/// Insert or replace a condition, keeping its transition time when the
/// status did not change (so an unchanged world writes nothing).
fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Write status only when it changed, and publish an Event for each
/// condition that flipped.
async fn write_status(
    cr: &QuarryRegistry,
    ctx: &Context,
    ns: &str,
    status: QuarryRegistryStatus,
) -> Result<(), Error> {
    let old = cr.status.clone().unwrap_or_default();
    if old == status {
        return Ok(());
    }
    let api = Api::<QuarryRegistry>::namespaced(ctx.client.clone(), ns);
    // A merge patch keeps what it does not mention: fields that went away
    // (an empty warnings list, a CA no longer managed) are removed with null.
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    if let (Some(new), Ok(serde_json::Value::Object(before))) =
        (body.as_object_mut(), serde_json::to_value(&old))
    {
        for key in before.keys() {
            if !new.contains_key(key) {
                new.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
    let patch = serde_json::json!({ "status": body });
    api.patch_status(
        &cr.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.status_writes.inc();
    for c in &status.conditions {
        let before = old.conditions.iter().find(|o| o.type_ == c.type_);
        if before.map(|b| &b.status) != Some(&c.status)
            && matches!(c.type_.as_str(), "Ready" | "ConfigValid")
        {
            let event = Event {
                type_: if c.status == "True" {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: c.reason.clone(),
                note: Some(truncate(&c.message, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
                tracing::warn!(error = %e, "could not publish event");
            }
        }
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Failed reconciles are logged, counted and retried with a pause.
pub fn error_policy(cr: Arc<QuarryRegistry>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %cr.name_any(), namespace = ?cr.namespace(), error = %error, "reconcile failed");
    ctx.metrics.errors.inc();
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Bundle, Inputs, ObjectStorageCheck};
    use k8s_openapi::api::autoscaling::v2::{
        HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    fn hpa_plan() -> (QuarryRegistry, Plan) {
        let cr: QuarryRegistry = serde_norway::from_str(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec:\n  objectStorage: {bucket: quarry, credentialsSecret: s3}\n  components: [{kind: hpa, managed: true}]\n",
        )
        .unwrap();
        let inputs = Inputs {
            object_storage: ObjectStorageCheck::Probed {
                result: Ok(()),
                credentials_hash: "abc".into(),
            },
            ..Inputs::bundle(Bundle::None)
        };
        let plan = validate::validate_with(&cr.spec, &inputs, "v", Default::default()).unwrap();
        (cr, plan)
    }

    fn with_conditions(conditions: &[(&str, &str, &str)]) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            status: Some(HorizontalPodAutoscalerStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| HorizontalPodAutoscalerCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            message: Some(format!("{r} happened")),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hpa_condition_says_what_the_hpa_controller_reports() {
        let (cr, plan) = hpa_plan();
        let (ok, reason, _) = hpa_condition(&cr, &plan, None);
        assert!(!ok);
        assert_eq!(reason, "HorizontalPodAutoscalerMissing");
        let (ok, reason, _) = hpa_condition(&cr, &plan, Some(&with_conditions(&[])));
        assert_eq!((ok, reason.as_str()), (false, "NotReported"));
        let no_metrics = with_conditions(&[
            ("AbleToScale", "True", "SucceededGetScale"),
            ("ScalingActive", "False", "FailedGetResourceMetric"),
        ]);
        let (ok, reason, message) = hpa_condition(&cr, &plan, Some(&no_metrics));
        assert!(!ok);
        assert_eq!(reason, "FailedGetResourceMetric");
        assert!(
            message.contains("between 2 and 5 pods at 75% average CPU")
                && message.contains("ScalingActive=False FailedGetResourceMetric"),
            "{message}"
        );
        let scaling = with_conditions(&[
            ("AbleToScale", "True", "ReadyForNewScale"),
            ("ScalingActive", "True", "ValidMetricFound"),
        ]);
        let (ok, reason, _) = hpa_condition(&cr, &plan, Some(&scaling));
        assert_eq!((ok, reason.as_str()), (true, "Scaling"));
        let (cr, mut plan) = hpa_plan();
        plan.hpa = None;
        let (ok, reason, _) = hpa_condition(&cr, &plan, None);
        assert_eq!((ok, reason.as_str()), (true, "ComponentNotManaged"));
    }

    #[test]
    fn replicas_ownership_is_read_from_managed_fields() {
        let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let mut d = Deployment::default();
        assert!(!owns_replicas(&d));
        d.metadata.managed_fields = Some(vec![entry(
            FIELD_MANAGER,
            serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
        )]);
        assert!(owns_replicas(&d));
        d.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                serde_json::json!({"f:spec": {"f:template": {}}}),
            ),
            entry(
                HPA_HANDOVER_MANAGER,
                serde_json::json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert!(!owns_replicas(&d));
    }
}

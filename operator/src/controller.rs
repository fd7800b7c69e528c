//! Wiring: which changes wake which resource.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::crd::QuarryRegistry;
use crate::reconcile::{Context, error_policy, reconcile};

/// One controller per watched namespace, or one for all namespaces when
/// the list is empty; returns when they stop (shutdown).
pub async fn run_all(ctx: Arc<Context>, namespaces: Vec<String>) {
    if namespaces.is_empty() {
        run(ctx, None).await;
    } else {
        futures::future::join_all(namespaces.into_iter().map(|ns| run(ctx.clone(), Some(ns))))
            .await;
    }
}

/// Whether the resource points at the Secret `name`.
fn references(cr: &QuarryRegistry, name: &str) -> bool {
    let spec = &cr.spec;
    [
        spec.config_bundle_secret.as_deref(),
        spec.auth
            .as_ref()
            .and_then(|a| a.accounts_secret.as_deref()),
        spec.tls
            .as_ref()
            .and_then(|t| t.certificate_secret.as_deref()),
        spec.object_storage
            .as_ref()
            .map(|o| o.credentials_secret.as_str()),
    ]
    .contains(&Some(name))
        || spec
            .proxy_cache
            .iter()
            .any(|p| p.credentials_secret.as_deref() == Some(name))
        || spec
            .mirroring
            .iter()
            .flat_map(|m| &m.repositories)
            .any(|r| r.credentials_secret.as_deref() == Some(name))
}

/// Maps a user's object to the resources in its namespace that point at it
/// (`points_at`), for a watch.
fn referencing<K: ResourceExt>(
    store: kube::runtime::reflector::Store<QuarryRegistry>,
    points_at: fn(&QuarryRegistry, &str) -> bool,
) -> impl Fn(K) -> Vec<ObjectRef<QuarryRegistry>> {
    move |object: K| {
        let (ns, name) = (object.namespace(), object.name_any());
        store
            .state()
            .into_iter()
            .filter(|cr| cr.namespace() == ns && points_at(cr, &name))
            .map(|cr| ObjectRef::from_obj(&*cr))
            .collect()
    }
}

/// Whether the resource points at the ConfigMap `name` (an upstream CA).
fn references_config_map(cr: &QuarryRegistry, name: &str) -> bool {
    let spec = &cr.spec;
    spec.proxy_cache
        .iter()
        .any(|p| p.ca_config_map.as_deref() == Some(name))
        || spec
            .mirroring
            .iter()
            .flat_map(|m| &m.repositories)
            .any(|r| r.ca_config_map.as_deref() == Some(name))
}

/// The pause after a watch error. The controller merges its twelve
/// watches (the resources, nine owned kinds, the user's Secrets and ConfigMaps) into one
/// stream with one backoff, which pauses all of them after an error from
/// any. kube's default there, client-go's 0.8 s doubling up to 30 s (meant
/// for one watch), doubled once per watch when they all lost the API
/// server: after it was away a few seconds, each watch's failed reconnect
/// was taken in turn, each after a longer pause, and the operator saw no
/// change for about five minutes (tests/tests/operator_chaos.rs). A
/// constant half second keeps the retries to two a second in all while the
/// API server is away, and has every watch back within about six seconds
/// once it answers (each finds its resourceVersion gone, 410, and lists
/// again).
const WATCH_RETRY: Duration = Duration::from_millis(500);

struct WatchRetry;

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(WATCH_RETRY)
    }
}

impl Backoff for WatchRetry {
    fn reset(&mut self) {}
}

/// Run the controller until the stream ends (shutdown).
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let api = |c: kube::Client| -> Api<QuarryRegistry> {
        match &namespace {
            Some(ns) => Api::namespaced(c, ns),
            None => Api::all(c),
        }
    };
    fn owned<K>(client: kube::Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
    let owned_cfg =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=quarry-operator");
    let controller = Controller::new(api(client.clone()), watcher::Config::default())
        .trigger_backoff(WatchRetry);
    let store = controller.store();
    controller
        .owns(
            owned::<Deployment>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<Service>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<ServiceAccount>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<PersistentVolumeClaim>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<Ingress>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<ConfigMap>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<HorizontalPodAutoscaler>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(
            owned::<PodDisruptionBudget>(client.clone(), &namespace),
            owned_cfg.clone(),
        )
        .owns(owned::<Secret>(client.clone(), &namespace), owned_cfg)
        // The user's Secrets (config bundle, accounts, certificate) are not
        // ours: map each to the resources that reference it, so an edit is
        // reconciled within seconds.
        .watches(
            owned::<Secret>(client.clone(), &namespace),
            watcher::Config::default(),
            referencing::<Secret>(store.clone(), references),
        )
        // The same for the user's ConfigMaps (upstream CAs).
        .watches(
            owned::<ConfigMap>(client.clone(), &namespace),
            watcher::Config::default(),
            referencing::<ConfigMap>(store, references_config_map),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => {
                    tracing::debug!(name = %obj.name, namespace = ?obj.namespace, "reconciled")
                }
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

//! Components: each file here owns one part of a `QuarryRegistry` from its
//! spec field to its condition — its part of the plan and its validation
//! errors, the objects it builds, what it adds to the registry pod, its
//! condition in status, and which overrides it accepts (declared next to
//! the code that uses them).
//!
//! [`TABLE`] lists them in planning order; a row with a kind is one of
//! `spec.components`, with its default, the optional API it needs and its
//! overrides. Adding a component is one new file and one row (plus, for a
//! new kind, its variant in `crd::ComponentKind`). See docs/architecture.md.

pub mod auth;
pub mod auto_prune;
pub mod garbage_collection;
pub mod hpa;
pub mod immutable_tags;
pub mod ingress;
pub mod mirroring;
pub mod monitoring;
pub mod proxy_cache;
pub mod quotas;
pub mod registry;
pub mod route;
pub mod settings;
pub mod storage;
pub mod tls;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use crate::capabilities::Offers;
use crate::crd::{
    ComponentKind, EffectiveComponent, Overrides, QuarryRegistry, QuarryRegistrySpec,
};
use crate::generated::Generated;
use crate::plan::{Issues, Plan, PlanInput, component_path};
use crate::resources::Resources;
use crate::status::StatusDraft;

/// One component. Every step has a default that does nothing, so a
/// component implements only what it has.
pub trait Component: Sync {
    /// Its part of the plan: decisions, errors (field path + reason) and
    /// warnings. Runs in [`TABLE`] order, so a component may read what
    /// earlier rows decided.
    fn plan(&self, _input: &PlanInput<'_>, _plan: &mut Plan, _issues: &mut Issues) {}

    /// What it adds to the registry pod (volumes, mounts, args, env,
    /// pod-template annotations). Runs for every component before any
    /// `objects`.
    fn pod(&self, _cx: &BuildContext<'_>, _pod: &mut PodParts) {}

    /// The objects it makes.
    fn objects(
        &self,
        _cx: &BuildContext<'_>,
        _pod: &PodParts,
        _out: &mut Resources,
    ) -> Result<(), BuildError> {
        Ok(())
    }

    /// Its conditions and status fields, from what the cluster reports.
    fn status(&self, _cx: &StatusInput<'_>, _status: &mut StatusDraft) {}

    /// The registry config keys it set from spec fields this time, each
    /// with that field's path: a problem the registry finds in the rendered
    /// config is reported under the field, not under the key.
    fn renders(&self, _spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        Vec::new()
    }
}

/// A registry config key and the resource field it was rendered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderedKey {
    pub key: &'static str,
    pub field: &'static str,
}

/// A row of [`TABLE`].
pub struct Row {
    pub component: &'static dyn Component,
    /// `Some` when the component is a kind of `spec.components`.
    pub kind: Option<KindRow>,
}

/// A kind of `spec.components`.
pub struct KindRow {
    pub kind: ComponentKind,
    /// Whether it is managed when `spec.components` does not list it.
    pub default: Default,
    /// The optional API a managed one needs.
    pub needs: Option<OptionalApi>,
    /// The overrides it accepts; any other is refused.
    pub overrides: &'static [OverrideField],
}

/// Every component, in planning order (a row reads what rows above it
/// decided: storage before the registry's replicas, those before the hpa).
pub const TABLE: &[Row] = &[
    Row {
        component: &settings::Settings,
        kind: None,
    },
    Row {
        component: &immutable_tags::ImmutableTags,
        kind: None,
    },
    Row {
        component: &auto_prune::AutoPrune,
        kind: None,
    },
    Row {
        component: &quotas::Quotas,
        kind: None,
    },
    Row {
        component: &proxy_cache::ProxyCache,
        kind: None,
    },
    Row {
        component: &mirroring::Mirroring,
        kind: None,
    },
    Row {
        component: &garbage_collection::GarbageCollection,
        kind: None,
    },
    Row {
        component: &storage::Storage,
        kind: Some(KindRow {
            kind: ComponentKind::Storage,
            default: Default::UnlessObjectStorage,
            needs: None,
            overrides: storage::OVERRIDES,
        }),
    },
    Row {
        component: &auth::Auth,
        kind: None,
    },
    Row {
        component: &tls::Tls,
        kind: Some(KindRow {
            kind: ComponentKind::Tls,
            default: Default::UnlessCertificateSecret,
            needs: None,
            overrides: tls::OVERRIDES,
        }),
    },
    Row {
        component: &registry::Registry,
        kind: Some(KindRow {
            kind: ComponentKind::Registry,
            default: Default::Required,
            needs: None,
            overrides: registry::OVERRIDES,
        }),
    },
    Row {
        component: &hpa::Hpa,
        kind: Some(KindRow {
            kind: ComponentKind::Hpa,
            default: Default::Never,
            needs: None,
            overrides: hpa::OVERRIDES,
        }),
    },
    Row {
        component: &route::Route,
        kind: Some(KindRow {
            kind: ComponentKind::Route,
            default: Default::WhereServed,
            needs: Some(OptionalApi::Route),
            overrides: route::OVERRIDES,
        }),
    },
    Row {
        component: &ingress::Ingress,
        kind: Some(KindRow {
            kind: ComponentKind::Ingress,
            default: Default::Never,
            needs: None,
            overrides: ingress::OVERRIDES,
        }),
    },
    Row {
        component: &monitoring::Monitoring,
        kind: Some(KindRow {
            kind: ComponentKind::Monitoring,
            default: Default::WhereServed,
            needs: Some(OptionalApi::ServiceMonitor),
            overrides: monitoring::OVERRIDES,
        }),
    },
];

/// Whether a kind is managed when `spec.components` does not list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// Always managed; listing it as unmanaged is refused.
    Required,
    /// Only when listed.
    Never,
    /// Unless spec.objectStorage is set.
    UnlessObjectStorage,
    /// Unless spec.tls.certificateSecret is set.
    UnlessCertificateSecret,
    /// Where the cluster serves the API it needs.
    WhereServed,
}

/// APIs a component may need that not every cluster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionalApi {
    Route,
    ServiceMonitor,
}

impl OptionalApi {
    pub fn offered(self, offers: Offers) -> bool {
        match self {
            OptionalApi::Route => offers.routes,
            OptionalApi::ServiceMonitor => offers.service_monitors,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            OptionalApi::Route => "route.openshift.io/v1 Route",
            OptionalApi::ServiceMonitor => "monitoring.coreos.com/v1 ServiceMonitor",
        }
    }
}

/// The fields of `crd::Overrides`, so each component can say which it
/// accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideField {
    Replicas,
    MinReplicas,
    MaxReplicas,
    TargetCpuUtilizationPercentage,
    Resources,
    Env,
    NodeSelector,
    Tolerations,
    Labels,
    Annotations,
    VolumeSize,
    StorageClassName,
}

impl OverrideField {
    pub const ALL: [OverrideField; 12] = [
        OverrideField::Replicas,
        OverrideField::MinReplicas,
        OverrideField::MaxReplicas,
        OverrideField::TargetCpuUtilizationPercentage,
        OverrideField::Resources,
        OverrideField::Env,
        OverrideField::NodeSelector,
        OverrideField::Tolerations,
        OverrideField::Labels,
        OverrideField::Annotations,
        OverrideField::VolumeSize,
        OverrideField::StorageClassName,
    ];

    /// The field's name in the resource.
    pub fn name(self) -> &'static str {
        match self {
            OverrideField::Replicas => "replicas",
            OverrideField::MinReplicas => "minReplicas",
            OverrideField::MaxReplicas => "maxReplicas",
            OverrideField::TargetCpuUtilizationPercentage => "targetCPUUtilizationPercentage",
            OverrideField::Resources => "resources",
            OverrideField::Env => "env",
            OverrideField::NodeSelector => "nodeSelector",
            OverrideField::Tolerations => "tolerations",
            OverrideField::Labels => "labels",
            OverrideField::Annotations => "annotations",
            OverrideField::VolumeSize => "volumeSize",
            OverrideField::StorageClassName => "storageClassName",
        }
    }

    pub fn is_set(self, o: &Overrides) -> bool {
        match self {
            OverrideField::Replicas => o.replicas.is_some(),
            OverrideField::MinReplicas => o.min_replicas.is_some(),
            OverrideField::MaxReplicas => o.max_replicas.is_some(),
            OverrideField::TargetCpuUtilizationPercentage => {
                o.target_cpu_utilization_percentage.is_some()
            }
            OverrideField::Resources => o.resources.is_some(),
            OverrideField::Env => !o.env.is_empty(),
            OverrideField::NodeSelector => o.node_selector.is_some(),
            OverrideField::Tolerations => !o.tolerations.is_empty(),
            OverrideField::Labels => o.labels.is_some(),
            OverrideField::Annotations => o.annotations.is_some(),
            OverrideField::VolumeSize => o.volume_size.is_some(),
            OverrideField::StorageClassName => o.storage_class_name.is_some(),
        }
    }
}

/// The labels and annotations every component accepts for its objects.
pub const METADATA_OVERRIDES: &[OverrideField] =
    &[OverrideField::Labels, OverrideField::Annotations];

/// The row of a kind.
pub fn kind_row(kind: ComponentKind) -> Option<&'static KindRow> {
    TABLE
        .iter()
        .filter_map(|r| r.kind.as_ref())
        .find(|k| k.kind == kind)
}

/// `spec.components` with the defaults filled in: every kind's state (for
/// status) and the overrides of the managed ones. Problems with the list
/// itself (a kind twice, a missing API, a misplaced override) go to
/// `issues`.
pub fn effective(
    spec: &QuarryRegistrySpec,
    offers: Offers,
    issues: &mut Issues,
) -> (Vec<EffectiveComponent>, BTreeMap<ComponentKind, Overrides>) {
    let mut listed: BTreeMap<ComponentKind, (usize, bool, Overrides)> = BTreeMap::new();
    for (i, c) in spec.components.iter().enumerate() {
        let path = component_path(c.kind);
        if let Some((first, _, _)) = listed.get(&c.kind) {
            issues.error(
                path,
                format!("is listed twice (entries {first} and {i} of spec.components)"),
            );
            continue;
        }
        let overrides = c.overrides.clone().unwrap_or_default();
        match kind_row(c.kind) {
            None => issues.error(
                format!("{path}.kind"),
                "is not supported by this operator version",
            ),
            Some(row) => check_listed(row, c.managed, &overrides, offers, issues),
        }
        listed.insert(c.kind, (i, c.managed, overrides));
    }
    let mut states = Vec::new();
    let mut managed = BTreeMap::new();
    for row in TABLE.iter().filter_map(|r| r.kind.as_ref()) {
        let (on, source, overrides) = match listed.remove(&row.kind) {
            Some((_, on, overrides)) => (on, "spec", overrides),
            None => (
                default_managed(row, spec, offers),
                "default",
                Overrides::default(),
            ),
        };
        if on {
            managed.insert(row.kind, overrides);
        }
        states.push(EffectiveComponent {
            kind: row.kind,
            managed: on,
            source: source.into(),
        });
    }
    states.sort_by_key(|c| c.kind);
    (states, managed)
}

fn default_managed(row: &KindRow, spec: &QuarryRegistrySpec, offers: Offers) -> bool {
    match row.default {
        Default::Required => true,
        Default::Never => false,
        Default::UnlessObjectStorage => spec.object_storage.is_none(),
        Default::UnlessCertificateSecret => spec
            .tls
            .as_ref()
            .and_then(|t| t.certificate_secret.as_ref())
            .is_none(),
        Default::WhereServed => row.needs.is_none_or(|api| api.offered(offers)),
    }
}

/// A listed component against its row: required, API served, overrides
/// it accepts.
fn check_listed(
    row: &KindRow,
    managed: bool,
    overrides: &Overrides,
    offers: Offers,
    issues: &mut Issues,
) {
    let path = component_path(row.kind);
    let name = row.kind.name();
    if row.default == Default::Required && !managed {
        issues.error(
            format!("{path}.managed"),
            format!("the {name} component is always managed"),
        );
    }
    if let Some(api) = row.needs
        && managed
        && !api.offered(offers)
    {
        issues.error(
            format!("{path}.managed"),
            format!(
                "managed component {name} needs the {} API, which this cluster does not serve",
                api.describe()
            ),
        );
    }
    let mut accepted = Vec::new();
    for field in OverrideField::ALL.iter().filter(|f| f.is_set(overrides)) {
        if row.overrides.contains(field) {
            accepted.push(field.name());
        } else {
            issues.error(
                format!("{path}.overrides.{}", field.name()),
                format!("does not apply to the {name} component"),
            );
        }
    }
    if !managed && !accepted.is_empty() {
        issues.warn(format!(
            "{path}.overrides ({}) are not applied: the {name} component is unmanaged",
            accepted.join(", ")
        ));
    }
}

/// What the build steps read.
pub struct BuildContext<'a> {
    pub cr: &'a QuarryRegistry,
    pub plan: &'a Plan,
    /// `<repository>:<version>`.
    pub image: String,
    /// The rendered config.yaml and its hash (which rolls the pods).
    pub config_yaml: String,
    pub config_hash: String,
    /// The generated Secrets and CA, decided before the build.
    pub generated: &'a Generated,
}

/// What components add to the registry pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodParts {
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    /// Annotations of the pod template (a change rolls the pods).
    pub annotations: BTreeMap<String, String>,
}

/// What the status steps read: the plan and what the cluster reports.
pub struct StatusInput<'a> {
    pub cr: &'a QuarryRegistry,
    pub plan: &'a Plan,
    pub generated: &'a Generated,
    pub deployment: Option<&'a Deployment>,
    pub hpa: Option<&'a HorizontalPodAutoscaler>,
    /// The host the managed Route serves, when the router reported one.
    pub route_host: Option<&'a str>,
    /// What the registry pods' garbage-collection journals say, when one
    /// was read (gc_report.rs).
    pub gc_health: Option<&'a crate::registry_pods::Health>,
    /// The mirrors' last syncs, when a pod told them (mirror_report.rs).
    pub mirrors: Option<&'a crate::mirror_report::MirrorReport>,
    /// Unix seconds.
    pub now: i64,
}

/// A build step that failed: which object could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("rendering {object}: {reason}")]
pub struct BuildError {
    pub object: String,
    pub reason: String,
}

#[cfg(test)]
mod tests;

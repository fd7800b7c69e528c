//! The plan: a resource and what it references, turned into one typed
//! decision or a list of precise errors (field path + reason). Pure: no
//! API calls, so every rule is unit-tested from YAML fixtures. Each
//! component adds its part (see `components`); this file holds the shared
//! types and runs them in order.

use std::collections::{BTreeMap, BTreeSet};

use quarry_registry::config::RegistryConfig;

use crate::capabilities::Offers;
use crate::components::{self, auth::AuthPlan, hpa::HpaPlan, storage::StoragePlan, tls::TlsPlan};
use crate::crd::{ComponentKind, EffectiveComponent, Overrides, QuarryRegistrySpec};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// What planning found: errors refuse the resource, warnings go to status.
#[derive(Debug, Default)]
pub struct Issues {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Issues {
    pub fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }
}

/// The field path of a listed component: `spec.components[<kind>]`, the
/// one path style every message uses.
pub fn component_path(kind: ComponentKind) -> String {
    format!("spec.components[{}]", kind.name())
}

/// A Secret the resource points at, as dereference found it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Referenced {
    /// Not referenced.
    #[default]
    None,
    /// Found: its data (data and stringData merged).
    Found(BTreeMap<String, Vec<u8>>),
    /// Referenced but missing: why.
    Missing(String),
}

/// The bundle Secret's `config.yaml`, as dereference found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bundle {
    /// No bundle referenced.
    None,
    /// Referenced and read.
    Found(String),
    /// Referenced, but the Secret or its key is missing.
    Missing(String),
}

/// What dereference learned about spec.objectStorage.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ObjectStorageCheck {
    /// spec.objectStorage is not set.
    #[default]
    NotSet,
    /// The credentials Secret is missing or incomplete: why.
    CredentialsUnusable(String),
    /// The bucket was probed (a write and a delete) with the credentials.
    Probed {
        result: Result<(), String>,
        /// Hash of the credentials, so a change rolls the pods.
        credentials_hash: String,
    },
}

/// What an upstream entry's references gave: the account to log in with
/// and the CA to trust.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamAccess {
    /// The username and password from the credentials Secret.
    pub credentials: Option<(String, String)>,
    /// PEM certificates from the CA ConfigMap.
    pub ca: Option<String>,
}

/// What dereference learned about one spec.proxyCache or
/// spec.mirroring.repositories entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamCheck {
    pub access: UpstreamAccess,
    /// A referenced Secret or ConfigMap is missing or incomplete: the
    /// entry's field (`credentialsSecret`, `caConfigMap`) and why.
    pub reference_problem: Option<(&'static str, String)>,
    /// The login at the upstream (`GET /v2/`, with the token flow).
    pub result: Result<(), String>,
}

/// Everything the resource points at, read by dereference.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub bundle: Bundle,
    /// spec.auth.accountsSecret.
    pub accounts: Referenced,
    /// spec.tls.certificateSecret.
    pub certificate: Referenced,
    /// spec.objectStorage: its credentials and the probe of the bucket.
    pub object_storage: ObjectStorageCheck,
    /// spec.proxyCache, entry by entry: the credentials read and the login
    /// at the upstream.
    pub proxy_cache: Vec<UpstreamCheck>,
    /// spec.mirroring.repositories, entry by entry, the same way.
    pub mirrors: Vec<UpstreamCheck>,
    /// Unix seconds now (to judge certificate expiry).
    pub now: i64,
}

impl Inputs {
    /// Only a bundle (nothing else referenced).
    pub fn bundle(bundle: Bundle) -> Inputs {
        Inputs {
            bundle,
            accounts: Referenced::None,
            certificate: Referenced::None,
            object_storage: ObjectStorageCheck::NotSet,
            proxy_cache: Vec::new(),
            mirrors: Vec::new(),
            now: 0,
        }
    }

    /// Whether a probe of something outside the cluster's API (the bucket,
    /// an upstream) failed: that can heal without any change we would be
    /// told about, so it is retried on a timer.
    pub fn probe_failed(&self) -> bool {
        let bucket = matches!(
            self.object_storage,
            ObjectStorageCheck::Probed { result: Err(_), .. }
        );
        let mut upstreams = self.proxy_cache.iter().chain(&self.mirrors);
        bucket || upstreams.any(|c| c.result.is_err())
    }
}

/// What every component's planning step reads.
pub struct PlanInput<'a> {
    pub spec: &'a QuarryRegistrySpec,
    pub inputs: &'a Inputs,
    pub offers: Offers,
}

/// Everything the build needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub registry_config: RegistryConfig,
    pub version: String,
    /// The components in effect, defaults included (status.components).
    pub components: Vec<EffectiveComponent>,
    /// The overrides of each managed component (empty when none listed).
    pub overrides: BTreeMap<ComponentKind, Overrides>,
    pub warnings: Vec<String>,
    /// Registry pods the operator runs (an HPA, when managed, decides).
    pub replicas: i32,
    /// Where the data lives.
    pub storage: StoragePlan,
    /// Who may use the registry.
    pub auth: AuthPlan,
    /// How the registry's port is secured.
    pub tls: TlsPlan,
    /// `Some` when a HorizontalPodAutoscaler is managed: it, not the
    /// operator, sets the Deployment's replicas.
    pub hpa: Option<HpaPlan>,
    /// The group the pod's volumes are made writable for (`fsGroup`):
    /// the image's user 65532 on Kubernetes. `None` on OpenShift, whose
    /// restricted SCC assigns the namespace's own group and refuses any
    /// other.
    pub volume_group: Option<i64>,
    /// Top-level keys the config bundle set (for "overrides the bundle"
    /// warnings).
    pub bundle_keys: BTreeSet<String>,
}

impl Plan {
    /// Whether the component is managed.
    pub fn managed(&self, kind: ComponentKind) -> bool {
        self.overrides.contains_key(&kind)
    }

    /// The overrides of a managed component; `None` when it is unmanaged.
    pub fn overrides(&self, kind: ComponentKind) -> Option<&Overrides> {
        self.overrides.get(&kind)
    }

    /// Whether the config bundle set this top-level key.
    pub fn from_bundle(&self, key: &str) -> bool {
        self.bundle_keys.contains(key)
    }

    /// Whether more than one registry pod can run (then a
    /// PodDisruptionBudget keeps evictions to one pod at a time).
    pub fn several_pods(&self) -> bool {
        self.replicas > 1 || self.hpa.is_some()
    }

    /// The scheme clients use to reach the registry.
    pub fn scheme(&self) -> &'static str {
        if self.tls.serves_https() || self.managed(ComponentKind::Route) {
            "https"
        } else {
            "http"
        }
    }

    /// Where clients reach the registry inside the cluster.
    pub fn endpoint(&self, cr: &crate::crd::QuarryRegistry) -> String {
        match &self.registry_config.server_hostname {
            Some(host) => host.clone(),
            None => crate::names::service_host(cr),
        }
    }
}

/// `plan_with` for a resource that references nothing but (maybe) a
/// bundle.
pub fn plan(
    spec: &QuarryRegistrySpec,
    bundle: &Bundle,
    default_version: &str,
    offers: Offers,
) -> Result<Plan, Vec<FieldError>> {
    plan_with(
        spec,
        &Inputs::bundle(bundle.clone()),
        default_version,
        offers,
    )
}

/// The resource and what it references -> a plan, or every problem.
pub fn plan_with(
    spec: &QuarryRegistrySpec,
    inputs: &Inputs,
    default_version: &str,
    offers: Offers,
) -> Result<Plan, Vec<FieldError>> {
    let mut issues = Issues::default();
    let input = PlanInput {
        spec,
        inputs,
        offers,
    };
    let (components, overrides) = components::effective(spec, offers, &mut issues);
    let mut plan = Plan {
        registry_config: RegistryConfig::default(),
        version: spec
            .version
            .clone()
            .unwrap_or_else(|| default_version.to_string()),
        components,
        overrides,
        warnings: Vec::new(),
        replicas: 1,
        storage: StoragePlan::EmptyDir,
        auth: AuthPlan::Off,
        tls: TlsPlan::Off,
        hpa: None,
        volume_group: None,
        bundle_keys: BTreeSet::new(),
    };
    for row in components::TABLE {
        row.component.plan(&input, &mut plan, &mut issues);
    }
    components::settings::check_rendered(&input, &plan, &mut issues);
    if issues.errors.is_empty() {
        plan.warnings = issues.warnings;
        Ok(plan)
    } else {
        Err(issues.errors)
    }
}

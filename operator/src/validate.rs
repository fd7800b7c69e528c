//! validate: the resource and the bundle it points at, turned into one
//! typed plan or a list of precise errors (field path + reason). Pure: no
//! API calls, so every rule is unit-tested from YAML fixtures.

use std::collections::BTreeMap;

use quarry_registry::config::{RegistryConfig, StorageLocation, is_media_type};

use quarry_registry::auth::accounts::{ACCOUNTS_FILE_KEY, AccountsFile};

use crate::capabilities::Offers;
use crate::crd::{ComponentKind, EffectiveComponent, Overrides, QuarryRegistrySpec};
use crate::credentials::TOKEN_KEY;
use crate::pki::{self, CertInfo};

/// Where registry data lives inside the pod.
pub const DATA_DIR: &str = "/var/lib/quarry";
/// Where the config Secret is mounted.
pub const CONFIG_DIR: &str = "/etc/quarry/config";
/// Where the auth Secret (accounts file, token key) is mounted.
pub const AUTH_DIR: &str = "/etc/quarry/auth";
/// Where the serving certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/quarry/tls";

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

/// Everything `build` needs, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub registry_config: RegistryConfig,
    pub replicas: i32,
    pub registry_overrides: Overrides,
    /// `Some` when storage is managed (a PVC): its overrides.
    pub storage: Option<Overrides>,
    /// `Some` when the data lives in spec.objectStorage.
    pub object_storage: Option<ObjectStoragePlan>,
    /// `Some` when an Ingress is managed: its overrides.
    pub ingress: Option<Overrides>,
    /// `Some` when a Route is managed.
    pub route: Option<Overrides>,
    /// `Some` when a ServiceMonitor is managed.
    pub monitoring: Option<Overrides>,
    /// `Some` when a HorizontalPodAutoscaler is managed: it, not the
    /// operator, sets the Deployment's replicas.
    pub hpa: Option<HpaPlan>,
    pub components: Vec<EffectiveComponent>,
    pub warnings: Vec<String>,
    pub version: String,
    /// Who may use the registry.
    pub auth: AuthPlan,
    /// How the registry's port is secured.
    pub tls: TlsPlan,
    /// The group the pod's volumes are made writable for (`fsGroup`):
    /// the image's user 65532 on Kubernetes. `None` on OpenShift, whose
    /// restricted SCC assigns the namespace's own group and refuses any
    /// other.
    pub volume_group: Option<i64>,
}

/// The user and group of the registry image (Containerfile `USER`).
pub const IMAGE_GROUP: i64 = 65532;

/// Where the registry's accounts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthPlan {
    /// spec.auth.enabled is false: no login.
    Off,
    /// The operator's generated admin and robot accounts.
    Generated,
    /// The user's accounts Secret, checked: its name and accounts.yaml.
    FromSecret { name: String, text: String },
}

/// How the registry's port is secured.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsPlan {
    /// Plain HTTP (TLS, if any, terminates in front of the registry).
    Off,
    /// The operator's CA and serving certificate.
    Managed,
    /// The user's kubernetes.io/tls Secret, mounted as it is.
    Provided { secret: String, info: CertInfo },
}

impl TlsPlan {
    /// Whether the registry itself serves HTTPS.
    pub fn serves_https(&self) -> bool {
        !matches!(self, TlsPlan::Off)
    }
}

/// The HorizontalPodAutoscaler of the registry Deployment, bounds checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaPlan {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_cpu_utilization_percentage: i32,
    /// Extra labels and annotations of the HorizontalPodAutoscaler.
    pub overrides: Overrides,
}

/// The HorizontalPodAutoscaler's CPU target when none is given.
pub const DEFAULT_TARGET_CPU_UTILIZATION: i32 = 75;
/// minReplicas when neither it nor the registry's replicas is given.
pub const DEFAULT_HPA_MIN_REPLICAS: i32 = 2;
/// maxReplicas when none is given (or minReplicas, when larger).
pub const DEFAULT_HPA_MAX_REPLICAS: i32 = 5;

impl Plan {
    /// Whether more than one registry pod can run (then a
    /// PodDisruptionBudget keeps evictions to one pod at a time).
    pub fn several_pods(&self) -> bool {
        self.replicas > 1 || self.hpa.is_some()
    }

    /// The scheme clients use to reach the registry.
    pub fn scheme(&self) -> &'static str {
        if self.tls.serves_https() || self.route.is_some() {
            "https"
        } else {
            "http"
        }
    }
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
            now: 0,
        }
    }
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

/// The keys of spec.objectStorage.credentialsSecret.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// Object storage as the registry pods use it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStoragePlan {
    pub credentials_secret: String,
    pub credentials_hash: String,
}

/// The registry's S3 settings for spec.objectStorage (keys given for the
/// operator's probe; the pods read them from their environment).
pub fn s3_settings(
    spec: &crate::crd::ObjectStorage,
    keys: Option<(String, String)>,
) -> quarry_registry::storage::settings::S3Settings {
    let (access_key, secret_key) = keys.unzip();
    quarry_registry::storage::settings::S3Settings {
        endpoint: spec
            .endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string()),
        bucket: spec.bucket.clone(),
        region: spec.region.clone().unwrap_or_else(|| "us-east-1".into()),
        prefix: object_prefix(spec),
        access_key,
        secret_key,
        path_style: spec.path_style.unwrap_or(spec.endpoint.is_some()),
    }
}

fn object_prefix(spec: &crate::crd::ObjectStorage) -> String {
    spec.prefix
        .clone()
        .unwrap_or_else(|| "registry".into())
        .trim_matches('/')
        .to_string()
}

/// spec.objectStorage in Quay's `S3Storage` shape, for config.yaml.
fn s3_location(spec: &crate::crd::ObjectStorage) -> StorageLocation {
    let mut params = BTreeMap::from([
        ("s3_bucket".to_string(), serde_json::json!(spec.bucket)),
        (
            "storage_path".to_string(),
            serde_json::json!(object_prefix(spec)),
        ),
        (
            "s3_region".to_string(),
            serde_json::json!(spec.region.clone().unwrap_or_else(|| "us-east-1".into())),
        ),
        (
            "path_style".to_string(),
            serde_json::json!(spec.path_style.unwrap_or(spec.endpoint.is_some())),
        ),
    ]);
    if let Some(endpoint) = &spec.endpoint {
        params.insert(
            "host".to_string(),
            serde_json::json!(endpoint.trim_end_matches('/')),
        );
    }
    StorageLocation("S3Storage".into(), params)
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

/// Kinds this version of the operator can run.
const SUPPORTED: &[ComponentKind] = &[
    ComponentKind::Registry,
    ComponentKind::Storage,
    ComponentKind::Tls,
    ComponentKind::Ingress,
    ComponentKind::Route,
    ComponentKind::Hpa,
    ComponentKind::Monitoring,
];

/// `validate_with` for a resource that references nothing but (maybe) a
/// bundle.
pub fn validate(
    spec: &QuarryRegistrySpec,
    bundle: &Bundle,
    default_version: &str,
    offers: Offers,
) -> Result<Plan, Vec<FieldError>> {
    validate_with(
        spec,
        &Inputs::bundle(bundle.clone()),
        default_version,
        offers,
    )
}

/// The resource and what it references -> a plan, or every problem.
pub fn validate_with(
    spec: &QuarryRegistrySpec,
    inputs: &Inputs,
    default_version: &str,
    offers: Offers,
) -> Result<Plan, Vec<FieldError>> {
    let bundle = &inputs.bundle;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut err = |path: &str, reason: String| {
        errors.push(FieldError {
            path: path.to_string(),
            reason,
        })
    };

    // Bundle first: typed fields are applied over it.
    let mut bundle_keys: Vec<String> = Vec::new();
    let mut config = match bundle {
        Bundle::None => RegistryConfig::default(),
        Bundle::Missing(why) => {
            err("spec.configBundleSecret", why.clone());
            RegistryConfig::default()
        }
        Bundle::Found(text) => match RegistryConfig::from_yaml(text, Some("config.yaml")) {
            Ok(loaded) => {
                for key in &loaded.unknown_keys {
                    warnings.push(format!("bundle key {key} is not a Quarry setting; ignored"));
                }
                if let Ok(serde_json::Value::Object(map)) =
                    serde_norway::from_str::<serde_json::Value>(text)
                {
                    bundle_keys = map.keys().cloned().collect();
                }
                loaded.config
            }
            Err(e) => {
                for issue in e.issues {
                    err(
                        &format!("spec.configBundleSecret[config.yaml].{}", issue.key),
                        issue.reason,
                    );
                }
                RegistryConfig::default()
            }
        },
    };
    let from_bundle = |key: &str| bundle_keys.iter().any(|k| k == key);
    if from_bundle("DISTRIBUTED_STORAGE_CONFIG") || from_bundle("DISTRIBUTED_STORAGE_PREFERENCE") {
        warnings.push(
            "bundle storage settings are ignored: storage comes from the storage component or spec.objectStorage".into(),
        );
    }

    // Typed fields win; a differing bundle value is reported.
    let mut typed = |key: &str, field: &str, value: Option<bool>, slot: &mut bool| {
        if let Some(v) = value {
            if from_bundle(key) && *slot != v {
                warnings.push(format!(
                    "{field}={v} overrides {key}={} from the config bundle",
                    *slot
                ));
            }
            *slot = v;
        }
    };
    let features = spec.features.clone().unwrap_or_default();
    typed(
        "FEATURE_GENERAL_OCI_SUPPORT",
        "spec.features.ociArtifacts",
        features.oci_artifacts,
        &mut config.feature_general_oci_support,
    );
    typed(
        "FEATURE_HELM_OCI_SUPPORT",
        "spec.features.helm",
        features.helm,
        &mut config.feature_helm_oci_support,
    );
    typed(
        "FEATURE_REFERRERS_API",
        "spec.features.referrers",
        features.referrers,
        &mut config.feature_referrers_api,
    );
    if let Some(types) = &spec.allowed_artifact_types {
        if from_bundle("ALLOWED_OCI_ARTIFACT_TYPES")
            && config.allowed_oci_artifact_types.as_ref() != Some(types)
        {
            warnings.push(
                "spec.allowedArtifactTypes overrides ALLOWED_OCI_ARTIFACT_TYPES from the config bundle"
                    .into(),
            );
        }
        for (artifact_type, layers) in types {
            let path = format!("spec.allowedArtifactTypes[{artifact_type}]");
            if !is_media_type(artifact_type) {
                err(
                    &path,
                    format!("{artifact_type:?} is not a media type (type/subtype)"),
                );
            }
            for (i, layer) in layers.iter().enumerate() {
                if !is_media_type(layer) {
                    err(
                        &format!("{path}[{i}]"),
                        format!("{layer:?} is not a media type (type/subtype)"),
                    );
                }
            }
        }
        config.allowed_oci_artifact_types = Some(types.clone());
    }
    if let Some(host) = &spec.server_hostname {
        config.server_hostname = Some(host.clone());
    }
    match &spec.object_storage {
        Some(object) => {
            config.distributed_storage_config =
                BTreeMap::from([("s3".to_string(), s3_location(object))]);
            config.distributed_storage_preference = vec!["s3".into()];
        }
        None => config.set_local_storage_path(std::path::Path::new(DATA_DIR)),
    }

    // Authentication: files in the pod come from spec.auth, never the bundle.
    let auth_spec = spec.auth.clone().unwrap_or_default();
    let auth_enabled = auth_spec.enabled.unwrap_or(true);
    if from_bundle("AUTH_ACCOUNTS_FILE") || from_bundle("AUTH_TOKEN_KEY_FILE") {
        warnings.push(
            "bundle AUTH_ACCOUNTS_FILE/AUTH_TOKEN_KEY_FILE are ignored: accounts come from spec.auth"
                .into(),
        );
    }
    config.auth_accounts_file = None;
    config.auth_token_key_file = None;
    if let Some(namespaces) = &auth_spec.anonymous_pull {
        if from_bundle("ANONYMOUS_PULL_NAMESPACES")
            && &config.anonymous_pull_namespaces != namespaces
        {
            warnings.push(
                "spec.auth.anonymousPull overrides ANONYMOUS_PULL_NAMESPACES from the config bundle"
                    .into(),
            );
        }
        config.anonymous_pull_namespaces = namespaces.clone();
    }
    let auth = if auth_enabled {
        config.auth_accounts_file = Some(format!("{AUTH_DIR}/{ACCOUNTS_FILE_KEY}"));
        config.auth_token_key_file = Some(format!("{AUTH_DIR}/{TOKEN_KEY}"));
        match (&auth_spec.accounts_secret, &inputs.accounts) {
            (None, _) => AuthPlan::Generated,
            (Some(name), Referenced::Found(data)) => match data.get(ACCOUNTS_FILE_KEY) {
                None => {
                    err(
                        "spec.auth.accountsSecret",
                        format!("Secret {name:?} has no key {ACCOUNTS_FILE_KEY}"),
                    );
                    AuthPlan::Generated
                }
                Some(bytes) => {
                    let text = String::from_utf8_lossy(bytes).into_owned();
                    match AccountsFile::from_yaml(&text) {
                        Ok(file) => {
                            if file.accounts.is_empty() {
                                warnings.push(format!(
                                    "Secret {name:?} lists no accounts: nobody can log in"
                                ));
                            }
                        }
                        Err(problems) => {
                            for problem in problems {
                                err(
                                    &format!("spec.auth.accountsSecret[{ACCOUNTS_FILE_KEY}]"),
                                    problem,
                                );
                            }
                        }
                    }
                    AuthPlan::FromSecret {
                        name: name.clone(),
                        text,
                    }
                }
            },
            (Some(_), Referenced::Missing(why)) => {
                err("spec.auth.accountsSecret", why.clone());
                AuthPlan::Generated
            }
            (Some(name), Referenced::None) => {
                err(
                    "spec.auth.accountsSecret",
                    format!("Secret {name:?} was not read"),
                );
                AuthPlan::Generated
            }
        }
    } else {
        if auth_spec.accounts_secret.is_some() {
            warnings
                .push("spec.auth.accountsSecret is not used: spec.auth.enabled is false".into());
        }
        AuthPlan::Off
    };
    let anonymous_path = |i: &str| {
        if auth_spec.anonymous_pull.is_some() {
            format!("spec.auth.anonymousPull[{i}]")
        } else {
            format!("spec.configBundleSecret[config.yaml].ANONYMOUS_PULL_NAMESPACES[{i}]")
        }
    };
    for issue in config.validate() {
        match issue
            .key
            .strip_prefix("ANONYMOUS_PULL_NAMESPACES[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            Some(i) => err(&anonymous_path(i), issue.reason),
            None => err(&format!("registry config {}", issue.key), issue.reason),
        }
    }

    // Components.
    let certificate_secret = spec.tls.as_ref().and_then(|t| t.certificate_secret.clone());
    let mut listed: BTreeMap<ComponentKind, (bool, Overrides)> = BTreeMap::new();
    for (i, c) in spec.components.iter().enumerate() {
        let path = format!("spec.components[{i}]");
        if listed.contains_key(&c.kind) {
            err(
                &path,
                format!("component {} is listed twice", c.kind.name()),
            );
            continue;
        }
        if !SUPPORTED.contains(&c.kind) && c.managed {
            err(
                &format!("{path}.kind"),
                format!(
                    "managed component {} is not supported by this operator version (supported: registry, storage, tls, ingress, route, hpa, monitoring)",
                    c.kind.name()
                ),
            );
        }
        let missing_api = match c.kind {
            ComponentKind::Route if !offers.routes => Some("route.openshift.io/v1 Route"),
            ComponentKind::Monitoring if !offers.service_monitors => {
                Some("monitoring.coreos.com/v1 ServiceMonitor")
            }
            _ => None,
        };
        if let Some(api) = missing_api
            && c.managed
        {
            err(
                &format!("{path}.kind"),
                format!(
                    "managed component {} needs the {api} API, which this cluster does not serve",
                    c.kind.name()
                ),
            );
        }
        if c.kind == ComponentKind::Registry && !c.managed {
            err(
                &format!("{path}.managed"),
                "the registry component is always managed".into(),
            );
        }
        let overrides = c.overrides.clone().unwrap_or_default();
        check_overrides(c.kind, &overrides, &format!("{path}.overrides"), &mut err);
        listed.insert(c.kind, (c.managed, overrides));
    }
    let mut components = Vec::new();
    for kind in [
        ComponentKind::Registry,
        ComponentKind::Storage,
        ComponentKind::Tls,
        ComponentKind::Route,
        ComponentKind::Ingress,
        ComponentKind::Hpa,
        ComponentKind::Monitoring,
    ] {
        let (managed, source) = match listed.get(&kind) {
            Some((m, _)) => (*m, "spec"),
            // Defaults: the registry and its storage; a Route and a
            // ServiceMonitor where the cluster serves those APIs.
            None => (
                match kind {
                    ComponentKind::Registry => true,
                    ComponentKind::Storage => spec.object_storage.is_none(),
                    ComponentKind::Tls => certificate_secret.is_none(),
                    ComponentKind::Route => offers.routes,
                    ComponentKind::Monitoring => offers.service_monitors,
                    _ => false,
                },
                "default",
            ),
        };
        components.push(EffectiveComponent {
            kind,
            managed,
            source: source.into(),
        });
    }
    let registry_overrides = listed
        .get(&ComponentKind::Registry)
        .map(|(_, o)| o.clone())
        .unwrap_or_default();
    let storage_managed = components
        .iter()
        .any(|c| c.kind == ComponentKind::Storage && c.managed);
    let storage = storage_managed.then(|| {
        listed
            .get(&ComponentKind::Storage)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    });
    let ingress = components
        .iter()
        .any(|c| c.kind == ComponentKind::Ingress && c.managed)
        .then(|| {
            listed
                .get(&ComponentKind::Ingress)
                .map(|(_, o)| o.clone())
                .unwrap_or_default()
        });
    let managed_overrides = |kind: ComponentKind| {
        components
            .iter()
            .any(|c| c.kind == kind && c.managed)
            .then(|| {
                listed
                    .get(&kind)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default()
            })
    };
    let route = managed_overrides(ComponentKind::Route);
    let monitoring = managed_overrides(ComponentKind::Monitoring);
    let hpa_overrides = managed_overrides(ComponentKind::Hpa);
    if ingress.is_some() && spec.server_hostname.is_none() {
        err(
            "spec.serverHostname",
            "a managed ingress needs the host name it serves: set spec.serverHostname".into(),
        );
    }
    // TLS: the operator's certificate, the user's, or none.
    let tls_managed = components
        .iter()
        .any(|c| c.kind == ComponentKind::Tls && c.managed);
    let tls = match (&certificate_secret, tls_managed) {
        (Some(_), true) => {
            err(
                "spec.tls.certificateSecret",
                "applies only with the tls component unmanaged (spec.components lists it as managed): remove one of the two".into(),
            );
            TlsPlan::Managed
        }
        (None, true) => TlsPlan::Managed,
        (None, false) => TlsPlan::Off,
        (Some(name), false) => match &inputs.certificate {
            Referenced::Found(data) => match certificate_problems(data) {
                Ok(info) => {
                    if let Some(host) = &spec.server_hostname {
                        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                        if !info.sans.iter().any(|san| name_matches(san, host)) {
                            warnings.push(format!(
                                "the certificate in Secret {name:?} does not name spec.serverHostname {host} (it names {}): clients will refuse it",
                                info.sans.join(", ")
                            ));
                        }
                    }
                    if info.not_after <= inputs.now {
                        warnings.push(format!(
                            "the certificate in Secret {name:?} expired at {}",
                            pki::rfc3339(info.not_after)
                        ));
                    }
                    TlsPlan::Provided {
                        secret: name.clone(),
                        info,
                    }
                }
                Err(problems) => {
                    for p in problems {
                        err(
                            "spec.tls.certificateSecret",
                            format!("Secret {name:?}: {p}"),
                        );
                    }
                    TlsPlan::Off
                }
            },
            Referenced::Missing(why) => {
                err("spec.tls.certificateSecret", why.clone());
                TlsPlan::Off
            }
            Referenced::None => {
                err(
                    "spec.tls.certificateSecret",
                    format!("Secret {name:?} was not read"),
                );
                TlsPlan::Off
            }
        },
    };
    let route_edge = route.is_some() && !tls.serves_https();
    if tls.serves_https() || route_edge {
        if from_bundle("PREFERRED_URL_SCHEME")
            && config.preferred_url_scheme.as_deref() != Some("https")
        {
            warnings.push(format!(
                "PREFERRED_URL_SCHEME={} from the config bundle is replaced by https: clients reach the registry over HTTPS",
                config.preferred_url_scheme.as_deref().unwrap_or_default()
            ));
        }
        config.preferred_url_scheme = Some("https".into());
    }
    if !matches!(auth, AuthPlan::Off) && !tls.serves_https() && route.is_none() && ingress.is_none()
    {
        warnings.push(
            "the registry serves plain HTTP: passwords and tokens cross the network unencrypted unless TLS terminates in front of it (tls component, spec.tls.certificateSecret)".into(),
        );
    }
    if tls.serves_https()
        && let Some(o) = &ingress
        && !o.annotations.as_ref().is_some_and(|a| {
            a.keys()
                .any(|k| k.contains("backend-protocol") || k.contains("ssl-passthrough"))
        })
    {
        warnings.push(
            "the registry serves HTTPS: tell the ingress controller to speak HTTPS to it (ingress-nginx: annotation nginx.ingress.kubernetes.io/backend-protocol: HTTPS) or switch the tls component off".into(),
        );
    }
    let object_storage = match (&spec.object_storage, &inputs.object_storage) {
        (None, _) => None,
        (Some(_), _) if storage.is_some() => {
            err(
                "spec.objectStorage",
                "the storage component is listed as managed (a volume): remove it from spec.components or set managed: false to keep the data in object storage".into(),
            );
            None
        }
        (
            Some(object),
            ObjectStorageCheck::Probed {
                result,
                credentials_hash,
            },
        ) => match result {
            Ok(()) => Some(ObjectStoragePlan {
                credentials_secret: object.credentials_secret.clone(),
                credentials_hash: credentials_hash.clone(),
            }),
            Err(why) => {
                err(
                    "spec.objectStorage",
                    format!("bucket {:?} cannot be used: {why}", object.bucket),
                );
                None
            }
        },
        (Some(_), ObjectStorageCheck::CredentialsUnusable(why)) => {
            err("spec.objectStorage.credentialsSecret", why.clone());
            None
        }
        (Some(_), ObjectStorageCheck::NotSet) => {
            err("spec.objectStorage", "was not checked".into());
            None
        }
    };
    let replicas = registry_overrides.replicas.unwrap_or(1);
    let one_pod_storage = if storage.is_some() {
        "a ReadWriteOnce volume"
    } else {
        "an emptyDir"
    };
    let hpa = hpa_overrides.map(|o| {
        if spec.object_storage.is_none() {
            err(
                "spec.components[hpa].managed",
                format!(
                    "a managed hpa scales the registry to several pods, which need shared storage: set spec.objectStorage (S3, Ceph RGW, MinIO); {one_pod_storage} serves one pod"
                ),
            );
        }
        let (min, min_path) = match (o.min_replicas, registry_overrides.replicas) {
            (Some(min), registry) => {
                if registry.is_some() {
                    warnings.push(format!(
                        "spec.components[registry].overrides.replicas is not applied: the hpa component scales the registry between minReplicas {min} and maxReplicas"
                    ));
                }
                (min, "spec.components[hpa].overrides.minReplicas")
            }
            (None, Some(r)) => (r, "spec.components[registry].overrides.replicas"),
            (None, None) => (DEFAULT_HPA_MIN_REPLICAS, "spec.components[hpa].overrides.minReplicas"),
        };
        if min < 1 {
            err(
                min_path,
                format!("{min} cannot be the hpa's minReplicas: it keeps at least one pod"),
            );
        }
        let max = o.max_replicas.unwrap_or(min.max(DEFAULT_HPA_MAX_REPLICAS));
        if max < min {
            err(
                "spec.components[hpa].overrides.maxReplicas",
                format!("{max} is below minReplicas {min} (from {min_path})"),
            );
        }
        let requests_cpu = registry_overrides
            .resources
            .as_ref()
            .is_none_or(|r| r.requests.as_ref().is_some_and(|q| q.contains_key("cpu")));
        if !requests_cpu {
            warnings.push(
                "the hpa scales on CPU use in percent of the CPU request, and spec.components[registry].overrides.resources requests no cpu: the HorizontalPodAutoscaler cannot compute it".into(),
            );
        }
        HpaPlan {
            min_replicas: min,
            max_replicas: max,
            target_cpu_utilization_percentage: o
                .target_cpu_utilization_percentage
                .unwrap_or(DEFAULT_TARGET_CPU_UTILIZATION),
            overrides: o,
        }
    });
    if replicas > 1 && spec.object_storage.is_none() {
        err(
            "spec.components[registry].overrides.replicas",
            format!(
                "{replicas} replicas need shared storage: set spec.objectStorage (S3, Ceph RGW, MinIO); {one_pod_storage} serves one replica"
            ),
        );
    }
    if errors.is_empty() {
        Ok(Plan {
            registry_config: config,
            replicas,
            registry_overrides,
            storage,
            object_storage,
            ingress,
            route,
            monitoring,
            hpa,
            components,
            warnings,
            version: spec
                .version
                .clone()
                .unwrap_or_else(|| default_version.to_string()),
            auth,
            tls,
            volume_group: (!offers.routes).then_some(IMAGE_GROUP),
        })
    } else {
        Err(errors)
    }
}

/// Whether a certificate name (possibly `*.domain`) covers `host`.
fn name_matches(san: &str, host: &str) -> bool {
    let (san, host) = (san.to_ascii_lowercase(), host.to_ascii_lowercase());
    match san.strip_prefix("*.") {
        Some(domain) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => san == host,
    }
}

/// A kubernetes.io/tls Secret's data: the certificate's expiry and names,
/// or what is wrong with it.
fn certificate_problems(data: &BTreeMap<String, Vec<u8>>) -> Result<CertInfo, Vec<String>> {
    let mut problems = Vec::new();
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|t| !t.trim().is_empty())
    };
    let info = match text("tls.crt") {
        None => {
            problems.push("has no key tls.crt".to_string());
            None
        }
        Some(pem) => match pki::inspect(&pem) {
            Ok(info) => Some(info),
            Err(e) => {
                problems.push(format!("tls.crt: {e}"));
                None
            }
        },
    };
    match text("tls.key") {
        None => problems.push("has no key tls.key".to_string()),
        Some(pem) if !pem.contains("PRIVATE KEY-----") => {
            problems.push("tls.key: no PEM private key (-----BEGIN ... PRIVATE KEY-----)".into())
        }
        Some(_) => {}
    }
    match info {
        Some(info) if problems.is_empty() => Ok(info),
        _ => Err(problems),
    }
}

fn check_overrides(
    kind: ComponentKind,
    o: &Overrides,
    path: &str,
    err: &mut impl FnMut(&str, String),
) {
    let registry_only = [
        ("replicas", o.replicas.is_some()),
        ("resources", o.resources.is_some()),
        ("env", !o.env.is_empty()),
        ("nodeSelector", o.node_selector.is_some()),
        ("tolerations", !o.tolerations.is_empty()),
    ];
    let storage_only = [
        ("volumeSize", o.volume_size.is_some()),
        ("storageClassName", o.storage_class_name.is_some()),
    ];
    let hpa_only = [
        ("minReplicas", o.min_replicas.is_some()),
        ("maxReplicas", o.max_replicas.is_some()),
        (
            "targetCPUUtilizationPercentage",
            o.target_cpu_utilization_percentage.is_some(),
        ),
    ];
    let not_for: Vec<&[(&str, bool)]> = match kind {
        ComponentKind::Registry => vec![&storage_only, &hpa_only],
        ComponentKind::Storage => vec![&registry_only, &hpa_only],
        ComponentKind::Hpa => vec![&registry_only, &storage_only],
        _ => vec![&registry_only, &storage_only, &hpa_only],
    };
    let misplaced: Vec<&str> = not_for
        .into_iter()
        .flatten()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect();
    for field in misplaced {
        err(
            &format!("{path}.{field}"),
            format!("does not apply to the {} component", kind.name()),
        );
    }
    if let Some(size) = &o.volume_size
        && !is_quantity(size)
    {
        err(
            &format!("{path}.volumeSize"),
            format!("{size:?} is not a quantity such as 10Gi"),
        );
    }
}

/// Kubernetes quantity syntax (a number with an optional suffix).
fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> QuarryRegistrySpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let plan = validate(&spec("{}"), &Bundle::None, "0.1.0", Offers::default()).unwrap();
        assert!(plan.registry_config.feature_helm_oci_support);
        assert_eq!(plan.replicas, 1);
        assert!(plan.storage.is_some(), "storage is managed by default");
        assert_eq!(plan.version, "0.1.0");
        assert_eq!(
            plan.registry_config.local_storage_path().unwrap(),
            std::path::PathBuf::from(DATA_DIR)
        );
    }

    #[test]
    fn typed_fields_win_over_the_bundle_and_say_so() {
        let bundle = Bundle::Found(
            "FEATURE_HELM_OCI_SUPPORT: true\nFEATURE_REFERRERS_API: false\nDATABASE_SECRET_KEY: x\n".into(),
        );
        let s = spec(
            r#"
features: {helm: false}
serverHostname: registry.example.com
allowedArtifactTypes:
  application/vnd.sylabs.sif.config.v1+json: [application/vnd.sylabs.sif.layer.v1+tar]
"#,
        );
        let plan = validate(&s, &bundle, "v", Offers::default()).unwrap();
        let c = &plan.registry_config;
        assert!(!c.feature_helm_oci_support);
        assert!(
            !c.feature_referrers_api,
            "bundle value kept where the CR is silent"
        );
        assert_eq!(c.server_hostname.as_deref(), Some("registry.example.com"));
        assert!(
            c.allowed_oci_artifact_types
                .as_ref()
                .unwrap()
                .contains_key("application/vnd.sylabs.sif.config.v1+json")
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w
                    .contains("spec.features.helm=false overrides FEATURE_HELM_OCI_SUPPORT=true")),
            "{:?}",
            plan.warnings
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("DATABASE_SECRET_KEY")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn optional_apis_decide_defaults_and_are_required_when_listed() {
        let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
        assert!(plan.route.is_none() && plan.monitoring.is_none());
        let openshift = Offers {
            routes: true,
            service_monitors: true,
        };
        let plan = validate(&spec("{}"), &Bundle::None, "v", openshift).unwrap();
        assert!(plan.route.is_some() && plan.monitoring.is_some());
        assert!(
            plan.components
                .iter()
                .any(|c| c.kind == ComponentKind::Route && c.managed && c.source == "default")
        );
        let errors = validate(
            &spec("components: [{kind: route, managed: true}]"),
            &Bundle::None,
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert!(
            errors[0].reason.contains("route.openshift.io/v1 Route"),
            "{errors:?}"
        );
    }

    #[test]
    fn invalid_inputs_name_their_fields() {
        let s = spec(
            r#"
allowedArtifactTypes:
  not-a-type: [fine/type, bad]
components:
  - {kind: hpa, managed: true}
  - {kind: registry, managed: true, overrides: {replicas: 3, volumeSize: 1Gi}}
  - {kind: storage, managed: true, overrides: {volumeSize: lots}}
"#,
        );
        let errors = validate(
            &s,
            &Bundle::Missing("Secret \"b\" not found".into()),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "spec.configBundleSecret",
            "spec.allowedArtifactTypes[not-a-type]",
            "spec.allowedArtifactTypes[not-a-type][1]",
            "spec.components[hpa].managed",
            "spec.components[1].overrides.volumeSize",
            "spec.components[2].overrides.volumeSize",
            "spec.components[registry].overrides.replicas",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let bad_bundle = Bundle::Found("FEATURE_HELM_OCI_SUPPORT: perhaps\n".into());
        let errors = validate(&spec("{}"), &bad_bundle, "v", Offers::default()).unwrap_err();
        assert_eq!(
            errors[0].path,
            "spec.configBundleSecret[config.yaml].FEATURE_HELM_OCI_SUPPORT"
        );
    }

    fn found(key: &str, value: &str) -> Referenced {
        Referenced::Found(BTreeMap::from([(
            key.to_string(),
            value.as_bytes().to_vec(),
        )]))
    }

    #[test]
    fn secure_by_default() {
        let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
        assert_eq!(plan.auth, AuthPlan::Generated);
        assert_eq!(plan.tls, TlsPlan::Managed);
        let c = &plan.registry_config;
        assert_eq!(
            c.auth_accounts_file.as_deref(),
            Some("/etc/quarry/auth/accounts.yaml")
        );
        assert_eq!(
            c.auth_token_key_file.as_deref(),
            Some("/etc/quarry/auth/token.key")
        );
        assert_eq!(c.preferred_url_scheme.as_deref(), Some("https"));
        assert_eq!(plan.scheme(), "https");
        assert!(
            plan.components
                .iter()
                .any(|c| c.kind == ComponentKind::Tls && c.managed && c.source == "default")
        );
    }

    #[test]
    fn auth_and_tls_inputs_are_checked_precisely() {
        let s = spec(
            "auth: {accountsSecret: acc, anonymousPull: [public, 'Bad/Name']}\ntls: {certificateSecret: cert}\ncomponents: [{kind: tls, managed: true}]\n",
        );
        let inputs = Inputs {
            accounts: found(
                "accounts.yaml",
                "accounts:\n  alice: {password_hash: nope, access: {'*': [pull]}}\n",
            ),
            certificate: Referenced::Missing("Secret \"cert\" not found in namespace ns".into()),
            ..Inputs::bundle(Bundle::None)
        };
        let errors = validate_with(&s, &inputs, "v", Offers::default()).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|e| e.contains(needle));
        assert!(
            has(
                "spec.auth.accountsSecret[accounts.yaml]: accounts.alice.password_hash: not a bcrypt hash"
            ),
            "{text:?}"
        );
        assert!(has("spec.auth.anonymousPull[1]: \"Bad/Name\""), "{text:?}");
        assert!(
            has("spec.tls.certificateSecret: applies only with the tls component unmanaged"),
            "{text:?}"
        );
        // Unmanaged tls: a missing Secret, a Secret without a key, junk.
        let s = spec("tls: {certificateSecret: cert}");
        for (certificate, expected) in [
            (
                Referenced::Missing("Secret \"cert\" not found in namespace ns".into()),
                "spec.tls.certificateSecret: Secret \"cert\" not found",
            ),
            (found("tls.crt", "junk"), "has no key tls.key"),
            (found("tls.key", "x"), "has no key tls.crt"),
        ] {
            let inputs = Inputs {
                certificate,
                ..Inputs::bundle(Bundle::None)
            };
            let errors = validate_with(&s, &inputs, "v", Offers::default()).unwrap_err();
            assert!(
                errors.iter().any(|e| e.to_string().contains(expected)),
                "{expected}: {errors:?}"
            );
        }
        let missing_accounts = Inputs {
            accounts: Referenced::Missing("Secret \"acc\" not found in namespace ns".into()),
            ..Inputs::bundle(Bundle::None)
        };
        let errors = validate_with(
            &spec("auth: {accountsSecret: acc}"),
            &missing_accounts,
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "spec.auth.accountsSecret");
    }

    #[test]
    fn provided_certificate_and_switches() {
        let ca = crate::pki::new_ca("CA", 1_800_000_000).unwrap();
        let leaf =
            crate::pki::issue(&ca, "x", &["registry.example.com".into()], 1_800_000_000).unwrap();
        let inputs = Inputs {
            certificate: Referenced::Found(BTreeMap::from([
                ("tls.crt".to_string(), leaf.cert_pem.into_bytes()),
                ("tls.key".to_string(), leaf.key_pem.into_bytes()),
            ])),
            now: 1_800_000_000,
            ..Inputs::bundle(Bundle::None)
        };
        let plan = validate_with(
            &spec("tls: {certificateSecret: cert}\nauth: {enabled: false}"),
            &inputs,
            "v",
            Offers::default(),
        )
        .unwrap();
        match &plan.tls {
            TlsPlan::Provided { secret, info } => {
                assert_eq!(secret, "cert");
                assert_eq!(info.sans, vec!["registry.example.com".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.auth, AuthPlan::Off);
        assert_eq!(plan.registry_config.auth_accounts_file, None);
        assert!(name_matches("*.example.com", "registry.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        let elsewhere = validate_with(
            &spec("tls: {certificateSecret: cert}\nserverHostname: other.example.org:443"),
            &inputs,
            "v",
            Offers::default(),
        )
        .unwrap();
        assert!(
            elsewhere
                .warnings
                .iter()
                .any(|w| w.contains("does not name spec.serverHostname other.example.org")),
            "{:?}",
            elsewhere.warnings
        );
        // Off entirely: plain HTTP, and the bundle's auth paths are ignored.
        let bundle = Bundle::Found(
            "AUTH_ACCOUNTS_FILE: /x\nAUTH_TOKEN_KEY_FILE: /y\nANONYMOUS_PULL_NAMESPACES: [pub]\n"
                .into(),
        );
        let plan = validate(
            &spec("auth: {enabled: false}\ncomponents: [{kind: tls, managed: false}]"),
            &bundle,
            "v",
            Offers::default(),
        )
        .unwrap();
        assert_eq!(plan.tls, TlsPlan::Off);
        assert_eq!(plan.scheme(), "http");
        assert_eq!(plan.registry_config.auth_accounts_file, None);
        assert_eq!(plan.registry_config.preferred_url_scheme, None);
        assert_eq!(plan.registry_config.anonymous_pull_namespaces, vec!["pub"]);
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("AUTH_ACCOUNTS_FILE")),
            "{:?}",
            plan.warnings
        );
        // Login over plain HTTP is allowed, with a warning.
        let plan = validate(
            &spec("components: [{kind: tls, managed: false}]"),
            &Bundle::None,
            "v",
            Offers::default(),
        )
        .unwrap();
        assert!(
            plan.warnings.iter().any(|w| w.contains("plain HTTP")),
            "{:?}",
            plan.warnings
        );
    }

    fn probed(result: Result<(), String>) -> Inputs {
        Inputs {
            object_storage: ObjectStorageCheck::Probed {
                result,
                credentials_hash: "abc".into(),
            },
            ..Inputs::bundle(Bundle::None)
        }
    }

    #[test]
    fn object_storage_renders_s3_and_allows_replicas() {
        let s = spec(
            "objectStorage: {endpoint: 'http://minio.storage:9000/', bucket: quarry, credentialsSecret: s3}
components: [{kind: registry, managed: true, overrides: {replicas: 3}}]
",
        );
        let plan = validate_with(&s, &probed(Ok(())), "v", Offers::default()).unwrap();
        assert_eq!(plan.replicas, 3);
        assert!(plan.storage.is_none(), "no volume with object storage");
        assert_eq!(
            plan.object_storage,
            Some(ObjectStoragePlan {
                credentials_secret: "s3".into(),
                credentials_hash: "abc".into()
            })
        );
        // The rendered config reads back as the S3 settings the probe used.
        let yaml = serde_norway::to_string(&plan.registry_config).unwrap();
        let loaded = RegistryConfig::from_yaml(&yaml, None).unwrap().config;
        let quarry_registry::storage::settings::StorageSettings::S3(settings) =
            loaded.storage_settings().unwrap()
        else {
            panic!("not S3: {yaml}")
        };
        let object = s.object_storage.as_ref().unwrap();
        assert_eq!(settings, s3_settings(object, None));
        assert_eq!(
            settings.endpoint.as_deref(),
            Some("http://minio.storage:9000")
        );
        assert_eq!(
            (settings.prefix.as_str(), settings.path_style),
            ("registry", true)
        );
        assert!(
            plan.components
                .iter()
                .any(|c| c.kind == ComponentKind::Storage && !c.managed && c.source == "default")
        );
    }

    #[test]
    fn object_storage_problems_are_refused_precisely() {
        let s = spec(
            "objectStorage: {bucket: quarry, credentialsSecret: s3}
",
        );
        let errors = validate_with(
            &s,
            &probed(Err("access denied".into())),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "spec.objectStorage");
        assert!(errors[0].reason.contains("access denied"), "{errors:?}");
        let missing = Inputs {
            object_storage: ObjectStorageCheck::CredentialsUnusable(
                "Secret \"s3\" not found".into(),
            ),
            ..Inputs::bundle(Bundle::None)
        };
        let errors = validate_with(&s, &missing, "v", Offers::default()).unwrap_err();
        assert_eq!(errors[0].path, "spec.objectStorage.credentialsSecret");
        // A volume and object storage at once.
        let both = spec(
            "objectStorage: {bucket: quarry, credentialsSecret: s3}
components: [{kind: storage, managed: true}]
",
        );
        let errors = validate_with(&both, &probed(Ok(())), "v", Offers::default()).unwrap_err();
        assert!(errors[0].reason.contains("managed"), "{errors:?}");
        // Several replicas on a ReadWriteOnce volume.
        let rwo = spec(
            "components: [{kind: registry, managed: true, overrides: {replicas: 2}}]
",
        );
        let errors = validate(&rwo, &Bundle::None, "v", Offers::default()).unwrap_err();
        assert_eq!(
            errors[0].path,
            "spec.components[registry].overrides.replicas"
        );
        assert!(
            errors[0].reason.contains("ReadWriteOnce")
                && errors[0].reason.contains("spec.objectStorage"),
            "{errors:?}"
        );
    }

    const S3: &str =
        "objectStorage: {endpoint: 'http://minio:9000', bucket: quarry, credentialsSecret: s3}\n";

    #[test]
    fn hpa_needs_object_storage() {
        let s = spec(
            "components: [{kind: hpa, managed: true, overrides: {minReplicas: 2, maxReplicas: 4}}]",
        );
        let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.components[hpa].managed");
        assert!(
            errors[0].reason.contains("set spec.objectStorage")
                && errors[0]
                    .reason
                    .contains("a ReadWriteOnce volume serves one pod"),
            "{errors:?}"
        );
        // On an emptyDir too.
        let s = spec("components: [{kind: storage, managed: false}, {kind: hpa, managed: true}]");
        let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
        assert!(
            errors[0].reason.contains("an emptyDir serves one pod"),
            "{errors:?}"
        );
        // Unmanaged (the default): nothing to refuse, no HPA.
        let plan = validate(
            &spec("components: [{kind: hpa, managed: false}]"),
            &Bundle::None,
            "v",
            Offers::default(),
        )
        .unwrap();
        assert_eq!(plan.hpa, None);
        assert!(!plan.several_pods());
    }

    #[test]
    fn hpa_bounds_come_from_overrides_with_defaults() {
        let hpa = |components: &str| {
            let plan = validate_with(
                &spec(&format!("{S3}components: {components}\n")),
                &probed(Ok(())),
                "v",
                Offers::default(),
            )
            .unwrap();
            assert!(plan.several_pods());
            let h = plan.hpa.expect("a managed hpa");
            (
                h.min_replicas,
                h.max_replicas,
                h.target_cpu_utilization_percentage,
            )
        };
        assert_eq!(hpa("[{kind: hpa, managed: true}]"), (2, 5, 75));
        assert_eq!(
            hpa(
                "[{kind: hpa, managed: true}, {kind: registry, managed: true, overrides: {replicas: 3}}]"
            ),
            (3, 5, 75)
        );
        assert_eq!(
            hpa(
                "[{kind: hpa, managed: true}, {kind: registry, managed: true, overrides: {replicas: 8}}]"
            ),
            (8, 8, 75)
        );
        assert_eq!(
            hpa(
                "[{kind: hpa, managed: true, overrides: {minReplicas: 3, maxReplicas: 10, targetCPUUtilizationPercentage: 60}}]"
            ),
            (3, 10, 60)
        );
        // minReplicas wins over the registry's replicas, with a warning.
        let plan = validate_with(
            &spec(&format!(
                "{S3}components: [{{kind: hpa, managed: true, overrides: {{minReplicas: 4}}}}, {{kind: registry, managed: true, overrides: {{replicas: 2}}}}]\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap();
        assert_eq!(plan.hpa.as_ref().map(|h| h.min_replicas), Some(4));
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("spec.components[registry].overrides.replicas is not applied")),
            "{:?}",
            plan.warnings
        );
        // CPU requests the HPA cannot compute a percentage of.
        let plan = validate_with(
            &spec(&format!(
                "{S3}components: [{{kind: hpa, managed: true}}, {{kind: registry, managed: true, overrides: {{resources: {{limits: {{memory: 1Gi}}}}}}}}]\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap();
        assert!(
            plan.warnings.iter().any(|w| w.contains("requests no cpu")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn hpa_overrides_are_checked_and_kept_to_their_component() {
        let errors = validate_with(
            &spec(&format!(
                "{S3}components: [{{kind: hpa, managed: true, overrides: {{minReplicas: 6, maxReplicas: 3}}}}]\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "spec.components[hpa].overrides.maxReplicas");
        assert!(
            errors[0].reason.contains("3 is below minReplicas 6"),
            "{errors:?}"
        );
        let errors = validate_with(
            &spec(&format!(
                "{S3}components: [{{kind: registry, managed: true, overrides: {{replicas: 0}}}}, {{kind: hpa, managed: true}}]\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        assert_eq!(
            errors[0].path,
            "spec.components[registry].overrides.replicas"
        );
        let errors = validate_with(
            &spec(&format!(
                "{S3}components:\n- {{kind: registry, managed: true, overrides: {{maxReplicas: 4}}}}\n- {{kind: hpa, managed: true, overrides: {{replicas: 3, volumeSize: 1Gi}}}}\n- {{kind: ingress, managed: false, overrides: {{targetCPUUtilizationPercentage: 50}}}}\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "spec.components[0].overrides.maxReplicas: does not apply to the registry component",
            "spec.components[1].overrides.replicas: does not apply to the hpa component",
            "spec.components[1].overrides.volumeSize: does not apply to the hpa component",
            "spec.components[2].overrides.targetCPUUtilizationPercentage: does not apply to the ingress component",
        ] {
            assert!(text.iter().any(|e| e == expected), "{expected}: {text:?}");
        }
    }

    #[test]
    fn several_pods_with_replicas_or_hpa_only() {
        let plan = validate(&spec("{}"), &Bundle::None, "v", Offers::default()).unwrap();
        assert!(!plan.several_pods());
        let plan = validate_with(
            &spec(&format!(
                "{S3}components: [{{kind: registry, managed: true, overrides: {{replicas: 2}}}}]\n"
            )),
            &probed(Ok(())),
            "v",
            Offers::default(),
        )
        .unwrap();
        assert!(plan.several_pods() && plan.hpa.is_none());
        let plan = validate_with(&spec(S3), &probed(Ok(())), "v", Offers::default()).unwrap();
        assert!(!plan.several_pods(), "one replica on object storage");
    }
}

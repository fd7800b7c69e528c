//! dereference: read what a resource points at (its config bundle,
//! accounts, certificate and object-storage Secrets, with a probe of the
//! bucket) and the operator's own generated Secrets, which are kept across
//! reconciles. The only reads before planning.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::core::DynamicObject;
use kube::{Api, Client};

use crate::capabilities::ClusterApis;
use crate::components::route::route_host;
use crate::components::storage::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, s3_settings};
use crate::crd::QuarryRegistry;
use crate::error::Error;
use crate::generated::{self, Existing};
use crate::names;
use crate::plan::{Bundle, Inputs, ObjectStorageCheck, Referenced, UpstreamAccess, UpstreamCheck};
use crate::probe_memory::ProbeMemory;

/// How long the operator waits for the object store when it probes it.
const OBJECT_STORAGE_PROBE: std::time::Duration = std::time::Duration::from_secs(10);

/// What dereference read.
pub struct Read {
    pub inputs: Inputs,
    pub existing: Existing,
    /// The host of the Route we manage, as it is now.
    pub route_host: Option<String>,
}

/// Read everything the plan and the generated objects depend on.
pub async fn dereference(
    cr: &QuarryRegistry,
    client: &Client,
    ns: &str,
    apis: &ClusterApis,
    probes: &ProbeMemory,
) -> Result<Read, Error> {
    let secrets = Secrets {
        api: Api::namespaced(client.clone(), ns),
        config_maps: Api::namespaced(client.clone(), ns),
        ns,
        probes,
    };
    let spec = &cr.spec;
    let bundle = match &spec.config_bundle_secret {
        None => Bundle::None,
        Some(name) => match secrets.get(name).await? {
            None => Bundle::Missing(format!("Secret {name:?} not found in namespace {ns}")),
            Some(s) => match generated::secret_data(&s).get("config.yaml") {
                Some(bytes) => Bundle::Found(String::from_utf8_lossy(bytes).into_owned()),
                None => Bundle::Missing(format!("Secret {name:?} has no key config.yaml")),
            },
        },
    };
    let accounts_secret = spec.auth.as_ref().and_then(|a| a.accounts_secret.as_ref());
    let certificate_secret = spec
        .tls
        .as_ref()
        .and_then(|t| t.certificate_secret.as_ref());
    let inputs = Inputs {
        bundle,
        accounts: secrets.referenced(accounts_secret).await?,
        certificate: secrets.referenced(certificate_secret).await?,
        object_storage: check_object_storage(cr, &secrets).await?,
        proxy_cache: check_upstreams(cr, &secrets).await?,
        mirrors: check_mirrors(cr, &secrets).await?,
        now: Timestamp::now().as_second(),
    };
    let data = |s: Option<Secret>| s.as_ref().map(generated::secret_data);
    let auth = secrets.get(&names::auth_secret_name(cr)).await?;
    let existing = Existing {
        credentials: data(secrets.get(&names::credentials_secret_name(cr)).await?),
        auth: auth.as_ref().map(|s| {
            (
                generated::secret_data(s),
                s.metadata.annotations.clone().unwrap_or_default(),
            )
        }),
        ca: data(secrets.get(&names::ca_secret_name(cr)).await?),
        tls: data(secrets.get(&names::tls_secret_name(cr)).await?),
    };
    let mut route_host_now = None;
    if let Some(ar) = &apis.route {
        let name = names::registry_name(cr);
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar);
        route_host_now = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read {
                object: format!("Route {ns}/{name}"),
                source,
            })?
            .as_ref()
            .and_then(route_host);
    }
    Ok(Read {
        inputs,
        existing,
        route_host: route_host_now,
    })
}

/// Secrets of one namespace, read with errors that name them.
/// The user's Secrets and ConfigMaps in the resource's namespace.
struct Secrets<'a> {
    api: Api<Secret>,
    config_maps: Api<ConfigMap>,
    ns: &'a str,
    /// Probes that passed before are not repeated.
    probes: &'a ProbeMemory,
}

impl Secrets<'_> {
    async fn get(&self, name: &str) -> Result<Option<Secret>, Error> {
        self.api.get_opt(name).await.map_err(|source| Error::Read {
            object: format!("Secret {}/{name}", self.ns),
            source,
        })
    }

    /// A Secret the resource references, or why it cannot be used.
    async fn referenced(&self, name: Option<&String>) -> Result<Referenced, Error> {
        let Some(name) = name else {
            return Ok(Referenced::None);
        };
        Ok(match self.get(name).await? {
            None => Referenced::Missing(format!(
                "Secret {name:?} not found in namespace {}",
                self.ns
            )),
            Some(s) => Referenced::Found(generated::secret_data(&s)),
        })
    }

    /// The PEM text under `key` of the ConfigMap `name`, or why there is
    /// none.
    async fn config_map_pem(&self, name: &str, key: &str) -> Result<Result<String, String>, Error> {
        let map = self
            .config_maps
            .get_opt(name)
            .await
            .map_err(|source| Error::Read {
                object: format!("ConfigMap {}/{name}", self.ns),
                source,
            })?;
        let Some(map) = map else {
            return Ok(Err(format!(
                "ConfigMap {name:?} not found in namespace {}",
                self.ns
            )));
        };
        let text = map
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        Ok(match text {
            None => Err(format!("ConfigMap {name:?} has no key {key}")),
            Some(pem) => match quarry_registry::proxy_cache::ca_problem(false, None, Some(&pem)) {
                Some(why) => Err(format!("ConfigMap {name:?} key {key}: {why}")),
                None => Ok(pem),
            },
        })
    }
}

/// The key of a caConfigMap that holds the certificates.
pub const CA_CONFIG_MAP_KEY: &str = "ca.crt";

/// Read spec.objectStorage's credentials and probe the bucket with them
/// (a write and a delete), so a bucket the registry could not use is
/// refused before anything rolls out.
async fn check_object_storage(
    cr: &QuarryRegistry,
    secrets: &Secrets<'_>,
) -> Result<ObjectStorageCheck, Error> {
    let Some(object) = &cr.spec.object_storage else {
        return Ok(ObjectStorageCheck::NotSet);
    };
    let name = &object.credentials_secret;
    let data = match secrets.referenced(Some(name)).await? {
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
    let settings = s3_settings(object, Some((access, secret)));
    let probe = quarry_registry::storage::probe_s3(&settings, OBJECT_STORAGE_PROBE);
    let result = secrets.probes.check("bucket", &settings, probe).await;
    Ok(ObjectStorageCheck::Probed {
        result,
        credentials_hash,
    })
}

/// How long the operator waits for an upstream registry's login.
const UPSTREAM_PROBE: std::time::Duration = std::time::Duration::from_secs(15);

/// Read each spec.proxyCache entry's credentials and log in to its upstream
/// with them, so a cache the registry could not fill is refused before
/// anything rolls out.
async fn check_upstreams(
    cr: &QuarryRegistry,
    secrets: &Secrets<'_>,
) -> Result<Vec<UpstreamCheck>, Error> {
    let mut checks = Vec::new();
    for entry in &cr.spec.proxy_cache {
        checks.push(
            check_upstream(
                secrets,
                entry.credentials_secret.as_ref(),
                entry.ca_config_map.as_ref(),
                |access| crate::components::proxy_cache::settings(entry, access, 0),
            )
            .await?,
        );
    }
    Ok(checks)
}

/// The same for each mirrored repository.
async fn check_mirrors(
    cr: &QuarryRegistry,
    secrets: &Secrets<'_>,
) -> Result<Vec<UpstreamCheck>, Error> {
    let mut checks = Vec::new();
    let repositories = cr.spec.mirroring.iter().flat_map(|m| &m.repositories);
    for entry in repositories {
        checks.push(
            check_upstream(
                secrets,
                entry.credentials_secret.as_ref(),
                entry.ca_config_map.as_ref(),
                |access| crate::components::mirroring::settings(entry, access).upstream_settings(),
            )
            .await?,
        );
    }
    Ok(checks)
}

/// Read a credentials Secret (keys username and password) and a CA
/// ConfigMap (key ca.crt), and log in to the upstream `settings` describes
/// with them.
async fn check_upstream(
    secrets: &Secrets<'_>,
    credentials_secret: Option<&String>,
    ca_config_map: Option<&String>,
    settings: impl FnOnce(UpstreamAccess) -> quarry_registry::proxy_cache::ProxyCacheNamespace,
) -> Result<UpstreamCheck, Error> {
    let mut check = UpstreamCheck {
        access: UpstreamAccess::default(),
        reference_problem: None,
        result: Ok(()),
    };
    if let Some(name) = credentials_secret {
        match secrets.referenced(Some(name)).await? {
            Referenced::Found(data) => {
                let key = |k: &str| {
                    data.get(k)
                        .map(|v| String::from_utf8_lossy(v).trim().to_string())
                        .filter(|v| !v.is_empty())
                };
                match (key("username"), key("password")) {
                    (Some(user), Some(password)) => {
                        check.access.credentials = Some((user, password))
                    }
                    _ => {
                        check.reference_problem = Some((
                            "credentialsSecret",
                            format!("Secret {name:?} needs the keys username and password"),
                        ))
                    }
                }
            }
            Referenced::Missing(why) => check.reference_problem = Some(("credentialsSecret", why)),
            Referenced::None => {}
        }
    }
    if let Some(name) = ca_config_map
        && check.reference_problem.is_none()
    {
        match secrets.config_map_pem(name, CA_CONFIG_MAP_KEY).await? {
            Ok(pem) => check.access.ca = Some(pem),
            Err(why) => check.reference_problem = Some(("caConfigMap", why)),
        }
    }
    if check.reference_problem.is_none() {
        let settings = settings(check.access.clone());
        let probe = probe_upstream(&settings);
        check.result = secrets.probes.check("upstream", &settings, probe).await;
    }
    Ok(check)
}

async fn probe_upstream(
    settings: &quarry_registry::proxy_cache::ProxyCacheNamespace,
) -> Result<(), String> {
    let upstream = quarry_registry::proxy_cache::upstream::Upstream::new(settings)?;
    let remote = upstream.address.remote_name("quarry-login-check");
    match tokio::time::timeout(UPSTREAM_PROBE, upstream.check(&remote)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "upstream {} did not answer within {} s",
            settings.upstream_registry,
            UPSTREAM_PROBE.as_secs()
        )),
    }
}

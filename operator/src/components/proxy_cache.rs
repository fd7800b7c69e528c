//! Pull-through cache namespaces (`spec.proxyCache`), rendered as
//! FEATURE_PROXY_CACHE and PROXY_CACHE_NAMESPACES with each upstream's
//! credentials from its Secret. Dereference logged in to every upstream
//! with them; a failed login is an issue under the entry, so nothing rolls
//! out with a cache the registry could not fill.

use quarry_registry::proxy_cache::{DEFAULT_EXPIRATION_SECONDS, ProxyCacheNamespace};
use quarry_registry::retention::parse_duration;

use k8s_openapi::api::core::v1::EnvVar;

use super::{BuildContext, Component, PodParts, RenderedKey};
use crate::crd::{ProxyCache as ProxyCacheSpec, QuarryRegistrySpec};
use crate::plan::{Issues, Plan, PlanInput, UpstreamAccess, UpstreamCheck};

pub struct ProxyCache;

/// The registry's settings of one entry.
pub fn settings(
    entry: &ProxyCacheSpec,
    access: UpstreamAccess,
    expiration_s: u64,
) -> ProxyCacheNamespace {
    let (user, password) = access.credentials.unzip();
    ProxyCacheNamespace {
        namespace: entry.namespace.clone(),
        upstream_registry: entry.upstream.clone(),
        upstream_registry_username: user,
        upstream_registry_password: password,
        expiration_s,
        insecure: entry.insecure.unwrap_or(false),
        upstream_ca_file: None,
        upstream_ca: access.ca,
    }
}

/// An entry's settings, built with the credentials and CA dereference
/// read, if the Secret, the ConfigMap, the settings and the login at the
/// upstream were all good; else `None`, with an issue under `path`
/// (`.credentialsSecret`, `.caConfigMap` or `.upstream` for those). Shared
/// with mirroring.rs.
pub fn accept_checked<T>(
    path: &str,
    check: Option<&UpstreamCheck>,
    issues: &mut Issues,
    build: impl FnOnce(UpstreamAccess) -> (T, Option<String>),
) -> Option<T> {
    let Some(check) = check else {
        issues.error(
            format!("{path}.upstream"),
            "was not checked (the resource changed while it was read); retrying",
        );
        return None;
    };
    if let Some((field, why)) = &check.reference_problem {
        issues.error(format!("{path}.{field}"), why.clone());
        return None;
    }
    let (settings, problem) = build(check.access.clone());
    if let Some(problem) = problem {
        issues.error(path, problem);
        return None;
    }
    if let Err(why) = &check.result {
        issues.error(
            format!("{path}.upstream"),
            format!("the login at the upstream failed: {why}"),
        );
        return None;
    }
    Some(settings)
}

impl Component for ProxyCache {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let entries = &input.spec.proxy_cache;
        if entries.is_empty() {
            return;
        }
        let mut rendered = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let field = |name: &str| format!("spec.proxyCache[{i}].{name}");
            let expiration_s = match &entry.expiration {
                None => DEFAULT_EXPIRATION_SECONDS,
                Some(text) => match parse_duration(text) {
                    Some(d) => d.as_secs(),
                    None => {
                        issues.error(
                            field("expiration"),
                            format!("{text:?} is not a duration such as 24h or 30m"),
                        );
                        continue;
                    }
                },
            };
            let checked = accept_checked(
                &format!("spec.proxyCache[{i}]"),
                input.inputs.proxy_cache.get(i),
                issues,
                |access| {
                    let s = settings(entry, access, expiration_s);
                    let problem = s.problem();
                    (s, problem)
                },
            );
            rendered.extend(checked);
        }
        if rendered.len() != entries.len() {
            return;
        }
        let config = &mut plan.registry_config;
        if plan.bundle_keys.contains("PROXY_CACHE_NAMESPACES")
            && config.proxy_cache_namespaces != rendered
        {
            issues.warn("spec.proxyCache overrides PROXY_CACHE_NAMESPACES from the config bundle");
        }
        config.feature_proxy_cache = true;
        config.proxy_cache_namespaces = rendered;
    }

    /// The root filesystem is read-only: blobs being downloaded are spooled
    /// on the data volume (the storage's, or an emptyDir with object
    /// storage), as unnamed files nothing else sees.
    fn pod(&self, cx: &BuildContext<'_>, pod: &mut PodParts) {
        if cx.plan.registry_config.feature_proxy_cache {
            pod.env.push(EnvVar {
                name: "TMPDIR".into(),
                value: Some(super::storage::DATA_DIR.into()),
                ..EnvVar::default()
            });
        }
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        if spec.proxy_cache.is_empty() {
            return Vec::new();
        }
        vec![
            RenderedKey {
                key: "FEATURE_PROXY_CACHE",
                field: "spec.proxyCache",
            },
            RenderedKey {
                key: "PROXY_CACHE_NAMESPACES",
                field: "spec.proxyCache",
            },
        ]
    }
}

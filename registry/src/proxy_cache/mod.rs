//! Pull-through cache namespaces (`FEATURE_PROXY_CACHE`, Quay's model: a
//! namespace is a cache of one upstream registry).
//!
//! A pull of `<namespace>/<path>` is answered from storage when it can be
//! and from the upstream's `<prefix>/<path>` when it must: a tag is asked
//! again (HEAD first) once `expiration_s` has passed since it was last
//! checked, a missing blob is downloaded once however many ask and
//! streamed to each as it arrives (fetch.rs), and while the upstream is
//! down or rate-limited what is cached is served with a `Warning`. Pushes
//! into a cache namespace are refused.
//!
//! - `settings.rs`: the configuration of a cache namespace;
//! - `upstream.rs`: the client of an upstream registry, with its login;
//! - `fetch.rs`: single-flight streaming blob downloads;
//! - `serve.rs`: the pull endpoints of a cache namespace.

mod fetch;
pub(crate) mod serve;
mod settings;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use settings::{DEFAULT_EXPIRATION_SECONDS, ProxyCacheNamespace, UpstreamAddress, ca_problem};
use upstream::Upstream;

use crate::config::RegistryConfig;
use crate::names::RepoName;

/// The upstream clients of the cache namespaces, and their downloads.
#[derive(Default)]
pub struct ProxyCaches {
    /// Built on first use and rebuilt when a reload changed the namespace's
    /// settings (a client keeps its connections and tokens meanwhile).
    upstreams: Mutex<HashMap<String, Arc<Upstream>>>,
    downloads: Arc<fetch::Downloads>,
}

/// A repository of a cache namespace, and where it lives upstream.
pub struct CachedRepo {
    pub upstream: Arc<Upstream>,
    /// The upstream repository name.
    pub remote: String,
}

impl ProxyCaches {
    /// The cache namespace `repo` is in, if any, under `config`.
    pub fn for_repo(
        &self,
        config: &RegistryConfig,
        repo: &RepoName,
    ) -> Result<Option<CachedRepo>, String> {
        if !config.feature_proxy_cache {
            return Ok(None);
        }
        let Some((namespace, path)) = repo.as_str().split_once('/') else {
            // The namespace alone names no upstream repository.
            return Ok(None);
        };
        let Some(settings) = config
            .proxy_cache_namespaces
            .iter()
            .find(|c| c.namespace == namespace)
        else {
            return Ok(None);
        };
        let upstream = self.upstream(settings)?;
        let remote = upstream.address.remote_name(path);
        Ok(Some(CachedRepo { upstream, remote }))
    }

    /// Build the upstream client of every cache namespace of `config` now
    /// (loading the system's CA certificates takes milliseconds), so the
    /// first pull does not wait for it.
    pub fn prepare(&self, config: &RegistryConfig) {
        if !config.feature_proxy_cache {
            return;
        }
        for settings in &config.proxy_cache_namespaces {
            if let Err(e) = self.upstream(settings) {
                tracing::warn!(namespace = %settings.namespace, error = %e, "no client for the upstream of a cache namespace");
            }
        }
    }

    /// Whether `namespace` is a cache namespace under `config`.
    pub fn is_cache_namespace<'a>(
        config: &'a RegistryConfig,
        namespace: &str,
    ) -> Option<&'a ProxyCacheNamespace> {
        config
            .feature_proxy_cache
            .then(|| {
                config
                    .proxy_cache_namespaces
                    .iter()
                    .find(|c| c.namespace == namespace)
            })
            .flatten()
    }

    fn upstream(&self, settings: &ProxyCacheNamespace) -> Result<Arc<Upstream>, String> {
        let mut upstreams = self
            .upstreams
            .lock()
            .map_err(|_| "the upstream table is unusable after an earlier crash".to_string())?;
        if let Some(u) = upstreams.get(&settings.namespace)
            && u.settings == *settings
        {
            return Ok(u.clone());
        }
        let upstream = Arc::new(Upstream::new(settings)?);
        upstreams.insert(settings.namespace.clone(), upstream.clone());
        Ok(upstream)
    }
}

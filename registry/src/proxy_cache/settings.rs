//! The configuration of one cache namespace (`PROXY_CACHE_NAMESPACES`),
//! with Quay's field names for a proxy-cache organization.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::names::{ALL_NAMESPACES, RepoName, valid_namespace};

/// Quay's default for how long a cached tag is served without asking the
/// upstream again (one day).
pub const DEFAULT_EXPIRATION_SECONDS: u64 = 86_400;

/// One namespace that is a pull-through cache of an upstream registry.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyCacheNamespace {
    /// The namespace (first segment of repository names) that caches.
    pub namespace: String,
    /// `host[:port]` with an optional path prefix, Quay's form:
    /// `quay.io/prometheus` makes `<namespace>/node-exporter` a cache of
    /// `quay.io/prometheus/node-exporter`. `docker.io` means Docker Hub
    /// (`registry-1.docker.io`, one-segment names under `library/`).
    pub upstream_registry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_registry_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_registry_password: Option<String>,
    /// Seconds a cached tag is served before the upstream is asked again
    /// whether it moved (0: ask on every pull). Past it, a cached tag is
    /// still served, with a `Warning`, while the upstream is unreachable.
    #[serde(default = "default_expiration")]
    pub expiration_s: u64,
    /// Talk plain HTTP to the upstream (Quay's `insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of the CA(s) that sign the upstream's certificate, trusted
    /// besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca_file: Option<PathBuf>,
    /// The same, inline: PEM certificates (the operator renders a
    /// ConfigMap's CA here, so a new CA changes the config and reloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
}

fn default_expiration() -> u64 {
    DEFAULT_EXPIRATION_SECONDS
}

/// Passwords stay out of logs.
impl std::fmt::Debug for ProxyCacheNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCacheNamespace")
            .field("namespace", &self.namespace)
            .field("upstream_registry", &self.upstream_registry)
            .field(
                "upstream_registry_username",
                &self.upstream_registry_username,
            )
            .field(
                "upstream_registry_password",
                &self
                    .upstream_registry_password
                    .as_ref()
                    .map(|_| "<redacted>"),
            )
            .field("expiration_s", &self.expiration_s)
            .field("insecure", &self.insecure)
            .field("upstream_ca_file", &self.upstream_ca_file)
            .field("upstream_ca", &self.upstream_ca.as_ref().map(|_| "<PEM>"))
            .finish()
    }
}

/// Where an upstream is and which of its repositories a namespace mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddress {
    /// `host[:port]` as connected to.
    pub host: String,
    /// Repository path prefix at the upstream, without slashes at the ends.
    pub prefix: Option<String>,
    /// Docker Hub: one-segment names live under `library/`.
    pub docker_hub: bool,
}

impl UpstreamAddress {
    /// Parse `host[:port][/prefix]`; the reason when it is not one.
    pub fn parse(raw: &str) -> Result<UpstreamAddress, String> {
        if raw.contains("://") {
            return Err(format!(
                "{raw:?} has a scheme: give host[:port][/path] (set insecure: true for plain HTTP)"
            ));
        }
        let (host, prefix) = match raw.split_once('/') {
            Some((host, prefix)) => (host, Some(prefix.trim_end_matches('/'))),
            None => (raw, None),
        };
        if !crate::config::is_host_name(host) {
            return Err(format!(
                "{host:?} is not a host name with an optional :port"
            ));
        }
        let prefix = match prefix {
            None | Some("") => None,
            Some(p) if RepoName::parse(p).is_some() => Some(p.to_string()),
            Some(p) => {
                return Err(format!(
                    "path prefix {p:?} is not a repository path (lowercase segments separated by /)"
                ));
            }
        };
        let docker_hub = matches!(
            host,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        );
        Ok(UpstreamAddress {
            host: if docker_hub {
                "registry-1.docker.io".into()
            } else {
                host.to_string()
            },
            prefix,
            docker_hub,
        })
    }

    /// The upstream repository behind `path`, the part of a local name
    /// after the cache namespace.
    pub fn remote_name(&self, path: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}/{path}"),
            None if self.docker_hub && !path.contains('/') => format!("library/{path}"),
            None => path.to_string(),
        }
    }
}

impl ProxyCacheNamespace {
    /// What is wrong with it, if anything (for config validation).
    pub fn problem(&self) -> Option<String> {
        if !valid_namespace(&self.namespace) || self.namespace == ALL_NAMESPACES {
            return Some(format!(
                "namespace {:?} is not a repository namespace (one lowercase path segment)",
                self.namespace
            ));
        }
        if let Err(reason) = UpstreamAddress::parse(&self.upstream_registry) {
            return Some(format!("upstream_registry: {reason}"));
        }
        match (
            &self.upstream_registry_username,
            &self.upstream_registry_password,
        ) {
            (Some(_), None) => {
                return Some(
                    "upstream_registry_username is set without upstream_registry_password".into(),
                );
            }
            (None, Some(_)) => {
                return Some(
                    "upstream_registry_password is set without upstream_registry_username".into(),
                );
            }
            _ => {}
        }
        ca_problem(
            self.insecure,
            self.upstream_ca_file.as_deref(),
            self.upstream_ca.as_deref(),
        )
    }
}

/// What is wrong with an upstream's CA settings, if anything.
pub fn ca_problem(
    insecure: bool,
    ca_file: Option<&std::path::Path>,
    ca_pem: Option<&str>,
) -> Option<String> {
    if insecure && (ca_file.is_some() || ca_pem.is_some()) {
        return Some(
            "upstream_ca_file and upstream_ca are for HTTPS, but insecure: true talks plain HTTP"
                .into(),
        );
    }
    if let Some(pem) = ca_pem {
        match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Err(e) => return Some(format!("upstream_ca is not PEM certificates: {e}")),
            Ok(certs) if certs.is_empty() => {
                return Some("upstream_ca is not PEM certificates: none found".into());
            }
            Ok(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        let a = UpstreamAddress::parse("quay.io/prometheus").unwrap();
        assert_eq!(a.host, "quay.io");
        assert_eq!(a.remote_name("node-exporter"), "prometheus/node-exporter");
        let hub = UpstreamAddress::parse("docker.io").unwrap();
        assert_eq!(hub.host, "registry-1.docker.io");
        assert_eq!(hub.remote_name("alpine"), "library/alpine");
        assert_eq!(hub.remote_name("bitnami/redis"), "bitnami/redis");
        let local = UpstreamAddress::parse("127.0.0.1:5000").unwrap();
        assert_eq!(local.remote_name("a/b"), "a/b");
        assert!(UpstreamAddress::parse("https://quay.io").is_err());
        assert!(UpstreamAddress::parse("quay.io/UPPER").is_err());
        assert!(UpstreamAddress::parse("bad host").is_err());
    }

    #[test]
    fn an_inline_ca_must_hold_certificates_and_is_for_https() {
        let cert = rcgen::generate_simple_self_signed(vec!["upstream.test".into()]).unwrap();
        let pem = cert.cert.pem();
        assert_eq!(ca_problem(false, None, Some(&pem)), None);
        let none = ca_problem(false, None, Some("not a certificate")).unwrap();
        assert!(none.contains("none found"), "{none}");
        let broken = format!("{}garbage", &pem[..pem.len() / 2]);
        assert!(
            ca_problem(false, None, Some(&broken)).is_some(),
            "a cut PEM was taken"
        );
        let plain = ca_problem(true, None, Some(&pem)).unwrap();
        assert!(plain.contains("insecure: true"), "{plain}");
    }

    #[test]
    fn config_refuses_bad_entries_naming_them() {
        let yaml = r#"
FEATURE_PROXY_CACHE: true
PROXY_CACHE_NAMESPACES:
  - namespace: hub
    upstream_registry: docker.io
  - namespace: hub
    upstream_registry: quay.io
  - namespace: lab
    upstream_registry: "http://10.0.0.5:5000"
  - namespace: corp
    upstream_registry: registry.corp.example
    upstream_registry_username: robot
  - namespace: "*"
    upstream_registry: ghcr.io
"#;
        let error = crate::config::RegistryConfig::from_yaml(yaml, None).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("PROXY_CACHE_NAMESPACES[1]: namespace \"hub\" is listed twice"),
            "{text}"
        );
        assert!(text.contains("PROXY_CACHE_NAMESPACES[2]: upstream_registry: \"http://10.0.0.5:5000\" has a scheme"), "{text}");
        assert!(
            text.contains("PROXY_CACHE_NAMESPACES[3]: upstream_registry_username is set without"),
            "{text}"
        );
        assert!(
            text.contains("PROXY_CACHE_NAMESPACES[4]: namespace \"*\""),
            "{text}"
        );
        let good = crate::config::RegistryConfig::from_yaml(
            "FEATURE_PROXY_CACHE: true\nPROXY_CACHE_NAMESPACES: [{namespace: hub, upstream_registry: docker.io}]\n",
            None,
        )
        .unwrap()
        .config;
        assert_eq!(
            good.proxy_cache_namespaces[0].expiration_s,
            DEFAULT_EXPIRATION_SECONDS
        );
        assert!(
            !format!(
                "{:?}",
                ProxyCacheNamespace {
                    upstream_registry_password: Some("hunter2".into()),
                    ..good.proxy_cache_namespaces[0].clone()
                }
            )
            .contains("hunter2")
        );
    }
}

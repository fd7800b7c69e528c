//! The Secrets and the ConfigMap whose content the operator makes up:
//! generated accounts and their passwords, the token signing key, the
//! managed CA and serving certificate. What already exists is read back
//! (dereference) and kept while it is still good, so these objects are
//! written once and then only when something must change (a renewal, a
//! deleted Secret, an edited accounts Secret): a resync writes nothing, and
//! the pod template never depends on their content, so no change here
//! restarts the registry (it reloads the files).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use quarry_registry::auth::accounts::ACCOUNTS_FILE_KEY;

use crate::components::auth::AuthPlan;
use crate::components::tls::TlsPlan;
use crate::crd::{ComponentKind, QuarryRegistry};
use crate::credentials::{
    Credentials, MIN_TOKEN_KEY_LEN, TOKEN_KEY, random_token_key, source_fingerprint,
};
use crate::names::{
    auth_secret_name, ca_config_map_name, ca_secret_name, credentials_secret_name, meta,
    pull_secret_name, registry_name, service_host, tls_secret_name,
};
use crate::pki::{self, CaPair, CertInfo, LeafPair};
use crate::plan::Plan;

/// Annotation of the auth Secret: what its accounts file was made from.
pub const ACCOUNTS_SOURCE_ANNOTATION: &str = "quarry.dev/accounts-source-sha256";

/// A Secret's data.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// The operator's own Secrets as they are now (data; annotations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Existing {
    pub credentials: Option<SecretData>,
    pub auth: Option<(SecretData, BTreeMap<String, String>)>,
    pub ca: Option<SecretData>,
    pub tls: Option<SecretData>,
}

/// What to apply, and what status reports about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    /// The generated accounts' Secrets and the registry's auth Secret.
    pub auth_secrets: Vec<Secret>,
    /// The managed CA's and the serving certificate's Secrets.
    pub tls_secrets: Vec<Secret>,
    pub ca_config_map: Option<ConfigMap>,
    /// The managed serving certificate.
    pub certificate: Option<CertInfo>,
    /// Why the serving certificate was (re)issued in this reconcile.
    pub issued_because: Option<String>,
    /// Why a new CA was made in this reconcile.
    pub new_ca_because: Option<String>,
    pub credentials_secret: Option<String>,
    pub pull_secret: Option<String>,
    pub ca_config_map_name: Option<String>,
}

fn text(data: Option<&BTreeMap<String, Vec<u8>>>, key: &str) -> Option<String> {
    data.and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .filter(|t| !t.is_empty())
}

impl Generated {
    /// Every generated Secret: the auth ones, then the TLS ones.
    pub fn secrets(&self) -> Vec<&Secret> {
        self.auth_secrets.iter().chain(&self.tls_secrets).collect()
    }
}

/// A generated Secret, labelled as part of `part` with the overrides of
/// the component it belongs to: the registry's for the auth Secrets, the
/// tls component's for the CA and certificate.
fn secret(
    cr: &QuarryRegistry,
    plan: &Plan,
    name: String,
    part: &str,
    type_: &str,
    data: BTreeMap<String, Vec<u8>>,
) -> Secret {
    let owner = if part == "tls" {
        ComponentKind::Tls
    } else {
        ComponentKind::Registry
    };
    Secret {
        metadata: meta(cr, name, part, plan.overrides(owner)),
        type_: Some(type_.into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

/// The host part of `host[:port]`.
fn host_part(host: &str) -> &str {
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host)
}

/// The names the serving certificate covers: the Service's DNS names,
/// spec.serverHostname, the Route host, and loopback (port-forwards).
pub fn tls_names(cr: &QuarryRegistry, plan: &Plan, route_host: Option<&str>) -> Vec<String> {
    let svc = registry_name(cr);
    let ns = cr.namespace().unwrap_or_default();
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    if let Some(host) = &plan.registry_config.server_hostname {
        names.push(host_part(host).to_string());
    }
    if let Some(host) = route_host {
        names.push(host_part(host).to_string());
    }
    names.sort();
    names.dedup();
    names
}

/// The hosts the robot's pull secret answers for.
pub fn pull_hosts(cr: &QuarryRegistry, plan: &Plan, route_host: Option<&str>) -> Vec<String> {
    let mut hosts = vec![service_host(cr)];
    hosts.extend(plan.registry_config.server_hostname.clone());
    hosts.extend(route_host.map(str::to_string));
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Decide every generated object: keep what is good, make what is missing
/// or due. `now` is unix seconds.
pub fn generate(
    cr: &QuarryRegistry,
    plan: &Plan,
    existing: &Existing,
    route_host: Option<&str>,
    now: i64,
) -> Result<Generated, String> {
    let mut out = Generated::default();
    generate_accounts(cr, plan, existing, route_host, &mut out)?;
    if plan.tls == TlsPlan::Managed {
        generate_certificates(cr, plan, existing, route_host, now, &mut out)?;
    }
    Ok(out)
}

/// The generated admin and robot (kept once made), their pull Secret, and
/// the auth Secret the registry mounts (accounts file and token key).
fn generate_accounts(
    cr: &QuarryRegistry,
    plan: &Plan,
    existing: &Existing,
    route_host: Option<&str>,
    out: &mut Generated,
) -> Result<(), String> {
    let auth_data = existing.auth.as_ref().map(|(d, _)| d);
    let auth_source = existing
        .auth
        .as_ref()
        .and_then(|(_, a)| a.get(ACCOUNTS_SOURCE_ANNOTATION).cloned());
    let accounts = match &plan.auth {
        AuthPlan::Off => None,
        AuthPlan::Generated => {
            let credentials = existing
                .credentials
                .as_ref()
                .and_then(Credentials::from_data)
                .unwrap_or_else(Credentials::generate);
            let fingerprint = credentials.fingerprint();
            let yaml = match text(auth_data, ACCOUNTS_FILE_KEY) {
                Some(kept) if auth_source.as_deref() == Some(fingerprint.as_str()) => kept,
                _ => credentials.accounts_yaml()?,
            };
            let name = credentials_secret_name(cr);
            out.auth_secrets.push(secret(
                cr,
                plan,
                name.clone(),
                "auth",
                "Opaque",
                credentials.to_data(),
            ));
            out.credentials_secret = Some(name);
            let pull = pull_secret_name(cr);
            out.auth_secrets.push(secret(
                cr,
                plan,
                pull.clone(),
                "auth",
                "kubernetes.io/dockerconfigjson",
                BTreeMap::from([(
                    ".dockerconfigjson".to_string(),
                    credentials
                        .robot_docker_config(&pull_hosts(cr, plan, route_host))
                        .into_bytes(),
                )]),
            ));
            out.pull_secret = Some(pull);
            Some((yaml, fingerprint))
        }
        AuthPlan::FromSecret { name, text } => Some((
            text.clone(),
            source_fingerprint(&format!("secret\0{name}\0{text}")),
        )),
    };
    if let Some((yaml, fingerprint)) = accounts {
        let token_key = text(auth_data, TOKEN_KEY)
            .filter(|k| k.len() >= MIN_TOKEN_KEY_LEN)
            .unwrap_or_else(random_token_key);
        let mut auth = secret(
            cr,
            plan,
            auth_secret_name(cr),
            "auth",
            "Opaque",
            BTreeMap::from([
                (ACCOUNTS_FILE_KEY.to_string(), yaml.into_bytes()),
                (TOKEN_KEY.to_string(), token_key.into_bytes()),
            ]),
        );
        auth.metadata.annotations = Some(BTreeMap::from([(
            ACCOUNTS_SOURCE_ANNOTATION.to_string(),
            fingerprint,
        )]));
        out.auth_secrets.push(auth);
    }

    Ok(())
}

/// The managed CA (kept while good) and the serving certificate (renewed
/// when due or when its names change), and the CA's public ConfigMap.
fn generate_certificates(
    cr: &QuarryRegistry,
    plan: &Plan,
    existing: &Existing,
    route_host: Option<&str>,
    now: i64,
    out: &mut Generated,
) -> Result<(), String> {
    let stored_ca = match (
        text(existing.ca.as_ref(), "ca.crt"),
        text(existing.ca.as_ref(), "ca.key"),
    ) {
        (Some(cert_pem), Some(key_pem)) => Some(CaPair { cert_pem, key_pem }),
        _ => None,
    };
    let ca = match stored_ca {
        Some(ca) => match pki::ca_problem(&ca, now) {
            None => ca,
            Some(why) => {
                out.new_ca_because = Some(why);
                pki::new_ca(&ca_common_name(cr), now)?
            }
        },
        None => pki::new_ca(&ca_common_name(cr), now)?,
    };
    let names = tls_names(cr, plan, route_host);
    let stored_leaf = match (
        text(existing.tls.as_ref(), "tls.crt"),
        text(existing.tls.as_ref(), "tls.key"),
    ) {
        (Some(cert_pem), Some(key_pem)) => Some(LeafPair { cert_pem, key_pem }),
        _ => None,
    };
    let common_name = format!(
        "{}.{}.svc",
        registry_name(cr),
        cr.namespace().unwrap_or_default()
    );
    let leaf = match stored_leaf {
        Some(leaf) => match pki::leaf_problem(&leaf, &ca, &names, now) {
            None => leaf,
            Some(why) => {
                out.issued_because = Some(why);
                pki::issue(&ca, &common_name, &names, now)?
            }
        },
        None => {
            out.issued_because = Some("no serving certificate yet".into());
            pki::issue(&ca, &common_name, &names, now)?
        }
    };
    out.certificate = Some(pki::inspect(&leaf.cert_pem)?);
    out.tls_secrets.push(secret(
        cr,
        plan,
        ca_secret_name(cr),
        "tls",
        "Opaque",
        BTreeMap::from([
            ("ca.crt".to_string(), ca.cert_pem.clone().into_bytes()),
            ("ca.key".to_string(), ca.key_pem.into_bytes()),
        ]),
    ));
    out.tls_secrets.push(secret(
        cr,
        plan,
        tls_secret_name(cr),
        "tls",
        "kubernetes.io/tls",
        BTreeMap::from([
            ("tls.crt".to_string(), leaf.cert_pem.into_bytes()),
            ("tls.key".to_string(), leaf.key_pem.into_bytes()),
            ("ca.crt".to_string(), ca.cert_pem.clone().into_bytes()),
        ]),
    ));
    let cm_name = ca_config_map_name(cr);
    out.ca_config_map = Some(ConfigMap {
        metadata: meta(
            cr,
            cm_name.clone(),
            "tls",
            plan.overrides(ComponentKind::Tls),
        ),
        data: Some(BTreeMap::from([("ca.crt".to_string(), ca.cert_pem)])),
        ..ConfigMap::default()
    });
    out.ca_config_map_name = Some(cm_name);
    Ok(())
}

fn ca_common_name(cr: &QuarryRegistry) -> String {
    format!(
        "Quarry registry CA {}/{}",
        cr.namespace().unwrap_or_default(),
        cr.name_any()
    )
}

/// Data of an existing Secret (data and stringData merged).
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    if let Some(strings) = &s.string_data {
        for (k, v) in strings {
            data.insert(k.clone(), v.clone().into_bytes());
        }
    }
    data
}

/// What `generate` made, as `Existing` (what the next reconcile reads).
pub fn as_existing(g: &Generated, cr: &QuarryRegistry) -> Existing {
    let find = |name: String| {
        g.secrets()
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
    };
    Existing {
        credentials: find(credentials_secret_name(cr)).map(secret_data),
        auth: find(auth_secret_name(cr)).map(|s| {
            (
                secret_data(s),
                s.metadata.annotations.clone().unwrap_or_default(),
            )
        }),
        ca: find(ca_secret_name(cr)).map(secret_data),
        tls: find(tls_secret_name(cr)).map(secret_data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Inputs, Referenced, plan as validate, plan_with as validate_with};

    const NOW: i64 = 1_800_000_000;

    fn cr(spec: &str) -> QuarryRegistry {
        let mut cr: QuarryRegistry = serde_norway::from_str(&format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: demo, namespace: ns}}\nspec: {spec}\n"
        ))
        .unwrap();
        cr.metadata.uid = Some("uid-1".into());
        cr
    }

    fn names(g: &Generated) -> Vec<String> {
        g.secrets()
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn defaults_generate_once_and_then_keep_everything() {
        let cr = cr("{serverHostname: 'registry.example.com:8443'}");
        let plan = validate(
            &cr.spec,
            &crate::plan::Bundle::None,
            "v",
            Default::default(),
        )
        .unwrap();
        let first = generate(&cr, &plan, &Existing::default(), None, NOW).unwrap();
        assert_eq!(
            names(&first),
            [
                "demo-registry-credentials",
                "demo-registry-pull",
                "demo-registry-auth",
                "demo-registry-ca-key",
                "demo-registry-tls"
            ]
        );
        assert_eq!(
            first.issued_because.as_deref(),
            Some("no serving certificate yet")
        );
        let cert = first.certificate.clone().unwrap();
        for name in [
            "demo-registry",
            "demo-registry.ns",
            "demo-registry.ns.svc",
            "demo-registry.ns.svc.cluster.local",
            "registry.example.com",
            "127.0.0.1",
        ] {
            assert!(
                cert.sans.contains(&name.to_string()),
                "{name} not in {:?}",
                cert.sans
            );
        }
        // Read back: nothing changes (no writes on a resync).
        let again = generate(&cr, &plan, &as_existing(&first, &cr), None, NOW + 3600).unwrap();
        assert_eq!(again.secrets(), first.secrets());
        assert_eq!(again.ca_config_map, first.ca_config_map);
        assert_eq!(again.issued_because, None);
        // Due for renewal: a new serving certificate from the same CA, same
        // passwords and token key.
        let later = generate(
            &cr,
            &plan,
            &as_existing(&first, &cr),
            None,
            NOW + 61 * 86_400,
        )
        .unwrap();
        assert!(
            later
                .issued_because
                .as_deref()
                .unwrap()
                .contains("expires in 29 days")
        );
        assert_eq!(later.secrets()[..4], first.secrets()[..4]);
        assert_ne!(later.secrets()[4], first.secrets()[4]);
        // A Route host joins the names: reissued.
        let routed = generate(
            &cr,
            &plan,
            &as_existing(&first, &cr),
            Some("demo.apps.example.com"),
            NOW,
        )
        .unwrap();
        assert!(
            routed
                .certificate
                .unwrap()
                .sans
                .contains(&"demo.apps.example.com".to_string())
        );
    }

    #[test]
    fn a_user_accounts_secret_is_copied_and_tls_can_be_off() {
        let cr = cr("{auth: {accountsSecret: mine}, components: [{kind: tls, managed: false}]}");
        let yaml = "accounts: {}\n";
        let inputs = Inputs {
            accounts: Referenced::Found(BTreeMap::from([(
                "accounts.yaml".to_string(),
                yaml.as_bytes().to_vec(),
            )])),
            ..Inputs::bundle(crate::plan::Bundle::None)
        };
        let plan = validate_with(&cr.spec, &inputs, "v", Default::default()).unwrap();
        let g = generate(&cr, &plan, &Existing::default(), None, NOW).unwrap();
        assert_eq!(names(&g), ["demo-registry-auth"]);
        let data = secret_data(g.secrets()[0]);
        assert_eq!(data["accounts.yaml"], yaml.as_bytes());
        assert!(data["token.key"].len() >= 32);
        assert!(g.ca_config_map.is_none() && g.credentials_secret.is_none());
        let again = generate(&cr, &plan, &as_existing(&g, &cr), None, NOW).unwrap();
        assert_eq!(again, g);
    }
}

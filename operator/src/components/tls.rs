//! The tls component: HTTPS on the registry's own port. Managed, the
//! operator's CA and a serving certificate it keeps renewed (made in
//! `generated`); unmanaged, the user's kubernetes.io/tls Secret of
//! `spec.tls.certificateSecret`, else plain HTTP.

use std::collections::BTreeMap;

use super::auth::{AuthPlan, mount_secret};
use super::{
    BuildContext, BuildError, Component, METADATA_OVERRIDES, OverrideField, PodParts, StatusInput,
};
use crate::crd::ComponentKind;
use crate::names::{ca_config_map_name, tls_secret_name};
use crate::pki::{self, CertInfo};
use crate::plan::{Issues, Plan, PlanInput, Referenced};
use crate::resources::Resources;
use crate::status::StatusDraft;

/// Where the serving certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/quarry/tls";

/// Labels and annotations, on the CA and certificate Secrets and the CA
/// ConfigMap.
pub const OVERRIDES: &[OverrideField] = METADATA_OVERRIDES;

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

pub struct Tls;

impl Component for Tls {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let certificate_secret = input
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.certificate_secret.clone());
        plan.tls = match (certificate_secret, plan.managed(ComponentKind::Tls)) {
            (Some(_), true) => {
                issues.error(
                    "spec.tls.certificateSecret",
                    "applies only with the tls component unmanaged (spec.components lists it as managed): remove one of the two",
                );
                TlsPlan::Managed
            }
            (None, true) => TlsPlan::Managed,
            (None, false) => TlsPlan::Off,
            (Some(name), false) => provided(input, &name, issues),
        };
        scheme_and_warnings(plan, issues);
    }

    fn pod(&self, cx: &BuildContext<'_>, pod: &mut PodParts) {
        let secret = match &cx.plan.tls {
            TlsPlan::Off => return,
            TlsPlan::Managed => tls_secret_name(cx.cr),
            TlsPlan::Provided { secret, .. } => secret.clone(),
        };
        mount_secret(pod, "tls", secret, TLS_DIR);
        pod.args.extend([
            "--tls-cert".to_string(),
            format!("{TLS_DIR}/tls.crt"),
            "--tls-key".to_string(),
            format!("{TLS_DIR}/tls.key"),
        ]);
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        for secret in &cx.generated.tls_secrets {
            out.add(secret)?;
        }
        if let Some(cm) = &cx.generated.ca_config_map {
            out.add(cm)?;
        }
        Ok(())
    }

    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        let (ok, reason, message, not_after) = report(cx);
        draft.status.certificate_not_after = not_after.map(pki::rfc3339);
        draft.status.ca_config_map = cx.generated.ca_config_map_name.clone();
        draft.set_condition("ComponentTlsReady", ok, reason, message);
    }
}

/// ComponentTlsReady: (ok, reason, message, certificate expiry).
fn report(cx: &StatusInput<'_>) -> (bool, &'static str, String, Option<i64>) {
    let cr = cx.cr;
    match &cx.plan.tls {
        TlsPlan::Off => (
            true,
            "ComponentNotManaged",
            "the registry serves plain HTTP (tls component unmanaged, no spec.tls.certificateSecret); terminate TLS in front of it".to_string(),
            None,
        ),
        TlsPlan::Managed => match &cx.generated.certificate {
            Some(cert) => (
                true,
                "CertificateIssued",
                format!(
                    "serving certificate in Secret {} valid until {}, renewed from {}; CA certificate in ConfigMap {}; names: {}",
                    tls_secret_name(cr),
                    pki::rfc3339(cert.not_after),
                    pki::rfc3339(pki::renew_at(cert.not_after)),
                    ca_config_map_name(cr),
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
            let valid = info.not_after > cx.now;
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
    }
}

/// The user's certificate Secret, checked.
fn provided(input: &PlanInput<'_>, name: &str, issues: &mut Issues) -> TlsPlan {
    const PATH: &str = "spec.tls.certificateSecret";
    let data = match &input.inputs.certificate {
        Referenced::Found(data) => data,
        Referenced::Missing(why) => {
            issues.error(PATH, why.clone());
            return TlsPlan::Off;
        }
        Referenced::None => {
            issues.error(PATH, format!("Secret {name:?} was not read"));
            return TlsPlan::Off;
        }
    };
    let info = match certificate_problems(data) {
        Ok(info) => info,
        Err(problems) => {
            for p in problems {
                issues.error(PATH, format!("Secret {name:?}: {p}"));
            }
            return TlsPlan::Off;
        }
    };
    if let Some(host) = &input.spec.server_hostname {
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        if !info.sans.iter().any(|san| name_matches(san, host)) {
            issues.warn(format!(
                "the certificate in Secret {name:?} does not name spec.serverHostname {host} (it names {}): clients will refuse it",
                info.sans.join(", ")
            ));
        }
    }
    if info.not_after <= input.inputs.now {
        issues.warn(format!(
            "the certificate in Secret {name:?} expired at {}",
            pki::rfc3339(info.not_after)
        ));
    }
    TlsPlan::Provided {
        secret: name.to_string(),
        info,
    }
}

/// The URL scheme clients use, and what to say about plain HTTP.
fn scheme_and_warnings(plan: &mut Plan, issues: &mut Issues) {
    let route = plan.managed(ComponentKind::Route);
    let ingress = plan.overrides(ComponentKind::Ingress).cloned();
    let https = plan.tls.serves_https();
    if https || route {
        if plan.from_bundle("PREFERRED_URL_SCHEME")
            && plan.registry_config.preferred_url_scheme.as_deref() != Some("https")
        {
            issues.warn(format!(
                "PREFERRED_URL_SCHEME={} from the config bundle is replaced by https: clients reach the registry over HTTPS",
                plan.registry_config
                    .preferred_url_scheme
                    .as_deref()
                    .unwrap_or_default()
            ));
        }
        plan.registry_config.preferred_url_scheme = Some("https".into());
    }
    if plan.auth != AuthPlan::Off && !https && !route && ingress.is_none() {
        issues.warn(
            "the registry serves plain HTTP: passwords and tokens cross the network unencrypted unless TLS terminates in front of it (tls component, spec.tls.certificateSecret)",
        );
    }
    let tells_backend_protocol = |a: &BTreeMap<String, String>| {
        a.keys()
            .any(|k| k.contains("backend-protocol") || k.contains("ssl-passthrough"))
    };
    if https
        && let Some(o) = &ingress
        && !o.annotations.as_ref().is_some_and(tells_backend_protocol)
    {
        issues.warn(
            "the registry serves HTTPS: tell the ingress controller to speak HTTPS to it (ingress-nginx: annotation nginx.ingress.kubernetes.io/backend-protocol: HTTPS) or switch the tls component off",
        );
    }
}

/// Whether a certificate name (possibly `*.domain`) covers `host`.
pub fn name_matches(san: &str, host: &str) -> bool {
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

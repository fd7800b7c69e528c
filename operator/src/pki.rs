//! The managed tls component's certificates: a CA kept for the life of
//! the resource and a serving certificate it signs, reissued well before
//! it expires or when the names it must cover change. Pure apart from the
//! randomness of new keys: the caller passes the time, so every decision
//! (keep, renew, why) is unit-tested.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const DAY: i64 = 86_400;
/// Lifetime of the CA.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// A CA with less than this left is replaced (with every certificate it
/// signed; clients then need the new CA).
pub const CA_MIN_REMAINING_DAYS: i64 = 30;
/// Lifetime of a serving certificate.
pub const LEAF_VALIDITY_DAYS: i64 = 90;
/// A serving certificate is reissued when less than this is left.
pub const LEAF_RENEW_BEFORE_DAYS: i64 = 30;

/// A CA: its certificate and private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Unix seconds.
    pub not_after: i64,
    /// DNS names and IP addresses, sorted.
    pub sans: Vec<String>,
}

fn parse_first(pem: &str) -> Result<x509_parser::pem::Pem, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("no PEM certificate (-----BEGIN CERTIFICATE-----): {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "the first PEM block is a {:?}, not a CERTIFICATE",
            pem.label
        ));
    }
    Ok(pem)
}

fn with_cert<T>(
    pem: &str,
    f: impl FnOnce(&X509Certificate<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let block = parse_first(pem)?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    f(&cert)
}

fn sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    sans.sort();
    sans.dedup();
    sans
}

/// Read the first certificate of a PEM file: expiry and names.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, String> {
    with_cert(cert_pem, |cert| {
        Ok(CertInfo {
            not_after: cert.validity().not_after.timestamp(),
            sans: sans_of(cert),
        })
    })
}

fn time_at(unix: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| format!("time {unix}: {e}"))
}

/// A new CA named `common_name`, valid from `now` for CA_VALIDITY_DAYS.
pub fn new_ca(common_name: &str, now: i64) -> Result<CaPair, String> {
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Quarry");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_at(now - 3600)?;
    params.not_after = time_at(now + CA_VALIDITY_DAYS * DAY)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("signing the CA certificate: {e}"))?;
    Ok(CaPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Why a stored CA cannot be used (None: it can).
pub fn ca_problem(ca: &CaPair, now: i64) -> Option<String> {
    let key = match KeyPair::from_pem(&ca.key_pem) {
        Ok(k) => k,
        Err(e) => return Some(format!("the CA key does not parse: {e}")),
    };
    let checked = with_cert(&ca.cert_pem, |cert| {
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err("the CA certificate does not belong to the CA key".into());
        }
        if !cert.is_ca() {
            return Err("the CA certificate is not a CA".into());
        }
        if cert.validity().not_after.timestamp() < now + CA_MIN_REMAINING_DAYS * DAY {
            return Err("the CA expires within 30 days".into());
        }
        Ok(())
    });
    checked.err()
}

/// Issue a serving certificate for `sans` (DNS names or IP addresses),
/// valid LEAF_VALIDITY_DAYS (never beyond the CA).
pub fn issue(
    ca: &CaPair,
    common_name: &str,
    sans: &[String],
    now: i64,
) -> Result<LeafPair, String> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| format!("the CA key: {e}"))?;
    let ca_not_after = inspect(&ca.cert_pem)?.not_after;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| format!("the CA certificate: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("{s:?} cannot be a certificate name: {e}")),
        })
        .collect::<Result<_, String>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = time_at(now - 3600)?;
    params.not_after = time_at((now + LEAF_VALIDITY_DAYS * DAY).min(ca_not_after))?;
    let key = KeyPair::generate().map_err(|e| format!("generating the serving key: {e}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("signing the serving certificate: {e}"))?;
    Ok(LeafPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Why a stored serving certificate must be reissued (None: keep it).
pub fn leaf_problem(leaf: &LeafPair, ca: &CaPair, sans: &[String], now: i64) -> Option<String> {
    let key = match KeyPair::from_pem(&leaf.key_pem) {
        Ok(k) => k,
        Err(e) => return Some(format!("the key does not parse: {e}")),
    };
    let ca_block = match parse_first(&ca.cert_pem) {
        Ok(b) => b,
        Err(e) => return Some(format!("the CA certificate: {e}")),
    };
    let ca_cert = match ca_block.parse_x509() {
        Ok(c) => c,
        Err(e) => return Some(format!("the CA certificate: {e}")),
    };
    let mut wanted: Vec<String> = sans.to_vec();
    wanted.sort();
    wanted.dedup();
    with_cert(&leaf.cert_pem, |cert| {
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err("the certificate does not belong to the key".into());
        }
        if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
            return Err("the certificate is not signed by the current CA".into());
        }
        let left = cert.validity().not_after.timestamp() - now;
        if left < LEAF_RENEW_BEFORE_DAYS * DAY {
            return Err(format!(
                "the certificate expires in {} days (renewed {LEAF_RENEW_BEFORE_DAYS} days before)",
                left.max(0) / DAY
            ));
        }
        let have = sans_of(cert);
        if have != wanted {
            return Err(format!(
                "the certificate's names {have:?} differ from the names it must cover {wanted:?}"
            ));
        }
        Ok(())
    })
    .err()
}

/// When a certificate that expires at `not_after` is due for renewal.
pub fn renew_at(not_after: i64) -> i64 {
    not_after - LEAF_RENEW_BEFORE_DAYS * DAY
}

/// RFC 3339 form of unix seconds (UTC).
pub fn rfc3339(unix: i64) -> String {
    time_at(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn names() -> Vec<String> {
        vec![
            "demo-registry.ns.svc".to_string(),
            "registry.example.com".to_string(),
            "127.0.0.1".to_string(),
        ]
    }

    #[test]
    fn issued_certificate_is_kept_until_due() {
        let ca = new_ca("Quarry CA ns/demo", NOW).unwrap();
        assert_eq!(ca_problem(&ca, NOW), None);
        let leaf = issue(&ca, "demo-registry.ns.svc", &names(), NOW).unwrap();
        let info = inspect(&leaf.cert_pem).unwrap();
        assert_eq!(info.not_after, NOW + LEAF_VALIDITY_DAYS * DAY);
        let mut sorted = names();
        sorted.sort();
        assert_eq!(info.sans, sorted);
        assert_eq!(leaf_problem(&leaf, &ca, &names(), NOW), None);
        // Still fine 59 days later; due at 61.
        assert_eq!(leaf_problem(&leaf, &ca, &names(), NOW + 59 * DAY), None);
        let due = leaf_problem(&leaf, &ca, &names(), NOW + 61 * DAY).unwrap();
        assert!(due.contains("expires in 29 days"), "{due}");
        assert_eq!(renew_at(info.not_after), NOW + 60 * DAY);
    }

    #[test]
    fn changed_names_another_ca_or_key_force_a_new_certificate() {
        let ca = new_ca("CA", NOW).unwrap();
        let leaf = issue(&ca, "x", &names(), NOW).unwrap();
        let mut more = names();
        more.push("route.apps.example.com".into());
        assert!(
            leaf_problem(&leaf, &ca, &more, NOW)
                .unwrap()
                .contains("differ from the names")
        );
        let other = new_ca("CA", NOW).unwrap();
        assert!(
            leaf_problem(&leaf, &other, &names(), NOW)
                .unwrap()
                .contains("not signed by the current CA")
        );
        let stranger = issue(&ca, "x", &names(), NOW).unwrap();
        let mixed = LeafPair {
            cert_pem: leaf.cert_pem.clone(),
            key_pem: stranger.key_pem,
        };
        assert!(
            leaf_problem(&mixed, &ca, &names(), NOW)
                .unwrap()
                .contains("does not belong to the key")
        );
        assert!(
            leaf_problem(
                &LeafPair {
                    cert_pem: "junk".into(),
                    key_pem: leaf.key_pem
                },
                &ca,
                &names(),
                NOW
            )
            .is_some()
        );
    }

    #[test]
    fn ca_checks() {
        let ca = new_ca("CA", NOW).unwrap();
        assert!(
            ca_problem(&ca, NOW + (CA_VALIDITY_DAYS - 10) * DAY)
                .unwrap()
                .contains("expires within 30 days")
        );
        let other = new_ca("CA", NOW).unwrap();
        let mixed = CaPair {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        assert!(ca_problem(&mixed, NOW).is_some());
        let leaf = issue(&ca, "x", &names(), NOW).unwrap();
        let not_ca = CaPair {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        };
        assert!(ca_problem(&not_ca, NOW).unwrap().contains("not a CA"));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}

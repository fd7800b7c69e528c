//! HTTPS: the certificate and key come from PEM files (a mounted Secret,
//! often written by cert-manager or the operator) and are read again when
//! they change. New connections get the new certificate; connections
//! already open keep theirs, nothing restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use crate::metrics::{Metrics, ResultLabels};

/// Where the serving certificate (with its chain) and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Use ring for every TLS operation of the process. Called once at start;
/// later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// A rustls server configuration (HTTP/2 and HTTP/1.1) from the files.
/// Errors name the file and what is wrong with it.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<(ServerConfig, [u8; 32])> {
    let cert_pem = read(&files.cert, "certificate")?;
    let key_pem = read(&files.key, "key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", files.cert.display()))?;
    if chain.is_empty() {
        bail!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
        format!(
            "{} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM)",
            files.key.display()
        )
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key in {} does not fit the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut hasher = Sha256::new();
    hasher.update(&cert_pem);
    hasher.update(&key_pem);
    Ok((config, hasher.finalize().into()))
}

/// Load the files once, for the listener.
pub fn load(files: &TlsFiles) -> anyhow::Result<(RustlsConfig, [u8; 32])> {
    let (config, print) = server_config(files)?;
    Ok((RustlsConfig::from_config(Arc::new(config)), print))
}

/// Poll the files; swap in a changed pair once it loads. A pair that does
/// not load (e.g. cert updated, key not yet) keeps the old one and is
/// tried again at the next tick.
pub async fn watch(
    files: TlsFiles,
    config: RustlsConfig,
    mut loaded: [u8; 32],
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error = None::<String>;
    loop {
        tick.tick().await;
        let files_now = files.clone();
        let result = tokio::task::spawn_blocking(move || server_config(&files_now)).await;
        match result {
            Ok(Ok((new_config, print))) if print != loaded => {
                config.reload_from_config(Arc::new(new_config));
                loaded = print;
                last_error = None;
                metrics
                    .tls_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Ok(Ok(_)) => last_error = None,
            Ok(Err(e)) => {
                let text = format!("{e:#}");
                if last_error.as_ref() != Some(&text) {
                    metrics
                        .tls_reloads
                        .get_or_create(&ResultLabels { result: "failure" })
                        .inc();
                    tracing::warn!(error = %text, "TLS files changed but do not load; serving the previous certificate");
                    last_error = Some(text);
                }
            }
            Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.cert.pem()).unwrap();
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn loads_a_pair_and_names_what_is_wrong() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a");
        let b = write_pair(dir.path(), "b");
        let (config, _) = server_config(&a).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");

        let mismatched = TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = format!("{:#}", server_config(&mismatched).unwrap_err());
        assert!(err.contains("does not fit"), "{err}");

        let swapped = TlsFiles {
            cert: a.key.clone(),
            key: a.cert.clone(),
        };
        let err = format!("{:#}", server_config(&swapped).unwrap_err());
        assert!(err.contains("no certificate"), "{err}");

        let missing = TlsFiles {
            cert: dir.path().join("nope.crt"),
            key: a.key.clone(),
        };
        let err = format!("{:#}", server_config(&missing).unwrap_err());
        assert!(err.contains("nope.crt"), "{err}");
    }
}

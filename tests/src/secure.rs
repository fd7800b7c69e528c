//! A registry with authentication and TLS, as a cluster runs it: a test CA
//! and a serving certificate for 127.0.0.1/localhost, an accounts file
//! whose hashes come from `quarry-registry hash-password`, and a token
//! signing secret.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{Registry, registry_binary, run_with_stdin};

/// A certificate authority for tests.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A serving certificate and key (PEM) for `names` (DNS names or IPs).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "quarry test registry");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The accounts every secure test registry has (all with password `PASSWORD`
/// except where noted).
pub const ADMIN: &str = "admin";
/// Pull-only robot in namespace `team`.
pub const READER: &str = "team+reader";
/// Push and pull in namespace `team` only.
pub const PUSHER: &str = "team+pusher";
pub const PASSWORD: &str = "correct horse battery staple";

/// A bcrypt hash made by the registry binary's own CLI.
pub fn hash_password(password: &str) -> String {
    let out = run_with_stdin(
        Command::new(registry_binary()).arg("hash-password"),
        &format!("{password}\n"),
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// The accounts file of the secure test registries.
pub fn accounts_yaml(hash: &str) -> String {
    format!(
        "accounts:\n  {ADMIN}:\n    password_hash: \"{hash}\"\n    access: {{\"*\": [pull, push, delete]}}\n  {READER}:\n    password_hash: \"{hash}\"\n    access: {{team: [pull]}}\n  {PUSHER}:\n    password_hash: \"{hash}\"\n    access: {{team: [pull, push]}}\n"
    )
}

/// A running registry with auth and TLS, and the files clients need.
pub struct SecureRegistry {
    pub registry: Registry,
    /// The CA certificate clients trust (PEM file).
    pub ca_file: PathBuf,
    /// A folder holding `ca.crt`, for `--cert-dir` of skopeo and podman.
    pub cert_dir: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub accounts_file: PathBuf,
    pub dir: tempfile::TempDir,
}

impl SecureRegistry {
    /// Start with the test accounts and `extra` config lines.
    pub fn start(extra: &str) -> SecureRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("quarry test CA");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write CA");
        let cert_dir = dir.path().join("certs.d");
        std::fs::create_dir_all(&cert_dir).expect("cert dir");
        std::fs::write(cert_dir.join("ca.crt"), &ca.cert_pem).expect("write CA");
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
        let cert_file = dir.path().join("tls.crt");
        let key_file = dir.path().join("tls.key");
        std::fs::write(&cert_file, cert).expect("write cert");
        std::fs::write(&key_file, key).expect("write key");
        let accounts_file = dir.path().join("accounts.yaml");
        std::fs::write(&accounts_file, accounts_yaml(&hash_password(PASSWORD)))
            .expect("write accounts");
        let key_path = dir.path().join("token.key");
        let secret: [u8; 32] = rand::random();
        std::fs::write(&key_path, hex::encode(secret)).expect("write token key");
        let config = format!(
            "AUTH_ACCOUNTS_FILE: {}\nAUTH_TOKEN_KEY_FILE: {}\n{extra}",
            accounts_file.display(),
            key_path.display()
        );
        let registry = Registry::start_with(
            Some(&config),
            &[
                ("QUARRY_TLS_CERT", &cert_file.display().to_string()),
                ("QUARRY_TLS_KEY", &key_file.display().to_string()),
                ("QUARRY_RELOAD_INTERVAL_SECONDS", "1"),
            ],
        );
        SecureRegistry {
            registry,
            ca_file,
            cert_dir,
            cert_file,
            key_file,
            accounts_file,
            dir,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.registry.host()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// An HTTP client that trusts only the test CA (HTTP/2 when offered).
    pub fn http(&self) -> reqwest::blocking::Client {
        client_trusting(&self.ca_file)
    }

    /// Replace a file the way a Secret update does: write aside, rename.
    pub fn replace(&self, path: &Path, content: &str) {
        let staging = path.with_extension("new");
        std::fs::write(&staging, content).expect("write");
        std::fs::rename(&staging, path).expect("rename");
    }
}

/// A blocking HTTP client trusting only the CA in `ca_file`.
pub fn client_trusting(ca_file: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca_file).expect("read CA");
    let ca = reqwest::Certificate::from_pem(&pem).expect("CA certificate");
    crate::http::blocking_builder()
        .tls_certs_only([ca])
        .build()
        .expect("HTTP client")
}

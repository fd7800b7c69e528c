//! Commands for the real registry clients, each confined to a working
//! folder (its HOME, caches and config) so tests never share state.

use std::path::Path;
use std::process::Command;

use crate::tool;

/// helm with its cache, config and data under `dir`.
pub fn helm(dir: &Path) -> Command {
    let mut c = Command::new(tool("helm"));
    c.current_dir(dir)
        .env("HOME", dir)
        .env("HELM_CACHE_HOME", dir.join(".helm/cache"))
        .env("HELM_CONFIG_HOME", dir.join(".helm/config"))
        .env("HELM_DATA_HOME", dir.join(".helm/data"));
    c
}

/// cosign verifying `reference` on a plain-HTTP registry with
/// `cosign.pub` in `dir`, without the public log.
pub fn cosign_verify_plain_http(dir: &Path, reference: &str) -> Command {
    let mut c = cosign(dir);
    c.args([
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        "--allow-insecure-registry",
        reference,
    ]);
    c
}

/// `helm registry login` to `host` over HTTPS trusting `ca`.
pub fn helm_login(dir: &Path, host: &str, user: &str, password: &str, ca: &Path) -> Command {
    let mut c = helm(dir);
    c.args(["registry", "login", host, "-u", user, "-p", password])
        .arg("--ca-file")
        .arg(ca);
    c
}

/// `helm push` of the packaged chart `archive` (in `dir`) to
/// `oci://<host>/charts` over HTTPS trusting `ca`.
pub fn helm_push_chart(dir: &Path, archive: &str, host: &str, ca: &Path) -> Command {
    let mut c = helm(dir);
    c.args(["push", archive])
        .arg(format!("oci://{host}/charts"))
        .arg("--ca-file")
        .arg(ca);
    c
}

/// cosign with an empty key password, no prompts and no shared TUF cache.
pub fn cosign(dir: &Path) -> Command {
    let mut c = Command::new(tool("cosign"));
    c.current_dir(dir)
        .env("HOME", dir)
        .env("COSIGN_PASSWORD", "")
        .env("COSIGN_YES", "true")
        .env("SIGSTORE_NO_CACHE", "true")
        .env("TUF_ROOT", dir.join(".sigstore"));
    c
}

/// cosign signing `reference` on a plain-HTTP registry with `cosign.key`
/// in `dir` (from `cosign generate-key-pair`), without the public log.
pub fn cosign_sign_plain_http(dir: &Path, reference: &str) -> Command {
    let mut c = cosign(dir);
    c.args([
        "sign",
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--allow-insecure-registry",
        reference,
    ]);
    c
}

pub fn oras(dir: &Path) -> Command {
    let mut c = Command::new(tool("oras"));
    c.current_dir(dir).env("HOME", dir);
    c
}

/// `oras attach` over plain HTTP of `file` (oras's `path[:media-type]`)
/// to `subject`, as an artifact of `artifact_type`.
pub fn oras_attach_plain_http(
    dir: &Path,
    artifact_type: &str,
    subject: &str,
    file: &str,
) -> Command {
    let mut c = oras(dir);
    c.args(["attach", "--plain-http", "--artifact-type", artifact_type])
        .arg(subject)
        .arg(file);
    c
}

/// The Python ORAS client (PyPI `oras`): a python3 that imports it.
pub fn oras_py(dir: &Path) -> Command {
    let mut c = Command::new(tool("oras-py"));
    c.current_dir(dir).env("HOME", dir);
    c
}

pub fn crane(dir: &Path) -> Command {
    let mut c = Command::new(tool("crane"));
    c.current_dir(dir).env("HOME", dir);
    c
}

/// skopeo copying the image tagged v1 of the OCI layout at `layout` to
/// `destination` (host/repository:tag) over plain HTTP.
pub fn skopeo_copy_layout(layout: &Path, destination: &str) -> Command {
    let mut c = skopeo();
    c.args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{destination}"));
    c
}

/// skopeo without a signature policy file (tests copy unsigned content).
pub fn skopeo() -> Command {
    let mut c = Command::new(tool("skopeo"));
    c.arg("--insecure-policy");
    c
}

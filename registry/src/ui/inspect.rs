//! What the UI shows of stored content: the kind of each manifest, its
//! size, an image's config, a Helm chart's files, and the referrer tree
//! (the referrers API and cosign's `sha256-<hex>.sig/.att/.sbom` tags).
//! Everything read here was pushed by users: it is data to escape, never
//! markup, and every read is bounded.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::digest::Digest;
use crate::manifest::{self, ManifestKind};
use crate::names::{RepoName, Tag};
use crate::storage::{Storage, StorageResult};

/// The largest config, payload or SBOM blob read for a page.
const JSON_LIMIT: u64 = 4 * 1024 * 1024;
/// The largest chart archive opened, and the largest file shown from it.
const CHART_LIMIT: u64 = 16 * 1024 * 1024;
const CHART_FILE_LIMIT: u64 = 256 * 1024;
/// How deep the referrer tree goes.
const TREE_DEPTH: usize = 5;
/// Referrers shown per subject.
const REFERRERS_SHOWN: usize = 200;

const COSIGN_PAYLOAD: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// What a manifest is, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
    HelmChart,
    Signature,
    Sbom,
    Attestation,
    /// Any other artifact, with its type.
    Artifact(String),
}

impl Kind {
    pub fn label(&self) -> String {
        match self {
            Kind::Image => "image".into(),
            Kind::Index => "multi-platform index".into(),
            Kind::HelmChart => "Helm chart".into(),
            Kind::Signature => "signature".into(),
            Kind::Sbom => "SBOM".into(),
            Kind::Attestation => "attestation".into(),
            Kind::Artifact(t) => format!("artifact ({t})"),
        }
    }

    /// Whether it is about another manifest rather than content of its own.
    pub fn is_supplement(&self) -> bool {
        matches!(self, Kind::Signature | Kind::Sbom | Kind::Attestation)
    }
}

fn kind_of_type(t: &str) -> Option<Kind> {
    let t = t.to_ascii_lowercase();
    if t.contains("spdx") || t.contains("cyclonedx") || t.contains("syft") {
        Some(Kind::Sbom)
    } else if t.contains("signature")
        || t.contains("sigstore.bundle")
        || t.contains("simplesigning")
    {
        Some(Kind::Signature)
    } else if t.contains("in-toto") || t.contains("dsse") || t.contains("attestation") {
        Some(Kind::Attestation)
    } else {
        None
    }
}

/// One stored manifest, parsed.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub kind: Kind,
    pub artifact_type: Option<String>,
    /// The manifest's own bytes plus what it names directly.
    pub size: u64,
    pub json: Value,
    pub facts: manifest::ManifestFacts,
}

impl Manifest {
    pub fn annotations(&self) -> Vec<(String, String)> {
        strings(self.json.get("annotations"))
    }

    /// Blob descriptors (`layers`), with media type and size.
    pub fn layers(&self) -> Vec<Descriptor> {
        descriptors(self.json.get("layers"))
    }

    /// An index's entries.
    pub fn entries(&self) -> Vec<Descriptor> {
        descriptors(self.json.get("manifests"))
    }

    pub fn config(&self) -> Option<Descriptor> {
        descriptors(Some(&Value::Array(vec![self.json.get("config")?.clone()])))
            .into_iter()
            .next()
    }
}

/// A descriptor as the UI shows it.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub platform: Option<String>,
    pub artifact_type: Option<String>,
}

fn descriptors(list: Option<&Value>) -> Vec<Descriptor> {
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    items
        .iter()
        .map(|d| Descriptor {
            digest: text(d.get("digest")),
            media_type: text(d.get("mediaType")),
            size: d.get("size").and_then(Value::as_u64).unwrap_or(0),
            platform: d.get("platform").map(|p| {
                [
                    text(p.get("os")),
                    text(p.get("architecture")),
                    text(p.get("variant")),
                ]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/")
            }),
            artifact_type: d
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `key: value` pairs of a JSON object (labels, annotations).
pub fn strings(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), text(Some(v))))
            .collect(),
        _ => Vec::new(),
    }
}

/// Parsed manifests by digest, for the pages. A digest names its content,
/// so an entry never goes stale; callers reach a digest through the
/// repository's own tags, links or referrers before they look it up here.
#[derive(Default)]
pub struct ManifestCache {
    entries: std::sync::Mutex<std::collections::HashMap<Digest, Arc<Manifest>>>,
}

/// Manifests kept before the cache starts over (a few KiB each).
const CACHED_MANIFESTS: usize = 8192;

impl ManifestCache {
    /// The manifest `digest` of `repo`, parsed, from the cache or storage.
    pub async fn get(
        &self,
        storage: &dyn Storage,
        repo: &RepoName,
        digest: &Digest,
    ) -> StorageResult<Option<Arc<Manifest>>> {
        if let Some(found) = self
            .entries
            .lock()
            .ok()
            .and_then(|e| e.get(digest).cloned())
        {
            return Ok(Some(found));
        }
        let Some(parsed) = manifest(storage, repo, digest).await? else {
            return Ok(None);
        };
        let parsed = Arc::new(parsed);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHED_MANIFESTS {
                entries.clear();
            }
            entries.insert(digest.clone(), parsed.clone());
        }
        Ok(Some(parsed))
    }
}

/// Read and parse a manifest of `repo`.
pub async fn manifest(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<Option<Manifest>> {
    let Some(stored) = storage.manifest_get(repo, digest).await? else {
        return Ok(None);
    };
    let Ok(facts) = manifest::inspect(Some(&stored.media_type), &stored.bytes, digest.algorithm())
    else {
        return Ok(None);
    };
    let json: Value = serde_json::from_slice(&stored.bytes).unwrap_or(Value::Null);
    let kind = match facts.kind {
        ManifestKind::Index => match facts.artifact_type.as_deref().and_then(kind_of_type) {
            Some(k) => k,
            None => Kind::Index,
        },
        ManifestKind::Schema1 => Kind::Image,
        ManifestKind::Image => image_kind(&facts),
    };
    let named: u64 = descriptors(json.get("layers"))
        .iter()
        .chain(descriptors(json.get("manifests")).iter())
        .map(|d| d.size)
        .sum::<u64>()
        + json
            .get("config")
            .and_then(|c| c.get("size"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
    Ok(Some(Manifest {
        digest: digest.clone(),
        media_type: stored.media_type.clone(),
        artifact_type: facts.referrer_artifact_type(),
        kind,
        size: stored.bytes.len() as u64 + named,
        json,
        facts,
    }))
}

fn image_kind(facts: &manifest::ManifestFacts) -> Kind {
    let config = facts.config_media_type.as_deref().unwrap_or_default();
    if config == crate::policy::HELM_CONFIG {
        return Kind::HelmChart;
    }
    if facts.layer_media_types.iter().any(|t| t == COSIGN_PAYLOAD) {
        return Kind::Signature;
    }
    if facts.layer_media_types.iter().any(|t| t == DSSE) {
        return Kind::Attestation;
    }
    let declared = facts
        .artifact_type
        .clone()
        .or_else(|| (!is_image_config(config)).then(|| config.to_string()));
    match declared {
        None => Kind::Image,
        Some(t) => kind_of_type(&t).unwrap_or(Kind::Artifact(t)),
    }
}

fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.config.v1+json"
            | "application/vnd.docker.container.image.v1+json"
            | ""
    )
}

/// A small blob, whole; `None` when absent or over `limit`.
pub async fn small_blob(storage: &dyn Storage, digest: &str, limit: u64) -> Option<Bytes> {
    let digest: Digest = digest.parse().ok()?;
    let size = storage.blob_size(&digest).await.ok()??;
    if size > limit {
        return None;
    }
    let mut stream = storage.blob_read(&digest, None).await.ok()?;
    let mut out = Vec::with_capacity(usize::try_from(size).ok()?);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.ok()?);
        if out.len() as u64 > limit {
            return None;
        }
    }
    Some(Bytes::from(out))
}

/// An image's config: what runs and how it was made.
#[derive(Debug, Default)]
pub struct ImageConfig {
    pub created: String,
    pub platform: String,
    pub entrypoint: String,
    pub cmd: String,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
}

pub async fn image_config(storage: &dyn Storage, m: &Manifest) -> Option<ImageConfig> {
    let config = m.config()?;
    if !is_image_config(&config.media_type) {
        return None;
    }
    let bytes = small_blob(storage, &config.digest, JSON_LIMIT).await?;
    let json: Value = serde_json::from_slice(&bytes).ok()?;
    let inner = json.get("config").cloned().unwrap_or(Value::Null);
    let list = |v: Option<&Value>| match v {
        Some(Value::Array(items)) => items.iter().map(|i| text(Some(i))).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    Some(ImageConfig {
        created: text(json.get("created")),
        platform: [text(json.get("os")), text(json.get("architecture"))]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/"),
        entrypoint: list(inner.get("Entrypoint")).join(" "),
        cmd: list(inner.get("Cmd")).join(" "),
        env: list(inner.get("Env")),
        labels: strings(inner.get("Labels")),
    })
}

/// What a Helm chart's archive says.
#[derive(Debug, Default)]
pub struct Chart {
    /// Chart.yaml's fields, from the chart's config blob.
    pub name: String,
    pub version: String,
    pub app_version: String,
    pub description: String,
    pub dependencies: Vec<String>,
    pub maintainers: Vec<String>,
    pub values: Option<String>,
    pub readme: Option<String>,
    /// Whether a provenance file (`helm push` of a signed chart) is there.
    pub provenance: bool,
}

pub async fn chart(storage: &dyn Storage, m: &Manifest) -> Option<Chart> {
    let config = m.config()?;
    let meta: Value =
        serde_json::from_slice(&small_blob(storage, &config.digest, JSON_LIMIT).await?)
            .unwrap_or(Value::Null);
    let names = |v: Option<&Value>, key: &str| match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i.get(key) {
                Some(_) => {
                    let version = text(i.get("version"));
                    let mut s = text(i.get(key));
                    if !version.is_empty() {
                        s.push(' ');
                        s.push_str(&version);
                    }
                    if let Some(email) = i.get("email").and_then(Value::as_str) {
                        s.push_str(&format!(" <{email}>"));
                    }
                    s
                }
                None => text(Some(i)),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut chart = Chart {
        name: text(meta.get("name")),
        version: text(meta.get("version")),
        app_version: text(meta.get("appVersion")),
        description: text(meta.get("description")),
        dependencies: names(meta.get("dependencies"), "name"),
        maintainers: names(meta.get("maintainers"), "name"),
        ..Chart::default()
    };
    let layers = m.layers();
    chart.provenance = layers
        .iter()
        .any(|l| l.media_type == "application/vnd.cncf.helm.chart.provenance.v1.prov");
    if let Some(archive) = layers
        .iter()
        .find(|l| l.media_type == "application/vnd.cncf.helm.chart.content.v1.tar+gzip")
        && let Some(bytes) = small_blob(storage, &archive.digest, CHART_LIMIT).await
    {
        let (values, readme) = tokio::task::spawn_blocking(move || chart_files(&bytes))
            .await
            .unwrap_or_default();
        chart.values = values;
        chart.readme = readme;
    }
    Some(chart)
}

/// `values.yaml` and the README at the top of a chart archive.
fn chart_files(archive: &[u8]) -> (Option<String>, Option<String>) {
    let mut values = None;
    let mut readme = None;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let Ok(entries) = tar.entries() else {
        return (None, None);
    };
    for entry in entries.flatten().take(10_000) {
        let Ok(path) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        // <chart>/values.yaml, <chart>/README.md: one level down only.
        let mut parts = path.split('/');
        let (Some(_), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let slot = match file {
            "values.yaml" => &mut values,
            f if f.eq_ignore_ascii_case("readme.md") => &mut readme,
            _ => continue,
        };
        let mut text = String::new();
        if entry
            .take(CHART_FILE_LIMIT)
            .read_to_string(&mut text)
            .is_ok()
        {
            *slot = Some(text);
        }
    }
    (values, readme)
}

/// One node of the referrer tree.
#[derive(Debug)]
pub struct Referrer {
    pub manifest: Arc<Manifest>,
    /// How it was found: "referrers API" or the cosign tag.
    pub found_by: String,
    /// What it says, in a line or a few (signed payload, SBOM packages,
    /// attestation predicate).
    pub details: Vec<String>,
    pub children: Vec<Referrer>,
}

/// The referrers of `subject`, and theirs, `TREE_DEPTH` levels down.
pub async fn referrer_tree(
    storage: &dyn Storage,
    cache: &ManifestCache,
    repo: &RepoName,
    subject: &Digest,
    tags: &[String],
) -> Vec<Referrer> {
    let mut visited = std::collections::HashSet::new();
    visited.insert(subject.clone());
    let walk = Walk {
        storage,
        cache,
        repo,
        tags,
    };
    tree(&walk, subject, 0, &mut visited).await
}

/// What every level of the referrer tree reads from.
struct Walk<'a> {
    storage: &'a dyn Storage,
    cache: &'a ManifestCache,
    repo: &'a RepoName,
    tags: &'a [String],
}

fn tree<'a>(
    walk: &'a Walk<'a>,
    subject: &'a Digest,
    depth: usize,
    visited: &'a mut std::collections::HashSet<Digest>,
) -> futures::future::BoxFuture<'a, Vec<Referrer>> {
    let Walk {
        storage,
        cache,
        repo,
        tags,
    } = *walk;
    Box::pin(async move {
        if depth >= TREE_DEPTH {
            return Vec::new();
        }
        let mut found: Vec<(Digest, String)> = storage
            .referrers(repo, subject)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.digest, "referrers API".to_string()))
            .collect();
        for (tag, digest) in cosign_tags(storage, repo, subject, tags).await {
            if !found.iter().any(|(d, _)| *d == digest) {
                found.push((digest, format!("tag {tag}")));
            }
        }
        let mut out = Vec::new();
        for (digest, found_by) in found.into_iter().take(REFERRERS_SHOWN) {
            if !visited.insert(digest.clone()) {
                continue;
            }
            let Ok(Some(manifest)) = cache.get(storage, repo, &digest).await else {
                continue;
            };
            let details = details(storage, &manifest).await;
            let children = tree(walk, &digest, depth + 1, visited).await;
            out.push(Referrer {
                manifest,
                found_by,
                details,
                children,
            });
        }
        out
    })
}

/// cosign's tags of `subject`: `sha256-<hex>.sig`, `.att`, `.sbom`.
async fn cosign_tags(
    storage: &dyn Storage,
    repo: &RepoName,
    subject: &Digest,
    tags: &[String],
) -> Vec<(String, Digest)> {
    let stem = format!("{}-{}", subject.algorithm().name(), subject.hex());
    let mut out = Vec::new();
    for suffix in [".sig", ".att", ".sbom"] {
        let name = format!("{stem}{suffix}");
        if !tags.contains(&name) {
            continue;
        }
        if let Some(tag) = Tag::parse(&name)
            && let Ok(Some(digest)) = storage.tag_get(repo, &tag).await
        {
            out.push((name, digest));
        }
    }
    out
}

/// Whether a tag only carries referrers of another manifest (cosign's and
/// the OCI fallback's `sha256-<hex>[.suffix]` tags).
pub fn referrer_tag_subject(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = rest.split('.').next().unwrap_or_default();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// What a supplement says: a signature's signed payload, an SBOM's
/// packages, an attestation's predicate type.
async fn details(storage: &dyn Storage, m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    if !m.kind.is_supplement() {
        return out;
    }
    for layer in m.layers().iter().take(20) {
        let Some(bytes) = small_blob(storage, &layer.digest, JSON_LIMIT).await else {
            continue;
        };
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        match &m.kind {
            Kind::Signature => out.extend(signed_payload(&json)),
            Kind::Sbom => out.extend(sbom_summary(&json)),
            Kind::Attestation => out.extend(predicate(&json)),
            _ => {}
        }
    }
    out
}

/// cosign's simple-signing payload: which image, by which reference.
fn signed_payload(json: &Value) -> Vec<String> {
    let critical = json.get("critical").cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    let digest = text(critical.pointer("/image/docker-manifest-digest"));
    if !digest.is_empty() {
        out.push(format!("signs {digest}"));
    }
    let identity = text(critical.pointer("/identity/docker-reference"));
    if !identity.is_empty() {
        out.push(format!("identity {identity}"));
    }
    if let Some(Value::Object(optional)) = json.get("optional") {
        for (k, v) in optional.iter().take(10) {
            out.push(format!("{k}: {}", text(Some(v))));
        }
    }
    out
}

fn sbom_summary(json: &Value) -> Vec<String> {
    let (format, packages) = if let Some(Value::Array(p)) = json.get("packages") {
        ("SPDX", p)
    } else if let Some(Value::Array(c)) = json.get("components") {
        ("CycloneDX", c)
    } else {
        return Vec::new();
    };
    let mut out = vec![format!("{format}: {} packages", packages.len())];
    for p in packages.iter().take(50) {
        let name = text(p.get("name"));
        let version = text(p.get("versionInfo").or_else(|| p.get("version")));
        out.push(format!("package {name} {version}").trim_end().to_string());
    }
    out
}

/// The predicate type of an in-toto statement, also inside a DSSE
/// envelope (base64 payload).
fn predicate(json: &Value) -> Vec<String> {
    use base64::Engine as _;
    let statement = match json.get("payload").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null),
        None => json.clone(),
    };
    let t = text(statement.get("predicateType"));
    if t.is_empty() {
        Vec::new()
    } else {
        vec![format!("predicate {t}")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_name_their_kind() {
        assert_eq!(kind_of_type("application/spdx+json"), Some(Kind::Sbom));
        assert_eq!(
            kind_of_type("application/vnd.cyclonedx+json"),
            Some(Kind::Sbom)
        );
        assert_eq!(
            kind_of_type("application/vnd.dev.sigstore.bundle.v0.3+json"),
            Some(Kind::Signature)
        );
        assert_eq!(
            kind_of_type("application/vnd.cncf.notary.signature"),
            Some(Kind::Signature)
        );
        assert_eq!(
            kind_of_type("application/vnd.in-toto+json"),
            Some(Kind::Attestation)
        );
        assert_eq!(kind_of_type("application/vnd.example.thing"), None);
        assert_eq!(
            referrer_tag_subject(&format!("sha256-{}.sig", "a".repeat(64))),
            Some(format!("sha256:{}", "a".repeat(64)))
        );
        assert_eq!(referrer_tag_subject("sha256-short.sig"), None);
    }

    #[test]
    fn sboms_and_statements_are_summarised() {
        let spdx = serde_json::json!({"packages": [{"name": "zlib", "versionInfo": "1.3"}]});
        assert_eq!(
            sbom_summary(&spdx),
            ["SPDX: 1 packages", "package zlib 1.3"]
        );
        use base64::Engine as _;
        let statement = base64::engine::general_purpose::STANDARD
            .encode(br#"{"predicateType":"https://slsa.dev/provenance/v1"}"#);
        let envelope = serde_json::json!({"payloadType": "application/vnd.in-toto+json", "payload": statement});
        assert_eq!(
            predicate(&envelope),
            ["predicate https://slsa.dev/provenance/v1"]
        );
    }
}

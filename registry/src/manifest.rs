//! Reading a pushed manifest: what kind it is, what it references, and its
//! digest. The bytes themselves are stored untouched; this only inspects.
//!
//! Parsing uses lenient structs of our own rather than strict spec types:
//! a registry must accept (and keep byte-exact) manifests with fields it
//! does not know, and check only what it relies on.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::{Algorithm, Digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The manifest formats the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker v2 schema 2: config + layers.
    Image,
    /// OCI image index or Docker manifest list.
    Index,
    /// Docker v2 schema 1, signed or not.
    Schema1,
}

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST_V2 => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => Some(ManifestKind::Schema1),
        _ => None,
    }
}

/// A content descriptor, as much of it as the registry needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<Map<String, Value>>,
    fs_layers: Option<Vec<Schema1Layer>>,
    signatures: Option<Vec<Schema1Signature>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Layer {
    blob_sum: String,
}

#[derive(Debug, Deserialize)]
struct Schema1Signature {
    protected: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Protected {
    format_length: usize,
    format_tail: String,
}

/// A blob or manifest the pushed manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub digest: Digest,
    pub media_type: String,
    /// Foreign (nondistributable) layers with URLs need not be pushed.
    pub may_be_absent: bool,
}

/// What the registry learned from a manifest.
#[derive(Debug, Clone)]
pub struct ManifestFacts {
    pub kind: ManifestKind,
    /// The media type the manifest is stored and served with.
    pub media_type: String,
    pub digest: Digest,
    pub config_media_type: Option<String>,
    pub artifact_type: Option<String>,
    /// Blobs the manifest needs (config, layers, schema 1 fsLayers).
    pub blobs: Vec<Reference>,
    /// Manifests an index needs.
    pub children: Vec<Reference>,
    pub layer_media_types: Vec<String>,
    pub subject: Option<Digest>,
    pub annotations: Option<Map<String, Value>>,
}

impl ManifestFacts {
    /// `artifactType` for the referrers API: the manifest's own, else its
    /// config media type.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config_media_type.clone())
    }
}

/// Why a manifest was refused: what is wrong with it, for the client. The
/// API maps it to MANIFEST_INVALID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidManifest(pub String);

fn invalid(msg: impl Into<String>) -> InvalidManifest {
    InvalidManifest(msg.into())
}

fn parse_descriptor(d: &Descriptor, field: &str) -> Result<Reference, InvalidManifest> {
    let digest = d
        .digest
        .parse()
        .map_err(|e| invalid(format!("{field}: {e}")))?;
    if d.size < 0 {
        return Err(invalid(format!("{field}: size must not be negative")));
    }
    let media_type = d.media_type.clone();
    let may_be_absent = !d.urls.is_empty() && media_type.contains("nondistributable")
        || media_type.contains("foreign");
    Ok(Reference {
        digest,
        media_type,
        may_be_absent,
    })
}

/// Inspect manifest `bytes` pushed with `content_type`. `algorithm` is the
/// digest algorithm to identify it by (that of the reference it was pushed
/// to, sha256 for a tag).
pub fn inspect(
    content_type: Option<&str>,
    bytes: &[u8],
    algorithm: Algorithm,
) -> Result<ManifestFacts, InvalidManifest> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON of a known shape: {e}")))?;

    // The media type: the request's Content-Type, else the document's own
    // `mediaType`, else what the shape says.
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (content_type, raw.media_type.as_deref()) {
        (Some(ct), Some(field)) if kind_of(ct).is_some() && ct != field => {
            return Err(invalid(format!(
                "Content-Type {ct} does not match the manifest's mediaType {field}"
            )));
        }
        (Some(ct), _) => ct.to_string(),
        (None, Some(field)) => field.to_string(),
        (None, None) => match raw.schema_version {
            Some(1) if raw.signatures.is_some() => DOCKER_MANIFEST_V1_SIGNED.to_string(),
            Some(1) => DOCKER_MANIFEST_V1.to_string(),
            _ if raw.manifests.is_some() => OCI_INDEX.to_string(),
            _ => OCI_MANIFEST.to_string(),
        },
    };
    let kind = kind_of(&media_type).ok_or_else(|| {
        invalid(format!(
            "manifest media type {media_type} is not supported; push an OCI image manifest ({OCI_MANIFEST}), an OCI index ({OCI_INDEX}) or a Docker manifest"
        ))
    })?;

    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut layer_media_types = Vec::new();
    let mut config_media_type = None;
    let digest;
    match kind {
        ManifestKind::Image => {
            if raw.schema_version != Some(2) {
                return Err(invalid("schemaVersion must be 2"));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            blobs.push(parse_descriptor(config, "config")?);
            config_media_type = Some(config.media_type.clone());
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| invalid("an image manifest needs a layers array"))?;
            for (i, layer) in layers.iter().enumerate() {
                blobs.push(parse_descriptor(layer, &format!("layers[{i}]"))?);
                layer_media_types.push(layer.media_type.clone());
            }
            digest = Digest::of_bytes(algorithm, bytes);
        }
        ManifestKind::Index => {
            if raw.schema_version != Some(2) {
                return Err(invalid("schemaVersion must be 2"));
            }
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("an index needs a manifests array"))?;
            for (i, m) in manifests.iter().enumerate() {
                children.push(parse_descriptor(m, &format!("manifests[{i}]"))?);
            }
            digest = Digest::of_bytes(algorithm, bytes);
        }
        ManifestKind::Schema1 => {
            if raw.schema_version != Some(1) {
                return Err(invalid("a schema 1 manifest needs schemaVersion 1"));
            }
            let layers = raw
                .fs_layers
                .as_ref()
                .ok_or_else(|| invalid("a schema 1 manifest needs fsLayers"))?;
            for (i, layer) in layers.iter().enumerate() {
                let digest = layer
                    .blob_sum
                    .parse()
                    .map_err(|e| invalid(format!("fsLayers[{i}].blobSum: {e}")))?;
                blobs.push(Reference {
                    digest,
                    media_type: String::new(),
                    may_be_absent: false,
                });
            }
            digest = schema1_digest(bytes, raw.signatures.as_deref(), algorithm)?;
        }
    }
    let subject = match &raw.subject {
        Some(s) => Some(parse_descriptor(s, "subject")?.digest),
        None => None,
    };
    Ok(ManifestFacts {
        kind,
        media_type,
        digest,
        config_media_type,
        artifact_type: raw.artifact_type,
        blobs,
        children,
        layer_media_types,
        subject,
        annotations: raw.annotations,
    })
}

/// A signed schema 1 manifest is identified by its canonical payload: the
/// bytes before the signatures (`formatLength`) plus the JWS `formatTail`.
fn schema1_digest(
    bytes: &[u8],
    signatures: Option<&[Schema1Signature]>,
    algorithm: Algorithm,
) -> Result<Digest, InvalidManifest> {
    let Some(first) = signatures.and_then(|s| s.first()) else {
        return Ok(Digest::of_bytes(algorithm, bytes));
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let protected = b64
        .decode(first.protected.trim_end_matches('='))
        .map_err(|e| invalid(format!("signature protected header is not base64url: {e}")))?;
    let protected: Schema1Protected = serde_json::from_slice(&protected)
        .map_err(|e| invalid(format!("signature protected header: {e}")))?;
    let tail = b64
        .decode(protected.format_tail.trim_end_matches('='))
        .map_err(|e| invalid(format!("formatTail is not base64url: {e}")))?;
    if protected.format_length > bytes.len() {
        return Err(invalid("formatLength is longer than the manifest"));
    }
    let mut payload = bytes[..protected.format_length].to_vec();
    payload.extend_from_slice(&tail);
    Ok(Digest::of_bytes(algorithm, &payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_with_subject_and_artifact_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"text/plain","digest":"{}","size":5}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}},
            "annotations":{{"a":"b"}},"unknownField":1}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let facts = inspect(Some(OCI_MANIFEST), body.as_bytes(), Algorithm::Sha256).unwrap();
        assert_eq!(facts.kind, ManifestKind::Image);
        assert_eq!(facts.blobs.len(), 2);
        assert_eq!(facts.subject.as_ref().unwrap().to_string(), d('c'));
        assert_eq!(facts.referrer_artifact_type().unwrap(), "application/x-sig");
        assert_eq!(
            facts.digest,
            Digest::of_bytes(Algorithm::Sha256, body.as_bytes())
        );
    }

    #[test]
    fn refuses_mismatch_and_garbage() {
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(inspect(Some(OCI_MANIFEST), body.as_bytes(), Algorithm::Sha256).is_err());
        assert!(inspect(Some(OCI_INDEX), body.as_bytes(), Algorithm::Sha256).is_ok());
        assert!(inspect(Some(OCI_MANIFEST), b"not json", Algorithm::Sha256).is_err());
        let err = inspect(Some("application/x-foo"), b"{}", Algorithm::Sha256).unwrap_err();
        assert!(err.to_string().contains("application/x-foo"));
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(inspect(Some(OCI_MANIFEST), bad_digest.as_bytes(), Algorithm::Sha256).is_err());
    }

    #[test]
    fn signed_schema1_digest_is_over_the_canonical_payload() {
        let payload = format!(
            "{{\n   \"schemaVersion\": 1,\n   \"name\": \"a\",\n   \"tag\": \"t\",\n   \"fsLayers\": [{{\"blobSum\": \"{}\"}}],\n   \"history\": []\n}}",
            d('a')
        );
        // The signed form cuts the payload before its closing brace and
        // inserts the signatures; formatTail restores the cut part.
        let cut = payload.rfind("\n}").unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let protected = b64.encode(format!(
            r#"{{"formatLength":{cut},"formatTail":"{}","time":"2020-01-01T00:00:00Z"}}"#,
            b64.encode(&payload[cut..])
        ));
        let signed = format!(
            "{},\n   \"signatures\": [{{\"header\": {{}}, \"signature\": \"x\", \"protected\": \"{protected}\"}}]{}",
            &payload[..cut],
            &payload[cut..]
        );
        let facts = inspect(
            Some(DOCKER_MANIFEST_V1_SIGNED),
            signed.as_bytes(),
            Algorithm::Sha256,
        )
        .unwrap();
        assert_eq!(facts.kind, ManifestKind::Schema1);
        assert_eq!(
            facts.digest,
            Digest::of_bytes(Algorithm::Sha256, payload.as_bytes())
        );
        assert_eq!(facts.blobs[0].digest.to_string(), d('a'));
    }
}

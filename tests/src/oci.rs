//! Test content: OCI image layouts with real gzipped tar layers, written
//! to disk so real clients (skopeo, crane, oras) can push them.

use std::path::Path;

use rand::Rng;
use serde_json::json;

use crate::sha256;

/// What `write_image_layout` produced.
pub struct LayoutImage {
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub layer_digests: Vec<String>,
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).expect("blobs dir");
    std::fs::write(dir.join(hex), bytes).expect("write blob");
    digest
}

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A gzipped tar holding one file of `size` random bytes; returns the
/// compressed bytes and the digest of the uncompressed tar (the diff ID).
pub fn random_layer(size: usize, name: &str) -> (Vec<u8>, String) {
    random_layer_compressed(size, name, Compression::Gzip)
}

/// A compressed tar holding one file of `size` random bytes, and its diff ID.
pub fn random_layer_compressed(
    size: usize,
    name: &str,
    compression: Compression,
) -> (Vec<u8>, String) {
    let mut content = vec![0u8; size];
    rand::rng().fill_bytes(&mut content);
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, name, &content[..])
            .expect("tar entry");
        builder.finish().expect("tar finish");
    }
    let diff_id = sha256(&tar_bytes);
    let compressed = match compression {
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar_bytes).expect("gzip");
            gz.finish().expect("gzip finish")
        }
        Compression::Zstd => zstd::encode_all(&tar_bytes[..], 3).expect("zstd"),
    };
    (compressed, diff_id)
}

/// Write an OCI image layout at `layout` with `layers` random layers of
/// `layer_size` bytes each, tagged `tag`.
pub fn write_image_layout(
    layout: &Path,
    tag: &str,
    layers: usize,
    layer_size: usize,
) -> LayoutImage {
    write_image_layout_with(layout, tag, layers, layer_size, Compression::Gzip)
}

/// Like `write_image_layout`, with the layer compression chosen.
pub fn write_image_layout_with(
    layout: &Path,
    tag: &str,
    layers: usize,
    layer_size: usize,
    compression: Compression,
) -> LayoutImage {
    std::fs::create_dir_all(layout).expect("layout dir");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    let mut history = Vec::new();
    for i in 0..layers {
        let (gz, diff_id) =
            random_layer_compressed(layer_size, &format!("file-{i}.bin"), compression);
        let digest = write_blob(layout, &gz);
        layer_descriptors.push(json!({
            "mediaType": compression.media_type(),
            "digest": digest,
            "size": gz.len(),
        }));
        layer_digests.push(digest);
        diff_ids.push(diff_id);
        history.push(json!({ "created": "2026-01-01T00:00:00Z", "created_by": format!("quarry test layer {i}") }));
    }
    let config = json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    })
    .to_string();
    let config_digest = write_blob(layout, config.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descriptors,
    })
    .to_string()
    .into_bytes();
    let manifest_digest = write_blob(layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    LayoutImage {
        manifest_digest,
        manifest,
        layer_digests,
    }
}

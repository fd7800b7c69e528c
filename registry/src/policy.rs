//! The OCI artifact policy: which manifests the registry accepts, decided by
//! Quay's keys (`FEATURE_GENERAL_OCI_SUPPORT`, `FEATURE_HELM_OCI_SUPPORT`,
//! `ALLOWED_OCI_ARTIFACT_TYPES`). Unlike Quay today, it is enforced, and
//! every refusal names the media type and the setting that would allow it.

use crate::config::RegistryConfig;
use crate::manifest::{ManifestFacts, ManifestKind};

pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

/// Layer media types of container images: always accepted.
pub const IMAGE_LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Layers of a Helm chart: content (current and legacy) and provenance.
pub const HELM_LAYER_TYPES: &[&str] = &[
    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
    "application/tar+gzip",
    "application/vnd.cncf.helm.chart.provenance.v1.prov",
];

/// What a manifest is, for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestClass {
    /// A container image (OCI, Docker v2 schema 2 or schema 1).
    Image,
    /// An OCI index or Docker manifest list.
    Index,
    HelmChart,
    /// Anything else. `artifact_type` is the manifest's `artifactType`, else
    /// its config media type; `shown_type` is what a refusal names: the
    /// artifact type, or for an image config carrying a foreign layer, that
    /// layer's type.
    Artifact {
        artifact_type: String,
        shown_type: String,
    },
}

/// Why a manifest was refused; also the `reason` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    GeneralOciDisabled,
    HelmDisabled,
    ArtifactTypeNotAllowed,
    LayerTypeNotAllowed,
}

impl RefusalReason {
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::GeneralOciDisabled => "general_oci_disabled",
            RefusalReason::HelmDisabled => "helm_disabled",
            RefusalReason::ArtifactTypeNotAllowed => "artifact_type_not_allowed",
            RefusalReason::LayerTypeNotAllowed => "layer_type_not_allowed",
        }
    }
}

/// A refusal: the media type at fault, why, and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub media_type: String,
    pub reason: RefusalReason,
    pub message: String,
}

fn is_image_layer(media_type: &str) -> bool {
    IMAGE_LAYER_TYPES.contains(&media_type)
}

/// Classify a manifest.
pub fn classify(facts: &ManifestFacts) -> ManifestClass {
    match facts.kind {
        ManifestKind::Index => return ManifestClass::Index,
        ManifestKind::Schema1 => return ManifestClass::Image,
        ManifestKind::Image => {}
    }
    let config = facts.config_media_type.as_deref().unwrap_or_default();
    let layers = &facts.layer_media_types;
    if facts.artifact_type.is_none()
        && (config == OCI_IMAGE_CONFIG || config == DOCKER_IMAGE_CONFIG)
        && layers.iter().all(|l| is_image_layer(l))
    {
        return ManifestClass::Image;
    }
    if facts.artifact_type.is_none()
        && config == HELM_CONFIG
        && layers
            .iter()
            .all(|l| HELM_LAYER_TYPES.contains(&l.as_str()))
    {
        return ManifestClass::HelmChart;
    }
    let artifact_type = facts
        .artifact_type
        .clone()
        .unwrap_or_else(|| config.to_string());
    let shown_type = if facts.artifact_type.is_none()
        && (config == OCI_IMAGE_CONFIG || config == DOCKER_IMAGE_CONFIG)
    {
        layers
            .iter()
            .find(|l| !is_image_layer(l))
            .cloned()
            .unwrap_or_else(|| artifact_type.clone())
    } else {
        artifact_type.clone()
    };
    ManifestClass::Artifact {
        artifact_type,
        shown_type,
    }
}

/// Decide whether `config` accepts the manifest.
pub fn check(config: &RegistryConfig, facts: &ManifestFacts) -> Result<ManifestClass, Refusal> {
    let class = classify(facts);
    match &class {
        ManifestClass::Image | ManifestClass::Index => Ok(class),
        ManifestClass::HelmChart => {
            if config.feature_helm_oci_support {
                Ok(class)
            } else {
                Err(Refusal {
                    media_type: HELM_CONFIG.to_string(),
                    reason: RefusalReason::HelmDisabled,
                    message: format!(
                        "Helm charts ({HELM_CONFIG}) are not accepted by this registry: FEATURE_HELM_OCI_SUPPORT is false (set it to true to allow them)"
                    ),
                })
            }
        }
        ManifestClass::Artifact {
            artifact_type,
            shown_type,
        } => {
            if !config.feature_general_oci_support {
                return Err(Refusal {
                    media_type: shown_type.clone(),
                    reason: RefusalReason::GeneralOciDisabled,
                    message: format!(
                        "OCI artifacts are not accepted by this registry and {shown_type} is not a container image type: FEATURE_GENERAL_OCI_SUPPORT is false (set it to true, and list the type in ALLOWED_OCI_ARTIFACT_TYPES if that is set)"
                    ),
                });
            }
            let Some(allowed) = &config.allowed_oci_artifact_types else {
                return Ok(class);
            };
            let Some(layer_types) = allowed.get(artifact_type) else {
                let what = if shown_type == artifact_type {
                    format!("artifact type {artifact_type}")
                } else {
                    format!("layer media type {shown_type} (with config {artifact_type})")
                };
                return Err(Refusal {
                    media_type: shown_type.clone(),
                    reason: RefusalReason::ArtifactTypeNotAllowed,
                    message: format!(
                        "{what} is not allowed by this registry: ALLOWED_OCI_ARTIFACT_TYPES has no entry for {artifact_type} (add one, with its layer media types, to allow it)"
                    ),
                });
            };
            for layer in &facts.layer_media_types {
                if !is_image_layer(layer) && !layer_types.iter().any(|t| t == layer) {
                    return Err(Refusal {
                        media_type: layer.clone(),
                        reason: RefusalReason::LayerTypeNotAllowed,
                        message: format!(
                            "layer media type {layer} is not allowed for artifact type {artifact_type}: add it to ALLOWED_OCI_ARTIFACT_TYPES under {artifact_type} (allowed there now: {})",
                            if layer_types.is_empty() {
                                "none".to_string()
                            } else {
                                layer_types.join(", ")
                            }
                        ),
                    });
                }
            }
            Ok(class)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::digest::{Algorithm, Digest};

    const SIF_CONFIG: &str = "application/vnd.sylabs.sif.config.v1+json";
    const SIF_LAYER: &str = "application/vnd.sylabs.sif.layer.v1+tar";
    const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

    fn facts(config: &str, layers: &[&str], artifact_type: Option<&str>) -> ManifestFacts {
        ManifestFacts {
            kind: ManifestKind::Image,
            media_type: crate::manifest::OCI_MANIFEST.into(),
            digest: Digest::of_bytes(Algorithm::Sha256, b"x"),
            config_media_type: Some(config.into()),
            artifact_type: artifact_type.map(str::to_string),
            blobs: vec![],
            children: vec![],
            layer_media_types: layers.iter().map(|s| s.to_string()).collect(),
            subject: None,
            annotations: None,
        }
    }

    fn with(general: bool, helm: bool, allowed: Option<&[(&str, &[&str])]>) -> RegistryConfig {
        RegistryConfig {
            feature_general_oci_support: general,
            feature_helm_oci_support: helm,
            allowed_oci_artifact_types: allowed.map(|a| {
                a.iter()
                    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..RegistryConfig::default()
        }
    }

    #[test]
    fn classification() {
        let zstd = facts(
            OCI_IMAGE_CONFIG,
            &["application/vnd.oci.image.layer.v1.tar+zstd"],
            None,
        );
        assert_eq!(classify(&zstd), ManifestClass::Image);
        let helm = facts(
            HELM_CONFIG,
            &[HELM_LAYER_TYPES[0], HELM_LAYER_TYPES[2]],
            None,
        );
        assert_eq!(classify(&helm), ManifestClass::HelmChart);
        let cosign = facts(OCI_IMAGE_CONFIG, &[COSIGN_LAYER], None);
        assert_eq!(
            classify(&cosign),
            ManifestClass::Artifact {
                artifact_type: OCI_IMAGE_CONFIG.into(),
                shown_type: COSIGN_LAYER.into()
            }
        );
        let typed = facts(
            "application/vnd.oci.empty.v1+json",
            &["text/plain"],
            Some("application/x-custom"),
        );
        assert!(
            matches!(classify(&typed), ManifestClass::Artifact { artifact_type, .. } if artifact_type == "application/x-custom")
        );
    }

    #[test]
    fn flags_and_allowlist() {
        let image = facts(OCI_IMAGE_CONFIG, &[IMAGE_LAYER_TYPES[1]], None);
        let helm = facts(HELM_CONFIG, &[HELM_LAYER_TYPES[0]], None);
        let cosign = facts(OCI_IMAGE_CONFIG, &[COSIGN_LAYER], None);
        let sif = facts(SIF_CONFIG, &[SIF_LAYER], None);
        let sif_wrong = facts(SIF_CONFIG, &["text/plain"], None);
        let sif_allow: &[(&str, &[&str])] = &[(SIF_CONFIG, &[SIF_LAYER])];

        let off = with(false, true, None);
        assert!(check(&off, &image).is_ok());
        assert!(check(&off, &helm).is_ok());
        let refusal = check(&off, &cosign).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::GeneralOciDisabled);
        assert_eq!(refusal.media_type, COSIGN_LAYER);
        assert!(refusal.message.contains("FEATURE_GENERAL_OCI_SUPPORT"));

        let no_helm = with(true, false, None);
        let refusal = check(&no_helm, &helm).unwrap_err();
        assert!(
            refusal.message.contains(HELM_CONFIG)
                && refusal.message.contains("FEATURE_HELM_OCI_SUPPORT")
        );
        assert!(check(&no_helm, &sif_wrong).is_ok());

        let sif_only = with(true, true, Some(sif_allow));
        assert!(check(&sif_only, &sif).is_ok());
        assert!(check(&sif_only, &helm).is_ok(), "Helm follows its own flag");
        let refusal = check(&sif_only, &sif_wrong).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::LayerTypeNotAllowed);
        assert_eq!(refusal.media_type, "text/plain");
        assert!(refusal.message.contains(SIF_CONFIG));
        let refusal = check(&sif_only, &cosign).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::ArtifactTypeNotAllowed);
        assert!(refusal.message.contains(COSIGN_LAYER));
        // zstd image layers pass inside an allowed artifact too.
        let mixed = facts(SIF_CONFIG, &[SIF_LAYER, IMAGE_LAYER_TYPES[2]], None);
        assert!(check(&sif_only, &mixed).is_ok());
    }
}

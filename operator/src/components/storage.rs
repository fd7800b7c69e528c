//! The storage component: where the registry keeps its data. Managed, a
//! PersistentVolumeClaim (one pod); unmanaged, the bucket of
//! `spec.objectStorage` (probed before anything rolls out) or else an
//! emptyDir (trials only).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, SecretKeySelector, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use quarry_registry::config::StorageLocation;
use quarry_registry::storage::settings::S3Settings;

use super::{BuildContext, BuildError, Component, OverrideField, PodParts};
use crate::crd::{ComponentKind, ObjectStorage};
use crate::names::{meta, pvc_name};
use crate::plan::{Issues, ObjectStorageCheck, Plan, PlanInput, component_path};
use crate::resources::Resources;

/// Where registry data lives inside the pod.
pub const DATA_DIR: &str = "/var/lib/quarry";
/// The keys of spec.objectStorage.credentialsSecret.
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Pod-template annotation that changes when the object-storage
/// credentials do (they reach the pods as environment variables).
pub const CREDENTIALS_HASH_ANNOTATION: &str = "quarry.dev/storage-credentials-hash";
/// The volume's size when no override gives one.
const DEFAULT_VOLUME_SIZE: &str = "10Gi";

pub const OVERRIDES: &[OverrideField] = &[
    OverrideField::VolumeSize,
    OverrideField::StorageClassName,
    OverrideField::Labels,
    OverrideField::Annotations,
];

/// Where the data lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StoragePlan {
    /// A PersistentVolumeClaim (the storage component managed).
    Volume,
    /// The bucket of spec.objectStorage, shared by every pod.
    Object(ObjectStoragePlan),
    /// An emptyDir: the data goes with the pod.
    EmptyDir,
}

impl StoragePlan {
    /// What one pod's storage is, for messages about several pods.
    pub fn single_pod_kind(&self) -> Option<&'static str> {
        match self {
            StoragePlan::Volume => Some("a ReadWriteOnce volume"),
            StoragePlan::EmptyDir => Some("an emptyDir"),
            StoragePlan::Object(_) => None,
        }
    }
}

/// Object storage as the registry pods use it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStoragePlan {
    pub credentials_secret: String,
    pub credentials_hash: String,
}

pub struct Storage;

impl Component for Storage {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        if plan.from_bundle("DISTRIBUTED_STORAGE_CONFIG")
            || plan.from_bundle("DISTRIBUTED_STORAGE_PREFERENCE")
        {
            issues.warn("bundle storage settings are ignored: storage comes from the storage component or spec.objectStorage");
        }
        let volume = plan.overrides(ComponentKind::Storage).cloned();
        if let Some(size) = volume.as_ref().and_then(|o| o.volume_size.as_ref())
            && !is_quantity(size)
        {
            issues.error(
                format!(
                    "{}.overrides.volumeSize",
                    component_path(ComponentKind::Storage)
                ),
                format!("{size:?} is not a quantity such as 10Gi"),
            );
        }
        let config = &mut plan.registry_config;
        plan.storage = match (&input.spec.object_storage, volume) {
            (None, Some(_)) => {
                config.set_local_storage_path(std::path::Path::new(DATA_DIR));
                StoragePlan::Volume
            }
            (None, None) => {
                config.set_local_storage_path(std::path::Path::new(DATA_DIR));
                StoragePlan::EmptyDir
            }
            (Some(_), Some(_)) => {
                issues.error(
                    "spec.objectStorage",
                    "the storage component is listed as managed (a volume): remove it from spec.components or set managed: false to keep the data in object storage",
                );
                StoragePlan::Volume
            }
            (Some(object), None) => {
                config.distributed_storage_config =
                    BTreeMap::from([("s3".to_string(), s3_location(object))]);
                config.distributed_storage_preference = vec!["s3".into()];
                object_plan(object, &input.inputs.object_storage, issues)
            }
        };
    }

    fn pod(&self, cx: &BuildContext<'_>, pod: &mut PodParts) {
        let source = match &cx.plan.storage {
            StoragePlan::Volume => Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: pvc_name(cx.cr),
                    read_only: None,
                }),
                ..Volume::default()
            },
            StoragePlan::EmptyDir | StoragePlan::Object(_) => Volume {
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        };
        pod.volumes.push(Volume {
            name: "data".into(),
            ..source
        });
        pod.mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        });
        if let StoragePlan::Object(object) = &cx.plan.storage {
            for key in [ACCESS_KEY_ID, SECRET_ACCESS_KEY] {
                pod.env.push(EnvVar {
                    name: key.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: object.credentials_secret.clone(),
                            key: key.into(),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                });
            }
            // Environment variables are read at start: new credentials
            // need new pods.
            pod.annotations.insert(
                CREDENTIALS_HASH_ANNOTATION.into(),
                object.credentials_hash.clone(),
            );
        }
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        if cx.plan.storage != StoragePlan::Volume {
            return Ok(());
        }
        let overrides = cx.plan.overrides(ComponentKind::Storage);
        let size = overrides
            .and_then(|o| o.volume_size.clone())
            .unwrap_or_else(|| DEFAULT_VOLUME_SIZE.into());
        out.add(&PersistentVolumeClaim {
            metadata: meta(cx.cr, pvc_name(cx.cr), "storage", overrides),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: overrides.and_then(|o| o.storage_class_name.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        })
    }
}

/// spec.objectStorage as dereference probed it.
fn object_plan(
    object: &ObjectStorage,
    check: &ObjectStorageCheck,
    issues: &mut Issues,
) -> StoragePlan {
    let refused = match check {
        ObjectStorageCheck::Probed {
            result: Ok(()),
            credentials_hash,
        } => {
            return StoragePlan::Object(ObjectStoragePlan {
                credentials_secret: object.credentials_secret.clone(),
                credentials_hash: credentials_hash.clone(),
            });
        }
        ObjectStorageCheck::Probed {
            result: Err(why), ..
        } => (
            "spec.objectStorage",
            format!("bucket {:?} cannot be used: {why}", object.bucket),
        ),
        ObjectStorageCheck::CredentialsUnusable(why) => {
            ("spec.objectStorage.credentialsSecret", why.clone())
        }
        ObjectStorageCheck::NotSet => ("spec.objectStorage", "was not checked".into()),
    };
    issues.error(refused.0, refused.1);
    StoragePlan::EmptyDir
}

/// The registry's S3 settings for spec.objectStorage (keys given for the
/// operator's probe; the pods read them from their environment).
pub fn s3_settings(spec: &ObjectStorage, keys: Option<(String, String)>) -> S3Settings {
    let (access_key, secret_key) = keys.unzip();
    S3Settings {
        endpoint: spec
            .endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string()),
        bucket: spec.bucket.clone(),
        region: region(spec),
        prefix: object_prefix(spec),
        access_key,
        secret_key,
        path_style: path_style(spec),
    }
}

fn region(spec: &ObjectStorage) -> String {
    spec.region.clone().unwrap_or_else(|| "us-east-1".into())
}

fn path_style(spec: &ObjectStorage) -> bool {
    spec.path_style.unwrap_or(spec.endpoint.is_some())
}

fn object_prefix(spec: &ObjectStorage) -> String {
    spec.prefix
        .clone()
        .unwrap_or_else(|| "registry".into())
        .trim_matches('/')
        .to_string()
}

/// spec.objectStorage in Quay's `S3Storage` shape, for config.yaml.
fn s3_location(spec: &ObjectStorage) -> StorageLocation {
    let mut params = BTreeMap::from([
        ("s3_bucket".to_string(), serde_json::json!(spec.bucket)),
        (
            "storage_path".to_string(),
            serde_json::json!(object_prefix(spec)),
        ),
        ("s3_region".to_string(), serde_json::json!(region(spec))),
        (
            "path_style".to_string(),
            serde_json::json!(path_style(spec)),
        ),
    ]);
    if let Some(endpoint) = &spec.endpoint {
        params.insert(
            "host".to_string(),
            serde_json::json!(endpoint.trim_end_matches('/')),
        );
    }
    StorageLocation("S3Storage".into(), params)
}

/// Kubernetes quantity syntax (a number with an optional suffix).
fn is_quantity(s: &str) -> bool {
    crate::quantity::bytes(s).is_some()
}

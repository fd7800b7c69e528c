//! Why a reconcile failed: each step names the object it could not read,
//! apply or delete, so the log line says what to look at.

use crate::components::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the resource has no namespace")]
    NoNamespace,
    #[error("reading {object}: {source}")]
    Read { object: String, source: kube::Error },
    #[error("listing {kind} objects to remove those no longer needed: {source}")]
    List {
        kind: &'static str,
        source: kube::Error,
    },
    #[error("applying {object}: {source}")]
    Apply { object: String, source: kube::Error },
    #[error("deleting {object}, which the resource no longer needs: {source}")]
    Delete { object: String, source: kube::Error },
    #[error("writing the status of {object}: {source}")]
    Status { object: String, source: kube::Error },
    #[error("serialising the status of {object}: {source}")]
    StatusJson {
        object: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("generating credentials or certificates: {0}")]
    Generate(String),
}

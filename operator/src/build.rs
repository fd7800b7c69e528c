//! build: a plan -> every object that should exist, gathered from the
//! components. Pure and deterministic: the same input renders the same
//! bytes, so an unchanged resource causes no writes, and a config change
//! rolls the pods through the config hash in the pod template.

use sha2::{Digest, Sha256};

use crate::components::{BuildContext, BuildError, PodParts, TABLE};
use crate::crd::QuarryRegistry;
use crate::generated::Generated;
use crate::plan::Plan;
use crate::resources::Resources;

/// What the build made.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub resources: Resources,
    pub config_hash: String,
    pub image: String,
}

/// The registry's config.yaml, rendered from the plan.
pub fn render_config(plan: &Plan) -> Result<String, BuildError> {
    serde_norway::to_string(&plan.registry_config).map_err(|e| BuildError {
        object: "config.yaml".into(),
        reason: e.to_string(),
    })
}

/// Every component's pod parts first, then every component's objects.
pub fn build(
    cr: &QuarryRegistry,
    plan: &Plan,
    image_repository: &str,
    generated: &Generated,
) -> Result<Built, BuildError> {
    let config_yaml = render_config(plan)?;
    let config_hash = hex::encode(Sha256::digest(config_yaml.as_bytes()));
    let cx = BuildContext {
        cr,
        plan,
        image: format!("{image_repository}:{}", plan.version),
        config_yaml,
        config_hash: config_hash.clone(),
        generated,
    };
    let mut pod = PodParts::default();
    for row in TABLE {
        row.component.pod(&cx, &mut pod);
    }
    let mut resources = Resources::default();
    for row in TABLE {
        row.component.objects(&cx, &pod, &mut resources)?;
    }
    Ok(Built {
        resources,
        config_hash,
        image: cx.image,
    })
}

//! Print the QuarryRegistry CRD as YAML (`make crds` writes it to crds/).

use kube::CustomResourceExt;

fn main() -> anyhow::Result<()> {
    print!(
        "{}",
        serde_norway::to_string(&quarry_operator::crd::QuarryRegistry::crd())?
    );
    Ok(())
}

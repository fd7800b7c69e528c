//! Quarry operator: reconciles `QuarryRegistry` resources into running
//! registries. The pipeline is dereference -> validate -> build -> apply ->
//! status; `validate` and `build` are pure and unit-tested.

pub mod build;
pub mod capabilities;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod generated;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod reconcile;
pub mod validate;

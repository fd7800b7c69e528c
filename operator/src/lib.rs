//! Quarry operator: reconciles `QuarryRegistry` resources into running
//! registries. The pipeline is dereference -> plan -> build -> apply ->
//! status (`reconcile`); each part of a registry is a component under
//! `components/`, which owns its piece of every step. `plan` and `build`
//! are pure and unit-tested. See docs/architecture.md.

pub mod build;
pub mod capabilities;
pub mod components;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod dereference;
pub mod error;
pub mod gc_report;
pub mod generated;
pub mod leader;
pub mod metrics;
pub mod mirror_report;
pub mod names;
pub mod pki;
pub mod plan;
pub mod probe_memory;
pub mod quantity;
pub mod reconcile;
pub mod registry_pods;
pub mod resources;
pub mod status;

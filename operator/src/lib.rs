//! Quarry operator: reconciles `QuarryRegistry` resources into a running
//! registry. The reconciler arrives with the operator issue; this crate
//! already depends on the registry library so that both share one
//! `RegistryConfig` type.

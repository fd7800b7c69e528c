//! Garbage collection, online, on every backend, safe with concurrent
//! pushes and with several replicas sweeping one bucket (docs/gc.md has
//! the argument):
//! - `mark`: what no tag keeps (reads metadata only);
//! - `markers`: the two markers a blob, link or manifest goes through
//!   before it is deleted, and the rescue a request performs;
//! - `touch`: the rescues the request handlers perform;
//! - `sweep`: condemn what the mark finds, delete what stayed condemned;
//! - `journal`: the last sweeps, for the operator (`GET /gc/sweeps`).

pub mod journal;
pub mod mark;
pub mod markers;
pub mod sweep;
pub mod touch;

pub use mark::{Garbage, Item, Reason, Report, find};

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

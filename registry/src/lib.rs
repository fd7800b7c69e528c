//! Quarry's OCI registry as a library: the operator renders its
//! [`config::RegistryConfig`], the binary serves [`api::router`].

pub mod api;
pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod fuzzing;
pub mod gc;
pub mod image_labels;
pub mod immutable_tags;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod mirror;
pub mod names;
pub mod policy;
pub mod proxy_cache;
pub mod quota;
pub mod reload;
pub mod retention;
pub mod server;
pub mod storage;
pub mod tls;
pub mod ui;
pub mod zero_copy;

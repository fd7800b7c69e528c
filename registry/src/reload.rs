//! Live configuration: the file is read again when its content changes (a
//! mounted Secret is updated in place) or on SIGHUP. A bad new file keeps
//! the configuration in force and logs why; storage settings need a
//! restart and are kept as they were.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{ConfigError, LoadedConfig, RegistryConfig};
use crate::metrics::{Metrics, ResultLabels};

/// Where the configuration comes from: an optional file plus the
/// command-line overrides, applied the same way at start and on reload.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub storage_path: Option<PathBuf>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let mut loaded = match &self.path {
            Some(path) => RegistryConfig::load(path)?,
            None => RegistryConfig::from_yaml("", None)?,
        };
        if let Some(dir) = &self.storage_path {
            loaded.config.set_local_storage_path(dir);
        }
        Ok(loaded)
    }

    fn read_raw(&self) -> Option<Vec<u8>> {
        self.path.as_ref().and_then(|p| std::fs::read(p).ok())
    }
}

/// Names of top-level keys whose values differ.
fn changed_keys(old: &RegistryConfig, new: &RegistryConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Load the source again and swap it in if it is valid.
pub fn reload_now(source: &ConfigSource, shared: &ArcSwap<RegistryConfig>, metrics: &Metrics) {
    let result = |r: &'static str| {
        metrics
            .config_reloads
            .get_or_create(&ResultLabels { result: r })
            .inc()
    };
    match source.load() {
        Err(e) => {
            tracing::error!(error = %e, "new configuration refused; the one in force stays");
            result("rejected");
        }
        Ok(loaded) => {
            let current = shared.load_full();
            let mut next = loaded.config;
            if next.distributed_storage_config != current.distributed_storage_config
                || next.distributed_storage_preference != current.distributed_storage_preference
            {
                tracing::warn!(
                    "storage settings changed in the config file; they take effect at the next restart"
                );
                next.distributed_storage_config = current.distributed_storage_config.clone();
                next.distributed_storage_preference =
                    current.distributed_storage_preference.clone();
            }
            for key in &loaded.unknown_keys {
                tracing::warn!(key = %key, "config key is not a Quarry setting; ignored");
            }
            let changed = changed_keys(&current, &next);
            shared.store(Arc::new(next));
            tracing::info!(changed = ?changed, "configuration reloaded");
            result("applied");
        }
    }
}

/// Watch the file (polling its content every `interval`) and SIGHUP.
pub async fn watch(
    source: ConfigSource,
    shared: Arc<ArcSwap<RegistryConfig>>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let mut last = source.read_raw();
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let forced = match hangup.as_mut() {
            Some(h) => tokio::select! {
                _ = tick.tick() => false,
                _ = h.recv() => true,
            },
            None => {
                tick.tick().await;
                false
            }
        };
        #[cfg(not(unix))]
        let forced = {
            tick.tick().await;
            false
        };
        let now = source.read_raw();
        if forced || now != last {
            if forced {
                tracing::info!("SIGHUP: reloading the configuration");
            }
            last = now;
            reload_now(&source, &shared, &metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_applies_valid_files_and_keeps_old_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "FEATURE_HELM_OCI_SUPPORT: true\n").unwrap();
        let source = ConfigSource {
            path: Some(path.clone()),
            storage_path: Some(dir.path().join("data")),
        };
        let shared = ArcSwap::from_pointee(source.load().unwrap().config);
        let metrics = Metrics::new();

        std::fs::write(&path, "FEATURE_HELM_OCI_SUPPORT: false\n").unwrap();
        reload_now(&source, &shared, &metrics);
        assert!(!shared.load().feature_helm_oci_support);
        // Storage keeps the command-line override.
        assert_eq!(
            shared.load().local_storage_path(),
            Some(dir.path().join("data"))
        );

        std::fs::write(&path, "FEATURE_HELM_OCI_SUPPORT: nope\n").unwrap();
        reload_now(&source, &shared, &metrics);
        assert!(
            !shared.load().feature_helm_oci_support,
            "bad file must not change the policy"
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"quarry_config_reloads_total{result="rejected"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"quarry_config_reloads_total{result="applied"} 1"#),
            "{text}"
        );
    }
}

//! Garbage collection (`spec.garbageCollection`): the switch, the interval
//! and the grace period, rendered as FEATURE_GARBAGE_COLLECTION,
//! GARBAGE_COLLECTION_FREQUENCY and PUSH_TEMP_TAG_EXPIRATION_SEC (seconds,
//! Quay's unit). The registry sweeps; every replica may. Status: the
//! `GarbageCollection` condition, from the pods' sweep journals
//! (gc_report.rs), which also turns sweeps into Events.

use quarry_registry::retention::parse_duration;

use super::{Component, RenderedKey, StatusInput};
use crate::crd::QuarryRegistrySpec;
use crate::plan::{Issues, Plan, PlanInput};
use crate::status::StatusDraft;

/// The condition this component reports.
pub const CONDITION: &str = "GarbageCollection";

pub struct GarbageCollection;

/// Seconds of a duration field, or an issue under the field.
fn seconds(field: &str, text: &Option<String>, issues: &mut Issues) -> Option<u64> {
    let text = text.as_ref()?;
    match parse_duration(text).map(|d| d.as_secs()) {
        Some(s) if s > 0 => Some(s),
        _ => {
            issues.error(
                format!("spec.garbageCollection.{field}"),
                format!("{text:?} is not a duration above 0 such as 10m or 1h"),
            );
            None
        }
    }
}

impl Component for GarbageCollection {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let Some(spec) = &input.spec.garbage_collection else {
            return;
        };
        let config = &mut plan.registry_config;
        config.feature_garbage_collection = spec.enabled.unwrap_or(true);
        if let Some(s) = seconds("interval", &spec.interval, issues) {
            config.garbage_collection_frequency = s;
        }
        if let Some(s) = seconds("gracePeriod", &spec.grace_period, issues) {
            config.push_temp_tag_expiration_sec = s;
        }
    }

    /// The condition follows the journals; it goes when sweeps are off,
    /// and stays as it was when no pod could be read.
    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        if !cx.plan.registry_config.feature_garbage_collection {
            draft.status.conditions.retain(|c| c.type_ != CONDITION);
            return;
        }
        if let Some(health) = cx.gc_health {
            draft.set_condition(CONDITION, health.ok, health.reason, health.message.clone());
        }
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        let Some(gc) = &spec.garbage_collection else {
            return Vec::new();
        };
        let mut keys = vec![RenderedKey {
            key: "FEATURE_GARBAGE_COLLECTION",
            field: "spec.garbageCollection.enabled",
        }];
        if gc.interval.is_some() {
            keys.push(RenderedKey {
                key: "GARBAGE_COLLECTION_FREQUENCY",
                field: "spec.garbageCollection.interval",
            });
        }
        if gc.grace_period.is_some() {
            keys.push(RenderedKey {
                key: "PUSH_TEMP_TAG_EXPIRATION_SEC",
                field: "spec.garbageCollection.gracePeriod",
            });
        }
        keys
    }
}

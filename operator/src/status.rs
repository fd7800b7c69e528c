//! Status: what the components report, gathered into one
//! `QuarryRegistryStatus`, and written by server-side apply with the
//! operator's field manager — only when it changed, so an unchanged world
//! writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use crate::components::{StatusInput, TABLE};
use crate::crd::{QuarryRegistry, QuarryRegistryStatus};
use crate::error::Error;
use crate::names::FIELD_MANAGER;
use crate::plan::FieldError;
use crate::reconcile::Context;

/// The status being assembled, starting from what the resource has.
pub struct StatusDraft {
    pub status: QuarryRegistryStatus,
    generation: Option<i64>,
}

impl StatusDraft {
    pub fn new(cr: &QuarryRegistry) -> StatusDraft {
        let generation = cr.meta().generation;
        let mut status = cr.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        StatusDraft { status, generation }
    }

    /// Insert or replace a condition, keeping its transition time when its
    /// status did not change.
    pub fn set_condition(&mut self, type_: &str, ok: bool, reason: &str, message: String) {
        let new = Condition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            observed_generation: self.generation,
            last_transition_time: Time(Timestamp::now()),
        };
        upsert(&mut self.status.conditions, new);
    }

    /// Whether a condition is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }
}

fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// The status of a valid resource: every component's report.
pub fn valid(cx: &StatusInput<'_>, config_hash: &str) -> QuarryRegistryStatus {
    let mut draft = StatusDraft::new(cx.cr);
    draft.status.components = cx.plan.components.clone();
    draft.status.warnings = cx.plan.warnings.clone();
    draft.status.config_hash = Some(config_hash.to_string());
    for row in TABLE {
        row.component.status(cx, &mut draft);
    }
    draft.set_condition(
        "ConfigValid",
        true,
        "ConfigValid",
        "the resource and its config bundle are valid".into(),
    );
    draft.status
}

/// The status of an invalid resource: what is wrong, and that nothing
/// running was touched.
pub fn invalid(cr: &QuarryRegistry, errors: &[FieldError]) -> QuarryRegistryStatus {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut draft = StatusDraft::new(cr);
    draft.set_condition("ConfigValid", false, "ConfigInvalid", message);
    draft.set_condition(
        "Progressing",
        false,
        "RolloutBlocked",
        "the resource is invalid; the registry keeps running with its last valid configuration"
            .into(),
    );
    draft.status
}

/// Whether an older operator wrote this status with merge patches
/// (operation Update): fields it set stay owned by that entry, so one that
/// goes away must also be removed explicitly.
fn written_by_update(cr: &QuarryRegistry) -> bool {
    cr.meta().managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Update")
            && m.subresource.as_deref() == Some("status")
    })
}

/// Top-level status fields set before and absent now.
fn removed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    match (old.as_object(), new.as_object()) {
        (Some(old), Some(new)) => old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// Write the status when it changed, and publish an Event for each of
/// Ready and ConfigValid that flipped.
pub async fn write(
    cr: &QuarryRegistry,
    ctx: &Context,
    ns: &str,
    status: QuarryRegistryStatus,
) -> Result<(), Error> {
    let old = cr.status.clone().unwrap_or_default();
    if old == status {
        return Ok(());
    }
    let name = cr.name_any();
    let object = format!("QuarryRegistry {ns}/{name}");
    let json = |s: &QuarryRegistryStatus| {
        serde_json::to_value(s).map_err(|source| Error::StatusJson {
            object: object.clone(),
            source,
        })
    };
    let (body, before) = (json(&status)?, json(&old)?);
    let api = Api::<QuarryRegistry>::namespaced(ctx.client.clone(), ns);
    let apply = serde_json::json!({
        "apiVersion": "quarry.dev/v1alpha1",
        "kind": "QuarryRegistry",
        "metadata": {"name": name, "namespace": ns},
        "status": body,
    });
    let failed = |source| Error::Status {
        object: object.clone(),
        source,
    };
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&apply),
    )
    .await
    .map_err(failed)?;
    let removed = removed_fields(&before, &body);
    if written_by_update(cr) && !removed.is_empty() {
        let nulls: serde_json::Map<String, serde_json::Value> = removed
            .into_iter()
            .map(|k| (k, serde_json::Value::Null))
            .collect();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": nulls })),
        )
        .await
        .map_err(failed)?;
    }
    ctx.metrics.status_writes.inc();
    for c in &status.conditions {
        let before = old.conditions.iter().find(|o| o.type_ == c.type_);
        if before.map(|b| &b.status) != Some(&c.status)
            && matches!(c.type_.as_str(), "Ready" | "ConfigValid")
        {
            let event = Event {
                type_: if c.status == "True" {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: c.reason.clone(),
                note: Some(truncate(&c.message, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            publish(ctx, cr, event).await;
        }
    }
    Ok(())
}

/// Publish an Event about the resource; a failure is logged, not fatal.
pub async fn publish(ctx: &Context, cr: &QuarryRegistry, event: Event) {
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish event");
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn a_status_written_by_merge_patches_is_recognised() {
        let mut cr = QuarryRegistry::new("r", Default::default());
        assert!(!written_by_update(&cr));
        let entry = |operation: &str, subresource: &str| ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some(operation.into()),
            subresource: Some(subresource.into()),
            ..Default::default()
        };
        cr.metadata.managed_fields = Some(vec![entry("Apply", "status")]);
        assert!(!written_by_update(&cr));
        cr.metadata.managed_fields = Some(vec![entry("Update", "status")]);
        assert!(written_by_update(&cr));
        let old = serde_json::json!({"warnings": ["w"], "configHash": "a"});
        let new = serde_json::json!({"configHash": "b"});
        assert_eq!(removed_fields(&old, &new), ["warnings"]);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let cr = QuarryRegistry::new("r", Default::default());
        let mut draft = StatusDraft::new(&cr);
        draft.set_condition("Ready", false, "A", "a".into());
        let first = draft.status.conditions[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        draft.set_condition("Ready", false, "B", "b".into());
        assert_eq!(draft.status.conditions[0].last_transition_time, first);
        assert_eq!(draft.status.conditions[0].reason, "B");
        draft.set_condition("Ready", true, "C", "c".into());
        assert_ne!(draft.status.conditions[0].last_transition_time, first);
        assert!(draft.is_true("Ready"));
        assert_eq!(truncate("ééé", 3), "é…");
    }
}

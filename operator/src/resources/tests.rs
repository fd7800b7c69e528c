//! The collector and the pure parts of applying.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, ManagedFieldsEntry, OwnerReference,
};

#[test]
fn replicas_ownership_is_read_from_managed_fields() {
    let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    };
    let mut d = Deployment::default();
    assert!(!owns_replicas(&d.metadata));
    d.metadata.managed_fields = Some(vec![entry(
        FIELD_MANAGER,
        serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
    )]);
    assert!(owns_replicas(&d.metadata));
    d.metadata.managed_fields = Some(vec![
        entry(
            FIELD_MANAGER,
            serde_json::json!({"f:spec": {"f:template": {}}}),
        ),
        entry(
            HPA_HANDOVER_MANAGER,
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
        ),
    ]);
    assert!(!owns_replicas(&d.metadata));
}

#[test]
fn objects_are_applied_in_dependency_order_and_added_once() {
    let mut r = Resources::default();
    let named = |name: &str| kube::api::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    r.add(&Service {
        metadata: named("svc"),
        ..Default::default()
    })
    .unwrap();
    r.add(&Deployment {
        metadata: named("d"),
        ..Default::default()
    })
    .unwrap();
    r.add(&Secret {
        metadata: named("s"),
        ..Default::default()
    })
    .unwrap();
    r.add(&Secret {
        metadata: named("s"),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
    .unwrap();
    let order: Vec<(ObjectKind, &str)> = r
        .in_order()
        .iter()
        .map(|e| (e.kind, e.name.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (ObjectKind::Secret, "s"),
            (ObjectKind::Deployment, "d"),
            (ObjectKind::Service, "svc")
        ]
    );
    let secret: Secret = r.one(ObjectKind::Secret).unwrap();
    assert_eq!(
        secret.type_.as_deref(),
        Some("Opaque"),
        "the later one wins"
    );
}

#[test]
fn only_objects_the_resource_controls_are_pruned() {
    let reference = |uid: &str, controller: bool| OwnerReference {
        uid: uid.into(),
        controller: Some(controller),
        ..Default::default()
    };
    assert!(controlled_by(&[reference("u1", true)], Some("u1")));
    assert!(!controlled_by(&[reference("u1", false)], Some("u1")));
    assert!(!controlled_by(&[reference("u2", true)], Some("u1")));
    assert!(!controlled_by(&[], Some("u1")));
    assert!(!controlled_by(&[reference("u1", true)], None));
    for kind in [
        ObjectKind::PersistentVolumeClaim,
        ObjectKind::Secret,
        ObjectKind::ConfigMap,
    ] {
        assert!(!kind.pruned(), "{kind:?} holds data and is never pruned");
    }
}

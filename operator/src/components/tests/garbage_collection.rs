//! spec.garbageCollection: durations rendered as Quay's seconds, problems
//! under the field.

use super::*;

#[test]
fn garbage_collection_renders_seconds() {
    let s = spec("garbageCollection: {interval: 5m, gracePeriod: 2h}");
    let plan = validate(&s, &Bundle::None, "v", Offers::default()).unwrap();
    let rendered = RegistryConfig::from_yaml(&render_config(&plan).unwrap(), None).unwrap();
    let c = &rendered.config;
    assert!(c.feature_garbage_collection);
    assert_eq!(c.garbage_collection_frequency, 300);
    assert_eq!(c.push_temp_tag_expiration_sec, 7200);
    assert!(
        rendered.unknown_keys.is_empty(),
        "{:?}",
        rendered.unknown_keys
    );

    let off = spec("garbageCollection: {enabled: false}");
    let plan = validate(&off, &Bundle::None, "v", Offers::default()).unwrap();
    assert!(!plan.registry_config.feature_garbage_collection);
    assert_eq!(plan.registry_config.garbage_collection_frequency, 600);
}

#[test]
fn garbage_collection_problems_name_the_field() {
    let zero = spec("garbageCollection: {interval: 0s}");
    let errors = validate(&zero, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.garbageCollection.interval");
    assert!(errors[0].reason.contains("above 0"), "{errors:?}");
}

//! spec.autoPrune: Quay's method/value shape rendered from typed fields,
//! problems under the field.

use quarry_registry::retention::PruneMethod;

use super::*;

#[test]
fn auto_prune_renders_quays_methods() {
    let s = spec(
        r#"
autoPrune:
  policies:
    - {namespace: ci, keepNewest: 10}
    - {namespace: '*', olderThan: 2w, tagPattern: 'pr-[0-9]+'}
"#,
    );
    let plan = validate(&s, &Bundle::None, "v", Offers::default()).unwrap();
    let c = &plan.registry_config;
    assert!(c.feature_auto_prune);
    assert_eq!(
        c.auto_prune_policies[0].method,
        PruneMethod::NumberOfTags(10)
    );
    assert_eq!(
        c.auto_prune_policies[1].method,
        PruneMethod::CreationDate("2w".into())
    );
    let rendered = RegistryConfig::from_yaml(&render_config(&plan).unwrap(), None).unwrap();
    assert_eq!(rendered.config.auto_prune_policies, c.auto_prune_policies);
    assert!(
        rendered.unknown_keys.is_empty(),
        "{:?}",
        rendered.unknown_keys
    );
}

#[test]
fn auto_prune_problems_name_the_policy() {
    let both = spec("autoPrune: {policies: [{namespace: ci, keepNewest: 1, olderThan: 2w}]}");
    let errors = validate(&both, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.autoPrune.policies[0]");
    assert_eq!(
        errors[0].reason,
        "set exactly one of keepNewest and olderThan"
    );

    let bad_pattern = spec(
        "autoPrune: {policies: [{namespace: ci, keepNewest: 1}, {namespace: ci, keepNewest: 2, tagPattern: '('}]}",
    );
    let errors = validate(&bad_pattern, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.autoPrune.policies[1]");
    assert!(
        errors[0].reason.contains("not a regular expression"),
        "{errors:?}"
    );
}

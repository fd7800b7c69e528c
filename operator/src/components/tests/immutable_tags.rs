//! spec.immutableTags: rendered as the registry's keys, problems reported
//! once, under the field.

use super::*;

#[test]
fn immutable_tags_render_quays_keys_over_the_bundle() {
    let s = spec(
        r#"
immutableTags:
  policies:
    - {namespace: prod, tagPattern: 'v[0-9]+'}
    - {namespace: '*', tagPattern: 'latest', tagPatternMatches: false}
"#,
    );
    let bundle = Bundle::Found("FEATURE_IMMUTABLE_TAGS: false\n".into());
    let plan = validate(&s, &bundle, "v", Offers::default()).unwrap();
    let c = &plan.registry_config;
    assert!(c.feature_immutable_tags, "enabled defaults to true");
    assert_eq!(c.immutable_tags_policies.len(), 2);
    assert!(c.immutable_tags_policies[0].tag_pattern_matches);
    assert!(!c.immutable_tags_policies[1].tag_pattern_matches);
    assert!(
        plan.warnings.iter().any(|w| w.contains(
            "spec.immutableTags.enabled=true overrides FEATURE_IMMUTABLE_TAGS from the config bundle"
        )),
        "{:?}",
        plan.warnings
    );
    // The rendered config.yaml is what the registry reads back.
    let rendered = RegistryConfig::from_yaml(&render_config(&plan).unwrap(), None).unwrap();
    assert_eq!(
        rendered.config.immutable_tags_policies,
        c.immutable_tags_policies
    );
    assert!(
        rendered.unknown_keys.is_empty(),
        "{:?}",
        rendered.unknown_keys
    );

    // Unset in the CR: the bundle's keys stand.
    let bundle = Bundle::Found(
        "FEATURE_IMMUTABLE_TAGS: true\nIMMUTABLE_TAGS_POLICIES: [{namespace: a, tagPattern: x}]\n"
            .into(),
    );
    let plan = validate(&spec("{}"), &bundle, "v", Offers::default()).unwrap();
    assert!(plan.registry_config.feature_immutable_tags);
    assert_eq!(
        plan.registry_config.immutable_tags_policies[0].namespace,
        "a"
    );
}

#[test]
fn a_bad_policy_is_reported_once_under_its_field() {
    let s = spec(
        r#"
immutableTags:
  policies:
    - {namespace: prod, tagPattern: 'v.*'}
    - {namespace: prod, tagPattern: 'v('}
"#,
    );
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.immutableTags.policies[1]");
    assert!(
        errors[0]
            .reason
            .contains("tagPattern \"v(\" is not a regular expression"),
        "{errors:?}"
    );
    // From the bundle, the same problem is named by the bundle's key.
    let bundle =
        Bundle::Found("IMMUTABLE_TAGS_POLICIES: [{namespace: prod, tagPattern: 'v('}]\n".into());
    let errors = validate(&spec("{}"), &bundle, "v", Offers::default()).unwrap_err();
    assert_eq!(
        errors[0].path,
        "spec.configBundleSecret[config.yaml].IMMUTABLE_TAGS_POLICIES[0]"
    );
}

#[test]
fn disabled_with_policies_warns_that_nothing_is_enforced() {
    let s =
        spec("immutableTags: {enabled: false, policies: [{namespace: prod, tagPattern: 'v.*'}]}");
    let plan = validate(&s, &Bundle::None, "v", Offers::default()).unwrap();
    assert!(!plan.registry_config.feature_immutable_tags);
    assert!(
        plan.warnings.iter().any(|w| w.contains("are not enforced")),
        "{:?}",
        plan.warnings
    );
}

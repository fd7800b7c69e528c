//! spec.quotas: quantities to bytes, Quay's limits, problems under the
//! field.

use quarry_registry::quota::LimitKind;

use super::*;

#[test]
fn quotas_render_bytes_and_limits() {
    let s = spec(
        r#"
quotas:
  defaultRejectLimit: 100Gi
  namespaces:
    - {namespace: team, limit: 10Gi, warningPercent: 80}
    - {namespace: ci, limit: 500M, rejectPercent: 90}
"#,
    );
    let plan = validate(&s, &Bundle::None, "v", Offers::default()).unwrap();
    let c = &plan.registry_config;
    assert!(c.feature_quota_management);
    assert_eq!(c.default_system_reject_quota_bytes, Some(100 << 30));
    assert_eq!(c.namespace_quotas[0].limit_bytes, 10 << 30);
    let kinds: Vec<(LimitKind, u32)> = c.namespace_quotas[0]
        .limits
        .iter()
        .map(|l| (l.kind, l.threshold_percent))
        .collect();
    assert_eq!(kinds, [(LimitKind::Warning, 80), (LimitKind::Reject, 100)]);
    assert_eq!(c.namespace_quotas[1].limit_bytes, 500_000_000);
    assert_eq!(c.namespace_quotas[1].limits[0].threshold_percent, 90);
    let rendered = RegistryConfig::from_yaml(&render_config(&plan).unwrap(), None).unwrap();
    assert_eq!(rendered.config.namespace_quotas, c.namespace_quotas);
}

#[test]
fn quota_problems_name_their_fields_once() {
    let s = spec(
        r#"
quotas:
  namespaces:
    - {namespace: team, limit: 10Gi}
    - {namespace: team, limit: 1Gi}
"#,
    );
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.quotas.namespaces[1]");
    assert!(
        errors[0].reason.contains("has a quota already"),
        "{errors:?}"
    );
    let s = spec("quotas: {defaultRejectLimit: '0', namespaces: [{namespace: a, limit: 0Gi}]}");
    let errors = validate(&s, &Bundle::None, "v", Offers::default()).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.quotas.namespaces[0].limit",
            "spec.quotas.defaultRejectLimit"
        ],
        "{errors:?}"
    );
}

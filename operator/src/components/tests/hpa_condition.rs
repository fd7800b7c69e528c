//! ComponentHpaReady: what the HorizontalPodAutoscaler controller reports.

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
};

use crate::components::hpa::condition;
use crate::crd::QuarryRegistry;
use crate::plan::{Bundle, Inputs, ObjectStorageCheck, Plan, plan_with as validate_with};

fn hpa_plan() -> (QuarryRegistry, Plan) {
    let cr: QuarryRegistry = serde_norway::from_str(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec:\n  objectStorage: {bucket: quarry, credentialsSecret: s3}\n  components: [{kind: hpa, managed: true}]\n",
    )
    .unwrap();
    let inputs = Inputs {
        proxy_cache: Vec::new(),
        mirrors: Vec::new(),
        object_storage: ObjectStorageCheck::Probed {
            result: Ok(()),
            credentials_hash: "abc".into(),
        },
        ..Inputs::bundle(Bundle::None)
    };
    let plan = validate_with(&cr.spec, &inputs, "v", Default::default()).unwrap();
    (cr, plan)
}

fn with_conditions(conditions: &[(&str, &str, &str)]) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        status: Some(HorizontalPodAutoscalerStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s, r)| HorizontalPodAutoscalerCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        reason: Some(r.to_string()),
                        message: Some(format!("{r} happened")),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn hpa_condition_says_what_the_hpa_controller_reports() {
    let (cr, plan) = hpa_plan();
    let (ok, reason, _) = condition(&cr, &plan, None);
    assert!(!ok);
    assert_eq!(reason, "HorizontalPodAutoscalerMissing");
    let (ok, reason, _) = condition(&cr, &plan, Some(&with_conditions(&[])));
    assert_eq!((ok, reason.as_str()), (false, "NotReported"));
    let no_metrics = with_conditions(&[
        ("AbleToScale", "True", "SucceededGetScale"),
        ("ScalingActive", "False", "FailedGetResourceMetric"),
    ]);
    let (ok, reason, message) = condition(&cr, &plan, Some(&no_metrics));
    assert!(!ok);
    assert_eq!(reason, "FailedGetResourceMetric");
    assert!(
        message.contains("between 2 and 5 pods at 75% average CPU")
            && message.contains("ScalingActive=False FailedGetResourceMetric"),
        "{message}"
    );
    let scaling = with_conditions(&[
        ("AbleToScale", "True", "ReadyForNewScale"),
        ("ScalingActive", "True", "ValidMetricFound"),
    ]);
    let (ok, reason, _) = condition(&cr, &plan, Some(&scaling));
    assert_eq!((ok, reason.as_str()), (true, "Scaling"));
    let (cr, mut plan) = hpa_plan();
    plan.hpa = None;
    let (ok, reason, _) = condition(&cr, &plan, None);
    assert_eq!((ok, reason.as_str()), (true, "ComponentNotManaged"));
}

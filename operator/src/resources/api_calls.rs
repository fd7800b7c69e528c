//! Call sequences against a mocked API server (tower-test): what `apply`
//! asks, in which order, and what it deletes. The real API server tests
//! (tests/tests/operator*.rs) prove the outcome; these pin the order.

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use tower_test::mock::{self, Handle};

use super::*;
use crate::build::build;
use crate::generated::Generated;
use crate::plan::{Bundle, plan};

const NS: &str = "ns";
const UID: &str = "uid-1";

fn cr() -> QuarryRegistry {
    let mut cr: QuarryRegistry = serde_norway::from_str(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {name: demo, namespace: ns}\nspec: {}\n",
    )
    .unwrap();
    cr.metadata.uid = Some(UID.into());
    cr
}

/// One expected request: method, path, and the JSON to answer with.
struct Step {
    method: &'static str,
    path: String,
    reply: serde_json::Value,
}

fn step(method: &'static str, path: &str, reply: serde_json::Value) -> Step {
    Step {
        method,
        path: path.to_string(),
        reply,
    }
}

/// What the mock saw: method, path and query, and the body.
struct Seen {
    line: String,
    query: String,
    body: serde_json::Value,
}

/// Answer the requests in order, checking each against the script.
async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Step>) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    for expected in script {
        let (request, respond) = handle.next_request().await.unwrap_or_else(|| {
            panic!("no request; expected {} {}", expected.method, expected.path)
        });
        let line = format!("{} {}", request.method(), request.uri().path());
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let sequence: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
        assert_eq!(
            line,
            format!("{} {}", expected.method, expected.path),
            "after {sequence:?}"
        );
        respond.send_response(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&expected.reply).unwrap()))
                .unwrap(),
        );
        seen.push(Seen { line, query, body });
    }
    seen
}

fn list(items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    })
}

/// An object's metadata as a list returns it, owned by `uid`.
fn item(name: &str, uid: &str, controller: bool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {
            "name": name,
            "namespace": NS,
            "ownerReferences": [{
                "apiVersion": "quarry.dev/v1alpha1", "kind": "QuarryRegistry",
                "name": "demo", "uid": uid, "controller": controller,
            }],
        },
    })
}

fn object(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Object", "metadata": {"name": name, "namespace": NS}})
}

fn deleted() -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}})
}

const SA: &str = "/api/v1/namespaces/ns/serviceaccounts";
const DEPLOY: &str = "/apis/apps/v1/namespaces/ns/deployments";
const HPA: &str = "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers";
const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets";
const SVC: &str = "/api/v1/namespaces/ns/services";
const ING: &str = "/apis/networking.k8s.io/v1/namespaces/ns/ingresses";

async fn run(resources: &Resources, script: Vec<Step>) -> Vec<Seen> {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let server = tokio::spawn(serve(handle, script));
    let metrics = OperatorMetrics::default();
    apply(
        &client,
        &cr(),
        NS,
        &ClusterApis::default(),
        resources,
        &metrics,
    )
    .await
    .expect("apply");
    server.await.expect("the mock server")
}

#[tokio::test]
async fn orphans_are_deleted_by_label_and_owner_then_everything_applied_in_order() {
    let cr = cr();
    let plan = plan(&cr.spec, &Bundle::None, "v", Default::default()).unwrap();
    let built = build(&cr, &plan, "img", &Generated::default()).unwrap();
    let name = "demo-registry";
    let script = vec![
        step("GET", SA, list(vec![item(name, UID, true)])),
        step("GET", DEPLOY, list(vec![item(name, UID, true)])),
        // An autoscaler switched off, and one of another resource.
        step(
            "GET",
            HPA,
            list(vec![
                item(name, UID, true),
                item("other-registry", "uid-2", true),
            ]),
        ),
        step("DELETE", &format!("{HPA}/{name}"), deleted()),
        step("GET", PDB, list(vec![item(name, UID, true)])),
        step("DELETE", &format!("{PDB}/{name}"), deleted()),
        step("GET", SVC, list(vec![])),
        // Ours by name, but not controlled by the resource: kept.
        step("GET", ING, list(vec![item(name, UID, false)])),
        step("PATCH", &format!("{SA}/{name}"), object(name)),
        step(
            "PATCH",
            "/api/v1/namespaces/ns/secrets/demo-config",
            object("demo-config"),
        ),
        step(
            "PATCH",
            "/api/v1/namespaces/ns/persistentvolumeclaims/demo-data",
            object("demo-data"),
        ),
        step("PATCH", &format!("{DEPLOY}/{name}"), object(name)),
        step("PATCH", &format!("{SVC}/{name}"), object(name)),
    ];
    let seen = run(&built.resources, script).await;
    for list in seen.iter().filter(|s| s.line.starts_with("GET")) {
        assert!(
            list.query.contains("labelSelector=")
                && list.query.contains("app.kubernetes.io%2Finstance%3Ddemo"),
            "{}?{}",
            list.line,
            list.query
        );
    }
    for patch in seen.iter().filter(|s| s.line.starts_with("PATCH")) {
        assert!(
            patch.query.contains("fieldManager=quarry-operator")
                && patch.query.contains("force=true"),
            "{}?{}",
            patch.line,
            patch.query
        );
    }
}

#[tokio::test]
async fn replicas_are_handed_over_before_the_autoscaler_takes_them() {
    let name = "demo-registry";
    let mut resources = Resources::default();
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {}, "template": {}},
    }))
    .unwrap();
    resources
        .add_with(&deployment, ApplyMode::ReplicasToAutoscaler { min: 2 })
        .unwrap();
    let live = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": NS,
            "managedFields": [{
                "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }],
        },
        "spec": {"replicas": 4, "selector": {}, "template": {}},
    });
    let empty = || list(vec![]);
    let script = vec![
        step("GET", SA, empty()),
        step("GET", DEPLOY, empty()),
        step("GET", HPA, empty()),
        step("GET", PDB, empty()),
        step("GET", SVC, empty()),
        step("GET", ING, empty()),
        step("GET", &format!("{DEPLOY}/{name}"), live),
        step("PATCH", &format!("{DEPLOY}/{name}"), object(name)),
        step("PATCH", &format!("{DEPLOY}/{name}"), object(name)),
    ];
    let seen = run(&resources, script).await;
    let (handover, apply) = (&seen[7], &seen[8]);
    assert!(
        handover
            .query
            .contains(&format!("fieldManager={HPA_HANDOVER_MANAGER}")),
        "{}",
        handover.query
    );
    assert_eq!(
        handover.body["spec"]["replicas"], 4,
        "the live count is kept"
    );
    assert!(
        apply.query.contains("fieldManager=quarry-operator&")
            || apply.query.ends_with("fieldManager=quarry-operator"),
        "{}",
        apply.query
    );
    assert!(
        apply.body["spec"].get("replicas").is_none(),
        "{}",
        apply.body
    );
}

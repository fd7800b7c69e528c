//! Handler tests: the whole router, driven with `oneshot`, over a real
//! filesystem store in a temporary directory.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::digest::{Algorithm, Digest};
use crate::storage::FilesystemStorage;

struct Harness {
    _dir: tempfile::TempDir,
    app: Router,
    storage: Arc<dyn Storage>,
}

fn harness_with(config: RegistryConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FilesystemStorage::open(dir.path()).unwrap());
    let state = AppState::new(storage.clone(), config, Arc::new(Metrics::new()));
    Harness {
        _dir: dir,
        app: router(state),
        storage,
    }
}

fn harness() -> Harness {
    harness_with(RegistryConfig::default())
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn push_blob(&self, repo: &str, content: &'static [u8]) -> Digest {
        let d = Digest::of_bytes(Algorithm::Sha256, content);
        let r = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                content,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        d
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> Reply {
        self.send(
            Request::builder()
                .method("PUT")
                .uri(format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", media_type)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

fn image_manifest(config: &Digest, layer: &Digest, extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":5}}]{extra}}}"#
    )
}

#[tokio::test]
async fn base_endpoint_and_unknown_routes() {
    let h = harness();
    let r = h.call("GET", "/v2/", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    assert_eq!(
        h.call("GET", "/v2/a/nothing/x", Body::empty()).await.status,
        StatusCode::NOT_FOUND
    );
    let r = h.call("GET", "/v2/UPPER/tags/list", Body::empty()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID");
    assert_eq!(
        h.call("GET", "/healthz", Body::empty()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.call("GET", "/readyz", Body::empty()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn monolithic_blob_and_ranges() {
    let h = harness();
    let d = h.push_blob("a/b/c", b"hello world").await;
    let r = h
        .call("HEAD", &format!("/v2/a/b/c/blobs/{d}"), Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "11");
    assert_eq!(r.header("docker-content-digest"), d.to_string());
    assert!(r.body.is_empty());
    let r = h
        .send(
            Request::get(format!("/v2/a/b/c/blobs/{d}"))
                .header("range", "bytes=6-")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"world");
    assert_eq!(r.header("content-range"), "bytes 6-10/11");
    // Another repository does not see the blob until it is mounted.
    let r = h
        .call("GET", &format!("/v2/other/blobs/{d}"), Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    // Wrong digest: nothing stored.
    let wrong = Digest::of_bytes(Algorithm::Sha256, b"other");
    let r = h
        .call(
            "POST",
            &format!("/v2/x/blobs/uploads/?digest={wrong}"),
            "content",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");
    let r = h
        .call("HEAD", &format!("/v2/x/blobs/{wrong}"), Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk() {
    let h = harness();
    let r = h
        .call("POST", "/v2/repo/blobs/uploads/", Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_string();
    let chunk = |range: &str, body: &'static str| {
        Request::builder()
            .method("PATCH")
            .uri(location.clone())
            .header("content-range", range)
            .header("content-type", "application/octet-stream")
            .body(Body::from(body))
            .unwrap()
    };
    let r = h.send(chunk("0-4", "hello")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    let r = h.send(chunk("0-4", "hello")).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-4");
    // A chunk whose body is shorter than its Content-Range is refused whole.
    let r = h.send(chunk("5-9", "wor")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.call("GET", &location, Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-4");
    // Streamed chunk without Content-Range appends.
    let r = h.call("PATCH", &location, " world").await;
    assert_eq!(r.header("range"), "0-10");
    let d = Digest::of_bytes(Algorithm::Sha256, b"hello world!");
    let r = h.call("PUT", &format!("{location}?digest={d}"), "!").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("location"), format!("/v2/repo/blobs/{d}"));
    let r = h.call("GET", &location, Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn cross_mount_with_and_without_from() {
    let h = harness();
    let d = h.push_blob("src", b"layer").await;
    let r = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h
        .call(
            "POST",
            &format!("/v2/dst2/blobs/uploads/?mount={d}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h
        .call(
            "POST",
            &format!("/v2/dst3/blobs/uploads/?mount={d}&from=nowhere"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let off = harness_with(RegistryConfig {
        feature_automatic_cross_mount: false,
        ..RegistryConfig::default()
    });
    let d = off.push_blob("src", b"layer").await;
    let r = off
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn manifests_tags_and_deletes() {
    let h = harness();
    let config = h.push_blob("app", b"{}").await;
    let layer = h.push_blob("app", b"layer").await;
    let body = image_manifest(&config, &layer, "");
    let mt = "application/vnd.oci.image.manifest.v1+json";
    for tag in ["v3", "v1", "v2", "latest"] {
        let r = h.put_manifest("app", tag, mt, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let digest = Digest::of_bytes(Algorithm::Sha256, body.as_bytes());
    let r = h.call("GET", "/v2/app/manifests/v1", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(r.header("content-type"), mt);
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    let r = h
        .call(
            "HEAD",
            &format!("/v2/app/manifests/{digest}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.header("content-length"), body.len().to_string());

    let r = h.call("GET", "/v2/app/tags/list?n=2", Body::empty()).await;
    assert_eq!(r.json()["tags"], serde_json::json!(["latest", "v1"]));
    assert_eq!(
        r.header("link"),
        "</v2/app/tags/list?n=2&last=v1>; rel=\"next\""
    );
    let r = h
        .call("GET", "/v2/app/tags/list?n=2&last=v1", Body::empty())
        .await;
    assert_eq!(r.json()["tags"], serde_json::json!(["v2", "v3"]));
    assert_eq!(r.header("link"), "");
    assert_eq!(
        h.call("GET", "/v2/nope/tags/list", Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h.call("GET", "/v2/_catalog", Body::empty()).await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["app"]));

    // Unknown blob, wrong digest reference, invalid reference.
    let missing = Digest::of_bytes(Algorithm::Sha256, b"missing");
    let r = h
        .put_manifest("app", "bad", mt, &image_manifest(&config, &missing, ""))
        .await;
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    let r = h.put_manifest("app", &missing.to_string(), mt, &body).await;
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");
    let r = h
        .call(
            "GET",
            "/v2/app/manifests/.INVALID_MANIFEST_NAME",
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Delete a tag, then the manifest (its remaining tags go with it).
    assert_eq!(
        h.call("DELETE", "/v2/app/manifests/v3", Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.call("GET", "/v2/app/manifests/v3", Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .call(
            "DELETE",
            &format!("/v2/app/manifests/{digest}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.call("GET", "/v2/app/manifests/v1", Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h.call("GET", "/v2/app/tags/list", Body::empty()).await;
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    assert_eq!(
        h.call("DELETE", &format!("/v2/app/blobs/{layer}"), Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.call("GET", &format!("/v2/app/blobs/{layer}"), Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn manifest_size_limit_is_413() {
    let h = harness();
    let big = format!(
        "{{\"schemaVersion\":2,\"pad\":\"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let r = h
        .put_manifest(
            "app",
            "big",
            "application/vnd.oci.image.manifest.v1+json",
            &big,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["errors"][0]["code"], "SIZE_INVALID");
}

#[tokio::test]
async fn referrers_with_filter_and_pagination() {
    let h = harness_with(RegistryConfig {
        referrers_page_size: 2,
        ..RegistryConfig::default()
    });
    let config = h.push_blob("app", b"{}").await;
    let layer = h.push_blob("app", b"layer").await;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    // The subject does not exist yet: referrers may come first.
    let subject = Digest::of_bytes(Algorithm::Sha256, b"subject-to-come");
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/x-sig",
        "application/x-sbom",
        "application/x-sig",
    ]
    .iter()
    .enumerate()
    {
        let extra = format!(
            r#","artifactType":"{at}","subject":{{"mediaType":"{mt}","digest":"{subject}","size":1}},"annotations":{{"n":"{i}"}}"#
        );
        let body = image_manifest(&config, &layer, &extra);
        let d = Digest::of_bytes(Algorithm::Sha256, body.as_bytes());
        let r = h.put_manifest("app", &d.to_string(), mt, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.header("oci-subject"), subject.to_string());
        pushed.push(d);
    }
    let r = h
        .call(
            "GET",
            &format!("/v2/app/referrers/{subject}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
    let next = r.header("link").to_string();
    assert!(next.contains("last="), "{next}");
    let url = next.trim_start_matches('<').split('>').next().unwrap();
    let r2 = h.call("GET", url, Body::empty()).await;
    assert_eq!(r2.json()["manifests"].as_array().unwrap().len(), 1);

    let r = h
        .call(
            "GET",
            &format!("/v2/app/referrers/{subject}?artifactType=application%2Fx-sbom"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let m = &r.json()["manifests"];
    assert_eq!(m.as_array().unwrap().len(), 1);
    assert_eq!(m[0]["artifactType"], "application/x-sbom");
    assert_eq!(m[0]["annotations"]["n"], "1");

    // Unknown subject: an empty index, not 404.
    let other = Digest::of_bytes(Algorithm::Sha256, b"nothing");
    let r = h
        .call("GET", &format!("/v2/app/referrers/{other}"), Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));

    // Deleting a referrer removes it from the list.
    h.call(
        "DELETE",
        &format!("/v2/app/manifests/{}", pushed[1]),
        Body::empty(),
    )
    .await;
    let r = h
        .call(
            "GET",
            &format!("/v2/app/referrers/{subject}?artifactType=application%2Fx-sbom"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.json()["manifests"], serde_json::json!([]));

    let off = harness_with(RegistryConfig {
        feature_referrers_api: false,
        ..RegistryConfig::default()
    });
    let r = off
        .call(
            "GET",
            &format!("/v2/app/referrers/{subject}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests() {
    let h = harness();
    h.call("GET", "/v2/", Body::empty()).await;
    h.push_blob("m", b"x").await;
    let r = h.call("GET", "/metrics", Body::empty()).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"quarry_http_requests_total{route="base",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("quarry_blob_bytes_received_total 1"),
        "{text}"
    );
    // Every route is counted by the one middleware: the endpoint under
    // /v2/{*path}, the catalog, an unknown path, and not /metrics itself.
    h.call("GET", "/v2/_catalog", Body::empty()).await;
    h.call("GET", "/v2/m/nonsense", Body::empty()).await;
    let r = h.call("GET", "/metrics", Body::empty()).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for line in [
        r#"quarry_http_requests_total{route="upload_start",method="POST",status="201"} 1"#,
        r#"quarry_http_requests_total{route="catalog",method="GET",status="200"} 1"#,
        r#"quarry_http_requests_total{route="unknown",method="GET",status="404"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains(r#"route="metrics""#), "{text}");
}

#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let h = harness();
    let config = h.push_blob("app", b"{}").await;
    let layer = h.push_blob("app", b"layer").await;
    let body = image_manifest(&config, &layer, "");
    let d = Digest::of_bytes(Algorithm::Sha256, body.as_bytes());
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let r = h
        .put_manifest("app", &format!("{d}?tag=one&tag=two"), mt, &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header("oci-tag"), "one, two");
    let r = h.call("GET", "/v2/app/tags/list", Body::empty()).await;
    assert_eq!(r.json()["tags"], serde_json::json!(["one", "two"]));
    let r = h
        .put_manifest("app", &format!("{d}?tag=bad:tag"), mt, &body)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn policy_refusal_names_the_type_and_stores_nothing() {
    let h = harness_with(RegistryConfig {
        feature_general_oci_support: false,
        ..RegistryConfig::default()
    });
    let config = h.push_blob("app", b"{}").await;
    let layer = h.push_blob("app", b"sif").await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{{"mediaType":"application/vnd.sylabs.sif.config.v1+json","digest":"{config}","size":2}},
"layers":[{{"mediaType":"application/vnd.sylabs.sif.layer.v1+tar","digest":"{layer}","size":3}}]}}"#
    );
    let r = h
        .put_manifest(
            "app",
            "sif",
            "application/vnd.oci.image.manifest.v1+json",
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    assert!(
        message.contains("application/vnd.sylabs.sif.config.v1+json"),
        "{message}"
    );
    assert!(message.contains("FEATURE_GENERAL_OCI_SUPPORT"), "{message}");
    assert_eq!(
        h.call("GET", "/v2/app/manifests/sif", Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let d = Digest::of_bytes(Algorithm::Sha256, body.as_bytes());
    assert_eq!(
        h.call("GET", &format!("/v2/app/manifests/{d}"), Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let text =
        String::from_utf8(h.call("GET", "/metrics", Body::empty()).await.body.to_vec()).unwrap();
    assert!(
        text.contains(r#"quarry_policy_refusals_total{reason="general_oci_disabled"} 1"#),
        "{text}"
    );
}

fn immutable_config(policies: &str) -> RegistryConfig {
    RegistryConfig {
        feature_immutable_tags: true,
        immutable_tags_policies: serde_json::from_str(policies).unwrap(),
        ..RegistryConfig::default()
    }
}

/// Push an image whose config is `config_json` under `reference`; returns
/// the manifest's digest and the reply.
async fn push_image(
    h: &Harness,
    repo: &str,
    reference: &str,
    config_json: &'static [u8],
    layer: &'static [u8],
) -> (Digest, Reply) {
    let config = h.push_blob(repo, config_json).await;
    let layer = h.push_blob(repo, layer).await;
    let body = image_manifest(&config, &layer, "");
    let digest = Digest::of_bytes(Algorithm::Sha256, body.as_bytes());
    let r = h
        .put_manifest(
            repo,
            reference,
            "application/vnd.oci.image.manifest.v1+json",
            &body,
        )
        .await;
    (digest, r)
}

#[tokio::test]
async fn immutable_tags_by_policy_refuse_moves_and_deletes_and_store_nothing() {
    let h = harness_with(immutable_config(
        r#"[{"namespace":"prod","tagPattern":"v[0-9]+"}]"#,
    ));
    let (first, r) = push_image(&h, "prod/app", "v1", b"{}", b"one").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The same manifest again: nothing moves, accepted.
    let (_, r) = push_image(&h, "prod/app", "v1", b"{}", b"one").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let (second, r) = push_image(&h, "prod/app", "v1", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let error = &r.json()["errors"][0];
    assert_eq!(error["code"], "DENIED");
    let message = error["message"].as_str().unwrap();
    for part in [
        "tag prod/app:v1 is immutable",
        "IMMUTABLE_TAGS_POLICIES: namespace \"prod\", tagPattern \"v[0-9]+\"",
        &format!("it names {first}"),
        &format!("{second} would move it"),
    ] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    // Nothing of the refused push was stored: the manifest is unknown and
    // the tag still names the first.
    let r = h
        .call(
            "GET",
            &format!("/v2/prod/app/manifests/{second}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .call("HEAD", "/v2/prod/app/manifests/v1", Body::empty())
        .await;
    assert_eq!(r.header("docker-content-digest"), first.to_string());
    // Nor by digest with ?tag=.
    let config = h.push_blob("prod/app", b"{}").await;
    let layer = h.push_blob("prod/app", b"two").await;
    let body = image_manifest(&config, &layer, "");
    let r = h
        .put_manifest(
            "prod/app",
            &format!("{second}?tag=v1"),
            "application/vnd.oci.image.manifest.v1+json",
            &body,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = h
        .call("DELETE", "/v2/prod/app/manifests/v1", Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be deleted")
    );
    let r = h
        .call(
            "DELETE",
            &format!("/v2/prod/app/manifests/{first}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!(
            "manifest {first} is named by the immutable tag prod/app:v1"
        )),
        "{message}"
    );
    let r = h
        .call(
            "GET",
            &format!("/v2/prod/app/manifests/{first}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Tags the policy does not match, and other namespaces, stay mutable.
    let (_, r) = push_image(&h, "prod/app", "latest", b"{}", b"one").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (_, r) = push_image(&h, "prod/app", "latest", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .call("DELETE", "/v2/prod/app/manifests/latest", Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let (_, r) = push_image(&h, "dev/app", "v1", b"{}", b"one").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (_, r) = push_image(&h, "dev/app", "v1", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn the_quay_immutable_label_protects_the_tags_naming_the_image() {
    const LABELLED: &[u8] = br#"{"config":{"Labels":{"quay.immutable":"true"}}}"#;
    let h = harness_with(immutable_config("[]"));
    let (first, r) = push_image(&h, "team/app", "release", LABELLED, b"one").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (_, r) = push_image(&h, "team/app", "release", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("has the label quay.immutable=true"),
        "{message}"
    );
    let r = h
        .call(
            "DELETE",
            &format!("/v2/team/app/manifests/{first}"),
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // An unlabelled image's tag moves freely; and with the feature off the
    // label protects nothing.
    let (_, r) = push_image(&h, "team/app", "dev", b"{}", b"one").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (_, r) = push_image(&h, "team/app", "dev", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let off = harness();
    let (_, r) = push_image(&off, "team/app", "release", LABELLED, b"one").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (_, r) = push_image(&off, "team/app", "release", b"{}", b"two").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn quotas_refuse_the_push_that_would_pass_the_reject_limit_and_count_warnings() {
    let config = RegistryConfig::from_yaml(
        "FEATURE_QUOTA_MANAGEMENT: true\nNAMESPACE_QUOTAS:\n  - namespace: team\n    limit_bytes: 10\n    limits: [{type: Warning, threshold_percent: 50}, {type: Reject, threshold_percent: 100}]\n",
        None,
    )
    .unwrap()
    .config;
    let h = harness_with(config);
    // 2 bytes of config and 5 of layer: past the warning limit (5), accepted.
    let (_, r) = push_image(&h, "team/a", "v1", b"{}", b"12345").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The config blob is shared, so 6 new bytes would make 13 > 10.
    let (refused, r) = push_image(&h, "team/b", "v1", b"{}", b"abcdef").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    for part in [
        "namespace team is over its quota",
        "this push would bring it to 13 B",
        "reject limit of 10 B, 100% of limit_bytes 10 in NAMESPACE_QUOTAS[0]",
        "FEATURE_QUOTA_MANAGEMENT is true",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    let r = h
        .call(
            "GET",
            &format!("/v2/team/b/manifests/{refused}"),
            Body::empty(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "nothing of the refused push is stored"
    );
    // Exactly at the limit is allowed; then no new upload may start.
    let (_, r) = push_image(&h, "team/c", "v1", b"{}", b"xyz").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .call("POST", "/v2/team/c/blobs/uploads/", Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("it uses 10 B")
    );
    // Other namespaces have no quota.
    let (_, r) = push_image(&h, "other/a", "v1", b"{}", b"a much larger layer").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let metrics = h.call("GET", "/metrics", Body::empty()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("quarry_quota_warnings_total{namespace=\"team\"}"),
        "{text}"
    );
    assert!(
        text.contains("quarry_quota_refusals_total{namespace=\"team\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn of_pushes_racing_to_create_an_immutable_tag_exactly_one_wins() {
    let h = harness_with(immutable_config(
        r#"[{"namespace":"prod","tagPattern":"v.*"}]"#,
    ));
    let config = h.push_blob("prod/app", b"{}").await;
    let mut bodies = Vec::new();
    for layer in [&b"l0"[..], b"l1", b"l2", b"l3", b"l4", b"l5"] {
        let layer = h.push_blob("prod/app", layer).await;
        bodies.push(image_manifest(&config, &layer, ""));
    }
    let pushes = bodies.iter().map(|body| {
        h.put_manifest(
            "prod/app",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            body,
        )
    });
    let replies = futures::future::join_all(pushes).await;
    let created: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == StatusCode::CREATED)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        replies
            .iter()
            .all(|r| r.status == StatusCode::CREATED || r.status == StatusCode::FORBIDDEN)
    );
    // The tag names the winner's manifest.
    let winner = Digest::of_bytes(Algorithm::Sha256, bodies[created[0]].as_bytes());
    let r = h
        .call("HEAD", "/v2/prod/app/manifests/v1", Body::empty())
        .await;
    assert_eq!(r.header("docker-content-digest"), winner.to_string());
}

#[tokio::test]
async fn a_blob_being_garbage_collected_is_404_to_head_and_refuses_the_manifest_naming_it() {
    use crate::gc::markers::{self, CONDEMNED, Subject};
    let h = harness();
    let config = h.push_blob("team/app", b"{}").await;
    let layer = h.push_blob("team/app", b"layer").await;
    let s = h.storage.as_ref();
    crate::gc::sweep::sweep(s, std::time::Duration::ZERO)
        .await
        .unwrap();
    let subject = Subject::Blob(layer.clone());
    let marker = markers::list(s, CONDEMNED)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.subject == subject)
        .unwrap();
    // A sweep begins deleting the layer.
    assert!(
        markers::begin(s, &subject, &marker.condemnation)
            .await
            .unwrap()
    );
    let head = h
        .call(
            "HEAD",
            &format!("/v2/team/app/blobs/{layer}"),
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let r = h
        .put_manifest(
            "team/app",
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &image_manifest(&config, &layer, ""),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let error = &r.json()["errors"][0];
    assert_eq!(error["code"], "MANIFEST_BLOB_UNKNOWN");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&layer.to_string()) && message.contains("garbage collection"),
        "{message}"
    );
    let tags = h.call("GET", "/v2/team/app/tags/list", Body::empty()).await;
    assert_eq!(
        tags.json()["tags"],
        serde_json::json!([]),
        "no tag for a refused push"
    );
    // The config blob, not being deleted, answers HEAD and is rescued.
    let head = h
        .call(
            "HEAD",
            &format!("/v2/team/app/blobs/{config}"),
            Body::empty(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
}

fn session_id(r: &Reply) -> String {
    r.header("location").rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn upload_sessions_are_bounded_per_client_and_overall() {
    let h = harness_with(RegistryConfig {
        maximum_upload_sessions: 3,
        maximum_upload_sessions_per_client: 2,
        ..RegistryConfig::default()
    });
    let first = h.call("POST", "/v2/a/blobs/uploads/", "").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.call("POST", "/v2/b/blobs/uploads/", "").await.status,
        StatusCode::ACCEPTED
    );
    let refused = h.call("POST", "/v2/a/blobs/uploads/", "").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("retry-after"), "5");
    let message = refused.json()["errors"][0]["message"].to_string();
    assert!(
        message.contains("MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT") && message.contains("address"),
        "{message}"
    );
    // The refused session left nothing behind; a monolithic push is refused too.
    let d = Digest::of_bytes(Algorithm::Sha256, b"x");
    let r = h
        .call("POST", &format!("/v2/a/blobs/uploads/?digest={d}"), "x")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!h.storage.blob_present(&d).await.unwrap());
    // Cancelling a session frees its place.
    let id = session_id(&first);
    let r = h
        .call("DELETE", &format!("/v2/a/blobs/uploads/{id}"), "")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.push_blob("a", b"fits now").await;
}

#[tokio::test]
async fn staged_bytes_over_the_limit_get_413_and_are_rolled_back() {
    let h = harness_with(RegistryConfig {
        maximum_staged_upload_bytes_per_client: 100,
        ..RegistryConfig::default()
    });
    let open = h.call("POST", "/v2/a/blobs/uploads/", "").await;
    let id = session_id(&open);
    let uri = format!("/v2/a/blobs/uploads/{id}");
    // Announced too large: refused before the body is read (the body
    // stalls, so reading it would end in a timeout instead).
    let r = h
        .send(
            Request::builder()
                .method("PATCH")
                .uri(&uri)
                .header("content-length", "150")
                .body(Body::from_stream(futures::stream::pending::<
                    Result<bytes::Bytes, std::io::Error>,
                >()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let message = r.json()["errors"][0]["message"].to_string();
    assert!(
        message.contains("MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT") && message.contains("100"),
        "{message}"
    );
    // The refused session is closed: clients start over after a 413.
    assert_eq!(h.call("GET", &uri, "").await.status, StatusCode::NOT_FOUND);
    let id = session_id(&h.call("POST", "/v2/a/blobs/uploads/", "").await);
    let uri = format!("/v2/a/blobs/uploads/{id}");
    // Streamed without a length: cut off when it passes, nothing stored.
    let chunks = futures::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 50]))),
    );
    let r = h
        .send(
            Request::builder()
                .method("PATCH")
                .uri(&uri)
                .body(Body::from_stream(chunks))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert!(
        r.json()["errors"][0]["message"]
            .to_string()
            .contains("session was closed")
    );
    assert_eq!(h.call("GET", &uri, "").await.status, StatusCode::NOT_FOUND);
    let id = session_id(&h.call("POST", "/v2/a/blobs/uploads/", "").await);
    let uri = format!("/v2/a/blobs/uploads/{id}");
    // Within the limit: accepted; a second session of the same client
    // shares the limit until the first is committed.
    let r = h.call("PATCH", &uri, vec![7u8; 60]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let second = session_id(&h.call("POST", "/v2/a/blobs/uploads/", "").await);
    let second_uri = format!("/v2/a/blobs/uploads/{second}");
    let r = h.call("PATCH", &second_uri, vec![8u8; 50]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let second = session_id(&h.call("POST", "/v2/a/blobs/uploads/", "").await);
    let second_uri = format!("/v2/a/blobs/uploads/{second}");
    let d = Digest::of_bytes(Algorithm::Sha256, &[7u8; 60]);
    let r = h.call("PUT", &format!("{uri}?digest={d}"), "").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.call("PATCH", &second_uri, vec![8u8; 50]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_that_stops_sending_gets_408_and_the_session_is_kept() {
    let h = harness_with(RegistryConfig {
        request_body_idle_timeout_seconds: 1,
        ..RegistryConfig::default()
    });
    let id = session_id(&h.call("POST", "/v2/a/blobs/uploads/", "").await);
    let uri = format!("/v2/a/blobs/uploads/{id}");
    use futures::StreamExt as _;
    let stalls = futures::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"some bytes, then nothing"))
    })
    .chain(futures::stream::pending());
    let started = std::time::Instant::now();
    let r = h
        .send(
            Request::builder()
                .method("PATCH")
                .uri(&uri)
                .body(Body::from_stream(stalls))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{:?}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let message = r.json()["errors"][0]["message"].to_string();
    assert!(
        message.contains("REQUEST_BODY_IDLE_TIMEOUT_SECONDS"),
        "{message}"
    );
    let status = h.call("GET", &uri, "").await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), "0-0");
}

#[tokio::test]
async fn listings_are_capped_with_a_link_to_the_rest() {
    let h = harness_with(RegistryConfig {
        maximum_list_entries: 2,
        ..RegistryConfig::default()
    });
    for tag in ["t1", "t2", "t3"] {
        let (_, r) = push_image(&h, "a", tag, b"{}", b"layer").await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    for uri in ["/v2/a/tags/list", "/v2/a/tags/list?n=1000"] {
        let r = h.call("GET", uri, "").await;
        assert_eq!(r.json()["tags"], serde_json::json!(["t1", "t2"]), "{uri}");
        assert_eq!(
            r.header("link"),
            "</v2/a/tags/list?n=2&last=t2>; rel=\"next\"",
            "{uri}"
        );
    }
    let r = h.call("GET", "/v2/a/tags/list?n=2&last=t2", "").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["t3"]));
    assert_eq!(r.header("link"), "");
    h.push_blob("b", b"b").await;
    h.push_blob("c", b"c").await;
    let r = h.call("GET", "/v2/_catalog", "").await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["a", "b"]));
    assert!(r.header("link").contains("last=b"));
}

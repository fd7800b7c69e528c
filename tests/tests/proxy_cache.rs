//! Pull-through cache namespaces against real upstreams on loopback: CNCF
//! distribution (no login), a Quarry with accounts and TLS (token flow),
//! and a stub for what real registries do not do on purpose (lying about a
//! digest, rate-limiting).

use std::path::Path;
use std::time::Duration;

use quarry_e2e::clients::{
    cosign, cosign_verify_plain_http, crane, helm, oras, oras_attach_plain_http, skopeo,
    skopeo_copy_layout,
};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::secure::{ADMIN, PASSWORD, SecureRegistry};
use quarry_e2e::uploads::push_blob;
use quarry_e2e::upstreams::{Distribution, StubEntry, StubMode, StubUpstream};
use quarry_e2e::{Registry, http, run, run_refused, run_text, sha256};

fn cache_config(namespace: &str, upstream: &str, expiration_s: u64, extra: &str) -> String {
    format!(
        "FEATURE_PROXY_CACHE: true\nPROXY_CACHE_NAMESPACES:\n  - namespace: {namespace}\n    upstream_registry: \"{upstream}\"\n    expiration_s: {expiration_s}\n{extra}"
    )
}

const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn manifest_digest(url: &str) -> (u16, Option<String>, Option<String>, String) {
    let r = http::blocking()
        .get(url)
        .header("Accept", MANIFEST_ACCEPT)
        .send()
        .expect("manifest request");
    let status = r.status().as_u16();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let digest = header("docker-content-digest");
    let warning = header("warning");
    (status, digest, warning, r.text().unwrap_or_default())
}

/// skopeo, crane and cosign through a cache of distribution; a moved tag
/// followed only after expiry; cached pulls with the upstream stopped;
/// pushes refused; one upstream download for 8 concurrent pulls.
#[test]
fn pulls_through_distribution() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut upstream = Distribution::start();
    let image = write_image_layout(&dir.join("v1"), "v1", 2, 256 * 1024);
    run(&mut skopeo_copy_layout(
        &dir.join("v1"),
        &format!("{}/tools/app:v1", upstream.host()),
    ));
    let upstream_ref = format!("{}/tools/app@{}", upstream.host(), image.manifest_digest);
    run(cosign(dir).arg("generate-key-pair"));
    run(cosign(dir)
        .args([
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--allow-insecure-registry",
        ])
        .arg(&upstream_ref));

    let expiration = 4;
    let cache = Registry::start_with_config(Some(&cache_config(
        "hub",
        &upstream.host(),
        expiration,
        "    insecure: true\n",
    )));
    let through = format!("{}/hub/tools/app", cache.host());

    // skopeo: the exact manifest and layers.
    run(skopeo()
        .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
        .arg(format!("docker://{through}:v1"))
        .arg(format!("oci:{}:v1", dir.join("pulled").display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pulled/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.as_str()
    );
    for layer in &image.layer_digests {
        let hex = layer.trim_start_matches("sha256:");
        let pulled = std::fs::read(dir.join("pulled/blobs/sha256").join(hex)).unwrap();
        let original = std::fs::read(dir.join("v1/blobs/sha256").join(hex)).unwrap();
        assert_eq!(
            pulled, original,
            "layer {layer} differs from the upstream's"
        );
    }
    // crane and cosign (its signature comes through the sha256-<hex>.sig tag).
    let digest = run_text(
        crane(dir)
            .args(["digest", "--insecure"])
            .arg(format!("{through}:v1")),
    );
    assert_eq!(digest.trim(), image.manifest_digest);
    let verified = run_text(&mut cosign_verify_plain_http(
        dir,
        &format!("{through}@{}", image.manifest_digest),
    ));
    assert!(verified.contains(&image.manifest_digest), "{verified}");

    // helm: a chart pushed upstream, pulled through the cache byte for byte.
    run(helm(dir).args(["create", "cachedchart"]));
    run(helm(dir).args(["package", "cachedchart"]));
    run(helm(dir)
        .args(["push", "--plain-http", "cachedchart-0.1.0.tgz"])
        .arg(format!("oci://{}/charts", upstream.host())));
    std::fs::create_dir_all(dir.join("charts")).unwrap();
    run(helm(dir)
        .args(["pull", "--plain-http", "--version", "0.1.0", "-d", "charts"])
        .arg(format!("oci://{}/hub/charts/cachedchart", cache.host())));
    assert_eq!(
        std::fs::read(dir.join("charts/cachedchart-0.1.0.tgz")).unwrap(),
        std::fs::read(dir.join("cachedchart-0.1.0.tgz")).unwrap()
    );

    // Pushes into the cache namespace are refused, naming it.
    let refused = run_refused(&mut skopeo_copy_layout(
        &dir.join("v1"),
        &format!("{}/hub/tools/other:v1", cache.host()),
    ));
    assert!(refused.contains("pull-through cache"), "{refused}");

    // The tag moves upstream: the cache follows only after expiration_s.
    let moved = write_image_layout(&dir.join("v2"), "v1", 1, 64 * 1024);
    run(&mut skopeo_copy_layout(
        &dir.join("v2"),
        &format!("{}/tools/app:v1", upstream.host()),
    ));
    let (status, before, _, _) = manifest_digest(&format!(
        "http://{}/v2/hub/tools/app/manifests/v1",
        cache.host()
    ));
    assert_eq!(
        (status, before.as_deref()),
        (200, Some(image.manifest_digest.as_str()))
    );
    std::thread::sleep(Duration::from_secs(expiration + 1));
    let (status, after, _, _) = manifest_digest(&format!(
        "http://{}/v2/hub/tools/app/manifests/v1",
        cache.host()
    ));
    assert_eq!(
        (status, after.as_deref()),
        (200, Some(moved.manifest_digest.as_str()))
    );
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{through}:v1"))
        .arg(format!("oci:{}:v1", dir.join("moved").display())));
    // An unchanged tag is confirmed by HEAD alone: no manifest GET upstream.
    std::thread::sleep(Duration::from_secs(expiration + 1));
    let gets = upstream.requests_matching("/v2/tools/app/manifests/v1");
    let (status, again, _, _) = manifest_digest(&format!(
        "http://{}/v2/hub/tools/app/manifests/v1",
        cache.host()
    ));
    assert_eq!(
        (status, again.as_deref()),
        (200, Some(moved.manifest_digest.as_str()))
    );
    assert_eq!(
        upstream.requests_matching("/v2/tools/app/manifests/v1"),
        gets,
        "a fresh GET for an unchanged tag"
    );
    assert!(cache.metric("quarry_proxy_cache_requests_total{result=\"revalidated\"}") >= 1.0);

    // 8 concurrent pulls of one uncached 100 MiB blob: one upstream GET,
    // 8 identical bodies. The first client pauses after its first bytes,
    // so it falls behind the bytes kept in memory and reads the rest
    // from the spool file.
    let mut content = vec![0u8; 100 * 1024 * 1024];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut content);
    let layer = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push_blob(
            &http::client(),
            &format!("http://{}", upstream.host()),
            "tools/big",
            content,
            true,
        ))
        .expect("push the big blob upstream");
    let url = format!("http://{}/v2/hub/tools/big/blobs/{layer}", cache.host());
    let pulls: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut response = http::blocking_builder()
                    .timeout(Duration::from_secs(300))
                    .build()
                    .unwrap()
                    .get(&url)
                    .send()
                    .and_then(|r| r.error_for_status())
                    .expect("pull through the cache");
                let mut body = vec![0u8; 64 * 1024];
                std::io::Read::read_exact(&mut response, &mut body).expect("the first bytes");
                if i == 0 {
                    std::thread::sleep(Duration::from_secs(4));
                }
                std::io::Read::read_to_end(&mut response, &mut body).expect("the rest");
                sha256(&body)
            })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.join().unwrap(), layer);
    }
    assert_eq!(
        upstream.requests_matching(&format!("/v2/tools/big/blobs/{layer}")),
        1,
        "upstream GETs of the big blob"
    );

    // The upstream stops: what is cached is served, past expiry with a
    // Warning; what is not fails naming the upstream.
    upstream.stop();
    std::thread::sleep(Duration::from_secs(expiration + 1));
    let (status, stale, warning, _) = manifest_digest(&format!(
        "http://{}/v2/hub/tools/app/manifests/v1",
        cache.host()
    ));
    assert_eq!(
        (status, stale.as_deref()),
        (200, Some(moved.manifest_digest.as_str()))
    );
    let warning = warning.expect("a Warning header on a stale answer");
    assert!(
        warning.starts_with("299 - ") && warning.contains(&upstream.host()),
        "{warning}"
    );
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{through}:v1"))
        .arg(format!("oci:{}:v1", dir.join("offline").display())));
    let (status, _, _, body) = manifest_digest(&format!(
        "http://{}/v2/hub/tools/never/manifests/v1",
        cache.host()
    ));
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&upstream.host()) && body.contains("could not be reached"),
        "{body}"
    );
    assert!(cache.metric("quarry_proxy_cache_requests_total{result=\"stale\"}") >= 1.0);
}

/// A Quarry upstream with accounts: the token flow with the configured
/// account, oras artifacts and the referrers API; a wrong password fails
/// naming the upstream.
#[test]
fn pulls_through_quarry_with_accounts() {
    let upstream = SecureRegistry::start("");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let login = |d: &Path| {
        run(oras(d)
            .args(["login", "-u", ADMIN, "-p", PASSWORD, "--ca-file"])
            .arg(&upstream.ca_file)
            .arg(upstream.host()));
    };
    login(dir);
    std::fs::write(dir.join("notes.txt"), b"release notes").unwrap();
    run(oras(dir)
        .args(["push", "--ca-file"])
        .arg(&upstream.ca_file)
        .arg(format!("{}/team/notes:v1", upstream.host()))
        .args([
            "--artifact-type",
            "application/vnd.example.notes",
            "notes.txt",
        ]));
    std::fs::write(dir.join("sbom.json"), br#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    run(oras(dir)
        .args(["attach", "--ca-file"])
        .arg(&upstream.ca_file)
        .args(["--artifact-type", "application/spdx+json"])
        .arg(format!("{}/team/notes:v1", upstream.host()))
        .arg("sbom.json"));

    let config = |password: &str| {
        cache_config(
            "mirror",
            &upstream.host(),
            60,
            &format!(
                "    upstream_registry_username: {ADMIN}\n    upstream_registry_password: \"{password}\"\n    upstream_ca_file: {}\n",
                upstream.ca_file.display()
            ),
        )
    };
    let cache = Registry::start_with_config(Some(&config(PASSWORD)));
    let pulled = tempfile::tempdir().unwrap();
    run(oras(pulled.path())
        .args(["pull", "--plain-http"])
        .arg(format!("{}/mirror/team/notes:v1", cache.host())));
    assert_eq!(
        std::fs::read(pulled.path().join("notes.txt")).unwrap(),
        b"release notes"
    );
    let tree = run_text(
        oras(pulled.path())
            .args(["discover", "--plain-http", "--format", "tree"])
            .arg(format!("{}/mirror/team/notes:v1", cache.host())),
    );
    assert!(tree.contains("application/spdx+json"), "{tree}");

    let wrong = Registry::start_with_config(Some(&config("not the password")));
    let (status, _, _, body) = manifest_digest(&format!(
        "{}/v2/mirror/team/notes/manifests/v1",
        wrong.url()
    ));
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&upstream.host()) && body.contains("refused the credentials"),
        "{body}"
    );
}

/// An upstream that serves bytes not matching their digest: the client
/// gets an error and nothing is cached. One that answers 429: cached
/// content is still served, with a Warning; a miss gets the 429.
#[test]
fn lying_and_rate_limited_upstreams() {
    let stub = StubUpstream::start();
    let config_blob =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let claimed = vec![7u8; 1 << 20];
    let layer_digest = sha256(&claimed);
    let mut served = claimed.clone();
    served[123_456] ^= 0xff;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config_blob), "size": config_blob.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": claimed.len()}],
    })
    .to_string()
    .into_bytes();
    let manifest_digest_value = sha256(&manifest);
    for path in [
        "/v2/app/manifests/v1".to_string(),
        format!("/v2/app/manifests/{manifest_digest_value}"),
    ] {
        stub.serve(StubEntry {
            path,
            content_type: "application/vnd.oci.image.manifest.v1+json".into(),
            body: manifest.clone(),
            digest: manifest_digest_value.clone(),
        });
    }
    stub.serve(StubEntry {
        path: format!("/v2/app/blobs/{layer_digest}"),
        content_type: "application/octet-stream".into(),
        body: served,
        digest: layer_digest.clone(),
    });
    let cache = Registry::start_with_config(Some(&cache_config(
        "stub",
        &stub.host(),
        0,
        "    insecure: true\n",
    )));
    let blob_url = format!("{}/v2/stub/app/blobs/{layer_digest}", cache.url());
    for attempt in 0..2 {
        let result = http::blocking()
            .get(&blob_url)
            .send()
            .and_then(|r| r.bytes());
        assert!(
            result.is_err(),
            "attempt {attempt}: a corrupted blob was delivered whole"
        );
    }
    assert_eq!(cache.metric("quarry_proxy_cache_corrupt_total"), 2.0);
    let stored = walk_files(&cache.data)
        .into_iter()
        .filter(|p| p.contains(layer_digest.trim_start_matches("sha256:")))
        .collect::<Vec<_>>();
    assert!(
        stored.is_empty(),
        "corrupted content was stored: {stored:?}"
    );

    // Cache the manifest, then rate-limit: expiration_s 0 asks on every
    // pull, and gets 429.
    let tag_url = format!("{}/v2/stub/app/manifests/v1", cache.url());
    let (status, digest, _, _) = manifest_digest(&tag_url);
    assert_eq!(
        (status, digest.as_deref()),
        (200, Some(manifest_digest_value.as_str()))
    );
    stub.set_mode(StubMode::RateLimited);
    let (status, digest, warning, _) = manifest_digest(&tag_url);
    assert_eq!(
        (status, digest.as_deref()),
        (200, Some(manifest_digest_value.as_str()))
    );
    let warning = warning.expect("Warning on a rate-limited revalidation");
    assert!(warning.contains("429"), "{warning}");
    let miss = http::blocking()
        .get(format!("{}/v2/stub/other/manifests/v1", cache.url()))
        .send()
        .unwrap();
    assert_eq!(miss.status().as_u16(), 429);
    assert_eq!(
        miss.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let text = miss.text().unwrap();
    assert!(
        text.contains(&stub.host()) && text.contains("pull rate limit"),
        "{text}"
    );
}

fn walk_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// A multi-platform index through a cache of distribution: the index is
/// served as the upstream has it, only the platforms pulled are cached
/// (docs/proxy-cache.md), and an SBOM the upstream keeps under the
/// `sha256-<hex>` fallback tag (distribution has no referrers API) is
/// found through the cache's referrers API.
#[test]
fn an_index_caches_the_platforms_pulled_and_finds_fallback_tag_referrers() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut upstream = Distribution::start();
    let host = upstream.host();
    let amd = write_image_layout(&dir.join("amd"), "v1", 1, 64 * 1024);
    run(&mut skopeo_copy_layout(
        &dir.join("amd"),
        &format!("{host}/tools/multi:amd"),
    ));
    let arm = write_image_layout(&dir.join("arm"), "v1", 1, 32 * 1024);
    run(&mut skopeo_copy_layout(
        &dir.join("arm"),
        &format!("{host}/tools/multi:arm"),
    ));
    run(crane(dir)
        .args(["index", "append", "--insecure", "-m"])
        .arg(format!("{host}/tools/multi:amd"))
        .arg("-m")
        .arg(format!("{host}/tools/multi:arm"))
        .arg("-t")
        .arg(format!("{host}/tools/multi:both")));
    let index = run_text(
        crane(dir)
            .args(["digest", "--insecure"])
            .arg(format!("{host}/tools/multi:both")),
    )
    .trim()
    .to_string();
    std::fs::write(dir.join("sbom.json"), br#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    run(&mut oras_attach_plain_http(
        dir,
        "application/spdx+json",
        &format!("{host}/tools/multi@{index}"),
        "sbom.json",
    ));
    let tags = run_text(
        crane(dir)
            .args(["ls", "--insecure"])
            .arg(format!("{host}/tools/multi")),
    );
    let fallback = format!("sha256-{}", index.trim_start_matches("sha256:"));
    assert!(
        tags.contains(&fallback),
        "the SBOM is not under the fallback tag upstream: {tags}"
    );

    let cache = Registry::start_with_config(Some(&cache_config(
        "hub",
        &host,
        3600,
        "    insecure: true\n",
    )));
    let through = format!("{}/v2/hub/tools/multi", cache.url());
    let upstream_index = manifest_digest(&format!("http://{host}/v2/tools/multi/manifests/both"));
    let (status, digest, _, body) = manifest_digest(&format!("{through}/manifests/both"));
    assert_eq!(status, 200, "{body}\n{}", cache.log_text());
    assert_eq!(digest.as_deref(), Some(index.as_str()));
    assert_eq!(body, upstream_index.3, "the index is not byte-identical");
    // One platform pulled, by digest.
    let (status, digest, _, _) =
        manifest_digest(&format!("{through}/manifests/{}", amd.manifest_digest));
    assert_eq!(status, 200, "{}", cache.log_text());
    assert_eq!(digest.as_deref(), Some(amd.manifest_digest.as_str()));
    // The SBOM, found by the referrers API of the cache.
    let tree = run_text(
        oras(dir)
            .args(["discover", "--plain-http", "--format", "tree"])
            .arg(format!("{}/hub/tools/multi@{index}", cache.host())),
    );
    assert!(tree.contains("application/spdx+json"), "{tree}");

    // Upstream gone: the index and the pulled platform are served; the
    // platform nobody pulled was never cached.
    upstream.stop();
    let (status, _, _, _) = manifest_digest(&format!("{through}/manifests/both"));
    assert_eq!(status, 200, "{}", cache.log_text());
    let (status, _, _, _) =
        manifest_digest(&format!("{through}/manifests/{}", amd.manifest_digest));
    assert_eq!(status, 200, "{}", cache.log_text());
    let (status, _, _, body) =
        manifest_digest(&format!("{through}/manifests/{}", arm.manifest_digest));
    assert_ne!(status, 200, "a platform nobody pulled was cached: {body}");
    assert!(
        body.contains(&host),
        "the miss does not name the upstream: {body}"
    );
}

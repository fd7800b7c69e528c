//! Several registry replicas on one S3 bucket (MinIO on loopback) behind a
//! round-robin load balancer (nginx): every request of a push may land on
//! another replica. The conformance suite and real clients pass through
//! it, concurrent pushes of one tag end consistent, and a replica killed
//! mid-upload loses nothing that was acknowledged.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::SinkExt;
use quarry_e2e::clients::{crane, helm, oras, skopeo};
use quarry_e2e::conformance::{
    MAIN_MIN_PASSED, V1_MAX_SKIPPED, V1_MIN_PASSED, main_suite, v1_suite,
};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::scale::{LoadBalancer, Minio, replicas};
use quarry_e2e::uploads::{patch_chunk, push_blob};
use quarry_e2e::{Registry, run, run_text, sha256};
use rand::Rng;

fn upstreams_used(lb: &LoadBalancer) -> BTreeSet<String> {
    lb.access_log()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .flat_map(|addrs| addrs.split(", "))
        .filter(|addr| addr.starts_with("127.0.0.1:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn conformance_v1_through_a_load_balancer_over_two_replicas_on_minio() {
    let minio = Minio::start("conformance");
    let registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    let context = format!(
        "replica 1:\n{}\nreplica 2:\n{}",
        registries[0].log_text(),
        registries[1].log_text()
    );
    v1_suite(&lb.url(), true, &[]).assert_clean(V1_MIN_PASSED, V1_MAX_SKIPPED, &context);
    let used = upstreams_used(&lb);
    assert_eq!(
        used.len(),
        2,
        "requests did not reach both replicas: {used:?}"
    );
}

#[test]
fn skopeo_oras_and_helm_through_the_load_balancer() {
    let minio = Minio::start("clients");
    let registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    let host = lb.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    let layout = dir.join("layout");
    let image = write_image_layout(&layout, "v1", 3, 3 * 1024 * 1024);
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{host}/team/app:v1")));
    let back = dir.join("back");
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/team/app:v1"))
        .arg(format!("oci:{}:v1", back.display())));
    let index = std::fs::read_to_string(back.join("index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
    // Each replica serves the image on its own.
    for registry in &registries {
        let digest = run_text(
            crane(dir)
                .args(["digest", "--insecure"])
                .arg(format!("{}/team/app:v1", registry.host())),
        );
        assert_eq!(digest.trim(), image.manifest_digest);
    }

    std::fs::write(dir.join("artifact.txt"), "artifact\n").unwrap();
    std::fs::write(dir.join("sig.txt"), "signature\n").unwrap();
    run(oras(dir).args([
        "push",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.artifact",
        &format!("{host}/team/artifact:v1"),
        "artifact.txt",
    ]));
    run(oras(dir).args([
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.signature",
        &format!("{host}/team/artifact:v1"),
        "sig.txt",
    ]));
    for _ in 0..2 {
        // Round robin: the two discoveries are answered by different replicas.
        let discovered = run_text(oras(dir).args([
            "discover",
            "--plain-http",
            "--format",
            "json",
            &format!("{host}/team/artifact:v1"),
        ]));
        assert!(
            discovered.contains("application/vnd.example.signature"),
            "{discovered}"
        );
    }

    run(helm(dir).args(["create", "demo"]));
    run(helm(dir).args(["package", "demo"]));
    run(helm(dir).args([
        "push",
        "demo-0.1.0.tgz",
        &format!("oci://{host}/charts"),
        "--plain-http",
    ]));
    std::fs::create_dir_all(dir.join("pulled")).unwrap();
    run(helm(dir).args([
        "pull",
        &format!("oci://{host}/charts/demo"),
        "--version",
        "0.1.0",
        "--plain-http",
        "-d",
        "pulled",
    ]));
    assert!(dir.join("pulled/demo-0.1.0.tgz").exists());
    assert_eq!(upstreams_used(&lb).len(), 2);
}

#[test]
fn concurrent_pushes_of_one_tag_end_in_one_consistent_tag() {
    let minio = Minio::start("tags");
    let registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    let work = tempfile::tempdir().unwrap();
    let pushers = 6;
    let mut layouts = Vec::new();
    for i in 0..pushers {
        let layout = work.path().join(format!("layout{i}"));
        let image = write_image_layout(&layout, "v1", 2, 256 * 1024);
        layouts.push((layout, image.manifest_digest));
    }
    let host = lb.host();
    std::thread::scope(|scope| {
        for (layout, _) in &layouts {
            let dir = work.path();
            let host = host.clone();
            scope.spawn(move || {
                run(crane(dir)
                    .args(["push", "--insecure"])
                    .arg(layout)
                    .arg(format!("{host}/race/app:latest")));
            });
        }
    });
    let pushed: BTreeSet<String> = layouts.iter().map(|(_, d)| d.clone()).collect();
    let mut seen = BTreeSet::new();
    for registry in &registries {
        let digest = run_text(
            crane(work.path())
                .args(["digest", "--insecure"])
                .arg(format!("{}/race/app:latest", registry.host())),
        );
        let digest = digest.trim().to_string();
        assert!(
            pushed.contains(&digest),
            "tag points at {digest}, not a pushed image"
        );
        // The image the tag names is complete.
        let out = work.path().join(format!("pulled-{}", registry.port));
        run(crane(work.path())
            .args(["pull", "--insecure", "--format", "oci"])
            .arg(format!("{}/race/app:latest", registry.host()))
            .arg(&out));
        seen.insert(digest);
    }
    assert_eq!(seen.len(), 1, "replicas disagree about the tag: {seen:?}");
    let tags = run_text(
        crane(work.path())
            .args(["ls", "--insecure"])
            .arg(format!("{host}/race/app")),
    );
    assert_eq!(tags.trim(), "latest");
    // Every pushed manifest is still there by digest.
    for digest in &pushed {
        run(crane(work.path())
            .args(["manifest", "--insecure"])
            .arg(format!("{host}/race/app@{digest}")));
    }
}

async fn start_session(client: &reqwest::Client, base: &str, repo: &str) -> String {
    let r = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[test]
fn an_upload_started_on_a_killed_replica_resumes_on_another() {
    let minio = Minio::start("resume");
    let mut registries = replicas(&minio, 2, "");
    let a = registries[0].url();
    let b = registries[1].url();
    let mut content = vec![0u8; 3 * 1024 * 1024 + 17];
    rand::rng().fill_bytes(&mut content);
    let digest = sha256(&content);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = quarry_e2e::http::client();
    let location = rt.block_on(async {
        let location = start_session(&client, &a, "resume/app").await;
        patch_chunk(&client, &a, &location, 0, &content[..1024 * 1024])
            .await
            .unwrap()
    });
    registries[0].kill9();
    rt.block_on(async {
        let status = client.get(format!("{b}{location}")).send().await.unwrap();
        assert_eq!(status.status(), 204);
        assert_eq!(status.headers()["range"], "0-1048575");
        let location = patch_chunk(&client, &b, &location, 1024 * 1024, &content[1024 * 1024..])
            .await
            .unwrap();
        let done = client
            .put(format!("{b}{location}?digest={digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201);
        let got = client
            .get(format!("{b}/v2/resume/app/blobs/{digest}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got == content, "blob differs after the resume");
    });
}

#[test]
fn a_multipart_upload_a_killed_replica_left_is_aborted_by_the_other() {
    let minio = Minio::start("multipart");
    let mut registries = replicas(&minio, 2, "BLOB_UPLOAD_STALE_SECONDS: 1\n");
    let a = registries[0].url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = quarry_e2e::http::client();
    // A PATCH bigger than a part (8 MiB) streams into a multipart upload;
    // the client then stalls, and replica A dies before the end.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    rt.block_on(async {
        let location = start_session(&client, &a, "multipart/app").await;
        let url = format!("{a}{location}");
        let client = client.clone();
        tokio::spawn(async move {
            let _ = client
                .patch(url)
                .body(reqwest::Body::wrap_stream(rx))
                .send()
                .await;
        });
        for _ in 0..9 {
            tx.send(Ok(bytes::Bytes::from(vec![7u8; 1024 * 1024])))
                .await
                .unwrap();
        }
    });
    let records = poll_until(Duration::from_secs(20), || {
        let records = minio.list("registry/_quarry/multipart/");
        (!records.is_empty()).then_some(records)
    })
    .expect("no multipart upload recorded");
    assert_eq!(records.len(), 1, "{records:?}");
    let record: serde_json::Value = serde_json::from_slice(&minio.get(&records[0])).unwrap();
    let key = record["location"].as_str().unwrap().to_string();
    let upload_id = record["upload_id"].as_str().unwrap().to_string();
    assert!(key.starts_with("registry/uploads/"), "{key}");
    assert!(
        minio.multipart_upload_open(&key, &upload_id),
        "the upload is not open"
    );
    registries[0].kill9();
    drop(tx);
    // Replica B's stale-upload sweep (every second here) aborts the upload
    // once its record has missed three heartbeats (30 s), and removes it.
    poll_until(Duration::from_secs(60), || {
        minio
            .list("registry/_quarry/multipart/")
            .is_empty()
            .then_some(())
    })
    .expect("the abandoned multipart upload's record is still there after 60 s");
    assert!(
        !minio.multipart_upload_open(&key, &upload_id),
        "the record went but the upload {upload_id} to {key} is still open"
    );
    assert!(
        minio.list("registry/uploads/").is_empty(),
        "the stale session's objects are still there"
    );
    assert!(
        registries[1]
            .log_text()
            .contains("aborted an abandoned multipart upload")
    );
}

/// `probe` every 250 ms until it gives something or `timeout` passes.
fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A blob push the registry acknowledged: digest and content.
type Pushed = (String, Vec<u8>);

#[test]
fn killing_a_replica_during_uploads_loses_nothing_acknowledged() {
    let minio = Minio::start("crash");
    let mut registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    let base = lb.url();
    let acked: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    let failed = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let writers = (0..4).map(|w| {
        let base = base.clone();
        let acked = acked.clone();
        let failed = failed.clone();
        rt.spawn(async move {
            let client = quarry_e2e::http::client();
            for n in 0..12 {
                let mut content = vec![0u8; 512 * 1024 + n * 4099 + w];
                rand::rng().fill_bytes(&mut content);
                match push_blob(
                    &client,
                    &base,
                    &format!("crash/w{w}"),
                    content.clone(),
                    true,
                )
                .await
                {
                    Ok(digest) => acked.lock().unwrap().push((digest, content)),
                    Err(_) => failed.lock().unwrap().push(content),
                }
            }
        })
    });
    let writers: Vec<_> = writers.collect();
    std::thread::sleep(Duration::from_millis(700));
    registries[0].kill9();
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    let survivor: &Registry = &registries[1];
    let client = quarry_e2e::http::blocking();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 12,
        "only {} pushes acknowledged",
        acked.len()
    );
    for (digest, content) in acked.iter() {
        let found = (0..4).find_map(|w| {
            let r = client
                .get(format!("{}/v2/crash/w{w}/blobs/{digest}", survivor.url()))
                .send()
                .ok()?;
            (r.status() == 200).then(|| r.bytes().ok()).flatten()
        });
        let bytes = found.unwrap_or_else(|| panic!("acknowledged blob {digest} is gone"));
        assert!(bytes == content.as_slice(), "blob {digest} changed");
    }
    // What failed during the kill goes through on the survivor.
    let failed = failed.lock().unwrap().clone();
    rt.block_on(async {
        let client = quarry_e2e::http::client();
        for content in failed {
            push_blob(&client, &survivor.url(), "crash/retry", content, true)
                .await
                .expect("retry on the surviving replica");
        }
    });
    // No blob object holds anything but its digest's content, and no
    // upload left a partial blob behind.
    let keys = minio.list("registry/blobs/");
    assert!(keys.len() >= acked.len(), "{} blob objects", keys.len());
    for key in keys {
        let hex = key.rsplit('/').next().unwrap();
        assert_eq!(sha256(&minio.get(&key)), format!("sha256:{hex}"), "{key}");
    }
}

#[test]
fn a_refused_or_unreachable_bucket_makes_the_replica_not_ready() {
    let minio = Minio::start("ready");
    let good = minio.registry_config("");
    let refused = Registry::start_shared(
        &good.replace(quarry_e2e::scale::MINIO_PASSWORD, "not-the-secret"),
        &[],
    );
    let unreachable = Registry::start_shared(
        &good.replace(
            &format!("port: {}", minio.port),
            &format!("port: {}", quarry_e2e::free_port()),
        ),
        &[("QUARRY_LOG_FORMAT", "text")],
    );
    let ok = Registry::start_shared(&good, &[]);
    let client = quarry_e2e::http::blocking_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let ready = |r: &Registry| {
        client
            .get(format!("{}/readyz", r.url()))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(ready(&ok), 200);
    assert_eq!(ready(&refused), 503);
    let log = refused.log_text();
    assert!(log.contains("storage not ready"), "{log}");
    assert_eq!(ready(&unreachable), 503);
}

#[test]
fn conformance_main_suite_through_the_load_balancer_on_minio() {
    let minio = Minio::start("conformance-main");
    let registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    main_suite(&lb.host(), &[]).assert_clean(MAIN_MIN_PASSED, 0, &registries[0].log_text());
}

#[test]
fn concurrent_attaches_through_both_replicas_are_all_listed_as_referrers() {
    let minio = Minio::start("referrers");
    let registries = replicas(&minio, 2, "");
    let lb = LoadBalancer::start(&[registries[0].port, registries[1].port]);
    let host = lb.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("subject.txt"), "subject\n").unwrap();
    run(oras(dir).args([
        "push",
        "--plain-http",
        "--artifact-type",
        "application/vnd.example.subject",
        &format!("{host}/refs/app:v1"),
        "subject.txt",
    ]));
    let attaches = 8;
    std::thread::scope(|scope| {
        for i in 0..attaches {
            let host = host.clone();
            scope.spawn(move || {
                let file = format!("sig{i}.txt");
                std::fs::write(dir.join(&file), format!("signature {i}\n")).unwrap();
                run(oras(dir).args([
                    "attach",
                    "--plain-http",
                    "--artifact-type",
                    &format!("application/vnd.example.sig{i}"),
                    &format!("{host}/refs/app:v1"),
                    &file,
                ]));
            });
        }
    });
    for registry in &registries {
        let discovered = run_text(oras(dir).args([
            "discover",
            "--plain-http",
            "--format",
            "json",
            &format!("{}/refs/app:v1", registry.host()),
        ]));
        for i in 0..attaches {
            assert!(
                discovered.contains(&format!("application/vnd.example.sig{i}\"")),
                "signature {i} missing on replica {}:\n{discovered}",
                registry.port
            );
        }
    }
}

#[test]
fn without_proxying_blob_gets_redirect_to_presigned_bucket_urls() {
    let minio = Minio::start("redirect");
    let registry = Registry::start_shared(
        &minio.registry_config("FEATURE_PROXY_STORAGE: false\n"),
        &[],
    );
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let image = write_image_layout(&layout, "v1", 1, 2 * 1024 * 1024);
    run(crane(work.path())
        .args(["push", "--insecure"])
        .arg(&layout)
        .arg(format!("{}/redirect/app:v1", registry.host())));
    let layer = &image.layer_digests[0];
    let url = format!("{}/v2/redirect/app/blobs/{layer}", registry.url());
    let no_follow = quarry_e2e::http::blocking_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_follow.get(&url).send().unwrap();
    assert_eq!(answer.status(), 307);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&minio.endpoint()) && location.contains("X-Amz-Signature"),
        "{location}"
    );
    // The presigned URL serves the blob without any registry credentials.
    let direct = quarry_e2e::http::blocking().get(&location).send().unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(sha256(&direct.bytes().unwrap()), *layer);
    // HEAD and ranges are still answered by the registry.
    assert_eq!(no_follow.head(&url).send().unwrap().status(), 200);
    let ranged = no_follow
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    // A real client follows the redirect and gets the whole image.
    run(crane(work.path())
        .args(["pull", "--insecure", "--format", "oci"])
        .arg(format!("{}/redirect/app:v1", registry.host()))
        .arg(work.path().join("pulled")));
    let index = std::fs::read_to_string(work.path().join("pulled/index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
}

//! Crash safety: SIGKILL the registry again and again while clients push
//! concurrently; after each restart every push that got 201 must read back
//! bit-identical, and no blob file may hold anything but its digest's content.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quarry_e2e::uploads::push_blob;
use quarry_e2e::{Registry, sha256};
use rand::{Rng, RngExt};

const WRITERS: usize = 6;
const ROUNDS: usize = 6;
const MIN_ACKS_PER_ROUND: usize = 5;

#[derive(Default)]
struct Acknowledged {
    blobs: Vec<(String, String)>,              // (repo, digest)
    manifests: Vec<(String, String, Vec<u8>)>, // (repo, tag, bytes)
}

async fn writer(base: String, round: usize, id: usize, acked: Arc<Mutex<Acknowledged>>) {
    let client = quarry_e2e::http::client();
    let repo = format!("crash/w{id}");
    for n in 0.. {
        let size = rand::rng().random_range(1..2 * 1024 * 1024);
        let mut content = vec![0u8; size];
        rand::rng().fill_bytes(&mut content);
        let chunked = rand::rng().random_bool(0.5);
        let Ok(layer) = push_blob(&client, &base, &repo, content, chunked).await else {
            return;
        };
        acked
            .lock()
            .unwrap()
            .blobs
            .push((repo.clone(), layer.clone()));
        let config = format!("{{\"n\":{n},\"w\":{id}}}").into_bytes();
        let config_len = config.len();
        let chunked = rand::rng().random_bool(0.5);
        let Ok(config_digest) = push_blob(&client, &base, &repo, config, chunked).await else {
            return;
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_len},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
        })
        .to_string()
        .into_bytes();
        let tag = format!("r{round}-t{n}");
        let Ok(r) = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
        else {
            return;
        };
        if r.status() != 201 {
            return;
        }
        acked
            .lock()
            .unwrap()
            .manifests
            .push((repo.clone(), tag, manifest));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_pushes_loses_no_acknowledged_push() {
    let mut registry = Registry::start();
    let base = registry.url();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for round in 0..ROUNDS {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(base.clone(), round, w, acked.clone())))
            .collect();
        // Kill only once this round has pushes acknowledged, then at a
        // random moment, so the kill lands mid-upload on a slow machine too.
        let before = acked.lock().unwrap().blobs.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().blobs.len() < before + MIN_ACKS_PER_ROUND {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: no progress in 60s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pause = rand::rng().random_range(0..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        registry.kill9();
        for t in tasks {
            t.await.unwrap();
        }
        registry.restart();
        verify(&registry, &acked, round).await;
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.blobs.len() >= ROUNDS * MIN_ACKS_PER_ROUND,
        "too few pushes acknowledged to prove anything: {}",
        acked.blobs.len()
    );
    assert!(!acked.manifests.is_empty());
    eprintln!(
        "acknowledged {} blobs and {} manifests over {ROUNDS} kills",
        acked.blobs.len(),
        acked.manifests.len()
    );
}

async fn verify(registry: &Registry, acked: &Mutex<Acknowledged>, round: usize) {
    let (blobs, manifests) = {
        let a = acked.lock().unwrap();
        (a.blobs.clone(), a.manifests.clone())
    };
    let client = quarry_e2e::http::client();
    let base = registry.url();
    for (repo, digest) in &blobs {
        let r = client
            .get(format!("{base}/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "round {round}: acknowledged blob {repo}@{digest} is gone"
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(
            &sha256(&body),
            digest,
            "round {round}: blob {digest} changed"
        );
    }
    for (repo, tag, bytes) in &manifests {
        let r = client
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "round {round}: acknowledged manifest {repo}:{tag} is gone"
        );
        assert_eq!(
            &r.bytes().await.unwrap()[..],
            &bytes[..],
            "round {round}: manifest {repo}:{tag} changed"
        );
    }
    // No visible blob may be partial: every file's content hashes to its name.
    let blob_root = registry.data.join("blobs/sha256");
    for prefix in std::fs::read_dir(&blob_root).unwrap() {
        for file in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let content = std::fs::read(&path).unwrap();
            assert_eq!(
                sha256(&content),
                format!("sha256:{name}"),
                "round {round}: partial blob {path:?}"
            );
        }
    }
}

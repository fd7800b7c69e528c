//! Process lifecycle: graceful shutdown keeps in-flight requests, a bad
//! config refuses to start with the key named, memory is not retained
//! per request.

use std::process::Command;
use std::time::Duration;

use futures::SinkExt;
use quarry_e2e::uploads::push_blob;
use quarry_e2e::{Registry, free_port, registry_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_upload_in_flight_finish() {
    let mut registry = Registry::start();
    let base = registry.url();
    let client = quarry_e2e::http::client();
    let start = client
        .post(format!("{base}/v2/graceful/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();

    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let patch = tokio::spawn({
        let url = format!("{base}{location}");
        let client = client.clone();
        async move {
            client
                .patch(url)
                .body(reqwest::Body::wrap_stream(rx))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    tx.send(Ok(bytes::Bytes::from(vec![1u8; 64 * 1024])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGTERM while the body is still arriving.
    let pid = registry.pid().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(bytes::Bytes::from(vec![2u8; 64 * 1024])))
        .await
        .unwrap();
    drop(tx);
    let status = patch
        .await
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(status, 202);
    let exit = tokio::task::spawn_blocking(move || registry.terminate(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("registry exits after SIGTERM");
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn invalid_config_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "FEATURE_REFERRERS_API: maybe\nMAXIMUM_MANIFEST_SIZE: 10\nSOME_QUAY_KEY: 1\n",
    )
    .unwrap();
    let out = Command::new(registry_binary())
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--storage-path")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FEATURE_REFERRERS_API"), "{stderr}");
    assert!(stderr.contains("MAXIMUM_MANIFEST_SIZE"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "storage was touched by a refused config"
    );
}

#[test]
fn unknown_keys_are_warned_about_by_name() {
    let registry = Registry::start_with_config(Some(
        "DATABASE_SECRET_KEY: x\nFEATURE_REFERRERS_API: true\n",
    ));
    std::thread::sleep(Duration::from_millis(200));
    let log = registry.log_text();
    assert!(log.contains("DATABASE_SECRET_KEY"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_does_not_grow_with_traffic() {
    // Absolute RSS figures depend on the machine, the allocator and the
    // build profile; they are reported by `make bench` (release build). What
    // a test can check without flaking is that memory is not retained per
    // request: after a warm-up, another 160 MiB of pushes and pulls must not
    // add anywhere near that much to the resident set.
    let registry = Registry::start();
    let base = registry.url();
    let pid = registry.pid().unwrap();
    let client = quarry_e2e::http::client();
    let round = |i: u32| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let blob = vec![(i % 251) as u8; 4 * 1024 * 1024];
            let chunked = i.is_multiple_of(2);
            let digest = push_blob(&client, &base, "memory/growth", blob, chunked)
                .await
                .unwrap();
            let pulled = client
                .get(format!("{base}/v2/memory/growth/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(pulled.status(), 200);
            assert_eq!(pulled.bytes().await.unwrap().len(), 4 * 1024 * 1024);
            for _ in 0..20 {
                let r = client.get(format!("{base}/v2/")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    for i in 0..10 {
        round(i).await;
    }
    let warm = rss_kib(pid);
    for i in 10..50 {
        round(i).await;
    }
    let after = rss_kib(pid);
    eprintln!("RSS after warm-up {warm} KiB, after 40 more 4 MiB push+pull rounds {after} KiB");
    assert!(
        after < warm + 64 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 160 MiB of traffic: memory is retained per request"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}
